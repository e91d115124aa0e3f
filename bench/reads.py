"""Measures 1 and 2: reading the token warm (cache hit) and cold (cache miss, DynamoDB).

Contenders, all reading the same credential:
- ours: ``wechat_token.get_access_token`` (the process-wide ``TokenReader``);
- Powertools: ``DynamoDBProvider(...).get(name, max_age=60)``. Its provider looks items up
  by a single key attribute (``id``) and cannot address our (app_id, kind) key, so it
  reads a second table keyed by ``id`` holding a copy of the very same item;
- wechatpy: ``WeChatClient(appid, secret, session=MemoryStorage()).access_token`` with the
  token already in its memory session (warm only: it has no shared store to read).
"""

# ruff: noqa: RUF001, RUF003 - the report is typeset: × – ÷ ≈ are meant

from __future__ import annotations

import cProfile
import pstats
import time
from collections.abc import Callable
from typing import Any

import boto3
import wechat_token
from aws_lambda_powertools.utilities.parameters import DynamoDBProvider
from botocore.config import Config
from botocore.stub import Stubber
from token_refresher.triggers import Forced
from wechatpy import WeChatClient as WeChatPyClient
from wechatpy.session.memorystorage import MemoryStorage

from bench.results import Row, Section, ns, table, x
from bench.stats import interleaved, per_round_ratios, summarize
from bench.world import Backend, refresher

POWERTOOLS_KEY = "id"


