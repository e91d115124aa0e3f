"""Measure 7: DynamoDB reads per consumer invocation with the in-process cache, and what
they cost per month.

Measured: one consumer execution environment (one ``TokenReader`` on a simulated clock)
serves invocations arriving at random (Poisson) at a given rate while the real refresher
rotates the token every simulated hour; its GetItem calls are counted. For a renewal
process with a 60 s cache, the expected reads per invocation are 1 / (1 + 60·r) for r
invocations per second per environment; the measurement checks that model, which then
prices the rates asked about.

Reads are driven by execution environments, not invocations: an environment reads at most
once per cache period however many invocations it serves.
"""

# ruff: noqa: RUF001, RUF003 - the report is typeset: × – ÷ ≈ are meant

from __future__ import annotations

import math
import random
import time
from typing import Any

import wechat_token
from token_refresher.triggers import Scheduled

from bench.reads import dynamodb_item_size
from bench.results import Row, Section, table
from bench.world import Backend, CallCounter, refresher, secret_of
from simulator import ManualClock, SimulatorServer, WeChatSimulator
from simulator.clock import DEFAULT_START

# On-demand, us-east-1, after the 50 % cut in on-demand throughput prices effective
# 1 November 2024 (earlier: $0.25 / $1.25). Check https://aws.amazon.com/dynamodb/pricing/.
PRICE_PER_MILLION_RRU = 0.125
PRICE_PER_MILLION_WRU = 0.625
PRICE_NOTE = (
    "us-east-1 on-demand, $0.125 per million RRU and $0.625 per million WRU "
    "(after the 50 % price cut effective 1 Nov 2024)"
)
EVENTUAL_READ_RRU = 0.5  # eventually consistent GetItem of an item up to 4 KB
STRONG_READ_RRU = 1.0
SECONDS_PER_MONTH = 730 * 3600  # AWS bills a month as 730 hours
CACHE_SECONDS = 60.0
INVOCATION_SECONDS = 0.1  # assumed average consumer invocation duration
UTILISATION = 0.8  # share of time a warm environment is busy (Lambda keeps spares)
ENVIRONMENT_LIFETIME_S = 2 * 3600  # assumed: environments are recycled every ~2 h
RATES_PER_APP = (10, 1_000, 100_000)
MEASURED_RATES = (10.0, 1.0, 0.1, 1 / 60)


def expected_reads_per_invocation(rate_per_env: float) -> float:
    return 1.0 / (1.0 + CACHE_SECONDS * rate_per_env)


def _simulate(
    be: Backend, url: str, sim: WeChatSimulator, rate: float, invocations: int, seed: int
) -> dict[str, Any]:
    app = f"wxcost{seed:05d}"
    sim.add_app(app, secret_of(app))
    clock = sim.clock
    assert isinstance(clock, ManualClock)
    table_name = be.new_table("cost")
    # The hourly probe is a WeChat business call that changes nothing a consumer reads.
    ref = refresher(be, table_name, url, [app], clock=clock.now, probe_stored_tokens=False)
    ref.service.run(Scheduled())
    next_run = clock.now() + 3600
    counter = CallCounter()
    reader = wechat_token.TokenReader(
        table_name, client=counter.attach(be.client()), cache_seconds=CACHE_SECONDS, clock=clock.now
    )
    rng = random.Random(seed)
    tokens = set()
    refresher_runs = 0
    for _ in range(invocations):
        gap = rng.expovariate(rate)
        while clock.now() + gap >= next_run:  # the hourly schedule fires first
            gap -= next_run - clock.now()
            clock.set(next_run)
            ref.service.run(Scheduled())
            refresher_runs += 1
            next_run += 3600
        clock.advance(gap)
        tokens.add(reader.get(app))
    reads = counter.counts.get("GetItem", 0)
    item = be.client().get_item(
        TableName=table_name, Key={"app_id": {"S": app}, "kind": {"S": "access_token"}}
    )["Item"]
    be.drop_table(table_name)
    return {
        "rate": rate,
        "invocations": invocations,
        "reads": reads,
        "per_invocation": reads / invocations,
        "expected": expected_reads_per_invocation(rate),
        "simulated_hours": (clock.now() - DEFAULT_START) / 3600,
        "tokens_seen": len(tokens),
        "refresher_runs": refresher_runs,
        "item_bytes": dynamodb_item_size(item),
        "refresher_calls_per_run": {
            k: v / max(1, refresher_runs + 1) for k, v in ref.dynamodb_calls.counts.items()
        },
    }


def monthly(rate_per_app: float) -> dict[str, float]:
    environments = max(1, math.ceil(rate_per_app * INVOCATION_SECONDS / UTILISATION))
    per_env = rate_per_app / environments
    reads_per_env_s = per_env * expected_reads_per_invocation(per_env)
    cold_starts = environments * SECONDS_PER_MONTH / ENVIRONMENT_LIFETIME_S
    reads = environments * reads_per_env_s * SECONDS_PER_MONTH + cold_starts
    uncached = rate_per_app * SECONDS_PER_MONTH
    cost = reads * EVENTUAL_READ_RRU * PRICE_PER_MILLION_RRU / 1e6
    cost_uncached = uncached * EVENTUAL_READ_RRU * PRICE_PER_MILLION_RRU / 1e6
    return {
        "rate": rate_per_app,
        "environments": environments,
        "per_env_rate": per_env,
        "reads": reads,
        "cost": cost,
        "uncached_reads": uncached,
        "uncached_cost": cost_uncached,
    }


