"""The WeChat simulator behaves as WeChat does (docs/wechat-token-facts.md)."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import types
from collections import deque
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from simulator import (
    CLASSIC_TOKEN,
    MP_TICKET,
    STABLE_TOKEN,
    WECOM_AGENT_TICKET,
    WECOM_CORP_TICKET,
    WECOM_TOKEN,
    Fault,
    ManualClock,
    QuotaExceededError,
    SimResponse,
    SystemClock,
    WeChatSimulator,
    fingerprint,
    parse_fault_spec,
    wechat_day,
)

APPID = "wx00000000000000a1"
SECRET = "0123456789abcdef0123456789abcdef"
OTHER_APPID = "wx00000000000000b2"
OTHER_SECRET = "fedcba9876543210fedcba9876543210"
CORPID = "ww0000000000000c01"
AGENT_A, SECRET_A = "1000002", "agent-a-secret-XXXXXXXXXXXXXXXXXXXXXXXXXXX"
AGENT_B, SECRET_B = "1000003", "agent-b-secret-YYYYYYYYYYYYYYYYYYYYYYYYYYY"
BUSINESS = "/cgi-bin/get_api_domain_ip"
# 2023-11-14 16:00:00 UTC is midnight in WeChat's day (UTC+8).
MIDNIGHT_UTC8 = 1_699_977_600.0
START = MIDNIGHT_UTC8 + 10 * 3600
RID = re.compile(r" rid: [0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{8}$")
TOKEN_CHARS = re.compile(r"^[A-Za-z0-9_-]+$")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def sim(clock: ManualClock) -> WeChatSimulator:
    s = WeChatSimulator(clock, seed=7)
    s.add_app(APPID, SECRET)
    s.add_app(OTHER_APPID, OTHER_SECRET)
    s.add_wecom_app(CORPID, AGENT_A, SECRET_A)
    s.add_wecom_app(CORPID, AGENT_B, SECRET_B)
    return s


def fetch(sim: WeChatSimulator, appid: str = APPID, secret: str = SECRET, **extra: str) -> Any:
    query = {"grant_type": "client_credential", "appid": appid, "secret": secret, **extra}
    answer = sim.handle("GET", CLASSIC_TOKEN, query, b"")
    assert answer.status == 200
    return answer.json()


def token_of(sim: WeChatSimulator, appid: str = APPID, secret: str = SECRET) -> str:
    data = fetch(sim, appid, secret)
    assert "access_token" in data, data
    return str(data["access_token"])


def stable(
    sim: WeChatSimulator,
    *,
    force: bool | None = None,
    appid: str = APPID,
    secret: str = SECRET,
) -> Any:
    body: dict[str, Any] = {"grant_type": "client_credential", "appid": appid, "secret": secret}
    if force is not None:
        body["force_refresh"] = force
    return sim.handle("POST", STABLE_TOKEN, {}, json.dumps(body).encode()).json()


def wecom(sim: WeChatSimulator, secret: str = SECRET_A, corpid: str = CORPID) -> Any:
    return sim.handle("GET", WECOM_TOKEN, {"corpid": corpid, "corpsecret": secret}, b"").json()


def use(sim: WeChatSimulator, token: str, path: str = BUSINESS) -> int:
    """Errcode of one business call (0 when it succeeded)."""
    data = sim.handle("GET", path, {"access_token": token}, b"").json()
    return int(data.get("errcode", 0))


def outcomes(sim: WeChatSimulator, token: str, n: int = 60) -> set[int]:
    return {use(sim, token) for _ in range(n)}


# --------------------------------------------------------------------- clock


def test_manual_clock_moves_only_when_told() -> None:
    clock = ManualClock(100.0)
    assert clock.now() == 100.0
    assert clock.advance(5) == 105.0
    clock.set(50.0)
    assert clock.now() == 50.0
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_manual_clock_is_thread_safe() -> None:
    clock = ManualClock(0.0)
    threads = [
        threading.Thread(target=lambda: [clock.advance(1) for _ in range(1000)]) for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert clock.now() == 8000.0


def test_system_clock_is_the_wall_clock() -> None:
    assert abs(SystemClock().now() - time.time()) < 1
    assert isinstance(WeChatSimulator().clock, SystemClock)


def test_wechat_day_starts_at_midnight_utc8() -> None:
    assert wechat_day(MIDNIGHT_UTC8) == wechat_day(MIDNIGHT_UTC8 - 1) + 1
    assert wechat_day(MIDNIGHT_UTC8) == wechat_day(MIDNIGHT_UTC8 + 86_399)


# ---------------------------------------------------------------- servers


def test_server_offsets_are_seeded_and_within_the_skew() -> None:
    a = WeChatSimulator(ManualClock(), servers=5, skew_seconds=90, seed=3)
    b = WeChatSimulator(ManualClock(), servers=5, skew_seconds=90, seed=3)
    c = WeChatSimulator(ManualClock(), servers=5, skew_seconds=90, seed=4)
    assert a.server_offsets == b.server_offsets != c.server_offsets
    assert len(a.server_offsets) == 5
    assert all(-90 <= o <= 90 for o in a.server_offsets)
    assert WeChatSimulator(server_offsets=[-1, 2]).server_offsets == (-1.0, 2.0)


def test_same_seed_gives_the_same_tokens() -> None:
    tokens = []
    for _ in range(2):
        s = WeChatSimulator(ManualClock(START), seed=11)
        s.add_app(APPID, SECRET)
        tokens.append([token_of(s) for _ in range(3)])
    assert tokens[0] == tokens[1]


def test_requests_are_spread_over_servers(sim: WeChatSimulator) -> None:
    for _ in range(30):
        fetch(sim, secret="wrong")
    assert {r.server for r in sim.call_log} == {0, 1, 2}


def test_constructor_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        WeChatSimulator(servers=0)
    with pytest.raises(ValueError):
        WeChatSimulator(token_lifetime=100, grace_seconds=300)
    with pytest.raises(ValueError):
        WeChatSimulator(wrong_secret_errcode=40013)


# --------------------------------------------------------- classic token


def test_classic_token_looks_like_wechats(sim: WeChatSimulator) -> None:
    data = fetch(sim)
    assert set(data) == {"access_token", "expires_in"}
    assert data["expires_in"] == 7200
    token = data["access_token"]
    assert 100 <= len(token) <= 512
    assert TOKEN_CHARS.match(token)
    assert SECRET not in token
    assert sim.current_token(APPID) == token
    assert sim.tokens_issued(APPID) == 1


def test_every_fetch_issues_a_new_unique_token(sim: WeChatSimulator) -> None:
    tokens = [token_of(sim) for _ in range(50)]
    assert len(set(tokens)) == 50
    assert sim.tokens_issued(APPID) == 50


def test_two_tokens_live_and_the_third_fetch_evicts_the_oldest(
    sim: WeChatSimulator, clock: ManualClock
) -> None:
    first = token_of(sim)
    clock.advance(60)
    second = token_of(sim)
    assert sim.valid_tokens(APPID) == [first, second]
    assert use(sim, first) == 0
    assert use(sim, second) == 0
    clock.advance(1)
    third = token_of(sim)
    # Evicted at once, on every server.
    for server in range(3):
        assert sim.token_status(first, server=server) == 40001
    assert outcomes(sim, first) == {40001}
    assert sim.valid_tokens(APPID) == [second, third]
    assert outcomes(sim, second) == {0}


def test_replaced_token_is_accepted_during_the_grace_despite_skew(
    sim: WeChatSimulator, clock: ManualClock
) -> None:
    old = token_of(sim)
    clock.advance(1000)
    new = token_of(sim)
    clock.advance(300 - 90 - 1)  # inside the grace on every server
    assert outcomes(sim, old) == {0}
    clock.advance(2 * 90 + 2 + 1)  # past the grace on every server
    assert outcomes(sim, old) == {40001}
    assert outcomes(sim, new) == {0}


def test_the_grace_window_edge_is_fuzzy_across_servers(
    sim: WeChatSimulator, clock: ManualClock
) -> None:
    offsets = sim.server_offsets
    old = token_of(sim)
    clock.advance(10)
    token_of(sim)
    retired = clock.now()
    # Between the fastest and the slowest server's view of the deadline.
    clock.set(retired + 300 - (min(offsets) + max(offsets)) / 2)
    assert outcomes(sim, old, 200) == {0, 40001}
    statuses = {sim.token_status(old, server=i) for i in range(3)}
    assert statuses == {0, 40001}


def test_the_current_token_expires_after_its_lifetime(
    sim: WeChatSimulator, clock: ManualClock
) -> None:
    token = token_of(sim)
    clock.advance(7200 - 91)
    assert outcomes(sim, token) == {0}
    clock.advance(2 * 91)
    assert outcomes(sim, token) == {42001}
    body = sim.handle("GET", BUSINESS, {"access_token": token}, b"").json()
    assert body["errmsg"].startswith("access_token expired")


def test_a_replaced_token_that_had_expired_gets_no_grace(
    sim: WeChatSimulator, clock: ManualClock
) -> None:
    old = token_of(sim)
    clock.advance(7200 + 500)
    token_of(sim)
    assert outcomes(sim, old) == {40001}


def test_missing_and_unknown_tokens(sim: WeChatSimulator) -> None:
    assert sim.handle("GET", BUSINESS, {}, b"").json()["errcode"] == 41001
    assert use(sim, "not-a-token") == 40014
    looks_real = "86_" + "A" * 133
    assert use(sim, looks_real) == 40014
    answer = sim.handle("GET", BUSINESS, {"access_token": "x"}, b"").json()
    assert RID.search(answer["errmsg"])


def test_business_success_and_the_callback_ip_alias(sim: WeChatSimulator) -> None:
    token = token_of(sim)
    data = sim.handle("GET", BUSINESS, {"access_token": token}, b"").json()
    assert data["ip_list"]
    assert all("/" in ip for ip in data["ip_list"])
    assert use(sim, token, "/cgi-bin/getcallbackip") == 0


@pytest.mark.parametrize(
    ("query", "errcode"),
    [
        ({"grant_type": "client_credential", "secret": SECRET}, 41002),
        ({"grant_type": "client_credential", "appid": "", "secret": SECRET}, 41002),
        ({"grant_type": "client_credential", "appid": APPID}, 41004),
        ({"grant_type": "password", "appid": APPID, "secret": SECRET}, 40002),
        ({"appid": APPID, "secret": SECRET}, 40002),
        ({"grant_type": "client_credential", "appid": "wxnope", "secret": SECRET}, 40013),
        ({"grant_type": "client_credential", "appid": APPID, "secret": "wrong"}, 40125),
        ({"grant_type": "client_credential", "appid": APPID, "secret": OTHER_SECRET}, 40125),
    ],
)
def test_classic_token_errors(sim: WeChatSimulator, query: dict[str, str], errcode: int) -> None:
    answer = sim.handle("GET", CLASSIC_TOKEN, query, b"")
    assert answer.status == 200
    data = answer.json()
    assert set(data) == {"errcode", "errmsg"}
    assert data["errcode"] == errcode
    assert RID.search(data["errmsg"])
    assert SECRET not in data["errmsg"]
    assert sim.tokens_issued(APPID) == 0
    assert sim.calls(CLASSIC_TOKEN, errcode=errcode) == 1


def test_wrong_secret_can_answer_40001(clock: ManualClock) -> None:
    s = WeChatSimulator(clock, wrong_secret_errcode=40001)
    s.add_app(APPID, SECRET)
    assert fetch(s, secret="nope")["errcode"] == 40001


def test_ip_whitelist(clock: ManualClock) -> None:
    s = WeChatSimulator(clock)
    s.add_app(APPID, SECRET, allowed_ips=["10.0.0.0/8", "192.168.1.7"])
    query = {"grant_type": "client_credential", "appid": APPID, "secret": SECRET}
    refused = s.handle("GET", CLASSIC_TOKEN, query, b"", client_ip="127.0.0.1").json()
    assert refused["errcode"] == 40164
    assert "127.0.0.1" in refused["errmsg"]
    assert "access_token" in s.handle("GET", CLASSIC_TOKEN, query, b"", "10.2.3.4").json()
    assert "access_token" in s.handle("GET", CLASSIC_TOKEN, query, b"", "192.168.1.7").json()
    assert s.tokens_issued(APPID) == 2


def test_daily_quota_of_2000_successful_fetches(sim: WeChatSimulator) -> None:
    for _ in range(5):
        assert fetch(sim, secret="wrong")["errcode"] == 40125  # failures do not count
    for _ in range(2000):
        token_of(sim)
    data = fetch(sim)
    assert data["errcode"] == 45009
    assert RID.search(data["errmsg"])
    assert fetch(sim)["errcode"] == 45009
    assert sim.tokens_issued(APPID) == 2000
    assert sim.stats()["apps"][APPID]["quota_used_today"] == 2000
    assert "access_token" in fetch(sim, OTHER_APPID, OTHER_SECRET)  # per app


def test_quota_resets_at_midnight_utc8(clock: ManualClock) -> None:
    s = WeChatSimulator(clock)
    s.add_app(APPID, SECRET, daily_quota=200)  # a test account
    for _ in range(200):
        token_of(s)
    clock.set(MIDNIGHT_UTC8 + 86_400 - 1)  # 23:59:59 in Beijing, 15:59:59 UTC
    assert fetch(s)["errcode"] == 45009
    clock.advance(1)
    assert "access_token" in fetch(s)


def test_reset_quota(sim: WeChatSimulator) -> None:
    sim.add_app(APPID, SECRET, daily_quota=3)
    for _ in range(3):
        token_of(sim)
    assert fetch(sim)["errcode"] == 45009
    sim.reset_quota(APPID)
    assert "access_token" in fetch(sim)


def test_re_registering_an_app_keeps_its_tokens(sim: WeChatSimulator) -> None:
    token = token_of(sim)
    sim.add_app(APPID, "new-secret")
    assert use(sim, token) == 0
    assert fetch(sim)["errcode"] == 40125
    assert "access_token" in fetch(sim, secret="new-secret")


# ----------------------------------------------------------- stable token


@pytest.fixture
def true_clock_sim(clock: ManualClock) -> WeChatSimulator:
    """One WeChat server whose clock is exact (the stable window is judged per server)."""
    s = WeChatSimulator(clock, seed=7, server_offsets=[0.0])
    s.add_app(APPID, SECRET)
    return s


def test_stable_token_does_not_rotate_on_repeated_calls(
    true_clock_sim: WeChatSimulator, clock: ManualClock
) -> None:
    sim = true_clock_sim
    first = stable(sim)
    assert first["expires_in"] == 7200
    clock.advance(655)
    again = stable(sim, force=False)
    assert again["access_token"] == first["access_token"]
    assert again["expires_in"] == 7200 - 655
    assert isinstance(again["expires_in"], int)
    assert sim.tokens_issued(APPID, pool="stable") == 1
    assert sim.current_token(APPID, pool="stable") == first["access_token"]


def test_stable_and_classic_pools_are_independent(sim: WeChatSimulator) -> None:
    stable_token = stable(sim)["access_token"]
    for _ in range(3):
        token_of(sim)
    assert use(sim, stable_token) == 0
    assert stable(sim)["access_token"] == stable_token
    assert sim.tokens_issued(APPID) == 3
    assert sim.tokens_issued(APPID, pool="stable") == 1


def test_stable_token_rotates_in_its_last_five_minutes(
    true_clock_sim: WeChatSimulator, clock: ManualClock
) -> None:
    sim = true_clock_sim
    old = stable(sim)["access_token"]
    clock.advance(7200 - 300)
    assert stable(sim)["expires_in"] == 300
    assert stable(sim)["access_token"] == old
    clock.advance(1)
    rotated = stable(sim)
    assert rotated["access_token"] != old
    assert rotated["expires_in"] == 7200
    assert stable(sim)["access_token"] == rotated["access_token"], "rotates once"
    assert sim.tokens_issued(APPID, pool="stable") == 2


@pytest.mark.parametrize("offset", [-90.0, 0.0, 90.0])
def test_stable_window_is_judged_by_the_answering_servers_clock(offset: float) -> None:
    """WeChat: "expires_in >= 300" at any moment; a server whose clock is ahead by
    ``offset`` sees less left, reports less and rotates earlier by as much."""
    clock = ManualClock(START)
    sim = WeChatSimulator(clock, seed=3, server_offsets=[offset])
    sim.add_app(APPID, SECRET)
    first = stable(sim)
    assert first["expires_in"] == min(7200, int(7200 - offset))
    clock.advance(7200 - 300 - offset - 1)
    answer = stable(sim)
    assert answer["access_token"] == first["access_token"]
    assert answer["expires_in"] == 301
    clock.advance(2)
    answer = stable(sim)
    assert answer["access_token"] != first["access_token"]
    assert answer["expires_in"] >= 300


def test_old_stable_token_stays_valid_until_its_own_expiry_then_expires() -> None:
    """Normal mode's overlap: after the rotation both tokens work until the old one's own
    expiry (by each server's clock); then the old one answers 42001, the new one 0."""
    clock = ManualClock(START)
    ahead = WeChatSimulator(clock, seed=3, server_offsets=[90.0])
    behind = WeChatSimulator(clock, seed=3, server_offsets=[-90.0])
    for sim in (ahead, behind):
        sim.add_app(APPID, SECRET)
    olds = {id(sim): stable(sim)["access_token"] for sim in (ahead, behind)}
    clock.advance(6820)
    news = {id(sim): stable(sim)["access_token"] for sim in (ahead, behind)}
    assert olds[id(ahead)] != news[id(ahead)], "ahead: 290 s left by its clock: rotated"
    assert olds[id(behind)] == news[id(behind)], "behind: 470 s left by its clock: kept"
    clock.advance(7200 - 90 - 6820 - 1)  # a second before the ahead server sees it expire
    assert outcomes(ahead, olds[id(ahead)]) == {0}
    clock.advance(1)
    assert outcomes(ahead, olds[id(ahead)]) == {42001}
    assert outcomes(ahead, news[id(ahead)]) == {0}


def test_stable_token_after_a_long_idle_is_new(sim: WeChatSimulator, clock: ManualClock) -> None:
    old = stable(sim)["access_token"]
    clock.advance(9000)
    fresh = stable(sim)
    assert fresh["access_token"] != old
    assert fresh["expires_in"] == 7200


def test_stable_token_force_refresh_rotates_at_once(
    sim: WeChatSimulator, clock: ManualClock
) -> None:
    old = stable(sim)["access_token"]
    clock.advance(40)
    forced = stable(sim, force=True)
    assert forced["access_token"] != old
    assert forced["expires_in"] == 7200
    assert outcomes(sim, old) == {40001}
    assert sim.tokens_issued(APPID, pool="stable") == 2


def test_force_refresh_needs_30_seconds_between_calls(
    true_clock_sim: WeChatSimulator, clock: ManualClock
) -> None:
    sim = true_clock_sim
    first = stable(sim, force=True)["access_token"]
    clock.advance(29)
    second = stable(sim, force=True)
    assert second["access_token"] == first
    assert second["expires_in"] == 7200 - 29
    assert sim.stats()["apps"][APPID]["stable"]["force_rejected"] == 1
    assert sim.call_log[-1].note == "force_rejected"
    clock.advance(1)
    assert stable(sim, force=True)["access_token"] != first


def test_force_refresh_at_most_20_per_day(sim: WeChatSimulator, clock: ManualClock) -> None:
    clock.set(MIDNIGHT_UTC8 + 60)
    tokens = set()
    for _ in range(20):
        tokens.add(stable(sim, force=True)["access_token"])
        clock.advance(31)
    assert len(tokens) == 20
    current = stable(sim, force=True)["access_token"]
    assert current in tokens
    stats = sim.stats()["apps"][APPID]["stable"]
    assert stats["force_rotations_today"] == 20
    assert stats["force_rejected"] == 1
    clock.set(MIDNIGHT_UTC8 + 86_400)
    assert stable(sim, force=True)["access_token"] not in tokens


def test_stable_token_errors(sim: WeChatSimulator) -> None:
    got = sim.handle("GET", STABLE_TOKEN, {"appid": APPID, "secret": SECRET}, b"").json()
    assert got["errcode"] == 43002
    assert "require POST method" in got["errmsg"]
    assert sim.handle("POST", STABLE_TOKEN, {}, b"{not json").json()["errcode"] == 47001
    assert stable(sim, appid="")["errcode"] == 41002
    assert stable(sim, secret="")["errcode"] == 41004
    assert stable(sim, appid="wxnope")["errcode"] == 40013
    assert stable(sim, secret="wrong")["errcode"] == 40125
    body = json.dumps({"grant_type": "x", "appid": APPID, "secret": SECRET}).encode()
    assert sim.handle("POST", STABLE_TOKEN, {}, body).json()["errcode"] == 40002
    assert sim.tokens_issued(APPID, pool="stable") == 0


def test_stable_token_call_limits(sim: WeChatSimulator, clock: ManualClock) -> None:
    sim.stable_minute_limit = 3
    sim.stable_daily_limit = 5
    clock.set(MIDNIGHT_UTC8 + 10 * 60)
    for _ in range(3):
        assert "access_token" in stable(sim)
    assert stable(sim)["errcode"] == 45011
    clock.advance(60)
    for _ in range(2):
        assert "access_token" in stable(sim)
    assert stable(sim)["errcode"] == 45009


# --------------------------------------------------------------------- WeCom


def test_wecom_returns_the_same_token_while_it_is_valid(
    sim: WeChatSimulator, clock: ManualClock
) -> None:
    first = wecom(sim)
    assert first["errcode"] == 0
    assert first["errmsg"] == "ok"
    assert first["expires_in"] == 7200
    clock.advance(1000)
    again = wecom(sim)
    assert again["access_token"] == first["access_token"]
    assert again["expires_in"] == 6200
    assert sim.tokens_issued(CORPID, pool="wecom", agentid=AGENT_A) == 1
    assert sim.current_wecom_token(CORPID, AGENT_A) == first["access_token"]


def test_wecom_agents_of_one_corp_have_their_own_tokens(sim: WeChatSimulator) -> None:
    a, b = wecom(sim, SECRET_A)["access_token"], wecom(sim, SECRET_B)["access_token"]
    assert a != b
    assert sim.invalidate_wecom(CORPID, AGENT_A)
    assert use(sim, a) == 40014
    assert use(sim, b) == 0
    new_a = wecom(sim, SECRET_A)["access_token"]
    assert new_a != a
    assert wecom(sim, SECRET_B)["access_token"] == b
    assert sim.tokens_issued(CORPID, pool="wecom") == 3
    assert sim.stats()["wecom"][f"{CORPID}/{AGENT_A}"]["invalidated"] == 1


def test_wecom_token_expires_and_is_replaced(sim: WeChatSimulator, clock: ManualClock) -> None:
    old = wecom(sim)["access_token"]
    clock.advance(7200)
    new = wecom(sim)
    assert new["access_token"] != old
    assert new["expires_in"] == 7200
    clock.advance(100)
    assert outcomes(sim, old) == {42001}
    data = sim.handle("GET", BUSINESS, {"access_token": new["access_token"]}, b"").json()
    assert data["errcode"] == 0
    assert data["ip_list"]


@pytest.mark.parametrize(
    ("query", "errcode"),
    [
        ({"corpsecret": SECRET_A}, 41002),
        ({"corpid": CORPID}, 41004),
        ({"corpid": "wwnope", "corpsecret": SECRET_A}, 40013),
        ({"corpid": CORPID, "corpsecret": "wrong"}, 40001),
    ],
)
def test_wecom_errors(sim: WeChatSimulator, query: dict[str, str], errcode: int) -> None:
    data = sim.handle("GET", WECOM_TOKEN, query, b"").json()
    assert data["errcode"] == errcode
    assert "hint:" in data["errmsg"]
    assert SECRET_A not in data["errmsg"]


def test_invalidate_wecom_without_a_token(sim: WeChatSimulator) -> None:
    assert not sim.invalidate_wecom(CORPID, AGENT_B)
    with pytest.raises(KeyError):
        sim.invalidate_wecom(CORPID, "999")


# -------------------------------------------------------------------- tickets


def ticket(sim: WeChatSimulator, path: str, query: dict[str, str]) -> Any:
    return sim.handle("GET", path, query, b"").json()


def test_jsapi_and_card_tickets_are_bound_to_their_token(sim: WeChatSimulator) -> None:
    token = token_of(sim)
    data = ticket(sim, MP_TICKET, {"access_token": token, "type": "jsapi"})
    assert data["errcode"] == 0
    assert data["errmsg"] == "ok"
    assert data["expires_in"] == 7200
    assert TOKEN_CHARS.match(data["ticket"])
    card = ticket(sim, MP_TICKET, {"access_token": token, "type": "wx_card"})
    assert card["ticket"] != data["ticket"]
    bindings = sim.stats()["tickets"]
    assert [b["type"] for b in bindings] == ["jsapi", "wx_card"]
    assert bindings[0]["token_fp"] == fingerprint(token)
    assert bindings[0]["ticket_fp"] == fingerprint(data["ticket"])
    assert sim.stats()["apps"][APPID]["tickets_issued"] == {"jsapi": 1, "wx_card": 1}
    assert sim.calls(MP_TICKET, APPID, errcode=0) == 2
    stable_token = stable(sim)["access_token"]
    assert ticket(sim, MP_TICKET, {"access_token": stable_token, "type": "jsapi"})["errcode"] == 0


def test_ticket_errors(sim: WeChatSimulator, clock: ManualClock) -> None:
    token = token_of(sim)
    assert ticket(sim, MP_TICKET, {"type": "jsapi"})["errcode"] == 41001
    assert ticket(sim, MP_TICKET, {"access_token": "bogus", "type": "jsapi"})["errcode"] == 40014
    assert ticket(sim, MP_TICKET, {"access_token": token, "type": "nope"})["errcode"] == 40097
    wecom_token = wecom(sim)["access_token"]
    assert (
        ticket(sim, MP_TICKET, {"access_token": wecom_token, "type": "jsapi"})["errcode"] == 40014
    )
    assert ticket(sim, WECOM_CORP_TICKET, {"access_token": token})["errcode"] == 40014
    clock.advance(8000)
    assert ticket(sim, MP_TICKET, {"access_token": token, "type": "jsapi"})["errcode"] == 42001
    assert sim.stats()["tickets"] == []


def test_wecom_corp_and_agent_tickets(sim: WeChatSimulator) -> None:
    token = wecom(sim)["access_token"]
    corp = ticket(sim, WECOM_CORP_TICKET, {"access_token": token})
    agent = ticket(sim, WECOM_AGENT_TICKET, {"access_token": token, "type": "agent_config"})
    assert corp["errcode"] == agent["errcode"] == 0
    assert corp["ticket"] != agent["ticket"]
    assert ticket(sim, WECOM_AGENT_TICKET, {"access_token": token})["errcode"] == 40097
    stats = sim.stats()["wecom"][f"{CORPID}/{AGENT_A}"]
    assert stats["tickets_issued"] == {"jsapi": 1, "agent_config": 1}
    assert sim.calls(WECOM_CORP_TICKET) == 1
    assert sim.calls(WECOM_AGENT_TICKET, CORPID) == 2


# ---------------------------------------------------------- foreign fetch


def test_a_foreign_fetch_silently_replaces_our_token(
    sim: WeChatSimulator, clock: ManualClock
) -> None:
    ours = token_of(sim)
    clock.advance(600)
    theirs = sim.foreign_fetch(APPID)
    assert theirs != ours
    assert sim.current_token(APPID) == theirs
    clock.advance(300 - 91)
    assert outcomes(sim, ours) == {0}
    clock.advance(2 * 91)
    assert outcomes(sim, ours) == {40001}  # young, yet "not latest"
    assert sim.foreign_fetches(APPID) == 1
    assert sim.tokens_issued(APPID) == 2
    foreign = [r for r in sim.call_log if r.foreign]
    assert len(foreign) == 1
    assert foreign[0].issued
    assert foreign[0].token_fp == fingerprint(theirs)
    assert sim.stats()["apps"][APPID]["foreign_fetches"] == 1


def test_foreign_fetches_use_the_quota(sim: WeChatSimulator) -> None:
    sim.add_app(APPID, SECRET, daily_quota=2)
    sim.foreign_fetch(APPID)
    token_of(sim)
    assert fetch(sim)["errcode"] == 45009
    with pytest.raises(QuotaExceededError):
        sim.foreign_fetch(APPID)
    with pytest.raises(KeyError):
        sim.foreign_fetch("wxnope")


# --------------------------------------------------------------------- faults


def test_latency_fault_delays_but_answers(sim: WeChatSimulator) -> None:
    sim.add_fault("latency", seconds=0.05, count=1)
    started = time.monotonic()
    assert "access_token" in fetch(sim)
    assert time.monotonic() - started >= 0.05
    assert sim.faults() == []
    assert sim.tokens_issued(APPID) == 1


def test_base_latency(clock: ManualClock) -> None:
    s = WeChatSimulator(clock, latency=0.03)
    s.add_app(APPID, SECRET)
    started = time.monotonic()
    token_of(s)
    assert time.monotonic() - started >= 0.03


def test_timeout_fault_in_process_raises_read_timeout(sim: WeChatSimulator) -> None:
    sim.add_fault("timeout", endpoint=CLASSIC_TOKEN, count=1)
    client = httpx.Client(transport=sim.transport(), base_url="https://api.weixin.qq.com")
    params = {"grant_type": "client_credential", "appid": APPID, "secret": SECRET}
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout) as excinfo:
        client.get(CLASSIC_TOKEN, params=params)
    assert time.monotonic() - started < 1
    assert SECRET not in str(excinfo.value)
    assert sim.tokens_issued(APPID) == 0
    assert sim.call_log[-1].fault == "timeout"
    assert "access_token" in client.get(CLASSIC_TOKEN, params=params).json()


