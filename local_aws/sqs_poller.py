"""A Docker-free stand-in for AWS Lambda's SQS event source mapping (ESM).

``EventSourceMapping`` polls an SQS queue (moto's, through ``MotoServer``, or any endpoint
its client points at) and calls a Python handler of this process with Lambda's SQS event and
a Lambda-like context, the way the ESM of a worker function would, so that tests, the demo
and benchmarks run the worker code as Lambda calls it.

Emulated, after AWS's documentation ("Using Lambda with Amazon SQS"):

- **Pollers and concurrency.** ``maximum_concurrency`` pollers (``ScalingConfig.
  MaximumConcurrency``, 2-1000), each receiving a batch and invoking the handler
  synchronously, so at most that many invocations run at once (``stats.peak_concurrency``).
- **Batching.** ``ReceiveMessage`` returns at most 10 messages; a poller keeps receiving
  until it holds ``batch_size`` messages or ``maximum_batching_window_seconds`` have passed
  since its first message of the batch (no window: one receive). A batch never exceeds
  ``batch_size``. As in AWS, ``batch_size`` > 10 needs a window of at least 1 s, and the
  window counts against the visibility timeout (a batch gathered for longer holds messages
  that another poller may receive again).
- **The event and context.** ``{"Records": [...]}`` with Lambda's record shape (``messageId``,
  ``receiptHandle``, ``body``, ``attributes``, ``messageAttributes`` in Lambda's lowercase form
  with base64 binary values, ``md5OfBody``, ``eventSource``, ``eventSourceARN``,
  ``awsRegion``); Powertools' ``BatchProcessor`` and its parser's ``SqsModel`` accept it. The
  context has Lambda's attributes (``memory_limit_in_mb`` is a string, as in the Python
  runtime) and ``get_remaining_time_in_millis()`` counts down from
  ``function_timeout_seconds``.
- **Deletion.** A batch that succeeds is deleted (``DeleteMessageBatch``). With
  ``report_batch_item_failures`` (``FunctionResponseTypes: [ReportBatchItemFailures]``) the
  response ``{"batchItemFailures": [{"itemIdentifier": messageId}]}`` deletes all but those;
  ``None``, ``{}``, a null or empty list mean complete success; a response that is not an
  object, a list that is not a list, an item without a non-empty ``itemIdentifier`` or one
  naming a message not in the batch fails the whole batch. Without it, the response is
  ignored. The response is JSON round-tripped first: one that cannot be serialized is a
  function error (Lambda's ``Runtime.MarshalError``).
- **Failures.** A handler that raises, a malformed response, or an invocation running past
  ``function_timeout_seconds`` deletes nothing: the messages come back when the queue's
  visibility timeout expires, with a higher ``ApproximateReceiveCount``. A timed-out
  handler's thread is abandoned (Python cannot kill it); its late result is ignored.
  Raising ``KillInvocation`` (a ``BaseException``, so neither the handler's nor Powertools'
  ``except Exception`` swallows it) abandons the batch as if the execution environment died
  mid-batch: nothing deleted, no response.
- **Dead-letter queue, visibility timeout, delays.** These are SQS's, not Lambda's: moto 5.2
  implements them and this module relies on it. Received messages stay invisible for the
  queue's ``VisibilityTimeout`` (moto: whole seconds); moto moves a message to the
  ``RedrivePolicy``'s DLQ on the first receive attempt after ``maxReceiveCount`` receives, as
  SQS does; messages sent with ``DelaySeconds`` are not delivered before their delay.
- **Configuration checks.** As ``CreateEventSourceMapping`` does: batch size 1-10000,
  window 0-300 s, maximum concurrency 2-1000, and (at ``start()``) a queue visibility timeout
  at least the function timeout (AWS recommends six times it).

Not emulated: the ramp-up of pollers (AWS starts with five concurrent batches and adds up to
300 per minute while messages remain; here all ``maximum_concurrency`` pollers poll from
``start()``), scaling down or backing off after errors and throttles, account concurrency and
reserved concurrency, the 6 MB invocation payload limit, filter criteria, FIFO-specific
ordering (moto's FIFO handling applies as is), tumbling windows, ESM metrics and CloudWatch
logs. The handler runs in threads of this process: concurrent "execution environments" share
module globals, which separate Lambda environments do not.

How it polls, and why: moto's ``ReceiveMessage`` and ``DeleteMessage*`` are not thread-safe
(two receives at once can hand one message to both, or fail with HTTP 500 "Set changed size
during iteration"), so one mapping never has two SQS calls in flight: its receives and deletes
take turns on a lock. Its long polling (AWS's ESM long-polls for 20 s) is therefore emulated
with short polls, which hold that lock for milliseconds: when the queue is empty, a single
idle poller, the scout, polls, backing off from 50 ms to ``wait_time_seconds`` between polls;
the other idle pollers poll again as soon as any poller finds messages. So an idle mapping
costs a few requests a second whatever its concurrency, and picks new messages up within
``wait_time_seconds``. Producers (``SendMessage*``) in other threads are not serialized with
it: moto's delete rebuilds the queue's list of messages, and a message sent in that instant
could in principle be lost (never seen in this project's tests).
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self

from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageAttributeValueOutputTypeDef, MessageTypeDef

__all__ = [
    "EventSourceMapping",
    "KillInvocation",
    "PollerStats",
    "SqsHandler",
    "SqsLambdaContext",
]

logger = logging.getLogger(__name__)

SqsHandler = Callable[[dict[str, Any], Any], Any]

_RECEIVE_MAX: Final = 10  # ReceiveMessage's and DeleteMessageBatch's limit
_SYSTEM_ATTRIBUTES: Final = (  # what Lambda puts in a record's "attributes", in its order
    "ApproximateReceiveCount",
    "SentTimestamp",
    "SenderId",
    "ApproximateFirstReceiveTimestamp",
    "SequenceNumber",
    "MessageGroupId",
    "MessageDeduplicationId",
    "AWSTraceHeader",
    "DeadLetterQueueSourceArn",
)
_SHORT_WAIT: Final = 0.05  # seconds between short polls and checks
_ERROR_BACKOFF: Final = 0.5  # seconds a poller waits after a failed SQS call


class KillInvocation(BaseException):
    """Raise in a handler to abandon its batch as if the execution environment died."""


@dataclass
class PollerStats:
    """What an ``EventSourceMapping`` did; ``EventSourceMapping.stats`` returns a copy."""

    memory_mb: int = 256
    invocations: int = 0
    messages_received: int = 0
    messages_deleted: int = 0
    batch_item_failures: int = 0  # messages named in valid batchItemFailures responses
    whole_batch_failures: int = 0  # function errors + timeouts + invalid responses
    function_errors: int = 0  # the handler raised, or returned something not serializable
    timeouts: int = 0
    invalid_responses: int = 0
    killed: int = 0  # KillInvocation: not in whole_batch_failures
    peak_concurrency: int = 0
    busy_seconds: float = 0.0  # sum of durations (a timed-out one counts its full timeout)
    durations: list[float] = field(default_factory=list)
    batch_sizes: list[int] = field(default_factory=list)

    @property
    def gb_seconds(self) -> float:
        """Billed compute, roughly: ``busy_seconds`` x memory in GB."""
        return self.busy_seconds * self.memory_mb / 1024


class SqsLambdaContext:
    """The parts of Lambda's Python context object handlers use."""

    def __init__(
        self,
        *,
        function_name: str,
        invoked_function_arn: str,
        memory_mb: int,
        timeout_seconds: float,
        clock: Callable[[], float],
    ) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = invoked_function_arn
        # A string, as in Lambda's Python runtime (it comes from the environment).
        self.memory_limit_in_mb = str(memory_mb)
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self.identity: Any = None
        self.client_context: Any = None
        self._clock = clock
        self._deadline = clock() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - self._clock()) * 1000))


