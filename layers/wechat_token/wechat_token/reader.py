"""Reading credentials with an in-process cache that never outlives the credential."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from .errors import (
    ConfigurationError,
    TokenError,
    TokenExpiredError,
    TokenNotFoundError,
    TokenStoreError,
)
from .passive import PassiveRefresh, default_passive_refresh
from .record import ACCESS_TOKEN, CredentialRecord, fingerprint, iso
from .store import default_dynamodb_client, read_record, table_name_from_env

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

logger = logging.getLogger("wechat_token")

APP_ID_ENV = "WECHAT_APP_ID"
CACHE_SECONDS_ENV = "WECHAT_TOKEN_CACHE_SECONDS"
DEFAULT_CACHE_SECONDS = 60.0
_UNSET: Any = object()


class _Entry(NamedTuple):
    value: str
    cache_until: float  # never later than expires_at
    expires_at: float


def cache_seconds_from_env() -> float:
    raw = os.environ.get(CACHE_SECONDS_ENV)
    if raw is None or raw.strip() == "":
        return DEFAULT_CACHE_SECONDS
    try:
        seconds = float(raw)
    except ValueError:
        raise ConfigurationError(
            f"{CACHE_SECONDS_ENV}={raw!r} is not a number of seconds (default 60)."
        ) from None
    if not 0 <= seconds <= 3600:
        raise ConfigurationError(
            f"{CACHE_SECONDS_ENV}={raw!r} must be between 0 and 3600 seconds; keep it well "
            "inside WeChat's 5-minute grace window (default 60)."
        )
    return seconds


def app_id_from_env() -> str:
    app_id = os.environ.get(APP_ID_ENV, "").strip()
    if not app_id:
        raise ConfigurationError(
            f"No app_id given and {APP_ID_ENV} is not set: pass app_id= or set {APP_ID_ENV} "
            "to the app's key in the wechat-token registry."
        )
    return app_id


class TokenReader:
    """Reads credentials from the token table, caching each one in memory.

    A cached entry lives ``min(cache_seconds, expires_at - now)``: short enough that a
    consumer switches to a rotated token well inside WeChat's 5-minute grace, and never
    past the credential's own expiry. A hit costs a dict lookup and a clock read.
    """

    def __init__(
        self,
        table_name: str | None = None,
        *,
        client: DynamoDBClient | None = None,
        cache_seconds: float | None = None,
        clock: Callable[[], float] = time.time,
        passive_refresh: PassiveRefresh | None = _UNSET,
    ) -> None:
        self._table_name = table_name
        # On an expired record, ask the refresher once (if this consumer may), then re-read.
        self._passive: PassiveRefresh | None = (
            default_passive_refresh() if passive_refresh is _UNSET else passive_refresh
        )
        self._client = client
        self._cache_seconds = cache_seconds_from_env() if cache_seconds is None else cache_seconds
        self._clock = clock
        # kind -> app_id -> entry; the access_token dict is also the hot path's.
        self._entries: dict[str, dict[str, _Entry]] = {ACCESS_TOKEN: {}}
        self._tokens = self._entries[ACCESS_TOKEN]
        self._miss_lock = threading.Lock()

    @property
    def table_name(self) -> str:
        if self._table_name is None:
            self._table_name = table_name_from_env()
        return self._table_name

    @property
    def client(self) -> DynamoDBClient:
        if self._client is None:
            self._client = default_dynamodb_client()
        return self._client

    @property
    def cache_seconds(self) -> float:
        return self._cache_seconds

    def get(self, app_id: str | None = None, kind: str = ACCESS_TOKEN) -> str:
        """The current credential value; raises a ``TokenError`` rather than return a stale one."""
        app_id = app_id or app_id_from_env()
        entries = self._entries.setdefault(kind, {})
        entry = entries.get(app_id)
        if entry is not None and self._clock() < entry[1]:
            return entry[0]
        with self._miss_lock:
            entry = entries.get(app_id)
            if entry is not None and self._clock() < entry[1]:
                return entry[0]
            return self._load(app_id, kind, entry)

    def invalidate(self, app_id: str | None = None, kind: str = ACCESS_TOKEN) -> None:
        """Forget the cached value, so that the next ``get`` reads the table."""
        self._entries.get(kind, {}).pop(app_id or app_id_from_env(), None)

    def refetch(self, app_id: str | None = None, kind: str = ACCESS_TOKEN) -> str:
        """Drop the cached value and read the table with a strongly consistent read."""
        app_id = app_id or app_id_from_env()
        with self._miss_lock:
            stale = self._entries.get(kind, {}).pop(app_id, None)
            return self._load(app_id, kind, stale, consistent=True)

    def clear(self) -> None:
        for entries in self._entries.values():
            entries.clear()

    def read(self, app_id: str, kind: str = ACCESS_TOKEN) -> CredentialRecord | None:
        """The stored record itself (uncached, strongly consistent), for diagnostics."""
        return read_record(self.client, self.table_name, app_id, kind, consistent=True)

    def _load(
        self,
        app_id: str,
        kind: str,
        stale: _Entry | None,
        *,
        consistent: bool = False,
        passive_allowed: bool = True,
    ) -> str:
        entries = self._entries.setdefault(kind, {})
        try:
            record = read_record(self.client, self.table_name, app_id, kind, consistent=consistent)
        except TokenStoreError:
            # Last known good: a value we already hold stays usable until its own expiry,
            # so a DynamoDB hiccup does not take every consumer down with it.
            now = self._clock()
            if stale is not None and now < stale.expires_at:
                logger.warning(
                    "DynamoDB read failed for %s/%s; serving the cached %s until it expires at %s",
                    app_id,
                    kind,
                    fingerprint(stale.value),
                    iso(stale.expires_at),
                )
                return stale.value
            raise
        now = self._clock()
        if record is None or not record.has_value:
            entries.pop(app_id, None)
            raise TokenNotFoundError(self._not_found_message(app_id, kind, record))
        assert record.value is not None
        assert record.expires_at is not None
        if not record.is_valid(now):
            entries.pop(app_id, None)
            if self._passive is not None and passive_allowed:
                try:
                    self._passive(app_id, kind, fingerprint(record.value), 42001)
                except TokenError as exc:
                    logger.warning("passive refresh of expired %s/%s failed: %s", app_id, kind, exc)
                return self._load(app_id, kind, None, consistent=True, passive_allowed=False)
            raise TokenExpiredError(self._expired_message(record, now))
        cache_until = min(now + self.cache_seconds, record.expires_at)
        entries[app_id] = _Entry(record.value, cache_until, record.expires_at)
        return record.value

    def _not_found_message(self, app_id: str, kind: str, record: CredentialRecord | None) -> str:
        message = (
            f"No {kind} for app '{app_id}' in DynamoDB table '{self.table_name}'. "
            "Check that the app is in the registry secret (WECHAT_APPS_SECRET_ID) under this "
            "exact key and that the refresher has run"
        )
        if record is not None:
            message += f"; the refresher last succeeded {iso(record.last_success_at)}"
            message += _last_error(record)
        return message + "."

    def _expired_message(self, record: CredentialRecord, now: float) -> str:
        assert record.expires_at is not None
        return (
            f"The {record.kind} for app '{record.app_id}' in DynamoDB table '{self.table_name}' "
            f"expired at {iso(record.expires_at)} ({now - record.expires_at:.0f} s ago). "
            f"The refresher last succeeded {iso(record.last_success_at)}{_last_error(record)}. "
            "Check the refresher's logs and alarms, and that its schedule is enabled."
        )


def _last_error(record: CredentialRecord) -> str:
    if record.last_error_code is None:
        return ""
    return (
        f"; its last error was {record.last_error_code} at {iso(record.last_error_at)}: "
        f"{record.last_error_message or 'no details'}"
    )


_default_reader: TokenReader | None = None
_default_lock = threading.Lock()


def default_reader() -> TokenReader:
    """The process-wide reader: created once per execution environment, reused when warm."""
    global _default_reader  # noqa: PLW0603
    if _default_reader is None:
        with _default_lock:
            if _default_reader is None:
                _default_reader = TokenReader()
    return _default_reader


def configure(
    table_name: str | None = None,
    *,
    client: DynamoDBClient | None = None,
    cache_seconds: float | None = None,
    clock: Callable[[], float] = time.time,
) -> TokenReader:
    """Replace the process-wide reader (inject a client, a table or a clock, e.g. in tests)."""
    global _default_reader  # noqa: PLW0603
    with _default_lock:
        _default_reader = TokenReader(
            table_name, client=client, cache_seconds=cache_seconds, clock=clock
        )
    return _default_reader


def get_access_token(app_id: str | None = None) -> str:
    """The app's current access_token, from the in-process cache or the token table.

    ``app_id`` defaults to the ``WECHAT_APP_ID`` environment variable. Raises
    ``TokenNotFoundError`` or ``TokenExpiredError`` (both ``TokenError``) instead of ever
    returning a token past its expiry.
    """
    # The hot path, inlined: a dict lookup and a clock read when the token is cached.
    reader = _default_reader
    if reader is not None and app_id is not None:
        entry = reader._tokens.get(app_id)
        if entry is not None and reader._clock() < entry[1]:
            return entry[0]
    return default_reader().get(app_id, ACCESS_TOKEN)
