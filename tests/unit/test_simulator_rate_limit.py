"""The simulator's per-minute frequency limits (45011, docs/wechat-token-facts.md §5),
the peak rates it reports, and its per-call latency."""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from simulator import (
    AUTHORIZER_TOKEN,
    CLASSIC_TOKEN,
    COMPONENT_TOKEN,
    MINUTE_QUOTA_ERRMSG,
    MP_TICKET,
    QUERY_AUTH,
    STABLE_TOKEN,
    WECOM_TOKEN,
    ManualClock,
    SimulatorServer,
    WeChatSimulator,
)
from simulator.__main__ import _minute_limits
from simulator.ratelimit import MinuteLimiter, peak_count

START = 1_699_977_600.0 + 10 * 3600  # 10:00 in WeChat's day (UTC+8)
APPID, SECRET = "wx00000000000000a1", "0123456789abcdef0123456789abcdef"
OTHER, OTHER_SECRET = "wx00000000000000b2", "fedcba9876543210fedcba9876543210"
CORPID, AGENT, AGENT_SECRET = "ww0000000000000c01", "1000002", "agent-secret-XXXXXXXXXXXXXXX"
COMP, COMP_SECRET = "wxcomponent0000001", "component-secret-0123456789abcdef"
COMP2, COMP2_SECRET = "wxcomponent0000002", "other-component-secret-fedcba98"
AES_KEY = "PlatformEncodingAESKeyForTheSimulator012345"
MERCHANTS = ("wxmerchant00000a01", "wxmerchant00000a02", "wxmerchant00000a03")
BUSINESS = "/cgi-bin/get_api_domain_ip"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def sim(clock: ManualClock) -> WeChatSimulator:
    s = WeChatSimulator(clock, seed=3, server_offsets=[0.0])
    s.add_app(APPID, SECRET)
    s.add_app(OTHER, OTHER_SECRET)
    s.add_wecom_app(CORPID, AGENT, AGENT_SECRET)
    return s


def fetch(sim: WeChatSimulator, appid: str = APPID, secret: str = SECRET) -> Any:
    query = {"grant_type": "client_credential", "appid": appid, "secret": secret}
    return sim.handle("GET", CLASSIC_TOKEN, query).json()


def stable(sim: WeChatSimulator, appid: str = APPID, secret: str = SECRET) -> Any:
    body = {"grant_type": "client_credential", "appid": appid, "secret": secret}
    return sim.handle("POST", STABLE_TOKEN, {}, json.dumps(body).encode()).json()


def wecom(sim: WeChatSimulator) -> Any:
    return sim.handle("GET", WECOM_TOKEN, {"corpid": CORPID, "corpsecret": AGENT_SECRET}).json()


def ticket(sim: WeChatSimulator, token: str) -> Any:
    return sim.handle("GET", MP_TICKET, {"access_token": token, "type": "jsapi"}).json()


def post(sim: WeChatSimulator, path: str, body: dict[str, Any], token: str | None = None) -> Any:
    query = {"component_access_token": token} if token else {}
    return sim.handle("POST", path, query, json.dumps(body).encode()).json()


def component_token(sim: WeChatSimulator, comp: str = COMP, secret: str = COMP_SECRET) -> Any:
    body = {
        "component_appid": comp,
        "component_appsecret": secret,
        "component_verify_ticket": sim.platform.current_verify_ticket(comp),
    }
    return post(sim, COMPONENT_TOKEN, body)


def refresh(sim: WeChatSimulator, token: str, authorizer: str, refresh_token: str) -> Any:
    body = {
        "component_appid": COMP,
        "authorizer_appid": authorizer,
        "authorizer_refresh_token": refresh_token,
    }
    return post(sim, AUTHORIZER_TOKEN, body, token)


def refused(answer: Any) -> bool:
    """A 45011 answer in WeChat's words (plus the simulator's rid or WeCom hint)."""
    return bool(answer.get("errcode") == 45011 and answer["errmsg"].startswith(MINUTE_QUOTA_ERRMSG))


