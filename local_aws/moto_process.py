"""moto's server in a process of its own, on 127.0.0.1 and a free port.

A fan-out run puts moto's SQS under real load (every message sent, received and deleted
through it) while the workers run in the test's process: in one process they would share
one interpreter lock, and the queue would measure the lock. ``MotoProcess`` has the same
interface as ``MotoServer`` (``endpoint_url``, ``start``, ``stop``, a context manager); the
child exits when its parent's pipe closes, so it never outlives the test.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from local_aws.moto_server import MotoServerError, fast_sqs_clock

_READY = "moto-process-port "


class MotoProcess:
    def __init__(self, *, start_timeout: float = 60.0) -> None:
        self._start_timeout = start_timeout
        self._process: subprocess.Popen[str] | None = None
        self._port: int | None = None

    @property
    def endpoint_url(self) -> str:
        if self._port is None:
            raise MotoServerError("the moto process is not running: call start() first")
        return f"http://127.0.0.1:{self._port}"

    def start(self) -> Self:
        process = subprocess.Popen(
            [sys.executable, "-m", "local_aws.moto_process"],
            cwd=Path(__file__).resolve().parents[1],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._process = process
        line: list[str] = []
        reader = threading.Thread(
            target=lambda: line.append(_readline(process.stdout)), daemon=True
        )
        reader.start()
        reader.join(self._start_timeout)
        if not line or not line[0].startswith(_READY):
            self.stop()
            raise MotoServerError(
                f"the moto process did not start within {self._start_timeout:.0f} s"
            )
        self._port = int(line[0][len(_READY) :])
        return self

    def stop(self) -> None:
        process, self._process, self._port = self._process, None, None
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _readline(stream: IO[str] | None) -> str:
    return stream.readline().strip() if stream is not None else ""


def _serve() -> None:
    from moto.server import ThreadedMotoServer  # noqa: PLC0415 - moto is slow to import

    fast_sqs_clock()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    print(f"{_READY}{server.get_host_and_port()[1]}", flush=True)
    sys.stdin.read()  # until the parent closes the pipe (or dies)
    server.stop()


if __name__ == "__main__":
    _serve()
