"""The due index: where each credential is filed, so that the planner finds what is due with
a query instead of reading every record.

``due-index`` is a sparse global secondary index of the token table: partition ``due_shard``
(a lane and a shard number, ``main#3``), sort ``due_at`` (epoch seconds), projecting the
keys and ``expires_at``. Every refresher write of a credential sets both attributes
(``Due``): its renewal point after a success, its retry after a failure, the end of a
configuration hold; a revoked authorizer is taken out of the index.

Lanes follow the schedules: ``stable`` (stable apps, planned every minute in WeChat's
overlap window), ``platform`` (component and authorizer tokens), ``main`` (classic and
WeCom apps and their tickets). A lane is split over ``shards`` partitions by a hash of the
``app_id``, so that no partition of the index takes every write of a large deployment.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass

from wechat_token.record import CredentialKey

from .registry import AUTHORIZER, COMPONENT, STABLE

MAIN = "main"
STABLE_LANE = "stable"
PLATFORM = "platform"
LANES = (MAIN, STABLE_LANE, PLATFORM)


def lane_of(app_type: str) -> str:
    if app_type == STABLE:
        return STABLE_LANE
    if app_type in (COMPONENT, AUTHORIZER):
        return PLATFORM
    return MAIN


def lanes_of(types: Iterable[str]) -> tuple[str, ...]:
    """The lanes a schedule's ``types`` plan (every lane when it names none). A component
    type plans the platform lane: its token and its authorizers."""
    wanted = {lane_of(t) for t in types}
    return tuple(lane for lane in LANES if lane in wanted) if wanted else LANES


@dataclass(frozen=True, slots=True)
class Due:
    """A credential's entry in the due index."""

    shard: str
    at: float

    def attributes(self) -> dict[str, str | float]:
        return {"due_shard": self.shard, "due_at": self.at}


@dataclass(frozen=True, slots=True)
class DueEntry:
    """One answer of a due-index query: the credential, when it is due, its stored expiry,
    and when its endpoint will hand out a new value (None: whenever asked)."""

    key: CredentialKey
    due_at: float
    expires_at: float | None
    renewable_at: float | None = None


class DueIndex:
    """Assigns credentials to the index's partitions."""

    def __init__(self, shards: int = 4) -> None:
        if shards < 1:
            raise ValueError("the due index needs at least one shard")
        self.shards = shards

    def shard_of(self, app_id: str, app_type: str) -> str:
        number = zlib.crc32(app_id.encode()) % self.shards
        return f"{lane_of(app_type)}#{number}"

    def due(self, app_id: str, app_type: str, at: float) -> Due:
        return Due(self.shard_of(app_id, app_type), at)

    def partitions(self, lanes: Iterable[str]) -> list[str]:
        return [f"{lane}#{number}" for lane in lanes for number in range(self.shards)]
