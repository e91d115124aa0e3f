"""The refresh algorithm as a user sees it: which token is stored, how many WeChat calls."""

from __future__ import annotations

import httpx
import pytest
from token_refresher.outcome import Status
from token_refresher.token_store import TokenStore
from wechat_token.record import CredentialKey, fingerprint

from tests.support import parse_event

from .conftest import APP, SECRET, TABLE, Harness


def test_first_run_fetches_and_stores_a_conservative_expiry(harness: Harness) -> None:
    [outcome] = harness.run()
    record = harness.record()
    assert outcome.outcome == Status.REFRESHED
    assert harness.wechat.calls == 1
    assert record is not None
    assert record.value == harness.wechat.issued[0]
    assert record.version == 1
    # expires_at counts from the send time, minus the 300 s skew margin.
    assert record.expires_at == pytest.approx(harness.clock.now + 7200 - 300)
    assert record.fetched_at == pytest.approx(harness.clock.now)
    assert record.source == "/cgi-bin/token"
    assert record.lease_owner is None, "the lease is released in the same write"
    assert record.calls_today(harness.clock.now) == 1


def test_a_fresh_token_is_not_refreshed_again(harness: Harness) -> None:
    harness.run()
    harness.clock.advance(600)
    [outcome] = harness.run()
    assert outcome.outcome == Status.NOT_DUE
    assert harness.wechat.calls == 1, "duplicate schedules and retries must not call WeChat"


def test_the_hourly_run_refreshes_and_keeps_the_previous_token_for_its_grace(
    harness: Harness,
) -> None:
    harness.run()
    first = harness.wechat.issued[0]
    harness.clock.advance(3600)
    [outcome] = harness.run()
    record = harness.record()
    assert outcome.outcome == Status.REFRESHED
    assert record is not None
    assert record.value == harness.wechat.issued[1]
    assert record.version == 2
    assert record.previous_fingerprint == fingerprint(first)
    # WeChat keeps the old token 5 minutes; minus 2 minutes of server disagreement.
    assert record.previous_valid_until == pytest.approx(harness.clock.now + 180)


def test_hourly_schedule_never_lets_the_stored_token_expire_before_the_next_run(
    harness: Harness,
) -> None:
    for _ in range(30):
        harness.run()
        record = harness.record()
        assert record is not None
        assert record.expires_at is not None
        next_run = harness.clock.now + harness.settings.refresh_interval_seconds
        assert record.expires_at > next_run + 3000, "over 50 minutes of margin per run"
        harness.clock.advance(3600)
    assert harness.wechat.calls == 30


def test_force_refreshes_a_fresh_token(harness: Harness) -> None:
    harness.run()
    harness.clock.advance(121)
    [outcome] = harness.run({"app_id": APP, "force": True})
    assert outcome.outcome == Status.REFRESHED
    assert harness.wechat.calls == 2


def test_forcing_again_within_two_minutes_is_refused(harness: Harness) -> None:
    # Two rotations inside the consumers' 60 s cache would evict the token they hold.
    harness.run()
    harness.clock.advance(60)
    [outcome] = harness.run({"app_id": APP, "force": True})
    assert outcome.outcome == Status.RATE_LIMITED
    assert harness.wechat.calls == 1


def test_a_live_lease_held_by_another_refresher_means_no_call(harness: Harness) -> None:
    harness.put(
        {
            "app_id": APP,
            "kind": "access_token",
            "lease_owner": "someone-else",
            "lease_until": int(harness.clock.now + 60),
        }
    )
    [outcome] = harness.run()
    assert outcome.outcome == Status.LEASE_HELD
    assert harness.wechat.calls == 0


def test_an_expired_lease_of_a_crashed_refresher_is_taken_over(harness: Harness) -> None:
    harness.put(
        {
            "app_id": APP,
            "kind": "access_token",
            "lease_owner": "crashed",
            "lease_until": int(harness.clock.now - 1),
        }
    )
    [outcome] = harness.run()
    assert outcome.outcome == Status.REFRESHED
    record = harness.record()
    assert record is not None
    assert record.lease_owner is None


