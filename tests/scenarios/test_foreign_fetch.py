"""Someone else fetches a token for our app (a test server, a second deployment, a
third-party tool): WeChat replaces ours, which dies when the 5-minute grace ends.

The damage must be detected and reported (a WARNING naming the app, ``foreign_rotation``
in the refresher's summary, a counter on the record) and repaired: by the next scheduled
run, whose probe finds the stored token rejected, or at once by the consumers' passive
refresh when they use ``WeChatClient``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from token_refresher.outcome import Status
from token_refresher.service import Outcome, RefreshService
from token_refresher.triggers import Scheduled

from simulator import CLASSIC_TOKEN, ManualClock
from tests.scenarios.harness import (
    BUSINESS,
    HOUR,
    TICK,
    CapturedLog,
    Deployment,
    Fleet,
    passive_refresh,
    token_calls,
    with_client,
)

pytestmark = pytest.mark.scenario

APP = "wxforeign00000001"
SECRET = "foreign-secret-0123456789"
GRACE = 300.0
MAX_SKEW = 90.0
REFRESHER_LOG = "wechat_token.refresher"


RUN_EVERY = 120.0  # the template's schedule
PROBE_EVERY = 300.0  # Settings.probe_interval_seconds


def _foreign(outcome: Outcome) -> bool:
    return outcome.foreign_rotation


def scheduled(
    fleet: Fleet,
    refresher: RefreshService,
    clock: ManualClock,
    *,
    until: float,
    stop: Callable[[Outcome], bool] | None = None,
) -> list[Outcome]:
    """The 2-minute schedule with consumers calling in between; the runs' outcomes."""
    outcomes: list[Outcome] = []
    while clock.now() + RUN_EVERY <= until:
        fleet.run(clock, until=clock.now() + RUN_EVERY)
        # A run sends the app only when it is due or its probe is (every 300 s).
        outcomes.extend(refresher.run(Scheduled()))
        if stop is not None and outcomes and stop(outcomes[-1]):
            break
    return outcomes


def rejected_at_wechat(deployment: Deployment) -> int:
    sim = deployment.sim
    return sim.calls(BUSINESS, APP) - sim.calls(BUSINESS, APP, errcode=0)


def test_the_next_scheduled_run_detects_reports_and_repairs_a_foreign_fetch(
    deployment: Deployment,
) -> None:
    deployment.add_app(APP, SECRET)
    clock, sim = deployment.clock, deployment.sim
    refresher = deployment.refresher()
    t0 = clock.now()
    assert refresher.run(Scheduled())[0].outcome == Status.REFRESHED
    stolen = deployment.record(APP)

    with Fleet(deployment.consumers(APP, 5, boto3_first=True)) as fleet:
        scheduled(fleet, refresher, clock, until=t0 + 600)
        foreign_at = clock.now()
        sim.foreign_fetch(APP)
        with CapturedLog(REFRESHER_LOG) as log:
            runs = scheduled(fleet, refresher, clock, until=t0 + HOUR, stop=_foreign)
        repair = runs[-1]
        repaired_at = clock.now()
        damage = fleet.failures
        following = scheduled(fleet, refresher, clock, until=t0 + 2 * HOUR)
    record = deployment.record(APP)
    window = fleet.failure_window()
    first, last = window or (0.0, 0.0)
    warnings = [m for m in log.messages() if APP in m]
    figures = (
        f"foreign fetch at {(foreign_at - t0) / 60:.0f} min; consumers then failed "
        f"{sum(damage.values())} of {fleet.calls} calls {dict(damage)} from "
        f"{first - foreign_at if window else 0:.0f} s after it until "
        f"{last - repaired_at if window else 0:+.0f} s from the next run; "
        f"that run: {repair.as_dict()}; warnings {warnings}; WeChat token calls: ours "
        f"{token_calls(sim, APP)}, foreign {sim.foreign_fetches(APP)}"
    )
    print(figures)

    # Detected and reported.
    assert repair.outcome == Status.REFRESHED, figures
    assert repair.foreign_rotation is True, figures
    assert repair.as_dict()["foreign_rotation"] is True
    assert warnings, f"no WARNING naming {APP}: {log.messages()}"
    assert str(stolen.fingerprint()) in warnings[0], warnings
    assert record.foreign_rotations == 1
    # The damage was real (WeChat rejected the stolen token once its grace ended)...
    assert set(damage) == {40001}, figures
    assert first >= foreign_at + GRACE - MAX_SKEW, figures
    # ...found by the first probe after WeChat stopped accepting it (probes every 300 s,
    # runs every 120 s), and repaired by that run: consumers are back within their cache.
    assert repaired_at <= foreign_at + GRACE + MAX_SKEW + PROBE_EVERY + RUN_EVERY, figures
    assert last < repaired_at + 60 + TICK, figures
    assert record.value == sim.current_token(APP)
    assert sim.is_token_accepted(record.value or "")
    # No false alarm afterwards, and no WeChat call but the due renewals.
    assert not any(o.foreign_rotation for o in following), [o.as_dict() for o in following]
    assert deployment.record(APP).foreign_rotations == 1
    assert token_calls(sim, APP) <= 4, figures


def test_consumers_with_passive_refresh_repair_a_foreign_fetch_at_once(
    deployment: Deployment,
) -> None:
    deployment.add_app(APP, SECRET)
    clock, sim = deployment.clock, deployment.sim
    refresher = deployment.refresher()
    reports: list[Outcome] = []
    passive = passive_refresh(refresher, reports)
    t0 = clock.now()
    assert refresher.run(Scheduled())[0].outcome == Status.REFRESHED
    consumers = [with_client(c, passive) for c in deployment.consumers(APP, 5, boto3_first=True)]

    with Fleet(consumers) as fleet, CapturedLog(REFRESHER_LOG) as log:
        fleet.run(clock, until=t0 + 600)
        sim.foreign_fetch(APP)
        fleet.run(clock, until=t0 + HOUR)

    repaired = [o for o in reports if o.outcome == Status.REFRESHED]
    warnings = [m for m in log.messages() if APP in m and "something else fetched" in m]
    rejected = rejected_at_wechat(deployment)
    figures = (
        f"{fleet.calls} consumer calls through WeChatClient, failures "
        f"{dict(fleet.failures) or 'none'}; WeChat rejected {rejected} first attempts; passive "
        f"reports {[o.outcome for o in reports]}; WeChat token calls: ours "
        f"{token_calls(sim, APP)}, foreign {sim.foreign_fetches(APP)}"
    )
    print(figures)

    assert not fleet.failures, f"{fleet.errors()[:3]}; {figures}"
    assert rejected >= 1, f"the foreign fetch must have bitten; {figures}"
    assert len(repaired) == 1, figures
    assert repaired[0].foreign_rotation is True, figures
    assert warnings, f"no WARNING naming {APP}: {log.messages()}"
    assert deployment.record(APP).foreign_rotations == 1
    assert token_calls(sim, APP) == 2, figures
    assert sim.calls(CLASSIC_TOKEN, APP) == 3  # ours twice, the foreign fetch once
