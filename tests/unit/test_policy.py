"""The pure policy: whether WeChat may be called now, as tables and properties (no moto)."""

from __future__ import annotations

import ast
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from token_refresher import policy
from token_refresher.errors import ErrorClass
from token_refresher.outcome import Status
from token_refresher.policy import Rules, Verdict, skip
from token_refresher.triggers import Forced, Passive, Scheduled, Trigger
from wechat_token.record import CredentialRecord, fingerprint, wechat_day

NOW = 1_790_000_000.0
RULES = Rules()
TOKEN = "TOKEN-current-0001"
STALE = fingerprint(TOKEN)


def record(age: float = 600.0, **fields: object) -> CredentialRecord:
    """A stored token fetched ``age`` seconds ago with the conservative 6900 s life."""
    fetched = NOW - age
    base = CredentialRecord(
        app_id="wx1", value=TOKEN, fetched_at=fetched, expires_at=fetched + 6900, version=3
    )
    return replace(base, **fields)  # type: ignore[arg-type]


def decide(rec: CredentialRecord, trigger: Trigger, **kw: object) -> Status | None:
    return skip(rec, trigger, NOW, RULES, app_type=str(kw.pop("app_type", "classic")), **kw)  # type: ignore[arg-type]


PASSIVE = Passive("wx1", stale=STALE, errcode=40001)


@pytest.mark.parametrize(
    ("rec", "trigger", "kw", "expected"),
    [
        # Scheduled: due by remaining life, per type.
        (CredentialRecord("wx1"), Scheduled(), {}, None),
        (record(age=600), Scheduled(), {}, Status.NOT_DUE),
        (record(age=2999), Scheduled(), {}, Status.NOT_DUE),
        (record(age=3001), Scheduled(), {}, None),
        # Stable: only once its overlap window opens (300 s of stored life left).
        (record(age=6500), Scheduled(), {"app_type": "stable"}, Status.NOT_DUE),
        (record(age=6601), Scheduled(), {"app_type": "stable"}, None),
        # ...and after WeChat handed out the same token, not before the next ask.
        (
            record(age=6700, renewable_at=NOW + 5),
            Scheduled(),
            {"app_type": "stable"},
            Status.NOT_DUE,
        ),
        (record(age=6700, renewable_at=NOW), Scheduled(), {"app_type": "stable"}, None),
        (record(age=600), Scheduled(), {"verdict": Verdict.REJECTED}, None),
        (record(age=600, bound_to="sha256:old"), Scheduled(), {"bound_to": "sha256:new"}, None),
        (
            record(age=600, bound_to="sha256:new"),
            Scheduled(),
            {"bound_to": "sha256:new"},
            Status.NOT_DUE,
        ),
        # A configuration error is not repeated by the schedule for 10 minutes.
        (
            record(age=4000, last_error_class="configuration", last_error_at=NOW - 60),
            Scheduled(),
            {},
            Status.CONFIGURATION_HOLD,
        ),
        (
            record(age=4000, last_error_class="configuration", last_error_at=NOW - 601),
            Scheduled(),
            {},
            None,
        ),
        (
            record(age=4000, last_error_class="busy", last_error_at=NOW - 60),
            Scheduled(),
            {},
            None,
        ),
        # Forced: minimum age, spacing by the last attempt (growing after failures).
        (record(age=119), Forced("wx1"), {}, Status.RATE_LIMITED),
        (record(age=121), Forced("wx1"), {}, None),
        (record(age=600, triggered_at=NOW - 59), Forced("wx1"), {}, Status.RATE_LIMITED),
        (record(age=600, triggered_at=NOW - 61), Forced("wx1"), {}, None),
        (
            record(age=600, triggered_at=NOW - 200, trigger_failures=2),
            Forced("wx1"),
            {},
            Status.RATE_LIMITED,
        ),
        (
            record(age=600, triggered_at=NOW - 241, trigger_failures=2),
            Forced("wx1"),
            {},
            None,
        ),
        (CredentialRecord("wx1"), Forced("wx1"), {}, None),
        # Forced ignores the configuration hold: an operator who fixed it tries at once.
        (
            record(age=600, last_error_class="configuration", last_error_at=NOW - 60),
            Forced("wx1"),
            {},
            None,
        ),
        # Passive: only on the stored token, verified by WeChat, spaced, capped.
        (record(), Passive("wx1", stale=fingerprint("other")), {}, Status.ALREADY_REPLACED),
        (record(), PASSIVE, {"verdict": Verdict.ACCEPTED}, Status.TOKEN_ACCEPTED),
        (record(), PASSIVE, {"verdict": Verdict.UNKNOWN}, Status.UNVERIFIED),
        (record(), PASSIVE, {}, Status.UNVERIFIED),
        (record(), PASSIVE, {"verdict": Verdict.REJECTED}, None),
        (record(age=30), PASSIVE, {"verdict": Verdict.REJECTED}, None),
        (record(age=7000), PASSIVE, {}, None),  # expired: nothing to protect
        (CredentialRecord("wx1"), PASSIVE, {}, None),
        (
            record(triggered_at=NOW - 30),
            PASSIVE,
            {"verdict": Verdict.REJECTED},
            Status.RATE_LIMITED,
        ),
        (
            record(consumer_calls_day=wechat_day(NOW), consumer_calls_count=100),
            PASSIVE,
            {"verdict": Verdict.REJECTED},
            Status.CONSUMER_CAP,
        ),
        (
            record(consumer_calls_day="2000-01-01", consumer_calls_count=100),
            PASSIVE,
            {"verdict": Verdict.REJECTED},
            None,
        ),
    ],
)
def test_decision_table(
    rec: CredentialRecord, trigger: Trigger, kw: dict[str, object], expected: Status | None
) -> None:
    assert decide(rec, trigger, **kw) == expected


