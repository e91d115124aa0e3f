"""DynamoDB faults between the refresher and DynamoDB Local.

Throttling, 5xx and timeouts are injected per HTTP attempt (botocore ``before-send``), so
botocore's standard retry mode (wiring.AWS_CONFIG) really retries them. Whatever fails,
a reader only ever sees the old whole record or the new whole record, the lease is
released or expires, and the stored token is never replaced by anything WeChat did not
issue.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import pytest
from botocore.config import Config
from token_refresher.outcome import Outcome, Status
from token_refresher.settings import Settings
from token_refresher.token_store import TokenStore
from token_refresher.triggers import Forced, Scheduled
from token_refresher.wiring import AWS_CONFIG
from wechat_token import TokenError, TokenReader, TokenStoreError
from wechat_token.record import CredentialKey, fingerprint

from simulator import CLASSIC_TOKEN
from tests.faults.faultlib import (
    APP,
    SECRET,
    Blackhole,
    RecordWatcher,
    Snapshot,
    World,
    refresher,
    retries_of,
    total_attempts,
)

pytestmark = pytest.mark.integration

TRANSIENT = (
    "provisioned_throughput",
    "throttling",
    "internal_server_error",
    "service_unavailable",
    "read_timeout",
    "connect_timeout",
)
ATTEMPTS = total_attempts(AWS_CONFIG)
FORCE = Forced(APP)
# Forced attempts are spaced by the last one (Settings.passive_min_interval_seconds).
TRIGGER_SPACING = Settings.passive_min_interval_seconds


def busy_once(world: World) -> None:
    """WeChat answers the next token call with -1 (busy, retryable): the refresher's retry
    is a second WeChat call, which is counted by its own request (the first call is
    counted with the lease)."""
    world.sim.add_fault("errcode", errcode=-1, endpoint=CLASSIC_TOKEN, appid=APP, count=1)


def seeded(world: World) -> Snapshot:
    """Store version 1 with a fault-free refresher; the snapshot of what is stored."""
    [outcome] = world.refresher(seed=99).service.run(Scheduled())
    assert outcome.outcome == Status.REFRESHED
    # Past force_min_interval_seconds: a forced refresh of a token this young is refused.
    world.clock.advance(600)
    return Snapshot.of(world.record())


def no_secret(outcome: Outcome, caplog: pytest.LogCaptureFixture) -> None:
    text = json.dumps(outcome.as_dict()) + caplog.text
    assert SECRET not in text


def test_botocore_attempts_are_bounded() -> None:
    # botocore reads retries["max_attempts"] as *retries*: 5 means 6 HTTP attempts.
    # If "at most 5 attempts" is meant, wiring.AWS_CONFIG should say total_max_attempts=5.
    assert retries_of(AWS_CONFIG)["mode"] == "standard"
    assert 2 <= ATTEMPTS <= 6


@pytest.mark.parametrize(
    ("step", "action"),
    [("write", action) for action in TRANSIENT]
    + [
        (step, action)
        for step in ("read", "lease", "count")
        for action in ("provisioned_throughput", "internal_server_error", "read_timeout")
    ],
)
def test_transient_faults_are_retried_and_the_refresh_succeeds(
    world: World,
    botocore_sleeps: list[float],
    step: str,
    action: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``lease`` also counts the first WeChat call; ``count`` is a retry's own count (WeChat
    was busy once)."""
    before = seeded(world)
    refresher = world.refresher()
    if step == "count":
        busy_once(world)
    refresher.faults.add(step, action, times=2)

    [outcome] = refresher.service.run(FORCE)

    assert outcome.outcome == Status.REFRESHED, outcome.error
    assert refresher.faults.attempts(step) == 3, refresher.faults.log
    assert len(botocore_sleeps) == 2, "botocore backed off before each retry"
    assert all(0 <= pause <= 20 for pause in botocore_sleeps)
    record = world.record()
    world.assert_whole(record)
    assert record.version == before.version + 1
    assert record.value == world.sim.current_token(APP)
    assert record.previous_fingerprint == before.fingerprint()
    assert record.lease_owner is None
    wechat_calls = world.sim.calls(CLASSIC_TOKEN, APP)
    assert wechat_calls == (3 if step == "count" else 2), "DynamoDB retries never re-call WeChat"
    assert record.calls_today(world.clock.now()) == wechat_calls, "each call counted once"
    no_secret(outcome, caplog)


