"""wechat_token: read WeChat credentials that the wechat-token refresher keeps fresh.

    from wechat_token import get_access_token
    token = get_access_token()          # app from WECHAT_APP_ID
    token = get_access_token("wx123")   # or name it

Importing this package imports neither boto3 nor httpx; they load on first use.
"""

from .errors import (
    ConfigurationError,
    TokenError,
    TokenExpiredError,
    TokenNotFoundError,
    TokenStoreError,
)
from .reader import TokenReader, configure, get_access_token
from .record import ACCESS_TOKEN, JSAPI_TICKET, CredentialRecord, fingerprint

__all__ = [
    "ACCESS_TOKEN",
    "JSAPI_TICKET",
    "ConfigurationError",
    "CredentialRecord",
    "TokenError",
    "TokenExpiredError",
    "TokenNotFoundError",
    "TokenReader",
    "TokenStoreError",
    "configure",
    "fingerprint",
    "get_access_token",
]
