"""The *Findings* paragraphs: what the numbers of this run say, written from the data."""

# ruff: noqa: RUF001, RUF003 - the report is typeset: × – ÷ ≈ are meant

from __future__ import annotations

from typing import Any

from bench.results import Section, ms, ns


def _section(sections: list[Section], prefix: str) -> Section | None:
    return next((s for s in sections if s.title.startswith(prefix)), None)


def _warm(s: Section) -> list[str]:
    d: dict[str, Any] = s.data
    med = d["median_ns"]
    parts = d["parts_median_ns"]
    ours = med["ours"]
    given, fetched, pt = med["wechatpy_given"], med["wechatpy"], med["powertools"]
    proto = med.get("prototype", parts.get("prototype fast path", float("nan")))
    spread = d.get("prototype_vs_fastest_spread", {})
    p10, p90 = spread.get("p10", float("nan")), spread.get("p90", float("nan"))
    met = s.rows[0].met
    calls = len([c for c in d["calls_per_hit"]["ours"] if not c[0].startswith("<")])
    lines = [
        f"**Warm read — target {'met' if met else 'missed'}.** A hit on "
        f"`get_access_token` takes {ns(ours)}: {pt / ours:.1f}× faster than Powertools' "
        f"cached `get` ({ns(pt)}), {fetched / ours:.1f}× faster than wechatpy when it checks "
        f"expiry ({ns(fetched)}), but only {given / ours:.2f}× against wechatpy's path for a "
        f"token handed to it, which never checks expiry ({ns(given)}); the fastest peer is "
        f"*{d['fastest_peer']}*, so ≥ 3× is {'met' if met else 'not met'}.",
    ]
    if not met:
        lines += [
            "",
            "What the hit spends its time on (same sampler, per piece): "
            + ", ".join(
                f"`{k}` {ns(v)}"
                for k, v in parts.items()
                if k not in ("empty", "prototype fast path")
            )
            + f". It runs {calls} Python frames (`get_access_token` → `default_reader()` → "
            "`TokenReader.get`) plus a tuple key, a dict lookup, the clock read and a "
            "NamedTuple field; wechatpy's unchecked path is a property, a `str.format` and a "
            "dict lookup with no clock read, which is the same order of work. A sketch of the "
            "suggested hot path (one frame; a dict keyed by `app_id` holding plain "
            "`(value, cache_until)` tuples; one clock read; misses fall back to the reader) "
            f"measured {ns(proto)} in the same interleaved rounds: {given / proto:.1f}× "
            "wechatpy's unchecked path (per-round p10–p90 "
            f"{p10:.1f}×–{p90:.1f}×) "
            f"and {fetched / proto:.1f}× its checked one.",
            "",
            "Suggestions for `layers/wechat_token/wechat_token/reader.py`:",
            "1. `get_access_token`: read the module's `_default_reader` directly "
            "(`reader = _default_reader or default_reader()`) and run the hit inline instead "
            "of calling `default_reader()` and then `TokenReader.get` (two frames saved).",
            "2. Keep one dict per kind keyed by `app_id` (or a precomputed key) so a hit does "
            "not build and hash a `(app_id, kind)` tuple; store `(value, cache_until)` as a "
            "plain tuple read by index or unpacking.",
            "3. Bind the clock once (`clock = self._clock` in `__init__` as a plain function "
            "attribute, or `time.monotonic` captured at module level for the default) and keep "
            "`app_id or app_id_from_env()` off the hit path (resolve `None` once).",
            (
                f"4. The sketch reaches {given / proto:.1f}× the fastest peer here"
                + (
                    ", so these changes would meet the target."
                    if given / proto >= 3.5
                    else ": at the target in this run, but the per-round spread "
                    f"({p10:.1f}×–{p90:.1f}×) straddles it, so count it as borderline."
                    if given / proto >= 3
                    else ", still short of 3×: that peer does no clock read at all (ours "
                    "costs " + ns(parts.get("clock() (time.time)", float("nan"))) + " "
                    "here), so 3× against it is at the edge of what a Python hit that checks "
                    "expiry can do. Against wechatpy's comparable, expiry-checking path the "
                    f"sketch is {fetched / proto:.1f}×."
                )
            ),
        ]
    return lines


