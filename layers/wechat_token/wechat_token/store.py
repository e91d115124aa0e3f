"""Where the reader gets records from: a one-method ``RecordSource``, and its implementations.

``TokenReader`` only ever calls ``source.get(key, consistent)``. In Lambda that is
``DynamoDBRecordSource`` (one ``GetItem``); in tests, ``InMemoryRecordSource`` or anything
else with that method. A source raises ``TokenStoreError`` when it cannot answer, and its
``str()`` names where it reads from (error messages quote it).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .errors import TokenStoreError
from .record import CredentialKey, CredentialRecord, SchemaError
from .redaction import aws_error_detail, quiet_aws_loggers
from .settings import TABLE_ENV, env_text, process_env

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


@runtime_checkable
class RecordSource(Protocol):
    """Reads one stored credential record; ``None`` when there is none."""

    def get(self, key: CredentialKey, consistent: bool) -> CredentialRecord | None:
        """The record for ``key`` (strongly consistent if asked), or None.

        Raises ``TokenStoreError`` when the store cannot be read.
        """
        ...


def table_name_from_env() -> str:
    return env_text(
        process_env(),
        TABLE_ENV,
        what="the name of the wechat-token DynamoDB table (the stack output TokenTableName)",
    )


def default_dynamodb_client() -> DynamoDBClient:
    """A DynamoDB client with short timeouts and botocore's standard retry mode.

    boto3 is imported here, not at module import, so that importing ``wechat_token``
    costs a consumer's cold start nothing until the first read. botocore's wire logging
    is quieted first: at DEBUG it would log every response body, the token included.
    """
    quiet_aws_loggers()
    import boto3  # noqa: PLC0415
    from botocore.config import Config  # noqa: PLC0415

    config = Config(
        connect_timeout=2,
        read_timeout=3,
        retries={"mode": "standard", "max_attempts": 3},
    )
    return boto3.client("dynamodb", config=config)


class DynamoDBRecordSource:
    """Records from the token table, one ``GetItem`` per call.

    ``table_name`` defaults to ``TOKEN_TABLE_NAME`` and ``client`` to a boto3 client made
    on first use (both resolved lazily, so constructing one costs nothing). Whichever
    client is used, botocore's wire loggers are kept at WARNING.
    """

    def __init__(self, client: DynamoDBClient | None = None, table_name: str | None = None):
        self._client = client
        self._table_name = table_name
        self._quieted = False

    @property
    def table_name(self) -> str:
        if self._table_name is None:
            self._table_name = table_name_from_env()
        return self._table_name

    @property
    def client(self) -> DynamoDBClient:
        if self._client is None:
            self._client = default_dynamodb_client()
            self._quieted = True
        elif not self._quieted:
            quiet_aws_loggers()  # a client given to us logs through the same botocore loggers
            self._quieted = True
        return self._client

    def __str__(self) -> str:
        return f"DynamoDB table '{self._table_name or '$' + TABLE_ENV}'"

    def __repr__(self) -> str:
        return f"DynamoDBRecordSource(table_name={self._table_name!r})"

    def get(self, key: CredentialKey, consistent: bool = False) -> CredentialRecord | None:
        table, client = self.table_name, self.client
        failure: str | None = None
        try:
            response = client.get_item(
                TableName=table, Key=key.item_key(), ConsistentRead=consistent
            )
        except Exception as exc:  # every failure becomes a TokenStoreError
            # The message is built here and raised below, outside this block, so that the
            # botocore error (which may quote a response) is neither __cause__ nor __context__.
            failure = aws_error_detail(exc)
        if failure is not None:
            raise TokenStoreError(
                f"Could not read {key.kind} for app '{key.app_id}' from DynamoDB table "
                f"'{table}': {failure}. Check the function's IAM policy (dynamodb:GetItem on "
                "the table: attach the stack's ConsumerPolicy) and that the table exists in "
                "this region."
            )
        item = response.get("Item")
        if not item:
            return None
        return _record(item, key, table)


def _record(item: Mapping[str, Any], key: CredentialKey, table: str) -> CredentialRecord:
    problem: str | None = None
    try:
        return CredentialRecord.from_dynamodb(item)
    except SchemaError as exc:
        problem = str(exc)  # names attributes and types, never values
    except (ValueError, ArithmeticError, TypeError) as exc:
        problem = f"an attribute does not convert ({type(exc).__name__})"
    raise TokenStoreError(
        f"The {key.kind} record for app '{key.app_id}' in DynamoDB table '{table}' does not "
        f"match this layer's schema: {problem}. Was it edited by hand, or written by a newer "
        "refresher? Update the layer, or let the refresher rewrite the record."
    )


class InMemoryRecordSource:
    """Records kept in a dict: for tests, local runs, and consumers' own unit tests.

    ``records`` may be shared (several sources over one dict, e.g. one per simulated
    consumer, each counting its own ``reads``). ``consistent`` makes no difference here.
    """

    def __init__(
        self, records: MutableMapping[CredentialKey, CredentialRecord] | None = None
    ) -> None:
        self.records: MutableMapping[CredentialKey, CredentialRecord] = (
            {} if records is None else records
        )
        self.reads = 0
        self._lock = threading.Lock()

    def __str__(self) -> str:
        return "the in-memory record source"

    def __repr__(self) -> str:
        return f"InMemoryRecordSource({len(self.records)} records, {self.reads} reads)"

    def get(self, key: CredentialKey, consistent: bool = False) -> CredentialRecord | None:
        self.reads += 1
        return self.records.get(key)

    def put(self, record: CredentialRecord) -> None:
        with self._lock:
            self.records[record.key] = record

    def delete(self, key: CredentialKey) -> None:
        with self._lock:
            self.records.pop(key, None)
