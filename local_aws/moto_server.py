"""moto's server in a thread on 127.0.0.1: a pure-Python DynamoDB + Secrets Manager stand-in.

moto keeps its state in process-wide globals: every MotoServer (and any ``mock_aws``) in one
process shares it, and ``reset()`` clears all of it. Start at most one per process.
"""

from __future__ import annotations

import http.client
import logging
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    from moto.server import ThreadedMotoServer


class MotoServerError(RuntimeError):
    """The moto server did not start or did not answer."""


def fast_sqs_clock() -> None:
    """Make moto's SQS fast enough for a fan-out of thousands of messages, same semantics.

    moto asks every message of a queue whether it is visible or delayed on each call, each
    time computing epoch milliseconds through datetime arithmetic, and deletes a message
    with two full passes over the queue that build a list of receipt handles per message:
    with ten thousand messages queued that is most of a fan-out run. Here the visibility
    check takes the time once per call (from ``time.time()``, the same epoch milliseconds),
    and a delete stops at the message it finds.
    """
    import moto.sqs.models as sqs  # noqa: PLC0415 - moto is slow to import
    from moto.sqs.exceptions import ReceiptHandleIsInvalid  # noqa: PLC0415

    if getattr(sqs, "_wechat_token_fast", False):
        return

    def messages(queue: Any) -> list[Any]:
        now = time.time() * 1000.0
        return [m for m in queue._messages if now > m.visible_at and now >= m.delayed_until]

    def delete_message(queue: Any, receipt_handle: str) -> None:
        if receipt_handle in queue.deleted_messages:
            return  # already deleted: SQS accepts it again
        for index, message in enumerate(queue._messages):
            if message.receipt_handle == receipt_handle or (
                receipt_handle in message._old_receipt_handles
            ):
                queue.pending_messages.discard(message)
                queue.deleted_messages.update(message.all_receipt_handles)
                del queue._messages[index]
                return
        raise ReceiptHandleIsInvalid()

    sqs.unix_time_millis = lambda dt=None: (  # type: ignore[attr-defined]
        time.time() * 1000.0 if dt is None else _unix_time_millis(dt)
    )
    sqs.Queue.messages = property(messages)  # type: ignore[method-assign,assignment]
    sqs.Queue.delete_message = delete_message  # type: ignore[method-assign,assignment]
    sqs._wechat_token_fast = True  # type: ignore[attr-defined]


def _unix_time_millis(dt: Any) -> float:
    from moto.core.utils import unix_time_millis  # noqa: PLC0415

    return float(unix_time_millis(dt))


class MotoServer:
    """``ThreadedMotoServer`` on 127.0.0.1 and an OS-chosen free port, as a context manager."""

    def __init__(
        self, *, reset: bool = True, quiet: bool = True, start_timeout: float = 30.0
    ) -> None:
        """``reset``: start from empty moto state. ``quiet``: no per-request log lines
        (sets the ``werkzeug`` logger to WARNING unless its level was already set)."""
        self._reset_on_start = reset
        self._quiet = quiet
        self._start_timeout = start_timeout
        self._server: ThreadedMotoServer | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise MotoServerError("the moto server is not running: call start() first")
        return self._port

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> Self:
        if self._server is not None:
            raise MotoServerError("the moto server is already running")
        from moto.server import ThreadedMotoServer  # noqa: PLC0415 - moto is slow to import

        fast_sqs_clock()
        werkzeug_logger = logging.getLogger("werkzeug")
        if self._quiet and werkzeug_logger.level == logging.NOTSET:
            werkzeug_logger.setLevel(logging.WARNING)

        # Port 0: the OS binds a free port atomically, so there is no race for it.
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        # ThreadedMotoServer.start() waits forever if its thread fails to bind; bound the wait.
        starter = threading.Thread(target=server.start, name="moto-server-start", daemon=True)
        starter.start()
        starter.join(self._start_timeout)
        if starter.is_alive():
            raise MotoServerError(
                f"the moto server did not start within {self._start_timeout:.0f} s"
            )
        self._server = server
        self._port = server.get_host_and_port()[1]
        if self._reset_on_start:
            self.reset()
        return self

    def stop(self) -> None:
        """Shut the server down and close its socket; safe to call twice."""
        server, self._server, self._port = self._server, None, None
        if server is not None:
            server.stop()

    def reset(self) -> None:
        """Forget every resource moto holds (in this whole process)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request("POST", "/moto-api/reset")
            response = connection.getresponse()
            response.read()
        finally:
            connection.close()
        if response.status != 200:
            raise MotoServerError(f"moto reset failed: HTTP {response.status}")

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
        return f"MotoServer(port={self._port})" if self.running else "MotoServer(stopped)"
