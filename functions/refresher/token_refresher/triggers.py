"""Why a refresh was asked for, as types, and the parsers of the two entry points' events.

    Scheduled   the schedule (or an operator's scan): refresh what is due
    Forced      an operator: refresh this one credential now
    Passive     a consumer: WeChat rejected the token it read; replace it only if WeChat
                confirms the stored token is dead
    Authorize   an operator: exchange a platform's authorization code obtained elsewhere

``parse_operator_event`` reads ``lambda_handler``'s events (scheduled and forced);
``parse_passive_event`` reads ``passive_handler``'s, the only entry point consumers may
invoke, and refuses anything but a report.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from wechat_token.record import ACCESS_TOKEN, Kind

from .errors import EventError
from .registry import TYPES


@dataclass(frozen=True, slots=True)
class Scheduled:
    """Refresh every matching credential that is due; ``types`` limits it to some types,
    ``app_id`` to one app (an operator's "refresh it if it is due")."""

    types: tuple[str, ...] = ()
    app_id: str | None = None


@dataclass(frozen=True, slots=True)
class Forced:
    """An operator's "refresh now" for one credential."""

    app_id: str
    kind: Kind = ACCESS_TOKEN

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", Kind(self.kind))


@dataclass(frozen=True, slots=True)
class Passive:
    """A consumer's report that WeChat rejected ``stale`` (a fingerprint, or the token)."""

    app_id: str
    kind: Kind = ACCESS_TOKEN
    stale: str = ""
    errcode: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", Kind(self.kind))


@dataclass(frozen=True, slots=True)
class Authorize:
    """An operator's authorization code of a component (e.g. from the platform's own
    redirect page): exchanged at once with api_query_auth. ``repr`` hides the code."""

    app_id: str
    code: str = field(repr=False)


Trigger = Scheduled | Forced | Passive

_PASSIVE_FIELDS = frozenset({"app_id", "kind", "stale_token", "errcode"})
_KINDS = [str(kind) for kind in Kind]


def parse_operator_event(event: Any) -> Scheduled | Forced | Authorize:
    """``{}`` or a schedule's input → Scheduled; ``{"app_id", "force": true}`` → Forced;
    ``{"app_id": component, "authorization_code"}`` → Authorize."""
    if event is None:
        return Scheduled()
    if isinstance(event, Mapping) and "authorization_code" in event:
        return _authorize(event)
    if not isinstance(event, Mapping):
        raise EventError(
            f"The event must be a JSON object, not {type(event).__name__}: send {{}} for a "
            'scheduled run or {"app_id": "wx...", "force": true} to refresh one app.'
        )
    force = event.get("force", False)
    if not isinstance(force, bool):
        raise EventError('"force" must be true or false.')
    if "stale_token" in event:
        raise EventError(
            "Passive reports go to the PassiveRefreshFunction (passive_handler), not to the "
            "refresher's operator entry point."
        )
    app_id = event.get("app_id")
    if app_id is None:
        if force:
            raise EventError(
                'A forced refresh needs "app_id": forcing every credential at once would '
                "evict the token every consumer holds. Force one app at a time."
            )
        if "kind" in event:
            raise EventError('"kind" needs "app_id": which app\'s credential?')
        # EventBridge Scheduler sends the template's Input; rule events carry fields of
        # their own. Only "types" is read from a scheduled event.
        types = event.get("types", [])
        if not isinstance(types, list) or any(t not in TYPES for t in types):
            raise EventError(f'"types" must be a list drawn from {list(TYPES)}.')
        return Scheduled(types=tuple(types))
    if not force:
        if "kind" in event:
            raise EventError('"kind" is only read with "force": true.')
        return Scheduled(app_id=_app_id(app_id))
    return Forced(app_id=_app_id(app_id), kind=_kind(event.get("kind", ACCESS_TOKEN)))


def parse_passive_event(event: Any) -> Passive:
    """``{"app_id", "kind", "stale_token", "errcode"}`` and nothing else."""
    if not isinstance(event, Mapping):
        raise EventError(
            "A passive report must be a JSON object "
            '{"app_id", "kind", "stale_token": "sha256:...", "errcode": 40001}.'
        )
    extra = sorted(str(name) for name in set(event) - _PASSIVE_FIELDS)
    if extra:
        raise EventError(
            f"A passive report accepts only {sorted(_PASSIVE_FIELDS)}; refused because of "
            f"{extra}. Consumers may report a rejected token, never force or schedule."
        )
    stale = event.get("stale_token")
    if not isinstance(stale, str) or not stale.strip():
        raise EventError('"stale_token" must be the rejected token\'s fingerprint ("sha256:...").')
    errcode = event.get("errcode")
    if errcode is not None and (isinstance(errcode, bool) or not isinstance(errcode, int)):
        raise EventError('"errcode" must be the integer WeChat answered (e.g. 40001).')
    return Passive(
        app_id=_app_id(event.get("app_id")),
        kind=_kind(event.get("kind", ACCESS_TOKEN)),
        stale=stale.strip(),
        errcode=errcode,
    )


def _app_id(raw: Any) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise EventError('"app_id" must be a non-empty string naming an app in the registry.')
    return raw.strip()


def _kind(raw: Any) -> Kind:
    if raw not in _KINDS:
        raise EventError(f'"kind" must be one of {_KINDS}, not {raw!r}.')
    return Kind(raw)


def _authorize(event: Mapping[str, Any]) -> Authorize:
    extra = sorted(str(name) for name in set(event) - {"app_id", "authorization_code"})
    if extra:
        raise EventError(
            f'An authorization takes only "app_id" (the component) and "authorization_code"; '
            f"refused because of {extra}."
        )
    code = event.get("authorization_code")
    if not isinstance(code, str) or not code.strip() or len(code) > 512:
        raise EventError('"authorization_code" must be the code WeChat gave (a string).')
    return Authorize(app_id=_app_id(event.get("app_id")), code=code.strip())
