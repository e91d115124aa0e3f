"""wechatpy on the central token: no token fetch of its own, one passive refresh per eviction.

wechatpy's clients speak ``requests`` to WeChat's real hosts; here a transport adapter sends
those requests to the WeChat simulator's HTTP server on 127.0.0.1 (and records them), while
the real refresher service keeps the token table (moto DynamoDB) fresh.
"""

from __future__ import annotations

import io
import logging
import random
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit, urlunsplit

import boto3
import httpx
import pytest
import requests
import wechatpy
from moto import mock_aws
from requests.adapters import HTTPAdapter
from token_refresher.service import RefreshService
from token_refresher.settings import Settings
from token_refresher.triggers import Passive, Scheduled
from token_refresher.wiring import build_service
from wechat_token import PassiveRefreshError, TokenReader, TokenStoreError
from wechat_token.record import Kind, fingerprint
from wechat_token.wechatpy_adapter import (
    CentralWeChatClient,
    CentralWeComClient,
    WeChatClientException,
)
from wechatpy.client.base import BaseWeChatClient

from local_aws.resources import create_token_table
from local_aws.static_secrets import StaticSecrets
from simulator import (
    CLASSIC_TOKEN,
    MP_TICKET,
    WECOM_TOKEN,
    ManualClock,
    SimulatorServer,
    WeChatSimulator,
)
from tests.scenarios.harness import MirroringDynamoDB, TableMirror

LAYER = Path(__file__).resolve().parents[2] / "layers" / "wechat_token"
TABLE = "wechatpy"
BASE = "http://wechat.sim"
APP, SECRET = "wxwechatpy0000001", "wechatpy-app-secret"
CORP, AGENT, AGENT_SECRET = "wwpy0000000001", "1000002", "wechatpy-agent-secret"
WECOM_APP = f"{CORP}:{AGENT}"
START = 1_790_000_000.0
WECHAT_HOSTS = ("https://api.weixin.qq.com/", "https://qyapi.weixin.qq.com/")
CALLBACK_IP = "/cgi-bin/getcallbackip"


@dataclass(frozen=True)
class Sent:
    """One request a wechatpy client sent (the token by fingerprint only)."""

    method: str
    path: str
    token: str | None
    body_length: int


# moto's mock_aws routes every requests call through ``responses``, which matches it against
# hundreds of AWS URL patterns before letting it through (~3 ms a call). Loopback traffic to
# the simulator is not AWS's: it is sent by requests' own adapter, taken before any mock.
_REAL_SEND = HTTPAdapter.send


class Loopback(HTTPAdapter):
    """Sends requests for WeChat's hosts to the simulator on loopback, recording each."""

    def __init__(self, base_url: str, sent: list[Sent]) -> None:
        super().__init__()
        self._netloc = urlsplit(base_url).netloc
        self.sent = sent

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        split = urlsplit(request.url or "")
        token = parse_qs(split.query).get("access_token", [None])[0]
        body = request.body if isinstance(request.body, bytes | str) else b""
        self.sent.append(
            Sent(
                str(request.method),
                split.path,
                fingerprint(token) if token else None,
                len(body),
            )
        )
        request.url = urlunsplit(("http", self._netloc, split.path, split.query, ""))
        response: requests.Response = _REAL_SEND(self, request, **kwargs)
        return response


Client = TypeVar("Client", bound=BaseWeChatClient)


