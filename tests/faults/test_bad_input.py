"""Bad input, property-based: events, registry JSON and WeChat replies of any shape.

Whatever arrives, the refresher answers with one of its own errors (``RefresherError``
subclasses; ``TokenError`` on the consumer side) or a clean failure outcome, never a raw
``KeyError``/``TypeError``; the stored record is unchanged unless a usable token arrived;
and no generated secret ever appears in a message, a summary or a log line.

Runs on moto (``mock_aws``) and an ``httpx.MockTransport`` WeChat: fast and offline.
Inputs that are known to break the code today are excluded from the properties and
pinned by the regression tests at the end of this file.
"""

from __future__ import annotations

import importlib
import io
import json
import logging
import math
import random
import string
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field
from decimal import Decimal
from types import ModuleType
from typing import Any

import boto3
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import event as note_event
from hypothesis import strategies as st
from moto import mock_aws
from token_refresher.errors import EventError, RefresherError, RegistryError
from token_refresher.outcome import Status
from token_refresher.registry import AppConfig, parse_registry
from token_refresher.service import RefreshService
from token_refresher.settings import Settings
from token_refresher.token_store import TokenStore
from token_refresher.triggers import Forced, Passive, Scheduled
from token_refresher.wechat_api import MAX_EXPIRES_IN, MAX_VALUE_LENGTH, WeChatTokenAPI
from token_refresher.wiring import build_service
from wechat_token import TokenError, TokenReader
from wechat_token.record import ACCESS_TOKEN, CredentialKey, fingerprint

from local_aws.resources import create_token_table
from local_aws.static_secrets import SECRET_ID, StaticSecrets
from simulator import ManualClock, WeChatSimulator
from tests.faults.faultlib import START, Snapshot
from tests.support import parse_event

BASE = "https://api.weixin.qq.test"
TABLE = "wechat-token-faults"
APP = "wxbadinput0000001"
GOOD = "GOOD-" + "g" * 100  # the stored token every example starts from
SKEW = Settings.expiry_skew_seconds
# Error codes of the project's own classes (RefreshError.code) a failed outcome may carry.
OWN_CODES = {"transport", "garbled", "deadline", "budget", "conflict", "no_token"}

# -- strategies ------------------------------------------------------------------------------

secrets_ = st.from_regex(r"SEKRIT[A-Za-z0-9]{12,40}", fullmatch=True)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False),  # NaN: see test_nan_expires_in_is_a_garbled_reply
    st.text(max_size=30),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
control_chars = st.sampled_from(["\x00", "\n", "\t", " ", "\x1b", "\u2028", "\x7f", "\u200b"])


@st.composite
def tokens(draw: st.DrawFn) -> Any:
    """access_token values: usable ones, and every way one can be unusable."""
    body = draw(st.text(alphabet=string.ascii_letters + string.digits + "_-", min_size=8))
    usable = "TK" + body[: MAX_VALUE_LENGTH - 2]
    return draw(
        st.one_of(
            st.just(usable),
            st.just(usable + "x" * MAX_VALUE_LENGTH),  # too long
            st.just(""),
            control_chars.map(lambda c: usable[:5] + c + usable[5:]),
            st.text(min_size=1, max_size=40).map(lambda t: "TK" + t),
            json_values,
        )
    )


# Positive lives up to the skew margin are excluded: test_a_life_shorter_than_the_skew...
numbers = st.one_of(
    st.integers(max_value=0),
    st.integers(min_value=int(SKEW) + 1),
    st.floats(allow_nan=False).filter(lambda x: not 0 < x <= SKEW + 1),
)
expires_ins = st.one_of(numbers, st.booleans(), st.text(max_size=6), st.none(), json_values)
errcodes = st.one_of(
    st.sampled_from([0, -1, 40001, 40013, 40125, 40164, 45009, 89503, 99999]),
    st.integers(),
    st.floats(allow_nan=False),
    st.booleans(),
    st.text(max_size=6),
    st.none(),
)


