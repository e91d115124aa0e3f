"""Crash points: the refresher dies between fetch and write, right after the write, or the
whole process is killed holding the lease. The next run recovers once the lease ends, and
consumers never use a token WeChat rejects for longer than its grace allows.

WeChat's view is the simulator's: ``token_status`` (0 = accepted) and its business API.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest
from token_refresher.due import Due
from token_refresher.outcome import Status
from token_refresher.token_store import Lease, NewValue
from token_refresher.triggers import Forced, Passive, Scheduled
from wechat_token import WeChatClient
from wechat_token.record import Kind

from simulator import CLASSIC_TOKEN
from tests.faults.faultlib import APP, CREDENTIAL_STEPS, Refresher, Snapshot, World

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
BUSINESS = "/cgi-bin/get_api_domain_ip"
HOUR = 3600.0


class LambdaTimeout(BaseException):
    """What the runtime does to a function past its timeout: not an ``Exception``."""


def seeded(world: World) -> Snapshot:
    [outcome] = world.refresher(seed=99).service.run(Scheduled())
    assert outcome.outcome == Status.REFRESHED
    # Past force_min_interval_seconds: a forced refresh of a token this young is refused.
    world.clock.advance(600)
    return Snapshot.of(world.record())


def crash_after_fetch(refresher: Refresher, exc: BaseException) -> list[str]:
    """Make ``refresher`` die right after WeChat answered; the tokens it lost."""
    api = refresher.service.api
    real = api.fetch_token
    lost: list[str] = []

    def fetch(app: Any, *, force: bool = False) -> Any:
        fetched = real(app, force=force)
        lost.append(fetched.value)
        raise exc

    api.fetch_token = fetch  # type: ignore[method-assign]
    return lost


class Consumers:
    """A consumer Lambda: WeChatClient over a TokenReader, passive refresh wired to a refresher.

    ``tick()`` makes one business call and records whether WeChat accepted it, and what a
    bare TokenReader (no passive refresh) would hand out at that moment.
    """

    def __init__(self, world: World, refresher: Refresher) -> None:
        self.world = world
        self.refresher = refresher
        self.passive_outcomes: list[str] = []
        self.reader = world.reader(cache_seconds=60)
        self.client = WeChatClient(
            APP,
            base_url=world.base_url,
            reader=self.reader,
            passive_refresh=self._passive,
            http=httpx.Client(timeout=5),
            wait_seconds=1.0,
            sleep=lambda _: None,
        )
        self.failures: list[tuple[float, str]] = []
        self.calls = 0
        # A bare reader (no passive refresh, 60 s cache): when does it hold a token that
        # some WeChat server rejects?
        self.bare = world.reader(cache_seconds=60)
        self.bare_rejected: list[float] = []
        self.step = 20.0  # seconds between ticks

    def _passive(self, app_id: str, kind: str, stale: str, errcode: int | None) -> str:
        request = Passive(app_id=app_id, kind=Kind(kind), stale=stale, errcode=errcode)
        [outcome] = self.refresher.service.run(request)
        self.passive_outcomes.append(outcome.outcome)
        return outcome.outcome

    def tick(self) -> None:
        self.calls += 1
        token = self.bare.get(APP)
        servers = range(len(self.world.sim.server_offsets))
        if any(self.world.sim.token_status(token, server=i) for i in servers):
            self.bare_rejected.append(self.world.clock.now())
        try:
            reply = self.client.get(BUSINESS)
        except Exception as exc:
            self.failures.append((self.world.clock.now(), type(exc).__name__))
            return
        assert "ip_list" in reply

    def longest_bare_exposure(self) -> float:
        """The longest stretch a bare reader held a rejected token (tick resolution)."""
        longest, start, last = 0.0, None, None
        for at in self.bare_rejected:
            if start is None or last is None or at - last > self.step:
                start = at
            last = at
            longest = max(longest, at - start + self.step)
        return longest

    def run_for(self, seconds: float, step: float = 20.0) -> None:
        self.step = step
        end = self.world.clock.now() + seconds
        while self.world.clock.now() < end:
            self.tick()
            self.world.clock.advance(step)


def test_the_grace_outlasts_a_crashed_refreshers_lease(world: World) -> None:
    """Why a lost token never hurts consumers before the lease lets someone fix it."""
    settings = world.refresher().service.settings
    max_skew = max(abs(offset) for offset in world.sim.server_offsets)
    assert settings.lease_seconds < world.sim.grace_seconds - max_skew


def test_an_exception_between_fetch_and_write_keeps_the_token_and_frees_the_lease(
    world: World,
) -> None:
    before = seeded(world)
    world.clock.advance(HOUR)
    crashing = world.refresher(seed=1)
    lost = crash_after_fetch(crashing, RuntimeError("bug between fetch and write"))

    [outcome] = crashing.service.run(Scheduled())

    assert outcome.outcome == Status.FAILED
    assert lost == [world.sim.current_token(APP)], "WeChat issued a token nobody stored"
    record = world.record()
    assert Snapshot.of(record) == before
    assert record.lease_owner is None, "the lease was released on the way out"
    assert world.sim.token_status(before.value or "") == 0, "the old token is in its grace"
    # The next run (two minutes later: the failure is due again then) waits for no lease.
    world.clock.advance(120)
    [again] = world.refresher(seed=2).service.run(Scheduled())
    assert again.outcome == Status.REFRESHED
    after = world.record()
    world.assert_whole(after)
    assert after.value == world.sim.current_token(APP)
    assert after.version == before.version + 1


def test_an_exception_raised_by_the_write_itself_changes_nothing(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = seeded(world)
    refresher = world.refresher(seed=1)

    def broken_commit(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the process died inside Lease.commit, before the request")

    monkeypatch.setattr(Lease, "commit", broken_commit)
    [outcome] = refresher.service.run(Forced(APP))
    assert outcome.outcome == Status.FAILED
    record = world.record()
    assert Snapshot.of(record) == before
    assert record.lease_owner is None


def test_a_lambda_timeout_between_fetch_and_write_is_invisible_to_consumers(
    world: World,
) -> None:
    before = seeded(world)
    consumers = Consumers(world, world.refresher(seed=2))
    consumers.run_for(HOUR - 60, step=60)
    crashing = world.refresher(seed=1)
    lost = crash_after_fetch(crashing, LambdaTimeout())

    with pytest.raises(LambdaTimeout):
        crashing.service.run(Scheduled())

    record = world.record()
    assert Snapshot.of(record) == before
    assert record.lease_owner is None, "released on the way out, even for a BaseException"
    assert lost == [world.sim.current_token(APP)]
    # Consumers carry on with the stored token; when WeChat's grace for it ends, their
    # 40001 triggers one passive refresh and the call is retried with the new token.
    consumers.run_for(15 * 60)
    assert consumers.failures == []
    assert consumers.passive_outcomes == [Status.REFRESHED]
    # Without passive refresh a reader only lags by its cache, well inside WeChat's grace.
    assert consumers.longest_bare_exposure() <= consumers.bare.cache_seconds + consumers.step
    after = world.record()
    world.assert_whole(after)
    assert after.value == world.sim.current_token(APP)


def test_the_next_scheduled_run_repairs_a_lost_token_without_any_consumer(
    world: World,
) -> None:
    before = seeded(world)
    world.clock.advance(HOUR)
    crash_after_fetch(crashing := world.refresher(seed=1), LambdaTimeout())
    with pytest.raises(LambdaTimeout):
        crashing.service.run(Scheduled())
    record = world.record()
    assert Snapshot.of(record) == before
    assert record.lease_owner is None, "released on the way out"
    # The released lease filed the credential for the next run, not for this instant.
    retry_at = world.clock.now() + world.refresher().service.rules.failure_retry_seconds
    assert record.due_at == retry_at
    # Lambda retries a failed scheduled invocation a minute later (and the schedule's next
    # run comes within two): that run plans it again and replaces the token.
    world.clock.set(retry_at)
    [retry] = world.refresher(seed=2).service.run(Scheduled())
    assert retry.outcome == Status.REFRESHED
    record = world.record()
    world.assert_whole(record)
    assert record.value == world.sim.current_token(APP)
    assert record.version == before.version + 1


def test_the_write_releases_the_lease_in_the_same_request(world: World) -> None:
    seeded(world)
    world.clock.advance(HOUR)
    refresher = world.refresher(seed=1)

    [outcome] = refresher.service.run(Scheduled())

    assert outcome.outcome == Status.REFRESHED
    steps = refresher.faults.steps()
    credential = [step for step in steps if step in CREDENTIAL_STEPS]
    # The consistent read, the lease (counting the WeChat call), the fenced write: the
    # write is the credential's last request, so no separate release after it.
    assert credential == ["read", "lease", "write"], steps
    assert "release" not in steps
    # The call-rate permit is taken between the lease and the write (before the call).
    assert steps.index("lease") < steps.index("rate") < steps.index("write"), steps
    assert set(steps) <= {*CREDENTIAL_STEPS, "rate", "plan"}, steps
    record = world.record()
    assert record.lease_owner is None
    assert record.lease_until is None


def test_a_crash_right_after_the_write_leaves_no_lease_behind(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = seeded(world)
    world.clock.advance(HOUR)
    refresher = world.refresher(seed=1)
    real_commit = Lease.commit

    def commit_then_die(lease: Lease, new: NewValue, due: Due) -> Any:
        real_commit(lease, new, due)
        raise LambdaTimeout

    monkeypatch.setattr(Lease, "commit", commit_then_die)
    with pytest.raises(LambdaTimeout):
        refresher.service.run(Scheduled())

    record = world.record()
    world.assert_whole(record)
    assert record.version == before.version + 1
    assert record.value == world.sim.current_token(APP)
    assert record.lease_owner is None, "nothing was left to release"
    # The write filed it in the due index ahead of now: a run now plans nothing, and the
    # run that does plan it (the stored token's next probe) finds nothing to do.
    assert record.due_at is not None
    assert record.due_at > world.clock.now()
    calls = world.sim.calls(CLASSIC_TOKEN, APP)
    planner = world.refresher(seed=2)
    assert list(planner.service.run(Scheduled())) == []
    world.clock.set(record.due_at)
    [later] = planner.service.run(Scheduled())
    assert later.outcome == Status.NOT_DUE
    assert world.sim.calls(CLASSIC_TOKEN, APP) == calls


# -- a real process killed mid-refresh -------------------------------------------------------

_CHILD = textwrap.dedent(
    """
    import os, sys, time
    from local_aws import LocalTable
    from token_refresher.triggers import Scheduled, Forced, Passive
    from tests.faults.faultlib import APP, refresher

    now = float(os.environ["FAULT_NOW"])
    table = LocalTable(os.environ["FAULT_TABLE"], os.environ["FAULT_ENDPOINT"], None)
    child = refresher(table, os.environ["FAULT_WECHAT"], lambda: now)
    api = child.service.api
    real = api.fetch_token

    def fetch(app, *, force=False):
        fetched = real(app, force=force)
        print("FETCHED", flush=True)
        time.sleep(60)  # killed here, between WeChat's answer and the write
        return fetched

    api.fetch_token = fetch
    child.service.run(Forced(APP))
    print("NOT KILLED", flush=True)
    """
)


def _run_child_until_fetched(world: World) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            str(REPO / part) for part in ("layers/wechat_token", "functions/refresher", ".")
        ),
        "FAULT_NOW": repr(world.clock.now()),
        "FAULT_TABLE": world.table.name,
        "FAULT_ENDPOINT": world.table.endpoint_url,
        "FAULT_WECHAT": world.base_url,
    }
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(child.stdout, selectors.EVENT_READ)
        ready = selector.select(timeout=60)
    line = child.stdout.readline() if ready else ""
    if line.strip() != "FETCHED":
        child.kill()
        _, err = child.communicate(timeout=10)
        pytest.fail(f"the child refresher did not reach its fetch: {line!r}\n{err[-2000:]}")
    return child


def test_a_killed_refresher_process_leaves_a_lease_that_expires(world: World) -> None:
    before = seeded(world)
    world.clock.advance(HOUR)
    killed_at = world.clock.now()
    child = _run_child_until_fetched(world)
    try:
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=10) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()

    lease_seconds = world.refresher().service.settings.lease_seconds
    record = world.record()
    assert Snapshot.of(record) == before, "the dead process wrote nothing"
    assert record.lease_owner is not None, "its lease is left behind"
    assert record.lease_until == killed_at + lease_seconds
    lost = world.sim.current_token(APP)
    assert lost != before.value

    # Consumers and other refreshers during the dead lease: nobody calls WeChat, the stored
    # token is still accepted (grace), business calls succeed. Its pauses are real time.
    successor = world.refresher(seed=2, sleep=world.clock.advance)
    consumers = Consumers(world, successor)
    calls = world.sim.calls(CLASSIC_TOKEN, APP)
    consumers.run_for(lease_seconds - 20)
    [held] = successor.service.run(Forced(APP))
    assert held.outcome == Status.LEASE_HELD, "an operator's force does not wait"
    assert world.sim.calls(CLASSIC_TOKEN, APP) == calls
    assert world.sim.token_status(before.value or "") == 0

    # The next scheduled run waits for the dead lease to end (bounded by it), decides
    # again, takes the lease over and stores a token WeChat takes.
    lease_end = killed_at + lease_seconds
    waited_from = world.clock.now()
    [taken] = successor.service.run(Scheduled())
    assert taken.outcome == Status.REFRESHED
    assert successor.sleeps, "it waited for the lease"
    assert lease_end <= world.clock.now() <= lease_end + 5, "no longer than the lease lasted"
    assert sum(successor.sleeps) <= lease_end - waited_from + 5
    assert world.sim.calls(CLASSIC_TOKEN, APP) == calls + 1
    assert world.sim.calls(CLASSIC_TOKEN, APP, since=waited_from) == 1
    assert world.sim.calls(CLASSIC_TOKEN, APP, since=lease_end) == 1, (
        "WeChat was called only once the lease had ended"
    )
    after = world.record()
    world.assert_whole(after)
    assert after.value == world.sim.current_token(APP)
    assert after.lease_owner is None
    consumers.run_for(15 * 60)
    assert consumers.failures == []
    assert world.sim.token_status(after.value or "") == 0
    assert consumers.longest_bare_exposure() <= consumers.bare.cache_seconds + consumers.step
