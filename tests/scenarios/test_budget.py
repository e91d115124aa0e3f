"""A misconfigured loop (a force refresh invoked in a tight loop by several callers, or a
storm of passive reports) cannot push an app past the refresher's daily call budget:
counted at WeChat (the simulator), whatever the refresher believes. WeChat's own quota
(2000 a day; 45009 after it, for the rest of the day) is never reached.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from token_refresher.outcome import Status
from token_refresher.service import RefreshService
from token_refresher.triggers import Forced, Passive, Scheduled, Trigger

from simulator import CLASSIC_TOKEN, wechat_day
from tests.scenarios.harness import (
    DAY,
    Deployment,
    Fleet,
    Stopwatch,
    token_calls,
    token_calls_by_day,
)

pytestmark = pytest.mark.scenario

APP = "wxbudget000000001"
SECRET = "budget-secret-0123456789"
BUDGET = 25


def next_wechat_day(now: float) -> float:
    """One minute into the next WeChat day (midnight UTC+8)."""
    day = wechat_day(now)
    t = now
    while wechat_day(t) == day:
        t += 600
    return t - (t + 8 * 3600) % DAY + 60


def outcome_of(service: RefreshService, request: Trigger) -> str:
    outcome = service.run(request)[0]
    if outcome.outcome == Status.FAILED:
        return f"failed:{(outcome.error or {}).get('code')}"
    return outcome.outcome


def test_a_tight_force_refresh_loop_stops_at_the_daily_budget(deployment: Deployment) -> None:
    deployment.add_app(APP, SECRET)
    clock, sim = deployment.clock, deployment.sim
    # The force spacing is switched off here so that the budget alone has to hold the loop.
    callers = [
        deployment.refresher(
            seed=i,
            daily_call_budget=BUDGET,
            force_min_interval_seconds=0,
            passive_min_interval_seconds=0,
        )
        for i in range(4)
    ]
    force = Forced(APP)
    watch = Stopwatch()

    def loop(service: RefreshService) -> Counter[str]:
        """Force, force, force... until the refresher refuses (at most 100 times)."""
        seen: Counter[str] = Counter()
        for _ in range(100):
            outcome = outcome_of(service, force)
            seen[outcome] += 1
            if outcome == "failed:budget":
                break
        return seen

    with ThreadPoolExecutor(len(callers)) as pool:
        outcomes = sum(pool.map(loop, callers), Counter[str]())
    today = token_calls(sim, APP)
    record = deployment.record(APP)
    newest = sim.current_token(APP)
    clock.set(next_wechat_day(clock.now()))
    tomorrow = outcome_of(callers[0], force)
    figures = (
        f"{sum(outcomes.values())} forced refreshes from {len(callers)} concurrent loops in "
        f"{watch.seconds:.1f} s: {dict(outcomes)}; WeChat token calls {today} (budget "
        f"{BUDGET}), 45009 answers {sim.calls(CLASSIC_TOKEN, APP, errcode=45009)}; the next "
        f"WeChat day: {tomorrow}"
    )
    print(figures)

    assert today == BUDGET, figures
    assert outcomes[Status.REFRESHED] == BUDGET, figures
    assert outcomes["failed:budget"] == len(callers), figures
    assert set(outcomes) <= {Status.REFRESHED, Status.LEASE_HELD, "failed:budget"}, figures
    assert sim.calls(CLASSIC_TOKEN, APP, errcode=45009) == 0
    # What is stored is still the newest, working token; the refusal only recorded an error.
    assert record.value == newest
    assert record.calls_count == BUDGET
    assert record.last_error_code == "budget"
    assert tomorrow == Status.REFRESHED, figures
    assert token_calls(sim, APP) == BUDGET + 1


def test_a_storm_of_passive_reports_stays_within_the_budget(deployment: Deployment) -> None:
    deployment.add_app(APP, SECRET)
    clock, sim = deployment.clock, deployment.sim
    refresher = deployment.refresher(daily_call_budget=BUDGET)
    watch = Stopwatch()
    assert refresher.run(Scheduled())[0].outcome == Status.REFRESHED

    def report(stale: str) -> str:
        request = Passive(app_id=APP, stale=stale, errcode=40001)
        return outcome_of(refresher, request)

    # 100 consumers report the stored token within a second while WeChat accepts it:
    # nothing rotates, no token call.
    stale = str(deployment.record(APP).fingerprint())
    accepted = Counter(report(stale) for _ in range(100))
    # Someone else fetches a token; once the grace is over WeChat rejects ours, and the
    # same storm makes exactly one refresh.
    sim.foreign_fetch(APP)
    clock.advance(400)
    storm = Counter(report(stale) for _ in range(100))
    after_storm = token_calls(sim, APP)
    # A consumer stuck in a loop reports whatever token is stored, every 61 s, for an hour.
    loop: Counter[str] = Counter()
    for _ in range(60):
        clock.advance(61)
        loop[report(str(deployment.record(APP).fingerprint()))] += 1
    per_day = token_calls_by_day(sim, APP)
    figures = (
        f"100 reports on a token WeChat accepts: {dict(accepted)}; after a foreign fetch, "
        f"100 reports: {dict(storm)} -> {after_storm} WeChat token calls in all; then 60 "
        f"reports a minute apart: {dict(loop)} -> per WeChat day {dict(per_day)} "
        f"(budget {BUDGET}); {watch.seconds:.1f} s"
    )
    print(figures)

    assert accepted == {Status.TOKEN_ACCEPTED: 100}, figures
    assert storm[Status.REFRESHED] == 1, figures
    assert after_storm == 2, figures
    assert Status.REFRESHED not in loop, figures
    assert token_calls(sim, APP) == 2, figures
    assert sim.calls(CLASSIC_TOKEN, APP, errcode=45009) == 0
    record = deployment.record(APP)
    assert record.value == sim.current_token(APP)
    assert sim.is_token_accepted(record.value or "")
    assert record.foreign_rotations == 1


def test_forced_refreshes_in_a_loop_do_not_evict_tokens_consumers_hold(
    deployment: Deployment,
) -> None:
    deployment.add_app(APP, SECRET)
    clock = deployment.clock
    refresher = deployment.refresher(daily_call_budget=BUDGET)
    assert refresher.run(Scheduled())[0].outcome == Status.REFRESHED
    with Fleet(deployment.consumers(APP, 5)) as fleet:
        fleet.tick()  # every consumer now holds the token for up to 60 s
        for _ in range(3):  # an operator's script, or a retried force, a few seconds apart
            clock.advance(5)
            refresher.run(Forced(APP))
        fleet.tick()
    held = deployment.sim.call_log[0].token_fp
    assert not fleet.failures, (
        f"consumers holding the first token (simulator fingerprint {held}) got "
        f"{dict(fleet.failures)} after "
        f"{token_calls(deployment.sim, APP) - 1} forced refreshes in 15 s"
    )
