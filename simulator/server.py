"""Serve a :class:`WeChatSimulator` over real HTTP on loopback.

Used by the demo, scenario tests that run the refresher in another process,
and benchmarks that want real sockets. The access log is silenced: WeChat's
token URLs carry the app secret in the query string.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, cast
from urllib.parse import parse_qsl, urlsplit

from simulator.wechat import SimResponse, WeChatSimulator

__all__ = ["SimulatorServer"]

_MAX_BODY = 1 << 20


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # Room for a fan-out's burst of connections (the default backlog is 5).
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], sim: WeChatSimulator) -> None:
        self.sim = sim
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The default prints a traceback; say only what failed, never the request.
        exc = sys.exc_info()[1]
        sys.stderr.write(f"simulator: a connection failed: {type(exc).__name__}\n")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "wechat-simulator"
    sys_version = ""
    timeout = 120  # idle keep-alive connections are closed after this
    # Headers and body go out in separate writes; without this, Nagle's
    # algorithm and delayed ACKs add ~40 ms to every keep-alive request.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: request lines hold secrets (``/cgi-bin/token?...&secret=``)."""

    def _serve(self) -> None:
        split = urlsplit(self.path)
        query: dict[str, str] = {}
        for key, value in parse_qsl(split.query, keep_blank_values=True):
            query.setdefault(key, value)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= _MAX_BODY:
            self._send(SimResponse(400, {"Content-Type": "text/plain"}, b"bad Content-Length\n"))
            self.close_connection = True
            return
        body = self.rfile.read(length) if length else b""
        sim = cast(_HTTPServer, self.server).sim
        try:
            answer = sim.handle(self.command, split.path, query, body, self.client_address[0])
        except Exception as exc:
            message = f"simulator error: {type(exc).__name__}\n".encode()
            answer = SimResponse(500, {"Content-Type": "text/plain"}, message)
        self._send(answer)

    def _send(self, answer: SimResponse) -> None:
        try:
            self.send_response(answer.status)
            for key, value in answer.headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)
            self.wfile.flush()
        except OSError:
            # The client gave up (e.g. it timed out during an injected hang).
            self.close_connection = True

    do_GET = _serve
    do_POST = _serve
    do_DELETE = _serve


def _require_loopback(host: str) -> str:
    if host == "localhost":
        return "127.0.0.1"
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"the simulator only listens on loopback, not {host!r}")
    return host


class SimulatorServer:
    """A threaded HTTP server for ``sim`` in a background thread.

    ``port=0`` picks a free port. Use as a context manager, or call
    :meth:`start` and :meth:`stop`. Only loopback addresses are accepted.
    """

    def __init__(self, sim: WeChatSimulator, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sim = sim
        self._host = _require_loopback(host)
        self._port = port
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> SimulatorServer:
        """Bind and serve in a daemon thread; return self."""
        if self._httpd is not None:
            raise RuntimeError("the simulator server is already running")
        httpd = _HTTPServer((self._host, self._port), self.sim)
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"wechat-simulator:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, wake requests hanging in timeout faults, close the socket."""
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        self._httpd = self._thread = None
        self.sim.release_hangs()
        httpd.shutdown()
        httpd.server_close()
        if thread is not None:
            thread.join(timeout=5)

    @property
    def running(self) -> bool:
        """Whether the server is serving."""
        return self._httpd is not None

    @property
    def port(self) -> int:
        """The bound port (the one chosen when started with port 0)."""
        if self._httpd is None:
            return self._port
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT`` of the running server."""
        if self._httpd is None:
            raise RuntimeError("the simulator server is not running")
        host = self._host if ":" not in self._host else f"[{self._host}]"
        return f"http://{host}:{self.port}"

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
