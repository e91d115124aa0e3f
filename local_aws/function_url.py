"""A local stand-in for a Lambda Function URL: real HTTP on 127.0.0.1, a handler of this process.

WeChat (here: the simulator, ``simulator.platform.PlatformSimulator.deliver_due_pushes``)
POSTs its pushes to a platform's callback URL; :class:`FunctionUrlServer` turns each HTTP
request into the event a Function URL hands its function (payload format 2.0) and the
handler's result back into the HTTP answer, as Lambda does:

- the event: ``version`` "2.0", ``routeKey`` "$default", ``rawPath``, ``rawQueryString``,
  ``queryStringParameters`` (repeated names joined by commas), lower-case ``headers``,
  ``cookies``, ``requestContext.http`` (method, path, protocol, sourceIp, userAgent),
  ``body`` (Base64 with ``isBase64Encoded`` unless the content type is text, JSON, XML
  or a form);
- the answer: a result with ``statusCode`` gives that status, ``headers``, ``cookies``
  and ``body`` (decoded when ``isBase64Encoded``); any other result is answered 200 as
  JSON; a handler that raises is answered 502, as a function error is;
- ``max_concurrency`` plays reserved concurrency: requests beyond it are answered 429
  without calling the handler; bodies over 6 MB (Lambda's limit) are answered 413.

It listens on 127.0.0.1 only, on a free port, and checks nothing (AuthType NONE). Every
answered request is recorded (``requests``) by method, path and status: never the body.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Final, Self, cast
from urllib.parse import parse_qsl, urlsplit

from local_aws.lambda_invoke import LambdaContext

__all__ = ["FunctionUrlRequest", "FunctionUrlServer", "to_function_url_event"]

Handler = Callable[[dict[str, Any], LambdaContext], Any]

_MAX_BODY: Final = 6 * 1024 * 1024  # Lambda's synchronous payload limit
_TEXT_SUBTYPES: Final = ("json", "xml", "javascript", "x-www-form-urlencoded")


@dataclass(frozen=True)
class FunctionUrlRequest:
    """One request the server answered (no body, no query: they may hold secrets)."""

    method: str
    path: str
    status: int
    duration_ms: float


def _is_text(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    if media.startswith("text/"):
        return True
    subtype = media.rsplit("/", 1)[-1]
    return any(subtype == t or subtype.endswith("+" + t) for t in _TEXT_SUBTYPES)


def to_function_url_event(
    method: str,
    target: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    source_ip: str = "127.0.0.1",
    domain_name: str = "localhost",
) -> dict[str, Any]:
    """The Function URL event (payload 2.0) for one HTTP request."""
    parts = urlsplit(target)
    lowered: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        lowered[key] = f"{lowered[key]},{value}" if key in lowered else value
    now = time.time()
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": parts.path or "/",
        "rawQueryString": parts.query,
        "headers": lowered,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "local",
            "domainName": domain_name,
            "domainPrefix": domain_name.split(".", 1)[0],
            "http": {
                "method": method.upper(),
                "path": parts.path or "/",
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": lowered.get("user-agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": False,
    }
    if parts.query:
        joined: dict[str, str] = {}
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            joined[key] = f"{joined[key]},{value}" if key in joined else value
        event["queryStringParameters"] = joined
    if "cookie" in lowered:
        event["cookies"] = [c.strip() for c in lowered["cookie"].split(";") if c.strip()]
    if body:
        text: str | None = None
        if _is_text(lowered.get("content-type", "")):
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                text = None
        if text is None:
            event["body"] = base64.b64encode(body).decode("ascii")
            event["isBase64Encoded"] = True
        else:
            event["body"] = text
    return event


def _from_result(result: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """(status, headers, body) a Function URL answers for a handler's result."""
    if not (isinstance(result, dict) and "statusCode" in result):
        body = json.dumps(result).encode()
        return 200, [("Content-Type", "application/json")], body
    status = int(result["statusCode"])
    headers = [(str(k), str(v)) for k, v in (result.get("headers") or {}).items()]
    headers += [("Set-Cookie", str(c)) for c in result.get("cookies") or []]
    raw = result.get("body")
    if raw is None:
        data = b""
    elif result.get("isBase64Encoded") is True:
        data = base64.b64decode(str(raw))
    else:
        data = (raw if isinstance(raw, str) else json.dumps(raw)).encode("utf-8")
    if not any(k.lower() == "content-type" for k, _ in headers):
        headers.append(("Content-Type", "application/json"))
    return status, headers, data


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self, owner: FunctionUrlServer) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _RequestHandler)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "local-function-url"
    sys_version = ""
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: the request line holds the query (the push's signature)."""

    def _serve(self) -> None:
        owner = cast(_Server, self.server).owner
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= _MAX_BODY:
            self.close_connection = True
            self._send(413, [("Content-Type", "application/json")], b'{"Message":null}')
            return
        body = self.rfile.read(length) if length else b""
        headers = dict(self.headers.items())
        status, answer_headers, data = owner.answer(
            self.command, self.path, headers, body, self.client_address[0]
        )
        self._send(status, answer_headers, data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _serve

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for key, value in headers:
            if key.lower() not in ("content-length", "connection", "date"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Date", formatdate(usegmt=True))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        self.end_headers()
        self.wfile.write(body)


class FunctionUrlServer:
    """A Function URL on 127.0.0.1 for ``handler(event, context)``; ``url`` is its address.

    Use as a context manager, or ``start()`` / ``stop()``. ``timeout_seconds`` is what the
    handler's ``context.get_remaining_time_in_millis()`` counts down from; an answer that
    took longer is replaced by a 502, as Lambda's timeout would be. ``max_concurrency``
    (None: no limit) answers 429 to requests beyond it, as reserved concurrency does.
    """

    def __init__(
        self,
        handler: Handler,
        *,
        function_name: str = "function",
        timeout_seconds: float = 30.0,
        max_concurrency: int | None = None,
    ) -> None:
        if max_concurrency is not None and max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1 (or None)")
        self._handler = handler
        self._function_name = function_name
        self._timeout = timeout_seconds
        self._slots = threading.BoundedSemaphore(max_concurrency) if max_concurrency else None
        self._lock = threading.Lock()
        self._requests: list[FunctionUrlRequest] = []
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The function URL (with its trailing slash, as Lambda gives it)."""
        if self._httpd is None:
            raise RuntimeError("the Function URL stand-in is not running: call start() first")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/"

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the Function URL stand-in is not running: call start() first")
        return int(self._httpd.server_address[1])

    @property
    def requests(self) -> list[FunctionUrlRequest]:
        """A copy of every request answered so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def start(self) -> Self:
        if self._httpd is not None:
            raise RuntimeError("the Function URL stand-in is already running")
        self._httpd = _Server(self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="local-function-url",
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
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: bytes,
        source_ip: str = "127.0.0.1",
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """(status, headers, body) the Function URL answers to one request."""
        started = time.perf_counter()
        path = urlsplit(target).path or "/"
        if self._slots is not None and not self._slots.acquire(blocking=False):
            answer = 429, [("Content-Type", "application/json")], b'{"Message":"Rate Exceeded."}'
        else:
            try:
                answer = self._invoke(method, target, headers, body, source_ip)
            finally:
                if self._slots is not None:
                    self._slots.release()
        elapsed = (time.perf_counter() - started) * 1000
        with self._lock:
            self._requests.append(FunctionUrlRequest(method, path, answer[0], round(elapsed, 2)))
        return answer

    def _invoke(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes, source_ip: str
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        host = headers.get("Host") or headers.get("host") or "localhost"
        event = to_function_url_event(
            method, target, headers, body, source_ip=source_ip, domain_name=host.split(":")[0]
        )
        error = (502, [("Content-Type", "application/json")], b'{"Message":null}')
        started = time.monotonic()
        try:
            result = self._handler(event, LambdaContext(self._function_name, self._timeout))
            answer = _from_result(result)
        except Exception:
            return error
        if time.monotonic() - started > self._timeout:
            return error
        return answer
