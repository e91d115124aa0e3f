"""wechatpy on the central token: its clients read wechat-token's table and never fetch one.

    from wechat_token.wechatpy_adapter import CentralWeChatClient

    client = CentralWeChatClient()                  # app from WECHAT_APP_ID, no secret
    client.message.send_text(openid, "你好")          # every wechatpy API, as usual
    ticket = client.jsapi.get_jsapi_ticket()        # the stored ticket, not a fetched one

A plain ``wechatpy.WeChatClient(appid, secret)`` calls ``/cgi-bin/token`` itself whenever its
own cache is empty (every cold start) and again on every 40001, which evicts the token that
every other consumer reads: two such fetches and the central token is dead. These
subclasses change exactly three things and leave the rest of wechatpy alone:

- ``access_token`` is read through a ``TokenReader`` (cached at most 120 s, never past the
  stored expiry; ``TokenError`` when the table holds no usable token);
- ``fetch_access_token()`` re-reads the table (strongly consistent) instead of calling WeChat;
- on 40001 / 40014 / 42001 wechatpy's own recovery (fetch a token, retry, and again without
  end while WeChat keeps rejecting) is replaced by the layer's: re-read the table; if it
  still holds the rejected token, report its fingerprint to the PassiveRefreshFunction (one
  request per credential per process, with the layer's 30 s back-off), and retry the call
  **once** with the replacement. A second rejection is raised, never retried.

WeChat's answers are raised as wechatpy's ``WeChatClientException`` as before; a missing,
expired or unreadable token and a refused passive refresh raise the layer's ``TokenError``
subclasses (``TokenNotFoundError``, ``TokenExpiredError``, ``TokenStoreError``,
``PassiveRefreshError``). ``jsapi.get_jsapi_ticket()`` and ``get_jsapi_card_ticket()`` (WeCom:
``get_jsapi_ticket()`` and ``get_agent_jsapi_ticket()``) return the tickets the refresher
keeps, when the app's registry entry lists them; ``jsapi.get_ticket()`` stays WeChat's raw
call. APIs that need the AppSecret itself (``wxa.code_to_session``) get it only if it is
passed as ``secret=``; it is never used to fetch a token.

This module is not imported by ``wechat_token``: only code that imports it needs wechatpy
(tested with wechatpy 1.8.18). Its client uses ``requests``, whose ``urllib3`` logs every URL
(with the token) at DEBUG; the adapter keeps ``urllib3`` at WARNING.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Final

try:
    from wechatpy.client import WeChatClient as _WeChatpyClient
    from wechatpy.client.api import WeChatJSAPI as _WeChatpyJSAPI
    from wechatpy.client.base import BaseWeChatClient as _BaseClient
    from wechatpy.enterprise.client import WeChatClient as _WeChatpyWeComClient
    from wechatpy.enterprise.client.api import WeChatJSAPI as _WeChatpyWeComJSAPI
    from wechatpy.exceptions import WeChatClientException
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "wechat_token.wechatpy_adapter needs wechatpy and its dependencies "
        f"({exc.name} could not be imported): add wechatpy (tested with 1.8.18) to your "
        "function's requirements. The rest of wechat_token works without it."
    ) from None

from .client import DEFAULT_BASE_URL, WeChatClient
from .errors import WeChatAPIError
from .passive import PassiveRefresh, default_passive_refresh
from .reader import TokenReader, app_id_from_env
from .record import ACCESS_TOKEN, INVALID_TOKEN_CODES, Kind
from .redaction import quiet_aws_loggers, redact

__all__ = ["CentralWeChatClient", "CentralWeComClient", "WeChatClientException"]

_UNSET: Any = object()
# requests' connection pool logs "GET /cgi-bin/...?access_token=..." at DEBUG.
_WIRE_LOGGERS: Final = ("urllib3", "requests")


class _CentralToken(_BaseClient):  # type: ignore[misc]  # wechatpy has no type hints
    """What both central clients share; each concrete class puts it before its wechatpy
    client in the MRO, so that these methods win and ``super()`` reaches wechatpy's.

    wechatpy's ``BaseWeChatClient.__new__`` evaluates every attribute of the new instance
    before ``__init__`` runs (to bind its API objects); ``access_token`` raises
    ``AttributeError`` then (``_wt_app_id`` is not yet set), so that nothing is read early.
    """

    _wt_app_id: str
    _wt_layer: WeChatClient
    _wt_retrying: threading.local

    def _wt_setup(
        self,
        app_id: str,
        reader: TokenReader | None,
        passive_refresh: PassiveRefresh | None,
        wait_seconds: float,
        sleep: Callable[[float], None],
    ) -> None:
        # The layer's own client supplies the recovery from a rejected token (re-read,
        # report once per credential per process, back-off, wait for the replacement),
        # so that wechatpy consumers and layer consumers behave exactly alike. It never
        # sends a request here: only its recovery is used.
        if passive_refresh is _UNSET:  # permitted where the stack named the function
            passive_refresh = default_passive_refresh()
        self._wt_layer = WeChatClient(
            app_id,
            base_url=DEFAULT_BASE_URL,
            reader=reader,
            passive_refresh=passive_refresh,
            wait_seconds=wait_seconds,
            sleep=sleep,
        )
        self._wt_retrying = threading.local()
        self._wt_app_id = app_id
        quiet_aws_loggers()
        for name in _WIRE_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)

    @property
    def app_id(self) -> str:
        """The app's key in the wechat-token registry (the record's ``app_id``)."""
        return self._wt_app_id

    @property
    def reader(self) -> TokenReader:
        """The reader tokens come from (the process-wide one unless one was given)."""
        return self._wt_layer.reader

    @property
    def access_token(self) -> str:
        """The stored token, from the reader's cache or the table; never fetched from WeChat."""
        app_id = self._wt_app_id  # AttributeError before __init__: see the class docstring
        return self.reader.get(app_id, ACCESS_TOKEN)

    def fetch_access_token(self) -> dict[str, Any]:
        """Re-read the stored token (strongly consistent). WeChat is never asked for one."""
        return {"access_token": self.reader.refetch(self._wt_app_id, ACCESS_TOKEN)}

    def _wt_ticket(self, kind: Kind) -> str:
        return self.reader.get(self._wt_app_id, kind)

    def _handle_result(
        self,
        res: Any,
        method: str | None = None,
        url: str | None = None,
        result_processor: Callable[[Any], Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        result = res if isinstance(res, dict) else self._decode_result(res)
        errcode = _errcode(result)
        if errcode not in INVALID_TOKEN_CODES or not self.auto_retry:
            return super()._handle_result(res, method, url, result_processor, **kwargs)
        params = kwargs.get("params")
        rejected = params.get("access_token") if isinstance(params, dict) else None
        errmsg = redact(str(result.get("errmsg", errcode)), rejected or "")
        if not isinstance(rejected, str) or getattr(self._wt_retrying, "active", False):
            # A rejected replacement, or a request without wechatpy's params: no retry.
            raise _exception(self, errcode, errmsg, res)
        assert isinstance(params, dict)
        try:
            params["access_token"] = self._wt_layer._replacement(
                rejected, errcode, errmsg, _path(url)
            )
        except WeChatAPIError as refused:  # no permission to report, or the token is fine
            raise _exception(self, refused.errcode, refused.errmsg, res) from None
        _rewind(kwargs.get("files"))
        with self._wt_retry():
            return self._request(
                method=method, url_or_endpoint=url, result_processor=result_processor, **kwargs
            )

    @contextmanager
    def _wt_retry(self) -> Iterator[None]:
        self._wt_retrying.active = True
        try:
            yield
        finally:
            self._wt_retrying.active = False


class _CentralJSAPI(_WeChatpyJSAPI):  # type: ignore[misc]
    """wechatpy's JS-SDK API with the tickets the refresher keeps."""

    def get_jsapi_ticket(self) -> str:
        return str(self._client._wt_ticket(Kind.JSAPI_TICKET))

    def get_jsapi_card_ticket(self) -> str:
        return str(self._client._wt_ticket(Kind.WX_CARD_TICKET))


class CentralWeChatClient(_CentralToken, _WeChatpyClient):  # type: ignore[misc]
    """``wechatpy.WeChatClient`` for an Official Account or Mini Program, on the stored token.

    ``app_id`` is the app's key in the wechat-token registry (default ``WECHAT_APP_ID``);
    ``appid`` is WeChat's appid where the registry entry names a different one. ``reader``
    defaults to the process-wide ``TokenReader`` (``TOKEN_TABLE_NAME``), ``passive_refresh``
    to the PassiveRefreshFunction named by ``PASSIVE_REFRESH_FUNCTION_NAME`` (None: never
    report). ``session``, ``timeout`` and ``auto_retry`` are wechatpy's.
    """

    jsapi = _CentralJSAPI()

    def __init__(
        self,
        app_id: str | None = None,
        *,
        appid: str | None = None,
        secret: str | None = None,
        reader: TokenReader | None = None,
        passive_refresh: PassiveRefresh | None = _UNSET,
        session: Any = None,
        timeout: float | None = None,
        auto_retry: bool = True,
        wait_seconds: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        app_id = app_id or app_id_from_env()
        super().__init__(
            appid or app_id, secret, session=session, timeout=timeout, auto_retry=auto_retry
        )
        self._wt_setup(app_id, reader, passive_refresh, wait_seconds, sleep)


class _CentralWeComJSAPI(_WeChatpyWeComJSAPI):  # type: ignore[misc]
    """wechatpy's WeCom JS-SDK API with the tickets the refresher keeps for this application."""

    def get_jsapi_ticket(self) -> str:
        return str(self._client._wt_ticket(Kind.JSAPI_TICKET))

    def get_agent_jsapi_ticket(self) -> str:
        return str(self._client._wt_ticket(Kind.AGENT_CONFIG_TICKET))


class CentralWeComClient(_CentralToken, _WeChatpyWeComClient):  # type: ignore[misc]
    """``wechatpy.enterprise.WeChatClient`` for one WeCom application, on the stored token.

    ``corp_id`` is the corp's id (what wechatpy calls WeChat with); ``app_id`` is the
    application's key in the wechat-token registry (for example ``ww0123456789:1000002``;
    default ``WECHAT_APP_ID``). Each application has its own token and tickets: two clients
    of one corp never share them (wechatpy's own session keys tickets by corp only).
    """

    jsapi = _CentralWeComJSAPI()

    def __init__(
        self,
        corp_id: str,
        app_id: str | None = None,
        *,
        secret: str | None = None,
        reader: TokenReader | None = None,
        passive_refresh: PassiveRefresh | None = _UNSET,
        session: Any = None,
        timeout: float | None = None,
        auto_retry: bool = True,
        wait_seconds: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        app_id = app_id or app_id_from_env()
        super().__init__(corp_id, secret, session=session, timeout=timeout, auto_retry=auto_retry)
        self._wt_setup(app_id, reader, passive_refresh, wait_seconds, sleep)

    @property
    def access_token_key(self) -> str:
        # wechatpy keys by corp id and the secret's first characters; the secret is not
        # needed here, and a key must never hold one.
        return f"{self.corp_id}_{self._wt_app_id}_access_token"


def _errcode(result: Any) -> int | None:
    if not isinstance(result, dict):
        return None
    errcode = result.get("errcode")
    base_resp = result.get("base_resp")
    if errcode is None and isinstance(base_resp, dict):  # wechatpy merges device APIs' too
        errcode = base_resp.get("errcode")
    try:
        return int(errcode) if errcode is not None else None
    except (TypeError, ValueError):
        return None


def _exception(client: Any, errcode: int, errmsg: str, res: Any) -> WeChatClientException:
    return WeChatClientException(
        errcode,
        errmsg,
        client=client,
        request=getattr(res, "request", None),
        response=None if isinstance(res, dict) else res,
    )


def _path(url: str | None) -> str:
    """The endpoint's path, for messages (a full URL never goes into one)."""
    if not url:
        return "WeChat"
    rest = url.split("://", 1)[-1]
    return "/" + rest.split("/", 1)[1].split("?", 1)[0] if "/" in rest else "/"


def _rewind(files: Any) -> None:
    """Rewind uploaded files before the retry: the first request read them to the end."""
    if not isinstance(files, dict):
        return
    for entry in files.values():
        stream = entry[1] if isinstance(entry, tuple) and len(entry) > 1 else entry
        seek = getattr(stream, "seek", None)
        if callable(seek):
            seek(0)