def test_timeout_fault_hangs_then_answers_504(sim: WeChatSimulator) -> None:
    sim.add_fault("timeout", hang_seconds=0.05)
    started = time.monotonic()
    query = {"grant_type": "client_credential", "appid": APPID, "secret": SECRET}
    answer = sim.handle("GET", CLASSIC_TOKEN, query, b"")
    assert time.monotonic() - started >= 0.05
    assert answer.status == 504
    assert answer.timed_out


def test_release_hangs_wakes_a_hanging_request(sim: WeChatSimulator) -> None:
    sim.add_fault("timeout", hang_seconds=30)
    answers: list[SimResponse] = []
    query = {"grant_type": "client_credential", "appid": APPID, "secret": SECRET}
    worker = threading.Thread(
        target=lambda: answers.append(sim.handle("GET", CLASSIC_TOKEN, query, b""))
    )
    started = time.monotonic()
    worker.start()
    time.sleep(0.05)
    sim.release_hangs()
    worker.join(timeout=5)
    assert not worker.is_alive()
    assert time.monotonic() - started < 5
    assert answers[0].status == 504


def test_http_status_fault(sim: WeChatSimulator) -> None:
    sim.add_fault("http_status", status=502, count=2)
    for _ in range(2):
        answer = sim.handle("GET", CLASSIC_TOKEN, {"appid": APPID}, b"")
        assert answer.status == 502
        assert answer.headers["Content-Type"].startswith("text/html")
        assert b"502 Bad Gateway" in answer.body
    assert "access_token" in fetch(sim)
    assert sim.tokens_issued(APPID) == 1
    assert sim.calls(CLASSIC_TOKEN, errcode=None) == 2


