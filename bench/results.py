"""What each benchmark hands back: rows for the summary table and a markdown section."""

# ruff: noqa: RUF001, RUF003 - the report is typeset: × – ÷ ≈ are meant

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Row:
    """One line of the summary table. ``ratio`` is written so that > 1 favours ours."""

    measure: str
    ours: str
    peer: str
    ratio: str
    target: str
    met: bool | None  # None: informational, no target
    note: str = ""

    @property
    def verdict(self) -> str:
        return {True: "yes", False: "**NO**", None: "n/a"}[self.met]


@dataclass
class Section:
    title: str
    rows: list[Row] = field(default_factory=list)
    detail: str = ""  # markdown, without the heading
    data: dict[str, Any] = field(default_factory=dict)  # raw numbers for results.json
    seconds: float = 0.0


def ns(value: float) -> str:
    """A duration in nanoseconds, in a unit a person reads at a glance."""
    if value != value:  # NaN
        return "n/a"
    if abs(value) < 10_000:
        return f"{value:.0f} ns"
    if abs(value) < 1_000_000:
        return f"{value / 1000:.1f} µs"
    if abs(value) < 10_000_000_000:
        return f"{value / 1e6:.2f} ms"
    return f"{value / 1e9:.2f} s"


def ms(value_ns: float) -> str:
    if abs(value_ns) >= 10_000_000_000:
        return f"{value_ns / 1e9:.2f} s"
    return f"{value_ns / 1e6:.1f} ms" if abs(value_ns) >= 100e6 else f"{value_ns / 1e6:.2f} ms"


def x(value: float) -> str:
    return f"{value:.2f}×"


def mib(value_bytes: float) -> str:
    return f"{value_bytes / 1024 / 1024:.1f} MiB"


def kib(value_bytes: float) -> str:
    return f"{value_bytes / 1024:.1f} KiB"


def table(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
