"""Third-party platforms: what happens around a component's credentials.

    events       authorized / updateauthorized: the code is exchanged (api_query_auth) and
                 the authorizer's token and refresh token stored; unauthorized: retired
    authorizers  found with a query of the component index, never a scan
    tickets      the newest valid verify ticket (the one before on 61006); when none is
                 valid, api_start_push_ticket, at most every 10 minutes
    reconcile    api_get_authorizer_list (500 a page) repairs missing or stale refresh
                 tokens, never replacing one stored after the list was read

The credentials themselves (the component token and each authorizer's token) go through
the same lease, fence, budget, policy and deadline as every other credential
(``RefreshService.refresh``); this module only supplies what their fetch needs and the
writes that are not a token refresh. Every write is conditional.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from wechat_token.record import (
    ACCESS_TOKEN,
    EVENT_PREFIX,
    CredentialKey,
    CredentialRecord,
    Kind,
    fingerprint,
    ticket_key,
)

from .due import DueIndex
from .errors import NoTokenError, RefreshError
from .policy import Rules, due_after_success
from .refresh_tokens import RefreshTokenCipher
from .registry import AUTHORIZER, AppConfig
from .token_store import RefreshTokenCopy, TokenStore, Update
from .wechat_api import FetchedCredential, WeChatTokenAPI

logger = logging.getLogger("wechat_token.refresher")

PENDING_PREFIX = "pending#"
# An authorization event's kinds (the callback stores them as InfoType).
AUTHORIZED = ("authorized", "updateauthorized")
UNAUTHORIZED = "unauthorized"
START_PUSH_SPACING_SECONDS = 600.0
LIST_PAGE = 500
# An authorizer's refresh failed for its refresh token: refused (61023) or none stored.
REFRESH_TOKEN_ERRORS = ("61023", "no_token")
LAST_ERROR = ("last_error_code", "last_error_class", "last_error_message", "last_error_at")


def pending_index_key(component_appid: str) -> str:
    """The component index key of a component's unprocessed authorization events."""
    return PENDING_PREFIX + component_appid


# Workers that find an authorizer's refresh token refused claim the reconciliation first.
RECONCILE_SPACING_SECONDS = 120.0


@dataclass(frozen=True, slots=True)
class PlatformContext:
    """What an authorizer's fetch needs: its component's token (value hidden)."""

    component_token: str = field(repr=False)


