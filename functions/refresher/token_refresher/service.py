"""The refresh: design.md's five steps per credential, and the fan-out over the registry.

``RefreshService.refresh`` reads as the five steps; the rules live in ``policy``, the lease
in ``token_store.Lease``, WeChat in ``wechat_api``, the time in ``deadline.Deadline``.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from wechat_token.record import (
    ACCESS_TOKEN,
    INVALID_TOKEN_CODES,
    CredentialKey,
    CredentialRecord,
    Kind,
    iso,
    ticket_key,
    wechat_day,
)
from wechat_token.settings import WECHAT_GRACE_SECONDS, WECHAT_SERVER_SKEW_SECONDS

from . import policy
from .deadline import Deadline, Stopwatch
from .due import STABLE_LANE, Due, DueIndex, lane_of, lanes_of
from .errors import (
    DeadlineError,
    EventError,
    GarbledReplyError,
    NoTokenError,
    RefresherError,
    RefreshError,
    RegistryError,
)
from .outcome import Outcome, RunSummary, Status
from .planner import Planner
from .platform import Platform
from .policy import Rules, Verdict
from .rate_limit import DEPLOYMENT, CallRateLimiter, Limits, component_scope
from .refresh_tokens import RefreshTokenCipher
from .registry import AUTHORIZER, COMPONENT, STABLE, AppConfig, Registry, RegistryLoader
from .retry import RetryPolicy, call_with_retries
from .settings import Settings
from .token_store import FirstCall, Lease, NewValue, TokenStore
from .triggers import Authorize, Forced, Passive, Scheduled, Trigger
from .wechat_api import FetchedCredential, WeChatTokenAPI
from .work_queue import InlineWorkQueue, WorkQueue

logger = logging.getLogger("wechat_token.refresher")

STABLE_FORCE_MIN_GAP_SECONDS = 30.0
# A probe that says "rejected" is asked once more after this pause: WeChat's servers
# disagree for a minute or two, and one server's answer must not rotate a good token.
CONFIRM_PAUSE_SECONDS = 1.0
# A passive report WeChat contradicted is answered from memory for this long.
ACCEPTED_MEMORY_SECONDS = 30.0
LEASE_POLL_SECONDS = 2.0
# A credential's due time is filed at least this far ahead of the write: the planner plans
# (planned_until, now], so an entry filed at or before a run that has planned is never lost.
DUE_AHEAD_SECONDS = 5.0
# A verify ticket is valid 12 hours after WeChat pushed it.
TICKET_LIFE_SECONDS = 43_200.0


@dataclass(frozen=True, slots=True)
class Credential:
    """One credential of a registry entry: its token, or one of its tickets."""

    app: AppConfig
    kind: Kind = ACCESS_TOKEN

    @property
    def key(self) -> CredentialKey:
        return CredentialKey(self.app.app_id, self.kind)


@dataclass(frozen=True, slots=True)
class _Ticketing:
    """For a ticket: the access token it is fetched with (value hidden) and its fingerprint."""

    token: str | None = None
    bound_to: str | None = None

    def __repr__(self) -> str:
        return f"_Ticketing(bound_to={self.bound_to!r})"


@dataclass(frozen=True, slots=True)
class _Decision:
    """What the policy needs besides the record, fixed for one credential's refresh: the
    first check, the wait for a held lease and the double-check ask the same question."""

    trigger: Trigger
    rules: Rules
    app_type: str
    deadline: Deadline
    ticketing: _Ticketing
    verdict: Verdict

    def why(self, record: CredentialRecord) -> Status | None:
        """Why WeChat must not be called now for ``record``, or None to go ahead."""
        return policy.skip(
            record,
            self.trigger,
            self.deadline.now(),
            self.rules,
            app_type=self.app_type,
            bound_to=self.ticketing.bound_to,
            verdict=self.verdict,
        )


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
        refresh_tokens: RefreshTokenCipher | None = None,
        queue: WorkQueue | None = None,
    ) -> None:
        self.settings = settings
        self.rules = settings.rules()
        self.store = store
        self.api = api
        self.registry = registry
        self.due_index = DueIndex(settings.due_index_shards)
        self.platform = Platform(
            store,
            api,
            refresh_tokens,
            clock,
            due_index=self.due_index,
            rules=self.rules,
            expiry_margin_seconds=settings.expiry_skew_seconds,
        )
        self.planner = Planner(store, self.due_index, sweep_per_run=settings.sweep_per_run)
        # Where the plan goes: the work queue (SQS), or this process's own worker.
        self.queue: WorkQueue = queue or InlineWorkQueue(self.work)
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        # Real time, whatever the service's clock: it paces real calls to WeChat.
        self.limiter = CallRateLimiter(
            store,
            Limits(settings.wechat_calls_per_second, settings.component_calls_per_second),
            rng=self._rng,
        )
        self._work_deadline: Deadline | None = None
        self._retry = RetryPolicy(max_attempts=settings.max_attempts)
        # Per execution environment: when each token was last probed, and reports WeChat
        # recently contradicted (key, fingerprint) -> until.
        self._probed: dict[CredentialKey, float] = {}
        self._accepted: dict[tuple[CredentialKey, str], float] = {}

    def deadline(self, context: object = None) -> Deadline:
        return Deadline.of_context(
            context, clock=self._clock, lease_seconds=self.settings.lease_seconds
        )

    # -- entry points ----------------------------------------------------------------

    def run(self, trigger: Trigger | Authorize, deadline: Deadline | None = None) -> RunSummary:
        """Refresh what the trigger names; every app is tried even if some fail."""
        deadline = deadline or self.deadline()
        if isinstance(trigger, Passive):
            return self.report(trigger, deadline)
        registry = self.registry.load()
        extra: dict[str, Any] = {}
        if isinstance(trigger, Authorize):
            outcomes = [self._authorized(registry, trigger, deadline)]
        elif isinstance(trigger, Forced):
            app = self._app(registry, trigger.app_id, operator=True)
            outcomes = self._forced(app, trigger, deadline)
        elif trigger.app_id is not None:
            app = self._app(registry, trigger.app_id, operator=True)
            outcomes = self._app_outcomes(app, trigger, deadline)
        else:
            outcomes, extra = self._plan(registry, trigger, deadline)
        return RunSummary.of(
            outcomes,
            invalid_entries=tuple(sorted(registry.invalid.items())),
            registry_fallback=registry.fallback,
            unreadable_shards=tuple(sorted(registry.unreadable.items())),
            **extra,
        )

    def report(self, trigger: Passive, deadline: Deadline | None = None) -> RunSummary:
        """A consumer's report: replace the token only if WeChat confirms it is dead."""
        deadline = deadline or self.deadline()
        app = self._app(self.registry.load(), trigger.app_id, operator=False)
        if trigger.kind.is_ticket and trigger.kind.ticket_type not in app.tickets:
            raise EventError(f"App {app.app_id!r} has no {trigger.kind} in the registry.")
        outcome = self._guarded(Credential(app, trigger.kind), trigger, deadline)
        outcomes = [outcome]
        if outcome.status is Status.REFRESHED and not trigger.kind.is_ticket:
            outcomes += self._tickets(app, deadline)
        return RunSummary.of(outcomes)

    # -- fan-out ------------------------------------------------------------------------

    def _plan(
        self, registry: Registry, trigger: Scheduled, deadline: Deadline
    ) -> tuple[list[Outcome], dict[str, Any]]:
        """The scheduled run: plan the due apps from the due index and send them to the
        work queue (outcomes only when the worker runs in this process); then each
        platform's own steps (authorization events, the nightly reconciliation, the
        verify-ticket age)."""
        lanes = lanes_of(trigger.types)
        outcomes: list[Outcome] = []

        def send(app_ids: list[str]) -> None:
            self._work_deadline = deadline  # an in-process worker shares the run's time
            try:
                outcomes.extend(self.queue.send(app_ids))
            finally:
                self._work_deadline = None

        report = self.planner.plan(registry, lanes, deadline.now(), send)
        if any(lane != STABLE_LANE for lane in lanes):
            report = replace(report, quiet_floor=self.rules.renew_below_seconds)
        ages: list[float] = []
        for component in registry.values():
            if component.type == COMPONENT and lane_of(COMPONENT) in lanes:
                ages.append(self._platform_steps(component, deadline))
        return outcomes, {"plan": report, "ticket_ages": tuple(ages)}

    def _platform_steps(self, component: AppConfig, deadline: Deadline) -> float:
        """A component's steps outside its credentials; the age of its verify ticket."""
        for key in self._guard_platform(component, self.platform.pending_events) or []:
            self._guard_platform(component, partial(self.platform.handle_event, key=key))
        if self._reconcile_due(component, deadline.now()):
            self._guard_platform(component, partial(self.platform.reconcile, reason="nightly"))
        return self._ticket_age(component, deadline.now())

    # -- the worker ---------------------------------------------------------------------------

    def work(self, app_ids: Sequence[str], deadline: Deadline | None = None) -> list[Outcome]:
        """The planned apps' credentials, each through its full refresh (in-process)."""
        deadline = deadline or self._work_deadline or self.deadline()
        registry = self.registry.load()
        units = list(dict.fromkeys(app_ids))

        def one(app_id: str) -> list[Outcome]:
            try:
                return self.work_one(app_id, registry, deadline)
            except RegistryError as error:
                logger.error("%s: %s", app_id, error)
                return []

        if len(units) <= 1:
            return [outcome for app_id in units for outcome in one(app_id)]
        workers = max(1, min(self.settings.concurrency, len(units)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="refresh") as pool:
            return [outcome for batch in pool.map(one, units) for outcome in batch]

    def work_one(self, app_id: str, registry: Registry, deadline: Deadline) -> list[Outcome]:
        """One planned app: its token and tickets, a component's token, or an authorizer's
        token. An app no longer registered is taken out of the due index; one whose
        registry shard cannot be read raises ``RegistryError`` (its message comes back)."""
        app = self._registered(registry, app_id)
        if app is None:
            if registry.unreadable:
                raise RegistryError(
                    f"{app_id!r} is not in the registry as read, and registry secret(s) "
                    f"{', '.join(sorted(registry.unreadable))} could not be read: it is "
                    "retried when the message comes back"
                )
            self._unfile(app_id)
            return []
        scheduled = Scheduled()
        if app.type == COMPONENT:
            return [
                self._guarded(Credential(app, Kind.COMPONENT_ACCESS_TOKEN), scheduled, deadline)
            ]
        if app.type != AUTHORIZER:
            return self._app_outcomes(app, scheduled, deadline)
        outcome = self._guarded(Credential(app), scheduled, deadline)
        assert app.component is not None
        if outcome.status is Status.FAILED and outcome.error_code in ("61023", "no_token"):
            reason = f"{app.app_id}: refresh token refused or missing"
            if self.platform.claim_reconcile(app.component, deadline.now()) and (
                self._guard_platform(app.component, partial(self.platform.reconcile, reason=reason))
            ):
                outcome = self._guarded(Credential(app), scheduled, deadline)
        return [outcome]

    def _registered(self, registry: Registry, app_id: str) -> AppConfig | None:
        if app_id in registry:
            return registry[app_id]
        component_id, _, authorizer = app_id.partition(":")
        component = registry.apps.get(component_id)
        if component is not None and component.type == COMPONENT and authorizer:
            return AppConfig.authorizer(component, authorizer)
        return None

    def _unfile(self, app_id: str) -> None:
        """An app no longer in the registry: its records leave the due index."""
        kinds = [ACCESS_TOKEN, Kind.COMPONENT_ACCESS_TOKEN, *(k for k in Kind if k.is_ticket)]
        for kind in kinds:
            record = self.store.find(CredentialKey(app_id, kind))
            if record is not None and record.due_at is not None:
                self.store.set_due(record.key, None, was=record.due_at)
                logger.warning(
                    "%s: not in the registry any more; taken out of the due index", record.key
                )

    def _authorized(self, registry: Registry, trigger: Authorize, deadline: Deadline) -> Outcome:
        """An operator's authorization code: exchanged now; the authorizer's outcome."""
        component = self._app(registry, trigger.app_id, operator=True)
        if component.type != COMPONENT:
            raise EventError(f"{trigger.app_id!r} is not a component (a third-party platform).")
        try:
            authorizer = self.platform.authorize(component, trigger.code, created=deadline.now())
        except RefreshError as error:
            record = CredentialRecord(component.app_id, Kind.COMPONENT_ACCESS_TOKEN)
            return Outcome.failed_with(record, error, deadline.now(), self._budget, calls=1)
        stored = self.store.read(CredentialKey(authorizer.app_id, ACCESS_TOKEN))
        return replace(
            Outcome.skipped(stored, Status.REFRESHED, deadline.now(), self._budget),
            wechat_calls=1,
            app_type=AUTHORIZER,
        )

    def _forced(self, app: AppConfig, trigger: Forced, deadline: Deadline) -> list[Outcome]:
        if trigger.kind.is_ticket:
            if trigger.kind.ticket_type not in app.tickets:
                raise EventError(
                    f"App {app.app_id!r} has no {trigger.kind!s} in the registry: add "
                    f'"tickets": [{trigger.kind.ticket_type!r}] to its entry.'
                )
            return [self._guarded(Credential(app, trigger.kind), trigger, deadline)]
        return self._app_outcomes(app, trigger, deadline)

    def _app_outcomes(
        self, app: AppConfig, trigger: Scheduled | Forced, deadline: Deadline
    ) -> list[Outcome]:
        """The app's access_token, then its tickets (fetched with the token just stored).

        Tickets are bound to the token that fetched them: after a forced token refresh they
        get their due check, which renews them because the token they are bound to rotated.
        A component: its token, then its authorization events, then its authorizers.
        """
        if app.type == COMPONENT:
            return self._component_outcomes(app, trigger, deadline)
        return [self._guarded(Credential(app), trigger, deadline), *self._tickets(app, deadline)]

    def _component_outcomes(
        self, app: AppConfig, trigger: Scheduled | Forced, deadline: Deadline
    ) -> list[Outcome]:
        outcomes = [self._guarded(Credential(app, Kind.COMPONENT_ACCESS_TOKEN), trigger, deadline)]
        for key in self._guard_platform(app, self.platform.pending_events) or []:
            self._guard_platform(app, partial(self.platform.handle_event, key=key))
        authorizers = self._guard_platform(app, self.platform.authorizers) or []
        scheduled = Scheduled()  # an operator's force of a component forces its token only
        results = self._each(authorizers, scheduled, deadline)
        # 61023: WeChat refused the refresh token; no_token: none is stored (wiped, lost).
        lost = [
            o
            for o in results
            if o.status is Status.FAILED and o.error_code in ("61023", "no_token")
        ]
        if lost or self._reconcile_due(app, deadline.now()):
            reason = f"{len(lost)} refresh token(s) refused or missing" if lost else "nightly"
            if self._guard_platform(app, partial(self.platform.reconcile, reason=reason)):
                retried = {o.app_id for o in lost}
                again = self._each(
                    [a for a in authorizers if a.app_id in retried], scheduled, deadline
                )
                results = [o for o in results if o.app_id not in retried] + again
        return outcomes + results

    def _each(self, apps: list[AppConfig], trigger: Scheduled, deadline: Deadline) -> list[Outcome]:
        """One credential per app (an authorizer's token), with bounded concurrency."""
        if len(apps) <= 1:
            return [self._guarded(Credential(app), trigger, deadline) for app in apps]
        workers = max(1, min(self.settings.concurrency, len(apps)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="authorizer") as pool:
            return list(pool.map(lambda a: self._guarded(Credential(a), trigger, deadline), apps))

    def _ticket_age(self, app: AppConfig, now: float) -> float:
        """Seconds since the last verify-ticket push was stored (a ticket's 12 h if none)."""
        ticket = self.store.read(ticket_key(app.app_id))
        return now - ticket.fetched_at if ticket.fetched_at is not None else TICKET_LIFE_SECONDS

    def _reconcile_due(self, app: AppConfig, now: float) -> bool:
        """Reconcile once a WeChat day (the first run after midnight UTC+8)."""
        record = self.store.read(CredentialKey(app.app_id, Kind.COMPONENT_ACCESS_TOKEN))
        if not record.is_valid(now):
            return False
        last = record.reconciled_at
        return last is None or wechat_day(last) != wechat_day(now)

    def _guard_platform(self, app: AppConfig, step: Callable[..., Any], **kw: Any) -> Any:
        """A platform step outside any one credential: its failure is logged, the run goes
        on (the next run tries again)."""
        try:
            return step(app, **kw)
        except RefresherError as error:
            logger.error("%s: %s", app.app_id, error)
        except Exception:  # a bug: logged with its traceback
            logger.exception("%s: unexpected error in a platform step", app.app_id)
        return None

    def _tickets(self, app: AppConfig, deadline: Deadline) -> list[Outcome]:
        return [
            self._guarded(Credential(app, Kind.of_ticket(ticket)), Scheduled(), deadline)
            for ticket in app.tickets
        ]

    def _guarded(self, cred: Credential, trigger: Trigger, deadline: Deadline) -> Outcome:
        """``refresh``, timed, with everything it raises turned into this credential's
        outcome: one app's failure never stops the others."""
        watch = Stopwatch()
        failure: RefresherError | None = None
        try:
            if not deadline.fits(self.settings.refresh_cost_seconds()):
                failure = DeadlineError(
                    "not started: the run's remaining time could not fit one more refresh; "
                    "the schedule's retry or next run picks it up"
                )
            else:
                outcome = self.refresh(cred, trigger, deadline)
        except EventError:
            raise
        except RefresherError as exc:
            failure = exc
        except Exception:  # a bug: logged with its traceback, reported by class
            logger.exception("%s: unexpected error", cred.key)
            failure = RefresherError("unexpected error; see the refresher's logs")
        if failure is not None:
            logger.error("%s: %s", cred.key, failure)
            empty = CredentialRecord(cred.app.app_id, cred.kind)
            status = Status.DEADLINE if isinstance(failure, DeadlineError) else Status.FAILED
            outcome = Outcome.failed_with(
                empty, failure, deadline.now(), self._budget, status=status
            )
        return replace(outcome, duration_ms=watch.ms(), app_type=cred.app.type)

    # -- one credential -----------------------------------------------------------------

    def refresh(self, cred: Credential, trigger: Trigger, deadline: Deadline) -> Outcome:
        """design.md's five steps. Every early return leaves the stored value as it was."""
        ticketing = self._ticketing(cred, deadline.now())
        record = self.store.read(cred.key)  # 1. consistent read
        verdict = self._verdict(cred, record, trigger, deadline)
        decision = _Decision(trigger, self.rules, cred.app.type, deadline, ticketing, verdict)
        if (why := decision.why(record)) is not None:
            if isinstance(trigger, Scheduled):
                self._refile(cred, record, why, deadline.now())
            return self._skipped(record, why, deadline)
        lease = self._acquire(cred, record, decision)  # 2. lease
        if not isinstance(lease, Lease):  # held by someone else: what it left, or held
            return self._skipped(lease, decision.why(lease) or Status.LEASE_HELD, deadline)
        if isinstance(trigger, Scheduled):  # a surprise leaves it due at the next run
            retry = policy.due_after_failure(deadline.now(), self.rules)
            lease.due_on_surprise = self._filed(cred, retry, deadline.now())
        with lease:  # released on any surprise
            why = decision.why(lease.record)
            if why is not None:  # 3. double-check, on the record as the lease found it
                scheduled = isinstance(trigger, Scheduled)
                lease.release(self._due(cred, lease.record, deadline.now()) if scheduled else None)
                return self._skipped(lease.record, why, deadline)
            foreign = policy.is_foreign_rotation(lease.record, deadline.now(), verdict)
            if foreign:
                self._warn_foreign(lease.record)
            try:
                fetched, force = self._fetch(cred, lease, decision)
                new = self._new_value(cred, fetched, force, trigger, foreign, ticketing)
                if cred.app.type == AUTHORIZER:
                    copy = self.platform.refresh_token_copy(cred.app.app_id, fetched, lease.record)
                    new = replace(new, refresh_token=copy)
                if fetched.value == lease.record.value:
                    new = self._handed_out_again(cred, new, fetched, lease.record)
                due = policy.due_after_success(
                    new.expires_at,
                    new.renewable_at,
                    cred.app.type,
                    self.rules,
                    now=deadline.now(),
                    probe_every=self._probe_every(cred),
                )
                # 4. fenced write, 5. releases the lease
                stored = lease.commit(new, self._filed(cred, due, deadline.now()))
            except RefreshError as error:
                scheduled = isinstance(trigger, Scheduled)
                retry = policy.due_after_failure(deadline.now(), self.rules)
                lease.fail(
                    error,
                    deadline.now(),
                    triggered=not scheduled,
                    due=self._filed(cred, retry, deadline.now()) if scheduled else None,
                )
                logger.error("%s: refresh failed (%s): %s", cred.key, error.code, error)
                calls = lease.record.calls_today(deadline.now()) - record.calls_today(
                    deadline.now()
                )
                return Outcome.failed_with(
                    record, error, deadline.now(), self._budget, calls=calls, foreign=foreign
                )
        calls = stored.calls_today(deadline.now()) - record.calls_today(deadline.now())
        self._log_stored(stored, calls, force)
        return Outcome.refreshed(
            stored, lease.record, deadline.now(), self._budget,
            calls=calls, passive=isinstance(trigger, Passive), foreign=foreign,
        )  # fmt: skip

    @property
    def _budget(self) -> int:
        return self.settings.daily_call_budget

    def _skipped(self, record: CredentialRecord, status: Status, deadline: Deadline) -> Outcome:
        now = deadline.now()
        if status is Status.CONFIGURATION_HOLD:
            return Outcome.skipped(
                record,
                status,
                now,
                self._budget,
                error_class=record.last_error_class,
                error_code=record.last_error_code,
                error_message=f"not retried: {record.last_error_message or record.last_error_code}"
                f" (recorded {now - (record.last_error_at or now):.0f} s ago; fix it, then "
                "force a refresh)",
            )
        if status is Status.TOKEN_ACCEPTED:
            logger.info(
                "%s: a consumer reported %s rejected, but WeChat accepts it: the consumer's "
                "failure lies elsewhere (its own clock, another app's token, a cached copy)",
                record.key,
                record.fingerprint(),
            )
        return Outcome.skipped(record, status, now, self._budget)

    # -- the due index --------------------------------------------------------------------

    def _filed(self, cred: Credential, at: float, now: float) -> Due:
        """The credential's due-index entry at ``at``, always ahead of the planner runs
        that have already planned (so that the next one finds it)."""
        return self.due_index.due(cred.app.app_id, cred.app.type, max(at, now + DUE_AHEAD_SECONDS))

    def _due(self, cred: Credential, record: CredentialRecord, now: float) -> Due | None:
        at = policy.due_of(
            record, cred.app.type, self.rules, now, probe_every=self._probe_every(cred)
        )
        return None if at is None else self._filed(cred, at, now)

    def _refile(self, cred: Credential, record: CredentialRecord, why: Status, now: float) -> None:
        """A scheduled skip: put the record's due-index entry right if it is wrong (lost,
        stale, filed before this version), so that the planner does not send it again."""
        if why not in (Status.NOT_DUE, Status.CONFIGURATION_HOLD, Status.REVOKED):
            return
        due = self._due(cred, record, now)
        if due is None:
            if record.due_at is not None:
                self.store.set_due(record.key, None, was=record.due_at)
            return
        filed = record.due_at is not None and record.due_shard == due.shard
        if filed and record.due_at is not None and record.due_at > now:
            return  # filed ahead of now: the planner finds it when it comes
        self.store.set_due(record.key, due, was=record.due_at)

    def _ticketing(self, cred: Credential, now: float) -> _Ticketing:
        """A ticket is fetched with, and bound to, the app's current access token."""
        if not cred.kind.is_ticket:
            return _Ticketing()
        token = self.store.read(CredentialKey(cred.app.app_id, ACCESS_TOKEN))
        if not token.is_valid(now):
            raise NoTokenError(
                f"No valid access_token for {cred.app.app_id!r} to fetch its {cred.kind} with; "
                "the token refresh failed first"
            )
        return _Ticketing(token.value, token.fingerprint())

    def _acquire(
        self, cred: Credential, record: CredentialRecord, decision: _Decision
    ) -> Lease | CredentialRecord:
        """The lease, or the record as it stands when someone else holds it.

        A scheduled run waits for a held lease (bounded by the deadline) and decides again,
        so that a crashed holder does not leave a due credential unrefreshed.
        """
        deadline = decision.deadline
        triggered = not isinstance(decision.trigger, Scheduled)
        owner = deadline.lease_owner()
        cap = self.rules.consumer_daily_cap if isinstance(decision.trigger, Passive) else None
        first_call = FirstCall(self._budget, cap)
        for _ in range(2):
            lease = self.store.acquire(
                cred.key,
                owner,
                deadline.now(),
                deadline.lease_until(),
                triggered=triggered,
                basis=record,
                first_call=first_call,
            )
            if lease is not None or triggered:
                return lease or record
            logger.info("%s: another refresher holds the lease; waiting for it", cred.key)
            record = self._wait_for_lease(cred.key, deadline)
            if record.lease_is_live(deadline.now()):
                return record
            if decision.why(record) is not None:
                return record  # the holder did the work: the double-check will see it
        return record

    def _wait_for_lease(self, key: CredentialKey, deadline: Deadline) -> CredentialRecord:
        record = self.store.read(key)
        polls = int(self.settings.lease_seconds / LEASE_POLL_SECONDS) + 1
        for _ in range(polls):
            now = deadline.now()
            if not record.lease_is_live(now):
                break
            if not deadline.fits(self.settings.refresh_cost_seconds() + LEASE_POLL_SECONDS):
                break
            self._sleep(min(LEASE_POLL_SECONDS, (record.lease_until or now) - now + 0.1))
            record = self.store.read(key)
        return record

    def _fetch(
        self, cred: Credential, lease: Lease, decision: _Decision
    ) -> tuple[FetchedCredential, bool]:
        """One WeChat fetch with bounded retries; every attempt counted first."""
        trigger, deadline = decision.trigger, decision.deadline
        force = self._force(cred, lease, decision)
        consumer_cap = self.rules.consumer_daily_cap if isinstance(trigger, Passive) else None

        def time_left() -> float:
            return min(deadline.left(), lease.until - deadline.now() - 5.0)

        attempt = partial(
            self._attempt, cred, lease, force, decision.ticketing, consumer_cap, time_left
        )
        fetched = call_with_retries(
            attempt,
            policy=self._retry,
            time_left=time_left,
            attempt_cost=self.settings.http_timeout_seconds,
            sleep=self._sleep,
            rng=self._rng,
            on_retry=partial(self._log_retry, cred.key),
        )
        if (
            fetched.value == lease.record.value
            and cred.app.type == STABLE
            and not force
            and self.rules.is_due(lease.record, deadline.now(), STABLE)
        ):
            fetched = self._until_rotated(cred, lease, fetched, attempt, time_left)
        if fetched.value == lease.record.value:
            return fetched, force  # handed out again: stored with when it can be renewed
        margin = self._expiry_margin(cred)
        if fetched.expires_in <= margin:
            raise GarbledReplyError(
                f"WeChat {fetched.source} gave app {cred.app.app_id!r} a {cred.kind} that "
                f"expires in {fetched.expires_in} s, inside the {margin:.0f} s safety "
                "margin; nothing was stored"
            )
        return fetched, force

    def _until_rotated(
        self,
        cred: Credential,
        lease: Lease,
        fetched: FetchedCredential,
        attempt: Callable[[], FetchedCredential],
        time_left: Callable[[], float],
    ) -> FetchedCredential:
        """In its window a stable token may come back unchanged: the answering WeChat
        server still counts 300 s or more. Ask again ``stable_retry_seconds`` later, up to
        ``stable_calls_per_run`` calls in all, inside the lease; a failed call ends the
        polling (the next run asks again) without touching the stored token."""
        settings = self.settings
        for _ in range(settings.stable_calls_per_run - 1):
            if fetched.value != lease.record.value:
                break
            if time_left() < settings.stable_retry_seconds + settings.http_timeout_seconds:
                break
            self._sleep(settings.stable_retry_seconds)
            try:
                fetched = attempt()
            except RefreshError as error:
                logger.warning(
                    "%s: asking again in the stable window failed (%s); the next run asks again",
                    cred.key,
                    error.code,
                )
                break
        return fetched

    def _expiry_margin(self, cred: Credential) -> float:
        """What is taken off WeChat's expires_in before storing: the servers' skew, or for
        a stable token the smaller margin its overlap window allows."""
        if cred.app.type == STABLE and not cred.kind.is_ticket:
            return self.settings.stable_expiry_margin_seconds
        return self.settings.expiry_skew_seconds

    def _attempt(
        self,
        cred: Credential,
        lease: Lease,
        force: bool,
        ticketing: _Ticketing,
        consumer_cap: int | None,
        time_left: Callable[[], float],
    ) -> FetchedCredential:
        def count() -> None:  # every WeChat call: a permit of the rate ceiling, then its count
            self.limiter.take(self._scopes(cred.app), time_left=time_left)
            lease.count_call(self._clock(), self._budget, consumer_cap=consumer_cap)

        count()
        ticket_type = cred.kind.ticket_type
        if ticket_type is not None and ticketing.token is not None:
            return self.api.fetch_ticket(cred.app, ticketing.token, ticket_type)
        if cred.kind is Kind.COMPONENT_ACCESS_TOKEN:
            return self.platform.fetch_component_token(cred.app, count)
        if cred.app.type == AUTHORIZER:
            return self.platform.fetch_authorizer_token(cred.app, lease.record)
        return self.api.fetch_token(cred.app, force=force)

    @staticmethod
    def _scopes(app: AppConfig) -> tuple[str, ...]:
        """The rate ceilings a call for ``app`` counts against."""
        if app.type == COMPONENT:
            return (DEPLOYMENT, component_scope(app.app_id))
        if app.type == AUTHORIZER and app.component is not None:
            return (DEPLOYMENT, component_scope(app.component.app_id))
        return (DEPLOYMENT,)

    def _force(self, cred: Credential, lease: Lease, decision: _Decision) -> bool:
        """Whether this stable-token fetch uses force_refresh (WeChat: 20 a day, 30 s apart):
        only where the normal mode cannot help (``policy.needs_force``), within the daily
        allowance; past it, the normal call still rotates a token WeChat counts as ending."""
        if not policy.needs_force(
            lease.record, decision.trigger, app_type=cred.app.type, verdict=decision.verdict
        ):
            return False
        return lease.reserve_force(
            decision.deadline.now(),
            limit=self.settings.stable_force_daily_limit,
            min_gap=STABLE_FORCE_MIN_GAP_SECONDS,
        )

    def _new_value(
        self,
        cred: Credential,
        fetched: FetchedCredential,
        force: bool,
        trigger: Trigger,
        foreign: bool,
        ticketing: _Ticketing,
    ) -> NewValue:
        if force:
            grace = 0.0  # a forced stable rotation ends the old token at once (WeChat's docs)
        elif cred.app.type == STABLE:
            grace = WECHAT_GRACE_SECONDS  # the old one is valid until its own expiry
        else:
            grace = self.settings.previous_grace_seconds
        return NewValue(
            value=fetched.value,
            expires_at=fetched.sent_at + fetched.expires_in - self._expiry_margin(cred),
            fetched_at=fetched.sent_at,
            source=fetched.source,
            # Never later than the old token's stored expiry (the fenced write's min).
            previous_valid_until=fetched.sent_at + grace,
            passive=isinstance(trigger, Passive),
            foreign_rotation=foreign,
            bound_to=ticketing.bound_to,
        )

    def _handed_out_again(
        self, cred: Credential, new: NewValue, fetched: FetchedCredential, stored: CredentialRecord
    ) -> NewValue:
        """The endpoint answered with the stored value.

        Stable (in its window): ask again ``stable_retry_seconds`` later; the token keeps
        its age, and its stored expiry only moves earlier (each reply is one server's view).
        WeCom hands out its current token until it expires, so it cannot be renewed early:
        note when it can, and keep only the servers' skew (not the full margin) off its
        life, which shortens the gap before the new one.
        """
        if cred.app.type == STABLE:
            return replace(
                new,
                expires_at=min(new.expires_at, stored.expires_at or new.expires_at),
                fetched_at=stored.fetched_at or new.fetched_at,
                renewable_at=fetched.sent_at + self.settings.stable_retry_seconds,
            )
        ends = fetched.sent_at + fetched.expires_in
        return replace(new, expires_at=ends - WECHAT_SERVER_SKEW_SECONDS, renewable_at=ends)

    # -- asking WeChat about the stored token --------------------------------------------

    def _verdict(
        self, cred: Credential, record: CredentialRecord, trigger: Trigger, deadline: Deadline
    ) -> Verdict:
        """Ask WeChat (a business API, outside the token quota) about the stored token:
        always before a consumer's report may rotate it, and on scheduled runs at most every
        ``probe_interval_seconds``, to find tokens invalidated behind our back."""
        now = deadline.now()
        if policy.needs_verdict(record, trigger, now):
            if self._accepted.get((cred.key, record.fingerprint() or ""), 0.0) > now:
                return Verdict.ACCEPTED
        elif not self._probe_due(cred, record, trigger, now):
            return Verdict.UNCHECKED
        if not deadline.fits(2 * self.settings.http_timeout_seconds + CONFIRM_PAUSE_SECONDS):
            return Verdict.UNKNOWN
        self._probed[cred.key] = now
        verdict = self._probe(cred, record)
        if verdict is Verdict.REJECTED:  # one server's word is not enough: ask again
            self._sleep(CONFIRM_PAUSE_SECONDS)
            verdict = self._probe(cred, record)
        if verdict is Verdict.ACCEPTED and isinstance(trigger, Passive):
            self._accepted[(cred.key, record.fingerprint() or "")] = now + ACCEPTED_MEMORY_SECONDS
        return verdict

    def _probe_every(self, cred: Credential) -> float | None:
        """How often the scheduled probe asks WeChat about this credential's stored token
        (None: never): its due-index entry comes that often, so that a worker looks."""
        probed = cred.kind is ACCESS_TOKEN and self.settings.probe_stored_tokens
        return self.settings.probe_interval_seconds if probed else None

    def _probe_due(
        self, cred: Credential, record: CredentialRecord, trigger: Trigger, now: float
    ) -> bool:
        return (
            self.settings.probe_stored_tokens
            and isinstance(trigger, Scheduled)
            and not cred.kind.is_ticket
            and cred.kind is not Kind.COMPONENT_ACCESS_TOKEN  # no business API takes it
            and record.is_valid(now)
            and now - self._probed.get(cred.key, float("-inf"))
            >= self.settings.probe_interval_seconds
        )

    def _probe(self, cred: Credential, record: CredentialRecord) -> Verdict:
        assert record.value is not None
        try:
            errcode = self.api.probe(cred.app, record.value)
        except RefreshError as exc:
            logger.info("%s: could not probe the stored token (%s)", cred.key, exc.code)
            return Verdict.UNKNOWN
        if errcode in INVALID_TOKEN_CODES:
            return Verdict.REJECTED
        return Verdict.UNKNOWN if errcode == -1 else Verdict.ACCEPTED

    # -- logs -----------------------------------------------------------------------------

    def _app(self, registry: Registry, app_id: str, *, operator: bool) -> AppConfig:
        if app_id in registry:
            return registry[app_id]
        component_id, _, authorizer = app_id.partition(":")
        component = registry.apps.get(component_id)
        if component is not None and component.type == COMPONENT and authorizer:
            record = self.store.find(CredentialKey(app_id, ACCESS_TOKEN))
            if record is not None and record.component_appid == component.app_id:
                return AppConfig.authorizer(component, authorizer)
            raise EventError(
                f"{authorizer!r} has not authorized the platform {component_id!r} (no "
                "authorizer record): the merchant must authorize it first."
            )
        if app_id in registry.invalid:
            raise EventError(
                f"App {app_id!r} has an invalid registry entry: {registry.invalid[app_id]}"
            )
        known = f" (known apps: {', '.join(sorted(registry)) or 'none'})" if operator else ""
        raise EventError(
            f"App {app_id!r} is not in the registry secret {self.settings.registry_secret_id!r}"
            f"{known}. Add it there, or check the app_id's spelling."
        )

    def _warn_foreign(self, record: CredentialRecord) -> None:
        logger.warning(
            "%s: WeChat rejected stored token %s before its expiry at %s: something else "
            "fetched a token for this app (another server, a test tool, a second deployment); "
            "only wechat-token may call the token endpoint",
            record.key,
            record.fingerprint(),
            iso(record.expires_at),
        )

    def _log_retry(self, key: CredentialKey, number: int, exc: RefreshError, pause: float) -> None:
        logger.warning(
            "%s: attempt %d failed (%s), retrying in %.1f s", key, number, exc.code, pause
        )

    def _log_stored(self, stored: CredentialRecord, calls: int, force: bool) -> None:
        logger.info(
            "%s: stored %s (version %d), expires %s, %d WeChat call(s)%s",
            stored.key,
            stored.fingerprint(),
            stored.version,
            iso(stored.expires_at),
            calls,
            " (forced)" if force else "",
        )
