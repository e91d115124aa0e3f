"""The schema of a stored credential: the one definition the refresher and consumers share.

One DynamoDB table holds every credential: partition key ``app_id``, sort key ``kind``.
Times are epoch seconds stored as DynamoDB numbers (millisecond precision). Expiry is
always checked in code; nothing relies on DynamoDB TTL.

This module *is* the schema: ``CredentialRecord``'s fields are the attribute names (the
refresher's writer builds its expressions from them), ``CredentialRecord.from_dynamodb``
is the only deserializer, and ``attribute_value`` the only serializer. An attribute the
schema does not know is logged (by name, never by value) and ignored, or refused where
``WECHAT_TOKEN_STRICT_RECORDS`` is set (the test suite sets it), so that the schema and
what is stored cannot drift apart unnoticed.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from enum import StrEnum
from typing import Any, Final

logger = logging.getLogger("wechat_token")


class Kind(StrEnum):
    """What a record holds: the access token, or a JS-SDK ticket fetched with it."""

    ACCESS_TOKEN = "access_token"
    JSAPI_TICKET = "jsapi_ticket"
    WX_CARD_TICKET = "wx_card_ticket"
    AGENT_CONFIG_TICKET = "agent_config_ticket"
    # Third-party platforms (app_id = the component appid): the ticket WeChat pushes every
    # 10 minutes, and the component token fetched with it. An authorizer's token is an
    # ACCESS_TOKEN under app_id "<component_appid>:<authorizer_appid>", beside the pending
    # AUTHORIZATION event the callback stored for it.
    COMPONENT_VERIFY_TICKET = "component_verify_ticket"
    COMPONENT_ACCESS_TOKEN = "component_access_token"
    AUTHORIZATION = "authorization"

    @property
    def ticket_type(self) -> str | None:
        """The ``type`` WeChat's ticket endpoint takes (``jsapi``...), or None for the token."""
        return _TICKET_TYPE_OF.get(self)

    @property
    def is_ticket(self) -> bool:
        return self in _TICKET_TYPE_OF

    @classmethod
    def of_ticket(cls, ticket_type: str) -> Kind:
        """The record kind a registry ticket type (``jsapi``, ``wx_card``...) is stored as."""
        return _KIND_OF_TICKET[ticket_type]


_TICKET_TYPE_OF: Final = {
    Kind.JSAPI_TICKET: "jsapi",
    Kind.WX_CARD_TICKET: "wx_card",
    Kind.AGENT_CONFIG_TICKET: "agent_config",
}
_KIND_OF_TICKET: Final = {ticket: kind for kind, ticket in _TICKET_TYPE_OF.items()}
TICKET_TYPES: Final = tuple(_KIND_OF_TICKET)

ACCESS_TOKEN: Final = Kind.ACCESS_TOKEN
JSAPI_TICKET: Final = Kind.JSAPI_TICKET

# WeChat's answers to a business call made with a token it no longer accepts (expired,
# invalidated by a newer fetch, or not the latest). Consumers re-read on these, and the
# refresher treats them as evidence that the stored token is dead.
INVALID_TOKEN_CODES: Final = frozenset({40001, 40014, 42001})

# WeChat counts its daily quotas in China Standard Time.
WECHAT_TZ: Final = timezone(timedelta(hours=8), "UTC+8")

# Key attribute names.
PK: Final = "app_id"
SK: Final = "kind"
# The sparse index of a third-party platform's authorizers (keys only), and the attribute
# DynamoDB's TTL deletes push nonces by.
COMPONENT_INDEX: Final = "component-index"
TTL_ATTRIBUTE: Final = "expires_ttl"
# The sparse index of what the refresher must look at next (due_shard, due_at; keys and
# expires_at): its planner queries it instead of reading every record.
DUE_INDEX: Final = "due-index"
# What the platform callback (a public URL) writes lives under partitions of its own, so
# that IAM (dynamodb:LeadingKeys) keeps it away from every token record: a component's push
# nonces (replay protection), its verify ticket, and each authorizer's pending event.
NONCE_PREFIX: Final = "push-nonce#"
TICKET_PREFIX: Final = "push-ticket#"
EVENT_PREFIX: Final = "push-event#"

STRICT_ENV: Final = "WECHAT_TOKEN_STRICT_RECORDS"


class SchemaError(ValueError):
    """A stored item does not match the record schema (strict mode only)."""


@dataclass(frozen=True, slots=True)
class CredentialKey:
    """Which credential: the registry's app key and the kind."""

    app_id: str
    kind: str = ACCESS_TOKEN

    def item_key(self) -> dict[str, Any]:
        """The DynamoDB key of the record, in the low-level client's wire format."""
        return {PK: {"S": self.app_id}, SK: {"S": str(self.kind)}}

    def __str__(self) -> str:
        return f"{self.app_id}/{self.kind}"


