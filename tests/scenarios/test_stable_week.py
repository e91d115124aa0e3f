"""A simulated week of stable-token apps: renewed in WeChat's own overlap window, never forced.

WeChat's three servers are skewed -90 s, 0 s and +90 s (the spread the README's margins are
worked out for); each call, the refresher's and the consumers', reaches one of them at
random and is judged by its clock. Both schedules of the template run: the stable one every
minute (``{"types": ["stable"]}``) and the main one every two minutes. A refresher's pauses
between its asks in a window pass simulated time while the consumers go on calling
(:class:`Timeline`). The 20 consumers use bare ``TokenReader.get`` with the layer's default
60 s cache and no passive refresh: a token they are given must simply work.

The alarm metric is what the runs publish (``min_seconds_to_expiry(..., stable=True)``, or
``NO_STABLE_TOKEN_SECONDS`` when a run saw no stable token: a planner run where nothing is
due reports no outcome), evaluated like ``StableTokenCloseToExpiryAlarm``: 1-minute Minimum,
three breaching minutes in a row, missing data breaching.
"""

from __future__ import annotations

import contextlib
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from token_refresher.outcome import RunSummary, Status
from token_refresher.registry import STABLE
from token_refresher.service import RefreshService
from token_refresher.telemetry import NO_STABLE_TOKEN_SECONDS, min_seconds_to_expiry
from token_refresher.triggers import Scheduled

from local_aws import DynamoDBLocal, create_token_table, dynamodb_client
from simulator import (
    BUSINESS_ENDPOINTS,
    STABLE_TOKEN,
    ManualClock,
    SimulatorServer,
    WeChatSimulator,
    wechat_day,
)
from tests.scenarios.harness import DAY, TICK, Deployment, Fleet, Stopwatch, Timeline

pytestmark = pytest.mark.scenario

APPS = {"wxstableweek00001": "stable-secret-a-01234567", "wxstableweek00002": "stable-secret-b-7"}
CONSUMERS_PER_APP = 10
DAYS = 7
OFFSETS = (-90.0, 0.0, 90.0)
THRESHOLD = 90.0  # StableExpiryAlarmThresholdSeconds' default
ALARM_MINUTES = 3
CACHE_SECONDS = 60.0
MAX_STABLE_CALLS_PER_DAY = 150


