"""The simulator's third-party platform (§8 of docs/wechat-token-facts.md): tickets and
their pushes, component and authorizer tokens, authorizations, the control API and CLI."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from platform_callback import (
    Authorized,
    ComponentConfig,
    InMemoryNonceStore,
    MessageCrypt,
    Push,
    Unauthorized,
    UpdateAuthorized,
    VerifyTicket,
    verify_push,
)

from simulator import (
    AUTHORIZER_LIST,
    AUTHORIZER_TOKEN,
    CLEAR_QUOTA,
    COMPONENT_TOKEN,
    MP_TICKET,
    QUERY_AUTH,
    START_PUSH_TICKET,
    ManualClock,
    SimulatorServer,
    WeChatSimulator,
    fingerprint,
)
from simulator.__main__ import main as simulator_main
from simulator.msgcrypt import PushKey
from tests.unit.test_simulator import _strings

REPO = Path(__file__).resolve().parents[2]
START = 1_699_977_600.0 + 10 * 3600  # 10:00 in WeChat's day (UTC+8)
COMP = "wxcomponent0000001"
COMP_SECRET = "component-secret-0123456789abcdef"
MSG_TOKEN = "platformMessageToken42"
AES_KEY = "PlatformEncodingAESKeyForTheSimulator012345"
OTHER = "wxcomponent0000002"
OTHER_SECRET = "other-component-secret-fedcba98"
OTHER_TOKEN = "otherMessageToken"
OTHER_KEY = "OtherPlatformEncodingAESKeyForTests01234567"
CALLBACK = "https://platform.example.test/wechat/events"
MERCHANT = "wxmerchant00000a01"
BUSINESS = "/cgi-bin/get_api_domain_ip"
LISTENING = re.compile(r"^simulator listening on (http://127\.0\.0\.1:(\d+))$")


class Receiver:
    """The platform's callback: verifies each push with platform_callback (an
    implementation independent of the simulator's) and answers ``success``."""

    def __init__(self, clock: ManualClock, answer: tuple[int, bytes] = (200, b"success")) -> None:
        self.clock = clock
        self.answer = answer
        self.configs = {
            COMP: ComponentConfig(COMP, MSG_TOKEN, AES_KEY),
            OTHER: ComponentConfig(OTHER, OTHER_TOKEN, OTHER_KEY),
        }
        self.nonces = InMemoryNonceStore(clock=clock.now)
        self.pushes: list[Push] = []
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        event = {
            "queryStringParameters": dict(request.url.params),
            "body": request.content.decode(),
            "isBase64Encoded": False,
        }
        self.pushes.append(verify_push(event, self.configs.get, self.nonces, self.clock.now()))
        return httpx.Response(self.answer[0], content=self.answer[1])

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self))

    def tickets(self) -> list[VerifyTicket]:
        return [p for p in self.pushes if isinstance(p, VerifyTicket)]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def sim(clock: ManualClock) -> WeChatSimulator:
    s = WeChatSimulator(clock, seed=11, server_offsets=[0.0])
    s.platform.add_component(COMP, COMP_SECRET, MSG_TOKEN, AES_KEY, CALLBACK)
    s.platform.refresh_rotation_probability = 0.0
    return s


@pytest.fixture
def receiver(sim: WeChatSimulator, clock: ManualClock) -> Iterator[Receiver]:
    r = Receiver(clock)
    with r.client() as client:
        sim.platform.push_client = client
        yield r
    sim.platform.push_client = None


def call(
    sim: WeChatSimulator,
    path: str,
    body: Any,
    *,
    token: str | None = None,
    name: str = "component_access_token",
    ip: str = "127.0.0.1",
    method: str = "POST",
) -> Any:
    query = {name: token} if token is not None else {}
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    answer = sim.handle(method, path, query, raw, ip)
    assert answer.status == 200
    return answer.json()


def errcode(data: Any) -> int:
    return int(data.get("errcode", 0))


def ticket_of(sim: WeChatSimulator, appid: str = COMP) -> str:
    ticket = sim.platform.current_verify_ticket(appid)
    assert ticket is not None
    return ticket


def component_token(sim: WeChatSimulator, ticket: str | None = None, **overrides: Any) -> Any:
    body = {
        "component_appid": COMP,
        "component_appsecret": COMP_SECRET,
        "component_verify_ticket": ticket if ticket is not None else ticket_of(sim),
        **overrides,
    }
    return call(sim, COMPONENT_TOKEN, body)


def ctoken(sim: WeChatSimulator) -> str:
    data = component_token(sim)
    assert "component_access_token" in data, data
    return str(data["component_access_token"])


def query_auth(sim: WeChatSimulator, token: str, code: str, **kw: Any) -> Any:
    return call(
        sim, QUERY_AUTH, {"component_appid": COMP, "authorization_code": code}, token=token, **kw
    )


def refresh(
    sim: WeChatSimulator, token: str, refresh_token: str, authorizer: str = MERCHANT
) -> Any:
    body = {
        "component_appid": COMP,
        "authorizer_appid": authorizer,
        "authorizer_refresh_token": refresh_token,
    }
    return call(sim, AUTHORIZER_TOKEN, body, token=token)


