"""Errors consumers can catch. Messages say what to check; they never hold a token or secret.

Our exception hierarchy::

    TokenError                      everything the layer raises
    ├── ConfigurationError          a setting is missing, malformed or unsafe
    ├── TokenNotFoundError          the table holds no usable credential for the app and kind
    │   └── AuthorizationRevokedError   a platform's authorizer: the merchant revoked it
    ├── TokenExpiredError           the stored credential is past its conservative expiry
    ├── TokenStoreError             the token table could not be read, or holds a damaged record
    ├── PassiveRefreshError         a passive refresh could not be asked for, failed, was
    │                               refused, or is held back (the negative cache)
    ├── WeChatAPIError              WeChat answered a non-zero ``errcode`` (``WeChatClient``)
    └── WeChatTransportError        no usable answer from WeChat: network, timeout, 5xx

None of them is ever raised with the exception that caused it attached (``__cause__`` and
``__context__`` are both empty): a boto3 or httpx error can quote a request URL, a response
body or a payload, so the layer copies what is safe into its own message and drops the rest.
"""

from __future__ import annotations


class TokenError(Exception):
    """Base class of every error raised by ``wechat_token``."""


class ConfigurationError(TokenError):
    """A setting the helper needs is missing, malformed or unsafe (e.g. ``TOKEN_TABLE_NAME``)."""


class TokenNotFoundError(TokenError):
    """The table holds no usable credential for this app and kind."""


class AuthorizationRevokedError(TokenNotFoundError):
    """A third-party platform's authorizer (``"<component_appid>:<authorizer_appid>"``)
    whose merchant revoked the platform's authorization: there is no token until they
    authorize it again."""


class TokenExpiredError(TokenError):
    """The stored credential is past its conservative expiry: the refresher did not replace it."""


class TokenStoreError(TokenError):
    """The token table could not be read (permissions, throttling, network) or holds a record
    this layer cannot read."""


class PassiveRefreshError(TokenError):
    """The passive refresh function could not be asked, failed, or did not replace the token;
    or it was not asked because a recent request for the same credential failed or was refused
    (the layer's negative cache). ``outcome`` is the function's answer, when it gave one."""

    def __init__(self, message: str, *, outcome: str | None = None) -> None:
        super().__init__(message)
        self.outcome = outcome


class WeChatAPIError(TokenError):
    """WeChat answered with a non-zero ``errcode``."""

    def __init__(self, errcode: int, errmsg: str, path: str) -> None:
        super().__init__(f"WeChat {path} answered {errcode}: {errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg
        self.path = path


class WeChatTransportError(TokenError):
    """The request did not reach WeChat or got no usable answer (network, timeout, 5xx)."""
