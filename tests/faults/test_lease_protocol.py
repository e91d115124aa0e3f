"""The lease / version protocol as a hypothesis state machine, on moto.

Three refreshers (A, B, C) step through the refresher's protocol in any interleaving the
rules allow: read + lease, fetch (only with enough lease left, as ``time_left`` demands),
fenced write, failure record, release, crash (forget everything, lease left behind), and
the clock moving on. WeChat is modelled as the classic endpoint: every fetch issues a new
token, the newest is "current".

Invariants: the stored version only grows (by one per successful write); every stored
record is whole and holds a token WeChat issued; a successful write stores WeChat's
current token; at most one refresher holds a live lease; no lease reaches further than
``lease_seconds`` ahead (so none is ever stuck); an expired lease is always taken over.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import boto3
import pytest
from hypothesis import event as note_event
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from moto import mock_aws
from token_refresher.errors import StoreConflictError
from token_refresher.settings import Settings
from token_refresher.token_store import NewValue, TokenStore
from wechat_token.record import ACCESS_TOKEN, CredentialKey, CredentialRecord

from local_aws.resources import create_token_table
from tests.faults.faultlib import START, USABLE_LIFE

TABLE = "wechat-token-protocol"
NAMES = ("A", "B", "C")
LEASE = Settings.lease_seconds
HTTP_TIMEOUT = Settings.http_timeout_seconds
# service.time_left keeps 5 s back from the lease; an attempt needs the HTTP timeout.
FETCH_MARGIN = 5.0 + HTTP_TIMEOUT


@dataclass
class Lambda:
    """What one refresher invocation knows."""

    owner: str | None = None
    lease_until: float | None = None
    leased: CredentialRecord | None = None
    fetched: tuple[str, float] | None = None

    @property
    def busy(self) -> bool:
        return self.owner is not None


def idle(lam: Lambda) -> bool:
    return not lam.busy


def busy(lam: Lambda) -> bool:
    return lam.busy


def leased_unfetched(lam: Lambda) -> bool:
    return lam.busy and lam.fetched is None


def fetched(lam: Lambda) -> bool:
    return lam.fetched is not None


class WeChat:
    """The classic token endpoint: each fetch issues a new token; the newest is current."""

    def __init__(self) -> None:
        self._numbers = itertools.count(1)
        self.issued: list[str] = []

    def fetch(self) -> str:
        token = f"TOKEN-{next(self._numbers):05d}-" + "x" * 40
        self.issued.append(token)
        return token

    @property
    def current(self) -> str | None:
        return self.issued[-1] if self.issued else None


class LeaseProtocol(RuleBasedStateMachine):
    def __init__(self, client: object) -> None:
        super().__init__()
        self.store = TokenStore(client, TABLE)  # type: ignore[arg-type]
        self.app_id = f"wx{uuid.uuid4().hex[:16]}"
        self.now = START
        self.wechat = WeChat()
        self.lambdas = {name: Lambda() for name in NAMES}
        self.version = 0  # successful writes so far
        self.fetches_since_write = 0
        # The lease the table should hold, by the model: (owner, until) or None.
        self.lease: tuple[str, float] | None = None
        # What the invariant must look at after this step: nothing changed ("none"), the
        # record an UpdateItem returned (ALL_NEW: the table right after it), or a fresh read.
        self.check = "read"
        self.returned: CredentialRecord | None = None

    # -- helpers ---------------------------------------------------------------------------

    def record(self) -> CredentialRecord:
        return self.store.find(CredentialKey(self.app_id, ACCESS_TOKEN)) or CredentialRecord(
            self.app_id
        )

    def ready(self, condition: Callable[[Lambda], bool]) -> list[str]:
        return [name for name, lam in self.lambdas.items() if condition(lam)]

    def lease_free(self) -> bool:
        return self.lease is None or self.lease[1] < self.now

    def drop_lease_of(self, owner: str) -> None:
        if self.lease is not None and self.lease[0] == owner:
            self.lease = None

    def live_holders(self) -> list[str]:
        return [
            name
            for name, lam in self.lambdas.items()
            if lam.busy and lam.lease_until is not None and lam.lease_until > self.now
        ]

    # -- rules -----------------------------------------------------------------------------

    @initialize()
    def start(self) -> None:
        assert self.record().version == 0

    @precondition(lambda self: self.lease_free() and bool(self.ready(idle)))
    @rule(data=st.data())
    def acquire(self, data: st.DataObject) -> None:
        self.wait(data)
        self.take_lease(data.draw(st.sampled_from(self.ready(idle))))

    @precondition(lambda self: bool(self.ready(busy)) and bool(self.ready(idle)))
    @rule(data=st.data())
    def stall(self, data: st.DataObject) -> None:
        """A refresher in flight stalls (GC pause, frozen Lambda) past its lease end,
        and another one takes the lease over."""
        stalled = self.lambdas[data.draw(st.sampled_from(self.ready(busy)))]
        assert stalled.lease_until is not None
        self.now = max(self.now, stalled.lease_until + 1)
        if self.lease_free():
            self.take_lease(data.draw(st.sampled_from(self.ready(idle))))

    def take_lease(self, name: str) -> None:
        owner = f"{name}:{uuid.uuid4().hex[:8]}"
        self.check = "read"
        leased = self.store.acquire_lease(
            self.app_id, ACCESS_TOKEN, owner, self.now, self.now + LEASE
        )
        assert leased is not None, "a free or expired lease is always taken: never stuck"
        if self.lease is not None:
            note_event("expired lease taken over")
        assert leased.version == self.version, "the lease returns the record as it is"
        assert leased.lease_owner == owner
        self.check, self.returned = "returned", leased
        self.lease = (owner, self.now + LEASE)
        self.lambdas[name] = Lambda(owner, self.now + LEASE, leased)
        assert len(self.live_holders()) <= 1, "two refreshers hold live leases"

    @precondition(lambda self: not self.lease_free() and bool(self.ready(idle)))
    @rule(data=st.data())
    def try_lease(self, data: st.DataObject) -> None:
        if self.wait(data) and self.lease_free():
            return  # the clock ran past the lease: that is acquire's case
        name = data.draw(st.sampled_from(self.ready(idle)))
        owner = f"{name}:{uuid.uuid4().hex[:8]}"
        leased = self.store.acquire_lease(
            self.app_id, ACCESS_TOKEN, owner, self.now, self.now + LEASE
        )
        assert leased is None, "a live lease keeps everyone else out"
        note_event("lease held")

    @precondition(lambda self: bool(self.ready(busy)))
    @rule(data=st.data())
    def progress(self, data: st.DataObject) -> None:
        """The next step of one refresh in flight: fetch from WeChat, then the fenced write."""
        self.wait(data)
        name = data.draw(st.sampled_from(self.ready(busy)))
        if self.lambdas[name].fetched is None:
            self.fetch(name)
        else:
            self.write(name)

    def fetch(self, name: str) -> None:
        lam = self.lambdas[name]
        assert lam.lease_until is not None
        if self.now >= lam.lease_until - FETCH_MARGIN:
            # The service raises DeadlineError instead of starting a call, and records it.
            note_event("fetch refused: too little lease left")
            self.check = "read"
            self.store.record_failure(
                self.app_id, ACCESS_TOKEN, lam.owner or "", "deadline", "no time", self.now
            )
            self.drop_lease_of(lam.owner or "")
            self.lambdas[name] = Lambda()
            return
        note_event("fetch")
        self.check = "read"
        self.store.count_call(self.app_id, ACCESS_TOKEN, self.now, budget=1000)
        lam.fetched = (self.wechat.fetch(), self.now)
        self.fetches_since_write += 1

    def write(self, name: str) -> None:
        lam = self.lambdas[name]
        assert lam.owner is not None
        assert lam.leased is not None
        assert lam.fetched is not None
        token, sent = lam.fetched
        # The model mirrors the table (the invariant checks it after every step).
        moved = self.version != lam.leased.version
        taken = self.lease is None or self.lease[0] != lam.owner
        self.check = "read"
        try:
            stored = self.store.write(
                self.app_id,
                ACCESS_TOKEN,
                lam.owner,
                lam.leased.version,
                NewValue(token, sent + USABLE_LIFE, sent, "/cgi-bin/token", sent + 180),
                lam.leased,
            )
        except StoreConflictError:
            note_event("write refused")
            assert moved or taken, "a conflict only when the record moved on"
            self.check = "none"  # a failed condition changes nothing
        else:
            assert not moved, "a write on a stale version must fail"
            assert not taken, "a write without the lease must fail"
            assert stored.version == lam.leased.version + 1
            assert stored.value == token
            assert token == self.wechat.current, "a write that wins stores WeChat's newest"
            assert stored.lease_owner is None, "the write releases the lease"
            self.check, self.returned = "returned", stored
            self.lease = None
            self.version += 1
            self.fetches_since_write = 0
            note_event("write stored")
        self.lambdas[name] = Lambda()

    @precondition(lambda self: bool(self.ready(busy)))
    @rule(data=st.data(), how=st.sampled_from(["fail", "release", "crash"]))
    def abandon(self, data: st.DataObject, how: str) -> None:
        """The refresh ends early: WeChat refused (fail), not due after all, or a crash."""
        self.wait(data)
        name = data.draw(st.sampled_from(self.ready(busy)))
        lam = self.lambdas[name]
        assert lam.owner is not None
        self.lambdas[name] = Lambda()
        note_event(how)
        if how == "crash":
            return  # the process is gone; its lease stays in the table until it expires
        self.check = "read"
        if how == "fail":
            self.store.record_failure(
                self.app_id, ACCESS_TOKEN, lam.owner, "transport", "injected", self.now
            )
        else:
            self.store.release_lease(self.app_id, ACCESS_TOKEN, lam.owner)
        # Only our own lease goes; someone else's stays (the invariant compares the table).
        self.drop_lease_of(lam.owner)

    def wait(self, data: st.DataObject) -> float:
        """Time passes before each step: mostly none, sometimes past a lease."""
        seconds = data.draw(st.sampled_from([0.0, 0.0, 0.0, 1.0, 5.0, 20.0, 60.0, LEASE + 1]))
        self.now += seconds
        return seconds

    # -- invariants ------------------------------------------------------------------------

    @invariant()
    def the_table_matches_the_model(self) -> None:
        if self.lease is not None:
            assert self.lease[1] - self.now <= LEASE, "a lease ends within lease_seconds"
        assert len(self.live_holders()) <= 1, "at most one live lease"
        check, self.check = self.check, "none"
        if check == "none":
            return
        record = self.returned if check == "returned" and self.returned else self.record()
        assert record.version == self.version, "version grows by one per successful write"
        stored_lease = (
            (record.lease_owner, record.lease_until) if record.lease_owner is not None else None
        )
        assert stored_lease == self.lease, "the table holds exactly the lease the model expects"
        if record.value is None:
            assert record.version == 0
            return
        assert record.value in self.wechat.issued, "only tokens WeChat issued are stored"
        assert record.fetched_at is not None
        assert record.expires_at == record.fetched_at + USABLE_LIFE
        if self.fetches_since_write == 0:
            assert record.value == self.wechat.current


@pytest.fixture(scope="module")
def moto_client() -> Iterator[object]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_token_table(client, TABLE)
        yield client


def test_the_lease_and_version_protocol_holds_in_any_interleaving(moto_client: object) -> None:
    run_state_machine_as_test(
        lambda: LeaseProtocol(moto_client),  # type: ignore[arg-type]  # a factory is accepted
        settings=settings(max_examples=25, stateful_step_count=35, deadline=None),
    )
