"""The refresher's side of the token table: the consistent read, the lease, and what only
a lease holder may do (count calls, reserve forces, commit fenced, record a failure).

Every write is one conditional UpdateItem, so the table never holds a half-written record:
- ``TokenStore.acquire`` takes the lease only if no live lease exists, and returns a
  ``Lease`` holding the record as it is now (the double-check read comes with the lease,
  atomically);
- ``Lease.commit`` writes the new value only if the version is still the one the lease
  saw and the lease is still ours, so an older fetch can never overwrite a newer one;
- ``Lease.fail`` records the error and releases the lease: the stored value is untouched.
Expressions are built from the record schema's field names (``Update``), never spelled.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from botocore.exceptions import BotoCoreError, ClientError
from wechat_token.record import (
    COMPONENT_INDEX,
    DUE_INDEX,
    FIELD_NAMES,
    PK,
    RETIRED_ATTRIBUTES,
    SK,
    CredentialKey,
    CredentialRecord,
    attribute_value,
    fingerprint,
    wechat_day,
)

from .due import Due, DueEntry
from .errors import BudgetExhaustedError, RefreshError, StoreConflictError, StoreError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

logger = logging.getLogger("wechat_token.refresher")

# The WeChat call-rate counters (rate_limit.py) live in the token table under these keys.
RATE_PREFIX = "rate#"


class Update:
    """One conditional UpdateItem, built from record field names (``{name}`` in conditions).

    Every attribute goes through a ``#name`` placeholder checked against the schema, so a
    misspelt attribute is an error here rather than a silently new attribute in the table.
    """

    def __init__(self) -> None:
        self._sets: list[str] = []
        self._removes: list[str] = []
        self._conditions: list[str] = []
        self.names: dict[str, str] = {}
        self.values: dict[str, Any] = {}

    def _name(self, name: str) -> str:
        if name not in FIELD_NAMES and name not in RETIRED_ATTRIBUTES:
            raise KeyError(f"{name!r} is not a field of CredentialRecord")
        self.names[f"#{name}"] = name
        return f"#{name}"

    def _value(self, value: str | float | None) -> str:
        placeholder = f":v{len(self.values)}"
        self.values[placeholder] = attribute_value(value)
        return placeholder

    def set(self, **values: str | float | None) -> Self:
        for name, value in values.items():
            self._sets.append(f"{self._name(name)} = {self._value(value)}")
        return self

    def add(self, name: str, amount: int = 1) -> Self:
        attr = self._name(name)
        self._sets.append(
            f"{attr} = if_not_exists({attr}, {self._value(0)}) + {self._value(amount)}"
        )
        return self

    def remove(self, *names: str) -> Self:
        self._removes.extend(self._name(name) for name in names)
        return self

    def when(self, condition: str, **values: str | float | None) -> Self:
        """``condition`` names fields as ``{field}`` and values as ``:name`` (from ``values``)."""
        text = condition.format_map(_Names(self))
        for name, value in values.items():
            placeholder = self._value(value)
            text = text.replace(f":{name}", placeholder)
        self._conditions.append(f"({text})")
        return self

    def arguments(self) -> dict[str, Any]:
        expression = []
        if self._sets:
            expression.append("SET " + ", ".join(self._sets))
        if self._removes:
            expression.append("REMOVE " + ", ".join(self._removes))
        arguments: dict[str, Any] = {
            "UpdateExpression": " ".join(expression),
            "ExpressionAttributeNames": self.names,
        }
        if self.values:
            arguments["ExpressionAttributeValues"] = self.values
        if self._conditions:
            arguments["ConditionExpression"] = " AND ".join(self._conditions)
        return arguments


class _Names(dict[str, str]):
    def __init__(self, update: Update) -> None:
        super().__init__()
        self._update = update

    def __missing__(self, key: str) -> str:
        return self._update._name(key)


class TokenStore:
    """Reads records and hands out leases. Every DynamoDB failure becomes a ``StoreError``
    with the refresher's own advice."""

    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table = table_name

    @property
    def table_name(self) -> str:
        return self._table

    def read(self, key: CredentialKey) -> CredentialRecord:
        """The record (strongly consistent); an empty one when the table has none yet."""
        return self.find(key) or _empty(key)

    def find(self, key: CredentialKey) -> CredentialRecord | None:
        """The record (strongly consistent), or None when the table has none."""
        response = self._call(
            "read",
            key,
            lambda: self._client.get_item(
                TableName=self._table, Key=key.item_key(), ConsistentRead=True
            ),
        )
        item = response.attributes
        return CredentialRecord.from_dynamodb(item) if item else None

    def acquire(
        self,
        key: CredentialKey,
        owner: str,
        now: float,
        until: float,
        *,
        triggered: bool,
        basis: CredentialRecord | None = None,
        first_call: FirstCall | None = None,
    ) -> Lease | None:
        """Take the lease, or ``None`` if someone else holds a live one.

        The lease holds the record as it was just before it was taken (``ALL_OLD``): the
        double-check decides on exactly the state the lease replaced. ``triggered`` (a
        forced or passive attempt) stamps ``triggered_at`` in the same write: spacing counts
        attempts, whatever they end in.

        ``first_call`` counts the first WeChat call in the same write (so that a refresh
        takes two writes: this one and the fenced commit), computed from ``basis`` (the
        record as last read) and conditioned on the count still being what ``basis`` says;
        when it moved, the count is computed again from the record as it is. A lease that
        ends without the call (the double-check skips) takes the count back on release.
        """
        before: CredentialRecord | None = None
        for _ in range(3):
            update = Update().set(lease_owner=owner, lease_until=until)
            if triggered:
                update.set(triggered_at=now)
            # Our own lease counts as free: a retried request whose first answer was lost
            # must not leave this refresher blocked by its own ghost lease. A lease ends at
            # lease_until (CredentialRecord.lease_is_live: now < lease_until).
            update.when(
                "attribute_not_exists({lease_until}) OR {lease_until} <= :now"
                " OR {lease_owner} = :owner",
                now=now,
                owner=owner,
            )
            prepaid = first_call.counted(update, basis or _empty(key), now) if first_call else 0
            written = self.update(
                key, update, ReturnValues="ALL_OLD", ReturnValuesOnConditionCheckFailure="ALL_OLD"
            )
            if written.ok:
                break
            current = CredentialRecord.from_dynamodb(written.old) if written.old else None
            if current is None or (current.lease_is_live(now) and current.lease_owner != owner):
                return None
            mine = current.lease_owner == owner and basis is not None
            if first_call and mine and basis and first_call.landed(current, basis, now):
                before = basis  # botocore's retry of our own write (first answer lost) found it
                break
            basis = current  # free, but its count moved on since it was read: count again
        else:
            return None
        if written.ok:
            before = (
                CredentialRecord.from_dynamodb(written.attributes) if written.attributes else None
            )
        if before is not None and before.lease_owner == owner and triggered:
            # What ALL_OLD returned is our own lost attempt: its triggered_at stamp is ours,
            # not an earlier attempt's (or the double-check would rate-limit us).
            before = replace(before, triggered_at=None)
        lease = Lease(self, key, owner, until, before or _empty(key))
        if prepaid and first_call is not None:
            lease.prepay(first_call, now)
        return lease

    def set_due(self, key: CredentialKey, due: Due | None, *, was: float | None) -> bool:
        """Put a credential's due-index entry right (``None``: take it out of the index),
        unless someone wrote it since it was read as ``was``; True when written."""
        update = Update()
        if due is None:
            update.remove("due_shard", "due_at")
        else:
            update.set(**due.attributes())
        update.when("attribute_exists({app_id})")
        if was is None:
            update.when("attribute_not_exists({due_at})")
        else:
            update.when("{due_at} = :was", was=was)
        return self.update(key, update).ok

    def due_entries(
        self, partition: str, *, until: float, after: float | None = None
    ) -> list[DueEntry]:
        """The due index's entries of ``partition`` due at or before ``until`` (and after
        ``after``), in due order, by query."""
        condition = "due_shard = :p AND due_at <= :until"
        values: dict[str, Any] = {":p": {"S": partition}, ":until": attribute_value(until)}
        if after is not None:
            condition = "due_shard = :p AND due_at BETWEEN :after AND :until"
            values[":after"] = attribute_value(after)
        entries: list[DueEntry] = []
        for item in self._query(DUE_INDEX, condition, values, CredentialKey(partition, DUE_INDEX)):
            due_at = float(item["due_at"]["N"])
            if after is not None and due_at <= after:
                continue  # BETWEEN is inclusive; the window is (after, until]
            expires, renewable = item.get("expires_at"), item.get("renewable_at")
            entries.append(
                DueEntry(
                    CredentialKey(item[PK]["S"], item[SK]["S"]),
                    due_at,
                    float(expires["N"]) if expires else None,
                    float(renewable["N"]) if renewable else None,
                )
            )
        return entries

    def _query(
        self, index: str, condition: str, values: dict[str, Any], where: CredentialKey,
        limit: int | None = None, start: dict[str, Any] | None = None,
    ) -> Iterator[dict[str, Any]]:  # fmt: skip
        """Every item of an index query, page by page (at most ``limit`` in all)."""
        seen = 0
        while True:
            extra: dict[str, Any] = {"ExclusiveStartKey": start} if start else {}
            if limit is not None:
                extra["Limit"] = limit - seen
            response = self._call(
                "query",
                where,
                lambda extra=extra: self._client.query(  # type: ignore[misc]
                    TableName=self._table,
                    IndexName=index,
                    KeyConditionExpression=condition,
                    ExpressionAttributeValues=values,
                    **extra,
                ),
            )
            for item in response.items:
                seen += 1
                yield item
            start = response.last_key
            if not start or (limit is not None and seen >= limit):
                return

    def take_permits(self, scope: str, second: int, count: int, limit: int) -> bool:
        """Take ``count`` of the ``limit`` WeChat calls ``scope`` may make in the epoch
        ``second`` (a counter item shared by every worker, deleted by TTL); False when
        fewer are left."""
        item_key = {PK: {"S": f"{RATE_PREFIX}{scope}"}, SK: {"S": str(second)}}
        try:
            self._client.update_item(
                TableName=self._table,
                Key=item_key,
                UpdateExpression="ADD calls_count :n SET expires_ttl = :ttl",
                ConditionExpression="attribute_not_exists(calls_count) OR calls_count <= :most",
                ExpressionAttributeValues={
                    ":n": {"N": str(count)},
                    ":most": {"N": str(limit - count)},
                    ":ttl": {"N": str(second + 3600)},
                },
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code == "ConditionalCheckFailedException":
                return False
            raise StoreError(
                f"DynamoDB update of the WeChat call-rate counter {scope!r} failed ({code}); "
                "check the worker's dynamodb:UpdateItem on the table"
            ) from None
        except BotoCoreError as exc:
            raise StoreError(
                f"DynamoDB update of the WeChat call-rate counter {scope!r} failed "
                f"({type(exc).__name__})"
            ) from None
        return True

    def read_item(self, key: CredentialKey) -> dict[str, Any] | None:
        """An item that is not a credential (the planner's state), as DynamoDB returns it."""
        response = self._call(
            "read",
            key,
            lambda: self._client.get_item(
                TableName=self._table, Key=key.item_key(), ConsistentRead=True
            ),
        )
        return response.attributes

    def write_item(
        self, key: CredentialKey, attributes: dict[str, Any], *, expected: str | None
    ) -> bool:
        """Replace a non-credential item (the planner's state) if its ``revision`` is still
        ``expected`` (None: it must not exist yet); False when someone wrote it first."""
        condition = "attribute_not_exists(revision)" if expected is None else "revision = :expected"
        extra: dict[str, Any] = {}
        if expected is not None:
            extra["ExpressionAttributeValues"] = {":expected": {"S": expected}}
        written = self._call(
            "write",
            key,
            lambda: self._client.put_item(
                TableName=self._table,
                Item={**key.item_key(), **attributes},
                ConditionExpression=condition,
                **extra,
            ),
        )
        return written.ok

    def component_items(
        self, index_key: str, *, after: str | None = None, limit: int | None = None
    ) -> list[CredentialKey]:
        """Items in the component index under ``index_key`` (a component's appid: its
        authorizers; ``pending#`` + it: unprocessed authorization events), by query, in
        ``app_id`` order (after ``after``, at most ``limit``)."""
        condition = "component_appid = :c"
        values: dict[str, Any] = {":c": {"S": index_key}}
        if after is not None:
            condition += " AND app_id > :after"
            values[":after"] = {"S": after}
        items = self._query(
            COMPONENT_INDEX, condition, values, CredentialKey(index_key, COMPONENT_INDEX), limit
        )
        return [CredentialKey(item[PK]["S"], item[SK]["S"]) for item in items]

    def update(self, key: CredentialKey, update: Update, **extra: Any) -> Written:
        """Run one conditional UpdateItem."""
        return self._call(
            "update",
            key,
            lambda: self._client.update_item(
                TableName=self._table, Key=key.item_key(), **update.arguments(), **extra
            ),
        )

    def _call(self, action: str, key: CredentialKey, call: Callable[[], Any]) -> Written:
        failure: str | None = None
        try:
            response = call()
        except ClientError as exc:
            error = exc.response.get("Error", {})
            if error.get("Code") == "ConditionalCheckFailedException":
                item: Any = exc.response.get("Item")
                return Written(None, dict(item) if isinstance(item, dict) else {})
            failure = str(error.get("Code", "ClientError"))
        except BotoCoreError as exc:
            failure = type(exc).__name__
        if failure is not None:
            # Raised outside the except block: no chain carries botocore's message along.
            raise StoreError(
                f"DynamoDB {action} of {key} in table {self._table!r} failed ({failure}). Check "
                "the refresher's role (dynamodb:GetItem and UpdateItem on the table), "
                "TOKEN_TABLE_NAME and the table's region; the stored token was not changed."
            )
        attributes: Any = response.get("Attributes", response.get("Item"))
        return Written(
            dict(attributes) if isinstance(attributes, dict) else None,
            None,
            list(response.get("Items", [])),
            response.get("LastEvaluatedKey"),
        )


@dataclass(frozen=True, slots=True)
class Written:
    """A call's answer: the new attributes (or a query's items), or the old item when the
    condition failed."""

    attributes: dict[str, Any] | None
    old: dict[str, Any] | None
    items: list[dict[str, Any]] = field(default_factory=list)
    last_key: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.old is None

    def record(self) -> CredentialRecord:
        return CredentialRecord.from_dynamodb(self.attributes or {})


def _empty(key: CredentialKey) -> CredentialRecord:
    return CredentialRecord(app_id=key.app_id, kind=key.kind)


@dataclass(frozen=True, slots=True)
class NewValue:
    """What a successful refresh writes. ``repr`` never shows the value."""

    value: str = field(repr=False)
    expires_at: float
    fetched_at: float
    source: str
    # Until when WeChat still accepts the replaced value (0 grace after a forced rotation).
    previous_valid_until: float
    passive: bool = False
    foreign_rotation: bool = False
    bound_to: str | None = None
    # The endpoint gave the stored value again: it issues no new one before this time.
    renewable_at: float | None = None
    # An authorizer's token: the refresh token that came with it (KMS ciphertext), written
    # in the same fenced write so that it is never lost.
    refresh_token: RefreshTokenCopy | None = None


@dataclass(frozen=True, slots=True)
class RefreshTokenCopy:
    """An authorizer's refresh token as stored: KMS ciphertext, fingerprint, issue time."""

    cipher: str = field(repr=False)
    fingerprint: str
    issued_at: float

    def attributes(self) -> dict[str, str | float]:
        return {
            "refresh_token_cipher": self.cipher,
            "refresh_token_fp": self.fingerprint,
            "refresh_token_at": self.issued_at,
        }


@dataclass(frozen=True, slots=True)
class FirstCall:
    """The first WeChat call of a refresh, counted with the lease (``TokenStore.acquire``):
    today's budget, and for a consumer's report their daily share."""

    budget: int
    consumer_cap: int | None = None

    def allowed(self, record: CredentialRecord, now: float) -> bool:
        if record.calls_today(now) >= self.budget:
            return False
        return self.consumer_cap is None or record.consumer_calls_today(now) < self.consumer_cap

    def counted(self, update: Update, basis: CredentialRecord, now: float) -> int:
        """Add the count to the lease's ``update``, conditioned on ``basis``'s count being
        the stored one; 0 (nothing added) when the budget is spent: the call's own count
        then refuses it with the budget's error."""
        if not self.allowed(basis, now):
            return 0
        today = wechat_day(now)
        update.set(calls_day=today, calls_count=basis.calls_today(now) + 1)
        _count_is(update, basis.calls_day, basis.calls_count, "calls")
        if self.consumer_cap is not None:
            update.set(
                consumer_calls_day=today,
                consumer_calls_count=basis.consumer_calls_today(now) + 1,
            )
            _count_is(
                update, basis.consumer_calls_day, basis.consumer_calls_count, "consumer_calls"
            )
        return 1

    def landed(self, record: CredentialRecord, basis: CredentialRecord, now: float) -> bool:
        """Whether ``record`` holds exactly the count this lease's write gave ``basis``."""
        return record.calls_today(now) == basis.calls_today(now) + 1


def _count_is(update: Update, day: str | None, count: int, name: str) -> None:
    if day is None:
        update.when(f"attribute_not_exists({{{name}_day}})")
    else:
        update.when(f"{{{name}_day}} = :day AND {{{name}_count}} = :count", day=day, count=count)


class Lease:
    """A held lease on one credential, and everything that needs it.

    Use it as a context manager: leaving the block without ``commit`` or ``fail`` (an
    unexpected error, an early return) releases the lease.
    """

    def __init__(
        self,
        store: TokenStore,
        key: CredentialKey,
        owner: str,
        until: float,
        record: CredentialRecord,
    ) -> None:
        self._store = store
        self.key = key
        self.owner = owner
        self.until = until
        self.record = record  # as it stood when the lease was taken
        self._done = False
        # The first WeChat call, counted with the lease and not yet made (FirstCall).
        self._prepaid: FirstCall | None = None
        # Where a lease released by a surprise (a bug, an early exit) files the credential.
        self.due_on_surprise: Due | None = None

    def prepay(self, first_call: FirstCall, now: float) -> None:
        """The lease's write counted the first call: the record as the count left it."""
        today = wechat_day(now)
        record = replace(self.record, calls_day=today, calls_count=self.record.calls_today(now) + 1)
        if first_call.consumer_cap is not None:
            record = replace(
                record,
                consumer_calls_day=today,
                consumer_calls_count=self.record.consumer_calls_today(now) + 1,
            )
        self.record = record
        self._prepaid = first_call

    def _unpaid(self, update: Update) -> Update:
        """Take back a first call counted with the lease and never made."""
        if self._prepaid is not None:
            update.add("calls_count", -1)
            if self._prepaid.consumer_cap is not None:
                update.add("consumer_calls_count", -1)
            self._prepaid = None
        return update

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._done:
            return
        try:
            self.release(self.due_on_surprise)
        except StoreError:
            logger.warning("%s: could not release the lease; it expires by itself", self.key)

    def _update(self, update: Update, **extra: Any) -> Written:
        return self._store.update(
            self.key, update.when("{lease_owner} = :owner", owner=self.owner), **extra
        )

    def count_call(self, now: float, budget: int, *, consumer_cap: int | None = None) -> int:
        """Count one WeChat call in today's budget (WeChat's day, UTC+8); the new count.

        ``consumer_cap``: the call is a consumer's (passive) and counts against their
        share too. Raises ``BudgetExhaustedError`` instead of counting past either. Only
        the lease holder counts, so the lease's view of the record is the current one.
        """
        today = wechat_day(now)
        calls = self.record.calls_today(now)
        if self._prepaid is not None:
            self._prepaid = None  # counted with the lease
            return calls
        if calls >= budget:
            raise self._exhausted(budget, today)
        update = Update().set(calls_day=today, calls_count=calls + 1)
        if consumer_cap is not None:
            consumer_calls = self.record.consumer_calls_today(now)
            if consumer_calls >= consumer_cap:
                raise self._exhausted(consumer_cap, today, consumers=True)
            update.set(consumer_calls_day=today, consumer_calls_count=consumer_calls + 1)
        written = self._update(update, ReturnValues="ALL_NEW")
        if not written.ok:
            raise StoreConflictError(
                f"{self.key}: the lease was taken over before a WeChat call could be counted; "
                "nothing was called"
            )
        self.record = written.record()
        return calls + 1

    def _exhausted(self, budget: int, today: str, *, consumers: bool = False) -> RefreshError:
        if consumers:
            return BudgetExhaustedError(
                f"{self.key}: consumers' passive reports have caused {budget} WeChat calls on "
                f"{today} (UTC+8), their daily share (CONSUMER_DAILY_CALL_CAP): the rest of the "
                "budget is kept for the schedule. Find the consumer that keeps reporting."
            )
        return BudgetExhaustedError(
            f"{self.key} has used its daily budget of {budget} WeChat calls for {today} "
            "(UTC+8): the refresher refuses to call until midnight UTC+8. Raise "
            "DAILY_CALL_BUDGET (below 2000) only after finding what is calling so often."
        )

    def reserve_force(self, now: float, *, limit: int, min_gap: float) -> bool:
        """Count one forced refresh if today's count is under ``limit`` and the last is
        ``min_gap`` seconds old; False (nothing counted) otherwise."""
        record = self.record
        forces = record.forces_today(now)
        if forces >= limit or (
            record.last_force_at is not None and now - record.last_force_at < min_gap
        ):
            return False
        update = Update().set(
            forces_day=wechat_day(now), forces_count=forces + 1, last_force_at=now
        )
        written = self._update(update, ReturnValues="ALL_NEW")
        if not written.ok:
            return False
        self.record = written.record()
        return True

    def commit(self, new: NewValue, due: Due) -> CredentialRecord:
        """Store the new value, fenced by version and lease, releasing the lease, and file
        it in the due index at ``due``."""
        previous = self.record
        version = previous.version
        update = (
            Update()
            .set(**due.attributes())
            .set(
                value=new.value,
                expires_at=new.expires_at,
                fetched_at=new.fetched_at,
                source=new.source,
                version=version + 1,
                last_success_at=new.fetched_at,
                trigger_failures=0,
            )
        )
        update.remove(
            "lease_owner", "lease_until", "last_error_code", "last_error_class",
            "last_error_message", "last_error_at", *RETIRED_ATTRIBUTES,
        )  # fmt: skip
        if new.bound_to is not None:
            update.set(bound_to=new.bound_to)
        if new.renewable_at is not None:
            update.set(renewable_at=new.renewable_at)
        else:
            update.remove("renewable_at")
        if previous.value == new.value:
            pass  # not rotated (a stable token far from expiry): the previous one stands
        elif previous.value and previous.is_valid(new.fetched_at):
            assert previous.expires_at is not None
            update.set(
                previous_fingerprint=fingerprint(previous.value),
                previous_valid_until=min(new.previous_valid_until, previous.expires_at),
            )
        else:
            update.remove("previous_fingerprint", "previous_valid_until")
        if new.refresh_token is not None:
            update.set(**new.refresh_token.attributes())
        if new.passive:
            update.set(passive_at=new.fetched_at)
        if new.foreign_rotation:
            update.add("foreign_rotations")
        update.when(
            "attribute_not_exists({version}) OR {version} = :expected"
            if version == 0
            else "{version} = :expected",
            expected=version,
        )
        written = self._update(
            update, ReturnValues="ALL_NEW", ReturnValuesOnConditionCheckFailure="ALL_OLD"
        )
        self._done = True
        if written.ok:
            return written.record()
        old = CredentialRecord.from_dynamodb(written.old or self.key.item_key())
        if old.version == version + 1 and old.value == new.value:
            return old  # our write landed; botocore's retry of it found it done
        raise StoreConflictError(
            f"Did not store the new {self.key.kind} for {self.key.app_id!r}: the record moved "
            f"on (version {old.version}, expected {version}; lease "
            f"{'ours' if old.lease_owner == self.owner else 'taken over'}). The newer stored "
            "value stands."
        )

    def fail(
        self, error: RefreshError, now: float, *, triggered: bool, due: Due | None = None
    ) -> None:
        """Note the error and release the lease; the stored value is left as it was. A
        scheduled failure is filed in the due index again at ``due`` (its retry).

        A triggered attempt that failed for a reason that says "not now" (busy, quota,
        transport) lengthens the next trigger's cool-down.
        """
        update = self._unpaid(Update())
        if due is not None:
            update.set(**due.attributes())
        update.set(
            last_error_code=error.code,
            last_error_class=str(error.error_class),
            last_error_message=str(error)[:500],
            last_error_at=now,
        )
        update.remove("lease_owner", "lease_until")
        if triggered and error.error_class.cools_down:
            update.add("trigger_failures")
        self._done = True
        self._update(update)

    def release(self, due: Due | None = None) -> None:
        """Give the lease back (and the first call's count, if it was never made); ``due``
        puts the credential's due-index entry right on the way."""
        self._done = True
        update = self._unpaid(Update().remove("lease_owner", "lease_until"))
        if due is not None:
            update.set(**due.attributes())
        self._update(update)
