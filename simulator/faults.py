"""Fault injection: what can go wrong between a client and WeChat.

A :class:`Fault` is scoped to an endpoint path and/or an appid (or corpid),
and lasts for the next ``count`` matching requests or, with ``count=None``,
until cleared. A request that hits a fault other than ``latency`` never
reaches the token logic, so it issues nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal, cast, get_args

__all__ = ["FAULT_KINDS", "Fault", "FaultKind", "GarbleKind", "parse_fault_spec"]

FaultKind = Literal["latency", "timeout", "http_status", "errcode", "garbled"]
GarbleKind = Literal["truncated", "html"]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)
_GARBLE_KINDS: tuple[str, ...] = get_args(GarbleKind)


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "kind": str,
    "endpoint": str,
    "appid": str,
    "count": int,
    "seconds": float,
    "hang_seconds": float,
    "status": int,
    "errcode": int,
    "errmsg": str,
    "garble": str,
}


@dataclass
class Fault:
    """One injected failure.

    - ``latency``: sleep ``seconds`` (real time), then answer normally.
    - ``timeout``: hang ``hang_seconds`` (real time, interrupted when the server
      stops), then answer HTTP 504; the in-process transport raises
      ``httpx.ReadTimeout`` at once instead.
    - ``http_status``: answer ``status`` (default 502) with an HTML body.
    - ``errcode``: answer HTTP 200 ``{"errcode": errcode, "errmsg": errmsg}``.
    - ``garbled``: answer HTTP 200 with a body that is not valid JSON:
      ``truncated`` JSON or an ``html`` page.
    """

    kind: FaultKind
    endpoint: str | None = None
    appid: str | None = None
    count: int | None = None
    seconds: float = 0.0
    hang_seconds: float = 30.0
    status: int = 502
    errcode: int = -1
    errmsg: str = "system error"
    garble: GarbleKind = "truncated"
    triggered: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {FAULT_KINDS}")
        if self.count is not None and self.count < 1:
            raise ValueError("a fault's count must be at least 1 (or None for 'until cleared')")
        if self.garble not in _GARBLE_KINDS:
            raise ValueError(f"garble must be one of {_GARBLE_KINDS}")
        if self.seconds < 0 or self.hang_seconds < 0:
            raise ValueError("fault durations cannot be negative")
        if not 100 <= self.status <= 599:
            raise ValueError("status must be an HTTP status code")

    def matches(self, endpoint: str, appid: str | None) -> bool:
        """Whether a request to ``endpoint`` for ``appid`` is in this fault's scope."""
        if self.endpoint is not None and self.endpoint != endpoint:
            return False
        return self.appid is None or self.appid == appid

    def consume(self) -> bool:
        """Count one triggering; return True when the fault is used up."""
        self.triggered += 1
        if self.count is None:
            return False
        self.count -= 1
        return self.count <= 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description (the form :meth:`from_dict` accepts)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Fault:
        """Build a fault from JSON-ish data; string values are converted."""
        unknown = set(data) - set(_CONVERTERS) - {"triggered"}
        if unknown:
            raise ValueError(f"unknown fault option(s): {sorted(unknown)}")
        if "kind" not in data:
            raise ValueError("a fault needs a 'kind'")
        values: dict[str, Any] = {}
        for name, convert in _CONVERTERS.items():
            if name not in data:
                continue
            raw = data[name]
            if raw is None and name in {"endpoint", "appid", "count"}:
                values[name] = None
                continue
            try:
                values[name] = convert(raw)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"fault option {name!r} has a bad value") from exc
        kind = cast(FaultKind, values.pop("kind"))
        garble = cast(GarbleKind, values.pop("garble", "truncated"))
        return cls(kind=kind, garble=garble, **values)


def parse_fault_spec(spec: str) -> Fault:
    """Parse a command-line fault.

    Either JSON (``{"kind": "errcode", "errcode": -1, "count": 3}``) or
    ``KIND[:key=value,key=value...]``, e.g. ``errcode:errcode=-1,count=3`` or
    ``latency:seconds=0.2,endpoint=/cgi-bin/token`` or ``garbled:garble=html``.
    """
    text = spec.strip()
    if text.startswith("{"):
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("a JSON fault must be an object")
        return Fault.from_dict(data)
    kind, _, rest = text.partition(":")
    options: dict[str, Any] = {"kind": kind.strip()}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"fault option {key!r} needs a value (key=value)")
        options[key.strip()] = value.strip()
    return Fault.from_dict(options)
