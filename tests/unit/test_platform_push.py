"""Verification and parsing of third-party-platform pushes (platform_callback.push)."""

from __future__ import annotations

import base64
import pickle
import random
import threading
from collections.abc import Callable
from typing import Any

import pytest
from platform_callback import push as push_module
from platform_callback.push import (
    REASONS,
    AuthorizationEvent,
    Authorized,
    ComponentConfig,
    InMemoryNonceStore,
    PushRefused,
    Unauthorized,
    UpdateAuthorized,
    VerifyTicket,
    parse_push_xml,
    verify_push,
)
from platform_callback.wxcrypt import MessageCrypt, signature

NOW = 1_790_000_000
APP_A = "wxcomponent00000a01"
APP_B = "wxcomponent00000b02"
TOKEN_A = "platform-A-message-token"
TOKEN_B = "platform-B-message-token"
KEY_A = "QWxwaGEgcGxhdGZvcm0ga2V5IGZvciB0ZXN0cyBvbmx5"[:43]
KEY_B = "QnJhdm8gcGxhdGZvcm0ga2V5IGZvciB0ZXN0cyBvbmx5"[:43]
TICKET = "ticket@@@S3cr3t-verify-ticket-value-0123456789"
CODE = "queryauthcode@@@S3cr3t-authorization-code-value"
AUTHORIZER = "wxauthorizer000c03"
SECRETS = (TOKEN_A, TOKEN_B, KEY_A, KEY_B, TICKET, CODE, KEY_A[:16], KEY_B[:16])

CONFIGS = {
    APP_A: ComponentConfig(APP_A, TOKEN_A, KEY_A),
    APP_B: ComponentConfig(APP_B, TOKEN_B, KEY_B),
}
TOKENS = {APP_A: TOKEN_A, APP_B: TOKEN_B}
KEYS = {APP_A: KEY_A, APP_B: KEY_B}


def ticket_xml(appid: str = APP_A, ticket: str = TICKET, create_time: int = NOW) -> str:
    return (
        f"<xml><AppId><![CDATA[{appid}]]></AppId><CreateTime>{create_time}</CreateTime>"
        "<InfoType><![CDATA[component_verify_ticket]]></InfoType>"
        f"<ComponentVerifyTicket><![CDATA[{ticket}]]></ComponentVerifyTicket></xml>"
    )


def auth_xml(info_type: str, appid: str = APP_A, code: str = CODE) -> str:
    return (
        f"<xml><AppId><![CDATA[{appid}]]></AppId><CreateTime>{NOW}</CreateTime>"
        f"<InfoType><![CDATA[{info_type}]]></InfoType>"
        f"<AuthorizerAppid><![CDATA[{AUTHORIZER}]]></AuthorizerAppid>"
        f"<AuthorizationCode><![CDATA[{code}]]></AuthorizationCode>"
        f"<AuthorizationCodeExpiredTime>{NOW + 600}</AuthorizationCodeExpiredTime>"
        "<PreAuthCode><![CDATA[preauthcode@@@x]]></PreAuthCode></xml>"
    )


def unauth_xml(appid: str = APP_A) -> str:
    return (
        f"<xml><AppId><![CDATA[{appid}]]></AppId><CreateTime>{NOW}</CreateTime>"
        "<InfoType><![CDATA[unauthorized]]></InfoType>"
        f"<AuthorizerAppid><![CDATA[{AUTHORIZER}]]></AuthorizerAppid></xml>"
    )


_nonces = iter(range(10**9, 2 * 10**9))