def _cold(s: Section) -> list[str]:
    med = s.data["median_ns"]
    cpu = s.data["cpu_only_median_ns"]
    return [
        f"**Cold read — target {'met' if s.rows[0].met else 'missed'}.** A miss costs "
        f"{ns(med['ours'])} against Powertools' {ns(med['powertools'])} (a bare `get_item`: "
        f"{ns(med['get_item'])}): the DynamoDB round trip dominates both. Without the network "
        f"(botocore Stubber) ours spends {ns(cpu['ours'])} per miss around the call and "
        f"Powertools {ns(cpu['powertools'])}: ours uses the low-level client and parses the "
        "record with `TypeDeserializer` plus `CredentialRecord.from_item`; Powertools goes "
        "through the resource layer's deserialising handlers."
    ]


def _imports(s: Section) -> list[str]:
    d = s.data
    top = d["ours_top"][:3]
    met = s.rows[0].met
    lines = [
        f"**Import — target {'met' if met else 'missed'}.** On top of boto3 "
        f"({ms(d['boto3_median_ns'])} on this machine), `import wechat_token` adds "
        f"{ms(d['ours_median_ns'])} and Powertools' `parameters` {ms(d['powertools_median_ns'])} "
        f"({d['share']:.0%}). httpx is not imported. Largest self times in ours: "
        + ", ".join(f"`{name}` {self_us / 1000:.1f} ms" for name, self_us, _ in top)
        + ".",
        "",
        f"As shipped, our layer has no `.pyc` and Lambda's `/opt` is read-only, so every cold "
        f"start compiles it: {ms(d['ours_shipped_median_ns'])} instead of "
        f"{ms(d['ours_median_ns'])}. Shipping bytecode in the layer (e.g. a `BuildMethod: "
        "makefile` that runs `python -m compileall --invalidation-mode unchecked-hash`) would "
        "remove that; it is a template change, outside bench/.",
    ]
    if met and d["share"] > 0.8 / 3:
        lines += [
            "",
            f"Met, but close to the line (ratio of the minima "
            f"{d['ours_min_ns'] / d['powertools_min_ns']:.0%}, median of per-round ratios "
            f"{d['per_round_share_median']:.0%}); on this shared machine the result can land on "
            "either side of a third from run to run. The fixes below would give it room.",
        ]
    if not met or d["share"] > 0.8 / 3:
        record = next((t for t in d["ours_top"] if t[0] == "wechat_token.record"), None)
        minima = d["ours_min_ns"] / d["powertools_min_ns"]
        lines += [
            "",
            f"The ratio sits near the line (of the minima: {minima:.0%}; it moves between runs "
            "on this shared machine). To get clearly under a third:"
            if not met
            else "To get clearly under a third:",
            "1. `record.py`: the frozen, slotted 19-field `@dataclass` is generated with "
            "`exec()` at import"
            + (f" ({record[1] / 1000:.1f} ms self time here)" if record else "")
            + "; a hand-written class with `__slots__` and `__init__` removes most of that;",
            "2. `__init__.py`: import `client`, `passive`, `jssdk` and `redaction` lazily "
            "through a module `__getattr__` (PEP 562), so that `get_access_token` users do "
            "not pay for `WeChatClient`.",
        ]
    return lines


