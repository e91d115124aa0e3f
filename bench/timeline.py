"""A simulated day, for bench/timeline.png: hourly scheduled refreshes, three consumers
calling WeChat at different rates through ``WeChatClient``, and one incident (someone else
fetches two tokens for the app, evicting ours, so consumers get 40001 and the refresher
replaces the token passively).

Everything runs on a ManualClock shared by the simulator, the refresher and the consumers'
readers; WeChat and DynamoDB are real servers on loopback. The simulator's call log (business
calls logged in full) supplies the tokens, refreshes and rejections; each consumer notes
which token it used, so that its switches can be drawn on its own lane.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import wechat_token
from token_refresher.triggers import Passive, Scheduled
from wechat_token.record import Kind

from bench.results import Row, Section
from bench.world import Backend, refresher, secret_of
from simulator import CLASSIC_TOKEN, ManualClock, SimulatorServer, WeChatSimulator, fingerprint
from simulator.clock import DEFAULT_START

APP = "wxtimeline00001"
BUSINESS = "/cgi-bin/get_api_domain_ip"
STEP = 5.0  # the consumers' periods and offsets are multiples of it
# name -> (period, first call): staggered, so that no cache entry ends on the refresh's instant
CONSUMERS = {
    "consumer A\nevery 15 s": (15.0, 0.0),
    "consumer B\nevery 45 s": (45.0, 35.0),
    "consumer C\nevery 5 min": (300.0, 140.0),
}
SCHEDULE_OFFSET = 20.0  # the hourly schedule fires at start + 20 s + k hours
INCIDENT_SHARE = 0.6  # the incident starts 20 min past the hour ~60 % into the day: ...
SECOND_FETCH_AFTER = 120.0  # ... and a second one, which evicts our token


def incident_offset(hours: float) -> float:
    return int(hours * INCIDENT_SHARE) * 3600 + 20 * 60


@dataclass
class Day:
    start: float
    end: float
    incident: float
    call_log: list[dict[str, Any]]
    uses: dict[str, list[tuple[float, str]]]  # consumer -> (time, token fp used)
    rejections: dict[str, list[float]]  # consumer -> times it got 40001
    refresher_runs: list[tuple[float, str, str]]  # (time, "scheduled" | "passive", outcome)
    grace_seconds: float
    offsets: tuple[float, ...]
    stats: dict[str, Any] = field(default_factory=dict)


def simulate(be: Backend, *, hours: float) -> Day:
    clock = ManualClock(DEFAULT_START)
    sim = WeChatSimulator(clock, seed=24, log_business_calls=True)
    sim.add_app(APP, secret_of(APP))
    table_name = be.new_table("timeline")
    runs: list[tuple[float, str, str]] = []
    uses: dict[str, list[tuple[float, str]]] = {name: [] for name in CONSUMERS}
    rejections: dict[str, list[float]] = {name: [] for name in CONSUMERS}
    with SimulatorServer(sim) as server:
        ref = refresher(be, table_name, server.base_url, [APP], clock=clock.now)

        def passive(app_id: str, kind: str, stale: str, errcode: int | None) -> str:
            [outcome] = ref.service.run(
                Passive(app_id=app_id, kind=Kind(kind), stale=stale, errcode=errcode)
            )
            runs.append((clock.now(), "passive", outcome.outcome))
            return outcome.outcome

        readers = {
            name: wechat_token.TokenReader(
                table_name, client=be.client(), cache_seconds=60, clock=clock.now
            )
            for name in CONSUMERS
        }
        clients = {
            name: wechat_token.WeChatClient(
                APP,
                base_url=server.base_url,
                reader=readers[name],
                passive_refresh=passive,
                sleep=lambda _: None,
            )
            for name in CONSUMERS
        }
        end = DEFAULT_START + hours * 3600
        incident = DEFAULT_START + incident_offset(hours)
        foreign_at = [incident, incident + SECOND_FETCH_AFTER]
        next_run = DEFAULT_START  # the first run fills the table; then hourly, off the grid
        while clock.now() < end:
            now = clock.now()
            if now >= next_run:
                [outcome] = ref.service.run(Scheduled())
                runs.append((now, "scheduled", outcome.outcome))
                next_run += 3600 + (SCHEDULE_OFFSET if next_run == DEFAULT_START else 0)
            while foreign_at and now >= foreign_at[0]:
                sim.foreign_fetch(APP)
                foreign_at.pop(0)
            elapsed = now - DEFAULT_START
            for name, (period, offset) in CONSUMERS.items():
                if elapsed < offset or round(elapsed - offset) % round(period):
                    continue
                before = readers[name].get(APP)  # what the client is about to send
                clients[name].get(BUSINESS)
                after = readers[name].get(APP)
                if after != before:  # rejected mid-call: the client replaced the token
                    rejections[name].append(now)
                uses[name].append((now, fingerprint(after)))
            clock.advance(STEP)
        log = [r.to_dict() for r in sim.call_log]
        stats = sim.stats(include_log=False)
    be.drop_table(table_name)
    return Day(
        DEFAULT_START,
        end,
        incident,
        log,
        uses,
        rejections,
        runs,
        sim.grace_seconds,
        sim.server_offsets,
        stats,
    )


@dataclass
class TokenLife:
    fp: str
    issued: float
    retired: float | None  # replaced by a newer token
    accepted_until: float  # end of grace, eviction or expiry, whichever first
    foreign: bool
    passive: bool


def token_lives(day: Day) -> list[TokenLife]:
    """Each issued token's life, from the call log: WeChat keeps two live tokens per app;
    a new one retires the current (grace) and evicts the older (40001 at once)."""
    issued = [
        r
        for r in day.call_log
        if r["endpoint"] == CLASSIC_TOKEN and r["issued"] and r["appid"] == APP
    ]
    passive_times = [
        t for t, kind, outcome in day.refresher_runs if kind == "passive" and outcome == "refreshed"
    ]
    lives = []
    for i, rec in enumerate(issued):
        t = rec["time"]
        retired = issued[i + 1]["time"] if i + 1 < len(issued) else None
        evicted = issued[i + 2]["time"] if i + 2 < len(issued) else float("inf")
        until = min(t + 7200, evicted, (retired + day.grace_seconds) if retired else float("inf"))
        lives.append(
            TokenLife(
                rec["token_fp"],
                t,
                retired,
                min(until, day.end),
                bool(rec["foreign"]),
                any(abs(p - t) < 1.0 for p in passive_times),
            )
        )
    return lives


def summary(day: Day) -> dict[str, Any]:
    lives = token_lives(day)
    business = [r for r in day.call_log if r["endpoint"] == BUSINESS]
    rejected = [r for r in business if r["errcode"] not in (0, None)]
    # How long after our refresher replaced a token did any consumer still use it? (Must
    # stay well inside the grace: the cache lives 60 s.) A foreign fetch is not ours to see.
    retired = {
        life.fp: life.retired
        for life, after in itertools.pairwise(lives)
        if life.retired is not None and not after.foreign and not life.foreign
    }
    late_uses = [
        t - retired[fp]
        for uses in day.uses.values()
        for t, fp in uses
        if fp in retired and t >= retired[fp]
    ]
    return {
        "hours": (day.end - day.start) / 3600,
        "tokens_issued": len(lives),
        "foreign_tokens": sum(life.foreign for life in lives),
        "business_calls": len(business),
        "rejected": len(rejected),
        "rejected_before_incident": sum(
            1 for r in rejected if not r["time"] >= day.incident + SECOND_FETCH_AFTER
        ),
        "scheduled_runs": sum(1 for _, kind, _ in day.refresher_runs if kind == "scheduled"),
        "passive_runs": sum(1 for _, kind, _ in day.refresher_runs if kind == "passive"),
        "max_use_after_replacement_s": max(late_uses, default=0.0),
        "consumer_rejections": {name: len(times) for name, times in day.rejections.items()},
    }


def section(day: Day) -> Section:
    s = summary(day)
    late = s["max_use_after_replacement_s"]
    calls_per_day = s["tokens_issued"] - s["foreign_tokens"]
    per_consumer = ", ".join(
        f"{name.split(chr(10))[0]} {count}" for name, count in s["consumer_rejections"].items()
    )
    rows = [
        Row(
            "8. Simulated day: longest use of a token after our refresher replaced it",
            f"{late:.0f} s",
            f"WeChat grace {day.grace_seconds:.0f} s (servers ±90 s)",
            f"{day.grace_seconds - 90 - late:.0f} s margin",
            "≤ 60 s (the cache), inside the grace",
            late <= 60.0,
            f"{s['rejected']} of {s['business_calls']:,} calls rejected, "
            + (
                "all after the foreign eviction"
                if not s["rejected_before_incident"]
                else f"{s['rejected_before_incident']} of them before the incident"
            ),
        )
    ]
    detail = "\n".join(
        [
            f"{s['hours']:.0f} simulated hours on a ManualClock: {s['scheduled_runs']} scheduled "
            f"refresher runs (hourly, 20 s off the consumers' grid), {s['passive_runs']} passive "
            f"run(s), {calls_per_day} tokens fetched by the refresher and {s['foreign_tokens']} by "
            f'"someone else" (the incident at +{(day.incident - day.start) / 3600:.2f} h), '
            f"{s['business_calls']:,} consumer calls of which {s['rejected']} got an error "
            f"(40001: per consumer {per_consumer}).",
            "",
            "![a simulated day](timeline.png)",
        ]
    )
    return Section("8. A simulated day (timeline)", rows, detail, s)