@dataclass
class Rig:
    sim: WeChatSimulator
    clock: ManualClock
    service: RefreshService
    dynamodb: Any
    mirror: TableMirror
    server: SimulatorServer
    sent: list[Sent] = field(default_factory=list)  # what the wechatpy clients sent
    passive_calls: list[tuple[str, str, str, int | None]] = field(default_factory=list)

    def passive(self, app_id: str, kind: str, stale: str, errcode: int | None) -> str:
        """The PassiveRefreshFunction, in-process: the refresher's own report handling."""
        self.passive_calls.append((app_id, kind, stale, errcode))
        request = Passive(app_id=app_id, kind=Kind(kind), stale=stale, errcode=errcode)
        return self.service.report(request)[0].outcome

    def reader(self, *, mirrored: bool = False) -> TokenReader:
        """A consumer's reader: boto3 GetItem on the table, as in Lambda; or (``mirrored``)
        the table's exact in-memory mirror, for the long run (moto spends ~8 ms a read)."""
        if mirrored:
            return TokenReader(
                source=self.mirror.source(), clock=self.clock.now, passive_refresh=None
            )
        return TokenReader(TABLE, client=self.dynamodb, clock=self.clock.now, passive_refresh=None)

    def wire(self, client: Client) -> Client:
        for host in WECHAT_HOSTS:
            client._http.mount(host, Loopback(self.server.base_url, self.sent))
        return client

    def central(self, **kwargs: Any) -> CentralWeChatClient:
        kwargs.setdefault("reader", self.reader())
        kwargs.setdefault("passive_refresh", self.passive)
        return self.wire(CentralWeChatClient(APP, sleep=lambda _: None, **kwargs))

    def central_wecom(self, **kwargs: Any) -> CentralWeComClient:
        kwargs.setdefault("reader", self.reader())
        kwargs.setdefault("passive_refresh", self.passive)
        return self.wire(CentralWeComClient(CORP, WECOM_APP, sleep=lambda _: None, **kwargs))

    def plain(self) -> wechatpy.WeChatClient:
        """wechatpy as its README shows it: the AppSecret, and a cache of its own."""
        return self.wire(wechatpy.WeChatClient(APP, SECRET))

    def stored(self, app_id: str = APP, kind: str = "access_token") -> str:
        record = self.reader().read(app_id, kind)
        assert record is not None
        assert record.value is not None
        return record.value

    def sent_to(self, path: str) -> list[Sent]:
        return [request for request in self.sent if request.path == path]


CLASSIC_ENTRY = {APP: {"secret": SECRET}}
FULL_REGISTRY = {
    APP: {"secret": SECRET, "tickets": ["jsapi", "wx_card"]},
    WECOM_APP: {
        "type": "wecom",
        "corpid": CORP,
        "secret": AGENT_SECRET,
        "tickets": ["jsapi", "agent_config"],
    },
}


@contextmanager
def deployed(dynamodb: Any, registry: dict[str, Any]) -> Iterator[Rig]:
    """The refresher (moto DynamoDB, the simulator in-process) has run once; the simulator
    also serves HTTP on loopback for the wechatpy clients."""
    clock = ManualClock(START)
    sim = WeChatSimulator(clock, seed=21)
    sim.add_app(APP, SECRET)
    sim.add_wecom_app(CORP, AGENT, AGENT_SECRET)
    with SimulatorServer(sim) as server, mock_aws():  # a fresh, empty moto per rig
        create_token_table(dynamodb, TABLE)
        mirror = TableMirror(TABLE)
        service = build_service(
            Settings(
                table_name=TABLE,
                registry_secret_id="apps",
                wechat_api_base_url=BASE,
                wecom_api_base_url=BASE,
            ),
            dynamodb=MirroringDynamoDB(dynamodb, mirror),  # type: ignore[arg-type]
            secrets=StaticSecrets(registry),  # type: ignore[arg-type]
            http=httpx.Client(transport=sim.transport()),
            clock=clock.now,
            sleep=lambda _: None,
            rng=random.Random(2),
        )
        service.run(Scheduled())
        yield Rig(sim, clock, service, dynamodb, mirror, server)


@pytest.fixture(scope="module")
def dynamodb() -> Any:
    """One boto3 client for the module (making one costs ~0.15 s); moto serves it per rig."""
    return boto3.client("dynamodb", region_name="us-east-1")


@pytest.fixture
def rig(dynamodb: Any) -> Iterator[Rig]:
    """One classic app, no tickets."""
    with deployed(dynamodb, CLASSIC_ENTRY) as rig:
        yield rig