@pytest.mark.parametrize(
    ("step", "action"),
    [
        ("write", "provisioned_throughput"),
        ("write", "internal_server_error"),
        ("write", "read_timeout"),
        ("read", "throttling"),
        ("lease", "internal_server_error"),
        ("count", "connect_timeout"),
    ],
)
def test_persistent_faults_exhaust_the_attempts_and_change_nothing(
    world: World,
    botocore_sleeps: list[float],
    step: str,
    action: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``lease`` also counts the first WeChat call; ``count`` is a retry's own count (WeChat
    was busy once)."""
    before = seeded(world)
    counted_before = world.record().calls_today(world.clock.now())
    calls_before = world.sim.calls(CLASSIC_TOKEN, APP)
    refresher = world.refresher()
    if step == "count":
        busy_once(world)
    refresher.faults.add(step, action, times=None)

    [outcome] = refresher.service.run(FORCE)

    assert outcome.outcome == Status.FAILED
    assert outcome.error is not None
    assert outcome.error["class"] == "store", "a DynamoDB failure is the store's"
    assert refresher.faults.attempts(step) == ATTEMPTS, "bounded by botocore's standard mode"
    assert len(botocore_sleeps) == ATTEMPTS - 1
    record = world.record()
    assert Snapshot.of(record) == before, "the stored credential is untouched"
    assert record.lease_owner is None, "the lease was released (or never taken)"
    wechat_calls = world.sim.calls(CLASSIC_TOKEN, APP) - calls_before
    # WeChat is only called once the lease is held and the call is counted: a retry whose
    # count cannot be written is not made.
    assert wechat_calls == (1 if step in ("write", "count") else 0)
    counted = record.calls_today(world.clock.now()) - counted_before
    assert counted == wechat_calls, "every call made is counted, and only those"
    no_secret(outcome, caplog)
    # Once the lease was taken the attempt counts (triggered_at), whatever it ended in: a
    # store failure is not one that lengthens the spacing, so after it the next force,
    # with DynamoDB healthy again, replaces the token.
    refresher.faults.clear()
    if step in ("count", "write"):
        [spaced] = refresher.service.run(FORCE)
        assert spaced.outcome == Status.RATE_LIMITED
    world.clock.advance(TRIGGER_SPACING)
    [again] = refresher.service.run(FORCE)
    assert again.outcome == Status.REFRESHED
    assert world.record().version == before.version + 1


def test_readers_only_ever_see_whole_records_while_writes_are_throttled(
    world: World, botocore_sleeps: list[float]
) -> None:
    seeded(world)
    refresher = world.refresher()
    with RecordWatcher(world.table.dynamodb, world.table.name) as watcher:
        for round_number in range(6):
            refresher.faults.add("write", TRANSIENT[round_number % len(TRANSIENT)], times=2)
            refresher.faults.add("lease", "throttling", times=1)
            [outcome] = refresher.service.run(FORCE)
            assert outcome.outcome == Status.REFRESHED
            world.clock.advance(600)
    assert len(watcher.records) > 0
    for record in watcher.records:
        world.assert_whole(record)
    versions = [snap.version for snap in watcher.seen]
    assert versions == sorted(versions), "the version never goes back"
    assert world.record().version == 7


def test_a_failed_error_record_leaves_a_lease_that_expires(
    world: World, botocore_sleeps: list[float]
) -> None:
    """WeChat refuses, and recording that fails too: the lease is left, but only until it ends."""
    before = seeded(world)
    refresher = world.refresher()
    world.sim.add_fault("errcode", errcode=40164, count=1)  # IP not whitelisted: no retry
    refresher.faults.add("fail", "internal_server_error", times=None)

    [outcome] = refresher.service.run(FORCE)

    assert outcome.outcome == Status.FAILED
    stuck = world.record()
    assert Snapshot.of(stuck) == before
    assert stuck.lease_owner is not None
    assert stuck.lease_until == world.clock.now() + refresher.service.settings.lease_seconds
    # While the lease lives, nobody calls WeChat for this app; consumers keep the old token.
    other = world.refresher(seed=5)
    calls = world.sim.calls(CLASSIC_TOKEN, APP)
    world.clock.advance(refresher.service.settings.lease_seconds - 1)
    assert [o.outcome for o in other.service.run(FORCE)] == [Status.LEASE_HELD]
    assert world.sim.calls(CLASSIC_TOKEN, APP) == calls
    assert world.reader().get(APP) == before.value
    # Then it expires by itself and the next run takes over.
    world.clock.advance(2)
    [taken] = other.service.run(FORCE)
    assert taken.outcome == Status.REFRESHED
    after = world.record()
    world.assert_whole(after)
    assert after.value == world.sim.current_token(APP)
    assert after.lease_owner is None


def _takeover(world: World, skew: float) -> Callable[[], str]:
    """A second refresher whose clock runs ``skew`` s ahead: it judges A's lease expired."""

    def run_b() -> str:
        b = world.refresher(clock=lambda: world.clock.now() + skew, seed=7)
        [outcome] = b.service.run(FORCE)
        return outcome.outcome

    return run_b


