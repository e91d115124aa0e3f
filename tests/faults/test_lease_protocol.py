"""The lease / version protocol as a hypothesis state machine, on moto.

Three refreshers (A, B, C) step through the refresher's protocol in any interleaving the
rules allow, through the ``TokenStore`` / ``Lease`` API the service uses: ``acquire``
(sometimes a forced or passive attempt, which stamps ``triggered_at``; sometimes counting
the first WeChat call in the same write, as the service does (``FirstCall``), from a record
read just now or earlier; sometimes a lost answer that botocore retries),
``Lease.count_call`` then the fetch (only with enough lease left, as ``time_left``
demands), the fenced ``Lease.commit``, ``Lease.fail``, ``Lease.release``, leaving the
``with lease:`` block on an unexpected error, a crash (forget everything, lease left
behind), and the clock moving on. WeChat is modelled as the classic endpoint: every fetch
issues a new token, the newest is "current".

Invariants: the stored version only grows (by one per successful commit); every stored
record is whole and holds a token WeChat issued, and no other attribute holds a token (the
replaced one is kept by fingerprint only); a successful commit stores WeChat's current
token; the lease's record is the record as it stood just before the lease; only the lease
holder counts calls, commits or records a failure; every call is counted exactly once (a
first call counted with the lease and never made is taken back when the lease is given
back; a lost answer never counts twice); at most one refresher holds a live lease; no lease
reaches further than ``lease_seconds`` ahead (so none is ever stuck); an expired lease is
always taken over; attempts and failures are counted as the spacing rules need
(``triggered_at``, ``trigger_failures``); every write of the lease holder files the
credential in the due index where it says (``due_shard``, ``due_at``), and no other write
moves it.
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
from token_refresher.due import Due, DueIndex
from token_refresher.errors import (
    DeadlineError,
    RefreshError,
    StoreConflictError,
    TransportError,
)
from token_refresher.registry import CLASSIC
from token_refresher.settings import Settings
from token_refresher.token_store import FirstCall, Lease, NewValue, TokenStore
from wechat_token.record import (
    ACCESS_TOKEN,
    CredentialKey,
    CredentialRecord,
    fingerprint,
    wechat_day,
)

from local_aws.resources import create_token_table
from tests.faults.faultlib import START, USABLE_LIFE

TABLE = "wechat-token-protocol"
NAMES = ("A", "B", "C")
LEASE = Settings.lease_seconds
HTTP_TIMEOUT = Settings.http_timeout_seconds
BUDGET = 1000
# service.time_left keeps 5 s back from the lease; an attempt needs the HTTP timeout.
FETCH_MARGIN = 5.0 + HTTP_TIMEOUT
DUE_INDEX = DueIndex()
# A scheduled failure (or a surprise) is due again a minute later (Rules.failure_retry_seconds).
RETRY = 60.0


@dataclass
class Lambda:
    """What one refresher invocation knows."""

    owner: str | None = None
    lease_until: float | None = None
    lease: Lease | None = None
    triggered: bool = False
    fetched: tuple[str, float] | None = None
    # The first WeChat call was counted with the lease and not made yet.
    prepaid: bool = False

    @property
    def busy(self) -> bool:
        return self.owner is not None


def idle(lam: Lambda) -> bool:
    return not lam.busy


def busy(lam: Lambda) -> bool:
    return lam.busy


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
        self.client = client
        self.store = TokenStore(client, TABLE)  # type: ignore[arg-type]
        self.app_id = f"wx{uuid.uuid4().hex[:16]}"
        self.key = CredentialKey(self.app_id, ACCESS_TOKEN)
        self.now = START
        self.wechat = WeChat()
        self.lambdas = {name: Lambda() for name in NAMES}
        # The record as the model expects it.
        self.version = 0  # successful commits so far
        self.fetches_since_write = 0
        # The lease the table should hold: (owner, until) or None.
        self.lease: tuple[str, float] | None = None
        self.calls: tuple[str, int] = (wechat_day(START), 0)  # (WeChat day, count)
        # The due-index entry: (due_shard, due_at).
        self.due: tuple[str | None, float | None] = (None, None)
        # A record read earlier (a refresher deciding on what it read a while ago).
        self.seen: CredentialRecord | None = None
        self.triggered_at: float | None = None
        self.trigger_failures = 0
        self.last_error_code: str | None = None
        # What the invariant must look at after this step: nothing changed ("none"), the
        # record an UpdateItem returned (ALL_NEW: the table right after it), or a fresh read.
        self.check = "read"
        self.returned: CredentialRecord | None = None

    # -- helpers ---------------------------------------------------------------------------

    def record(self) -> CredentialRecord:
        return self.store.find(self.key) or CredentialRecord(self.app_id)

    def ready(self, condition: Callable[[Lambda], bool]) -> list[str]:
        return [name for name, lam in self.lambdas.items() if condition(lam)]

    def lease_free(self) -> bool:
        # A lease ends at its lease_until (CredentialRecord.lease_is_live).
        return self.lease is None or self.lease[1] <= self.now

    def holds(self, lam: Lambda) -> bool:
        """Whether the table still names ``lam`` as the lease owner (live or not)."""
        return self.lease is not None and self.lease[0] == lam.owner

    def calls_today(self) -> int:
        day, count = self.calls
        return count if day == wechat_day(self.now) else 0

    def live_holders(self) -> list[str]:
        return [
            name
            for name, lam in self.lambdas.items()
            if lam.busy and lam.lease_until is not None and lam.lease_until > self.now
        ]

    def lease_of(self, name: str) -> Lease:
        lease = self.lambdas[name].lease
        assert lease is not None
        return lease

    def due_at(self, at: float) -> Due:
        return DUE_INDEX.due(self.app_id, CLASSIC, at)

    def refile(self, due: Due | None) -> None:
        """A write of the lease holder landed; with ``due``, it filed the credential."""
        if due is not None:
            self.due = (due.shard, due.at)

    def take_back(self, lam: Lambda) -> None:
        """The lease holder gave the lease back: a first call counted and never made is
        taken back in the same write."""
        if lam.prepaid:
            day, count = self.calls
            self.calls = (day, count - 1)
            note_event("unmade first call taken back")

    # -- rules -----------------------------------------------------------------------------

    @initialize()
    def start(self) -> None:
        assert self.record().version == 0

    @precondition(lambda self: self.lease_free() and bool(self.ready(idle)))
    @rule(
        data=st.data(),
        triggered=st.booleans(),
        lost_answer=st.booleans(),
        first_call=st.booleans(),
        stale=st.booleans(),
    )
    def acquire(
        self,
        data: st.DataObject,
        triggered: bool,
        lost_answer: bool,
        first_call: bool,
        stale: bool,
    ) -> None:
        self.wait(data)
        name = data.draw(st.sampled_from(self.ready(idle)))
        self.take_lease(name, triggered, lost_answer, first_call=first_call, stale=stale)

    @precondition(lambda self: bool(self.ready(busy)) and bool(self.ready(idle)))
    @rule(data=st.data(), triggered=st.booleans(), first_call=st.booleans())
    def stall(self, data: st.DataObject, triggered: bool, first_call: bool) -> None:
        """A refresher in flight stalls (GC pause, frozen Lambda) past its lease end,
        and another one takes the lease over."""
        stalled = self.lambdas[data.draw(st.sampled_from(self.ready(busy)))]
        assert stalled.lease_until is not None
        self.now = max(self.now, stalled.lease_until + 1)
        if self.lease_free():
            name = data.draw(st.sampled_from(self.ready(idle)))
            self.take_lease(name, triggered, False, first_call=first_call, stale=False)

    def take_lease(
        self, name: str, triggered: bool, lost_answer: bool, *, first_call: bool, stale: bool
    ) -> None:
        owner = f"{name}:{uuid.uuid4().hex[:8]}"
        until = self.now + LEASE
        before = self.lease
        self.check = "read"
        current = self.record()  # the table as the lease will find it
        # The record the service decided on: read just now, or a while ago (its count may
        # have moved on since: the lease then counts from the record as it is).
        basis = self.seen if stale and self.seen is not None else current
        self.seen = current
        counting = FirstCall(BUDGET) if first_call else None
        if first_call and basis.calls_today(self.now) != current.calls_today(self.now):
            note_event("first call counted from a stale read")
        lease = self.store.acquire(
            self.key, owner, self.now, until, triggered=triggered, basis=basis, first_call=counting
        )
        assert lease is not None, "a free or expired lease is always taken: never stuck"
        if before is not None:
            note_event("expired lease taken over")
        if first_call:
            self.calls = (wechat_day(self.now), self.calls_today() + 1)
        # The lease holds the record as it stood just before it was taken (ALL_OLD), with
        # the first call's count if the lease counted it.
        replaced = lease.record
        assert replaced.version == self.version, "the lease returns the record it replaced"
        replaced_lease = (
            (replaced.lease_owner, replaced.lease_until) if replaced.lease_owner else None
        )
        assert replaced_lease == before, "the lease replaced exactly the expired one"
        assert replaced.triggered_at == self.triggered_at
        assert replaced.calls_today(self.now) == self.calls_today(), "counted with the lease"
        assert lease.owner == owner
        assert lease.until == until
        if lost_answer:
            # The request landed but its answer was lost; botocore sends it again (the same
            # request: counted from the record the lease replaced): our own lease counts as
            # free, our own stamp is not an earlier attempt, and the call is counted once.
            note_event("lease answer lost, retried")
            lease = self.store.acquire(
                self.key,
                owner,
                self.now,
                until,
                triggered=triggered,
                basis=current,
                first_call=counting,
            )
            assert lease is not None, "our own lease never blocks us"
            assert lease.record.version == self.version
            assert lease.record.calls_today(self.now) == self.calls_today(), "counted once"
            if first_call:
                # The count tells our landed write apart: the record it replaced.
                assert lease.record.lease_owner == current.lease_owner
                assert lease.record.triggered_at == self.triggered_at
            else:
                assert lease.record.lease_owner == owner
                if triggered:
                    assert lease.record.triggered_at != self.now, "our own lost attempt's stamp"
        if not triggered:  # as the service does: a surprise leaves it due at the next run
            lease.due_on_surprise = self.due_at(self.now + RETRY)
        self.lease = (owner, until)
        if triggered:
            self.triggered_at = self.now
        self.lambdas[name] = Lambda(owner, until, lease, triggered, prepaid=first_call)
        assert len(self.live_holders()) <= 1, "two refreshers hold live leases"

    @precondition(lambda self: not self.lease_free() and bool(self.ready(idle)))
    @rule(data=st.data(), triggered=st.booleans(), first_call=st.booleans())
    def try_lease(self, data: st.DataObject, triggered: bool, first_call: bool) -> None:
        if self.wait(data) and self.lease_free():
            return  # the clock ran past the lease: that is acquire's case
        name = data.draw(st.sampled_from(self.ready(idle)))
        owner = f"{name}:{uuid.uuid4().hex[:8]}"
        self.seen = basis = self.record()
        lease = self.store.acquire(
            self.key,
            owner,
            self.now,
            self.now + LEASE,
            triggered=triggered,
            basis=basis,
            first_call=FirstCall(BUDGET) if first_call else None,
        )
        assert lease is None, "a live lease keeps everyone else out"
        self.check = "read"  # and a refused lease stamps and counts nothing
        note_event("lease held")

    @precondition(lambda self: bool(self.ready(busy)))
    @rule(data=st.data())
    def progress(self, data: st.DataObject) -> None:
        """The next step of one refresh in flight: count and fetch, then the fenced commit."""
        self.wait(data)
        name = data.draw(st.sampled_from(self.ready(busy)))
        if self.lambdas[name].fetched is None:
            self.fetch(name)
        else:
            self.commit(name)

    def fetch(self, name: str) -> None:
        lam = self.lambdas[name]
        lease = self.lease_of(name)
        assert lam.lease_until is not None
        self.check = "read"
        if self.now >= lam.lease_until - FETCH_MARGIN:
            # The service raises DeadlineError instead of starting a call, and records it.
            note_event("fetch refused: too little lease left")
            self.fail(name, DeadlineError("no time left in the lease"))
            return
        if lam.prepaid:
            # The first call was counted with the lease: nothing more is written.
            count = lease.count_call(self.now, BUDGET)
            assert count == self.calls_today(), "the call the lease counted, not another"
            lam.prepaid = False
            note_event("fetch counted with the lease")
            lam.fetched = (self.wechat.fetch(), self.now)
            self.fetches_since_write += 1
            return
        try:
            count = lease.count_call(self.now, BUDGET)
        except StoreConflictError:
            # Only the holder counts: the lease was taken over, nothing is called.
            assert not self.holds(lam), "a count refused while the lease was ours"
            note_event("count refused: lease taken over")
            self.check = "none"
            self.fail(name, StoreConflictError("lease taken over"))
            return
        assert self.holds(lam), "a call counted without the lease"
        assert count == self.calls_today() + 1, "each call is counted once, today"
        self.calls = (wechat_day(self.now), count)
        self.check, self.returned = "returned", lease.record
        note_event("fetch")
        lam.fetched = (self.wechat.fetch(), self.now)
        self.fetches_since_write += 1

    def commit(self, name: str) -> None:
        lam = self.lambdas[name]
        lease = self.lease_of(name)
        assert lam.owner is not None
        assert lam.fetched is not None
        token, sent = lam.fetched
        replaced = lease.record
        # The model mirrors the table (the invariant checks it after every step).
        moved = self.version != replaced.version
        taken = not self.holds(lam)
        self.check = "read"
        due = self.due_at(sent + USABLE_LIFE - 600)
        try:
            stored = lease.commit(
                NewValue(token, sent + USABLE_LIFE, sent, "/cgi-bin/token", sent + 180), due
            )
        except StoreConflictError as conflict:
            note_event("commit refused")
            assert moved or taken, "a conflict only when the record moved on"
            self.check = "none"  # a failed condition changes nothing
            self.fail(name, conflict)  # as the service does: fenced, so nothing either
            return
        assert not moved, "a commit on a stale version must fail"
        assert not taken, "a commit without the lease must fail"
        assert stored.version == replaced.version + 1
        assert stored.value == token
        assert token == self.wechat.current, "a commit that wins stores WeChat's newest"
        assert stored.lease_owner is None, "the commit releases the lease"
        assert stored.lease_until is None
        assert stored.last_error_code is None, "a success clears the last error"
        assert stored.trigger_failures == 0, "a success ends the cool-down"
        assert (stored.due_shard, stored.due_at) == (due.shard, due.at), "filed by the commit"
        if replaced.value is not None and replaced.is_valid(sent):
            assert stored.previous_fingerprint == fingerprint(replaced.value)
        self.check, self.returned = "returned", stored
        self.lease = None
        self.version += 1
        self.fetches_since_write = 0
        self.last_error_code = None
        self.trigger_failures = 0
        self.refile(due)
        note_event("commit stored")
        self.lambdas[name] = Lambda()

    def fail(self, name: str, error: RefreshError) -> None:
        """``Lease.fail``: records the error and releases, only while the lease is ours; a
        scheduled failure is filed for its retry."""
        lam = self.lambdas[name]
        due = None if lam.triggered else self.due_at(self.now + RETRY)
        self.lease_of(name).fail(error, self.now, triggered=lam.triggered, due=due)
        if self.holds(lam):
            self.lease = None
            self.last_error_code = error.code
            if lam.triggered and error.error_class.cools_down:
                self.trigger_failures += 1
            self.take_back(lam)
            self.refile(due)
            self.check = "read"
        self.lambdas[name] = Lambda()

    @precondition(lambda self: bool(self.ready(busy)))
    @rule(data=st.data(), how=st.sampled_from(["fail", "release", "error", "crash"]))
    def abandon(self, data: st.DataObject, how: str) -> None:
        """The refresh ends early: WeChat refused (fail), not due after all (release), an
        unexpected error leaves the ``with lease:`` block, or the process crashes."""
        self.wait(data)
        name = data.draw(st.sampled_from(self.ready(busy)))
        lam = self.lambdas[name]
        lease = self.lease_of(name)
        note_event(how)
        if how == "crash":
            self.lambdas[name] = Lambda()
            return  # the process is gone; its lease stays in the table until it expires
        self.check = "read"
        if how == "fail":
            self.fail(name, TransportError("injected"))
            return
        if how == "release":
            due = None if lam.triggered else self.due_at(self.now + LEASE)
            lease.release(due)
        else:
            due = lease.due_on_surprise
            with pytest.raises(RuntimeError), lease:
                raise RuntimeError("a bug inside the refresh")
        # Only our own lease goes; someone else's stays (the invariant compares the table).
        if self.holds(lam):
            self.lease = None
            self.take_back(lam)
            self.refile(due)
        self.lambdas[name] = Lambda()

    def wait(self, data: st.DataObject) -> float:
        """Time passes before each step: mostly none, sometimes to a lease's end or past it."""
        seconds = data.draw(
            st.sampled_from([0.0, 0.0, 0.0, 1.0, 5.0, 20.0, 60.0, LEASE, LEASE + 1])
        )
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
        assert record.version == self.version, "version grows by one per successful commit"
        stored_lease = (
            (record.lease_owner, record.lease_until) if record.lease_owner is not None else None
        )
        assert stored_lease == self.lease, "the table holds exactly the lease the model expects"
        assert record.calls_today(self.now) == self.calls_today(), "every call counted once"
        assert record.triggered_at == self.triggered_at, "every forced/passive attempt stamped"
        assert record.trigger_failures == self.trigger_failures
        assert record.last_error_code == self.last_error_code
        assert (record.due_shard, record.due_at) == self.due, "filed where the holder said"
        if check == "read":
            self.no_token_but_the_value()
        if record.value is None:
            assert record.version == 0
            return
        assert record.value in self.wechat.issued, "only tokens WeChat issued are stored"
        assert record.fetched_at is not None
        assert record.expires_at == record.fetched_at + USABLE_LIFE
        if self.fetches_since_write == 0:
            assert record.value == self.wechat.current

    def no_token_but_the_value(self) -> None:
        """The raw item holds no token outside ``value`` (the replaced one by fingerprint)."""
        item = self.client.get_item(  # type: ignore[attr-defined]
            TableName=TABLE, Key=self.key.item_key(), ConsistentRead=True
        ).get("Item", {})
        for name, attribute in item.items():
            if name == "value":
                continue
            text = str(attribute)
            assert not any(token in text for token in self.wechat.issued), name


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
