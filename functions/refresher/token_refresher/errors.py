"""The refresher's errors. Every message says what to fix and never holds a token or secret.

    RefresherError                 anything the refresher raises on purpose
    ├── SettingsError              a required environment variable is missing or malformed
    ├── RegistryError              the app registry secret cannot be read, or an entry is bad
    ├── EventError                 the invocation event is malformed or names an unknown app
    ├── StoreError                 DynamoDB failed under the refresher (refresher's advice)
    ├── RefreshFailedError         the handler's summary error, after every app was tried
    └── RefreshError               one credential could not be refreshed; its value is untouched
        ├── WeChatAPIError         WeChat answered an errcode (built by ``wechat_error``)
        │   ├── BusyError              -1: retried with backoff
        │   ├── WeChatConfigError      wrong secret, appid, IP whitelist...: fix, then force
        │   │   └── RefreshTokenError  61023: an authorizer's refresh token (reconciled)
        │   ├── QuotaError             45009, 45011, 48006: WeChat's own limits
        │   └── UnknownWeChatError     a code wechat-token does not know: not retried
        ├── TransportError         network error, timeout or HTTP 5xx (retried)
        ├── GarbledReplyError      the reply was not what WeChat documents
        ├── BudgetExhaustedError   our own daily budget (or the consumers' share) is spent
        ├── DeadlineError          no time left in the run or the lease for another attempt
        ├── StoreConflictError     the fenced write lost: a newer value stands
        └── NoTokenError           a ticket's access_token, a component's verify ticket or an
                                   authorizer's component token or refresh token is missing

Each ``RefreshError`` class carries its ``error_class``: the metric dimension and the
``last_error_class`` attribute come from the class, so they form a fixed set.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar


class ErrorClass(StrEnum):
    """The fixed set of failure categories (a metric dimension, a record attribute)."""

    BUSY = "busy"
    CONFIGURATION = "configuration"
    QUOTA = "quota"
    UNKNOWN = "unknown"
    TRANSPORT = "transport"
    GARBLED = "garbled"
    BUDGET = "budget"
    DEADLINE = "deadline"
    CONFLICT = "conflict"
    NO_TOKEN = "no_token"
    STORE = "store"
    REGISTRY = "registry"
    INTERNAL = "internal"

    @property
    def cools_down(self) -> bool:
        """Failures that say "not now" (WeChat busy, a quota, the network): each one spaces
        the next consumer- or operator-triggered attempt further out."""
        return self in (ErrorClass.BUSY, ErrorClass.QUOTA, ErrorClass.TRANSPORT)


class RefresherError(Exception):
    """Base class of the refresher's own errors."""

    error_class: ClassVar[ErrorClass] = ErrorClass.INTERNAL
    retryable: bool = False

    @property
    def code(self) -> str:
        """What the record's ``last_error_code`` holds: WeChat's errcode or the class."""
        return str(self.error_class)


class SettingsError(RefresherError):
    """A required environment variable is missing or malformed."""


class RegistryError(RefresherError):
    """The app registry secret cannot be read or is not valid."""

    error_class = ErrorClass.REGISTRY


class EventError(RefresherError):
    """The invocation event is malformed or names an unknown app."""


class StoreError(RefresherError):
    """DynamoDB failed under the refresher: permissions, throttling, a missing table."""

    error_class = ErrorClass.STORE


class RefreshFailedError(RefresherError):
    """Raised by the handler after every app was tried, when at least one failed."""


class RefreshError(RefresherError):
    """Refreshing one credential failed; the stored credential is untouched."""


class WeChatAPIError(RefreshError):
    """WeChat answered with an error code."""

    def __init__(self, errcode: int, message: str) -> None:
        super().__init__(message)
        self.errcode = errcode

    @property
    def code(self) -> str:
        return str(self.errcode)


class BusyError(WeChatAPIError):
    error_class = ErrorClass.BUSY
    retryable = True


class RateCeilingError(RefreshError):
    """The deployment's own ceiling on WeChat calls per second left no permit in time."""

    error_class = ErrorClass.BUSY

    @property
    def code(self) -> str:
        return "rate_ceiling"


class WeChatConfigError(WeChatAPIError):
    error_class = ErrorClass.CONFIGURATION


class RefreshTokenError(WeChatConfigError):
    """61023: the stored authorizer_refresh_token is no longer valid (reconciliation)."""


class QuotaError(WeChatAPIError):
    error_class = ErrorClass.QUOTA


class UnknownWeChatError(WeChatAPIError):
    error_class = ErrorClass.UNKNOWN