@pytest.fixture
def platform(sim: WeChatSimulator) -> tuple[str, dict[str, str]]:
    """COMP with three authorizers (and COMP2 with none): (component token, refresh tokens)."""
    sim.platform.add_component(COMP, COMP_SECRET, "msgToken", AES_KEY)
    sim.platform.add_component(COMP2, COMP2_SECRET, "msgToken2", AES_KEY)
    sim.platform.refresh_rotation_probability = 0.0
    token = component_token(sim)["component_access_token"]
    refresh_tokens = {}
    for merchant in MERCHANTS:
        grant = sim.platform.authorize(COMP, merchant)
        body = {"component_appid": COMP, "authorization_code": grant.auth_code}
        info = post(sim, QUERY_AUTH, body, token)["authorization_info"]
        refresh_tokens[merchant] = info["authorizer_refresh_token"]
    return token, refresh_tokens


# ------------------------------------------------------------------ default off


def test_minute_limits_are_off_by_default(sim: WeChatSimulator) -> None:
    for _ in range(300):  # one instant: any per-minute limit would trip
        assert "access_token" in fetch(sim)
    assert sim.minute_limits == {}
    stats = sim.stats(include_log=False)
    assert stats["minute_limits"] == {}
    assert stats["minute_limit_rejections"]["total"] == 0
    assert sim.calls(errcode=45011) == 0


def test_limits_are_checked(clock: ManualClock) -> None:
    for bad in ({"per_ap": 1}, {BUSINESS: 5}, {"global": 0}, {"per_app": True}, {"per_app": 1.5}):
        with pytest.raises(ValueError, match="minute limit"):
            WeChatSimulator(clock, minute_limits=bad)  # type: ignore[arg-type]
    sim = WeChatSimulator(clock, minute_limits={"per_app": 2, STABLE_TOKEN: None})
    assert sim.minute_limits == {"per_app": 2, STABLE_TOKEN: None}
    with pytest.raises(ValueError, match="minute limit"):
        sim.set_minute_limits({"per_component": -1})
    assert sim.minute_limits == {"per_app": 2, STABLE_TOKEN: None}, "a bad call changes nothing"
    sim.set_minute_limits(None)
    assert sim.minute_limits == {}


# --------------------------------------------------------------------- per app


def test_per_app_limit_trips_at_n_plus_one_and_frees_up_a_minute_later(
    sim: WeChatSimulator, clock: ManualClock
) -> None:
    sim.set_minute_limits({"per_app": 3})
    for _ in range(3):
        assert "access_token" in fetch(sim)
        clock.advance(10)
    answer = fetch(sim)  # the 4th within 60 s
    assert refused(answer)
    assert answer["errmsg"].startswith(f"{MINUTE_QUOTA_ERRMSG} rid: ")
    last = sim.call_log[-1]
    assert (last.endpoint, last.appid, last.errcode, last.issued) == (
        CLASSIC_TOKEN,
        APPID,
        45011,
        False,
    )
    assert last.note == "minute_limit:per_app"
    assert sim.tokens_issued(APPID) == 3
    assert sim.stats()["apps"][APPID]["quota_used_today"] == 3, "refusals use no daily quota"
    assert "access_token" in fetch(sim, OTHER, OTHER_SECRET), "another app has its own window"
    assert "access_token" in stable(sim), "another endpoint has its own window"
    for _ in range(10):  # hammering: refused calls do not fill the window
        assert refused(fetch(sim))
    clock.set(START + 59.999)
    assert refused(fetch(sim))
    clock.set(START + 60)  # the first call is 60 s old: one slot frees up
    assert "access_token" in fetch(sim)
    assert refused(fetch(sim))
    clock.set(START + 80)  # the second one too
    assert "access_token" in fetch(sim)
    assert sim.tokens_issued(APPID) == 5
    assert sim.calls(CLASSIC_TOKEN, APPID, errcode=45011) == 13


def test_per_app_counts_tickets_by_the_tokens_owner_and_wecom_by_corpid(
    sim: WeChatSimulator,
) -> None:
    sim.set_minute_limits({"per_app": 1})
    token = fetch(sim)["access_token"]
    assert ticket(sim, token)["errcode"] == 0
    assert refused(ticket(sim, token))
    assert wecom(sim)["errcode"] == 0
    answer = wecom(sim)
    assert refused(answer)
    assert "hint: [" in answer["errmsg"], "WeCom's error format"
    assert sim.stats()["minute_limit_rejections"]["by_appid"] == {APPID: 1, CORPID: 1}


