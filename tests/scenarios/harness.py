"""What the scenario tests are made of: a deployment (DynamoDB Local table, the simulator on
loopback, production-wired refreshers on a simulated clock) and a fleet of consumers that read
their token through the layer (``wechat_token.TokenReader``) and call a WeChat business API.

Where the traffic goes:

- refreshers: boto3 to DynamoDB Local, httpx over real HTTP to the simulator's server;
- consumer reads: ``TokenReader`` -> ``read_record`` -> ``client.get_item`` against
  DynamoDB Local, through boto3 or through :class:`WireDynamoDB` (same protocol, ~20x less
  CPU; see its docstring);
- consumer business calls: into the same simulator object in-process (``sim.handle``, the
  function ``sim.transport()`` wraps), or through ``WeChatClient`` with ``sim.transport()``.
"""

from __future__ import annotations

import json
import logging
import random
import socket
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
from token_refresher.service import Outcome, RefreshService
from token_refresher.settings import Settings
from token_refresher.token_store import TokenStore
from token_refresher.triggers import Passive
from token_refresher.wiring import build_service
from wechat_token import TokenError, TokenReader, WeChatClient
from wechat_token.record import ACCESS_TOKEN, CredentialKey, CredentialRecord

from local_aws import dynamodb_client
from simulator import CLASSIC_TOKEN, ManualClock, WeChatSimulator, wechat_day
from simulator.clock import DEFAULT_START
from tests.support import SECRET_ID, StaticSecrets

START = DEFAULT_START  # 2023-11-14 06:13:20 in WeChat's day (UTC+8)
TICK = 10.0  # consumers call WeChat every 10 simulated seconds
HOUR = 3600.0
DAY = 86_400.0
BUSINESS = "/cgi-bin/get_api_domain_ip"
TOKEN_ERROR = -100  # Consumer.call's code when the layer raised instead of returning a token


# --------------------------------------------------------------------------- DynamoDB wire


class WireError(RuntimeError):
    """DynamoDB Local answered an error (or the connection failed)."""


class WireDynamoDB:
    """``get_item`` over DynamoDB's JSON protocol on one keep-alive loopback socket.

    Why: botocore spends ~2 ms of CPU per call here (validation, SigV4, parsing) and a
    simulated week has ~200 000 consumer reads (20 consumers re-reading every 60 s). This
    client sends the request botocore would send (``POST /``, ``X-Amz-Target:
    DynamoDB_20120810.GetItem``, ``application/x-amz-json-1.0``) to the same DynamoDB Local
    and returns the same dict a boto3 client returns (checked by
    ``test_wire_client_answers_like_boto3``), so the layer's own code runs unchanged on it.
    Only loopback endpoints are accepted; DynamoDB Local does not check signatures.
    """

    def __init__(self, endpoint_url: str, *, timeout: float = 10.0) -> None:
        parts = urlsplit(endpoint_url)
        if parts.hostname not in ("127.0.0.1", "localhost") or parts.port is None:
            raise ValueError(f"WireDynamoDB only talks to a loopback endpoint, not {endpoint_url}")
        self._address = ("127.0.0.1", parts.port)
        self._timeout = timeout
        self._sock: socket.socket | None = None
        self._pending = b""
        self.requests = 0
        self._head = (
            f"POST / HTTP/1.1\r\nHost: 127.0.0.1:{parts.port}\r\n"
            "Content-Type: application/x-amz-json-1.0\r\n"
            "X-Amz-Target: DynamoDB_20120810.GetItem\r\n"
            "Authorization: AWS4-HMAC-SHA256 Credential=testing/20231114/us-east-1/dynamodb/"
            "aws4_request, SignedHeaders=host;x-amz-date, Signature=0\r\n"
            "X-Amz-Date: 20231114T000000Z\r\n"
            "Content-Length: "
        )

    def get_item(
        self, *, TableName: str, Key: dict[str, Any], ConsistentRead: bool = False
    ) -> dict[str, Any]:
        body = json.dumps(
            {"TableName": TableName, "Key": Key, "ConsistentRead": ConsistentRead}
        ).encode()
        request = f"{self._head}{len(body)}\r\n\r\n".encode() + body
        self.requests += 1
        reused = self._sock is not None
        try:
            status, payload = self._exchange(request)
        except (OSError, WireError):
            self.close()
            if not reused:
                raise
            status, payload = self._exchange(request)  # the server closed an idle connection
        if status != 200:
            raise WireError(f"DynamoDB Local answered HTTP {status}: {payload[:300]!r}")
        answer: dict[str, Any] = json.loads(payload)
        answer.pop("ConsumedCapacity", None)
        return answer

    def _exchange(self, request: bytes) -> tuple[int, bytes]:
        if self._sock is None:
            self._sock = socket.create_connection(self._address, timeout=self._timeout)
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._pending = b""
        sock = self._sock
        sock.sendall(request)
        data = self._pending
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                raise WireError("DynamoDB Local closed the connection")
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = None
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length is None:
            raise WireError("DynamoDB Local answered without Content-Length")
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                raise WireError("DynamoDB Local closed the connection mid-answer")
            rest += chunk
        self._pending = rest[length:]
        return status, rest[:length]

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


