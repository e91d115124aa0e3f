"""The fan-out's rules, on moto: what the planner sends, how the due index is kept, what a
refresh writes, the worker's per-message reports, and the shared call-rate ceiling."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.batch import process_partial_response
from moto import mock_aws
from token_refresher.due import DueIndex, lane_of, lanes_of
from token_refresher.errors import RateCeilingError
from token_refresher.outcome import Status
from token_refresher.planner import state_key
from token_refresher.rate_limit import DEPLOYMENT, CallRateLimiter, Limits
from token_refresher.service import RefreshService
from token_refresher.telemetry import min_seconds_to_expiry
from token_refresher.token_store import RATE_PREFIX, TokenStore
from token_refresher.triggers import Scheduled
from token_refresher.work_queue import InlineWorkQueue, parse_body
from token_refresher.worker import BatchWorker, ThreadedBatchProcessor
from wechat_token.record import ACCESS_TOKEN, CredentialKey, CredentialRecord

from local_aws.resources import create_token_table
from tests.unit.conftest import APP, SECRET, TABLE, Harness, ManualClock

OTHER = "wx2222222222222222"


class Recorder:
    """The planner's sends, captured (the queue), and handed to the worker when asked."""

    def __init__(self, service: RefreshService, *, deliver: bool = True) -> None:
        self.sent: list[list[str]] = []
        self._service = service
        self._deliver = deliver

    def send(self, app_ids: Any) -> list[Any]:
        self.sent.append(list(app_ids))
        return self._service.work(app_ids) if self._deliver else []

    @property
    def apps(self) -> list[str]:
        return [app for batch in self.sent for app in batch]


def _planned(harness: Harness, **overrides: Any) -> tuple[Recorder, Any]:
    service = harness.service(**overrides)
    recorder = Recorder(service)
    service.queue = recorder
    return recorder, service.run(Scheduled())


def _writes(dynamodb: Any) -> Counter[tuple[str, str]]:
    """UpdateItem/PutItem calls per item key, counted from here on."""
    counts: Counter[tuple[str, str]] = Counter()

    def count(params: dict[str, Any], **_: Any) -> None:
        key = params.get("Key") or params.get("Item") or {}
        counts[(key["app_id"]["S"], key["kind"]["S"])] += 1

    dynamodb.meta.events.register("provide-client-params.dynamodb.UpdateItem", count)
    dynamodb.meta.events.register("provide-client-params.dynamodb.PutItem", count)
    return counts


# -- the due index and the planner -------------------------------------------------------


def test_lanes_follow_the_schedules() -> None:
    assert lane_of("stable") == "stable"
    assert lane_of("component") == lane_of("authorizer") == "platform"
    assert lane_of("classic") == lane_of("wecom") == "main"
    assert lanes_of(()) == ("main", "stable", "platform")
    assert lanes_of(("stable", "component")) == ("stable", "platform")
    index = DueIndex(4)
    shards = {index.shard_of(f"wx{n:016d}", "classic") for n in range(200)}
    assert shards == {f"main#{n}" for n in range(4)}, "apps spread over every shard"


def test_a_successful_refresh_takes_two_conditional_writes(harness: Harness) -> None:
    counts = _writes(harness.dynamodb)
    harness.run(probe_stored_tokens=False)
    assert counts[(APP, ACCESS_TOKEN)] == 2, "the lease with the first call's count, the commit"
    record = harness.record()
    assert record is not None
    assert record.calls_today(harness.clock.now) == 1
    assert record.lease_owner is None
    assert record.due_shard == DueIndex().shard_of(APP, "classic")
    assert record.due_at == pytest.approx((record.expires_at or 0) - 3900, abs=1.5)


def test_each_renewal_point_is_planned_once(harness: Harness) -> None:
    recorder, _ = _planned(harness, probe_stored_tokens=False)
    assert recorder.apps == [APP], "a new registry shard: every app of it is sent"
    record = harness.record()
    assert record is not None
    assert record.due_at is not None
    sent = []
    for _ in range(60):  # two hours of the two-minute schedule
        harness.clock.advance(120)
        recorder, summary = _planned(harness, probe_stored_tokens=False)
        sent.append(recorder.apps)
        assert summary.plan is not None
    assert sum(len(apps) for apps in sent) == 2, "planned exactly at each renewal point"
    assert harness.wechat.calls == 3


