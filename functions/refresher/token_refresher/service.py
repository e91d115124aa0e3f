"""The refresh algorithm, per credential, and the fan-out over every configured app.

Per credential (design.md):
1. consistent read; not due -> done (retries and duplicate schedules change nothing);
2. lease by conditional update; held by someone else -> done;
3. the lease returns the record as it now is: check again that it is still due;
4. fetch from WeChat (bounded retries, every attempt counted against the daily budget);
5. write fenced on the version seen in 3 and on our lease, releasing the lease.
On any failure the stored value is untouched, the error is recorded, the lease released.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from wechat_token.record import ACCESS_TOKEN, JSAPI_TICKET, CredentialRecord, fingerprint, iso

from .errors import EventError, GarbledReplyError, RefreshError
from .events import RefreshRequest
from .registry import STABLE, AppConfig, RegistryLoader
from .retry import RetryPolicy, call_with_retries
from .settings import Settings
from .token_store import NewValue, TokenStore
from .wechat_api import FetchedCredential, WeChatTokenAPI, classify

logger = logging.getLogger("wechat_token.refresher")

# Outcomes a summary reports, per credential.
REFRESHED = "refreshed"
NOT_DUE = "not_due"
LEASE_HELD = "lease_held"
ALREADY_REPLACED = "already_replaced"
RATE_LIMITED = "rate_limited"
FAILED = "failed"

# A consumer reporting one of these on a token we still hold as valid means the token
# was invalidated behind our back (someone else fetched one for this app).
INVALID_TOKEN_CODES = (40001, 40014, 42001)

# Registry ticket types and the record kinds they are stored under.
TICKET_KINDS = {
    "jsapi": JSAPI_TICKET,
    "wx_card": "wx_card_ticket",
    "agent_config": "agent_config_ticket",
}
TICKET_TYPES_BY_KIND = {kind: ticket for ticket, kind in TICKET_KINDS.items()}
STABLE_FORCE_MIN_GAP_SECONDS = 30.0
# A configuration error is not retried by scheduled runs for this long (see Lambda retries).
CONFIGURATION_ERROR_HOLD_SECONDS = 600.0

# Time kept back from the Lambda's remaining time for writing results and returning.
_SAFETY_SECONDS = 3.0


@dataclass(slots=True)
class Outcome:
    """The summary of one credential's refresh; JSON-safe, never holds a token or secret."""

    app_id: str
    kind: str
    outcome: str
    version: int | None = None
    fingerprint: str | None = None
    expires_at: str | None = None
    wechat_calls: int = 0
    calls_today: int | None = None
    budget: int | None = None
    foreign_rotation: bool = False
    error: dict[str, str] | None = None
    seconds_to_expiry: float | None = None
    # Age of the token this refresh replaced (a metric: how early tokens are renewed).
    replaced_age: float | None = None
    passive: bool = False
    duration_ms: int | None = None

    @property
    def failed(self) -> bool:
        return self.outcome == FAILED

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "app_id": self.app_id,
            "kind": self.kind,
            "outcome": self.outcome,
            "version": self.version,
            "fingerprint": self.fingerprint,
            "expires_at": self.expires_at,
            "seconds_to_expiry": None
            if self.seconds_to_expiry is None
            else round(self.seconds_to_expiry),
            "wechat_calls": self.wechat_calls,
            "calls_today": self.calls_today,
            "budget": self.budget,
            "foreign_rotation": self.foreign_rotation,
            "duration_ms": self.duration_ms,
        }
        if self.error is not None:
            data["error"] = self.error
        return data


def stale_matches(record: CredentialRecord, stale: str) -> bool:
    """True if the consumer's stale token (or its fingerprint) is the stored current value."""
    if not record.value:
        return False
    current = fingerprint(record.value)
    return stale == current or (not stale.startswith("sha256:") and fingerprint(stale) == current)


