"""Fault injection between the refresher and DynamoDB, and checks of what got stored.

``DynamoFaults`` hooks one boto3 DynamoDB client's ``before-send`` event, which botocore
emits once per HTTP attempt *inside* its retry loop. A rule there can answer with a fake
DynamoDB error response (throttling, 5xx, a failed condition) or raise the exception a
dead network raises (read / connect timeout), so botocore's standard retry mode really
retries it, exactly as it would against AWS. ``land_then_timeout`` sends the request for
real and then loses the answer: the write happened, the caller only saw a timeout.

Each request is told apart by its key and expression, so a rule can target one step of
the refresh: ``read`` (a credential's GetItem), ``lease`` (``TokenStore.acquire``, which
also counts the first WeChat call), ``count`` (a later call's count in the daily budget,
``Lease.count_call``), ``force`` (``Lease.reserve_force``), ``write`` (the fenced
``Lease.commit``, which also releases the lease), ``fail`` (``Lease.fail``: record the
error, release), ``release`` (``Lease.release``), ``due`` (``TokenStore.set_due``: a
skipped credential's due-index entry put right), ``rate`` (the shared call-rate ceiling's
permits, ``TokenStore.take_permits``) and ``plan`` (the planner: its state items and the
due-index queries).
"""

from __future__ import annotations

import json
import random
import socket
import threading
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import boto3
import botocore.session
import httpx
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.config import Config
from botocore.exceptions import ConnectTimeoutError, ReadTimeoutError
from token_refresher.planner import state_key
from token_refresher.service import RefreshService
from token_refresher.settings import Settings
from token_refresher.token_store import RATE_PREFIX, TokenStore
from token_refresher.wiring import AWS_CONFIG, build_service
from wechat_token import TokenReader
from wechat_token.record import (
    ACCESS_TOKEN,
    DUE_INDEX,
    CredentialKey,
    CredentialRecord,
    fingerprint,
)

from local_aws import DUMMY_ACCESS_KEY_ID, DUMMY_SECRET_ACCESS_KEY, LOCAL_REGION, LocalTable
from local_aws.static_secrets import SECRET_ID, StaticSecrets
from simulator import ManualClock, WeChatSimulator
from simulator import fingerprint as sim_fingerprint

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

APP = "wxfaults000000001"
SECRET = "FAULT-SECRET-7f3a9c0d5e1b2a4c"
START = 1_790_000_000.0  # 2026-09-21T13:33:20Z
# WeChat's documented life minus the refresher's default skew margin.
USABLE_LIFE = 7200 - 300
# The planner's state items: planner#<lane>.
PLANNER_PREFIX = state_key("main").app_id.partition("#")[0] + "#"

STEPS = (
    "read", "lease", "count", "force", "write", "fail", "release", "due", "rate", "plan", "other",
)  # fmt: skip
# The steps that read or write a credential's own record.
CREDENTIAL_STEPS = ("read", "lease", "count", "force", "write", "fail", "release", "due")

# (HTTP status, DynamoDB error code) for the error-response faults.
ERRORS: dict[str, tuple[int, str]] = {
    "provisioned_throughput": (400, "ProvisionedThroughputExceededException"),
    "throttling": (400, "ThrottlingException"),
    "internal_server_error": (500, "InternalServerError"),
    "service_unavailable": (503, "ServiceUnavailable"),
    "condition_failed": (400, "ConditionalCheckFailedException"),
}
TIMEOUTS = ("read_timeout", "connect_timeout")
ACTIONS = (*ERRORS, *TIMEOUTS, "land_then_timeout", "call")


