"""The refresher's settings, read from the environment once per execution environment."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wechat_token.registry_format import RegistryFormatError, check_prefix, parse_secret_ids
from wechat_token.settings import (
    DEFAULT_DAILY_CALL_BUDGET,
    SAFE_MAX_CACHE_SECONDS,
    TABLE_ENV,
    WECHAT_DAILY_QUOTA,
    WECHAT_GRACE_SECONDS,
    Environment,
    env_flag,
    env_int,
    env_number,
    env_text,
    env_url,
    process_env,
)

from .errors import SettingsError
from .policy import Rules

# A stored token's conservative life: WeChat's 7200 s minus the skew margin.
STORED_LIFE_SECONDS = 7200.0 - 300.0


@dataclass(frozen=True)
class Settings:
    table_name: str
    registry_secret_id: str
    wechat_api_base_url: str = "https://api.weixin.qq.com"
    wecom_api_base_url: str = "https://qyapi.weixin.qq.com"
    # The schedule's period, and the slack on top of it: a credential is renewed when less
    # than interval + slack (3900 s = 65 min) of its 6900 s stored life is left, i.e. at an
    # age of 50-52 min with a run every 2 min. A WeChat outage of 115 - 50 - 2x2 = 61 min
    # then costs consumers nothing, at 1440 / (50 + 1) = 28 token calls per app per day.
    refresh_interval_seconds: float = 120.0
    refresh_slack_seconds: float = 3780.0
    # Stable tokens rotate in WeChat's own overlap window: in normal mode a server that sees
    # under 300 s left hands out a new token and the old one stays valid until its own
    # expiry. So they are asked for (never forced) from stable_window_lead_seconds before
    # that window by the reply that issued them, stable_retry_seconds apart while WeChat
    # hands out the same token again, at most stable_calls_per_run times per run (the stable
    # schedule runs every minute), and stored as usable until WeChat's expires_in less
    # stable_expiry_margin_seconds (README: "Stable tokens", the margins worked out).
    stable_window_lead_seconds: float = 60.0
    stable_retry_seconds: float = 20.0
    stable_calls_per_run: int = 3
    stable_expiry_margin_seconds: float = 60.0
    # Forces are kept for what only a force can fix: a token WeChat rejects, an operator.
    stable_force_daily_limit: int = 18
    # Subtracted from WeChat's expires_in (WeChat's servers disagree by 1-2 minutes).
    expiry_skew_seconds: float = 300.0
    # How long an old token stays accepted after a rotation, minus the skew: 300 - 120.
    previous_grace_seconds: float = 180.0
    daily_call_budget: int = DEFAULT_DAILY_CALL_BUDGET
    # WeChat calls consumers' reports may cause per credential per day (None: 10 % of the
    # budget), so the schedule always keeps a reserve.
    consumer_daily_cap: int | None = None
    concurrency: int = 16
    lease_seconds: float = 90.0
    http_timeout_seconds: float = 10.0
    max_attempts: int = 4
    # Forced and passive attempts are spaced by this after the last one, doubled per
    # failure (busy, quota, transport) up to max_cooldown_seconds.
    passive_min_interval_seconds: float = 60.0
    max_cooldown_seconds: float = 3600.0
    # No trigger rotates a credential younger than this (consumers cache up to 120 s).
    force_min_interval_seconds: float = SAFE_MAX_CACHE_SECONDS
    configuration_hold_seconds: float = 600.0
    registry_cache_seconds: float = 60.0
    # The registry's shards: every id of WECHAT_APPS_SECRET_ID (comma-separated; the first
    # is registry_secret_id, the one messages name; empty: just registry_secret_id), and
    # every secret whose name starts with WECHAT_APPS_SECRET_PREFIX.
    registry_secret_ids: tuple[str, ...] = ()
    registry_secret_prefix: str | None = None
    # Ask a business API whether WeChat still accepts the stored token, at most this often
    # per credential (each scheduled run looks; the probe is outside the token quota).
    probe_stored_tokens: bool = True
    # Every 300 s: a foreign fetch leaves our token valid for WeChat's 5-minute grace, so
    # it is found about when consumers start failing, at 288 business calls a day.
    probe_interval_seconds: float = 300.0
    # Third-party platforms: the KMS key authorizers' refresh tokens are encrypted with.
    refresh_token_kms_key_id: str | None = None
    # Fan-out: the queue the planner sends one message per due app to (None: the worker
    # runs in the planner's own process), the due index's shards per lane, and how many
    # credentials the daily sweep sends per run.
    work_queue_url: str | None = None
    due_index_shards: int = 4
    sweep_per_run: int = 2000
    # Ceilings on WeChat token-endpoint calls per second, shared by every worker: the whole
    # deployment's, and each third-party platform's (its component and authorizer tokens).
    wechat_calls_per_second: float = 200.0
    component_calls_per_second: float = 200.0

    @classmethod
    def from_env(cls, env: Environment | None = None) -> Settings:
        env = process_env() if env is None else env
        e = SettingsError
        budget = env_int(
            env, "DAILY_CALL_BUDGET", cls.daily_call_budget, 1, WECHAT_DAILY_QUOTA - 1, error=e
        )
        numbers: dict[str, Any] = {
            name: env_number(env, variable, getattr(cls, name), low, high, error=e)
            for name, variable, low, high in _NUMBERS
        }
        whole = {
            name: env_int(env, variable, getattr(cls, name), low, high, error=e)
            for name, variable, low, high in _INTEGERS
        }
        secret_ids, secret_prefix = _registry_secrets(env)
        settings = cls(
            table_name=env_text(env, TABLE_ENV, what="the DynamoDB table's name", error=e),
            registry_secret_id=secret_ids[0],
            registry_secret_ids=secret_ids,
            registry_secret_prefix=secret_prefix,
            wechat_api_base_url=env_url(
                env, "WECHAT_API_BASE_URL", cls.wechat_api_base_url, error=e
            ),
            wecom_api_base_url=env_url(env, "WECOM_API_BASE_URL", cls.wecom_api_base_url, error=e),
            daily_call_budget=budget,
            consumer_daily_cap=env_int(
                env, "CONSUMER_DAILY_CALL_CAP", max(1, budget // 10), 0, budget, error=e
            ),
            probe_stored_tokens=env_flag(
                env, "PROBE_STORED_TOKENS", cls.probe_stored_tokens, error=e
            ),
            refresh_token_kms_key_id=env.get("REFRESH_TOKEN_KMS_KEY_ID", "").strip() or None,
            work_queue_url=env.get("WORK_QUEUE_URL", "").strip() or None,
            **numbers,
            **whole,
        )
        settings.check()
        return settings

    def __post_init__(self) -> None:
        if not self.registry_secret_ids:
            object.__setattr__(self, "registry_secret_ids", (self.registry_secret_id,))
        elif self.registry_secret_ids[0] != self.registry_secret_id:
            raise SettingsError(
                "registry_secret_id must be the first of registry_secret_ids (the ids of "
                "WECHAT_APPS_SECRET_ID, in order)."
            )

    def check(self) -> None:
        """Refuse combinations under which a token could expire between two runs."""
        if self.refresh_interval_seconds + self.refresh_slack_seconds >= 7200 - (
            self.expiry_skew_seconds
        ):
            raise SettingsError(
                "REFRESH_INTERVAL_SECONDS + REFRESH_SLACK_SECONDS must be shorter than a "
                "token's usable life (7200 s - EXPIRY_SKEW_SECONDS), or every run refreshes "
                "and a token can still expire before the next run."
            )
        if self.lease_seconds < 2 * self.http_timeout_seconds + 5:
            raise SettingsError(
                "LEASE_SECONDS must be at least twice WECHAT_HTTP_TIMEOUT_SECONDS plus 5, so "
                "that a WeChat call always finishes inside the lease."
            )

    @property
    def consumer_cap(self) -> int:
        if self.consumer_daily_cap is not None:
            return self.consumer_daily_cap
        return max(1, self.daily_call_budget // 10)

    def rules(self) -> Rules:
        return Rules(
            renew_below_seconds=self.refresh_interval_seconds + self.refresh_slack_seconds,
            stable_renew_below_seconds=self.stable_window_opens_below,
            min_age_seconds=self.force_min_interval_seconds,
            trigger_spacing_seconds=self.passive_min_interval_seconds,
            max_cooldown_seconds=self.max_cooldown_seconds,
            consumer_daily_cap=self.consumer_cap,
            configuration_hold_seconds=self.configuration_hold_seconds,
        )

    @property
    def stable_window_opens_below(self) -> float:
        """A stable token's stored life left when its window opens: WeChat's 300 s plus the
        lead, less the margin taken off its stored life (300 s by default)."""
        return (
            WECHAT_GRACE_SECONDS
            + self.stable_window_lead_seconds
            - (self.stable_expiry_margin_seconds)
        )

    def refresh_cost_seconds(self) -> float:
        """The time one credential's refresh may take: its first attempt plus one retry."""
        return 2 * self.http_timeout_seconds + 2.0


