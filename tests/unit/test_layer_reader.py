"""The consumer helper: which token a consumer gets, how often DynamoDB is read, what errors say."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import wechat_token
from botocore.exceptions import ClientError
from moto import mock_aws
from wechat_token import (
    ConfigurationError,
    TokenError,
    TokenExpiredError,
    TokenNotFoundError,
    TokenReader,
    TokenStoreError,
)

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


@pytest.mark.parametrize(("raw", "words"), [("soon", "not a number"), ("7200", "between 0")])
def test_a_bad_cache_setting_is_explained(
    monkeypatch: pytest.MonkeyPatch, raw: str, words: str
) -> None:
    monkeypatch.setenv("WECHAT_TOKEN_CACHE_SECONDS", raw)
    with pytest.raises(ConfigurationError, match=words):
        TokenReader(TABLE).get(APP)


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
