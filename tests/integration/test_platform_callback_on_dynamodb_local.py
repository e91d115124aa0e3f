"""The push callback end to end: the simulator plays WeChat and delivers its pushes over real
HTTP to the callback, served on 127.0.0.1 by the Function URL stand-in
(local_aws.function_url), which stores them in DynamoDB Local; what it stored is then used
with the simulator's component APIs, as the refresher will use it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from platform_callback.handler import PushHandler
from platform_callback.wiring import build_handler
from token_refresher.platform import pending_index_key
from token_refresher.token_store import TokenStore
from wechat_token.record import CredentialRecord

from local_aws import LocalTable, dynamodb_client
from local_aws._ports import port_accepts_connections
from local_aws.function_url import FunctionUrlServer
from local_aws.lambda_invoke import LambdaContext
from local_aws.static_secrets import SECRET_ID, StaticSecrets
from simulator import COMPONENT_TOKEN, QUERY_AUTH, ManualClock, SimulatorServer, WeChatSimulator

pytestmark = pytest.mark.integration

COMP = "wxcomponentinteg001"
COMP_SECRET = "integration-component-secret-0123"
TOKEN = "integrationMessageToken"
AES_KEY = "IntegrationPlatformEncodingAESKey0123456789"
MERCHANT = "wxmerchantinteg0001"


class Callback:
    """The callback behind a Function URL on 127.0.0.1, with the simulator's clock."""

    def __init__(self, table: LocalTable, clock: ManualClock) -> None:
        registry = {
            COMP: {
                "type": "component",
                "secret": COMP_SECRET,
                "token": TOKEN,
                "encoding_aes_key": AES_KEY,
            }
        }
        self.table = table
        self.secrets = StaticSecrets(registry)
        self.handler: PushHandler = build_handler(
            {"TOKEN_TABLE_NAME": table.name, "WECHAT_APPS_SECRET_ID": SECRET_ID},
            dynamodb=dynamodb_client(table.endpoint_url),
            secrets=self.secrets,  # type: ignore[arg-type]
            clock=clock.now,
        )

    def __call__(self, event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        return self.handler.handle(event).to_response()

    def items(self) -> list[dict[str, Any]]:
        return self.table.dynamodb.scan(TableName=self.table.name, ConsistentRead=True)["Items"]

    def record(self, app_id: str, kind: str) -> CredentialRecord:
        item = self.table.dynamodb.get_item(
            TableName=self.table.name,
            Key={"app_id": {"S": app_id}, "kind": {"S": kind}},
            ConsistentRead=True,
        ).get("Item")
        assert item is not None, (app_id, kind)
        return CredentialRecord.from_dynamodb(item, strict=True)


@dataclass
class World:
    clock: ManualClock
    sim: WeChatSimulator
    callback: Callback
    server: FunctionUrlServer
    wechat_url: str


@pytest.fixture
def world(token_table: LocalTable) -> Iterator[World]:
    clock = ManualClock(time.time())
    sim = WeChatSimulator(clock, seed=5, server_offsets=[0.0])
    sim.platform.refresh_rotation_probability = 0.0
    callback = Callback(token_table, clock)
    function_url = FunctionUrlServer(
        callback, function_name="PlatformCallbackFunction", timeout_seconds=4, max_concurrency=5
    )
    with SimulatorServer(sim) as wechat, function_url as server:
        sim.platform.add_component(COMP, COMP_SECRET, TOKEN, AES_KEY, server.url)
        ports = (server.port, wechat.port)
        yield World(clock, sim, callback, server, wechat.base_url)
    # Both servers are stopped: nothing listens on their ports any more.
    for port in ports:
        assert not port_accepts_connections(port), port


def component_token(base_url: str, ticket: str) -> dict[str, Any]:
    answer = httpx.post(
        f"{base_url}{COMPONENT_TOKEN}",
        json={
            "component_appid": COMP,
            "component_appsecret": COMP_SECRET,
            "component_verify_ticket": ticket,
        },
        timeout=10,
    )
    data: dict[str, Any] = answer.json()
    return data


def test_pushes_delivered_over_http_are_stored_and_usable(world: World) -> None:
    sim, callback, server, base_url = world.sim, world.callback, world.server, world.wechat_url
    # The first ticket is due at once.
    [delivery] = sim.platform.deliver_due_pushes()
    assert (delivery.ok, delivery.status, delivery.info_type) == (
        True,
        200,
        "component_verify_ticket",
    )
    first = sim.platform.current_verify_ticket(COMP)
    assert first is not None
    stored = callback.record(f"push-ticket#{COMP}", "component_verify_ticket")
    assert stored.value == first
    assert stored.source == "push"
    # What the callback stored is what WeChat's api_component_token takes.
    token = component_token(base_url, first)
    assert "component_access_token" in token, token

    # Ten minutes later WeChat pushes the next ticket; the first one is kept as prior.
    world.clock.advance(600)
    assert [d.ok for d in sim.platform.deliver_due_pushes()] == [True]
    second = callback.record(f"push-ticket#{COMP}", "component_verify_ticket")
    assert second.value == sim.platform.current_verify_ticket(COMP) != first
    assert (second.prior_value, second.version) == (first, 2)

    # A merchant authorizes: the event is stored where the refresher finds it, and its
    # code is exchanged with api_query_auth.
    grant = sim.platform.authorize(COMP, MERCHANT)
    assert [(d.info_type, d.ok) for d in sim.platform.deliver_due_pushes()] == [
        ("authorized", True)
    ]
    event = callback.record(f"push-event#{COMP}:{MERCHANT}", "authorization")
    assert (event.info_type, event.value, event.component_appid) == (
        "authorized",
        grant.auth_code,
        f"pending#{COMP}",
    )
    # Where the refresher looks for unprocessed events (its own query).
    pending = TokenStore(callback.table.dynamodb, callback.table.name).component_items(
        pending_index_key(COMP)
    )
    assert [(k.app_id, k.kind) for k in pending] == [
        (f"push-event#{COMP}:{MERCHANT}", "authorization")
    ]
    exchange = httpx.post(
        f"{base_url}{QUERY_AUTH}",
        params={"component_access_token": token["component_access_token"]},
        json={"component_appid": COMP, "authorization_code": event.value},
        timeout=10,
    ).json()
    assert exchange["authorization_info"]["authorizer_appid"] == MERCHANT

    # The merchant revokes it, in the same second: the revocation wins the CreateTime tie.
    assert sim.platform.unauthorize(COMP, MERCHANT)
    assert [(d.info_type, d.ok) for d in sim.platform.deliver_due_pushes()] == [
        ("unauthorized", True)
    ]
    revoked = callback.record(f"push-event#{COMP}:{MERCHANT}", "authorization")
    assert (revoked.info_type, revoked.value, revoked.expires_at) == ("unauthorized", None, None)
    assert all(request.status == 200 for request in server.requests)
    # One GetSecretValue for the whole story (the cache holds the registry a minute).
    assert callback.secrets.reads == 1


def test_forged_pushes_over_http_are_refused_and_store_nothing(world: World) -> None:
    sim, callback, server = world.sim, world.callback, world.server
    assert [d.ok for d in sim.platform.deliver_due_pushes()] == [True]
    before = callback.items()
    stamp = str(int(world.clock.now()))
    forged = {
        "timestamp": stamp,
        "nonce": "123456",
        "encrypt_type": "aes",
        "msg_signature": "0" * 40,
    }
    body = f"<xml><AppId><![CDATA[{COMP}]]></AppId><Encrypt><![CDATA[AAAA]]></Encrypt></xml>"

    def attack(index: int) -> tuple[int, str]:
        answer = httpx.post(
            server.url,
            params={**forged, "nonce": str(index)},
            content=body.encode(),
            headers={"Content-Type": "text/xml"},
            timeout=10,
        )
        return answer.status_code, answer.text

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(attack, range(40)))
    # Refused (or, beyond the 5 concurrent the stand-in allows, throttled as Lambda would).
    assert {status for status, _ in answers} <= {403, 429}
    assert "bad_signature" in {text for _, text in answers}
    assert callback.items() == before
    assert httpx.get(server.url, timeout=10).status_code == 405
    assert httpx.post(server.url, content=b"x" * (7 * 1024 * 1024), timeout=30).status_code == 413