@pytest.mark.parametrize("moment", ["before_wechat_answers_a", "after_a_fetched"])
def test_a_lease_taken_over_while_fetching_fences_the_late_write(
    world: World, botocore_sleeps: list[float], monkeypatch: pytest.MonkeyPatch, moment: str
) -> None:
    before = seeded(world)
    a = world.refresher(seed=3)
    run_b = _takeover(world, skew=a.service.settings.lease_seconds + 1)
    real_fetch = a.service.api.fetch_token
    b_outcomes: list[str] = []

    def slow_fetch(app: object, *, force: bool = False) -> object:
        if moment == "before_wechat_answers_a":
            b_outcomes.append(run_b())
            return real_fetch(app, force=force)  # type: ignore[arg-type]
        fetched = real_fetch(app, force=force)  # type: ignore[arg-type]
        b_outcomes.append(run_b())
        return fetched

    monkeypatch.setattr(a.service.api, "fetch_token", slow_fetch)
    with RecordWatcher(world.table.dynamodb, world.table.name) as watcher:
        [outcome] = a.service.run(FORCE)

    assert b_outcomes == [Status.REFRESHED]
    assert outcome.outcome == Status.FAILED
    assert outcome.error is not None
    assert outcome.error["code"] == "conflict"
    record = world.record()
    world.assert_whole(record)
    assert record.version == before.version + 1, "exactly one write: B's"
    assert record.lease_owner is None
    assert record.last_error_code is None, "A's failure did not touch B's record"
    assert watcher.distinct() <= {before, Snapshot.of(record)}
    if moment == "after_a_fetched":
        # B fetched last, so B's token is WeChat's newest: the fence kept the right one.
        assert record.value == world.sim.current_token(APP)
    else:
        # A fetched last; B's stored token is WeChat's previous one: still accepted, and
        # a consumer's 40001 after the grace leads to a passive refresh (crash tests).
        assert world.sim.token_status(record.value or "") == 0


def test_the_version_moving_on_between_lease_and_write_refuses_the_write(
    world: World, botocore_sleeps: list[float]
) -> None:
    """The conditional check fails at the worst moment: the write request itself."""
    before = seeded(world)
    a = world.refresher(seed=3)
    run_b = _takeover(world, skew=a.service.settings.lease_seconds + 1)
    b_outcomes: list[str] = []
    a.faults.add("write", "call", call=lambda: b_outcomes.append(run_b()))

    [outcome] = a.service.run(FORCE)

    assert b_outcomes == [Status.REFRESHED]
    assert outcome.outcome == Status.FAILED
    assert outcome.error is not None
    assert outcome.error["code"] == "conflict"
    assert SECRET not in outcome.error["message"]
    record = world.record()
    world.assert_whole(record)
    assert record.version == before.version + 1
    assert record.value == world.sim.current_token(APP), "B fetched after A: B's is newest"
    assert record.lease_owner is None


