"""The refresher's side of the token table: leases, call counting and fenced writes.

Every write is one conditional UpdateItem, so the table never holds a half-written record:
- the lease is taken only if no live lease exists, and returns the record as it is now
  (the double-check read comes with the lease, atomically);
- the new credential is written only if the version is still the one the lease saw and
  the lease is still ours, so an older fetch can never overwrite a newer one;
- a failure only records the error and releases the lease: the stored value is untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError
from wechat_token.record import PK, SK, CredentialRecord, to_dynamo_number, wechat_day
from wechat_token.store import read_record

from .errors import BudgetExhaustedError, StoreConflictError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def _av(value: Any) -> Any:
    if isinstance(value, float):
        value = to_dynamo_number(value)
    return _serializer.serialize(value)


def _record(attributes: dict[str, Any]) -> CredentialRecord:
    return CredentialRecord.from_item(
        {name: _deserializer.deserialize(value) for name, value in attributes.items()}
    )


def _old_item(exc: ClientError) -> dict[str, Any]:
    """The item as it was when a condition failed (ReturnValuesOnConditionCheckFailure)."""
    item: Any = exc.response.get("Item")
    return dict(item) if isinstance(item, dict) else {}


def _condition_failed(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


@dataclass(frozen=True, slots=True)
class NewValue:
    """What a successful refresh writes."""

    value: str
    expires_at: float
    fetched_at: float
    source: str
    previous_valid_until: float
    passive: bool = False
    foreign_rotation: bool = False
    bound_to: str | None = None


class TokenStore:
    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table = table_name

    @property
    def table_name(self) -> str:
        return self._table

    def read(self, app_id: str, kind: str) -> CredentialRecord | None:
        return read_record(self._client, self._table, app_id, kind, consistent=True)

    def acquire_lease(
        self, app_id: str, kind: str, owner: str, now: float, until: float
    ) -> CredentialRecord | None:
        """Take the lease; the record as it stands, or ``None`` if someone else holds it."""
        try:
            response = self._client.update_item(
                TableName=self._table,
                Key=self._key(app_id, kind),
                UpdateExpression="SET lease_owner = :owner, lease_until = :until",
                # Our own lease counts as free: a retried request whose first answer was
                # lost must not leave this refresher blocked by its own ghost lease.
                ConditionExpression=(
                    "attribute_not_exists(lease_until) OR lease_until < :now "
                    "OR lease_owner = :owner"
                ),
                ExpressionAttributeValues={
                    ":owner": _av(owner),
                    ":until": _av(until),
                    ":now": _av(now),
                },
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if _condition_failed(exc):
                return None
            raise
        return _record(response["Attributes"])

    def count_call(self, app_id: str, kind: str, now: float, budget: int) -> int:
        """Count one WeChat call in today's budget (WeChat's day, UTC+8); the new count.

        Raises ``BudgetExhaustedError`` instead of counting past the budget.
        """
        today = wechat_day(now)
        for _ in range(3):
            try:
                response = self._client.update_item(
                    TableName=self._table,
                    Key=self._key(app_id, kind),
                    UpdateExpression="SET calls_count = calls_count + :one",
                    ConditionExpression="calls_day = :today AND calls_count < :budget",
                    ExpressionAttributeValues={
                        ":one": _av(1),
                        ":today": _av(today),
                        ":budget": _av(budget),
                    },
                    ReturnValues="UPDATED_NEW",
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
                return int(_deserializer.deserialize(response["Attributes"]["calls_count"]))
            except ClientError as exc:
                if not _condition_failed(exc):
                    raise
                old = _old_item(exc)
                old_day = (
                    _deserializer.deserialize(old["calls_day"]) if "calls_day" in old else None
                )
                if old_day == today:
                    raise BudgetExhaustedError(
                        f"App {app_id!r} ({kind}) has used its daily budget of {budget} WeChat "
                        f"calls for {today} (UTC+8): the refresher refuses to call until "
                        "midnight UTC+8. Raise DAILY_CALL_BUDGET (below 2000) only after finding "
                        "what is calling so often."
                    ) from None
            try:
                self._client.update_item(
                    TableName=self._table,
                    Key=self._key(app_id, kind),
                    UpdateExpression="SET calls_day = :today, calls_count = :one",
                    ConditionExpression="attribute_not_exists(calls_day) OR calls_day <> :today",
                    ExpressionAttributeValues={":today": _av(today), ":one": _av(1)},
                )
                return 1
            except ClientError as exc:
                if not _condition_failed(exc):
                    raise
                # Another writer started today's count first; count on top of it.
        raise StoreConflictError(f"Could not count a WeChat call for {app_id!r}: heavy contention")

    def reserve_force(
        self, app_id: str, kind: str, owner: str, now: float, *, limit: int, min_gap: float
    ) -> bool:
        """Count one forced refresh if today's count is under ``limit`` and the last is
        ``min_gap`` seconds old; False (nothing counted) otherwise. Needs our lease."""
        today = wechat_day(now)
        for expression, condition in (
            (
                "SET forces_count = forces_count + :one, last_force_at = :now",
                "forces_day = :today AND forces_count < :limit AND :limit > :zero",
            ),
            (
                "SET forces_day = :today, forces_count = :one, last_force_at = :now",
                "(attribute_not_exists(forces_day) OR forces_day <> :today) AND :limit > :zero",
            ),
        ):
            try:
                self._client.update_item(
                    TableName=self._table,
                    Key=self._key(app_id, kind),
                    UpdateExpression=expression,
                    ConditionExpression=f"lease_owner = :owner AND {condition} AND "
                    "(attribute_not_exists(last_force_at) OR last_force_at <= :gap_edge)",
                    ExpressionAttributeValues={
                        ":one": _av(1),
                        ":zero": _av(0),
                        ":now": _av(now),
                        ":today": _av(today),
                        ":limit": _av(limit),
                        ":owner": _av(owner),
                        ":gap_edge": _av(now - min_gap),
                    },
                )
                return True
            except ClientError as exc:
                if not _condition_failed(exc):
                    raise
        return False

    def write(
        self,
        app_id: str,
        kind: str,
        owner: str,
        expected_version: int,
        new: NewValue,
        previous: CredentialRecord,
    ) -> CredentialRecord:
        """Store a new value, fenced by version and lease, releasing the lease in the same write."""
        names = {"#value": "value", "#source": "source"}
        values: dict[str, Any] = {
            ":value": _av(new.value),
            ":expires_at": _av(new.expires_at),
            ":fetched_at": _av(new.fetched_at),
            ":source": _av(new.source),
            ":version": _av(expected_version + 1),
            ":expected": _av(expected_version),
            ":owner": _av(owner),
            ":now": _av(new.fetched_at),
        }
        sets = [
            "#value = :value",
            "expires_at = :expires_at",
            "fetched_at = :fetched_at",
            "#source = :source",
            "version = :version",
            "last_success_at = :now",
        ]
        removes = [
            "lease_owner",
            "lease_until",
            "last_error_code",
            "last_error_message",
            "last_error_at",
        ]
        if new.bound_to is not None:
            sets.append("bound_to = :bound_to")
            values[":bound_to"] = _av(new.bound_to)
        if previous.value == new.value:
            pass  # not rotated (a stable token far from expiry): the previous one stands
        elif previous.value and previous.is_valid(new.fetched_at):
            sets += ["previous_value = :prev", "previous_valid_until = :prev_until"]
            values[":prev"] = _av(previous.value)
            values[":prev_until"] = _av(
                min(new.previous_valid_until, previous.expires_at or new.previous_valid_until)
            )
        else:
            removes += ["previous_value", "previous_valid_until"]
        if new.passive:
            sets.append("passive_at = :now")
        if new.foreign_rotation:
            sets.append("foreign_rotations = if_not_exists(foreign_rotations, :zero) + :one")
            values[":zero"] = _av(0)
            values[":one"] = _av(1)
        version_condition = (
            "(attribute_not_exists(version) OR version = :expected)"
            if expected_version == 0
            else "version = :expected"
        )
        try:
            response = self._client.update_item(
                TableName=self._table,
                Key=self._key(app_id, kind),
                UpdateExpression=f"SET {', '.join(sets)} REMOVE {', '.join(removes)}",
                ConditionExpression=f"{version_condition} AND lease_owner = :owner",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if not _condition_failed(exc):
                raise
            old = _record(_old_item(exc) or self._key(app_id, kind))
            if old.version == expected_version + 1 and old.value == new.value:
                return old  # our write landed; botocore's retry of it found it done
            raise StoreConflictError(
                f"Did not store the new {kind} for {app_id!r}: the record moved on (version "
                f"{old.version}, expected {expected_version}; lease "
                f"{'ours' if old.lease_owner == owner else 'taken over'}). The newer stored "
                "value stands."
            ) from None
        return _record(response["Attributes"])

    def record_failure(
        self, app_id: str, kind: str, owner: str, code: str, message: str, now: float
    ) -> None:
        """Note the error and release our lease; the stored value is left as it was."""
        try:
            self._client.update_item(
                TableName=self._table,
                Key=self._key(app_id, kind),
                UpdateExpression=(
                    "SET last_error_code = :code, last_error_message = :message, "
                    "last_error_at = :now REMOVE lease_owner, lease_until"
                ),
                ConditionExpression="lease_owner = :owner",
                ExpressionAttributeValues={
                    ":code": _av(code),
                    ":message": _av(message[:500]),
                    ":now": _av(now),
                    ":owner": _av(owner),
                },
            )
        except ClientError as exc:
            if not _condition_failed(exc):
                raise

    def release_lease(self, app_id: str, kind: str, owner: str) -> None:
        try:
            self._client.update_item(
                TableName=self._table,
                Key=self._key(app_id, kind),
                UpdateExpression="REMOVE lease_owner, lease_until",
                ConditionExpression="lease_owner = :owner",
                ExpressionAttributeValues={":owner": _av(owner)},
            )
        except ClientError as exc:
            if not _condition_failed(exc):
                raise

    def note_foreign_rotation(self, app_id: str, kind: str) -> None:
        self._client.update_item(
            TableName=self._table,
            Key=self._key(app_id, kind),
            UpdateExpression=(
                "SET foreign_rotations = if_not_exists(foreign_rotations, :zero) + :one"
            ),
            ExpressionAttributeValues={":zero": _av(0), ":one": _av(1)},
        )

    @staticmethod
    def _key(app_id: str, kind: str) -> dict[str, Any]:
        return {PK: {"S": app_id}, SK: {"S": kind}}