@st.composite
def structured_replies(draw: st.DrawFn, secret: str) -> dict[str, Any]:
    reply: dict[str, Any] = {}
    if draw(st.booleans()):
        reply["access_token"] = draw(tokens())
    if draw(st.booleans()):
        reply["expires_in"] = draw(expires_ins)
    if draw(st.booleans()):
        reply["errcode"] = draw(errcodes)
    if draw(st.booleans()):
        # WeChat echoing the request (and so the secret) in errmsg must not leak it.
        reply["errmsg"] = draw(st.sampled_from(["", "ok", f"invalid appsecret {secret}", "rid"]))
    reply.update(draw(st.dictionaries(st.text(max_size=6), json_values, max_size=2)))
    return reply


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str = "application/json"
    parsed: Any = None  # the JSON object the body encodes, when it is one


@st.composite
def near_documented(draw: st.DrawFn, secret: str) -> dict[str, Any]:
    """WeChat's documented success, sometimes with one field bent out of shape."""
    body = draw(st.text(alphabet=string.ascii_letters + string.digits + "_-", min_size=20))
    reply: dict[str, Any] = {"access_token": "TK" + body[:200], "expires_in": 7200}
    if draw(st.booleans()):
        reply.update(errcode=0, errmsg="ok")
    bend = draw(st.sampled_from(["none", "none", "token", "expires_in", "errcode", "drop"]))
    if bend == "token":
        reply["access_token"] = draw(tokens())
    elif bend == "expires_in":
        reply["expires_in"] = draw(expires_ins)
    elif bend == "errcode":
        reply["errcode"] = draw(errcodes)
        reply["errmsg"] = f"rid: 1 {secret}"
    elif bend == "drop":
        del reply[draw(st.sampled_from(["access_token", "expires_in"]))]
    return reply


@st.composite
def replies(draw: st.DrawFn, secret: str) -> Reply:
    status = draw(st.sampled_from([200] * 12 + [204, 301, 400, 403, 404, 429, 500, 502, 503]))
    kind = draw(
        st.sampled_from(["near"] * 4 + ["structured"] * 3 + ["json", "html", "bytes", "truncated"])
    )
    if kind == "near":
        obj = draw(near_documented(secret))
        return Reply(status, json.dumps(obj).encode(), parsed=obj)
    if kind == "structured":
        obj = draw(structured_replies(secret))
        return Reply(status, json.dumps(obj).encode(), parsed=obj)
    if kind == "json":
        value = draw(json_values)
        return Reply(status, json.dumps(value).encode(), parsed=value)
    if kind == "html":
        page = f"<html><body>502 Bad Gateway {draw(st.sampled_from(['', secret]))}</body></html>"
        return Reply(status, page.encode(), "text/html")
    if kind == "bytes":
        raw = draw(st.binary(max_size=64))
        return Reply(status, b"\xff\xfe" + raw + b"\xc3\x28", "application/json")
    text = json.dumps({"access_token": "TK" + "t" * 60, "expires_in": 7200})
    cut = draw(st.integers(min_value=0, max_value=len(text) - 1))
    return Reply(status, text[:cut].encode())


def test_the_oracle_accepts_the_documented_reply() -> None:
    documented = {"access_token": "TK0123456789", "expires_in": 7200}
    assert usable(Reply(200, b"", parsed=documented)) == ("TK0123456789", 7200)
    assert usable(Reply(200, b"", parsed={**documented, "errcode": 0})) is not None
    assert usable(Reply(200, b"", parsed={**documented, "expires_in": True})) is None


def usable(reply: Reply) -> tuple[str, float] | None:
    """The (token, life) a reply carries if WeChat's documented contract holds for it."""
    obj = reply.parsed
    if reply.status != 200 or not isinstance(obj, dict):
        return None
    errcode = obj.get("errcode", 0)
    if errcode is not None and errcode != 0:
        return None
    value, life = obj.get("access_token"), obj.get("expires_in")
    if not isinstance(value, str) or not 0 < len(value) <= MAX_VALUE_LENGTH:
        return None
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        return None
    if isinstance(life, bool) or not isinstance(life, int | float) or not life > 0:
        return None
    return value, life


# -- a WeChat that answers what the example says, on moto ------------------------------------


@dataclass
class FakeWeChat:
    reply: Reply = field(default_factory=lambda: Reply(200, b"{}"))
    token_calls: int = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/cgi-bin/get_api_domain_ip":
            return httpx.Response(200, json={"ip_list": ["127.0.0.1"]})
        self.token_calls += 1
        return httpx.Response(
            self.reply.status,
            content=self.reply.body,
            headers={"content-type": self.reply.content_type},
        )