def make_event(
    inner: str,
    *,
    appid: str = APP_A,
    encrypt_as: str | None = None,
    token: str | None = None,
    timestamp: int = NOW,
    nonce: str | None = None,
    outer: str | None = None,
    base64_body: bool = False,
    query: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An HTTP API v2 event as WeChat's push would produce it (``outer`` overrides the
    XML envelope, ``{encrypt}`` in it is replaced)."""
    target = encrypt_as or appid
    crypt = MessageCrypt(token or TOKENS.get(target, TOKEN_A), KEYS.get(target, KEY_A), target)
    nonce = str(next(_nonces)) if nonce is None else nonce
    encrypt = crypt.encrypt_message(inner)
    envelope = (
        outer
        if outer is not None
        else (
            f"<xml><AppId><![CDATA[{appid}]]></AppId><Encrypt><![CDATA[{{encrypt}}]]></Encrypt></xml>"
        )
    )
    body = envelope.replace("{encrypt}", encrypt)
    params = {
        "signature": "0" * 40,  # the plain-mode signature WeChat adds; not used in aes mode
        "timestamp": str(timestamp),
        "nonce": nonce,
        "encrypt_type": "aes",
        "msg_signature": crypt.sign(timestamp, nonce, encrypt),
    }
    if query is not None:
        params.update(query)
        params = {k: v for k, v in params.items() if v is not None}
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "POST /wechat/platform",
        "requestContext": {"http": {"method": "POST", "path": "/wechat/platform"}},
        "queryStringParameters": params,
        "body": base64.b64encode(body.encode()).decode() if base64_body else body,
        "isBase64Encoded": base64_body,
    }
    return event


def refused(
    event: dict[str, Any], store: InMemoryNonceStore | None = None, **kw: Any
) -> PushRefused:
    with pytest.raises(PushRefused) as caught:
        verify_push(event, CONFIGS.get, store or InMemoryNonceStore(), kw.pop("now", NOW), **kw)
    assert_clean(caught.value)
    return caught.value


def assert_clean(exc: BaseException) -> None:
    """No secret or ticket/code anywhere in what a log line or traceback would show."""
    text = f"{exc}|{exc!r}|{exc.args!r}|{getattr(exc, 'message', '')}"
    for secret in SECRETS:
        assert secret not in text, secret
    assert exc.__cause__ is None
    assert exc.__context__ is None


# ------------------------------------------------------------ accepted pushes


def test_a_verify_ticket_push() -> None:
    push = verify_push(make_event(ticket_xml()), CONFIGS.get, InMemoryNonceStore(), NOW)
    assert push == VerifyTicket(APP_A, NOW, TICKET)
    assert TICKET not in repr(push)
    assert repr(push) == f"VerifyTicket(component_appid={APP_A!r}, create_time={NOW})"


@pytest.mark.parametrize(
    ("info_type", "kind"), [("authorized", Authorized), ("updateauthorized", UpdateAuthorized)]
)
def test_authorization_pushes(info_type: str, kind: type[AuthorizationEvent]) -> None:
    push = verify_push(make_event(auth_xml(info_type)), CONFIGS.get, InMemoryNonceStore(), NOW)
    assert type(push) is kind
    assert isinstance(push, AuthorizationEvent)
    assert push.component_appid == APP_A
    assert push.authorizer_appid == AUTHORIZER
    assert push.authorization_code == CODE
    assert push.code_expires_at == NOW + 600
    assert push.create_time == NOW
    assert CODE not in repr(push)
    assert AUTHORIZER in repr(push)


def test_an_unauthorized_push() -> None:
    push = verify_push(make_event(unauth_xml()), CONFIGS.get, InMemoryNonceStore(), NOW)
    assert push == Unauthorized(APP_A, AUTHORIZER, NOW)


def test_two_platforms_share_one_url() -> None:
    store = InMemoryNonceStore()
    a = verify_push(make_event(ticket_xml(APP_A, "ticket@@@a")), CONFIGS.get, store, NOW)
    b = verify_push(
        make_event(ticket_xml(APP_B, "ticket@@@b"), appid=APP_B), CONFIGS.get, store, NOW
    )
    assert a == VerifyTicket(APP_A, NOW, "ticket@@@a")
    assert b == VerifyTicket(APP_B, NOW, "ticket@@@b")
    # B's envelope around a message encrypted (and signed) for A is refused.
    crossed = make_event(ticket_xml(APP_A), appid=APP_B, encrypt_as=APP_A)
    assert refused(crossed).reason == "bad_signature"


def test_base64_bodies_raw_query_strings_and_to_user_name() -> None:
    store = InMemoryNonceStore()
    event = make_event(ticket_xml(), base64_body=True)
    assert isinstance(verify_push(event, CONFIGS.get, store, NOW), VerifyTicket)
    raw = make_event(ticket_xml())
    params = raw.pop("queryStringParameters")
    raw["rawQueryString"] = "&".join(f"{k}={v}" for k, v in params.items())
    assert isinstance(verify_push(raw, CONFIGS.get, store, NOW), VerifyTicket)
    outer = f"<xml><ToUserName><![CDATA[{APP_A}]]></ToUserName><Encrypt>{{encrypt}}</Encrypt></xml>"
    assert isinstance(
        verify_push(make_event(ticket_xml(), outer=outer), CONFIGS.get, store, NOW), VerifyTicket
    )
    both = (
        f"<xml><ToUserName>{APP_A}</ToUserName><AppId>{APP_A}</AppId>"
        "<Encrypt>{encrypt}</Encrypt></xml>"
    )
    assert isinstance(
        verify_push(make_event(ticket_xml(), outer=both), CONFIGS.get, store, NOW), VerifyTicket
    )
    uppercase = make_event(ticket_xml())
    uppercase["queryStringParameters"]["msg_signature"] = uppercase["queryStringParameters"][
        "msg_signature"
    ].upper()
    assert isinstance(verify_push(uppercase, CONFIGS.get, store, NOW), VerifyTicket)


@pytest.mark.parametrize("delta", [-300, 0, 300])
def test_timestamps_within_the_skew_are_accepted(delta: int) -> None:
    event = make_event(ticket_xml())
    assert isinstance(
        verify_push(event, CONFIGS.get, InMemoryNonceStore(), NOW + delta), VerifyTicket
    )


@pytest.mark.parametrize("delta", [-301, 301, 86_400])
def test_stale_timestamps_are_refused(delta: int) -> None:
    exc = refused(make_event(ticket_xml()), now=NOW + delta)
    assert exc.reason == "stale_timestamp"
    assert exc.status == 403
    assert exc.component_appid == APP_A


def test_the_skew_is_configurable() -> None:
    event = make_event(ticket_xml())
    assert refused(event, now=NOW + 61, max_skew=60).reason == "stale_timestamp"
    assert isinstance(
        verify_push(event, CONFIGS.get, InMemoryNonceStore(), NOW + 61, max_skew=120), VerifyTicket
    )


# ------------------------------------------------------------ refusals


def test_replays_are_refused_but_marked_authentic() -> None:
    store = InMemoryNonceStore(clock=lambda: NOW)
    event = make_event(ticket_xml())
    verify_push(event, CONFIGS.get, store, NOW)
    exc = refused(event, store)
    assert exc.reason == "replayed"
    assert exc.authentic
    assert exc.status == 409
    # The same ticket in a new push (new nonce, so a new signature) is not a replay.
    assert isinstance(verify_push(make_event(ticket_xml()), CONFIGS.get, store, NOW), VerifyTicket)


def test_only_accepted_pushes_are_remembered() -> None:
    store = InMemoryNonceStore(clock=lambda: NOW)
    for event in (
        make_event(ticket_xml(), nonce="777"),
        make_event("<xml><AppId>x</AppId></xml>", nonce="778"),
    ):
        event["queryStringParameters"]["msg_signature"] = "f" * 40
        refused(event, store)
    assert refused(make_event("<xml>broken", nonce="779"), store).reason == "malformed_push"
    assert len(store) == 0


def test_too_large_bodies_are_refused_before_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []
    real = push_module.SafeElementTree.fromstring

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(push_module.SafeElementTree, "fromstring", spy)
    event = make_event(ticket_xml())
    event["body"] = event["body"] + " " * (64 * 1024)
    exc = refused(event)
    assert (exc.reason, exc.status) == ("too_large", 413)
    b64 = make_event(ticket_xml(), base64_body=True)
    b64["body"] = base64.b64encode(b"<xml>" + b" " * (64 * 1024) + b"</xml>").decode()
    assert refused(b64).reason == "too_large"
    multibyte = make_event(ticket_xml())
    multibyte["body"] = "<xml>" + "中" * 22_000 + "</xml>"  # 22 000 characters, 66 000 bytes
    assert refused(multibyte).reason == "too_large"
    assert calls == []
    assert refused(make_event(ticket_xml()), max_body_bytes=100).reason == "too_large"


@pytest.mark.parametrize(
    "body",
    [
        # A billion-laughs bomb and an external entity: defusedxml refuses both.
        '<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
        "<xml><AppId>&b;</AppId><Encrypt>x</Encrypt></xml>",
        '<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        "<xml><AppId>&e;</AppId><Encrypt>x</Encrypt></xml>",
        "<!DOCTYPE xml><xml><AppId>wx</AppId><Encrypt>x</Encrypt></xml>",
        "<xml><AppId>wx</AppId><Encrypt>x</Encrypt>",
        "<notxml><AppId>wx</AppId><Encrypt>x</Encrypt></notxml>",
        "\x00\x01binary",
        '{"json": true}',
    ],
)
def test_malformed_or_dangerous_xml_is_refused(body: str) -> None:
    event = make_event(ticket_xml())
    event["body"] = body
    assert refused(event).reason == "malformed_xml"


def test_envelope_problems() -> None:
    no_encrypt = make_event(ticket_xml(), outer=f"<xml><AppId>{APP_A}</AppId></xml>")
    assert refused(no_encrypt).reason == "malformed_xml"
    two = make_event(
        ticket_xml(),
        outer=f"<xml><AppId>{APP_A}</AppId><Encrypt>{{encrypt}}</Encrypt><Encrypt>x</Encrypt></xml>",
    )
    assert refused(two).reason == "malformed_xml"
    nested = make_event(
        ticket_xml(),
        outer=f"<xml><AppId><x>{APP_A}</x></AppId><Encrypt>{{encrypt}}</Encrypt></xml>",
    )
    assert refused(nested).reason == "malformed_xml"
    no_appid = make_event(ticket_xml(), outer="<xml><Encrypt>{encrypt}</Encrypt></xml>")
    assert refused(no_appid).reason == "malformed_xml"
    disagree = make_event(
        ticket_xml(),
        outer=f"<xml><ToUserName>{APP_B}</ToUserName><AppId>{APP_A}</AppId><Encrypt>{{encrypt}}</Encrypt></xml>",
    )
    assert refused(disagree).reason == "app_id_mismatch"
    bad_b64 = make_event(ticket_xml(), base64_body=True)
    bad_b64["body"] = "!!!"
    assert refused(bad_b64).reason == "malformed_xml"
    for empty in (None, ""):
        event = make_event(ticket_xml())
        event["body"] = empty
        assert refused(event).reason == "missing_parameter"
    binary = make_event(ticket_xml())
    binary["body"] = b"<xml/>"
    assert refused(binary).reason == "bad_parameter"


def test_unknown_app_ids_are_refused_without_echoing_them() -> None:
    exc = refused(make_event(ticket_xml("wxnobody"), appid="wxnobody"))
    assert exc.reason == "unknown_app_id"
    assert "unknown AppId" in str(exc)
    assert "wxnobody" not in str(exc)
    assert exc.component_appid is None


def test_a_lookup_returning_another_platform_is_refused() -> None:
    event = make_event(ticket_xml())
    with pytest.raises(PushRefused) as caught:
        verify_push(event, lambda _: CONFIGS[APP_B], InMemoryNonceStore(), NOW)
    assert caught.value.reason == "app_id_mismatch"


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ({"timestamp": None}, "missing_parameter"),
        ({"nonce": None}, "missing_parameter"),
        ({"msg_signature": None}, "missing_parameter"),
        ({"encrypt_type": None}, "missing_parameter"),
        ({"nonce": ""}, "missing_parameter"),
        ({"encrypt_type": "raw"}, "bad_parameter"),
        ({"timestamp": "17e8"}, "bad_parameter"),
        ({"timestamp": "-1"}, "bad_parameter"),
        ({"timestamp": "1" * 13}, "bad_parameter"),
        ({"nonce": "has space"}, "bad_parameter"),
        ({"nonce": "n" * 129}, "bad_parameter"),
        ({"msg_signature": "z" * 40}, "bad_parameter"),
        ({"msg_signature": "a" * 39}, "bad_parameter"),
    ],
)
def test_query_problems(query: dict[str, Any], reason: str) -> None:
    assert refused(make_event(ticket_xml(), query=query)).reason == reason


def test_no_query_at_all() -> None:
    event = make_event(ticket_xml())
    event["queryStringParameters"] = None
    assert refused(event).reason == "missing_parameter"


def test_bad_signatures() -> None:
    forged = make_event(ticket_xml(), token="a guessed token")
    exc = refused(forged)
    assert (exc.reason, exc.status, exc.authentic) == ("bad_signature", 403, False)
    event = make_event(ticket_xml())
    event["queryStringParameters"]["nonce"] += "1"
    assert refused(event).reason == "bad_signature"


def test_validly_signed_garbage_is_bad_ciphertext() -> None:
    nonce = "5150"
    encrypt = base64.b64encode(b"\x00" * 64).decode()
    event = {
        "queryStringParameters": {
            "timestamp": str(NOW),
            "nonce": nonce,
            "encrypt_type": "aes",
            "msg_signature": signature(TOKEN_A, NOW, nonce, encrypt),
        },
        "body": f"<xml><AppId>{APP_A}</AppId><Encrypt>{encrypt}</Encrypt></xml>",
    }
    exc = refused(event)
    assert (exc.reason, exc.authentic) == ("bad_ciphertext", True)


def test_a_push_encrypted_for_another_app_id() -> None:
    # Same key and token, but the AppId inside the ciphertext is another one.
    crypt = MessageCrypt(TOKEN_A, KEY_A, "wxintruder")
    nonce = "99"
    encrypt = crypt.encrypt_message(ticket_xml())
    event = {
        "queryStringParameters": {
            "timestamp": str(NOW),
            "nonce": nonce,
            "encrypt_type": "aes",
            "msg_signature": crypt.sign(NOW, nonce, encrypt),
        },
        "body": f"<xml><AppId>{APP_A}</AppId><Encrypt>{encrypt}</Encrypt></xml>",
    }
    assert refused(event).reason == "app_id_mismatch"
    assert refused(make_event(ticket_xml(appid=APP_B))).reason == "app_id_mismatch"


@pytest.mark.parametrize(
    "inner",
    [
        "<xml><AppId>" + APP_A + "</AppId><CreateTime>1</CreateTime></xml>",
        ticket_xml().replace(f"<CreateTime>{NOW}</CreateTime>", "<CreateTime>soon</CreateTime>"),
        ticket_xml().replace(TICKET, ""),
        ticket_xml().replace(TICKET, "t" * 513),
        auth_xml("authorized").replace(CODE, ""),
        auth_xml("authorized").replace(str(NOW + 600), "later"),
        unauth_xml().replace(AUTHORIZER, ""),
        "<xml><AppId>" + APP_A + "</AppId>",
        "plain text, not XML",
        '<!DOCTYPE xml [<!ENTITY a "x">]><xml><AppId>&a;</AppId></xml>',
    ],
)
def test_malformed_decrypted_pushes(inner: str) -> None:
    exc = refused(make_event(inner))
    assert (exc.reason, exc.authentic) == ("malformed_push", True)


def test_unknown_info_types_are_a_typed_refusal() -> None:
    inner = (
        f"<xml><AppId>{APP_A}</AppId><CreateTime>{NOW}</CreateTime>"
        "<InfoType>notify_third_fasteregister</InfoType></xml>"
    )
    exc = refused(make_event(inner))
    assert (exc.reason, exc.authentic, exc.status) == ("unsupported_info_type", True, 400)


def test_the_published_tencent_message_verifies_but_is_no_platform_push() -> None:
    """Tencent's sample message (see test_platform_crypto) put in a push: it passes the
    signature and decryption, then is refused as no platform push (no AppId inside)."""
    token, appid = "spamtest", "wx2c2769f8efd9abc2"
    from tests.unit.test_platform_crypto import (  # noqa: PLC0415
        SAMPLE_KEY,
        TENCENT_ENCRYPT,
        TENCENT_NONCE,
        TENCENT_SIGNATURE,
        TENCENT_TIMESTAMP,
    )

    configs = {appid: ComponentConfig(appid, token, SAMPLE_KEY)}
    event = {
        "queryStringParameters": {
            "timestamp": TENCENT_TIMESTAMP,
            "nonce": TENCENT_NONCE,
            "encrypt_type": "aes",
            "msg_signature": TENCENT_SIGNATURE,
        },
        "body": f"<xml><AppId>{appid}</AppId><Encrypt>{TENCENT_ENCRYPT}</Encrypt></xml>",
    }
    with pytest.raises(PushRefused) as caught:
        verify_push(event, configs.get, InMemoryNonceStore(), int(TENCENT_TIMESTAMP) + 5)
    assert (caught.value.reason, caught.value.authentic) == ("malformed_push", True)
    forged = dict(event, queryStringParameters=dict(event["queryStringParameters"], nonce="1"))
    with pytest.raises(PushRefused) as caught:
        verify_push(forged, configs.get, InMemoryNonceStore(), int(TENCENT_TIMESTAMP))
    assert caught.value.reason == "bad_signature"


def test_parse_push_xml_directly() -> None:
    assert parse_push_xml(ticket_xml(), APP_A) == VerifyTicket(APP_A, NOW, TICKET)
    with pytest.raises(PushRefused) as caught:
        parse_push_xml(ticket_xml(), APP_B)
    assert caught.value.reason == "app_id_mismatch"


# ------------------------------------------------------------ 200 hostile pushes


def _hostile_cases(
    rng: random.Random, store: InMemoryNonceStore
) -> list[tuple[str, dict[str, Any], int]]:
    """(expected reason, event, now) for every way a push may be forged, replayed or broken."""

    def flip_hex(value: str) -> str:
        i = rng.randrange(len(value))
        return value[:i] + ("0" if value[i] != "0" else "1") + value[i + 1 :]

    def with_query(event: dict[str, Any], **changes: Any) -> dict[str, Any]:
        params = dict(event["queryStringParameters"], **changes)
        return dict(event, queryStringParameters={k: v for k, v in params.items() if v is not None})

    def inner() -> str:
        return rng.choice(
            [ticket_xml(), auth_xml("authorized"), auth_xml("updateauthorized"), unauth_xml()]
        )

    def accepted() -> dict[str, Any]:
        event = make_event(inner())
        verify_push(event, CONFIGS.get, store, NOW)
        return event

    makers: list[tuple[str, Callable[[], tuple[dict[str, Any], int]]]] = [
        (
            "bad_signature",
            lambda: (
                with_query(
                    e := make_event(inner()),
                    msg_signature=flip_hex(e["queryStringParameters"]["msg_signature"]),
                ),
                NOW,
            ),
        ),
        (
            "bad_signature",
            lambda: (with_query(make_event(inner()), nonce=str(rng.randrange(10**6))), NOW),
        ),
        (
            "bad_signature",
            lambda: (
                with_query(make_event(inner()), timestamp=str(NOW + rng.randint(1, 200))),
                NOW,
            ),
        ),
        ("bad_signature", lambda: (make_event(inner(), token=f"guess-{rng.random()}"), NOW)),
        ("bad_signature", lambda: (make_event(inner(), appid=APP_B, encrypt_as=APP_A), NOW)),
        (
            "stale_timestamp",
            lambda: (make_event(inner()), NOW + rng.choice([-1, 1]) * rng.randint(301, 10**6)),
        ),
        ("replayed", lambda: (accepted(), NOW + rng.randint(-300, 300))),
        ("unknown_app_id", lambda: (make_event(inner(), appid=f"wx{rng.randrange(10**12)}"), NOW)),
        (
            "missing_parameter",
            lambda: (
                with_query(
                    make_event(inner()),
                    **{rng.choice(["timestamp", "nonce", "msg_signature", "encrypt_type"]): None},
                ),
                NOW,
            ),
        ),
        (
            "bad_parameter",
            lambda: (
                with_query(make_event(inner()), encrypt_type=rng.choice(["raw", "AES", "des"])),
                NOW,
            ),
        ),
        (
            "malformed_xml",
            lambda: (
                dict(
                    e := make_event(inner()), body=e["body"][: rng.randrange(1, len(e["body"]) - 1)]
                ),
                NOW,
            ),
        ),
        (
            "malformed_xml",
            lambda: (
                dict(
                    make_event(inner()), body=rng.randbytes(rng.randint(1, 300)).decode("latin-1")
                ),
                NOW,
            ),
        ),
        (
            "too_large",
            lambda: (
                dict(
                    make_event(inner()),
                    body="<xml>" + "x" * (64 * 1024 + rng.randint(0, 5000)) + "</xml>",
                ),
                NOW,
            ),
        ),
        (
            "malformed_push",
            lambda: (make_event(ticket_xml().replace("<CreateTime>", "<Created>", 1)), NOW),
        ),
        (
            "unsupported_info_type",
            lambda: (
                make_event(
                    ticket_xml().replace("component_verify_ticket", f"kind{rng.randrange(99)}")
                ),
                NOW,
            ),
        ),
        ("app_id_mismatch", lambda: (make_event(ticket_xml(appid=APP_B)), NOW)),
    ]
    cases = []
    for i in range(200):
        reason, make = makers[i % len(makers)] if i < len(makers) else rng.choice(makers)
        event, now = make()
        cases.append((reason, event, now))
    return cases


def test_two_hundred_forged_replayed_and_malformed_pushes_are_refused() -> None:
    rng = random.Random(12)
    store = InMemoryNonceStore(clock=lambda: NOW)
    cases = _hostile_cases(rng, store)
    assert len(cases) == 200
    seen: dict[str, int] = {}
    for expected, event, now in cases:
        with pytest.raises(PushRefused) as caught:
            verify_push(event, CONFIGS.get, store, now)
        exc = caught.value
        assert exc.reason == expected, (expected, exc)
        assert exc.reason in REASONS
        assert_clean(exc)
        seen[expected] = seen.get(expected, 0) + 1
    assert set(seen) >= {
        "bad_signature",
        "stale_timestamp",
        "replayed",
        "unknown_app_id",
        "missing_parameter",
        "bad_parameter",
        "malformed_xml",
        "too_large",
        "malformed_push",
        "unsupported_info_type",
        "app_id_mismatch",
    }


# ------------------------------------------------------------ the nonce store and config


def test_nonce_store_forgets_after_the_retention() -> None:
    now = [float(NOW)]
    store = InMemoryNonceStore(retention_seconds=600, clock=lambda: now[0])
    assert store.remember(APP_A, "1", NOW, "ab" * 20)
    assert not store.remember(APP_A, "1", NOW, "AB" * 20), "signature case does not matter"
    assert store.remember(APP_B, "1", NOW, "ab" * 20), "keyed by platform"
    assert store.remember(APP_A, "2", NOW, "ab" * 20)
    now[0] += 599
    assert not store.remember(APP_A, "1", NOW, "ab" * 20)
    now[0] += 1
    assert store.remember(APP_A, "1", NOW, "ab" * 20), "forgotten once the retention passed"
    assert len(store) == 1


def test_nonce_store_is_bounded_and_thread_safe() -> None:
    store = InMemoryNonceStore(max_entries=50, clock=lambda: NOW)
    results: list[bool] = []

    def worker(offset: int) -> None:
        for i in range(200):
            results.append(store.remember(APP_A, str(i), NOW, "ab" * 20))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(store) == 50
    assert results.count(True) >= 200
    with pytest.raises(ValueError):
        InMemoryNonceStore(retention_seconds=0)
    with pytest.raises(ValueError):
        InMemoryNonceStore(max_entries=0)


def test_config_and_refusal_reprs_hide_secrets() -> None:
    config = CONFIGS[APP_A]
    assert repr(config) == f"ComponentConfig(component_appid={APP_A!r})"
    assert repr(PushRefused("bad_signature", "x", component_appid=APP_A)) == (
        f"PushRefused(reason='bad_signature', component_appid={APP_A!r}, authentic=False)"
    )
    assert str(PushRefused("too_large", "the body is larger than the limit")) == (
        "too_large: the body is larger than the limit"
    )
    with pytest.raises(TypeError):
        pickle.dumps(config)