@dataclass
class _PollerState:
    idle: bool = False  # its last poll found nothing, and no poller has found any since
    pause: float = _SHORT_WAIT  # before its next poll as the scout
    generation: int = 0  # of the notices, when it last polled


class _Invocation:
    """One handler call in its own thread: the poller may abandon it at the timeout."""

    def __init__(self, handler: SqsHandler, event: dict[str, Any], context: Any) -> None:
        self.done = threading.Event()
        self.killed = False
        self.error: BaseException | None = None
        self.response: Any = None
        self._handler = handler
        self._event = event
        self._context = context

    def __call__(self) -> None:
        try:
            result = self._handler(self._event, self._context)
            # What Lambda hands back is the JSON of the result (Runtime.MarshalError if none).
            self.response = json.loads(json.dumps(result))
        except KillInvocation:
            self.killed = True
        except BaseException as exc:
            self.error = exc
        finally:
            self.done.set()


class EventSourceMapping:
    """Lambda's SQS event source mapping for ``handler(event, context)`` on ``queue_url``.

    ``start()`` it (or use it as a context manager), ``drain()`` until the queue is empty,
    ``stop()``; ``stats`` says what happened.

    ``batch_size``, ``maximum_batching_window_seconds``, ``maximum_concurrency`` and
    ``report_batch_item_failures`` are the ESM's settings; ``function_timeout_seconds``,
    ``function_name`` and ``memory_mb`` the function's (the context shows them; ``memory_mb``
    also weighs ``stats.gb_seconds``). ``wait_time_seconds``: the longest an idle mapping
    goes without polling (its long-polling granularity). ``clock`` (monotonic seconds)
    measures every duration and deadline; waits are real time. ``sqs``: a client such as
    ``local_aws.sqs_client(endpoint_url)`` makes, whose pool has room for the pollers.
    """

    def __init__(
        self,
        sqs: SQSClient,
        queue_url: str,
        handler: SqsHandler,
        *,
        batch_size: int = 10,
        maximum_batching_window_seconds: float = 0.0,
        maximum_concurrency: int = 2,
        function_timeout_seconds: float = 60.0,
        report_batch_item_failures: bool = True,
        wait_time_seconds: float = 1,
        function_name: str = "worker",
        memory_mb: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        _check_range("batch_size", batch_size, 1, 10_000)
        _check_range("maximum_batching_window_seconds", maximum_batching_window_seconds, 0, 300)
        if batch_size > _RECEIVE_MAX and maximum_batching_window_seconds < 1:
            raise ValueError(
                "batch_size > 10 needs maximum_batching_window_seconds >= 1 (as in AWS)"
            )
        _check_range("maximum_concurrency", maximum_concurrency, 2, 1000)
        if not 0 < function_timeout_seconds <= 900:
            raise ValueError("function_timeout_seconds must be in (0, 900]")
        if not 0 < wait_time_seconds <= 20:
            raise ValueError("wait_time_seconds must be in (0, 20]")
        _check_range("memory_mb", memory_mb, 128, 10_240)
        self._sqs = sqs
        self._queue_url = queue_url
        self._handler = handler
        self.batch_size = batch_size
        self.maximum_batching_window_seconds = maximum_batching_window_seconds
        self.maximum_concurrency = maximum_concurrency
        self.function_timeout_seconds = function_timeout_seconds
        self.report_batch_item_failures = report_batch_item_failures
        self.wait_time_seconds = wait_time_seconds
        self.function_name = function_name
        self.memory_mb = memory_mb
        self._clock = clock

        self._region = sqs.meta.region_name
        self._queue_arn: str | None = None
        self._function_arn = ""
        self._stopping = threading.Event()
        self._sqs_lock = threading.Lock()  # moto's receive and delete are not thread-safe
        self._scout = threading.Lock()  # held by the one idle poller that polls
        self._notice = threading.Condition()  # a poller found messages: the others poll too
        self._generation = 0
        self._lock = threading.Lock()  # guards _stats, _active, _in_flight_messages
        self._stats = PollerStats(memory_mb=memory_mb)
        self._active = 0
        self._in_flight_messages = 0
        self._threads: list[threading.Thread] = []
        self._started = False

    # --- lifecycle --------------------------------------------------------------------------

    @property
    def queue_url(self) -> str:
        return self._queue_url

    @property
    def queue_arn(self) -> str:
        if self._queue_arn is None:
            raise RuntimeError("the mapping is not started")
        return self._queue_arn

    @property
    def running(self) -> bool:
        return self._started and not self._stopping.is_set()

    @property
    def stats(self) -> PollerStats:
        """A snapshot of the counters."""
        with self._lock:
            return replace(
                self._stats,
                durations=list(self._stats.durations),
                batch_sizes=list(self._stats.batch_sizes),
            )

    def start(self) -> Self:
        """Check the queue as CreateEventSourceMapping would, and start the pollers."""
        if self._started:
            raise RuntimeError("an EventSourceMapping starts once")
        attributes = self._sqs.get_queue_attributes(
            QueueUrl=self._queue_url, AttributeNames=["QueueArn", "VisibilityTimeout"]
        )["Attributes"]
        visibility_timeout = int(attributes["VisibilityTimeout"])
        if visibility_timeout < self.function_timeout_seconds:
            raise ValueError(
                f"Queue visibility timeout: {visibility_timeout} seconds is less than "
                f"Function timeout: {self.function_timeout_seconds:g} seconds"
            )
        self._queue_arn = attributes["QueueArn"]
        account = self._queue_arn.split(":")[4]
        self._function_arn = (
            f"arn:aws:lambda:{self._region}:{account}:function:{self.function_name}"
        )
        self._started = True
        for index in range(self.maximum_concurrency):
            thread = threading.Thread(
                target=self._poll_forever,
                name=f"esm-{self.function_name}-poller-{index}",
                daemon=True,
            )
            self._threads.append(thread)
            thread.start()
        return self

    def stop(self, timeout: float = 30) -> None:
        """Stop polling and wait (up to ``timeout`` s in all) for in-flight invocations.

        A batch being gathered is invoked at once. Safe to call twice, or before ``start()``.
        """
        if not self._started:
            return
        self._stopping.set()
        self._notify_pollers()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        alive = [thread.name for thread in self._threads if thread.is_alive()]
        if alive:
            logger.warning("pollers still running after %.0f s: %s", timeout, ", ".join(alive))

    def drain(self, timeout: float = 300, idle_seconds: float = 2.0) -> bool:
        """Wait until the queue is empty and nothing is in flight, for ``idle_seconds`` on end.

        Empty: ``ApproximateNumberOfMessages``, ``...NotVisible`` and ``...Delayed`` all 0
        (delayed messages are work still to come). False if ``timeout`` s pass first.
        """
        deadline = self._clock() + timeout
        idle_since: float | None = None
        while True:
            now = self._clock()
            if self._idle():
                if idle_since is None:
                    idle_since = now
                if now - idle_since >= idle_seconds:
                    return True
            else:
                idle_since = None
            if now >= deadline:
                return False
            time.sleep(min(0.2, max(0.0, deadline - now)))

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped" if self._started else "new"
        return f"EventSourceMapping({self.function_name!r}, {self._queue_url!r}, {state})"

    def _idle(self) -> bool:
        with self._lock:
            if self._in_flight_messages or self._active:
                return False
        try:
            attributes = self._sqs.get_queue_attributes(
                QueueUrl=self._queue_url,
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                    "ApproximateNumberOfMessagesDelayed",
                ],
            )["Attributes"]
        except (BotoCoreError, ClientError) as exc:
            logger.warning("GetQueueAttributes failed: %s", exc)
            return False
        return sum(int(value) for value in attributes.values()) == 0

    # --- polling ----------------------------------------------------------------------------

    def _poll_forever(self) -> None:
        poller = _PollerState()
        while not self._stopping.is_set():
            try:
                batch = self._gather(poller)
                if not batch:
                    continue
                try:
                    self._invoke(batch)
                finally:
                    with self._lock:
                        self._in_flight_messages -= len(batch)
            except Exception:
                logger.exception("poller of %s failed; polling on", self.function_name)
                self._stopping.wait(_ERROR_BACKOFF)

    def _gather(self, poller: _PollerState) -> list[MessageTypeDef]:
        """One batch: up to ``batch_size`` messages, within the batching window."""
        batch = self._await_messages(poller, min(_RECEIVE_MAX, self.batch_size))
        if not batch:
            return []
        self._received(batch)
        window_end = self._clock() + self.maximum_batching_window_seconds
        while len(batch) < self.batch_size and not self._stopping.is_set():
            remaining = window_end - self._clock()
            if remaining <= 0:
                break
            messages = self._receive_now(min(_RECEIVE_MAX, self.batch_size - len(batch)))
            if messages:
                self._received(messages)
                batch.extend(messages)
            else:
                self._stopping.wait(min(_SHORT_WAIT, remaining))
        return batch

    def _received(self, messages: list[MessageTypeDef]) -> None:
        with self._lock:
            self._in_flight_messages += len(messages)
            self._stats.messages_received += len(messages)

    def _await_messages(self, poller: _PollerState, count: int) -> list[MessageTypeDef]:
        """Long polling, emulated with short polls (see the module docstring).

        One idle poller at a time (the scout) polls, backing off from 50 ms to
        ``wait_time_seconds``; the others wait until a poller finds messages, then poll too.
        """
        while not self._stopping.is_set():
            if not poller.idle:
                with self._notice:
                    poller.generation = self._generation
                messages = self._receive_now(count)
                if messages:
                    poller.pause = _SHORT_WAIT
                    self._notify_pollers()  # there may be more
                    return messages
                poller.idle = True
            if self._scout.acquire(blocking=False):
                try:
                    self._stopping.wait(poller.pause)
                finally:
                    self._scout.release()
                poller.pause = min(poller.pause * 2, self.wait_time_seconds)
                poller.idle = False
            else:
                with self._notice:
                    poller.idle = not self._notice.wait_for(
                        lambda: self._generation != poller.generation or self._stopping.is_set(),
                        timeout=self.wait_time_seconds,
                    )
        return []

    def _notify_pollers(self) -> None:
        with self._notice:
            self._generation += 1
            self._notice.notify_all()

    def _receive_now(self, count: int) -> list[MessageTypeDef]:
        """One short-polling ReceiveMessage, never beside another call of this mapping."""
        try:
            with self._sqs_lock:
                response = self._sqs.receive_message(
                    QueueUrl=self._queue_url,
                    MaxNumberOfMessages=count,
                    WaitTimeSeconds=0,
                    MessageSystemAttributeNames=["All"],
                    MessageAttributeNames=["All"],
                )
        except (BotoCoreError, ClientError) as exc:
            logger.warning("ReceiveMessage failed: %s", exc)
            self._stopping.wait(_ERROR_BACKOFF)
            return []
        return list(response.get("Messages", []))

    # --- invoking ---------------------------------------------------------------------------

    def _invoke(self, batch: list[MessageTypeDef]) -> None:
        event = {"Records": [self._record(message) for message in batch]}
        context = SqsLambdaContext(
            function_name=self.function_name,
            invoked_function_arn=self._function_arn,
            memory_mb=self.memory_mb,
            timeout_seconds=self.function_timeout_seconds,
            clock=self._clock,
        )
        invocation = _Invocation(self._handler, event, context)
        with self._lock:
            self._active += 1
            self._stats.peak_concurrency = max(self._stats.peak_concurrency, self._active)
            self._stats.invocations += 1
            self._stats.batch_sizes.append(len(batch))
        started = self._clock()
        deadline = started + self.function_timeout_seconds
        threading.Thread(
            target=invocation, name=f"esm-{self.function_name}-invoke", daemon=True
        ).start()
        while not invocation.done.is_set():
            remaining = deadline - self._clock()
            if remaining <= 0:
                break
            invocation.done.wait(min(remaining, 0.25))
        timed_out = not invocation.done.is_set()
        duration = self.function_timeout_seconds if timed_out else self._clock() - started
        with self._lock:
            self._active -= 1
            self._stats.durations.append(duration)
            self._stats.busy_seconds += duration
        to_delete = self._outcome(invocation, batch, timed_out=timed_out)
        if to_delete:
            self._delete(to_delete)

    def _outcome(
        self, invocation: _Invocation, batch: list[MessageTypeDef], *, timed_out: bool
    ) -> list[MessageTypeDef]:
        """The messages to delete, counting what happened."""
        if timed_out:
            logger.warning(
                "%s: Task timed out after %.2f seconds",
                self.function_name,
                self.function_timeout_seconds,
            )
            self._count(timeouts=1, whole_batch_failures=1)
            return []
        if invocation.killed:
            self._count(killed=1)
            return []
        if invocation.error is not None:
            error = invocation.error
            logger.warning("%s failed: %s: %s", self.function_name, type(error).__name__, error)
            self._count(function_errors=1, whole_batch_failures=1)
            return []
        if not self.report_batch_item_failures:
            return batch
        failed = _failed_ids(invocation.response, {message["MessageId"] for message in batch})
        if failed is None:
            logger.warning(
                "%s: invalid ReportBatchItemFailures response, the whole batch failed: %.200r",
                self.function_name,
                invocation.response,
            )
            self._count(invalid_responses=1, whole_batch_failures=1)
            return []
        self._count(batch_item_failures=len(failed))
        return [message for message in batch if message["MessageId"] not in failed]

    def _count(self, **increments: int) -> None:
        with self._lock:
            for name, value in increments.items():
                setattr(self._stats, name, getattr(self._stats, name) + value)

    def _delete(self, messages: Sequence[MessageTypeDef]) -> None:
        for start in range(0, len(messages), _RECEIVE_MAX):
            chunk = messages[start : start + _RECEIVE_MAX]
            try:
                with self._sqs_lock:
                    response = self._sqs.delete_message_batch(
                        QueueUrl=self._queue_url,
                        Entries=[
                            {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"]}
                            for index, message in enumerate(chunk)
                        ],
                    )
            except (BotoCoreError, ClientError) as exc:
                logger.warning("DeleteMessageBatch failed: %s", exc)
                continue
            for failure in response.get("Failed", []):
                logger.warning("could not delete a message: %s", failure.get("Message"))
            with self._lock:
                self._stats.messages_deleted += len(response.get("Successful", []))

    def _record(self, message: MessageTypeDef) -> dict[str, Any]:
        """One record of Lambda's SQS event."""
        attributes = {str(name): value for name, value in message.get("Attributes", {}).items()}
        record: dict[str, Any] = {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": {
                name: attributes[name] for name in _SYSTEM_ATTRIBUTES if name in attributes
            },
            "messageAttributes": {
                name: _lambda_message_attribute(value)
                for name, value in message.get("MessageAttributes", {}).items()
            },
        }
        if "MD5OfMessageAttributes" in message:
            record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
        record["md5OfBody"] = message["MD5OfBody"]
        record["eventSource"] = "aws:sqs"
        record["eventSourceARN"] = self._queue_arn
        record["awsRegion"] = self._region
        return record


def _failed_ids(response: Any, batch_ids: set[str]) -> set[str] | None:
    """The message ids a ReportBatchItemFailures response names; None if it is invalid."""
    if response is None:
        return set()
    if not isinstance(response, dict):
        return None
    failures = response.get("batchItemFailures")
    if failures is None:
        return set()
    if not isinstance(failures, list):
        return None
    failed: set[str] = set()
    for item in failures:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not isinstance(identifier, str) or identifier not in batch_ids:
            return None
        failed.add(identifier)
    return failed


def _lambda_message_attribute(value: MessageAttributeValueOutputTypeDef) -> dict[str, Any]:
    """An SQS message attribute as Lambda's event spells it (binary values base64)."""
    attribute: dict[str, Any] = {}
    if "StringValue" in value:
        attribute["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        attribute["binaryValue"] = _b64(value["BinaryValue"])
    attribute["stringListValues"] = list(value.get("StringListValues", []))
    attribute["binaryListValues"] = [_b64(item) for item in value.get("BinaryListValues", [])]
    attribute["dataType"] = value["DataType"]
    return attribute


def _b64(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode("ascii")


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {value}")
