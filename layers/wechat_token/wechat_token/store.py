"""Reading credential records from DynamoDB (the consumer side of the table)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from .errors import ConfigurationError, TokenStoreError
from .record import PK, SK, CredentialRecord

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

TABLE_ENV = "TOKEN_TABLE_NAME"


def table_name_from_env() -> str:
    name = os.environ.get(TABLE_ENV, "").strip()
    if not name:
        raise ConfigurationError(
            f"{TABLE_ENV} is not set: set it to the name of the wechat-token DynamoDB table "
            "(the stack output TokenTableName)."
        )
    return name


def default_dynamodb_client() -> DynamoDBClient:
    """A DynamoDB client with short timeouts and botocore's standard retry mode.

    boto3 is imported here, not at module import, so that importing ``wechat_token``
    costs a consumer's cold start nothing until the first read.
    """
    import boto3  # noqa: PLC0415
    from botocore.config import Config  # noqa: PLC0415

    config = Config(
        connect_timeout=2,
        read_timeout=3,
        retries={"mode": "standard", "max_attempts": 3},
    )
    return boto3.client("dynamodb", config=config)


def _deserialize(item: dict[str, Any]) -> dict[str, Any]:
    from boto3.dynamodb.types import TypeDeserializer  # noqa: PLC0415

    deserializer = TypeDeserializer()
    return {key: deserializer.deserialize(value) for key, value in item.items()}


def read_record(
    client: DynamoDBClient, table: str, app_id: str, kind: str, *, consistent: bool = False
) -> CredentialRecord | None:
    """The stored record, or ``None`` when the table has no item for this app and kind."""
    try:
        response = client.get_item(
            TableName=table,
            Key={PK: {"S": app_id}, SK: {"S": kind}},
            ConsistentRead=consistent,
        )
    except Exception as exc:
        # botocore errors carry no token, but say which table and app so the cause is findable.
        raise TokenStoreError(
            f"Could not read {kind} for app '{app_id}' from DynamoDB table '{table}': "
            f"{type(exc).__name__}: {exc}. Check the function's IAM policy (dynamodb:GetItem "
            "on the table: attach the stack's ConsumerPolicy) and that the table exists in "
            "this region."
        ) from exc
    item = response.get("Item")
    if not item:
        return None
    return CredentialRecord.from_item(_deserialize(item))