def authorized(sim: WeChatSimulator, authorizer: str = MERCHANT) -> tuple[str, dict[str, Any]]:
    """Authorize, exchange the code: (component token, authorization_info)."""
    token = ctoken(sim)
    grant = sim.platform.authorize(COMP, authorizer)
    info = query_auth(sim, token, grant.auth_code)["authorization_info"]
    return token, info


def use(sim: WeChatSimulator, token: str, path: str = BUSINESS, ip: str = "127.0.0.1") -> int:
    return errcode(sim.handle("GET", path, {"access_token": token}, b"", ip).json())


# ------------------------------------------------------------ verify tickets


def test_a_ticket_every_ten_minutes_each_different(
    sim: WeChatSimulator, clock: ManualClock, receiver: Receiver
) -> None:
    first = sim.platform.deliver_due_pushes()
    assert [(d.info_type, d.ok, d.status) for d in first] == [
        ("component_verify_ticket", True, 200)
    ]
    clock.advance(599)
    assert sim.platform.deliver_due_pushes() == []
    clock.advance(1)
    assert len(sim.platform.deliver_due_pushes()) == 1
    for _ in range(10):
        clock.advance(600)
        assert len(sim.platform.deliver_due_pushes()) == 1
    tickets = receiver.tickets()
    assert len(tickets) == 12
    assert len({t.ticket for t in tickets}) == 12
    assert [t.create_time for t in tickets] == [int(START + 600 * i) for i in range(12)]
    assert all(t.component_appid == COMP for t in tickets)
    assert tickets[-1].ticket == sim.platform.current_verify_ticket(COMP)
    assert sim.stats()["platform"]["components"][COMP]["tickets_issued"] == 12


def test_a_ticket_is_valid_for_twelve_hours(sim: WeChatSimulator, clock: ManualClock) -> None:
    first = ticket_of(sim)
    sim.platform.stop_pushes(COMP)  # no newer ticket: the old one must carry the platform
    clock.advance(12 * 3600 - 1)
    assert sim.platform.verify_ticket_status(COMP, first) == 0
    assert "component_access_token" in component_token(sim, first)
    clock.advance(1)
    assert sim.platform.verify_ticket_status(COMP, first) == 61005
    answer = component_token(sim, first)
    assert answer["errcode"] == 61005
    assert "component ticket is expired" in answer["errmsg"]
    assert component_token(sim, "ticket@@@never-issued")["errcode"] == 61006
    assert component_token(sim, "")["errcode"] == 61006


def test_older_tickets_stay_valid_and_missed_pushes_coalesce(
    sim: WeChatSimulator, clock: ManualClock, receiver: Receiver
) -> None:
    first = ticket_of(sim)
    clock.advance(3600)
    deliveries = sim.platform.deliver_due_pushes()
    assert len(deliveries) == 1, "only the newest undelivered ticket is pushed"
    assert receiver.tickets()[-1].create_time == int(START + 3600)
    stats = sim.stats()["platform"]["components"][COMP]
    assert stats["tickets_issued"] == 7
    assert stats["tickets_superseded"] == 6
    assert "component_access_token" in component_token(sim, first), "still under 12 h old"
    clock.advance(7 * 86400)
    assert len(sim.platform.deliver_due_pushes()) == 1  # a week later: one push, no backlog
    assert component_token(sim, first)["errcode"] in (61005, 61006)


def test_an_outage_stops_tickets_until_pushes_restart(
    sim: WeChatSimulator, clock: ManualClock, receiver: Receiver
) -> None:
    sim.platform.deliver_due_pushes()
    last = receiver.tickets()[-1].ticket
    sim.platform.stop_pushes(COMP)
    clock.advance(6 * 3600)
    assert sim.platform.deliver_due_pushes() == []
    assert sim.platform.current_verify_ticket(COMP) == last
    assert "component_access_token" in component_token(sim, last), "keep the last good one"
    body = {"component_appid": COMP, "component_secret": COMP_SECRET}
    assert call(sim, START_PUSH_TICKET, body) == {"errcode": 0, "errmsg": "ok"}
    assert len(sim.platform.deliver_due_pushes()) == 1, "a ticket at once"
    assert receiver.tickets()[-1].ticket != last
    clock.advance(600)
    assert len(sim.platform.deliver_due_pushes()) == 1, "then every 10 minutes again"
    bad = call(sim, START_PUSH_TICKET, {"component_appid": COMP, "component_secret": "nope"})
    assert bad["errcode"] == 40125
    assert (
        call(sim, START_PUSH_TICKET, {"component_appid": "wxnobody", "component_secret": "x"})[
            "errcode"
        ]
        == 61011
    )


def test_pushes_wait_for_a_callback_url(sim: WeChatSimulator, clock: ManualClock) -> None:
    sim.platform.add_component(OTHER, OTHER_SECRET, OTHER_TOKEN, OTHER_KEY)  # no URL yet
    receiver = Receiver(clock)
    with receiver.client() as client:
        sim.platform.authorize(OTHER, MERCHANT)
        sim.platform.deliver_due_pushes(client)
        assert {p.component_appid for p in receiver.pushes} == {COMP}
        assert sim.platform.pending_pushes(OTHER) == ["component_verify_ticket", "authorized"]
        sim.platform.set_callback_url(OTHER, CALLBACK)
        sim.platform.deliver_due_pushes(client)
    kinds = [(type(p).__name__, p.component_appid) for p in receiver.pushes]
    assert ("VerifyTicket", OTHER) in kinds
    assert ("Authorized", OTHER) in kinds
    assert sim.platform.pending_pushes(OTHER) == []