class TransportError(RefreshError):
    """Network error, timeout or HTTP 5xx talking to WeChat."""

    error_class = ErrorClass.TRANSPORT
    retryable = True


class GarbledReplyError(RefreshError):
    """WeChat's reply was not the JSON it documents."""

    error_class = ErrorClass.GARBLED


class BudgetExhaustedError(RefreshError):
    """The app's daily call budget is spent; the refresher refuses to call WeChat."""

    error_class = ErrorClass.BUDGET


class DeadlineError(RefreshError):
    """No time left in the invocation (or the lease) for another attempt."""

    error_class = ErrorClass.DEADLINE


class StoreConflictError(RefreshError):
    """The fenced write lost: a newer version was stored or the lease was taken over."""

    error_class = ErrorClass.CONFLICT


class NoTokenError(RefreshError):
    """A ticket cannot be fetched: its app has no valid access_token."""

    error_class = ErrorClass.NO_TOKEN


# errcode -> (class, what to do). Only BusyError is retried: retrying a code that retrying
# cannot fix burns the 2000-a-day quota.
_WECHAT_ERRORS: dict[int, tuple[type[WeChatAPIError], str]] = {
    -1: (BusyError, "WeChat is busy; retried with backoff"),
    40001: (
        WeChatConfigError,
        "WeChat rejected the credentials: check the secret in the registry (it changes when "
        "someone resets the AppSecret on the WeChat admin console)",
    ),
    40002: (WeChatConfigError, "invalid grant_type: please report this as a wechat-token bug"),
    40013: (WeChatConfigError, "invalid appid (or corpid): check the app's id in the registry"),
    40125: (
        WeChatConfigError,
        "invalid AppSecret: copy the current AppSecret into the registry secret",
    ),
    40164: (
        WeChatConfigError,
        "the refresher's egress IP is not on the app's IP whitelist: give the refresher a fixed "
        "egress IP (NAT gateway, see the README) and add it to the whitelist",
    ),
    40243: (
        WeChatConfigError,
        "the AppSecret is frozen: unfreeze it on the WeChat admin console",
    ),
    41002: (WeChatConfigError, "appid missing: the registry entry needs an app id"),
    41004: (WeChatConfigError, "secret missing: the registry entry needs its secret"),
    43002: (WeChatConfigError, "WeChat wants POST here: please report this as a wechat-token bug"),
    45009: (
        QuotaError,
        "the app's daily token quota (2000 calls) is used up: WeChat refuses until midnight "
        "UTC+8 or a quota reset; find whatever else calls the token endpoint for this app",
    ),
    45011: (QuotaError, "WeChat's per-minute limit was hit: the next run tries again"),
    48006: (QuotaError, "the monthly quota resets are used up: wait for WeChat's quota day"),
    89503: (
        WeChatConfigError,
        "an administrator must confirm this IP on the WeChat admin console before it may call",
    ),
    89506: (WeChatConfigError, "this IP is blocked for 24 hours by the app's administrator"),
    89507: (WeChatConfigError, "this IP is blocked for 1 hour by the app's administrator"),
    # Third-party platforms.
    61003: (
        WeChatConfigError,
        "the merchant has not authorized this platform (or revoked it): ask them to authorize "
        "it again",
    ),
    61004: (
        WeChatConfigError,
        "the refresher's egress IP is not on the platform's IP whitelist (开放平台 > the "
        "platform > 开发资料): add the NAT gateway's Elastic IP there",
    ),
    61005: (
        WeChatConfigError,
        "the component_verify_ticket expired: WeChat's pushes stopped reaching the callback "
        "(check the 授权事件接收URL); the refresher asked WeChat to restart them",
    ),
    61006: (
        WeChatConfigError,
        "WeChat does not know the component_verify_ticket: the callback stored a ticket of "
        "another platform or an old one",
    ),
    61011: (WeChatConfigError, "invalid component: check the component appid in the registry"),
    61023: (
        RefreshTokenError,
        "the authorizer_refresh_token is no longer valid: the refresher recovers it with "
        "api_get_authorizer_list",
    ),
}
_UNKNOWN = (UnknownWeChatError, "an error wechat-token does not know; not retried")


def wechat_error(errcode: int, context: str) -> WeChatAPIError:
    """The error for WeChat's ``errcode``, its message ``context`` followed by the advice."""
    cls, advice = _WECHAT_ERRORS.get(errcode, _UNKNOWN)
    return cls(errcode, f"{context}: {advice}")


def error_class_of(errcode: int) -> ErrorClass:
    return _WECHAT_ERRORS.get(errcode, _UNKNOWN)[0].error_class
