"""The simulated third-party platform (第三方平台): WeChat's component APIs and pushes.

One :class:`PlatformSimulator` lives in every :class:`simulator.wechat.WeChatSimulator`
as ``sim.platform``; its endpoints are routed by the simulator like the others (same
server clocks, faults, call log and lock). What it does, after
``docs/wechat-token-facts.md`` §8:

- **Verify tickets**: one every ``ticket_interval`` (600 s) of simulated time per
  platform while its pushes run, each different, accepted for ``ticket_lifetime``
  (12 h) after issue. ``deliver_due_pushes()`` POSTs the newest undelivered ticket
  (older undelivered ones are superseded, as the next push would supersede them) and
  every authorization event, encrypted and signed with the platform's Token and
  EncodingAESKey (:mod:`simulator.msgcrypt`), to the platform's callback URL. A push
  is delivered when the answer is HTTP 200 ``success``; an authorization event that
  was not is retried on the next round, ``push_attempts`` times in all.
  ``stop_pushes()`` is an outage of WeChat's pushes; ``api_start_push_ticket`` (or
  ``start_pushes()``) restarts them with a ticket at once.
- **Component token** (``api_component_token``): needs the secret and a ticket less
  than 12 h old (61005 older, 61006 never issued); each call issues a new token, two
  live per platform with the 5-minute grace of classic tokens; ``daily_quota``
  successful calls per WeChat day (45009).
- **Authorization**: ``authorize()`` is a merchant granting the platform access. It
  creates the authorization and its refresh token (kept until revoked), issues an
  authorization code valid ``auth_code_lifetime`` (600 s) for one ``api_query_auth``,
  and queues an ``authorized`` push (``updateauthorized`` when already authorized).
  ``unauthorize()`` revokes the refresh tokens and every authorizer token and queues
  ``unauthorized``.
- **Authorizer tokens** (``api_query_auth``, ``api_authorizer_token``): two live per
  (platform, authorizer), accepted by the business routes like an account's own
  tokens. A refresh sometimes (``refresh_rotation_probability``, seeded; or when
  forced) answers a new refresh token; the one it replaces stays valid for
  ``refresh_overlap`` (300 s); any other refresh token answers 61023.
- ``api_get_authorizer_list`` pages the authorizations (``count`` 1..500);
  ``clear_quota/v2`` resets a platform's (or, with ``appid``, an authorizer's) daily
  count, 10 times per month (48006).

Every component API checks the caller's IP against the platform's whitelist (61004),
as do business calls made with its authorizer tokens. Secrets are kept as salted
hashes; the Token and EncodingAESKey must be kept to encrypt pushes, and no stat,
answer or log entry shows them.
"""

from __future__ import annotations

import ipaddress
import random
import threading
import time as _time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal, TypeGuard

from simulator.msgcrypt import PushKey
from simulator.responses import SimResponse, json_object, json_response
from simulator.tokens import (
    ERRMSG,
    OK,
    HashedSecret,
    Token,
    TokenPool,
    fingerprint,
)

if TYPE_CHECKING:
    import httpx

    from simulator.wechat import WeChatSimulator, _Request

__all__ = [
    "AUTHORIZER_LIST",
    "AUTHORIZER_TOKEN",
    "CLEAR_QUOTA",
    "COMPONENT_ENDPOINTS",
    "COMPONENT_TOKEN",
    "DEFAULT_FUNC_IDS",
    "QUERY_AUTH",
    "START_PUSH_TICKET",
    "AuthorizationGrant",
    "PlatformSimulator",
    "PushDelivery",
]

COMPONENT_TOKEN = "/cgi-bin/component/api_component_token"
START_PUSH_TICKET = "/cgi-bin/component/api_start_push_ticket"
QUERY_AUTH = "/cgi-bin/component/api_query_auth"
AUTHORIZER_TOKEN = "/cgi-bin/component/api_authorizer_token"
AUTHORIZER_LIST = "/cgi-bin/component/api_get_authorizer_list"
CLEAR_QUOTA = "/cgi-bin/component/clear_quota/v2"
COMPONENT_ENDPOINTS = (
    COMPONENT_TOKEN,
    START_PUSH_TICKET,
    QUERY_AUTH,
    AUTHORIZER_TOKEN,
    AUTHORIZER_LIST,
    CLEAR_QUOTA,
)

# 消息管理, 用户管理, 帐号服务, 网页服务, 素材管理, 自定义菜单... (the ids WeChat sends).
DEFAULT_FUNC_IDS = (1, 2, 3, 4, 6, 7, 11, 15)
TICKET_PUSH: Final = "component_verify_ticket"
InfoType = Literal["component_verify_ticket", "authorized", "updateauthorized", "unauthorized"]

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
_TICKETS_KEPT = 2_000  # 13+ days at one ticket per 10 minutes: older ones answer 61006
_DELIVERIES_KEPT = 10_000
_OUTBOX_LIMIT = 1_000
_UTC8 = 8 * 3600

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class AuthorizationGrant:
    """What a merchant's authorization produced: the code WeChat pushes (and hands the
    platform's redirect URI). ``repr()`` hides the code."""

    component_appid: str
    authorizer_appid: str
    info_type: Literal["authorized", "updateauthorized"]
    auth_code: str = field(repr=False)
    expires_at: float