class Fixture:
    """One stored token, in our table and (as a copy keyed by ``id``) in Powertools' table."""

    def __init__(self, be: Backend, sim_url: str, app: str) -> None:
        self.be = be
        self.app = app
        self.table = be.new_table("reads")
        self.pt_table = f"{self.table}-powertools"
        client = be.client()
        client.create_table(
            TableName=self.pt_table,
            KeySchema=[{"AttributeName": POWERTOOLS_KEY, "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": POWERTOOLS_KEY, "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        client.get_waiter("table_exists").wait(TableName=self.pt_table)
        ref = refresher(be, self.table, sim_url, [app], clock=time.time)
        [outcome] = ref.service.run(Forced(app))
        assert outcome.outcome == "refreshed", outcome
        item = client.get_item(
            TableName=self.table,
            Key={"app_id": {"S": app}, "kind": {"S": "access_token"}},
            ConsistentRead=True,
        )["Item"]
        self.item = item
        client.put_item(TableName=self.pt_table, Item={**item, POWERTOOLS_KEY: {"S": app}})
        self.token = item["value"]["S"]

    def powertools(self) -> DynamoDBProvider:
        resource = boto3.session.Session().resource(
            "dynamodb",
            endpoint_url=self.be.endpoint_url,
            config=Config(retries={"mode": "standard", "max_attempts": 3}),
        )
        return DynamoDBProvider(table_name=self.pt_table, boto3_client=resource)

    def close(self) -> None:
        self.be.drop_table(self.table)
        self.be.drop_table(self.pt_table)


def _wechatpy(app: str, token: str, *, fetched: bool) -> WeChatPyClient:
    client = WeChatPyClient(app, "not-a-secret", session=MemoryStorage())
    client.session.set(client.access_token_key, token, 7200)
    if fetched:
        # What wechatpy's own fetch leaves behind: it then checks expiry on every read.
        client.expires_at = int(time.time()) + 7200

    def no_network() -> None:
        raise AssertionError("wechatpy tried to fetch a token: the benchmark must stay local")

    client.fetch_access_token = no_network
    return client


def _call0(fn: Callable[[], Any]) -> Callable[[int], None]:
    def loop(n: int) -> None:
        for _ in range(n):
            fn()

    return loop


def _call1(fn: Callable[[Any], Any], arg: Any) -> Callable[[int], None]:
    # No *args/**kwargs here: unpacking would add its own cost to every call timed.
    def loop(n: int) -> None:
        for _ in range(n):
            fn(arg)

    return loop


def _powertools_loop(provider: DynamoDBProvider, name: str) -> Callable[[int], None]:
    get = provider.get

    def loop(n: int) -> None:
        for _ in range(n):
            get(name, max_age=60)

    return loop


def _property_loop(obj: Any) -> Callable[[int], None]:
    def loop(n: int) -> None:
        for _ in range(n):
            obj.access_token  # noqa: B018 - the property read is what we time

    return loop


def _empty(n: int) -> None:
    for _ in range(n):
        pass


def _calls_per_hit(fn: Callable[[], Any], hits: int) -> list[tuple[str, float]]:
    """Function calls per cache hit, from cProfile (exact counts, distorted times)."""
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(hits):
        fn()
    profiler.disable()
    rows = []
    for (filename, line, name), (_, ncalls, *_rest) in pstats.Stats(profiler).stats.items():  # type: ignore[attr-defined]
        if (name == "disable" and "lsprof" in filename) or filename == __file__:
            continue  # the profiler's own stop, and this benchmark's wrapper
        where = "" if filename == "~" else f" ({filename.rsplit('/', 2)[-2:][-1]}:{line})"
        rows.append((f"{name}{where}", ncalls / hits))
    rows.sort(key=lambda r: -r[1])
    return [r for r in rows if r[1] >= 0.5]


def prototype_fast_path(reader: wechat_token.TokenReader) -> Callable[[str], str]:
    """The hot path the profile suggests, as a sketch (not shipped): one frame, one dict
    lookup keyed by app_id, a plain tuple, one clock read. Misses fall back to the reader."""
    entries: dict[str, tuple[str, float]] = {}
    clock: Callable[[], float] = getattr(reader, "_clock", time.time)

    def get_access_token(app_id: str) -> str:
        entry = entries.get(app_id)
        if entry is not None and clock() < entry[1]:
            return entry[0]
        value = reader.get(app_id)
        cached = getattr(reader, "_tokens", {}).get(app_id)
        until = getattr(cached, "cache_until", clock() + reader.cache_seconds)
        entries[app_id] = (value, until)
        return value

    return get_access_token


def warm(fx: Fixture, *, quick: bool) -> Section:
    began = time.perf_counter()
    app = fx.app
    reader = wechat_token.configure(fx.table, client=fx.be.client(), cache_seconds=60)
    assert wechat_token.get_access_token(app) == fx.token  # the one miss: now cached
    provider = fx.powertools()
    assert provider.get(app, max_age=60) == fx.token
    wp_fetched = _wechatpy(app, fx.token, fetched=True)
    wp_given = _wechatpy(app, fx.token, fetched=False)
    assert wp_fetched.access_token == wp_given.access_token == fx.token
    proto = prototype_fast_path(reader)
    assert proto(app) == fx.token

    calls, rounds = (5_000, 15) if quick else (20_000, 100)
    loops: dict[str, Callable[[int], None]] = {
        "empty": _empty,
        "ours": _call1(wechat_token.get_access_token, app),
        "ours_reader": _call1(reader.get, app),
        "powertools": _powertools_loop(provider, app),
        "wechatpy": _property_loop(wp_fetched),
        "wechatpy_given": _property_loop(wp_given),
        "prototype": _call1(proto, app),  # the suggested hot path, a sketch: not ours yet
    }
    samples = interleaved(loops, calls=calls, rounds=rounds)
    s = {name: summarize(values) for name, values in samples.items()}

    # Where the time goes: the hot path's pieces, timed alike.
    key = app
    entries = getattr(reader, "_tokens", {})
    entry = entries.get(key)
    clock = getattr(reader, "_clock", time.time)
    parts: dict[str, Callable[[int], None]] = {
        "empty": _empty,
        "get_access_token(app)": _call1(wechat_token.get_access_token, app),
        "default_reader()": _call0(wechat_token.reader.default_reader),
        "TokenReader.get(app)": _call1(reader.get, app),
        "clock() (time.time)": _call0(clock),
        "dict.get(key)": _call1(entries.get, key),
        "prototype fast path": _call1(proto, app),
    }
    if entry is not None and hasattr(entry, "cache_until"):

        def field_loop(n: int) -> None:
            for _ in range(n):
                entry.cache_until  # noqa: B018

        parts["entry.cache_until (NamedTuple field)"] = field_loop
    part_samples = interleaved(parts, calls=calls, rounds=rounds, seed=1)
    ps = {name: summarize(values) for name, values in part_samples.items()}
    profile_hits = 20_000 if not quick else 2_000
    ours_calls = _calls_per_hit(lambda: wechat_token.get_access_token(app), profile_hits)
    wp_calls = _calls_per_hit(lambda: wp_fetched.access_token, profile_hits)
    pt_calls = _calls_per_hit(lambda: provider.get(app, max_age=60), profile_hits)

    ours = s["ours"].median
    peers = {
        "Powertools DynamoDBProvider.get(max_age=60)": "powertools",
        "wechatpy .access_token (fetched: checks expiry)": "wechatpy",
        "wechatpy .access_token (token given: no expiry check)": "wechatpy_given",
    }
    fastest_name, fastest = min(peers.items(), key=lambda kv: s[kv[1]].median)
    speedup = s[fastest].median / ours
    spread = summarize(per_round_ratios(samples[fastest], samples["ours"]))
    rows = [
        Row(
            "1. Warm read (cache hit), per call",
            f"{ns(ours)} (p10–p90 {s['ours'].spread(ns)})",
            f"{ns(s[fastest].median)} — fastest peer: {fastest_name}",
            f"{x(speedup)} (per-round p10–p90 {spread.spread(x)})",
            "≥ 3× faster than the fastest peer",
            speedup >= 3.0,
        )
    ]
    for label, name in peers.items():
        if name == fastest:
            continue
        r = summarize(per_round_ratios(samples[name], samples["ours"]))
        rows.append(
            Row(
                f"1. Warm read vs {label}",
                ns(ours),
                ns(s[name].median),
                f"{x(s[name].median / ours)} ({r.spread(x)})",
                "informational (target is vs the fastest peer)",
                None,
            )
        )

    lines = [
        f"{calls:,} calls per sample, {rounds} interleaved rounds (order shuffled each round), "
        "loop overhead subtracted, garbage collector paused. Ratio = peer ÷ ours "
        "(> 1: ours is faster); its spread is the p10–p90 of the per-round ratios.",
        "",
        table(
            ["contender", "median / call", "p10–p90", "peer ÷ ours"],
            [
                ["ours: `get_access_token(app)`", ns(ours), s["ours"].spread(ns), "1.00×"],
                [
                    "ours: `TokenReader.get(app)`",
                    ns(s["ours_reader"].median),
                    s["ours_reader"].spread(ns),
                    x(s["ours_reader"].median / ours),
                ],
            ]
            + [
                [label, ns(s[name].median), s[name].spread(ns), x(s[name].median / ours)]
                for label, name in peers.items()
            ]
            + [
                [
                    "sketch of the suggested hot path (bench only, see Findings)",
                    ns(s["prototype"].median),
                    s["prototype"].spread(ns),
                    x(s["prototype"].median / ours),
                ]
            ],
        ),
        "",
        f"Empty-loop overhead per iteration: {ns(s['empty'].median)} (subtracted above).",
        "",
        "**Where our hit spends its time** (the same sampler on each piece of the path):",
        "",
        table(
            [
                "piece (loop overhead subtracted, so a tiny piece's p10 can dip below 0)",
                "median",
                "p10–p90",
            ],
            [
                [f"`{name}`", ns(ps[name].median), ps[name].spread(ns)]
                for name in parts
                if name != "empty"
            ],
        ),
        "",
        "Function calls per hit (cProfile counts; its timings are distorted, so not shown):",
        "",
        table(
            ["ours: `get_access_token`", "wechatpy: `.access_token`", "Powertools: `.get`"],
            [
                [
                    f"{a[0]} ×{a[1]:.0f}" if a else "",
                    f"{b[0]} ×{b[1]:.0f}" if b else "",
                    f"{c[0]} ×{c[1]:.0f}" if c else "",
                ]
                for a, b, c in _zip_longest(ours_calls, wp_calls, pt_calls)
            ],
        ),
    ]
    data = {
        "calls_per_sample": calls,
        "rounds": rounds,
        "median_ns": {k: v.median for k, v in s.items()},
        "p10_ns": {k: v.p10 for k, v in s.items()},
        "p90_ns": {k: v.p90 for k, v in s.items()},
        "parts_median_ns": {k: v.median for k, v in ps.items()},
        "calls_per_hit": {"ours": ours_calls, "wechatpy": wp_calls, "powertools": pt_calls},
        "fastest_peer": fastest_name,
        "fastest_peer_key": fastest,
        "prototype_vs_fastest": s[fastest].median / s["prototype"].median,
        "prototype_vs_fastest_spread": summarize(
            per_round_ratios(samples[fastest], samples["prototype"])
        ).__dict__,
        "speedup_vs_fastest": speedup,
    }
    return Section(
        "1. Warm read (cache hit)",
        rows,
        "\n".join(lines),
        data,
        time.perf_counter() - began,
    )


def _zip_longest(*lists: list[Any]) -> list[tuple[Any, ...]]:
    longest = max(len(items) for items in lists)
    return [tuple(items[i] if i < len(items) else None for items in lists) for i in range(longest)]


def _cpu_only(fx: Fixture, *, calls: int, rounds: int) -> dict[str, list[float]]:
    """The same misses with botocore's Stubber answering in-process: no network, no
    DynamoDB, only what each library does around the call (validation, events,
    deserialising the item, building the result)."""
    app = fx.app
    our_client = fx.be.client()
    reader = wechat_token.TokenReader(fx.table, client=our_client, cache_seconds=60)
    provider = fx.powertools()
    ours_stub = Stubber(our_client)
    pt_stub = Stubber(provider.table.meta.client)
    total = calls * (rounds + 3)
    for _ in range(total):
        ours_stub.add_response("get_item", {"Item": fx.item})
        pt_stub.add_response("get_item", {"Item": {**fx.item, POWERTOOLS_KEY: {"S": app}}})

    def ours(n: int) -> None:
        for _ in range(n):
            reader.invalidate(app)
            reader.get(app)

    def powertools(n: int) -> None:
        for _ in range(n):
            provider.get(app, max_age=60, force_fetch=True)

    with ours_stub, pt_stub:
        return interleaved(
            {"ours": ours, "powertools": powertools}, calls=calls, rounds=rounds, seed=2
        )


def cold(fx: Fixture, *, quick: bool) -> Section:
    """Cache misses against DynamoDB: every iteration reads the table."""
    began = time.perf_counter()
    app = fx.app
    client = fx.be.client()
    reader = wechat_token.TokenReader(fx.table, client=client, cache_seconds=60)
    provider = fx.powertools()
    raw = fx.be.client()
    key = {"app_id": {"S": app}, "kind": {"S": "access_token"}}

    def ours(n: int) -> None:
        for _ in range(n):
            reader.invalidate(app)
            reader.get(app)

    def fresh_reader(n: int) -> None:
        for _ in range(n):
            wechat_token.TokenReader(fx.table, client=client, cache_seconds=60).get(app)

    def powertools(n: int) -> None:
        for _ in range(n):
            provider.get(app, max_age=60, force_fetch=True)

    def get_item(n: int) -> None:
        for _ in range(n):
            raw.get_item(TableName=fx.table, Key=key)

    rounds = 40 if quick else 400
    loops = {
        "ours": ours,
        "ours_fresh": fresh_reader,
        "powertools": powertools,
        "get_item": get_item,
    }
    samples = interleaved(loops, calls=1, rounds=rounds, warmup_rounds=10)
    s = {name: summarize(values) for name, values in samples.items()}
    ratio = s["powertools"].median / s["ours"].median
    spread = summarize(per_round_ratios(samples["powertools"], samples["ours"]))
    cpu = _cpu_only(fx, calls=100 if quick else 200, rounds=10 if quick else 60)
    c = {name: summarize(values) for name, values in cpu.items()}
    cpu_ratio = c["powertools"].median / c["ours"].median
    cpu_spread = summarize(per_round_ratios(cpu["powertools"], cpu["ours"]))
    rows = [
        Row(
            "2. Cold read (cache miss → DynamoDB Local GetItem)",
            f"{ns(s['ours'].median)} (p10–p90 {s['ours'].spread(ns)})",
            f"{ns(s['powertools'].median)} Powertools force_fetch "
            f"(p10–p90 {s['powertools'].spread(ns)})",
            f"{x(ratio)} (median per-round {x(spread.median)}, p10–p90 {spread.spread(x)})",
            "no slower (ratio ≥ 1; ≥ 0.95 counts as parity on this noisy machine)",
            ratio >= 0.95,
            "" if ratio >= 1 else f"{(1 - ratio):.0%} slower: parity within noise",
        ),
        Row(
            "2b. Cold read, CPU only (botocore Stubber: no network)",
            f"{ns(c['ours'].median)} (p10–p90 {c['ours'].spread(ns)})",
            f"{ns(c['powertools'].median)} Powertools ({c['powertools'].spread(ns)})",
            f"{x(cpu_ratio)} (per-round {cpu_spread.spread(x)})",
            "informational: what each library adds around the call",
            None,
        ),
    ]
    item_bytes = dynamodb_item_size(fx.item)
    detail = "\n".join(
        [
            f"One read per sample, {rounds} interleaved rounds after 10 warm-up rounds, "
            f"against {fx.be.name} on loopback. The item is the refresher's real record "
            f"({item_bytes} bytes by DynamoDB's size rules); Powertools reads a copy of it "
            f"keyed by `{POWERTOOLS_KEY}` in its own table (its provider cannot address our "
            "two-part key). Both read eventually consistent, as in production.",
            "",
            table(
                ["contender", "median", "p10–p90", "Powertools ÷ contender"],
                [
                    [
                        "ours: `invalidate` + `TokenReader.get`",
                        ns(s["ours"].median),
                        s["ours"].spread(ns),
                        x(ratio),
                    ],
                    [
                        "ours: new `TokenReader` + `get` each time",
                        ns(s["ours_fresh"].median),
                        s["ours_fresh"].spread(ns),
                        x(s["powertools"].median / s["ours_fresh"].median),
                    ],
                    [
                        "Powertools: `get(max_age=60, force_fetch=True)`",
                        ns(s["powertools"].median),
                        s["powertools"].spread(ns),
                        "1.00×",
                    ],
                    [
                        "floor: bare `client.get_item` (no parsing)",
                        ns(s["get_item"].median),
                        s["get_item"].spread(ns),
                        x(s["powertools"].median / s["get_item"].median),
                    ],
                ],
            ),
            "",
            "CPU only: the same misses answered in-process by botocore's `Stubber` (no "
            "network, no DynamoDB), isolating what each library does around the call: "
            "parameter validation and events, deserialising the item, building the result.",
            "",
            table(
                ["contender", "median", "p10–p90"],
                [
                    ["ours", ns(c["ours"].median), c["ours"].spread(ns)],
                    ["Powertools", ns(c["powertools"].median), c["powertools"].spread(ns)],
                ],
            ),
        ]
    )
    data = {
        "rounds": rounds,
        "cpu_only_median_ns": {k: v.median for k, v in c.items()},
        "median_ns": {k: v.median for k, v in s.items()},
        "p10_ns": {k: v.p10 for k, v in s.items()},
        "p90_ns": {k: v.p90 for k, v in s.items()},
        "item_bytes": item_bytes,
    }
    return Section("2. Cold read (cache miss)", rows, detail, data, time.perf_counter() - began)


def dynamodb_item_size(item: dict[str, Any]) -> int:
    """An item's size as DynamoDB bills it: names plus values (strings UTF-8, numbers
    about one byte per two digits plus one)."""
    total = 0
    for name, value in item.items():
        total += len(name.encode())
        ((kind, raw),) = value.items()
        if kind == "S":
            total += len(raw.encode())
        elif kind == "N":
            digits = len(raw.replace("-", "").replace(".", "").lstrip("0")) or 1
            total += (digits + 1) // 2 + 1
        elif kind in ("BOOL", "NULL"):
            total += 1
        else:
            total += len(str(raw))
    return total
