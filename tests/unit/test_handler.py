"""The refresher's handler: event forms, configuration errors, the summary it returns."""

from __future__ import annotations

import importlib
import json
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from token_refresher.errors import EventError, RefreshFailedError, RegistryError, SettingsError
from wechat_token.record import fingerprint

from .conftest import APP, BASE, SECRET, SECRET_ID, TABLE, Harness

EVENTS = Path(__file__).resolve().parents[2] / "events"


class Context:
    aws_request_id = "req-1234"
    function_name = "RefresherFunction"
    function_version = "$LATEST"
    memory_limit_in_mb = "256"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:RefresherFunction"
    log_group_name = "/aws/lambda/RefresherFunction"
    log_stream_name = "2026/11/21/[$LATEST]abc"

    def __init__(self, remaining_ms: int = 300_000) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@pytest.fixture
def handler(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    monkeypatch.setenv("TOKEN_TABLE_NAME", TABLE)
    monkeypatch.setenv("WECHAT_APPS_SECRET_ID", SECRET_ID)
    monkeypatch.setenv("WECHAT_API_BASE_URL", BASE)
    module = importlib.import_module("app")
    module._service = None
    yield module
    module._service = None


def load_event(name: str) -> Any:
    return json.loads((EVENTS / name).read_text())


def test_the_scheduled_event_file_refreshes_every_app(
    handler: ModuleType, harness: Harness
) -> None:
    harness.set_registry({APP: {"secret": SECRET}, "wx2": {"secret": "other"}})
    summary = handler.lambda_handler(load_event("scheduled.json"), Context())
    assert summary["refreshed"] == 2
    assert summary["failed"] == 0
    assert {c["app_id"] for c in summary["credentials"]} == {APP, "wx2"}
    json.dumps(summary)  # JSON-serialisable as Lambda needs


def test_the_force_event_file_refreshes_its_app_now(
    handler: ModuleType, harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    event = load_event("force_refresh.json")
    harness.set_registry({event["app_id"]: {"secret": SECRET}})
    # The handler runs on real time: a token stored ten minutes ago is old enough to force.
    now = time.time()
    fetched, expires = Decimal(str(round(now - 600))), Decimal(str(round(now + 6000)))
    harness.put(
        {"app_id": event["app_id"], "kind": "access_token", "value": "OLD-TOKEN-0001",
         "fetched_at": fetched, "expires_at": expires, "version": 1}
    )  # fmt: skip
    summary = handler.lambda_handler(event, Context())
    assert summary["credentials"][0]["outcome"] == "refreshed"
    assert harness.wechat.calls == 1


def test_a_token_younger_than_the_minimum_age_is_not_forced(
    handler: ModuleType, harness: Harness
) -> None:
    handler.lambda_handler({}, Context())
    summary = handler.lambda_handler({"app_id": APP, "force": True}, Context())
    assert summary["credentials"][0]["outcome"] == "rate_limited"
    assert harness.wechat.calls == 1, "consumers still hold the young token: not evicted"


def test_a_forced_refresh_of_everything_is_refused(handler: ModuleType, harness: Harness) -> None:
    with pytest.raises(EventError, match='needs "app_id"'):
        handler.lambda_handler({"force": True}, Context())
    assert harness.wechat.calls == 0


def test_the_summary_names_the_token_only_by_fingerprint(
    handler: ModuleType, harness: Harness
) -> None:
    summary = handler.lambda_handler({}, Context())
    [credential] = summary["credentials"]
    text = json.dumps(summary)
    assert harness.wechat.issued[0] not in text
    assert SECRET not in text
    assert credential["fingerprint"].startswith("sha256:")
    assert credential["version"] == 1
    assert credential["wechat_calls"] == 1
    assert credential["calls_today"] == 1
    assert credential["budget"] == 1000


@pytest.mark.parametrize(
    ("event", "words"),
    [
        ([], "must be a JSON object"),
        ("refresh", "must be a JSON object"),
        ({"app_id": 5}, '"app_id" must be a non-empty string'),
        ({"app_id": ""}, '"app_id" must be a non-empty string'),
        ({"app_id": APP, "force": "yes"}, '"force" must be true or false'),
        ({"app_id": APP, "kind": "session_key", "force": True}, '"kind" must be one of'),
        ({"app_id": APP, "kind": "jsapi_ticket"}, '"kind" is only read with "force"'),
        ({"kind": "jsapi_ticket"}, '"kind" needs "app_id"'),
        ({"force": True}, 'needs "app_id"'),
        ({"types": ["ios"]}, '"types" must be a list'),
        ({"app_id": APP, "stale_token": "sha256:abc"}, "PassiveRefreshFunction"),
    ],
)
def test_malformed_events_are_refused_in_words(
    handler: ModuleType, harness: Harness, event: Any, words: str
) -> None:
    with pytest.raises(EventError, match=words.replace("(", r"\(")):
        handler.lambda_handler(event, Context())
    assert harness.wechat.calls == 0


@pytest.mark.parametrize(
    ("event", "words"),
    [
        ([], "must be a JSON object"),
        (None, "must be a JSON object"),
        ({}, '"stale_token" must be'),
        ({"app_id": APP}, '"stale_token" must be'),
        ({"stale_token": "sha256:abc"}, '"app_id" must be a non-empty string'),
        ({"app_id": APP, "stale_token": ""}, '"stale_token" must be'),
        ({"app_id": APP, "stale_token": "x", "errcode": "40001"}, '"errcode" must be'),
        ({"app_id": APP, "stale_token": "x", "kind": "session_key"}, '"kind" must be one of'),
        ({"app_id": APP, "stale_token": "x", "force": True}, "accepts only"),
        ({"app_id": APP, "force": True}, "never force or schedule"),
        ({"types": ["classic"]}, "accepts only"),
    ],
)
def test_the_consumer_entry_point_accepts_only_a_report(
    handler: ModuleType, harness: Harness, event: Any, words: str
) -> None:
    handler.lambda_handler({}, Context())
    with pytest.raises(EventError, match=words):
        handler.passive_handler(event, Context())
    assert harness.wechat.calls == 1, "only the scheduled run called WeChat"


def test_the_passive_event_file_is_a_report(handler: ModuleType, harness: Harness) -> None:
    event = load_event("passive.json")
    assert set(event) == {"app_id", "kind", "stale_token", "errcode"}
    harness.set_registry({event["app_id"]: {"secret": SECRET}})
    summary = handler.passive_handler(event, Context())
    [credential] = summary["credentials"]
    # Nothing is stored yet: a report on a missing token fetches one.
    assert credential["outcome"] == "refreshed"


def test_a_report_wechat_contradicts_rotates_nothing(handler: ModuleType, harness: Harness) -> None:
    handler.lambda_handler({}, Context())
    stale = fingerprint(harness.wechat.issued[0])
    report = {"app_id": APP, "kind": "access_token", "stale_token": stale, "errcode": 40001}
    summary = handler.passive_handler(report, Context())
    assert summary["credentials"][0]["outcome"] == "token_accepted"
    assert harness.wechat.calls == 1
    record = harness.record()
    assert record is not None
    assert record.foreign_rotations == 0


def test_an_unknown_app_is_named_with_the_known_ones(handler: ModuleType, harness: Harness) -> None:
    with pytest.raises(EventError) as caught:
        handler.lambda_handler({"app_id": "wxnope", "force": True}, Context())
    assert "'wxnope' is not in the registry secret" in str(caught.value)
    assert APP in str(caught.value)
    assert harness.wechat.calls == 0


@pytest.mark.parametrize("name", ["TOKEN_TABLE_NAME", "WECHAT_APPS_SECRET_ID"])
def test_a_missing_setting_is_named(
    handler: ModuleType, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.delenv(name)
    with pytest.raises(SettingsError, match=f"{name} is not set"):
        handler.lambda_handler({}, Context())


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("DAILY_CALL_BUDGET", "2500", "out of range"),
        ("DAILY_CALL_BUDGET", "lots", "not a number"),
        ("WECHAT_API_BASE_URL", "api.weixin.qq.com", "not an http"),
        ("REFRESH_INTERVAL_SECONDS", "6000", "shorter than a token's usable life"),
    ],
)
def test_a_malformed_setting_is_explained(
    handler: ModuleType, monkeypatch: pytest.MonkeyPatch, name: str, value: str, words: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=words):
        handler.lambda_handler({}, Context())


@pytest.mark.parametrize(
    ("registry", "words"),
    [
        ('{"wx1": {"secret": "' + SECRET + '"', "not valid JSON"),
        ('["wx1"]', "must be a JSON object"),
        ("{}", "lists no apps"),
    ],
)
def test_a_bad_registry_is_explained_without_the_secret(
    handler: ModuleType, harness: Harness, registry: str, words: str
) -> None:
    harness.secrets.delete_secret(SecretId=SECRET_ID, ForceDeleteWithoutRecovery=True)
    harness.set_registry(registry)  # the only version there is
    with pytest.raises(RegistryError) as caught:
        handler.lambda_handler({}, Context())
    assert words in str(caught.value)
    assert SECRET not in str(caught.value)
    assert harness.wechat.calls == 0


@pytest.mark.parametrize("registry", ['{"wx1": {"secret": "' + SECRET + '"', '["wx1"]', "{}"])
def test_a_broken_registry_falls_back_to_the_previous_version(
    handler: ModuleType, harness: Harness, registry: str
) -> None:
    harness.set_registry(registry)  # over the good version, which becomes AWSPREVIOUS
    summary = handler.lambda_handler({}, Context())
    assert summary["registry_fallback"] is True
    assert summary["refreshed"] == 1
    assert harness.record() is not None


@pytest.mark.parametrize(
    ("registry", "words"),
    [
        ('{"wx1": "' + SECRET + '"}', "must be an object"),
        ('{"wx1": {"secret": ""}}', '"secret" is missing'),
        ('{"wx1": {"secret": "' + SECRET + '", "type": "ios"}}', "type 'ios'"),
        ('{"wx1": {"secret": "' + SECRET + '", "scret": 1}}', "unknown field"),
        ('{"ww1": {"secret": "' + SECRET + '", "type": "wecom"}}', '"corpid"'),
        ('{"wx1": {"secret": "' + SECRET + '", "tickets": ["jsapi2"]}}', '"tickets"'),
    ],
)
def test_a_bad_entry_fails_that_entry_alone_without_the_secret(
    handler: ModuleType, harness: Harness, registry: str, words: str, capsys: Any
) -> None:
    entries = json.loads(registry)
    harness.set_registry({**entries, APP: {"secret": "good-one"}})
    with pytest.raises(RefreshFailedError) as caught:
        handler.lambda_handler({}, Context())
    assert "registry entry" in str(caught.value)
    assert SECRET not in str(caught.value)
    assert words in str(caught.value), "the error names the entry and the reason"
    assert SECRET not in capsys.readouterr().out
    assert harness.wechat.calls == 1, "the good entry was refreshed"
    assert harness.record() is not None


def test_two_entries_for_one_wechat_app_are_refused(handler: ModuleType, harness: Harness) -> None:
    harness.set_registry({APP: {"secret": SECRET}, "alias": {"appid": APP, "secret": SECRET}})
    with pytest.raises(RefreshFailedError, match="registry entry") as caught:
        handler.lambda_handler({}, Context())
    assert f"'alias' and '{APP}' are the same WeChat app" in str(caught.value)
    assert harness.wechat.calls == 1, "one token for one app: the entries cannot evict each other"
    assert (harness.record("alias") is None) != (harness.record(APP) is None)


def test_a_run_that_matches_nothing_is_not_an_error(handler: ModuleType, harness: Harness) -> None:
    harness.set_registry({APP: {"secret": SECRET}, "wxoff": {"secret": "x", "enabled": False}})
    summary = handler.lambda_handler({"types": ["stable"]}, Context())
    assert summary["credentials"] == []
    assert summary["failed"] == 0
    harness.set_registry({APP: {"secret": SECRET, "enabled": False}})
    handler._service = None  # a fresh environment: no cached registry
    assert handler.lambda_handler({}, Context())["total"] == 0


def test_a_missing_registry_secret_says_what_to_check(
    handler: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WECHAT_APPS_SECRET_ID", "no/such/secret")
    with pytest.raises(RegistryError, match=r"ResourceNotFoundException.*WECHAT_APPS_SECRET_ID"):
        handler.lambda_handler({}, Context())


def test_the_invocation_fails_after_trying_every_app(handler: ModuleType, harness: Harness) -> None:
    harness.set_registry(
        {"wxa": {"secret": "a"}, "wxbad": {"secret": "bad"}, "wxc": {"secret": "c"}}
    )
    harness.wechat.by_app["wxbad"] = {"errcode": 40164, "errmsg": "invalid ip 1.2.3.4"}
    with pytest.raises(RefreshFailedError) as caught:
        handler.lambda_handler({}, Context())
    message = str(caught.value)
    assert "1 of 3 credential(s) failed" in message
    assert "wxbad/access_token: 40164" in message
    assert harness.record("wxa") is not None
    assert harness.record("wxc") is not None
    record = harness.record("wxbad")
    assert record is not None
    assert record.last_error_code == "40164"


def test_the_lambda_deadline_bounds_retries(handler: ModuleType, harness: Harness) -> None:
    harness.wechat.script = [{"errcode": -1, "errmsg": "busy"}] * 10
    with pytest.raises(RefreshFailedError, match="deadline"):
        handler.lambda_handler({}, Context(remaining_ms=5_000))
    assert harness.wechat.calls == 0
