"""python -m bench [--quick]: run every benchmark and write bench/results.md."""

from __future__ import annotations

import sys
from pathlib import Path

# A script, not a test: put the layer, the refresher and the repo root on the path here.
_REPO = Path(__file__).resolve().parent.parent
for _path in (_REPO, _REPO / "functions" / "refresher", _REPO / "layers" / "wechat_token"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

# The fan-out child (bench/fanout.py) measures its own memory: it imports only what it needs.
if len(sys.argv) > 2 and sys.argv[1] == "_fanout-child":
    import json

    from bench.fanout import child_main

    child_main(json.loads(sys.argv[2]))
    sys.exit(0)

# The peers and the plots are benchmark-only dependencies (requirements-dev.txt).
_missing = []
for _module, _pin in (("wechatpy", "wechatpy==1.8.18"), ("matplotlib", "matplotlib==3.11.2")):
    try:
        __import__(_module)
    except ImportError:
        _missing.append(_pin)
if _missing:
    sys.exit(
        f"bench needs {', '.join(_missing)}: add to requirements-dev.txt and run `make venv` "
        f"(or `pip install {' '.join(_missing)}`)."
    )

# ruff: noqa: E402 - the path set-up above must run before these imports
import argparse
import json
import os
import time

from bench import cost, fanout, imports, node, plots, reads, report, scale, size, storm, timeline
from bench.findings import findings
from bench.results import Section
from bench.stats import machine
from bench.world import backend, make_env_safe, quiet_logs
from simulator import SimulatorServer, WeChatSimulator

SECTIONS = (
    "warm",
    "cold",
    "imports",
    "size",
    "fanout",
    "storm",
    "cost",
    "timeline",
    "node",
    "scale",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a fast smoke run (~2 min)")
    parser.add_argument(
        "--only", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where results.md and the plots go (default: bench/ for a full run of every "
        "section, else bench/quick/)",
    )
    parser.add_argument(
        "--scale-max",
        type=int,
        default=scale.TARGET_APPS,
        help="the largest fan-out the scale section runs (1000, 10000 or 100000; default "
        "100000; beyond 10000 moto's SQS, slower with every queued message, takes hours here)",
    )
    args = parser.parse_args(argv)
    only = {name.strip() for name in args.only.split(",") if name.strip()}
    unknown = only - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s): {', '.join(sorted(unknown))}")
    bench_dir = Path(__file__).resolve().parent
    complete = not args.quick and only == set(SECTIONS)
    out = args.out or (bench_dir if complete else bench_dir / "quick")
    out.mkdir(parents=True, exist_ok=True)
    mode = "quick" if args.quick else "full"

    make_env_safe()
    quiet_logs()
    began = time.perf_counter()
    load = {"start": os.getloadavg()}
    sections: list[Section] = []
    day = None
    day_seconds = 0.0

    def run(name: str, fn: object, *a: object, **kw: object) -> None:
        if name not in only:
            return
        print(f"[{time.perf_counter() - began:5.0f} s] {name}", flush=True)
        result = fn(*a, **kw)  # type: ignore[operator]
        if isinstance(result, Section):
            sections.append(result)
            for row in result.rows:
                print(
                    f"    {row.measure}: {row.ours} | {row.peer} | {row.ratio} | met: {row.verdict}"
                )

    with backend() as be:
        make_env_safe(be.endpoint_url)
        sim = WeChatSimulator(seed=1)
        app = "wxreads00000"
        sim.add_app(app, "secret-of-" + app)
        with SimulatorServer(sim) as server:
            wanted = only & {"warm", "cold", "node"}
            fixture = reads.Fixture(be, server.base_url, app) if wanted else None
            run("warm", reads.warm, fixture, quick=args.quick)
            run("cold", reads.cold, fixture, quick=args.quick)
            run("node", node.measure, fixture, quick=args.quick)
            if fixture is not None:
                fixture.close()
        run("imports", imports.measure, quick=args.quick)
        run("size", size.measure)
        run("fanout", fanout.measure, be, quick=args.quick)
        run("storm", storm.measure, be, quick=args.quick)
        run("cost", cost.measure, be, quick=args.quick)
        # Its plot and JSON go to bench/ (bench/quick/ for --quick), whatever --only says.
        scale_out = out if args.quick else (args.out or bench_dir)
        run("scale", scale.measure, be, quick=args.quick, scale_max=args.scale_max, out=scale_out)
        if "timeline" in only:
            print(f"[{time.perf_counter() - began:5.0f} s] timeline", flush=True)
            day_began = time.perf_counter()
            day = timeline.simulate(be, hours=6 if args.quick else 24)
            day_seconds = time.perf_counter() - day_began

    fan = next((s for s in sections if s.title.startswith("5.")), None)
    if fan is not None:
        plots.fanout(fan.data["runs"], out / "fanout.png")
    if day is not None:
        plots.timeline(day, out / "timeline.png")
        day_section = timeline.section(day)
        day_section.seconds = day_seconds
        sections.append(day_section)
    load["end"] = os.getloadavg()
    seconds = time.perf_counter() - began
    info = machine()
    info["DynamoDB"] = be.name
    text = findings(sections)
    (out / "results.md").write_text(
        report.results_md(sections, info, load, mode=mode, seconds=seconds, findings=text)
    )
    report.write_json(out / "results.json", sections, info, load)
    if complete and out == bench_dir:
        docs = bench_dir.parent / "docs"
        docs.mkdir(exist_ok=True)
        (docs / "performance.md").write_text(
            report.performance_md(sections, info, load, findings=text, docs_dir=docs, bench_dir=out)
        )
    print(f"\nwrote {out / 'results.md'} in {seconds / 60:.1f} min")
    missed = report.missed(sections)
    for row in missed:
        print(f"  target missed: {row.measure}: {row.ratio} (target {row.target})")
    print(json.dumps({"missed": len(missed), "sections": len(sections)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