def test_an_older_fetch_never_overwrites_a_newer_token(harness: Harness) -> None:
    harness.run()
    harness.clock.advance(3600)
    service = harness.service()
    store = TokenStore(harness.dynamodb, TABLE)
    real_fetch = service.api.fetch_token

    def fetch_while_another_writer_wins(app, *, force=False):  # type: ignore[no-untyped-def]
        fetched = real_fetch(app, force=force)
        # Another writer stores a newer version while this fetch is in flight.
        harness.dynamodb.update_item(
            TableName=TABLE,
            Key={"app_id": {"S": APP}, "kind": {"S": "access_token"}},
            UpdateExpression="SET #v = :v, version = version + :one",
            ExpressionAttributeNames={"#v": "value"},
            ExpressionAttributeValues={":v": {"S": "NEWER-TOKEN"}, ":one": {"N": "1"}},
        )
        return fetched

    service.api.fetch_token = fetch_while_another_writer_wins  # type: ignore[method-assign]
    [outcome] = service.run(parse_event({}))
    record = store.find(CredentialKey(APP, "access_token"))
    assert outcome.outcome == Status.FAILED
    assert outcome.error is not None
    assert outcome.error["code"] == "conflict"
    assert record is not None
    assert record.value == "NEWER-TOKEN", "the newer stored value stands"
    assert record.version == 2


def test_passive_refresh_only_when_the_stale_token_is_still_stored(harness: Harness) -> None:
    harness.run()
    stored = harness.wechat.issued[0]
    [outcome] = harness.run(
        {"app_id": APP, "stale_token": fingerprint("some-other-token"), "errcode": 40001}
    )
    assert outcome.outcome == Status.ALREADY_REPLACED
    assert harness.wechat.calls == 1
    assert harness.wechat.probes == 0, "a report on a replaced token is answered from the table"
    # WeChat still accepts the stored token: the report is contradicted, nothing rotates.
    [outcome] = harness.run({"app_id": APP, "stale_token": fingerprint(stored), "errcode": 40001})
    assert outcome.outcome == Status.TOKEN_ACCEPTED
    assert harness.wechat.calls == 1
    assert not outcome.foreign_rotation
    harness.clock.advance(61)
    harness.wechat.rejected.add(stored)  # now someone else fetched a token for this app
    [outcome] = harness.run({"app_id": APP, "stale_token": fingerprint(stored), "errcode": 40001})
    assert outcome.outcome == Status.REFRESHED
    assert harness.wechat.probes == 3, "one probe, then a rejection confirmed by a second"
    assert outcome.foreign_rotation, "40001 on a token we hold as valid: someone else fetched"
    assert harness.wechat.calls == 2
    record = harness.record()
    assert record is not None
    assert record.foreign_rotations == 1


def test_a_storm_of_passive_reports_makes_one_call(harness: Harness) -> None:
    harness.run()
    harness.wechat.rejected.add(harness.wechat.issued[0])
    stale = fingerprint(harness.wechat.issued[0])
    outcomes = [
        harness.run({"app_id": APP, "stale_token": stale, "errcode": 40001})[0] for _ in range(50)
    ]
    assert [o.outcome for o in outcomes].count(Status.REFRESHED) == 1
    assert harness.wechat.calls == 2
    # Even if the new token is rejected right away, passive refreshes are rate-limited.
    harness.wechat.rejected.add(harness.wechat.issued[1])
    new = fingerprint(harness.wechat.issued[1])
    [again] = harness.run({"app_id": APP, "stale_token": new, "errcode": 40001})
    assert again.outcome == Status.RATE_LIMITED
    harness.clock.advance(61)
    [later] = harness.run({"app_id": APP, "stale_token": new, "errcode": 40001})
    assert later.outcome == Status.REFRESHED


def test_passive_refresh_accepts_the_token_itself(harness: Harness) -> None:
    harness.run()
    harness.wechat.rejected.add(harness.wechat.issued[0])
    [outcome] = harness.run({"app_id": APP, "stale_token": harness.wechat.issued[0]})
    assert outcome.outcome == Status.REFRESHED


def test_transient_errors_are_retried_with_jittered_backoff(harness: Harness) -> None:
    harness.wechat.script = [
        {"errcode": -1, "errmsg": "system error"},
        httpx.Response(502, text="<html>Bad Gateway</html>"),
        httpx.ReadTimeout("timed out"),
    ]
    [outcome] = harness.run()
    assert outcome.outcome == Status.REFRESHED
    assert outcome.wechat_calls == 4
    assert len(harness.sleeps) == 3
    assert all(0 <= pause <= 8 for pause in harness.sleeps)
    record = harness.record()
    assert record is not None
    assert record.calls_today(harness.clock.now) == 4, "every attempt counts against the budget"


