"""WeChat's per-minute frequency limits (errcode 45011) for the simulator.

``docs/wechat-token-facts.md`` §5 lists 45011, "per-minute quota reached", as
retryable later, without numbers for most APIs. A :class:`MinuteLimiter` lets a
scenario set them and prove that a client stays under them. Three scopes, each a
**sliding 60-second window** on the simulator's clock (a call is refused when the
scope already admitted ``limit`` calls in the last 60 s, i.e. at times
``t > now - 60``):

``per_app``
    each account endpoint (classic, stable, WeCom, tickets) per appid: the corpid
    for WeCom, the token's owner for ticket calls. A path key (e.g.
    ``"/cgi-bin/token"``) overrides it for that endpoint, and is the way to limit a
    component endpoint per platform (``"/cgi-bin/component/api_authorizer_token"``).
``per_component``
    every call of one third-party platform on the component endpoints together,
    keyed by its ``component_appid`` (from the body, else the token's owner).
``global``
    every call to a token, ticket or component endpoint: WeChat sees a deployment
    by its egress IP; the simulator has one client, so one global ceiling.

Values are positive integers or None (off; a path key set to None exempts that
endpoint from ``per_app``). Only admitted calls fill a window, so a refused call
costs nothing and a client gets through again once its oldest admitted call is
60 s old. Pure bookkeeping, not thread-safe: the simulator's lock guards it.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "GLOBAL",
    "MINUTE_LIMIT_SCOPES",
    "MINUTE_QUOTA_ERRCODE",
    "MINUTE_QUOTA_ERRMSG",
    "PER_APP",
    "PER_COMPONENT",
    "WINDOW_SECONDS",
    "MinuteLimiter",
    "peak_count",
]

MINUTE_QUOTA_ERRCODE = 45011
# The facts page gives no wording; this is the one WeChat is quoted with. " rid: ..." follows.
MINUTE_QUOTA_ERRMSG = "api minute-quota reach limit mustslower retry next minute"
WINDOW_SECONDS = 60.0
PER_APP = "per_app"
PER_COMPONENT = "per_component"
GLOBAL = "global"
MINUTE_LIMIT_SCOPES = (PER_APP, PER_COMPONENT, GLOBAL)

_Key = tuple[str, ...]


class MinuteLimiter:
    """Sliding-window counters for the three scopes, and what they refused."""

    def __init__(
        self,
        account_paths: Iterable[str],
        component_paths: Iterable[str],
        limits: Mapping[str, int | None] | None = None,
    ) -> None:
        self._account = frozenset(account_paths)
        self._component = frozenset(component_paths)
        self.paths = self._account | self._component
        self._limits: dict[str, int | None] = {}
        self._windows: dict[_Key, deque[float]] = {}
        self._swept = -math.inf
        self.rejected: Counter[str] = Counter()
        self.rejected_appids: Counter[str] = Counter()
        self.rejected_components: Counter[str] = Counter()
        self.configure(limits)

    @property
    def limits(self) -> dict[str, int | None]:
        """A copy of the limits set (keys with None included)."""
        return dict(self._limits)

    @property
    def active(self) -> bool:
        """Whether any limit is on."""
        return any(v is not None for v in self._limits.values())

    def configure(self, limits: Mapping[str, int | None] | None) -> None:
        """Replace every limit (None or ``{}``: all off) and start empty windows."""
        new: dict[str, int | None] = {}
        for key, value in (limits or {}).items():
            if key not in MINUTE_LIMIT_SCOPES and key not in self.paths:
                raise ValueError(
                    f"unknown minute limit {key!r}: use {', '.join(MINUTE_LIMIT_SCOPES)} "
                    "or a token, ticket or component endpoint path"
                )
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ValueError(f"minute limit {key!r} must be a positive integer or None")
            new[key] = value
        self._limits = new
        self._windows.clear()
        self._swept = -math.inf

    def applies(self, path: str) -> bool:
        """Whether calls to ``path`` are limited right now."""
        return path in self.paths and self.active

    def admit(self, now: float, path: str, appid: str | None) -> str | None:
        """Count a call to ``path`` for ``appid`` (None: unknown) at ``now``; return
        None when admitted, else the scope that refused it (the call is not counted)."""
        limits = self._limits
        scopes: list[tuple[str, _Key, int]] = []
        if appid is not None:
            default = limits.get(PER_APP) if path in self._account else None
            per_endpoint = limits.get(path, default)
            if per_endpoint is not None:
                scopes.append((PER_APP, (PER_APP, path, appid), per_endpoint))
            per_component = limits.get(PER_COMPONENT)
            if per_component is not None and path in self._component:
                scopes.append((PER_COMPONENT, (PER_COMPONENT, appid), per_component))
        ceiling = limits.get(GLOBAL)
        if ceiling is not None:
            scopes.append((GLOBAL, (GLOBAL,), ceiling))
        self._sweep(now)
        horizon = now - WINDOW_SECONDS
        windows: list[deque[float]] = []
        for scope, key, limit in scopes:
            window = self._windows.get(key)
            if window is None:
                window = self._windows[key] = deque()
            while window and window[0] <= horizon:
                window.popleft()
            if len(window) >= limit:
                self.rejected[scope] += 1
                if appid is not None:
                    self.rejected_appids[appid] += 1
                    if path in self._component:
                        self.rejected_components[appid] += 1
                return scope
            windows.append(window)
        for window in windows:
            window.append(now)
        return None

    def stats(self) -> dict[str, Any]:
        """The rejections: total, per scope, per appid (any scope) and per platform
        (calls on component endpoints)."""
        return {
            "total": sum(self.rejected.values()),
            "by_scope": {scope: self.rejected[scope] for scope in MINUTE_LIMIT_SCOPES},
            "by_appid": dict(self.rejected_appids),
            "by_component": dict(self.rejected_components),
        }

    def _sweep(self, now: float) -> None:
        """Forget idle windows once a minute, so 100 000 credentials cost nothing between
        their calls."""
        if now - self._swept < WINDOW_SECONDS:
            return
        self._swept = now
        horizon = now - WINDOW_SECONDS
        for key in [k for k, w in self._windows.items() if not w or w[-1] <= horizon]:
            del self._windows[key]


def peak_count(times: Iterable[float], window: float) -> int:
    """The most events whose times fit in a span shorter than ``window`` seconds (the
    same rule as the limiter's: an event at ``t - window`` is outside the window)."""
    if window <= 0:
        raise ValueError("window must be positive")
    ordered = sorted(times)
    best = start = 0
    for end, t in enumerate(ordered):
        while ordered[start] <= t - window:
            start += 1
        best = max(best, end - start + 1)
    return best