# ------------------------------------------------------------ pushes on the wire


def test_pushes_are_encrypted_and_signed_as_wechat_does(
    sim: WeChatSimulator, receiver: Receiver
) -> None:
    sim.platform.deliver_due_pushes()
    request = receiver.requests[0]
    assert request.method == "POST"
    assert str(request.url).startswith(CALLBACK + "?")
    assert request.headers["content-type"].startswith("text/xml")
    params = dict(request.url.params)
    assert params["encrypt_type"] == "aes"
    body = request.content.decode()
    assert f"<AppId><![CDATA[{COMP}]]></AppId>" in body
    encrypt = re.search(r"<Encrypt><!\[CDATA\[([^\]]+)\]\]></Encrypt>", body)
    assert encrypt is not None
    value = encrypt.group(1)
    assert ticket_of(sim) not in body, "the ticket travels encrypted"
    # An independent check of both signatures and the decryption.
    plain = "".join(sorted([MSG_TOKEN, params["timestamp"], params["nonce"]]))
    assert params["signature"] == hashlib.sha1(plain.encode()).hexdigest()
    full = "".join(sorted([MSG_TOKEN, params["timestamp"], params["nonce"], value]))
    assert params["msg_signature"] == hashlib.sha1(full.encode()).hexdigest()
    message, app_id = MessageCrypt(MSG_TOKEN, AES_KEY, COMP).decrypt(value)
    assert app_id == COMP
    assert f"<ComponentVerifyTicket><![CDATA[{ticket_of(sim)}]]></ComponentVerifyTicket>" in message
    assert len(base64.b64decode(value)) % 32 == 0


