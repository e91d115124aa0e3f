"""What a refresh did, per credential and per run: the one summary the handler returns,
telemetry publishes and operators read. JSON-safe; never a token or a secret."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from wechat_token.record import ACCESS_TOKEN, CredentialKey, CredentialRecord, iso

from .errors import ErrorClass, RefresherError

if TYPE_CHECKING:
    from .planner import PlanReport
from .registry import STABLE

# At most this many failures are named in a summary or an error message; the rest are
# counted, so that a run over thousands of failing apps still fits one log event.
MAX_NAMED = 25
MAX_LISTED = 100


class Status(StrEnum):
    """Why a credential's run ended as it did."""

    REFRESHED = "refreshed"
    NOT_DUE = "not_due"
    LEASE_HELD = "lease_held"
    ALREADY_REPLACED = "already_replaced"
    TOKEN_ACCEPTED = "token_accepted"  # a report WeChat contradicted: the token works
    UNVERIFIED = "unverified"  # a report WeChat could not be asked about: nothing rotated
    RATE_LIMITED = "rate_limited"
    CONSUMER_CAP = "consumer_cap"  # consumers' daily share of WeChat calls is spent
    CONFIGURATION_HOLD = "configuration_hold"  # a configuration error, not repeated yet
    DEADLINE = "deadline"  # the run's time ran out before this credential started
    REVOKED = "revoked"  # the merchant revoked the platform's authorization: not refreshed
    FAILED = "failed"

    @property
    def failed(self) -> bool:
        """Statuses that leave a credential unrefreshed when it needed it: alarms fire."""
        return self in (Status.FAILED, Status.CONFIGURATION_HOLD, Status.DEADLINE)


@dataclass(frozen=True, slots=True)
class Outcome:
    """One credential's result. Build it with the named constructors."""

    key: CredentialKey
    status: Status
    version: int | None = None
    fingerprint: str | None = None
    expires_at: float | None = None
    seconds_to_expiry: float | None = None
    wechat_calls: int = 0
    calls_today: int | None = None
    budget: int | None = None
    foreign_rotation: bool = False
    passive: bool = False
    error_class: ErrorClass | None = None
    error_code: str | None = None
    error_message: str | None = None
    # Age of the token this refresh replaced (a metric: how early tokens are renewed).
    replaced_age: float | None = None
    duration_ms: int | None = None
    # The endpoint cannot renew the value before this many seconds (WeCom): its expiry is
    # not a refresher failure, and it is kept out of MinSecondsToExpiry.
    renewable_in: float | None = None
    # The registry type of the credential's app (stable tokens have their own metric).
    app_type: str | None = None
    # A component token's outcome: seconds since WeChat's last verify-ticket push arrived.
    ticket_age: float | None = None

    @property
    def is_stable_token(self) -> bool:
        """A stable app's access token: renewed in WeChat's last 5 minutes, not earlier."""
        return self.app_type == STABLE and self.key.kind == ACCESS_TOKEN

    @classmethod
    def skipped(
        cls, record: CredentialRecord, status: Status, now: float, budget: int, **extra: Any
    ) -> Outcome:
        return cls(record.key, status, **_state(record, now, budget), **extra)

    @classmethod
    def refreshed(
        cls,
        stored: CredentialRecord,
        replaced: CredentialRecord,
        now: float,
        budget: int,
        *,
        calls: int,
        passive: bool,
        foreign: bool,
    ) -> Outcome:
        return cls(
            stored.key,
            Status.REFRESHED,
            **_state(stored, now, budget),
            wechat_calls=calls,
            passive=passive,
            foreign_rotation=foreign,
            replaced_age=(
                stored.fetched_at - replaced.fetched_at
                if stored.fetched_at is not None and replaced.fetched_at is not None
                else None
            ),
        )

    @classmethod
    def failed_with(
        cls,
        record: CredentialRecord,
        error: RefresherError,
        now: float,
        budget: int,
        *,
        calls: int = 0,
        status: Status = Status.FAILED,
        foreign: bool = False,
    ) -> Outcome:
        state = _state(record, now, budget)
        state["calls_today"] = (state["calls_today"] or 0) + calls
        return cls(
            record.key,
            status,
            **state,
            wechat_calls=calls,
            foreign_rotation=foreign,
            error_class=error.error_class,
            error_code=error.code,
            error_message=str(error)[:500],
        )

    @property
    def app_id(self) -> str:
        return self.key.app_id

    @property
    def kind(self) -> str:
        return str(self.key.kind)

    @property
    def outcome(self) -> Status:
        return self.status

    @property
    def failed(self) -> bool:
        return self.status.failed

    @property
    def error(self) -> dict[str, str] | None:
        if self.error_class is None:
            return None
        return {
            "class": str(self.error_class),
            "code": self.error_code or str(self.error_class),
            "message": self.error_message or "",
        }

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "app_id": self.app_id,
            "kind": self.kind,
            "outcome": str(self.status),
            "version": self.version,
            "fingerprint": self.fingerprint,
            "expires_at": iso(self.expires_at) if self.expires_at else None,
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


