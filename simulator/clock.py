"""Clocks for the simulator.

The simulator reads time only through a :class:`Clock`, so a test can run a
simulated week in milliseconds with a :class:`ManualClock` while the demo and
the benchmarks use the :class:`SystemClock`.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol, runtime_checkable

__all__ = ["DEFAULT_START", "Clock", "ManualClock", "SystemClock"]

# 2023-11-14 22:13:20 UTC (06:13:20 in WeChat's UTC+8 day): a fixed, realistic epoch.
DEFAULT_START = 1_700_000_000.0


@runtime_checkable
class Clock(Protocol):
    """Anything that tells the time as epoch seconds."""

    def now(self) -> float:
        """Return the current time in seconds since the epoch."""
        ...


class SystemClock:
    """The real wall clock."""

    def now(self) -> float:
        """Return ``time.time()``."""
        return time.time()

    def __repr__(self) -> str:
        return "SystemClock()"


class ManualClock:
    """A clock that moves only when told to; safe to share between threads."""

    def __init__(self, start: float = DEFAULT_START) -> None:
        self._lock = threading.Lock()
        self._now = float(start)

    def now(self) -> float:
        """Return the current simulated time."""
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        """Move the clock forward by ``seconds`` (never backwards) and return the new time."""
        if seconds < 0:
            raise ValueError("a ManualClock only moves forward; use set() to jump back")
        with self._lock:
            self._now += float(seconds)
            return self._now

    def set(self, t: float) -> None:
        """Jump to the epoch time ``t`` (may move backwards, for tests that need it)."""
        with self._lock:
            self._now = float(t)

    def __repr__(self) -> str:
        return f"ManualClock({self.now()!r})"


class RunningClock:
    """Real time from ``start`` (so that real queues' timeouts and the simulated WeChat
    agree), which tests can also move ahead with ``advance``; safe to share."""

    def __init__(self, start: float = DEFAULT_START) -> None:
        self._lock = threading.Lock()
        self._origin = time.monotonic()
        self._start = float(start)

    def now(self) -> float:
        with self._lock:
            return self._start + time.monotonic() - self._origin

    def __call__(self) -> float:
        return self.now()

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("a RunningClock only moves forward")
        with self._lock:
            self._start += float(seconds)
        return self.now()

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))

    def __repr__(self) -> str:
        return f"RunningClock({self.now()!r})"
