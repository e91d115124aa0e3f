"""A ceiling on WeChat token-endpoint calls per second, shared by every worker.

WeChat answers 45011 ("minute quota") when an app or a platform calls too often; a fan-out
over thousands of credentials would trip it. Every token-endpoint call first takes a permit
from each of its scopes (the deployment; for a third-party platform also its component).

The permits of one second are a counter item in the token table (``rate#<scope>``, sort key
the epoch second, deleted by TTL), taken by one conditional ``ADD``: it never passes the
ceiling, whatever the number of workers. A worker takes them in small chunks
(``chunk``) and spends them locally within the same second, so that a refresh costs a
fraction of a write; a chunk's unspent permits lapse with their second (the ceiling is
never exceeded, the throughput can fall a little short of it). When a second's permits
are gone the caller waits for the next second (with jitter), bounded by its time left.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .errors import RateCeilingError
from .token_store import TokenStore

logger = logging.getLogger("wechat_token.refresher")

DEPLOYMENT = "deployment"
# A call waits at most this long for a permit (then it is not made: the next run retries).
MAX_WAIT_SECONDS = 60.0


def component_scope(component_appid: str) -> str:
    return f"component:{component_appid}"


@dataclass(frozen=True, slots=True)
class Limits:
    """Calls per second: for the deployment, and for each component's platform calls."""

    per_second: float
    per_component_per_second: float

    def of(self, scope: str) -> int:
        rate = self.per_second if scope == DEPLOYMENT else self.per_component_per_second
        return max(1, math.floor(rate))


class CallRateLimiter:
    """Blocks each WeChat call until every scope it belongs to has a permit this second."""

    def __init__(
        self,
        store: TokenStore,
        limits: Limits,
        *,
        chunk: int = 4,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._store = store
        self._limits = limits
        self._chunk = chunk
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        # (scope, second) -> permits taken from the shared counter and not spent yet
        self._local: dict[tuple[str, int], int] = {}
        self.waits = 0  # seconds waited for (a benchmark figure)

    def take(self, scopes: Sequence[str], *, time_left: Callable[[], float]) -> None:
        """One permit in each of ``scopes`` within one second; raises ``BusyError`` when
        none can be had within ``time_left()`` (the call is then not made)."""
        waited = 0.0
        while True:
            second = math.floor(self._clock())
            if all(self._take_one(scope, second) for scope in scopes):
                return
            pause = max(0.05, second + 1 - self._clock()) + self._rng.uniform(0.0, 0.25)
            waited += pause
            if time_left() < pause + 1.0 or waited > MAX_WAIT_SECONDS:
                raise RateCeilingError(
                    "the deployment's WeChat call-rate ceiling (WECHAT_CALLS_PER_SECOND, "
                    "COMPONENT_CALLS_PER_SECOND) left no permit within this run's time; "
                    "the call was not made and the next run tries again"
                )
            self.waits += 1
            self._sleep(pause)

    def _take_one(self, scope: str, second: int) -> bool:
        with self._lock:
            for key in [k for k in self._local if k[1] < second]:
                del self._local[key]  # lapsed with their second
            left = self._local.get((scope, second), 0)
            if left > 0:
                self._local[(scope, second)] = left - 1
                return True
        limit = self._limits.of(scope)
        for count in dict.fromkeys((min(self._chunk, limit), 1)):
            if self._store.take_permits(scope, second, count, limit):
                with self._lock:
                    self._local[(scope, second)] = self._local.get((scope, second), 0) + count - 1
                return True
        return False
