"""The lease and the fenced write on the real DynamoDB implementation (DynamoDB Local)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from token_refresher.errors import BudgetExhaustedError, StoreConflictError
from token_refresher.outcome import Status
from token_refresher.service import RefreshService
from token_refresher.token_store import NewValue, TokenStore
from token_refresher.triggers import Forced, Scheduled
from wechat_token import TokenReader
from wechat_token.record import CredentialKey, CredentialRecord

from local_aws import LocalTable
from simulator import CLASSIC_TOKEN, ManualClock, SimulatorServer, WeChatSimulator
from tests.support import local_refresher

pytestmark = pytest.mark.integration

APP = "wxintegration0001"
SECRET = "integration-secret-0123456789"
START = 1_790_000_000.0


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def wechat(clock: ManualClock) -> Iterator[tuple[WeChatSimulator, str]]:
    sim = WeChatSimulator(clock, seed=1)
    sim.add_app(APP, SECRET)
    with SimulatorServer(sim) as server:
        yield sim, server.base_url


def refresher(
    token_table: LocalTable, wechat: tuple[WeChatSimulator, str], clock: ManualClock, **kw: object
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
    first = store.acquire_lease(APP, "access_token", "a", START, START + 90)
    assert first is not None
    assert first.lease_owner == "a"
    assert store.acquire_lease(APP, "access_token", "b", START + 89, START + 179) is None
    taken = store.acquire_lease(APP, "access_token", "b", START + 91, START + 181)
    assert taken is not None
    assert taken.lease_owner == "b"


def test_the_write_is_fenced_by_version_and_lease(token_table: LocalTable) -> None:
    store = TokenStore(token_table.dynamodb, token_table.name)
    blank = CredentialRecord(APP)
    new = NewValue("V1", START + 6900, START, "/cgi-bin/token", START + 180)
    assert store.acquire_lease(APP, "access_token", "a", START, START + 90) is not None
    stored = store.write(APP, "access_token", "a", 0, new, blank)
    assert (stored.value, stored.version, stored.lease_owner) == ("V1", 1, None)
    # A writer that saw version 0 cannot overwrite version 1, even holding a lease.
    assert store.acquire_lease(APP, "access_token", "b", START, START + 90) is not None
    with pytest.raises(StoreConflictError, match="version 1, expected 0"):
        store.write(APP, "access_token", "b", 0, NewValue("OLD", 0, 0, "x", 0), blank)
    # A writer whose lease was taken over cannot write either.
    assert store.acquire_lease(APP, "access_token", "c", START + 100, START + 190) is not None
    with pytest.raises(StoreConflictError, match="taken over"):
        store.write(APP, "access_token", "b", 1, NewValue("LATE", 0, 0, "x", 0), stored)
    after = store.find(CredentialKey(APP, "access_token"))
    assert after is not None
    assert (after.value, after.version) == ("V1", 1)


def test_the_daily_budget_holds_on_dynamodb_local(token_table: LocalTable) -> None:
    store = TokenStore(token_table.dynamodb, token_table.name)
    counts = [store.count_call(APP, "access_token", START, budget=3) for _ in range(3)]
    assert counts == [1, 2, 3]
    with pytest.raises(BudgetExhaustedError):
        store.count_call(APP, "access_token", START, budget=3)
    assert store.count_call(APP, "access_token", START + 86_400, budget=3) == 1


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
            return service.run(Scheduled())[0].outcome

        with ThreadPoolExecutor(len(racers)) as pool:
            outcomes = sorted(pool.map(race, racers))
        issued = sim.tokens_issued(APP)
        assert issued == round_number, f"round {round_number}: {issued} tokens for {outcomes}"
        assert outcomes.count(Status.REFRESHED) == 1, outcomes
        assert set(outcomes) <= {Status.REFRESHED, Status.LEASE_HELD, Status.NOT_DUE}
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
    record = TokenStore(token_table.dynamodb, token_table.name).find(
        CredentialKey(APP, "access_token")
    )
    assert record is not None
    assert record.value == sim.current_token(APP), "the stored token is WeChat's newest"
    assert record.version == calls
    assert record.lease_owner is None