class Platform:
    """A component's events, authorizers, tickets and reconciliation."""

    def __init__(
        self,
        store: TokenStore,
        api: WeChatTokenAPI,
        cipher: RefreshTokenCipher | None,
        clock: Callable[[], float],
        *,
        due_index: DueIndex | None = None,
        rules: Rules | None = None,
        expiry_margin_seconds: float = 300.0,
    ) -> None:
        self.store = store
        self.api = api
        self._cipher = cipher
        self._clock = clock
        self._due_index = due_index or DueIndex()
        self._rules = rules or Rules()
        self._expiry_margin = expiry_margin_seconds

    def _due(self, app_id: str, at: float) -> dict[str, str | float]:
        """An authorizer's due-index entry (``at`` must lie ahead of the planner's runs)."""
        return self._due_index.due(app_id, AUTHORIZER, at).attributes()

    @property
    def cipher(self) -> RefreshTokenCipher:
        if self._cipher is None:
            raise NoTokenError(
                "REFRESH_TOKEN_KMS_KEY_ID is not set: authorizers' refresh tokens cannot be "
                "stored or read (the template sets it to the stack's RefreshTokenKey)"
            )
        return self._cipher

    # -- what the fetches need -----------------------------------------------------------

    def component_token(self, component: AppConfig, now: float) -> str:
        """The stored component token, valid now (an authorizer's fetch needs it)."""
        record = self.store.read(CredentialKey(component.app_id, Kind.COMPONENT_ACCESS_TOKEN))
        if not record.is_valid(now) or record.value is None:
            raise NoTokenError(
                f"No valid component_access_token for {component.app_id!r} yet: a worker "
                "fetches it once a verify ticket is stored (a new platform: the next run "
                "tries again; otherwise see `wechat-token status`)"
            )
        return record.value

    def tickets(self, component: AppConfig, now: float) -> list[str]:
        """The valid verify tickets, newest first: the current one and the one before."""
        record = self.store.read(ticket_key(component.app_id))
        tickets = []
        if record.value and record.is_valid(now):
            tickets.append(record.value)
        if record.prior_value and (record.prior_expires_at or 0.0) > now:
            tickets.append(record.prior_value)
        if not tickets:
            self._restart_pushes(component, record, now)
            raise NoTokenError(
                f"No valid component_verify_ticket for {component.app_id!r}: WeChat's pushes "
                "to the callback URL stopped or never arrived (check the 授权事件接收URL and "
                "the callback's logs); asked WeChat to push again"
            )
        return tickets

    def fetch_component_token(
        self, component: AppConfig, count_call: Callable[[], None]
    ) -> FetchedCredential:
        """One attempt with the newest ticket; on 61006 (WeChat does not know it), one more
        with the ticket before it."""
        tickets = self.tickets(component, self._clock())
        for number, ticket in enumerate(tickets):
            if number:
                count_call()
            try:
                return self.api.fetch_component_token(component, ticket)
            except RefreshError as error:
                if error.code != "61006" or number + 1 == len(tickets):
                    raise
                logger.warning(
                    "%s: WeChat refused the newest verify ticket (61006); trying the one before",
                    component.app_id,
                )
        raise AssertionError("unreachable: tickets() returns at least one")

    def fetch_authorizer_token(
        self, authorizer: AppConfig, record: CredentialRecord
    ) -> FetchedCredential:
        component = authorizer.component
        assert component is not None
        if not record.refresh_token_cipher:
            raise NoTokenError(
                f"No refresh token stored for {authorizer.app_id!r}: reconciliation "
                "(api_get_authorizer_list) restores it"
            )
        refresh_token = self.cipher.decrypt(authorizer.app_id, record.refresh_token_cipher)
        token = self.component_token(component, self._clock())
        fetched = self.api.fetch_authorizer_token(authorizer, token, refresh_token)
        if fetched.refresh_token is None:  # WeChat may leave it out when unchanged
            return FetchedCredential(
                fetched.value, fetched.expires_in, fetched.sent_at, fetched.source, refresh_token
            )
        return fetched

    def refresh_token_copy(
        self, app_id: str, fetched: FetchedCredential, stored: CredentialRecord
    ) -> RefreshTokenCopy | None:
        """What to store of the refresh token that came with ``fetched`` (None: unchanged)."""
        if fetched.refresh_token is None:
            return None
        fp = fingerprint(fetched.refresh_token)
        if fp == stored.refresh_token_fp:
            return None
        return RefreshTokenCopy(
            self.cipher.encrypt(app_id, fetched.refresh_token), fp, fetched.sent_at
        )

    # -- the component's authorizers and events ------------------------------------------

    def authorizers(self, component: AppConfig) -> list[AppConfig]:
        """Every authorizer the table holds for ``component`` (the component index)."""
        prefix = component.app_id + ":"
        return [
            AppConfig.authorizer(component, key.app_id[len(prefix) :])
            for key in self.store.component_items(component.app_id)
            if key.kind == ACCESS_TOKEN and key.app_id.startswith(prefix)
        ]

    def pending_events(self, component: AppConfig) -> list[CredentialKey]:
        prefix = f"{EVENT_PREFIX}{component.app_id}:"
        return [
            key
            for key in self.store.component_items(pending_index_key(component.app_id))
            if key.kind == Kind.AUTHORIZATION and key.app_id.startswith(prefix)
        ]

    def handle_event(self, component: AppConfig, key: CredentialKey) -> str:
        """Act on one stored authorization event; what happened, in a few words."""
        event = self.store.read(key)
        now = self._clock()
        authorizer = AppConfig.authorizer(component, key.app_id.rsplit(":", 1)[1])
        created = event.create_time or 0.0
        if event.info_type == UNAUTHORIZED:
            self._retire(authorizer, created, now)
            outcome = "retired"
        elif event.info_type in AUTHORIZED and event.value and event.is_valid(now):
            self.authorize(component, event.value, created=created)
            outcome = "authorized"
        else:
            outcome = "expired code" if event.info_type in AUTHORIZED else "ignored"
        self._processed(key, created)
        return outcome

    def authorize(self, component: AppConfig, code: str, *, created: float) -> AppConfig:
        """Exchange an authorization code at once and store the authorizer's credential."""
        now = self._clock()
        token = self.component_token(component, now)
        appid, fetched = self.api.query_auth(component, token, code)
        authorizer = AppConfig.authorizer(component, appid)
        assert fetched.refresh_token is not None
        copy = RefreshTokenCopy(
            self.cipher.encrypt(authorizer.app_id, fetched.refresh_token),
            fingerprint(fetched.refresh_token),
            fetched.sent_at,
        )
        expires_at = fetched.sent_at + fetched.expires_in - self._expiry_margin
        due = due_after_success(expires_at, None, AUTHORIZER, self._rules, now=now)
        update = Update().set(
            value=fetched.value,
            expires_at=expires_at,
            **self._due(authorizer.app_id, due),
            fetched_at=fetched.sent_at,
            last_success_at=fetched.sent_at,
            source=fetched.source,
            component_appid=component.app_id,
            create_time=created,
            **copy.attributes(),
        )
        update.add("version")
        update.remove("revoked_at", "previous_fingerprint", "previous_valid_until")
        update.when(
            "attribute_not_exists({create_time}) OR {create_time} <= :created", created=created
        )
        written = self.store.update(CredentialKey(authorizer.app_id, ACCESS_TOKEN), update)
        if not written.ok:
            logger.warning(
                "%s: a newer authorization is already stored; this code's tokens were not kept",
                authorizer.app_id,
            )
        else:
            logger.info(
                "%s: authorized; stored its token and refresh token %s",
                authorizer.app_id,
                copy.fingerprint,
            )
        return authorizer

    def _retire(self, authorizer: AppConfig, created: float, now: float) -> None:
        assert authorizer.component is not None
        update = Update().set(
            revoked_at=created or now,
            component_appid=authorizer.component.app_id,
        )
        update.remove(
            "value",
            "expires_at",
            "refresh_token_cipher",
            "refresh_token_fp",
            "refresh_token_at",
            "previous_fingerprint",
            "previous_valid_until",
            "lease_owner",
            "lease_until",
            "due_shard",
            "due_at",
        )
        update.when(
            "attribute_not_exists({create_time}) OR {create_time} < :created", created=created
        )
        written = self.store.update(CredentialKey(authorizer.app_id, ACCESS_TOKEN), update)
        if written.ok:
            logger.warning(
                "%s: the merchant revoked the authorization; its token is retired "
                "and no longer refreshed",
                authorizer.app_id,
            )

    def _processed(self, key: CredentialKey, created: float) -> None:
        """Take the event out of the pending index and drop its code (if nothing newer came)."""
        update = Update().remove("component_appid", "value")
        update.when("{create_time} = :created", created=created)
        self.store.update(key, update)

    def _restart_pushes(self, component: AppConfig, record: CredentialRecord, now: float) -> None:
        if record.triggered_at is not None and now - record.triggered_at < (
            START_PUSH_SPACING_SECONDS
        ):
            return
        update = Update().set(triggered_at=now)
        update.when(
            "attribute_not_exists({triggered_at}) OR {triggered_at} <= :before",
            before=now - START_PUSH_SPACING_SECONDS,
        )
        if not self.store.update(record.key, update).ok:
            return  # another run asked a moment ago
        try:
            self.api.start_push_ticket(component)
        except RefreshError as error:
            logger.error(
                "%s: api_start_push_ticket failed (%s): %s", component.app_id, error.code, error
            )
        else:
            logger.warning("%s: no valid verify ticket; asked WeChat to push one", component.app_id)

    # -- reconciliation ------------------------------------------------------------------

    def claim_reconcile(self, component: AppConfig, now: float) -> bool:
        """Whether this worker may reconcile the component now: one claim per
        ``RECONCILE_SPACING_SECONDS``, so that a thousand authorizers failing at once lead
        to one ``api_get_authorizer_list`` pass, not a thousand."""
        update = Update().set(reconcile_claimed_at=now)
        update.when(
            "attribute_not_exists({reconcile_claimed_at}) OR {reconcile_claimed_at} <= :before",
            before=now - RECONCILE_SPACING_SECONDS,
        )
        key = CredentialKey(component.app_id, Kind.COMPONENT_ACCESS_TOKEN)
        return self.store.update(key, update).ok

    def reconcile(self, component: AppConfig, reason: str) -> int:
        """Repair authorizers' refresh tokens from api_get_authorizer_list; how many."""
        listed_at = self._clock()
        token = self.component_token(component, listed_at)
        repaired, offset = 0, 0
        while True:
            total, page = self.api.authorizer_list(component, token, offset, LIST_PAGE)
            for entry in page:
                repaired += self._repair(
                    component,
                    entry.authorizer_appid,
                    entry.refresh_token,
                    entry.auth_time,
                    listed_at,
                )
            offset += len(page)
            if not page or offset >= total:
                break
        logger.warning(
            "%s: reconciled with api_get_authorizer_list (%s): %d authorizer(s) "
            "listed, %d repaired",
            component.app_id,
            reason,
            offset,
            repaired,
        )
        self.store.update(
            CredentialKey(component.app_id, Kind.COMPONENT_ACCESS_TOKEN),
            Update().set(reconciled_at=listed_at),
        )
        return repaired

    def _repair(
        self,
        component: AppConfig,
        authorizer_appid: str,
        refresh_token: str,
        auth_time: float,
        listed_at: float,
    ) -> int:
        authorizer = AppConfig.authorizer(component, authorizer_appid)
        key = CredentialKey(authorizer.app_id, ACCESS_TOKEN)
        record = self.store.find(key)
        fp = fingerprint(refresh_token)
        if record is not None and record.refresh_token_fp == fp:
            return 0
        if record is not None and record.is_revoked and (record.revoked_at or 0) > auth_time:
            return 0  # revoked after WeChat's listing says it was authorized
        copy = RefreshTokenCopy(
            self.cipher.encrypt(authorizer.app_id, refresh_token), fp, listed_at
        )
        # Due at once: the next planner run refreshes it with the restored refresh token.
        update = Update().set(
            component_appid=component.app_id,
            **copy.attributes(),
            **self._due(authorizer.app_id, self._clock() + 5.0),
        )
        update.remove("revoked_at")
        if record is not None and record.last_error_code in REFRESH_TOKEN_ERRORS:
            # The error was the refresh token's, which is replaced now: left recorded, a
            # 61023 (a configuration error) would hold the retry and every run for
            # configuration_hold_seconds while the token consumers hold is dead.
            update.remove(*LAST_ERROR)
        # Never replace a refresh token stored after the list was read: it is newer.
        update.when(
            "attribute_not_exists({refresh_token_at}) OR {refresh_token_at} < :listed",
            listed=listed_at,
        )
        if self.store.update(key, update).ok:
            logger.warning(
                "%s: refresh token restored from api_get_authorizer_list (%s)",
                authorizer.app_id,
                fp,
            )
            return 1
        return 0