@dataclass
class Week:
    """What happened: the alarm metric per minute, what the runs did, the stored expiries."""

    datapoints: dict[int, float] = field(default_factory=dict)
    statuses: Counter[str] = field(default_factory=Counter)
    rotations: list[tuple[float, float]] = field(default_factory=list)  # (time, life left)
    expiries: dict[str, float] = field(default_factory=dict)  # app -> stored expires_at

    def report(self, summary: RunSummary, now: float) -> None:
        """One run: its alarm datapoint (every scheduled run publishes one, as
        ``telemetry.publish`` does), its outcomes, the stored expiries it left."""
        least = min_seconds_to_expiry(summary, stable=True)
        if least is None:
            least = NO_STABLE_TOKEN_SECONDS
        minute = int(now // 60)
        self.datapoints[minute] = min(self.datapoints.get(minute, float("inf")), least)
        for outcome in summary:
            self.statuses[str(outcome.status)] += 1
            before = self.expiries.get(outcome.app_id)
            if outcome.status is Status.REFRESHED and before is not None:
                self.rotations.append((now, before - now))
            if outcome.expires_at is not None and outcome.is_stable_token:
                self.expiries[outcome.app_id] = outcome.expires_at

    def alarm_minutes(self, first: int, last: int) -> list[int]:
        """Minutes at which the alarm is in ALARM (three breaching minutes in a row)."""
        return [
            minute
            for minute in range(first + ALARM_MINUTES - 1, last)
            if all(
                self.datapoints.get(m, -1.0) < THRESHOLD
                for m in range(minute - ALARM_MINUTES + 1, minute + 1)
            )
        ]


@pytest.fixture
def stable_deployment(dynamodb_local: DynamoDBLocal, clock: ManualClock) -> Iterator[Deployment]:
    """A fresh table, the simulator with servers at -90/0/+90 s on loopback, two stable apps."""
    name = f"stable-{uuid.uuid4().hex[:12]}"
    admin = dynamodb_client(dynamodb_local.endpoint_url)
    create_token_table(admin, name)
    sim = WeChatSimulator(clock, seed=11, server_offsets=OFFSETS)
    server = SimulatorServer(sim).start()
    deployment = Deployment(name, dynamodb_local.endpoint_url, sim, server.base_url, clock)
    for app, secret in APPS.items():
        sim.add_app(app, secret)
        deployment.registry[app] = {"type": STABLE, "secret": secret}
    try:
        yield deployment
    finally:
        deployment.close()
        server.stop()
        with contextlib.suppress(admin.exceptions.ResourceNotFoundException):
            admin.delete_table(TableName=name)
        admin.close()


@dataclass
class Outage:
    """Both schedules stop for ``seconds`` from the first run after ``after`` that sees
    ``app``'s stored token with less than ``lead`` seconds left."""

    app: str
    after: float
    lead: float = 15 * 60.0
    seconds: float = 30 * 60.0
    start: float | None = None
    expiry: float = 0.0  # the stored expiry of the token whose window it spans
    expiries: dict[str, float] = field(default_factory=dict)  # every app's, at the stop

    def down(self, week: Week, now: float) -> bool:
        expiry = week.expiries.get(self.app, float("inf"))
        if self.start is None and now >= self.after and expiry - now < self.lead:
            self.start, self.expiry, self.expiries = now, expiry, dict(week.expiries)
        return self.start is not None and self.start <= now < self.start + self.seconds


def _week(
    deployment: Deployment, outage: Outage | None = None, days: float = DAYS
) -> tuple[Week, Fleet]:
    """Both schedules for ``days`` (none while ``outage`` is on); consumers every 10 s from
    just after the first run (which stores the first tokens)."""
    clock = deployment.clock
    consumers = [c for app in APPS for c in deployment.consumers(app, CONSUMERS_PER_APP)]
    fleet = Fleet(consumers)
    timeline = Timeline(clock, fleet, first_call=clock.now() + 5)
    stable_run = deployment.refresher(seed=1, sleep=timeline.sleep)
    main_run = deployment.refresher(seed=2, sleep=timeline.sleep)
    start, week = clock.now(), Week()

    def run(refresher: RefreshService, trigger: Scheduled, at: float) -> None:
        timeline.run_until(at)
        if outage is not None and outage.down(week, clock.now()):
            return
        summary = refresher.run(trigger)
        week.report(summary, clock.now())  # published, like its metrics, when it ends

    for minute in range(int(days * DAY / 60)):
        at = start + 60 * minute
        run(stable_run, Scheduled(types=(STABLE,)), at + 4)
        if minute % 2 == 0:
            run(main_run, Scheduled(), at + 33)
    timeline.run_until(start + days * DAY - 1)
    return week, fleet


def _stable_calls_per_day(sim: WeChatSimulator) -> dict[str, list[int]]:
    return {
        app: sorted(
            Counter(
                wechat_day(r.time)
                for r in sim.call_log
                if r.endpoint == STABLE_TOKEN and r.appid == app
            ).values()
        )
        for app in APPS
    }


def _forced(sim: WeChatSimulator) -> int:
    return sum(1 for r in sim.call_log if r.endpoint == STABLE_TOKEN and r.note == "forced")


def _rejected_at_wechat(sim: WeChatSimulator) -> int:
    return sum(
        sim.calls(endpoint, app) - sim.calls(endpoint, app, errcode=0)
        for endpoint in BUSINESS_ENDPOINTS
        for app in APPS
    )


def test_a_week_of_stable_tokens_renewed_in_the_overlap_window(
    stable_deployment: Deployment,
) -> None:
    sim, clock = stable_deployment.sim, stable_deployment.clock
    first_minute = int(clock.now() // 60)
    watch = Stopwatch()
    week, fleet = _week(stable_deployment)
    per_day = _stable_calls_per_day(sim)
    lows = sorted(life for _, life in week.rotations)
    in_alarm = week.alarm_minutes(first_minute + 5, int(clock.now() // 60))
    figures = (
        f"{DAYS} simulated days in {watch.seconds:.0f} s: {fleet.calls} consumer calls, "
        f"failures {dict(fleet.failures) or 'none'}, rejected at WeChat "
        f"{_rejected_at_wechat(sim)}, forced refreshes {_forced(sim)}, rotations "
        f"{len(week.rotations)}, stored life left at a rotation: least {lows[0]:.0f} s, "
        f"median {lows[len(lows) // 2]:.0f} s; stable calls per app per WeChat day "
        + "; ".join(f"{app}: {days}" for app, days in per_day.items())
        + f"; least alarm datapoint {min(week.datapoints.values()):.0f} s; "
        f"minutes in ALARM {len(in_alarm)}; outcomes {dict(week.statuses)}"
    )
    print(figures)

    assert not fleet.failures, f"consumers failed: {fleet.errors()[:3]}; {figures}"
    assert _rejected_at_wechat(sim) == 0, figures
    assert _forced(sim) == 0, figures
    assert sim.stats(include_log=False)["apps"][next(iter(APPS))]["stable"]["force_rejected"] == 0
    # One rotation per app per ~2 hours: 7 days x 12 = 84 each, give or take the first.
    assert len(week.rotations) >= 2 * (DAYS * 12 - 2), figures
    assert lows[0] >= 40, f"renewed later than the README's margin: {figures}"
    for days in per_day.values():
        assert max(days) <= MAX_STABLE_CALLS_PER_DAY, figures
    assert in_alarm == [], figures


def test_a_refresher_down_through_a_window_recovers_and_alarms_first(
    stable_deployment: Deployment,
) -> None:
    """The same week; on its third day the refresher stops for 30 minutes
    from 15 minutes before a stored stable token expires, so its whole window passes
    unserved: the alarm fires before the token ends; consumers fail only from its end until
    the first run after the outage plus their 60 s cache; then all is healthy again."""
    sim, clock = stable_deployment.sim, stable_deployment.clock
    first_minute = int(clock.now() // 60)
    app = next(iter(APPS))
    outage = Outage(app, after=clock.now() + 2 * DAY)
    week, fleet = _week(stable_deployment, outage)
    assert outage.start is not None
    start, end = outage.start, outage.start + outage.seconds
    victims = [c for c in fleet.consumers if c.failures]
    window = fleet.failure_window()
    in_alarm = week.alarm_minutes(first_minute + 5, int(clock.now() // 60))
    expiry = outage.expiry
    figures = (
        f"down {(start - clock.now()) / 3600 + DAYS * 24:.1f} h in for "
        f"{outage.seconds:.0f} s, the token's stored expiry {expiry - start:.0f} s in; "
        f"consumer failures {dict(fleet.failures) or 'none'} "
        f"({len(victims)} consumers) from {None if window is None else window[0] - start:.0f}"
        f" to {None if window is None else window[1] - start:.0f} s after the stop; first "
        f"minute in ALARM {in_alarm[0] * 60 - start if in_alarm else None:.0f} s after the "
        f"stop, last {in_alarm[-1] * 60 - start if in_alarm else None:.0f} s; forced "
        f"{_forced(sim)}; outcomes {dict(week.statuses)}"
    )
    print(figures)
    assert in_alarm, f"a stopped refresher must alarm: {figures}"
    assert start <= in_alarm[0] * 60 + 60 <= start + 4 * 60, figures
    assert in_alarm[0] * 60 + 60 < expiry - 5 * 60, f"the alarm came late: {figures}"
    assert in_alarm[-1] * 60 <= end + 3 * 60, f"still alarming after the outage: {figures}"
    for consumer in victims:
        # Each app's consumers fail only once its own stored token ends (another app's
        # window may fall into the outage too), and recover within their cache.
        assert consumer.first_failure is not None
        assert consumer.last_failure is not None
        ends = outage.expiries[consumer.app_id]
        assert consumer.first_failure >= ends - 180 - TICK, f"failed early: {figures}"
        assert consumer.last_failure <= end + 60 + CACHE_SECONDS + TICK, f"slow: {figures}"
