"""Measure 5: one scheduled refresher run over N apps, against the simulator over real HTTP
(50 ms injected per WeChat request) and DynamoDB Local.

Each (N, concurrency) runs its refresher in a child process, so that its peak memory is its
own; the simulator and DynamoDB Local live in the parent and in Java. Two runs per child,
on a simulated clock shared with the simulator:

- *fill*: an empty table, so every app is fetched (1 WeChat token call per app);
- *hourly*: one hour later, the steady-state schedule: every stored token is probed with a
  business call and, being due, replaced (2 WeChat calls per app).
"""

# ruff: noqa: RUF001, RUF003 - the report is typeset: × – ÷ ≈ are meant

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from token_refresher.triggers import Scheduled

from bench.results import Row, Section, mib, table
from bench.world import (
    WECHAT_LATENCY,
    Backend,
    app_ids,
    make_env_safe,
    quiet_logs,
    refresher,
    secret_of,
    tune_simulator_server,
)
from simulator import CLASSIC_TOKEN, ManualClock, SimulatorServer, WeChatSimulator
from simulator.clock import DEFAULT_START

REPO = Path(__file__).resolve().parent.parent
PROBE = "/cgi-bin/get_api_domain_ip"
LAMBDA_LIMIT_S = 900.0


def _rss() -> tuple[int, int]:
    """(current, peak) resident set size of this process, in bytes."""
    current = peak = 0
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                current = int(line.split()[1]) * 1024
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1]) * 1024
    return current, peak


def child_main(spec: dict[str, Any]) -> None:
    """Runs in the child: the refresher for N apps, told by the parent when an hour passed."""
    make_env_safe(spec["endpoint"])
    quiet_logs()
    clock = ManualClock(DEFAULT_START)
    apps = app_ids(spec["prefix"], spec["n"])
    be = Backend(spec["endpoint"], "child")
    ref = refresher(
        be, spec["table"], spec["base_url"], apps, clock=clock.now, concurrency=spec["concurrency"]
    )
    baseline, _ = _rss()
    for phase in ("fill", "hourly"):
        if phase == "hourly":
            if sys.stdin.readline().strip() != "go":
                return
            clock.advance(3600)
        ref.dynamodb_calls.counts.clear()
        began = time.perf_counter()
        outcomes = ref.service.run(Scheduled())
        wall = time.perf_counter() - began
        _, peak = _rss()
        print(
            json.dumps(
                {
                    "phase": phase,
                    "wall_s": wall,
                    "outcomes": Counter(o.outcome for o in outcomes),
                    "dynamodb": dict(ref.dynamodb_calls.counts),
                    "rss_baseline": baseline,
                    "rss_peak": peak,
                }
            ),
            flush=True,
        )


