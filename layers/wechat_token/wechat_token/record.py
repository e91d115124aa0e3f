"""The one definition of a stored credential record, shared by the refresher and consumers.

One DynamoDB table holds every credential: partition key ``app_id``, sort key ``kind``.
Times are epoch seconds (floats) stored as DynamoDB numbers. Expiry is always checked
in code; nothing relies on DynamoDB TTL.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

ACCESS_TOKEN = "access_token"
JSAPI_TICKET = "jsapi_ticket"

# WeChat counts its daily quotas in China Standard Time.
WECHAT_TZ = timezone(timedelta(hours=8), "UTC+8")

# Attribute names, in one place so that no caller spells them twice.
PK = "app_id"
SK = "kind"


@dataclass(frozen=True, slots=True)
class CredentialRecord:
    """A credential as stored: the current value, its conservative expiry, and its history."""

    app_id: str
    kind: str = ACCESS_TOKEN
    value: str | None = None
    expires_at: float | None = None
    fetched_at: float | None = None
    previous_value: str | None = None
    previous_valid_until: float | None = None
    version: int = 0
    source: str | None = None
    lease_owner: str | None = None
    lease_until: float | None = None
    last_success_at: float | None = None
    last_error_code: str | None = None
    last_error_message: str | None = None
    last_error_at: float | None = None
    calls_day: str | None = None
    calls_count: int = 0
    passive_at: float | None = None
    foreign_rotations: int = 0
    # Stable tokens: forced refreshes counted per WeChat day (WeChat allows 20, 30 s apart).
    forces_day: str | None = None
    forces_count: int = 0
    last_force_at: float | None = None
    # Tickets: the fingerprint of the access_token they were fetched with.
    bound_to: str | None = None

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> CredentialRecord:
        """Build a record from a DynamoDB item (resource-style, numbers as Decimal)."""
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {}
        for name, raw in item.items():
            if name not in known:
                continue
            values[name] = _from_dynamo(raw)
        for int_field in ("version", "calls_count", "foreign_rotations", "forces_count"):
            if int_field in values and values[int_field] is not None:
                values[int_field] = int(values[int_field])
        return cls(**values)

    @property
    def has_value(self) -> bool:
        return bool(self.value) and self.expires_at is not None

    def is_valid(self, now: float) -> bool:
        """True while the current value may still be used (conservative expiry)."""
        return self.has_value and self.expires_at is not None and now < self.expires_at

    def remaining(self, now: float) -> float:
        return (self.expires_at - now) if self.expires_at is not None else float("-inf")

    def calls_today(self, now: float) -> int:
        """WeChat calls counted for today in WeChat's day (UTC+8)."""
        return self.calls_count if self.calls_day == wechat_day(now) else 0

    def forces_today(self, now: float) -> int:
        """Forced (stable-token) refreshes counted for today in WeChat's day."""
        return self.forces_count if self.forces_day == wechat_day(now) else 0

    def fingerprint(self) -> str | None:
        return fingerprint(self.value) if self.value else None


def _from_dynamo(raw: Any) -> Any:
    if isinstance(raw, Decimal):
        return float(raw)
    return raw


def to_dynamo_number(value: float) -> Decimal:
    """Epoch seconds with millisecond precision, as DynamoDB wants them."""
    return Decimal(str(round(value, 3)))


def wechat_day(now: float) -> str:
    """The calendar day WeChat counts quotas in (UTC+8), e.g. ``2026-11-21``."""
    return datetime.fromtimestamp(now, WECHAT_TZ).strftime("%Y-%m-%d")


def fingerprint(secret_value: str) -> str:
    """A short, stable, non-reversible name for a token, safe for logs: ``sha256:1a2b3c4d``."""
    return "sha256:" + hashlib.sha256(secret_value.encode()).hexdigest()[:10]


def iso(ts: float | None) -> str:
    """Human-readable UTC time for messages; ``never`` for a missing time."""
    if ts is None:
        return "never"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
