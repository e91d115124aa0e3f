"""JS-SDK signatures, so that consumers never handle the jsapi_ticket by hand."""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import TypedDict

from .reader import TokenReader, app_id_from_env, default_reader
from .record import TICKET_TYPES, Kind

# ticket type (``jsapi``...) -> the record kind it is stored as; from the schema's one table.
TICKET_KINDS = {ticket_type: Kind.of_ticket(ticket_type) for ticket_type in TICKET_TYPES}


class JsapiConfig(TypedDict):
    """The fields ``wx.config`` (or WeCom's ``wx.agentConfig``) needs, minus ``jsApiList``."""

    appId: str
    timestamp: int
    nonceStr: str
    signature: str


def get_ticket(app_id: str | None = None, ticket_type: str = "jsapi") -> str:
    """The app's current JS-SDK ticket (``jsapi``, ``wx_card`` or WeCom ``agent_config``)."""
    return _ticket(default_reader(), app_id, ticket_type)


def _ticket(reader: TokenReader, app_id: str | None, ticket_type: str) -> str:
    kind = TICKET_KINDS.get(ticket_type)
    if kind is None:
        raise ValueError(f"ticket_type must be one of {sorted(TICKET_KINDS)}, not {ticket_type!r}")
    return reader.get(app_id or app_id_from_env(), kind)


def sign(ticket: str, noncestr: str, timestamp: int, url: str) -> str:
    """WeChat's JS-SDK signature: sha1 of the four fields, sorted by name, as a query string.

    The URL is the page's full URL without its ``#fragment``.
    """
    url = url.split("#", 1)[0]
    plain = f"jsapi_ticket={ticket}&noncestr={noncestr}&timestamp={timestamp}&url={url}"
    return hashlib.sha1(plain.encode()).hexdigest()  # noqa: S324 - WeChat's algorithm


def jsapi_signature(
    url: str,
    *,
    app_id: str | None = None,
    wechat_appid: str | None = None,
    ticket_type: str = "jsapi",
    noncestr: str | None = None,
    timestamp: int | None = None,
    reader: TokenReader | None = None,
) -> JsapiConfig:
    """Everything a page needs for ``wx.config``, signed with the stored ticket.

    ``app_id`` is the registry key (default ``WECHAT_APP_ID``); ``wechat_appid`` is the
    ``appId`` the page reports, when it differs from the key (WeCom: the corpid).
    """
    app_id = app_id or app_id_from_env()
    ticket = _ticket(reader or default_reader(), app_id, ticket_type)
    noncestr = noncestr or secrets.token_urlsafe(12)
    timestamp = int(time.time()) if timestamp is None else timestamp
    return {
        "appId": wechat_appid or app_id,
        "timestamp": timestamp,
        "nonceStr": noncestr,
        "signature": sign(ticket, noncestr, timestamp, url),
    }
