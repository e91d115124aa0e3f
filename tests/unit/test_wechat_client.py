"""WeChatClient: a consumer's calls succeed across token rotations, with one retry at most."""

from __future__ import annotations

import io
import json
import logging
import random
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import boto3
import httpx
import pytest
from moto import mock_aws
from token_refresher.service import RefreshService
from token_refresher.settings import Settings
from token_refresher.triggers import Forced, Passive, Scheduled
from token_refresher.wiring import build_service
from wechat_token import (
    ConfigurationError,
    LambdaPassiveRefresh,
    PassiveRefreshError,
    TokenReader,
    WeChatAPIError,
    WeChatClient,
    WeChatTransportError,
)
from wechat_token.passive import default_passive_refresh
from wechat_token.record import Kind, fingerprint

from local_aws.resources import create_token_table
from local_aws.static_secrets import StaticSecrets
from simulator import CLASSIC_TOKEN, ManualClock, WeChatSimulator

TABLE = "client"
BASE = "http://wechat.sim"
APP = "wxclient00000001"
START = 1_790_000_000.0


@dataclass
class Rig:
    sim: WeChatSimulator
    clock: ManualClock
    service: RefreshService
    dynamodb: Any
    passive_calls: list[tuple[str, str, str, int | None]] = field(default_factory=list)

    def passive(self, app_id: str, kind: str, stale: str, errcode: int | None) -> str:
        self.passive_calls.append((app_id, kind, stale, errcode))
        request = Passive(app_id=app_id, kind=Kind(kind), stale=stale, errcode=errcode)
        return self.service.run(request)[0].outcome

    consumer_requests: list[str] = field(default_factory=list)  # paths the clients sent

    def client(self, **kwargs: Any) -> WeChatClient:
        kwargs.setdefault("passive_refresh", self.passive)
        kwargs.setdefault("reader", TokenReader(TABLE, client=self.dynamodb, clock=self.clock.now))
        return WeChatClient(
            APP,
            base_url=BASE,
            http=httpx.Client(transport=Counting(self.sim.transport(), self.consumer_requests)),
            sleep=lambda _: None,
            **kwargs,
        )


class Counting(httpx.BaseTransport):
    """The consumers' transport, recording each request's path (the refresher's own probes
    of the business API go to the same simulator and are not the consumer's retries)."""

    def __init__(self, inner: httpx.BaseTransport, paths: list[str]) -> None:
        self.inner, self.paths = inner, paths

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        return self.inner.handle_request(request)


@pytest.fixture
def rig() -> Iterator[Rig]:
    clock = ManualClock(START)
    sim = WeChatSimulator(clock, seed=11)
    sim.add_app(APP, "client-secret")
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        create_token_table(dynamodb, TABLE)
        service = build_service(
            Settings(table_name=TABLE, registry_secret_id="apps", wechat_api_base_url=BASE),
            dynamodb=dynamodb,
            secrets=StaticSecrets({APP: {"secret": "client-secret"}}),  # type: ignore[arg-type]
            http=httpx.Client(transport=sim.transport()),
            clock=clock.now,
            sleep=lambda _: None,
            rng=random.Random(1),
        )
        service.run(Scheduled())
        yield Rig(sim, clock, service, dynamodb)


def test_calls_carry_the_stored_token(rig: Rig) -> None:
    reply = rig.client().get("/cgi-bin/get_api_domain_ip")
    assert reply["ip_list"]
    assert rig.passive_calls == []


def test_a_token_rotated_in_the_table_is_picked_up_without_a_passive_refresh(rig: Rig) -> None:
    client = rig.client()
    client.get("/cgi-bin/get_api_domain_ip")  # caches the first token
    rig.service.run(Forced(APP))
    rig.service.run(Forced(APP))  # first token now evicted
    assert client.get("/cgi-bin/get_api_domain_ip")["ip_list"]
    assert rig.passive_calls == [], "the table already held a newer token"


def test_a_token_killed_behind_our_back_is_replaced_by_one_passive_refresh(rig: Rig) -> None:
    client = rig.client()
    stored = client.reader.get(APP)
    rig.sim.foreign_fetch(APP)
    rig.sim.foreign_fetch(APP)  # our token is now the third: evicted at once
    before = rig.sim.calls(CLASSIC_TOKEN, APP)
    assert client.get("/cgi-bin/get_api_domain_ip")["ip_list"]
    assert rig.passive_calls == [(APP, "access_token", fingerprint(stored), 40001)]
    assert rig.sim.calls(CLASSIC_TOKEN, APP) == before + 1


