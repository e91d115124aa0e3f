"""No token at any log level on the consumer side, and no exception that carries one.

A consumer's root logger at DEBUG sees everything botocore, urllib3 and httpx log: the
GetItem answer (the stored token), request URLs (the token in WeChat's query string). The
layer quiets those loggers whenever it creates or uses a client, so these tests start the way
a fresh consumer process does (those loggers unset), capture every logger at DEBUG through
the real clients (boto3 on moto's DynamoDB, boto3 Lambda and httpx over loopback HTTP), and
look for the token in every record and in every exception of every chain.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import httpx
import pytest
import wechat_token
from moto import mock_aws
from wechat_token import (
    TokenError,
    TokenExpiredError,
    TokenReader,
    TokenStoreError,
    WeChatClient,
    WeChatTransportError,
)
from wechat_token.record import fingerprint
from wechat_token.redaction import AWS_WIRE_LOGGERS, HTTP_WIRE_LOGGERS

from local_aws.resources import create_token_table

TABLE = "wechat-token-leaks"
APP = "wxleaks0000000001"
OLD = "ACCESSTOKEN-CANARY-OLD-" + "o" * 60
NEW = "ACCESSTOKEN-CANARY-NEW-" + "n" * 60
TOKENS = (OLD, NEW)
START = 1_790_000_000.0
BUSINESS = "/cgi-bin/get_api_domain_ip"


class Everything(logging.Handler):
    """Every record of every logger, formatted with its exception and stack; ``paused()``
    while the test itself plays the refresher (which runs in another process in production)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self._paused = 0
        self._pause_lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        if not self._paused:
            self.texts.append(self.format(record) + repr(record.args))

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        with self._pause_lock:
            self._paused += 1
        try:
            yield
        finally:
            with self._pause_lock:
                self._paused -= 1

    @property
    def text(self) -> str:
        return "\n".join(self.texts)


@pytest.fixture
def every_log() -> Iterator[Everything]:
    """The root logger at DEBUG, wire loggers as a fresh process has them (unset)."""
    handler = Everything()
    wire = [logging.getLogger(n) for n in (*AWS_WIRE_LOGGERS, *HTTP_WIRE_LOGGERS)]
    saved = [(logger, logger.level) for logger in wire]
    root_level = logging.root.level
    for logger in wire:
        logger.setLevel(logging.NOTSET)
    deaf = [  # loggers that do not propagate to the root get the handler themselves
        logger
        for logger in logging.root.manager.loggerDict.values()
        if isinstance(logger, logging.Logger) and not logger.propagate
    ]
    logging.root.addHandler(handler)
    for logger in deaf:
        logger.addHandler(handler)
    logging.root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logging.root.removeHandler(handler)
        for logger in deaf:
            logger.removeHandler(handler)
        logging.root.setLevel(root_level)
        for logger, level in saved:
            logger.setLevel(level)


def chain(exc: BaseException | None) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [current.__cause__, current.__context__]


def assert_clean(exc: BaseException) -> None:
    """Raised with nothing attached, and nothing in it or its traceback names a token."""
    assert exc.__cause__ is None, f"{type(exc).__name__} carries its cause"
    assert exc.__context__ is None, f"{type(exc).__name__} carries its context"
    for link in chain(exc):
        text = "".join(traceback.format_exception(link)) + repr(link) + repr(vars(link))
        for token in TOKENS:
            assert token not in text, f"a token in {type(link).__name__}"


def assert_no_token(where: str, text: str) -> None:
    for token in TOKENS:
        assert token not in text, f"a token leaked into {where}"
    assert "access_token=ACCESSTOKEN" not in text


# --------------------------------------------------------------------------- fake endpoints


@dataclass
class Endpoints:
    """A loopback server playing the Lambda Invoke API (the passive refresh function) and
    WeChat's business API. ``passive`` picks the function's answer; on ``refreshed`` it
    stores ``NEW`` in the table, as the refresher would."""

    dynamodb: Any
    log: Everything
    passive: str = "refreshed"  # or "function_error", or any outcome
    rejected: set[str] = field(default_factory=lambda: {OLD})
    reports: list[dict[str, Any]] = field(default_factory=list)
    wechat_urls: list[str] = field(default_factory=list)

    def invoke(self, payload: dict[str, Any]) -> tuple[dict[str, str], dict[str, Any]]:
        self.reports.append(payload)
        if self.passive == "function_error":
            return {"X-Amz-Function-Error": "Unhandled"}, {"errorMessage": "the refresher broke"}
        if self.passive == "refreshed":
            with self.log.paused():  # the refresher's own write, not the consumer's
                put(self.dynamodb, NEW, expires_in=6900)
        entry = {"app_id": payload["app_id"], "kind": payload["kind"], "outcome": self.passive}
        return {}, {"credentials": [entry]}

    def business(self, url: str) -> dict[str, Any]:
        self.wechat_urls.append(url)
        token = parse_qs(urlsplit(url).query).get("access_token", [""])[0]
        if token in self.rejected:
            return {"errcode": 40001, "errmsg": f"invalid credential, access_token is {token}"}
        return {"errcode": 0, "ip_list": ["101.226.103.0/25"]}