def test_errcode_burst_then_recovery(sim: WeChatSimulator) -> None:
    sim.add_fault("errcode", count=3)
    for _ in range(3):
        data = fetch(sim)
        assert data["errcode"] == -1
        assert data["errmsg"].startswith("system error")
        assert RID.search(data["errmsg"])
    assert "access_token" in fetch(sim)
    assert sim.tokens_issued(APPID) == 1
    assert sim.calls(CLASSIC_TOKEN, APPID, errcode=-1) == 3
    assert sim.stats()["faults_triggered"]["errcode"] == 3


def test_any_errcode_can_be_injected(sim: WeChatSimulator) -> None:
    sim.add_fault("errcode", errcode=45011, errmsg="api minute-quota reach limit", count=1)
    assert fetch(sim)["errcode"] == 45011


@pytest.mark.parametrize(("garble", "start"), [("truncated", b'{"access_tok'), ("html", b"<html>")])
def test_garbled_fault(sim: WeChatSimulator, garble: str, start: bytes) -> None:
    sim.add_fault("garbled", garble=garble, count=1)
    answer = sim.handle("GET", CLASSIC_TOKEN, {"appid": APPID}, b"")
    assert answer.status == 200
    assert answer.body.startswith(start)
    with pytest.raises(ValueError):
        answer.json()
    assert sim.tokens_issued(APPID) == 0