def _one(be: Backend, n: int, concurrency: int) -> list[dict[str, Any]]:
    prefix = f"f{n}c{concurrency}x"
    apps = app_ids(prefix, n)
    sim = WeChatSimulator(ManualClock(DEFAULT_START), seed=n, latency=WECHAT_LATENCY)
    for app in apps:
        sim.add_app(app, secret_of(app))
    table_name = be.new_table("fanout")
    results = []
    with SimulatorServer(sim) as server:
        spec = {
            "endpoint": be.endpoint_url,
            "table": table_name,
            "base_url": server.base_url,
            "n": n,
            "prefix": prefix,
            "concurrency": concurrency,
        }
        child = subprocess.Popen(
            [sys.executable, "-m", "bench", "_fanout-child", json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env=dict(os.environ),
        )
        assert child.stdin is not None
        assert child.stdout is not None
        try:
            for phase in ("fill", "hourly"):
                token0, probe0 = sim.calls(CLASSIC_TOKEN), sim.calls(PROBE)
                if phase == "hourly":
                    sim.clock.advance(3600)  # type: ignore[attr-defined]
                    child.stdin.write("go\n")
                    child.stdin.flush()
                line = child.stdout.readline()
                if not line:
                    raise RuntimeError(f"fan-out child for N={n} died (exit {child.wait()})")
                result = json.loads(line)
                result.update(
                    n=n,
                    concurrency=concurrency,
                    token_calls=sim.calls(CLASSIC_TOKEN) - token0,
                    probe_calls=sim.calls(PROBE) - probe0,
                )
                results.append(result)
            child.stdin.close()
            child.wait(timeout=60)
        finally:
            if child.poll() is None:
                child.kill()
    be.drop_table(table_name)
    return results


def measure(be: Backend, *, quick: bool) -> Section:
    began = time.perf_counter()
    tune_simulator_server()
    configs = (
        [(1, 16), (10, 16), (100, 16), (100, 64)]
        if quick
        else [(1, 16), (10, 16), (100, 16), (1000, 16), (10, 64), (100, 64), (1000, 64)]
    )
    runs: list[dict[str, Any]] = []
    for n, concurrency in configs:
        print(f"    fan-out N={n} concurrency={concurrency}", flush=True)
        runs.extend(_one(be, n, concurrency))

    def pick(n: int, c: int, phase: str) -> dict[str, Any] | None:
        return next(
            (r for r in runs if r["n"] == n and r["concurrency"] == c and r["phase"] == phase),
            None,
        )

    biggest = max(n for n, _ in configs)
    hourly = pick(biggest, 16, "hourly")
    assert hourly is not None
    per_app = hourly["wall_s"] / biggest
    capacity = int((LAMBDA_LIMIT_S - 3.0) / per_app)
    failed = sum(r["outcomes"].get("failed", 0) for r in runs)
    rows = [
        Row(
            f"5. Refresh fan-out: {biggest} apps, hourly run (probe + fetch), concurrency 16",
            f"{hourly['wall_s']:.1f} s, {hourly['token_calls']} token + {hourly['probe_calls']} "
            f"probe calls, peak RSS {mib(hourly['rss_peak'])}",
            f"Lambda limit {LAMBDA_LIMIT_S:.0f} s",
            f"{LAMBDA_LIMIT_S / hourly['wall_s']:.0f}× headroom",
            "well inside 15 min",
            hourly["wall_s"] < LAMBDA_LIMIT_S / 10 and failed == 0,
            f"≈ {capacity:,} apps would fit in one invocation at this rate",
        )
    ]
    c64 = pick(biggest, 64, "hourly")
    if c64 is not None:
        rows.append(
            Row(
                "5b. Same at concurrency 64",
                f"{c64['wall_s']:.1f} s",
                f"{hourly['wall_s']:.1f} s at 16",
                f"speed-up {hourly['wall_s'] / c64['wall_s']:.2f}×",
                "informational",
                None,
            )
        )
    header = [
        "apps",
        "concurrency",
        "run",
        "wall",
        "ideal",
        "WeChat calls (token + probe)",
        "DynamoDB calls / app",
        "outcomes",
        "peak RSS (baseline)",
    ]
    body = []
    for r in runs:
        calls_per_app = 2 if r["phase"] == "hourly" else 1
        ideal = -(-r["n"] // min(r["concurrency"], r["n"])) * calls_per_app * WECHAT_LATENCY
        ddb = sum(r["dynamodb"].values()) / r["n"]
        body.append(
            [
                str(r["n"]),
                str(r["concurrency"]),
                r["phase"],
                f"{r['wall_s']:.2f} s",
                f"{ideal:.2f} s",
                f"{r['token_calls']} + {r['probe_calls']}",
                f"{ddb:.1f}",
                ", ".join(f"{k} {v}" for k, v in sorted(r["outcomes"].items())),
                f"{mib(r['rss_peak'])} ({mib(r['rss_baseline'])})",
            ]
        )
    detail = "\n".join(
        [
            f"Every WeChat request waits {WECHAT_LATENCY * 1000:.0f} ms in the simulator "
            f"(real time, on loopback HTTP); DynamoDB is {be.name}. *Ideal* is the WeChat "
            "latency alone: ⌈N ÷ concurrency⌉ × calls per app × 50 ms. Peak RSS is the "
            "child's high-water mark (VmHWM), its baseline the RSS after imports and wiring.",
            "",
            table(header, body),
            "",
            "![refresh fan-out](fanout.png)",
        ]
    )
    return Section(
        "5. Refresh fan-out",
        rows,
        detail,
        {"runs": runs, "per_app_s": per_app, "capacity": capacity},
        time.perf_counter() - began,
    )
