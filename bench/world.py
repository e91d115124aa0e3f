"""The local world every benchmark runs in: dummy AWS credentials, DynamoDB Local (or moto),
token tables, the WeChat simulator on loopback, and a production-wired refresher.

Nothing here can reach real AWS or WeChat: AWS clients get an explicit loopback endpoint
and dummy credentials, and the simulator only listens on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from botocore.config import Config
from token_refresher.service import RefreshService
from token_refresher.settings import Settings
from token_refresher.wiring import build_service

from local_aws import DynamoDBLocal, MotoServer, create_token_table, dynamodb_client
from local_aws.static_secrets import SECRET_ID, StaticSecrets

# As tests/conftest.py: dummy credentials, no profile, no config file, no instance metadata.
SAFE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}
UNSAFE_AWS_ENV = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")

# The WeChat round trip the network benchmarks inject (seconds).
WECHAT_LATENCY = 0.05


def make_env_safe(endpoint_url: str | None = None) -> None:
    """Dummy AWS settings for this process and its children; every endpoint on loopback."""
    for name in UNSAFE_AWS_ENV:
        os.environ.pop(name, None)
    os.environ.update(SAFE_AWS_ENV)
    if endpoint_url:
        os.environ["AWS_ENDPOINT_URL"] = endpoint_url
        os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = endpoint_url


def tune_simulator_server() -> None:
    """Settings of the simulator's HTTP server that would otherwise measure the test rig.

    socketserver listens with a backlog of 5: with tens of connections opening at once,
    dropped handshakes add 1 s retransmits (or resets) that are the rig's, not ours. And
    idle keep-alive connections are closed after 120 s, which a 1000-thread storm on two
    cores can outlast between a consumer's warm-up and its retry. Class attributes,
    changed for this process only.
    """
    import simulator.server  # noqa: PLC0415

    simulator.server._HTTPServer.request_queue_size = 1024
    simulator.server._Handler.timeout = 900


def quiet_logs() -> None:
    """The refresher logs every refresh; at 1000 apps that is noise, not signal."""
    for name in ("wechat_token", "botocore", "urllib3", "httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.ERROR)


@dataclass
class Backend:
    """The DynamoDB the benchmarks use: DynamoDB Local when Java is there, moto otherwise."""

    endpoint_url: str
    name: str
    server: Any = None

    def client(self, *, pool: int = 10) -> Any:
        config = Config(
            connect_timeout=2,
            read_timeout=30,
            retries={"mode": "standard", "max_attempts": 3},
            max_pool_connections=pool,
        )
        return dynamodb_client(self.endpoint_url, config=config)

    def new_table(self, prefix: str = "bench") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        create_token_table(self.client(), name)
        return name

    def drop_table(self, name: str) -> None:
        with contextlib.suppress(Exception):
            self.client().delete_table(TableName=name)


@contextlib.contextmanager
def backend(*, allow_moto: bool = True) -> Iterator[Backend]:
    try:
        server = DynamoDBLocal().start()
    except Exception as exc:
        if not allow_moto:
            raise
        print(f"  DynamoDB Local unavailable ({exc}); falling back to moto's server")
        moto = MotoServer().start()
        try:
            yield Backend(moto.endpoint_url, "moto server (DynamoDB Local unavailable)", moto)
        finally:
            moto.stop()
        return
    try:
        yield Backend(server.endpoint_url, "DynamoDB Local (Java, in memory)", server)
    finally:
        server.stop()


def app_ids(prefix: str, n: int) -> list[str]:
    return [f"wx{prefix}{i:05d}" for i in range(n)]


def secret_of(app_id: str) -> str:
    return f"secret-of-{app_id}"


def registry(apps: list[str]) -> dict[str, Any]:
    return {app: {"secret": secret_of(app)} for app in apps}


class CallCounter:
    """Counts the AWS API calls a botocore client makes, by operation name."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def attach(self, client: Any) -> Any:
        client.meta.events.register("before-call.*.*", self._count)
        return client

    def _count(self, model: Any, **_: Any) -> None:
        self.counts[model.name] += 1

    def total(self) -> int:
        return sum(self.counts.values())


@dataclass
class Refresher:
    """A refresher wired like production (as tests/support.py's ``local_refresher``), with
    a DynamoDB client whose calls are counted and whose pool size is ours to choose."""

    service: RefreshService
    dynamodb_calls: CallCounter = field(default_factory=CallCounter)


def refresher(
    be: Backend,
    table: str,
    wechat_base_url: str,
    apps: list[str],
    *,
    clock: Callable[[], float],
    concurrency: int = 16,
    pool: int = 10,
    seed: int = 0,
    **settings: Any,
) -> Refresher:
    counter = CallCounter()
    dynamodb = counter.attach(be.client(pool=max(pool, concurrency)))
    service = build_service(
        Settings(
            table_name=table,
            registry_secret_id=SECRET_ID,
            wechat_api_base_url=wechat_base_url,
            wecom_api_base_url=wechat_base_url,
            registry_cache_seconds=0,
            concurrency=concurrency,
            **settings,
        ),
        dynamodb=dynamodb,
        secrets=StaticSecrets(registry(apps)),  # type: ignore[arg-type]
        http=httpx.Client(
            timeout=10, limits=httpx.Limits(max_connections=max(100, concurrency * 2))
        ),
        clock=clock,
        sleep=lambda _: None,
        rng=random.Random(seed),
    )
    return Refresher(service, counter)
