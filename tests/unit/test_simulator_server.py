"""The simulator over real HTTP on loopback, and `python -m simulator`."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from simulator import (
    CLASSIC_TOKEN,
    STABLE_TOKEN,
    WECOM_TOKEN,
    ManualClock,
    SimulatorServer,
    WeChatSimulator,
)

REPO = Path(__file__).resolve().parents[2]
APPID = "wx00000000000000a1"
SECRET = "0123456789abcdef0123456789abcdef"
CORPID = "ww0000000000000c01"
WECOM_SECRET = "wecom-secret-ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ"
BUSINESS = "/cgi-bin/get_api_domain_ip"
START = 1_700_000_000.0
PARAMS = {"grant_type": "client_credential", "appid": APPID, "secret": SECRET}
LISTENING = re.compile(r"^simulator listening on (http://127\.0\.0\.1:(\d+))$")


@pytest.fixture
def sim() -> WeChatSimulator:
    s = WeChatSimulator(ManualClock(START), seed=1)
    s.add_app(APPID, SECRET)
    return s


@pytest.fixture
def server(sim: WeChatSimulator) -> Iterator[SimulatorServer]:
    with SimulatorServer(sim) as running:
        yield running


@pytest.fixture
def client(server: SimulatorServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=5) as c:
        yield c


def test_serves_wechat_on_a_free_loopback_port(
    server: SimulatorServer, client: httpx.Client
) -> None:
    assert server.running
    assert server.port > 0
    assert server.base_url == f"http://127.0.0.1:{server.port}"
    token = client.get(CLASSIC_TOKEN, params=PARAMS).json()["access_token"]
    answer = client.get(BUSINESS, params={"access_token": token})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.json()["ip_list"]
    assert client.post(STABLE_TOKEN, json=PARAMS).json()["expires_in"] == 7200
    assert client.get(STABLE_TOKEN, params=PARAMS).json()["errcode"] == 43002
    assert client.get("/nowhere").status_code == 404


def test_control_api_over_http(
    server: SimulatorServer, client: httpx.Client, sim: WeChatSimulator
) -> None:
    registered = client.post(
        "/_sim/apps", json={"corpid": CORPID, "agentid": "1000002", "secret": WECOM_SECRET}
    )
    assert registered.status_code == 200
    data = client.get(WECOM_TOKEN, params={"corpid": CORPID, "corpsecret": WECOM_SECRET}).json()
    assert data["errcode"] == 0
    assert client.post("/_sim/clock/advance", json={"seconds": 7200}).json()["now"] == START + 7200
    assert client.get("/_sim/clock").json()["now"] == START + 7200
    assert client.get(BUSINESS, params={"access_token": data["access_token"]}).json()[
        "errcode"
    ] in {0, 42001}
    client.post("/_sim/faults", json={"kind": "errcode", "errcode": -1, "count": 1})
    assert client.get(CLASSIC_TOKEN, params=PARAMS).json()["errcode"] == -1
    client.post("/_sim/faults", json={"kind": "http_status", "status": 503})
    assert client.get(CLASSIC_TOKEN, params=PARAMS).status_code == 503
    assert client.delete("/_sim/faults").json() == {"faults": []}
    assert "access_token" in client.get(CLASSIC_TOKEN, params=PARAMS).json()
    assert client.post("/_sim/foreign_fetch", json={"appid": APPID}).status_code == 200
    stats = client.get("/_sim/stats")
    assert stats.status_code == 200
    body = stats.json()
    assert body["apps"][APPID]["foreign_fetches"] == 1
    assert body["apps"][APPID]["tokens_issued"] == 2
    assert SECRET not in stats.text
    assert WECOM_SECRET not in stats.text
    assert "call_log" not in client.get("/_sim/stats", params={"log": "0"}).json()
    assert sim.foreign_fetches(APPID) == 1


def test_the_access_log_is_silent(client: httpx.Client, capfd: pytest.CaptureFixture[str]) -> None:
    client.get(CLASSIC_TOKEN, params=PARAMS)
    client.get(CLASSIC_TOKEN, params={**PARAMS, "secret": SECRET + "x"})
    client.get("/nowhere", params=PARAMS)
    out, err = capfd.readouterr()
    assert SECRET not in out + err
    assert out + err == ""


def test_a_hung_request_times_out_and_stop_is_prompt(sim: WeChatSimulator) -> None:
    server = SimulatorServer(sim).start()
    try:
        sim.add_fault("timeout", hang_seconds=30)
        with (
            httpx.Client(base_url=server.base_url, timeout=0.3) as client,
            pytest.raises(httpx.ReadTimeout),
        ):
            client.get(CLASSIC_TOKEN, params=PARAMS)
    finally:
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 3
    assert not server.running
    deadline = time.monotonic() + 3
    while not sim.call_log and time.monotonic() < deadline:
        time.sleep(0.01)  # the woken handler thread records the call
    assert sim.call_log[0].fault == "timeout"
    assert sim.tokens_issued(APPID) == 0


def test_garbled_and_html_answers_over_the_wire(client: httpx.Client, sim: WeChatSimulator) -> None:
    sim.add_fault("garbled", count=1)
    assert client.get(CLASSIC_TOKEN, params=PARAMS).text == '{"access_tok'
    sim.add_fault("http_status", status=502, count=1)
    answer = client.get(CLASSIC_TOKEN, params=PARAMS)
    assert answer.status_code == 502
    assert "<html>" in answer.text


def test_many_clients_at_once(server: SimulatorServer, sim: WeChatSimulator) -> None:
    with httpx.Client(base_url=server.base_url, timeout=5) as c:
        token = c.get(CLASSIC_TOKEN, params=PARAMS).json()["access_token"]
    errors: list[Any] = []

    def consumer() -> None:
        with httpx.Client(base_url=server.base_url, timeout=5) as c:
            for _ in range(25):
                data = c.get(BUSINESS, params={"access_token": token}).json()
                if "ip_list" not in data:
                    errors.append(data)

    threads = [threading.Thread(target=consumer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sim.calls(BUSINESS, errcode=0) == 200


def test_only_loopback_is_allowed(sim: WeChatSimulator) -> None:
    for host in ("0.0.0.0", "192.168.1.10", "example.com", "::"):
        with pytest.raises(ValueError):
            SimulatorServer(sim, host=host)
    with SimulatorServer(sim, host="localhost") as server:
        assert server.base_url.startswith("http://127.0.0.1:")


def test_lifecycle(sim: WeChatSimulator) -> None:
    server = SimulatorServer(sim)
    with pytest.raises(RuntimeError):
        _ = server.base_url
    server.start()
    try:
        with pytest.raises(RuntimeError):
            server.start()
    finally:
        server.stop()
    server.stop()  # idempotent
    assert not server.running


def _run(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "simulator", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_python_m_simulator_serves_until_terminated() -> None:
    proc = _run(
        "--port",
        "0",
        "--app",
        f"{APPID}:{SECRET}",
        "--wecom",
        f"{CORPID}:1000002:{WECOM_SECRET}",
        "--manual-clock",
        "--start-time",
        str(START),
        "--seed",
        "5",
        "--fault",
        "errcode:errcode=-1,count=1,endpoint=/cgi-bin/token",
    )
    watchdog = threading.Timer(20, proc.kill)
    watchdog.start()
    try:
        assert proc.stdout is not None
        match = LISTENING.match(proc.stdout.readline().strip())
        assert match, "the simulator did not announce its URL"
        with httpx.Client(base_url=match.group(1), timeout=5) as client:
            assert client.get(CLASSIC_TOKEN, params=PARAMS).json()["errcode"] == -1
            assert "access_token" in client.get(CLASSIC_TOKEN, params=PARAMS).json()
            wecom = client.get(WECOM_TOKEN, params={"corpid": CORPID, "corpsecret": WECOM_SECRET})
            assert wecom.json()["errcode"] == 0
            assert client.get("/_sim/clock").json() == {
                "now": START,
                "manual": True,
                "wechat_day": int((START + 8 * 3600) // 86400),
            }
            assert client.post("/_sim/clock/advance", json={"seconds": 60}).status_code == 200
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=10)
        watchdog.cancel()
    assert proc.returncode == 0
    assert SECRET not in out + err
    assert WECOM_SECRET not in out + err


def test_python_m_simulator_rejects_bad_specs_without_echoing_them() -> None:
    proc = _run("--app", "no-colon-" + SECRET)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 2
    assert "--app expects APPID:SECRET" in err
    assert SECRET not in out + err
