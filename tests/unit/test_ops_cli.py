"""The operators' command line (``wechat_token_ops``, not in the layer): ``wechat-token
status`` and ``wechat-token refresh``.

The fixture table below is the one docs/status.md shows: one healthy credential, one about
to expire with a live lease and most of its budget spent, one expired with a current error,
and one that never got a value.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from wechat_token.record import CredentialRecord, fingerprint
from wechat_token_ops.cli import main
from wechat_token_ops.render import human_duration
from wechat_token_ops.status import ERROR, OK, WARN, classify, has_current_error

from local_aws.resources import create_token_table
from scripts.local_invoke import load_template

ROOT = Path(__file__).resolve().parents[2]
TABLE = "wechat-token-cli"
NOW = 1_790_000_000.0  # 2026-09-21T14:13:20Z, 22:13:20 in WeChat's day (UTC+8)
TODAY = "2026-09-21"

APP_A = "wx1111111111111111"
APP_B = "wx2222222222222222"
APP_C = "wx3333333333333333"

# Token-like values: none of them may ever appear in the command's output.
TOKEN_A = "84_TOKEN-A-current-" + "a" * 100
TOKEN_A_OLD = "84_TOKEN-A-previous-" + "o" * 100
TICKET_A = "TICKET-A-current-" + "t" * 60
TOKEN_B = "84_TOKEN-B-current-" + "b" * 100
SECRETS = (TOKEN_A, TOKEN_A_OLD, TICKET_A, TOKEN_B)

ESC = "\x1b["
RED = "\x1b[31m"
YELLOW = "\x1b[33m"


def _n(value: float) -> Decimal:
    return Decimal(str(round(value, 3)))


HEALTHY = {
    "app_id": APP_A,
    "kind": "access_token",
    "value": TOKEN_A,
    "previous_value": TOKEN_A_OLD,
    "fetched_at": _n(NOW - 12 * 60),
    "expires_at": _n(NOW - 12 * 60 + 7200 - 300),
    "previous_valid_until": _n(NOW - 12 * 60 + 180),
    "version": 42,
    "source": "/cgi-bin/stable_token",
    "last_success_at": _n(NOW - 12 * 60),
    "calls_day": TODAY,
    "calls_count": 3,
}
EXPIRING = {
    "app_id": APP_A,
    "kind": "jsapi_ticket",
    "value": TICKET_A,
    "fetched_at": _n(NOW - 6360),
    "expires_at": _n(NOW + 18 * 60 + 20),
    "version": 17,
    "source": "/cgi-bin/ticket/getticket",
    "last_success_at": _n(NOW - 6360),
    "lease_owner": "3f6c1a2e-7d41-4c55-9a0e-5b8f2c7d9e10:4b5a69788796",
    "lease_until": _n(NOW + 45),
    "calls_day": TODAY,
    "calls_count": 850,
}
EXPIRED = {
    "app_id": APP_B,
    "kind": "access_token",
    "value": TOKEN_B,
    "fetched_at": _n(NOW - 7080),
    "expires_at": _n(NOW - 180),
    "version": 9,
    "source": "/cgi-bin/stable_token",
    "last_success_at": _n(NOW - 7080),
    "last_error_code": "40164",
    # As the refresher words it: WeChat's errmsg in parentheses, then what to do.
    "last_error_message": "WeChat /cgi-bin/stable_token refused app 'wx2222222222222222' with "
    "40164 (invalid ip 203.0.113.7 ipv6 ::ffff:203.0.113.7, not in whitelist rid: "
    "66f2a1b0-1c2d3e4f): the refresher's egress IP is not on the app's IP whitelist: give the "
    "refresher a fixed egress IP (NAT gateway, see the README) and add it to the whitelist",
    "last_error_at": _n(NOW - 240),
    "calls_day": TODAY,
    "calls_count": 4,
}
NO_VALUE = {
    "app_id": APP_C,
    "kind": "access_token",
    "last_error_code": "40125",
    "last_error_message": "WeChat /cgi-bin/stable_token refused app 'wx3333333333333333' with "
    "40125 (invalid appsecret rid: 66f2a1c4-0b1a2c3d): invalid AppSecret: copy the current "
    "AppSecret into the registry secret",
    "last_error_at": _n(NOW - 60),
    "calls_day": TODAY,
    "calls_count": 1,
}
FIXTURE = (HEALTHY, EXPIRING, EXPIRED, NO_VALUE)

EXPECTED_TABLE = """\
STATUS  APP                 KIND          FINGERPRINT        AGE         EXPIRES IN         PREV GRACE       LAST SUCCESS    LAST ERROR                                                  CALLS TODAY  LEASE
OK      wx1111111111111111  access_token  {fp_a}  12 min      1 h 43 min         ended 9 min ago  12 min ago      -                                                           3/1000       -
WARN    wx1111111111111111  jsapi_ticket  {fp_t}  1 h 46 min  18 min             -                1 h 46 min ago  -                                                           850/1000     3f6c1a2e-7d41-4c55-9a0e-5b8f2c7d9e10:4b5a69788796 (45 s left)
ERROR   wx2222222222222222  access_token  {fp_b}  1 h 58 min  expired 3 min ago  -                1 h 58 min ago  40164 invalid ip 203.0.113.7 ipv6 ::ffff:20... (4 min ago)  4/1000       -
ERROR   wx3333333333333333  access_token  -                  -           no value           -                never           40125 invalid appsecret rid: 66f2a1c4-0b1a2c3d (1 min ago)  1/1000       -