def money(value: float) -> str:
    if value < 0.01:
        return f"${value:.4f}"
    if value < 100:
        return f"${value:.2f}"
    return f"${value:,.0f}"


def _count(value: float) -> str:
    for unit, size in (("bn", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value:.0f}"


def measure(be: Backend, *, quick: bool) -> Section:
    began = time.perf_counter()
    invocations = 2_000 if quick else 10_000
    rates = MEASURED_RATES[:3] if quick else MEASURED_RATES
    sim = WeChatSimulator(ManualClock(DEFAULT_START), seed=7)
    with SimulatorServer(sim) as server:
        measured = [
            _simulate(be, server.base_url, sim, rate, invocations, seed=i)
            for i, rate in enumerate(rates)
        ]
    item_bytes = max(m["item_bytes"] for m in measured)
    assert item_bytes < 1024, (
        "the record should stay under 1 KB (1 WRU per write, 0.5 RRU per read)"
    )
    per_run = measured[-1]["refresher_calls_per_run"]
    refresher_rru = 730 * per_run.get("GetItem", 1) * STRONG_READ_RRU
    refresher_wru = 730 * per_run.get("UpdateItem", 3)
    refresher_cost = (
        refresher_rru * PRICE_PER_MILLION_RRU + refresher_wru * PRICE_PER_MILLION_WRU
    ) / 1e6
    models = [monthly(rate) for rate in RATES_PER_APP]
    at_1 = next(m for m in measured if m["rate"] == 1.0)
    rows = [
        Row(
            f"7. DynamoDB reads per {invocations:,} invocations, one environment at 1 inv/s",
            f"{at_1['reads']} GetItem ({at_1['per_invocation']:.4f} per invocation)",
            f"{invocations:,} without a cache",
            f"{invocations / at_1['reads']:.0f}× fewer",
            f"≈ model 1/(1+60·r) = {at_1['expected']:.4f}",
            abs(at_1["per_invocation"] - at_1["expected"]) <= 0.25 * at_1["expected"],
        )
    ]
    for m in models:
        rows.append(
            Row(
                f"7. Monthly read cost at {m['rate']:,.0f} inv/s per app",
                f"{money(m['cost'])} ({m['environments']:,} environments)",
                f"{money(m['uncached_cost'])} reading on every invocation",
                f"{m['uncached_cost'] / m['cost']:,.0f}× less",
                "informational",
                None,
            )
        )
    detail = "\n".join(
        [
            f"**Measured.** {invocations:,} Poisson-spaced invocations per rate through one "
            "`TokenReader` (60 s cache) on a simulated clock, the real refresher rotating the "
            "token every simulated hour against the simulator and DynamoDB Local; GetItem "
            "calls counted on the reader's client.",
            "",
            table(
                [
                    "invocations/s per environment",
                    "simulated time",
                    "GetItem",
                    "per invocation",
                    "model 1/(1+60·r)",
                    "tokens seen",
                ],
                [
                    [
                        f"{m['rate']:.4g}",
                        f"{m['simulated_hours']:.1f} h",
                        str(m["reads"]),
                        f"{m['per_invocation']:.4f}",
                        f"{m['expected']:.4f}",
                        str(m["tokens_seen"]),
                    ]
                    for m in measured
                ],
            ),
            "",
            f"**Modelled.** Prices: {PRICE_NOTE}. An eventually consistent GetItem of an item "
            f"up to 4 KB costs {EVENTUAL_READ_RRU} RRU; the record is {item_bytes} bytes. "
            f"Assumptions: invocations last {INVOCATION_SECONDS * 1000:.0f} ms on average; "
            f"Lambda keeps environments {UTILISATION:.0%} busy, so environments = "
            f"⌈rate × {INVOCATION_SECONDS} s ÷ {UTILISATION}⌉ (Little's law plus spares); "
            f"each environment lives ~{ENVIRONMENT_LIFETIME_S // 3600} h (one extra read per "
            "cold start); a month is 730 h. Reads scale with environments, not invocations: "
            "double the environments (longer invocations, burstier traffic) and the cached "
            "cost doubles, while the uncached cost does not move.",
            "",
            table(
                [
                    "inv/s per app",
                    "environments",
                    "inv/s per env",
                    "reads/month (cached)",
                    "cost/month (cached)",
                    "reads/month (no cache)",
                    "cost/month (no cache)",
                ],
                [
                    [
                        f"{m['rate']:,.0f}",
                        f"{m['environments']:,}",
                        f"{m['per_env_rate']:.1f}",
                        _count(m["reads"]),
                        money(m["cost"]),
                        _count(m["uncached_reads"]),
                        money(m["uncached_cost"]),
                    ]
                    for m in models
                ],
            ),
            "",
            f"The refresher adds, per app and month, {refresher_rru:,.0f} RRU (a consistent "
            f"read per hourly run) and {refresher_wru:,.0f} WRU (lease, call counter, fenced "
            f"write): {money(refresher_cost)}. 100 000 inv/s needs "
            f"{models[-1]['environments']:,} concurrent environments, above Lambda's default "
            "regional concurrency quota of 1 000.",
        ]
    )
    return Section(
        "7. Cost model",
        rows,
        detail,
        {"measured": measured, "models": models, "refresher_cost": refresher_cost},
        time.perf_counter() - began,
    )