def test_faults_are_scoped_by_endpoint_and_appid(sim: WeChatSimulator) -> None:
    sim.add_fault("errcode", endpoint=STABLE_TOKEN)
    sim.add_fault("http_status", status=503, appid=OTHER_APPID)
    assert "access_token" in fetch(sim)
    assert stable(sim)["errcode"] == -1
    assert sim.handle("GET", CLASSIC_TOKEN, {"appid": OTHER_APPID}, b"").status == 503
    token = token_of(sim)
    assert use(sim, token) == 0
    # Until cleared.
    assert stable(sim)["errcode"] == -1
    sim.clear_faults()
    assert "access_token" in stable(sim)


def test_faults_reach_token_bearing_calls_of_an_app(sim: WeChatSimulator) -> None:
    token = token_of(sim)
    other = token_of(sim, OTHER_APPID, OTHER_SECRET)
    sim.add_fault("errcode", appid=APPID, endpoint=BUSINESS, errcode=-1)
    assert use(sim, token) == -1
    assert use(sim, other) == 0


def test_set_faults_replaces_them(sim: WeChatSimulator) -> None:
    sim.add_fault("errcode")
    sim.set_faults([Fault("latency", seconds=0.0)])
    assert [f.kind for f in sim.faults()] == ["latency"]
    with pytest.raises(TypeError):
        sim.add_fault(Fault("errcode"), count=1)


