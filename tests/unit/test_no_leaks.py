"""No token or secret in logs, exceptions or return values, on every refresher path."""

from __future__ import annotations

import importlib
import json
import logging
import traceback
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from .conftest import APP, BASE, SECRET, SECRET_ID, TABLE, Harness
from .test_handler import Context


def _url_error(cls: type[httpx.HTTPError]) -> Callable[[httpx.Request], Any]:
    # httpx errors can carry the URL, and the classic token URL holds the secret.
    def raise_it(request: httpx.Request) -> Any:
        raise cls(f"failed talking to {request.url}", request=request)  # type: ignore[call-arg]

    return raise_it


PATHS: dict[str, list[Any]] = {
    "success": [],
    "system_busy_then_ok": [{"errcode": -1, "errmsg": "system error"}],
    "http_502": [httpx.Response(502, text=f"<html>bad gateway secret={SECRET}</html>")] * 4,
    "read_timeout_with_url": [_url_error(httpx.ReadTimeout)] * 4,
    "connect_timeout_with_url": [_url_error(httpx.ConnectTimeout)] * 4,
    "connect_error_with_url": [_url_error(httpx.ConnectError)] * 4,
    "garbled_html_echoing_the_secret": [httpx.Response(200, text=f"<html>{SECRET}</html>")],
    "truncated_json": [httpx.Response(200, text='{"access_token": "abc')],
    "errmsg_echoing_the_secret": [{"errcode": 40125, "errmsg": f"invalid appsecret {SECRET}"}],
    **{
        f"errcode_{code}": [{"errcode": code, "errmsg": f"error {code} rid: 5f1"}]
        for code in (40001, 40013, 40164, 40243, 41002, 41004, 45009, 89503, 89506, 89507)
    },
}


@pytest.mark.parametrize("path", sorted(PATHS))
def test_no_secret_or_token_on_any_path(
    path: str,
    harness: Harness,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TOKEN_TABLE_NAME", TABLE)
    monkeypatch.setenv("WECHAT_APPS_SECRET_ID", SECRET_ID)
    monkeypatch.setenv("WECHAT_API_BASE_URL", BASE)
    monkeypatch.setenv("DAILY_CALL_BUDGET", "6")
    handler = importlib.import_module("app")
    handler._service = None
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []

    def invoke(event: dict[str, Any]) -> None:
        try:
            seen.append(json.dumps(handler.lambda_handler(event, Context())))
        except Exception as exc:
            seen.append("".join(traceback.format_exception(exc)))
            seen.append(repr(exc))

    invoke({})  # a first token, so that later paths have one to keep
    tokens = list(harness.wechat.issued)
    harness.wechat.script = list(PATHS[path])
    invoke({"app_id": APP, "force": True})
    invoke({"app_id": APP, "stale_token": tokens[0], "errcode": 40001})
    harness.wechat.script = []
    for _ in range(4):  # run into the budget
        invoke({"app_id": APP, "force": True})
    tokens += harness.wechat.issued
    handler._service = None

    captured = capsys.readouterr()
    outputs = {
        "logs": caplog.text,
        "stdout": captured.out,
        "stderr": captured.err,
        "results and exceptions": "\n".join(seen),
    }
    assert "budget" in outputs["results and exceptions"], "the budget path was reached"
    for where, text in outputs.items():
        assert SECRET not in text, f"the secret leaked into {where}"
        for token in tokens:
            assert token not in text, f"a token leaked into {where}"
        assert "secret=S" not in text