def test_nothing_due_sends_nothing_and_reads_no_record(harness: Harness) -> None:
    harness.run(probe_stored_tokens=False)
    harness.clock.advance(120)
    reads: list[str] = []
    harness.dynamodb.meta.events.register(
        "provide-client-params.dynamodb.GetItem",
        lambda params, **_: reads.append(params["Key"]["app_id"]["S"]),
    )
    recorder, summary = _planned(harness, probe_stored_tokens=False)
    assert recorder.sent == []
    assert summary.plan is not None
    assert summary.plan.planned == 0
    assert APP not in reads, "the planner reads the due index and its state, no credential"


def test_a_failure_is_due_again_at_the_next_run(harness: Harness) -> None:
    harness.wechat.script = [{"errcode": -1, "errmsg": "busy"}] * 4
    [failed] = harness.run(probe_stored_tokens=False)
    assert failed.status is Status.FAILED
    harness.clock.advance(60)
    recorder, summary = _planned(harness, probe_stored_tokens=False)
    assert recorder.apps == [APP]
    assert [o.status for o in summary] == [Status.REFRESHED]


def test_a_lost_index_entry_is_found_by_the_daily_sweep_and_put_right(harness: Harness) -> None:
    harness.set_registry({APP: {"secret": SECRET}, OTHER: {"secret": SECRET}})
    harness.run(probe_stored_tokens=False)
    harness.dynamodb.update_item(  # the entry is lost (a bug, a hand edit)
        TableName=TABLE,
        Key=CredentialKey(APP, ACCESS_TOKEN).item_key(),
        UpdateExpression="REMOVE due_shard, due_at",
    )
    harness.clock.advance(86_400)  # past both renewal points, into the next day
    recorder, _ = _planned(harness, probe_stored_tokens=False, sweep_per_run=1)
    assert OTHER in recorder.apps, "the index still brings the one it knows"
    swept = set(recorder.apps)
    harness.clock.advance(120)
    recorder, _ = _planned(harness, probe_stored_tokens=False, sweep_per_run=1)
    swept |= set(recorder.apps)
    assert APP in swept, "the sweep (one app per run here) reaches the lost one"
    record = harness.record()
    assert record is not None
    assert record.due_at is not None, "the worker filed it again"
    harness.clock.advance(120)
    recorder, _ = _planned(harness, probe_stored_tokens=False, sweep_per_run=1)
    assert recorder.apps == [], "the sweep is done for the day"


def test_a_new_app_in_the_registry_is_sent_at_the_next_run(harness: Harness) -> None:
    harness.run(probe_stored_tokens=False)
    harness.set_registry({APP: {"secret": SECRET}, OTHER: {"secret": SECRET}})
    harness.clock.advance(120)
    recorder, summary = _planned(harness, probe_stored_tokens=False)
    assert set(recorder.apps) == {APP, OTHER}, "the shard changed: its apps are sent"
    assert {o.app_id: o.status for o in summary} == {
        APP: Status.NOT_DUE,
        OTHER: Status.REFRESHED,
    }


def test_an_app_removed_from_the_registry_leaves_the_due_index(harness: Harness) -> None:
    harness.set_registry({APP: {"secret": SECRET}, OTHER: {"secret": SECRET}})
    harness.run(probe_stored_tokens=False)
    harness.set_registry({OTHER: {"secret": SECRET}})
    service = harness.service(probe_stored_tokens=False)
    assert service.work([APP]) == []
    record = harness.record()
    assert record is not None
    assert record.due_at is None
    assert record.due_shard is None
    assert record.has_value, "its record stays (the refresher never deletes)"


