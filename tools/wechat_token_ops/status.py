"""``status``: read every credential from the token table and judge its health.

One paginated, strongly consistent Scan (``dynamodb:Scan``) that projects only the record
schema's attributes: the retired ``previous_value`` of old tables is never read, and the
current value only for its fingerprint. Every item goes through the layer's one
deserializer, ``CredentialRecord.from_dynamodb``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Final

from wechat_token.record import (
    EVENT_PREFIX,
    NONCE_PREFIX,
    PK,
    RETIRED_ATTRIBUTES,
    CredentialRecord,
    SchemaError,
    iso,
    wechat_day,
)
from wechat_token.redaction import redact

from .errors import AWSAccessError, RecordSchemaError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

EXPIRY_WARN_SECONDS: Final = 30 * 60
BUDGET_WARN_FRACTION: Final = 0.8

# Health levels, per credential.
OK: Final = "ok"
WARN: Final = "warn"
ERROR: Final = "error"

# What the scan projects: the schema's fields, never a retired attribute.
SCANNED: Final = tuple(f.name for f in fields(CredentialRecord) if f.name not in RETIRED_ATTRIBUTES)


@dataclass(frozen=True, slots=True)
class Health:
    """How a credential stands: ``problems`` make the command exit 1, ``warnings`` do not."""

    level: str
    problems: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


def has_current_error(record: CredentialRecord) -> bool:
    """True if the recorded error is newer than the last success (or nothing ever succeeded,
    or the error has no time: assume it is current)."""
    if record.last_error_code is None:
        return False
    if record.last_success_at is None or record.last_error_at is None:
        return True
    return record.error_is_current()


def classify(record: CredentialRecord, now: float, budget: int) -> Health:
    """The credential's health at ``now``.

    Problems: ``missing_value`` (no usable value stored), ``expired``, ``last_error`` (newer
    than the last success). Warnings: ``expires_soon`` (under 30 min left), ``budget``
    (more than 80 % of the daily call budget used in WeChat's day).
    """
    problems: list[str] = []
    warnings: list[str] = []
    if record.is_revoked:  # the merchant revoked a platform's authorization: not a fault
        return Health(WARN, (), ("revoked",))
    if not record.has_value:
        problems.append("missing_value")
    elif not record.is_valid(now):
        problems.append("expired")
    elif record.remaining(now) < EXPIRY_WARN_SECONDS:
        warnings.append("expires_soon")
    if has_current_error(record):
        problems.append("last_error")
    if record.calls_today(now) > BUDGET_WARN_FRACTION * budget:
        warnings.append("budget")
    level = ERROR if problems else WARN if warnings else OK
    return Health(level, tuple(problems), tuple(warnings))


def is_healthy(records: Sequence[CredentialRecord], now: float, budget: int) -> bool:
    """Exit code 0: at least one credential, and none of them in error."""
    return bool(records) and all(classify(r, now, budget).level != ERROR for r in records)


# --- reading the table ----------------------------------------------------------------------


def scan_request(table: str, app_id: str | None) -> dict[str, Any]:
    """The first Scan request: consistent, projecting the schema's attributes only."""
    # Placeholders for every name: some (e.g. "source") are DynamoDB reserved words.
    names = {f"#f{i}": name for i, name in enumerate(SCANNED)}
    request: dict[str, Any] = {
        "TableName": table,
        "ConsistentRead": True,
        "ProjectionExpression": ", ".join(names),
        "ExpressionAttributeNames": names,
    }
    if app_id is not None:
        request["FilterExpression"] = f"#f{SCANNED.index(PK)} = :app"
        request["ExpressionAttributeValues"] = {":app": {"S": app_id}}
    return request


def scan_items(client: DynamoDBClient, table: str, app_id: str | None) -> list[dict[str, Any]]:
    """Every item of the table (or of one app), page by page, in DynamoDB's wire format."""
    request = scan_request(table, app_id)
    items: list[dict[str, Any]] = []
    try:
        while True:
            page = client.scan(**request)
            items.extend(page.get("Items", []))
            start = page.get("LastEvaluatedKey")
            if not start:
                return items
            request["ExclusiveStartKey"] = start
    except Exception as exc:
        raise AWSAccessError(
            f"Could not scan DynamoDB table '{table}': {type(exc).__name__}: {exc}. Check the "
            "table name (--table or TOKEN_TABLE_NAME; the stack output TokenTableName), the "
            "region (AWS_REGION) and that your credentials allow dynamodb:Scan on the table."
        ) from exc


# The refresher's own bookkeeping rows: its planner's state and the call-rate counters.
PLANNER_PREFIX = "planner#"
RATE_PREFIX = "rate#"


def _bookkeeping(item: dict[str, Any]) -> bool:
    """A platform callback's push nonce or authorization event, the planner's state or a
    call-rate counter: not a credential."""
    key = str(item.get(PK, {}).get("S", ""))
    return key.startswith((NONCE_PREFIX, EVENT_PREFIX, PLANNER_PREFIX, RATE_PREFIX))


def scan_records(
    client: DynamoDBClient, table: str, app_id: str | None = None
) -> list[CredentialRecord]:
    """Every credential in the table (or one app's), sorted by app and kind."""
    records: list[CredentialRecord] = []
    for item in scan_items(client, table, app_id):
        if _bookkeeping(item):
            continue
        try:
            records.append(CredentialRecord.from_dynamodb(item))
        except (SchemaError, ValueError, ArithmeticError) as exc:  # Decimal's, too
            raise RecordSchemaError(
                f"A record in table '{table}' does not match this version's schema: {exc}. "
                "Is the CLI older than the refresher that wrote it? Update it."
            ) from exc
    return sorted(records, key=lambda r: (r.app_id, r.kind))


# --- status --json --------------------------------------------------------------------------


def _iso(ts: float | None) -> str | None:
    return None if ts is None else iso(ts)


def _since(ts: float | None, now: float) -> float | None:
    return None if ts is None else round(now - ts, 3)


def _until(ts: float | None, now: float) -> float | None:
    return None if ts is None else round(ts - now, 3)


def _last_error_json(record: CredentialRecord) -> dict[str, Any] | None:
    if record.last_error_code is None:
        return None
    return {
        "code": record.last_error_code,
        "class": record.last_error_class,
        "message": redact(record.last_error_message or "", record.value or ""),
        "at": _iso(record.last_error_at),
        "current": has_current_error(record),
    }


def _lease_json(record: CredentialRecord, now: float) -> dict[str, Any] | None:
    if not record.lease_is_live(now):
        return None
    return {
        "owner": record.lease_owner,
        "until": _iso(record.lease_until),
        "remaining_seconds": _until(record.lease_until, now),
    }


def credential_json(record: CredentialRecord, now: float, budget: int) -> dict[str, Any]:
    """One credential for ``status --json``: ISO times and seconds, never a value."""
    health = classify(record, now, budget)
    calls = record.calls_today(now)
    return {
        "app_id": record.app_id,
        "kind": record.kind,
        "status": health.level,
        "problems": list(health.problems),
        "warnings": list(health.warnings),
        "fingerprint": record.fingerprint(),
        "version": record.version,
        "source": record.source,
        "fetched_at": _iso(record.fetched_at),
        "age_seconds": _since(record.fetched_at, now),
        "expires_at": _iso(record.expires_at),
        "expires_in_seconds": _until(record.expires_at, now),
        "previous_fingerprint": record.previous_fingerprint,
        "previous_valid_until": _iso(record.previous_valid_until),
        "previous_valid_for_seconds": _until(record.previous_valid_until, now),
        "last_success_at": _iso(record.last_success_at),
        "last_error": _last_error_json(record),
        "calls_today": calls,
        "consumer_calls_today": record.consumer_calls_today(now),
        "budget": budget,
        "budget_used": round(calls / budget, 4),
        "triggered_at": _iso(record.triggered_at),
        "trigger_failures": record.trigger_failures,
        "lease": _lease_json(record, now),
    }


def status_json(
    records: Sequence[CredentialRecord], *, table: str, now: float, budget: int
) -> dict[str, Any]:
    return {
        "table": table,
        "checked_at": iso(now),
        "wechat_day": wechat_day(now),
        "budget": budget,
        "healthy": is_healthy(records, now, budget),
        "credentials": [credential_json(record, now, budget) for record in records],
    }
