"""What operators see: one JSON log line per credential and EMF metrics, never a token."""

from __future__ import annotations

import importlib
import json
import logging
from typing import Any

import pytest
from token_refresher.outcome import Outcome, RunSummary, Status
from token_refresher.telemetry import SERVICE, min_seconds_to_expiry
from wechat_token.record import CredentialKey

from .conftest import APP, BASE, SECRET, SECRET_ID, TABLE, Harness
from .test_handler import Context


def emitted(text: str) -> tuple[list[str], dict[str, float]]:
    """EMF blobs printed to stdout, and every metric's value (summed by name)."""
    blobs, metrics = [], {}
    for line in text.splitlines():
        if line.startswith('{"_aws"'):
            blobs.append(line)
            blob = json.loads(line)
            for directive in blob["_aws"]["CloudWatchMetrics"]:
                for metric in directive["Metrics"]:
                    value = blob[metric["Name"]]
                    values = value if isinstance(value, list) else [value]
                    metrics[metric["Name"]] = metrics.get(metric["Name"], 0) + sum(values)
    return blobs, metrics


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def records() -> Any:
    """Records of the Powertools logger itself (it does not propagate to the root logger)."""
    collector = Records()
    target = logging.getLogger(SERVICE)
    target.addHandler(collector)
    yield collector
    target.removeHandler(collector)


def logged(records: Records) -> list[dict[str, Any]]:
    """The structured fields of the per-credential log lines (Powertools renders them as JSON)."""
    return [
        {**record.__dict__, "level": record.levelname}
        for record in records.records
        if hasattr(record, "outcome")
    ]


@pytest.fixture
def handler(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("TOKEN_TABLE_NAME", TABLE)
    monkeypatch.setenv("WECHAT_APPS_SECRET_ID", SECRET_ID)
    monkeypatch.setenv("WECHAT_API_BASE_URL", BASE)
    module = importlib.import_module("app")
    module._service = None
    yield module
    module._service = None


def test_a_refresh_logs_structured_fields_and_emits_metrics(
    handler: Any,
    harness: Harness,
    capsys: pytest.CaptureFixture[str],
    records: Records,
) -> None:
    handler._service = harness.service()  # on the harness's clock
    handler.lambda_handler({}, Context())
    harness.clock.advance(3600)
    handler.lambda_handler({}, Context())
    _, metrics = emitted(capsys.readouterr().out)
    [line, *_] = logged(records)
    assert line["outcome"] == "refreshed"
    assert line["kind"] == "access_token"
    assert line["fingerprint"].startswith("sha256:")
    assert isinstance(line["duration_ms"], int)
    assert metrics["RefreshSuccess"] == 2
    assert metrics["WeChatCalls"] == 2
    assert metrics["TokenAgeAtRefresh"] == pytest.approx(3600)
    assert metrics["BudgetRemaining"] == 1000 - 1 + 1000 - 2
    assert metrics["MinSecondsToExpiry"] == pytest.approx(2 * (7200 - 300))
    # No stable app: its alarm's metric says a token's life, so that only silence alarms.
    assert metrics["MinStableSecondsToExpiry"] == 2 * 7200


def test_a_failure_is_counted_by_error_class_and_logged_as_an_error(
    handler: Any,
    harness: Harness,
    capsys: pytest.CaptureFixture[str],
    records: Records,
) -> None:
    harness.wechat.script = [{"errcode": 40164, "errmsg": "invalid ip"}]
    with pytest.raises(Exception, match="40164"):
        handler.lambda_handler({}, Context())
    out = capsys.readouterr().out
    _, metrics = emitted(out)
    [line] = [entry for entry in logged(records) if entry["outcome"] == "failed"]
    assert line["level"] == "ERROR"
    assert line["error"]["code"] == "40164"
    assert metrics["RefreshFailure"] == 1
    assert '"error_class":"configuration"' in out
    assert metrics["MinSecondsToExpiry"] == 0, "no stored token at all: consumers are failing"
    assert SECRET not in out


def test_foreign_rotation_and_passive_refresh_are_counted(
    handler: Any, harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    handler.lambda_handler({}, Context())
    first = harness.wechat.issued[0]
    harness.wechat.rejected.add(first)  # someone else fetched a token: WeChat says so
    handler.passive_handler({"app_id": APP, "stale_token": first, "errcode": 40001}, Context())
    out = capsys.readouterr().out
    _, metrics = emitted(out)
    assert metrics["ForeignRotation"] == 1
    assert metrics["PassiveRefresh"] == 1
    for token in harness.wechat.issued:
        assert token not in out


def test_stable_tokens_have_their_own_expiry_metric() -> None:
    """A stable token is renewed in its last 5 minutes: it must not pull the main metric
    down to a few minutes every two hours; its tickets are renewed like any other."""

    def outcome(app: str, kind: str, app_type: str, left: float) -> Outcome:
        return Outcome(
            CredentialKey(app, kind), Status.NOT_DUE, seconds_to_expiry=left, app_type=app_type
        )

    summary = RunSummary.of(
        [
            outcome("wxs", "access_token", "stable", 250.0),
            outcome("wxs", "jsapi_ticket", "stable", 4000.0),
            outcome("wxc", "access_token", "classic", 5000.0),
        ]
    )
    assert min_seconds_to_expiry(summary) == 4000.0
    assert min_seconds_to_expiry(summary, stable=True) == 250.0
    classic_only = RunSummary.of([outcome("wxc", "access_token", "classic", 5000.0)])
    assert min_seconds_to_expiry(classic_only, stable=True) is None
