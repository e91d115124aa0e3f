"""wechat_token: read WeChat credentials that the wechat-token refresher keeps fresh.

    from wechat_token import get_access_token
    token = get_access_token()          # app from WECHAT_APP_ID
    token = get_access_token("wx123")   # or name it

Importing this package imports neither boto3 nor httpx; they load on first use.
"""

from .client import WeChatAPIError, WeChatClient, WeChatTransportError
from .errors import (
    ConfigurationError,
    TokenError,
    TokenExpiredError,
    TokenNotFoundError,
    TokenStoreError,
)
from .jssdk import JsapiConfig, get_ticket, jsapi_signature
from .passive import LambdaPassiveRefresh, PassiveRefreshError
from .reader import TokenReader, configure, get_access_token
from .record import ACCESS_TOKEN, JSAPI_TICKET, CredentialRecord, fingerprint

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
