"""Asking the refresher to replace a token WeChat rejected (passive refresh), and backing off.

Consumers reach the refresher only through its consumer entry point, the
``PassiveRefreshFunction`` (named by ``PASSIVE_REFRESH_FUNCTION_NAME``), invoked
synchronously with exactly ``{"app_id", "kind", "stale_token", "errcode"}``, where
``stale_token`` is the rejected token's fingerprint, never the token. It answers
``{"credentials": [{"app_id", "kind", "outcome", ...}], ...}``:

- ``refreshed``, ``already_replaced``, ``lease_held``: the table has (or is about to have) a
  newer token; the layer re-reads it with a consistent read;
- ``token_accepted``: WeChat still accepts the stored token, so the consumer's failure lies
  elsewhere; nothing was rotated;
- ``rate_limited``, ``not_due``, ``failed`` (and any other answer): refused or failed.

**Back-off (the negative cache).** After a request that failed (an invoke error, a
``FunctionError``) or was not answered with a newer token (any outcome but the three
above), and after an expired record that a request did not cure, the layer does not ask
again for that credential for ``PASSIVE_BACKOFF_SECONDS`` (30 s): it raises
``PassiveRefreshError`` at once instead. The refresher spaces consumer-triggered refreshes
of a credential by their last attempt anyway (``PASSIVE_MIN_INTERVAL_SECONDS``, 60 s), so
asking sooner could only be refused; 30 s bounds a storm to one invocation per credential
per execution environment per 30 s, while a recovered refresher is asked again within
half a minute.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from .errors import ConfigurationError, PassiveRefreshError
from .record import ACCESS_TOKEN, CredentialKey, iso
from .redaction import aws_error_detail, quiet_aws_loggers, redact
from .settings import PASSIVE_FUNCTION_ENV, env_text, process_env

if TYPE_CHECKING:
    from mypy_boto3_lambda import LambdaClient

__all__ = [
    "PASSIVE_BACKOFF_SECONDS",
    "REPLACED_OUTCOMES",
    "LambdaPassiveRefresh",
    "PassiveBackoff",
    "PassiveRefresh",
    "PassiveRefreshError",
    "default_passive_refresh",
    "flight",
]

logger = logging.getLogger("wechat_token")

# How long this process does not ask again for a credential after a failed or refused
# passive request, or an expired record that a request did not cure (see the docstring).
PASSIVE_BACKOFF_SECONDS: Final = 30.0

# The answers after which the table holds, or is about to hold, a newer token.
REPLACED_OUTCOMES: Final = frozenset({"refreshed", "already_replaced", "lease_held"})

# The setting earlier versions read; named in a warning so an upgrade is not silent.
_RETIRED_ENV: Final = "REFRESHER_FUNCTION_NAME"

# (app_id, kind, stale fingerprint, errcode) -> the refresher's outcome for that credential
PassiveRefresh = Callable[[str, str, str, int | None], str]


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why, and until when, this process does not ask again for a credential."""

    until: float
    reason: str
    outcome: str | None = None


class PassiveBackoff:
    """The negative cache: credentials this process must not report again yet.

    Times come from the caller (the reader's clock), so a simulated clock drives it too.
    """

    def __init__(self, seconds: float = PASSIVE_BACKOFF_SECONDS) -> None:
        self.seconds = seconds
        self._refusals: dict[CredentialKey, Refusal] = {}

    def refusal(self, key: CredentialKey, now: float) -> Refusal | None:
        """The refusal in force for ``key`` at ``now``, if any."""
        refusal = self._refusals.get(key)
        if refusal is None or now >= refusal.until:
            return None
        return refusal

    def hold(self, key: CredentialKey, now: float, reason: str, outcome: str | None = None) -> None:
        self._refusals[key] = Refusal(now + self.seconds, reason, outcome)

    def clear(self, key: CredentialKey | None = None) -> None:
        if key is None:
            self._refusals.clear()
        else:
            self._refusals.pop(key, None)

    def check(self, key: CredentialKey, now: float) -> None:
        """Raise ``PassiveRefreshError`` if a refusal is in force for ``key``."""
        refusal = self.refusal(key, now)
        if refusal is not None:
            raise PassiveRefreshError(
                f"Not asking for a passive refresh of {key} again before {iso(refusal.until)} "
                f"(the layer backs off {self.seconds:g} s): {refusal.reason}",
                outcome=refusal.outcome,
            )

    def ask(
        self,
        passive: PassiveRefresh,
        key: CredentialKey,
        stale: str,
        errcode: int | None,
        now: float,
    ) -> str:
        """One passive request for ``key``, unless a refusal is in force; a failure or any
        answer but a replacement starts the back-off. Returns the outcome."""
        self.check(key, now)
        answered = False
        try:
            outcome = passive(key.app_id, str(key.kind), stale, errcode)
            answered = True
        finally:
            if not answered:
                self.hold(key, now, "the last passive refresh request failed")
        if outcome not in REPLACED_OUTCOMES:
            self.hold(key, now, f"the refresher answered {outcome!r}", outcome)
        return outcome