def test_fault_validation_and_specs() -> None:
    with pytest.raises(ValueError):
        Fault.from_dict({"kind": "meteor"})
    with pytest.raises(ValueError):
        Fault.from_dict({"kind": "errcode", "colour": "red"})
    with pytest.raises(ValueError):
        Fault.from_dict({"kind": "errcode", "count": 0})
    with pytest.raises(ValueError):
        Fault.from_dict({"kind": "latency", "seconds": "soon"})
    fault = parse_fault_spec("errcode:errcode=-1,count=3,endpoint=/cgi-bin/token")
    assert (fault.kind, fault.errcode, fault.count, fault.endpoint) == (
        "errcode",
        -1,
        3,
        "/cgi-bin/token",
    )
    assert parse_fault_spec("garbled:garble=html").garble == "html"
    assert parse_fault_spec('{"kind": "latency", "seconds": 0.2}').seconds == 0.2
    assert parse_fault_spec("timeout").hang_seconds == 30
    with pytest.raises(ValueError):
        parse_fault_spec("latency:seconds")
    assert Fault.from_dict(fault.to_dict()) == fault


# ------------------------------------------------------- call log and stats


def test_call_log_records_what_wechat_saw(sim: WeChatSimulator, clock: ManualClock) -> None:
    token = token_of(sim)
    fetch(sim, secret="wrong")
    use(sim, token)
    log = sim.call_log
    assert len(log) == 2  # business calls are only counted by default
    first, second = log
    assert (first.endpoint, first.appid, first.errcode, first.issued) == (
        CLASSIC_TOKEN,
        APPID,
        0,
        True,
    )
    assert first.token_fp == fingerprint(token)
    assert first.time == START
    assert first.method == "GET"
    assert second.errcode == 40125
    assert not second.issued
    assert sim.calls(CLASSIC_TOKEN) == 2
    assert sim.calls(CLASSIC_TOKEN, APPID, errcode=0) == 1
    assert sim.calls(BUSINESS, APPID, errcode=0) == 1
    assert sim.calls() == 3
    clock.advance(10)
    token_of(sim)
    assert sim.calls(CLASSIC_TOKEN, since=START + 5) == 1
    with pytest.raises(ValueError):
        sim.calls(BUSINESS, since=START)


