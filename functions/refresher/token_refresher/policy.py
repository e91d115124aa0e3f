"""Whether WeChat may be called now: one pure function of (record, trigger, now, rules).

No I/O, no clock of its own, no AWS or HTTP imports: every rule that decides whether a
credential's endpoint is called lives here, so that each rule is tested as a table and as
properties (``tests/unit/test_policy.py``).

    skip(record, trigger, now, rules, verdict) -> Status | None     None = go ahead

- Scheduled: a missing value, a ticket bound to a rotated token, a token WeChat rejected
  (the scheduled probe), or a credential inside its renewal window goes ahead; a
  configuration error is not repeated for ``configuration_hold_seconds``.
- Forced (operators): spaced by the last forced or passive attempt, longer after each
  failure; never rotates a credential younger than ``min_age_seconds``.
- Passive (consumers): a report on a token that is no longer the stored one is answered
  without WeChat; otherwise spaced like a force, capped per day, and only a WeChat
  rejection of the stored token (``verdict``) lets it rotate.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from wechat_token.record import CredentialRecord, Kind

from .errors import ErrorClass
from .outcome import Status
from .registry import STABLE
from .triggers import Forced, Passive, Scheduled, Trigger


class Verdict(Enum):
    """What WeChat said about the stored token when asked with a business call."""

    UNCHECKED = "unchecked"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    UNKNOWN = "unknown"  # asked, but no answer (WeChat busy, network)


@dataclass(frozen=True, slots=True)
class Rules:
    """The policy's numbers (from Settings)."""

    # Renew when less than this much conservative life is left (schedule period + slack).
    renew_below_seconds: float = 3900.0
    # A stable token: from when its overlap window opens (Settings.stable_window_opens_below).
    stable_renew_below_seconds: float = 300.0
    # No trigger rotates a credential younger than this (consumers cache up to 120 s and
    # WeChat keeps only two tokens: a quicker rotation evicts the one they hold).
    min_age_seconds: float = 120.0
    # Forced and passive attempts are spaced by their last attempt, doubling per failure.
    trigger_spacing_seconds: float = 60.0
    max_cooldown_seconds: float = 3600.0
    consumer_daily_cap: int = 100
    configuration_hold_seconds: float = 600.0
    # A failed scheduled refresh is due again this much later (the next planner run).
    failure_retry_seconds: float = 60.0

    def renew_below(self, app_type: str) -> float:
        return self.stable_renew_below_seconds if app_type == STABLE else self.renew_below_seconds

    def cooldown(self, record: CredentialRecord) -> float:
        """Spacing after the last forced/passive attempt: doubles with each failure."""
        return min(
            self.max_cooldown_seconds,
            self.trigger_spacing_seconds * float(2 ** min(record.trigger_failures, 16)),
        )

    def too_soon(self, record: CredentialRecord, now: float) -> bool:
        return record.triggered_at is not None and now - record.triggered_at < self.cooldown(record)

    def too_young(self, record: CredentialRecord, now: float) -> bool:
        return record.is_valid(now) and record.age(now) < self.min_age_seconds

    def is_due(self, record: CredentialRecord, now: float, app_type: str) -> bool:
        return record.remaining(now) < self.renew_below(app_type)

    def held_for_configuration(self, record: CredentialRecord, now: float) -> bool:
        return (
            record.error_is_current()
            and record.last_error_class == ErrorClass.CONFIGURATION
            and record.last_error_at is not None
            and now - record.last_error_at < self.configuration_hold_seconds
        )


def skip(
    record: CredentialRecord,
    trigger: Trigger,
    now: float,
    rules: Rules,
    *,
    app_type: str,
    bound_to: str | None = None,
    verdict: Verdict = Verdict.UNCHECKED,
) -> Status | None:
    """Why WeChat must not be called now, or None to go ahead.

    ``bound_to``: for a ticket, the fingerprint of the current access token;
    ``verdict``: what WeChat answered about the stored token, where it was asked.
    """
    if record.is_revoked:
        return Status.REVOKED  # nothing to refresh until the merchant authorizes again
    match trigger:
        case Passive():
            return _skip_passive(record, trigger, now, rules, verdict)
        case Forced():
            if rules.too_soon(record, now) or rules.too_young(record, now):
                return Status.RATE_LIMITED
            return None
        case Scheduled():
            return _skip_scheduled(record, now, rules, app_type, bound_to, verdict)