@dataclass(frozen=True, slots=True)
class PushDelivery:
    """One attempt to deliver a push. ``ok`` means HTTP 200 with the body ``success``;
    ``error`` names the transport failure (e.g. ``ConnectError``), if any."""

    time: float
    component_appid: str
    info_type: str
    authorizer_appid: str | None
    attempt: int
    status: int | None
    ok: bool
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able copy."""
        return asdict(self)


@dataclass(slots=True)
class _Push:
    info_type: InfoType
    created_at: float
    xml: str  # the plaintext message (holds the ticket or code)
    authorizer_appid: str | None = None
    attempts: int = 0


@dataclass(slots=True)
class _Code:
    authorizer_appid: str
    expires_at: float


@dataclass(slots=True)
class _Authorization:
    authorizer_appid: str
    auth_time: int
    func_ids: tuple[int, ...]
    refresh_token: str
    active: bool = True
    previous_refresh: str | None = None
    previous_until: float = 0.0
    rotate_next: bool = False
    rotations: int = 0
    pool: TokenPool = field(default_factory=TokenPool)
    tickets: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class _Component:
    appid: str
    secret: HashedSecret
    key: PushKey
    callback_url: str | None
    allowed: tuple[_Network, ...] | None
    daily_quota: int
    next_ticket_at: float
    pushing: bool = True
    tickets: OrderedDict[str, float] = field(default_factory=OrderedDict)
    tickets_issued: int = 0
    tickets_superseded: int = 0
    pool: TokenPool = field(default_factory=TokenPool)
    outbox: deque[_Push] = field(default_factory=deque)
    authorizations: dict[str, _Authorization] = field(default_factory=dict)
    codes: dict[str, _Code] = field(default_factory=dict)
    reset_month: int = -1
    resets: int = 0

    def ip_allowed(self, ip: str) -> bool:
        if self.allowed is None:
            return True
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(addr in net for net in self.allowed)


class PlatformSimulator:
    """WeChat's third-party platform side of a :class:`WeChatSimulator` (``sim.platform``).

    Tunable limits (plain attributes): ``ticket_interval`` (600 s), ``ticket_lifetime``
    (43 200 s), ``auth_code_lifetime`` (600 s), ``refresh_overlap`` (300 s),
    ``refresh_rotation_probability`` (0.1), ``authorizer_token_daily_quota`` (2000; the
    real number is unpublished), ``quota_resets_per_month`` (10), ``push_attempts``
    (3), ``push_timeout`` (5 s, WeChat's limit for the answer). ``push_client`` (an
    ``httpx.Client``) delivers pushes when ``deliver_due_pushes`` is given none.
    """

    def __init__(self, host: WeChatSimulator, seed: int) -> None:
        self._host = host
        self._rng = random.Random(f"{seed}:platform")
        self._rotation_rng = random.Random(f"{seed}:refresh-rotation")
        self._components: dict[str, _Component] = {}
        self._deliveries: deque[PushDelivery] = deque(maxlen=_DELIVERIES_KEPT)
        self._deliver_lock = threading.Lock()
        self.ticket_interval = 600.0
        self.ticket_lifetime = 43_200.0
        self.auth_code_lifetime = 600.0
        self.refresh_overlap = 300.0
        self.refresh_rotation_probability = 0.1
        self.authorizer_token_daily_quota = 2000
        self.quota_resets_per_month = 10
        self.push_attempts = 3
        self.push_timeout = 5.0
        self.push_client: httpx.Client | None = None

    def routes(self) -> dict[str, Callable[[_Request], SimResponse]]:
        """The component endpoints, for the simulator's router."""
        return {
            COMPONENT_TOKEN: self._component_token,
            START_PUSH_TICKET: self._start_push_ticket,
            QUERY_AUTH: self._query_auth,
            AUTHORIZER_TOKEN: self._authorizer_token,
            AUTHORIZER_LIST: self._authorizer_list,
            CLEAR_QUOTA: self._clear_quota,
        }

    # ------------------------------------------------------------------ setup

    def add_component(
        self,
        component_appid: str,
        component_appsecret: str,
        token: str,
        encoding_aes_key: str,
        callback_url: str | None = None,
        *,
        allowed_ips: Iterable[str] | None = None,
        daily_quota: int | None = None,
    ) -> None:
        """Register (or re-register, keeping its state) a third-party platform.

        ``token`` and ``encoding_aes_key`` are its message-check Token and EncodingAESKey;
        ``callback_url`` its authorization-event URL (授权事件接收URL). The first ticket
        is due at once. ``allowed_ips`` turns on its IP whitelist; ``daily_quota`` is its
        ``api_component_token`` limit (default: the simulator's ``daily_quota``).
        """
        if not component_appid or not component_appsecret:
            raise ValueError("component_appid and component_appsecret are required")
        key = PushKey(token, encoding_aes_key)
        allowed = None
        if allowed_ips is not None:
            allowed = tuple(ipaddress.ip_network(ip, strict=False) for ip in allowed_ips)
        host = self._host
        quota = host.daily_quota if daily_quota is None else int(daily_quota)
        secret = HashedSecret.of(component_appsecret)
        with host._lock:
            comp = self._components.get(component_appid)
            if comp is None:
                self._components[component_appid] = _Component(
                    component_appid,
                    secret,
                    key,
                    callback_url,
                    allowed,
                    quota,
                    next_ticket_at=host.clock.now(),
                )
                return
            comp.secret, comp.key, comp.callback_url = secret, key, callback_url
            comp.allowed, comp.daily_quota = allowed, quota

    def set_callback_url(self, component_appid: str, url: str | None) -> None:
        """Point a platform's pushes at ``url`` (None: keep them queued)."""
        with self._host._lock:
            self._component(component_appid).callback_url = url

    def stop_pushes(self, component_appid: str) -> None:
        """WeChat stops pushing this platform's tickets (an outage): none is issued
        until :meth:`start_pushes` or ``api_start_push_ticket``."""
        with self._host._lock:
            comp = self._component(component_appid)
            self._catch_up(comp, self._host.clock.now())
            comp.pushing = False

    def start_pushes(self, component_appid: str) -> None:
        """Resume the ticket pushes, with a new ticket at once (what
        ``api_start_push_ticket`` does)."""
        with self._host._lock:
            comp = self._component(component_appid)
            now = self._host.clock.now()
            self._catch_up(comp, now)
            self._restart(comp, now)

    # ---------------------------------------------------------- authorization

    def authorize(
        self,
        component_appid: str,
        authorizer_appid: str,
        *,
        func_ids: Iterable[int] | None = None,
    ) -> AuthorizationGrant:
        """A merchant authorizes the platform (or changes what it granted): a new code,
        valid ``auth_code_lifetime`` for one ``api_query_auth``, and an ``authorized``
        (first or renewed after a revocation) or ``updateauthorized`` push."""
        if not authorizer_appid:
            raise ValueError("authorizer_appid is required")
        host = self._host
        with host._lock:
            comp = self._component(component_appid)
            now = host.clock.now()
            self._catch_up(comp, now)
            auth = comp.authorizations.get(authorizer_appid)
            funcs = tuple(DEFAULT_FUNC_IDS if func_ids is None else (int(f) for f in func_ids))
            info_type: Literal["authorized", "updateauthorized"] = "updateauthorized"
            if auth is None or not auth.active:
                info_type = "authorized"
                refresh = self._mint("refreshtoken@@@", 43)
                fresh = _Authorization(authorizer_appid, int(now), funcs, refresh)
                if auth is not None:
                    fresh.pool, fresh.tickets = auth.pool, auth.tickets
                auth = comp.authorizations[authorizer_appid] = fresh
            auth.func_ids = funcs
            for stale in [c for c, v in comp.codes.items() if v.expires_at <= now]:
                del comp.codes[stale]
            code = self._mint("queryauthcode@@@", 86)
            expires_at = now + self.auth_code_lifetime
            comp.codes[code] = _Code(authorizer_appid, expires_at)
            xml = (
                f"<xml><AppId><![CDATA[{comp.appid}]]></AppId><CreateTime>{int(now)}</CreateTime>"
                f"<InfoType><![CDATA[{info_type}]]></InfoType>"
                f"<AuthorizerAppid><![CDATA[{authorizer_appid}]]></AuthorizerAppid>"
                f"<AuthorizationCode><![CDATA[{code}]]></AuthorizationCode>"
                f"<AuthorizationCodeExpiredTime>{int(expires_at)}</AuthorizationCodeExpiredTime>"
                f"<PreAuthCode><![CDATA[{self._mint('preauthcode@@@', 43)}]]></PreAuthCode></xml>"
            )
            self._queue(comp, _Push(info_type, now, xml, authorizer_appid))
            return AuthorizationGrant(comp.appid, authorizer_appid, info_type, code, expires_at)

    def unauthorize(self, component_appid: str, authorizer_appid: str) -> bool:
        """The merchant revokes the authorization: its refresh tokens, codes and
        authorizer tokens die at once and an ``unauthorized`` push is queued. False
        when it was not authorized."""
        host = self._host
        with host._lock:
            comp = self._component(component_appid)
            now = host.clock.now()
            self._catch_up(comp, now)
            auth = comp.authorizations.get(authorizer_appid)
            if auth is None or not auth.active:
                return False
            auth.active = False
            auth.previous_refresh = None
            for token in list(auth.pool.live):
                token.revoked = True
                host._drop_from_pool(auth.pool, token)
            auth.pool.invalidated += 1
            for code in [
                c for c, v in comp.codes.items() if v.authorizer_appid == authorizer_appid
            ]:
                del comp.codes[code]
            xml = (
                f"<xml><AppId><![CDATA[{comp.appid}]]></AppId><CreateTime>{int(now)}</CreateTime>"
                "<InfoType><![CDATA[unauthorized]]></InfoType>"
                f"<AuthorizerAppid><![CDATA[{authorizer_appid}]]></AuthorizerAppid></xml>"
            )
            self._queue(comp, _Push("unauthorized", now, xml, authorizer_appid))
            return True

    def force_refresh_token_rotation(self, component_appid: str, authorizer_appid: str) -> None:
        """Make the next successful ``api_authorizer_token`` answer a new refresh token."""
        with self._host._lock:
            self._authorization(component_appid, authorizer_appid).rotate_next = True

    # ------------------------------------------------------------- inspection

    def current_verify_ticket(self, component_appid: str) -> str | None:
        """The newest ticket issued (delivered or not), None before the first."""
        with self._host._lock:
            comp = self._component(component_appid)
            self._catch_up(comp, self._host.clock.now())
            return next(reversed(comp.tickets), None)

    def verify_ticket_status(self, component_appid: str, ticket: str) -> int:
        """0 for a ticket ``api_component_token`` accepts now, 61005 expired, 61006 invalid."""
        with self._host._lock:
            comp = self._component(component_appid)
            now = self._host.clock.now()
            self._catch_up(comp, now)
            return self._ticket_status(comp, ticket, now)

    def current_component_token(self, component_appid: str) -> str | None:
        """The platform's newest component_access_token."""
        with self._host._lock:
            current = self._component(component_appid).pool.current()
            return current.value if current else None

    def current_authorizer_token(self, component_appid: str, authorizer_appid: str) -> str | None:
        """The newest authorizer_access_token the platform holds for an authorizer."""
        with self._host._lock:
            current = self._authorization(component_appid, authorizer_appid).pool.current()
            return current.value if current else None

    def refresh_tokens(self, component_appid: str, authorizer_appid: str) -> list[str]:
        """The refresh tokens accepted now: the current one, then one in its overlap."""
        with self._host._lock:
            auth = self._authorization(component_appid, authorizer_appid)
            if not auth.active:
                return []
            tokens = [auth.refresh_token]
            if auth.previous_refresh and self._host.clock.now() < auth.previous_until:
                tokens.append(auth.previous_refresh)
            return tokens

    def component_token_status(self, token: str, *, server: int | None = None) -> int:
        """The errcode a component API would give ``token`` now (0 = accepted)."""
        host = self._host
        with host._lock:
            offset = 0.0 if server is None else host.server_offsets[server]
            return host._check(token, host.clock.now() + offset, "component")[0]

    def pending_pushes(self, component_appid: str) -> list[str]:
        """The InfoTypes queued for a platform, oldest first (ticket pushes that are
        due are issued first)."""
        with self._host._lock:
            comp = self._component(component_appid)
            self._catch_up(comp, self._host.clock.now())
            return [push.info_type for push in comp.outbox]

    def deliveries(self) -> list[PushDelivery]:
        """Every delivery attempt so far (bounded), oldest first."""
        with self._host._lock:
            return list(self._deliveries)

    def stats(self) -> dict[str, Any]:
        """Per-platform state as counters and fingerprints (JSON-able)."""
        host = self._host
        with host._lock:
            now = host.clock.now()
            result: dict[str, Any] = {}
            for appid, comp in self._components.items():
                self._catch_up(comp, now)
                comp.pool.roll(now)
                current = next(reversed(comp.tickets), None)
                result[appid] = {
                    "pushing": comp.pushing,
                    "callback_url": comp.callback_url,
                    "next_ticket_at": comp.next_ticket_at if comp.pushing else None,
                    "tickets_issued": comp.tickets_issued,
                    "tickets_superseded": comp.tickets_superseded,
                    "current_ticket_fp": fingerprint(current) if current else None,
                    "pending_pushes": [p.info_type for p in comp.outbox],
                    "tokens_issued": comp.pool.issued,
                    "quota_used_today": comp.pool.day_calls,
                    "daily_quota": comp.daily_quota,
                    "live_token_fps": [t.fp for t in comp.pool.live],
                    "quota_resets_this_month": comp.resets,
                    "ip_whitelist": None
                    if comp.allowed is None
                    else [str(n) for n in comp.allowed],
                    "authorizers": {
                        a.authorizer_appid: self._auth_stats(a, now)
                        for a in comp.authorizations.values()
                    },
                }
            deliveries = list(self._deliveries)
            return {
                "components": result,
                "deliveries": len(deliveries),
                "deliveries_ok": sum(1 for d in deliveries if d.ok),
                "recent_deliveries": [d.to_dict() for d in deliveries[-20:]],
            }

    # ----------------------------------------------------------------- pushes

    def deliver_due_pushes(self, client: httpx.Client | None = None) -> list[PushDelivery]:
        """POST every due push to its platform's callback URL and return the attempts.

        Uses ``client``, else ``push_client``, else a client of its own with
        ``push_timeout``. No simulator lock is held while a push is in flight, so the
        callback may call the simulator. One round runs at a time.
        """
        with self._deliver_lock:
            batch = self._take_due()
            if not batch:
                return []
            own = None
            http = client or self.push_client
            if http is None:
                import httpx  # noqa: PLC0415 - only simulations with pushes pay for httpx

                http = own = httpx.Client(timeout=self.push_timeout)
            results: list[PushDelivery] = []
            try:
                for comp_appid, url, push, params, body in batch:
                    results.append(self._post(http, comp_appid, url, push, params, body))
            finally:
                if own is not None:
                    own.close()
                self._settle(batch, results)
            return results

    def _take_due(self) -> list[tuple[str, str, _Push, dict[str, str], str]]:
        host = self._host
        batch = []
        with host._lock:
            now = host.clock.now()
            for comp in self._components.values():
                self._catch_up(comp, now)
                if comp.callback_url is None:
                    continue
                while comp.outbox:
                    push = comp.outbox.popleft()
                    push.attempts += 1
                    params, body = self._render(comp, push, now)
                    batch.append((comp.appid, comp.callback_url, push, params, body))
        return batch

    def _render(self, comp: _Component, push: _Push, now: float) -> tuple[dict[str, str], str]:
        timestamp = str(int(now))
        nonce = str(self._rng.randrange(10**9, 10**10))
        encrypt = comp.key.seal(comp.appid, push.xml, self._rng.randbytes(16))
        params = {
            "signature": comp.key.plain_sign(timestamp, nonce),
            "timestamp": timestamp,
            "nonce": nonce,
            "encrypt_type": "aes",
            "msg_signature": comp.key.sign(timestamp, nonce, encrypt),
        }
        body = (
            f"<xml><AppId><![CDATA[{comp.appid}]]></AppId>"
            f"<Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
        )
        return params, body

    def _post(
        self,
        http: httpx.Client,
        comp_appid: str,
        url: str,
        push: _Push,
        params: dict[str, str],
        body: str,
    ) -> PushDelivery:
        import httpx  # noqa: PLC0415

        status: int | None = None
        ok = False
        error: str | None = None
        try:
            answer = http.post(
                url,
                params=params,
                content=body.encode(),
                headers={"Content-Type": "text/xml; charset=utf-8"},
                timeout=self.push_timeout,
            )
            status = answer.status_code
            ok = status == 200 and answer.content.strip() == b"success"
        except httpx.HTTPError as exc:
            error = type(exc).__name__
        return PushDelivery(
            self._host.clock.now(),
            comp_appid,
            push.info_type,
            push.authorizer_appid,
            push.attempts,
            status,
            ok,
            error,
        )

    def _settle(
        self,
        batch: list[tuple[str, str, _Push, dict[str, str], str]],
        results: list[PushDelivery],
    ) -> None:
        """Record the attempts; requeue authorization events that failed (or were not
        tried because a callback raised) while attempts remain."""
        with self._host._lock:
            self._deliveries.extend(results)
            retry: dict[str, list[_Push]] = {}
            for index, (comp_appid, _, push, _, _) in enumerate(batch):
                if index < len(results):
                    # A ticket push is not retried: the next one supersedes it anyway.
                    if results[index].ok or push.info_type == TICKET_PUSH:
                        continue
                    if push.attempts >= self.push_attempts:
                        continue
                else:
                    push.attempts -= 1  # never sent: an earlier callback raised
                retry.setdefault(comp_appid, []).append(push)
            for comp_appid, pushes in retry.items():
                comp = self._components.get(comp_appid)
                if comp is None:
                    continue
                if any(p.info_type == TICKET_PUSH for p in comp.outbox):
                    pushes[:] = [p for p in pushes if p.info_type != TICKET_PUSH]
                comp.outbox.extendleft(reversed(pushes))

    def _queue(self, comp: _Component, push: _Push) -> None:
        if push.info_type == TICKET_PUSH:
            for old in [p for p in comp.outbox if p.info_type == TICKET_PUSH]:
                comp.outbox.remove(old)
                comp.tickets_superseded += 1
        comp.outbox.append(push)
        while len(comp.outbox) > _OUTBOX_LIMIT:
            comp.outbox.popleft()

    # ---------------------------------------------------------------- tickets

    def _catch_up(self, comp: _Component, now: float) -> None:
        """Issue the tickets whose time has come (slots older than a ticket's lifetime
        are skipped: they would be expired already)."""
        if not comp.pushing or comp.next_ticket_at > now:
            return
        interval = self.ticket_interval
        missed = int((now - comp.next_ticket_at) // interval)
        keep = int(self.ticket_lifetime // interval) + 1
        if missed > keep:
            comp.next_ticket_at += (missed - keep) * interval
        while comp.next_ticket_at <= now:
            self._issue_ticket(comp, comp.next_ticket_at)
            comp.next_ticket_at += interval

    def _issue_ticket(self, comp: _Component, at: float) -> None:
        ticket = self._mint("ticket@@@", 86)
        comp.tickets[ticket] = at
        comp.tickets_issued += 1
        while len(comp.tickets) > _TICKETS_KEPT:
            comp.tickets.popitem(last=False)
        xml = (
            f"<xml><AppId><![CDATA[{comp.appid}]]></AppId><CreateTime>{int(at)}</CreateTime>"
            f"<InfoType><![CDATA[{TICKET_PUSH}]]></InfoType>"
            f"<ComponentVerifyTicket><![CDATA[{ticket}]]></ComponentVerifyTicket></xml>"
        )
        self._queue(comp, _Push(TICKET_PUSH, at, xml))

    def _restart(self, comp: _Component, now: float) -> None:
        comp.pushing = True
        comp.next_ticket_at = now
        self._catch_up(comp, now)

    def _ticket_status(self, comp: _Component, ticket: str, now: float) -> int:
        issued_at = comp.tickets.get(ticket)
        if issued_at is None:
            return 61006
        return 61005 if now - issued_at >= self.ticket_lifetime else OK

    # -------------------------------------------------------------- endpoints

    def _component_token(self, req: _Request) -> SimResponse:
        host = self._host
        data = self._post_body(req)
        if isinstance(data, SimResponse):
            return data
        appid = _text(data, "component_appid")
        secret = _text(data, "component_appsecret")
        ticket = _text(data, "component_verify_ticket")
        checked = self._check_secret(req, appid, secret, "component_appsecret")
        if isinstance(checked, SimResponse):
            return checked
        comp = checked
        self._catch_up(comp, req.now)
        status = self._ticket_status(comp, ticket, req.now) if ticket else 61006
        if status:
            message = (
                "component ticket is expired" if status == 61005 else "component ticket is invalid"
            )
            return host._fail(req, status, message, appid=appid)
        pool = comp.pool
        pool.roll(req.now)
        if pool.day_calls >= comp.daily_quota:
            return host._fail(req, 45009, "reach max api daily quota limit", appid=appid)
        pool.day_calls += 1
        token = self._issue(pool, "component", appid, None, req.now)
        host._record(
            req.now, req.server, req.method, req.path, appid, 0, issued=True, token_fp=token.fp
        )
        return json_response(
            {"component_access_token": token.value, "expires_in": host.token_lifetime}
        )

    def _start_push_ticket(self, req: _Request) -> SimResponse:
        data = self._post_body(req)
        if isinstance(data, SimResponse):
            return data
        appid = _text(data, "component_appid")
        checked = self._check_secret(
            req, appid, _text(data, "component_secret"), "component_secret"
        )
        if isinstance(checked, SimResponse):
            return checked
        self._catch_up(checked, req.now)
        self._restart(checked, req.now)
        self._host._record(req.now, req.server, req.method, req.path, appid, 0)
        return json_response({"errcode": 0, "errmsg": "ok"})

    def _query_auth(self, req: _Request) -> SimResponse:
        host = self._host
        checked = self._with_component_token(req)
        if isinstance(checked, SimResponse):
            return checked
        comp, data, token = checked
        code = _text(data, "authorization_code")
        if not code:
            return host._fail(req, 41008, "missing authorization_code", appid=comp.appid)
        grant = comp.codes.pop(code, None)
        auth = comp.authorizations.get(grant.authorizer_appid) if grant else None
        if grant is None or auth is None or not auth.active:
            return host._fail(req, 61009, "code is invalid", appid=comp.appid, token_fp=token.fp)
        if req.now >= grant.expires_at:
            return host._fail(req, 61010, "code is expired", appid=comp.appid, token_fp=token.fp)
        issued = self._issue(auth.pool, "authorizer", auth.authorizer_appid, comp.appid, req.now)
        host._record(
            req.now,
            req.server,
            req.method,
            req.path,
            comp.appid,
            0,
            issued=True,
            token_fp=issued.fp,
            note=auth.authorizer_appid,
        )
        return json_response(
            {
                "authorization_info": {
                    "authorizer_appid": auth.authorizer_appid,
                    "authorizer_access_token": issued.value,
                    "expires_in": host.token_lifetime,
                    "authorizer_refresh_token": auth.refresh_token,
                    "func_info": [{"funcscope_category": {"id": i}} for i in auth.func_ids],
                }
            }
        )

    def _authorizer_token(self, req: _Request) -> SimResponse:
        host = self._host
        checked = self._with_component_token(req)
        if isinstance(checked, SimResponse):
            return checked
        comp, data, _ = checked
        authorizer = _text(data, "authorizer_appid")
        refresh = _text(data, "authorizer_refresh_token")
        if not authorizer:
            return host._fail(req, 41002, "authorizer_appid missing", appid=comp.appid)
        auth = comp.authorizations.get(authorizer)
        if auth is None:
            message = "component is not authorized by this account"
            return host._fail(req, 61003, message, appid=comp.appid, note=authorizer)
        current = refresh == auth.refresh_token
        overlapping = refresh == auth.previous_refresh and req.now < auth.previous_until
        if not auth.active or not refresh or not (current or overlapping):
            return host._fail(
                req, 61023, "refresh_token is invalid", appid=comp.appid, note=authorizer
            )
        pool = auth.pool
        pool.roll(req.now)
        if pool.day_calls >= self.authorizer_token_daily_quota:
            return host._fail(
                req, 45009, "reach max api daily quota limit", appid=comp.appid, note=authorizer
            )
        pool.day_calls += 1
        draw = self._rotation_rng.random()
        rotated = auth.rotate_next or draw < self.refresh_rotation_probability
        if rotated:
            auth.previous_refresh, auth.previous_until = (
                auth.refresh_token,
                req.now + self.refresh_overlap,
            )
            auth.refresh_token = self._mint("refreshtoken@@@", 43)
            auth.rotate_next = False
            auth.rotations += 1
        issued = self._issue(pool, "authorizer", authorizer, comp.appid, req.now)
        host._record(
            req.now,
            req.server,
            req.method,
            req.path,
            comp.appid,
            0,
            issued=True,
            token_fp=issued.fp,
            note=f"{authorizer} refresh_rotated" if rotated else authorizer,
        )
        return json_response(
            {
                "authorizer_access_token": issued.value,
                "expires_in": host.token_lifetime,
                "authorizer_refresh_token": auth.refresh_token,
            }
        )

    def _authorizer_list(self, req: _Request) -> SimResponse:
        host = self._host
        checked = self._with_component_token(req)
        if isinstance(checked, SimResponse):
            return checked
        comp, data, token = checked
        offset, count = data.get("offset", 0), data.get("count")
        if not (_is_int(offset) and _is_int(count) and offset >= 0 and 1 <= count <= 500):
            return host._fail(req, 40097, "invalid args", appid=comp.appid, token_fp=token.fp)
        active = sorted(
            (a for a in comp.authorizations.values() if a.active),
            key=lambda a: (a.auth_time, a.authorizer_appid),
        )
        page = active[offset : offset + count]
        host._record(req.now, req.server, req.method, req.path, comp.appid, 0, token_fp=token.fp)
        return json_response(
            {
                "total_count": len(active),
                "list": [
                    {
                        "authorizer_appid": a.authorizer_appid,
                        "refresh_token": a.refresh_token,
                        "auth_time": a.auth_time,
                    }
                    for a in page
                ],
            }
        )

    def _clear_quota(self, req: _Request) -> SimResponse:
        host = self._host
        data = self._post_body(req)
        if isinstance(data, SimResponse):
            return data
        appid = _text(data, "component_appid")
        checked = self._check_secret(req, appid, _text(data, "appsecret"), "appsecret")
        if isinstance(checked, SimResponse):
            return checked
        comp = checked
        target = _text(data, "appid")
        auth = comp.authorizations.get(target) if target else None
        if target and auth is None:
            message = "component is not authorized by this account"
            return host._fail(req, 61003, message, appid=appid, note=target)
        month = _wechat_month(req.now)
        if comp.reset_month != month:
            comp.reset_month, comp.resets = month, 0
        if comp.resets >= self.quota_resets_per_month:
            message = "forbid to clear quota because of reaching the limit"
            return host._fail(req, 48006, message, appid=appid)
        comp.resets += 1
        pool = auth.pool if auth is not None else comp.pool
        pool.roll(req.now)
        pool.day_calls = 0
        host._record(req.now, req.server, req.method, req.path, appid, 0, note=target or None)
        return json_response({"errcode": 0, "errmsg": "ok"})

    # ------------------------------------------------------ shared checks

    def _post_body(self, req: _Request) -> dict[str, Any] | SimResponse:
        if req.method != "POST":
            return self._host._fail(req, 43002, "require POST method", appid=None)
        data = json_object(req.body)
        if data is None:
            return self._host._fail(req, 47001, "data format error", appid=None)
        return data

    def _check_secret(
        self, req: _Request, appid: str, secret: str, name: str
    ) -> _Component | SimResponse:
        host = self._host
        if not appid:
            return host._fail(req, 41002, "component_appid missing", appid=None)
        if not secret:
            return host._fail(req, 41004, f"{name} missing", appid=appid)
        comp = self._components.get(appid)
        if comp is None:
            return host._fail(req, 61011, "invalid component", appid=appid)
        if not comp.secret.matches(secret):
            return host._fail(req, 40125, "invalid appsecret", appid=appid)
        if not comp.ip_allowed(req.client_ip):
            return self._ip_refused(req, appid)
        return comp

    def _with_component_token(  # noqa: PLR0911 - one return per WeChat error code
        self, req: _Request
    ) -> tuple[_Component, dict[str, Any], Token] | SimResponse:
        """The checks of the APIs called with ``?component_access_token=`` (or the newer
        ``?access_token=``): POST, the token, the body's component_appid, the IP."""
        host = self._host
        if req.method != "POST":
            return host._fail(req, 43002, "require POST method", appid=None)
        value = req.query.get("component_access_token") or req.query.get("access_token", "")
        if not value:
            return host._fail(req, 41001, "access_token missing", appid=None)
        code, token = host._check(value, req.now + req.offset, "component")
        fp = token.fp if token else None
        if code or token is None:
            owner = token.owner if token else None
            return host._fail(req, code, ERRMSG.get(code, ""), appid=owner, token_fp=fp)
        data = json_object(req.body)
        if data is None:
            return host._fail(req, 47001, "data format error", appid=token.owner, token_fp=fp)
        appid = _text(data, "component_appid")
        if not appid:
            return host._fail(req, 41002, "component_appid missing", appid=token.owner, token_fp=fp)
        comp = self._components.get(appid)
        if comp is None or appid != token.owner:
            return host._fail(req, 61011, "invalid component", appid=appid, token_fp=fp)
        if not comp.ip_allowed(req.client_ip):
            return self._ip_refused(req, appid)
        return comp, data, token

    def _ip_refused(self, req: _Request, appid: str | None) -> SimResponse:
        message = f"access clientip is not registered requestIP: {req.client_ip}"
        return self._host._fail(req, 61004, message, appid=appid)

    # ------------------------------------------------ hooks for the simulator

    def appid_hint(self, query: dict[str, str], body: bytes) -> str | None:
        """The platform a component request is for (to scope faults)."""
        data = json_object(body)
        appid = data.get("component_appid") if data else None
        if isinstance(appid, str) and appid:
            return appid
        value = query.get("component_access_token") or query.get("access_token") or ""
        token = self._host._tokens.get(value)
        return token.owner if token else None

    def ip_refusal(self, token: Token, ip: str) -> bool:
        """Whether a business call with an authorizer ``token`` from ``ip`` is refused
        by its platform's whitelist."""
        comp = self._components.get(token.component or "")
        return comp is not None and not comp.ip_allowed(ip)

    def ticket_counts(self, token: Token) -> dict[str, int]:
        """The JS-SDK ticket counters of the authorizer that ``token`` belongs to."""
        comp = self._components[token.component or ""]
        return comp.authorizations[token.owner].tickets

    # ------------------------------------------------------------- internals

    def _component(self, component_appid: str) -> _Component:
        comp = self._components.get(component_appid)
        if comp is None:
            raise KeyError(f"unknown component {component_appid!r}")
        return comp

    def _authorization(self, component_appid: str, authorizer_appid: str) -> _Authorization:
        auth = self._component(component_appid).authorizations.get(authorizer_appid)
        if auth is None:
            raise KeyError(f"{authorizer_appid!r} never authorized {component_appid!r}")
        return auth

    def _auth_stats(self, auth: _Authorization, now: float) -> dict[str, Any]:
        auth.pool.roll(now)
        previous = auth.previous_refresh if now < auth.previous_until else None
        return {
            "authorized": auth.active,
            "auth_time": auth.auth_time,
            "func_ids": list(auth.func_ids),
            "refresh_token_fp": fingerprint(auth.refresh_token) if auth.active else None,
            "previous_refresh_token_fp": fingerprint(previous) if previous else None,
            "refresh_rotations": auth.rotations,
            "tokens_issued": auth.pool.issued,
            "token_calls_today": auth.pool.day_calls,
            "live_token_fps": [t.fp for t in auth.pool.live],
            "tickets_issued": dict(auth.tickets),
        }

    def _mint(self, prefix: str, length: int) -> str:
        return prefix + "".join(self._rng.choices(_ALPHABET, k=length))

    def _issue(
        self,
        pool: TokenPool,
        kind: Literal["component", "authorizer"],
        owner: str,
        component: str | None,
        now: float,
    ) -> Token:
        """A new token under the two-live-tokens rule: the current one's expiry becomes
        ``now`` (the grace follows), a third evicts the oldest."""
        host = self._host
        current = pool.current()
        if current is not None:
            current.retired_at = now
        while len(pool.live) >= 2:
            oldest = pool.live[0]
            oldest.evicted = True
            host._drop_from_pool(pool, oldest)
        value = host._mint_value(136, f"{host._token_prefix}_")
        token = Token(
            value,
            fingerprint(value),
            kind,
            owner,
            None,
            now,
            now + host.token_lifetime,
            component=component,
        )
        pool.live.append(token)
        pool.issued += 1
        host._tokens[value] = token
        return token


def _text(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    return value if isinstance(value, str) else ""


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _wechat_month(t: float) -> int:
    moment = _time.gmtime(t + _UTC8)
    return moment.tm_year * 12 + moment.tm_mon