# --------------------------------------------------------------------------- consumers


@dataclass(eq=False)
class Consumer:
    """One consumer (one Lambda execution environment): its own ``TokenReader`` with the
    layer's default 60 s cache on the simulated clock, calling a business API per tick."""

    app_id: str
    reader: TokenReader
    sim: WeChatSimulator
    clock: ManualClock
    client: WeChatClient | None = None  # set: calls go through WeChatClient instead
    calls: int = 0
    failures: Counter[int] = field(default_factory=Counter)  # errcode (or TOKEN_ERROR) -> n
    first_failure: float | None = None  # simulated time
    last_failure: float | None = None
    errors: list[str] = field(default_factory=list)  # distinct TokenError messages
    next_read_at: float = float("-inf")  # when the reader's cache should run out (a guess)
    _wire: WireDynamoDB | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        client = self.reader.client
        self._wire = client if isinstance(client, WireDynamoDB) else None

    def call(self) -> int:
        """One business call; 0 on success, else the errcode (TOKEN_ERROR: no token)."""
        self.calls += 1
        wire = self._wire
        if wire is None:
            return self._call()
        reads = wire.requests
        code = self._call()
        if wire.requests != reads:
            self.next_read_at = self.clock.now() + self.reader.cache_seconds
        return code

    @property
    def table_reads(self) -> int:
        """DynamoDB reads so far (counted by the wire client; 0 for boto3 readers)."""
        return self._wire.requests if self._wire is not None else 0

    def will_read(self, now: float) -> bool:
        """Whether this tick's call will probably read DynamoDB (only for scheduling)."""
        return self._wire is not None and now >= self.next_read_at

    def _call(self) -> int:
        if self.client is not None:
            return self._call_client(self.client)
        try:
            token = self.reader.get(self.app_id)
        except TokenError as exc:
            return self._failed(TOKEN_ERROR, f"{type(exc).__name__}: {exc}")
        body = self.sim.handle("GET", BUSINESS, {"access_token": token}).body
        if b'"errcode"' not in body:
            return 0
        return self._failed(int(json.loads(body)["errcode"]))

    def _call_client(self, client: WeChatClient) -> int:
        try:
            client.get(BUSINESS)
        except TokenError as exc:
            code = getattr(exc, "errcode", TOKEN_ERROR)
            return self._failed(code, f"{type(exc).__name__}: {exc}")
        return 0

    def _failed(self, code: int, message: str | None = None) -> int:
        self.failures[code] += 1
        now = self.clock.now()
        if self.first_failure is None:
            self.first_failure = now
        self.last_failure = now
        if message is not None and message not in self.errors and len(self.errors) < 20:
            self.errors.append(message)
        return code


