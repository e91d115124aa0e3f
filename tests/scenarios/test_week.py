"""A simulated week of production: hourly scheduled refreshes, 20 consumers calling WeChat
every 10 simulated seconds.

Traffic: the refresher talks to DynamoDB Local through boto3 and to the simulator over real
HTTP on loopback, exactly as deployed. The consumers read their token through the layer
(``TokenReader``, 60 s cache, one per consumer) from an in-memory record source over the
harness's ``TableMirror`` (every item exactly as DynamoDB Local answers it after each
refresher write), and send their business calls into the *same* simulator in-process
(``sim.handle``, the function ``sim.transport()`` wraps). Measured on the 2-core dev machine:
an httpx request through ``sim.transport()`` costs ~0.5 ms and one over loopback HTTP
~1-2 ms, so the week's 1 209 600 business calls would take 10-40 minutes that way, against
~20 s in-process; botocore costs ~2 ms of CPU per read, for the week's ~200 000 consumer
reads, against microseconds from the mirror.
"""

from __future__ import annotations

import pytest
from token_refresher.outcome import Status
from token_refresher.triggers import Scheduled

from simulator import BUSINESS_ENDPOINTS
from tests.scenarios.harness import (
    DAY,
    HOUR,
    TICK,
    CapturedLog,
    Deployment,
    Fleet,
    Stopwatch,
    token_calls_by_day,
)

pytestmark = pytest.mark.scenario

APPS = {"wxweek00000000001": "week-secret-a-0123456789", "wxweek00000000002": "week-secret-b-987"}
CONSUMERS_PER_APP = 10
DAYS = 7
MAX_TOKEN_CALLS_PER_DAY = 25


def test_a_week_of_hourly_refreshes_never_fails_a_consumer(deployment: Deployment) -> None:
    for app, secret in APPS.items():
        deployment.add_app(app, secret)
    clock, sim = deployment.clock, deployment.sim
    refresher = deployment.refresher()
    consumers = [c for app in APPS for c in deployment.consumers(app, CONSUMERS_PER_APP)]
    ticks = int(DAYS * DAY / TICK)
    per_hour = int(HOUR / TICK)
    runs, not_refreshed, retried = 0, [], []
    watch = Stopwatch()

    with Fleet(consumers) as fleet, CapturedLog("wechat_token.refresher") as log:
        for tick in range(ticks):
            if tick % per_hour == 0:
                outcomes = refresher.run(Scheduled())
                runs += 1
                not_refreshed += [
                    (clock.now(), o.app_id, o.outcome, o.error, o.foreign_rotation)
                    for o in outcomes
                    if o.outcome != Status.REFRESHED or o.foreign_rotation
                ]
                retried += [(clock.now(), o.app_id) for o in outcomes if o.wechat_calls != 1]
            fleet.tick()
            clock.advance(TICK)

    seconds = watch.seconds
    calls, failures = fleet.calls, fleet.failures
    reads = sum(c.table_reads for c in consumers)
    per_day = {app: token_calls_by_day(sim, app) for app in APPS}
    rejected_at_wechat = sum(
        sim.calls(endpoint, app) - sim.calls(endpoint, app, errcode=0)
        for endpoint in BUSINESS_ENDPOINTS
        for app in APPS
    )
    figures = (
        f"{DAYS} simulated days in {seconds:.0f} s: {runs} scheduled runs, {calls} consumer "
        f"business calls, {reads} consumer table reads, failures by errcode "
        f"{dict(failures) or 'none'}, rejected at WeChat {rejected_at_wechat}, token calls "
        f"per app per WeChat day "
        + "; ".join(f"{app}: {sorted(days.values())}" for app, days in per_day.items())
        + f"; runs that needed more than one token call: {retried or 'none'} "
        f"{log.messages()[:3]}"
    )
    print(figures)

    assert calls == ticks * len(consumers), figures
    assert not failures, f"consumer calls failed: {fleet.errors()[:3]}; {figures}"
    assert rejected_at_wechat == 0, figures
    assert not not_refreshed, f"scheduled runs that did not simply refresh: {not_refreshed[:5]}"
    assert runs == DAYS * 24
    for app, days in per_day.items():
        assert max(days.values()) <= MAX_TOKEN_CALLS_PER_DAY, f"{app}: {figures}"
    # The 60 s cache holds: each consumer reads the table at most once per simulated minute.
    assert reads <= len(consumers) * (ticks * TICK / 60 + 1), figures
