"""Fault-test fixtures: DynamoDB Local (for the integration fault tests) and a manual clock.

DynamoDB Local and ``token_table`` come from tests/conftest.py: one server per session,
started only by tests that ask for it; the hypothesis tests run on moto.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import TYPE_CHECKING

import botocore.endpoint
import pytest

from local_aws import (
    LocalTable,
)
from simulator import ManualClock, SimulatorServer, WeChatSimulator
from tests.faults.faultlib import APP, SECRET, START, World

if TYPE_CHECKING:
    pass


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