def test_two_hundred_consumers_hit_by_40001_make_one_wechat_call(rig: Rig) -> None:
    clients = [rig.client() for _ in range(200)]
    for client in clients:
        client.get("/cgi-bin/get_api_domain_ip")
    rig.sim.foreign_fetch(APP)
    rig.sim.foreign_fetch(APP)
    before = rig.sim.calls(CLASSIC_TOKEN, APP)
    barrier = threading.Barrier(len(clients))

    def call(client: WeChatClient) -> bool:
        barrier.wait()
        client.reader.invalidate(APP)  # every consumer's cache has expired
        return bool(client.get("/cgi-bin/get_api_domain_ip")["ip_list"])

    with ThreadPoolExecutor(len(clients)) as pool:
        results = list(pool.map(call, clients))
    token_calls = rig.sim.calls(CLASSIC_TOKEN, APP) - before
    assert results.count(True) == 200, f"{results.count(True)} of 200 succeeded"
    assert token_calls == 1, f"{token_calls} WeChat token calls for one storm"


def test_other_errors_are_raised_typed_and_never_retried(rig: Rig) -> None:
    rig.sim.add_fault("errcode", endpoint="/cgi-bin/get_api_domain_ip", errcode=48001, count=5)
    with pytest.raises(WeChatAPIError) as caught:
        rig.client().get("/cgi-bin/get_api_domain_ip")
    assert caught.value.errcode == 48001
    assert rig.sim.calls("/cgi-bin/get_api_domain_ip", APP) == 1
    assert rig.passive_calls == []


def test_system_busy_is_retried_once(rig: Rig) -> None:
    rig.sim.add_fault("errcode", endpoint="/cgi-bin/get_api_domain_ip", errcode=-1, count=1)
    assert rig.client().get("/cgi-bin/get_api_domain_ip")["ip_list"]
    rig.sim.add_fault("errcode", endpoint="/cgi-bin/get_api_domain_ip", errcode=-1, count=2)
    with pytest.raises(WeChatAPIError) as caught:
        rig.client().get("/cgi-bin/get_api_domain_ip")
    assert caught.value.errcode == -1


def test_a_rejected_replacement_is_not_retried_again(rig: Rig) -> None:
    rig.sim.add_fault("errcode", endpoint="/cgi-bin/get_api_domain_ip", errcode=40001, count=10)
    with pytest.raises(WeChatAPIError) as caught:
        rig.client().get("/cgi-bin/get_api_domain_ip")
    assert caught.value.errcode == 40001
    assert rig.consumer_requests == ["/cgi-bin/get_api_domain_ip"] * 2, "one retry, never a loop"
    assert len(rig.passive_calls) == 1


def test_without_permission_to_refresh_a_rejection_says_what_to_set(rig: Rig) -> None:
    rig.sim.foreign_fetch(APP)
    rig.sim.foreign_fetch(APP)
    with pytest.raises(WeChatAPIError, match="PASSIVE_REFRESH_FUNCTION_NAME"):
        rig.client(passive_refresh=None).get("/cgi-bin/get_api_domain_ip")


def test_a_refresher_that_cannot_help_is_reported(rig: Rig) -> None:
    rig.sim.foreign_fetch(APP)
    rig.sim.foreign_fetch(APP)
    with pytest.raises(PassiveRefreshError, match="outcome: failed"):
        rig.client(passive_refresh=lambda *_: "failed").get("/cgi-bin/get_api_domain_ip")


def test_transport_errors_never_show_the_token(rig: Rig) -> None:
    token = TokenReader(TABLE, client=rig.dynamodb, clock=rig.clock.now).get(APP)

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot reach {request.url}", request=request)

    client = WeChatClient(
        APP,
        base_url=BASE,
        reader=TokenReader(TABLE, client=rig.dynamodb, clock=rig.clock.now),
        passive_refresh=None,
        http=httpx.Client(transport=httpx.MockTransport(refuse)),
    )
    with pytest.raises(WeChatTransportError) as caught:
        client.get("/cgi-bin/get_api_domain_ip")
    assert token not in str(caught.value)
    assert "access_token=***" in str(caught.value)


def test_post_sends_utf8_json(rig: Rig) -> None:
    seen: list[bytes] = []

    def echo(request: httpx.Request) -> httpx.Response:
        seen.append(request.content)
        return httpx.Response(200, json={"errcode": 0, "errmsg": "ok"})

    client = WeChatClient(
        APP,
        base_url=BASE,
        reader=TokenReader(TABLE, client=rig.dynamodb, clock=rig.clock.now),
        passive_refresh=None,
        http=httpx.Client(transport=httpx.MockTransport(echo)),
    )
    client.post("/cgi-bin/message/custom/send", json={"text": {"content": "你好"}})
    assert "你好".encode() in seen[0]


def test_an_expired_record_triggers_one_passive_refresh_when_permitted(rig: Rig) -> None:
    rig.clock.advance(7000)  # past the stored token's conservative expiry
    reader = TokenReader(
        TABLE, client=rig.dynamodb, clock=rig.clock.now, passive_refresh=rig.passive
    )
    token = reader.get(APP)
    assert rig.sim.token_status(token) == 0
    assert len(rig.passive_calls) == 1
    assert rig.passive_calls[0][3] == 42001