def test_business_calls_can_be_logged_in_full(clock: ManualClock) -> None:
    s = WeChatSimulator(clock, log_business_calls=True)
    s.add_app(APPID, SECRET)
    token = token_of(s)
    use(s, token)
    use(s, "junk")
    assert [r.errcode for r in s.call_log[1:]] == [0, 40014]
    assert s.calls(BUSINESS, since=START) == 2


def test_a_week_of_business_calls_stays_cheap(sim: WeChatSimulator, clock: ManualClock) -> None:
    token = token_of(sim)
    for _ in range(20_000):
        use(sim, token)
    assert len(sim.call_log) == 1
    assert sim.calls(BUSINESS, errcode=0) == 20_000


def test_stats_are_json_and_hold_fingerprints_not_tokens(sim: WeChatSimulator) -> None:
    token = token_of(sim)
    wecom_token = wecom(sim)["access_token"]
    ticket(sim, MP_TICKET, {"access_token": token, "type": "jsapi"})
    sim.add_fault("latency", seconds=0.0, count=5)
    stats = sim.stats()
    text = json.dumps(stats)
    assert token not in text
    assert wecom_token not in text
    assert fingerprint(token) in text
    assert stats["apps"][APPID]["live_token_fps"] == [fingerprint(token)]
    assert stats["by_endpoint"][CLASSIC_TOKEN] == {"0": 1}
    assert len(stats["servers"]) == 3
    assert stats["faults"][0]["kind"] == "latency"
    assert "call_log" not in sim.stats(include_log=False)


