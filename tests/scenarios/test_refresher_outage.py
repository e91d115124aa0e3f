"""WeChat fails the refresher for hours: busy (-1), hanging until httpx times out, HTML error
pages and 502s. Consumers keep working on the stored token while it is valid, never send an
expired one, and the first successful run restores service. The stored record is checked
after every run: a failure never replaces or damages it.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from token_refresher.outcome import Status
from token_refresher.triggers import Scheduled

from simulator import CLASSIC_TOKEN, WeChatSimulator
from tests.scenarios.harness import (
    BUSINESS,
    HOUR,
    TOKEN_ERROR,
    Deployment,
    Fleet,
    Stopwatch,
    token_calls,
)

pytestmark = pytest.mark.scenario

APP = "wxoutage000000001"
SECRET = "outage-secret-0123456789"

# What WeChat does to the token endpoint at each hourly run after the first (none: it is back).
OUTAGE: dict[int, tuple[str, list[dict[str, Any]]]] = {
    1: ("-1", [{"kind": "errcode", "errcode": -1}]),
    2: ("transport", [{"kind": "timeout", "hang_seconds": 30.0}]),
    3: (
        "garbled",
        [{"kind": "http_status", "status": 502, "count": 2}, {"kind": "garbled", "garble": "html"}],
    ),
}
RECOVERY_RUN = 4


def wechat_saw(sim: WeChatSimulator, expected: int) -> int:
    """The app's token calls at the simulator, once requests hanging in a timeout fault
    (logged when they end) are woken and logged."""
    sim.release_hangs()
    deadline = time.monotonic() + 5
    while token_calls(sim, APP) < expected and time.monotonic() < deadline:
        time.sleep(0.01)
    return token_calls(sim, APP)


def test_hours_of_refresh_failures_leave_the_stored_token_alone(deployment: Deployment) -> None:
    deployment.add_app(APP, SECRET)
    clock, sim = deployment.clock, deployment.sim
    # httpx gives up on a hanging WeChat after 0.5 real seconds (10 s in production).
    refresher = deployment.refresher(http_timeout=0.5)
    consumers = deployment.consumers(APP, 5, boto3_first=True)
    watch = Stopwatch()
    t0 = clock.now()

    initial = refresher.run(Scheduled())[0]
    assert initial.outcome == Status.REFRESHED, initial
    good = deployment.record(APP)
    assert good.expires_at is not None
    damage: list[str] = []
    failed_runs: dict[int, tuple[str | None, int]] = {}
    with Fleet(consumers) as fleet:
        fleet.run(clock, until=t0 + HOUR)
        for run in range(1, RECOVERY_RUN):
            code, faults = OUTAGE[run]
            for fault in faults:
                options = dict(fault)
                sim.add_fault(options.pop("kind"), endpoint=CLASSIC_TOKEN, appid=APP, **options)
            calls_before = token_calls(sim, APP)
            outcome = refresher.run(Scheduled())[0]
            sim.clear_faults()
            seen = wechat_saw(sim, calls_before + outcome.wechat_calls) - calls_before
            failed_runs[run] = ((outcome.error or {}).get("code"), seen)
            if seen != outcome.wechat_calls:
                damage.append(
                    f"run {run}: WeChat saw {seen} calls, the refresher counted "
                    f"{outcome.wechat_calls}"
                )
            record = deployment.record(APP)
            if outcome.outcome != Status.FAILED or failed_runs[run][0] != code:
                damage.append(f"run {run}: expected failure {code}, got {outcome.as_dict()}")
            if (record.value, record.version, record.expires_at, record.fetched_at) != (
                good.value,
                good.version,
                good.expires_at,
                good.fetched_at,
            ):
                damage.append(f"run {run}: the stored token changed: version {record.version}")
            if record.lease_owner is not None or record.last_error_code != code:
                damage.append(
                    f"run {run}: lease {record.lease_owner}, last error {record.last_error_code}"
                )
            fleet.run(clock, until=t0 + (run + 1) * HOUR)

        recovered_at = clock.now()
        recovery = refresher.run(Scheduled())[0]
        fleet.run(clock, until=recovered_at + HOUR)

    restored = deployment.record(APP)
    window = fleet.failure_window()
    first, last = window or (0.0, 0.0)
    failures = fleet.failures
    sent_expired = sim.calls(BUSINESS, APP) - sim.calls(BUSINESS, APP, errcode=0)
    figures = (
        f"{fleet.calls} consumer calls over {(clock.now() - t0) / HOUR:.0f} simulated hours "
        f"({watch.seconds:.1f} s); failed runs (error code, WeChat token calls): {failed_runs}; "
        f"consumer failures {dict(failures)} between "
        f"{(first - t0) / 60 if window else 0:.1f} and "
        f"{(last - t0) / 60 if window else 0:.1f} min; stored token valid until "
        f"{(good.expires_at - t0) / 60:.0f} min (WeChat's own expiry: 120 min); calls rejected "
        f"at WeChat {sent_expired}"
    )
    print(figures)

    assert not damage, f"{damage}; {figures}"
    assert recovery.outcome == Status.REFRESHED, f"{recovery.as_dict()}; {figures}"
    assert restored.value != good.value
    assert restored.value == sim.current_token(APP)
    assert sim.is_token_accepted(restored.value or "")
    assert restored.version == good.version + 1
    assert restored.last_error_code is None, "a success clears the last error"
    # Consumers worked on the stored token until its (conservative) expiry...
    assert window, f"the outage outlived the token, consumers must notice; {figures}"
    assert first >= good.expires_at, figures
    # ...then got a clear error instead of a token WeChat would reject...
    assert set(failures) == {TOKEN_ERROR}, figures
    assert sent_expired == 0, figures
    assert any("expired" in e and "last error" in e for e in fleet.errors()), fleet.errors()
    # ...and the first successful run restored service at once.
    assert last < recovered_at, figures