class MotoWorld:
    def __init__(self) -> None:
        self.clock = ManualClock(START)
        self.dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        create_token_table(self.dynamodb, TABLE)
        self.table = boto3.resource("dynamodb", region_name="us-east-1").Table(TABLE)
        self.wechat = FakeWeChat()
        self.logs = _Capture()

    def service(self, registry: dict[str, Any]) -> RefreshService:
        return build_service(
            Settings(
                table_name=TABLE,
                registry_secret_id=SECRET_ID,
                wechat_api_base_url=BASE,
                wecom_api_base_url=BASE,
                registry_cache_seconds=0,
            ),
            dynamodb=self.dynamodb,
            secrets=StaticSecrets(registry),  # type: ignore[arg-type]
            http=httpx.Client(transport=httpx.MockTransport(self.wechat)),
            clock=self.clock.now,
            sleep=lambda _: None,
            rng=random.Random(0),
        )

    def reset(self, app_id: str = APP) -> Snapshot:
        """Every example starts from the same good, fresh, unleased record."""
        self.clock.set(START)
        now = Decimal(str(START))
        self.table.put_item(
            Item={
                "app_id": app_id,
                "kind": ACCESS_TOKEN,
                "value": GOOD,
                "expires_at": now + 5000,
                "fetched_at": now - 1900,
                "last_success_at": now - 1900,
                "version": 3,
                "source": "/cgi-bin/token",
            }
        )
        self.logs.clear()
        return Snapshot.of(self.record(app_id))

    def record(self, app_id: str = APP) -> Any:
        return TokenStore(self.dynamodb, TABLE).find(CredentialKey(app_id, ACCESS_TOKEN))


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))
        if record.exc_info:
            self.lines.append(logging.Formatter().formatException(record.exc_info))

    def clear(self) -> None:
        self.lines.clear()

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


# The handler's Powertools logger ("wechat-token") and the service loggers ("wechat_token",
# which stops propagating once the handler module is imported) log to stdout: listen to each.
_LOGGERS = ("", "wechat_token", "wechat-token")


@contextmanager
def _listening(capture: _Capture) -> Iterator[None]:
    saved = [(logging.getLogger(name), logging.getLogger(name).level) for name in _LOGGERS]
    for log, _ in saved:
        log.addHandler(capture)
        log.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        for log, level in saved:
            log.removeHandler(capture)
            log.setLevel(level)


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoWorld]:
    with mock_aws():
        world = MotoWorld()
        with _listening(world.logs):
            yield world


def _no_leak(text: str, *values: str) -> None:
    for value in values:
        assert value not in text, "a secret or token leaked"


# -- events ----------------------------------------------------------------------------------

event_keys = st.sampled_from(
    ["app_id", "force", "stale_token", "kind", "errcode", "types", "detail-type", "source"]
)
event_values = st.one_of(
    json_values,
    st.sampled_from(
        [APP, f" {APP} ", "", "   ", "access_token", "jsapi_ticket", "stable", "wecom"]
    ),
    st.sampled_from([True, False, 40001, "sha256:0123456789", GOOD]),
    st.lists(st.sampled_from(["classic", "stable", "wecom", "nope", 1]), max_size=3),
)
events = st.one_of(
    json_values,
    st.dictionaries(event_keys, event_values, max_size=5),
    st.dictionaries(st.text(max_size=10), json_values, max_size=3),
)


@settings(max_examples=150, deadline=None)
@given(event=events, stale=secrets_)
def test_any_event_parses_or_is_refused_with_an_event_error(event: Any, stale: str) -> None:
    if isinstance(event, dict) and "stale_token" in event:
        event = {**event, "stale_token": stale}
    try:
        request = parse_event(event)
    except EventError as exc:
        _no_leak(str(exc), stale)
        return
    assert isinstance(request, Scheduled | Forced | Passive)
    app_id = getattr(request, "app_id", None)
    if app_id is not None:
        assert app_id == app_id.strip()
        assert app_id
    if isinstance(request, Forced):
        assert app_id, "a forced refresh always names its app"


class _Context:
    aws_request_id = "req-faults"
    function_name = "RefresherFunction"
    function_version = "$LATEST"
    memory_limit_in_mb = "256"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:RefresherFunction"
    log_group_name = "/aws/lambda/RefresherFunction"
    log_stream_name = "2026/11/21/[$LATEST]faults"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