class RefreshService:
    def __init__(
        self,
        settings: Settings,
        store: TokenStore,
        api: WeChatTokenAPI,
        registry: RegistryLoader,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.api = api
        self.registry = registry
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._policy = RetryPolicy(max_attempts=settings.max_attempts)

    # -- fan-out --------------------------------------------------------------------------

    def run(
        self,
        request: RefreshRequest,
        *,
        remaining_seconds: Callable[[], float] | None = None,
        invocation_id: str = "local",
    ) -> list[Outcome]:
        """Refresh what the request names; every app is tried even if some fail."""
        apps = self.registry.load()
        if request.app_id is not None:
            if request.app_id not in apps:
                known = ", ".join(sorted(apps)) or "none"
                raise EventError(
                    f"App {request.app_id!r} is not in the registry secret "
                    f"{self.settings.registry_secret_id!r} (known apps: {known}). Add it there, "
                    "or check the app_id's spelling."
                )
            targets = [apps[request.app_id]]
        else:
            targets = [
                app for app in apps.values() if not request.types or app.type in request.types
            ]
        started = time.monotonic()
        if remaining_seconds is None:
            remaining_seconds = lambda: 900.0 - (time.monotonic() - started)  # noqa: E731

        def one(app: AppConfig) -> list[Outcome]:
            try:
                return self.refresh_app(
                    app, request, remaining_seconds=remaining_seconds, invocation_id=invocation_id
                )
            except EventError:
                raise
            except Exception as exc:  # one app's surprise must not stop the others
                logger.exception("unexpected error refreshing %s", app.app_id)
                return [
                    Outcome(
                        app.app_id,
                        request.kind,
                        FAILED,
                        error={"code": type(exc).__name__, "message": "unexpected error; see logs"},
                    )
                ]

        if len(targets) == 1:
            return one(targets[0])
        workers = min(self.settings.concurrency, len(targets))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="refresh") as pool:
            return [outcome for outcomes in pool.map(one, targets) for outcome in outcomes]

    # -- one credential -------------------------------------------------------------------

    def refresh_app(
        self,
        app: AppConfig,
        request: RefreshRequest,
        *,
        remaining_seconds: Callable[[], float],
        invocation_id: str = "local",
    ) -> list[Outcome]:
        """The app's access_token, then its tickets (fetched with the token just stored)."""
        if request.app_id is not None and request.kind != ACCESS_TOKEN:
            ticket = TICKET_TYPES_BY_KIND.get(request.kind)
            if ticket is None or ticket not in app.tickets:
                raise EventError(
                    f"App {app.app_id!r} has no {request.kind!r} in the registry: add "
                    f'"tickets": [{ticket or "jsapi"!r}] to its entry.'
                )
            return [self._refresh_ticket(app, ticket, request, remaining_seconds, invocation_id)]
        outcomes = [self.refresh(app, request, remaining_seconds, invocation_id)]
        # Tickets are bound to the token that fetched them: renew them whenever it rotates.
        # A forced or passive token refresh only asks for the tickets' due check.
        ticket_request = RefreshRequest(app_id=app.app_id) if request.app_id else request
        for ticket in app.tickets:
            outcomes.append(
                self._refresh_ticket(app, ticket, ticket_request, remaining_seconds, invocation_id)
            )
        return outcomes

    def refresh(
        self,
        app: AppConfig,
        request: RefreshRequest,
        remaining_seconds: Callable[[], float],
        invocation_id: str = "local",
    ) -> Outcome:
        """Refresh the app's access_token as the request asks (scheduled, forced or passive)."""

        def fetch(force: bool) -> FetchedCredential:
            return self.api.fetch_token(app, force=force)

        return self._refresh_credential(
            app,
            ACCESS_TOKEN,
            request,
            fetch,
            remaining_seconds=remaining_seconds,
            invocation_id=invocation_id,
        )

    def _refresh_ticket(
        self,
        app: AppConfig,
        ticket: str,
        request: RefreshRequest,
        remaining_seconds: Callable[[], float],
        invocation_id: str,
    ) -> Outcome:
        kind = TICKET_KINDS[ticket]
        token = self.store.read(app.app_id, ACCESS_TOKEN)
        if token is None or not token.is_valid(self._clock()):
            outcome = Outcome(app.app_id, kind, FAILED, budget=self.settings.daily_call_budget)
            outcome.error = {
                "code": "no_token",
                "message": f"No valid access_token for {app.app_id!r} to fetch its {kind} with; "
                "the token refresh failed first",
            }
            return outcome
        assert token.value is not None
        token_value = token.value

        def fetch(force: bool) -> FetchedCredential:
            return self.api.fetch_ticket(app, token_value, ticket)

        return self._refresh_credential(
            app,
            kind,
            request,
            fetch,
            bound_to=token.fingerprint(),
            remaining_seconds=remaining_seconds,
            invocation_id=invocation_id,
        )

    def _refresh_credential(
        self,
        app: AppConfig,
        kind: str,
        request: RefreshRequest,
        fetch: Callable[[bool], FetchedCredential],
        *,
        remaining_seconds: Callable[[], float],
        invocation_id: str,
        bound_to: str | None = None,
    ) -> Outcome:
        started = time.monotonic()
        outcome = self._refresh_steps(
            app, kind, request, fetch, remaining_seconds, invocation_id, bound_to
        )
        outcome.duration_ms = round((time.monotonic() - started) * 1000)
        return outcome

    def _refresh_steps(
        self,
        app: AppConfig,
        kind: str,
        request: RefreshRequest,
        fetch: Callable[[bool], FetchedCredential],
        remaining_seconds: Callable[[], float],
        invocation_id: str,
        bound_to: str | None,
    ) -> Outcome:
        now = self._clock()
        record = self.store.read(app.app_id, kind) or CredentialRecord(app.app_id, kind)
        request = self._probe(app, record, request, now)
        decision, foreign = self._decide(app, record, request, now, bound_to)
        if decision != REFRESHED:
            return self._summary(record, decision, now, foreign=foreign)
        held_back = self._recent_configuration_error(record, request, now)
        if held_back is not None:
            return held_back

        owner = f"{invocation_id}:{uuid.uuid4().hex[:12]}"
        lease_until = now + self.settings.lease_seconds
        leased = self.store.acquire_lease(app.app_id, kind, owner, now, lease_until)
        if leased is None:
            logger.info("%s/%s: another refresher holds the lease; nothing to do", app.app_id, kind)
            return self._summary(record, LEASE_HELD, now)
        # Double-check on the record as it stood when the lease was taken.
        decision, foreign = self._decide(app, leased, request, self._clock(), bound_to)
        if decision != REFRESHED:
            self.store.release_lease(app.app_id, kind, owner)
            return self._summary(leased, decision, now, foreign=foreign)
        if foreign:
            logger.warning(
                "%s/%s: WeChat rejected stored token %s (errcode %s) before its expiry at %s: "
                "something else fetched a token for this app (another server, a test tool, a "
                "second deployment); only wechat-token may call the token endpoint",
                app.app_id,
                kind,
                leased.fingerprint(),
                request.errcode,
                iso(leased.expires_at),
            )

        calls = 0

        def time_left() -> float:
            lease_left = lease_until - self._clock() - 5.0
            return min(remaining_seconds() - _SAFETY_SECONDS, lease_left)

        def on_retry(number: int, exc: RefreshError, pause: float) -> None:
            logger.warning(
                "%s/%s: attempt %d failed (%s), retrying in %.1f s",
                app.app_id,
                kind,
                number,
                exc.code,
                pause,
            )

        try:
            force = self._force(app, kind, owner, leased)

            def attempt() -> FetchedCredential:
                nonlocal calls
                self.store.count_call(
                    app.app_id, kind, self._clock(), self.settings.daily_call_budget
                )
                calls += 1
                return fetch(force)

            fetched = call_with_retries(
                attempt,
                policy=self._policy,
                time_left=time_left,
                attempt_cost=self.settings.http_timeout_seconds,
                sleep=self._sleep,
                rng=self._rng,
                on_retry=on_retry,
            )
            self._check_lifetime(fetched, app, kind)
            stored = self.store.write(
                app.app_id,
                kind,
                owner,
                leased.version,
                NewValue(
                    value=fetched.value,
                    expires_at=fetched.sent_at
                    + fetched.expires_in
                    - self.settings.expiry_skew_seconds,
                    fetched_at=fetched.sent_at,
                    source=fetched.source,
                    # A forced stable rotation ends the old token at once (WeChat's docs).
                    previous_valid_until=fetched.sent_at
                    + (0.0 if force else self.settings.previous_grace_seconds),
                    passive=request.passive,
                    foreign_rotation=foreign,
                    bound_to=bound_to,
                ),
                leased,
            )
        except RefreshError as exc:
            self.store.record_failure(app.app_id, kind, owner, exc.code, str(exc), self._clock())
            logger.error("%s/%s: refresh failed (%s): %s", app.app_id, kind, exc.code, exc)
            outcome = self._summary(leased, FAILED, self._clock(), calls=calls)
            outcome.calls_today = leased.calls_today(self._clock()) + calls
            outcome.error = {"code": exc.code, "message": str(exc)}
            outcome.foreign_rotation = foreign
            return outcome
        except BaseException:
            # Unknown failure (DynamoDB down, a bug): free the lease for the next run if we can.
            try:
                self.store.release_lease(app.app_id, kind, owner)
            except Exception:
                logger.warning(
                    "%s/%s: could not release the lease; it expires by itself", app.app_id, kind
                )
            raise
        logger.info(
            "%s/%s: stored %s (version %d), expires %s, %d WeChat call(s)%s",
            app.app_id,
            kind,
            stored.fingerprint(),
            stored.version,
            iso(stored.expires_at),
            calls,
            " (forced)" if force else "",
        )
        outcome = self._summary(stored, REFRESHED, self._clock(), calls=calls, foreign=foreign)
        outcome.passive = request.passive
        if leased.fetched_at is not None:
            outcome.replaced_age = (
                stored.fetched_at - leased.fetched_at if stored.fetched_at else None
            )
        return outcome

    def _check_lifetime(self, fetched: FetchedCredential, app: AppConfig, kind: str) -> None:
        """Refuse a credential that, stored, would already be past its conservative expiry."""
        if fetched.expires_in <= self.settings.expiry_skew_seconds:
            raise GarbledReplyError(
                f"WeChat {fetched.source} gave app {app.app_id!r} a {kind} that expires in "
                f"{fetched.expires_in} s, inside the {self.settings.expiry_skew_seconds:.0f} s "
                "safety margin; nothing was stored"
            )

    def _force(self, app: AppConfig, kind: str, owner: str, record: CredentialRecord) -> bool:
        """Whether this stable-token fetch may use force_refresh (WeChat: 20 a day, 30 s apart).

        A stable token only rotates near its expiry unless forced, so the refresher forces
        when it decided to refresh, within its own daily allowance; past it, the normal call
        still rotates a token that has under 5 minutes left.
        """
        if app.type != STABLE or kind != ACCESS_TOKEN or not record.has_value:
            return False
        return self.store.reserve_force(
            app.app_id,
            kind,
            owner,
            self._clock(),
            limit=self.settings.stable_force_daily_limit,
            min_gap=STABLE_FORCE_MIN_GAP_SECONDS,
        )

    def _probe(
        self, app: AppConfig, record: CredentialRecord, request: RefreshRequest, now: float
    ) -> RefreshRequest:
        """On a scheduled run, ask WeChat whether it still accepts the stored token.

        A rejection of a token we hold as valid means it was invalidated behind our back
        (a foreign fetch, or WeCom's early invalidation): handle it as a passive refresh.
        The probe is a business API call, outside the token quota.
        """
        if (
            not self.settings.probe_stored_tokens
            or request.force
            or request.passive
            or record.kind != ACCESS_TOKEN
            or not record.is_valid(now)
        ):
            return request
        assert record.value is not None
        try:
            errcode = self.api.probe(app, record.value)
        except RefreshError as exc:
            logger.info(
                "%s: could not probe the stored token (%s); not judged", app.app_id, exc.code
            )
            return request
        if errcode not in INVALID_TOKEN_CODES:
            return request
        return RefreshRequest(
            app_id=app.app_id,
            kind=record.kind,
            stale_token=record.fingerprint(),
            errcode=errcode,
        )

    def _decide(
        self,
        app: AppConfig,
        record: CredentialRecord,
        request: RefreshRequest,
        now: float,
        bound_to: str | None = None,
    ) -> tuple[str, bool]:
        """REFRESHED if WeChat must be called, else the outcome; plus foreign-rotation evidence."""
        if request.passive:
            return self._decide_passive(record, request, now)
        if not record.has_value:
            return REFRESHED, False
        if request.force:
            # WeChat keeps two tokens: forcing twice within the consumers' cache time would
            # evict the token they all hold. A token this young is not replaced again.
            young = (
                record.kind == ACCESS_TOKEN
                and record.fetched_at is not None
                and record.is_valid(now)
                and now - record.fetched_at < self.settings.force_min_interval_seconds
            )
            return (RATE_LIMITED if young else REFRESHED), False
        if bound_to is not None and record.bound_to != bound_to:
            return REFRESHED, False  # a ticket fetched with a token that has since rotated
        interval = (
            self.settings.stable_refresh_interval_seconds
            if app.type == STABLE
            else self.settings.refresh_interval_seconds
        )
        due = record.remaining(now) < interval + self.settings.refresh_slack_seconds
        return (REFRESHED if due else NOT_DUE), False

    def _recent_configuration_error(
        self, record: CredentialRecord, request: RefreshRequest, now: float
    ) -> Outcome | None:
        """A scheduled run (or Lambda's retry of one) does not repeat a call that failed on a
        configuration error minutes ago: it cannot succeed until someone fixes the registry
        or the whitelist, and each try spends quota. ``force`` tries anyway."""
        code = record.last_error_code
        if (
            request.force
            or code is None
            or not code.lstrip("-").isdigit()
            or classify(int(code))[0] != "configuration"
            or record.last_error_at is None
            or (record.last_success_at or 0) > record.last_error_at
            or now - record.last_error_at >= CONFIGURATION_ERROR_HOLD_SECONDS
        ):
            return None
        outcome = self._summary(record, FAILED, now)
        outcome.error = {
            "code": code,
            "message": f"not retried: {record.last_error_message or code} (recorded "
            f"{now - record.last_error_at:.0f} s ago; fix it, then force a refresh)",
        }
        return outcome

    def _decide_passive(
        self, record: CredentialRecord, request: RefreshRequest, now: float
    ) -> tuple[str, bool]:
        assert request.stale_token is not None
        if record.has_value and not stale_matches(record, request.stale_token):
            return ALREADY_REPLACED, False
        foreign = record.is_valid(now) and request.errcode in INVALID_TOKEN_CODES
        if (
            record.passive_at is not None
            and now - record.passive_at < self.settings.passive_min_interval_seconds
            and record.is_valid(now)
        ):
            return RATE_LIMITED, foreign
        return REFRESHED, foreign

    def _summary(
        self,
        record: CredentialRecord,
        outcome: str,
        now: float,
        *,
        calls: int = 0,
        foreign: bool = False,
    ) -> Outcome:
        return Outcome(
            app_id=record.app_id,
            kind=record.kind,
            outcome=outcome,
            version=record.version,
            fingerprint=record.fingerprint(),
            expires_at=iso(record.expires_at) if record.expires_at else None,
            wechat_calls=calls,
            calls_today=record.calls_today(now),
            budget=self.settings.daily_call_budget,
            foreign_rotation=foreign,
            seconds_to_expiry=record.remaining(now) if record.has_value else None,
        )