def test_an_injected_condition_failure_on_the_lease_means_someone_else_refreshes(
    world: World, botocore_sleeps: list[float]
) -> None:
    before = seeded(world)
    calls = world.sim.calls(CLASSIC_TOKEN, APP)
    refresher = world.refresher()
    refresher.faults.add("lease", "condition_failed")
    [outcome] = refresher.service.run(FORCE)
    assert outcome.outcome == Status.LEASE_HELD
    assert refresher.faults.attempts("lease") == 1, "a failed condition is not retried"
    assert world.sim.calls(CLASSIC_TOKEN, APP) == calls
    assert Snapshot.of(world.record()) == before


def test_an_injected_condition_failure_on_the_write_is_a_conflict(
    world: World, botocore_sleeps: list[float]
) -> None:
    before = seeded(world)
    refresher = world.refresher()
    refresher.faults.add("write", "condition_failed")
    [outcome] = refresher.service.run(FORCE)
    assert outcome.outcome == Status.FAILED
    assert outcome.error is not None
    assert outcome.error["code"] == "conflict"
    assert refresher.faults.attempts("write") == 1
    record = world.record()
    assert Snapshot.of(record) == before
    assert record.lease_owner is None, "the failure record released the lease"
    assert record.last_error_code == "conflict"


def test_a_write_that_landed_but_timed_out_leaves_one_whole_record(
    world: World, botocore_sleeps: list[float]
) -> None:
    """The write reached DynamoDB, its answer was lost, botocore retried it."""
    before = seeded(world)
    refresher = world.refresher()
    refresher.faults.add("write", "land_then_timeout")
    with RecordWatcher(world.table.dynamodb, world.table.name) as watcher:
        refresher.service.run(FORCE)
    record = world.record()
    world.assert_whole(record)
    assert record.version == before.version + 1, "written once, not twice"
    assert record.value == world.sim.current_token(APP)
    assert record.lease_owner is None
    assert watcher.distinct() <= {before, Snapshot.of(record)}
    # Nothing is left to do: the write filed the token ahead in the due index, so a run now
    # plans nothing, and the run that does plan it (its next probe) finds it fresh.
    assert record.due_at is not None
    assert record.due_at > world.clock.now()
    later = world.refresher(seed=4)
    calls = world.sim.calls(CLASSIC_TOKEN, APP)
    assert list(later.service.run(Scheduled())) == []
    world.clock.set(record.due_at)
    [probed] = later.service.run(Scheduled())
    assert probed.outcome == Status.NOT_DUE
    assert world.sim.calls(CLASSIC_TOKEN, APP) == calls


def test_a_write_that_landed_but_timed_out_is_reported_as_refreshed(
    world: World, botocore_sleeps: list[float]
) -> None:
    seeded(world)
    refresher = world.refresher()
    refresher.faults.add("write", "land_then_timeout")
    [outcome] = refresher.service.run(FORCE)
    assert outcome.outcome == Status.REFRESHED, outcome.error


def test_a_lease_that_landed_but_timed_out_expires_and_is_taken_over(
    world: World, botocore_sleeps: list[float]
) -> None:
    before = seeded(world)
    refresher = world.refresher()
    refresher.faults.add("lease", "land_then_timeout")
    [outcome] = refresher.service.run(FORCE)
    assert outcome.outcome in (Status.REFRESHED, Status.LEASE_HELD)
    record = world.record()
    if outcome.outcome == Status.LEASE_HELD:
        # Our own lease, taken on the lost attempt, blocks us until it ends; never longer.
        assert Snapshot.of(record) == before
        assert record.lease_owner is not None
        world.clock.advance(refresher.service.settings.lease_seconds + 1)
        [outcome] = refresher.service.run(FORCE)
        assert outcome.outcome == Status.REFRESHED
        record = world.record()
    world.assert_whole(record)
    assert record.version == before.version + 1
    assert record.lease_owner is None


def test_a_lease_that_landed_but_timed_out_does_not_block_the_refresh(
    world: World, botocore_sleeps: list[float]
) -> None:
    seeded(world)
    refresher = world.refresher()
    refresher.faults.add("lease", "land_then_timeout")
    [outcome] = refresher.service.run(FORCE)
    assert outcome.outcome == Status.REFRESHED, outcome.error
    # botocore's retry found the lease its lost attempt had taken (and stamped): still ours,
    # and the call that attempt counted is not counted again.
    assert refresher.faults.attempts("lease") == 2
    record = world.record()
    assert record.calls_today(world.clock.now()) == world.sim.calls(CLASSIC_TOKEN, APP)


