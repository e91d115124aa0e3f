"""Measure 3: what importing the helper adds to a consumer's cold start, in fresh interpreters.

Each child process imports boto3 (the Lambda runtime's own, which every contender needs),
then the contender, timing both with ``perf_counter_ns``. The child for ours also asserts
that httpx was not imported. Two regimes:

- *bytecode cached*: every module's ``.pyc`` exists (``PYTHONPYCACHEPREFIX`` to a private
  directory, filled by warm-up runs): the fair, like-for-like comparison;
- *as shipped*: ``PYTHONDONTWRITEBYTECODE=1`` and our package straight from the SAM build,
  which holds no ``.pyc``; Lambda's ``/opt`` is read-only, so every cold start compiles it,
  while a pip-installed Powertools ships its ``.pyc``.
"""

# ruff: noqa: RUF001, RUF003 - the report is typeset: × – ÷ ≈ are meant

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.results import Row, Section, ms, table, x
from bench.stats import per_round_ratios, summarize

REPO = Path(__file__).resolve().parent.parent
SOURCE_LAYER = REPO / "layers" / "wechat_token"
BUILT_LAYER = REPO / ".aws-sam" / "build" / "WeChatTokenLayer" / "python"

CHILD = r"""
import json, sys, time
mode, layer = sys.argv[1], sys.argv[2]
sys.path.insert(0, layer)
t0 = time.perf_counter_ns()
if mode != "alone":
    import boto3
t1 = time.perf_counter_ns()
if mode in ("ours", "alone"):
    import wechat_token
    assert "httpx" not in sys.modules, "importing wechat_token imported httpx"
    if mode == "alone":
        assert "boto3" not in sys.modules, "importing wechat_token imported boto3"
elif mode == "powertools":
    from aws_lambda_powertools.utilities import parameters
t2 = time.perf_counter_ns()
print(json.dumps({"boto3": t1 - t0, "extra": t2 - t1, "modules": len(sys.modules),
                  "httpx": "httpx" in sys.modules}))
"""


def build_is_current() -> bool | None:
    """Whether the SAM build holds exactly the source's Python files (None: no build)."""
    if not BUILT_LAYER.is_dir():
        return None
    source = {p.relative_to(SOURCE_LAYER): p.read_bytes() for p in SOURCE_LAYER.rglob("*.py")}
    built = {p.relative_to(BUILT_LAYER): p.read_bytes() for p in BUILT_LAYER.rglob("*.py")}
    return built == source


def layer_status() -> tuple[Path, str]:
    """The package to import: the SAM build when it matches the source, else the source."""
    current = build_is_current()
    if current is None:
        return SOURCE_LAYER, "the source tree (no SAM build found: run `make build`)"
    if not current:
        return (
            SOURCE_LAYER,
            "the source tree (the SAM build is older than the source: run `make build`)",
        )
    return BUILT_LAYER, "the SAM-built layer (identical to the source)"