def _skip_scheduled(
    record: CredentialRecord,
    now: float,
    rules: Rules,
    app_type: str,
    bound_to: str | None,
    verdict: Verdict,
) -> Status | None:
    if rules.held_for_configuration(record, now):
        return Status.CONFIGURATION_HOLD
    if not record.has_value or verdict is Verdict.REJECTED:
        return None
    if bound_to is not None and record.bound_to != bound_to:
        return None  # a ticket fetched with a token that has since rotated
    if record.renewable_at is not None and now < record.renewable_at:
        return Status.NOT_DUE  # the endpoint hands out this same value until then
    return None if rules.is_due(record, now, app_type) else Status.NOT_DUE


def _skip_passive(
    record: CredentialRecord, trigger: Passive, now: float, rules: Rules, verdict: Verdict
) -> Status | None:
    if record.has_value and not record.holds(trigger.stale):
        return Status.ALREADY_REPLACED
    if rules.too_soon(record, now):
        return Status.RATE_LIMITED
    if record.consumer_calls_today(now) >= rules.consumer_daily_cap:
        return Status.CONSUMER_CAP
    if not record.is_valid(now) or verdict is Verdict.REJECTED:
        return None  # nothing usable is stored, or WeChat itself says it is dead
    return Status.TOKEN_ACCEPTED if verdict is Verdict.ACCEPTED else Status.UNVERIFIED


# ``is_due`` holds from just after the renewal point (less than renew_below left).
DUE_AFTER_RENEWAL_POINT = 1.0


def due_after_success(
    expires_at: float,
    renewable_at: float | None,
    app_type: str,
    rules: Rules,
    *,
    now: float,
    probe_every: float | None = None,
) -> float:
    """When a freshly stored value is next due: its renewal point (``is_due``), or when the
    endpoint will hand out a new value, whichever is later; sooner when the stored token
    is probed (``probe_every``: asked about every so often, to find foreign fetches)."""
    due = expires_at - rules.renew_below(app_type) + DUE_AFTER_RENEWAL_POINT
    if renewable_at is not None:
        due = max(due, renewable_at)
    return min(due, now + probe_every) if probe_every is not None else due


def due_after_failure(now: float, rules: Rules) -> float:
    """When a failed credential is due again: the next run. A configuration error is then
    held (not retried) for ``configuration_hold_seconds``, but each run still reports it."""
    return now + rules.failure_retry_seconds


def due_of(
    record: CredentialRecord,
    app_type: str,
    rules: Rules,
    now: float,
    *,
    probe_every: float | None = None,
) -> float | None:
    """When ``record`` as it stands is next due (None: never again, e.g. revoked): what the
    due index must say, so that an entry found wrong (lost, stale) can be put right."""
    if record.is_revoked:
        return None
    if record.error_is_current():
        return due_after_failure(now, rules)
    if not record.has_value or record.expires_at is None:
        return now
    return due_after_success(
        record.expires_at, record.renewable_at, app_type, rules, now=now, probe_every=probe_every
    )


def needs_verdict(record: CredentialRecord, trigger: Trigger, now: float) -> bool:
    """Whether WeChat should be asked about the stored token before deciding: a passive
    report on the valid stored token (verify before rotating)."""
    return isinstance(trigger, Passive) and record.is_valid(now) and record.holds(trigger.stale)


def needs_force(
    record: CredentialRecord, trigger: Trigger, *, app_type: str, verdict: Verdict
) -> bool:
    """Whether a stable token's fetch must use force_refresh. Normal mode hands out the
    token WeChat counts as current, and rotates it with an overlap in its last 5 minutes;
    only a token WeChat itself rejects (a consumer's confirmed report, the scheduled probe)
    or an operator's explicit force needs a forced rotation, which ends the old one at once.
    """
    if app_type != STABLE or not record.has_value or Kind(record.kind).is_ticket:
        return False
    return isinstance(trigger, Forced) or verdict is Verdict.REJECTED


def is_foreign_rotation(record: CredentialRecord, now: float, verdict: Verdict) -> bool:
    """WeChat itself rejected a token we hold as valid: something else fetched one."""
    return verdict is Verdict.REJECTED and record.is_valid(now)
