"""WeChatClient: call WeChat's server APIs with the stored token, recovering from a rejected one.

On 40001 / 40014 / 42001 the client drops its cached token and re-reads the table; if the
table still holds the rejected token, it asks the refresher for a passive refresh (one per
process at a time), waits for the new token, and retries **once**. It never loops and
never retries other errors, except WeChat's -1 (system busy) once after a short pause.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .errors import TokenError
from .passive import PassiveRefresh, PassiveRefreshError, default_passive_refresh
from .reader import TokenReader, app_id_from_env, default_reader
from .record import ACCESS_TOKEN, fingerprint
from .redaction import quiet_http_loggers, redact

if TYPE_CHECKING:
    import httpx

INVALID_TOKEN_CODES = frozenset({40001, 40014, 42001})
BUSY = -1
DEFAULT_BASE_URL = "https://api.weixin.qq.com"
_UNSET: Any = object()


class WeChatAPIError(TokenError):
    """WeChat answered with a non-zero ``errcode``."""

    def __init__(self, errcode: int, errmsg: str, path: str) -> None:
        super().__init__(f"WeChat {path} answered {errcode}: {errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg
        self.path = path


class WeChatTransportError(TokenError):
    """The request did not reach WeChat or got no usable answer (network, timeout, 5xx)."""


_flights: dict[tuple[str, str], threading.Lock] = {}
_flights_lock = threading.Lock()


def _flight(key: tuple[str, str]) -> threading.Lock:
    with _flights_lock:
        return _flights.setdefault(key, threading.Lock())


class WeChatClient:
    """A small client for WeChat's server APIs that injects the current ``access_token``.

    client = WeChatClient()                     # app from WECHAT_APP_ID
    ips = client.get("/cgi-bin/get_api_domain_ip")["ip_list"]
    client.post("/cgi-bin/message/custom/send", json={...})
    """

    def __init__(
        self,
        app_id: str | None = None,
        *,
        base_url: str | None = None,
        reader: TokenReader | None = None,
        passive_refresh: PassiveRefresh | None = _UNSET,
        http: httpx.Client | None = None,
        timeout: float = 10.0,
        wait_seconds: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.app_id = app_id or app_id_from_env()
        self.base_url = (
            base_url or os.environ.get("WECHAT_API_BASE_URL") or DEFAULT_BASE_URL
        ).rstrip("/")
        self._reader = reader
        if passive_refresh is _UNSET:
            passive_refresh = default_passive_refresh()
        self._passive = passive_refresh
        self._http = http
        self._timeout = timeout
        self._wait_seconds = wait_seconds
        self._sleep = sleep

    @property
    def reader(self) -> TokenReader:
        return self._reader or default_reader()

    def get(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.request("GET", path, params=params)

    def post(
        self, path: str, json: Any = None, params: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        return self.request("POST", path, params=params, json=json)

    def request(
        self, method: str, path: str, *, params: dict[str, Any] | None = None, json: Any = None
    ) -> dict[str, Any]:
        """Send the request with the current token; the decoded JSON reply on success."""
        token = self.reader.get(self.app_id, ACCESS_TOKEN)
        reply = self._send(method, path, token, params, json)
        errcode = _errcode(reply)
        if errcode == BUSY:
            self._sleep(0.5)
            reply = self._send(method, path, token, params, json)
            errcode = _errcode(reply)
        elif errcode in INVALID_TOKEN_CODES:
            token = self._replacement(token, errcode, path)
            reply = self._send(method, path, token, params, json)
            errcode = _errcode(reply)
        if errcode:
            raise WeChatAPIError(errcode, redact(str(reply.get("errmsg", "")), token), path)
        return reply

    def _replacement(self, rejected: str, errcode: int, path: str) -> str:
        """A token other than ``rejected``: from the table, or from a passive refresh."""
        reader = self.reader
        fresh = reader.refetch(self.app_id, ACCESS_TOKEN)
        if fresh != rejected:
            return fresh
        if self._passive is None:
            raise WeChatAPIError(
                errcode,
                "WeChat rejected the stored token and this consumer may not request a passive "
                "refresh (set REFRESHER_FUNCTION_NAME and allow lambda:InvokeFunction)",
                path,
            )
        # One passive refresh per credential per process; the other threads wait for it.
        with _flight((self.app_id, ACCESS_TOKEN)):
            fresh = reader.refetch(self.app_id, ACCESS_TOKEN)
            if fresh != rejected:
                return fresh
            outcome = self._passive(self.app_id, ACCESS_TOKEN, fingerprint(rejected), errcode)
            deadline = time.monotonic() + self._wait_seconds
            while True:
                fresh = reader.refetch(self.app_id, ACCESS_TOKEN)
                if fresh != rejected:
                    return fresh
                if outcome not in ("lease_held", "already_replaced") or (
                    time.monotonic() >= deadline
                ):
                    raise PassiveRefreshError(
                        f"WeChat rejected the token for {self.app_id} ({errcode}) and the "
                        f"refresher did not replace it (outcome: {outcome}); check the "
                        "refresher's logs"
                    )
                self._sleep(0.2)

    def _send(
        self, method: str, path: str, token: str, params: dict[str, Any] | None, body: Any
    ) -> dict[str, Any]:
        import httpx  # noqa: PLC0415 - only consumers that call WeChat pay for httpx

        if self._http is None:
            quiet_http_loggers()
            self._http = httpx.Client(timeout=self._timeout, follow_redirects=False)
        query = {**(params or {}), "access_token": token}
        content = None
        headers = {}
        if body is not None:
            # WeChat wants UTF-8 JSON with Chinese unescaped (ensure_ascii would garble some APIs).
            content = json.dumps(body, ensure_ascii=False).encode()
            headers["Content-Type"] = "application/json; charset=utf-8"
        try:
            response = self._http.request(
                method, self.base_url + path, params=query, content=content, headers=headers
            )
        except httpx.HTTPError as exc:
            raise WeChatTransportError(
                f"{type(exc).__name__} calling WeChat {path}: {redact(str(exc), token)}"
            ) from None
        if response.status_code >= 500:
            raise WeChatTransportError(f"WeChat {path} answered HTTP {response.status_code}")
        try:
            reply = response.json()
        except ValueError:
            raise WeChatTransportError(
                f"WeChat {path} answered HTTP {response.status_code} with a body that is not JSON"
            ) from None
        if not isinstance(reply, dict):
            raise WeChatTransportError(f"WeChat {path} answered JSON that is not an object")
        return reply


def _errcode(reply: dict[str, Any]) -> int:
    errcode = reply.get("errcode", 0)
    return errcode if isinstance(errcode, int) and not isinstance(errcode, bool) else -2
