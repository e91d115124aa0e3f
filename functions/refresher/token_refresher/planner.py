"""The scheduled run's plan: which credentials workers must look at now, found without
reading every record, and sent to the work queue one message per app.

Per lane (``due.LANES``) the planner keeps a small state item (``planner#<lane>``):
- **the due index** is queried for entries due in ``(planned_until, now]``: each renewal
  point is planned once, by the first run that reaches it (a failure files its retry
  ahead of every run that has already planned, so it is planned again);
- **registry shards** whose digest changed since the last plan (new apps, a first run)
  send every app of that shard: a new app has no record, hence no index entry, yet;
- **stragglers**, entries due more than ``STRAGGLER_SECONDS`` ago and still not renewed
  (a lost message, a dead-lettered one), are planned again at most hourly;
- **the daily sweep** walks every registered app and every authorizer (by the component
  index), at most ``sweep_per_run`` per run, so that a credential whose index entry was
  lost is still found; a worker puts its entry right.
Duplicates are harmless (each credential's lease, fence and policy decide), so the state
is written after the messages are sent: a planner that dies in between plans again.

The plan also reports what it saw but did not send (entries due earlier and still not
renewed, and those due within ``WATCH_AHEAD_SECONDS``) for the close-to-expiry metrics.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from wechat_token.record import CredentialKey, attribute_value

from .due import PLATFORM, STABLE_LANE, DueIndex, lane_of
from .registry import COMPONENT, Registry
from .token_store import TokenStore

logger = logging.getLogger("wechat_token.refresher")

WATCH_AHEAD_SECONDS = 120.0
STRAGGLER_SECONDS = 900.0
STRAGGLER_EVERY_SECONDS = 3600.0
_SEP = "\x1f"


@dataclass(frozen=True, slots=True)
class PlanReport:
    """What one scheduled run planned (JSON-safe, no secrets)."""

    lanes: tuple[str, ...] = ()
    planned: int = 0
    from_index: int = 0
    from_registry: int = 0
    stragglers: int = 0
    swept: int = 0
    # (lane, seconds to expiry) of entries seen but not sent now (0: no value stored).
    watched: tuple[tuple[str, float], ...] = field(default=(), repr=False)
    # The least time left any credential of these lanes can have without being watched
    # (not due yet): what the close-to-expiry metric reports when nothing is watched.
    quiet_floor: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "lanes": list(self.lanes),
            "planned": self.planned,
            "from_index": self.from_index,
            "from_registry": self.from_registry,
            "stragglers": self.stragglers,
            "swept": self.swept,
        }


@dataclass(slots=True)
class _State:
    revision: str | None = None
    planned_until: float | None = None
    stragglers_at: float | None = None
    sweep_day: str | None = None
    sweep_cursor: str = ""
    digests: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, item: dict[str, Any] | None) -> _State:
        if not item:
            return cls()

        def number(name: str) -> float | None:
            return float(item[name]["N"]) if name in item else None

        return cls(
            revision=item.get("revision", {}).get("S"),
            planned_until=number("planned_until"),
            stragglers_at=number("stragglers_at"),
            sweep_day=item.get("sweep_day", {}).get("S"),
            sweep_cursor=item.get("sweep_cursor", {}).get("S", ""),
            digests=json.loads(item.get("shard_digests", {}).get("S", "{}")),
        )

    def item(self, revision: str) -> dict[str, Any]:
        item: dict[str, Any] = {
            "revision": {"S": revision},
            "sweep_cursor": {"S": self.sweep_cursor},
            "shard_digests": {"S": json.dumps(self.digests, sort_keys=True)},
        }
        for name in ("planned_until", "stragglers_at"):
            value = getattr(self, name)
            if value is not None:
                item[name] = attribute_value(value)
        if self.sweep_day is not None:
            item["sweep_day"] = {"S": self.sweep_day}
        return item


def state_key(lane: str) -> CredentialKey:
    return CredentialKey(f"planner#{lane}", "state")


class Planner:
    def __init__(self, store: TokenStore, due_index: DueIndex, *, sweep_per_run: int) -> None:
        self._store = store
        self._due_index = due_index
        self._sweep_per_run = sweep_per_run

    def plan(
        self,
        registry: Registry,
        lanes: Sequence[str],
        now: float,
        send: Callable[[list[str]], object],
    ) -> PlanReport:
        """Plan each lane, send its apps (``send``), then record the plan."""
        report = PlanReport(lanes=tuple(lanes))
        for lane in lanes:
            report = self._plan_lane(registry, lane, now, send, report)
        return report

    def _plan_lane(
        self,
        registry: Registry,
        lane: str,
        now: float,
        send: Callable[[list[str]], object],
        report: PlanReport,
    ) -> PlanReport:
        state = _State.of(self._store.read_item(state_key(lane)))
        units: dict[str, None] = {}
        straggle = state.stragglers_at is None or now - state.stragglers_at >= (
            STRAGGLER_EVERY_SECONDS
        )
        from_index, stragglers, watched = self._from_index(lane, state, now, straggle, units)
        from_registry = self._from_registry(registry, lane, state, units)
        swept = self._from_sweep(registry, lane, state, now, units)
        planned = list(units)
        if planned:
            send(planned)
        state.planned_until = now if state.planned_until is None else max(now, state.planned_until)
        if straggle:
            state.stragglers_at = now
        if not self._store.write_item(
            state_key(lane), state.item(uuid.uuid4().hex), expected=state.revision
        ):
            logger.info("lane %s was planned by another run at the same time", lane)
        return PlanReport(
            lanes=report.lanes,
            quiet_floor=report.quiet_floor,
            planned=report.planned + len(planned),
            from_index=report.from_index + from_index,
            from_registry=report.from_registry + from_registry,
            stragglers=report.stragglers + stragglers,
            swept=report.swept + swept,
            watched=report.watched + tuple(watched),
        )

    def _from_index(
        self, lane: str, state: _State, now: float, straggle: bool, units: dict[str, None]
    ) -> tuple[int, int, list[tuple[str, float]]]:
        """Entries due in (planned_until, now]; stragglers; what was seen and not sent."""
        fresh = stragglers = 0
        watched: list[tuple[str, float]] = []
        for partition in self._due_index.partitions([lane]):
            for entry in self._store.due_entries(partition, until=now + WATCH_AHEAD_SECONDS):
                app_id = entry.key.app_id
                if entry.due_at <= now and (
                    state.planned_until is None or entry.due_at > state.planned_until
                ):
                    fresh += app_id not in units
                    units[app_id] = None
                    continue
                # A value its endpoint hands out until it expires (WeCom) cannot be renewed
                # early, so its expiry is no refresher failure: not watched, as
                # min_seconds_to_expiry leaves such outcomes out (renewable_in).
                held = entry.renewable_at is not None and entry.renewable_at > now
                if lane == STABLE_LANE or not held:
                    watched.append((lane, max(0.0, (entry.expires_at or now) - now)))
                if straggle and entry.due_at <= now - STRAGGLER_SECONDS:
                    stragglers += app_id not in units
                    units[app_id] = None
        return fresh, stragglers, watched

    def _from_registry(
        self, registry: Registry, lane: str, state: _State, units: dict[str, None]
    ) -> int:
        """Every app of a registry shard that changed since the last plan (or is new)."""
        added = 0
        for shard_id, shard in registry.shards.items():
            if state.digests.get(shard_id) == shard.digest:
                continue
            for app_id in shard.app_ids:
                app = registry.apps.get(app_id)
                if app is not None and lane_of(app.type) == lane and app_id not in units:
                    units[app_id] = None
                    added += 1
            state.digests[shard_id] = shard.digest
        for gone in set(state.digests) - set(registry.shards) - set(registry.unreadable):
            del state.digests[gone]
        return added

    def _from_sweep(
        self, registry: Registry, lane: str, state: _State, now: float, units: dict[str, None]
    ) -> int:
        """The daily sweep's next ``sweep_per_run`` apps (none on a lane's first plan: the
        registry part sends everything then)."""
        today = datetime.fromtimestamp(now, UTC).date().isoformat()
        if state.revision is None:
            state.sweep_day = today
        if state.sweep_day == today and not state.sweep_cursor:
            return 0
        swept = 0
        for app_id, cursor in self._sweep(registry, lane, state.sweep_cursor):
            units.setdefault(app_id, None)
            swept += 1
            state.sweep_cursor = cursor
            if swept >= self._sweep_per_run:
                return swept
        state.sweep_cursor, state.sweep_day = "", today
        logger.info("due index sweep of lane %s finished", lane)
        return swept

    def _sweep(self, registry: Registry, lane: str, cursor: str) -> Iterator[tuple[str, str]]:
        """Every app of the lane in a fixed order after ``cursor``, with the cursor that
        resumes after it: registered apps, then each component's authorizers."""
        segment, _, last = cursor.partition(_SEP)
        start = int(segment) if segment else 0
        if start == 0:
            for app_id in sorted(
                a for a, app in registry.apps.items() if lane_of(app.type) == lane
            ):
                if not last or app_id > last:
                    yield app_id, f"0{_SEP}{app_id}"
            last = ""
        if lane != PLATFORM:
            return
        components = sorted(a for a, app in registry.apps.items() if app.type == COMPONENT)
        for number, component in enumerate(components, start=1):
            if number < start:
                continue
            after = last if number == start and last else None
            while True:
                keys = self._store.component_items(component, after=after, limit=500)
                for key in keys:
                    yield key.app_id, f"{number}{_SEP}{key.app_id}"
                if len(keys) < 500:
                    break
                after = keys[-1].app_id
            last = ""
