"""Refreshers racing for a simulated day: every hourly schedule fires twice (a duplicated
schedule, say a second rule left behind), and a retried async invocation arrives while
they run and again a minute later. Three Lambda instances, their own clients, one of them
with a clock 2 s ahead, and a slow WeChat that widens the race window.

WeChat keeps two tokens per app: a second fetch in the same hour would evict the token
consumers still hold. The lease and the version-fenced write must make sure it never
happens: zero 40001 for consumers, one WeChat token call per hour.

A scheduled run is a planner (issue 14): it reports only the credentials it found due and
worked. A racer that plans after another already did (or a retry a minute later, when
nothing is due) reports nothing, and must call WeChat for nothing.
"""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from token_refresher.outcome import Status
from token_refresher.service import RefreshService
from token_refresher.triggers import Scheduled

from simulator import CLASSIC_TOKEN
from tests.scenarios.harness import (
    BUSINESS,
    HOUR,
    Deployment,
    Fleet,
    Stopwatch,
    token_calls_by_day,
)

pytestmark = pytest.mark.scenario

APP = "wxracing000000001"
SECRET = "racing-secret-0123456789"
HOURS = 24


def test_racing_refreshers_never_evict_a_token_consumers_hold(deployment: Deployment) -> None:
    deployment.add_app(APP, SECRET)
    clock, sim = deployment.clock, deployment.sim
    # A slow WeChat: each token fetch takes 50 real ms, so the racers really overlap.
    sim.add_fault("latency", endpoint=CLASSIC_TOKEN, seconds=0.05)
    scheduled = deployment.refresher(seed=1)
    duplicate = deployment.refresher(seed=2, clock=lambda: clock.now() + 2.0)
    retried = deployment.refresher(seed=3)
    racers = [scheduled, duplicate, retried]
    outcomes: Counter[str] = Counter()
    hours_without_one_refresh: list[tuple[int, list[str]]] = []
    late_retries: Counter[str] = Counter()
    late_calls: list[int] = []  # hours whose late retry called WeChat's token endpoint
    watch = Stopwatch()
    t0 = clock.now()

    def race() -> list[str]:
        """The racers' outcomes for the app (none from a racer that found nothing due)."""
        start = threading.Barrier(len(racers))

        def one(service: RefreshService) -> list[str]:
            start.wait()
            return [o.outcome for o in service.run(Scheduled())]

        with ThreadPoolExecutor(len(racers)) as pool:
            return [outcome for outcomes in pool.map(one, racers) for outcome in outcomes]

    with Fleet(deployment.consumers(APP, 6)) as fleet:
        for hour in range(HOURS):
            this_hour = race()
            outcomes.update(this_hour)
            if this_hour.count(Status.REFRESHED) != 1:
                hours_without_one_refresh.append((hour, this_hour))
            fleet.run(clock, until=t0 + hour * HOUR + 60)
            # Lambda retries the async invocation a minute later (the first one "timed out"):
            # nothing is due then, so it reports nothing ("nothing due") and calls nothing.
            calls_before = sim.calls(CLASSIC_TOKEN, APP)
            late = [o.outcome for o in racers[hour % 3].run(Scheduled())] or ["nothing due"]
            late_retries.update(late)
            if sim.calls(CLASSIC_TOKEN, APP) != calls_before:
                late_calls.append(hour)
            fleet.run(clock, until=t0 + (hour + 1) * HOUR)

    per_day = token_calls_by_day(sim, APP)
    rejected = sim.calls(BUSINESS, APP) - sim.calls(BUSINESS, APP, errcode=0)
    figures = (
        f"{HOURS} simulated hours in {watch.seconds:.0f} s: {HOURS * len(racers)} racing runs "
        f"{dict(outcomes)}, {HOURS} late retries {dict(late_retries)}; WeChat token calls "
        f"{sum(per_day.values())} (per WeChat day {dict(per_day)}), tokens issued "
        f"{sim.tokens_issued(APP)}; {fleet.calls} consumer calls, failures "
        f"{dict(fleet.failures) or 'none'}, rejected at WeChat {rejected}"
    )
    print(figures)

    assert not hours_without_one_refresh, f"{hours_without_one_refresh}; {figures}"
    assert set(outcomes) <= {Status.REFRESHED, Status.LEASE_HELD, Status.NOT_DUE}, figures
    assert set(late_retries) <= {Status.NOT_DUE, "nothing due"}, figures
    assert sum(late_retries.values()) == HOURS, figures
    assert not late_calls, f"late retries that called WeChat: hours {late_calls}; {figures}"
    assert sum(per_day.values()) == HOURS == sim.tokens_issued(APP), figures
    assert not fleet.failures, f"{fleet.errors()[:3]}; {figures}"
    assert rejected == 0, figures
    record = deployment.record(APP)
    assert record.value == sim.current_token(APP), "the stored token is WeChat's newest"
    assert record.version == HOURS
    assert record.lease_owner is None