@pytest.fixture
def handler(moto: MotoWorld) -> Iterator[ModuleType]:
    module = importlib.import_module("app")
    saved = getattr(module, "_service")  # noqa: B009 - the handler's warm-start cache
    yield module
    setattr(module, "_service", saved)  # noqa: B010


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(event=events, secret=secrets_)
def test_the_handler_answers_any_event_with_a_summary_or_its_own_error(
    handler: ModuleType, moto: MotoWorld, event: Any, secret: str
) -> None:
    before = moto.reset()
    issued = "TK-issued-" + secret[-8:] + "x" * 40
    moto.wechat.reply = Reply(
        200, json.dumps({"access_token": issued, "expires_in": 7200}).encode()
    )
    setattr(handler, "_service", moto.service({APP: {"secret": secret}}))  # noqa: B010
    out = io.StringIO()
    with redirect_stdout(out):
        try:
            summary = handler.lambda_handler(event, _Context())
        except RefresherError as exc:
            text = str(exc)
            note_event(type(exc).__name__)
        else:
            note_event("summary")
            text = json.dumps(summary)  # JSON-serialisable
            assert {"credentials", "failed", "refreshed"} <= set(summary)
    _no_leak(text + out.getvalue() + moto.logs.text, secret, issued, GOOD)
    record = moto.record()
    assert record.lease_owner is None
    assert Snapshot.of(record) == before or record.value == issued


# -- the registry ----------------------------------------------------------------------------

entry_values = st.one_of(
    json_values,
    st.sampled_from(["classic", "stable", "wecom", "official_account", "mini_program", "x"]),
    st.lists(st.sampled_from(["jsapi", "wx_card", "agent_config", "nope"]), max_size=3),
)
app_ids = st.one_of(
    st.sampled_from([APP, "ww123:1000002", "wx.ok-id_1", APP + "2"]),
    st.sampled_from(["a" * 129, "has space", "", "wx/../x"]),
    st.text(max_size=12),
)
entry_fields = st.fixed_dictionaries(
    {},
    optional={
        "type": st.one_of(
            st.sampled_from(["classic", "stable", "wecom", "official_account", "mini_program"]),
            entry_values,
        ),
        "appid": st.one_of(st.just("wxappid0000000001"), entry_values),
        "corpid": st.one_of(st.just("ww0123456789"), entry_values),
        "agentid": st.one_of(st.just(1000002), st.just("1000002"), entry_values),
        "tickets": st.one_of(st.just(["jsapi"]), entry_values),
        "enabled": st.one_of(st.booleans(), entry_values),
    },
)


@st.composite
def near_valid_entries(draw: st.DrawFn, secret: str) -> dict[str, Any]:
    """A documented registry, sometimes with one field of one entry bent out of shape."""
    entries: dict[str, Any] = {
        APP: {"secret": secret},
        "wxstable000000001": {"type": "stable", "secret": secret + "2", "tickets": ["jsapi"]},
        "ww0123456789:1000002": {
            "type": "wecom",
            "corpid": "ww0123456789",
            "agentid": 1000002,
            "secret": secret + "3",
        },
    }
    keep = draw(st.lists(st.sampled_from(sorted(entries)), min_size=1, max_size=3, unique=True))
    entries = {key: entries[key] for key in keep}
    if draw(st.booleans()):
        victim = entries[draw(st.sampled_from(sorted(entries)))]
        name = draw(st.sampled_from(["type", "secret", "appid", "corpid", "agentid", "tickets"]))
        victim[name] = draw(entry_values)
    return entries


@st.composite
def registries(draw: st.DrawFn, secret: str) -> str:
    shape = draw(
        st.sampled_from(["near"] * 4 + ["entries", "entries", "wrapped", "any_json", "text"])
    )
    if shape == "near":
        return json.dumps(draw(near_valid_entries(secret)))
    if shape == "text":
        return draw(st.text(max_size=60))
    if shape == "any_json":
        return json.dumps(draw(json_values))
    entries: dict[str, Any] = {}
    for app_id in draw(st.lists(app_ids, max_size=3)):
        entry = draw(entry_fields)
        if not draw(st.integers(0, 9)):
            entry["bogus"] = draw(entry_values)
        if draw(st.integers(0, 4)):
            entry["secret"] = draw(st.sampled_from([secret, f"  {secret}  ", secret + "\n"]))
        entries[app_id] = entry if draw(st.integers(0, 9)) else draw(json_values)
    return json.dumps({"apps": entries} if shape == "wrapped" else entries)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), secret=secrets_)
