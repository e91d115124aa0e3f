"""The simulated WeChat (and WeCom) token service: pure logic, no I/O.

:class:`WeChatSimulator` answers requests the way WeChat does, as described in
``docs/wechat-token-facts.md``, not the way any client expects:

- several WeChat servers whose clocks disagree by up to ``skew_seconds``; each
  request lands on one of them at random (seeded), and that server's clock
  judges whether an old or expired token is still accepted, so the 5-minute
  grace is fuzzy as in reality. Tokens are issued by the true clock;
- two classic tokens per app, a 2000/day quota per app counted in WeChat's
  day (UTC+8), a separate stable-token pool with its own rules, WeCom tokens
  per (corpid, agent), tickets bound to the token that fetched them, and a
  business endpoint that validates tokens;
- injected faults, "foreign" refreshers, and a call log for tests.

Every public method is thread-safe (one lock). Secrets are kept only as salted
SHA-256 hashes and never appear in a response, the call log or the stats.
"""

from __future__ import annotations

import ipaddress
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from simulator.calllog import CallLog, CallRecord
from simulator.clock import Clock, SystemClock
from simulator.control import handle_control
from simulator.faults import FAULT_KINDS, Fault, FaultKind
from simulator.platform import COMPONENT_ENDPOINTS, PlatformSimulator
from simulator.ratelimit import (
    MINUTE_QUOTA_ERRCODE,
    MINUTE_QUOTA_ERRMSG,
    WINDOW_SECONDS,
    MinuteLimiter,
    peak_count,
)
from simulator.responses import HTML, JSON, SimResponse, html_page, json_object, json_response
from simulator.tokens import (
    ERRMSG,
    INVALID,
    NEEDS_BIZ_TOKEN,
    NEEDS_COMPONENT_TOKEN,
    OK,
    HashedSecret,
    Pool,
    Token,
    TokenPool,
    fingerprint,
    token_status,
    wechat_day,
)

if TYPE_CHECKING:
    import httpx

__all__ = [
    "BUSINESS_ENDPOINTS",
    "CLASSIC_TOKEN",
    "IP_LIST",
    "LIMITED_ENDPOINTS",
    "MP_TICKET",
    "STABLE_TOKEN",
    "TICKET_ENDPOINTS",
    "TOKEN_ENDPOINTS",
    "WECOM_AGENT_TICKET",
    "WECOM_CORP_TICKET",
    "WECOM_TOKEN",
    "Pool",
    "QuotaExceededError",
    "SimResponse",
    "WeChatSimulator",
    "fingerprint",
    "wechat_day",
]

CLASSIC_TOKEN = "/cgi-bin/token"
STABLE_TOKEN = "/cgi-bin/stable_token"
WECOM_TOKEN = "/cgi-bin/gettoken"
MP_TICKET = "/cgi-bin/ticket/getticket"
WECOM_CORP_TICKET = "/cgi-bin/get_jsapi_ticket"
WECOM_AGENT_TICKET = "/cgi-bin/ticket/get"
BUSINESS_ENDPOINTS = ("/cgi-bin/get_api_domain_ip", "/cgi-bin/getcallbackip")
TOKEN_ENDPOINTS = (CLASSIC_TOKEN, STABLE_TOKEN, WECOM_TOKEN)
TICKET_ENDPOINTS = (MP_TICKET, WECOM_CORP_TICKET, WECOM_AGENT_TICKET)
# What the per-minute limits (and the peak rates) cover: every credential-issuing call.
LIMITED_ENDPOINTS = TOKEN_ENDPOINTS + TICKET_ENDPOINTS + COMPONENT_ENDPOINTS

_WECOM_PATHS = (WECOM_TOKEN, WECOM_CORP_TICKET, WECOM_AGENT_TICKET)

IP_LIST = ("101.226.103.0/25", "101.226.62.0/26", "140.207.54.0/25", "183.3.234.0/25")
# Business answers are built once: consumers make this call all day long.
_MP_IP_BODY = json_response({"ip_list": list(IP_LIST)}).body
_WECOM_IP_BODY = json_response({"errcode": 0, "errmsg": "ok", "ip_list": list(IP_LIST)}).body

_Family = Literal["mp", "wecom", "any", "component"]

_TOKEN_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
_DEAD_TOKENS_KEPT = 100_000  # enough to answer 40001 (not 40014) for a long while
_TICKETS_KEPT = 10_000

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(slots=True)
class _App:
    appid: str
    secret: HashedSecret
    allowed: tuple[_Network, ...] | None
    daily_quota: int
    classic: TokenPool = field(default_factory=TokenPool)
    stable: TokenPool = field(default_factory=TokenPool)
    tickets: dict[str, int] = field(default_factory=dict)

    def ip_allowed(self, ip: str) -> bool:
        if self.allowed is None:
            return True
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(addr in net for net in self.allowed)


@dataclass(slots=True)
class _Agent:
    corpid: str
    agentid: str
    secret: HashedSecret
    pool: TokenPool = field(default_factory=TokenPool)
    tickets: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class _Request:
    server: int
    offset: float
    now: float
    method: str
    path: str
    query: dict[str, str]
    body: bytes
    client_ip: str


class _AnyErrcode:
    """Sentinel: do not filter on errcode."""


_ANY_ERRCODE = _AnyErrcode()


class QuotaExceededError(RuntimeError):
    """A simulated fetch was refused because the app's daily quota is used up."""