@pytest.fixture
def full_rig(dynamodb: Any) -> Iterator[Rig]:
    """The classic app with its JS-SDK tickets, and a WeCom application with its tickets."""
    with deployed(dynamodb, FULL_REGISTRY) as rig:
        yield rig


def evict(rig: Rig) -> str:
    """Someone else fetches twice: the stored token is the third and dead at once."""
    stored = rig.stored()
    rig.sim.foreign_fetch(APP)
    rig.sim.foreign_fetch(APP)
    assert rig.sim.token_status(stored) == 40001
    return stored


# -- loading --------------------------------------------------------------------------------


def _run(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(LAYER)!r}); {code}"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_importing_wechat_token_does_not_import_wechatpy() -> None:
    code = (
        "import wechat_token; from wechat_token import *; "
        "wechat_token.WeChatClient; wechat_token.jsapi_signature; "
        "print(sorted(m for m in ('wechatpy', 'requests') if m in sys.modules))"
    )
    assert _run(code) == "[]"


def test_without_wechatpy_the_adapter_says_what_to_install() -> None:
    code = (
        "sys.modules['wechatpy'] = None\n"
        "try:\n    import wechat_token.wechatpy_adapter\n"
        "except ImportError as exc:\n    print(exc)\n"
        "import wechat_token; print(wechat_token.get_access_token.__name__)"
    )
    out = _run(code)
    assert "add wechatpy (tested with 1.8.18) to your function's requirements" in out
    assert out.endswith("get_access_token"), "the rest of the layer still imports"


# -- the day: no token fetch, every call succeeds --------------------------------------------


def test_a_simulated_day_of_wechatpy_calls_makes_no_token_call(rig: Rig) -> None:
    # The refresher's schedule (every 2 minutes) on moto; the consumer reads the table's
    # exact mirror and calls a business API over loopback HTTP every minute (its cache
    # lives 60 s), through a day of token rotations on WeChat servers whose clocks disagree.
    client = rig.central(reader=rig.reader(mirrored=True))
    refresher_fetches = rig.sim.calls(CLASSIC_TOKEN, APP)
    tokens_used: set[str | None] = set()
    day, step, schedule = 86_400, 60, 120
    for second in range(0, day, step):
        if second % schedule == 0:
            rig.service.run(Scheduled())
        ips = client.misc.get_wechat_ips()  # raises WeChatClientException on any failure
        assert ips
        tokens_used.add(rig.sent[-1].token)
        rig.clock.advance(step)
    assert rig.sent_to(CLASSIC_TOKEN) == [], "the wechatpy client fetched a token itself"
    assert len(rig.sent_to(CALLBACK_IP)) == day // step, "one request per call: no retries"
    assert rig.passive_calls == [], "no call was ever rejected"
    assert len(tokens_used) >= 12, f"only {len(tokens_used)} tokens in a day: did it rotate?"
    assert rig.sim.calls(CLASSIC_TOKEN, APP) > refresher_fetches, "the refresher rotated it"


# -- a rejected token -----------------------------------------------------------------------


def test_a_foreign_eviction_costs_one_passive_refresh_and_the_call_succeeds(rig: Rig) -> None:
    client = rig.central()
    client.misc.get_wechat_ips()  # the token is cached now
    stale = evict(rig)
    fetches = rig.sim.calls(CLASSIC_TOKEN, APP)
    assert client.misc.get_wechat_ips()
    assert rig.passive_calls == [(APP, "access_token", fingerprint(stale), 40001)]
    assert rig.sim.calls(CLASSIC_TOKEN, APP) == fetches + 1, "one new token, by the refresher"
    calls = rig.sent_to(CALLBACK_IP)
    assert [call.token for call in calls] == [fingerprint(stale)] * 2 + [
        fingerprint(rig.stored())
    ], "the rejected call was retried once, with the stored replacement"
    assert rig.sent_to(CLASSIC_TOKEN) == []
    assert rig.sim.is_token_accepted(rig.stored())