def serve(endpoints: Endpoints) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self, headers: dict[str, str], body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(200)
            for name, value in {"Content-Type": "application/json", **headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            payload = json.loads(self.rfile.read(length) or b"null")
            self._answer(*endpoints.invoke(payload))

        def do_GET(self) -> None:
            self._answer({}, endpoints.business(self.path))

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def put(dynamodb: Any, value: str, *, expires_in: float) -> None:
    dynamodb.put_item(
        TableName=TABLE,
        Item={
            "app_id": {"S": APP},
            "kind": {"S": "access_token"},
            "value": {"S": value},
            "expires_at": {"N": str(START + expires_in)},
            "fetched_at": {"N": str(START)},
            "version": {"N": "1"},
        },
    )


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        create_token_table(dynamodb, TABLE)
        monkeypatch.setenv("TOKEN_TABLE_NAME", TABLE)
        monkeypatch.setenv("WECHAT_APP_ID", APP)
        monkeypatch.delenv("WECHAT_TOKEN_CACHE_SECONDS", raising=False)
        monkeypatch.delenv("PASSIVE_REFRESH_FUNCTION_NAME", raising=False)
        monkeypatch.setattr(wechat_token.reader, "_default_reader", None)
        yield dynamodb
        monkeypatch.setattr(wechat_token.reader, "_default_reader", None)


@pytest.fixture
def endpoints(
    aws: Any, every_log: Everything, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Endpoints]:
    fake = Endpoints(aws, every_log)
    server = serve(fake)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", url)
    monkeypatch.setenv("WECHAT_API_BASE_URL", url)
    monkeypatch.setenv("PASSIVE_REFRESH_FUNCTION_NAME", "wechat-token-PassiveRefreshFunction")
    yield fake
    server.shutdown()
    server.server_close()


def clock() -> float:
    return START + 10


# --------------------------------------------------------------------------- the tests


def test_the_hazard_is_real_botocore_logs_the_token_when_not_quieted(
    aws: Any, every_log: Everything
) -> None:
    """The control: without the layer's quieting, this capture does see the GetItem body."""
    with every_log.paused():  # the test seeds the table as the refresher would
        put(aws, OLD, expires_in=6900)
    aws.get_item(TableName=TABLE, Key={"app_id": {"S": APP}, "kind": {"S": "access_token"}})
    assert OLD in every_log.text


def test_a_cache_miss_at_debug_logs_no_token(
    aws: Any, every_log: Everything, capsys: pytest.CaptureFixture[str]
) -> None:
    with every_log.paused():  # the test seeds the table as the refresher would
        put(aws, OLD, expires_in=6900)
    wechat_token.configure(clock=clock)  # the layer makes its own boto3 client
    assert wechat_token.get_access_token() == OLD
    reader = wechat_token.reader.default_reader()
    reader.invalidate(APP)
    assert reader.refetch(APP) == OLD  # a consistent miss too
    for name in AWS_WIRE_LOGGERS:
        assert logging.getLogger(name).getEffectiveLevel() >= logging.WARNING, name
    logging.getLogger("consumer.app").debug("the consumer's own DEBUG line")
    assert "the consumer's own DEBUG line" in every_log.text, "the capture sees DEBUG"
    assert_no_token("the logs", every_log.text)
    captured = capsys.readouterr()
    assert_no_token("stdout/stderr", captured.out + captured.err)


def test_a_client_given_to_the_layer_is_quieted_too(aws: Any, every_log: Everything) -> None:
    with every_log.paused():  # the test seeds the table as the refresher would
        put(aws, OLD, expires_in=6900)
    reader = TokenReader(TABLE, client=boto3.client("dynamodb"), clock=clock)
    assert reader.get(APP) == OLD
    assert_no_token("the logs", every_log.text)


@pytest.mark.parametrize("answer", ["failed", "rate_limited", "token_accepted", "function_error"])
def test_a_passive_report_on_an_expired_record_logs_no_token(
    endpoints: Endpoints, every_log: Everything, answer: str
) -> None:
    endpoints.passive = answer
    with every_log.paused():  # the test seeds the table as the refresher would
        put(endpoints.dynamodb, OLD, expires_in=-5)
    wechat_token.configure(clock=clock)  # passive refresh from PASSIVE_REFRESH_FUNCTION_NAME
    with pytest.raises(TokenExpiredError) as caught:
        wechat_token.get_access_token()
    assert endpoints.reports == [
        {"app_id": APP, "kind": "access_token", "stale_token": fingerprint(OLD), "errcode": 42001}
    ]
    assert_clean(caught.value)
    assert_no_token("the logs", every_log.text)
    assert_no_token("the report", json.dumps(endpoints.reports))


def test_an_unreachable_passive_function_carries_no_exception(
    aws: Any, every_log: Everything, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = closed.server_address[1]
    closed.server_close()  # nothing listens there now
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("PASSIVE_REFRESH_FUNCTION_NAME", "wechat-token-PassiveRefreshFunction")
    with every_log.paused():  # the test seeds the table as the refresher would
        put(aws, OLD, expires_in=-5)
    wechat_token.configure(clock=clock)
    with pytest.raises(TokenExpiredError, match="Could not invoke") as caught:
        wechat_token.get_access_token()
    assert_clean(caught.value)
    assert_no_token("the logs", every_log.text)


def test_a_store_failure_at_debug_carries_no_exception(aws: Any, every_log: Everything) -> None:
    reader = TokenReader("no-such-table", clock=clock)
    with pytest.raises(TokenStoreError, match="ResourceNotFoundException") as caught:
        reader.get(APP)
    assert_clean(caught.value)


def test_a_wechat_client_call_with_a_passive_refresh_logs_no_token(
    endpoints: Endpoints, every_log: Everything, capsys: pytest.CaptureFixture[str]
) -> None:
    with every_log.paused():  # the test seeds the table as the refresher would
        put(endpoints.dynamodb, OLD, expires_in=6900)
    wechat_token.configure(clock=clock)
    client = WeChatClient()  # its own httpx client, boto3 clients and passive refresh
    assert client.get(BUSINESS)["ip_list"]
    assert [parse_qs(urlsplit(u).query)["access_token"][0] for u in endpoints.wechat_urls] == [
        OLD,
        NEW,
    ], "rejected, reported, re-read, retried once"
    assert len(endpoints.reports) == 1
    for name in HTTP_WIRE_LOGGERS:
        assert logging.getLogger(name).getEffectiveLevel() >= logging.WARNING, name
    assert_no_token("the logs", every_log.text)
    captured = capsys.readouterr()
    assert_no_token("stdout/stderr", captured.out + captured.err)


def test_wechat_api_errors_redact_a_token_echoed_by_wechat(
    endpoints: Endpoints, every_log: Everything
) -> None:
    endpoints.rejected = {OLD, NEW}  # the replacement is rejected too: no second retry
    with every_log.paused():  # the test seeds the table as the refresher would
        put(endpoints.dynamodb, OLD, expires_in=6900)
    wechat_token.configure(clock=clock)
    with pytest.raises(TokenError) as caught:
        WeChatClient().get(BUSINESS)
    assert_clean(caught.value)
    assert_no_token("the logs", every_log.text)


def _url_error(cls: type[httpx.TransportError]) -> Any:
    def raise_it(request: httpx.Request) -> httpx.Response:
        raise cls(f"failed talking to {request.url}", request=request)

    return raise_it


@pytest.mark.parametrize(
    "transport",
    [
        _url_error(httpx.ConnectError),
        _url_error(httpx.ReadTimeout),
        _url_error(httpx.RemoteProtocolError),
        lambda request: httpx.Response(200, text=f"<html>{request.url}</html>"),
        lambda request: httpx.Response(502, text=f"bad gateway for {request.url}"),
    ],
    ids=["connect", "read_timeout", "protocol", "not_json_echoing_the_url", "http_502"],
)
def test_transport_failures_carry_neither_the_url_nor_the_httpx_error(
    aws: Any, every_log: Everything, transport: Any
) -> None:
    with every_log.paused():  # the test seeds the table as the refresher would
        put(aws, OLD, expires_in=6900)
    client = WeChatClient(
        APP,
        base_url="https://api.weixin.qq.test",
        reader=TokenReader(TABLE, clock=clock, passive_refresh=None),
        passive_refresh=None,
        http=httpx.Client(transport=httpx.MockTransport(transport)),
    )
    with pytest.raises(WeChatTransportError) as caught:
        client.get(BUSINESS)
    assert_clean(caught.value)
    assert_no_token("the logs", every_log.text)