def test_an_endpoint_key_overrides_per_app(sim: WeChatSimulator) -> None:
    sim.set_minute_limits({"per_app": 1, CLASSIC_TOKEN: 3, STABLE_TOKEN: None})
    assert ["access_token" in fetch(sim) for _ in range(4)] == [True, True, True, False]
    assert all("access_token" in stable(sim) for _ in range(20)), "exempt"
    token = fetch(sim, OTHER, OTHER_SECRET)["access_token"]
    assert ticket(sim, token)["errcode"] == 0
    assert refused(ticket(sim, token)), "per_app still covers the other endpoints"


def test_the_stable_tokens_own_minute_limit_uses_the_same_words(sim: WeChatSimulator) -> None:
    sim.stable_minute_limit = 1
    assert "access_token" in stable(sim)
    assert refused(stable(sim))


# ---------------------------------------------------------------- per component


def test_component_scope_counts_authorizer_calls_of_different_authorizers_together(
    sim: WeChatSimulator, clock: ManualClock, platform: tuple[str, dict[str, str]]
) -> None:
    token, refresh_tokens = platform
    sim.set_minute_limits({"per_component": 4, "per_app": 1})  # per_app: accounts only
    a, b, c = MERCHANTS
    for merchant in (a, b, c, a):
        assert "authorizer_access_token" in refresh(sim, token, merchant, refresh_tokens[merchant])
    answer = refresh(sim, token, b, refresh_tokens[b])
    assert refused(answer)
    assert sim.call_log[-1].note == "minute_limit:per_component"
    assert sim.call_log[-1].appid == COMP
    assert refused(component_token(sim)), "the component token shares the platform's window"
    assert "component_access_token" in component_token(sim, COMP2, COMP2_SECRET)
    authorizers = sim.stats()["platform"]["components"][COMP]["authorizers"]
    assert [authorizers[m]["token_calls_today"] for m in MERCHANTS] == [2, 1, 1]
    clock.advance(60)
    assert "authorizer_access_token" in refresh(sim, token, b, refresh_tokens[b])
    rejections = sim.stats()["minute_limit_rejections"]
    assert rejections["by_component"] == {COMP: 2}
    assert rejections["by_scope"] == {"per_app": 0, "per_component": 2, "global": 0}


def test_a_component_endpoint_can_be_limited_per_platform(
    sim: WeChatSimulator, platform: tuple[str, dict[str, str]]
) -> None:
    token, refresh_tokens = platform
    sim.set_minute_limits({AUTHORIZER_TOKEN: 2})
    a, b, c = MERCHANTS
    assert "authorizer_access_token" in refresh(sim, token, a, refresh_tokens[a])
    assert "authorizer_access_token" in refresh(sim, token, b, refresh_tokens[b])
    assert refused(refresh(sim, token, c, refresh_tokens[c]))
    assert sim.call_log[-1].note == "minute_limit:per_app"
    assert "component_access_token" in component_token(sim), "other endpoints are free"


# ---------------------------------------------------------------------- global


def test_global_limit_covers_every_token_endpoint_but_not_business_calls(
    sim: WeChatSimulator, clock: ManualClock, platform: tuple[str, dict[str, str]]
) -> None:
    sim.set_minute_limits({"global": 5, "per_app": 100})
    token = fetch(sim)["access_token"]
    assert "access_token" in fetch(sim, OTHER, OTHER_SECRET)
    assert "access_token" in stable(sim)
    assert wecom(sim)["errcode"] == 0
    assert ticket(sim, token)["errcode"] == 0
    for answer in (fetch(sim, OTHER, OTHER_SECRET), component_token(sim), wecom(sim)):
        assert refused(answer)
    assert {r.note for r in sim.call_log if r.errcode == 45011} == {"minute_limit:global"}
    assert sim.handle("GET", BUSINESS, {"access_token": token}).json().get("errcode", 0) == 0
    # Calls that fail their own checks still count against the ceiling: WeChat saw them.
    clock.advance(60)
    assert fetch(sim, "wxnobody", "x")["errcode"] == 40013
    for _ in range(4):
        assert "access_token" in fetch(sim)
    assert refused(fetch(sim))
    rejections = sim.stats()["minute_limit_rejections"]
    assert rejections["total"] == rejections["by_scope"]["global"] == 4
    assert rejections["by_appid"] == {OTHER: 1, COMP: 1, CORPID: 1, APPID: 1}
    assert rejections["by_component"] == {COMP: 1}


