"""Stable tokens, WeCom and JS-SDK tickets, against the in-process WeChat simulator."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import httpx
import pytest
from moto import mock_aws
from token_refresher.outcome import Status
from token_refresher.service import Outcome
from token_refresher.settings import Settings
from token_refresher.token_store import TokenStore
from token_refresher.wiring import build_service
from wechat_token import TokenReader, jsapi_signature
from wechat_token.jssdk import sign
from wechat_token.record import CredentialKey, CredentialRecord

from local_aws.resources import create_token_table
from simulator import STABLE_TOKEN, ManualClock, WeChatSimulator
from tests.support import StaticSecrets, parse_event

TABLE = "kinds"
BASE = "http://wechat.sim"
START = 1_790_000_000.0


@dataclass
class Rig:
    sim: WeChatSimulator
    clock: ManualClock
    registry: dict[str, Any]
    dynamodb: Any

    def run(self, event: dict[str, Any] | None = None, **settings: Any) -> list[Outcome]:
        service = build_service(
            Settings(
                table_name=TABLE,
                registry_secret_id="apps",
                wechat_api_base_url=BASE,
                wecom_api_base_url=BASE,
                **settings,
            ),
            dynamodb=self.dynamodb,
            secrets=StaticSecrets(self.registry),  # type: ignore[arg-type]
            http=httpx.Client(transport=self.sim.transport()),
            clock=self.clock.now,
            sleep=lambda _: None,
            rng=random.Random(3),
        )
        return service.run(parse_event(event or {}))

    def record(self, app_id: str, kind: str = "access_token") -> CredentialRecord:
        record = TokenStore(self.dynamodb, TABLE).find(CredentialKey(app_id, kind))
        assert record is not None
        return record

    def reader(self) -> TokenReader:
        return TokenReader(TABLE, client=self.dynamodb, clock=self.clock.now)


@pytest.fixture
def rig() -> Iterator[Rig]:
    clock = ManualClock(START)
    sim = WeChatSimulator(clock, seed=5)
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        create_token_table(dynamodb, TABLE)
        yield Rig(sim, clock, {}, dynamodb)


def test_a_stable_token_rotates_in_its_window_and_is_never_forced(rig: Rig) -> None:
    """Five hours of the 1-minute stable schedule: the token is renewed in normal mode in
    WeChat's last 5 minutes (old and new both valid), never with force_refresh."""
    rig.sim.add_app("wxstable", "stable-secret")
    rig.registry["wxstable"] = {"type": "stable", "secret": "stable-secret"}
    reader = rig.reader()
    outcomes, values = [], []
    for _ in range(5 * 60):
        outcomes += [outcome.outcome for outcome in rig.run({"types": ["stable"]})]
        reader.clear()
        token = reader.get("wxstable")
        assert rig.sim.token_status(token) == 0, "the stored stable token is always accepted"
        if not values or values[-1] != token:
            if values:  # the one it replaced still works: consumers switch at leisure
                assert rig.sim.token_status(values[-1]) == 0
            values.append(token)
        rig.clock.advance(60)
    stats = rig.sim.stats(include_log=False)["apps"]["wxstable"]["stable"]
    assert stats["force_rotations_today"] == 0
    assert stats["force_rejected"] == 0
    assert len(values) == 3, "issued, then renewed once every two hours"
    calls = rig.sim.calls(STABLE_TOKEN, "wxstable")
    assert calls <= 1 + 2 * 10, f"{calls} stable calls: a few per window"
    probes = 5 * 60 // 5  # the scheduled probe looks at the stored token every 300 s
    assert len(outcomes) < probes + 25, "the planner sends the app only when due or probed"


# WeChat's own force rules are under test here, not the refresher's trigger spacing.
NO_SPACING = {"force_min_interval_seconds": 0, "passive_min_interval_seconds": 0}


def test_forced_stable_refreshes_respect_the_daily_limit_and_spacing(rig: Rig) -> None:
    rig.sim.add_app("wxstable", "stable-secret")
    rig.registry["wxstable"] = {"type": "stable", "secret": "stable-secret"}
    rig.run()
    first = rig.record("wxstable")
    force = {"app_id": "wxstable", "force": True}
    rig.run(force, stable_force_daily_limit=2, **NO_SPACING)
    forced = rig.record("wxstable")
    assert forced.value != first.value
    assert forced.previous_valid_until == pytest.approx(forced.fetched_at or 0), (
        "a forced rotation ends the old stable token at once"
    )
    rig.clock.advance(10)
    rig.run(force, stable_force_daily_limit=2, **NO_SPACING)
    assert rig.record("wxstable").value == forced.value, "30 s apart: not forced again"
    rig.clock.advance(30)
    rig.run(force, stable_force_daily_limit=2, **NO_SPACING)
    second = rig.record("wxstable")
    assert second.value != forced.value
    assert second.forces_today(rig.clock.now()) == 2
    rig.clock.advance(60)
    rig.run(force, stable_force_daily_limit=2, **NO_SPACING)
    assert rig.record("wxstable").value == second.value, "daily limit reached: normal call"
    assert rig.sim.calls(STABLE_TOKEN, "wxstable") == 5