def classify(request: AWSPreparedRequest) -> str:
    """Which step of the refresh an HTTP request to DynamoDB is.

    Items that are not credentials are known by their key: the planner's state
    (``planner#<lane>``, GetItem and PutItem) and its due-index queries are ``plan``; the
    call-rate counters (``rate#<scope>``) are ``rate``. Every credential UpdateItem names its
    attributes through ``#name`` placeholders (token_store's ``Update``), so a step is known
    by what it sets: the fenced commit sets ``#value``; the lease sets ``#lease_owner`` under
    a condition on ``#lease_until`` (and may count the first call); a failure record sets
    ``#last_error_code``; a release removes the lease (and may take back an unmade call's
    count and file the due-index entry); a later call's count sets ``#calls_day``; a
    due-index repair sets or removes only ``#due_shard`` and ``#due_at``.
    """
    raw = request.headers.get("X-Amz-Target", b"")
    target = raw.decode("ascii", "replace") if isinstance(raw, bytes) else str(raw)
    operation = target.rpartition(".")[2]
    body = request.body
    text = body.decode() if isinstance(body, bytes) else str(body or "{}")
    arguments = json.loads(text) if text else {}
    key = str(arguments.get("Key", arguments.get("Item", {})).get("app_id", {}).get("S", ""))
    if key.startswith(PLANNER_PREFIX) or arguments.get("IndexName") == DUE_INDEX:
        return "plan"
    if key.startswith(RATE_PREFIX):
        return "rate"
    if operation == "GetItem":
        return "read"
    if operation != "UpdateItem":
        return "other"
    expression = str(arguments.get("UpdateExpression", ""))
    condition = str(arguments.get("ConditionExpression", ""))
    sets, _, removes = expression.partition("REMOVE ")
    sets = sets.removeprefix("SET ")
    assigned = {part.split("=")[0].strip() for part in sets.split(", ") if "=" in part}
    if "#value" in assigned:
        return "write"
    if "#lease_owner" in assigned and "#lease_until" in condition:
        return "lease"
    if "#last_error_code" in assigned:
        return "fail"
    if "#lease_owner" in removes:
        return "release"
    if "#calls_day" in assigned:
        return "count"
    if "#forces_count" in assigned:
        return "force"
    if assigned | {n.strip() for n in removes.split(",") if n.strip()} <= {"#due_shard", "#due_at"}:
        return "due"
    return "other"


class _Body:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Any:
        yield self._body


def error_response(url: str, status: int, code: str) -> AWSResponse:
    body = json.dumps(
        {"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": f"injected {code}"}
    ).encode()
    headers = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-RequestId": "FAULT"}
    return AWSResponse(url, status, headers, _Body(body))  # type: ignore[arg-type]


@dataclass
class Rule:
    step: str
    action: str
    times: int | None  # None: every time
    call: Callable[[], None] | None = None
    fired: int = 0

    def live(self) -> bool:
        return self.times is None or self.fired < self.times


