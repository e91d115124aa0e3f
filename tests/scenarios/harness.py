"""What the scenario tests are made of: a deployment (DynamoDB Local table, the simulator on
loopback, production-wired refreshers on a simulated clock) and a fleet of consumers that read
their token through the layer (``wechat_token.TokenReader``) and call a WeChat business API.

Where the traffic goes:

- refreshers: boto3 to DynamoDB Local, httpx over real HTTP to the simulator's server;
- consumer reads: ``TokenReader`` -> its ``RecordSource``. Most consumers read an
  ``InMemoryRecordSource`` over :class:`TableMirror`, which holds every item exactly as
  DynamoDB Local answers it after each refresher write (see its docstring); one consumer
  per test may read DynamoDB Local itself through ``DynamoDBRecordSource`` and boto3, as in
  Lambda (``boto3_first``);
- consumer business calls: into the same simulator object in-process (``sim.handle``, the
  function ``sim.transport()`` wraps), or through ``WeChatClient`` with ``sim.transport()``.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from token_refresher.outcome import Outcome
from token_refresher.service import RefreshService
from token_refresher.settings import Settings
from token_refresher.token_store import TokenStore
from token_refresher.triggers import Passive
from token_refresher.wiring import build_service
from wechat_token import (
    DynamoDBRecordSource,
    InMemoryRecordSource,
    RecordSource,
    TokenError,
    TokenReader,
    WeChatClient,
)
from wechat_token.record import ACCESS_TOKEN, PK, SK, CredentialKey, CredentialRecord, Kind

from local_aws import dynamodb_client
from local_aws.static_secrets import SECRET_ID, StaticSecrets
from simulator import CLASSIC_TOKEN, ManualClock, WeChatSimulator, wechat_day
from simulator.clock import DEFAULT_START

START = DEFAULT_START  # 2023-11-14 06:13:20 in WeChat's day (UTC+8)
TICK = 10.0  # consumers call WeChat every 10 simulated seconds
HOUR = 3600.0
DAY = 86_400.0
BUSINESS = "/cgi-bin/get_api_domain_ip"
TOKEN_ERROR = -100  # Consumer.call's code when the layer raised instead of returning a token


# --------------------------------------------------------------------------- the table, mirrored


class TableMirror:
    """The token table as DynamoDB Local holds it, in memory, for the consumers' reads.

    Why: botocore spends ~2 ms of CPU per ``GetItem`` and a simulated week has ~200 000
    consumer reads (20 consumers re-reading every 60 s). Consumers read the table through
    the layer's one-method seam (``RecordSource``), so they are given an in-memory source
    over this mirror instead. The mirror is exact, not a model: every write a refresher
    sends through its DynamoDB client (``MirroringDynamoDB``) is followed by a consistent
    ``GetItem`` of the items it touched, decoded by ``CredentialRecord.from_dynamodb``, and
    stored here before the write returns (checked by ``test_harness.py``). Writes are
    mirrored one at a time, so racing refreshers' updates land in DynamoDB's order.
    """

    def __init__(self, table: str) -> None:
        self.table = table
        self.records: dict[CredentialKey, CredentialRecord] = {}
        self._lock = threading.Lock()

    def source(self) -> InMemoryRecordSource:
        """A consumer's view: its own read count over the shared records."""
        return InMemoryRecordSource(self.records)

    def sync(self, client: Any, keys: list[CredentialKey]) -> None:
        """Copy these items from the table (consistent reads) into the mirror."""
        for key in keys:
            answer = client.get_item(TableName=self.table, Key=key.item_key(), ConsistentRead=True)
            item = answer.get("Item")
            if item:
                self.records[key] = CredentialRecord.from_dynamodb(item)
            else:
                self.records.pop(key, None)

    def write(self, client: Any, method: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
        """Send one write, then mirror what it touched (also when it failed: a timed-out
        write may have landed)."""
        keys = written_keys(self.table, kwargs)
        with self._lock:
            try:
                result = method(**kwargs)
            except Exception:
                self.sync(client, keys)
                raise
            self.sync(client, keys)
            return result


_WRITES = ("put_item", "update_item", "delete_item", "transact_write_items", "batch_write_item")


class MirroringDynamoDB:
    """A refresher's boto3 DynamoDB client whose writes are mirrored (``TableMirror``);
    everything else goes straight to the client."""

    def __init__(self, client: Any, mirror: TableMirror) -> None:
        self._client = client
        self._mirror = mirror

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if name not in _WRITES:
            return attribute

        def write(**kwargs: Any) -> Any:
            return self._mirror.write(self._client, attribute, kwargs)

        return write


def written_keys(table: str, kwargs: Mapping[str, Any]) -> list[CredentialKey]:
    """The credentials a DynamoDB write request touches in ``table``."""

    def key_of(request: Mapping[str, Any]) -> Iterator[CredentialKey]:
        if request.get("TableName", table) != table:
            return
        attributes = request.get("Key") or request.get("Item") or {}
        if PK in attributes and SK in attributes:
            yield CredentialKey(attributes[PK]["S"], attributes[SK]["S"])

    keys = list(key_of(kwargs))
    for item in kwargs.get("TransactItems", []):
        for request in item.values():
            keys += key_of(request)
    for name, requests in kwargs.get("RequestItems", {}).items():
        for request in requests:
            for body in request.values():
                keys += key_of({"TableName": name, **body})
    return keys


class CountingSource:
    """A consumer's record source, counting its reads (the consumer's 'table reads')."""

    def __init__(self, inner: RecordSource) -> None:
        self.inner = inner
        self.reads = 0

    def __str__(self) -> str:
        return str(self.inner)

    def get(self, key: CredentialKey, consistent: bool) -> CredentialRecord | None:
        self.reads += 1
        return self.inner.get(key, consistent)


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

    def call(self) -> int:
        """One business call; 0 on success, else the errcode (TOKEN_ERROR: no token)."""
        self.calls += 1
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

    @property
    def table_reads(self) -> int:
        """Reads of the consumer's record source so far (the mirror or DynamoDB Local)."""
        return int(getattr(self.reader.source, "reads", 0))

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
    """Many consumers calling at the same simulated instants, one after the other.

    Consumers are independent processes; their reads cost microseconds (the mirror), so
    running them inline changes nothing but the wall-clock time.
    """

    def __init__(self, consumers: list[Consumer]) -> None:
        self.consumers = consumers

    def close(self) -> None:
        pass

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def tick(self) -> None:
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
    # What the consumers read: the table as the refreshers' writes left it.
    mirror: TableMirror = field(init=False)

    def __post_init__(self) -> None:
        self.mirror = TableMirror(self.table)

    def add_app(self, app_id: str, secret: str) -> None:
        self.sim.add_app(app_id, secret)
        self.registry[app_id] = {"secret": secret}

    def refresher(
        self,
        *,
        seed: int = 0,
        clock: Callable[[], float] | None = None,
        http_timeout: float = 10.0,
        sleep: Callable[[float], None] | None = None,
        kms: Any = None,
        **settings: Any,
    ) -> RefreshService:
        """A refresher wired like production (its own boto3 and httpx clients, as another
        Lambda instance would have); ``http_timeout`` is httpx's, in real seconds. Its
        writes are mirrored for the consumers (``TableMirror``). Its pauses cost no real
        time: by default they pass no simulated time either; ``sleep`` decides otherwise.
        ``kms``: the KMS client third-party platforms' refresh tokens are sealed with (with
        ``refresh_token_kms_key_id=`` a key of it)."""
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
            dynamodb=MirroringDynamoDB(dynamodb_client(self.endpoint_url), self.mirror),  # type: ignore[arg-type]
            secrets=StaticSecrets(self.registry),  # type: ignore[arg-type]
            http=httpx.Client(timeout=http_timeout),
            clock=clock or self.clock.now,
            sleep=sleep or (lambda _: None),
            rng=random.Random(seed),
            kms=kms,
        )
        self._closers.append(service.api.close)
        return service

    def reader(self, *, boto3: bool = False) -> TokenReader:
        """A consumer's reader (60 s cache) over the mirror, or over DynamoDB Local through
        boto3 as in Lambda; either way its reads are counted (``Consumer.table_reads``)."""
        source: RecordSource = self.mirror.source()
        if boto3:
            client = dynamodb_client(self.endpoint_url)
            self._closers.append(client.close)
            source = DynamoDBRecordSource(client, self.table)
        # No passive refresh from the reader itself: a consumer that may ask for one uses
        # WeChatClient (with_client) with an explicit refresher.
        return TokenReader(
            source=CountingSource(source), clock=self.clock.now, passive_refresh=None
        )

    def sync(self, app_id: str, kind: str = ACCESS_TOKEN) -> None:
        """Re-read one item into the mirror: after a test wrote the table itself."""
        self.mirror.sync(self._boto3(), [CredentialKey(app_id, kind)])

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
        request = Passive(app_id=app_id, kind=Kind(kind), stale=stale, errcode=errcode)
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


class Timeline:
    """The simulated clock, with the consumers calling every ``TICK`` seconds while it
    moves: between runs, and while a refresher pauses (between its asks in a stable window,
    or for a held lease)."""

    def __init__(self, clock: ManualClock, fleet: Fleet, first_call: float) -> None:
        self.clock, self.fleet = clock, fleet
        self.next_call = first_call

    def run_until(self, t: float) -> None:
        while self.next_call <= t:
            self.clock.set(max(self.clock.now(), self.next_call))
            self.fleet.tick()
            self.next_call += TICK
        self.clock.set(max(self.clock.now(), t))

    def sleep(self, seconds: float) -> None:
        self.run_until(self.clock.now() + seconds)
