"""local_aws.EventSourceMapping calls a handler as Lambda's SQS event source mapping does:
Lambda's event and context, batches of at most BatchSize, ReportBatchItemFailures, whole-batch
failures (errors, invalid responses, timeouts, killed environments) redelivered after the
visibility timeout, MaximumConcurrency, the DLQ after maxReceiveCount, delayed messages.

Against moto's SQS over HTTP (one MotoServer for the module, a fresh queue + DLQ per test).
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.parser.models import SqsModel

from local_aws import (
    EventSourceMapping,
    KillInvocation,
    MotoServer,
    WorkQueues,
    create_work_queues,
    sqs_client,
)

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

VISIBILITY = 1  # seconds: every redelivery in these tests waits this long


@pytest.fixture(scope="module")
def sqs() -> Iterator[SQSClient]:
    with MotoServer() as moto:
        client = sqs_client(moto.endpoint_url)
        yield client
        client.close()


def _queues(
    sqs: SQSClient, *, visibility_timeout: int = VISIBILITY, max_receive: int = 5
) -> WorkQueues:
    return create_work_queues(
        sqs,
        f"work-{uuid.uuid4().hex[:12]}",
        visibility_timeout=visibility_timeout,
        max_receive_count=max_receive,
    )


@pytest.fixture
def queues(sqs: SQSClient) -> WorkQueues:
    return _queues(sqs)


class Recorder:
    """A handler recording each call (records, context, time), answering with ``reply``."""

    def __init__(self, reply: Callable[[dict[str, Any], Any], Any] | None = None) -> None:
        self.reply = reply
        self.calls: list[tuple[list[dict[str, Any]], Any, float]] = []
        self.remaining: list[int] = []
        self._lock = threading.Lock()

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        with self._lock:
            self.calls.append((event["Records"], context, time.monotonic()))
            self.remaining.append(context.get_remaining_time_in_millis())
        return self.reply(event, context) if self.reply else None

    def deliveries(self) -> dict[str, list[str]]:
        """body -> the ApproximateReceiveCount of each delivery, in order."""
        seen: dict[str, list[str]] = {}
        with self._lock:
            for records, _, _ in self.calls:
                for record in records:
                    seen.setdefault(record["body"], []).append(
                        record["attributes"]["ApproximateReceiveCount"]
                    )
        return seen

    def times(self, body: str) -> list[float]:
        with self._lock:
            return [at for records, _, at in self.calls for r in records if r["body"] == body]


def _send(sqs: SQSClient, queue_url: str, bodies: list[str]) -> None:
    for start in range(0, len(bodies), 10):
        chunk = bodies[start : start + 10]
        response = sqs.send_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "MessageBody": body} for i, body in enumerate(chunk)],
        )
        assert not response.get("Failed")


def _esm(sqs: SQSClient, queues: WorkQueues, handler: Any, **options: Any) -> EventSourceMapping:
    options.setdefault("function_timeout_seconds", VISIBILITY)
    return EventSourceMapping(sqs, queues.queue_url, handler, **options)


def _drain(esm: EventSourceMapping) -> None:
    assert esm.drain(timeout=30, idle_seconds=0.2), esm.stats


def _wait_until(predicate: Callable[[], bool], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def _count(sqs: SQSClient, queue_url: str, name: str = "ApproximateNumberOfMessages") -> int:
    response = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])
    attributes = {str(key): value for key, value in response["Attributes"].items()}
    return int(attributes[name])


def _fail_first(body_prefix: str = "") -> Callable[[dict[str, Any], Any], Any]:
    """A reply raising on the first delivery of any record whose body starts with the prefix."""

    def reply(event: dict[str, Any], context: Any) -> None:
        for record in event["Records"]:
            first = record["attributes"]["ApproximateReceiveCount"] == "1"
            if first and record["body"].startswith(body_prefix):
                raise RuntimeError(f"failing {record['body']}")

    return reply


# --- the event and the context ----------------------------------------------------------------


def test_the_event_and_context_are_lambdas(sqs: SQSClient, queues: WorkQueues) -> None:
    handler = Recorder()
    with _esm(sqs, queues, handler, function_name="fanout-worker", memory_mb=512) as esm:
        sqs.send_message(
            QueueUrl=queues.queue_url,
            MessageBody='{"app_id": "wx1"}',
            MessageAttributes={
                "kind": {"DataType": "String", "StringValue": "access_token"},
                "attempt": {"DataType": "Number", "StringValue": "3"},
                "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},
            },
        )
        _drain(esm)
    arn = sqs.get_queue_attributes(QueueUrl=queues.queue_url, AttributeNames=["QueueArn"])
    queue_arn = arn["Attributes"]["QueueArn"]

    [(records, context, _)] = handler.calls
    [record] = records
    assert set(record) == {
        "messageId",
        "receiptHandle",
        "body",
        "attributes",
        "messageAttributes",
        "md5OfMessageAttributes",
        "md5OfBody",
        "eventSource",
        "eventSourceARN",
        "awsRegion",
    }
    assert record["body"] == '{"app_id": "wx1"}'
    assert record["md5OfBody"] == hashlib.md5(record["body"].encode()).hexdigest()
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == queue_arn
    assert record["awsRegion"] == "us-east-1"
    assert list(record["attributes"]) == [
        "ApproximateReceiveCount",
        "SentTimestamp",
        "SenderId",
        "ApproximateFirstReceiveTimestamp",
    ]
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert record["messageAttributes"] == {
        "kind": {
            "stringValue": "access_token",
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "String",
        },
        "attempt": {
            "stringValue": "3",
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "Number",
        },
        "blob": {
            "binaryValue": "AAE=",
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "Binary",
        },
    }
    # Powertools' own model of Lambda's SQS event accepts it.
    SqsModel.model_validate({"Records": records})

    assert context.function_name == "fanout-worker"
    assert context.memory_limit_in_mb == "512"
    assert context.invoked_function_arn == (
        "arn:aws:lambda:us-east-1:123456789012:function:fanout-worker"
    )
    assert str(uuid.UUID(context.aws_request_id)) == context.aws_request_id
    assert 0 < handler.remaining[0] <= VISIBILITY * 1000
    stats = esm.stats
    assert (stats.invocations, stats.messages_received, stats.messages_deleted) == (1, 1, 1)
    assert len(stats.durations) == 1
    assert stats.busy_seconds == pytest.approx(stats.durations[0])
    assert stats.gb_seconds == pytest.approx(stats.busy_seconds / 2)


def test_powertools_batch_processor_reports_partial_failures(
    sqs: SQSClient, queues: WorkQueues
) -> None:
    def record_handler(record: SQSRecord) -> None:
        if record.body == "bad" and record.attributes.approximate_receive_count == "1":
            raise ValueError("bad record")

    def worker(event: dict[str, Any], context: Any) -> Any:
        processor = BatchProcessor(event_type=EventType.SQS)
        return process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=context
        )

    handler = Recorder(worker)
    _send(sqs, queues.queue_url, ["ok-1", "bad", "ok-2"])  # before start: one batch
    with _esm(sqs, queues, handler) as esm:
        _drain(esm)
    assert handler.deliveries() == {"ok-1": ["1"], "bad": ["1", "2"], "ok-2": ["1"]}
    assert [len(records) for records, _, _ in handler.calls] == [3, 1]
    stats = esm.stats
    assert stats.batch_item_failures == 1
    assert stats.whole_batch_failures == 0
    assert stats.messages_deleted == 3


# --- responses --------------------------------------------------------------------------------

SUCCESSFUL_RESPONSES: dict[str, Any] = {
    "none": None,
    "empty-object": {},
    "empty-list": {"batchItemFailures": []},
    "null-list": {"batchItemFailures": None},
    "other-keys": {"processed": 1},
    "tuple": {"batchItemFailures": ()},  # Lambda reads the JSON of the result: a list
}


def test_success_deletes_the_whole_batch(sqs: SQSClient, queues: WorkQueues) -> None:
    handler = Recorder(lambda event, _: SUCCESSFUL_RESPONSES[event["Records"][0]["body"]])
    with _esm(sqs, queues, handler, batch_size=1) as esm:
        _send(sqs, queues.queue_url, list(SUCCESSFUL_RESPONSES))
        _drain(esm)
    assert handler.deliveries() == {body: ["1"] for body in SUCCESSFUL_RESPONSES}
    stats = esm.stats
    assert stats.messages_deleted == len(SUCCESSFUL_RESPONSES)
    assert (stats.batch_item_failures, stats.whole_batch_failures) == (0, 0)


def test_report_batch_item_failures_deletes_all_but_the_named(
    sqs: SQSClient, queues: WorkQueues
) -> None:
    def reply(event: dict[str, Any], _: Any) -> Any:
        failed = [
            {"itemIdentifier": r["messageId"]}
            for r in event["Records"]
            if r["body"].startswith("fail") and r["attributes"]["ApproximateReceiveCount"] == "1"
        ]
        return {"batchItemFailures": failed + failed}  # a repeated identifier counts once

    handler = Recorder(reply)
    _send(sqs, queues.queue_url, ["ok-1", "fail-1", "ok-2", "fail-2"])
    with _esm(sqs, queues, handler) as esm:
        _drain(esm)
    assert handler.deliveries() == {
        "ok-1": ["1"],
        "fail-1": ["1", "2"],
        "ok-2": ["1"],
        "fail-2": ["1", "2"],
    }
    stats = esm.stats
    assert (stats.batch_item_failures, stats.whole_batch_failures) == (2, 0)
    assert stats.messages_deleted == 4


INVALID_RESPONSES: dict[str, Callable[[str], Any]] = {
    "unknown-id": lambda _: {"batchItemFailures": [{"itemIdentifier": "not-in-the-batch"}]},
    "empty-id": lambda _: {"batchItemFailures": [{"itemIdentifier": ""}]},
    "null-id": lambda _: {"batchItemFailures": [{"itemIdentifier": None}]},
    "bad-key": lambda message_id: {"batchItemFailures": [{"itemId": message_id}]},
    "not-a-list": lambda message_id: {"batchItemFailures": message_id},
    "not-an-object": lambda _: "ok",
}


def test_an_invalid_response_fails_the_whole_batch(sqs: SQSClient, queues: WorkQueues) -> None:
    def reply(event: dict[str, Any], _: Any) -> Any:
        [record] = event["Records"]
        if record["attributes"]["ApproximateReceiveCount"] != "1":
            return None
        if record["body"] == "unserializable":
            return {"batchItemFailures": [], "when": object()}  # Runtime.MarshalError
        return INVALID_RESPONSES[record["body"]](record["messageId"])

    handler = Recorder(reply)
    bodies = [*INVALID_RESPONSES, "unserializable"]
    with _esm(sqs, queues, handler, batch_size=1, maximum_concurrency=4) as esm:
        _send(sqs, queues.queue_url, bodies)
        _drain(esm)
    assert handler.deliveries() == {body: ["1", "2"] for body in bodies}
    stats = esm.stats
    assert stats.invalid_responses == len(INVALID_RESPONSES)
    assert stats.function_errors == 1
    assert stats.whole_batch_failures == len(bodies)
    assert stats.messages_deleted == len(bodies)


def test_without_report_batch_item_failures_the_response_is_ignored(
    sqs: SQSClient, queues: WorkQueues
) -> None:
    def reply(event: dict[str, Any], _: Any) -> Any:
        if event["Records"][0]["body"] == "junk":
            return "not a batch response"
        return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in event["Records"]]}

    handler = Recorder(reply)
    with _esm(sqs, queues, handler, batch_size=1, report_batch_item_failures=False) as esm:
        _send(sqs, queues.queue_url, ["named-as-failed", "junk"])
        _drain(esm)
    assert handler.deliveries() == {"named-as-failed": ["1"], "junk": ["1"]}
    stats = esm.stats
    assert (stats.batch_item_failures, stats.invalid_responses) == (0, 0)
    assert stats.messages_deleted == 2


# --- failures and redelivery ------------------------------------------------------------------


def test_a_handler_that_raises_deletes_nothing(sqs: SQSClient, queues: WorkQueues) -> None:
    handler = Recorder(_fail_first("boom"))
    _send(sqs, queues.queue_url, ["a", "boom", "b"])  # one batch: "boom" fails all three
    with _esm(sqs, queues, handler) as esm:
        _drain(esm)
    assert handler.deliveries() == {"a": ["1", "2"], "boom": ["1", "2"], "b": ["1", "2"]}
    stats = esm.stats
    assert (stats.function_errors, stats.whole_batch_failures) == (1, 1)
    assert stats.messages_received == 6
    assert stats.messages_deleted == 3


def test_undeleted_messages_come_back_after_the_visibility_timeout(sqs: SQSClient) -> None:
    queues = _queues(sqs, visibility_timeout=2)
    handler = Recorder(_fail_first())
    with _esm(sqs, queues, handler) as esm:
        _send(sqs, queues.queue_url, ["m"])
        _wait_until(lambda: esm.stats.function_errors == 1)
        # Received, not deleted: invisible, so not delivered again yet.
        assert _count(sqs, queues.queue_url, "ApproximateNumberOfMessagesNotVisible") == 1
        _drain(esm)
    assert handler.deliveries() == {"m": ["1", "2"]}
    first, second = handler.times("m")
    assert second - first >= 2 - 0.5  # the visibility timeout, give or take a poll


def test_an_invocation_past_the_function_timeout_fails_its_batch(
    sqs: SQSClient, queues: WorkQueues
) -> None:
    release = threading.Event()

    def reply(event: dict[str, Any], _: Any) -> None:
        if event["Records"][0]["attributes"]["ApproximateReceiveCount"] == "1":
            release.wait(10)  # returns "success" only after Lambda gave up on it

    handler = Recorder(reply)
    with _esm(sqs, queues, handler, function_timeout_seconds=0.5) as esm:
        _send(sqs, queues.queue_url, ["slow"])
        _wait_until(lambda: esm.stats.timeouts == 1)
        release.set()
        _drain(esm)
    assert handler.deliveries() == {"slow": ["1", "2"]}
    assert handler.remaining[0] <= 500
    stats = esm.stats
    assert (stats.timeouts, stats.whole_batch_failures, stats.messages_deleted) == (1, 1, 1)
    assert stats.durations[0] == 0.5  # a timed-out invocation runs (and bills) its timeout


def test_kill_invocation_abandons_the_batch(sqs: SQSClient, queues: WorkQueues) -> None:
    def record_handler(record: SQSRecord) -> None:
        if record.attributes.approximate_receive_count == "1":
            raise KillInvocation  # not an Exception: Powertools does not catch it

    def worker(event: dict[str, Any], context: Any) -> Any:
        processor = BatchProcessor(event_type=EventType.SQS)
        return process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=context
        )

    handler = Recorder(worker)
    _send(sqs, queues.queue_url, ["x", "y"])
    with _esm(sqs, queues, handler) as esm:
        _drain(esm)
    assert handler.deliveries() == {"x": ["1", "2"], "y": ["1", "2"]}
    stats = esm.stats
    assert stats.killed == 1
    assert (stats.whole_batch_failures, stats.function_errors, stats.batch_item_failures) == (
        0,
        0,
        0,
    )
    assert stats.messages_deleted == 2


# --- batching and concurrency -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("batch_size", "window", "messages"),
    [(3, 0.0, 8), (25, 1.0, 30)],
    ids=["small-batches", "several-receives-per-batch"],
)
def test_batches_never_exceed_batch_size(
    sqs: SQSClient, batch_size: int, window: float, messages: int
) -> None:
    # The batching window counts against the visibility timeout: leave room for it.
    queues = _queues(sqs, visibility_timeout=5)
    handler = Recorder()
    bodies = [f"m{i}" for i in range(messages)]
    _send(sqs, queues.queue_url, bodies)
    options = {"batch_size": batch_size, "maximum_batching_window_seconds": window}
    with _esm(sqs, queues, handler, **options) as esm:
        _drain(esm)
    sizes = [len(records) for records, _, _ in handler.calls]
    assert handler.deliveries() == {body: ["1"] for body in bodies}
    assert max(sizes) <= batch_size
    assert sorted(esm.stats.batch_sizes) == sorted(sizes)
    if batch_size > 10:
        assert max(sizes) > 10  # ReceiveMessage gives 10 at most: gathered from several
    else:
        assert max(sizes) == batch_size


def test_maximum_concurrency_caps_concurrent_invocations(
    sqs: SQSClient, queues: WorkQueues
) -> None:
    limit = 3
    together = threading.Barrier(limit, timeout=10)  # proves `limit` ran at once
    lock = threading.Lock()
    active = peak = started = 0

    def reply(event: dict[str, Any], _: Any) -> None:
        nonlocal active, peak, started
        with lock:
            active += 1
            peak = max(peak, active)
            started += 1
            first_round = started <= limit
        try:
            if first_round:
                together.wait()
            time.sleep(0.2)
        finally:
            with lock:
                active -= 1

    handler = Recorder(reply)
    _send(sqs, queues.queue_url, [f"m{i}" for i in range(3 * limit)])
    with _esm(sqs, queues, handler, batch_size=1, maximum_concurrency=limit) as esm:
        _drain(esm)
    assert peak == limit
    stats = esm.stats
    assert stats.peak_concurrency == limit
    assert (stats.invocations, stats.messages_deleted, stats.function_errors) == (9, 9, 0)


# --- SQS: dead-letter queue, delays -----------------------------------------------------------


def test_messages_move_to_the_dlq_after_max_receive_count(sqs: SQSClient) -> None:
    queues = _queues(sqs, max_receive=2)

    def reply(event: dict[str, Any], _: Any) -> None:
        raise RuntimeError("poison")

    handler = Recorder(reply)
    with _esm(sqs, queues, handler) as esm:
        sqs.send_message(QueueUrl=queues.queue_url, MessageBody="poison")
        _wait_until(lambda: _count(sqs, queues.dlq_url) == 1)
        _drain(esm)  # the work queue is empty: moto moved the message on a receive
    assert handler.deliveries() == {"poison": ["1", "2"]}
    assert esm.stats.messages_deleted == 0
    [moved] = sqs.receive_message(QueueUrl=queues.dlq_url)["Messages"]
    assert moved["Body"] == "poison"
    assert moved["MessageId"] == handler.calls[0][0][0]["messageId"]


def test_delayed_messages_are_not_delivered_before_their_delay(
    sqs: SQSClient, queues: WorkQueues
) -> None:
    handler = Recorder()
    with _esm(sqs, queues, handler) as esm:
        sent = time.monotonic()
        sqs.send_message(QueueUrl=queues.queue_url, MessageBody="later", DelaySeconds=2)
        sqs.send_message(QueueUrl=queues.queue_url, MessageBody="now")
        assert _count(sqs, queues.queue_url, "ApproximateNumberOfMessagesDelayed") == 1
        # A delayed message is work to come: the queue is not drained while it waits.
        assert not esm.drain(timeout=0.5, idle_seconds=0.1)
        _drain(esm)
    assert handler.deliveries() == {"now": ["1"], "later": ["1"]}
    [later] = handler.times("later")
    [now] = handler.times("now")
    assert now < later
    assert later - sent >= 2 - 0.1


# --- lifecycle and configuration --------------------------------------------------------------


def test_stop_waits_for_in_flight_invocations_and_is_idempotent(
    sqs: SQSClient, queues: WorkQueues
) -> None:
    finished = threading.Event()

    def reply(event: dict[str, Any], _: Any) -> None:
        time.sleep(0.5)
        finished.set()

    handler = Recorder(reply)
    esm = _esm(sqs, queues, handler)
    esm.stop()  # before start: nothing to do
    esm.start()
    assert esm.running
    _send(sqs, queues.queue_url, ["m"])
    _wait_until(lambda: bool(handler.calls))
    esm.stop()
    assert finished.is_set()
    assert not esm.running
    esm.stop()
    assert esm.stats.messages_deleted == 1
    assert _count(sqs, queues.queue_url, "ApproximateNumberOfMessagesNotVisible") == 0
    with pytest.raises(RuntimeError):
        esm.start()


def test_start_rejects_a_visibility_timeout_shorter_than_the_function_timeout(
    sqs: SQSClient, queues: WorkQueues
) -> None:
    esm = _esm(sqs, queues, Recorder(), function_timeout_seconds=VISIBILITY + 1)
    with pytest.raises(ValueError, match="less than Function timeout"):
        esm.start()


@pytest.mark.parametrize(
    "options",
    [
        {"batch_size": 0},
        {"batch_size": 10_001, "maximum_batching_window_seconds": 1},
        {"batch_size": 11},  # more than 10 needs a batching window of 1 s at least
        {"maximum_concurrency": 1},
        {"maximum_concurrency": 1001},
        {"maximum_batching_window_seconds": 301},
        {"function_timeout_seconds": 0},
        {"wait_time_seconds": 0},
        {"wait_time_seconds": 21},
    ],
)
def test_the_configuration_is_checked_as_aws_does(
    sqs: SQSClient, queues: WorkQueues, options: dict[str, Any]
) -> None:
    with pytest.raises(ValueError):
        EventSourceMapping(sqs, queues.queue_url, Recorder(), **options)