class Fleet:
    """Many consumers calling at the same simulated instants.

    Consumers are independent processes, so the calls of those about to read DynamoDB
    Local (their 60 s cache ran out) run concurrently, as they would in Lambda: DynamoDB
    Local then answers them in parallel. Everything else runs inline. Which consumer runs
    where changes nothing but the wall-clock time.
    """

    def __init__(self, consumers: list[Consumer]) -> None:
        self.consumers = consumers
        # A few threads are enough to keep DynamoDB Local busy; more only fight for the GIL.
        self._pool = ThreadPoolExecutor(
            max_workers=min(8, len(consumers)), thread_name_prefix="consumer"
        )

    def close(self) -> None:
        self._pool.shutdown()

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def tick(self) -> None:
        now = self.consumers[0].clock.now()
        reading = [c for c in self.consumers if c.will_read(now)]
        if len(reading) > 1:
            futures = [self._pool.submit(c.call) for c in reading]
            concurrent = {id(c) for c in reading}
            for consumer in self.consumers:
                if id(consumer) not in concurrent:
                    consumer.call()
            for future in futures:
                future.result()
        else:
            for consumer in self.consumers:
                consumer.call()

    def run(self, clock: ManualClock, until: float, *, every: float = TICK) -> None:
        """Call every ``every`` simulated seconds from now until (excluding) ``until``."""
        while clock.now() < until:
            self.tick()
            clock.advance(every)

    @property
    def calls(self) -> int:
        return sum(c.calls for c in self.consumers)

    @property
    def failures(self) -> Counter[int]:
        total: Counter[int] = Counter()
        for consumer in self.consumers:
            total.update(consumer.failures)
        return total

    def failure_window(self) -> tuple[float, float] | None:
        """(first, last) simulated time a consumer call failed; None if none did."""
        firsts = [c.first_failure for c in self.consumers if c.first_failure is not None]
        lasts = [c.last_failure for c in self.consumers if c.last_failure is not None]
        return (min(firsts), max(lasts)) if firsts else None

    def errors(self) -> list[str]:
        return sorted({e for c in self.consumers for e in c.errors})


# --------------------------------------------------------------------------- the deployment


class CapturedLog(logging.Handler):
    """Records of one logger, attached to the logger itself, so that they are seen even if
    something (Powertools' ``copy_config_to_registered_loggers``) turned propagation off."""

    def __init__(self, name: str, level: int = logging.INFO) -> None:
        super().__init__(level)
        self.records: list[logging.LogRecord] = []
        self._logger = logging.getLogger(name)
        self._old_level = self._logger.level

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def __enter__(self) -> CapturedLog:
        self._logger.addHandler(self)
        if self._logger.getEffectiveLevel() > self.level:
            self._logger.setLevel(self.level)
        return self

    def __exit__(self, *exc: object) -> None:
        self._logger.removeHandler(self)
        self._logger.setLevel(self._old_level)

    def messages(self, level: int = logging.WARNING) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno >= level]


