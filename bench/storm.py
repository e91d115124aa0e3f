"""Measure 6: a 40001 storm. N consumers hold the same token; WeChat stops accepting it
(two foreign fetches evict it: the simulator keeps two live tokens per app); all N call a
business API at once through ``WeChatClient``, get 40001, and recover.

``passive_refresh`` runs the refresher service's passive request in-process, as the
refresher Lambda would on ``{"app_id", "stale_token", "errcode"}``. Two variants:

- *shared reader*: the N consumers are threads of one process sharing one ``TokenReader``
  and, as the layer does per process, one single-flight lock per credential;
- *own reader*: each consumer has its own ``TokenReader`` and its own single-flight lock
  (the layer's process-wide ``_flight`` is swapped for the run), modelling N separate
  Lambda execution environments, so N passive requests reach the refresher and its lease /
  ``already_replaced`` paths decide.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import wechat_token
import wechat_token.client as client_module
from token_refresher.triggers import Forced, Passive
from wechat_token.record import Kind

from bench.results import Row, Section, ms, table
from bench.stats import quantile
from bench.world import (
    WECHAT_LATENCY,
    Backend,
    CallCounter,
    refresher,
    secret_of,
    tune_simulator_server,
)
from simulator import CLASSIC_TOKEN, SimulatorServer, WeChatSimulator

BUSINESS = "/cgi-bin/get_api_domain_ip"


def _storm(be: Backend, sim: WeChatSimulator, url: str, n: int, variant: str) -> dict[str, Any]:
    app = f"wxstorm{variant[:3]}{n:05d}"
    sim.add_app(app, secret_of(app))
    table_name = be.new_table("storm")
    ref = refresher(be, table_name, url, [app], clock=time.time, pool=64)
    [first] = ref.service.run(Forced(app))
    assert first.outcome == "refreshed", first

    consumer_calls = CallCounter()
    dynamodb = consumer_calls.attach(be.client(pool=min(n, 128)))
    shared = wechat_token.TokenReader(table_name, client=dynamodb, cache_seconds=60)
    readers = [
        shared
        if variant == "shared"
        else wechat_token.TokenReader(table_name, client=dynamodb, cache_seconds=60)
        for _ in range(n)
    ]
    outcomes: Counter[str] = Counter()
    outcomes_lock = threading.Lock()

    def passive(app_id: str, kind: str, stale: str, errcode: int | None) -> str:
        [outcome] = ref.service.run(
            Passive(app_id=app_id, kind=Kind(kind), stale=stale, errcode=errcode)
        )
        with outcomes_lock:
            outcomes[outcome.outcome] += 1
        return outcome.outcome

    tls = ssl.create_default_context()  # one context: 1000 clients would each load the CA file
    clients = [
        wechat_token.WeChatClient(
            app,
            base_url=url,
            reader=reader,
            passive_refresh=passive,
            http=httpx.Client(timeout=60, verify=tls),
            wait_seconds=60,
        )
        for reader in readers
    ]
    # Warm: every consumer holds the token and a keep-alive connection to "WeChat".
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda c: c.get(BUSINESS), clients))
    stale = readers[0].get(app)
    sim.foreign_fetch(app)
    sim.foreign_fetch(app)
    assert sim.token_status(stale) == 40001, "the stored token should now be evicted"

    token_calls0 = sim.calls(CLASSIC_TOKEN)
    rejected0 = sim.calls(BUSINESS, errcode=40001)
    ok0 = sim.calls(BUSINESS, errcode=0)
    consumer_calls.counts.clear()
    ref.dynamodb_calls.counts.clear()
    started: list[int] = []
    done = [0] * n
    errors: list[str] = []
    barrier = threading.Barrier(n, action=lambda: started.append(time.perf_counter_ns()))

    def consumer(i: int) -> None:
        barrier.wait()
        try:
            clients[i].get(BUSINESS)
            done[i] = time.perf_counter_ns()
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {str(exc)[:160]}")

    layer: Any = client_module  # patched for the run only, and restored
    original_flight: Callable[[tuple[str, str]], Any] = layer._flight
    if variant == "own":
        layer._flight = lambda key: threading.Lock()  # one lock per consumer call
    old_stack = threading.stack_size(512 * 1024)
    try:
        threads = [threading.Thread(target=consumer, args=(i,)) for i in range(n)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
    finally:
        threading.stack_size(old_stack)
        layer._flight = original_flight
    latencies = [d - started[0] for d in done if d]
    result = {
        "n": n,
        "variant": variant,
        "token_calls": sim.calls(CLASSIC_TOKEN) - token_calls0,
        "rejected": sim.calls(BUSINESS, errcode=40001) - rejected0,
        "succeeded": sim.calls(BUSINESS, errcode=0) - ok0,
        "recovered": len(latencies),
        "errors": Counter(errors),
        "p50_ns": quantile(latencies, 0.5),
        "p99_ns": quantile(latencies, 0.99),
        "max_ns": max(latencies, default=float("nan")),
        "passive_outcomes": dict(outcomes),
        "consumer_dynamodb": dict(consumer_calls.counts),
        "refresher_dynamodb": dict(ref.dynamodb_calls.counts),
    }
    for c in clients:
        http = getattr(c, "_http", None)
        if http is not None:
            http.close()
    be.drop_table(table_name)
    return result


def measure(be: Backend, *, quick: bool) -> Section:
    began = time.perf_counter()
    tune_simulator_server()
    sim = WeChatSimulator(seed=6, latency=WECHAT_LATENCY)
    sizes = [50, 200] if quick else [200, 1000]
    runs = []
    with SimulatorServer(sim) as server:
        for n in sizes:
            for variant in ("shared", "own"):
                print(f"    storm N={n} {variant} reader", flush=True)
                runs.append(_storm(be, sim, server.base_url, n, variant))
    rows = []
    for r in runs:
        ok = r["token_calls"] == 1 and r["recovered"] == r["n"] and not r["errors"]
        rows.append(
            Row(
                f"6. 40001 storm: {r['n']} consumers, "
                + ("one shared TokenReader" if r["variant"] == "shared" else "own TokenReaders"),
                f"{r['token_calls']} WeChat token call(s); all working after p50 "
                f"{ms(r['p50_ns'])}, p99 {ms(r['p99_ns'])}",
                f"no peer; {r['rejected']} of {r['n']} consumers got 40001",
                f"{r['recovered']}/{r['n']} recovered",
                "exactly 1 token call; all recover",
                ok,
            )
        )
    header = [
        "consumers",
        "reader",
        "token calls",
        "40001s",
        "recovered",
        "p50",
        "p99",
        "max",
        "passive outcomes",
        "consumer DynamoDB reads",
        "refresher DynamoDB calls",
    ]
    body = [
        [
            str(r["n"]),
            r["variant"],
            str(r["token_calls"]),
            str(r["rejected"]),
            f"{r['recovered']}/{r['n']}",
            ms(r["p50_ns"]),
            ms(r["p99_ns"]),
            ms(r["max_ns"]),
            ", ".join(f"{k} {v}" for k, v in sorted(r["passive_outcomes"].items())),
            str(sum(r["consumer_dynamodb"].values())),
            ", ".join(f"{k} {v}" for k, v in sorted(r["refresher_dynamodb"].items())),
        ]
        for r in runs
    ]
    errors = [e for r in runs for e in r["errors"]]
    detail = "\n".join(
        [
            f"WeChat answers after {WECHAT_LATENCY * 1000:.0f} ms (simulator over loopback "
            "HTTP); each consumer has its own HTTP client and a warm keep-alive connection. "
            "Times run from the barrier releasing all N threads to each consumer's successful "
            "retry. All consumers are threads of one Python process on 2 cores, so the "
            "*shared* variant also shares the layer's in-process single-flight lock; the "
            "*own* variant replaces that lock by one per consumer, so every consumer that "
            "still reads the rejected token from the table asks the refresher, and only its "
            "DynamoDB lease and the `already_replaced` check stop duplicate fetches.",
            "",
            table(header, body),
        ]
        + ([f"\nErrors: {errors[:5]}"] if errors else [])
    )
    return Section("6. 40001 storm", rows, detail, {"runs": runs}, time.perf_counter() - began)
