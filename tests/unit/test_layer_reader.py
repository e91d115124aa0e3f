"""The consumer helper: which token a consumer gets, how often DynamoDB is read, what errors say."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import pytest
import wechat_token
from botocore.exceptions import ClientError
from moto import mock_aws
from wechat_token import (
    ConfigurationError,
    CredentialKey,
    CredentialRecord,
    DynamoDBRecordSource,
    InMemoryRecordSource,
    TokenError,
    TokenExpiredError,
    TokenNotFoundError,
    TokenReader,
    TokenStoreError,
)
from wechat_token.reader import CacheEntry
from wechat_token.settings import SAFE_MAX_CACHE_SECONDS

from local_aws.resources import create_token_table

from .conftest import TABLE, ManualClock

LAYER = Path(__file__).resolve().parents[2] / "layers" / "wechat_token"
APP = "wxreader000000001"


class CountingClient:
    """Wraps a DynamoDB client, counting GetItem calls and optionally failing them."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.reads = 0
        self.fail = False

    def get_item(self, **kwargs: Any) -> Any:
        self.reads += 1
        if self.fail:
            raise ClientError(
                {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow"}},
                "GetItem",
            )
        return self.client.get_item(**kwargs)


@pytest.fixture
def table(clock: ManualClock) -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_token_table(client, TABLE)
        yield boto3.resource("dynamodb", region_name="us-east-1").Table(TABLE)


@pytest.fixture
def client(table: Any) -> CountingClient:
    return CountingClient(boto3.client("dynamodb", region_name="us-east-1"))


def store(table: Any, clock: ManualClock, value: str, *, expires_in: float, **extra: Any) -> None:
    table.put_item(
        Item={
            "app_id": APP,
            "kind": "access_token",
            "value": value,
            "expires_at": int(clock.now + expires_in),
            "fetched_at": int(clock.now),
            "version": 1,
            **extra,
        }
    )


def reader(client: CountingClient, clock: ManualClock, **kwargs: Any) -> TokenReader:
    return TokenReader(TABLE, client=client, clock=clock, **kwargs)  # type: ignore[arg-type]


def test_returns_the_stored_token_and_serves_hits_from_memory(
    table: Any, client: CountingClient, clock: ManualClock
) -> None:
    store(table, clock, "TOKEN-A", expires_in=6900)
    r = reader(client, clock)
    assert [r.get(APP) for _ in range(100)] == ["TOKEN-A"] * 100
    assert client.reads == 1


def test_a_cached_token_is_reread_after_the_cache_seconds(
    table: Any, client: CountingClient, clock: ManualClock
) -> None:
    store(table, clock, "TOKEN-A", expires_in=6900)
    r = reader(client, clock)
    assert r.get(APP) == "TOKEN-A"
    store(table, clock, "TOKEN-B", expires_in=6900)
    clock.advance(59)
    assert r.get(APP) == "TOKEN-A", "within the 60 s cache"
    clock.advance(2)
    assert r.get(APP) == "TOKEN-B", "a rotated token is picked up within a minute"
    assert client.reads == 2


def test_the_cache_never_outlives_the_token(
    table: Any, client: CountingClient, clock: ManualClock
) -> None:
    store(table, clock, "TOKEN-A", expires_in=20)
    r = reader(client, clock)
    assert r.get(APP) == "TOKEN-A"
    clock.advance(20)
    with pytest.raises(TokenExpiredError):
        r.get(APP)


def test_an_expired_record_raises_with_what_to_check(
    table: Any, client: CountingClient, clock: ManualClock
) -> None:
    store(
        table,
        clock,
        "TOKEN-A",
        expires_in=-30,
        last_success_at=int(clock.now - 7000),
        last_error_code="40164",
        last_error_message="the refresher's egress IP is not on the whitelist",
        last_error_at=int(clock.now - 60),
    )
    with pytest.raises(TokenExpiredError) as caught:
        reader(client, clock).get(APP)
    message = str(caught.value)
    assert TABLE in message
    assert APP in message
    assert "expired at" in message
    assert "30 s ago" in message
    assert "last succeeded 2026-" in message
    assert "40164" in message
    assert "TOKEN-A" not in message


def test_a_missing_record_raises_not_found_naming_table_and_app(
    table: Any, client: CountingClient, clock: ManualClock
) -> None:
    with pytest.raises(TokenNotFoundError) as caught:
        reader(client, clock).get(APP)
    assert f"No access_token for app '{APP}' in DynamoDB table '{TABLE}'" in str(caught.value)
    assert "registry secret" in str(caught.value)
    assert isinstance(caught.value, TokenError)


def test_a_record_without_a_value_reports_the_refreshers_last_error(
    table: Any, client: CountingClient, clock: ManualClock
) -> None:
    table.put_item(
        Item={
            "app_id": APP,
            "kind": "access_token",
            "last_error_code": "40125",
            "last_error_message": "invalid AppSecret",
            "last_error_at": int(clock.now),
        }
    )
    with pytest.raises(TokenNotFoundError, match=r"last succeeded never.*40125"):
        reader(client, clock).get(APP)


def test_last_known_good_is_served_while_dynamodb_fails_but_never_past_expiry(
    table: Any, client: CountingClient, clock: ManualClock
) -> None:
    store(table, clock, "TOKEN-A", expires_in=300)
    r = reader(client, clock)
    assert r.get(APP) == "TOKEN-A"
    client.fail = True
    clock.advance(120)
    assert r.get(APP) == "TOKEN-A"
    clock.advance(200)
    with pytest.raises(TokenStoreError, match="dynamodb:GetItem"):
        r.get(APP)


def test_a_store_failure_without_a_cached_value_is_a_token_error(
    client: CountingClient, clock: ManualClock
) -> None:
    client.fail = True
    with pytest.raises(TokenError, match=f"table '{TABLE}'"):
        reader(client, clock).get(APP)


def test_app_id_defaults_to_the_environment(
    table: Any, client: CountingClient, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    store(table, clock, "TOKEN-A", expires_in=6900)
    monkeypatch.setenv("WECHAT_APP_ID", APP)
    assert reader(client, clock).get() == "TOKEN-A"
    monkeypatch.delenv("WECHAT_APP_ID")
    with pytest.raises(ConfigurationError, match="WECHAT_APP_ID"):
        reader(client, clock).get()


def test_get_access_token_reads_its_settings_from_the_environment(
    table: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    store(table, ManualClock(time.time()), "TOKEN-A", expires_in=6900)
    monkeypatch.setenv("TOKEN_TABLE_NAME", TABLE)
    monkeypatch.setenv("WECHAT_APP_ID", APP)
    monkeypatch.setattr(wechat_token.reader, "_default_reader", None)
    assert wechat_token.get_access_token() == "TOKEN-A"
    assert wechat_token.get_access_token(APP) == "TOKEN-A"
    monkeypatch.setattr(wechat_token.reader, "_default_reader", None)


def test_a_missing_table_setting_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TOKEN_TABLE_NAME", raising=False)
    with pytest.raises(ConfigurationError, match="TOKEN_TABLE_NAME is not set"):
        TokenReader().get(APP)


SAFE_MAX_ARITHMETIC = "300 - 120 - 60 = 120 s"


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ("soon", "not a number"),
        ("7200", SAFE_MAX_ARITHMETIC),
        ("121", SAFE_MAX_ARITHMETIC),
        ("-1", SAFE_MAX_ARITHMETIC),
        ("nan", SAFE_MAX_ARITHMETIC),
    ],
)
def test_a_bad_cache_setting_is_explained(
    monkeypatch: pytest.MonkeyPatch, raw: str, words: str
) -> None:
    monkeypatch.setenv("WECHAT_TOKEN_CACHE_SECONDS", raw)
    with pytest.raises(ConfigurationError, match=words) as caught:
        TokenReader(TABLE).get(APP)
    assert "WECHAT_TOKEN_CACHE_SECONDS" in str(caught.value)


def test_the_safe_maximum_is_the_grace_minus_skew_minus_margin() -> None:
    assert SAFE_MAX_CACHE_SECONDS == 300 - 120 - 60 == 120
    assert TokenReader(TABLE, cache_seconds=SAFE_MAX_CACHE_SECONDS).cache_seconds == 120
    assert TokenReader(TABLE, cache_seconds=0).cache_seconds == 0


@pytest.mark.parametrize("seconds", [120.5, 600, -0.1, float("inf"), float("nan")])
def test_an_unsafe_cache_argument_is_refused_like_the_setting(seconds: float) -> None:
    with pytest.raises(ConfigurationError, match=SAFE_MAX_ARITHMETIC):
        TokenReader(TABLE, cache_seconds=seconds)


def test_the_cache_setting_accepts_the_safe_maximum(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WECHAT_TOKEN_CACHE_SECONDS", "120")
    assert TokenReader(TABLE).cache_seconds == 120
    monkeypatch.setenv("WECHAT_TOKEN_CACHE_SECONDS", "")
    assert TokenReader(TABLE).cache_seconds == 60


def test_the_cache_seconds_setting_is_honoured(
    table: Any, client: CountingClient, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    store(table, clock, "TOKEN-A", expires_in=6900)
    monkeypatch.setenv("WECHAT_TOKEN_CACHE_SECONDS", "5")
    r = reader(client, clock)
    r.get(APP)
    clock.advance(6)
    r.get(APP)
    assert client.reads == 2


def test_invalidate_forces_a_fresh_read(
    table: Any, client: CountingClient, clock: ManualClock
) -> None:
    store(table, clock, "TOKEN-A", expires_in=6900)
    r = reader(client, clock)
    r.get(APP)
    r.invalidate(APP)
    r.get(APP)
    assert client.reads == 2


def test_importing_the_layer_loads_neither_httpx_nor_boto3() -> None:
    code = (
        "import sys, wechat_token; "
        "print(sorted(m for m in ('httpx', 'boto3', 'botocore') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(LAYER)!r}); {code}"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "[]"


# -- the record source seam -----------------------------------------------------------------


def memory(clock: ManualClock, value: str = "TOKEN-A", *, expires_in: float = 6900) -> Any:
    return CredentialRecord(
        APP, "access_token", value, expires_at=clock.now + expires_in, fetched_at=clock.now
    )


def test_the_reader_reads_any_record_source(clock: ManualClock) -> None:
    source = InMemoryRecordSource()
    source.put(memory(clock))
    r = TokenReader(source=source, clock=clock, passive_refresh=None)
    assert [r.get(APP) for _ in range(10)] == ["TOKEN-A"] * 10
    assert source.reads == 1
    with pytest.raises(TokenNotFoundError, match="in the in-memory record source"):
        r.get("wx-not-there")


def test_a_source_and_a_table_are_not_both_accepted() -> None:
    with pytest.raises(TypeError, match="source"):
        TokenReader(TABLE, source=InMemoryRecordSource())


def test_table_name_and_client_build_a_dynamodb_source(client: CountingClient) -> None:
    r = TokenReader(TABLE, client=client)  # type: ignore[arg-type]
    assert isinstance(r.source, DynamoDBRecordSource)
    assert r.source.table_name == TABLE
    assert str(r.source) == f"DynamoDB table '{TABLE}'"


def test_the_dynamodb_source_reads_one_record_consistently_if_asked(
    table: Any, client: CountingClient, clock: ManualClock
) -> None:
    store(table, clock, "TOKEN-A", expires_in=6900)
    calls: list[dict[str, Any]] = []
    inner = client.get_item

    def spy(**kwargs: Any) -> Any:
        calls.append(kwargs)
        return inner(**kwargs)

    client.get_item = spy  # type: ignore[method-assign]
    source = DynamoDBRecordSource(client, TABLE)  # type: ignore[arg-type]
    record = source.get(CredentialKey(APP), True)
    assert record is not None
    assert record.value == "TOKEN-A"
    assert source.get(CredentialKey("wx-not-there"), False) is None
    assert [c["ConsistentRead"] for c in calls] == [True, False]
    assert calls[0]["Key"] == {"app_id": {"S": APP}, "kind": {"S": "access_token"}}


@pytest.mark.parametrize(
    "damage",
    [{"value": ["TOKEN-DAMAGED"]}, {"value": "TOKEN-DAMAGED", "expires_at": "soon"}],
    ids=["value-of-a-list-type", "expiry-not-a-number"],
)
def test_a_damaged_record_is_a_store_error_naming_no_value(
    table: Any, client: CountingClient, clock: ManualClock, damage: dict[str, Any]
) -> None:
    table.put_item(Item={"app_id": APP, "kind": "access_token", "expires_at": 1, **damage})
    with pytest.raises(TokenStoreError, match="does not match this layer's schema") as caught:
        reader(client, clock).get(APP)
    assert "TOKEN-DAMAGED" not in str(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None


def test_a_store_failure_carries_no_botocore_exception(
    client: CountingClient, clock: ManualClock
) -> None:
    client.fail = True
    with pytest.raises(TokenStoreError, match="ProvisionedThroughputExceededException") as caught:
        reader(client, clock).get(APP)
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None


# -- the fast path and the cache entries ------------------------------------------------------


def test_cached_is_the_fast_path_and_never_reads(
    table: Any, client: CountingClient, clock: ManualClock
) -> None:
    store(table, clock, "TOKEN-A", expires_in=6900)
    r = reader(client, clock)
    assert r.cached(APP) is None
    assert client.reads == 0
    r.get(APP)
    assert r.cached(APP) == "TOKEN-A"
    assert r.cached(APP, "jsapi_ticket") is None
    clock.advance(60)
    assert r.cached(APP) is None, "past the cache seconds"
    assert client.reads == 1


def test_get_access_token_serves_hits_through_the_readers_fast_path(
    clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = InMemoryRecordSource()
    source.put(memory(clock))
    reader_ = wechat_token.configure(source=source, clock=clock, passive_refresh=None)
    try:
        assert wechat_token.get_access_token(APP) == "TOKEN-A"
        source.put(memory(clock, "TOKEN-B"))
        assert wechat_token.get_access_token(APP) == "TOKEN-A", "a hit: no read"
        assert source.reads == 1
        clock.advance(61)
        assert wechat_token.get_access_token(APP) == "TOKEN-B"
        assert reader_.cached(APP) == "TOKEN-B"
    finally:
        monkeypatch.setattr(wechat_token.reader, "_default_reader", None)


def test_cache_entries_are_frozen_and_their_repr_shows_no_value() -> None:
    entry = CacheEntry("TOKEN-SECRET-VALUE", 10.0, 20.0)
    assert "TOKEN-SECRET-VALUE" not in repr(entry)
    assert "cache_until=10.0" in repr(entry)
    assert not hasattr(entry, "__dict__"), "a slots dataclass"
    with pytest.raises(AttributeError):
        entry.value = "other"  # type: ignore[misc]


def test_a_slow_read_of_one_credential_does_not_block_another(clock: ManualClock) -> None:
    release = threading.Event()
    started = threading.Event()

    class SlowForOneApp(InMemoryRecordSource):
        def get(self, key: CredentialKey, consistent: bool = False) -> CredentialRecord | None:
            if key.app_id == "wxslow":
                started.set()
                release.wait(10)
            return super().get(key, consistent)

    source = SlowForOneApp()
    source.put(memory(clock))
    source.put(replace(memory(clock, "TOKEN-SLOW"), app_id="wxslow"))
    r = TokenReader(source=source, clock=clock, passive_refresh=None)
    slow = threading.Thread(target=r.get, args=("wxslow",))
    slow.start()
    try:
        assert started.wait(5)
        began = time.monotonic()
        assert r.get(APP) == "TOKEN-A"
        assert time.monotonic() - began < 1, "the other credential's miss waited"
    finally:
        release.set()
        slow.join(5)
    assert r.get("wxslow") == "TOKEN-SLOW"
