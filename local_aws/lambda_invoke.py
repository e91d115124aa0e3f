"""A local stand-in for AWS Lambda's Invoke API, answering for handlers of this process.

Consumers in other processes (the Node.js layer's tests, a consumer run by
``scripts/local_invoke.py``) point their Lambda client at ``endpoint_url``
(``AWS_ENDPOINT_URL_LAMBDA``) and invoke a function by name; the server calls the Python
handler registered under that name, in this process, and answers as Lambda does:

- ``POST /2015-03-31/functions/{name}/invocations`` (``name``: the function's name or ARN;
  ``X-Amz-Invocation-Type``: ``RequestResponse``, the default, ``Event`` or ``DryRun``);
- 200 with the handler's JSON result; when the handler raised, 200 with
  ``X-Amz-Function-Error: Unhandled`` and ``{"errorMessage", "errorType", "stackTrace"}``;
- an unknown function: 404 ``ResourceNotFoundException``; a body that is not JSON: 400
  ``InvalidRequestContentException``.

It listens on 127.0.0.1 only, on a free port, and checks no signature (any dummy credentials
do). Every invocation is recorded (``invocations``), so tests can count them.
"""

from __future__ import annotations

import json
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Final, Self, cast
from urllib.parse import unquote, urlsplit

__all__ = ["Invocation", "LambdaContext", "LambdaInvokeServer"]

Handler = Callable[[Any, "LambdaContext"], Any]

_PREFIX: Final = "/2015-03-31/functions/"
_SUFFIX: Final = "/invocations"
_MAX_BODY: Final = 6 * 1024 * 1024  # Lambda's synchronous payload limit
_REGION: Final = "us-east-1"
_ACCOUNT: Final = "123456789012"


@dataclass(frozen=True)
class Invocation:
    """One invocation the server answered: which function, the event, and how it ended."""

    function_name: str
    event: Any
    invocation_type: str
    error: str | None = None


class LambdaContext:
    """The parts of Lambda's Python context object handlers use."""

    def __init__(self, function_name: str, timeout_seconds: float) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:{_REGION}:{_ACCOUNT}:function:{function_name}"
        self.memory_limit_in_mb = "256"
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self, owner: LambdaInvokeServer) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _RequestHandler)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "local-lambda"
    sys_version = ""
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: tests read the recorded invocations instead."""

    def do_POST(self) -> None:
        owner = cast(_Server, self.server).owner
        path = urlsplit(self.path).path
        if not (path.startswith(_PREFIX) and path.endswith(_SUFFIX)):
            self._json(404, {"message": f"No route for {path}"}, error="UnknownOperationException")
            return
        name = _function_name(unquote(path[len(_PREFIX) : -len(_SUFFIX)]))
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= _MAX_BODY:
            self._json(413, {"message": "bad Content-Length"}, error="RequestTooLargeException")
            return
        raw = self.rfile.read(length) if length else b""
        invocation_type = self.headers.get("X-Amz-Invocation-Type") or "RequestResponse"
        status, body, headers = owner.answer(name, raw, invocation_type)
        self._send(status, body, headers)

    def _json(self, status: int, payload: Any, *, error: str) -> None:
        body = json.dumps(payload).encode()
        self._send(status, body, {"x-amzn-ErrorType": error})

    def _send(self, status: int, body: bytes, headers: Mapping[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)


def _function_name(name_or_arn: str) -> str:
    """``name``, ``name:qualifier`` or ``arn:aws:lambda:...:function:name[:qualifier]``."""
    if name_or_arn.startswith("arn:"):
        parts = name_or_arn.split(":")
        return parts[6] if len(parts) > 6 else name_or_arn
    return name_or_arn.split(":", 1)[0]


def _error_reply(status: int, error: str, message: str) -> tuple[int, bytes, dict[str, str]]:
    body = json.dumps({"Type": "User", "message": message}).encode()
    return status, body, {"x-amzn-ErrorType": error}


class LambdaInvokeServer:
    """Lambda's Invoke API on 127.0.0.1 for ``functions`` (name -> ``handler(event, context)``).

    Use as a context manager, or call ``start()`` / ``stop()``. ``timeout_seconds`` is what
    each handler's ``context.get_remaining_time_in_millis()`` counts down from.
    """

    def __init__(self, functions: Mapping[str, Handler], *, timeout_seconds: float = 60.0) -> None:
        self._functions = dict(functions)
        self._timeout = timeout_seconds
        self._lock = threading.Lock()
        self._invocations: list[Invocation] = []
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def endpoint_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the Lambda stand-in is not running: call start() first")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def invocations(self) -> list[Invocation]:
        """A copy of every invocation answered so far, oldest first."""
        with self._lock:
            return list(self._invocations)

    def count(self, function_name: str) -> int:
        return sum(1 for i in self.invocations if i.function_name == function_name)

    def start(self) -> Self:
        if self._httpd is not None:
            raise RuntimeError("the Lambda stand-in is already running")
        self._httpd = _Server(self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="local-lambda-invoke",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket; safe to call twice."""
        httpd, thread = self._httpd, self._thread
        self._httpd = self._thread = None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def answer(
        self, name: str, raw: bytes, invocation_type: str
    ) -> tuple[int, bytes, dict[str, str]]:
        """(status, body, headers) Lambda would answer to this invocation."""
        handler = self._functions.get(name)
        if handler is None:
            return _error_reply(
                404, "ResourceNotFoundException", f"Function not found: arn:aws:lambda:{name}"
            )
        try:
            event = json.loads(raw or b"null")
        except (ValueError, UnicodeDecodeError):
            return _error_reply(
                400, "InvalidRequestContentException", "Could not parse request body into json"
            )
        if invocation_type == "DryRun":
            return 204, b"", {}
        if invocation_type == "Event":
            threading.Thread(
                target=self._run, args=(name, handler, event, invocation_type), daemon=True
            ).start()
            return 202, b"", {}
        return self._run(name, handler, event, invocation_type)

    def _run(
        self, name: str, handler: Handler, event: Any, invocation_type: str
    ) -> tuple[int, bytes, dict[str, str]]:
        error: str | None = None
        try:
            result = handler(event, LambdaContext(name, self._timeout))
            body = json.dumps(result).encode()
            headers: dict[str, str] = {}
        except Exception as exc:
            error = type(exc).__name__
            body = json.dumps(
                {
                    "errorMessage": str(exc),
                    "errorType": error,
                    "stackTrace": traceback.format_tb(exc.__traceback__),
                }
            ).encode()
            headers = {"X-Amz-Function-Error": "Unhandled"}
        with self._lock:
            self._invocations.append(Invocation(name, event, invocation_type, error))
        return 200, body, headers
