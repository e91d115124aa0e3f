"""PlatformCallbackFunction (functions/platform_callback): WeChat's pushes to a third-party
platform's 授权事件接收URL, against moto's DynamoDB (the template's table) and Secrets
Manager (the app registry).

The pushes are made as WeChat makes them, with the simulator's encryption
(scripts/platform_push_event.py, simulator.msgcrypt), not the callback's own. What is
asserted is what the refresher and an operator would see: the table's items (scanned),
the HTTP answer, the log lines.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import logging
import random
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from platform_callback import schema
from platform_callback.config import ComponentConfigs, parse_component_configs
from platform_callback.handler import PushHandler
from platform_callback.store import DynamoDBNonceStore, PushStore, ticket_expires_at
from platform_callback.telemetry import logger as callback_logger
from platform_callback.wiring import build_handler
from token_refresher.platform import PENDING_PREFIX, pending_index_key
from token_refresher.token_store import TokenStore
from wechat_token.record import (
    COMPONENT_INDEX,
    EVENT_PREFIX,
    FIELD_NAMES,
    NONCE_PREFIX,
    PK,
    SK,
    TICKET_PREFIX,
    TTL_ATTRIBUTE,
    CredentialRecord,
    Kind,
)

from local_aws.resources import COMPONENT_INDEX as LOCAL_COMPONENT_INDEX
from local_aws.resources import TABLE_TTL_ATTRIBUTE, create_token_table
from scripts.platform_push_event import authorization_xml, push_event, ticket_xml
from simulator.msgcrypt import PushKey

ROOT = Path(__file__).resolve().parents[2]
TABLE = "wechat-token-callback"
SECRET_ID = "wechat-token/apps"
NOW = 1_790_000_000
COMP = "wxcomponent00000a01"
OTHER = "wxcomponent00000b02"
TOKEN = "platformA-message-token"
OTHER_TOKEN = "platformB-message-token"
KEY = "PlatformAEncodingAESKeyForCallbackTests0123"
OTHER_KEY = "PlatformBEncodingAESKeyForCallbackTests0123"
APP_SECRET = "component-appsecret-0123456789abcdef"
AUTHORIZER = "wxauthorizer0000c03"
TICKET = "ticket@@@S3cr3t-verify-ticket-value-first"
TICKET2 = "ticket@@@S3cr3t-verify-ticket-value-second"
CODE = "queryauthcode@@@S3cr3t-authorization-code-1"
CODE2 = "queryauthcode@@@S3cr3t-authorization-code-2"
CLASSIC_SECRET = "classic-app-secret-0123456789"
SECRETS = (TOKEN, OTHER_TOKEN, KEY, OTHER_KEY, APP_SECRET, TICKET, TICKET2, CODE, CODE2)
SECRETS += (CLASSIC_SECRET, KEY[:16], OTHER_KEY[:16])

REGISTRY: dict[str, Any] = {
    COMP: {"type": "component", "secret": APP_SECRET, "token": TOKEN, "encoding_aes_key": KEY},
    OTHER: {
        "type": "component",
        "secret": APP_SECRET,
        "token": OTHER_TOKEN,
        "encoding_aes_key": OTHER_KEY,
    },
    "wx1111111111111111": {"secret": CLASSIC_SECRET},
    # A key one character short: skipped (and logged by key), the others still work.
    "wxcomponentbroken03": {
        "type": "component",
        "secret": APP_SECRET,
        "token": TOKEN,
        "encoding_aes_key": KEY[:42],
    },
}


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = float(now)

    def __call__(self) -> float:
        return self.now


class World:
    """moto's table and registry secret, and a handler wired like production."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.monotonic = Clock(1000.0)
        self.dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        self.secrets = boto3.client("secretsmanager", region_name="us-east-1")
        create_token_table(self.dynamodb, TABLE)
        self.secrets.create_secret(Name=SECRET_ID, SecretString=json.dumps(REGISTRY))
        self.configs = ComponentConfigs(self.secrets, SECRET_ID, clock=self.monotonic)
        self.handler = PushHandler(
            self.configs.lookup,
            DynamoDBNonceStore(self.dynamodb, TABLE, clock=self.clock),
            PushStore(self.dynamodb, TABLE),
            clock=self.clock,
        )
        self._nonce = 10**9

    def event(
        self,
        xml: str,
        *,
        appid: str = COMP,
        token: str = TOKEN,
        key: str = KEY,
        timestamp: float | None = None,
    ) -> dict[str, Any]:
        self._nonce += 1
        stamp = int(self.clock.now if timestamp is None else timestamp)
        return push_event(
            xml,
            component_appid=appid,
            token=token,
            aes_key=key,
            timestamp=stamp,
            nonce=str(self._nonce),
        )

    def ticket(self, ticket: str = TICKET, create_time: int | None = None, **kw: Any) -> Any:
        when = int(self.clock.now) if create_time is None else create_time
        appid = kw.pop("appid", COMP)
        return self.event(ticket_xml(appid, when, ticket), appid=appid, **kw)

    def send(self, event: dict[str, Any]) -> tuple[int, str]:
        answer = self.handler.handle(event)
        response = answer.to_response()
        assert response["headers"]["Content-Type"].startswith("text/plain")
        return response["statusCode"], response["body"]

    def items(self) -> list[dict[str, Any]]:
        return sorted(
            self.dynamodb.scan(TableName=TABLE, ConsistentRead=True)["Items"],
            key=lambda item: (item["app_id"]["S"], item["kind"]["S"]),
        )

    def item(self, app_id: str, kind: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self.dynamodb.get_item(
            TableName=TABLE,
            Key={"app_id": {"S": app_id}, "kind": {"S": kind}},
            ConsistentRead=True,
        ).get("Item")
        return found

    def record(self, app_id: str, kind: str) -> CredentialRecord:
        item = self.item(app_id, kind)
        assert item is not None, (app_id, kind)
        # Strict: the callback writes nothing the layer's schema does not define.
        return CredentialRecord.from_dynamodb(item, strict=True)


@pytest.fixture
def world() -> Iterator[World]:
    with mock_aws():
        yield World()


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    """Everything the callback's Powertools logger writes, at DEBUG."""
    buffer = io.StringIO()
    handler = callback_logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    previous_stream, previous_level = handler.stream, callback_logger.log_level
    handler.setStream(buffer)
    callback_logger.setLevel("DEBUG")
    try:
        yield buffer
    finally:
        handler.setStream(previous_stream)
        callback_logger.setLevel(previous_level)


def log_lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


def push_lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    """The one line each push logs (not the registry's)."""
    return [line for line in log_lines(buffer) if line["message"].startswith("push ")]


def nonces(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [i for i in items if i["app_id"]["S"].startswith(schema.NONCE_PREFIX)]


def credentials(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [i for i in items if not i["app_id"]["S"].startswith(schema.NONCE_PREFIX)]


# ------------------------------------------------------------------ the schema contract


def test_the_constants_are_the_layers_and_the_templates() -> None:
    assert schema.PK == PK
    assert schema.SK == SK
    assert Kind.COMPONENT_VERIFY_TICKET.value == schema.KIND_COMPONENT_VERIFY_TICKET
    assert Kind.AUTHORIZATION.value == schema.KIND_AUTHORIZATION
    assert schema.NONCE_PREFIX == NONCE_PREFIX
    assert schema.TICKET_PREFIX == TICKET_PREFIX
    assert schema.EVENT_PREFIX == EVENT_PREFIX
    assert schema.TTL_ATTRIBUTE == TTL_ATTRIBUTE == TABLE_TTL_ATTRIBUTE
    assert schema.COMPONENT_INDEX == COMPONENT_INDEX == LOCAL_COMPONENT_INDEX
    # Where the refresher looks for unprocessed authorization events.
    assert schema.PENDING_PREFIX == PENDING_PREFIX
    # Every attribute written is a record field (or a key, or the nonces' TTL).
    assert schema.WRITTEN_ATTRIBUTES - {PK, SK, TTL_ATTRIBUTE} <= FIELD_NAMES
    assert {PK, SK, TTL_ATTRIBUTE} == schema.NONCE_ATTRIBUTES
    assert schema.NONCE_RETENTION_SECONDS >= 3 * 300  # the skew, both ways, and more


# ------------------------------------------------------------------ verify tickets


def test_a_ticket_push_stores_the_ticket(world: World) -> None:
    assert world.send(world.ticket()) == (200, "success")
    record = world.record(TICKET_PREFIX + COMP, "component_verify_ticket")
    assert record.value == TICKET
    assert record.create_time == NOW
    assert record.expires_at == NOW + 43_200 - 600 == ticket_expires_at(NOW)
    assert record.fetched_at == NOW
    assert record.source == "push"
    assert record.version == 1
    assert record.prior_value == ""  # none before
    assert record.prior_expires_at == 0
    assert record.component_appid is None  # the ticket is not an authorizer
    [nonce] = nonces(world.items())
    assert nonce["app_id"]["S"] == f"push-nonce#{COMP}"
    assert nonce["kind"]["S"] == f"{NOW}:{world._nonce}"
    assert nonce["expires_ttl"]["N"] == str(NOW + 900)
    assert set(nonce) == {"app_id", "kind", "expires_ttl"}


def test_a_newer_ticket_keeps_the_one_it_replaces(world: World) -> None:
    world.send(world.ticket())
    world.clock.now += 600
    assert world.send(world.ticket(TICKET2)) == (200, "success")
    record = world.record(TICKET_PREFIX + COMP, "component_verify_ticket")
    assert record.value == TICKET2
    assert record.create_time == NOW + 600
    assert record.expires_at == NOW + 600 + 42_600
    assert record.prior_value == TICKET
    assert record.prior_expires_at == NOW + 42_600
    assert record.version == 2


def test_an_older_push_never_replaces_a_newer_ticket(world: World) -> None:
    world.clock.now += 600
    world.send(world.ticket(TICKET2))
    before = world.item(TICKET_PREFIX + COMP, "component_verify_ticket")
    # Delivered late (a retry, a reordering): fresh timestamp, older CreateTime.
    late = world.ticket(TICKET, create_time=NOW)
    assert world.send(late) == (200, "success")
    assert world.item(TICKET_PREFIX + COMP, "component_verify_ticket") == before


def test_a_duplicate_push_is_a_no_op_answered_success(world: World, logs: io.StringIO) -> None:
    event = world.ticket()
    assert world.send(event) == (200, "success")
    before = world.items()
    for _ in range(3):
        assert world.send(event) == (200, "success")
    assert world.items() == before
    replays = [line for line in push_lines(logs) if line.get("reason") == "replayed"]
    assert len(replays) == 3
    assert all(line["stored"] is False for line in replays)
    # The same ticket in a new push (new nonce, same CreateTime): also nothing new.
    assert world.send(world.ticket()) == (200, "success")
    assert credentials(world.items()) == credentials(before)


def test_two_platforms_share_one_url(world: World) -> None:
    world.send(world.ticket())
    other = world.ticket(TICKET2, appid=OTHER, token=OTHER_TOKEN, key=OTHER_KEY)
    assert world.send(other) == (200, "success")
    assert world.record(TICKET_PREFIX + COMP, "component_verify_ticket").value == TICKET
    assert world.record(TICKET_PREFIX + OTHER, "component_verify_ticket").value == TICKET2


def test_base64_bodies_are_accepted(world: World) -> None:
    event = world.ticket()
    event["body"] = base64.b64encode(event["body"].encode()).decode()
    event["isBase64Encoded"] = True
    assert world.send(event) == (200, "success")
    assert world.record(TICKET_PREFIX + COMP, "component_verify_ticket").value == TICKET


# ------------------------------------------------------------------ authorization events


def test_authorization_events_are_stored_for_the_refresher(world: World) -> None:
    key = f"{EVENT_PREFIX}{COMP}:{AUTHORIZER}"
    granted = authorization_xml(COMP, "authorized", AUTHORIZER, NOW, CODE, NOW + 600)
    assert world.send(world.event(granted)) == (200, "success")
    record = world.record(key, "authorization")
    assert (record.info_type, record.value, record.expires_at) == ("authorized", CODE, NOW + 600)
    assert (record.create_time, record.fetched_at) == (NOW, NOW)
    # Pending: in the component index under pending#<component>, where the refresher looks
    # (with its own query: token_refresher's TokenStore.component_items).
    assert record.component_appid == f"pending#{COMP}" == pending_index_key(COMP)
    assert record.version == 0  # events carry no version: the refresher owns the record
    found = TokenStore(world.dynamodb, TABLE).component_items(pending_index_key(COMP))
    assert [(k.app_id, k.kind) for k in found] == [(key, "authorization")]
    # Not among the platform's authorizers (those are its tokens, under the plain appid).
    assert TokenStore(world.dynamodb, TABLE).component_items(COMP) == []

    world.clock.now += 60
    changed = authorization_xml(COMP, "updateauthorized", AUTHORIZER, NOW + 60, CODE2, NOW + 660)
    assert world.send(world.event(changed)) == (200, "success")
    record = world.record(key, "authorization")
    assert (record.info_type, record.value, record.expires_at) == (
        "updateauthorized",
        CODE2,
        NOW + 660,
    )

    world.clock.now += 60
    revoked = authorization_xml(COMP, "unauthorized", AUTHORIZER, NOW + 120)
    assert world.send(world.event(revoked)) == (200, "success")
    item = world.item(key, "authorization")
    assert item is not None
    assert "value" not in item
    assert "expires_at" not in item
    record = world.record(key, "authorization")
    assert (record.info_type, record.create_time) == ("unauthorized", NOW + 120)

    # The old grant, delivered late, does not bring the revoked authorization back.
    assert world.send(world.event(granted)) == (200, "success")
    assert world.record(key, "authorization").info_type == "unauthorized"
    # Nothing but the events (and the nonces) was written: no token, no ticket.
    assert [(i["app_id"]["S"], i["kind"]["S"]) for i in credentials(world.items())] == [
        (key, "authorization")
    ]


def test_a_revocation_in_the_same_second_as_a_grant_wins(world: World) -> None:
    key = f"{EVENT_PREFIX}{COMP}:{AUTHORIZER}"
    granted = authorization_xml(COMP, "authorized", AUTHORIZER, NOW, CODE, NOW + 600)
    revoked = authorization_xml(COMP, "unauthorized", AUTHORIZER, NOW)
    # Either order of delivery ends revoked.
    world.send(world.event(granted))
    world.send(world.event(revoked))
    assert world.record(key, "authorization").info_type == "unauthorized"
    world.send(world.event(granted))
    assert world.record(key, "authorization").info_type == "unauthorized"
    assert world.record(key, "authorization").value is None


def test_an_unsupported_info_type_is_answered_success_and_stores_nothing(
    world: World, logs: io.StringIO
) -> None:
    xml = (
        f"<xml><AppId><![CDATA[{COMP}]]></AppId><CreateTime>{NOW}</CreateTime>"
        "<InfoType><![CDATA[notify_third_fasteregister]]></InfoType></xml>"
    )
    assert world.send(world.event(xml)) == (200, "success")
    assert world.items() == []
    [line] = push_lines(logs)
    assert line["reason"] == "unsupported_info_type"
    assert line["component_appid"] == COMP


# ------------------------------------------------------------------ refusals


def _refusals(world: World, accepted: dict[str, Any]) -> list[tuple[dict[str, Any], int, str]]:
    """(event, status, body) for 200 forged, replayed and malformed pushes."""
    rng = random.Random(12)
    makers: list[Callable[[], tuple[dict[str, Any], int, str]]] = []

    def forged_signature() -> tuple[dict[str, Any], int, str]:
        event = world.ticket()
        signature = event["queryStringParameters"]["msg_signature"]
        flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
        event["queryStringParameters"]["msg_signature"] = flipped
        return event, 403, "bad_signature"

    def wrong_token() -> tuple[dict[str, Any], int, str]:
        return world.ticket(token="an-attackers-guess"), 403, "bad_signature"

    def unknown_app_id() -> tuple[dict[str, Any], int, str]:
        stranger = f"wxstranger{rng.randrange(10**8):08d}"
        return world.ticket(appid=stranger), 403, "unknown_app_id"

    def broken_entry() -> tuple[dict[str, Any], int, str]:
        # The entry with the bad key was skipped: its AppId is unknown.
        return world.ticket(appid="wxcomponentbroken03"), 403, "unknown_app_id"

    def stale() -> tuple[dict[str, Any], int, str]:
        delta = rng.choice([-1, 1]) * rng.randrange(301, 10**6)
        return world.ticket(timestamp=world.clock.now + delta), 403, "stale_timestamp"

    def malformed_xml() -> tuple[dict[str, Any], int, str]:
        event = world.ticket()
        body = rng.choice(
            [
                "not xml at all",
                "<xml><AppId>x</AppId>",
                '<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY e "boom">]><xml>&e;</xml>',
                "<root><Encrypt>abc</Encrypt></root>",
                f"<xml><AppId><![CDATA[{COMP}]]></AppId></xml>",
            ]
        )
        event["body"] = body
        return event, 400, "malformed_xml"

    def oversized() -> tuple[dict[str, Any], int, str]:
        event = world.ticket()
        event["body"] = event["body"] + " " * (64 * 1024)
        return event, 413, "too_large"

    def tampered_ciphertext() -> tuple[dict[str, Any], int, str]:
        # Re-signed with the real token (as if it leaked) over a corrupted Encrypt: the
        # signature verifies, decryption does not.
        event = world.ticket()
        params = event["queryStringParameters"]
        garbage = base64.b64encode(rng.randbytes(64)).decode()
        event["body"] = (
            f"<xml><AppId><![CDATA[{COMP}]]></AppId><Encrypt><![CDATA[{garbage}]]></Encrypt></xml>"
        )
        params["msg_signature"] = PushKey(TOKEN, KEY).sign(
            params["timestamp"], params["nonce"], garbage
        )
        return event, 400, "bad_ciphertext"

    def missing_parameter() -> tuple[dict[str, Any], int, str]:
        event = world.ticket()
        del event["queryStringParameters"][rng.choice(["timestamp", "nonce", "msg_signature"])]
        return event, 400, "missing_parameter"

    def plain_mode() -> tuple[dict[str, Any], int, str]:
        event = world.ticket()
        event["queryStringParameters"]["encrypt_type"] = "raw"
        return event, 400, "bad_parameter"

    def wrong_method() -> tuple[dict[str, Any], int, str]:
        event = world.ticket()
        event["requestContext"]["http"]["method"] = rng.choice(["GET", "PUT", "DELETE"])
        return event, 405, "method_not_allowed"

    def replayed() -> tuple[dict[str, Any], int, str]:
        return json.loads(json.dumps(accepted)), 200, "success"

    makers += [forged_signature, wrong_token, unknown_app_id, broken_entry, stale]
    makers += [malformed_xml, oversized, tampered_ciphertext, missing_parameter, plain_mode]
    makers += [wrong_method, replayed]
    cases = [maker() for maker in makers]  # each kind at least once
    cases += [rng.choice(makers)() for _ in range(200 - len(cases))]
    return cases


def test_200_forged_replayed_or_malformed_pushes_store_nothing(
    world: World, logs: io.StringIO
) -> None:
    accepted = world.ticket()
    assert world.send(accepted) == (200, "success")
    baseline = world.items()
    cases = _refusals(world, accepted)
    assert len(cases) == 200
    for event, status, body in cases:
        assert world.send(event) == (status, body), body
    assert world.items() == baseline, "a refused or replayed push wrote something"
    lines = push_lines(logs)[1:]  # after the accepted push's line
    assert len(lines) == len(cases), "one log line per push"
    for line, (_, status, body) in zip(lines, cases, strict=True):
        assert line["reason"] == ("replayed" if body == "success" else body)
        if status != 200:
            assert line["status"] == status
            assert line["level"] == "WARNING"


def test_an_unknown_app_id_flood_never_reads_the_secret_again(world: World) -> None:
    world.send(world.ticket())
    reads = world.configs.reads
    for index in range(50):
        assert world.send(world.ticket(appid=f"wxflood{index:012d}"))[1] == "unknown_app_id"
    assert world.configs.reads == reads


# ------------------------------------------------------------------ configuration


def test_the_registry_parser_takes_component_entries_only() -> None:
    registry = parse_component_configs(json.dumps(REGISTRY))
    assert set(registry.configs) == {COMP, OTHER}
    assert set(registry.invalid) == {"wxcomponentbroken03"}
    assert "42 characters" in registry.invalid["wxcomponentbroken03"]
    wrapped = parse_component_configs(json.dumps({"apps": REGISTRY}))
    assert set(wrapped.configs) == {COMP, OTHER}
    entry = REGISTRY[COMP]
    cases = {
        "no token": {**entry, "token": ""},
        "no key": {k: v for k, v in entry.items() if k != "encoding_aes_key"},
        "other appid": {**entry, "appid": OTHER},
        "number token": {**entry, "token": 42},
    }
    for why, bad in cases.items():
        parsed = parse_component_configs(json.dumps({COMP: bad}))
        assert parsed.configs == {}, why
        assert set(parsed.invalid) == {COMP}, why
        for secret in SECRETS:
            assert secret not in parsed.invalid[COMP], why
    disabled = parse_component_configs(json.dumps({COMP: {**entry, "enabled": False}}))
    assert (dict(disabled.configs), dict(disabled.invalid)) == ({}, {})
    assert repr(registry.configs[COMP]) == f"ComponentConfig(component_appid={COMP!r})"


def test_a_bad_entry_is_logged_by_key_once_per_read(world: World, logs: io.StringIO) -> None:
    world.send(world.ticket())
    world.send(world.ticket(TICKET2, appid=OTHER, token=OTHER_TOKEN, key=OTHER_KEY))
    errors = [line for line in log_lines(logs) if line["level"] == "ERROR"]
    assert len(errors) == 1
    assert errors[0]["component_appid"] == "wxcomponentbroken03"
    assert errors[0]["reason"] == "invalid_component_entry"


def test_the_configuration_is_cached_for_a_minute(world: World) -> None:
    world.send(world.ticket())
    assert world.configs.reads == 1
    rotated = {**REGISTRY, COMP: {**REGISTRY[COMP], "token": "rotated-message-token"}}
    world.secrets.put_secret_value(SecretId=SECRET_ID, SecretString=json.dumps(rotated))
    world.monotonic.now += 59
    world.clock.now += 59
    assert world.send(world.ticket(TICKET2))[0] == 200  # the cached token still
    assert world.configs.reads == 1
    world.monotonic.now += 2
    world.clock.now += 2
    assert world.send(world.ticket())[1] == "bad_signature"  # the new token now
    assert world.send(world.ticket(token="rotated-message-token"))[0] == 200
    assert world.configs.reads == 2


def test_an_unreadable_registry_answers_503_and_a_cached_one_is_kept(world: World) -> None:
    broken = ComponentConfigs(world.secrets, "no-such-secret", clock=world.monotonic)
    handler = PushHandler(
        broken.lookup,
        DynamoDBNonceStore(world.dynamodb, TABLE, clock=world.clock),
        PushStore(world.dynamodb, TABLE),
        clock=world.clock,
    )
    answer = handler.handle(world.ticket())
    assert (answer.status, answer.body) == (503, "config_unavailable")
    assert world.items() == []
    world.send(world.ticket())  # the good one reads and caches the registry
    world.secrets.delete_secret(SecretId=SECRET_ID, ForceDeleteWithoutRecovery=True)
    world.monotonic.now += 120
    world.clock.now += 1
    assert world.send(world.ticket(TICKET2, create_time=NOW + 1)) == (200, "success")
    assert world.record(TICKET_PREFIX + COMP, "component_verify_ticket").value == TICKET2


def test_a_current_version_without_json_falls_back_to_the_previous(world: World) -> None:
    world.secrets.put_secret_value(SecretId=SECRET_ID, SecretString="{not json")
    assert world.send(world.ticket()) == (200, "success")
    assert world.configs.current().previous_version


# ------------------------------------------------------------------ DynamoDB failures


class FailingClient:
    """A DynamoDB client whose named operations fail ``times`` times."""

    def __init__(self, inner: Any, operation: str, times: int, code: str) -> None:
        self._inner, self._operation, self.left, self._code = inner, operation, times, code

    def __getattr__(self, name: str) -> Any:
        call = getattr(self._inner, name)
        if name != self._operation:
            return call

        def failing(**kwargs: Any) -> Any:
            if self.left > 0:
                self.left -= 1
                error = {"Error": {"Code": self._code, "Message": "Rate of requests exceeds"}}
                raise ClientError(error, name)  # type: ignore[arg-type]
            return call(**kwargs)

        return failing


def test_a_lost_write_is_made_good_when_wechat_pushes_again(world: World) -> None:
    flaky = FailingClient(
        world.dynamodb, "update_item", 1, "ProvisionedThroughputExceededException"
    )
    handler = PushHandler(
        world.configs.lookup,
        DynamoDBNonceStore(world.dynamodb, TABLE, clock=world.clock),
        PushStore(flaky, TABLE),  # type: ignore[arg-type]
        clock=world.clock,
    )
    event = world.ticket()
    first = handler.handle(event)
    assert (first.status, first.body) == (503, "store_unavailable")
    assert world.item(TICKET_PREFIX + COMP, "component_verify_ticket") is None
    assert len(nonces(world.items())) == 1  # the nonce was taken
    again = handler.handle(event)  # WeChat's retry: the same push
    assert (again.status, again.body) == (200, "success")
    assert world.record(TICKET_PREFIX + COMP, "component_verify_ticket").value == TICKET


def test_a_failing_nonce_write_answers_503_and_stores_nothing(world: World) -> None:
    flaky = FailingClient(world.dynamodb, "put_item", 1, "InternalServerError")
    handler = PushHandler(
        world.configs.lookup,
        DynamoDBNonceStore(flaky, TABLE, clock=world.clock),  # type: ignore[arg-type]
        PushStore(world.dynamodb, TABLE),
        clock=world.clock,
    )
    answer = handler.handle(world.ticket())
    assert (answer.status, answer.body) == (503, "store_unavailable")
    assert world.items() == []


# ------------------------------------------------------------------ no leaks


def test_no_secret_in_any_log_line_or_answer(
    world: World,
    logs: io.StringIO,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    accepted = world.ticket()
    events = [
        accepted,
        world.event(authorization_xml(COMP, "authorized", AUTHORIZER, NOW, CODE, NOW + 600)),
        world.event(authorization_xml(COMP, "updateauthorized", AUTHORIZER, NOW + 1, CODE2, 9)),
        world.event(authorization_xml(COMP, "unauthorized", AUTHORIZER, NOW + 2)),
        world.ticket(TICKET2, appid=OTHER, token=OTHER_TOKEN, key=OTHER_KEY),
        *[event for event, _, _ in _refusals(world, accepted)],
    ]
    answers = [world.send(event) for event in events]
    flaky = FailingClient(world.dynamodb, "update_item", 5, "AccessDeniedException")
    failing = PushHandler(
        world.configs.lookup,
        DynamoDBNonceStore(world.dynamodb, TABLE, clock=world.clock),
        PushStore(flaky, TABLE),  # type: ignore[arg-type]
        clock=world.clock,
    )
    answers.append(failing.handle(world.ticket(TICKET2, create_time=NOW + 5)).to_response()["body"])
    out, err = capsys.readouterr()
    records = "\n".join(
        f"{r.name} {r.getMessage()} {r.__dict__}" for r in caplog.records if r.name != "moto"
    )
    text = "\n".join([logs.getvalue(), out, err, records, json.dumps(answers)])
    assert "push accepted" in text
    assert "store_unavailable" in text
    request_values = set()
    for event in events:
        request_values.add(event["queryStringParameters"].get("msg_signature", "x" * 40))
        body = str(event.get("body", ""))
        if "<Encrypt><![CDATA[" in body:
            request_values.add(body.split("<Encrypt><![CDATA[")[1].split("]]>", maxsplit=1)[0])
    for secret in (*SECRETS, *request_values):
        assert secret not in text, secret[:12]


# ------------------------------------------------------------------ the Lambda entry point


def _load_app() -> Any:
    """functions/platform_callback/app.py under its own name (the refresher's is ``app``)."""
    spec = importlib.util.spec_from_file_location(
        "platform_callback_app", ROOT / "functions" / "platform_callback" / "app.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class Context:
    function_name = "PlatformCallbackFunction"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:PlatformCallback"
    memory_limit_in_mb = "256"
    aws_request_id = "00000000-0000-4000-8000-000000000000"

    def get_remaining_time_in_millis(self) -> int:
        return 4000


def test_lambda_handler_answers_a_function_url_event(
    world: World, logs: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOKEN_TABLE_NAME", TABLE)
    monkeypatch.setenv("WECHAT_APPS_SECRET_ID", SECRET_ID)
    app = _load_app()
    event = push_event(
        ticket_xml(COMP, NOW, TICKET), component_appid=COMP, token=TOKEN, aes_key=KEY
    )  # timestamped now, by the real clock, as the production handler reads it
    response = app.lambda_handler(event, Context())
    assert response == {
        "statusCode": 200,
        "headers": {"Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store"},
        "body": "success",
        "isBase64Encoded": False,
    }
    assert world.record(TICKET_PREFIX + COMP, "component_verify_ticket").value == TICKET
    refused = app.lambda_handler({"body": "x"}, Context())
    assert (refused["statusCode"], refused["body"]) == (400, "missing_parameter")
    [accepted, refusal] = push_lines(logs)
    assert accepted["function_name"] == "PlatformCallbackFunction"
    assert accepted["service"] == "wechat-token"
    assert accepted["info_type"] == "component_verify_ticket"
    assert refusal["message"] == "push refused: missing_parameter"


def test_build_handler_needs_the_table_and_the_secret() -> None:
    with pytest.raises(RuntimeError, match="TOKEN_TABLE_NAME and WECHAT_APPS_SECRET_ID"):
        build_handler({})
    with mock_aws():
        handler = build_handler({"TOKEN_TABLE_NAME": TABLE, "WECHAT_APPS_SECRET_ID": SECRET_ID})
    assert isinstance(handler, PushHandler)
