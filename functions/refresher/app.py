"""The refresher's two entry points: the only code that calls WeChat's token endpoints.

- ``lambda_handler`` (RefresherFunction; the schedule and operators):
  ``{}`` or ``{"types": ["stable"]}``: refresh every matching credential that is due;
  ``{"app_id": "..."}``: that app, if due; ``{"app_id": "...", "force": true}`` (and
  optionally ``"kind"``): refresh it now. A forced refresh without ``app_id`` is refused.
  Raises after trying every credential if any failed, so that alarms fire and the schedule's
  retry runs; the error message is bounded.
- ``passive_handler`` (PassiveRefreshFunction; the only function consumers may invoke):
  ``{"app_id", "kind", "stale_token": "sha256:...", "errcode": 40001}`` and nothing else.
  WeChat is asked about the stored token first; a new one is fetched only if WeChat rejects it.
- ``worker_handler`` (RefreshWorkerFunction; the work queue's event source mapping): a batch
  of ``{"app_id"}`` messages the scheduled run planned; each app is refreshed if due, and
  only messages whose work could not be done are reported back (``batchItemFailures``).
Both return a JSON summary that never holds a token or a secret.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import process_partial_response
from token_refresher.errors import RefreshFailedError
from token_refresher.outcome import RunSummary
from token_refresher.service import RefreshService
from token_refresher.settings import Settings
from token_refresher.telemetry import logger, metrics, publish
from token_refresher.triggers import parse_operator_event, parse_passive_event
from token_refresher.wiring import build_service
from token_refresher.worker import BatchWorker, ThreadedBatchProcessor

_service: RefreshService | None = None


def _get_service() -> RefreshService:
    # Created on first use and reused while the execution environment stays warm.
    global _service  # noqa: PLW0603
    if _service is None:
        _service = build_service(Settings.from_env())
    return _service


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    trigger = parse_operator_event(event)
    service = _get_service()
    summary = service.run(trigger, service.deadline(context))
    publish(summary)
    if summary.failed:
        raise RefreshFailedError(summary.error_message())
    return summary.as_dict()


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
def passive_handler(event: Any, context: Any) -> dict[str, Any]:
    trigger = parse_passive_event(event)
    service = _get_service()
    summary = service.report(trigger, service.deadline(context))
    publish(summary, scheduled=False)
    return summary.as_dict()


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
def worker_handler(event: Any, context: Any) -> dict[str, Any]:
    service = _get_service()
    worker = BatchWorker(service, service.registry.load(), service.deadline(context))
    # A processor per invocation: it holds the batch's state (the local runner may run
    # several invocations in one process at once; Lambda runs one per environment).
    processor = ThreadedBatchProcessor(service.settings.concurrency)
    response = process_partial_response(
        event=event, record_handler=worker.record, processor=processor, context=context
    )
    publish(RunSummary.of(worker.outcomes), scheduled=False)
    return dict(response)
