"""bench/results.md (every number) and docs/performance.md (the summary, plots and method)."""

# ruff: noqa: RUF001, RUF003 - the report is typeset: × – ÷ ≈ are meant

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.results import Row, Section, table

SUMMARY_HEADER = ["measure", "ours", "peer", "ratio", "target", "met?"]


def summary_table(sections: list[Section]) -> str:
    rows = [r for s in sections for r in s.rows]
    return table(
        SUMMARY_HEADER,
        [
            [
                r.measure,
                r.ours + (f" — {r.note}" if r.note else ""),
                r.peer,
                r.ratio,
                r.target,
                r.verdict,
            ]
            for r in rows
        ],
    )


def missed(sections: list[Section]) -> list[Row]:
    return [r for s in sections for r in s.rows if r.met is False]


def machine_table(machine: dict[str, str], load: dict[str, Any]) -> str:
    rows = [[k, v] for k, v in machine.items()]
    rows.append(
        [
            "load average (1 min) at start / end",
            f"{load['start'][0]:.2f} / {load['end'][0]:.2f} "
            "(2 cores; other work on the machine shows here)",
        ]
    )
    return table(["", ""], rows)


def results_md(
    sections: list[Section],
    machine: dict[str, str],
    load: dict[str, Any],
    *,
    mode: str,
    seconds: float,
    findings: str,
) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "# wechat-token benchmarks",
        "",
        f"Written by `python -m bench{' --quick' if mode == 'quick' else ''}` ({mode} run) on "
        f"{when}, in {seconds / 60:.1f} min. Every ratio compares contenders measured in the "
        "same run on the same machine; > 1 favours ours. Nothing here talked to real AWS or "
        "WeChat: DynamoDB Local and the WeChat simulator ran on loopback.",
        "",
        "## Summary",
        "",
        summary_table(sections),
        "",
    ]
    miss = missed(sections)
    if miss:
        parts += [
            "**Targets missed:** " + "; ".join(r.measure for r in miss) + ". See *Findings*.",
            "",
        ]
    else:
        parts += ["Every target was met.", ""]
    parts += ["## Machine", "", machine_table(machine, load), "", "## Findings", "", findings, ""]
    for section in sections:
        parts += [f"## {section.title}", "", section.detail, "", f"*({section.seconds:.0f} s)*", ""]
    return "\n".join(parts)


def write_json(
    path: Path, sections: list[Section], machine: dict[str, str], load: dict[str, Any]
) -> None:
    data = {
        "machine": machine,
        "load": load,
        "sections": {
            s.title: {"rows": [r.__dict__ for r in s.rows], "data": s.data, "seconds": s.seconds}
            for s in sections
        },
    }
    path.write_text(json.dumps(data, indent=1, default=str) + "\n")


def performance_md(
    sections: list[Section],
    machine: dict[str, str],
    load: dict[str, Any],
    *,
    findings: str,
    docs_dir: Path,
    bench_dir: Path,
) -> str:
    rel = os.path.relpath(bench_dir, docs_dir)
    when = datetime.now(UTC).strftime("%Y-%m-%d")
    cpu = machine.get("CPU", "?")
    cores = machine.get("cores", "?").split(" ")[0]
    return "\n".join(
        [
            "# Performance",
            "",
            f"Measured by `make bench` (`python -m bench`) on {when}: {cpu}, {cores} cores, "
            f"{machine.get('Python', '')}. Every number, with its spread, is in "
            f"[`bench/results.md`]({rel}/results.md); the raw data in "
            f"[`bench/results.json`]({rel}/results.json). Ratios > 1 favour wechat-token.",
            "",
            summary_table(sections),
            "",
            "## Findings",
            "",
            findings,
            "",
            "## Refresh fan-out",
            "",
            "![Refresh fan-out: wall time, time per app and memory against the number of apps]"
            f"({rel}/fanout.png)",
            "",
            "## A simulated day",
            "",
            "Tokens as bars (hatched: replaced but still accepted during WeChat's 5-minute "
            "grace), refresh events, and which token each of three consumers used; the "
            "lower panels zoom into a scheduled rotation and into an incident where someone "
            "else fetched two tokens for the app.",
            "",
            f"![A simulated day of tokens, refreshes and consumers]({rel}/timeline.png)",
            "",
            "## Method",
            "",
            METHOD,
            "",
            f"Load average (1 min) was {load['start'][0]:.2f} at the start and "
            f"{load['end'][0]:.2f} at the end of this run, on {cores} cores.",
            "",
        ]
    )


METHOD = """\
Everything runs on one 2-core machine against local stand-ins: the real DynamoDB Local
(Java, in memory) and the project's WeChat simulator served over HTTP on 127.0.0.1, with
50 ms injected per WeChat request where the network matters (fan-out, storm). Each
comparison measures both contenders in the same run and interleaves them: micro-benchmarks
take one sample per contender per round (20 000 calls per sample, 100 rounds, order
shuffled every round, loop overhead subtracted, garbage collector paused, `perf_counter_ns`)
and report the median with the p10–p90 spread, and the spread of the per-round ratios; the
cold read takes 400 rounds of one DynamoDB read each. Import cost is timed inside 20 fresh
interpreters per contender (after warm-ups), with every `.pyc` present, and again as shipped
(our layer without `.pyc`). The fan-out runs the production-wired refresher (the wiring of
`tests/support.py`) for 1 to 1000 apps in a child process per configuration, so its peak
memory (VmHWM) is its own, on a simulated clock shared with the simulator. The storm starts
N consumer threads at a barrier; the cost model counts GetItem calls on a simulated clock
and prices them with stated assumptions. The machine is shared and noisy, so medians and
ratios are what to read; absolute times on Lambda will differ (a hit there reads a vDSO
clock; DynamoDB answers in single-digit milliseconds over the network rather than loopback
to a JVM)."""
