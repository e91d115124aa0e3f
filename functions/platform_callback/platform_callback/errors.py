"""Why the callback could not do its part (as opposed to a push it refused).

::

    CallbackError                 base; ``reason`` is the short code answered and logged
    ├── ConfigUnavailable         the registry secret cannot be read or holds no JSON object
    └── StoreUnavailable          DynamoDB did not take a write (throttled, timed out, denied)

A refused push is not an error: :class:`platform_callback.push.PushRefused`. Messages name
the failing service and its error code, never a value: no token, key, ticket, code or
request data, and they are raised outside ``except`` blocks so that no chained exception
carries a botocore message along.
"""

from __future__ import annotations

__all__ = ["CallbackError", "ConfigUnavailable", "StoreUnavailable"]


class CallbackError(Exception):
    """The callback cannot answer this push now; WeChat should try again (HTTP 503)."""

    reason: str = "callback_error"
    status: int = 503


class ConfigUnavailable(CallbackError):
    """No usable platform configuration: the registry secret could not be read or parsed,
    and no earlier copy is cached."""

    reason = "config_unavailable"


class StoreUnavailable(CallbackError):
    """DynamoDB did not take a write (after botocore's retries)."""

    reason = "store_unavailable"
