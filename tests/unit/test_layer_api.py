"""The layer's public surface: exactly these names, each resolving, none loading boto3 or httpx."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest
import wechat_token
import wechat_token.client
import wechat_token.errors
import wechat_token.passive
from wechat_token import CredentialRecord, InMemoryRecordSource, RecordSource
from wechat_token.passive import Refusal
from wechat_token.reader import CacheEntry

LAYER = Path(__file__).resolve().parents[2] / "layers" / "wechat_token"

# Adding, renaming or removing a public name is a decision: change this list with it.
PUBLIC_NAMES = [
    "ACCESS_TOKEN",
    "JSAPI_TICKET",
    "AuthorizationRevokedError",
    "ConfigurationError",
    "CredentialKey",
    "CredentialRecord",
    "DynamoDBRecordSource",
    "InMemoryRecordSource",
    "JsapiConfig",
    "Kind",
    "LambdaPassiveRefresh",
    "PassiveRefreshError",
    "RecordSource",
    "TokenError",
    "TokenExpiredError",
    "TokenNotFoundError",
    "TokenReader",
    "TokenStoreError",
    "WeChatAPIError",
    "WeChatClient",
    "WeChatTransportError",
    "configure",
    "fingerprint",
    "get_access_token",
    "get_ticket",
    "jsapi_signature",
]


def test_the_exported_names_are_pinned() -> None:
    assert wechat_token.__all__ == PUBLIC_NAMES


@pytest.mark.parametrize("name", PUBLIC_NAMES)
def test_each_exported_name_resolves(name: str) -> None:
    assert getattr(wechat_token, name) is not None


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = wechat_token.nope


def test_the_star_import_gives_exactly_the_public_names() -> None:
    code = (
        f"import sys; sys.path.insert(0, {str(LAYER)!r}); "
        "ns = {}; exec('from wechat_token import *', ns); "
        "print(sorted(n for n in ns if not n.startswith('__')))"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == str(sorted(PUBLIC_NAMES))


def test_naming_the_reader_and_the_errors_loads_neither_boto3_nor_httpx() -> None:
    code = (
        f"import sys; sys.path.insert(0, {str(LAYER)!r}); "
        "from wechat_token import TokenReader, InMemoryRecordSource, DynamoDBRecordSource, "
        "WeChatAPIError, PassiveRefreshError, LambdaPassiveRefresh; "
        "TokenReader(source=InMemoryRecordSource(), passive_refresh=None); "
        "DynamoDBRecordSource(); LambdaPassiveRefresh('f'); "
        "print(sorted(m for m in ('httpx', 'boto3', 'botocore') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_every_error_is_a_token_error_and_drawn_in_the_hierarchy() -> None:
    doc = inspect.getdoc(wechat_token.errors) or ""
    classes = [
        value
        for value in vars(wechat_token.errors).values()
        if isinstance(value, type) and issubclass(value, Exception)
    ]
    assert len(classes) == 9
    for cls in classes:
        assert issubclass(cls, wechat_token.TokenError)
        assert cls.__name__ in doc, f"{cls.__name__} missing from the drawn hierarchy"


def test_errors_are_one_class_wherever_they_are_imported_from() -> None:
    errors = wechat_token.errors
    assert wechat_token.passive.PassiveRefreshError is errors.PassiveRefreshError
    assert wechat_token.PassiveRefreshError is errors.PassiveRefreshError
    assert wechat_token.client.WeChatAPIError is errors.WeChatAPIError
    assert wechat_token.client.WeChatTransportError is errors.WeChatTransportError
    assert wechat_token.WeChatAPIError is errors.WeChatAPIError


def test_the_in_memory_source_is_a_record_source() -> None:
    assert isinstance(InMemoryRecordSource(), RecordSource)
    assert isinstance(wechat_token.DynamoDBRecordSource(), RecordSource)


def test_no_layer_type_shows_a_credential_in_its_repr() -> None:
    value = "TOKEN-MUST-NOT-SHOW-0123456789"
    record = CredentialRecord("wxrepr", "access_token", value, expires_at=2.0)
    source = InMemoryRecordSource()
    source.put(record)
    shown = [
        repr(record),
        repr(CacheEntry(value, 1.0, 2.0)),
        repr(source),
        repr(Refusal(3.0, "the refresher answered 'failed'")),
        repr(wechat_token.TokenReader(source=source, passive_refresh=None)),
    ]
    for text in shown:
        assert value not in text
