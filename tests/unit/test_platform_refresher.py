"""The refresher's side of third-party platforms, against the in-process simulator, moto's
DynamoDB (the template's table, component index included) and moto's KMS.

Tickets and authorization events are stored the way the callback stores them
(``platform_callback.store``); everything else is the production refresher.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import httpx
import pytest
from moto import mock_aws
from token_refresher.outcome import Outcome, Status
from token_refresher.service import RefreshService
from token_refresher.settings import Settings
from token_refresher.triggers import Authorize, Passive, Scheduled
from token_refresher.wiring import build_service
from wechat_token import AuthorizationRevokedError, TokenReader
from wechat_token.record import (
    ACCESS_TOKEN,
    CredentialKey,
    CredentialRecord,
    Kind,
    event_key,
    fingerprint,
)

from local_aws.resources import create_token_table
from local_aws.static_secrets import StaticSecrets
from simulator import ManualClock, WeChatSimulator
from tests.support import TableWriter

TABLE = "platform"
BASE = "http://wechat.sim"
COMP = "wxcomponent00000001"
SECRET = "component-secret-0123456789"
TOKEN = "message-token"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
MERCHANTS = [f"wxmerchant0000000{i}" for i in range(1, 4)]
START = 1_790_000_000.0


@dataclass
class Rig:
    sim: WeChatSimulator
    clock: ManualClock
    dynamodb: Any
    kms: Any
    key_id: str
    writer: TableWriter

    def service(self, **settings: Any) -> RefreshService:
        return build_service(
            Settings(
                table_name=TABLE,
                registry_secret_id="apps",
                wechat_api_base_url=BASE,
                refresh_token_kms_key_id=self.key_id,
                **settings,
            ),
            dynamodb=self.dynamodb,
            secrets=StaticSecrets(  # type: ignore[arg-type]
                {
                    COMP: {
                        "type": "component",
                        "secret": SECRET,
                        "token": TOKEN,
                        "encoding_aes_key": AES_KEY,
                    }
                }
            ),
            http=httpx.Client(transport=self.sim.transport()),
            clock=self.clock.now,
            sleep=lambda _: None,
            rng=random.Random(4),
            kms=self.kms,
        )

    def run(self, **settings: Any) -> list[Outcome]:
        return list(self.service(**settings).run(Scheduled()))

    def push_ticket(self) -> str:
        ticket = self.sim.platform.current_verify_ticket(COMP)
        assert ticket is not None
        self.writer.store_ticket(COMP, ticket, create_time=self.clock.now())
        return ticket

    def authorize(self, merchant: str) -> None:
        grant = self.sim.platform.authorize(COMP, merchant)
        self.writer.store_authorization(
            COMP,
            merchant,
            grant.info_type,
            create_time=self.clock.now(),
            code=grant.auth_code,
            code_expires_at=grant.expires_at,
        )

    def record(self, app_id: str, kind: str = ACCESS_TOKEN) -> CredentialRecord:
        item = self.dynamodb.get_item(
            TableName=TABLE, Key=CredentialKey(app_id, kind).item_key(), ConsistentRead=True
        ).get("Item")
        assert item, f"no record {app_id}/{kind}"
        return CredentialRecord.from_dynamodb(item)

    def reader(self) -> TokenReader:
        return TokenReader(TABLE, client=self.dynamodb, clock=self.clock.now)

    def business(self, token: str) -> int:
        answer = self.sim.handle("GET", "/cgi-bin/get_api_domain_ip", {"access_token": token})
        return int(json.loads(answer.body).get("errcode", 0))


@pytest.fixture
def rig() -> Iterator[Rig]:
    clock = ManualClock(START)
    sim = WeChatSimulator(clock, seed=9)
    sim.platform.add_component(COMP, SECRET, TOKEN, AES_KEY)
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        kms = boto3.client("kms", region_name="us-east-1")
        create_token_table(dynamodb, TABLE)
        key_id = kms.create_key(Description="refresh tokens")["KeyMetadata"]["KeyId"]
        yield Rig(sim, clock, dynamodb, kms, key_id, TableWriter(dynamodb, TABLE))


def app_id(merchant: str) -> str:
    return f"{COMP}:{merchant}"


def test_the_component_token_is_fetched_with_the_pushed_ticket_and_kept_across_pushes(
    rig: Rig,
) -> None:
    rig.push_ticket()
    [component] = rig.run()
    assert component.status is Status.REFRESHED
    stored = rig.record(COMP, Kind.COMPONENT_ACCESS_TOKEN)
    assert stored.value == rig.sim.platform.current_component_token(COMP)
    # A new ticket every 10 minutes does not refetch the component token.
    for _ in range(5):
        rig.clock.advance(600)
        rig.push_ticket()
        rig.run()
    assert rig.record(COMP, Kind.COMPONENT_ACCESS_TOKEN).value == stored.value
    assert rig.sim.stats()["platform"]["components"][COMP]["tokens_issued"] == 1


def test_without_a_valid_ticket_wechat_is_asked_to_push_again_at_most_every_10_minutes(
    rig: Rig,
) -> None:
    outcomes = rig.run()
    assert outcomes[0].status is Status.FAILED
    assert "verify_ticket" in (outcomes[0].error_message or "")
    rig.clock.advance(60)
    rig.run()
    starts = rig.sim.calls("/cgi-bin/component/api_start_push_ticket")
    assert starts == 1, f"{starts} restarts within a minute"
    rig.clock.advance(600)
    rig.run()
    assert rig.sim.calls("/cgi-bin/component/api_start_push_ticket") == 2


def test_an_authorization_is_exchanged_and_the_merchants_token_read_like_any_app(
    rig: Rig,
) -> None:
    rig.push_ticket()
    rig.run()
    rig.authorize(MERCHANTS[0])
    rig.run()
    record = rig.record(app_id(MERCHANTS[0]))
    assert record.component_appid == COMP
    assert record.refresh_token_cipher
    refresh = rig.sim.platform.refresh_tokens(COMP, MERCHANTS[0])[0]
    assert refresh not in json.dumps(rig.dynamodb.scan(TableName=TABLE)["Items"])
    assert record.refresh_token_fp == fingerprint(refresh)
    token = rig.reader().get(app_id(MERCHANTS[0]))
    assert rig.business(token) == 0
    # The event is processed: out of the pending index, code dropped.
    event = rig.record(event_key(COMP, MERCHANTS[0]).app_id, Kind.AUTHORIZATION)
    assert event.value is None
    assert event.component_appid is None


def test_authorizers_are_refreshed_with_the_refresh_token_wechat_returns(rig: Rig) -> None:
    rig.push_ticket()
    rig.run()
    for merchant in MERCHANTS:
        rig.authorize(merchant)
    rig.run()
    rig.sim.platform.force_refresh_token_rotation(COMP, MERCHANTS[1])
    rig.clock.advance(3500)
    rig.push_ticket()
    outcomes = {o.app_id: o for o in rig.run()}
    for merchant in MERCHANTS:
        assert outcomes[app_id(merchant)].status is Status.REFRESHED
        newest = rig.sim.platform.refresh_tokens(COMP, merchant)[0]
        assert rig.record(app_id(merchant)).refresh_token_fp == fingerprint(newest)
    # Six hours later (the rotated-away refresh token long dead) they still refresh.
    for _ in range(6):
        rig.clock.advance(3600)
        rig.push_ticket()
        rig.run()
    for merchant in MERCHANTS:
        token = rig.reader().get(app_id(merchant))
        assert rig.business(token) == 0


def test_a_crash_between_fetch_and_write_is_recovered_with_wechats_last_refresh_token(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig.push_ticket()
    rig.run()
    rig.authorize(MERCHANTS[0])
    rig.run()
    rig.sim.platform.force_refresh_token_rotation(COMP, MERCHANTS[0])
    rig.clock.advance(3500)
    rig.push_ticket()
    service = rig.service()
    real = service.store.update

    def crash_on_commit(key: CredentialKey, update: Any, **extra: Any) -> Any:
        if key.app_id == app_id(MERCHANTS[0]) and "ReturnValuesOnConditionCheckFailure" in extra:
            raise SystemExit("the Lambda was killed after WeChat answered")
        return real(key, update, **extra)

    monkeypatch.setattr(service.store, "update", crash_on_commit)
    with pytest.raises(SystemExit):
        service.run(Scheduled())
    monkeypatch.undo()
    # Well past the old refresh token's 5 minutes of overlap: 61023, then reconciliation.
    rig.clock.advance(1800)
    outcomes = {o.app_id: o for o in rig.run()}
    assert outcomes[app_id(MERCHANTS[0])].status is Status.REFRESHED
    newest = rig.sim.platform.refresh_tokens(COMP, MERCHANTS[0])[0]
    assert rig.record(app_id(MERCHANTS[0])).refresh_token_fp == fingerprint(newest)
    assert rig.sim.calls("/cgi-bin/component/api_get_authorizer_list") >= 1


def test_a_wiped_refresh_token_is_restored_by_reconciliation(rig: Rig) -> None:
    rig.push_ticket()
    rig.run()
    rig.authorize(MERCHANTS[0])
    rig.run()
    rig.dynamodb.update_item(
        TableName=TABLE,
        Key=CredentialKey(app_id(MERCHANTS[0])).item_key(),
        UpdateExpression="REMOVE refresh_token_cipher, refresh_token_fp, refresh_token_at",
    )
    rig.clock.advance(3500)
    rig.push_ticket()
    outcomes = {o.app_id: o for o in rig.run()}
    assert outcomes[app_id(MERCHANTS[0])].status is Status.REFRESHED
    assert rig.record(app_id(MERCHANTS[0])).refresh_token_cipher


def test_unauthorized_retires_the_merchant_and_consumers_are_told_why(rig: Rig) -> None:
    rig.push_ticket()
    rig.run()
    rig.authorize(MERCHANTS[0])
    rig.run()
    rig.clock.advance(60)
    assert rig.sim.platform.unauthorize(COMP, MERCHANTS[0])
    rig.writer.store_authorization(COMP, MERCHANTS[0], "unauthorized", create_time=rig.clock.now())
    rig.run()
    with pytest.raises(AuthorizationRevokedError, match="revoked"):
        rig.reader().get(app_id(MERCHANTS[0]))
    before = rig.sim.calls("/cgi-bin/component/api_authorizer_token")
    rig.clock.advance(7200)
    rig.push_ticket()
    outcomes = {o.app_id: o for o in rig.run()}
    assert app_id(MERCHANTS[0]) not in outcomes, "retired: out of the due index, never planned"
    assert rig.record(app_id(MERCHANTS[0])).due_at is None
    assert rig.sim.calls("/cgi-bin/component/api_authorizer_token") == before
    # A passive report on it changes nothing either.
    summary = rig.service().run(
        Passive(app_id(MERCHANTS[0]), stale="sha256:0000000000", errcode=40001)
    )
    assert summary.outcomes[0].status is Status.REVOKED


def test_an_operator_authorization_code_is_exchanged_at_once(rig: Rig) -> None:
    rig.push_ticket()
    rig.run()
    grant = rig.sim.platform.authorize(COMP, MERCHANTS[2])
    summary = rig.service().run(Authorize(COMP, grant.auth_code))
    assert summary.outcomes[0].app_id == app_id(MERCHANTS[2])
    assert summary.outcomes[0].status is Status.REFRESHED
    assert grant.auth_code not in json.dumps(summary.as_dict())
    assert rig.business(rig.reader().get(app_id(MERCHANTS[2]))) == 0


def test_no_refresh_token_or_code_appears_in_logs_or_outcomes(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    rig.push_ticket()
    rig.run()
    rig.authorize(MERCHANTS[0])
    outcomes = rig.run()
    rig.clock.advance(3500)
    rig.push_ticket()
    outcomes += rig.run()
    secrets = [
        *rig.sim.platform.refresh_tokens(COMP, MERCHANTS[0]),
        rig.sim.platform.current_component_token(COMP) or "",
        SECRET,
    ]
    text = caplog.text + repr(outcomes) + json.dumps([o.as_dict() for o in outcomes])
    for secret in secrets:
        assert secret
        assert secret not in text


def test_the_ticket_push_age_is_reported_and_the_last_good_ticket_kept_when_pushes_stop(
    rig: Rig,
) -> None:
    rig.push_ticket()
    summary = rig.service().run(Scheduled())
    assert summary.ticket_ages == (0,), "every scheduled run reports each platform's ticket age"
    # Three hours without a push: the component token is still renewed with the old ticket.
    for _ in range(3):
        rig.clock.advance(3600)
        summary = rig.service().run(Scheduled())
        [component] = summary
        assert component.status is Status.REFRESHED
    assert summary.ticket_ages == (3 * 3600,)
    rig.clock.advance(3600)
    [component] = rig.run()
    assert component.status is Status.REFRESHED, component.error_message
