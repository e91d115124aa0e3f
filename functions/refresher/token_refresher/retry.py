"""Bounded retries: exponential backoff with full jitter, never past a deadline."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from .errors import DeadlineError, RefreshError

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 8.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Full jitter (AWS architecture blog): uniform in [0, min(cap, base * 2**attempt)]."""
        return rng.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))


def call_with_retries(
    attempt: Callable[[], T],
    *,
    policy: RetryPolicy,
    time_left: Callable[[], float],
    attempt_cost: float,
    sleep: Callable[[float], None],
    rng: random.Random,
    on_retry: Callable[[int, RefreshError, float], None] | None = None,
) -> T:
    """Run ``attempt`` until it succeeds, fails for good, or the deadline is near.

    Only errors marked ``retryable`` (WeChat's -1, network errors, timeouts, 5xx) are
    retried. An attempt only starts if ``attempt_cost`` seconds (the HTTP timeout) are
    left, so that it always finishes before the Lambda times out or the lease ends.
    """
    if time_left() < attempt_cost:
        raise DeadlineError(
            "No time left to call WeChat within this invocation and lease; nothing was changed"
        )
    for number in range(policy.max_attempts):
        try:
            return attempt()
        except RefreshError as exc:
            if not exc.retryable or number + 1 >= policy.max_attempts:
                raise
            pause = policy.delay(number, rng)
            if time_left() < pause + attempt_cost:
                raise
            if on_retry is not None:
                on_retry(number + 1, exc, pause)
            sleep(pause)
    raise AssertionError("unreachable")  # pragma: no cover