def _fanout(s: Section) -> list[str]:
    runs = s.data["runs"]
    big = max(r["n"] for r in runs)
    h16 = next(
        r for r in runs if r["n"] == big and r["concurrency"] == 16 and r["phase"] == "hourly"
    )
    h64 = next(
        (r for r in runs if r["n"] == big and r["concurrency"] == 64 and r["phase"] == "hourly"),
        None,
    )
    ddb = sum(h16["dynamodb"].values()) / big
    ideal = -(-big // 16) * 2 * 0.05
    lines = [
        f"**Fan-out.** {big} apps take {h16['wall_s']:.1f} s per hourly run at concurrency 16 "
        f"({h16['wall_s'] / big * 1000:.1f} ms per app; the WeChat latency alone would be "
        f"{ideal:.1f} s) with exactly {h16['token_calls']} token calls, "
        f"{ddb:.1f} DynamoDB calls per app and a peak RSS of {h16['rss_peak'] / 2**20:.0f} MiB; "
        f"about {s.data['capacity']:,} apps would fit in one 15-minute invocation at that rate."
    ]
    if h64 is not None:
        lines[0] += (
            f" Concurrency 64 takes {h64['wall_s']:.1f} s against an ideal of "
            f"{-(-big // 64) * 2 * 0.05:.1f} s: on 2 cores, CPU (botocore signing and parsing, "
            "the HTTP client, and DynamoDB Local and the simulator on the same cores) bounds "
            "the run, not WeChat's latency; more concurrency buys little here, more on "
            "Lambda where DynamoDB and WeChat run elsewhere."
        )
    return lines


def _storm(s: Section) -> list[str]:
    runs = s.data["runs"]
    lines = []
    for r in runs:
        reads = sum(r["consumer_dynamodb"].values())
        lines.append(
            f"{r['n']} consumers, {r['variant']} reader: {r['token_calls']} token call(s), "
            f"{r['rejected']} got 40001, {r['recovered']}/{r['n']} recovered, "
            f"p50 {ms(r['p50_ns'])}, p99 {ms(r['p99_ns'])}, "
            f"{reads} consumer GetItems ({reads / r['n']:.1f} per consumer)."
        )
    ok = all(r["token_calls"] == 1 for r in runs)
    shared = [r for r in runs if r["variant"] == "shared"]
    verdict = "exactly one WeChat token call in every run" if ok else "MORE THAN ONE token call"
    text = [f"**Storm — {verdict}.** " + " ".join(lines)]
    own = [r for r in runs if r["variant"] == "own"]
    if shared:
        small, big = min(shared, key=lambda r: r["n"]), max(shared, key=lambda r: r["n"])
        reads = sum(big["consumer_dynamodb"].values())
        text += [
            "",
            f"Shared reader: every consumer that got 40001 calls `reader.refetch` (a strongly "
            "consistent read) before and again inside the single-flight lock, and `refetch` "
            "holds the reader's miss lock, so those reads queue behind one another even after "
            f"the new token is cached: {reads} reads for {big['n']} consumers, p99 from "
            f"{ms(small['p99_ns'])} at {small['n']} to {ms(big['p99_ns'])} at {big['n']}. "
            "Suggestion (client.py `_replacement` / reader.py `refetch`): first take the "
            "cached value if it already differs from the rejected token, and let `refetch` "
            "return an entry that another thread loaded while it waited for the lock.",
        ]
    if own:
        big = max(own, key=lambda r: r["n"])
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(big["passive_outcomes"].items()))
        text += [
            "",
            f"Own readers (separate Lambdas): at {big['n']} consumers the refresher saw "
            f"{sum(big['passive_outcomes'].values())} passive requests ({outcomes}); its lease "
            "and the `already_replaced` check kept WeChat at one call. Consumers told "
            "`lease_held` poll the table every 0.2 s until the new token lands, "
            f"{sum(big['consumer_dynamodb'].values())} reads in all. The times of this variant "
            "measure the rig more than the design: N Lambdas' worth of botocore work shares "
            "one Python process and 2 cores with DynamoDB Local and the simulator; on Lambda "
            "each consumer has its own CPU and the refresh lands after about one WeChat round "
            "trip.",
        ]
    return text


def _cost(s: Section) -> list[str]:
    from bench.cost import money  # noqa: PLC0415

    models = s.data["models"]
    worst = max(abs(m["per_invocation"] / m["expected"] - 1) for m in s.data["measured"])
    return [
        "**Cost.** Reads follow execution environments, not invocations: "
        + "; ".join(
            f"{m['rate']:,.0f} inv/s per app ≈ {m['environments']:,} environments ≈ "
            f"{money(m['cost'])}/month (vs {money(m['uncached_cost'])} reading per invocation)"
            for m in models
        )
        + f". The measured reads per invocation are within {worst:.0%} of 1/(1 + 60·r)."
    ]


def _timeline(s: Section) -> list[str]:
    d = s.data
    return [
        f"**A simulated day.** Consumers used a replaced token at most "
        f"{d['max_use_after_replacement_s']:.0f} s after the refresher replaced it (the grace "
        f"is 300 s); {d['rejected']} of {d['business_calls']:,} consumer calls were rejected, "
        "each answered by the passive refresh after the foreign eviction."
    ]


def findings(sections: list[Section]) -> str:
    out: list[str] = []
    for prefix, fn in (
        ("1.", _warm),
        ("2.", _cold),
        ("3.", _imports),
        ("5.", _fanout),
        ("6.", _storm),
        ("7.", _cost),
        ("8.", _timeline),
    ):
        section = _section(sections, prefix)
        if section is not None:
            out += [*fn(section), ""]
    return "\n".join(out).strip()
