"""Scale past one invocation: the planner sends due apps to SQS, workers (Lambda's event
source mapping, emulated) refresh them, on DynamoDB Local, moto's SQS and Secrets Manager,
and the simulator over HTTP.

- 10 000 apps in 12 registry secrets, two renewal cycles: each app refreshed exactly once
  per cycle, the deployment's call-rate ceiling holding WeChat under its per-minute limit
  (no 45011), nothing dead-lettered;
- a worker killed mid-batch: its messages come back, every app is refreshed, none twice;
- a poison credential: its message alone ends in the dead-letter queue.

``pytest tests/scenarios/test_fanout.py -s`` prints the figures.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from token_refresher.triggers import Scheduled
from wechat_token.record import ACCESS_TOKEN, CredentialKey

from local_aws import DynamoDBLocal, KillInvocation
from simulator.wechat import CLASSIC_TOKEN
from tests.scenarios.fanout import FanOut, fanout_world
from tests.scenarios.harness import START

APPS = 10_000
RATE = 95  # calls per second: the deployment's ceiling in this scenario
WECHAT_MINUTE_LIMIT = 6000  # what the simulated WeChat allows over any 60 s (all calls)


def _apps(count: int) -> dict[str, str]:
    return {f"wx{number:016x}": f"secret-{number:06d}-abcdef" for number in range(count)}


def _token_calls(world: FanOut) -> Counter[str]:
    return Counter(
        call.appid for call in world.sim.call_log if call.endpoint == CLASSIC_TOKEN and call.appid
    )


def _versions(world: FanOut) -> dict[str, int]:
    versions: dict[str, int] = {}
    pages = world.dynamodb.get_paginator("scan").paginate(
        TableName=world.table,
        ProjectionExpression="app_id, kind, version",
        ConsistentRead=True,
    )
    for page in pages:
        for item in page["Items"]:
            if item["kind"]["S"] == ACCESS_TOKEN and "version" in item:
                versions[item["app_id"]["S"]] = int(item["version"]["N"])
    return versions


@pytest.fixture
def world(dynamodb_local: DynamoDBLocal) -> Iterator[FanOut]:
    with fanout_world(
        dynamodb_local.endpoint_url,
        start=START,
        minute_limits={"global": WECHAT_MINUTE_LIMIT},
        call_log_limit=1_000_000,
    ) as world:
        yield world


def test_ten_thousand_apps_in_twelve_secrets_are_refreshed_once_per_cycle(world: FanOut) -> None:
    world.queues(visibility_timeout=120, max_receive_count=3)
    apps = _apps(APPS)
    world.register(apps)
    assert len(world.shards) == 12
    # A 30 s HTTP timeout: on a loaded 2-core machine a 10 s one expires before the
    # simulator answers, and the retry is a second (counted, harmless) token call.
    service = world.refresher(
        http_timeout=30.0, wechat_calls_per_second=RATE, probe_stored_tokens=False
    )
    figures: list[dict[str, Any]] = []
    for cycle in range(2):
        started = time.monotonic()
        summary = service.run(Scheduled())
        assert summary.plan is not None
        planned_in = time.monotonic() - started
        assert summary.plan.planned == APPS, f"cycle {cycle}: every app due is sent once"
        with world.workers(service, maximum_concurrency=8, function_timeout_seconds=110) as esm:
            assert esm.drain(timeout=900), "the queue drained"
            stats = esm.stats
        calls = _token_calls(world)
        assert set(calls) == set(apps)
        versions = _versions(world)
        assert set(versions.values()) == {cycle + 1}, "each app stored exactly once per cycle"
        # A call whose answer was lost (a client timeout) is retried: one more token call.
        extra = sum(calls.values()) - APPS * (cycle + 1)
        assert extra <= APPS // 100, f"{extra} token calls beyond one per app and cycle"
        figures.append(
            {
                "cycle": cycle,
                "planned": summary.plan.planned,
                "plan_seconds": round(planned_in, 1),
                "wall_seconds": round(time.monotonic() - started, 1),
                "invocations": stats.invocations,
                "peak_workers": stats.peak_concurrency,
                "batch_item_failures": stats.batch_item_failures,
                "extra_token_calls": extra,
            }
        )
        if cycle == 0:  # right after the cycle, nothing is due: nothing is sent
            nothing = service.run(Scheduled())
            assert nothing.plan is not None
            assert nothing.plan.planned == 0
        # The next cycle: past every renewal point (50 minutes of a 115-minute life).
        world.clock.advance(3100)
    rejections = world.sim.stats(include_log=False)["minute_limit_rejections"]["total"]
    peak_minute = world.sim.peak_calls_per_minute()
    peak_second = world.sim.peak_calls_per_second()
    print(json.dumps({"cycles": figures, "peak_per_minute": peak_minute,
                      "peak_per_second": peak_second, "45011": rejections}))  # fmt: skip
    assert rejections == 0, "the ceiling kept every call under WeChat's per-minute limit"
    assert peak_minute <= WECHAT_MINUTE_LIMIT
    assert world.dead_letters() == []
    record = world.dynamodb.get_item(
        TableName=world.table, Key=CredentialKey(min(apps), ACCESS_TOKEN).item_key()
    )["Item"]
    assert int(record["version"]["N"]) == 2


def test_a_worker_killed_mid_batch_has_its_apps_redelivered_and_refreshed_once(
    world: FanOut,
) -> None:
    world.queues(visibility_timeout=10, max_receive_count=5)
    apps = _apps(30)
    world.register(apps)
    # Short timeouts (1 s to WeChat, a 10 s function) so that redelivery comes quickly.
    service = world.refresher(http_timeout=1.0, probe_stored_tokens=False, concurrency=1)
    handler = world.handler(service)
    worked: list[str] = []
    original = service.work_one

    def work_one(app_id: str, registry: Any, deadline: Any) -> Any:
        if len(worked) == 4:  # the fifth app of the first batch: the environment dies
            worked.append("killed")
            raise KillInvocation
        worked.append(app_id)
        return original(app_id, registry, deadline)

    service.work_one = work_one  # type: ignore[method-assign]
    summary = service.run(Scheduled())
    assert summary.plan is not None
    assert summary.plan.planned == 30
    with world.workers(
        service, handler=handler, maximum_concurrency=2, function_timeout_seconds=10
    ) as esm:
        assert esm.drain(timeout=120)
        stats = esm.stats
    assert stats.killed == 1
    calls = _token_calls(world)
    assert set(calls) == set(apps), "every app, the killed batch's too, was refreshed"
    assert set(calls.values()) == {1}, "none twice at WeChat: the lease and policy saw them done"
    assert stats.messages_received > 30, "the killed batch's messages were delivered again"
    assert world.dead_letters() == []


def test_a_poison_credential_lands_in_the_dead_letter_queue_alone(world: FanOut) -> None:
    world.queues(visibility_timeout=10, max_receive_count=2)
    apps = _apps(25)
    world.register(apps)
    poison = sorted(apps)[7]
    world.dynamodb.put_item(  # a record no code can read (a hand edit gone wrong)
        TableName=world.table,
        Item={"app_id": {"S": poison}, "kind": {"S": ACCESS_TOKEN}, "expires_at": {"S": "soon"}},
    )
    service = world.refresher(http_timeout=1.0, probe_stored_tokens=False)
    summary = service.run(Scheduled())
    assert summary.plan is not None
    assert summary.plan.planned == 25
    with world.workers(service, maximum_concurrency=2, function_timeout_seconds=10) as esm:
        deadline = time.monotonic() + 60
        letters: list[str] = []
        while time.monotonic() < deadline and not letters:
            time.sleep(0.5)
            letters = world.dead_letters()
        esm.drain(timeout=30)
        stats = esm.stats
    assert [json.loads(body)["app_id"] for body in letters] == [poison]
    calls = _token_calls(world)
    assert set(calls) == set(apps) - {poison}, "every other app of its batches was refreshed"
    assert set(calls.values()) == {1}
    assert stats.batch_item_failures >= 2, "reported alone, item by item, on each delivery"
