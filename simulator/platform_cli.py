"""Drive a running simulator's third-party platforms from the command line.

::

    python -m simulator authorize   --url http://127.0.0.1:8900 --component wxc...
                                    --authorizer wxa... [--func 1 --func 15] [--deliver]
                                    [--show-code]
    python -m simulator unauthorize --url ... --component wxc... --authorizer wxa... [--deliver]
    python -m simulator deliver     --url ...
    python -m simulator pushes      --url ... --component wxc... (--on | --off)

``--url`` defaults to ``$WECHAT_SIMULATOR_URL``. Each prints one JSON object. A merchant's
authorization queues an ``authorized`` push (``updateauthorized`` when already
authorized) carrying the code; ``--deliver`` delivers the due pushes right away. The
code itself is printed only with ``--show-code`` (else its fingerprint).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from simulator.tokens import fingerprint

__all__ = ["COMMANDS", "main"]

COMMANDS = ("authorize", "unauthorize", "deliver", "pushes")
URL_VARIABLE = "WECHAT_SIMULATOR_URL"


class _Failed(Exception):
    """The simulator answered an error (or could not be reached)."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m simulator", description="Act on a running simulator's platforms."
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--url",
        default=os.environ.get(URL_VARIABLE),
        help=f"the simulator's base URL (default ${URL_VARIABLE})",
    )
    common.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    pair = argparse.ArgumentParser(add_help=False)
    pair.add_argument("--component", required=True, help="the platform's component appid")
    pair.add_argument("--authorizer", required=True, help="the merchant's (authorizer's) appid")
    pair.add_argument("--deliver", action="store_true", help="deliver the due pushes at once")
    sub = parser.add_subparsers(dest="command", required=True)
    auth = sub.add_parser(
        "authorize", parents=[common, pair], help="a merchant authorizes the platform"
    )
    auth.add_argument(
        "--func", type=int, action="append", default=None, help="a func_info id (repeatable)"
    )
    auth.add_argument("--show-code", action="store_true", help="print the authorization code")
    sub.add_parser("unauthorize", parents=[common, pair], help="the merchant revokes it")
    sub.add_parser("deliver", parents=[common], help="deliver every due push now")
    pushes = sub.add_parser("pushes", parents=[common], help="stop or restart ticket pushes")
    pushes.add_argument("--component", required=True, help="the platform's component appid")
    state = pushes.add_mutually_exclusive_group(required=True)
    state.add_argument("--on", dest="enabled", action="store_true", help="restart them")
    state.add_argument("--off", dest="enabled", action="store_false", help="stop them")
    return parser


def _post(url: str, path: str, body: dict[str, Any], timeout: float) -> Any:
    import httpx  # noqa: PLC0415 - only this command needs an HTTP client

    try:
        answer = httpx.post(url.rstrip("/") + path, json=body, timeout=timeout)
    except httpx.HTTPError as exc:
        raise _Failed(f"cannot reach the simulator: {type(exc).__name__}") from None
    try:
        data = answer.json()
    except ValueError:
        data = None
    if answer.status_code != 200 or not isinstance(data, dict):
        error = data.get("error") if isinstance(data, dict) else None
        raise _Failed(f"the simulator answered {answer.status_code}: {error or 'no JSON'}")
    return data


def _run(args: argparse.Namespace) -> dict[str, Any]:
    url, timeout = args.url, args.timeout
    if args.command == "deliver":
        return dict(_post(url, "/_sim/pushes/deliver", {}, timeout))
    if args.command == "pushes":
        body = {"component_appid": args.component, "enabled": args.enabled}
        return dict(_post(url, "/_sim/pushes", body, timeout))
    pair = {"component_appid": args.component, "authorizer_appid": args.authorizer}
    if args.command == "authorize":
        if args.func is not None:
            pair["func_info"] = args.func
        result = dict(_post(url, "/_sim/authorize", pair, timeout))
        code = result.pop("auth_code")
        if args.show_code:
            result["auth_code"] = code
        else:
            result["auth_code_fp"] = fingerprint(code)
    else:
        result = dict(_post(url, "/_sim/unauthorize", pair, timeout))
    if args.deliver:
        result["deliveries"] = _post(url, "/_sim/pushes/deliver", {}, timeout)["deliveries"]
    return result


def main(argv: Sequence[str]) -> int:
    """Run one platform command against a running simulator; the exit status."""
    parser = _parser()
    args = parser.parse_args(list(argv))
    if not args.url:
        parser.error(f"--url is required (or set ${URL_VARIABLE})")
    try:
        result = _run(args)
    except _Failed as exc:
        print(f"simulator {args.command}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, ensure_ascii=False, sort_keys=True))
    return 0