def _env(regime: str, prefix: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if regime == "cached":
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = prefix
    else:
        env.pop("PYTHONPYCACHEPREFIX", None)
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _run(mode: str, layer: Path, env: dict[str, str], *importtime: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, *importtime, "-c", CHILD, mode, str(layer)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tempfile.gettempdir(),
    )
    if out.returncode != 0:
        raise RuntimeError(f"import child ({mode}) failed:\n{out.stderr[-2000:]}")
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    if importtime:
        result["importtime"] = out.stderr
    return result


def _top_imports(stderr: str, limit: int = 6) -> list[tuple[str, int, int]]:
    """Modules imported after boto3, by self time: (name, self µs, cumulative µs)."""
    rows: list[tuple[str, int, int]] = []
    seen_boto3 = False
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        _, self_us, cumulative, name = (
            part.strip() for part in line.replace("import time:", "|", 1).split("|")
        )
        if not seen_boto3:
            seen_boto3 = name == "boto3"
            continue
        rows.append((name, int(self_us), int(cumulative)))
    rows.sort(key=lambda r: -r[1])
    return rows[:limit]


def measure(*, quick: bool) -> Section:
    began = time.perf_counter()
    layer, layer_note = layer_status()
    runs = 5 if quick else 25
    rng = random.Random(3)
    with tempfile.TemporaryDirectory(prefix="bench-pycache-") as prefix:
        # boto3 alone is timed in every child, before the contender's import.
        plan = {"cached": ["ours", "powertools"], "shipped": ["ours", "powertools"]}
        env = {regime: _env(regime, prefix) for regime in plan}
        # The layer must not carry .pyc files, or "as shipped" would not be.
        stray_pyc = sorted(str(p) for p in layer.rglob("*.pyc"))
        alone = _run("alone", layer, env["cached"])
        for regime, modes in plan.items():
            for mode in modes:
                for _ in range(2):  # warm-up: fills the private pycache, warms the disk cache
                    _run(mode, layer, env[regime])
        samples: dict[tuple[str, str], list[dict[str, object]]] = {
            (regime, mode): [] for regime, modes in plan.items() for mode in modes
        }
        for _ in range(runs):
            jobs = list(samples)
            rng.shuffle(jobs)
            for regime, mode in jobs:
                samples[(regime, mode)].append(_run(mode, layer, env[regime]))
        ours_top = _top_imports(
            str(_run("ours", layer, env["cached"], "-X", "importtime")["importtime"])
        )
        pt_top = _top_imports(
            str(_run("powertools", layer, env["cached"], "-X", "importtime")["importtime"])
        )

    def series(regime: str, mode: str, key: str) -> list[float]:
        return [float(s[key]) for s in samples[(regime, mode)]]  # type: ignore[arg-type]

    boto3 = summarize([v for key in samples for v in series(*key, "boto3")])
    ours = summarize(series("cached", "ours", "extra"))
    pt = summarize(series("cached", "powertools", "extra"))
    ours_shipped = summarize(series("shipped", "ours", "extra"))
    pt_shipped = summarize(series("shipped", "powertools", "extra"))
    httpx_seen = any(s["httpx"] for s in samples[("cached", "ours")] + samples[("shipped", "ours")])
    assert not httpx_seen, "httpx was imported by `import wechat_token`"
    share = ours.median / pt.median
    paired = summarize(
        per_round_ratios(series("cached", "ours", "extra"), series("cached", "powertools", "extra"))
    )
    share_shipped = ours_shipped.median / pt_shipped.median
    rows = [
        Row(
            "3. Cold-start import on top of boto3 (bytecode cached)",
            f"+{ms(ours.median)} (p10–p90 {ours.spread(ms)})",
            f"+{ms(pt.median)} Powertools `parameters` ({pt.spread(ms)})",
            f"ours = {share:.0%} of Powertools' ({x(1 / share)} less; per-round median "
            f"{paired.median:.0%}, p10–p90 {paired.p10:.0%}–{paired.p90:.0%})",
            "< 1/3 of what Powertools adds; httpx not imported",
            share < 1 / 3 and not httpx_seen,
            f"boto3 alone: {ms(boto3.median)}",
        ),
        Row(
            "3b. Same, as shipped (our layer has no .pyc; Lambda's /opt is read-only)",
            f"+{ms(ours_shipped.median)} ({ours_shipped.spread(ms)})",
            f"+{ms(pt_shipped.median)} ({pt_shipped.spread(ms)})",
            f"ours = {share_shipped:.0%} of Powertools'",
            "informational",
            None,
        ),
    ]
    detail = "\n".join(
        [
            f"Median of {runs} fresh interpreters per contender and regime (after 2 warm-ups "
            "each, order shuffled), timed inside the child with `perf_counter_ns`. Ours is "
            f"imported from {layer_note}. `import wechat_token` on its own (no boto3 first) "
            f"loads {'neither boto3 nor httpx' if alone else '?'} "
            "(asserted in the child, as is the absence of httpx in every run above).",
            "",
            table(
                [
                    "import",
                    "bytecode cached: median",
                    "p10–p90",
                    "min",
                    "as shipped: median",
                    "p10–p90",
                ],
                [
                    [
                        "`import boto3` (baseline, every run)",
                        ms(boto3.median),
                        boto3.spread(ms),
                        ms(boto3.minimum),
                        "",
                        "",
                    ],
                    [
                        "+ `import wechat_token`",
                        ms(ours.median),
                        ours.spread(ms),
                        ms(ours.minimum),
                        ms(ours_shipped.median),
                        ours_shipped.spread(ms),
                    ],
                    [
                        "+ `from aws_lambda_powertools.utilities import parameters`",
                        ms(pt.median),
                        pt.spread(ms),
                        ms(pt.minimum),
                        ms(pt_shipped.median),
                        pt_shipped.spread(ms),
                    ],
                ],
            ),
            "",
            f"Ratio of the minima (the least disturbed runs): {ours.minimum / pt.minimum:.0%}.",
            "",
            "Largest self times after boto3 (`-X importtime`, one cached run each):",
            "",
            table(
                ["ours: module", "self", "Powertools: module", "self"],
                [
                    [
                        f"`{a[0]}`" if a else "",
                        f"{a[1] / 1000:.1f} ms" if a else "",
                        f"`{b[0]}`" if b else "",
                        f"{b[1] / 1000:.1f} ms" if b else "",
                    ]
                    for a, b in _pairs(ours_top, pt_top)
                ],
            ),
        ]
        + ([f"\nWarning: the layer holds .pyc files: {stray_pyc[:3]}"] if stray_pyc else [])
    )
    data = {
        "runs": runs,
        "layer": str(layer),
        "boto3_median_ns": boto3.median,
        "ours_median_ns": ours.median,
        "ours_min_ns": ours.minimum,
        "powertools_min_ns": pt.minimum,
        "powertools_median_ns": pt.median,
        "ours_shipped_median_ns": ours_shipped.median,
        "powertools_shipped_median_ns": pt_shipped.median,
        "share": share,
        "per_round_share_median": paired.median,
        "ours_top": ours_top,
        "powertools_top": pt_top,
    }
    return Section("3. Cold-start import cost", rows, detail, data, time.perf_counter() - began)


def _pairs(
    a: list[tuple[str, int, int]], b: list[tuple[str, int, int]]
) -> list[tuple[tuple[str, int, int] | None, tuple[str, int, int] | None]]:
    n = max(len(a), len(b))
    return [(a[i] if i < len(a) else None, b[i] if i < len(b) else None) for i in range(n)]
