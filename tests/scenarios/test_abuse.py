"""Consumers are untrusted callers: a buggy consumer in a loop, a storm of forced ticket
refreshes, a WeChat incident with consumers hammering the passive entry point. None of them
may rotate a good token, spend the schedule's reserve, or outlast the incident.

Before this redesign (measured, issue 10): one report every 61 s rotated the token 999 times
and spent the 1000-call budget by 16:56 UTC+8; 250 reports during a -1 incident spent the
whole budget; 100 forced ticket refreshes at one instant made 100 getticket calls.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from token_refresher.outcome import Status
from token_refresher.triggers import Forced, Passive, Scheduled

from simulator import CLASSIC_TOKEN, MP_TICKET, Fault
from tests.scenarios.harness import DAY, HOUR, Deployment, token_calls, token_calls_by_day

pytestmark = pytest.mark.scenario

APP = "wxabuse0000000001"
SECRET = "abuse-secret-0123456789"
RUN_EVERY = 120.0


def test_a_report_every_61_seconds_for_a_day_rotates_nothing_while_wechat_accepts(
    deployment: Deployment,
) -> None:
    deployment.add_app(APP, SECRET)
    clock = deployment.clock
    scheduler, consumer_side = deployment.refresher(), deployment.refresher(seed=1)
    end = clock.now() + DAY
    next_run, next_report = clock.now(), clock.now()
    reports: Counter[str] = Counter()
    runs: Counter[str] = Counter()
    while clock.now() < end:
        now = clock.now()
        if now >= next_run:
            runs.update(str(o.status) for o in scheduler.run(Scheduled()))
            next_run += RUN_EVERY
        if now >= next_report:
            stale = deployment.record(APP).fingerprint() or ""
            outcome = consumer_side.report(Passive(APP, stale=stale, errcode=40001))[0]
            reports[str(outcome.status)] += 1
            next_report += 61
        clock.advance(min(next_run, next_report) - now)
    record = deployment.record(APP)
    per_day = token_calls_by_day(deployment.sim, APP)
    figures = f"reports {dict(reports)}; runs {dict(runs)}; token calls per day {dict(per_day)}"
    print(figures)
    assert reports[Status.REFRESHED] == 0, figures
    assert record.foreign_rotations == 0, figures
    assert record.consumer_calls_today(clock.now()) == 0, figures
    assert set(reports) <= {Status.TOKEN_ACCEPTED, Status.RATE_LIMITED}, figures
    # Only the schedule's own renewals: about 28 a day.
    assert max(per_day.values()) <= 30, figures


def test_a_three_hour_incident_with_reports_every_second_keeps_the_schedules_reserve(
    deployment: Deployment,
) -> None:
    deployment.add_app(APP, SECRET)
    clock, sim = deployment.clock, deployment.sim
    scheduler, consumer_side = deployment.refresher(), deployment.refresher(seed=1)
    settings = consumer_side.settings
    assert scheduler.run(Scheduled())[0].status is Status.REFRESHED
    stale = deployment.record(APP).fingerprint() or ""
    # WeChat answers -1 everywhere (token endpoint and the business API the probe uses).
    sim.set_faults([Fault("errcode", errcode=-1)])
    start, end = clock.now(), clock.now() + 3 * HOUR
    reports: Counter[str] = Counter()
    next_run = start + RUN_EVERY
    while clock.now() < end:
        if clock.now() >= next_run:
            scheduler.run(Scheduled())
            next_run += RUN_EVERY
        reports[str(consumer_side.report(Passive(APP, stale=stale, errcode=40001))[0].status)] += 1
        clock.advance(1)
    during = token_calls(sim, APP) - 1
    consumer_calls = deployment.record(APP).consumer_calls_today(clock.now())
    sim.set_faults([])
    clock.advance(next_run - clock.now())
    [recovered] = scheduler.run(Scheduled())
    figures = (
        f"reports {dict(reports)}; token calls during the incident {during} (consumers' "
        f"{consumer_calls}, cap {settings.consumer_cap}); first run after it: "
        f"{recovered.status}"
    )
    print(figures)
    assert consumer_calls <= settings.consumer_cap, figures
    assert recovered.status is Status.REFRESHED, figures
    assert deployment.record(APP).is_valid(clock.now())
    assert token_calls(sim, APP) < settings.daily_call_budget, figures


def test_a_hundred_forced_ticket_refreshes_at_one_instant_make_at_most_one_call(
    deployment: Deployment,
) -> None:
    deployment.add_app(APP, SECRET)
    deployment.registry[APP] = {"secret": SECRET, "tickets": ["jsapi"]}
    refresher = deployment.refresher()
    refresher.run(Scheduled())
    deployment.clock.advance(600)  # old enough to be forced at all
    before = deployment.sim.calls(MP_TICKET, APP)
    refreshers = [deployment.refresher(seed=i) for i in range(8)]
    force = Forced(APP, kind="jsapi_ticket")
    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(lambda i: refreshers[i % 8].run(force)[0], range(100)))
    calls = deployment.sim.calls(MP_TICKET, APP) - before
    statuses = Counter(str(o.status) for o in outcomes)
    assert calls <= 1, f"{calls} getticket calls; {dict(statuses)}"
    assert statuses[Status.REFRESHED] <= 1, dict(statuses)
    assert set(statuses) <= {Status.REFRESHED, Status.LEASE_HELD, Status.RATE_LIMITED}


@pytest.mark.parametrize("types", [(), ("stable",)])
def test_a_registry_without_stable_apps_runs_both_schedules_without_error(
    deployment: Deployment, types: tuple[str, ...]
) -> None:
    deployment.add_app(APP, SECRET)
    deployment.registry["wxoff000000000001"] = {"secret": "x", "enabled": False}  # type: ignore[dict-item]
    summary = deployment.refresher().run(Scheduled(types=types))
    assert summary.failed == 0
    assert len(summary) == (0 if types else 1)
    deployment.registry[APP] = {"secret": SECRET, "enabled": False}  # type: ignore[dict-item]
    assert len(deployment.refresher().run(Scheduled(types=types))) == 0
    assert deployment.sim.calls(CLASSIC_TOKEN, APP) == (0 if types else 1)