def test_any_registry_parses_or_is_refused_with_a_registry_error(
    data: st.DataObject, secret: str
) -> None:
    text = data.draw(registries(secret))
    try:
        apps = parse_registry(text)
    except RegistryError as exc:
        _no_leak(str(exc), secret)
        note_event("RegistryError")
        return
    note_event(f"{len(apps)} app(s)")
    for app_id, config in apps.items():
        assert isinstance(config, AppConfig)
        assert config.app_id == app_id
        assert config.type in ("classic", "stable", "wecom")
        assert config.secret == config.secret.strip()
        assert config.secret
        assert config.appid
        assert "secret=" not in repr(config)
        if len(config.secret) >= 12:  # a bent field may hold a word like "classic"
            _no_leak(repr(config), config.secret)


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data(), secret=secrets_)
def test_a_bad_registry_fails_the_run_with_a_registry_error(
    moto: MotoWorld, data: st.DataObject, secret: str
) -> None:
    text = data.draw(registries(secret))
    before = moto.reset()
    service = moto.service({})
    stages: list[str] = []

    def read(shard_id: str, stage: str) -> dict[str, str]:
        stages.append(stage)
        return {"SecretString": text}  # the previous version (AWSPREVIOUS) is just as bad

    service.registry._get = read  # type: ignore[method-assign]
    try:
        summary = service.run(Forced(APP))
    except RefresherError as exc:
        _no_leak(str(exc) + moto.logs.text, secret)
        assert Snapshot.of(moto.record()) == before
        if isinstance(exc, RegistryError):
            # A document that cannot be used fails the run only once the previous version
            # has been tried too.
            assert stages == ["AWSCURRENT", "AWSPREVIOUS"]
            note_event("RegistryError")
        else:
            note_event(type(exc).__name__)  # e.g. APP is not (validly) in the registry
        return
    note_event(f"{len(summary)} outcome(s), {len(summary.invalid_entries)} invalid")
    # Bad entries fail alone, named in the summary without their secrets.
    _no_leak(json.dumps(summary.as_dict()) + summary.error_message() + moto.logs.text, secret)
    for outcome in summary:
        _no_leak(json.dumps(outcome.as_dict()), secret)


# -- WeChat's replies ------------------------------------------------------------------------


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data(), secret=secrets_)
def test_any_wechat_reply_is_stored_whole_or_refused_cleanly(
    moto: MotoWorld, data: st.DataObject, secret: str
) -> None:
    reply = data.draw(replies(secret))
    before = moto.reset()
    moto.wechat.reply = reply
    service = moto.service({APP: {"secret": secret}})

    [outcome] = service.run(Forced(APP))

    record = moto.record()
    assert record.lease_owner is None, "the lease is always released"
    expected = usable(reply)
    note_event(f"{outcome.outcome} {(outcome.error or {}).get('code', '')}")
    if expected is not None:
        value, life = expected
        assert outcome.outcome == Status.REFRESHED, outcome.error
        assert record.value == value
        assert record.version == before.version + 1
        assert record.expires_at == START + min(int(life), MAX_EXPIRES_IN) - SKEW
        assert record.is_valid(moto.clock.now())
        assert record.previous_fingerprint == fingerprint(GOOD)
    else:
        assert outcome.outcome == Status.FAILED
        assert outcome.error is not None
        code = outcome.error["code"]
        assert code in OWN_CODES or code.lstrip("-").isdigit(), f"raw error {code}"
        assert Snapshot.of(record) == before, "nothing stored"
        assert record.last_error_code == code
        _no_leak(outcome.error["message"], GOOD)
    text = json.dumps(outcome.as_dict()) + moto.logs.text + str(record.last_error_message)
    _no_leak(text, secret)
    if isinstance(reply.parsed, dict):
        candidate = reply.parsed.get("access_token")
        if isinstance(candidate, str) and len(candidate) >= 8:
            _no_leak(text, candidate)


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "garbled", "garble": "html"},
        {"kind": "garbled", "garble": "truncated"},
        {"kind": "http_status", "status": 502},
        {"kind": "http_status", "status": 404},
        {"kind": "errcode", "errcode": 40125, "errmsg": "invalid appsecret"},
        {"kind": "errcode", "errcode": -1},
        {"kind": "timeout"},
    ],
    ids=lambda f: "-".join(str(v) for v in f.values()),
)
def test_the_simulators_faults_are_clean_failures(moto: MotoWorld, fault: dict[str, Any]) -> None:
    before = moto.reset()
    sim = WeChatSimulator(moto.clock, seed=3)
    sim.add_app(APP, "SEKRITsimulatorsecret0001")
    sim.add_fault(fault.pop("kind"), endpoint="/cgi-bin/token", **fault)
    service = moto.service({APP: {"secret": "SEKRITsimulatorsecret0001"}})
    service.api = WeChatTokenAPI(
        wechat_base_url=BASE,
        wecom_base_url=BASE,
        timeout_seconds=5,
        clock=moto.clock.now,
        http=httpx.Client(transport=sim.transport()),
    )
    [outcome] = service.run(Forced(APP))
    assert outcome.outcome == Status.FAILED
    assert outcome.error is not None
    assert outcome.error["code"] in OWN_CODES | {"40125", "-1"}
    assert Snapshot.of(moto.record()) == before
    _no_leak(json.dumps(outcome.as_dict()) + moto.logs.text, "SEKRITsimulatorsecret0001")