def _registry_secrets(env: Environment) -> tuple[tuple[str, ...], str | None]:
    """WECHAT_APPS_SECRET_ID (one id or ARN, or several separated by commas) and the
    optional WECHAT_APPS_SECRET_PREFIX: the registry's shards (README, "Many secrets")."""
    text = env_text(
        env,
        "WECHAT_APPS_SECRET_ID",
        what="the Secrets Manager id of the app registry (several: separated by commas)",
        error=SettingsError,
    )
    try:
        ids = parse_secret_ids(text)
        prefix = check_prefix(env.get("WECHAT_APPS_SECRET_PREFIX"))
    except RegistryFormatError as exc:
        raise SettingsError(str(exc)) from None
    return ids, prefix


# (field, environment variable, lowest, highest) of the numeric settings.
_NUMBERS: tuple[tuple[str, str, float, float], ...] = (
    ("refresh_interval_seconds", "REFRESH_INTERVAL_SECONDS", 60, 6000),
    ("refresh_slack_seconds", "REFRESH_SLACK_SECONDS", 0, 6000),
    ("stable_window_lead_seconds", "STABLE_WINDOW_LEAD_SECONDS", 0, 1800),
    ("stable_retry_seconds", "STABLE_RETRY_SECONDS", 5, 60),
    # Below 30 s a consumer could use a token some WeChat server already counts as expired;
    # above 120 s the record could expire before a healthy rotation (README).
    ("stable_expiry_margin_seconds", "STABLE_EXPIRY_MARGIN_SECONDS", 30, 120),
    ("expiry_skew_seconds", "EXPIRY_SKEW_SECONDS", 120, 1800),
    ("lease_seconds", "LEASE_SECONDS", 30, 900),
    ("http_timeout_seconds", "WECHAT_HTTP_TIMEOUT_SECONDS", 1, 60),
    ("passive_min_interval_seconds", "PASSIVE_MIN_INTERVAL_SECONDS", 30, 3600),
    # No trigger may rotate a credential younger than the consumers' safe maximum cache.
    ("force_min_interval_seconds", "FORCE_MIN_INTERVAL_SECONDS", SAFE_MAX_CACHE_SECONDS, 3600),
    ("wechat_calls_per_second", "WECHAT_CALLS_PER_SECOND", 1, 10_000),
    ("component_calls_per_second", "COMPONENT_CALLS_PER_SECOND", 1, 10_000),
)
_INTEGERS: tuple[tuple[str, str, int, int], ...] = (
    ("stable_force_daily_limit", "STABLE_FORCE_DAILY_LIMIT", 0, 20),
    ("stable_calls_per_run", "STABLE_CALLS_PER_RUN", 1, 6),
    ("concurrency", "REFRESH_CONCURRENCY", 1, 256),
    ("max_attempts", "WECHAT_MAX_ATTEMPTS", 1, 10),
    # Changing the shard count re-files credentials only as they are written: the sweep
    # finds the rest within a day.
    ("due_index_shards", "DUE_INDEX_SHARDS", 1, 64),
    ("sweep_per_run", "SWEEP_CREDENTIALS_PER_RUN", 1, 100_000),
)
