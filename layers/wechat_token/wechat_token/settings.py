"""One idiom for reading settings from the environment, and the defaults both sides share.

The refresher, the layer and the operator CLI all read their environment through these
helpers, so a setting is parsed, bounded and explained the same way everywhere. Each
helper raises ``error`` (the caller's settings error class) with a message that names the
variable and the accepted range.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Final

from .errors import ConfigurationError

TABLE_ENV: Final = "TOKEN_TABLE_NAME"
APP_ID_ENV: Final = "WECHAT_APP_ID"
CACHE_SECONDS_ENV: Final = "WECHAT_TOKEN_CACHE_SECONDS"
PASSIVE_FUNCTION_ENV: Final = "PASSIVE_REFRESH_FUNCTION_NAME"

# How long a consumer may keep a token in memory. After a rotation WeChat accepts the old
# token for 300 s of grace, but its servers disagree by up to 120 s, so some of them stop
# accepting it after 180 s. A consumer must re-read inside those 180 s; keeping 60 s back
# for the refresher's write, the read itself and the consumer's own clock leaves 120 s.
WECHAT_GRACE_SECONDS: Final = 300.0
WECHAT_SERVER_SKEW_SECONDS: Final = 120.0
SWITCH_MARGIN_SECONDS: Final = 60.0
SAFE_MAX_CACHE_SECONDS: Final = (
    WECHAT_GRACE_SECONDS - WECHAT_SERVER_SKEW_SECONDS - SWITCH_MARGIN_SECONDS
)
DEFAULT_CACHE_SECONDS: Final = 60.0

WECHAT_DAILY_QUOTA: Final = 2000
DEFAULT_DAILY_CALL_BUDGET: Final = 1000

Environment = Mapping[str, str]


def env_text(
    env: Environment,
    name: str,
    default: str | None = None,
    *,
    what: str = "",
    error: type[Exception] = ConfigurationError,
) -> str:
    """A non-empty string; ``default`` when unset, or an error naming ``what`` it should be."""
    value = env.get(name, "").strip()
    if value:
        return value
    if default is not None:
        return default
    raise error(f"{name} is not set: set it to {what} (see the README's configuration).")


def env_number(
    env: Environment,
    name: str,
    default: float,
    low: float,
    high: float,
    *,
    error: type[Exception] = ConfigurationError,
    why: str = "",
) -> float:
    """A number in ``[low, high]``; ``default`` when unset."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise error(f"{name}={raw!r} is not a number.") from None
    if not low <= value <= high:
        raise error(f"{name}={raw!r} is out of range: use {low:g} to {high:g}{why}.")
    return value


def env_int(
    env: Environment,
    name: str,
    default: int,
    low: int,
    high: int,
    *,
    error: type[Exception] = ConfigurationError,
) -> int:
    """A whole number in ``[low, high]``; ``default`` when unset."""
    value = env_number(env, name, default, low, high, error=error)
    if value != int(value):
        raise error(f"{name}={env.get(name)!r} must be a whole number.")
    return int(value)


def env_flag(
    env: Environment, name: str, default: bool, *, error: type[Exception] = ConfigurationError
) -> bool:
    """true/false, yes/no, on/off or 1/0; ``default`` when unset."""
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise error(f"{name}={raw!r} must be true or false.")


def env_url(
    env: Environment, name: str, default: str, *, error: type[Exception] = ConfigurationError
) -> str:
    """An http(s) base URL without its trailing slash."""
    value = env.get(name, "").strip() or default
    if not value.startswith(("https://", "http://")):
        raise error(f"{name}={value!r} is not an http(s) URL.")
    return value.rstrip("/")


def process_env() -> Environment:
    return os.environ