def ticket_key(component_appid: str) -> CredentialKey:
    """Where the callback stores a component's verify ticket."""
    return CredentialKey(TICKET_PREFIX + component_appid, Kind.COMPONENT_VERIFY_TICKET)


def event_key(component_appid: str, authorizer_appid: str) -> CredentialKey:
    """Where the callback stores an authorizer's latest authorization event."""
    return CredentialKey(f"{EVENT_PREFIX}{component_appid}:{authorizer_appid}", Kind.AUTHORIZATION)


@dataclass(frozen=True, slots=True)
class CredentialRecord:
    """A credential as stored: the current value, its conservative expiry, and its history.

    ``repr`` shows fingerprints and times, never the value.
    """

    app_id: str
    kind: str = ACCESS_TOKEN
    value: str | None = field(default=None, repr=False)
    # Conservative: WeChat's expires_in counted from when the request was *sent*, minus skew.
    expires_at: float | None = None
    fetched_at: float | None = None
    # The token this one replaced, by fingerprint only, and until when WeChat still takes it.
    previous_fingerprint: str | None = None
    previous_valid_until: float | None = None
    version: int = 0
    source: str | None = None
    lease_owner: str | None = None
    lease_until: float | None = None
    last_success_at: float | None = None
    last_error_code: str | None = None
    # The error's category (configuration, quota, busy, transport, ...): a fixed set.
    last_error_class: str | None = None
    last_error_message: str | None = None
    last_error_at: float | None = None
    # Every WeChat call for this credential, counted per WeChat day (UTC+8).
    calls_day: str | None = None
    calls_count: int = 0
    # WeChat calls caused by consumers' passive reports, per WeChat day (capped).
    consumer_calls_day: str | None = None
    consumer_calls_count: int = 0
    # The last passive or forced attempt, whatever its result, and failures since a success:
    # spacing counts attempts, and the cool-down grows with each failure.
    triggered_at: float | None = None
    trigger_failures: int = 0
    passive_at: float | None = None
    foreign_rotations: int = 0
    # Stable tokens: forced refreshes counted per WeChat day (WeChat allows 20, 30 s apart).
    forces_day: str | None = None
    forces_count: int = 0
    last_force_at: float | None = None
    # Tickets: the fingerprint of the access_token they were fetched with.
    bound_to: str | None = None
    # Set when the endpoint handed out the stored value again (WeCom hands out the current
    # token until it expires): no new value can be had before this time.
    renewable_at: float | None = None
    # Third-party platforms. An authorizer's token: its component (the component index's
    # key), its refresh token (KMS ciphertext only the refresher can decrypt, base64), that
    # token's fingerprint and when WeChat issued it, and when the merchant revoked the
    # authorization (then there is no value, and readers say so).
    component_appid: str | None = None
    refresh_token_cipher: str | None = field(default=None, repr=False)
    refresh_token_fp: str | None = None
    refresh_token_at: float | None = None
    revoked_at: float | None = None
    # A verify ticket's or an authorization event's CreateTime (pushes are fenced on it),
    # the ticket before the current one (for 61006) and its expiry, an event's InfoType.
    create_time: float | None = None
    prior_value: str | None = field(default=None, repr=False)
    prior_expires_at: float | None = None
    info_type: str | None = None
    # A component token: when the refresher last reconciled the authorizers with WeChat.
    reconciled_at: float | None = None
    # ... and when a worker last claimed a reconciliation (one per two minutes).
    reconcile_claimed_at: float | None = None
    # The due index (sparse): when the refresher must next look at this credential, and
    # the index partition (lane and shard) it is filed under. Every refresher write sets
    # both; a revoked authorizer or a credential no longer registered has neither.
    due_shard: str | None = None
    due_at: float | None = None

    @classmethod
    def from_item(cls, item: Mapping[str, Any], *, strict: bool | None = None) -> CredentialRecord:
        """Build a record from plain values (strings, numbers); unknown names are refused
        in strict mode and logged by name otherwise."""
        values: dict[str, Any] = {}
        unknown: list[str] = []
        for name, raw in item.items():
            convert = _CONVERTERS.get(name)
            if convert is None:
                if name not in _RETIRED:
                    unknown.append(name)
                continue
            values[name] = None if raw is None else convert(raw)
        if unknown:
            _unknown_attributes(item.get(PK), unknown, strict)
        return cls(**values)

    @classmethod
    def from_dynamodb(
        cls, attributes: Mapping[str, Any], *, strict: bool | None = None
    ) -> CredentialRecord:
        """Build a record from a low-level DynamoDB item (``{"S": ...}``, ``{"N": ...}``)."""
        plain: dict[str, Any] = {}
        for name, wire in attributes.items():
            if not isinstance(wire, Mapping) or len(wire) != 1:
                raise SchemaError(f"attribute {name!r} is not a DynamoDB attribute value")
            ((tag, raw),) = wire.items()
            if tag == "NULL":
                plain[name] = None
            elif tag in ("S", "N", "BOOL"):
                plain[name] = raw
            elif name in _CONVERTERS:
                raise SchemaError(f"attribute {name!r} has DynamoDB type {tag}, not S or N")
            else:
                plain[name] = None  # unknown and of an odd type: from_item reports the name
        return cls.from_item(plain, strict=strict)

    # -- predicates both sides need ------------------------------------------------------

    @property
    def key(self) -> CredentialKey:
        return CredentialKey(self.app_id, self.kind)

    @property
    def has_value(self) -> bool:
        return bool(self.value) and self.expires_at is not None

    @property
    def is_revoked(self) -> bool:
        """An authorizer whose merchant revoked the platform's authorization."""
        return self.revoked_at is not None

    def is_valid(self, now: float) -> bool:
        """True while the current value may still be used (conservative expiry)."""
        return self.has_value and self.expires_at is not None and now < self.expires_at

    def remaining(self, now: float) -> float:
        return (self.expires_at - now) if self.expires_at is not None else float("-inf")

    def age(self, now: float) -> float:
        """Seconds since the current value was fetched (infinite when there is none)."""
        return now - self.fetched_at if self.fetched_at is not None else float("inf")

    def calls_today(self, now: float) -> int:
        """WeChat calls counted for today in WeChat's day (UTC+8)."""
        return self.calls_count if self.calls_day == wechat_day(now) else 0

    def consumer_calls_today(self, now: float) -> int:
        """WeChat calls consumers' reports caused today (WeChat's day)."""
        return self.consumer_calls_count if self.consumer_calls_day == wechat_day(now) else 0

    def forces_today(self, now: float) -> int:
        """Forced (stable-token) refreshes counted for today in WeChat's day."""
        return self.forces_count if self.forces_day == wechat_day(now) else 0

    def lease_is_live(self, now: float) -> bool:
        return self.lease_until is not None and now < self.lease_until

    def error_is_current(self) -> bool:
        """True when the last recorded error came after the last success."""
        return self.last_error_at is not None and self.last_error_at > (self.last_success_at or 0.0)

    def fingerprint(self) -> str | None:
        return fingerprint(self.value) if self.value else None

    def holds(self, stale: str) -> bool:
        """True if ``stale`` (a token or its fingerprint) is the stored current value."""
        if not self.value:
            return False
        current = fingerprint(self.value)
        return stale == current or (
            not stale.startswith("sha256:") and fingerprint(stale) == current
        )