def _strings(obj: Any, seen: set[int]) -> Iterator[str]:
    """Every string or bytes reachable from ``obj``."""
    if id(obj) in seen or isinstance(obj, type | types.ModuleType | types.FunctionType):
        return
    seen.add(id(obj))
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, bytes | bytearray):
        yield bytes(obj).decode("latin-1")
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from _strings(key, seen)
            yield from _strings(value, seen)
    elif isinstance(obj, list | tuple | set | frozenset | deque):
        for item in obj:
            yield from _strings(item, seen)
    else:
        for value in getattr(obj, "__dict__", {}).values():
            yield from _strings(value, seen)
        for cls in type(obj).__mro__:
            for slot in getattr(cls, "__slots__", ()):
                if hasattr(obj, slot):
                    yield from _strings(getattr(obj, slot), seen)


def test_secrets_are_never_kept_in_plain_text(sim: WeChatSimulator) -> None:
    token_of(sim)
    fetch(sim, secret="wrong-" + SECRET)
    wecom(sim)
    stable(sim)
    secrets = [SECRET, OTHER_SECRET, SECRET_A, SECRET_B]
    reachable = list(_strings(sim, set()))
    assert any(APPID in s for s in reachable)  # the walk does reach the app registry
    for secret in secrets:
        assert not any(secret in s for s in reachable)
        assert secret not in json.dumps(sim.stats())
        assert secret not in repr(sim.call_log)


# ----------------------------------------------------------- transport


