"""Reading credentials with an in-process cache that never outlives the credential."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from .errors import (
    AuthorizationRevokedError,
    ConfigurationError,
    TokenError,
    TokenExpiredError,
    TokenNotFoundError,
    TokenStoreError,
)
from .passive import (
    REPLACED_OUTCOMES,
    PassiveBackoff,
    PassiveRefresh,
    default_passive_refresh,
)
from .record import ACCESS_TOKEN, CredentialKey, CredentialRecord, fingerprint, iso
from .settings import (
    APP_ID_ENV,
    CACHE_SECONDS_ENV,
    DEFAULT_CACHE_SECONDS,
    SAFE_MAX_CACHE_SECONDS,
    SWITCH_MARGIN_SECONDS,
    WECHAT_GRACE_SECONDS,
    WECHAT_SERVER_SKEW_SECONDS,
    env_number,
    env_text,
    process_env,
)
from .store import DynamoDBRecordSource, RecordSource

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

logger = logging.getLogger("wechat_token")

_UNSET: Any = object()

# Why the cache may not be longer: stated in every refusal of a longer one.
SAFE_MAX_WHY: Final = (
    f" seconds: after a rotation WeChat accepts the old token for {WECHAT_GRACE_SECONDS:g} s, "
    f"but its servers disagree by up to {WECHAT_SERVER_SKEW_SECONDS:g} s, and "
    f"{SWITCH_MARGIN_SECONDS:g} s are kept for the refresher's write and the read "
    f"({WECHAT_GRACE_SECONDS:g} - {WECHAT_SERVER_SKEW_SECONDS:g} - "
    f"{SWITCH_MARGIN_SECONDS:g} = {SAFE_MAX_CACHE_SECONDS:g} s at most; "
    f"default {DEFAULT_CACHE_SECONDS:g})"
)


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """One cached credential; ``repr`` shows its times, never the value."""

    value: str = field(repr=False)
    cache_until: float  # never later than expires_at
    expires_at: float


def cache_seconds_from_env() -> float:
    return env_number(
        process_env(),
        CACHE_SECONDS_ENV,
        DEFAULT_CACHE_SECONDS,
        0.0,
        SAFE_MAX_CACHE_SECONDS,
        why=SAFE_MAX_WHY,
    )


def checked_cache_seconds(seconds: float) -> float:
    """``seconds`` if it is a safe cache lifetime, else a ``ConfigurationError`` saying why."""
    if not 0 <= seconds <= SAFE_MAX_CACHE_SECONDS:  # also refuses NaN
        raise ConfigurationError(
            f"cache_seconds={seconds!r} is out of range: use 0 to "
            f"{SAFE_MAX_CACHE_SECONDS:g}{SAFE_MAX_WHY}."
        )
    return float(seconds)


def app_id_from_env() -> str:
    return env_text(
        process_env(),
        APP_ID_ENV,
        what="the app's key in the wechat-token registry, or pass app_id=",
    )


class TokenReader:
    """Reads credentials from a record source (the token table), caching each in memory.

    A cached entry lives ``min(cache_seconds, expires_at - now)``: short enough that a
    consumer switches to a rotated token well inside WeChat's 5-minute grace, and never
    past the credential's own expiry. A hit costs a dict lookup and a clock read
    (``cached``). Misses of different credentials never wait for each other.

    ``source`` is any ``RecordSource``; ``table_name=``/``client=`` build a
    ``DynamoDBRecordSource`` (the default: ``TOKEN_TABLE_NAME``, a boto3 client on first use).
    """

    def __init__(
        self,
        table_name: str | None = None,
        *,
        source: RecordSource | None = None,
        client: DynamoDBClient | None = None,
        cache_seconds: float | None = None,
        clock: Callable[[], float] = time.time,
        passive_refresh: PassiveRefresh | None = _UNSET,
    ) -> None:
        if source is not None and (table_name is not None or client is not None):
            raise TypeError("pass either source= or table_name=/client=, not both")
        self._source: RecordSource = source or DynamoDBRecordSource(client, table_name)
        self._cache_seconds = (
            cache_seconds_from_env()
            if cache_seconds is None
            else checked_cache_seconds(cache_seconds)
        )
        self._clock = clock
        # On an expired record, ask the passive refresh function once (if this consumer may).
        self._passive: PassiveRefresh | None = (
            default_passive_refresh() if passive_refresh is _UNSET else passive_refresh
        )
        self._backoff = PassiveBackoff()
        # kind -> app_id -> entry (kind first: the access_token dict is the hot path's).
        self._entries: dict[str, dict[str, CacheEntry]] = {ACCESS_TOKEN: {}}
        self._locks: dict[CredentialKey, threading.Lock] = {}
        self._locks_lock = threading.Lock()

    @property
    def source(self) -> RecordSource:
        return self._source

    @property
    def cache_seconds(self) -> float:
        return self._cache_seconds

    @property
    def clock(self) -> Callable[[], float]:
        return self._clock

    @property
    def backoff(self) -> PassiveBackoff:
        """This reader's negative cache of passive requests (shared with its WeChatClients)."""
        return self._backoff

    # -- reading ---------------------------------------------------------------------------

    def cached(self, app_id: str, kind: str = ACCESS_TOKEN) -> str | None:
        """The cached value while it is fresh, else None. The fast path: no I/O, no lock."""
        entries = self._entries.get(kind)
        if entries is not None:
            entry = entries.get(app_id)
            if entry is not None and self._clock() < entry.cache_until:
                return entry.value
        return None

    def get(self, app_id: str | None = None, kind: str = ACCESS_TOKEN) -> str:
        """The current credential value; raises a ``TokenError`` rather than return a stale one."""
        app_id = app_id or app_id_from_env()
        value = self.cached(app_id, kind)
        if value is not None:
            return value
        key = CredentialKey(app_id, kind)
        with self._lock(key):
            value = self.cached(app_id, kind)
            if value is not None:
                return value
            return self._load(key, self._entry(key))

    def refetch(self, app_id: str | None = None, kind: str = ACCESS_TOKEN) -> str:
        """Drop the cached value and read the table with a strongly consistent read."""
        key = CredentialKey(app_id or app_id_from_env(), kind)
        with self._lock(key):
            stale = self._entry(key)
            self._forget(key)
            return self._load(key, stale, consistent=True)

    def invalidate(self, app_id: str | None = None, kind: str = ACCESS_TOKEN) -> None:
        """Forget the cached value, so that the next ``get`` reads the table."""
        self._forget(CredentialKey(app_id or app_id_from_env(), kind))

    def clear(self) -> None:
        for entries in self._entries.values():
            entries.clear()

    def read(self, app_id: str, kind: str = ACCESS_TOKEN) -> CredentialRecord | None:
        """The stored record itself (uncached, strongly consistent), for diagnostics."""
        return self._source.get(CredentialKey(app_id, kind), True)

    # -- misses ----------------------------------------------------------------------------

    def _lock(self, key: CredentialKey) -> threading.Lock:
        lock = self._locks.get(key)
        if lock is None:
            with self._locks_lock:
                lock = self._locks.setdefault(key, threading.Lock())
        return lock

    def _entry(self, key: CredentialKey) -> CacheEntry | None:
        return self._entries.get(key.kind, {}).get(key.app_id)

    def _forget(self, key: CredentialKey) -> None:
        self._entries.get(key.kind, {}).pop(key.app_id, None)

    def _load(
        self, key: CredentialKey, stale: CacheEntry | None, *, consistent: bool = False
    ) -> str:
        try:
            record = self._source.get(key, consistent)
        except TokenStoreError:
            # Last known good: a value we already hold stays usable until its own expiry,
            # so a DynamoDB hiccup does not take every consumer down with it.
            if stale is not None and self._clock() < stale.expires_at:
                logger.warning(
                    "reading %s from %s failed; serving the cached %s until it expires at %s",
                    key,
                    self._source,
                    fingerprint(stale.value),
                    iso(stale.expires_at),
                )
                return stale.value
            raise
        now = self._clock()
        if record is not None and record.is_valid(now):
            return self._remember(key, record, now)
        self._forget(key)
        if record is not None and record.is_revoked:
            raise AuthorizationRevokedError(
                f"The merchant revoked the platform's authorization of '{record.app_id}' at "
                f"{iso(record.revoked_at)}: there is no {key.kind} for it until they "
                "authorize the platform again (the refresher stopped refreshing it)."
            )
        if record is None or not record.has_value:
            raise TokenNotFoundError(self._not_found_message(key, record))
        return self._expired(key, record, now)

    def _remember(self, key: CredentialKey, record: CredentialRecord, now: float) -> str:
        assert record.value is not None
        assert record.expires_at is not None
        cache_until = min(now + self._cache_seconds, record.expires_at)
        self._entries.setdefault(key.kind, {})[key.app_id] = CacheEntry(
            record.value, cache_until, record.expires_at
        )
        return record.value

    def _expired(self, key: CredentialKey, record: CredentialRecord, now: float) -> str:
        """An expired record: ask for a passive refresh once (unless backing off), re-read."""
        passive = self._passive
        if passive is None:
            raise TokenExpiredError(self._expired_message(record, now))
        note = self._ask(passive, key, record, now)
        if note is None:  # the function answered with a (coming) replacement
            fresh = self._source.get(key, True)
            now = self._clock()
            if fresh is not None and fresh.is_valid(now):
                return self._remember(key, fresh, now)
            note = "a passive refresh was requested, but the table still holds no valid value"
            self._backoff.hold(key, now, "the record was still expired after a passive refresh")
        raise TokenExpiredError(f"{self._expired_message(record, now)} {note}.")

    def _ask(
        self, passive: PassiveRefresh, key: CredentialKey, record: CredentialRecord, now: float
    ) -> str | None:
        """None if the function answered with a replacement, else what happened instead."""
        refusal = self._backoff.refusal(key, now)
        if refusal is not None:
            return f"No passive refresh asked before {iso(refusal.until)}: {refusal.reason}"
        stale = record.fingerprint() or ""
        note: str | None = None
        try:
            outcome = self._backoff.ask(passive, key, stale, 42001, now)
        except TokenError as exc:
            note = f"The passive refresh failed: {exc}"
            logger.warning("passive refresh of expired %s failed: %s", key, exc)
        else:
            if outcome not in REPLACED_OUTCOMES:
                note = f"A passive refresh was refused: the refresher answered {outcome!r}"
        return note

    def _not_found_message(self, key: CredentialKey, record: CredentialRecord | None) -> str:
        message = (
            f"No {key.kind} for app '{key.app_id}' in {self._source}. Check that the app is "
            "in the registry secret (WECHAT_APPS_SECRET_ID) under this exact key and that the "
            "refresher has run"
        )
        if record is not None:
            message += f"; the refresher last succeeded {iso(record.last_success_at)}"
            message += _last_error(record)
        return message + "."

    def _expired_message(self, record: CredentialRecord, now: float) -> str:
        assert record.expires_at is not None
        return (
            f"The {record.kind} for app '{record.app_id}' in {self._source} expired at "
            f"{iso(record.expires_at)} ({now - record.expires_at:.0f} s ago). "
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
    source: RecordSource | None = None,
    client: DynamoDBClient | None = None,
    cache_seconds: float | None = None,
    clock: Callable[[], float] = time.time,
    passive_refresh: PassiveRefresh | None = _UNSET,
) -> TokenReader:
    """Replace the process-wide reader (inject a source, a table, a client or a clock)."""
    global _default_reader  # noqa: PLW0603
    reader = TokenReader(
        table_name,
        source=source,
        client=client,
        cache_seconds=cache_seconds,
        clock=clock,
        passive_refresh=passive_refresh,
    )
    with _default_lock:
        _default_reader = reader
    return reader


def get_access_token(app_id: str | None = None) -> str:
    """The app's current access_token, from the in-process cache or the token table.

    ``app_id`` defaults to the ``WECHAT_APP_ID`` environment variable. Raises
    ``TokenNotFoundError`` or ``TokenExpiredError`` (both ``TokenError``) instead of ever
    returning a token past its expiry.
    """
    reader = _default_reader
    if reader is not None and app_id is not None:
        value = reader.cached(app_id)  # the hot path: a dict lookup and a clock read
        if value is not None:
            return value
    return default_reader().get(app_id, ACCESS_TOKEN)
