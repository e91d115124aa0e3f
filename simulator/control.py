"""The control API under ``/_sim/``: lets another process drive the simulator.

JSON in, JSON out. Answers never contain a secret or a full token.

====== ======================== ==================================================
GET    /_sim/health             ``{"ok": true}``
GET    /_sim/clock              ``{"now": t, "manual": bool, "wechat_day": n}``
POST   /_sim/clock/advance      ``{"seconds": s}`` (manual clock only, else 409)
POST   /_sim/clock/set          ``{"time": t}`` (manual clock only, else 409)
POST   /_sim/apps               ``{"appid", "secret", "allowed_ips"?, "daily_quota"?}``
                                or ``{"corpid", "agentid", "secret"}``
GET    /_sim/faults             the active faults
POST   /_sim/faults             a fault object or a list of them: added;
                                ``{"faults": [...]}``: replaces every fault
DELETE /_sim/faults             clears every fault
GET    /_sim/minute_limits      ``{"minute_limits": {...}}``
POST   /_sim/minute_limits      ``{"per_app"?, "per_component"?, "global"?, PATH?: n | null}``
                                replaces the per-minute limits (45011); ``{}`` = off
DELETE /_sim/minute_limits      turns them off
GET    /_sim/peak_calls         ``?window=60&appid=&component=&endpoint=`` ->
                                ``{"window", "peak"}``: the most calls in any window
POST   /_sim/foreign_fetch      ``{"appid"}`` -> ``{"token_fp", "expires_in"}``
POST   /_sim/reset_quota        ``{"appid"}``
POST   /_sim/invalidate_wecom   ``{"corpid", "agentid"}``
POST   /_sim/check_token        ``{"token", "server"?}`` -> ``{"errcode", "accepted"}``
GET    /_sim/stats              counters, state and call log (``?log=0`` omits the log)
POST   /_sim/components         ``{"component_appid", "component_appsecret", "token",
                                "encoding_aes_key", "callback_url"?, "allowed_ips"?,
                                "daily_quota"?}``: a third-party platform
POST   /_sim/authorize          ``{"component_appid", "authorizer_appid", "func_info"?}``
                                -> ``{"info_type", "auth_code", "expires_in", ...}``
POST   /_sim/unauthorize        ``{"component_appid", "authorizer_appid"}``
POST   /_sim/pushes             ``{"component_appid", "enabled"}``: stop (an outage) or
                                restart a platform's ticket pushes
POST   /_sim/pushes/deliver     deliver the due pushes -> ``{"deliveries": [...]}``
POST   /_sim/rotate_refresh     ``{"component_appid", "authorizer_appid"}``: the next
                                ``api_authorizer_token`` answers a new refresh token
====== ======================== ==================================================

The one credential an answer carries is ``/_sim/authorize``'s ``auth_code``: what
WeChat's redirect hands the platform after a merchant's authorization.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from simulator.clock import ManualClock
from simulator.faults import Fault
from simulator.responses import SimResponse
from simulator.tokens import fingerprint, wechat_day

if TYPE_CHECKING:
    from simulator.wechat import WeChatSimulator

__all__ = ["handle_control"]


class _ControlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _reply(status: int, payload: Any) -> SimResponse:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return SimResponse(status, {"Content-Type": "application/json"}, body)


def _body(raw: bytes) -> Any:
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _ControlError(400, "the body must be JSON") from exc


def _object(raw: bytes) -> dict[str, Any]:
    data = _body(raw)
    if not isinstance(data, dict):
        raise _ControlError(400, "the body must be a JSON object")
    return data


def _text(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value:
        raise _ControlError(400, f"{key!r} is required")
    return value


def _number(data: dict[str, Any], key: str) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _ControlError(400, f"{key!r} must be a number")
    return float(value)


def _manual(sim: WeChatSimulator) -> ManualClock:
    clock = sim.clock
    if not isinstance(clock, ManualClock):
        raise _ControlError(
            409, "the simulator runs on the system clock (start it with a manual clock)"
        )
    return clock


def _health(sim: WeChatSimulator, query: dict[str, str], raw: bytes) -> Any:
    return {"ok": True}


def _clock(sim: WeChatSimulator, query: dict[str, str], raw: bytes) -> Any:
    now = sim.clock.now()
    return {"now": now, "manual": isinstance(sim.clock, ManualClock), "wechat_day": wechat_day(now)}


def _advance(sim: WeChatSimulator, query: dict[str, str], raw: bytes) -> Any:
    seconds = _number(_object(raw), "seconds")
    if seconds < 0:
        raise _ControlError(400, "'seconds' cannot be negative")
    return {"now": _manual(sim).advance(seconds)}


def _set_clock(sim: WeChatSimulator, query: dict[str, str], raw: bytes) -> Any:
    clock = _manual(sim)
    clock.set(_number(_object(raw), "time"))
    return {"now": clock.now()}


def _add_app(sim: WeChatSimulator, query: dict[str, str], raw: bytes) -> Any:
    data = _object(raw)
    secret = _text(data, "secret")
    if "corpid" in data:
        corpid, agentid = _text(data, "corpid"), _text(data, "agentid")
        sim.add_wecom_app(corpid, agentid, secret)
        return {"corpid": corpid, "agentid": agentid}
    appid = _text(data, "appid")
    allowed = data.get("allowed_ips")
    if allowed is not None and not (
        isinstance(allowed, list) and all(isinstance(ip, str) for ip in allowed)
    ):
        raise _ControlError(400, "'allowed_ips' must be a list of strings")
    quota = data.get("daily_quota")
    if quota is not None and (isinstance(quota, bool) or not isinstance(quota, int)):
        raise _ControlError(400, "'daily_quota' must be an integer")
    sim.add_app(appid, secret, allowed_ips=allowed, daily_quota=quota)
    return {"appid": appid}


def _list_faults(sim: WeChatSimulator, query: dict[str, str], raw: bytes) -> Any:
    return {"faults": [f.to_dict() for f in sim.faults()]}


def _post_faults(sim: WeChatSimulator, query: dict[str, str], raw: bytes) -> Any:
    data = _body(raw)
    replace = isinstance(data, dict) and "faults" in data
    items = data["faults"] if replace else data
    if isinstance(items, dict):
        items = [items]
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise _ControlError(400, "send a fault object, a list of them, or {'faults': [...]}")
    faults = [Fault.from_dict(item) for item in items]
    if replace:
        sim.set_faults(faults)
    else:
        for fault in faults:
            sim.add_fault(fault)
    return {"faults": [f.to_dict() for f in sim.faults()]}


def _clear_faults(sim: WeChatSimulator, query: dict[str, str], raw: bytes) -> Any:
    sim.clear_faults()
    return {"faults": []}


def _get_minute_limits(sim: WeChatSimulator, query: dict[str, str], raw: bytes) -> Any:
    return {"minute_limits": sim.minute_limits}


def _set_minute_limits(sim: WeChatSimulator, query: dict[str, str], raw: bytes) -> Any:
    sim.set_minute_limits(_object(raw))  # ValueError (400) names a bad key or value
    return {"minute_limits": sim.minute_limits}


def _clear_minute_limits(sim: WeChatSimulator, query: dict[str, str], raw: bytes) -> Any:
    sim.set_minute_limits(None)
    return {"minute_limits": {}}


def _peak_calls(sim: WeChatSimulator, query: dict[str, str], raw: bytes) -> Any:
    try:
        window = float(query.get("window", "60"))
    except ValueError as exc:
        raise _ControlError(400, "'window' must be a number of seconds") from exc
    peak = sim.peak_calls(
        window,
        appid=query.get("appid") or None,
        component=query.get("component") or None,
        endpoint=query.get("endpoint") or None,
    )
    return {"window": window, "peak": peak}


def _foreign_fetch(sim: WeChatSimulator, query: dict[str, str], raw: bytes) -> Any:
    token = sim.foreign_fetch(_text(_object(raw), "appid"))
    return {"token_fp": fingerprint(token), "expires_in": sim.token_lifetime}


def _reset_quota(sim: WeChatSimulator, query: dict[str, str], raw: bytes) -> Any:
    appid = _text(_object(raw), "appid")
    sim.reset_quota(appid)
    return {"appid": appid}


def _invalidate_wecom(sim: WeChatSimulator, query: dict[str, str], raw: bytes) -> Any:
    data = _object(raw)
    return {"invalidated": sim.invalidate_wecom(_text(data, "corpid"), _text(data, "agentid"))}


def _check_token(sim: WeChatSimulator, query: dict[str, str], raw: bytes) -> Any:
    data = _object(raw)
    server = data.get("server")
    if server is not None and (isinstance(server, bool) or not isinstance(server, int)):
        raise _ControlError(400, "'server' must be an integer")
    if server is not None and not 0 <= server < len(sim.server_offsets):
        raise _ControlError(400, "'server' is out of range")
    code = sim.token_status(_text(data, "token"), server=server)
    return {"errcode": code, "accepted": code == 0}


def _stats(sim: WeChatSimulator, query: dict[str, str], raw: bytes) -> Any:
    include_log = query.get("log", "1").lower() not in {"0", "false", "no"}
    return sim.stats(include_log=include_log)


def _optional_text(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and (not isinstance(value, str) or not value):
        raise _ControlError(400, f"{key!r} must be a non-empty string")
    return value


def _add_component(sim: WeChatSimulator, query: dict[str, str], raw: bytes) -> Any:
    data = _object(raw)
    appid = _text(data, "component_appid")
    allowed = data.get("allowed_ips")
    if allowed is not None and not (
        isinstance(allowed, list) and all(isinstance(ip, str) for ip in allowed)
    ):
        raise _ControlError(400, "'allowed_ips' must be a list of strings")
    quota = data.get("daily_quota")
    if quota is not None and (isinstance(quota, bool) or not isinstance(quota, int)):
        raise _ControlError(400, "'daily_quota' must be an integer")
    sim.platform.add_component(
        appid,
        _text(data, "component_appsecret"),
        _text(data, "token"),
        _text(data, "encoding_aes_key"),
        _optional_text(data, "callback_url"),
        allowed_ips=allowed,
        daily_quota=quota,
    )
    return {"component_appid": appid}


def _authorize(sim: WeChatSimulator, query: dict[str, str], raw: bytes) -> Any:
    data = _object(raw)
    funcs = data.get("func_info")
    if funcs is not None and not (
        isinstance(funcs, list)
        and all(isinstance(f, int) and not isinstance(f, bool) for f in funcs)
    ):
        raise _ControlError(400, "'func_info' must be a list of integers")
    grant = sim.platform.authorize(
        _text(data, "component_appid"), _text(data, "authorizer_appid"), func_ids=funcs
    )
    return {
        "component_appid": grant.component_appid,
        "authorizer_appid": grant.authorizer_appid,
        "info_type": grant.info_type,
        "auth_code": grant.auth_code,
        "expires_in": int(grant.expires_at - sim.clock.now()),
    }


def _unauthorize(sim: WeChatSimulator, query: dict[str, str], raw: bytes) -> Any:
    data = _object(raw)
    done = sim.platform.unauthorize(_text(data, "component_appid"), _text(data, "authorizer_appid"))
    return {"unauthorized": done}


def _pushes(sim: WeChatSimulator, query: dict[str, str], raw: bytes) -> Any:
    data = _object(raw)
    appid = _text(data, "component_appid")
    enabled = data.get("enabled")
    if not isinstance(enabled, bool):
        raise _ControlError(400, "'enabled' must be true or false")
    if enabled:
        sim.platform.start_pushes(appid)
    else:
        sim.platform.stop_pushes(appid)
    return {"component_appid": appid, "pushing": enabled}


def _deliver(sim: WeChatSimulator, query: dict[str, str], raw: bytes) -> Any:
    return {"deliveries": [d.to_dict() for d in sim.platform.deliver_due_pushes()]}


def _rotate_refresh(sim: WeChatSimulator, query: dict[str, str], raw: bytes) -> Any:
    data = _object(raw)
    sim.platform.force_refresh_token_rotation(
        _text(data, "component_appid"), _text(data, "authorizer_appid")
    )
    return {"forced": True}


_Route = Callable[["WeChatSimulator", dict[str, str], bytes], Any]

_ROUTES: dict[tuple[str, str], _Route] = {
    ("GET", "/_sim/health"): _health,
    ("GET", "/_sim/clock"): _clock,
    ("POST", "/_sim/clock/advance"): _advance,
    ("POST", "/_sim/clock/set"): _set_clock,
    ("POST", "/_sim/apps"): _add_app,
    ("GET", "/_sim/faults"): _list_faults,
    ("POST", "/_sim/faults"): _post_faults,
    ("DELETE", "/_sim/faults"): _clear_faults,
    ("GET", "/_sim/minute_limits"): _get_minute_limits,
    ("POST", "/_sim/minute_limits"): _set_minute_limits,
    ("DELETE", "/_sim/minute_limits"): _clear_minute_limits,
    ("GET", "/_sim/peak_calls"): _peak_calls,
    ("POST", "/_sim/foreign_fetch"): _foreign_fetch,
    ("POST", "/_sim/reset_quota"): _reset_quota,
    ("POST", "/_sim/invalidate_wecom"): _invalidate_wecom,
    ("POST", "/_sim/check_token"): _check_token,
    ("GET", "/_sim/stats"): _stats,
    ("POST", "/_sim/components"): _add_component,
    ("POST", "/_sim/authorize"): _authorize,
    ("POST", "/_sim/unauthorize"): _unauthorize,
    ("POST", "/_sim/pushes"): _pushes,
    ("POST", "/_sim/pushes/deliver"): _deliver,
    ("POST", "/_sim/rotate_refresh"): _rotate_refresh,
}


def handle_control(  # noqa: PLR0911 - maps each failure to its HTTP status
    sim: WeChatSimulator, method: str, path: str, query: dict[str, str], body: bytes
) -> SimResponse:
    """Answer one control request."""
    route = _ROUTES.get((method, path.rstrip("/")))
    if route is None:
        if any(p == path.rstrip("/") for _, p in _ROUTES):
            return _reply(405, {"error": f"{method} is not allowed on {path}"})
        return _reply(404, {"error": f"no control route {path}"})
    try:
        return _reply(200, route(sim, query, body))
    except _ControlError as exc:
        return _reply(exc.status, {"error": exc.message})
    except KeyError as exc:
        return _reply(404, {"error": str(exc.args[0]) if exc.args else "not found"})
    except ValueError as exc:
        return _reply(400, {"error": str(exc)})
    except RuntimeError as exc:  # QuotaExceededError
        return _reply(409, {"error": str(exc)})
