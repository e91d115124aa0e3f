"""Measure 10: scale past one invocation, planner → queue → workers, and what it costs.

Measured on local stand-ins (``tests/scenarios/fanout.py``): the refresher's planner
(``service.run(Scheduled())``) queries the due index of a DynamoDB Local table and sends one
message per due app to moto's SQS; Lambda's event source mapping (``local_aws``, emulated)
hands batches to the real ``app.worker_handler``; WeChat is the simulator over HTTP with
300 ms per call, a deployment ceiling of ``RATE`` token calls per second and a global
per-minute limit above 60 × it. Every app is a classic app (``/cgi-bin/token``).

The due credentials are seeded directly (a record per app that is past its renewal point,
filed in the due index, and the planner's state as a previous run left it), so that the
scheduled run measured is a steady-state one: the planner finds every credential through
the due-index query, not through the registry pass of a first deployment.

Counted on the refresher's own clients (botocore event hooks): DynamoDB calls by purpose
with the capacity DynamoDB Local reports (``ReturnConsumedCapacity=INDEXES``, so the
due index's writes are in), SQS requests, Secrets Manager requests.

Three kinds of run:
- **baseline** (1 000 apps, 2 workers, where the 2-core machine is not saturated): each
  worker invocation's throughput, then one probe visit per credential (the
  ``PROBE_STORED_TOKENS`` path), then an idle planner run: the per-unit figures the cost
  model prices;
- **scale** (1 000, 10 000, 100 000 apps, at most 100 workers): wall time from the schedule
  to the last commit, peak workers, calls, requests per credential;
- **projection**: the same on Lambda, where each worker has its own CPU.
"""

# ruff: noqa: RUF001, RUF002, RUF003 - the report is typeset: × – ÷ ≈ are meant

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import math
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.config import Config
from token_refresher.due import LANES, DueIndex
from token_refresher.planner import _State, state_key
from token_refresher.service import RefreshService
from token_refresher.triggers import Scheduled
from wechat_token.record import ACCESS_TOKEN, attribute_value, fingerprint, wechat_day

from bench.reads import dynamodb_item_size
from bench.results import Row, Section, table
from bench.world import Backend, tune_simulator_server
from local_aws import dynamodb_client
from simulator.clock import DEFAULT_START
from simulator.wechat import CLASSIC_TOKEN

# The fan-out harness (tests/scenarios/fanout.py), imported by name: mypy checks bench/, not
# the test harness it builds on.
_fanout = importlib.import_module("tests.scenarios.fanout")
FanOut = Any  # tests.scenarios.fanout.FanOut
fanout_world = _fanout.fanout_world
PREFIX: str = _fanout.PREFIX
SHARD_SIZE: int = _fanout.SHARD_SIZE

SIZES = (1_000, 10_000, 100_000)
LATENCY = 0.3  # seconds per WeChat call (the simulator's injected latency)
RATE = 200  # WECHAT_CALLS_PER_SECOND: the deployment's token-call ceiling
MINUTE_LIMIT = 15_000  # the simulated WeChat's global per-minute limit (> 60 × RATE)
MAX_WORKERS = 100  # the target's MaximumConcurrency (the projection's)
# The local runs' MaximumConcurrency: enough to reach the ceiling (about 12 workers at the
# measured per-worker rate). 100 workers × 10 threads on this 2-core machine starve: at 1 000
# apps the median invocation took 46 s and 10 s client timeouts made 1.53 token calls per
# credential (a retry after a reply that came too late), which measures the rig, not us.
LOCAL_WORKERS = 20
SEND_THREADS = 8  # SqsWorkQueue's threads in production
SEND_SECONDS = 0.02  # assumed SendMessageBatch round trip in-region
BASELINE_WORKERS = 2  # the mapping's minimum: a machine that is not saturated
BASELINE_APPS = 1_000
BATCH = 10
WORKER_TIMEOUT = 120  # template default WorkerTimeoutSeconds (visibility 720 s)
MEMORY_MB = 256  # RefreshWorkerFunction's and RefresherFunction's MemorySize
# 2023-11-14 01:13 UTC, 09:13 in WeChat's day: neither day ends during a run.
START = DEFAULT_START + 3 * 3600
TARGET_APPS = 100_000
TARGET_SECONDS = 600.0

# Prices: list prices as listed 2026-12, us-east-1; check the AWS pricing pages before use.
PRICES = {
    "lambda_gb_second": 0.0000166667,  # x86
    "lambda_request": 0.20 / 1e6,
    "dynamodb_wru": 0.625 / 1e6,  # on-demand, after the 2024-11 price cut
    "dynamodb_rru": 0.125 / 1e6,
    "sqs_request": 0.40 / 1e6,  # standard queue, per 64 KB chunk
    "secret_month": 0.40,  # Secrets Manager, per secret
    "secrets_request": 0.05 / 1e4,
    "logs_gb": 0.50,  # CloudWatch Logs standard ingestion, per GB
}
PRICE_NOTE = (
    "us-east-1 list prices as listed 2026-12 (check before quoting): Lambda x86 "
    "$0.0000166667 per GB-s and $0.20 per million requests; DynamoDB on-demand $0.625 per "
    "million WRU and $0.125 per million RRU (the 2024-11 price cut); SQS standard $0.40 per "
    "million requests (64 KB chunks); Secrets Manager $0.40 per secret-month and $0.05 per "
    "10 000 requests; CloudWatch Logs $0.50 per GB ingested"
)
HOURS_PER_MONTH = 730.0  # as AWS bills a month
DAYS_PER_MONTH = HOURS_PER_MONTH / 24
REFRESHES_PER_DAY = 28.5  # a token renewed every ~50 min
PROBE_INTERVAL = 300.0
PROBE_VISITS_PER_DAY = 86_400 / PROBE_INTERVAL  # at most: 288 (one every 300 s)
# The schedules: the main run every 2 min plans 3 lanes, the stable run every minute 2.
PLANNER_RUNS_PER_HOUR = 30 + 60
LANE_PLANS_PER_HOUR = 30 * 3 + 60 * 2
# An idle event source mapping still long-polls: ~5 pollers, a 20 s poll each (AWS's
# figure for the poller count; an estimate, not measured here).
IDLE_POLLS_PER_MONTH = 5 * (3600 / 20) * HOURS_PER_MONTH
ENVIRONMENT_LIFETIME_HOURS = 2.0  # assumed: Lambda recycles an environment every ~2 h
LIST_PAGE = 100  # ListSecrets page size the registry loader asks for
# Lambda's own START / END / REPORT lines per invocation (an estimate).
PLATFORM_LOG_BYTES = 350

_READS = {"GetItem", "Query"}
_WRITES = {"UpdateItem", "PutItem", "DeleteItem"}


# -- counting ------------------------------------------------------------------------