def test_faulted_calls_are_not_counted(sim: WeChatSimulator) -> None:
    sim.set_minute_limits({"per_app": 1})
    sim.add_fault("errcode", endpoint=CLASSIC_TOKEN, count=3)
    assert [fetch(sim)["errcode"] for _ in range(3)] == [-1, -1, -1]
    assert "access_token" in fetch(sim)
    assert sim.peak_calls_per_minute(appid=APPID) == 1


# --------------------------------------------------------------- stats and peaks


def test_peak_calls_per_minute_and_per_second_from_the_call_log(
    sim: WeChatSimulator, clock: ManualClock, platform: tuple[str, dict[str, str]]
) -> None:
    token, refresh_tokens = platform  # 4 component calls at START
    for offset, count in ((0.5, 3), (0.9, 2), (30.0, 4), (61.0, 1)):
        clock.set(START + offset)
        for _ in range(count):
            fetch(sim)
    clock.set(START + 100)
    for merchant in MERCHANTS:
        refresh(sim, token, merchant, refresh_tokens[merchant])
    sim.foreign_fetch(APPID)  # someone else's call: not ours to count
    assert sim.peak_calls_per_second() == 9  # START .. START + 0.9
    assert sim.peak_calls_per_second(appid=APPID) == 5
    assert sim.peak_calls_per_minute() == 13  # START .. START + 30
    assert sim.peak_calls_per_minute(appid=APPID) == 9
    assert sim.peak_calls_per_minute(component=COMP) == 4
    assert sim.peak_calls_per_minute(component=COMP, endpoint=AUTHORIZER_TOKEN) == 3
    assert sim.peak_calls_per_minute(endpoint=STABLE_TOKEN) == 0
    assert sim.peak_calls(120) == 17
    with pytest.raises(ValueError, match="not both"):
        sim.peak_calls_per_minute(appid=APPID, component=COMP)


def test_without_refusals_the_peak_stays_within_the_limit(
    sim: WeChatSimulator, clock: ManualClock
) -> None:
    sim.set_minute_limits({"per_app": 7})
    for step in range(400):  # bursts and gaps, some of them over the limit
        clock.advance((step * 7919) % 23 / 2)
        fetch(sim)
    refusals = sim.calls(errcode=45011)
    assert refusals > 0
    admitted = [r.time for r in sim.call_log if r.errcode == 0]
    assert peak_count(admitted, 60) == 7
    assert sim.peak_calls_per_minute(appid=APPID) > 7, "the peak includes the refused calls"


def test_idle_windows_are_forgotten() -> None:
    limiter = MinuteLimiter([CLASSIC_TOKEN], [], {"per_app": 1, "global": 100_000})
    for i in range(10_000):
        assert limiter.admit(START, CLASSIC_TOKEN, f"wx{i:016d}") is None
    assert limiter.admit(START, CLASSIC_TOKEN, "wx0000000000000000") == "per_app"
    assert limiter.admit(START + 61, CLASSIC_TOKEN, "wxlater") is None
    assert len(limiter._windows) == 2  # global and wxlater


def test_peak_count_rule() -> None:
    assert peak_count([], 60) == 0
    assert peak_count([0, 59.999], 60) == 2
    assert peak_count([0, 60], 60) == 1
    assert peak_count([5, 1, 3, 2], 2) == 2
    with pytest.raises(ValueError, match="positive"):
        peak_count([1], 0)


# ------------------------------------------------------------ control API, CLI


