"""The lease and the fenced write on the real DynamoDB implementation (DynamoDB Local)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from token_refresher.due import DueIndex
from token_refresher.errors import BudgetExhaustedError, StoreConflictError
from token_refresher.outcome import Status
from token_refresher.registry import CLASSIC
from token_refresher.service import RefreshService
from token_refresher.token_store import Lease, NewValue, TokenStore
from token_refresher.triggers import Forced, Scheduled
from wechat_token import TokenReader
from wechat_token.record import ACCESS_TOKEN, CredentialKey, CredentialRecord

from local_aws import LocalTable
from simulator import CLASSIC_TOKEN, ManualClock, SimulatorServer, WeChatSimulator
from tests.support import local_refresher

pytestmark = pytest.mark.integration

APP = "wxintegration0001"
SECRET = "integration-secret-0123456789"
START = 1_790_000_000.0
KEY = CredentialKey(APP, ACCESS_TOKEN)
NOT_PLANNED = "not planned"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def wechat(clock: ManualClock) -> Iterator[tuple[WeChatSimulator, str]]:
    sim = WeChatSimulator(clock, seed=1)
    sim.add_app(APP, SECRET)
    with SimulatorServer(sim) as server:
        yield sim, server.base_url


def _stored(store: TokenStore) -> CredentialRecord:
    record = store.find(KEY)
    assert record is not None
    return record


def refresher(
    token_table: LocalTable, wechat: tuple[WeChatSimulator, str], clock: ManualClock, **kw: Any
) -> RefreshService:
    return local_refresher(
        table=token_table.name,
        endpoint_url=token_table.endpoint_url,
        wechat_base_url=wechat[1],
        registry={APP: {"secret": SECRET}},
        clock=clock.now,
        **kw,
    )


def test_the_lease_admits_one_owner_until_it_expires(token_table: LocalTable) -> None:
    store = TokenStore(token_table.dynamodb, token_table.name)
    first = store.acquire(KEY, "a", START, START + 90, triggered=False)
    assert first is not None
    assert first.owner == "a"
    assert first.record.lease_owner is None, "the record as it stood before the lease"
    assert _stored(store).lease_owner == "a"
    assert store.acquire(KEY, "b", START + 89, START + 179, triggered=False) is None
    # A lease ends at its lease_until (CredentialRecord.lease_is_live): then it is free.
    taken = store.acquire(KEY, "b", START + 90, START + 180, triggered=False)
    assert taken is not None
    assert taken.owner == "b"
    assert taken.record.lease_owner == "a", "it replaced a's expired lease"
    assert _stored(store).lease_owner == "b"


def test_the_write_is_fenced_by_version_and_lease(token_table: LocalTable) -> None:
    store = TokenStore(token_table.dynamodb, token_table.name)
    blank = CredentialRecord(APP)
    index = DueIndex()
    due = index.due(APP, CLASSIC, START + 6000)
    new = NewValue("V1", START + 6900, START, "/cgi-bin/token", START + 180)
    a = store.acquire(KEY, "a", START, START + 90, triggered=False)
    assert a is not None
    stored = a.commit(new, due)
    assert (stored.value, stored.version, stored.lease_owner) == ("V1", 1, None)
    assert (stored.due_shard, stored.due_at) == (due.shard, due.at), "filed by the write"
    # A writer that saw version 0 cannot overwrite version 1, even holding a lease.
    b = store.acquire(KEY, "b", START, START + 90, triggered=False)
    assert b is not None
    stale = Lease(store, KEY, "b", b.until, blank)  # b, deciding on what it read before
    with pytest.raises(StoreConflictError, match="version 1, expected 0"):
        stale.commit(NewValue("OLD", 0, 0, "x", 0), index.due(APP, CLASSIC, START + 1))
    # A writer whose lease was taken over cannot write either.
    assert store.acquire(KEY, "c", START + 100, START + 190, triggered=False) is not None
    with pytest.raises(StoreConflictError, match="taken over"):
        b.commit(NewValue("LATE", 0, 0, "x", 0), index.due(APP, CLASSIC, START + 2))
    after = _stored(store)
    assert (after.value, after.version) == ("V1", 1)
    assert after.lease_owner == "c"
    assert (after.due_shard, after.due_at) == (due.shard, due.at), "refused writes file nothing"


def test_the_daily_budget_holds_on_dynamodb_local(token_table: LocalTable) -> None:
    store = TokenStore(token_table.dynamodb, token_table.name)
    lease = store.acquire(KEY, "a", START, START + 90, triggered=False)
    assert lease is not None
    counts = [lease.count_call(START, budget=3) for _ in range(3)]
    assert counts == [1, 2, 3]
    with pytest.raises(BudgetExhaustedError):
        lease.count_call(START, budget=3)
    assert _stored(store).calls_count == 3, "the refused call was not counted"
    lease.release()
    # The count is the table's, not one refresher's: the next lease holder sees it.
    other = store.acquire(KEY, "b", START + 1, START + 91, triggered=False)
    assert other is not None
    with pytest.raises(BudgetExhaustedError):
        other.count_call(START + 1, budget=3)
    # A new WeChat day (UTC+8) starts a new count; consumers' reports have their own cap.
    assert other.count_call(START + 86_400, budget=3, consumer_cap=1) == 1
    with pytest.raises(BudgetExhaustedError, match="consumers"):
        other.count_call(START + 86_400, budget=3, consumer_cap=1)
    assert other.count_call(START + 86_400, budget=3) == 2
    # Only the lease holder counts.
    other.release()
    with pytest.raises(StoreConflictError):
        other.count_call(START + 86_400, budget=3)
    assert _stored(store).calls_count == 2


def test_two_refreshers_racing_make_exactly_one_wechat_call(
    token_table: LocalTable, wechat: tuple[WeChatSimulator, str], clock: ManualClock
) -> None:
    sim, _ = wechat
    racers = [refresher(token_table, wechat, clock, seed=i) for i in range(2)]
    reader = TokenReader(token_table.name, client=token_table.dynamodb, clock=clock.now)
    for round_number in range(1, 6):
        start = threading.Barrier(len(racers))

        def race(service: RefreshService, barrier: threading.Barrier = start) -> str:
            barrier.wait()
            # A run that starts after the other one recorded its plan plans nothing.
            outcomes = service.run(Scheduled())
            return outcomes[0].outcome if outcomes else NOT_PLANNED

        with ThreadPoolExecutor(len(racers)) as pool:
            outcomes = sorted(pool.map(race, racers))
        issued = sim.tokens_issued(APP)
        assert issued == round_number, f"round {round_number}: {issued} tokens for {outcomes}"
        assert outcomes.count(Status.REFRESHED) == 1, outcomes
        assert set(outcomes) <= {Status.REFRESHED, Status.LEASE_HELD, Status.NOT_DUE, NOT_PLANNED}
        # No lost update: what consumers read is WeChat's newest token.
        reader.clear()
        stored = reader.get(APP)
        assert sim.token_status(stored) == 0
        assert stored == sim.current_token(APP)
        clock.advance(3600)


def test_eight_forced_refreshers_racing_leave_the_newest_token_stored(
    token_table: LocalTable, wechat: tuple[WeChatSimulator, str], clock: ManualClock
) -> None:
    sim, _ = wechat
    racers = [refresher(token_table, wechat, clock, seed=i) for i in range(8)]
    start = threading.Barrier(len(racers))

    def race(service: RefreshService) -> str:
        start.wait()
        return service.run(Forced(APP))[0].outcome

    with ThreadPoolExecutor(len(racers)) as pool:
        outcomes = list(pool.map(race, racers))
    calls = sim.calls(CLASSIC_TOKEN, APP)
    assert outcomes.count(Status.REFRESHED) == calls, (outcomes, calls)
    # Forced attempts are spaced by the last one (stamped with the lease): one call at most.
    assert calls == 1, outcomes
    assert set(outcomes) <= {Status.REFRESHED, Status.LEASE_HELD, Status.RATE_LIMITED}
    record = _stored(TokenStore(token_table.dynamodb, token_table.name))
    assert record.value == sim.current_token(APP), "the stored token is WeChat's newest"
    assert record.version == calls
    assert record.lease_owner is None