def test_a_count_that_landed_but_timed_out_never_undercounts(
    world: World, botocore_sleeps: list[float]
) -> None:
    """A retry's count reached DynamoDB and its answer was lost: botocore's resend sets the
    same total again, so the call is counted once (never less)."""
    before = seeded(world)
    refresher = world.refresher()
    busy_once(world)
    refresher.faults.add("count", "land_then_timeout")
    [outcome] = refresher.service.run(FORCE)
    assert outcome.outcome == Status.REFRESHED
    assert refresher.faults.log.count(("count", "land_then_timeout")) == 1
    assert refresher.faults.attempts("count") == 2, "botocore sent the lost count again"
    record = world.record()
    world.assert_whole(record)
    assert record.version == before.version + 1
    wechat_calls = world.sim.calls(CLASSIC_TOKEN, APP)
    assert wechat_calls == 3, "the seed, the busy answer, the retry"
    assert record.calls_count == wechat_calls


# -- the consumer side ---------------------------------------------------------------------


def test_a_reader_serves_its_last_good_token_through_dynamodb_faults_until_expiry(
    world: World, botocore_sleeps: list[float]
) -> None:
    before = seeded(world)
    refresher = world.refresher()  # only for its fault injector's client type
    client = refresher.client
    reader = TokenReader(world.table.name, client=client, cache_seconds=60, clock=world.clock.now)
    assert reader.get(APP) == before.value
    refresher.faults.add("read", "provisioned_throughput", times=None)
    world.clock.advance(600)  # the cache entry is stale; the table cannot be read
    assert reader.get(APP) == before.value, "last known good, still inside its expiry"
    assert refresher.faults.log.count(("read", "provisioned_throughput")) == ATTEMPTS
    assert before.expires_at is not None
    world.clock.set(before.expires_at + 1)
    with pytest.raises(TokenStoreError) as caught:
        reader.get(APP)
    assert isinstance(caught.value, TokenError)
    assert before.value is not None
    assert before.value not in str(caught.value)


def test_a_cold_reader_under_dynamodb_faults_raises_a_token_error(
    world: World, botocore_sleeps: list[float]
) -> None:
    seeded(world)
    refresher = world.refresher()
    refresher.faults.add("read", "read_timeout", times=None)
    reader = TokenReader(world.table.name, client=refresher.client, clock=world.clock.now)
    with pytest.raises(TokenError, match="Could not read"):
        reader.get(APP)


def test_store_errors_on_the_refreshers_read_are_reported_without_secrets(
    world: World, botocore_sleeps: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    seeded(world)
    refresher = world.refresher()
    refresher.faults.add("read", "internal_server_error", times=None)
    [outcome] = refresher.service.run(FORCE)
    assert outcome.outcome == Status.FAILED
    assert outcome.error is not None
    assert outcome.error["class"] == "store"
    no_secret(outcome, caplog)
    record = world.record()
    assert world.reader().get(APP) == record.value
    assert fingerprint(record.value or "") not in (outcome.error or {}).get("message", "")


def test_a_dynamodb_that_hangs_is_a_bounded_failure(
    world: World, botocore_sleeps: list[float]
) -> None:
    """Real socket timeouts (no hook): DynamoDB behind a loopback port that never answers."""
    fast = Config(connect_timeout=0.3, read_timeout=0.3, retries=retries_of(AWS_CONFIG))  # type: ignore[arg-type]
    with Blackhole() as hole:
        hung = refresher(
            world.table._replace(endpoint_url=hole.url),
            world.base_url,
            world.clock.now,
            config=fast,
        )
        [outcome] = hung.service.run(FORCE)
        assert outcome.outcome == Status.FAILED
        assert outcome.error is not None
        assert outcome.error["class"] == "store"
        assert hole.connections == total_attempts(fast), "each attempt was a real connection"
    assert len(botocore_sleeps) == total_attempts(fast) - 1
    assert world.sim.calls(CLASSIC_TOKEN, APP) == 0
    assert (
        TokenStore(world.table.dynamodb, world.table.name).find(CredentialKey(APP, "access_token"))
        is None
    )
