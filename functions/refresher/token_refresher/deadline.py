"""One deadline per invocation: every probe, lease wait, WeChat attempt and backoff pause
is measured against it, so a run stops starting work it cannot finish."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

# Kept back from the Lambda's remaining time for writing results and returning.
SAFETY_SECONDS = 3.0
# When no Lambda context tells the remaining time (local runs, tests): Lambda's maximum.
DEFAULT_BUDGET_SECONDS = 900.0


@dataclass(frozen=True, slots=True)
class Deadline:
    """The invocation's remaining time and identity.

    ``remaining`` reads the Lambda context (``get_remaining_time_in_millis``) where there is
    one; ``clock`` is the wall clock records are compared with.
    """

    remaining_seconds: Callable[[], float]
    clock: Callable[[], float] = time.time
    invocation_id: str = "local"
    lease_seconds: float = 90.0

    @classmethod
    def of_context(
        cls, context: object, *, clock: Callable[[], float] = time.time, lease_seconds: float = 90.0
    ) -> Deadline:
        remaining = getattr(context, "get_remaining_time_in_millis", None)
        invocation_id = str(getattr(context, "aws_request_id", "local"))
        if callable(remaining):
            return cls(
                lambda: float(remaining()) / 1000.0,
                clock=clock,
                invocation_id=invocation_id,
                lease_seconds=lease_seconds,
            )
        return cls.starting_now(
            DEFAULT_BUDGET_SECONDS,
            clock=clock,
            invocation_id=invocation_id,
            lease_seconds=lease_seconds,
        )

    @classmethod
    def starting_now(
        cls,
        budget_seconds: float = DEFAULT_BUDGET_SECONDS,
        *,
        clock: Callable[[], float] = time.time,
        invocation_id: str = "local",
        lease_seconds: float = 90.0,
    ) -> Deadline:
        started = time.monotonic()
        return cls(
            lambda: budget_seconds - (time.monotonic() - started),
            clock=clock,
            invocation_id=invocation_id,
            lease_seconds=lease_seconds,
        )

    def now(self) -> float:
        return self.clock()

    def left(self) -> float:
        """Seconds of the invocation still usable for work."""
        return self.remaining_seconds() - SAFETY_SECONDS

    def fits(self, seconds: float) -> bool:
        return self.left() >= seconds

    def lease_owner(self) -> str:
        return f"{self.invocation_id}:{uuid.uuid4().hex[:12]}"

    def lease_until(self) -> float:
        return self.now() + self.lease_seconds


@dataclass(slots=True)
class Stopwatch:
    """Milliseconds since it was made (per-credential durations)."""

    started: float = field(default_factory=time.monotonic)

    def ms(self) -> int:
        return round((time.monotonic() - self.started) * 1000)