def test_two_planners_at_once_both_send_and_one_state_wins(harness: Harness) -> None:
    service = harness.service(probe_stored_tokens=False)
    store = service.store
    first = Recorder(service, deliver=False)
    second = Recorder(service, deliver=False)
    # The second planner reads the same (empty) state before the first writes its own.
    state_before = store.read_item(state_key("main"))
    service.planner.plan(service.registry.load(), ["main"], harness.clock.now, first.send)
    assert store.read_item(state_key("main")) != state_before
    service.planner.plan(service.registry.load(), ["main"], harness.clock.now, second.send)
    assert first.apps == [APP]
    assert second.apps == [], "the second saw the first's state: nothing new"


def test_an_idle_plan_still_reports_the_close_to_expiry_metric(harness: Harness) -> None:
    harness.run(probe_stored_tokens=False)
    harness.clock.advance(120)
    summary = harness.service(probe_stored_tokens=False).run(Scheduled())
    assert list(summary) == []
    assert min_seconds_to_expiry(summary) == 3900, (
        "reported (the alarm treats missing data as breaching): nothing has less than the "
        "renewal point"
    )


def _refreshed_once(harness: Harness) -> CredentialRecord:
    """One scheduled refresh of APP without the probe; its stored record."""
    harness.run(probe_stored_tokens=False)
    record = harness.record()
    assert record is not None
    return record


def test_the_close_to_expiry_metric_sees_entries_due_and_not_renewed(harness: Harness) -> None:
    record = _refreshed_once(harness)
    assert record.expires_at is not None
    assert record.due_at is not None
    harness.clock.now = record.due_at + 1
    service = harness.service(probe_stored_tokens=False)
    service.queue = Recorder(service, deliver=False)  # sent, but no worker ever runs
    summary = service.run(Scheduled())
    assert min_seconds_to_expiry(summary) == 3900, "just sent, nothing else due: the floor"
    harness.clock.advance(600)
    summary = service.run(Scheduled())
    least = min_seconds_to_expiry(summary)
    assert least == pytest.approx(record.expires_at - harness.clock.now), (
        "due earlier and still not renewed: the planner reports its time left"
    )


def test_a_value_its_endpoint_holds_until_expiry_is_not_watched(harness: Harness) -> None:
    # WeCom hands out the same token until it expires (renewable_at): nothing the refresher
    # can do sooner, so its time left is no failure and must not pull the alarm metric down.
    record = _refreshed_once(harness)
    assert record.expires_at is not None
    assert record.due_at is not None
    harness.dynamodb.update_item(
        TableName=TABLE,
        Key={"app_id": {"S": APP}, "kind": {"S": ACCESS_TOKEN}},
        UpdateExpression="SET renewable_at = :r",
        ExpressionAttributeValues={":r": {"N": str(record.expires_at + 300)}},
    )
    harness.clock.now = record.due_at + 1
    service = harness.service(probe_stored_tokens=False)
    service.queue = Recorder(service, deliver=False)
    service.run(Scheduled())
    harness.clock.advance(600)
    assert min_seconds_to_expiry(service.run(Scheduled())) == 3900, (
        "held by its endpoint until it expires: not watched, the metric stays at the floor"
    )


# -- the worker --------------------------------------------------------------------------


def _sqs_event(*bodies: str) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": f"m{number}",
                "receiptHandle": f"r{number}",
                "body": body,
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:work",
                "awsRegion": "us-east-1",
            }
            for number, body in enumerate(bodies)
        ]
    }


def test_the_worker_reports_only_messages_whose_work_was_not_done(harness: Harness) -> None:
    harness.set_registry({APP: {"secret": SECRET}, OTHER: {"secret": SECRET}})
    service = harness.service(probe_stored_tokens=False)
    harness.dynamodb.put_item(  # a record no code can read: a poison credential
        TableName=TABLE,
        Item={
            "app_id": {"S": OTHER},
            "kind": {"S": ACCESS_TOKEN},
            "expires_at": {"S": "tomorrow"},
        },
    )
    worker = BatchWorker(service, service.registry.load(), service.deadline())
    event = _sqs_event(
        json.dumps({"app_id": APP}), json.dumps({"app_id": OTHER}), "not json", '{"app": 1}'
    )
    response = process_partial_response(
        event=event, record_handler=worker.record, processor=ThreadedBatchProcessor(4)
    )
    failed = {item["itemIdentifier"] for item in response["batchItemFailures"]}
    assert failed == {"m1", "m2", "m3"}, "the good app's message is done and deleted"
    assert {o.app_id: o.status for o in worker.outcomes}[APP] is Status.REFRESHED