@dataclass
class Deployment:
    """One wechat-token installation on local servers: a fresh table in DynamoDB Local, the
    simulator on loopback, and a registry of apps; the clock is the simulated one."""

    table: str
    endpoint_url: str
    sim: WeChatSimulator
    wechat_url: str
    clock: ManualClock
    registry: dict[str, dict[str, str]] = field(default_factory=dict)
    _closers: list[Callable[[], None]] = field(default_factory=list)

    def add_app(self, app_id: str, secret: str) -> None:
        self.sim.add_app(app_id, secret)
        self.registry[app_id] = {"secret": secret}

    def refresher(
        self,
        *,
        seed: int = 0,
        clock: Callable[[], float] | None = None,
        http_timeout: float = 10.0,
        **settings: Any,
    ) -> RefreshService:
        """A refresher wired like production (its own boto3 and httpx clients, as another
        Lambda instance would have); ``http_timeout`` is httpx's, in real seconds."""
        service = build_service(
            Settings(
                table_name=self.table,
                registry_secret_id=SECRET_ID,
                wechat_api_base_url=self.wechat_url,
                wecom_api_base_url=self.wechat_url,
                registry_cache_seconds=0,
                http_timeout_seconds=http_timeout,
                **settings,
            ),
            dynamodb=dynamodb_client(self.endpoint_url),
            secrets=StaticSecrets(self.registry),  # type: ignore[arg-type]
            http=httpx.Client(timeout=http_timeout),
            clock=clock or self.clock.now,
            sleep=lambda _: None,  # backoff pauses cost no real time
            rng=random.Random(seed),
        )
        self._closers.append(service.api.close)
        return service

    def reader(self, *, boto3: bool = False) -> TokenReader:
        """A consumer's reader: boto3 (as in Lambda) or the wire client; 60 s cache."""
        client: Any = WireDynamoDB(self.endpoint_url)
        if boto3:
            client = dynamodb_client(self.endpoint_url)
        self._closers.append(client.close)
        # No passive refresh from the reader itself: a consumer that may ask for one uses
        # WeChatClient (client_for) with an explicit refresher.
        return TokenReader(self.table, client=client, clock=self.clock.now, passive_refresh=None)

    def consumers(self, app_id: str, count: int, *, boto3_first: bool = False) -> list[Consumer]:
        return [
            Consumer(app_id, self.reader(boto3=boto3_first and i == 0), self.sim, self.clock)
            for i in range(count)
        ]

    def record(self, app_id: str) -> CredentialRecord:
        store = TokenStore(self._boto3(), self.table)
        record = store.find(CredentialKey(app_id, ACCESS_TOKEN))
        assert record is not None, f"no record for {app_id}"
        return record

    def _boto3(self) -> Any:
        if not hasattr(self, "_client"):
            self._client = dynamodb_client(self.endpoint_url)
            self._closers.append(self._client.close)
        return self._client

    def close(self) -> None:
        for close in reversed(self._closers):
            close()
        self._closers.clear()


PassiveRefresh = Callable[[str, str, str, int | None], str]


def passive_refresh(
    service: RefreshService, outcomes: list[Outcome] | None = None
) -> PassiveRefresh:
    """What ``LambdaPassiveRefresh`` does, in-process: run the refresher on the consumer's
    report and answer its outcome for the app; each ``Outcome`` is kept in ``outcomes``."""

    def ask(app_id: str, kind: str, stale: str, errcode: int | None) -> str:
        request = Passive(app_id=app_id, kind=kind, stale=stale, errcode=errcode)
        outcome = service.run(request)[0]
        if outcomes is not None:
            outcomes.append(outcome)
        return outcome.outcome

    return ask


def with_client(consumer: Consumer, passive: PassiveRefresh) -> Consumer:
    """Make ``consumer`` call through ``WeChatClient`` (its reader, ``sim.transport()``)."""
    consumer.client = WeChatClient(
        consumer.app_id,
        base_url="https://api.weixin.qq.com",
        reader=consumer.reader,
        passive_refresh=passive,
        http=httpx.Client(transport=consumer.sim.transport()),
        sleep=lambda _: None,
    )
    return consumer


# --------------------------------------------------------------------------- counting


def token_calls_by_day(sim: WeChatSimulator, app_id: str, *, foreign: bool = False) -> Counter[int]:
    """Calls to WeChat's /cgi-bin/token for the app per WeChat day (UTC+8), whatever the
    answer; the refresher's own unless ``foreign``."""
    return Counter(
        wechat_day(r.time)
        for r in sim.call_log
        if r.endpoint == CLASSIC_TOKEN and r.appid == app_id and r.foreign == foreign
    )


def token_calls(sim: WeChatSimulator, app_id: str) -> int:
    return sum(token_calls_by_day(sim, app_id).values())


@dataclass
class Stopwatch:
    began: float = field(default_factory=time.monotonic)

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.began
