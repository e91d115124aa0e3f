"""Fault-test fixtures: DynamoDB Local (for the integration fault tests) and a manual clock.

The DynamoDB Local fixtures mirror tests/integration/conftest.py (fixtures do not cross
directories): one server per session, a fresh token table per test. The server is only
started by tests that ask for ``token_table``; the hypothesis tests run on moto.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import TYPE_CHECKING

import botocore.endpoint
import pytest

from local_aws import (
    DynamoDBLocal,
    DynamoDBLocalUnavailable,
    LocalTable,
    create_token_table,
    dynamodb_client,
)
from simulator import ManualClock, SimulatorServer, WeChatSimulator
from tests.faults.faultlib import APP, SECRET, START, World

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


@pytest.fixture(scope="session")
def faults_dynamodb_local() -> Iterator[DynamoDBLocal]:
    """One DynamoDB Local for the fault tests; ``.endpoint_url`` is on 127.0.0.1."""
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
def faults_admin_client(faults_dynamodb_local: DynamoDBLocal) -> Iterator[DynamoDBClient]:
    """A fault-free client for creating tables and reading back what was stored."""
    client = dynamodb_client(faults_dynamodb_local.endpoint_url)
    yield client
    client.close()


@pytest.fixture
def token_table(
    faults_dynamodb_local: DynamoDBLocal, faults_admin_client: DynamoDBClient
) -> Iterator[LocalTable]:
    """A fresh, uniquely named token table (schema as in the SAM template), deleted after."""
    name = f"faults-{uuid.uuid4().hex[:12]}"
    create_token_table(faults_admin_client, name)
    yield LocalTable(
        name=name, endpoint_url=faults_dynamodb_local.endpoint_url, dynamodb=faults_admin_client
    )
    with contextlib.suppress(faults_admin_client.exceptions.ResourceNotFoundException):
        faults_admin_client.delete_table(TableName=name)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def botocore_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """botocore's retry backoff, recorded instead of slept (botocore.endpoint calls time.sleep)."""
    sleeps: list[float] = []
    monkeypatch.setattr(botocore.endpoint, "time", SimpleNamespace(sleep=sleeps.append))
    return sleeps


@pytest.fixture
def world(token_table: LocalTable, clock: ManualClock) -> Iterator[World]:
    """DynamoDB Local table + the WeChat simulator on loopback, sharing one manual clock."""
    sim = WeChatSimulator(clock, seed=1)
    sim.add_app(APP, SECRET)
    with SimulatorServer(sim) as server:
        yield World(token_table, clock, sim, server.base_url)
