"""Statistics over repeated timings, and a description of the machine they ran on."""

# ruff: noqa: RUF001, RUF002, RUF003 - the report is typeset: × – ÷ ≈ are meant

from __future__ import annotations

import gc
import importlib.metadata
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Summary:
    """Median and spread of one series of samples."""

    median: float
    p10: float
    p90: float
    minimum: float
    maximum: float
    n: int

    def spread(self, fmt: Callable[[float], str]) -> str:
        """``p10–p90`` as text, in the same unit as the median."""
        return f"{fmt(self.p10)}–{fmt(self.p90)}"


def quantile(samples: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) with linear interpolation; NaN for no samples."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    pos = (len(ordered) - 1) * q
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def summarize(samples: Sequence[float]) -> Summary:
    return Summary(
        median=statistics.median(samples) if samples else float("nan"),
        p10=quantile(samples, 0.10),
        p90=quantile(samples, 0.90),
        minimum=min(samples, default=float("nan")),
        maximum=max(samples, default=float("nan")),
        n=len(samples),
    )


@contextmanager
def gc_paused() -> Iterator[None]:
    """No garbage collection inside a timed loop (as ``timeit`` does)."""
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def interleaved(
    loops: Mapping[str, Callable[[int], None]],
    *,
    calls: int,
    rounds: int,
    warmup_rounds: int = 3,
    seed: int = 0,
) -> dict[str, list[float]]:
    """Nanoseconds per call for each loop, one sample per loop per round.

    Each round runs every loop once (``calls`` calls each) in a shuffled order, so slow
    phases of a noisy machine hit every contender alike. A loop named ``"empty"`` is the
    loop overhead; it is subtracted from the others' samples of the same round.
    """
    rng = random.Random(seed)
    names = list(loops)
    samples: dict[str, list[float]] = {name: [] for name in names}
    with gc_paused():
        for number in range(warmup_rounds + rounds):
            order = names[:]
            rng.shuffle(order)
            took: dict[str, float] = {}
            for name in order:
                loop = loops[name]
                start = time.perf_counter_ns()
                loop(calls)
                took[name] = (time.perf_counter_ns() - start) / calls
            if number < warmup_rounds:
                continue
            overhead = took.get("empty", 0.0)
            for name in names:
                samples[name].append(took[name] if name == "empty" else took[name] - overhead)
    return samples


def per_round_ratios(numerator: Sequence[float], denominator: Sequence[float]) -> list[float]:
    """numerator[i] / denominator[i] for every round where both are positive."""
    return [n / d for n, d in zip(numerator, denominator, strict=True) if n > 0 and d > 0]


# --- the machine ----------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _java() -> str:
    try:
        out = subprocess.run(
            ["java", "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "not found"
    first = (out.stderr or out.stdout).strip().splitlines()
    return first[0] if first else "unknown"


def machine() -> dict[str, str]:
    """What a reader needs to compare these numbers with theirs."""
    cores = os.cpu_count() or 0
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = cores
    return {
        "CPU": _cpu_model(),
        "cores": f"{cores} ({usable} usable by this process)",
        "memory": _mem_total(),
        "OS": f"{platform.system()} {platform.release()}",
        "Python": f"{platform.python_implementation()} {sys.version.split()[0]}",
        "boto3 / botocore": f"{_version('boto3')} / {_version('botocore')}",
        "aws-lambda-powertools": _version("aws-lambda-powertools"),
        "wechatpy": _version("wechatpy"),
        "httpx": _version("httpx"),
        "Java (DynamoDB Local)": _java(),
    }