def _purpose(operation: str, params: dict[str, Any]) -> str:
    if operation == "Query":
        return "planner"
    key = params.get("Key") or params.get("Item") or {}
    app_id = str(key.get("app_id", {}).get("S", ""))
    if app_id.startswith("planner#"):
        return "planner"
    if app_id.startswith("rate#"):
        return "rate"
    return "credential"


class Meter:
    """AWS requests of the refresher's clients, by purpose; DynamoDB with its capacity."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sqs_clients: set[int] = set()
        self.log_bytes = 0
        self.reset()

    def write(self, text: str) -> int:
        """stdout during the workers' phases: the bytes their logs and metrics would send
        to CloudWatch Logs (counted, then dropped)."""
        with self._lock:
            self.log_bytes += len(text.encode())
        return len(text)

    def flush(self) -> None:
        pass

    def reset(self) -> None:
        with self._lock:
            # (purpose, operation) -> calls, rru, wru, index_wru, failed
            self.dynamodb: dict[tuple[str, str], dict[str, float]] = {}
            self.sqs: Counter[str] = Counter()
            self.secrets: Counter[str] = Counter()
            self.last_commit = 0.0  # perf_counter of the last credential write

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "dynamodb": {f"{p}:{o}": dict(v) for (p, o), v in self.dynamodb.items()},
                "sqs": dict(self.sqs),
                "secrets": dict(self.secrets),
                "last_commit": self.last_commit,
            }

    def attach(self, service: RefreshService, sqs: Any) -> None:
        events = service.store._client.meta.events
        events.register("provide-client-params.dynamodb.*", self._params)
        events.register("after-call.dynamodb.*", self._dynamodb)
        if id(sqs) not in self._sqs_clients:  # one world's client, shared by its services
            self._sqs_clients.add(id(sqs))
            sqs.meta.events.register("after-call.sqs.*", self._sqs)
        service.registry._client.meta.events.register(
            "before-call.secrets-manager.*", self._secrets
        )

    def _params(
        self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any
    ) -> None:
        if model.name in _READS | _WRITES:
            params.setdefault("ReturnConsumedCapacity", "INDEXES")
        context["scale_purpose"] = _purpose(model.name, params)

    def _dynamodb(
        self, parsed: dict[str, Any], model: Any, context: dict[str, Any], **_: Any
    ) -> None:
        purpose = context.get("scale_purpose", "other")
        consumed = parsed.get("ConsumedCapacity") or {}
        units = float(consumed.get("CapacityUnits", 0.0))
        index = sum(
            float(i.get("CapacityUnits", 0.0))
            for i in (consumed.get("GlobalSecondaryIndexes") or {}).values()
        )
        failed = "Error" in parsed
        with self._lock:
            row = self.dynamodb.setdefault(
                (purpose, model.name),
                {"calls": 0, "rru": 0.0, "wru": 0.0, "index_wru": 0.0, "failed": 0},
            )
            row["calls"] += 1
            if model.name in _READS:
                row["rru"] += units
            elif model.name in _WRITES:
                # A failed conditional write is still charged (one WRU for these items).
                row["wru"] += units if not failed else 1.0
                row["index_wru"] += index
            row["failed"] += failed
            if purpose == "credential" and model.name == "UpdateItem" and not failed:
                self.last_commit = time.perf_counter()

    def _sqs(self, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        name = model.name
        if name == "ReceiveMessage" and not parsed.get("Messages"):
            name = "ReceiveMessage (empty)"
        with self._lock:
            self.sqs[name] += 1

    def _secrets(self, model: Any, **_: Any) -> None:
        with self._lock:
            self.secrets[model.name] += 1


def _sum(snapshot: dict[str, Any], purpose: str, field: str, op: str | None = None) -> float:
    return sum(
        float(v[field])
        for k, v in snapshot["dynamodb"].items()
        if k.startswith(purpose + ":") and (op is None or k.endswith(":" + op))
    )


def _billable_sqs(snapshot: dict[str, Any]) -> int:
    """Requests SQS bills for the work (the harness's GetQueueAttributes left out)."""
    return sum(v for k, v in snapshot["sqs"].items() if k != "GetQueueAttributes")


# -- the world -----------------------------------------------------------------------


def _apps(count: int) -> dict[str, str]:
    return {f"wx{number:016x}": f"secret-{number:06d}-abcdef" for number in range(count)}


@contextmanager
def _world(be: Backend, apps: dict[str, str]) -> Iterator[FanOut]:
    with fanout_world(
        be.endpoint_url,
        start=START,
        latency=LATENCY,
        minute_limits={"global": MINUTE_LIMIT},
        call_log_limit=max(1_000_000, 3 * len(apps)),
        log_business_calls=True,
    ) as world:
        world.queues(visibility_timeout=6 * WORKER_TIMEOUT, max_receive_count=5)
        world.register(apps)
        yield world


def _service(world: FanOut, meter: Meter, *, probe: bool) -> RefreshService:
    """The production wiring on the stand-ins, with a DynamoDB pool that fits this
    process's threads (each Lambda environment has its own 10-connection pool)."""
    service: RefreshService = world.refresher(
        wechat_calls_per_second=RATE, probe_stored_tokens=probe
    )
    service.store._client = dynamodb_client(
        world.dynamodb_endpoint,
        config=Config(
            connect_timeout=2,
            read_timeout=30,
            retries={"mode": "standard", "max_attempts": 3},
            max_pool_connections=512,
        ),
    )
    meter.attach(service, world.sqs)
    return service


def _seed_item(app_id: str, now: float, due: DueIndex) -> dict[str, Any]:
    """A record as the refresher leaves it ~51 minutes after a fetch: past its renewal
    point (under 3 900 s of its conservative life left), filed in the due index."""
    fetched = now - 3050.0
    value = "SEED_" + hashlib.sha256(app_id.encode()).hexdigest() * 2  # 133 characters
    entry = due.due(app_id, "classic", now - 30.0)
    return {
        "app_id": {"S": app_id},
        "kind": {"S": ACCESS_TOKEN},
        "value": {"S": value},
        "expires_at": attribute_value(fetched + 7200.0 - 300.0),
        "fetched_at": attribute_value(fetched),
        "previous_fingerprint": {"S": fingerprint(value[::-1])},
        "previous_valid_until": attribute_value(fetched + 180.0),
        "version": {"N": "28"},
        "source": {"S": CLASSIC_TOKEN},
        "last_success_at": attribute_value(fetched),
        "calls_day": {"S": wechat_day(now)},
        "calls_count": {"N": "12"},
        "due_shard": {"S": entry.shard},
        "due_at": attribute_value(entry.at),
    }


def _seed(world: FanOut, service: RefreshService, apps: dict[str, str]) -> None:
    """Every app due now, and every lane's planner state as the previous run left it."""
    now = world.clock.now()
    client = dynamodb_client(world.dynamodb_endpoint, config=Config(max_pool_connections=8))
    items = [_seed_item(app_id, now, service.due_index) for app_id in sorted(apps)]

    def write(chunk: list[dict[str, Any]]) -> None:
        requests: list[Any] = [{"PutRequest": {"Item": item}} for item in chunk]
        while requests:
            answer = client.batch_write_item(RequestItems={world.table: requests})
            requests = answer.get("UnprocessedItems", {}).get(world.table, [])

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(write, [items[i : i + 25] for i in range(0, len(items), 25)]))
    registry = service.registry.load()
    today = datetime.fromtimestamp(now, UTC).date().isoformat()
    for lane in LANES:
        state = _State(
            planned_until=now - 60.0,
            stragglers_at=now,
            sweep_day=today,
            sweep_cursor="",
            digests={shard_id: shard.digest for shard_id, shard in registry.shards.items()},
        )
        client.put_item(
            TableName=world.table,
            Item={**state_key(lane).item_key(), **state.item(uuid.uuid4().hex)},
        )
    client.close()