def test_a_token_replaced_in_the_table_is_used_without_a_report(rig: Rig) -> None:
    client = rig.central()
    client.misc.get_wechat_ips()
    stale = evict(rig)
    rig.passive(APP, "access_token", fingerprint(stale), 40001)  # another consumer reported
    rig.passive_calls.clear()
    assert client.misc.get_wechat_ips()
    assert rig.passive_calls == [], "the consistent re-read found the new token"


def test_a_rejected_retry_is_raised_never_looped(rig: Rig) -> None:
    rig.sim.add_fault("errcode", endpoint=CALLBACK_IP, errcode=40001, count=50)
    client = rig.central()
    evict(rig)
    with pytest.raises(WeChatClientException) as caught:
        client.misc.get_wechat_ips()
    assert caught.value.errcode == 40001
    assert len(rig.sent_to(CALLBACK_IP)) == 2, "sent once and retried once"
    assert len(rig.passive_calls) == 1
    assert rig.sent_to(CLASSIC_TOKEN) == []


def test_plain_wechatpy_fetches_a_token_on_every_rejection(rig: Rig) -> None:
    # What the adapter replaces: wechatpy's own recovery fetches and retries without end
    # while WeChat rejects the call (each turn a /cgi-bin/token call, a token evicted).
    rig.sim.add_fault("errcode", endpoint=CALLBACK_IP, errcode=40001, count=4)
    assert rig.plain().misc.get_wechat_ips()
    assert len(rig.sent_to(CLASSIC_TOKEN)) == 5, "one fetch to start, one per rejection"


def test_a_rejection_that_is_not_the_token_s_is_raised_unretried(rig: Rig) -> None:
    rig.sim.add_fault("errcode", endpoint=CALLBACK_IP, errcode=40001, count=1)
    client = rig.central()
    fetches = rig.sim.calls(CLASSIC_TOKEN, APP)
    with pytest.raises(WeChatClientException, match="WeChat still accepts the stored token"):
        client.misc.get_wechat_ips()
    assert len(rig.passive_calls) == 1
    assert len(rig.sent_to(CALLBACK_IP)) == 1
    assert rig.sim.calls(CLASSIC_TOKEN, APP) == fetches, "nothing was rotated"


def test_without_permission_to_report_the_rejection_says_what_to_set(rig: Rig) -> None:
    client = rig.central(passive_refresh=None)
    evict(rig)
    with pytest.raises(WeChatClientException, match="PASSIVE_REFRESH_FUNCTION_NAME") as caught:
        client.misc.get_wechat_ips()
    assert caught.value.errcode == 40001
    assert rig.sent_to(CLASSIC_TOKEN) == [], "and it still does not fetch one itself"


