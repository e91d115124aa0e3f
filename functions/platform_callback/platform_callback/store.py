"""The callback's writes to the token table, and nothing else: no read of any record.

Exactly three kinds of write:

- a push's nonce (replay protection), :class:`DynamoDBNonceStore`: one conditional
  ``PutItem`` of ``(push-nonce#<component_appid>, <timestamp>:<nonce>)`` that DynamoDB's
  TTL deletes after 15 minutes;
- a verify ticket, :meth:`PushStore.save`: one ``UpdateItem`` of
  ``(<component_appid>, component_verify_ticket)``, keeping the ticket it replaces as
  ``prior_value`` (the refresher's answer to 61006);
- an authorization event: one ``UpdateItem`` of
  ``(<component_appid>:<authorizer_appid>, authorization)`` carrying ``component_appid``
  ``pending#<component_appid>``, which puts it into the sparse ``component-index`` where
  the refresher finds it (and whence it removes it once it has acted on the event).

Ticket and event writes are fenced on WeChat's ``CreateTime``: an older push never
replaces a newer one and a duplicate changes nothing (the condition fails, which is not an
error); of two events of one authorizer in the same second, the revocation wins. So a
write may be repeated safely: the handler repeats it for a push it has seen before, in
case the first attempt was lost after the nonce was taken.

The docs: README, "Third-party platforms".

Errors are :class:`~platform_callback.errors.StoreUnavailable` with the operation and
DynamoDB's error code only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Final, Literal

from botocore.exceptions import BotoCoreError, ClientError

from platform_callback.errors import StoreUnavailable
from platform_callback.push import Authorized, Push, Unauthorized, UpdateAuthorized, VerifyTicket
from platform_callback.schema import (
    ATTR_COMPONENT_APPID,
    ATTR_CREATE_TIME,
    ATTR_EXPIRES_AT,
    ATTR_FETCHED_AT,
    ATTR_INFO_TYPE,
    ATTR_PRIOR_EXPIRES_AT,
    ATTR_PRIOR_VALUE,
    ATTR_SOURCE,
    ATTR_VALUE,
    ATTR_VERSION,
    EVENT_PREFIX,
    KIND_AUTHORIZATION,
    KIND_COMPONENT_VERIFY_TICKET,
    NONCE_PREFIX,
    NONCE_RETENTION_SECONDS,
    PENDING_PREFIX,
    PK,
    PUSH_SOURCE,
    SK,
    TICKET_LIFETIME_SECONDS,
    TICKET_PREFIX,
    TICKET_SAFETY_SECONDS,
    TTL_ATTRIBUTE,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

__all__ = [
    "DynamoDBNonceStore",
    "PushStore",
    "authorization_key",
    "nonce_key",
    "pending_index_key",
    "ticket_expires_at",
    "ticket_key",
]

_CONDITION_FAILED: Final = "ConditionalCheckFailedException"
InfoType = Literal["authorized", "updateauthorized", "unauthorized"]

# Fenced on WeChat's CreateTime: a first write, or a strictly newer push.
_NEWER_PUSH: Final = "attribute_not_exists(#create_time) OR #create_time < :create_time"
# CreateTime has a resolution of one second, so two events of one authorizer can carry the
# same; their order is then unknown, and a revocation wins the tie (it stops the refresher
# using the authorizer's tokens; a grant it hid is pushed again when the merchant retries).
_NEWER_EVENT: Final = (
    f"{_NEWER_PUSH} OR (#create_time = :create_time AND :info_type = :revoked "
    "AND #info_type <> :revoked)"
)

# prior_* keep the ticket this one replaces: the condition guarantees the new ticket is
# newer, so the stored one is the current one until now ("" / 0: there was none).
_TICKET_UPDATE: Final = (
    "SET #prior_value = if_not_exists(#value, :empty), "
    "#prior_expires_at = if_not_exists(#expires_at, :zero), "
    "#value = :ticket, #expires_at = :expires_at, #create_time = :create_time, "
    "#fetched_at = :now, #source = :source, "
    "#version = if_not_exists(#version, :zero) + :one"
)
_TICKET_NAMES: Final = {
    "#prior_value": ATTR_PRIOR_VALUE,
    "#prior_expires_at": ATTR_PRIOR_EXPIRES_AT,
    "#value": ATTR_VALUE,
    "#expires_at": ATTR_EXPIRES_AT,
    "#create_time": ATTR_CREATE_TIME,
    "#fetched_at": ATTR_FETCHED_AT,
    "#source": ATTR_SOURCE,
    "#version": ATTR_VERSION,
}

_EVENT_COMMON: Final = (
    "SET #info_type = :info_type, #create_time = :create_time, #fetched_at = :now, "
    "#component_appid = :component_appid"
)
_GRANT_UPDATE: Final = f"{_EVENT_COMMON}, #value = :code, #expires_at = :code_expires_at"
_REVOKE_UPDATE: Final = f"{_EVENT_COMMON} REMOVE #value, #expires_at"
_EVENT_NAMES: Final = {
    "#info_type": ATTR_INFO_TYPE,
    "#create_time": ATTR_CREATE_TIME,
    "#fetched_at": ATTR_FETCHED_AT,
    "#component_appid": ATTR_COMPONENT_APPID,
    "#value": ATTR_VALUE,
    "#expires_at": ATTR_EXPIRES_AT,
}


def nonce_key(component_appid: str, nonce: str, timestamp: int) -> tuple[str, str]:
    """(app_id, kind) of a push's nonce record."""
    return f"{NONCE_PREFIX}{component_appid}", f"{int(timestamp)}:{nonce}"


