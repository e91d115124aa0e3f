"""wechat_token: read WeChat credentials that the wechat-token refresher keeps fresh.

    from wechat_token import get_access_token
    token = get_access_token()          # app from WECHAT_APP_ID
    token = get_access_token("wx123")   # or name it

Importing this package imports neither boto3 nor httpx; they load on first use. The
client and JS-SDK helpers load when first named, so a cold start that only reads tokens
does not pay for them.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .errors import (
    ConfigurationError,
    TokenError,
    TokenExpiredError,
    TokenNotFoundError,
    TokenStoreError,
)
from .passive import LambdaPassiveRefresh, PassiveRefreshError
from .reader import TokenReader, configure, get_access_token
from .record import ACCESS_TOKEN, JSAPI_TICKET, CredentialRecord, fingerprint

if TYPE_CHECKING:
    from .client import WeChatAPIError, WeChatClient, WeChatTransportError
    from .jssdk import JsapiConfig, get_ticket, jsapi_signature

_LAZY = {
    "WeChatAPIError": ".client",
    "WeChatClient": ".client",
    "WeChatTransportError": ".client",
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
    "ConfigurationError",
    "CredentialRecord",
    "JsapiConfig",
    "LambdaPassiveRefresh",
    "PassiveRefreshError",
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