def test_a_consumer_reading_a_damaged_record_gets_a_token_error(moto: MotoWorld) -> None:
    """Records someone edited by hand: the reader refuses them in its own words."""
    reader = TokenReader(TABLE, client=moto.dynamodb, clock=moto.clock.now)
    now = Decimal(str(START))
    damaged: list[dict[str, Any]] = [
        {"value": GOOD},  # no expiry
        {"value": "", "expires_at": now + 100},
        {"value": GOOD, "expires_at": now - 1},  # expired
    ]
    for number, fields in enumerate(damaged):
        app_id = f"wxdamaged{number}"
        moto.table.put_item(Item={"app_id": app_id, "kind": ACCESS_TOKEN, **fields})
        with pytest.raises(TokenError) as caught:
            reader.get(app_id)
        _no_leak(str(caught.value), GOOD)


# -- bugs these tests found, now fixed ---------------------------------------------------------


def _fetch(body: bytes) -> Any:
    app = AppConfig(APP, "classic", APP, "SEKRITxfail00000001")
    api = WeChatTokenAPI(
        wechat_base_url=BASE,
        wecom_base_url=BASE,
        timeout_seconds=5,
        clock=lambda: START,
        http=httpx.Client(
            transport=httpx.MockTransport(lambda _: httpx.Response(200, content=body))
        ),
    )
    return api.fetch_token(app)


def test_nan_expires_in_is_a_garbled_reply() -> None:
    assert math.isnan(json.loads("NaN"))
    try:
        _fetch(b'{"access_token": "TK0123456789", "expires_in": NaN}')
    except RefresherError:
        return
    except Exception as exc:
        raise AssertionError(f"raw {type(exc).__name__}") from None
    raise AssertionError("a NaN life was accepted")


def test_a_deeply_nested_reply_is_a_garbled_reply() -> None:
    depth = 100_000
    try:
        _fetch(b"[" * depth + b"]" * depth)
    except RefresherError:
        return
    except RecursionError:
        raise AssertionError("raw RecursionError") from None


def test_a_deeply_nested_registry_is_a_registry_error() -> None:
    depth = 10_000
    try:
        parse_registry("[" * depth + "]" * depth)
    except RegistryError:
        return
    except RecursionError:
        raise AssertionError("raw RecursionError") from None


@pytest.mark.parametrize("life", [0.5, 1, 300])
def test_a_life_shorter_than_the_skew_never_replaces_a_good_token(
    moto: MotoWorld, life: float
) -> None:
    before = moto.reset()
    moto.wechat.reply = Reply(
        200, json.dumps({"access_token": "TKshortlived0001", "expires_in": life}).encode()
    )
    service = moto.service({APP: {"secret": "SEKRITshortlife00001"}})
    [outcome] = service.run(Forced(APP))
    record = moto.record()
    if outcome.outcome == Status.REFRESHED:
        assert record.is_valid(moto.clock.now()), "stored an already-expired token"
    else:
        assert Snapshot.of(record) == before
