"""The worker's side of the fan-out: one SQS batch of planned apps, each through the same
refresh as every other path, reported item by item (Powertools' batch utility and
``ReportBatchItemFailures``), so that one slow or failing app never holds back the rest.

A message comes back (SQS redelivers it after the visibility timeout, then the
dead-letter queue takes it) only when its work could not be done at all: the invocation's
time ran out before it started, DynamoDB failed, the registry secret holding it could not
be read, or a bug. A WeChat failure is not one of them: it is recorded on the credential,
whose due-index entry brings it back with the next plan.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType

from .errors import ErrorClass, RefresherError
from .outcome import Outcome, Status
from .work_queue import parse_body

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

    from .deadline import Deadline
    from .registry import Registry
    from .service import RefreshService

# Failures that say "try this message again" rather than "recorded on the credential".
REDELIVER_CLASSES = frozenset({ErrorClass.INTERNAL, ErrorClass.STORE, ErrorClass.REGISTRY})


class RedeliverError(RefresherError):
    """The message's work was not done; SQS delivers it again."""


def needs_redelivery(outcome: Outcome) -> bool:
    return outcome.status is Status.DEADLINE or (
        outcome.status is Status.FAILED and outcome.error_class in REDELIVER_CLASSES
    )


class ThreadedBatchProcessor(BatchProcessor):
    """Powertools' SQS ``BatchProcessor``, with the batch's records processed on threads:
    each record's success or failure is still reported on its own."""

    def __init__(self, threads: int) -> None:
        super().__init__(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
        self._threads = max(1, threads)

    def process(self) -> list[tuple[Any, ...]]:
        if len(self.records) <= 1:
            return super().process()
        workers = min(self._threads, len(self.records))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="worker") as pool:
            return list(pool.map(self._process_record, self.records))


class BatchWorker:
    """One invocation's batch: the registry as read once, the outcomes collected."""

    def __init__(self, service: RefreshService, registry: Registry, deadline: Deadline) -> None:
        self._service = service
        self._registry = registry
        self._deadline = deadline
        self._lock = threading.Lock()
        self.outcomes: list[Outcome] = []

    def record(self, record: SQSRecord) -> None:
        """Powertools' record handler: raises when the message must come back."""
        app_id = parse_body(record.body)
        outcomes = self._service.work_one(app_id, self._registry, self._deadline)
        with self._lock:
            self.outcomes.extend(outcomes)
        again = [o for o in outcomes if needs_redelivery(o)]
        if again:
            first = again[0]
            raise RedeliverError(
                f"{first.key}: {first.error_code or first.status} (to be delivered again)"
            )
