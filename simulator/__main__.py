"""Run the simulator as a server: ``python -m simulator --port 8900 --app wx1:secret``.

Prints one line, ``simulator listening on http://127.0.0.1:PORT``, then serves
until SIGINT or SIGTERM. Secrets given on the command line are never printed.
``python -m simulator authorize|unauthorize|deliver|pushes ...`` acts on a running
simulator's third-party platforms instead (see :mod:`simulator.platform_cli`).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType

from simulator.clock import Clock, ManualClock, SystemClock
from simulator.faults import parse_fault_spec
from simulator.platform_cli import COMMANDS as PLATFORM_COMMANDS
from simulator.platform_cli import main as platform_main
from simulator.server import SimulatorServer
from simulator.wechat import WeChatSimulator


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m simulator",
        description="A local simulator of WeChat's token APIs (loopback only).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port; 0 picks a free one (default)")
    parser.add_argument(
        "--app", action="append", default=[], metavar="APPID:SECRET", help="register an app"
    )
    parser.add_argument(
        "--wecom",
        action="append",
        default=[],
        metavar="CORPID:AGENTID:SECRET",
        help="register a WeCom application",
    )
    parser.add_argument(
        "--component",
        action="append",
        default=[],
        metavar="APPID:SECRET:TOKEN:AESKEY[:CALLBACK_URL]",
        help="register a third-party platform (its pushes go to CALLBACK_URL)",
    )
    parser.add_argument(
        "--push-every",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="deliver due platform pushes every SECONDS of real time (default: only on request)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for server choice and tokens")
    parser.add_argument("--servers", type=int, default=3, help="simulated WeChat servers")
    parser.add_argument("--skew", type=float, default=90.0, help="max clock skew in seconds")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to each request")
    parser.add_argument("--daily-quota", type=int, default=2000, help="classic fetches per day")
    parser.add_argument(
        "--minute-limit",
        action="append",
        default=[],
        metavar="SCOPE=N",
        help="per-minute limit (45011): per_app, per_component, global or an endpoint path",
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="SPEC",
        help="KIND[:key=value,...] or JSON, e.g. errcode:errcode=-1,count=3",
    )
    parser.add_argument(
        "--manual-clock",
        action="store_true",
        help="freeze time; move it with POST /_sim/clock/advance",
    )
    parser.add_argument(
        "--start-time", type=float, default=None, help="manual clock start (epoch seconds)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, serve until a signal, return the exit status."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments and arguments[0] in PLATFORM_COMMANDS:
        return platform_main(arguments)
    parser = _parser()
    args = parser.parse_args(arguments)
    clock: Clock = (
        ManualClock(time.time() if args.start_time is None else args.start_time)
        if args.manual_clock
        else SystemClock()
    )
    try:
        sim = WeChatSimulator(
            clock,
            servers=args.servers,
            skew_seconds=args.skew,
            seed=args.seed,
            daily_quota=args.daily_quota,
            latency=args.latency,
            minute_limits=_minute_limits(args.minute_limit, parser),
        )
    except ValueError as exc:
        parser.error(str(exc))
    # Parsed by hand: argparse would echo a bad value, and these hold secrets.
    for spec in args.app:
        appid, sep, secret = spec.partition(":")
        if not (sep and appid and secret):
            parser.error("--app expects APPID:SECRET")
        sim.add_app(appid, secret)
    for spec in args.wecom:
        parts = spec.split(":", 2)
        if len(parts) != 3 or not all(parts):
            parser.error("--wecom expects CORPID:AGENTID:SECRET")
        sim.add_wecom_app(*parts)
    _add_components(sim, args.component, parser)
    if args.push_every < 0:
        parser.error("--push-every cannot be negative")
    for spec in args.fault:
        try:
            sim.add_fault(parse_fault_spec(spec))
        except ValueError as exc:
            parser.error(f"--fault: {exc}")

    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        server = SimulatorServer(sim, args.host, args.port).start()
    except (OSError, ValueError) as exc:
        print(f"simulator: cannot listen: {exc}", file=sys.stderr)
        return 1
    if args.push_every > 0:
        threading.Thread(
            target=_deliver_pushes,
            args=(sim, args.push_every, stop),
            name="wechat-simulator-pushes",
            daemon=True,
        ).start()
    try:
        print(f"simulator listening on {server.base_url}", flush=True)
        while not stop.wait(0.2):
            pass
    finally:
        server.stop()
    return 0


def _minute_limits(specs: Sequence[str], parser: argparse.ArgumentParser) -> dict[str, int]:
    """``SCOPE=N`` specs as a mapping (the simulator checks the scopes)."""
    limits: dict[str, int] = {}
    for spec in specs:
        scope, _, value = spec.partition("=")
        try:
            limits[scope.strip()] = int(value)  # int("") fails too: no "="
        except ValueError:
            parser.error(f"--minute-limit expects SCOPE=N, not {spec!r}")
    return limits


def _add_components(
    sim: WeChatSimulator, specs: Sequence[str], parser: argparse.ArgumentParser
) -> None:
    """Register each ``APPID:SECRET:TOKEN:AESKEY[:CALLBACK_URL]`` (parsed by hand: argparse
    would echo a bad value, and these hold secrets)."""
    for spec in specs:
        parts = spec.split(":", 4)
        if len(parts) < 4 or not all(parts):
            parser.error("--component expects APPID:SECRET:TOKEN:AESKEY[:CALLBACK_URL]")
        appid, secret, token, aes_key = parts[:4]
        url = parts[4] if len(parts) == 5 else None
        try:
            sim.platform.add_component(appid, secret, token, aes_key, url)
        except ValueError as exc:  # the messages name the field, never its value
            parser.error(f"--component: {exc}")


def _deliver_pushes(sim: WeChatSimulator, every: float, stop: threading.Event) -> None:
    """Deliver due platform pushes until ``stop`` is set."""
    while not stop.wait(every):
        try:
            sim.platform.deliver_due_pushes()
        except Exception as exc:  # keep serving; say only what failed
            print(f"simulator: push delivery failed: {type(exc).__name__}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
