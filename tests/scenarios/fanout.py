"""A fan-out deployment on local stand-ins: the planner sends to a real SQS queue (moto's
server), workers consume it through ``local_aws.EventSourceMapping`` (Lambda's event
source mapping, with its batch, visibility, partial-failure and concurrency rules) and
the refresher's own ``worker_handler``, credentials live in DynamoDB Local, the registry
is several Secrets Manager secrets (moto), WeChat is the simulator on loopback.

The clock runs in real time (SQS's visibility timeouts are real) and can be moved ahead to
the next renewal cycle. Used by the fan-out scenarios and ``bench.scale``.
"""

from __future__ import annotations

import importlib.util
import json
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
from token_refresher.service import RefreshService
from token_refresher.settings import Settings
from token_refresher.wiring import build_service
from token_refresher.work_queue import SqsWorkQueue

from local_aws import create_token_table, dynamodb_client
from local_aws.moto_process import MotoProcess
from local_aws.resources import create_work_queues, secretsmanager_client, sqs_client
from local_aws.sqs_poller import EventSourceMapping
from simulator import RunningClock, SimulatorServer, WeChatSimulator

PREFIX = "wechat-token/apps/"
ROOT = Path(__file__).resolve().parents[2]
# Entries per registry secret: about 60 bytes each, well under SecretString's 65 536.
SHARD_SIZE = 850


def refresher_app() -> ModuleType:
    """functions/refresher/app.py, loaded under its own name (other functions have an
    app.py too)."""
    spec = importlib.util.spec_from_file_location(
        "refresher_app_fanout", ROOT / "functions" / "refresher" / "app.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class FanOut:
    table: str
    dynamodb_endpoint: str
    moto: MotoProcess
    sim: WeChatSimulator
    wechat_url: str
    clock: RunningClock
    queue_url: str = ""
    dlq_url: str = ""
    shards: list[str] = field(default_factory=list)
    _closers: list[Callable[[], None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sqs = sqs_client(self.moto.endpoint_url)
        self.secrets = secretsmanager_client(self.moto.endpoint_url)
        self.dynamodb = dynamodb_client(self.dynamodb_endpoint)

    def queues(self, *, visibility_timeout: int, max_receive_count: int) -> None:
        name = f"work-{uuid.uuid4().hex[:8]}"
        queues = create_work_queues(
            self.sqs,
            name,
            visibility_timeout=visibility_timeout,
            max_receive_count=max_receive_count,
        )
        self.queue_url, self.dlq_url = queues.queue_url, queues.dlq_url

    def register(self, apps: Mapping[str, str], *, shard_size: int = SHARD_SIZE) -> None:
        """Every app in the simulator, and in the registry split over secrets under the
        prefix, ``shard_size`` apps each (as ``wechat-token apps add`` fills them)."""
        ids = sorted(apps)
        for app_id in ids:
            self.sim.add_app(app_id, apps[app_id], daily_quota=2000)
        for number, start in enumerate(range(0, len(ids), shard_size)):
            name = f"{PREFIX}{number:03d}"
            entries = {
                app_id: {"secret": apps[app_id]} for app_id in ids[start : start + shard_size]
            }
            text = json.dumps(entries)
            assert len(text) < 60_000
            self.secrets.create_secret(Name=name, SecretString=text)
            self.shards.append(name)

    def refresher(self, *, http_timeout: float = 10.0, **settings: Any) -> RefreshService:
        """The production wiring (settings from the template's variables), on the stand-ins."""
        service = build_service(
            Settings(
                table_name=self.table,
                registry_secret_id=self.shards[0],
                registry_secret_prefix=PREFIX,
                wechat_api_base_url=self.wechat_url,
                wecom_api_base_url=self.wechat_url,
                work_queue_url=self.queue_url,
                http_timeout_seconds=http_timeout,
                **settings,
            ),
            dynamodb=dynamodb_client(self.dynamodb_endpoint),
            secrets=secretsmanager_client(self.moto.endpoint_url),
            sqs=self.sqs,
            http=httpx.Client(timeout=http_timeout, limits=httpx.Limits(max_connections=200)),
            clock=self.clock.now,
        )
        # moto's SQS is not thread-safe: the planner sends on one thread here.
        service.queue = SqsWorkQueue(self.sqs, self.queue_url, threads=1)
        self._closers.append(service.api.close)
        return service

    def handler(self, service: RefreshService) -> Callable[[dict[str, Any], Any], Any]:
        """RefreshWorkerFunction's handler (app.worker_handler) with this service."""
        module = refresher_app()
        module._service = service  # what _get_service() would have built
        handler: Callable[[dict[str, Any], Any], Any] = module.worker_handler
        return handler

    @contextmanager
    def workers(
        self,
        service: RefreshService,
        *,
        handler: Callable[[dict[str, Any], Any], Any] | None = None,
        **mapping: Any,
    ) -> Iterator[EventSourceMapping]:
        options: dict[str, Any] = {
            "batch_size": 10,
            "maximum_concurrency": 4,
            "function_timeout_seconds": 60.0,
            "function_name": "RefreshWorkerFunction",
        }
        options.update(mapping)
        esm = EventSourceMapping(
            self.sqs, self.queue_url, handler or self.handler(service), **options
        )
        with esm:
            yield esm

    def dead_letters(self) -> list[str]:
        bodies: list[str] = []
        while True:
            response = self.sqs.receive_message(
                QueueUrl=self.dlq_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
            )
            messages = response.get("Messages", [])
            if not messages:
                return bodies
            for message in messages:
                bodies.append(message["Body"])
                self.sqs.delete_message(
                    QueueUrl=self.dlq_url, ReceiptHandle=message["ReceiptHandle"]
                )

    def close(self) -> None:
        for close in reversed(self._closers):
            close()
        self._closers.clear()


@contextmanager
def fanout_world(dynamodb_endpoint: str, *, start: float, **sim_options: Any) -> Iterator[FanOut]:
    """A fresh table, moto (SQS, Secrets Manager), the simulator on loopback."""
    name = f"fanout-{uuid.uuid4().hex[:12]}"
    admin = dynamodb_client(dynamodb_endpoint)
    create_token_table(admin, name)
    clock = RunningClock(start)
    sim = WeChatSimulator(clock, seed=11, **sim_options)
    server = SimulatorServer(sim).start()
    with MotoProcess() as moto:
        world = FanOut(name, dynamodb_endpoint, moto, sim, server.base_url, clock)
        try:
            yield world
        finally:
            world.close()
            server.stop()
            admin.delete_table(TableName=name)
            admin.close()