4 credential(s) in table 'wechat-token-cli': 1 ok, 1 warn, 2 error. WeChat day 2026-09-21 (UTC+8), budget 1000 calls per credential, checked 2026-09-21T14:13:20Z.

Needs attention:
- wx2222222222222222/access_token: expired 3 min ago; last error 40164 4 min ago: WeChat /cgi-bin/stable_token refused app 'wx2222222222222222' with 40164 (invalid ip 203.0.113.7 ipv6 ::ffff:203.0.113.7, not in whitelist rid: 66f2a1b0-1c2d3e4f): the refresher's egress IP is not on the app's IP whitelist: give the refresher a fixed egress IP (NAT gateway, see the README) and add it to the whitelist
- wx3333333333333333/access_token: no value stored; last error 40125 1 min ago: WeChat /cgi-bin/stable_token refused app 'wx3333333333333333' with 40125 (invalid appsecret rid: 66f2a1c4-0b1a2c3d): invalid AppSecret: copy the current AppSecret into the registry secret"""  # noqa: E501


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


class ScanSpy:
    """Wraps a DynamoDB client: records every Scan request and forces small pages."""

    def __init__(self, client: Any, page_size: int = 1) -> None:
        self.client = client
        self.page_size = page_size
        self.requests: list[dict[str, Any]] = []
        self.items: list[dict[str, Any]] = []

    def scan(self, **kwargs: Any) -> Any:
        self.requests.append(dict(kwargs))
        page = self.client.scan(**kwargs, Limit=self.page_size)
        self.items.extend(page.get("Items", []))
        return page


class FakeLambda:
    """Stands in for the Lambda client: records invocations, answers a scripted body."""

    def __init__(self, body: Any, function_error: str | None = None) -> None:
        self.body = body
        self.function_error = function_error
        self.calls: list[dict[str, Any]] = []

    def invoke(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        response: dict[str, Any] = {
            "StatusCode": 200,
            "Payload": io.BytesIO(json.dumps(self.body).encode()),
        }
        if self.function_error is not None:
            response["FunctionError"] = self.function_error
        return response


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TOKEN_TABLE_NAME", "DAILY_CALL_BUDGET", "NO_COLOR", "REFRESHER_FUNCTION_NAME"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def dynamodb() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_token_table(client, TABLE)
        yield client


def put(*items: dict[str, Any]) -> None:
    table = boto3.resource("dynamodb", region_name="us-east-1").Table(TABLE)
    for item in items:
        table.put_item(Item=item)


def run(
    argv: list[str], *, stdout: io.StringIO | None = None, now: float = NOW, **kwargs: Any
) -> tuple[int, str, str]:
    out = stdout if stdout is not None else io.StringIO()
    err = io.StringIO()
    code = main(argv, now=now, stdout=out, stderr=err, **kwargs)
    return code, out.getvalue(), err.getvalue()


def status(dynamodb: Any, *args: str, **kwargs: Any) -> tuple[int, str, str]:
    return run(["status", "--table", TABLE, *args], dynamodb=dynamodb, **kwargs)


def record(**fields: Any) -> CredentialRecord:
    return CredentialRecord(**{"app_id": APP_A, **fields})


# --- status: the table ----------------------------------------------------------------------


def test_table_off_a_terminal_is_plain_text_with_stable_columns(dynamodb: Any) -> None:
    put(*FIXTURE)
    code, out, err = status(dynamodb)
    expected = EXPECTED_TABLE.format(
        fp_a=fingerprint(TOKEN_A), fp_t=fingerprint(TICKET_A), fp_b=fingerprint(TOKEN_B)
    )
    assert out == expected + "\n"
    assert ESC not in out
    assert err == ""
    assert code == 1


def test_exit_0_when_every_credential_is_usable_even_with_warnings(dynamodb: Any) -> None:
    put(HEALTHY, EXPIRING)
    code, out, _ = status(dynamodb)
    assert code == 0
    assert "1 ok, 1 warn, 0 error" in out


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        (EXPIRED, 1),
        (NO_VALUE, 1),
        # A valid token whose latest refresh failed: consumers are fine for now, the
        # refresher is not, and the operator should know before the token runs out.
        ({**HEALTHY, "last_error_code": "-1", "last_error_at": _n(NOW - 60)}, 1),
        ({**HEALTHY, "last_error_code": "-1", "last_error_at": _n(NOW - 3600)}, 0),
    ],
    ids=["expired", "no_value", "error_after_success", "error_before_success"],
)
def test_exit_code(dynamodb: Any, item: dict[str, Any], expected: int) -> None:
    put(HEALTHY, item)
    assert status(dynamodb)[0] == expected


def test_an_empty_table_is_not_healthy(dynamodb: Any) -> None:
    code, out, _ = status(dynamodb)
    assert code == 1
    assert out.startswith(f"No credentials in table '{TABLE}'")


def test_the_refreshers_bookkeeping_rows_are_not_credentials(dynamodb: Any) -> None:
    put(HEALTHY)
    dynamodb.put_item(
        TableName=TABLE,
        Item={"app_id": {"S": "planner#main"}, "kind": {"S": "state"}, "revision": {"S": "r"}},
    )
    dynamodb.put_item(
        TableName=TABLE,
        Item={
            "app_id": {"S": "rate#deployment"},
            "kind": {"S": "1790000000"},
            "calls_count": {"N": "4"},
            "expires_ttl": {"N": "1790003600"},
        },
    )
    code, out, err = status(dynamodb)
    assert code == 0, err
    assert "planner#" not in out
    assert "rate#" not in out


def test_app_filter(dynamodb: Any) -> None:
    put(*FIXTURE)
    code, out, _ = status(dynamodb, "--app", APP_A)
    lines = out.splitlines()
    assert [line.split()[1] for line in lines[1:3]] == [APP_A, APP_A]
    assert APP_B not in out
    assert APP_C not in out
    assert code == 0
    code, out, _ = status(dynamodb, "--app", APP_B, "--json")
    assert [c["app_id"] for c in json.loads(out)["credentials"]] == [APP_B]
    assert code == 1


def test_an_app_with_no_credential_exits_1(dynamodb: Any) -> None:
    put(*FIXTURE)
    code, out, _ = status(dynamodb, "--app", "wx-misspelt")
    assert code == 1
    assert "No credentials for app 'wx-misspelt'" in out


def test_budget_from_flag_and_env(dynamodb: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    put(HEALTHY)
    assert "3/1000" in status(dynamodb)[1]
    monkeypatch.setenv("DAILY_CALL_BUDGET", "500")
    assert "3/500" in status(dynamodb)[1]
    assert "3/200" in status(dynamodb, "--budget", "200")[1]
    # 3 calls of a budget of 3 is above 80 %: a warning, not a failure.
    code, out, _ = status(dynamodb, "--budget", "3", "--json")
    assert json.loads(out)["credentials"][0]["warnings"] == ["budget"]
    assert code == 0


def test_scan_is_paginated_consistent_and_never_reads_the_previous_token(dynamodb: Any) -> None:
    put(*FIXTURE)
    spy = ScanSpy(dynamodb, page_size=1)
    code, out, _ = status(spy, "--json")
    assert len(json.loads(out)["credentials"]) == 4
    assert len(spy.requests) >= 4
    assert all(request["ConsistentRead"] is True for request in spy.requests)
    assert all("ExclusiveStartKey" in request for request in spy.requests[1:])
    assert spy.items
    assert all("previous_value" not in item for item in spy.items)
    assert code == 1


# --- status --json --------------------------------------------------------------------------


def test_json_shape(dynamodb: Any) -> None:
    put(*FIXTURE)
    code, out, _ = status(dynamodb, "--json")
    data = json.loads(out)
    assert code == 1
    assert data["table"] == TABLE
    assert data["checked_at"] == "2026-09-21T14:13:20Z"
    assert data["wechat_day"] == TODAY
    assert data["budget"] == 1000
    assert data["healthy"] is False
    by_key = {(c["app_id"], c["kind"]): c for c in data["credentials"]}
    assert list(by_key) == [
        (APP_A, "access_token"),
        (APP_A, "jsapi_ticket"),
        (APP_B, "access_token"),
        (APP_C, "access_token"),
    ]
    healthy = by_key[(APP_A, "access_token")]
    assert healthy == {
        "app_id": APP_A,
        "kind": "access_token",
        "status": OK,
        "problems": [],
        "warnings": [],
        "fingerprint": fingerprint(TOKEN_A),
        "version": 42,
        "source": "/cgi-bin/stable_token",
        "fetched_at": "2026-09-21T14:01:20Z",
        "age_seconds": 720.0,
        "expires_at": "2026-09-21T15:56:20Z",
        "expires_in_seconds": 6180.0,
        "previous_fingerprint": None,
        "previous_valid_until": "2026-09-21T14:04:20Z",
        "previous_valid_for_seconds": -540.0,
        "last_success_at": "2026-09-21T14:01:20Z",
        "last_error": None,
        "calls_today": 3,
        "consumer_calls_today": 0,
        "budget": 1000,
        "budget_used": 0.003,
        "triggered_at": None,
        "trigger_failures": 0,
        "lease": None,
    }
    expiring = by_key[(APP_A, "jsapi_ticket")]
    assert expiring["status"] == WARN
    assert expiring["warnings"] == ["expires_soon", "budget"]
    assert expiring["lease"] == {
        "owner": EXPIRING["lease_owner"],
        "until": "2026-09-21T14:14:05Z",
        "remaining_seconds": 45.0,
    }
    expired = by_key[(APP_B, "access_token")]
    assert expired["status"] == ERROR
    assert expired["problems"] == ["expired", "last_error"]
    assert expired["expires_in_seconds"] == -180.0
    assert expired["last_error"] == {
        "code": "40164",
        "class": None,
        "message": EXPIRED["last_error_message"],
        "at": "2026-09-21T14:09:20Z",
        "current": True,
    }
    missing = by_key[(APP_C, "access_token")]
    assert missing["problems"] == ["missing_value", "last_error"]
    assert missing["fingerprint"] is None
    assert missing["expires_at"] is None
    assert missing["expires_in_seconds"] is None
    assert missing["last_success_at"] is None


def test_json_is_healthy_when_nothing_is_wrong(dynamodb: Any) -> None:
    put(HEALTHY, EXPIRING)
    code, out, _ = status(dynamodb, "--json")
    assert json.loads(out)["healthy"] is True
    assert code == 0


def test_json_and_table_show_the_records_newer_fields(dynamodb: Any) -> None:
    put(
        {
            **EXPIRED,
            "previous_fingerprint": fingerprint(TOKEN_A_OLD),
            "last_error_class": "configuration",
            "consumer_calls_day": TODAY,
            "consumer_calls_count": 2,
            "triggered_at": _n(NOW - 90),
            "trigger_failures": 3,
        }
    )
    code, out, _ = status(dynamodb, "--json")
    [credential] = json.loads(out)["credentials"]
    assert code == 1
    assert credential["previous_fingerprint"] == fingerprint(TOKEN_A_OLD)
    assert credential["last_error"]["class"] == "configuration"
    assert credential["consumer_calls_today"] == 2
    assert credential["triggered_at"] == "2026-09-21T14:11:50Z"
    assert credential["trigger_failures"] == 3
    _, out, _ = status(dynamodb)
    attention = out.split("Needs attention:\n")[1]
    assert "last error 40164 (configuration) 4 min ago: WeChat /cgi-bin/stable_token" in attention
    assert "3 forced or passive refresh(es) failed since the last success" in attention


def test_a_record_that_does_not_match_the_schema_exits_2(dynamodb: Any) -> None:
    put({**HEALTHY, "version": "forty-two"})
    code, out, err = status(dynamodb)
    assert code == 2
    assert out == ""
    assert "does not match this version's schema" in err
    assert TOKEN_A not in err


# --- calls today, in WeChat's day -----------------------------------------------------------


# 2026-09-21T16:00:00Z is midnight in UTC+8: WeChat's 22nd starts while UTC is on the 21st.
MIDNIGHT_UTC8 = 1_790_006_400.0


@pytest.mark.parametrize(
    ("calls_day", "now", "expected"),
    [
        ("2026-09-21", MIDNIGHT_UTC8 - 1, 7),  # 23:59:59 in UTC+8: still the 21st
        ("2026-09-21", MIDNIGHT_UTC8, 0),  # 00:00:00 in UTC+8: yesterday's count
        ("2026-09-22", MIDNIGHT_UTC8, 7),  # the UTC date is still the 21st
        ("2026-09-22", MIDNIGHT_UTC8 - 1, 0),
    ],
)
def test_calls_today_follow_wechats_day(
    dynamodb: Any, calls_day: str, now: float, expected: int
) -> None:
    put({**HEALTHY, "calls_day": calls_day, "calls_count": 7})
    _, out, _ = status(dynamodb, "--json", now=now)
    assert json.loads(out)["credentials"][0]["calls_today"] == expected
    _, out, _ = status(dynamodb, now=now)
    assert f" {expected}/1000 " in out


# --- classification and colour --------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "level", "problems", "warnings"),
    [
        ({"value": "t", "expires_at": NOW + 3600}, OK, (), ()),
        ({"value": "t", "expires_at": NOW + 1799}, WARN, (), ("expires_soon",)),
        ({"value": "t", "expires_at": NOW + 1800}, OK, (), ()),
        ({"value": "t", "expires_at": NOW}, ERROR, ("expired",), ()),
        ({"value": "t"}, ERROR, ("missing_value",), ()),
        ({"value": "", "expires_at": NOW + 3600}, ERROR, ("missing_value",), ()),
        ({"expires_at": NOW + 3600}, ERROR, ("missing_value",), ()),
        (
            {"value": "t", "expires_at": NOW + 3600, "calls_day": TODAY, "calls_count": 801},
            WARN,
            (),
            ("budget",),
        ),
        (
            {"value": "t", "expires_at": NOW + 3600, "calls_day": TODAY, "calls_count": 800},
            OK,
            (),
            (),
        ),
        (
            {"value": "t", "expires_at": NOW + 3600, "calls_day": "2026-09-20", "calls_count": 999},
            OK,
            (),
            (),
        ),
        (
            {
                "value": "t",
                "expires_at": NOW + 600,
                "last_success_at": NOW - 100,
                "last_error_code": "45009",
                "last_error_at": NOW - 50,
            },
            ERROR,
            ("last_error",),
            ("expires_soon",),
        ),
    ],
)
def test_classify(
    fields: dict[str, Any], level: str, problems: tuple[str, ...], warnings: tuple[str, ...]
) -> None:
    health = classify(record(**fields), NOW, 1000)
    assert (health.level, health.problems, health.warnings) == (level, problems, warnings)


@pytest.mark.parametrize(
    ("fields", "current"),
    [
        ({}, False),
        ({"last_error_code": "-1", "last_error_at": NOW}, True),  # never succeeded
        ({"last_error_code": "-1", "last_error_at": NOW, "last_success_at": NOW - 1}, True),
        ({"last_error_code": "-1", "last_error_at": NOW - 1, "last_success_at": NOW}, False),
        ({"last_error_code": "-1", "last_success_at": NOW}, True),  # no time: assume current
    ],
)
def test_has_current_error(fields: dict[str, Any], current: bool) -> None:
    assert has_current_error(record(**fields)) is current


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0 s"),
        (59.9, "59 s"),
        (60, "1 min"),
        (12 * 60 + 59, "12 min"),
        (3600, "1 h"),
        (6900, "1 h 55 min"),
        (-180, "3 min"),
        (86400 + 3 * 3600 + 5, "1 d 3 h"),
    ],
)
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


def _line(out: str, app: str, kind: str) -> str:
    return next(line for line in out.splitlines() if app in line and kind in line)


def test_colour_when_forced(dynamodb: Any) -> None:
    put(*FIXTURE)
    _, out, _ = status(dynamodb, "--color", "always")
    expired = _line(out, APP_B, "access_token")
    assert f"{RED}expired 3 min ago" in expired
    assert f"{RED}40164 invalid ip 203.0.113.7" in expired
    assert f"{RED}ERROR" in expired
    missing = _line(out, APP_C, "access_token")
    assert f"{RED}no value" in missing
    expiring = _line(out, APP_A, "jsapi_ticket")
    assert f"{YELLOW}18 min" in expiring
    assert f"{YELLOW}850/1000" in expiring
    assert f"{YELLOW}WARN" in expiring
    healthy = _line(out, APP_A, "access_token")
    assert RED not in healthy
    assert YELLOW not in healthy
    # Colour marks the text, not its padding: stripped of escapes, the table is the plain one.
    _, plain, _ = status(dynamodb, "--color", "never")
    assert _strip_ansi(out) == plain


def _strip_ansi(text: str) -> str:
    import re  # noqa: PLC0415

    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def test_colour_auto_needs_a_terminal_and_no_no_color(
    dynamodb: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    put(*FIXTURE)
    assert ESC not in status(dynamodb)[1]
    assert ESC in status(dynamodb, stdout=FakeTTY())[1]
    assert ESC not in status(dynamodb, "--color", "never", stdout=FakeTTY())[1]
    monkeypatch.setenv("NO_COLOR", "1")
    assert ESC not in status(dynamodb, stdout=FakeTTY())[1]
    assert ESC in status(dynamodb, "--color", "always")[1]


def test_json_never_has_colour(dynamodb: Any) -> None:
    put(*FIXTURE)
    _, out, _ = status(dynamodb, "--json", "--color", "always", stdout=FakeTTY())
    assert ESC not in out
    json.loads(out)


# --- configuration and usage errors ---------------------------------------------------------


def test_missing_table_is_a_clear_usage_error() -> None:
    code, out, err = run(["status"])
    assert code == 2
    assert out == ""
    assert "TOKEN_TABLE_NAME" in err
    assert "--table" in err


def test_table_from_env(dynamodb: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    put(HEALTHY)
    monkeypatch.setenv("TOKEN_TABLE_NAME", TABLE)
    code, out, _ = run(["status"], dynamodb=dynamodb)
    assert code == 0
    assert APP_A in out


def test_unknown_table_exits_2_and_names_the_permission(dynamodb: Any) -> None:
    code, out, err = run(["status", "--table", "no-such-table"], dynamodb=dynamodb)
    assert code == 2
    assert out == ""
    assert "no-such-table" in err
    assert "dynamodb:Scan" in err


@pytest.mark.parametrize("budget", ["0", "lots", "-5"])
def test_bad_budget_env_exits_2(
    dynamodb: Any, monkeypatch: pytest.MonkeyPatch, budget: str
) -> None:
    monkeypatch.setenv("DAILY_CALL_BUDGET", budget)
    code, _, err = status(dynamodb)
    assert code == 2
    assert "DAILY_CALL_BUDGET" in err


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["frobnicate"],
        ["status", "--budget", "0"],
        ["status", "--color", "pink"],
        ["refresh"],
        ["refresh", APP_A, "--kind", "session_key"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert run(argv)[0] == 2
    assert "usage: wechat-token" in capsys.readouterr().err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["status", "--help"])[0] == 0
    assert "dynamodb:Scan" in capsys.readouterr().out


# --- refresh --------------------------------------------------------------------------------

SUMMARY: dict[str, Any] = {
    "credentials": [
        {
            "app_id": APP_A,
            "kind": "access_token",
            "outcome": "refreshed",
            "version": 43,
            "fingerprint": "sha256:0a1b2c3d4e",
            "expires_at": "2026-09-21T16:08:20Z",
            "wechat_calls": 1,
            "calls_today": 4,
            "budget": 1000,
            "foreign_rotation": False,
        }
    ],
    "failed": 0,
    "refreshed": 1,
    "foreign_rotations": 0,
}


def test_refresh_invokes_the_refresher_synchronously() -> None:
    fake = FakeLambda(SUMMARY)
    code, out, err = run(
        ["refresh", APP_A, "--function", "wechat-token-RefresherFunction"], lambda_client=fake
    )
    assert code == 0
    assert err == ""
    [call] = fake.calls
    assert call["FunctionName"] == "wechat-token-RefresherFunction"
    assert call["InvocationType"] == "RequestResponse"
    assert json.loads(call["Payload"]) == {"app_id": APP_A, "kind": "access_token", "force": True}
    header, row = out.splitlines()
    assert header.split("  ")[0] == "APP"
    assert row.split() == [
        APP_A,
        "access_token",
        "refreshed",
        "sha256:0a1b2c3d4e",
        "2026-09-21T16:08:20Z",
        "1",
        "-",
    ]


def test_refresh_kind_and_function_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFRESHER_FUNCTION_NAME", "from-env")
    fake = FakeLambda(SUMMARY)
    code, out, _ = run(["refresh", APP_A, "--kind", "jsapi_ticket", "--json"], lambda_client=fake)
    assert code == 0
    assert fake.calls[0]["FunctionName"] == "from-env"
    assert json.loads(fake.calls[0]["Payload"])["kind"] == "jsapi_ticket"
    data = json.loads(out)
    assert data["ok"] is True
    assert data["function"] == "from-env"
    assert data["credentials"][0]["outcome"] == "refreshed"
    assert data["credentials"][0]["fingerprint"] == "sha256:0a1b2c3d4e"


def test_refresh_function_error_shows_the_error_message_and_exits_1() -> None:
    body = {
        "errorType": "RefreshFailedError",
        "errorMessage": "1 of 1 credential(s) failed to refresh (wx1111111111111111/access_token:"
        " 40164); stored tokens were left untouched.",
        "stackTrace": ["  File ..."],
    }
    fake = FakeLambda(body, function_error="Unhandled")
    code, out, err = run(["refresh", APP_A, "--function", "f"], lambda_client=fake)
    assert code == 1
    assert out == ""
    assert "RefreshFailedError: 1 of 1 credential(s) failed to refresh" in err
    assert "40164" in err
    assert "stackTrace" not in err
    code, out, _ = run(["refresh", APP_A, "--function", "f", "--json"], lambda_client=fake)
    assert code == 1
    data = json.loads(out)
    assert data["ok"] is False
    assert data["error"].startswith("RefreshFailedError: 1 of 1")


def test_refresh_without_a_function_name_exits_2() -> None:
    fake = FakeLambda(SUMMARY)
    code, _, err = run(["refresh", APP_A], lambda_client=fake)
    assert code == 2
    assert "REFRESHER_FUNCTION_NAME" in err
    assert fake.calls == []


@pytest.mark.parametrize("app_id", ["", "   "])
def test_refresh_needs_an_app_id(app_id: str) -> None:
    # The refresher refuses a forced refresh of every app; the command never sends one.
    fake = FakeLambda(SUMMARY)
    code, out, err = run(["refresh", app_id, "--function", "f"], lambda_client=fake)
    assert code == 2
    assert out == ""
    assert "app_id" in err
    assert fake.calls == []


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        ("refreshed", 0),
        ("lease_held", 0),
        ("failed", 1),
        ("configuration_hold", 1),
        ("deadline", 1),
    ],
)
def test_refresh_exit_code_follows_the_refreshers_failed_outcomes(
    outcome: str, expected: int
) -> None:
    summary = {"credentials": [{**SUMMARY["credentials"][0], "outcome": outcome}]}
    code, out, _ = run(["refresh", APP_A, "--function", "f"], lambda_client=FakeLambda(summary))
    assert code == expected
    assert outcome in out


def test_refresh_that_cannot_invoke_exits_2() -> None:
    class Denied:
        def invoke(self, **kwargs: Any) -> Any:
            raise PermissionError("AccessDeniedException: not authorized")

    code, _, err = run(["refresh", APP_A, "--function", "f"], lambda_client=Denied())
    assert code == 2
    assert "lambda:InvokeFunction" in err


# --- never a token --------------------------------------------------------------------------


def test_no_token_or_secret_appears_in_any_output(dynamodb: Any) -> None:
    leaky_error = {
        **HEALTHY,
        "app_id": "wx4444444444444444",
        "last_error_code": "-1",
        "last_error_at": _n(NOW),
        # A message that (against the refresher's contract) echoes a URL and the token.
        "last_error_message": f"GET /cgi-bin/x?access_token={TOKEN_A} failed for {TOKEN_A}",
    }
    put(*FIXTURE, leaky_error)
    outputs: list[str] = []
    for args in ([], ["--json"], ["--color", "always"], ["--app", APP_A], ["--budget", "1"]):
        _, out, err = status(dynamodb, *args)
        outputs += [out, err]
    leaky_summary = {
        "credentials": [{**SUMMARY["credentials"][0], "value": TOKEN_A}],
    }
    for summary, error in ((leaky_summary, None), ({"errorMessage": f"secret={TOKEN_B}"}, "U")):
        for extra in ([], ["--json"]):
            fake = FakeLambda(summary, function_error=error)
            _, out, err = run(["refresh", APP_A, "--function", "f", *extra], lambda_client=fake)
            outputs += [out, err]
    text = "\n".join(outputs)
    assert fingerprint(TOKEN_A) in text
    for secret in SECRETS:
        assert secret not in text
        assert secret[:24] not in text


# --- the module, the console entry, and the layer without it --------------------------------


def _python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("TOKEN_TABLE_NAME", "REFRESHER_FUNCTION_NAME")
    }
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "layers" / "wechat_token"), str(ROOT / "tools")]
    )
    return subprocess.run(
        [sys.executable, *([code] if code == "-m" else ["-c", code]), *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_python_dash_m_runs_the_cli() -> None:
    result = _python("-m", "wechat_token_ops", "status")
    assert result.returncode == 2
    assert "TOKEN_TABLE_NAME" in result.stderr
    result = _python("-m", "wechat_token_ops", "--help")
    assert result.returncode == 0
    assert "status" in result.stdout
    assert "refresh" in result.stdout


def test_importing_stays_cheap() -> None:
    result = _python(
        "import sys, wechat_token; assert not any(m.startswith('wechat_token_ops') "
        "or m == 'rich' for m in sys.modules); "
        "import wechat_token_ops.cli; "
        "print(sorted(m for m in ('boto3', 'botocore', 'httpx') if m in sys.modules))"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_console_script_is_the_ops_package() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    assert 'wechat-token = "wechat_token_ops.cli:main"' in text


LAYER_SOURCE = ROOT / "layers" / "wechat_token"


def test_the_layer_holds_no_cli_code() -> None:
    # What sam build packs is the template's ContentUri: nothing of the CLI may be in it.
    layer = load_template(ROOT / "template.yaml")["Resources"]["WeChatTokenLayer"]
    assert (ROOT / layer["Properties"]["ContentUri"]).resolve() == LAYER_SOURCE.resolve()
    package = LAYER_SOURCE / "wechat_token"
    assert (package / "__init__.py").is_file()
    assert not (package / "cli.py").exists()
    assert not (package / "__main__.py").exists()
    assert not list(LAYER_SOURCE.rglob("wechat_token_ops"))
    for source in LAYER_SOURCE.rglob("*.py"):
        imported = _imported_modules(source)
        assert not {m for m in imported if m.split(".")[0] in ("rich", "wechat_token_ops")}, source
    requirements = (LAYER_SOURCE / "requirements.txt").read_text().lower()
    assert "rich" not in requirements


def _imported_modules(source: Path) -> set[str]:
    import ast  # noqa: PLC0415

    names: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text(), str(source))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


# --- authorize ------------------------------------------------------------------------------


def test_authorize_reads_the_code_from_stdin_and_never_prints_it() -> None:
    fake = FakeLambda(SUMMARY)
    out, err = io.StringIO(), io.StringIO()
    code = main(
        ["authorize", "wxcomponent0001", "--function", "refresher"],
        lambda_client=fake,  # type: ignore[arg-type]
        env={},
        stdout=out,
        stderr=err,
        stdin=io.StringIO("queryauthcode@@@secret-code\n"),
    )
    assert code == 0, err.getvalue()
    [call] = fake.calls
    assert json.loads(call["Payload"]) == {
        "app_id": "wxcomponent0001",
        "authorization_code": "queryauthcode@@@secret-code",
    }
    assert "secret-code" not in out.getvalue() + err.getvalue()


def test_authorize_without_a_code_is_a_usage_error_and_invokes_nothing() -> None:
    fake = FakeLambda(SUMMARY)
    err = io.StringIO()
    code = main(
        ["authorize", "wxcomponent0001", "--function", "refresher"],
        lambda_client=fake,  # type: ignore[arg-type]
        env={},
        stdout=io.StringIO(),
        stderr=err,
        stdin=io.StringIO(""),
    )
    assert code == 2
    assert "standard input" in err.getvalue()
    assert fake.calls == []