def test_httpx_transport_round_trip(sim: WeChatSimulator) -> None:
    with httpx.Client(transport=sim.transport(), base_url="https://api.weixin.qq.com") as client:
        params = {"grant_type": "client_credential", "appid": APPID, "secret": SECRET}
        data = client.get(CLASSIC_TOKEN, params=params).json()
        token = data["access_token"]
        body = {"grant_type": "client_credential", "appid": APPID, "secret": SECRET}
        assert client.post(STABLE_TOKEN, json=body).json()["expires_in"] == 7200
        answer = client.get(BUSINESS, params={"access_token": token})
        assert answer.headers["content-type"].startswith("application/json")
        assert answer.json()["ip_list"]
        assert client.get("/nowhere").status_code == 404
        assert client.delete(CLASSIC_TOKEN, params=params).status_code == 405
    assert sim.tokens_issued(APPID) == 1


def test_transport_passes_the_client_ip(clock: ManualClock) -> None:
    s = WeChatSimulator(clock)
    s.add_app(APPID, SECRET, allowed_ips=["203.0.113.9"])
    params = {"grant_type": "client_credential", "appid": APPID, "secret": SECRET}
    for ip, key in (("203.0.113.9", "access_token"), ("127.0.0.1", "errcode")):
        with httpx.Client(transport=s.transport(client_ip=ip), base_url="http://wx") as client:
            assert key in client.get(CLASSIC_TOKEN, params=params).json()


async def _async_fetch(sim: WeChatSimulator) -> Any:
    async with httpx.AsyncClient(transport=sim.transport(), base_url="http://wx") as client:
        params = {"grant_type": "client_credential", "appid": APPID, "secret": SECRET}
        response = await client.get(CLASSIC_TOKEN, params=params)
        return response.json()


def test_transport_works_with_async_clients(sim: WeChatSimulator) -> None:
    assert "access_token" in asyncio.run(_async_fetch(sim))


# ------------------------------------------------------------- control API


def control(sim: WeChatSimulator, method: str, path: str, body: Any = None) -> SimResponse:
    raw = b"" if body is None else json.dumps(body).encode()
    return sim.handle(method, path, {}, raw)


def test_control_api_in_process(sim: WeChatSimulator, clock: ManualClock) -> None:
    assert control(sim, "GET", "/_sim/health").json() == {"ok": True}
    registered = control(sim, "POST", "/_sim/apps", {"appid": "wxnew", "secret": "s-new"})
    assert registered.json() == {"appid": "wxnew"}
    assert "access_token" in fetch(sim, "wxnew", "s-new")
    wecom_app = {"corpid": "wwnew", "agentid": 7, "secret": "s-wecom"}
    assert control(sim, "POST", "/_sim/apps", wecom_app).status == 200
    assert wecom(sim, "s-wecom", "wwnew")["errcode"] == 0
    moved = control(sim, "POST", "/_sim/clock/advance", {"seconds": 90}).json()
    assert moved["now"] == START + 90 == clock.now()
    assert control(sim, "GET", "/_sim/clock").json()["manual"] is True
    assert control(sim, "POST", "/_sim/clock/set", {"time": START}).json()["now"] == START
    control(sim, "POST", "/_sim/faults", {"kind": "errcode", "errcode": -1, "count": 1})
    assert fetch(sim)["errcode"] == -1
    control(sim, "POST", "/_sim/faults", [{"kind": "http_status"}, {"kind": "errcode"}])
    assert len(control(sim, "GET", "/_sim/faults").json()["faults"]) == 2
    replaced = control(sim, "POST", "/_sim/faults", {"faults": [{"kind": "garbled"}]}).json()
    assert [f["kind"] for f in replaced["faults"]] == ["garbled"]
    assert control(sim, "DELETE", "/_sim/faults").json() == {"faults": []}
    ours = token_of(sim)
    foreign = control(sim, "POST", "/_sim/foreign_fetch", {"appid": APPID}).json()
    assert foreign["token_fp"] == fingerprint(sim.current_token(APPID) or "")
    checked = control(sim, "POST", "/_sim/check_token", {"token": ours, "server": 0}).json()
    assert checked == {"errcode": 0, "accepted": True}
    assert control(sim, "POST", "/_sim/reset_quota", {"appid": APPID}).status == 200
    token = wecom(sim)["access_token"]
    assert control(
        sim, "POST", "/_sim/invalidate_wecom", {"corpid": CORPID, "agentid": AGENT_A}
    ).json() == {"invalidated": True}
    assert use(sim, token) == 40014
    stats = control(sim, "GET", "/_sim/stats").json()
    assert stats["apps"][APPID]["foreign_fetches"] == 1
    assert stats["call_log"]
    text = json.dumps(stats)
    assert SECRET not in text
    assert "s-new" not in text


def test_control_api_errors(sim: WeChatSimulator) -> None:
    assert control(sim, "GET", "/_sim/nowhere").status == 404
    assert control(sim, "GET", "/_sim/faults/").status == 200
    assert control(sim, "PUT", "/_sim/faults").status == 405
    assert control(sim, "POST", "/_sim/apps", {"appid": "wx"}).status == 400
    assert sim.handle("POST", "/_sim/apps", {}, b"{oops").status == 400
    assert control(sim, "POST", "/_sim/clock/advance", {"seconds": "x"}).status == 400
    assert control(sim, "POST", "/_sim/clock/advance", {"seconds": -1}).status == 400
    assert control(sim, "POST", "/_sim/faults", {"kind": "meteor"}).status == 400
    assert control(sim, "POST", "/_sim/foreign_fetch", {"appid": "wxnope"}).status == 404
    assert control(sim, "POST", "/_sim/check_token", {"token": "t", "server": 9}).status == 400
    sim.add_app(APPID, SECRET, daily_quota=1)
    token_of(sim)
    assert control(sim, "POST", "/_sim/foreign_fetch", {"appid": APPID}).status == 409
    real = WeChatSimulator()
    assert control(real, "POST", "/_sim/clock/advance", {"seconds": 1}).status == 409
    assert control(real, "GET", "/_sim/clock").json()["manual"] is False