def test_by_default_reporting_follows_the_stack_s_setting(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    evict(rig)
    monkeypatch.delenv("PASSIVE_REFRESH_FUNCTION_NAME", raising=False)
    unset = rig.wire(CentralWeChatClient(APP, reader=rig.reader()))
    with pytest.raises(WeChatClientException, match="PASSIVE_REFRESH_FUNCTION_NAME"):
        unset.misc.get_wechat_ips()
    monkeypatch.setenv("PASSIVE_REFRESH_FUNCTION_NAME", "wechat-token-passive")
    named = rig.wire(CentralWeChatClient(APP, reader=rig.reader()))
    with pytest.raises(PassiveRefreshError, match="'wechat-token-passive'"):
        named.misc.get_wechat_ips()  # it invoked the named function (moto has none)
    assert rig.sent_to(CLASSIC_TOKEN) == []


def test_an_upload_is_sent_whole_again_on_the_retry(rig: Rig) -> None:
    client = rig.central()
    evict(rig)
    media = io.BytesIO(b"x" * 4096)
    assert client.post("getcallbackip", files={"media": ("a.jpg", media)})
    first, retry = rig.sent_to(CALLBACK_IP)
    assert first.body_length > 4096
    assert retry.body_length == first.body_length


def test_fetch_access_token_reads_the_table(rig: Rig) -> None:
    client = rig.central()
    assert client.fetch_access_token() == {"access_token": rig.stored()}
    assert client.access_token == rig.stored()
    assert rig.sent == []


def test_without_a_readable_table_there_is_a_token_error_not_a_fetch(rig: Rig) -> None:
    client = rig.central(reader=TokenReader("no-such-table", client=rig.dynamodb))
    with pytest.raises(TokenStoreError, match="no-such-table"):
        client.misc.get_wechat_ips()
    assert rig.sent == []


# -- tickets ----------------------------------------------------------------------------------


def test_js_sdk_tickets_are_the_stored_ones(full_rig: Rig) -> None:
    rig = full_rig
    client = rig.central()
    ticket = client.jsapi.get_jsapi_ticket()
    assert ticket == rig.stored(APP, "jsapi_ticket")
    assert client.jsapi.get_jsapi_card_ticket() == rig.stored(APP, "wx_card_ticket")
    signature = client.jsapi.get_jsapi_signature("nonce", ticket, 1_790_000_000, "https://x/")
    assert len(signature) == 40
    assert rig.sent_to(MP_TICKET) == [], "no ticket fetched by the consumer"


# -- the failure the adapter prevents --------------------------------------------------------


def test_two_plain_wechatpy_clients_kill_the_central_token(rig: Rig) -> None:
    central = rig.stored()
    for _cold_start in range(2):  # two execution environments, each with an empty cache
        assert rig.plain().misc.get_wechat_ips()
    assert len(rig.sent_to(CLASSIC_TOKEN)) == 2
    assert rig.sim.token_status(central) == 40001, "the stored token is evicted"
    answer = requests.get(
        f"{rig.server.base_url}{CALLBACK_IP}", params={"access_token": central}, timeout=5
    ).json()
    assert answer["errcode"] == 40001, "every consumer of the table now gets 40001"


def test_two_central_clients_leave_the_central_token_alive(rig: Rig) -> None:
    central = rig.stored()
    for _cold_start in range(2):
        assert rig.central().misc.get_wechat_ips()
    assert rig.sent_to(CLASSIC_TOKEN) == []
    assert rig.sim.is_token_accepted(central)


# -- WeCom ------------------------------------------------------------------------------------


def test_a_wecom_client_uses_the_application_s_stored_token_and_tickets(full_rig: Rig) -> None:
    rig = full_rig
    client = rig.central_wecom()
    assert client.misc.get_wechat_ips()
    [call] = rig.sent_to(CALLBACK_IP)
    assert call.token == fingerprint(rig.stored(WECOM_APP))
    assert client.jsapi.get_jsapi_ticket() == rig.stored(WECOM_APP, "jsapi_ticket")
    assert client.jsapi.get_agent_jsapi_ticket() == rig.stored(WECOM_APP, "agent_config_ticket")
    assert rig.sent_to(WECOM_TOKEN) == []
    assert AGENT_SECRET[:10] not in client.access_token_key


def test_a_wecom_token_invalidated_early_is_replaced_by_one_report(full_rig: Rig) -> None:
    rig = full_rig
    client = rig.central_wecom()
    stale = rig.stored(WECOM_APP)
    client.misc.get_wechat_ips()
    assert rig.sim.invalidate_wecom(CORP, AGENT)
    assert client.misc.get_wechat_ips()
    assert rig.passive_calls == [(WECOM_APP, "access_token", fingerprint(stale), 40014)]
    assert rig.stored(WECOM_APP) != stale
    assert rig.sent_to(WECOM_TOKEN) == []


# -- nothing leaks ----------------------------------------------------------------------------


def test_no_token_reaches_the_logs_at_debug(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client = rig.central()
    client.misc.get_wechat_ips()
    stale = evict(rig)
    client.misc.get_wechat_ips()
    logged = caplog.text
    assert stale not in logged
    assert rig.stored() not in logged
    assert "access_token=" not in logged
