"""WeChat's credential endpoints: one attempt per call, errors classified, nothing leaked.

Each method makes exactly one HTTP request; retrying is the caller's decision (see
``retry.py``), so that every attempt is counted against the daily budget.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from wechat_token.redaction import redact

from .errors import GarbledReplyError, TransportError, wechat_error
from .registry import STABLE, WECOM, AppConfig

MAX_VALUE_LENGTH = 512
MAX_EXPIRES_IN = 7200


@dataclass(frozen=True, slots=True)
class FetchedCredential:
    """A credential WeChat just issued. ``repr`` never shows the value or refresh token."""

    value: str = field(repr=False)
    expires_in: int
    sent_at: float
    source: str
    # An authorizer's token comes with the refresh token to use next time (maybe new).
    refresh_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class ListedAuthorizer:
    """One entry of api_get_authorizer_list. ``repr`` never shows the refresh token."""

    authorizer_appid: str
    refresh_token: str = field(repr=False)
    auth_time: float


COMPONENT_PATH = "/cgi-bin/component/"


class WeChatTokenAPI:
    """The token and ticket endpoints of WeChat and WeCom."""

    def __init__(
        self,
        *,
        wechat_base_url: str,
        wecom_base_url: str,
        timeout_seconds: float,
        clock: Callable[[], float],
        http: httpx.Client | None = None,
    ) -> None:
        self._wechat = wechat_base_url.rstrip("/")
        self._wecom = wecom_base_url.rstrip("/")
        self._clock = clock
        self._http = http or httpx.Client(
            timeout=httpx.Timeout(timeout_seconds, connect=min(3.0, timeout_seconds)),
            follow_redirects=False,
            headers={"User-Agent": "wechat-token-refresher"},
        )

    def fetch_token(self, app: AppConfig, *, force: bool = False) -> FetchedCredential:
        """One attempt at a new access_token for the app, by the endpoint its type uses."""
        if app.type == STABLE:
            path = "/cgi-bin/stable_token"
            body = {
                "grant_type": "client_credential",
                "appid": app.appid,
                "secret": app.secret,
                "force_refresh": force,
            }
            request = self._http.build_request("POST", self._wechat + path, json=body)
        elif app.type == WECOM:
            path = "/cgi-bin/gettoken"
            params = {"corpid": app.appid, "corpsecret": app.secret}
            request = self._http.build_request("GET", self._wecom + path, params=params)
        else:
            path = "/cgi-bin/token"
            params = {"grant_type": "client_credential", "appid": app.appid, "secret": app.secret}
            request = self._http.build_request("GET", self._wechat + path, params=params)
        sent_at = self._clock()
        reply = self._send(request, app, path)
        return FetchedCredential(
            value=_value(reply, "access_token", app, path),
            expires_in=_expires_in(reply, app, path),
            sent_at=sent_at,
            source=path,
        )

    def fetch_ticket(
        self, app: AppConfig, access_token: str, ticket_type: str
    ) -> FetchedCredential:
        """One attempt at a JS-SDK ticket, fetched with (and bound to) ``access_token``."""
        if app.type == WECOM:
            if ticket_type == "agent_config":
                path, params = "/cgi-bin/ticket/get", {"type": "agent_config"}
            else:
                path, params = "/cgi-bin/get_jsapi_ticket", {}
            base = self._wecom
        else:
            path, params, base = "/cgi-bin/ticket/getticket", {"type": ticket_type}, self._wechat
        params["access_token"] = access_token
        request = self._http.build_request("GET", base + path, params=params)
        sent_at = self._clock()
        reply = self._send(request, app, path, access_token)
        return FetchedCredential(
            value=_value(reply, "ticket", app, path),
            expires_in=_expires_in(reply, app, path),
            sent_at=sent_at,
            source=path,
        )

    def probe(self, app: AppConfig, access_token: str) -> int:
        """Ask a cheap business API whether WeChat still accepts the token: its errcode (0 = ok).

        The call is outside the token quota; a 40001 on a token we still consider valid
        means someone else fetched a token for this app.
        """
        base = self._wecom if app.type == WECOM else self._wechat
        path = "/cgi-bin/get_api_domain_ip"
        request = self._http.build_request(
            "GET", base + path, params={"access_token": access_token}
        )
        reply = self._send(request, app, path, access_token, raise_errcode=False)
        errcode = reply.get("errcode", 0)
        return errcode if isinstance(errcode, int) else -1

    # -- third-party platforms (their component token goes in the query, newer pages call
    # the parameter access_token, older ones component_access_token: WeChat takes both) --

    def fetch_component_token(self, app: AppConfig, ticket: str) -> FetchedCredential:
        """One attempt at the component_access_token, with a valid verify ticket."""
        body = {
            "component_appid": app.appid,
            "component_appsecret": app.secret,
            "component_verify_ticket": ticket,
        }
        return self._component_credential(
            app, "api_component_token", None, body, "component_access_token", ticket
        )

    def start_push_ticket(self, app: AppConfig) -> None:
        """Ask WeChat to push a verify ticket again (when none valid is stored)."""
        body = {"component_appid": app.appid, "component_secret": app.secret}
        self._component_call(app, "api_start_push_ticket", None, body)

    def query_auth(
        self, component: AppConfig, component_token: str, code: str
    ) -> tuple[str, FetchedCredential]:
        """Exchange an authorization code: (authorizer appid, its token and refresh token)."""
        body = {"component_appid": component.appid, "authorization_code": code}
        sent_at = self._clock()
        reply = self._component_call(component, "api_query_auth", component_token, body, code)
        info = reply.get("authorization_info")
        path = COMPONENT_PATH + "api_query_auth"
        if not isinstance(info, dict) or not isinstance(info.get("authorizer_appid"), str):
            raise GarbledReplyError(
                f"WeChat {path} reply for {component.app_id!r} has no authorization_info; "
                "nothing was stored"
            )
        return info["authorizer_appid"], FetchedCredential(
            value=_value(info, "authorizer_access_token", component, path),
            expires_in=_expires_in(info, component, path),
            sent_at=sent_at,
            source=path,
            refresh_token=_value(info, "authorizer_refresh_token", component, path),
        )

    def fetch_authorizer_token(
        self, authorizer: AppConfig, component_token: str, refresh_token: str
    ) -> FetchedCredential:
        """One attempt at an authorizer's token with its refresh token."""
        component = authorizer.component
        assert component is not None
        body = {
            "component_appid": component.appid,
            "authorizer_appid": authorizer.appid,
            "authorizer_refresh_token": refresh_token,
        }
        return self._component_credential(
            authorizer,
            "api_authorizer_token",
            component_token,
            body,
            "authorizer_access_token",
            refresh_token,
        )

    def authorizer_list(
        self, component: AppConfig, component_token: str, offset: int, count: int = 500
    ) -> tuple[int, list[ListedAuthorizer]]:
        """One page of api_get_authorizer_list: (total_count, entries)."""
        body = {"component_appid": component.appid, "offset": offset, "count": count}
        reply = self._component_call(component, "api_get_authorizer_list", component_token, body)
        total, entries = reply.get("total_count"), reply.get("list")
        path = COMPONENT_PATH + "api_get_authorizer_list"
        if not isinstance(total, int) or not isinstance(entries, list):
            raise GarbledReplyError(
                f"WeChat {path} reply for {component.app_id!r} has no total_count and list"
            )
        listed = []
        for entry in entries:
            if not isinstance(entry, dict):
                continue
            appid, token = entry.get("authorizer_appid"), entry.get("refresh_token")
            if isinstance(appid, str) and appid and isinstance(token, str) and token:
                auth_time = entry.get("auth_time")
                when = float(auth_time) if isinstance(auth_time, int | float) else 0.0
                listed.append(ListedAuthorizer(appid, token, when))
        return total, listed

    def _component_call(
        self,
        app: AppConfig,
        name: str,
        component_token: str | None,
        body: dict[str, Any],
        *secrets: str,
    ) -> dict[str, Any]:
        path = COMPONENT_PATH + name
        params = {} if component_token is None else {"component_access_token": component_token}
        request = self._http.build_request("POST", self._wechat + path, params=params, json=body)
        hidden = (*secrets, *(() if component_token is None else (component_token,)))
        return self._send(request, app, path, *hidden)

    def _component_credential(
        self,
        app: AppConfig,
        name: str,
        component_token: str | None,
        body: dict[str, Any],
        field_name: str,
        *secrets: str,
    ) -> FetchedCredential:
        sent_at = self._clock()
        reply = self._component_call(app, name, component_token, body, *secrets)
        path = COMPONENT_PATH + name
        refresh = reply.get("authorizer_refresh_token")
        return FetchedCredential(
            value=_value(reply, field_name, app, path),
            expires_in=_expires_in(reply, app, path),
            sent_at=sent_at,
            source=path,
            refresh_token=refresh if isinstance(refresh, str) and refresh else None,
        )

    def close(self) -> None:
        self._http.close()

    def _send(
        self,
        request: httpx.Request,
        app: AppConfig,
        path: str,
        *extra_secrets: str,
        raise_errcode: bool = True,
    ) -> dict[str, Any]:
        secrets = (app.secret, *extra_secrets)
        failure: str | None = None
        try:
            response = self._http.send(request)
        except httpx.HTTPError as exc:
            failure = f"{type(exc).__name__}: {redact(str(exc), *secrets) or 'no details'}"
        if failure is not None:
            # httpx messages and tracebacks carry the URL, whose query holds the secret: keep
            # a redacted message, raised outside the except block so no chain holds the original.
            raise TransportError(f"{failure} calling WeChat {path} for app {app.app_id!r}")
        if response.status_code >= 500:
            raise TransportError(
                f"WeChat {path} answered HTTP {response.status_code} for app {app.app_id!r}"
            )
        if response.status_code != 200:
            raise GarbledReplyError(
                f"WeChat {path} answered HTTP {response.status_code} for app {app.app_id!r}; "
                "check WECHAT_API_BASE_URL / WECOM_API_BASE_URL; nothing was stored"
            )
        reply = _json(response, app, path)
        if not isinstance(reply, dict):
            raise GarbledReplyError(
                f"WeChat {path} sent JSON that is not an object for app {app.app_id!r}; "
                "nothing was stored"
            )
        errcode = reply.get("errcode", 0)
        if raise_errcode and errcode not in (0, None):
            if not isinstance(errcode, int) or isinstance(errcode, bool):
                raise GarbledReplyError(
                    f"WeChat {path} sent a non-numeric errcode for app {app.app_id!r}; "
                    "nothing was stored"
                )
            errmsg = redact(str(reply.get("errmsg", "")), *secrets)[:200]
            raise wechat_error(
                errcode, f"WeChat {path} refused app {app.app_id!r} with {errcode} ({errmsg})"
            )
        return reply


