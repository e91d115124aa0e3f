"""Where the planner sends work: one message per app, ``{"app_id": "..."}`` and nothing
else (never a secret: the worker looks the app up in the registry itself).

``SqsWorkQueue`` (the deployment's WorkQueue) sends them with ``SendMessageBatch``, ten per
request, on a few threads; entries SQS refuses are sent once more, then reported.
``InlineWorkQueue`` hands them straight to the worker in the same process: the same plan
and the same worker code, for a deployment without a queue (tests, one-process runs).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from .errors import RefresherError
from .outcome import Outcome

logger = logging.getLogger("wechat_token.refresher")

SQS_BATCH = 10


class WorkQueueError(RefresherError):
    """Some of the planned apps could not be sent to the work queue."""


def message_body(app_id: str) -> str:
    return json.dumps({"app_id": app_id}, separators=(",", ":"))


def parse_body(body: str) -> str:
    """The app_id of a work message; ``ValueError`` with a readable reason otherwise."""
    try:
        data = json.loads(body)
    except (TypeError, ValueError):
        raise ValueError("a work message's body is not JSON") from None
    app_id = data.get("app_id") if isinstance(data, dict) else None
    if not isinstance(app_id, str) or not app_id or len(app_id) > 300:
        raise ValueError('a work message must be {"app_id": "<registry key>"}')
    return app_id


class WorkQueue(Protocol):
    def send(self, app_ids: Sequence[str]) -> list[Outcome]:
        """Send the apps' work; outcomes when it was done in-process (else none)."""
        ...


class InlineWorkQueue:
    def __init__(self, worker: Callable[[Sequence[str]], list[Outcome]]) -> None:
        self._worker = worker

    def send(self, app_ids: Sequence[str]) -> list[Outcome]:
        return self._worker(app_ids)


class SqsWorkQueue:
    def __init__(self, sqs: Any, queue_url: str, *, threads: int = 8) -> None:
        self._sqs = sqs
        self._url = queue_url
        self._threads = threads
        self.sent = 0

    def send(self, app_ids: Sequence[str]) -> list[Outcome]:
        batches = [list(app_ids[i : i + SQS_BATCH]) for i in range(0, len(app_ids), SQS_BATCH)]
        workers = max(1, min(self._threads, len(batches)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="send") as pool:
            refused = [app for batch in pool.map(self._send_batch, batches) for app in batch]
        if refused:
            raise WorkQueueError(
                f"{len(refused)} of {len(app_ids)} planned app(s) could not be sent to the work "
                f"queue (first: {refused[0]!r}); they are planned again by the next run's "
                "straggler or sweep pass. Check the refresher's sqs:SendMessage on WORK_QUEUE_URL."
            )
        self.sent += len(app_ids)
        return []

    def _send_batch(self, batch: list[str]) -> list[str]:
        left = batch
        for _ in range(2):
            entries = [
                {"Id": str(number), "MessageBody": message_body(app_id)}
                for number, app_id in enumerate(left)
            ]
            try:
                response = self._sqs.send_message_batch(QueueUrl=self._url, Entries=entries)
            except Exception as exc:  # botocore's own retries are spent
                code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
                logger.warning("SendMessageBatch to the work queue failed (%s)", code)
                continue
            failed = {int(entry["Id"]) for entry in response.get("Failed", [])}
            left = [app_id for number, app_id in enumerate(left) if number in failed]
            if not left:
                return []
        return left
