"""The refresher's settings, read from the environment once per invocation."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import SettingsError

WECHAT_DAILY_QUOTA = 2000


@dataclass(frozen=True)
class Settings:
    table_name: str
    registry_secret_id: str
    wechat_api_base_url: str = "https://api.weixin.qq.com"
    wecom_api_base_url: str = "https://qyapi.weixin.qq.com"
    # Must match the schedule: a token is refreshed when it would not outlive the next run.
    refresh_interval_seconds: float = 3600.0
    refresh_slack_seconds: float = 900.0
    # Stable tokens only rotate when forced (20 a day) or in their last 5 minutes, so they
    # run on their own, shorter schedule: forced every ~90 minutes, 16 of the 20 a day.
    stable_refresh_interval_seconds: float = 1800.0
    stable_force_daily_limit: int = 18
    # Subtracted from WeChat's expires_in (WeChat's servers disagree by 1-2 minutes).
    expiry_skew_seconds: float = 300.0
    # How long an old token stays accepted after a rotation, minus the skew: 300 - 120.
    previous_grace_seconds: float = 180.0
    daily_call_budget: int = 1000
    concurrency: int = 16
    lease_seconds: float = 90.0
    http_timeout_seconds: float = 10.0
    max_attempts: int = 4
    passive_min_interval_seconds: float = 60.0
    # A forced refresh of a token younger than this is refused (consumers cache 60 s).
    force_min_interval_seconds: float = 120.0
    registry_cache_seconds: float = 60.0
    # Ask a business API, each scheduled run, whether WeChat still accepts the stored token.
    probe_stored_tokens: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        settings = cls(
            table_name=_required(env, "TOKEN_TABLE_NAME", "the DynamoDB table's name"),
            registry_secret_id=_required(
                env, "WECHAT_APPS_SECRET_ID", "the Secrets Manager id of the app registry"
            ),
            wechat_api_base_url=_url(env, "WECHAT_API_BASE_URL", cls.wechat_api_base_url),
            wecom_api_base_url=_url(env, "WECOM_API_BASE_URL", cls.wecom_api_base_url),
            refresh_interval_seconds=_number(
                env, "REFRESH_INTERVAL_SECONDS", cls.refresh_interval_seconds, 60, 6000
            ),
            stable_refresh_interval_seconds=_number(
                env,
                "STABLE_REFRESH_INTERVAL_SECONDS",
                cls.stable_refresh_interval_seconds,
                60,
                5400,
            ),
            stable_force_daily_limit=int(
                _number(env, "STABLE_FORCE_DAILY_LIMIT", cls.stable_force_daily_limit, 0, 20)
            ),
            refresh_slack_seconds=_number(
                env, "REFRESH_SLACK_SECONDS", cls.refresh_slack_seconds, 0, 3600
            ),
            expiry_skew_seconds=_number(
                env, "EXPIRY_SKEW_SECONDS", cls.expiry_skew_seconds, 120, 1800
            ),
            daily_call_budget=int(
                _number(
                    env,
                    "DAILY_CALL_BUDGET",
                    cls.daily_call_budget,
                    1,
                    WECHAT_DAILY_QUOTA - 1,
                )
            ),
            concurrency=int(_number(env, "REFRESH_CONCURRENCY", cls.concurrency, 1, 256)),
            lease_seconds=_number(env, "LEASE_SECONDS", cls.lease_seconds, 30, 900),
            http_timeout_seconds=_number(
                env, "WECHAT_HTTP_TIMEOUT_SECONDS", cls.http_timeout_seconds, 1, 60
            ),
            max_attempts=int(_number(env, "WECHAT_MAX_ATTEMPTS", cls.max_attempts, 1, 10)),
            passive_min_interval_seconds=_number(
                env, "PASSIVE_MIN_INTERVAL_SECONDS", cls.passive_min_interval_seconds, 0, 3600
            ),
            force_min_interval_seconds=_number(
                env, "FORCE_MIN_INTERVAL_SECONDS", cls.force_min_interval_seconds, 0, 3600
            ),
            probe_stored_tokens=_flag(env, "PROBE_STORED_TOKENS", cls.probe_stored_tokens),
        )
        if settings.refresh_interval_seconds + settings.refresh_slack_seconds >= 7200 - (
            settings.expiry_skew_seconds
        ):
            raise SettingsError(
                "REFRESH_INTERVAL_SECONDS + REFRESH_SLACK_SECONDS must be shorter than a "
                "token's usable life (7200 s - EXPIRY_SKEW_SECONDS), or every run refreshes "
                "and a token can still expire before the next run."
            )
        if settings.lease_seconds < 2 * settings.http_timeout_seconds + 5:
            raise SettingsError(
                "LEASE_SECONDS must be at least twice WECHAT_HTTP_TIMEOUT_SECONDS plus 5, so "
                "that a WeChat call always finishes inside the lease."
            )
        return settings


def _required(env: Mapping[str, str], name: str, what: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise SettingsError(
            f"{name} is not set: set it to {what} (see the README's configuration)."
        )
    return value


def _url(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name, "").strip() or default
    if not value.startswith(("https://", "http://")):
        raise SettingsError(f"{name}={value!r} is not an http(s) URL.")
    return value.rstrip("/")


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name}={raw!r} must be true or false.")


def _number(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number.") from None
    if not low <= value <= high:
        raise SettingsError(f"{name}={raw!r} is out of range: use {low:g} to {high:g}.")
    return value
