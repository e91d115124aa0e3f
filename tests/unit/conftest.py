"""Unit-test harness: moto for DynamoDB and Secrets Manager, respx for WeChat, a manual clock."""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import boto3
import httpx
import pytest
import respx
from moto import mock_aws
from token_refresher.deadline import Deadline
from token_refresher.outcome import Outcome
from token_refresher.service import RefreshService
from token_refresher.settings import Settings
from token_refresher.token_store import TokenStore
from token_refresher.wiring import build_service
from wechat_token.record import ACCESS_TOKEN, CredentialKey, CredentialRecord

from local_aws.resources import create_token_table
from tests.support import parse_event

BASE = "https://api.weixin.qq.test"
WECOM_BASE = "https://qyapi.weixin.qq.test"
TABLE = "wechat-token-unit"
SECRET_ID = "wechat-token/apps"
APP = "wx1111111111111111"
SECRET = "S3CR3T-appsecret-0123456789abcdef"
START = 1_790_000_000.0  # 2026-09-21, a fixed start for the manual clock


class ManualClock:
    def __init__(self, start: float = START) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class FakeWeChat:
    """respx side effect for /cgi-bin/token: issues tokens, or replays scripted replies."""

    # Each step: an httpx.Response, an exception to raise, a JSON dict, or a callable
    # taking the request and returning one of those.
    script: list[Any] = field(default_factory=list)
    # Replies for particular appids, every time (e.g. a wrong secret).
    by_app: dict[str, dict[str, Any]] = field(default_factory=dict)
    issued: list[str] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)
    _counter: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        appid = request.url.params.get("appid")
        if appid in self.by_app:
            return httpx.Response(200, json=self.by_app[appid])
        if self.script:
            step = self.script.pop(0)
            if callable(step):
                step = step(request)
            if isinstance(step, Exception):
                raise step
            if isinstance(step, httpx.Response):
                return step
            return httpx.Response(200, json=step)
        token = f"TOKEN{next(self._counter):04d}-" + "x" * 100
        self.issued.append(token)
        return httpx.Response(200, json={"access_token": token, "expires_in": 7200})

    @property
    def calls(self) -> int:
        return len(self.requests)

    # Tokens WeChat no longer accepts (as if someone fetched new ones behind our back).
    rejected: set[str] = field(default_factory=set)
    probes: int = 0

    def probe(self, request: httpx.Request) -> httpx.Response:
        self.probes += 1
        if request.url.params.get("access_token") in self.rejected:
            return httpx.Response(200, json={"errcode": 40001, "errmsg": "invalid credential"})
        return httpx.Response(200, json={"ip_list": ["101.226.103.0/25"]})


class Harness:
    """A refresher wired to moto and respx, with helpers to read what users would see."""

    def __init__(self, clock: ManualClock, wechat: FakeWeChat) -> None:
        self.clock = clock
        self.wechat = wechat
        self.dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        self.secrets = boto3.client("secretsmanager", region_name="us-east-1")
        create_token_table(self.dynamodb, TABLE)
        self.settings = Settings(
            table_name=TABLE,
            registry_secret_id=SECRET_ID,
            wechat_api_base_url=BASE,
            wecom_api_base_url=WECOM_BASE,
        )
        self.sleeps: list[float] = []
        self.set_registry({APP: {"secret": SECRET}})

    def set_registry(self, registry: dict[str, Any] | str) -> None:
        text = registry if isinstance(registry, str) else json.dumps(registry)
        try:
            self.secrets.create_secret(Name=SECRET_ID, SecretString=text)
        except self.secrets.exceptions.ResourceExistsException:
            self.secrets.put_secret_value(SecretId=SECRET_ID, SecretString=text)

    def service(self, **overrides: Any) -> RefreshService:
        return build_service(
            replace(self.settings, registry_cache_seconds=0, **overrides),
            dynamodb=self.dynamodb,
            secrets=self.secrets,
            clock=self.clock,
            sleep=self.sleeps.append,
            rng=random.Random(7),
        )

    def run(
        self,
        event: Any = None,
        *,
        remaining: Callable[[], float] | None = None,
        **overrides: Any,
    ) -> list[Outcome]:
        service = self.service(**overrides)
        deadline = None
        if remaining is not None:
            deadline = Deadline(
                remaining, clock=self.clock, lease_seconds=service.settings.lease_seconds
            )
        return list(service.run(parse_event(event or {}), deadline))

    def record(self, app_id: str = APP, kind: str = ACCESS_TOKEN) -> CredentialRecord | None:
        record = TokenStore(self.dynamodb, TABLE).read(CredentialKey(app_id, kind))
        return record if record.version or record.has_value or record.last_error_at else None

    def put(self, record: dict[str, Any]) -> None:
        boto3.resource("dynamodb", region_name="us-east-1").Table(TABLE).put_item(Item=record)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def wechat() -> Iterator[FakeWeChat]:
    fake = FakeWeChat()
    with respx.mock(assert_all_called=False) as router:
        router.get(f"{BASE}/cgi-bin/token").mock(side_effect=fake)
        router.get(f"{BASE}/cgi-bin/get_api_domain_ip").mock(side_effect=fake.probe)
        yield fake


@pytest.fixture
def harness(clock: ManualClock, wechat: FakeWeChat) -> Iterator[Harness]:
    with mock_aws():
        yield Harness(clock, wechat)
