"""The README's margins, measured: with the template's schedule (a run every 2 minutes,
renewal below 3900 s of the 6900 s stored life), any outage of WeChat's token endpoint of up
to 61 minutes, at any phase of the renewal cycle, costs consumers nothing; a longer one at
the worst phase does cost them (so the margin is real, not slack); steady state stays at
about 28 token calls per app per day; and the metric the close-to-expiry alarm watches stays
above its threshold through a healthy day with classic, stable and WeCom apps mixed.

Real parts: DynamoDB Local and the simulator over loopback HTTP (3 servers, +-90 s skew).
The consumer here reads the table the way the layer does (60 s cache, never past
``expires_at``) and asks the simulator whether WeChat accepts what it holds.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pytest
from token_refresher.outcome import Status
from token_refresher.service import RefreshService
from token_refresher.settings import Settings
from token_refresher.telemetry import min_seconds_to_expiry
from token_refresher.triggers import Scheduled

from simulator import CLASSIC_TOKEN, Fault
from tests.scenarios.harness import DAY, HOUR, Deployment, token_calls_by_day

pytestmark = pytest.mark.scenario

APP = "wxoutage000000001"
SECRET = "outage-secret-0123456789"
RUN_EVERY = Settings.refresh_interval_seconds  # the template's rate(2 minutes)
LOOK_EVERY = 30.0  # how often the simulated consumer calls
CACHE = 60.0
THRESHOLD = 1500.0  # template.yaml ExpiryAlarmThresholdSeconds default


@dataclass
class CachedConsumer:
    """A consumer with the layer's rules: cache 60 s, never past ``expires_at``."""

    deployment: Deployment
    app_id: str = APP
    value: str | None = None
    cache_until: float = float("-inf")
    failures: list[tuple[float, str]] = field(default_factory=list)

    def call(self, now: float) -> None:
        if now >= self.cache_until:
            record = self.deployment.record(self.app_id)
            if not record.is_valid(now):
                self.failures.append((now, "TokenExpiredError"))
                self.value, self.cache_until = None, float("-inf")
                return
            assert record.expires_at is not None
            self.value, self.cache_until = record.value, min(now + CACHE, record.expires_at)
        if not self.deployment.sim.is_token_accepted(self.value or ""):
            self.failures.append((now, "rejected by WeChat"))


def live(
    deployment: Deployment,
    refresher: RefreshService,
    consumer: CachedConsumer,
    *,
    until: float,
    outage: tuple[float, float] | None = None,
) -> Counter[str]:
    """Runs every 2 minutes, the consumer every 30 s; the token endpoint answers -1 inside
    ``outage``. Returns the runs' outcomes by status."""
    clock, sim = deployment.clock, deployment.sim
    statuses: Counter[str] = Counter()
    next_run = clock.now()
    while clock.now() < until:
        now = clock.now()
        down = outage is not None and outage[0] <= now < outage[1]
        sim.set_faults([Fault("errcode", endpoint=CLASSIC_TOKEN, errcode=-1)] if down else [])
        if now >= next_run:
            for outcome in refresher.run(Scheduled()):
                statuses[str(outcome.status)] += 1
            next_run += RUN_EVERY
        consumer.call(now)
        clock.advance(LOOK_EVERY)
    sim.set_faults([])
    return statuses


def outage_costs(deployment: Deployment, start_after: float, minutes: float) -> CachedConsumer:
    deployment.add_app(APP, SECRET)
    refresher = deployment.refresher()
    consumer = CachedConsumer(deployment)
    t0 = deployment.clock.now()
    begin = t0 + start_after + 1  # after the first run stored a token
    live(
        deployment,
        refresher,
        consumer,
        until=begin + minutes * 60 + 3 * HOUR,
        outage=(begin, begin + minutes * 60),
    )
    return consumer


# The first run that finds the token due comes 50-52 minutes after it was fetched: an
# outage beginning then (or a run before) is the worst case. Phases cover a whole cycle.
PHASES_MIN = [0, 20, 45, 49, 50, 51, 52, 55, 70, 90, 101]


@pytest.mark.parametrize("phase", PHASES_MIN)
def test_a_61_minute_outage_at_any_phase_costs_consumers_nothing(
    deployment: Deployment, phase: int
) -> None:
    consumer = outage_costs(deployment, phase * 60.0, 61)
    assert not consumer.failures, (
        f"outage of 61 min starting {phase} min after a refresh: consumers failed "
        f"{len(consumer.failures)} times, first {consumer.failures[:3]}"
    )


def test_the_margin_is_real_a_longer_outage_at_the_worst_phase_costs_consumers(
    deployment: Deployment,
) -> None:
    # 115 - 50 - 2 = 63 minutes is all the stored life left at the first due run that
    # fails; 68 minutes of outage outlast it.
    consumer = outage_costs(deployment, 50 * 60.0, 68)
    assert consumer.failures, "a 68-minute outage should outlast the stored life"
    assert {why for _, why in consumer.failures} == {"TokenExpiredError"}


def test_steady_state_costs_about_28_token_calls_a_day(deployment: Deployment) -> None:
    deployment.add_app(APP, SECRET)
    refresher = deployment.refresher()
    consumer = CachedConsumer(deployment)
    statuses = live(deployment, refresher, consumer, until=deployment.clock.now() + 2 * DAY)
    per_day = token_calls_by_day(deployment.sim, APP)
    by_day = [per_day[day] for day in sorted(per_day)]
    full_days = by_day[1:-1] or by_day  # the first and last day are partial
    figures = f"token calls per WeChat day {dict(per_day)}; runs {dict(statuses)}"
    print(figures)
    assert not consumer.failures, figures
    assert max(per_day.values()) <= 30, figures
    assert min(full_days) >= 26, figures
    assert statuses["failed"] == 0, figures


def test_a_healthy_day_keeps_the_alarm_metric_above_its_threshold(
    deployment: Deployment,
) -> None:
    sim = deployment.sim
    deployment.add_app(APP, SECRET)
    sim.add_app("wxstablealarm0001", "stable-secret-0001")
    deployment.registry["wxstablealarm0001"] = {"type": "stable", "secret": "stable-secret-0001"}
    sim.add_wecom_app("wwalarm0000001", "1000002", "wecom-secret-0001")
    deployment.registry["wwalarm0000001:1000002"] = {
        "type": "wecom",
        "corpid": "wwalarm0000001",
        "secret": "wecom-secret-0001",
    }
    refresher = deployment.refresher()
    clock = deployment.clock
    lows: list[tuple[float, float]] = []
    end = clock.now() + DAY
    while clock.now() < end:
        summary = refresher.run(Scheduled())
        assert all(o.status is not Status.FAILED for o in summary), summary.as_dict()
        least = min_seconds_to_expiry(summary)  # what the run reports to the alarm
        assert least is not None
        lows.append((clock.now(), least))
        clock.advance(RUN_EVERY)
    steady = [low for at, low in lows if at > lows[0][0] + 3 * HOUR]
    figures = (
        f"{len(lows)} runs; lowest MinSecondsToExpiry after the first 3 h {min(steady):.0f} s "
        f"(threshold {THRESHOLD:.0f} s); reported at most {max(steady):.0f} s"
    )
    print(figures)
    assert min(steady) > THRESHOLD + 120, figures
