"""The refresher's invocation events, parsed and validated."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wechat_token.record import ACCESS_TOKEN

from .errors import EventError
from .registry import TYPES

_KINDS = (ACCESS_TOKEN, "jsapi_ticket", "wx_card_ticket", "agent_config_ticket")


@dataclass(frozen=True, slots=True)
class RefreshRequest:
    """What an invocation asks for.

    - ``app_id is None``: a scheduled run (every app, what is due; ``force`` forces all);
    - ``force``: refresh now;
    - ``stale_token``: passive refresh, only if that token (or its fingerprint) is still stored.
    """

    app_id: str | None = None
    kind: str = ACCESS_TOKEN
    force: bool = False
    stale_token: str | None = None
    errcode: int | None = None
    # A scheduled run may be limited to some registry types (the stable-token schedule).
    types: tuple[str, ...] = ()

    @property
    def passive(self) -> bool:
        return self.stale_token is not None


def parse_event(event: Any) -> RefreshRequest:
    if event is None:
        return RefreshRequest()
    if not isinstance(event, dict):
        raise EventError(
            f"The event must be a JSON object, not {type(event).__name__}: send {{}} for a "
            'scheduled run or {"app_id": "wx...", "force": true} to refresh one app.'
        )
    app_id = event.get("app_id")
    force = event.get("force", False)
    if not isinstance(force, bool):
        raise EventError('"force" must be true or false.')
    if app_id is None:
        if "stale_token" in event or "kind" in event:
            raise EventError('"stale_token" and "kind" need "app_id": which app\'s token is stale?')
        # A scheduled run: EventBridge Scheduler sends the template's Input; rule events
        # carry their own fields. Only "types" (and "force") are read from it.
        types = event.get("types", [])
        if not isinstance(types, list) or any(t not in TYPES for t in types):
            raise EventError(f'"types" must be a list drawn from {list(TYPES)}.')
        return RefreshRequest(force=force, types=tuple(types))
    if not isinstance(app_id, str) or not app_id.strip():
        raise EventError('"app_id" must be a non-empty string naming an app in the registry.')
    kind = event.get("kind", ACCESS_TOKEN)
    if kind not in _KINDS:
        raise EventError(f'"kind" must be one of {list(_KINDS)}, not {kind!r}.')
    stale = event.get("stale_token")
    if stale is not None and (not isinstance(stale, str) or not stale.strip()):
        raise EventError(
            '"stale_token" must be the rejected token\'s fingerprint ("sha256:...") or the token.'
        )
    errcode = event.get("errcode")
    if errcode is not None and (isinstance(errcode, bool) or not isinstance(errcode, int)):
        raise EventError('"errcode" must be the integer WeChat answered (e.g. 40001).')
    if stale is not None and force:
        raise EventError('Send either "force" or "stale_token", not both.')
    return RefreshRequest(
        app_id=app_id.strip(), kind=kind, force=force, stale_token=stale, errcode=errcode
    )