class FakeLambda:
    def __init__(self, reply: Any, *, error: bool = False, raises: Exception | None = None) -> None:
        self.reply, self.error, self.raises = reply, error, raises
        self.payloads: list[Any] = []
        self.functions: list[str] = []

    def invoke(self, **kwargs: Any) -> dict[str, Any]:
        self.functions.append(kwargs["FunctionName"])
        assert kwargs["InvocationType"] == "RequestResponse"
        self.payloads.append(json.loads(kwargs["Payload"]))
        if self.raises is not None:
            raise self.raises
        response: dict[str, Any] = {"Payload": io.BytesIO(json.dumps(self.reply).encode())}
        if self.error:
            response["FunctionError"] = "Unhandled"
        return response


def test_the_lambda_passive_refresh_sends_exactly_the_report_with_the_fingerprint() -> None:
    fake = FakeLambda(
        {"credentials": [{"app_id": APP, "kind": "access_token", "outcome": "refreshed"}]}
    )
    refresh = LambdaPassiveRefresh("wechat-token-Passive", client=fake)  # type: ignore[arg-type]
    assert refresh(APP, "access_token", fingerprint("SECRET-TOKEN"), 40001) == "refreshed"
    assert fake.payloads == [
        {
            "app_id": APP,
            "kind": "access_token",
            "stale_token": fingerprint("SECRET-TOKEN"),
            "errcode": 40001,
        }
    ]
    assert "SECRET-TOKEN" not in json.dumps(fake.payloads)
    assert fake.functions == ["wechat-token-Passive"]


@pytest.mark.parametrize(
    ("reply", "outcome"),
    [
        (
            {
                "credentials": [
                    {"app_id": "wxother", "kind": "access_token", "outcome": "failed"},
                    {"app_id": APP, "kind": "access_token", "outcome": "token_accepted"},
                ]
            },
            "token_accepted",
        ),
        ({"credentials": [{"outcome": "lease_held"}]}, "lease_held"),
        ({"credentials": []}, "unknown"),
        ({"summary": "?"}, "unknown"),
        (None, "unknown"),
    ],
)
def test_the_outcome_is_the_one_for_the_reported_credential(reply: Any, outcome: str) -> None:
    fake = FakeLambda(reply)
    refresh = LambdaPassiveRefresh("f", client=fake)  # type: ignore[arg-type]
    assert refresh(APP, "access_token", "sha256:0123456789", 40001) == outcome


def test_a_function_error_is_a_passive_refresh_error() -> None:
    failing = FakeLambda({"errorMessage": "the report is malformed: unknown field"}, error=True)
    with pytest.raises(PassiveRefreshError, match=r"failed for .*: the report is malformed"):
        LambdaPassiveRefresh("f", client=failing)(APP, "access_token", "sha256:x", 40001)  # type: ignore[arg-type]


def test_an_invoke_failure_carries_no_botocore_exception() -> None:
    from botocore.exceptions import ClientError  # noqa: PLC0415

    denied = ClientError(
        {"Error": {"Code": "AccessDeniedException", "Message": "not authorized"}}, "Invoke"
    )
    failing = FakeLambda(None, raises=denied)
    with pytest.raises(
        PassiveRefreshError, match="AccessDeniedException: not authorized"
    ) as caught:
        LambdaPassiveRefresh("f", client=failing)(APP, "access_token", "sha256:x", 40001)  # type: ignore[arg-type]
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None
    assert "lambda:InvokeFunction" in str(caught.value)


def test_an_unexpected_failure_is_named_without_its_message() -> None:
    failing = FakeLambda(None, raises=RuntimeError("body: access_token=TOKEN-IN-A-MESSAGE"))
    with pytest.raises(PassiveRefreshError, match="RuntimeError") as caught:
        LambdaPassiveRefresh("f", client=failing)(APP, "access_token", "sha256:x", 40001)  # type: ignore[arg-type]
    assert "TOKEN-IN-A-MESSAGE" not in str(caught.value)
    assert caught.value.__context__ is None


def test_the_function_is_named_by_the_passive_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PASSIVE_REFRESH_FUNCTION_NAME", raising=False)
    monkeypatch.delenv("REFRESHER_FUNCTION_NAME", raising=False)
    assert default_passive_refresh() is None
    with pytest.raises(ConfigurationError, match="PASSIVE_REFRESH_FUNCTION_NAME is not set"):
        _ = LambdaPassiveRefresh().function_name
    monkeypatch.setenv("PASSIVE_REFRESH_FUNCTION_NAME", "stack-PassiveRefreshFunction-1")
    passive = default_passive_refresh()
    assert isinstance(passive, LambdaPassiveRefresh)
    assert passive.function_name == "stack-PassiveRefreshFunction-1"


def test_the_retired_setting_alone_permits_nothing_and_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("PASSIVE_REFRESH_FUNCTION_NAME", raising=False)
    monkeypatch.setenv("REFRESHER_FUNCTION_NAME", "stack-RefresherFunction-1")
    with caplog.at_level(logging.WARNING, logger="wechat_token"):
        assert default_passive_refresh() is None
    assert "PASSIVE_REFRESH_FUNCTION_NAME" in caplog.text