@dataclass
class DynamoFaults:
    """Rules applied, in order, to each HTTP attempt one DynamoDB client makes."""

    client: DynamoDBClient
    rules: list[Rule] = field(default_factory=list)
    # (step, what happened) per attempt: "sent" or the injected action.
    log: list[tuple[str, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.client.meta.events.register(
            "before-send.dynamodb",
            self._before_send,  # type: ignore[arg-type]
        )

    def add(
        self,
        step: str,
        action: str,
        *,
        times: int | None = 1,
        call: Callable[[], None] | None = None,
    ) -> Rule:
        """Inject ``action`` into the next ``times`` attempts of ``step`` (None: all)."""
        assert step in STEPS, step
        assert action in ACTIONS, action
        assert (action == "call") == (call is not None)
        rule = Rule(step, action, times, call)
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def attempts(self, step: str) -> int:
        """HTTP attempts of ``step`` (faulted or sent)."""
        return sum(1 for s, _ in self.log if s == step)

    def steps(self) -> list[str]:
        return [s for s, _ in self.log]

    def _before_send(self, request: AWSPreparedRequest, **_: Any) -> AWSResponse | None:
        step = classify(request)
        with self._lock:
            rule = next((r for r in self.rules if r.step == step and r.live()), None)
            if rule is not None:
                rule.fired += 1
            self.log.append((step, rule.action if rule is not None else "sent"))
        if rule is None:
            return None
        if rule.action == "call":
            assert rule.call is not None
            rule.call()  # e.g. another writer moves the record on, then this request goes out
            return None
        if rule.action in ERRORS:
            status, code = ERRORS[rule.action]
            return error_response(request.url, status, code)
        if rule.action == "connect_timeout":
            raise ConnectTimeoutError(endpoint_url=request.url)
        if rule.action == "land_then_timeout":
            _send_for_real(request)
        raise ReadTimeoutError(endpoint_url=request.url)


def _send_for_real(request: AWSPreparedRequest) -> None:
    """Deliver the signed request to DynamoDB Local and drop the answer (loopback only)."""
    assert request.url.startswith("http://127.0.0.1:"), request.url
    headers = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in request.headers.items()}
    body = request.body if isinstance(request.body, bytes) else str(request.body).encode()
    forward = urllib.request.Request(request.url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(forward, timeout=10) as answer:
        answer.read()


class Blackhole:
    """A loopback TCP port that accepts connections and never answers (a hung DynamoDB)."""

    def __init__(self) -> None:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(32)
        self._listener.settimeout(0.05)
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, name="blackhole", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    @property
    def connections(self) -> int:
        return len(self._conns)

    def __enter__(self) -> Blackhole:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for conn in self._conns:
            conn.close()
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                continue
            self._conns.append(conn)


# -- building refreshers ---------------------------------------------------------------

_botocore_session: botocore.session.Session | None = None


def fast_client(endpoint_url: str, *, config: Config = AWS_CONFIG) -> DynamoDBClient:
    """Like local_aws.dynamodb_client (dummy credentials, loopback endpoint), but clients
    share one botocore session, so the service model is loaded once, not per client.
    Each client still has its own event hooks (botocore copies them per client).
    """
    global _botocore_session  # noqa: PLW0603
    if _botocore_session is None:
        _botocore_session = botocore.session.get_session()
    session = boto3.session.Session(
        aws_access_key_id=DUMMY_ACCESS_KEY_ID,
        aws_secret_access_key=DUMMY_SECRET_ACCESS_KEY,
        region_name=LOCAL_REGION,
        botocore_session=_botocore_session,
    )
    assert endpoint_url.startswith("http://127.0.0.1:"), endpoint_url
    return session.client("dynamodb", endpoint_url=endpoint_url, config=config)


@dataclass
class Refresher:
    """A production-wired refresher plus the handles a fault test needs."""

    service: RefreshService
    client: DynamoDBClient
    faults: DynamoFaults
    sleeps: list[float]

    @property
    def store(self) -> TokenStore:
        return self.service.store


def refresher(
    table: LocalTable,
    wechat_base_url: str,
    clock: Callable[[], float],
    *,
    registry: dict[str, Any] | None = None,
    config: Config = AWS_CONFIG,
    seed: int = 0,
    sleep: Callable[[float], None] | None = None,
    **settings: Any,
) -> Refresher:
    """A refresher as wiring.build_service makes it in production (AWS_CONFIG retries),
    against DynamoDB Local and the simulator, with a fault injector on its DynamoDB client.

    Its pauses (retry backoff, the probe's confirmation, lease waits) are recorded in
    ``sleeps`` and, with ``sleep`` (e.g. a manual clock's ``advance``), also passed on.
    """
    client = fast_client(table.endpoint_url, config=config)
    sleeps: list[float] = []

    def record_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if sleep is not None:
            sleep(seconds)

    service = build_service(
        Settings(
            table_name=table.name,
            registry_secret_id=SECRET_ID,
            wechat_api_base_url=wechat_base_url,
            wecom_api_base_url=wechat_base_url,
            registry_cache_seconds=0,
            **settings,
        ),
        dynamodb=client,
        secrets=StaticSecrets(registry or {APP: {"secret": SECRET}}),  # type: ignore[arg-type]
        http=httpx.Client(timeout=5),
        clock=clock,
        sleep=record_sleep,
        rng=random.Random(seed),
    )
    return Refresher(service, client, DynamoFaults(client), sleeps)


# -- what got stored -------------------------------------------------------------------


class Snapshot(NamedTuple):
    """The fields that must change together, or not at all."""

    value: str | None
    expires_at: float | None
    fetched_at: float | None
    version: int
    previous_fingerprint: str | None
    source: str | None

    @classmethod
    def of(cls, record: CredentialRecord | None) -> Snapshot:
        if record is None:
            return cls(None, None, None, 0, None, None)
        return cls(
            record.value,
            record.expires_at,
            record.fetched_at,
            record.version,
            record.previous_fingerprint,
            record.source,
        )

    def fingerprint(self) -> str | None:
        """The stored value's fingerprint (what a later record's previous_fingerprint holds)."""
        return fingerprint(self.value) if self.value else None


def read(table: LocalTable, app_id: str = APP, kind: str = ACCESS_TOKEN) -> CredentialRecord:
    """The stored record, read strongly consistently through a fault-free client."""
    record = TokenStore(table.dynamodb, table.name).find(CredentialKey(app_id, kind))
    assert record is not None, "no record stored"
    return record


def assert_complete(record: CredentialRecord) -> None:
    """A stored credential is whole: value, times, version and source belong together."""
    if record.value is None:
        assert (record.expires_at, record.fetched_at, record.source) == (None, None, None)
        assert record.version == 0
        return
    assert record.version >= 1
    assert record.fetched_at is not None
    assert record.expires_at is not None
    assert record.expires_at - record.fetched_at == USABLE_LIFE
    assert record.source == "/cgi-bin/token"
    assert record.last_success_at == record.fetched_at


class RecordWatcher:
    """Polls the record from another client while a fault test runs; every state it saw."""

    def __init__(self, client: DynamoDBClient, table: str, app_id: str = APP) -> None:
        self._store = TokenStore(client, table)
        self._app_id = app_id
        self._stop = threading.Event()
        self.seen: list[Snapshot] = []
        self.records: list[CredentialRecord] = []
        self._thread = threading.Thread(target=self._poll, name="record-watcher", daemon=True)

    def __enter__(self) -> RecordWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _poll(self) -> None:
        while not self._stop.is_set():
            record = self._store.find(CredentialKey(self._app_id, ACCESS_TOKEN))
            if record is not None:
                self.records.append(record)
            snap = Snapshot.of(record)
            if not self.seen or self.seen[-1] != snap:
                self.seen.append(snap)
            self._stop.wait(0.002)

    def distinct(self) -> set[Snapshot]:
        return set(self.seen)


def retries_of(config: Config) -> dict[str, Any]:
    """A Config's ``retries`` option (botocore-stubs does not declare the attribute)."""
    return dict(getattr(config, "retries", None) or {})


def total_attempts(config: Config) -> int:
    """HTTP attempts botocore makes for one call under ``config`` (initial + retries).

    botocore reads ``retries["max_attempts"]`` as the number of *retries* and
    ``retries["total_max_attempts"]`` as attempts including the first.
    """
    retries = retries_of(config)
    if "total_max_attempts" in retries:
        return int(retries["total_max_attempts"])
    return int(retries.get("max_attempts", 2)) + 1


# -- a world: DynamoDB Local table, simulated WeChat on loopback, manual clock ----------


@dataclass
class World:
    table: LocalTable
    clock: ManualClock
    sim: WeChatSimulator
    base_url: str

    def refresher(self, *, clock: Callable[[], float] | None = None, **kw: Any) -> Refresher:
        return refresher(self.table, self.base_url, clock or self.clock.now, **kw)

    def record(self) -> CredentialRecord:
        return read(self.table)

    def reader(self, **kw: Any) -> TokenReader:
        return TokenReader(self.table.name, client=self.table.dynamodb, clock=self.clock.now, **kw)

    def issued(self) -> set[str]:
        """Fingerprints of every classic token WeChat issued for APP (its call log)."""
        return {
            r.token_fp
            for r in self.sim.call_log
            if r.issued and r.appid == APP and r.token_fp is not None
        }

    def assert_whole(self, record: CredentialRecord) -> None:
        """Complete, and its value is a token WeChat really issued."""
        assert_complete(record)
        if record.value is not None:
            assert sim_fingerprint(record.value) in self.issued(), "stored value is not WeChat's"
