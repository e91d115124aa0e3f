"""Measure 9: the Node.js layer (layers/wechat_token_node) against Powertools for AWS Lambda
(TypeScript) ``DynamoDBProvider``: warm read, cache miss and first read of a fresh process,
side by side on the same DynamoDB Local item, and the layer's size.

The timing runs in Node.js (bench/node_reads.mjs); this module stores the token (the Python
refresher, through ``reads.Fixture``), runs it, and turns its samples into rows.
"""

# ruff: noqa: RUF001, RUF003 - the report is typeset: × – ÷ ≈ are meant

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from wechat_token import fingerprint

from bench.reads import Fixture
from bench.results import Row, Section, kib, ms, ns, table, x
from bench.size import _files, _zipped
from bench.stats import per_round_ratios, summarize

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "bench" / "node_reads.mjs"
NODE_LAYER = REPO / "layers" / "wechat_token_node"
BUILT_NODE_LAYER = REPO / ".aws-sam" / "build" / "WeChatTokenNodeLayer"
POWERTOOLS_PACKAGES = ("@aws-lambda-powertools/parameters", "@aws-lambda-powertools/commons")
# Parity, as for the Python cold read: this machine is shared and noisy.
PARITY = 0.95


def _run_node(fx: Fixture, *, quick: bool) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("Node.js is needed for the Node.js layer's benchmark: install node 20+")
    if not (NODE_LAYER / "node_modules" / "@aws-lambda-powertools" / "parameters").is_dir():
        raise RuntimeError("run `make node-layer` (npm ci in layers/wechat_token_node) first")
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": os.environ.get("HOME", "/tmp"),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ENDPOINT_URL_DYNAMODB": fx.be.endpoint_url,
        "TOKEN_TABLE_NAME": fx.table,
        "POWERTOOLS_TABLE": fx.pt_table,
        "WECHAT_APP_ID": fx.app,
        "EXPECTED_FINGERPRINT": fingerprint(fx.token),
        "BENCH_QUICK": "1" if quick else "0",
        "NODE_NO_WARNINGS": "1",
    }
    command = [node, "--expose-gc", "--experimental-import-meta-resolve", str(SCRIPT), "measure"]
    completed = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=1800, check=False
    )
    if completed.returncode != 0:
        raise RuntimeError(f"bench/node_reads.mjs failed:\n{completed.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(completed.stdout)
    return result


def _layer_size() -> dict[str, Any]:
    built = BUILT_NODE_LAYER / "nodejs"
    if built.is_dir():
        root, note = BUILT_NODE_LAYER, "the SAM build (`.aws-sam/build/WeChatTokenNodeLayer`)"
        files = _files(root, with_pyc=True)
    else:
        root, note = NODE_LAYER, "no SAM build found, so the package's source files"
        files = [NODE_LAYER / "package.json", *sorted((NODE_LAYER / "src").iterdir())]
    modules = NODE_LAYER / "node_modules"
    pt_files = [p for name in POWERTOOLS_PACKAGES for p in _files(modules / name, with_pyc=True)]
    return {
        "note": note,
        "ours_files": len(files),
        "ours_bytes": sum(p.stat().st_size for p in files),
        "ours_zip": _zipped(root, files),
        "powertools_files": len(pt_files),
        "powertools_bytes": sum(p.stat().st_size for p in pt_files),
        "powertools_zip": _zipped(modules, pt_files),
    }


def _compare(
    samples: dict[str, list[float]], ours: str, peer: str
) -> tuple[float, float, float, str]:
    """(ours median, peer median, peer ÷ ours, per-round spread) of two sample series."""
    o, p = summarize(samples[ours]), summarize(samples[peer])
    spread = summarize(per_round_ratios(samples[peer], samples[ours]))
    return o.median, p.median, p.median / o.median, spread.spread(x)


def measure(fx: Fixture | None, *, quick: bool) -> Section:
    assert fx is not None, "the node section needs the reads fixture"
    began = time.perf_counter()
    result = _run_node(fx, quick=quick)
    size = _layer_size()
    warm, miss, first = result["warm"], result["miss"], result["first"]
    w_ours, w_pt, w_ratio, w_spread = _compare(warm, "ours", "powertools")
    m_ours, m_pt, m_ratio, m_spread = _compare(miss, "ours", "powertools")
    f_ours, f_pt, f_ratio, f_spread = _compare(first, "ours", "powertools")
    cached = summarize(warm["ours_cached"]).median
    awaited = summarize(warm["empty_await"]).median
    bare = summarize(miss["bare_getitem"]).median
    i_ours, i_pt = (
        summarize(first["ours_import"]).median,
        summarize(first["powertools_import"]).median,
    )
    size_ratio = size["powertools_bytes"] / size["ours_bytes"]
    rows = [
        Row(
            "9. Node.js warm read (cache hit), awaited",
            f"{ns(w_ours)} (p10–p90 {summarize(warm['ours']).spread(ns)})",
            f"{ns(w_pt)} Powertools (TS) DynamoDBProvider.get(maxAge 60)",
            f"{x(w_ratio)} (per-round {w_spread})",
            "faster than Powertools",
            w_ratio > 1.0,
            f"sync `reader.cached()` {ns(cached)}; a bare `await` costs {ns(awaited)}",
        ),
        Row(
            "9. Node.js cold read (miss → DynamoDB Local GetItem)",
            f"{ms(m_ours)} (p10–p90 {summarize(miss['ours']).spread(ms)})",
            f"{ms(m_pt)} Powertools forceFetch",
            f"{x(m_ratio)} (per-round {m_spread})",
            f"no slower (≥ {PARITY} counts as parity)",
            m_ratio >= PARITY,
            f"bare SDK GetItem {ms(bare)}",
        ),
        Row(
            "9. Node.js first read in a fresh process (import + client + GetItem)",
            f"{ms(f_ours)} (import {ms(i_ours)})",
            f"{ms(f_pt)} Powertools (import {ms(i_pt)})",
            f"{x(f_ratio)} (per-process {f_spread})",
            f"no slower (≥ {PARITY})",
            f_ratio >= PARITY,
        ),
        Row(
            "9. Node.js layer size, unzipped",
            f"{kib(size['ours_bytes'])} ({size['ours_files']} files)",
            f"{kib(size['powertools_bytes'])} Powertools parameters + commons "
            f"({size['powertools_files']} files)",
            f"{x(size_ratio)} smaller",
            "smaller than Powertools",
            size["ours_bytes"] < size["powertools_bytes"],
            f"zipped: {kib(size['ours_zip'])} vs {kib(size['powertools_zip'])}",
        ),
    ]
    processes = len(first["ours"])
    detail = "\n".join(
        [
            f"Node.js {result['node']}, AWS SDK for JavaScript {result['sdk']}, Powertools for "
            f"AWS Lambda (TypeScript) parameters {result['powertools']}, run by "
            "`bench/node_reads.mjs` (`python -m bench --only node`). The token was stored by "
            "the Python refresher; Powertools reads a copy of the same item keyed by `id` "
            "(its provider takes one key attribute, ours is (app_id, kind)), and fetches only "
            "the `value` attribute (a projection) where ours reads the whole record, which "
            "it needs for the expiry. Samples interleave the contenders, order shuffled each "
            "round; ratio = Powertools ÷ ours (> 1: ours is faster).",
            "",
            table(
                ["", "ours", "Powertools (TS)", "ratio"],
                [
                    ["warm read, awaited (per call)", ns(w_ours), ns(w_pt), x(w_ratio)],
                    ["cache miss (per read)", ms(m_ours), ms(m_pt), x(m_ratio)],
                    [
                        f"first read, fresh process (median of {processes})",
                        ms(f_ours),
                        ms(f_pt),
                        x(f_ratio),
                    ],
                    ["… of which the import", ms(i_ours), ms(i_pt), x(i_pt / i_ours)],
                    [
                        "layer, unzipped / zipped",
                        f"{kib(size['ours_bytes'])} / {kib(size['ours_zip'])}",
                        f"{kib(size['powertools_bytes'])} / {kib(size['powertools_zip'])}",
                        x(size_ratio),
                    ],
                ],
            ),
            "",
            "Ours imports no AWS SDK until the first read (its import is the layer alone), "
            "Powertools imports the DynamoDB client at once: the first-read row is the fair "
            "comparison of the two, import and first GetItem together. Sizes: ours is "
            f"{size['note']}; Powertools is the two packages as npm installs them. Neither "
            "counts the AWS SDK, which the Node.js runtimes provide.",
        ]
    )
    data = {
        "versions": {k: result[k] for k in ("node", "sdk", "powertools")},
        "median_ns": {
            "warm": {k: summarize(v).median for k, v in warm.items()},
            "miss": {k: summarize(v).median for k, v in miss.items()},
            "first": {k: summarize(v).median for k, v in first.items()},
        },
        "size": size,
    }
    return Section(
        "9. Node.js layer vs Powertools (TypeScript)",
        rows,
        detail,
        data,
        time.perf_counter() - began,
    )