def _json(response: httpx.Response, app: AppConfig, path: str) -> Any:
    try:
        return json.loads(response.content)
    except (ValueError, UnicodeDecodeError, RecursionError):
        pass
    raise GarbledReplyError(
        f"WeChat {path} sent a reply that is not JSON for app {app.app_id!r} "
        f"({len(response.content)} bytes, content-type "
        f"{response.headers.get('content-type', 'none')!r}); nothing was stored"
    )


def _value(reply: dict[str, Any], name: str, app: AppConfig, path: str) -> str:
    value = reply.get(name)
    if not isinstance(value, str) or not value or len(value) > MAX_VALUE_LENGTH:
        raise GarbledReplyError(
            f"WeChat {path} reply for app {app.app_id!r} has no usable {name!r} "
            f"(expected a string of 1-{MAX_VALUE_LENGTH} characters); nothing was stored"
        )
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        raise GarbledReplyError(
            f"WeChat {path} reply for app {app.app_id!r} has a {name!r} with whitespace or "
            "control characters; nothing was stored"
        )
    return value


def _expires_in(reply: dict[str, Any], app: AppConfig, path: str) -> int:
    expires_in = reply.get("expires_in")
    if (
        isinstance(expires_in, bool)
        or not isinstance(expires_in, int | float)
        or not expires_in >= 1
    ):
        raise GarbledReplyError(
            f"WeChat {path} reply for app {app.app_id!r} has no positive 'expires_in'; "
            "nothing was stored"
        )
    # Never trust a longer life than WeChat documents: a shorter one is always safe.
    return int(min(expires_in, MAX_EXPIRES_IN))
