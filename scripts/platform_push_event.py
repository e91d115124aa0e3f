"""A signed, encrypted WeChat push as a Function URL event, for PlatformCallbackFunction.

Usage::

    # a verify-ticket push of the local demo platform, timestamped now, to stdout:
    python scripts/platform_push_event.py > /tmp/push.json
    python scripts/platform_push_event.py --info-type authorized --authorizer wxauthorizer0000001
    python scripts/platform_push_event.py | python scripts/local_invoke.py \\
        PlatformCallbackFunction -e - --env-vars events/env.json

The callback refuses a push whose timestamp is more than 5 minutes from its clock, so a
stored event (``events/platform_push.json``) answers ``stale_timestamp`` after that: make a
fresh one with this script. The platform is the local demo's, with clearly fake
credentials (:data:`DEMO_COMPONENT_APPID`, :data:`DEMO_TOKEN`, :data:`DEMO_AES_KEY`): put
:func:`demo_registry_entry` into the local registry secret. Encryption and signing are
the simulator's (``simulator.msgcrypt``, WeChat's side), not the callback's own code.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlencode

# `python scripts/platform_push_event.py` puts scripts/ on sys.path, not the repository root.
if str(Path(__file__).resolve().parent.parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from local_aws.function_url import to_function_url_event
from simulator.msgcrypt import PushKey

__all__ = [
    "DEMO_AES_KEY",
    "DEMO_COMPONENT_APPID",
    "DEMO_TOKEN",
    "authorization_xml",
    "demo_registry_entry",
    "push_event",
    "ticket_xml",
]

# Fake, for local runs only: no WeChat platform has these.
DEMO_COMPONENT_APPID: Final = "wxcomponentlocal0001"
DEMO_TOKEN: Final = "LocalDemoPlatformToken"
DEMO_AES_KEY: Final = "LocalDemoPlatformEncodingAESKeyNotSecret012"
DEMO_SECRET: Final = "local-demo-component-appsecret-not-a-secret"


def demo_registry_entry() -> dict[str, Any]:
    """The demo platform's registry entry (key: :data:`DEMO_COMPONENT_APPID`)."""
    return {
        "type": "component",
        "secret": DEMO_SECRET,
        "token": DEMO_TOKEN,
        "encoding_aes_key": DEMO_AES_KEY,
    }


def ticket_xml(component_appid: str, create_time: int, ticket: str) -> str:
    """A decrypted ``component_verify_ticket`` push."""
    return (
        f"<xml><AppId><![CDATA[{component_appid}]]></AppId><CreateTime>{create_time}</CreateTime>"
        "<InfoType><![CDATA[component_verify_ticket]]></InfoType>"
        f"<ComponentVerifyTicket><![CDATA[{ticket}]]></ComponentVerifyTicket></xml>"
    )


def authorization_xml(
    component_appid: str,
    info_type: str,
    authorizer_appid: str,
    create_time: int,
    code: str = "",
    code_expires_at: int = 0,
) -> str:
    """A decrypted ``authorized`` / ``updateauthorized`` / ``unauthorized`` push."""
    grant = (
        f"<AuthorizationCode><![CDATA[{code}]]></AuthorizationCode>"
        f"<AuthorizationCodeExpiredTime>{code_expires_at}</AuthorizationCodeExpiredTime>"
        if info_type != "unauthorized"
        else ""
    )
    return (
        f"<xml><AppId><![CDATA[{component_appid}]]></AppId><CreateTime>{create_time}</CreateTime>"
        f"<InfoType><![CDATA[{info_type}]]></InfoType>"
        f"<AuthorizerAppid><![CDATA[{authorizer_appid}]]></AuthorizerAppid>{grant}</xml>"
    )


def push_event(
    xml: str,
    *,
    component_appid: str = DEMO_COMPONENT_APPID,
    token: str = DEMO_TOKEN,
    aes_key: str = DEMO_AES_KEY,
    timestamp: int | None = None,
    nonce: str | None = None,
) -> dict[str, Any]:
    """The Function URL event of WeChat POSTing ``xml`` (encrypted, signed) to the callback."""
    key = PushKey(token, aes_key)
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    nonce = nonce or str(secrets.randbelow(9 * 10**9) + 10**9)
    encrypt = key.seal(component_appid, xml, secrets.token_bytes(16))
    query = urlencode(
        {
            "signature": key.plain_sign(stamp, nonce),
            "timestamp": stamp,
            "nonce": nonce,
            "encrypt_type": "aes",
            "msg_signature": key.sign(stamp, nonce, encrypt),
        }
    )
    body = (
        f"<xml><AppId><![CDATA[{component_appid}]]></AppId>"
        f"<Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
    )
    return to_function_url_event(
        "POST",
        f"/?{query}",
        {"Content-Type": "text/xml; charset=utf-8", "User-Agent": "Mozilla/4.0"},
        body.encode(),
        source_ip="203.0.113.10",
        domain_name="local.lambda-url.us-east-1.on.aws",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="platform_push_event.py", description="Print a signed WeChat push event (JSON)."
    )
    parser.add_argument(
        "--info-type",
        default="component_verify_ticket",
        choices=["component_verify_ticket", "authorized", "updateauthorized", "unauthorized"],
    )
    parser.add_argument("--authorizer", default="wxauthorizerlocal01", help="authorizer appid")
    parser.add_argument("--timestamp", type=int, help="epoch seconds (default: now)")
    args = parser.parse_args(argv)
    now = int(time.time()) if args.timestamp is None else args.timestamp
    fake = "ticket@@@local-fake-" + secrets.token_urlsafe(24)
    if args.info_type == "component_verify_ticket":
        xml = ticket_xml(DEMO_COMPONENT_APPID, now, fake)
    else:
        code = "queryauthcode@@@local-fake-" + secrets.token_urlsafe(24)
        xml = authorization_xml(
            DEMO_COMPONENT_APPID, args.info_type, args.authorizer, now, code, now + 600
        )
    json.dump(push_event(xml, timestamp=now), sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