def test_retries_stop_at_max_attempts_and_leave_the_stored_token(harness: Harness) -> None:
    harness.run()
    before = harness.record()
    harness.clock.advance(3600)
    harness.wechat.script = [httpx.ConnectError("refused")] * 10
    [outcome] = harness.run()
    after = harness.record()
    assert outcome.outcome == Status.FAILED
    assert outcome.wechat_calls == 4
    assert outcome.error is not None
    assert outcome.error["code"] == "transport"
    assert after is not None
    assert before is not None
    assert (after.value, after.version, after.expires_at) == (
        before.value,
        before.version,
        before.expires_at,
    )
    assert after.last_error_code == "transport"
    assert after.lease_owner is None


def test_retries_are_bounded_by_the_invocations_remaining_time(harness: Harness) -> None:
    def slow_busy(request: httpx.Request) -> dict[str, object]:
        harness.clock.advance(10)  # each attempt takes the whole 10 s timeout
        return {"errcode": -1, "errmsg": "busy"}

    harness.wechat.script = [slow_busy] * 10
    deadline = harness.clock.now + 25
    [outcome] = harness.run(remaining=lambda: deadline - harness.clock.now)
    assert outcome.outcome == Status.FAILED
    assert outcome.wechat_calls == 2, "a third 10 s attempt does not fit in the 25 s left"
    harness.clock.advance(60)  # the failure is due again at the next run
    [outcome] = harness.run(remaining=lambda: 5.0)
    assert outcome.error is not None
    assert outcome.error["code"] == "deadline"
    assert outcome.wechat_calls == 0


@pytest.mark.parametrize(
    ("errcode", "advice"),
    [
        (40001, "check the secret"),
        (40002, "grant_type"),
        (40013, "invalid appid"),
        (40125, "AppSecret"),
        (40164, "whitelist"),
        (40243, "frozen"),
        (41002, "appid missing"),
        (41004, "secret missing"),
        (45009, "daily token quota"),
        (89503, "administrator must confirm"),
        (89506, "24 hours"),
        (89507, "1 hour"),
    ],
)
def test_configuration_and_quota_errors_fail_fast_with_advice(
    harness: Harness, errcode: int, advice: str
) -> None:
    harness.wechat.script = [{"errcode": errcode, "errmsg": f"error {errcode} rid: 1a2b"}] * 5
    [outcome] = harness.run()
    assert outcome.outcome == Status.FAILED
    assert outcome.wechat_calls == 1, "retrying cannot fix this and burns the quota"
    assert harness.sleeps == []
    assert outcome.error is not None
    assert outcome.error["code"] == str(errcode)
    assert advice in outcome.error["message"]
    assert harness.record() is not None
    record = harness.record()
    assert record is not None
    assert record.value is None, "nothing stored"
    assert record.last_error_code == str(errcode)


@pytest.mark.parametrize(
    "reply",
    [
        httpx.Response(200, text="<html><body>504 Gateway Time-out</body></html>"),
        httpx.Response(200, text='{"access_tok'),
        httpx.Response(200, json=["not", "an", "object"]),
        httpx.Response(200, json={"expires_in": 7200}),
        httpx.Response(200, json={"access_token": "", "expires_in": 7200}),
        httpx.Response(200, json={"access_token": "T" * 600, "expires_in": 7200}),
        httpx.Response(200, json={"access_token": "abc def", "expires_in": 7200}),
        httpx.Response(200, json={"access_token": "ok", "expires_in": "7200"}),
        httpx.Response(200, json={"access_token": "ok", "expires_in": -5}),
        httpx.Response(200, json={"errcode": "x", "errmsg": "?"}),
        httpx.Response(404, text="not found"),
    ],
)
def test_garbled_replies_are_errors_and_store_nothing(
    harness: Harness, reply: httpx.Response
) -> None:
    harness.run()
    before = harness.record()
    harness.clock.advance(3600)
    harness.wechat.script = [reply]
    [outcome] = harness.run()
    after = harness.record()
    assert outcome.outcome == Status.FAILED
    assert outcome.error is not None
    assert outcome.error["code"] == "garbled"
    assert "nothing was stored" in outcome.error["message"]
    assert before is not None
    assert after is not None
    assert after.value == before.value
    assert after.version == before.version


def test_a_longer_expires_in_than_documented_is_clamped(harness: Harness) -> None:
    harness.wechat.script = [{"access_token": "LONG-LIVED", "expires_in": 10**12}]
    harness.run()
    record = harness.record()
    assert record is not None
    assert record.expires_at == pytest.approx(harness.clock.now + 7200 - 300)