def _time_sends(service: RefreshService) -> list[float]:
    """The planner's time in SendMessageBatch (its queue's ``send``), in a list it fills."""
    spent = [0.0]
    send = service.queue.send

    def timed(app_ids: Any) -> Any:
        began = time.perf_counter()
        try:
            return send(app_ids)
        finally:
            spent[0] += time.perf_counter() - began

    service.queue.send = timed  # type: ignore[method-assign]
    return spent


def _token_calls(world: FanOut, since: float) -> Counter[str]:
    return Counter(
        call.appid
        for call in world.sim.call_log
        if call.endpoint == CLASSIC_TOKEN and call.appid and call.time >= since
    )


def _other_calls(world: FanOut, since: float) -> Counter[str]:
    return Counter(
        call.endpoint
        for call in world.sim.call_log
        if call.endpoint != CLASSIC_TOKEN and call.time >= since
    )


def _state_bytes(world: FanOut) -> int:
    item = world.dynamodb.get_item(TableName=world.table, Key=state_key("main").item_key())
    return dynamodb_item_size(item.get("Item", {}))


def _workers(
    world: FanOut, service: RefreshService, meter: Meter, *, workers: int, timeout: float
) -> dict[str, Any]:
    logged = meter.log_bytes
    with (
        contextlib.redirect_stdout(meter),
        world.workers(
            service,
            maximum_concurrency=workers,
            batch_size=BATCH,
            function_timeout_seconds=WORKER_TIMEOUT,
        ) as esm,
    ):
        drained = esm.drain(timeout=timeout)
        stats = esm.stats
    return {
        "log_bytes": meter.log_bytes - logged,
        "drained": drained,
        "invocations": stats.invocations,
        "peak_concurrency": stats.peak_concurrency,
        "busy_seconds": stats.busy_seconds,
        "gb_seconds": stats.gb_seconds,
        "messages_received": stats.messages_received,
        "messages_deleted": stats.messages_deleted,
        "batch_item_failures": stats.batch_item_failures,
        "whole_batch_failures": stats.whole_batch_failures,
        "timeouts": stats.timeouts,
        "mean_batch": sum(stats.batch_sizes) / max(1, len(stats.batch_sizes)),
        "credentials_per_invocation_second": sum(stats.batch_sizes)
        / max(1e-9, sum(stats.durations)),
        "median_duration": sorted(stats.durations)[len(stats.durations) // 2]
        if stats.durations
        else 0.0,
    }


def _per(snapshot: dict[str, Any], n: int) -> dict[str, float]:
    """A phase's AWS requests and capacity per credential."""
    per: dict[str, float] = {}
    for key, value in snapshot["dynamodb"].items():
        for field in ("calls", "rru", "wru", "index_wru", "failed"):
            if value[field]:
                per[f"{key}:{field}"] = value[field] / n
    for key, value in snapshot["sqs"].items():
        per[f"sqs:{key}"] = value / n
    for key, value in snapshot["secrets"].items():
        per[f"secrets:{key}"] = value / n
    return per


# -- the runs --------------------------------------------------------------------------


def _refresh_run(be: Backend, n: int, *, workers: int, baseline: bool = False) -> dict[str, Any]:
    apps = _apps(n)
    meter = Meter()
    result: dict[str, Any] = {"apps": n, "workers_max": workers, "batch_size": BATCH}
    with _world(be, apps) as world:
        service = _service(world, meter, probe=False)
        seed_began = time.perf_counter()
        _seed(world, service, apps)
        result["seed_seconds"] = time.perf_counter() - seed_began
        result["shards"] = len(world.shards)
        meter.reset()
        sending = _time_sends(service)
        scheduled_at = world.clock.now()
        began = time.perf_counter()
        summary = service.run(Scheduled())
        result["planner_seconds"] = time.perf_counter() - began
        result["send_seconds"] = sending[0]
        assert summary.plan is not None
        result["planned"] = summary.plan.planned
        result["from_index"] = summary.plan.from_index
        planner = meter.snapshot()
        meter.reset()
        result["workers"] = _workers(
            world, service, meter, workers=workers, timeout=max(900.0, n / 15)
        )
        work = meter.snapshot()
        result["wall_seconds"] = max(0.0, work["last_commit"] - began)
        calls = _token_calls(world, scheduled_at)
        token_times = [
            c.time
            for c in world.sim.call_log
            if c.endpoint == CLASSIC_TOKEN and c.time >= scheduled_at
        ]
        result["last_token_call_seconds"] = max(token_times, default=scheduled_at) - scheduled_at
        result["refreshed"] = len(calls)
        result["token_calls"] = sum(calls.values())
        result["apps_called_once"] = sum(1 for v in calls.values() if v == 1)
        result["calls_per_credential"] = sum(calls.values()) / n
        result["other_calls"] = dict(_other_calls(world, scheduled_at))
        sim_stats = world.sim.stats(include_log=False)
        result["rejections_45011"] = sim_stats["minute_limit_rejections"]["total"]
        result["peak_calls_per_second"] = world.sim.peak_calls_per_second()
        result["peak_calls_per_minute"] = world.sim.peak_calls_per_minute()
        result["dead_letters"] = len(world.dead_letters())
        result["planner_requests"] = planner
        result["worker_requests"] = work
        result["per_credential"] = {
            "planner": _per(planner, n),
            "workers": _per(work, n),
        }
        result["state_bytes"] = _state_bytes(world)
        result["rate_waits"] = service.limiter.waits
        if baseline:
            result["probe"] = _probe_visits(world, apps, meter)
            result["idle_planner"] = _idle_planner(world, service, meter)
    return result


def _probe_visits(world: FanOut, apps: dict[str, str], meter: Meter) -> dict[str, Any]:
    """One probe visit per (fresh) credential: PROBE_STORED_TOKENS' path. Each record is
    filed due now; the worker asks WeChat's business API whether the stored token is still
    accepted, finds it not due, and files it again PROBE_INTERVAL ahead."""
    service = _service(world, meter, probe=True)
    n = len(apps)
    now = world.clock.now()
    for app_id in apps:
        world.dynamodb.update_item(
            TableName=world.table,
            Key={"app_id": {"S": app_id}, "kind": {"S": ACCESS_TOKEN}},
            UpdateExpression="SET due_at = :d",
            ExpressionAttributeValues={":d": attribute_value(now - 5.0)},
        )
    meter.reset()
    since = world.clock.now()
    began = time.perf_counter()
    summary = service.run(Scheduled())
    planner_seconds = time.perf_counter() - began
    assert summary.plan is not None
    planner = meter.snapshot()
    meter.reset()
    workers = _workers(world, service, meter, workers=BASELINE_WORKERS, timeout=600)
    work = meter.snapshot()
    return {
        "planned": summary.plan.planned,
        "planner_seconds": planner_seconds,
        "workers": workers,
        "token_calls": sum(_token_calls(world, since).values()),
        "business_calls": dict(_other_calls(world, since)),
        "per_credential": {"planner": _per(planner, n), "workers": _per(work, n)},
    }


def _idle_planner(world: FanOut, service: RefreshService, meter: Meter) -> dict[str, Any]:
    """A scheduled run with nothing due (every lane): what each run costs at least."""
    runs = []
    for _ in range(3):
        meter.reset()
        began = time.perf_counter()
        summary = service.run(Scheduled())
        seconds = time.perf_counter() - began
        assert summary.plan is not None
        snap = meter.snapshot()
        runs.append(
            {
                "seconds": seconds,
                "planned": summary.plan.planned,
                "rru": _sum(snap, "planner", "rru"),
                "wru": _sum(snap, "planner", "wru"),
                "calls": {k: v["calls"] for k, v in snap["dynamodb"].items()},
                "secrets": snap["secrets"],
            }
        )
    return {"runs": runs, "seconds": sorted(r["seconds"] for r in runs)[1]}


# -- the model ------------------------------------------------------------------------


def _unit_costs(base: dict[str, Any]) -> dict[str, Any]:
    """What one refresh, one probe visit, one lane plan cost (dollars), from the baseline
    run's counts at low concurrency (where durations are Lambda-like)."""
    p = PRICES
    gb = MEMORY_MB / 1024

    def billable(key: str) -> bool:
        return key.startswith("sqs:") and "GetQueueAttributes" not in key and "empty" not in key

    def visit(per: dict[str, float], planner: dict[str, float]) -> dict[str, float]:
        rru = sum(v for k, v in per.items() if k.endswith(":rru")) + sum(
            v for k, v in planner.items() if k.startswith("planner:Query") and k.endswith(":rru")
        )
        wru = sum(v for k, v in per.items() if k.endswith(":wru"))
        sqs = sum(v for k, v in per.items() if billable(k))
        sqs += sum(v for k, v in planner.items() if billable(k))
        return {"rru": rru, "wru": wru, "sqs": sqs}

    refresh = visit(base["per_credential"]["workers"], base["per_credential"]["planner"])
    w = base["workers"]
    refresh["gb_seconds"] = gb / w["credentials_per_invocation_second"]
    refresh["invocations"] = 1 / w["mean_batch"]
    refresh["log_bytes"] = w["log_bytes"] / base["apps"] + PLATFORM_LOG_BYTES / w["mean_batch"]
    probe = base["probe"]
    pv = visit(probe["per_credential"]["workers"], probe["per_credential"]["planner"])
    pw = probe["workers"]
    pv["gb_seconds"] = gb / pw["credentials_per_invocation_second"]
    pv["invocations"] = 1 / pw["mean_batch"]
    pv["log_bytes"] = pw["log_bytes"] / base["apps"] + PLATFORM_LOG_BYTES / pw["mean_batch"]

    def dollars(u: dict[str, float]) -> float:
        return (
            u["rru"] * p["dynamodb_rru"]
            + u["wru"] * p["dynamodb_wru"]
            + u["sqs"] * p["sqs_request"]
            + u["gb_seconds"] * p["lambda_gb_second"]
            + u["invocations"] * p["lambda_request"]
            + u["log_bytes"] / 1e9 * p["logs_gb"]
        )

    refresh["dollars"] = dollars(refresh)
    pv["dollars"] = dollars(pv)
    idle = base["idle_planner"]
    run = idle["runs"][1]
    lane = {"rru": run["rru"] / len(LANES), "wru": run["wru"] / len(LANES)}
    return {
        "refresh": refresh,
        "probe_visit": pv,
        "planner_run_seconds": idle["seconds"],
        "lane_plan": lane,
        "state_bytes_per_shard": base.get("state_bytes_per_shard", 60.0),
        "state_bytes_base": base.get("state_bytes_base", 200.0),
    }


def monthly(n: float, units: dict[str, Any], *, probe: bool) -> dict[str, float]:
    """Monthly cost (dollars) of refreshing ``n`` classic credentials, by term."""
    p = PRICES
    gb = MEMORY_MB / 1024
    refreshes = n * REFRESHES_PER_DAY * DAYS_PER_MONTH
    visits = n * PROBE_VISITS_PER_DAY * DAYS_PER_MONTH if probe else 0.0
    shards = max(1, math.ceil(n / SHARD_SIZE))
    runs = PLANNER_RUNS_PER_HOUR * HOURS_PER_MONTH
    lane_plans = LANE_PLANS_PER_HOUR * HOURS_PER_MONTH
    state = units["state_bytes_base"] + units["state_bytes_per_shard"] * shards
    # The state item grows with the registry's shards: read strongly, written whole.
    state_rru = math.ceil(state / 4096)
    state_wru = math.ceil(state / 1024)
    lane = units["lane_plan"]
    planner = runs * (
        p["lambda_request"] + units["planner_run_seconds"] * gb * p["lambda_gb_second"]
    ) + lane_plans * (
        max(lane["rru"], state_rru + 4 * 0.5) * p["dynamodb_rru"]
        + max(lane["wru"], state_wru) * p["dynamodb_wru"]
    )
    # Secrets Manager: the registry's secrets, and each warm environment's ListSecrets a
    # minute (its 60 s cache) plus a full read of every shard per cold start (an estimate).
    rate = (refreshes + visits) / (HOURS_PER_MONTH * 3600)  # visits per second
    r, v = units["refresh"], units["probe_visit"]
    busy = (refreshes * r["gb_seconds"] + visits * v["gb_seconds"]) / gb / (HOURS_PER_MONTH * 3600)
    environments = 1 + max(1.0, busy)  # the planner, and the workers busy at once
    secrets_calls = environments * (
        math.ceil(shards / LIST_PAGE) * 60 * HOURS_PER_MONTH
        + shards * HOURS_PER_MONTH / ENVIRONMENT_LIFETIME_HOURS
    )
    terms = {
        "refresh": refreshes * r["dollars"],
        "probe": visits * v["dollars"],
        "planner": planner,
        "sqs_idle_polling": IDLE_POLLS_PER_MONTH * p["sqs_request"],
        "secrets_storage": shards * p["secret_month"],
        "secrets_requests": secrets_calls * p["secrets_request"],
    }
    terms["total"] = sum(terms.values())
    terms["visits_per_second"] = rate
    terms["busy_workers"] = busy
    return terms


# -- the plot ---------------------------------------------------------------------------


def plot(units: dict[str, Any], path: Path) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    ns = [10 ** (3 + i / 8) for i in range(25)]
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    with_probe = [monthly(n, units, probe=True)["total"] for n in ns]
    without = [monthly(n, units, probe=False)["total"] for n in ns]
    ax.plot(ns, with_probe, label="PROBE_STORED_TOKENS=true (default): a visit every 300 s")
    ax.plot(ns, without, label="PROBE_STORED_TOKENS=false (recommended at scale)")
    slope = without[-1] / ns[-1]
    ax.plot(ns, [slope * n for n in ns], ":", color="grey", label="linear in N (slope 1)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(1e3, 1e6)
    ax.set_xlabel("credentials (classic apps), each renewed ~28.5 times a day")
    ax.set_ylabel("US$ per month (us-east-1, list prices 2026-12)")
    ax.set_title("Refresher cost against credentials: planner → SQS → workers")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    ax.text(
        0.99,
        0.02,
        "Independent of consumers: they read DynamoDB with their own cached GetItems\n"
        "(section 7); no consumer call reaches the refresher, SQS or WeChat.",
        transform=ax.transAxes,
        ha="right",
        va="bottom",
        fontsize=7,
        color="dimgrey",
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# -- the section ----------------------------------------------------------------------


def _fmt_money(value: float) -> str:
    return f"${value:,.2f}" if value >= 1 else f"${value:.3f}"


def measure(
    be: Backend,
    *,
    quick: bool = False,
    scale_max: int = TARGET_APPS,
    out: Path | None = None,
) -> Section:
    began = time.perf_counter()
    tune_simulator_server()
    sizes = [n for n in SIZES if n <= scale_max] if not quick else [SIZES[0]]
    print(f"    baseline: {BASELINE_APPS} apps, {BASELINE_WORKERS} workers", flush=True)
    base = _refresh_run(be, BASELINE_APPS, workers=BASELINE_WORKERS, baseline=True)
    runs: list[dict[str, Any]] = []
    for n in sizes:
        print(f"    scale: {n:,} apps, at most {LOCAL_WORKERS} workers", flush=True)
        run = _refresh_run(be, n, workers=LOCAL_WORKERS)
        runs.append(run)
        if out is not None:  # what a long run has so far, in case it is stopped
            out.mkdir(parents=True, exist_ok=True)
            partial = {"baseline": base, "runs": runs}
            (out / "scale.partial.json").write_text(json.dumps(partial, default=str) + "\n")
        print(
            f"      wall {run['wall_seconds']:.0f} s (planner {run['planner_seconds']:.0f} s), "
            f"peak workers {run['workers']['peak_concurrency']}, "
            f"calls/credential {run['calls_per_credential']:.2f}, "
            f"45011 {run['rejections_45011']}",
            flush=True,
        )
    raw = {
        "settings": {
            "latency_seconds": LATENCY,
            "wechat_calls_per_second": RATE,
            "wechat_minute_limit": MINUTE_LIMIT,
            "maximum_concurrency": LOCAL_WORKERS,
            "projected_maximum_concurrency": MAX_WORKERS,
            "baseline_workers": BASELINE_WORKERS,
            "batch_size": BATCH,
            "worker_timeout_seconds": WORKER_TIMEOUT,
            "memory_mb": MEMORY_MB,
            "app_type": "classic",
            "shard_size": SHARD_SIZE,
            "registry_prefix": PREFIX,
            "scale_max": scale_max,
        },
        "baseline": base,
        "runs": runs,
    }
    return render(raw, out or Path(__file__).resolve().parent, time.perf_counter() - began)


def render(raw: dict[str, Any], out: Path, seconds: float = 0.0) -> Section:
    """The section, the plot and ``scale.json`` from the measured figures (``raw``: the
    settings, the baseline and the runs; a ``scale.json`` renders again as it is)."""
    base, runs = raw["baseline"], raw["runs"]
    scale_max = int(raw["settings"]["scale_max"])
    # The planner state item: a fixed part and one digest per registry shard.
    by_shards = sorted({(r["shards"], r["state_bytes"]) for r in [base, *runs]})
    if len(by_shards) >= 2 and by_shards[-1][0] > by_shards[0][0]:
        (s0, b0), (s1, b1) = by_shards[0], by_shards[-1]
        base["state_bytes_per_shard"] = (b1 - b0) / (s1 - s0)
        base["state_bytes_base"] = b0 - base["state_bytes_per_shard"] * s0
    else:
        base["state_bytes_per_shard"] = 62.0
        base["state_bytes_base"] = by_shards[0][1] - 62.0 * by_shards[0][0]
    units = _unit_costs(base)
    projection = _projection(base, runs)
    costs = {
        str(n): {
            "with_probe": monthly(n, units, probe=True),
            "without_probe": monthly(n, units, probe=False),
        }
        for n in (1_000, 10_000, 100_000, 1_000_000)
    }
    data = {
        "settings": raw["settings"],
        "prices": PRICES,
        "price_note": PRICE_NOTE,
        "baseline": base,
        "runs": runs,
        "units": units,
        "projection": projection,
        "monthly": costs,
    }
    out.mkdir(parents=True, exist_ok=True)
    plot(units, out / "scale_cost.png")
    (out / "scale.json").write_text(json.dumps(data, indent=1, default=str) + "\n")
    (out / "scale.partial.json").unlink(missing_ok=True)
    rows = _rows(runs, projection, costs, scale_max)
    detail = _detail(base, runs, units, projection, costs, scale_max, out)
    return Section("10. Scale: planner → queue → workers", rows, detail, data, seconds)


def _projection(base: dict[str, Any], runs: list[dict[str, Any]]) -> dict[str, Any]:
    """100 000 on Lambda: workers with their own CPU at the baseline's per-invocation rate,
    bounded by the call-rate ceiling; the planner as measured (or scaled from the largest
    run when 100 000 was not run)."""
    per_worker = base["workers"]["credentials_per_invocation_second"]
    biggest = max(runs, key=lambda r: r["apps"]) if runs else base
    measured = next((r for r in runs if r["apps"] == TARGET_APPS), None)
    planner = (
        measured["planner_seconds"]
        if measured
        else biggest["planner_seconds"] * TARGET_APPS / biggest["apps"]
    )
    workers_time = TARGET_APPS / (MAX_WORKERS * per_worker)
    ceiling_time = TARGET_APPS / RATE
    # On Lambda: the planner's own work (query, state) as measured, scaled; its sends at
    # SEND_SECONDS each on SqsWorkQueue's 8 threads (an assumption: moto's sends grow with
    # the queue's length, 26 ms at 1 000 messages and 65 ms at 10 000 here).
    own = biggest["planner_seconds"] - biggest.get("send_seconds", 0.0)
    sends = math.ceil(TARGET_APPS / BATCH) / SEND_THREADS * SEND_SECONDS
    planner_lambda = own * TARGET_APPS / biggest["apps"] + sends
    lambda_wall = planner_lambda + max(workers_time, ceiling_time)
    return {
        "planner_lambda_seconds": planner_lambda,
        "lambda_wall_seconds": lambda_wall,
        # On AWS the workers take messages while the planner is still sending.
        "wall_overlapped_seconds": max(planner, workers_time, ceiling_time),
        "apps": TARGET_APPS,
        "per_worker_rate": per_worker,
        "planner_seconds": planner,
        "planner_measured": measured is not None,
        "workers_seconds": workers_time,
        "ceiling_seconds": ceiling_time,
        "wall_seconds": planner + max(workers_time, ceiling_time),
        "workers_to_reach_ceiling": math.ceil(RATE / per_worker),
    }


def _rows(
    runs: list[dict[str, Any]],
    projection: dict[str, Any],
    costs: dict[str, Any],
    scale_max: int,
) -> list[Row]:
    rows: list[Row] = []
    for run in runs:
        target = run["apps"] == TARGET_APPS
        rows.append(
            Row(
                f"10. {run['apps']:,} due credentials: schedule → last refresh (local, measured)",
                f"{run['wall_seconds']:.0f} s (planner {run['planner_seconds']:.0f} s), "
                f"peak {run['workers']['peak_concurrency']} workers",
                "—",
                "—",
                f"≤ {TARGET_SECONDS:.0f} s, ≤ {MAX_WORKERS} workers" if target else "—",
                (
                    run["wall_seconds"] <= TARGET_SECONDS
                    and run["workers"]["peak_concurrency"] <= MAX_WORKERS
                )
                if target
                else None,
                "2 cores shared by DynamoDB Local, moto, the simulator and every worker",
            )
        )
    rows.append(
        Row(
            f"10. {TARGET_APPS:,} due credentials on Lambda (projected)",
            f"{projection['lambda_wall_seconds']:.0f} s with {MAX_WORKERS} workers (planner "
            f"{projection['planner_lambda_seconds']:.0f} s, then the ceiling {RATE}/s: "
            f"{projection['ceiling_seconds']:.0f} s); {projection['wall_seconds']:.0f} s with "
            "the local planner's time",
            "—",
            "—",
            f"≤ {TARGET_SECONDS:.0f} s",
            projection["lambda_wall_seconds"] <= TARGET_SECONDS,
            f"{projection['per_worker_rate']:.1f} credentials/s per worker, measured at "
            f"{BASELINE_WORKERS} workers",
        )
    )
    exact = all(r["apps_called_once"] == r["apps"] == r["token_calls"] for r in runs)
    rejections = sum(r["rejections_45011"] for r in runs)
    rows.append(
        Row(
            "10. WeChat token calls per credential, 45011 rejections (every run)",
            ", ".join(f"{r['calls_per_credential']:.2f}" for r in runs) + f"; {rejections}",
            "—",
            "—",
            "1.00; 0",
            exact and rejections == 0,
        )
    )
    k, m = costs["1000"], costs["1000000"]
    rows.append(
        Row(
            "10. Monthly AWS cost per 1 000 credentials (model)",
            f"{_fmt_money(k['without_probe']['total'])} without the probe, "
            f"{_fmt_money(k['with_probe']['total'])} with it",
            "—",
            "—",
            "—",
            None,
        )
    )
    rows.append(
        Row(
            "10. Monthly AWS cost at 1 000 000 credentials (model)",
            f"{_fmt_money(m['without_probe']['total'])} without the probe, "
            f"{_fmt_money(m['with_probe']['total'])} with it",
            "—",
            "—",
            "—",
            None,
        )
    )
    return rows


def _detail(
    base: dict[str, Any],
    runs: list[dict[str, Any]],
    units: dict[str, Any],
    projection: dict[str, Any],
    costs: dict[str, Any],
    scale_max: int,
    out: Path,
) -> str:
    def per(run: dict[str, Any], phase: str, key: str) -> float:
        return float(run["per_credential"][phase].get(key, 0.0))

    header = ["", *[f"{r['apps']:,}" for r in runs]]
    lines = [
        [
            "registry secrets (shards of 850)",
            *[str(r["shards"]) for r in runs],
        ],
        [
            "planned (from the due index)",
            *[f"{r['planned']:,} ({r['from_index']:,})" for r in runs],
        ],
        ["planner: plan + send (s)", *[f"{r['planner_seconds']:.1f}" for r in runs]],
        ["schedule → last commit (s)", *[f"{r['wall_seconds']:.1f}" for r in runs]],
        [
            "schedule → last token call (s)",
            *[f"{r['last_token_call_seconds']:.1f}" for r in runs],
        ],
        [
            "credentials/s overall",
            *[f"{r['apps'] / max(1e-9, r['wall_seconds']):.0f}" for r in runs],
        ],
        ["peak concurrent workers", *[str(r["workers"]["peak_concurrency"]) for r in runs]],
        ["worker invocations", *[f"{r['workers']['invocations']:,}" for r in runs]],
        ["mean batch (size 10)", *[f"{r['workers']['mean_batch']:.2f}" for r in runs]],
        [
            "median invocation (s)",
            *[f"{r['workers']['median_duration']:.2f}" for r in runs],
        ],
        ["token calls per credential", *[f"{r['calls_per_credential']:.2f}" for r in runs]],
        [
            "apps called exactly once",
            *[f"{r['apps_called_once']:,} / {r['apps']:,}" for r in runs],
        ],
        ["45011 rejections", *[str(r["rejections_45011"]) for r in runs]],
        [
            "peak token calls per second / minute",
            *[f"{r['peak_calls_per_second']} / {r['peak_calls_per_minute']:,}" for r in runs],
        ],
        [
            "dead letters, failed batch items",
            *[f"{r['dead_letters']}, {r['workers']['batch_item_failures']}" for r in runs],
        ],
        [
            "credential GetItem per credential (RRU)",
            *[
                f"{per(r, 'workers', 'credential:GetItem:calls'):.2f} "
                f"({per(r, 'workers', 'credential:GetItem:rru'):.2f})"
                for r in runs
            ],
        ],
        [
            "credential UpdateItem per credential (WRU, of which due-index)",
            *[
                f"{per(r, 'workers', 'credential:UpdateItem:calls'):.2f} "
                f"({per(r, 'workers', 'credential:UpdateItem:wru'):.2f}, "
                f"{per(r, 'workers', 'credential:UpdateItem:index_wru'):.2f})"
                for r in runs
            ],
        ],
        [
            "rate-limiter UpdateItem per credential (failed)",
            *[
                f"{per(r, 'workers', 'rate:UpdateItem:calls'):.2f} "
                f"({per(r, 'workers', 'rate:UpdateItem:failed'):.2f})"
                for r in runs
            ],
        ],
        [
            "planner Query / GetItem / PutItem per credential (Query RRU)",
            *[
                f"{per(r, 'planner', 'planner:Query:calls'):.4f} / "
                f"{per(r, 'planner', 'planner:GetItem:calls'):.4f} / "
                f"{per(r, 'planner', 'planner:PutItem:calls'):.4f} "
                f"({per(r, 'planner', 'planner:Query:rru'):.3f})"
                for r in runs
            ],
        ],
        [
            "SQS SendMessageBatch / ReceiveMessage / DeleteMessageBatch per credential",
            *[
                f"{per(r, 'planner', 'sqs:SendMessageBatch'):.3f} / "
                f"{per(r, 'workers', 'sqs:ReceiveMessage'):.3f} / "
                f"{per(r, 'workers', 'sqs:DeleteMessageBatch'):.3f}"
                for r in runs
            ],
        ],
        [
            "empty receives (emulated short polls; not AWS's)",
            *[str(r["worker_requests"]["sqs"].get("ReceiveMessage (empty)", 0)) for r in runs],
        ],
        [
            "worker busy s; GB-s (256 MB) per credential",
            *[
                f"{r['workers']['busy_seconds']:.0f}; {r['workers']['gb_seconds'] / r['apps']:.4f}"
                for r in runs
            ],
        ],
        [
            "planner GB-s (256 MB)",
            *[f"{r['planner_seconds'] * MEMORY_MB / 1024:.1f}" for r in runs],
        ],
        ["planner state item (bytes)", *[f"{r['state_bytes']:,}" for r in runs]],
    ]
    bw = base["workers"]
    probe = base["probe"]
    pw = probe["workers"]
    r_u, p_u = units["refresh"], units["probe_visit"]
    unit_rows = [
        [
            "refresh (renewal)",
            f"{bw['credentials_per_invocation_second']:.1f}",
            f"{r_u['gb_seconds']:.4f}",
            f"{r_u['rru']:.2f}",
            f"{r_u['wru']:.2f}",
            f"{r_u['sqs']:.3f}",
            f"{r_u['invocations']:.3f}",
            f"{r_u['log_bytes']:.0f}",
            f"${r_u['dollars'] * 1e6:.2f}",
        ],
        [
            "probe visit (no token call)",
            f"{pw['credentials_per_invocation_second']:.1f}",
            f"{p_u['gb_seconds']:.4f}",
            f"{p_u['rru']:.2f}",
            f"{p_u['wru']:.2f}",
            f"{p_u['sqs']:.3f}",
            f"{p_u['invocations']:.3f}",
            f"{p_u['log_bytes']:.0f}",
            f"${p_u['dollars'] * 1e6:.2f}",
        ],
    ]
    cost_rows = []
    for n, c in costs.items():
        for label, terms in (
            ("without probe", c["without_probe"]),
            ("with probe", c["with_probe"]),
        ):
            cost_rows.append(
                [
                    f"{int(n):,}",
                    label,
                    _fmt_money(terms["refresh"]),
                    _fmt_money(terms["probe"]),
                    _fmt_money(terms["planner"]),
                    _fmt_money(terms["sqs_idle_polling"]),
                    _fmt_money(terms["secrets_storage"] + terms["secrets_requests"]),
                    f"**{_fmt_money(terms['total'])}**",
                    f"{_fmt_money(terms['total'] / int(n) * 1000)}",
                ]
            )
    m = costs["1000000"]
    planner_how = (
        "measured" if projection["planner_measured"] else "scaled linearly from the largest run"
    )
    verdict = "met" if projection["lambda_wall_seconds"] <= TARGET_SECONDS else "missed"
    needed = 1_000_000 * REFRESHES_PER_DAY / 86_400
    ran = ", ".join(f"{r['apps']:,}" for r in runs)
    not_run = [n for n in SIZES if n > scale_max]
    parts = [
        f"Apps: classic (`/cgi-bin/token`), one `access_token` each, in registry secrets of "
        f"{SHARD_SIZE} under `{PREFIX}`. WeChat: the simulator over HTTP, {LATENCY * 1000:.0f} "
        f"ms per call, a global limit of {MINUTE_LIMIT:,} calls per minute; the refresher's "
        f"ceiling `WECHAT_CALLS_PER_SECOND={RATE}`. Workers: the emulated event source mapping, "
        f"`MaximumConcurrency={LOCAL_WORKERS}` locally ({MAX_WORKERS} in the projection: "
        f"100 × 10 threads starve this machine's 2 cores, median invocation 46 s and 1.53 "
        f"token calls per credential from 10 s client timeouts in a trial at 1 000 apps), "
        f"batch {BATCH}, each batch on 10 threads, "
        f"`WorkerTimeoutSeconds={WORKER_TIMEOUT}`, memory {MEMORY_MB} MB. `PROBE_STORED_TOKENS"
        "=false` for the refresh runs. The credentials were seeded due (51 minutes after "
        "their last fetch, filed in the due index, the planner's state as a previous run left "
        "it), so the planner finds them by the due-index query as in steady state. Run here: "
        f"{ran}"
        + (
            f" (not run: {', '.join(f'{n:,}' for n in not_run)}; `--scale-max {scale_max}`)"
            if not_run
            else ""
        )
        + ".",
        "",
        "**Measured locally** (one process, 2 cores: DynamoDB Local, moto's SQS and Secrets "
        "Manager, the simulator and the workers' threads share them and one GIL; "
        "the planner sends on one thread because moto's SQS is not thread-safe, and starts "
        "the workers after sending, where on AWS they overlap):",
        "",
        table(header, lines),
        "",
        "DynamoDB capacity is what DynamoDB Local reports (`ReturnConsumedCapacity=INDEXES`): "
        "a strongly consistent GetItem of a credential is 1 RRU; each UpdateItem writes the "
        "record and, when `due_at` moves, the due index twice (a delete and a put: AWS bills "
        "an index-key change as two index writes); a rate-limiter write takes 4 permits for "
        "4 calls; a refused conditional write still costs 1 WRU.",
        "",
        f"**Per unit** (the baseline: {BASELINE_APPS:,} apps, {BASELINE_WORKERS} workers, "
        "where the machine is not saturated: these durations are the Lambda-like ones; planner "
        "queries and SQS sends included):",
        "",
        table(
            [
                "visit",
                "credentials/s per invocation",
                "GB-s",
                "RRU",
                "WRU",
                "SQS requests",
                "invocations",
                "log bytes",
                "per million",
            ],
            unit_rows,
        ),
        "",
        f"The probe visit: {probe['planned']:,} planned, {probe['token_calls']} token calls, "
        f"WeChat business calls {probe['business_calls']}. An idle planner run (every lane, "
        f"nothing due) took {units['planner_run_seconds']:.2f} s, "
        f"{units['lane_plan']['rru'] * len(LANES):.1f} RRU and "
        f"{units['lane_plan']['wru'] * len(LANES):.1f} WRU.",
        "",
        f"**Projected on Lambda** ({TARGET_APPS:,} due credentials, each worker with its own "
        f"CPU): a worker invocation refreshes {projection['per_worker_rate']:.1f} "
        "credentials/s (measured at the baseline), so "
        f"{MAX_WORKERS} workers would do {TARGET_APPS:,} in "
        f"{projection['workers_seconds']:.0f} s, but the ceiling of {RATE} calls/s needs "
        f"{projection['ceiling_seconds']:.0f} s: wall time ≈ planner "
        f"{projection['planner_seconds']:.0f} s "
        f"({planner_how}, "
        "locally, on one sending thread) + max(workers, ceiling) = "
        f"{projection['wall_seconds']:.0f} s with the local planner, whose time is moto's "
        "sends on one thread (moto's SendMessageBatch grows with the queue: 26 ms at 1 000 "
        "messages, 65 ms at 10 000). With the planner's own work (query, state) as measured "
        f"and its {TARGET_APPS // BATCH:,} SendMessageBatch calls on its {SEND_THREADS} "
        f"threads at an assumed {SEND_SECONDS * 1000:.0f} ms each, the planner takes "
        f"{projection['planner_lambda_seconds']:.0f} s and the whole "
        f"**{projection['lambda_wall_seconds']:.0f} s** (less when the workers start while "
        "the planner sends, as they do on AWS) (target ≤ "
        f"{TARGET_SECONDS:.0f} s with ≤ "
        f"{MAX_WORKERS} workers: {verdict}). "
        f"The ceiling binds from {projection['workers_to_reach_ceiling']} workers on: more "
        "workers only wait for permits (and are billed while they wait). A faster schedule "
        "needs a higher `WECHAT_CALLS_PER_SECOND` (and WeChat's minute quota to match), "
        "not more workers.",
        "",
        "**Cost model** (monthly, N classic credentials; " + PRICE_NOTE + "):",
        "",
        "    C(N) = N·R·c_refresh + [probe] N·V·c_probe + P·(c_request + t_plan·0.25 GB·c_GBs)"
        "\n         + L·(state RRU·c_RRU + state WRU·c_WRU) + S_idle·c_SQS"
        "\n         + ⌈N/850⌉·$0.40 + secrets requests·c_SM",
        "",
        f"- R = {REFRESHES_PER_DAY} × {DAYS_PER_MONTH:.2f} = "
        f"{REFRESHES_PER_DAY * DAYS_PER_MONTH:.0f} refreshes per credential-month; c_refresh "
        f"= ${r_u['dollars'] * 1e6:.2f} per million (the per-unit table: RRU·$0.125/M + "
        "WRU·$0.625/M + SQS·$0.40/M + GB-s·$0.0000166667 + invocations·$0.20/M + log "
        "bytes·$0.50/GB: the refresher's JSON logs and metrics as measured, plus ~350 bytes of "
        "Lambda's own lines per invocation);",
        f"- V = {PROBE_VISITS_PER_DAY:.0f} × {DAYS_PER_MONTH:.2f} = "
        f"{PROBE_VISITS_PER_DAY * DAYS_PER_MONTH:,.0f} probe visits per credential-month "
        f"(one per 300 s at most; with the 2-minute schedule a visit comes every 360 s, 240 a "
        f"day), c_probe = ${p_u['dollars'] * 1e6:.2f} per million;",
        f"- P = {PLANNER_RUNS_PER_HOUR} planner runs an hour (main every 2 min, stable every "
        f"minute), t_plan = {units['planner_run_seconds']:.2f} s (idle run, local); L = "
        f"{LANE_PLANS_PER_HOUR} lane plans an hour, each reading and writing the lane's state "
        f"item, which holds a digest per registry secret "
        f"(≈ {units['state_bytes_base']:.0f} + {units['state_bytes_per_shard']:.0f} bytes per "
        "secret, written whole);",
        f"- S_idle = {IDLE_POLLS_PER_MONTH:,.0f} empty long polls a month (≈ 5 pollers × 3 a "
        "minute; an estimate of AWS's event source mapping, not measured);",
        "- Secrets Manager: the registry's secrets, ListSecrets once a minute per busy "
        "environment (its 60 s cache) and a full read of every secret per cold start (one "
        f"every {ENVIRONMENT_LIFETIME_HOURS:.0f} h per environment): an estimate.",
        "",
        table(
            [
                "N",
                "",
                "refresh",
                "probe",
                "planner",
                "idle polls",
                "Secrets Manager",
                "total",
                "per 1 000",
            ],
            cost_rows,
        ),
        "",
        f"Plot: `{out.name}/scale_cost.png` (log-log, 10³–10⁶ credentials, with and without "
        "the probe).",
        "",
        f"At 1 000 000 credentials: **{_fmt_money(m['without_probe']['total'])} a month without "
        f"the probe, {_fmt_money(m['with_probe']['total'])} with it**; the probe is "
        f"{m['with_probe']['probe'] / m['with_probe']['total']:.0%} of the bill with it on "
        f"(and ≈ {m['with_probe']['visits_per_second']:,.0f} visits/s, "
        f"≈ {m['with_probe']['busy_workers']:.0f} workers busy all the time), so **turn "
        "`PROBE_STORED_TOKENS` off at scale**: a token invalidated behind the refresher's "
        "back is then found by the first consumer that reports it (passive refresh) instead "
        "of within 300 s. Without the probe the bill is linear in N (each term is per "
        "credential except the planner's runs and the idle polls, a few cents) and does not "
        "depend on consumers: they read DynamoDB with their own cached GetItems (section 7), "
        "never through the refresher. Note also that 1 000 000 credentials renewed 28.5 times "
        f"a day need {needed:.0f} token calls/s on average: above `WECHAT_CALLS_PER_SECOND="
        f"{RATE}` (which carries {RATE * 86_400 / REFRESHES_PER_DAY:,.0f} credentials at "
        "most; the template's default 100 carries half that), so such a deployment must raise "
        "the ceiling.",
        "",
        "Caveats: the local wall times are CPU-bound, not Lambda's; all local workers share one "
        "registry cache, where each Lambda environment reads every registry secret on its cold "
        "start (1 177 GetSecretValue at 1 000 000 credentials); the emulated mapping polls all "
        "its pollers from the start (AWS ramps up); DynamoDB Local's capacity figures follow "
        "AWS's rules but were not checked against a bill; prices are list prices without the "
        "free tier.",
    ]
    return "\n".join(parts)