def _state(record: CredentialRecord, now: float, budget: int) -> dict[str, Any]:
    return {
        "version": record.version,
        "fingerprint": record.fingerprint(),
        "expires_at": record.expires_at,
        "seconds_to_expiry": record.remaining(now) if record.has_value else None,
        "calls_today": record.calls_today(now),
        "budget": budget,
        "renewable_in": (
            record.renewable_at - now
            if record.renewable_at is not None and record.renewable_at > now
            else None
        ),
    }


@dataclass(frozen=True, slots=True)
class RunSummary:
    """A run's outcomes, and what went wrong outside any one credential."""

    outcomes: tuple[Outcome, ...] = ()
    # Registry entries that could not be used, by key: the message never holds a secret.
    invalid_entries: tuple[tuple[str, str], ...] = ()
    registry_fallback: bool = False
    notes: tuple[str, ...] = field(default=())
    # Registry secrets (shards) that could not be read at all: their apps were not loaded.
    unreadable_shards: tuple[tuple[str, str], ...] = ()
    # A scheduled run's plan, and each third-party platform's verify-ticket age.
    plan: PlanReport | None = None
    ticket_ages: tuple[float, ...] = ()

    @classmethod
    def of(cls, outcomes: Iterable[Outcome], **extra: Any) -> RunSummary:
        return cls(outcomes=tuple(outcomes), **extra)

    # A summary reads as the sequence of its outcomes.
    def __iter__(self) -> Iterator[Outcome]:
        return iter(self.outcomes)

    def __len__(self) -> int:
        return len(self.outcomes)

    def __getitem__(self, index: int) -> Outcome:
        return self.outcomes[index]

    @property
    def failures(self) -> list[Outcome]:
        return [outcome for outcome in self.outcomes if outcome.failed]

    @property
    def failed(self) -> int:
        return len(self.failures) + len(self.invalid_entries) + len(self.unreadable_shards)

    def counts(self) -> dict[str, int]:
        return dict(sorted(Counter(str(o.status) for o in self.outcomes).items()))

    def error_classes(self) -> dict[str, int]:
        classes = Counter(str(o.error_class) for o in self.outcomes if o.error_class)
        if self.invalid_entries or self.unreadable_shards:
            classes[str(ErrorClass.REGISTRY)] += len(self.invalid_entries) + len(
                self.unreadable_shards
            )
        return dict(sorted(classes.items()))

    def named_failures(self) -> list[str]:
        named = [f"registry secret {shard}: {why[:200]}" for shard, why in self.unreadable_shards]
        named += [f"{o.key}: {o.error_code or o.status}" for o in self.failures[:MAX_NAMED]] + [
            f"registry entry {key}: {why[:200]}" for key, why in self.invalid_entries[:MAX_NAMED]
        ]
        return named[:MAX_NAMED]

    def as_dict(self) -> dict[str, Any]:
        """The handler's JSON answer: counts, a bounded list of credentials and failures."""
        listed = self.outcomes[:MAX_LISTED]
        data: dict[str, Any] = {
            "credentials": [outcome.as_dict() for outcome in listed],
            "total": len(self.outcomes),
            "counts": self.counts(),
            "error_classes": self.error_classes(),
            "failed": self.failed,
            "refreshed": sum(o.status is Status.REFRESHED for o in self.outcomes),
            "foreign_rotations": sum(o.foreign_rotation for o in self.outcomes),
            "failures": self.named_failures(),
        }
        if len(self.outcomes) > len(listed):
            data["credentials_not_listed"] = len(self.outcomes) - len(listed)
        if self.invalid_entries:
            data["invalid_entries"] = [
                {"app_id": key, "message": message}
                for key, message in self.invalid_entries[:MAX_NAMED]
            ]
        if self.registry_fallback:
            data["registry_fallback"] = True
        if self.unreadable_shards:
            data["unreadable_registry_secrets"] = [
                {"secret": shard, "message": message} for shard, message in self.unreadable_shards
            ]
        if self.plan is not None:
            data["plan"] = self.plan.as_dict()
        if self.notes:
            data["notes"] = list(self.notes)
        return data

    def error_message(self) -> str:
        """Bounded: counts by class and at most MAX_NAMED names."""
        more = self.failed - len(self.named_failures())
        return (
            f"{self.failed} of {len(self.outcomes) + len(self.invalid_entries)} credential(s) "
            f"failed (by class: {self.error_classes() or self.counts()}): "
            + "; ".join(self.named_failures())
            + (f"; and {more} more" if more > 0 else "")
            + ". Stored tokens were left untouched."
        )
