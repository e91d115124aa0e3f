"""wechat_token: read WeChat credentials that the wechat-token refresher keeps fresh.

    from wechat_token import get_access_token
    token = get_access_token()          # app from WECHAT_APP_ID
    token = get_access_token("wx123")   # or name it

Importing this package imports neither boto3 nor httpx; they load on first use. The
client and JS-SDK helpers load when first named, so a cold start that only reads tokens
does not pay for them. The names below are the layer's public API (pinned by a test);
the errors' hierarchy is drawn in ``wechat_token.errors``.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .errors import (
    AuthorizationRevokedError,
    ConfigurationError,
    PassiveRefreshError,
    TokenError,
    TokenExpiredError,
    TokenNotFoundError,
    TokenStoreError,
    WeChatAPIError,
    WeChatTransportError,
)
from .passive import LambdaPassiveRefresh
from .reader import TokenReader, configure, get_access_token
from .record import ACCESS_TOKEN, JSAPI_TICKET, CredentialKey, CredentialRecord, Kind, fingerprint
from .store import DynamoDBRecordSource, InMemoryRecordSource, RecordSource

if TYPE_CHECKING:
    from .client import WeChatClient
    from .jssdk import JsapiConfig, get_ticket, jsapi_signature

_LAZY = {
    "WeChatClient": ".client",
    "JsapiConfig": ".jssdk",
    "get_ticket": ".jssdk",
    "jsapi_signature": ".jssdk",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'wechat_token' has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


__all__ = [
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