def test_the_simulators_cipher_matches_the_published_vector() -> None:
    """WxJava's WxCryptUtilTest vector (see test_platform_crypto): the simulator's own
    implementation gives the published ciphertext."""
    key = PushKey("pamtest", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG")
    assert key.seal("wxb11529c136998cb6", "我是中文abcd123", b"aaaabbbbccccdddd") == (
        "jn1L23DB+6ELqJ+6bruv21Y6MD7KeIfP82D6gU39rmkgczbWwt5+3bnyg5K55bgVtVzd832WzZGMhkP72vVOfg=="
    )
    assert repr(key) == "PushKey(<hidden>)"
    with pytest.raises(ValueError, match="43"):
        PushKey("t", "short")
    with pytest.raises(ValueError, match="token"):
        PushKey("", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG")
    with pytest.raises(ValueError, match="16 bytes"):
        key.seal("wx", "m", b"short")


def test_failed_deliveries_and_retries(sim: WeChatSimulator, clock: ManualClock) -> None:
    down = Receiver(clock, answer=(502, b"bad gateway"))
    with down.client() as client:
        sim.platform.authorize(COMP, MERCHANT)
        first = sim.platform.deliver_due_pushes(client)
        assert [(d.info_type, d.ok, d.status, d.attempt) for d in first] == [
            ("component_verify_ticket", False, 502, 1),
            ("authorized", False, 502, 1),
        ]
        assert sim.platform.pending_pushes(COMP) == ["authorized"], "tickets are not retried"
        assert [d.attempt for d in sim.platform.deliver_due_pushes(client)] == [2]
        assert [d.attempt for d in sim.platform.deliver_due_pushes(client)] == [3]
        assert sim.platform.deliver_due_pushes(client) == [], "dropped after 3 attempts"
    wrong = Receiver(clock, answer=(200, b"ok"))
    with wrong.client() as client:
        sim.platform.unauthorize(COMP, MERCHANT)
        assert [d.ok for d in sim.platform.deliver_due_pushes(client)] == [False]

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with httpx.Client(transport=httpx.MockTransport(refuse)) as client:
        clock.advance(600)
        failed = sim.platform.deliver_due_pushes(client)
    assert [(d.info_type, d.attempt, d.status, d.error) for d in failed] == [
        ("unauthorized", 2, None, "ConnectError"),  # the retry comes first
        ("component_verify_ticket", 1, None, "ConnectError"),
    ]
    assert len(sim.platform.deliveries()) == 7


def test_a_callback_that_raises_keeps_the_unsent_pushes(sim: WeChatSimulator) -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("a bug in the callback")

    sim.platform.authorize(COMP, MERCHANT)
    with httpx.Client(transport=httpx.MockTransport(broken)) as client, pytest.raises(RuntimeError):
        sim.platform.deliver_due_pushes(client)
    assert sim.platform.pending_pushes(COMP) == ["component_verify_ticket", "authorized"]


def test_the_default_client_reaches_a_real_callback(
    sim: WeChatSimulator, clock: ManualClock
) -> None:
    """With no client given, deliveries use a real HTTP client (here: to a port where
    nothing listens, so the transport error is recorded)."""
    sim.platform.set_callback_url(COMP, "http://127.0.0.1:9/unreachable")
    [delivery] = sim.platform.deliver_due_pushes()
    assert delivery.status is None
    assert delivery.error in {"ConnectError", "ConnectTimeout"}


# ------------------------------------------------------------ component tokens


def test_component_token_errors(sim: WeChatSimulator) -> None:
    ticket = ticket_of(sim)
    assert errcode(component_token(sim, component_appsecret="wrong")) == 40125
    assert errcode(component_token(sim, component_appid="wxnobody")) == 61011
    assert errcode(component_token(sim, component_appid="")) == 41002
    assert errcode(component_token(sim, component_appsecret="")) == 41004
    assert errcode(call(sim, COMPONENT_TOKEN, b"{not json")) == 47001
    get = sim.handle("GET", COMPONENT_TOKEN, {}, b"").json()
    assert get["errcode"] == 43002
    assert re.search(r" rid: [0-9a-f-]+$", get["errmsg"])
    assert "component_access_token" in component_token(sim, ticket)


def test_component_ip_whitelist_and_faults(sim: WeChatSimulator) -> None:
    sim.platform.add_component(
        COMP, COMP_SECRET, MSG_TOKEN, AES_KEY, CALLBACK, allowed_ips=["203.0.113.0/24"]
    )
    body = {
        "component_appid": COMP,
        "component_appsecret": COMP_SECRET,
        "component_verify_ticket": ticket_of(sim),
    }
    refused = call(sim, COMPONENT_TOKEN, body, ip="198.51.100.7")
    assert refused["errcode"] == 61004
    assert "198.51.100.7" in refused["errmsg"]
    token = call(sim, COMPONENT_TOKEN, body, ip="203.0.113.9")["component_access_token"]
    grant = sim.platform.authorize(COMP, MERCHANT)
    assert errcode(query_auth(sim, token, grant.auth_code, ip="198.51.100.7")) == 61004
    info = query_auth(sim, token, grant.auth_code, ip="203.0.113.9")["authorization_info"]
    authorizer_token = info["authorizer_access_token"]
    assert use(sim, authorizer_token, ip="198.51.100.7") == 61004, "business calls too"
    assert use(sim, authorizer_token, ip="203.0.113.9") == 0
    # The fault mechanism reaches component calls by component appid.
    sim.add_fault("errcode", errcode=-1, endpoint=COMPONENT_TOKEN, appid=COMP, count=1)
    sim.add_fault("errcode", errcode=45009, endpoint=COMPONENT_TOKEN, appid=OTHER)
    assert call(sim, COMPONENT_TOKEN, body, ip="203.0.113.9")["errcode"] == -1
    assert "component_access_token" in call(sim, COMPONENT_TOKEN, body, ip="203.0.113.9")
    sim.clear_faults()
    sim.add_fault("errcode", errcode=61004, endpoint=AUTHORIZER_TOKEN, appid=COMP, count=1)
    answer = refresh(sim, token, info["authorizer_refresh_token"])
    assert answer["errcode"] == 61004


def test_component_token_daily_quota(sim: WeChatSimulator, clock: ManualClock) -> None:
    sim.platform.add_component(COMP, COMP_SECRET, MSG_TOKEN, AES_KEY, CALLBACK, daily_quota=3)
    for _ in range(3):
        assert "component_access_token" in component_token(sim)
    assert errcode(component_token(sim)) == 45009
    clock.advance(14 * 3600)  # past midnight in WeChat's day
    assert "component_access_token" in component_token(sim)


def test_clear_quota(sim: WeChatSimulator) -> None:
    sim.platform.add_component(COMP, COMP_SECRET, MSG_TOKEN, AES_KEY, CALLBACK, daily_quota=1)
    component_token(sim)
    assert errcode(component_token(sim)) == 45009
    body = {"component_appid": COMP, "appsecret": COMP_SECRET}
    assert call(sim, CLEAR_QUOTA, body) == {"errcode": 0, "errmsg": "ok"}
    assert "component_access_token" in component_token(sim)
    assert errcode(call(sim, CLEAR_QUOTA, {**body, "appsecret": "wrong"})) == 40125
    assert errcode(call(sim, CLEAR_QUOTA, {**body, "appid": "wxnever"})) == 61003
    for _ in range(9):
        assert errcode(call(sim, CLEAR_QUOTA, body)) == 0
    assert errcode(call(sim, CLEAR_QUOTA, body)) == 48006, "10 resets a month"


def test_component_tokens_follow_the_two_live_tokens_rule(
    sim: WeChatSimulator, clock: ManualClock
) -> None:
    first = ctoken(sim)
    second = ctoken(sim)
    assert first != second
    assert sim.platform.component_token_status(first) == 0, "the grace"
    clock.advance(300)
    assert sim.platform.component_token_status(first) == 40001
    assert sim.platform.component_token_status(second) == 0
    third = ctoken(sim)
    assert sim.platform.component_token_status(third) == 0
    ctoken(sim)
    assert sim.platform.component_token_status(second) == 40001, "evicted by a third fetch"
    assert sim.platform.current_component_token(COMP) != third
    clock.advance(7200)
    assert (
        sim.platform.component_token_status(sim.platform.current_component_token(COMP) or "")
        == 42001
    )


def test_component_and_business_tokens_do_not_mix(sim: WeChatSimulator) -> None:
    sim.add_app("wxplain00000000001", "plain-secret")
    params = {
        "grant_type": "client_credential",
        "appid": "wxplain00000000001",
        "secret": "plain-secret",
    }
    plain = sim.handle("GET", "/cgi-bin/token", params, b"").json()["access_token"]
    token = ctoken(sim)
    assert use(sim, token) == 61015
    assert (
        errcode(sim.handle("GET", MP_TICKET, {"access_token": token, "type": "jsapi"}).json())
        == 61015
    )
    grant = sim.platform.authorize(COMP, MERCHANT)
    assert errcode(query_auth(sim, plain, grant.auth_code)) == 61014
    assert errcode(query_auth(sim, "never-issued", grant.auth_code)) == 40014
    assert errcode(query_auth(sim, "", grant.auth_code, name="component_access_token")) == 41001
    # Both spellings of the token parameter are accepted.
    info = query_auth(sim, token, grant.auth_code, name="access_token")["authorization_info"]
    assert info["authorizer_appid"] == MERCHANT


# ------------------------------------------------------------ authorization codes


def test_query_auth_answers_authorization_info(sim: WeChatSimulator) -> None:
    token = ctoken(sim)
    grant = sim.platform.authorize(COMP, MERCHANT, func_ids=[1, 15, 4])
    assert grant.info_type == "authorized"
    assert grant.auth_code.startswith("queryauthcode@@@")
    assert grant.auth_code not in repr(grant)
    info = query_auth(sim, token, grant.auth_code)["authorization_info"]
    assert info["authorizer_appid"] == MERCHANT
    assert info["expires_in"] == 7200
    assert info["authorizer_refresh_token"].startswith("refreshtoken@@@")
    assert info["func_info"] == [{"funcscope_category": {"id": i}} for i in (1, 15, 4)]
    assert use(sim, info["authorizer_access_token"]) == 0, "accepted by business APIs"
    ticket = sim.handle(
        "GET", MP_TICKET, {"access_token": info["authorizer_access_token"], "type": "jsapi"}
    ).json()
    assert ticket["errcode"] == 0
    assert ticket["ticket"]
    assert sim.stats()["platform"]["components"][COMP]["authorizers"][MERCHANT][
        "tickets_issued"
    ] == {"jsapi": 1}
    assert sim.platform.current_authorizer_token(COMP, MERCHANT) == info["authorizer_access_token"]


def test_a_code_is_single_use(sim: WeChatSimulator) -> None:
    token = ctoken(sim)
    grant = sim.platform.authorize(COMP, MERCHANT)
    assert "authorization_info" in query_auth(sim, token, grant.auth_code)
    again = query_auth(sim, token, grant.auth_code)
    assert again["errcode"] == 61009
    assert "code is invalid" in again["errmsg"]
    assert errcode(query_auth(sim, token, "queryauthcode@@@made-up")) == 61009
    assert errcode(query_auth(sim, token, "")) == 41008


def test_a_code_expires_after_ten_minutes(sim: WeChatSimulator, clock: ManualClock) -> None:
    token = ctoken(sim)
    grant = sim.platform.authorize(COMP, MERCHANT)
    assert grant.expires_at == START + 600
    late = sim.platform.authorize(COMP, "wxmerchant00000a02")
    clock.advance(599)
    assert "authorization_info" in query_auth(sim, token, late.auth_code)
    clock.advance(1)
    assert errcode(query_auth(sim, token, grant.auth_code)) == 61010


def test_a_code_of_another_platform_or_a_revoked_authorization(sim: WeChatSimulator) -> None:
    sim.platform.add_component(OTHER, OTHER_SECRET, OTHER_TOKEN, OTHER_KEY, CALLBACK)
    token = ctoken(sim)
    foreign = sim.platform.authorize(OTHER, MERCHANT)
    assert errcode(query_auth(sim, token, foreign.auth_code)) == 61009
    body = {"component_appid": OTHER, "authorization_code": foreign.auth_code}
    assert errcode(call(sim, QUERY_AUTH, body, token=token)) == 61011, "not its token"
    grant = sim.platform.authorize(COMP, MERCHANT)
    sim.platform.unauthorize(COMP, MERCHANT)
    assert errcode(query_auth(sim, token, grant.auth_code)) == 61009


# ------------------------------------------------------------ authorizer tokens


def test_authorizer_tokens_follow_the_two_live_tokens_rule(
    sim: WeChatSimulator, clock: ManualClock
) -> None:
    token, info = authorized(sim)
    first = info["authorizer_access_token"]
    rt = info["authorizer_refresh_token"]
    second = refresh(sim, token, rt)
    assert second["expires_in"] == 7200
    assert second["authorizer_refresh_token"] == rt, "no rotation by default here"
    assert use(sim, first) == 0, "the grace"
    clock.advance(300)
    assert use(sim, first) == 40001
    third = refresh(sim, token, rt)["authorizer_access_token"]
    refresh(sim, token, rt)
    assert use(sim, second["authorizer_access_token"]) == 40001, "evicted"
    assert use(sim, third) == 0


def test_refresh_token_rotation_keeps_the_old_one_five_minutes(
    sim: WeChatSimulator, clock: ManualClock
) -> None:
    token, info = authorized(sim)
    old = info["authorizer_refresh_token"]
    sim.platform.force_refresh_token_rotation(COMP, MERCHANT)
    rotated = refresh(sim, token, old)
    new = rotated["authorizer_refresh_token"]
    assert new != old
    assert sim.platform.refresh_tokens(COMP, MERCHANT) == [new, old]
    clock.advance(299)
    overlap = refresh(sim, token, old)
    assert "authorizer_access_token" in overlap, "the old one still works"
    assert overlap["authorizer_refresh_token"] == new, "and the answer names the new one"
    clock.advance(1)
    expired = refresh(sim, token, old)
    assert expired["errcode"] == 61023
    assert "refresh_token is invalid" in expired["errmsg"]
    assert sim.platform.refresh_tokens(COMP, MERCHANT) == [new]
    # Two rotations in a row: the first token is gone at once.
    sim.platform.force_refresh_token_rotation(COMP, MERCHANT)
    newer = refresh(sim, token, new)["authorizer_refresh_token"]
    sim.platform.force_refresh_token_rotation(COMP, MERCHANT)
    newest = refresh(sim, token, newer)["authorizer_refresh_token"]
    assert errcode(refresh(sim, token, new)) == 61023
    assert "authorizer_access_token" in refresh(sim, token, newer)
    assert "authorizer_access_token" in refresh(sim, token, newest)


def test_rotation_is_seeded_and_sometimes_happens(clock: ManualClock) -> None:
    def rotations(seed: int) -> list[bool]:
        sim = WeChatSimulator(clock, seed=seed)
        sim.platform.add_component(COMP, COMP_SECRET, MSG_TOKEN, AES_KEY, CALLBACK)
        sim.platform.refresh_rotation_probability = 0.3
        token, info = authorized(sim)
        current = info["authorizer_refresh_token"]
        seen = []
        for _ in range(40):
            answer = refresh(sim, token, current)
            seen.append(answer["authorizer_refresh_token"] != current)
            current = answer["authorizer_refresh_token"]
        return seen

    first = rotations(3)
    assert first == rotations(3)
    assert 2 <= sum(first) <= 30
    assert first != rotations(4)


def test_authorizer_token_refusals(sim: WeChatSimulator) -> None:
    token, info = authorized(sim)
    assert errcode(refresh(sim, token, "refreshtoken@@@guessed")) == 61023
    assert errcode(refresh(sim, token, "")) == 61023
    assert errcode(refresh(sim, token, info["authorizer_refresh_token"], "wxstranger")) == 61003
    assert errcode(refresh(sim, token, info["authorizer_refresh_token"], "")) == 41002
    body = {
        "component_appid": "wxnobody",
        "authorizer_appid": MERCHANT,
        "authorizer_refresh_token": "x",
    }
    assert errcode(call(sim, AUTHORIZER_TOKEN, body, token=token)) == 61011
    assert errcode(call(sim, AUTHORIZER_TOKEN, body, token=token, method="GET")) == 43002
    assert errcode(call(sim, AUTHORIZER_TOKEN, b"[1, 2]", token=token)) == 47001
    sim.platform.authorizer_token_daily_quota = 2
    rt = info["authorizer_refresh_token"]
    assert "authorizer_access_token" in refresh(sim, token, rt)
    assert "authorizer_access_token" in refresh(sim, token, rt)
    assert errcode(refresh(sim, token, rt)) == 45009
    body = {"component_appid": COMP, "appsecret": COMP_SECRET, "appid": MERCHANT}
    assert errcode(call(sim, CLEAR_QUOTA, body)) == 0
    assert "authorizer_access_token" in refresh(sim, token, rt)


# ------------------------------------------------------------ the authorizer list


def test_authorizer_list_pages(sim: WeChatSimulator, clock: ManualClock) -> None:
    token = ctoken(sim)
    merchants = [f"wxmerchant0000{i:04d}" for i in range(7)]
    for merchant in merchants:
        sim.platform.authorize(COMP, merchant)
        clock.advance(1)
    sim.platform.unauthorize(COMP, merchants[3])

    def page(offset: int, count: int) -> Any:
        body = {"component_appid": COMP, "offset": offset, "count": count}
        return call(sim, AUTHORIZER_LIST, body, token=token)

    listed = [page(o, 2) for o in (0, 2, 4, 6)]
    assert {p["total_count"] for p in listed} == {6}
    appids = [item["authorizer_appid"] for p in listed for item in p["list"]]
    assert appids == [m for m in merchants if m != merchants[3]]
    item = listed[0]["list"][0]
    assert set(item) == {"authorizer_appid", "refresh_token", "auth_time"}
    assert item["auth_time"] == int(START)
    assert sim.platform.refresh_tokens(COMP, merchants[0]) == [item["refresh_token"]]
    assert page(0, 500)["total_count"] == 6
    assert page(100, 10)["list"] == []
    for offset, count in ((0, 0), (0, 501), (-1, 5), (0, True)):
        assert errcode(page(offset, count)) == 40097
    assert (
        errcode(call(sim, AUTHORIZER_LIST, {"component_appid": COMP, "offset": 0}, token=token))
        == 40097
    )


def test_the_authorizer_list_recovers_a_lost_refresh_token(sim: WeChatSimulator) -> None:
    """WxJava #1119's way out: a platform that lost its refresh tokens re-reads them."""
    token, info = authorized(sim)
    body = {"component_appid": COMP, "offset": 0, "count": 500}
    [entry] = call(sim, AUTHORIZER_LIST, body, token=token)["list"]
    assert entry["refresh_token"] == info["authorizer_refresh_token"]
    assert "authorizer_access_token" in refresh(sim, token, entry["refresh_token"])


# ------------------------------------------------------------ (un)authorization pushes


def test_authorize_update_and_unauthorize_push_events(
    sim: WeChatSimulator, clock: ManualClock, receiver: Receiver
) -> None:
    token = ctoken(sim)
    grant = sim.platform.authorize(COMP, MERCHANT)
    sim.platform.deliver_due_pushes()
    event = [p for p in receiver.pushes if isinstance(p, Authorized)][-1]
    assert event.authorizer_appid == MERCHANT
    assert event.authorization_code == grant.auth_code
    assert event.code_expires_at == int(START + 600)
    info = query_auth(sim, token, event.authorization_code)["authorization_info"]
    rt = info["authorizer_refresh_token"]

    update = sim.platform.authorize(COMP, MERCHANT, func_ids=[1])
    assert update.info_type == "updateauthorized"
    sim.platform.deliver_due_pushes()
    changed = receiver.pushes[-1]
    assert isinstance(changed, UpdateAuthorized)
    assert (
        query_auth(sim, token, changed.authorization_code)["authorization_info"][
            "authorizer_refresh_token"
        ]
        == rt
    ), "the refresh token lives until the merchant revokes"

    assert sim.platform.unauthorize(COMP, MERCHANT)
    assert not sim.platform.unauthorize(COMP, MERCHANT)
    sim.platform.deliver_due_pushes()
    assert receiver.pushes[-1] == Unauthorized(COMP, MERCHANT, int(START))
    assert use(sim, info["authorizer_access_token"]) == 40001, "tokens revoked"
    assert errcode(refresh(sim, token, rt)) == 61023, "refresh token revoked"
    assert sim.platform.refresh_tokens(COMP, MERCHANT) == []
    body = {"component_appid": COMP, "offset": 0, "count": 10}
    assert call(sim, AUTHORIZER_LIST, body, token=token)["total_count"] == 0

    clock.advance(60)
    again = sim.platform.authorize(COMP, MERCHANT)
    assert again.info_type == "authorized"
    renewed = query_auth(sim, token, again.auth_code)["authorization_info"]
    assert renewed["authorizer_refresh_token"] != rt
    assert errcode(refresh(sim, token, rt)) == 61023


def test_end_to_end_with_the_callback(sim: WeChatSimulator, receiver: Receiver) -> None:
    """Ticket push -> component token -> authorization push -> code exchange -> business."""
    sim.platform.deliver_due_pushes()
    [ticket] = receiver.tickets()
    answer = component_token(sim, ticket.ticket)
    token = answer["component_access_token"]
    assert answer["expires_in"] == 7200
    sim.platform.authorize(COMP, MERCHANT)
    sim.platform.deliver_due_pushes()
    event = receiver.pushes[-1]
    assert isinstance(event, Authorized)
    info = query_auth(sim, token, event.authorization_code)["authorization_info"]
    data = sim.handle("GET", BUSINESS, {"access_token": info["authorizer_access_token"]}).json()
    assert data["ip_list"]
    assert sim.calls(QUERY_AUTH, COMP, errcode=0) == 1
    assert sim.calls(COMPONENT_TOKEN, COMP) == 1


# ------------------------------------------------------------ secrecy and stats


def test_no_secret_in_stats_logs_or_state(sim: WeChatSimulator, receiver: Receiver) -> None:
    token, info = authorized(sim)
    sim.platform.deliver_due_pushes()
    component_token(sim, component_appsecret="wrong-" + COMP_SECRET)
    stats = json.dumps(sim.stats())
    log = repr(sim.call_log) + json.dumps([r.to_dict() for r in sim.call_log])
    deliveries = repr(sim.platform.deliveries())
    for secret in (COMP_SECRET, MSG_TOKEN, AES_KEY, token, info["authorizer_refresh_token"]):
        assert secret not in stats
        assert secret not in log
        assert secret not in deliveries
    assert ticket_of(sim) not in stats
    reachable = list(_strings(sim, set()))
    assert not any(COMP_SECRET in s for s in reachable), "the app secret is only hashed"
    assert repr(sim.platform._components[COMP].key) == "PushKey(<hidden>)"
    platform = sim.stats()["platform"]["components"][COMP]
    assert platform["live_token_fps"] == [fingerprint(token)]
    assert platform["authorizers"][MERCHANT]["refresh_token_fp"] == fingerprint(
        info["authorizer_refresh_token"]
    )


# ------------------------------------------------------------ control API and CLI


def test_control_api_in_process(sim: WeChatSimulator, clock: ManualClock) -> None:
    def control(path: str, body: Any) -> Any:
        answer = sim.handle("POST", path, {}, json.dumps(body).encode())
        return answer.status, answer.json()

    component = {
        "component_appid": OTHER,
        "component_appsecret": OTHER_SECRET,
        "token": OTHER_TOKEN,
        "encoding_aes_key": OTHER_KEY,
        "callback_url": CALLBACK,
    }
    assert control("/_sim/components", component) == (200, {"component_appid": OTHER})
    status, grant = control(
        "/_sim/authorize",
        {"component_appid": OTHER, "authorizer_appid": MERCHANT, "func_info": [1, 2]},
    )
    assert status == 200
    assert grant["info_type"] == "authorized"
    assert grant["expires_in"] == 600
    assert control(
        "/_sim/rotate_refresh", {"component_appid": OTHER, "authorizer_appid": MERCHANT}
    ) == (200, {"forced": True})
    assert control("/_sim/pushes", {"component_appid": OTHER, "enabled": False}) == (
        200,
        {"component_appid": OTHER, "pushing": False},
    )
    receiver = Receiver(clock)
    with receiver.client() as client:
        sim.platform.push_client = client
        status, delivered = control("/_sim/pushes/deliver", {})
    assert status == 200
    assert {d["info_type"] for d in delivered["deliveries"]} == {
        "component_verify_ticket",
        "authorized",
    }
    assert control(
        "/_sim/unauthorize", {"component_appid": OTHER, "authorizer_appid": MERCHANT}
    ) == (200, {"unauthorized": True})
    assert control("/_sim/components", {**component, "encoding_aes_key": "short"})[0] == 400
    assert control("/_sim/components", {**component, "callback_url": 5})[0] == 400
    assert (
        control("/_sim/authorize", {"component_appid": "wxnobody", "authorizer_appid": MERCHANT})[0]
        == 404
    )
    assert (
        control(
            "/_sim/authorize",
            {"component_appid": OTHER, "authorizer_appid": MERCHANT, "func_info": ["x"]},
        )[0]
        == 400
    )
    assert control("/_sim/pushes", {"component_appid": OTHER, "enabled": "yes"})[0] == 400
    assert (
        control("/_sim/rotate_refresh", {"component_appid": OTHER, "authorizer_appid": "wxnever"})[
            0
        ]
        == 404
    )


@pytest.fixture
def served(sim: WeChatSimulator, receiver: Receiver) -> Iterator[SimulatorServer]:
    with SimulatorServer(sim) as server:
        yield server


def test_cli_authorizes_against_a_running_simulator(
    served: SimulatorServer,
    sim: WeChatSimulator,
    receiver: Receiver,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = served.base_url
    args = ["--url", url, "--component", COMP, "--authorizer", MERCHANT]
    assert simulator_main(["authorize", *args, "--func", "1", "--func", "15", "--deliver"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["info_type"] == "authorized"
    assert "auth_code" not in out
    assert {d["info_type"] for d in out["deliveries"]} == {"component_verify_ticket", "authorized"}
    event = receiver.pushes[-1]
    assert isinstance(event, Authorized)
    assert out["auth_code_fp"] == fingerprint(event.authorization_code)
    assert simulator_main(["authorize", *args, "--show-code"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["info_type"] == "updateauthorized"
    assert shown["auth_code"].startswith("queryauthcode@@@")
    assert simulator_main(["unauthorize", *args]) == 0
    assert json.loads(capsys.readouterr().out) == {"unauthorized": True}
    assert simulator_main(["deliver", "--url", url]) == 0
    delivered = json.loads(capsys.readouterr().out)["deliveries"]
    assert [(d["info_type"], d["ok"]) for d in delivered] == [
        ("updateauthorized", True),
        ("unauthorized", True),
    ]
    assert simulator_main(["pushes", "--url", url, "--component", COMP, "--off"]) == 0
    assert json.loads(capsys.readouterr().out) == {"component_appid": COMP, "pushing": False}
    assert (
        simulator_main(
            ["authorize", "--url", url, "--component", "wxnobody", "--authorizer", MERCHANT]
        )
        == 1
    )
    assert "404" in capsys.readouterr().err
    assert simulator_main(["deliver", "--url", "http://127.0.0.1:9"]) == 1
    assert "cannot reach" in capsys.readouterr().err


def test_cli_needs_a_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WECHAT_SIMULATOR_URL", raising=False)
    with pytest.raises(SystemExit) as caught:
        simulator_main(["deliver"])
    assert caught.value.code == 2


def test_server_with_a_component_and_the_authorize_subcommand() -> None:
    """`python -m simulator --component ...` serves a platform; `python -m simulator
    authorize` (another process) authorizes a merchant against it."""
    spec = f"{COMP}:{COMP_SECRET}:{MSG_TOKEN}:{AES_KEY}:http://127.0.0.1:9/cb"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "simulator",
            "--manual-clock",
            "--component",
            spec,
            "--push-every",
            "30",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline().strip()
        match = LISTENING.match(line)
        assert match, line
        url = match.group(1)
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "simulator",
                "authorize",
                "--url",
                url,
                "--component",
                COMP,
                "--authorizer",
                MERCHANT,
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["info_type"] == "authorized"
        stats = httpx.get(f"{url}/_sim/stats", params={"log": "0"}, timeout=10).json()
        platform = stats["platform"]["components"][COMP]
        assert platform["authorizers"][MERCHANT]["authorized"] is True
        assert platform["pending_pushes"] == ["component_verify_ticket", "authorized"]
        text = json.dumps(stats)
        assert COMP_SECRET not in text
        assert AES_KEY not in text
    finally:
        server.terminate()
        _, err = server.communicate(timeout=10)
    assert COMP_SECRET not in err
    bad = subprocess.run(
        [sys.executable, "-m", "simulator", "--component", f"{COMP}:{COMP_SECRET}:tok:tooshort"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2
    assert COMP_SECRET not in bad.stderr
    assert "43" in bad.stderr