_flights: dict[CredentialKey, threading.Lock] = {}
_flights_lock = threading.Lock()


def flight(key: CredentialKey) -> threading.Lock:
    """The process-wide lock under which one thread at a time reports ``key``."""
    lock = _flights.get(key)
    if lock is None:
        with _flights_lock:
            lock = _flights.setdefault(key, threading.Lock())
    return lock


class LambdaPassiveRefresh:
    """Invokes the PassiveRefreshFunction synchronously with
    ``{app_id, kind, stale_token, errcode}`` and returns its outcome for that credential.

    Only the token's fingerprint travels: invocation payloads can end up in logs.
    """

    def __init__(
        self, function_name: str | None = None, *, client: LambdaClient | None = None
    ) -> None:
        self._function_name = function_name
        self._client = client
        self._quieted = False

    @property
    def function_name(self) -> str:
        if self._function_name is None:
            self._function_name = env_text(
                process_env(),
                PASSIVE_FUNCTION_ENV,
                what="the stack output PassiveRefreshFunctionName, to let this consumer "
                "request a passive refresh",
                error=ConfigurationError,
            )
        return self._function_name

    @property
    def client(self) -> LambdaClient:
        if not self._quieted:  # botocore logs payloads and answers at DEBUG
            quiet_aws_loggers()
            self._quieted = True
        if self._client is None:
            import boto3  # noqa: PLC0415
            from botocore.config import Config  # noqa: PLC0415

            # Above the function's 60 s timeout, so that its own answer (or timeout) arrives.
            config = Config(read_timeout=70, retries={"mode": "standard", "max_attempts": 2})
            self._client = boto3.client("lambda", config=config)
        return self._client

    def __call__(
        self, app_id: str, kind: str = ACCESS_TOKEN, stale: str = "", errcode: int | None = None
    ) -> str:
        name, client = self.function_name, self.client
        payload = {"app_id": app_id, "kind": kind, "stale_token": stale, "errcode": errcode}
        failure: str | None = None
        try:
            response = client.invoke(
                FunctionName=name,
                InvocationType="RequestResponse",
                Payload=json.dumps(payload).encode(),
            )
            body: Any = json.loads(response["Payload"].read() or b"null")
        except Exception as exc:  # every failure becomes a PassiveRefreshError
            failure = aws_error_detail(exc)  # raised below, with no exception attached
        if failure is not None:
            raise PassiveRefreshError(
                f"Could not invoke the passive refresh function {name!r} for {app_id}/{kind}: "
                f"{failure}. Check lambda:InvokeFunction on it in the consumer's policy (attach "
                "the stack's ConsumerPolicy) and PASSIVE_REFRESH_FUNCTION_NAME."
            )
        if response.get("FunctionError"):
            message = body.get("errorMessage", "") if isinstance(body, dict) else ""
            raise PassiveRefreshError(
                f"The passive refresh function {name!r} failed for {app_id}/{kind}: "
                f"{redact(str(message))[:300]}"
            )
        return outcome_for(body, app_id, kind)


def outcome_for(summary: Any, app_id: str, kind: str) -> str:
    """The outcome the function's summary gives for this credential (``unknown`` if none)."""
    credentials = summary.get("credentials") if isinstance(summary, dict) else None
    if not isinstance(credentials, list):
        return "unknown"
    entries = [c for c in credentials if isinstance(c, dict)]
    for entry in entries:
        if entry.get("app_id") == app_id and entry.get("kind", ACCESS_TOKEN) == kind:
            return str(entry.get("outcome", "unknown"))
    return str(entries[0].get("outcome", "unknown")) if entries else "unknown"


def default_passive_refresh() -> PassiveRefresh | None:
    """Passive refresh is permitted when the stack told this function which function to ask."""
    env = process_env()
    if env.get(PASSIVE_FUNCTION_ENV, "").strip():
        return LambdaPassiveRefresh()
    if env.get(_RETIRED_ENV, "").strip():
        logger.warning(
            "%s is set but no longer read: consumers now invoke the PassiveRefreshFunction. "
            "Set %s to the stack output PassiveRefreshFunctionName to keep passive refresh.",
            _RETIRED_ENV,
            PASSIVE_FUNCTION_ENV,
        )
    return None