def test_budget_exhausted_refuses_to_call_and_says_so(harness: Harness) -> None:
    harness.wechat.script = [{"errcode": -1, "errmsg": "busy"}] * 3
    [outcome] = harness.run(daily_call_budget=2)
    assert outcome.outcome == Status.FAILED
    assert harness.wechat.calls == 2
    assert outcome.error is not None
    assert outcome.error["code"] == "budget"
    assert "daily budget of 2" in outcome.error["message"]
    [outcome] = harness.run({"app_id": APP, "force": True}, daily_call_budget=2)
    assert outcome.error is not None
    assert outcome.error["code"] == "budget"
    assert harness.wechat.calls == 2, "past the budget, no call at all"


def test_the_budget_resets_at_midnight_in_wechats_day(harness: Harness) -> None:
    # START is 2026-09-21 14:13:20 UTC = 22:13:20 UTC+8: WeChat's day ends 1h47m later.
    harness.wechat.script = [{"errcode": -1, "errmsg": "busy"}] * 2
    harness.run(daily_call_budget=2)
    harness.clock.advance(3600)
    [outcome] = harness.run(daily_call_budget=2)
    assert outcome.error is not None
    assert outcome.error["code"] == "budget"
    harness.clock.advance(3600)  # past 00:00 UTC+8
    [outcome] = harness.run(daily_call_budget=2)
    assert outcome.outcome == Status.REFRESHED
    record = harness.record()
    assert record is not None
    assert record.calls_today(harness.clock.now) == 1


def test_one_failing_app_does_not_stop_the_others(harness: Harness) -> None:
    harness.set_registry(
        {
            "wxgood1": {"secret": "good-secret-1"},
            "wxbad": {"secret": "bad-secret"},
            "wxgood2": {"secret": "good-secret-2"},
        }
    )

    harness.wechat.by_app["wxbad"] = {"errcode": 40125, "errmsg": "invalid appsecret"}
    outcomes = {o.app_id: o for o in harness.run(concurrency=3)}
    assert outcomes["wxgood1"].outcome == Status.REFRESHED
    assert outcomes["wxgood2"].outcome == Status.REFRESHED
    assert outcomes["wxbad"].outcome == Status.FAILED
    assert harness.record("wxgood2") is not None


def test_disabled_registry_entries_are_skipped(harness: Harness) -> None:
    harness.set_registry({APP: {"secret": SECRET}, "wxoff": {"secret": "x", "enabled": False}})
    outcomes = harness.run()
    assert [o.app_id for o in outcomes] == [APP]


def test_a_scheduled_run_detects_a_token_invalidated_behind_our_back(harness: Harness) -> None:
    harness.run()
    harness.clock.advance(600)
    [quiet] = harness.run()
    assert quiet.outcome == Status.NOT_DUE
    assert harness.wechat.probes == 1, "each scheduled run asks WeChat about the stored token"
    harness.wechat.rejected.add(harness.wechat.issued[0])  # a foreign fetch, 5 minutes ago
    harness.clock.advance(300)  # the next probe: its due-index entry brings it back
    [outcome] = harness.run()
    assert outcome.outcome == Status.REFRESHED
    assert outcome.foreign_rotation
    record = harness.record()
    assert record is not None
    assert record.value == harness.wechat.issued[1]
    assert record.foreign_rotations == 1


def test_probing_can_be_switched_off(harness: Harness) -> None:
    harness.run()
    harness.clock.advance(600)
    harness.run(probe_stored_tokens=False)
    assert harness.wechat.probes == 0


def test_a_retried_run_does_not_repeat_a_fresh_configuration_error(harness: Harness) -> None:
    harness.wechat.by_app[APP] = {"errcode": 40125, "errmsg": "invalid appsecret"}
    [first] = harness.run()
    harness.clock.advance(60)  # Lambda retries the failed async invocation
    [retried] = harness.run()
    assert first.outcome == Status.FAILED
    assert retried.outcome == Status.CONFIGURATION_HOLD
    assert retried.failed, "a held configuration error still fails the run, so alarms fire"
    assert retried.error is not None
    assert retried.error["class"] == "configuration"
    assert "not retried" in retried.error["message"]
    assert harness.wechat.calls == 1, "the retry spent no quota"
    harness.clock.advance(600)
    harness.run()
    assert harness.wechat.calls == 2, "the next scheduled run tries again"
    del harness.wechat.by_app[APP]
    [forced] = harness.run({"app_id": APP, "force": True})
    assert forced.outcome == Status.REFRESHED, (
        "after the fix, a forced refresh goes through at once"
    )