class WeChatSimulator:
    """A faithful, deterministic stand-in for WeChat's token APIs.

    ``handle()`` answers one HTTP request; ``transport()`` wraps it for an
    ``httpx.Client``; :class:`simulator.server.SimulatorServer` serves it on
    loopback. Control and inspection helpers are the other public methods.

    ``servers`` WeChat servers get clock offsets drawn (from ``seed``) in
    ``[-skew_seconds, +skew_seconds]``, or exactly ``server_offsets`` if given.
    ``grace_seconds`` is how long a replaced token stays accepted (and how
    early a stable token rotates); ``latency`` (real seconds) is added to
    every request. A wrong secret answers ``wrong_secret_errcode`` (40125, or
    40001 as some WeChat paths do). Business calls are only counted unless
    ``log_business_calls``; the detailed log keeps ``call_log_limit`` records.

    Tunable limits (plain attributes, so a test can lower them):
    ``stable_daily_limit`` (500 000), ``stable_minute_limit`` (10 000 per app per
    clock minute), ``force_refresh_daily_limit`` (20), ``force_refresh_interval`` (30 s).

    ``minute_limits`` (default None: off) turns on WeChat's per-minute frequency
    limits, answered with 45011 (see :mod:`simulator.ratelimit`): keys ``per_app``,
    ``per_component``, ``global`` or an endpoint path, values calls per sliding 60 s
    of the simulator's clock. :meth:`set_minute_limits` replaces them later;
    :meth:`peak_calls_per_minute` / :meth:`peak_calls_per_second` say from the call
    log what rate WeChat saw.
    """

    def __init__(
        self,
        clock: Clock | None = None,
        *,
        servers: int = 3,
        skew_seconds: float = 90.0,
        seed: int = 0,
        daily_quota: int = 2000,
        grace_seconds: float = 300.0,
        token_lifetime: int = 7200,
        latency: float = 0.0,
        server_offsets: Iterable[float] | None = None,
        wrong_secret_errcode: int = 40125,
        log_business_calls: bool = False,
        call_log_limit: int = 1_000_000,
        minute_limits: Mapping[str, int | None] | None = None,
    ) -> None:
        _check_options(servers, skew_seconds, grace_seconds, latency, token_lifetime)
        if wrong_secret_errcode not in (40001, 40125):
            raise ValueError("wrong_secret_errcode must be 40125 or 40001")
        self._lock = threading.RLock()
        self._clock: Clock = clock if clock is not None else SystemClock()
        self.seed = seed
        self.daily_quota = daily_quota
        self.grace_seconds = float(grace_seconds)
        self.token_lifetime = int(token_lifetime)
        self.latency = float(latency)
        self.wrong_secret_errcode = wrong_secret_errcode
        self.log_business_calls = log_business_calls
        self.stable_daily_limit = 500_000
        self.stable_minute_limit = 10_000
        self.force_refresh_daily_limit = 20
        self.force_refresh_interval = 30.0

        setup = random.Random(f"{seed}:servers")
        self._offsets: tuple[float, ...] = _offsets(setup, servers, skew_seconds, server_offsets)
        self._route = random.Random(f"{seed}:route")
        self._mint = random.Random(f"{seed}:tokens")
        self._token_prefix = str(setup.randint(80, 99))

        self._apps: dict[str, _App] = {}
        self._corps: dict[str, dict[str, _Agent]] = {}
        self._tokens: dict[str, Token] = {}
        self._dead: deque[Token] = deque()
        self._ticket_bindings: deque[dict[str, Any]] = deque(maxlen=_TICKETS_KEPT)
        self._faults: list[Fault] = []
        self._faults_triggered: dict[str, int] = dict.fromkeys(FAULT_KINDS, 0)
        self._hang_event = threading.Event()
        self._log = CallLog(limit=call_log_limit)
        self._limiter = MinuteLimiter(
            TOKEN_ENDPOINTS + TICKET_ENDPOINTS, COMPONENT_ENDPOINTS, minute_limits
        )
        self._handlers: dict[str, Callable[[_Request], SimResponse]] = {
            CLASSIC_TOKEN: self._classic_token,
            STABLE_TOKEN: self._stable_token,
            WECOM_TOKEN: self._wecom_token,
            MP_TICKET: self._mp_ticket,
            WECOM_CORP_TICKET: self._wecom_corp_ticket,
            WECOM_AGENT_TICKET: self._wecom_agent_ticket,
        }
        for path in BUSINESS_ENDPOINTS:
            self._handlers[path] = self._business
        # Third-party platforms: component APIs, verify tickets, authorizations, pushes.
        self.platform = PlatformSimulator(self, seed)
        self._handlers.update(self.platform.routes())

    # ------------------------------------------------------------------ setup

    @property
    def clock(self) -> Clock:
        """The clock that issues tokens (the "true" time)."""
        return self._clock

    @property
    def server_offsets(self) -> tuple[float, ...]:
        """Each simulated WeChat server's clock offset from the true clock, in seconds."""
        return self._offsets

    def add_app(
        self,
        appid: str,
        secret: str,
        *,
        allowed_ips: Iterable[str] | None = None,
        daily_quota: int | None = None,
    ) -> None:
        """Register (or re-register, keeping its tokens) an Official Account / Mini Program.

        ``allowed_ips`` (addresses or CIDR ranges) turns on the IP whitelist;
        ``daily_quota`` overrides the simulator's default (200 for test accounts).
        """
        if not appid or not secret:
            raise ValueError("appid and secret are required")
        allowed = None
        if allowed_ips is not None:
            allowed = tuple(ipaddress.ip_network(ip, strict=False) for ip in allowed_ips)
        quota = self.daily_quota if daily_quota is None else int(daily_quota)
        with self._lock:
            old = self._apps.get(appid)
            app = _App(appid, HashedSecret.of(secret), allowed, quota)
            if old is not None:
                app.classic, app.stable, app.tickets = old.classic, old.stable, old.tickets
            self._apps[appid] = app

    def add_wecom_app(self, corpid: str, agentid: str | int, secret: str) -> None:
        """Register a WeCom application (one secret and one token per agent)."""
        if not corpid or not secret or agentid in ("", None):
            raise ValueError("corpid, agentid and secret are required")
        agent_key = str(agentid)
        with self._lock:
            agents = self._corps.setdefault(corpid, {})
            old = agents.get(agent_key)
            agent = _Agent(corpid, agent_key, HashedSecret.of(secret))
            if old is not None:
                agent.pool, agent.tickets = old.pool, old.tickets
            agents[agent_key] = agent

    def reset_quota(self, appid: str) -> None:
        """Reset an app's daily /cgi-bin/token quota, like WeChat's clear_quota."""
        with self._lock:
            self._app(appid).classic.day_calls = 0

    @property
    def minute_limits(self) -> dict[str, int | None]:
        """A copy of the per-minute limits (``{}`` when off)."""
        with self._lock:
            return self._limiter.limits

    def set_minute_limits(self, limits: Mapping[str, int | None] | None) -> None:
        """Replace the per-minute limits (None or ``{}``: off); windows start empty.

        Keys: ``per_app`` (each account endpoint per appid / corpid / token owner),
        ``per_component`` (a platform's component calls together), ``global`` (all
        of :data:`LIMITED_ENDPOINTS`), or one of those paths (that endpoint per appid
        or platform, overriding ``per_app``; None exempts it). Raises ValueError.
        """
        with self._lock:
            self._limiter.configure(limits)

    def invalidate_wecom(self, corpid: str, agentid: str | int) -> bool:
        """WeCom invalidates an agent's token early; return whether there was one."""
        with self._lock:
            agent = self._agent(corpid, agentid)
            current = agent.pool.current()
            if current is None:
                return False
            current.revoked = True
            self._drop_from_pool(agent.pool, current)
            agent.pool.invalidated += 1
            return True

    def foreign_fetch(self, appid: str) -> str:
        """Someone else (a test server, a second deployment) fetches a classic token.

        It rotates the app's tokens and uses quota exactly like a normal
        fetch; it is counted separately in the stats. Raises
        :class:`QuotaExceededError` when the quota is used up.
        """
        with self._lock:
            app = self._app(appid)
            now = self._clock.now()
            server = self._route.randrange(len(self._offsets))
            pool = app.classic
            pool.roll(now)
            if pool.day_calls >= app.daily_quota:
                self._record(now, server, "GET", CLASSIC_TOKEN, appid, 45009, foreign=True)
                raise QuotaExceededError(f"daily quota of {appid} is used up")
            pool.day_calls += 1
            token = self._rotate(pool, "classic", appid, None, now)
            pool.foreign += 1
            self._record(
                now,
                server,
                "GET",
                CLASSIC_TOKEN,
                appid,
                0,
                issued=True,
                token_fp=token.fp,
                foreign=True,
            )
            return token.value

    # ----------------------------------------------------------------- faults

    def add_fault(self, fault: Fault | FaultKind, /, **options: Any) -> Fault:
        """Add a fault: a :class:`Fault`, or a kind plus its options
        (``endpoint``, ``appid``, ``count``, ``seconds``, ``hang_seconds``,
        ``status``, ``errcode``, ``errmsg``, ``garble``)."""
        if not isinstance(fault, Fault):
            fault = Fault.from_dict({"kind": fault, **options})
        elif options:
            raise TypeError("options are only accepted with a fault kind")
        with self._lock:
            self._faults.append(fault)
        return fault

    def set_faults(self, faults: Iterable[Fault]) -> None:
        """Replace every fault."""
        new = list(faults)
        with self._lock:
            self._faults = new

    def clear_faults(self) -> None:
        """Remove every fault (hangs already in progress are not interrupted)."""
        with self._lock:
            self._faults = []

    def faults(self) -> list[Fault]:
        """The active faults, in matching order."""
        with self._lock:
            return list(self._faults)

    def release_hangs(self) -> None:
        """Wake every request hanging in a ``timeout`` fault (servers call this on stop)."""
        with self._lock:
            event, self._hang_event = self._hang_event, threading.Event()
        event.set()

    # ---------------------------------------------------------------- serving

    def handle(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        body: bytes = b"",
        client_ip: str = "127.0.0.1",
        *,
        hang: bool = True,
    ) -> SimResponse:
        """Answer one HTTP request. ``/_sim/...`` paths go to the control API.

        ``hang=False`` makes a ``timeout`` fault return at once with
        ``timed_out=True`` instead of sleeping (the in-process transport
        turns that into ``httpx.ReadTimeout``).
        """
        if path == "/_sim" or path.startswith("/_sim/"):
            return handle_control(self, method.upper(), path, query, body)
        method = method.upper()
        with self._lock:
            server = self._route.randrange(len(self._offsets))
            delay, fault, hint = self.latency, None, None
            if self._faults:
                hint = self._appid_hint(path, query, body)
                extra, fault = self._take_faults(path, hint)
                delay += extra
            if delay <= 0 and fault is None:
                return self._dispatch(server, method, path, query, body, client_ip)
            hang_event = self._hang_event
        if delay > 0:
            time.sleep(delay)
        if fault is not None:
            return self._faulted(
                fault, server, method, path, hint, client_ip, hang_event if hang else None
            )
        with self._lock:
            return self._dispatch(server, method, path, query, body, client_ip)

    def transport(self, *, client_ip: str = "127.0.0.1") -> httpx.MockTransport:
        """An ``httpx.MockTransport`` that answers in-process (no sockets).

        Works for ``httpx.Client`` and ``httpx.AsyncClient``; an injected
        timeout raises ``httpx.ReadTimeout`` immediately.
        """
        import httpx  # noqa: PLC0415 - only in-process users pay for httpx

        def respond(request: httpx.Request) -> httpx.Response:
            query: dict[str, str] = {}
            for key, value in request.url.params.multi_items():
                query.setdefault(key, value)
            answer = self.handle(
                request.method, request.url.path, query, request.read(), client_ip, hang=False
            )
            if answer.timed_out:
                raise httpx.ReadTimeout("simulated WeChat timeout", request=request)
            return httpx.Response(answer.status, headers=answer.headers, content=answer.body)

        return httpx.MockTransport(respond)

    # ------------------------------------------------------------- inspection

    def calls(
        self,
        endpoint: str | None = None,
        appid: str | None = None,
        *,
        since: float | None = None,
        errcode: int | _AnyErrcode | None = _ANY_ERRCODE,
    ) -> int:
        """How many requests matched: by endpoint path, appid (or corpid), the
        errcode answered (0 = success, None = no errcode) and time.

        ``since`` can only look at the detailed log, which holds business
        calls only when ``log_business_calls`` is on.
        """
        if since is not None and endpoint in BUSINESS_ENDPOINTS and not self.log_business_calls:
            raise ValueError("business calls are only counted; pass log_business_calls=True")
        with self._lock:
            if isinstance(errcode, _AnyErrcode):
                return self._log.count(endpoint, appid, since=since)
            return self._log.count(
                endpoint, appid, since=since, errcode=errcode, errcode_given=True
            )

    @property
    def call_log(self) -> list[CallRecord]:
        """A copy of the detailed call log, oldest first."""
        with self._lock:
            return self._log.records()

    def tokens_issued(
        self, appid: str, *, pool: Pool = "classic", agentid: str | int | None = None
    ) -> int:
        """Tokens minted for a credential, foreign fetches included. For
        ``pool="wecom"`` pass the corpid and optionally an agentid (else all agents)."""
        with self._lock:
            return sum(p.issued for p in self._pools(appid, pool, agentid))

    def foreign_fetches(self, appid: str) -> int:
        """Classic tokens fetched by :meth:`foreign_fetch`."""
        with self._lock:
            return self._app(appid).classic.foreign

    def current_token(
        self, appid: str, *, pool: Literal["classic", "stable"] = "classic"
    ) -> str | None:
        """The newest token of an app's classic or stable pool (None before the first fetch)."""
        with self._lock:
            current = self._pools(appid, pool, None)[0].current()
            return current.value if current else None

    def current_wecom_token(self, corpid: str, agentid: str | int) -> str | None:
        """The live token of one WeCom agent."""
        with self._lock:
            current = self._agent(corpid, agentid).pool.current()
            return current.value if current else None

    def valid_tokens(
        self,
        appid: str,
        *,
        pool: Pool = "classic",
        agentid: str | int | None = None,
        server: int | None = None,
    ) -> list[str]:
        """Tokens of a credential accepted right now, oldest first, judged by the
        true clock or, with ``server``, by that server's skewed clock."""
        with self._lock:
            server_now = self._clock.now() + self._offset(server)
            return [
                token.value
                for p in self._pools(appid, pool, agentid)
                for token in p.live
                if self._check(token.value, server_now, "any")[0] == OK
            ]

    def token_status(self, token: str, *, server: int | None = None) -> int:
        """The errcode a business call with ``token`` would get now (0 = accepted),
        by the true clock or by ``server``'s skewed clock. Not logged."""
        with self._lock:
            return self._check(token, self._clock.now() + self._offset(server), "any")[0]

    def is_token_accepted(self, token: str, *, server: int | None = None) -> bool:
        """Whether a business call with ``token`` would succeed now (see :meth:`token_status`)."""
        return self.token_status(token, server=server) == 0

    def stats(self, *, include_log: bool = True) -> dict[str, Any]:
        """Counters, per-credential state (as fingerprints) and the call log, JSON-able."""
        with self._lock:
            now = self._clock.now()
            apps: dict[str, Any] = {}
            for appid, app in self._apps.items():
                app.classic.roll(now)
                app.stable.roll(now)
                apps[appid] = {
                    "daily_quota": app.daily_quota,
                    "quota_used_today": app.classic.day_calls,
                    "tokens_issued": app.classic.issued,
                    "foreign_fetches": app.classic.foreign,
                    "live_token_fps": [t.fp for t in app.classic.live],
                    "ip_whitelist": None if app.allowed is None else [str(n) for n in app.allowed],
                    "stable": {
                        "tokens_issued": app.stable.issued,
                        "calls_today": app.stable.day_calls,
                        "live_token_fps": [t.fp for t in app.stable.live],
                        "force_rotations_today": app.stable.force_count,
                        "force_rejected": app.stable.force_rejected,
                    },
                    "tickets_issued": dict(app.tickets),
                }
            wecom: dict[str, Any] = {}
            for corpid, agents in self._corps.items():
                for agentid, agent in agents.items():
                    wecom[f"{corpid}/{agentid}"] = {
                        "tokens_issued": agent.pool.issued,
                        "invalidated": agent.pool.invalidated,
                        "live_token_fps": [t.fp for t in agent.pool.live],
                        "tickets_issued": dict(agent.tickets),
                    }
            by_endpoint: dict[str, dict[str, int]] = {}
            for row in self._log.counters():
                codes = by_endpoint.setdefault(row["endpoint"], {})
                key = "none" if row["errcode"] is None else str(row["errcode"])
                codes[key] = codes.get(key, 0) + row["count"]
            result: dict[str, Any] = {
                "now": now,
                "wechat_day": wechat_day(now),
                "servers": [{"index": i, "offset": o} for i, o in enumerate(self._offsets)],
                "requests_total": self._log.total,
                "by_endpoint": by_endpoint,
                "counters": self._log.counters(),
                "apps": apps,
                "wecom": wecom,
                "platform": self.platform.stats(),
                "faults": [f.to_dict() for f in self._faults],
                "faults_triggered": dict(self._faults_triggered),
                "minute_limits": self._limiter.limits,
                "minute_limit_rejections": self._limiter.stats(),
                "tickets": list(self._ticket_bindings),
                "log_dropped": self._log.dropped,
            }
            if include_log:
                result["call_log"] = [r.to_dict() for r in self._log.records()]
            return result

    def peak_calls(
        self,
        window: float = WINDOW_SECONDS,
        *,
        appid: str | None = None,
        component: str | None = None,
        endpoint: str | None = None,
    ) -> int:
        """The most calls WeChat saw within any ``window`` seconds, from the call log.

        Counts the calls that reached WeChat's logic (45011 refusals included; calls
        answered by an injected fault, 404/405 and foreign fetches left out) to
        :data:`LIMITED_ENDPOINTS`, or to ``endpoint``; of one ``appid`` (corpid,
        token owner or platform, as logged), or on the component endpoints of one
        ``component``. Same window rule as the limits: with no 45011 refusal, the
        per-minute peak of a scope (``appid`` plus ``endpoint`` for ``per_app``) never
        exceeds its limit. Sees only the retained log (``call_log_limit``).
        """
        if component is not None and appid is not None:
            raise ValueError("give appid or component, not both")
        paths = {endpoint} if endpoint is not None else set(LIMITED_ENDPOINTS)
        if component is not None:
            paths &= set(COMPONENT_ENDPOINTS)
        owner = component if component is not None else appid
        with self._lock:
            times = [
                r.time
                for r in self._log.records()
                if r.endpoint in paths
                and r.fault is None
                and r.http_status == 200
                and not r.foreign
                and (owner is None or r.appid == owner)
            ]
        return peak_count(times, window)

    def peak_calls_per_minute(
        self,
        *,
        appid: str | None = None,
        component: str | None = None,
        endpoint: str | None = None,
    ) -> int:
        """:meth:`peak_calls` over a sliding 60 s."""
        return self.peak_calls(WINDOW_SECONDS, appid=appid, component=component, endpoint=endpoint)

    def peak_calls_per_second(
        self,
        *,
        appid: str | None = None,
        component: str | None = None,
        endpoint: str | None = None,
    ) -> int:
        """:meth:`peak_calls` over a sliding second."""
        return self.peak_calls(1.0, appid=appid, component=component, endpoint=endpoint)

    # --------------------------------------------------------------- internals

    def _app(self, appid: str) -> _App:
        app = self._apps.get(appid)
        if app is None:
            raise KeyError(f"unknown appid {appid!r}")
        return app

    def _agent(self, corpid: str, agentid: str | int) -> _Agent:
        agent = self._corps.get(corpid, {}).get(str(agentid))
        if agent is None:
            raise KeyError(f"unknown WeCom agent {corpid!r}/{agentid!r}")
        return agent

    def _pools(self, appid: str, pool: Pool, agentid: str | int | None) -> list[TokenPool]:
        if pool == "wecom":
            if agentid is not None:
                return [self._agent(appid, agentid).pool]
            return [agent.pool for agent in self._corps.get(appid, {}).values()]
        app = self._app(appid)
        return [app.classic if pool == "classic" else app.stable]

    def _offset(self, server: int | None) -> float:
        return 0.0 if server is None else self._offsets[server]

    def _dispatch(
        self,
        server: int,
        method: str,
        path: str,
        query: dict[str, str],
        body: bytes,
        client_ip: str,
    ) -> SimResponse:
        now = self._clock.now()
        handler = self._handlers.get(path)
        if handler is None:
            self._record(now, server, method, path, None, None, http_status=404)
            return html_page(404, "Not Found")
        if method not in ("GET", "POST"):
            self._record(now, server, method, path, None, None, http_status=405)
            return html_page(405)
        if self._limiter.applies(path):
            refused = self._minute_gate(now, server, method, path, query, body, client_ip)
            if refused is not None:
                return refused
        offset = self._offsets[server]
        return handler(_Request(server, offset, now, method, path, query, body, client_ip))

    def _minute_gate(
        self,
        now: float,
        server: int,
        method: str,
        path: str,
        query: dict[str, str],
        body: bytes,
        client_ip: str,
    ) -> SimResponse | None:
        """WeChat's frequency check, ahead of the endpoint's own: 45011 over a limit
        (nothing issued, no daily quota used), else None and the call is counted."""
        appid = self._appid_hint(path, query, body)
        scope = self._limiter.admit(now, path, appid)
        if scope is None:
            return None
        self._record(
            now, server, method, path, appid, MINUTE_QUOTA_ERRCODE, note=f"minute_limit:{scope}"
        )
        return self._error_response(
            MINUTE_QUOTA_ERRCODE,
            MINUTE_QUOTA_ERRMSG,
            wecom=path in _WECOM_PATHS,
            now=now,
            ip=client_ip,
        )

    def _appid_hint(self, path: str, query: dict[str, str], body: bytes) -> str | None:
        if path in COMPONENT_ENDPOINTS:
            return self.platform.appid_hint(query, body)
        if path == STABLE_TOKEN:
            data = json_object(body)
            appid = data.get("appid") if data else None
            return appid if isinstance(appid, str) and appid else None
        for key in ("appid", "corpid"):
            if query.get(key):
                return query[key]
        token = self._tokens.get(query.get("access_token") or "")
        return token.owner if token else None

    def _take_faults(self, path: str, appid: str | None) -> tuple[float, Fault | None]:
        delay = 0.0
        blocking: Fault | None = None
        for fault in list(self._faults):
            if not fault.matches(path, appid):
                continue
            if fault.kind != "latency" and blocking is not None:
                continue
            if fault.kind == "latency":
                delay += fault.seconds
            else:
                blocking = fault
            self._faults_triggered[fault.kind] += 1
            if fault.consume():
                self._faults.remove(fault)
        return delay, blocking

    def _faulted(
        self,
        fault: Fault,
        server: int,
        method: str,
        path: str,
        appid: str | None,
        client_ip: str,
        hang_event: threading.Event | None,
    ) -> SimResponse:
        errcode: int | None = None
        if fault.kind == "timeout":
            if hang_event is not None:
                hang_event.wait(fault.hang_seconds)
            answer = replace(html_page(504, "Gateway Time-out"), timed_out=True)
        elif fault.kind == "http_status":
            answer = html_page(fault.status)
        elif fault.kind == "garbled":
            if fault.garble == "html":
                page = "<html><head><title>系统繁忙</title></head><body>busy</body></html>"
                answer = SimResponse(200, dict(HTML), page.encode())
            else:
                answer = SimResponse(200, dict(JSON), b'{"access_tok')
        else:
            errcode = fault.errcode
            with self._lock:
                answer = self._error_response(
                    errcode,
                    fault.errmsg,
                    wecom=path in _WECOM_PATHS,
                    now=self._clock.now(),
                    ip=client_ip,
                )
        with self._lock:
            self._record(
                self._clock.now(),
                server,
                method,
                path,
                appid,
                errcode,
                fault=fault.kind,
                http_status=answer.status,
                detailed=path not in BUSINESS_ENDPOINTS or self.log_business_calls,
            )
        return answer

    def _record(
        self,
        now: float,
        server: int,
        method: str,
        endpoint: str,
        appid: str | None,
        errcode: int | None,
        *,
        detailed: bool = True,
        **details: Any,
    ) -> None:
        if detailed:
            self._log.add(CallRecord(now, server, method, endpoint, appid, errcode, **details))
        else:
            self._log.tally(endpoint, appid, errcode)

    def _rid(self) -> str:
        bits = self._mint.getrandbits(96)
        return f"{bits >> 64:08x}-{(bits >> 32) & 0xFFFFFFFF:08x}-{bits & 0xFFFFFFFF:08x}"

    def _error_response(
        self, code: int, message: str, *, wecom: bool, now: float, ip: str
    ) -> SimResponse:
        if wecom:
            hint = f"{int(now)}_{self._mint.getrandbits(64):016x}"
            errmsg = (
                f"{message}, hint: [{hint}], from ip: {ip}, "
                f"more info at https://open.work.weixin.qq.com/devtool/query?e={code}"
            )
        else:
            errmsg = f"{message} rid: {self._rid()}"
        return json_response({"errcode": code, "errmsg": errmsg})

    def _fail(
        self,
        req: _Request,
        code: int,
        message: str,
        *,
        appid: str | None,
        wecom: bool = False,
        detailed: bool = True,
        **details: Any,
    ) -> SimResponse:
        self._record(
            req.now, req.server, req.method, req.path, appid, code, detailed=detailed, **details
        )
        return self._error_response(code, message, wecom=wecom, now=req.now, ip=req.client_ip)

    def _mint_value(self, length: int, prefix: str = "") -> str:
        while True:
            body = "".join(self._mint.choices(_TOKEN_ALPHABET, k=length - len(prefix)))
            value = prefix + body
            if value not in self._tokens:
                return value

    def _rotate(
        self,
        pool: TokenPool,
        kind: Pool,
        owner: str,
        agentid: str | None,
        now: float,
        *,
        revoke_previous: bool = False,
        keep_previous_until_expiry: bool = False,
    ) -> Token:
        """Issue a token: the current one's expiry becomes ``now`` (its grace follows)
        unless ``keep_previous_until_expiry`` (a stable token's normal-mode rotation), and
        the oldest of two is evicted (WeCom keeps only one live token)."""
        current = pool.current()
        if current is not None:
            if not keep_previous_until_expiry:
                current.retired_at = now
            current.revoked = current.revoked or revoke_previous
        keep = 1 if kind == "wecom" else 2
        while len(pool.live) >= keep:
            oldest = pool.live[0]
            oldest.evicted = kind != "wecom"
            self._drop_from_pool(pool, oldest)
        if kind == "wecom":
            value = self._mint_value(214)
        else:
            value = self._mint_value(136, f"{self._token_prefix}_")
        token = Token(
            value, fingerprint(value), kind, owner, agentid, now, now + self.token_lifetime
        )
        pool.live.append(token)
        pool.issued += 1
        self._tokens[value] = token
        return token

    def _drop_from_pool(self, pool: TokenPool, token: Token) -> None:
        pool.live.remove(token)
        self._dead.append(token)
        while len(self._dead) > _DEAD_TOKENS_KEPT:
            # Forgotten tokens answer 40014 like never-issued ones.
            self._tokens.pop(self._dead.popleft().value, None)

    def _check(self, value: str, server_now: float, family: _Family) -> tuple[int, Token | None]:
        """Validate a token as a server whose clock reads ``server_now`` would."""
        token = self._tokens.get(value)
        if token is None or (family != "any" and (token.pool == "wecom") != (family == "wecom")):
            return INVALID, None
        if (token.pool == "component") != (family == "component"):
            # A platform's own token opens component APIs only, and nothing else does.
            return (NEEDS_COMPONENT_TOKEN if family == "component" else NEEDS_BIZ_TOKEN), token
        return token_status(token, server_now, self.grace_seconds), token

    # --------------------------------------------------------------- endpoints

    def _check_credentials(  # noqa: PLR0911 - one return per WeChat error code
        self, req: _Request, appid: str, secret: str, grant_type: object
    ) -> _App | SimResponse:
        if not appid:
            return self._fail(req, 41002, "appid missing", appid=None)
        if not secret:
            return self._fail(req, 41004, "appsecret missing", appid=appid)
        if grant_type != "client_credential":
            return self._fail(req, 40002, "invalid grant_type", appid=appid)
        app = self._apps.get(appid)
        if app is None:
            return self._fail(req, 40013, "invalid appid", appid=appid)
        if not app.secret.matches(secret):
            if self.wrong_secret_errcode == 40001:
                message = "invalid credential, access_token is invalid or not latest"
            else:
                message = "invalid appsecret"
            return self._fail(req, self.wrong_secret_errcode, message, appid=appid)
        if not app.ip_allowed(req.client_ip):
            message = f"invalid ip {req.client_ip} ipv6 ::ffff:{req.client_ip}, not in whitelist"
            return self._fail(req, 40164, message, appid=appid)
        return app

    def _classic_token(self, req: _Request) -> SimResponse:
        q = req.query
        checked = self._check_credentials(
            req, q.get("appid", ""), q.get("secret", ""), q.get("grant_type")
        )
        if isinstance(checked, SimResponse):
            return checked
        app = checked
        pool = app.classic
        pool.roll(req.now)
        # WeChat counts successful fetches against the daily quota.
        if pool.day_calls >= app.daily_quota:
            return self._fail(req, 45009, "reach max api daily quota limit", appid=app.appid)
        pool.day_calls += 1
        token = self._rotate(pool, "classic", app.appid, None, req.now)
        self._record(
            req.now, req.server, req.method, req.path, app.appid, 0, issued=True, token_fp=token.fp
        )
        return json_response({"access_token": token.value, "expires_in": self.token_lifetime})

    def _stable_token(self, req: _Request) -> SimResponse:  # noqa: PLR0911 - one per outcome
        if req.method != "POST":
            return self._fail(req, 43002, "require POST method", appid=None)
        data = json_object(req.body)
        if data is None:
            return self._fail(req, 47001, "data format error", appid=None)
        appid, secret = data.get("appid"), data.get("secret")
        checked = self._check_credentials(
            req,
            appid if isinstance(appid, str) else "",
            secret if isinstance(secret, str) else "",
            data.get("grant_type"),
        )
        if isinstance(checked, SimResponse):
            return checked
        app = checked
        pool = app.stable
        pool.roll(req.now)
        if pool.day_calls >= self.stable_daily_limit:
            return self._fail(req, 45009, "reach max api daily quota limit", appid=app.appid)
        if pool.minute_calls >= self.stable_minute_limit:
            return self._fail(req, MINUTE_QUOTA_ERRCODE, MINUTE_QUOTA_ERRMSG, appid=app.appid)
        pool.day_calls += 1
        pool.minute_calls += 1
        note: str | None = None
        if data.get("force_refresh") is True:
            last = pool.last_force_at
            if pool.force_count < self.force_refresh_daily_limit and (
                last is None or req.now - last >= self.force_refresh_interval
            ):
                pool.force_count += 1
                pool.last_force_at = req.now
                token = self._rotate(pool, "stable", app.appid, None, req.now, revoke_previous=True)
                return self._stable_answer(req, app.appid, token, issued=True, note="forced")
            # Outside the limits WeChat does not rotate; the call proceeds as normal mode.
            pool.force_rejected += 1
            note = "force_rejected"
        # Normal mode: the answering server, by its own clock, hands out a new token once
        # less than 5 minutes are left; the old one stays valid until its own expiry.
        current = pool.current()
        server_now = req.now + req.offset
        if current is None or current.expires_at - server_now < self.grace_seconds:
            token = self._rotate(
                pool, "stable", app.appid, None, req.now, keep_previous_until_expiry=True
            )
            return self._stable_answer(req, app.appid, token, issued=True, note=note)
        return self._stable_answer(req, app.appid, current, issued=False, note=note)

    def _stable_answer(
        self, req: _Request, appid: str, token: Token, *, issued: bool, note: str | None
    ) -> SimResponse:
        self._record(
            req.now,
            req.server,
            req.method,
            req.path,
            appid,
            0,
            issued=issued,
            token_fp=token.fp,
            note=note,
        )
        # What is left by the answering server's clock (WeChat: "expires_in >= 300").
        remaining = min(self.token_lifetime, int(token.expires_at - (req.now + req.offset)))
        return json_response({"access_token": token.value, "expires_in": remaining})

    def _wecom_token(self, req: _Request) -> SimResponse:
        corpid, secret = req.query.get("corpid", ""), req.query.get("corpsecret", "")
        if not corpid:
            return self._fail(req, 41002, "corpid missing", appid=None, wecom=True)
        if not secret:
            return self._fail(req, 41004, "corpsecret missing", appid=corpid, wecom=True)
        agents = self._corps.get(corpid)
        if agents is None:
            return self._fail(req, 40013, "invalid corpid", appid=corpid, wecom=True)
        agent = next((a for a in agents.values() if a.secret.matches(secret)), None)
        if agent is None:
            return self._fail(req, 40001, "invalid credential", appid=corpid, wecom=True)
        pool = agent.pool
        current = pool.current()
        issued = False
        # Within its validity WeCom hands out the same token again.
        if current is None or current.expires_at <= req.now:
            current = self._rotate(pool, "wecom", corpid, agent.agentid, req.now)
            issued = True
        self._record(
            req.now,
            req.server,
            req.method,
            req.path,
            corpid,
            0,
            issued=issued,
            token_fp=current.fp,
            agentid=agent.agentid,
        )
        return json_response(
            {
                "errcode": 0,
                "errmsg": "ok",
                "access_token": current.value,
                "expires_in": int(current.expires_at - req.now),
            }
        )

    def _ticket(
        self, req: _Request, family: _Family, ticket_type: str, allowed_types: tuple[str, ...]
    ) -> SimResponse:
        wecom = family == "wecom"
        value = req.query.get("access_token", "")
        if not value:
            return self._fail(req, 41001, "access_token missing", appid=None, wecom=wecom)
        code, token = self._check(value, req.now + req.offset, family)
        message = ERRMSG.get(code, "")
        owner = token.owner if token else None
        fp = token.fp if token else None
        if code or token is None:
            return self._fail(req, code, message, appid=owner, wecom=wecom, token_fp=fp)
        if token.pool == "authorizer" and self.platform.ip_refusal(token, req.client_ip):
            return self._platform_ip_refused(req, owner, fp, detailed=True)
        if ticket_type not in allowed_types:
            return self._fail(req, 40097, "invalid args", appid=owner, wecom=wecom, token_fp=fp)
        ticket = "".join(self._mint.choices(_TOKEN_ALPHABET, k=86))
        ticket_fp = fingerprint(ticket)
        if token.pool == "wecom":
            tickets = self._agent(token.owner, token.agentid or "").tickets
        elif token.pool == "authorizer":
            tickets = self.platform.ticket_counts(token)
        else:
            tickets = self._apps[token.owner].tickets
        tickets[ticket_type] = tickets.get(ticket_type, 0) + 1
        self._ticket_bindings.append(
            {
                "time": req.now,
                "type": ticket_type,
                "appid": owner,
                "agentid": token.agentid,
                "ticket_fp": ticket_fp,
                "token_fp": fp,
                "token_pool": token.pool,
            }
        )
        self._record(
            req.now,
            req.server,
            req.method,
            req.path,
            owner,
            0,
            issued=True,
            token_fp=fp,
            ticket_fp=ticket_fp,
            agentid=token.agentid,
            note=ticket_type,
        )
        return json_response(
            {"errcode": 0, "errmsg": "ok", "ticket": ticket, "expires_in": self.token_lifetime}
        )

    def _mp_ticket(self, req: _Request) -> SimResponse:
        return self._ticket(req, "mp", req.query.get("type", ""), ("jsapi", "wx_card"))

    def _wecom_corp_ticket(self, req: _Request) -> SimResponse:
        return self._ticket(req, "wecom", "jsapi", ("jsapi",))

    def _wecom_agent_ticket(self, req: _Request) -> SimResponse:
        return self._ticket(req, "wecom", req.query.get("type", ""), ("agent_config",))

    def _business(self, req: _Request) -> SimResponse:
        detailed = self.log_business_calls
        value = req.query.get("access_token", "")
        if not value:
            return self._fail(req, 41001, "access_token missing", appid=None, detailed=detailed)
        code, token = self._check(value, req.now + req.offset, "any")
        message = ERRMSG.get(code, "")
        owner = token.owner if token else None
        fp = token.fp if token else None
        wecom = token is not None and token.pool == "wecom"
        if code:
            return self._fail(
                req, code, message, appid=owner, wecom=wecom, detailed=detailed, token_fp=fp
            )
        if (
            token is not None
            and token.pool == "authorizer"
            and self.platform.ip_refusal(token, req.client_ip)
        ):
            return self._platform_ip_refused(req, owner, fp, detailed=detailed)
        self._record(
            req.now, req.server, req.method, req.path, owner, 0, detailed=detailed, token_fp=fp
        )
        return SimResponse(200, dict(JSON), _WECOM_IP_BODY if wecom else _MP_IP_BODY)

    def _platform_ip_refused(
        self, req: _Request, owner: str | None, fp: str | None, *, detailed: bool
    ) -> SimResponse:
        """An authorizer token used from outside its platform's IP whitelist."""
        message = f"access clientip is not registered requestIP: {req.client_ip}"
        return self._fail(req, 61004, message, appid=owner, detailed=detailed, token_fp=fp)


def _check_options(
    servers: int, skew: float, grace: float, latency: float, token_lifetime: int
) -> None:
    if servers < 1:
        raise ValueError("servers must be at least 1")
    if skew < 0 or grace < 0 or latency < 0:
        raise ValueError("skew, grace and latency cannot be negative")
    if token_lifetime <= grace:
        raise ValueError("token_lifetime must be longer than grace_seconds")


def _offsets(
    setup: random.Random, servers: int, skew: float, given: Iterable[float] | None
) -> tuple[float, ...]:
    """Each server's clock offset: as given, or drawn within +-skew."""
    if given is None:
        return tuple(setup.uniform(-skew, skew) for _ in range(servers))
    offsets = tuple(float(o) for o in given)
    if not offsets:
        raise ValueError("server_offsets cannot be empty")
    return offsets