def control(sim: WeChatSimulator, method: str, path: str, body: Any = None) -> httpx.Response:
    raw = b"" if body is None else json.dumps(body).encode()
    query = dict(httpx.URL(path).params)
    answer = sim.handle(method, httpx.URL(path).path, query, raw)
    return httpx.Response(answer.status, content=answer.body)


def test_control_api_sets_the_minute_limits_and_reports_peaks(sim: WeChatSimulator) -> None:
    limits = {"per_app": 3, "global": 10, CLASSIC_TOKEN: None}
    assert control(sim, "POST", "/_sim/minute_limits", limits).json() == {"minute_limits": limits}
    assert control(sim, "GET", "/_sim/minute_limits").json() == {"minute_limits": limits}
    assert sim.minute_limits == limits
    assert control(sim, "POST", "/_sim/minute_limits", {"per_minute": 2}).status_code == 400
    assert control(sim, "POST", "/_sim/minute_limits", {"global": "10"}).status_code == 400
    assert control(sim, "POST", "/_sim/minute_limits", [1]).status_code == 400
    for _ in range(3):
        assert "access_token" in stable(sim)
    assert refused(stable(sim))
    stats = control(sim, "GET", "/_sim/stats?log=0").json()
    assert stats["minute_limit_rejections"]["by_appid"] == {APPID: 1}
    peak = control(sim, "GET", "/_sim/peak_calls?window=1&appid=" + APPID).json()
    assert peak == {"window": 1.0, "peak": 4}
    assert control(sim, "GET", "/_sim/peak_calls").json()["peak"] == 4
    assert control(sim, "GET", "/_sim/peak_calls?window=soon").status_code == 400
    assert control(sim, "GET", "/_sim/peak_calls?window=0").status_code == 400
    assert control(sim, "DELETE", "/_sim/minute_limits").json() == {"minute_limits": {}}
    assert "access_token" in stable(sim)


def test_command_line_minute_limits() -> None:
    parser = argparse.ArgumentParser()
    parsed = _minute_limits(["per_app=3", f"{CLASSIC_TOKEN}=10", "global = 50"], parser)
    assert parsed == {"per_app": 3, CLASSIC_TOKEN: 10, "global": 50}
    for bad in ("per_app", "per_app=many"):
        with pytest.raises(SystemExit):
            _minute_limits([bad], parser)


# ----------------------------------------------------------------------- latency


@pytest.fixture
def slow_sim(clock: ManualClock) -> WeChatSimulator:
    s = WeChatSimulator(clock, latency=0.1)
    s.add_app(APPID, SECRET)
    return s


def test_latency_option_delays_every_call_in_real_time(
    slow_sim: WeChatSimulator, clock: ManualClock
) -> None:
    started = time.monotonic()
    token = fetch(slow_sim)["access_token"]
    assert slow_sim.handle("GET", BUSINESS, {"access_token": token}).status == 200
    assert time.monotonic() - started >= 0.2
    assert clock.now() == START, "real seconds: a manual clock does not move"


def test_latency_does_not_serialize_concurrent_calls(slow_sim: WeChatSimulator) -> None:
    answers: list[Any] = []
    threads = [threading.Thread(target=lambda: answers.append(fetch(slow_sim))) for _ in range(8)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    assert len(answers) == 8
    assert all("access_token" in a for a in answers)
    assert 0.1 <= elapsed < 0.5, "the sleep happens outside the simulator's lock"


@pytest.fixture
def client(sim: WeChatSimulator) -> Iterator[httpx.Client]:
    with SimulatorServer(sim) as server, httpx.Client(base_url=server.base_url, timeout=5) as c:
        yield c


def test_latency_and_minute_limits_over_http(client: httpx.Client) -> None:
    fault = {"kind": "latency", "seconds": 0.1, "endpoint": CLASSIC_TOKEN}
    assert client.post("/_sim/faults", json=fault).status_code == 200
    assert client.post("/_sim/minute_limits", json={"per_app": 1}).status_code == 200
    params = {"grant_type": "client_credential", "appid": APPID, "secret": SECRET}
    started = time.monotonic()
    assert "access_token" in client.get(CLASSIC_TOKEN, params=params).json()
    assert refused(client.get(CLASSIC_TOKEN, params=params).json())
    assert time.monotonic() - started >= 0.2