def authorization_key(component_appid: str, authorizer_appid: str) -> tuple[str, str]:
    """(app_id, kind) of an authorizer's pending authorization event."""
    return f"{EVENT_PREFIX}{component_appid}:{authorizer_appid}", KIND_AUTHORIZATION


def ticket_key(component_appid: str) -> tuple[str, str]:
    """(app_id, kind) of a component's verify ticket."""
    return f"{TICKET_PREFIX}{component_appid}", KIND_COMPONENT_VERIFY_TICKET


def pending_index_key(component_appid: str) -> str:
    """The component index key of a platform's unprocessed authorization events."""
    return f"{PENDING_PREFIX}{component_appid}"


def ticket_expires_at(create_time: int) -> int:
    """When a ticket pushed at ``create_time`` is stored as expiring: its 12 hours less
    10 minutes."""
    return int(create_time) + TICKET_LIFETIME_SECONDS - TICKET_SAFETY_SECONDS


def _s(value: str) -> AttributeValueTypeDef:
    return {"S": value}


def _n(value: float) -> AttributeValueTypeDef:
    if isinstance(value, int):
        return {"N": str(value)}
    return {"N": str(Decimal(str(round(value, 3))))}


def _error_code(exc: ClientError | BotoCoreError) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code") or "ClientError")
    return type(exc).__name__


class DynamoDBNonceStore:
    """A :class:`~platform_callback.push.NonceStore` in the token table.

    ``remember`` is one conditional ``PutItem``: True when the (platform, timestamp,
    nonce) is new, False when it was stored before (a replay). Items expire by TTL
    ``NONCE_RETENTION_SECONDS`` (900) after ``clock()``.
    """

    def __init__(
        self,
        client: DynamoDBClient,
        table_name: str,
        *,
        clock: Callable[[], float] = time.time,
        retention_seconds: int = NONCE_RETENTION_SECONDS,
    ) -> None:
        if not table_name:
            raise ValueError("the token table's name is required (TOKEN_TABLE_NAME)")
        self._client = client
        self._table = table_name
        self._clock = clock
        self._retention = int(retention_seconds)

    def remember(
        self, component_appid: str, nonce: str, timestamp: int, msg_signature: str
    ) -> bool:
        """Record one push; False when it was already recorded (a replay)."""
        app_id, kind = nonce_key(component_appid, nonce, timestamp)
        failure: str | None = None
        try:
            self._client.put_item(
                TableName=self._table,
                Item={
                    PK: _s(app_id),
                    SK: _s(kind),
                    TTL_ATTRIBUTE: _n(int(self._clock()) + self._retention),
                },
                ConditionExpression="attribute_not_exists(#pk)",
                ExpressionAttributeNames={"#pk": PK},
            )
        except ClientError as exc:
            failure = _error_code(exc)
        except BotoCoreError as exc:
            failure = _error_code(exc)
        if failure == _CONDITION_FAILED:
            return False
        if failure is not None:
            raise StoreUnavailable(f"PutItem of a push nonce failed ({failure})")
        return True


class PushStore:
    """Stores what a verified push says: the verify ticket or the authorization event."""

    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        if not table_name:
            raise ValueError("the token table's name is required (TOKEN_TABLE_NAME)")
        self._client = client
        self._table = table_name

    def save(self, push: Push, now: float) -> bool:
        """Write ``push``; True when it was stored, False when the record already holds
        this push or a newer one (fenced on CreateTime: nothing changed)."""
        if isinstance(push, VerifyTicket):
            return self._update(
                ticket_key(push.component_appid),
                _TICKET_UPDATE,
                _TICKET_NAMES,
                {
                    ":empty": _s(""),
                    ":zero": _n(0),
                    ":one": _n(1),
                    ":ticket": _s(push.ticket),
                    ":expires_at": _n(ticket_expires_at(push.create_time)),
                    ":create_time": _n(push.create_time),
                    ":now": _n(now),
                    ":source": _s(PUSH_SOURCE),
                },
            )
        values: dict[str, AttributeValueTypeDef] = {
            ":info_type": _s(_info_type(push)),
            ":create_time": _n(push.create_time),
            ":now": _n(now),
            ":component_appid": _s(pending_index_key(push.component_appid)),
            ":revoked": _s("unauthorized"),
        }
        if isinstance(push, Unauthorized):
            expression = _REVOKE_UPDATE
        else:
            values[":code"] = _s(push.authorization_code)
            values[":code_expires_at"] = _n(push.code_expires_at)
            expression = _GRANT_UPDATE
        return self._update(
            authorization_key(push.component_appid, push.authorizer_appid),
            expression,
            dict(_EVENT_NAMES),
            values,
            condition=_NEWER_EVENT,
        )

    def _update(
        self,
        key: tuple[str, str],
        expression: str,
        names: dict[str, str],
        values: dict[str, AttributeValueTypeDef],
        *,
        condition: str = _NEWER_PUSH,
    ) -> bool:
        failure: str | None = None
        try:
            self._client.update_item(
                TableName=self._table,
                Key={PK: _s(key[0]), SK: _s(key[1])},
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            failure = _error_code(exc)
        except BotoCoreError as exc:
            failure = _error_code(exc)
        if failure == _CONDITION_FAILED:
            return False
        if failure is not None:
            raise StoreUnavailable(f"UpdateItem of {key[1]} failed ({failure})")
        return True


def _info_type(push: Authorized | UpdateAuthorized | Unauthorized) -> InfoType:
    if isinstance(push, Unauthorized):
        return "unauthorized"
    if isinstance(push, UpdateAuthorized):
        return "updateauthorized"
    return "authorized"
