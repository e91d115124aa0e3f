"""WeChatClient: call WeChat's server APIs with the stored token, recovering from a rejected one.

On 40001 / 40014 / 42001 the client drops its cached token and re-reads the table
(consistent); if the table still holds the rejected token, it asks the passive refresh
function (one request per credential per process at a time, and none while the reader's
back-off holds that credential), waits for the new token, and retries **once**. It never
loops and never retries other errors, except WeChat's -1 (system busy) once after a short
pause. No error it raises carries the httpx exception (which quotes the URL, token
included) as its ``__cause__`` or ``__context__``.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from .errors import PassiveRefreshError, WeChatAPIError, WeChatTransportError
from .passive import REPLACED_OUTCOMES, PassiveRefresh, default_passive_refresh, flight
from .reader import TokenReader, app_id_from_env, default_reader
from .record import ACCESS_TOKEN, INVALID_TOKEN_CODES, CredentialKey, fingerprint
from .redaction import quiet_http_loggers, redact
from .settings import PASSIVE_FUNCTION_ENV, env_url, process_env

if TYPE_CHECKING:
    import httpx

__all__ = ["INVALID_TOKEN_CODES", "WeChatAPIError", "WeChatClient", "WeChatTransportError"]

BUSY: Final = -1
API_BASE_URL_ENV: Final = "WECHAT_API_BASE_URL"
DEFAULT_BASE_URL: Final = "https://api.weixin.qq.com"
_UNSET: Any = object()
_NOT_JSON: Any = object()

# One passive request per credential per process; looked up here at call time, so a
# benchmark can swap it to model separate processes.
_flight = flight


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
        self.base_url = base_url.rstrip("/") if base_url else _base_url_from_env()
        self._reader = reader
        if passive_refresh is _UNSET:
            passive_refresh = default_passive_refresh()
        self._passive = passive_refresh
        self._http = http
        self._quieted = False
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
            errmsg = redact(str(reply.get("errmsg", "")), token)
            token = self._replacement(token, errcode, errmsg, path)
            reply = self._send(method, path, token, params, json)
            errcode = _errcode(reply)
        if errcode:
            raise WeChatAPIError(errcode, redact(str(reply.get("errmsg", "")), token), path)
        return reply

    def _replacement(self, rejected: str, errcode: int, errmsg: str, path: str) -> str:
        """A token other than ``rejected``: from the table, or from a passive refresh."""
        reader = self.reader
        fresh = reader.refetch(self.app_id, ACCESS_TOKEN)
        if fresh != rejected:
            return fresh
        if self._passive is None:
            raise WeChatAPIError(
                errcode,
                f"{errmsg} (WeChat rejected the stored token and this consumer may not request "
                f"a passive refresh: set {PASSIVE_FUNCTION_ENV} and allow lambda:InvokeFunction "
                "on the PassiveRefreshFunction)",
                path,
            )
        key = CredentialKey(self.app_id, ACCESS_TOKEN)
        backoff = reader.backoff
        # One passive request per credential per process; the other threads wait for it.
        with _flight(key):
            fresh = reader.refetch(self.app_id, ACCESS_TOKEN)
            if fresh != rejected:
                return fresh
            now = reader.clock()
            outcome = backoff.ask(self._passive, key, fingerprint(rejected), errcode, now)
            if outcome == "token_accepted":
                raise WeChatAPIError(
                    errcode,
                    f"{errmsg} (the refresher checked: WeChat still accepts the stored token, "
                    "so this rejection is not the token's; check the request itself)",
                    path,
                )
            if outcome in REPLACED_OUTCOMES:
                replacement = self._wait_for_replacement(rejected, outcome)
                if replacement is not None:
                    return replacement
                backoff.hold(key, now, f"the table still held the rejected token after {outcome!r}")
            raise PassiveRefreshError(
                f"WeChat rejected the token for {self.app_id} ({errcode}) and the refresher did "
                f"not replace it (outcome: {outcome}); check the passive refresh function's logs",
                outcome=outcome,
            )

    def _wait_for_replacement(self, rejected: str, outcome: str) -> str | None:
        """The new token once the table holds one; None if it did not within the wait."""
        deadline = time.monotonic() + self._wait_seconds
        while True:
            fresh = self.reader.refetch(self.app_id, ACCESS_TOKEN)
            if fresh != rejected:
                return fresh
            # A held lease or a replacement not yet visible: worth waiting for. A refresh
            # that answered "refreshed" is already in the table: no point in polling.
            if outcome == "refreshed" or time.monotonic() >= deadline:
                return None
            self._sleep(0.2)

    def _send(
        self, method: str, path: str, token: str, params: dict[str, Any] | None, body: Any
    ) -> dict[str, Any]:
        import httpx  # noqa: PLC0415 - only consumers that call WeChat pay for httpx

        if not self._quieted:  # httpx logs every URL at INFO, and the URL holds the token
            quiet_http_loggers()
            self._quieted = True
        if self._http is None:
            self._http = httpx.Client(timeout=self._timeout, follow_redirects=False)
        query = {**(params or {}), "access_token": token}
        content = None
        headers = {}
        if body is not None:
            # WeChat wants UTF-8 JSON with Chinese unescaped (ensure_ascii would garble some APIs).
            content = json.dumps(body, ensure_ascii=False).encode()
            headers["Content-Type"] = "application/json; charset=utf-8"
        failure: str | None = None
        try:
            response = self._http.request(
                method, self.base_url + path, params=query, content=content, headers=headers
            )
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            # httpx's errors quote the URL, and the URL holds the token: the message is
            # redacted here and raised below, with no exception attached.
            failure = f"{type(exc).__name__} calling WeChat {path}: {redact(str(exc), token)}"
        if failure is not None:
            raise WeChatTransportError(failure)
        if response.status_code >= 500:
            raise WeChatTransportError(f"WeChat {path} answered HTTP {response.status_code}")
        reply: Any = _NOT_JSON
        with contextlib.suppress(ValueError):  # the decode error quotes the body: not kept
            reply = response.json()
        if reply is _NOT_JSON:
            raise WeChatTransportError(
                f"WeChat {path} answered HTTP {response.status_code} with a body that is not JSON"
            )
        if not isinstance(reply, dict):
            raise WeChatTransportError(f"WeChat {path} answered JSON that is not an object")
        return reply


def _base_url_from_env() -> str:
    return env_url(process_env(), API_BASE_URL_ENV, DEFAULT_BASE_URL)


def _errcode(reply: dict[str, Any]) -> int:
    errcode = reply.get("errcode", 0)
    return errcode if isinstance(errcode, int) and not isinstance(errcode, bool) else -2