def _integer(raw: Any) -> int:
    return int(Decimal(str(raw)))


def _number(raw: Any) -> float:
    return float(Decimal(str(raw)))


def _text(raw: Any) -> str:
    if not isinstance(raw, str):
        raise SchemaError(f"expected a string, got {type(raw).__name__}")
    return raw


def _converter(annotation: str) -> Any:
    if annotation.startswith("int"):
        return _integer
    if annotation.startswith("float"):
        return _number
    return _text


_CONVERTERS: Final = {f.name: _converter(str(f.type)) for f in fields(CredentialRecord)}
FIELD_NAMES: Final = frozenset(_CONVERTERS)
# Attributes earlier versions wrote and that the writer now removes: ignored when read.
_RETIRED: Final = frozenset({"previous_value"})
RETIRED_ATTRIBUTES: Final = _RETIRED


def _unknown_attributes(app_id: Any, names: list[str], strict: bool | None) -> None:
    if strict is None:
        strict = os.environ.get(STRICT_ENV, "").strip().lower() in ("1", "true", "yes")
    described = ", ".join(sorted(names))
    if strict:
        raise SchemaError(
            f"record {app_id!r} has attributes the schema does not define: {described}"
        )
    logger.warning(
        "record %r has attributes this version does not know (%s); ignored. A newer "
        "refresher may have written them: update the layer.",
        app_id,
        described,
    )


def attribute_value(value: str | float | bool | None) -> dict[str, Any]:
    """One value in DynamoDB's wire format; times keep millisecond precision."""
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, int):
        return {"N": str(value)}
    return {"N": str(to_dynamo_number(value))}


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
