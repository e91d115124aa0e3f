"""Refresher errors. Every message says what to fix and never holds a token or secret."""

from __future__ import annotations


class RefresherError(Exception):
    """Base class of the refresher's own errors."""

    code = "error"
    retryable = False


class SettingsError(RefresherError):
    """A required environment variable is missing or malformed."""

    code = "settings"


class RegistryError(RefresherError):
    """The app registry secret cannot be read or is not valid."""

    code = "registry"


class EventError(RefresherError):
    """The invocation event is malformed or names an unknown app."""

    code = "event"


class RefreshError(RefresherError):
    """Refreshing one credential failed; the stored credential is untouched."""


class WeChatAPIError(RefreshError):
    """WeChat answered with an error code."""

    def __init__(self, errcode: int, message: str, *, retryable: bool, kind: str) -> None:
        super().__init__(message)
        self.errcode = errcode
        self.retryable = retryable
        self.kind = kind  # "transient", "configuration", "quota", "unknown"

    @property
    def code(self) -> str:  # type: ignore[override]
        return str(self.errcode)


class TransportError(RefreshError):
    """Network error, timeout or HTTP 5xx talking to WeChat."""

    code = "transport"
    retryable = True


class GarbledReplyError(RefreshError):
    """WeChat's reply was not the JSON it documents."""

    code = "garbled"


class BudgetExhaustedError(RefreshError):
    """The app's daily call budget is spent; the refresher refuses to call WeChat."""

    code = "budget"


class DeadlineError(RefreshError):
    """No time left in the invocation (or the lease) for another attempt."""

    code = "deadline"


class StoreConflictError(RefreshError):
    """The fenced write lost: a newer version was stored or the lease was taken over."""

    code = "conflict"


class RefreshFailedError(RefresherError):
    """Raised by the handler after every app was tried, when at least one failed."""

    code = "failed"