def test_a_wechat_failure_is_recorded_not_redelivered(harness: Harness) -> None:
    harness.wechat.by_app[APP] = {"errcode": 40125, "errmsg": "invalid appsecret"}
    service = harness.service(probe_stored_tokens=False)
    worker = BatchWorker(service, service.registry.load(), service.deadline())
    response = process_partial_response(
        event=_sqs_event(json.dumps({"app_id": APP})),
        record_handler=worker.record,
        processor=ThreadedBatchProcessor(4),
    )
    assert response["batchItemFailures"] == []
    record = harness.record()
    assert record is not None
    assert record.last_error_code == "40125"
    assert record.due_at == pytest.approx(harness.clock.now + 60), "due again at the next run"


def test_work_messages_carry_an_app_id_and_nothing_else() -> None:
    assert parse_body('{"app_id": "wx1"}') == "wx1"
    for bad in ("", "[]", '{"app_id": 3}', '{"app_id": ""}', "{"):
        with pytest.raises(ValueError, match="work message"):
            parse_body(bad)


def test_the_inline_queue_runs_the_same_worker(harness: Harness) -> None:
    service = harness.service()
    assert isinstance(service.queue, InlineWorkQueue)
    [outcome] = service.run(Scheduled())
    assert outcome.status is Status.REFRESHED


# -- the call-rate ceiling ------------------------------------------------------------------


class TickingClock(ManualClock):
    def sleep(self, seconds: float) -> None:
        self.advance(seconds)


@pytest.fixture
def store() -> Iterator[TokenStore]:
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        create_token_table(dynamodb, TABLE)
        yield TokenStore(dynamodb, TABLE)


def _counters(store: TokenStore, scope: str) -> dict[int, int]:
    items = store._client.scan(TableName=TABLE)["Items"]
    return {
        int(item["kind"]["S"]): int(item["calls_count"]["N"])
        for item in items
        if item["app_id"]["S"] == f"{RATE_PREFIX}{scope}"
    }


def test_the_ceiling_holds_across_limiters_sharing_the_table(store: TokenStore) -> None:
    clock = TickingClock()
    limits = Limits(per_second=5, per_component_per_second=5)
    workers = [
        CallRateLimiter(store, limits, chunk=2, clock=clock, sleep=clock.sleep) for _ in range(3)
    ]
    for number in range(40):
        workers[number % 3].take([DEPLOYMENT], time_left=lambda: 600.0)
    per_second = _counters(store, DEPLOYMENT)
    assert max(per_second.values()) <= 5, "never more permits in a second than the ceiling"
    assert sum(per_second.values()) >= 40, "every call got its permit"
    assert len(per_second) >= math.ceil(40 / 5), "the calls were spread over the seconds"


def test_a_call_that_cannot_get_a_permit_in_time_is_not_made(store: TokenStore) -> None:
    clock = TickingClock()
    limiter = CallRateLimiter(store, Limits(1, 1), clock=clock, sleep=clock.sleep)
    limiter.take([DEPLOYMENT], time_left=lambda: 600.0)
    with pytest.raises(RateCeilingError, match="WECHAT_CALLS_PER_SECOND"):
        limiter.take([DEPLOYMENT], time_left=lambda: 0.5)


def test_a_component_call_takes_a_permit_of_the_deployment_and_of_its_component(
    store: TokenStore,
) -> None:
    clock = TickingClock()
    limiter = CallRateLimiter(store, Limits(100, 2), chunk=1, clock=clock, sleep=clock.sleep)
    for _ in range(6):
        limiter.take([DEPLOYMENT, "component:wxc"], time_left=lambda: 600.0)
    assert max(_counters(store, "component:wxc").values()) <= 2
    assert sum(_counters(store, DEPLOYMENT).values()) >= 6