def test_two_wecom_apps_of_one_corp_never_share_a_record(rig: Rig) -> None:
    rig.sim.add_wecom_app("ww0123", "1000002", "agent2-secret")
    rig.sim.add_wecom_app("ww0123", "1000003", "agent3-secret")
    rig.registry.update(
        {
            "ww0123:1000002": {"type": "wecom", "corpid": "ww0123", "secret": "agent2-secret"},
            "ww0123:1000003": {"type": "wecom", "corpid": "ww0123", "secret": "agent3-secret"},
        }
    )
    rig.run()
    reader = rig.reader()
    two, three = reader.get("ww0123:1000002"), reader.get("ww0123:1000003")
    assert two != three
    assert two == rig.sim.current_wecom_token("ww0123", "1000002")
    assert three == rig.sim.current_wecom_token("ww0123", "1000003")


def test_a_jsapi_ticket_follows_the_token_it_was_fetched_with(rig: Rig) -> None:
    rig.sim.add_app("wxweb", "web-secret")
    rig.registry["wxweb"] = {"secret": "web-secret", "tickets": ["jsapi"]}
    outcomes = rig.run()
    assert [(o.kind, o.outcome) for o in outcomes] == [
        ("access_token", Status.REFRESHED),
        ("jsapi_ticket", Status.REFRESHED),
    ]
    token, ticket = rig.record("wxweb"), rig.record("wxweb", "jsapi_ticket")
    assert ticket.bound_to == token.fingerprint()
    rig.clock.advance(600)
    assert {o.outcome for o in rig.run()} <= {Status.NOT_DUE}, "probed at most, not renewed"
    rig.clock.advance(3000)
    rig.run()
    assert rig.record("wxweb", "jsapi_ticket").bound_to == rig.record("wxweb").fingerprint()
    # A forced token refresh renews the ticket too, since it is bound to the old token.
    rig.clock.advance(121)
    rig.run({"app_id": "wxweb", "force": True})
    renewed = rig.record("wxweb", "jsapi_ticket")
    assert renewed.bound_to == rig.record("wxweb").fingerprint()
    assert rig.sim.stats(include_log=False)["apps"]["wxweb"]["tickets_issued"]["jsapi"] == 3


def test_jsapi_signature_signs_with_the_stored_ticket(rig: Rig) -> None:
    rig.sim.add_app("wxweb", "web-secret")
    rig.registry["wxweb"] = {"secret": "web-secret", "tickets": ["jsapi"]}
    rig.run()
    ticket = rig.record("wxweb", "jsapi_ticket").value
    assert ticket is not None
    config = jsapi_signature(
        "https://example.com/page?x=1#section",
        app_id="wxweb",
        noncestr="abc",
        timestamp=1_700_000_000,
        reader=rig.reader(),
    )
    assert config == {
        "appId": "wxweb",
        "timestamp": 1_700_000_000,
        "nonceStr": "abc",
        "signature": sign(ticket, "abc", 1_700_000_000, "https://example.com/page?x=1"),
    }
    assert ticket not in json.dumps(config)


def test_the_signature_matches_wechats_documented_example() -> None:
    # The worked example in WeChat's JS-SDK documentation (附录1 JS-SDK使用权限签名算法).
    ticket = (
        "sM4AOVdWfPE4DxkXGEs8VMCPGGVi4C3VM0P37wVUCFvkVAy_90u5h9nbSlYy3-Sl-HhTdfl2fzFy1AOcHKP7qg"
    )
    signature = sign(ticket, "Wm3WZYTPz0wzccnW", 1414587457, "http://mp.weixin.qq.com?params=value")
    assert signature == "0f9de62fce790f9a083d5c99e95740ceb90c27ed"


def test_a_ticket_can_be_refreshed_by_name(rig: Rig) -> None:
    rig.sim.add_app("wxweb", "web-secret")
    rig.registry["wxweb"] = {"secret": "web-secret", "tickets": ["jsapi"]}
    rig.run()
    before = rig.record("wxweb", "jsapi_ticket").value
    [young] = rig.run({"app_id": "wxweb", "kind": "jsapi_ticket", "force": True})
    assert young.outcome == Status.RATE_LIMITED, "no trigger rotates a ticket this young"
    rig.clock.advance(121)
    [outcome] = rig.run({"app_id": "wxweb", "kind": "jsapi_ticket", "force": True})
    assert outcome.kind == "jsapi_ticket"
    assert outcome.outcome == Status.REFRESHED
    assert rig.record("wxweb", "jsapi_ticket").value != before