triggers = st.one_of(
    st.builds(Scheduled),
    st.builds(Forced, app_id=st.just("wx1")),
    st.builds(
        Passive,
        app_id=st.just("wx1"),
        stale=st.sampled_from([STALE, fingerprint("other")]),
        errcode=st.sampled_from([40001, 40014, 42001, None]),
    ),
)
verdicts = st.sampled_from(list(Verdict))
records = st.builds(
    record,
    age=st.floats(0, 8000),
    triggered_at=st.one_of(st.none(), st.floats(NOW - 7200, NOW)),
    trigger_failures=st.integers(0, 40),
    consumer_calls_day=st.sampled_from([None, wechat_day(NOW)]),
    consumer_calls_count=st.integers(0, 200),
    last_error_class=st.sampled_from([None, *map(str, ErrorClass)]),
    last_error_at=st.one_of(st.none(), st.floats(NOW - 3600, NOW)),
)


@settings(max_examples=300, deadline=None)
@given(rec=records, trigger=triggers, verdict=verdicts)
def test_no_trigger_rotates_a_young_token_wechat_still_accepts(
    rec: CredentialRecord, trigger: Trigger, verdict: Verdict
) -> None:
    if rec.age(NOW) < RULES.min_age_seconds and verdict is not Verdict.REJECTED:
        assert decide(rec, trigger, verdict=verdict) is not None


@settings(max_examples=300, deadline=None)
@given(age=st.floats(0, 3000), trigger=st.just(Scheduled()))
def test_a_fresh_record_is_never_due(age: float, trigger: Trigger) -> None:
    assert decide(record(age=age), trigger) == Status.NOT_DUE


@settings(max_examples=300, deadline=None)
@given(rec=records, trigger=triggers)
def test_a_consumer_never_rotates_a_valid_token_without_wechats_rejection(
    rec: CredentialRecord, trigger: Trigger
) -> None:
    if isinstance(trigger, Passive) and rec.is_valid(NOW):
        for verdict in (Verdict.UNCHECKED, Verdict.ACCEPTED, Verdict.UNKNOWN):
            assert decide(rec, trigger, verdict=verdict) is not None


@settings(max_examples=300, deadline=None)
@given(rec=records, trigger=triggers, verdict=verdicts)
def test_consumers_never_spend_past_their_daily_share(
    rec: CredentialRecord, trigger: Trigger, verdict: Verdict
) -> None:
    if isinstance(trigger, Passive) and rec.consumer_calls_today(NOW) >= RULES.consumer_daily_cap:
        assert decide(rec, trigger, verdict=verdict) is not None


@settings(max_examples=200, deadline=None)
@given(failures=st.integers(0, 100))
def test_the_cool_down_grows_with_failures_and_is_bounded(failures: int) -> None:
    now_rec = record(trigger_failures=failures)
    more = record(trigger_failures=failures + 1)
    assert RULES.trigger_spacing_seconds <= RULES.cooldown(now_rec) <= RULES.max_cooldown_seconds
    assert RULES.cooldown(more) >= RULES.cooldown(now_rec)


@pytest.mark.parametrize(
    ("rec", "trigger", "app_type", "verdict", "expected"),
    [
        # Normal mode renews a stable token in its window: no force for the schedule...
        (record(age=6700), Scheduled(), "stable", Verdict.UNCHECKED, False),
        (record(age=6700), Scheduled(), "stable", Verdict.ACCEPTED, False),
        # ...nor for a consumer's report WeChat did not confirm, nor for an expired token.
        (record(age=600), PASSIVE, "stable", Verdict.UNKNOWN, False),
        (record(age=7000), PASSIVE, "stable", Verdict.UNCHECKED, False),
        # Only a token WeChat rejects, or an operator, forces.
        (record(age=600), PASSIVE, "stable", Verdict.REJECTED, True),
        (record(age=600), Scheduled(), "stable", Verdict.REJECTED, True),
        (record(age=600), Forced("wx1"), "stable", Verdict.UNCHECKED, True),
        # Never for classic or WeCom tokens, tickets, or a first fetch.
        (record(age=600), Forced("wx1"), "classic", Verdict.REJECTED, False),
        (record(age=600, kind="jsapi_ticket"), Forced("wx1"), "stable", Verdict.REJECTED, False),
        (CredentialRecord("wx1"), Forced("wx1"), "stable", Verdict.REJECTED, False),
    ],
)
def test_only_what_normal_mode_cannot_fix_forces_a_stable_token(
    rec: CredentialRecord, trigger: Trigger, app_type: str, verdict: Verdict, expected: bool
) -> None:
    assert policy.needs_force(rec, trigger, app_type=app_type, verdict=verdict) is expected


def test_the_policy_reads_no_clock_and_does_no_io() -> None:
    """No wall-clock reads, no AWS or HTTP: the decision depends only on its arguments."""
    source = Path(policy.__file__).read_text()
    tree = ast.parse(source)
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        (node.module or "").split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
    }
    assert not imported & {"time", "datetime", "boto3", "botocore", "httpx", "os", "random"}
