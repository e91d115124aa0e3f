"""Errors consumers can catch. Messages say what to check; they never hold a token or secret."""

from __future__ import annotations


class TokenError(Exception):
    """Base class of every error raised by ``wechat_token``."""


class ConfigurationError(TokenError):
    """A setting the helper needs is missing or malformed (e.g. ``TOKEN_TABLE_NAME``)."""


class TokenNotFoundError(TokenError):
    """The table holds no usable credential for this app and kind."""


class TokenExpiredError(TokenError):
    """The stored credential is past its conservative expiry: the refresher did not replace it."""


class TokenStoreError(TokenError):
    """DynamoDB could not be read (permissions, throttling, network)."""
