"""One push in, one answer out: the logic behind ``app.lambda_handler``.

WeChat POSTs every push to the platform's 授权事件接收URL and wants the body ``success``
within 5 seconds; anything else and it tries again. So:

- a push that verifies is stored (:class:`~platform_callback.store.PushStore`) and
  answered ``success``, also when the record already held it or a newer one;
- an authentic push this callback cannot use is answered ``success`` too, so that WeChat
  stops retrying, and stores nothing new: a replay (its nonce was seen; the fenced write is
  repeated, which changes nothing unless the first attempt was lost) or an InfoType the
  callback does not handle;
- every other refusal (unknown AppId, bad signature, stale timestamp, malformed or
  oversized body, wrong method) is a 4xx whose body is the reason code alone, and stores
  nothing: verification comes before any write;
- when the registry secret or DynamoDB fails, a 503 with the reason code: WeChat retries.

Each push logs one line: the InfoType, platform, authorizer and CreateTime of what was
accepted, or the reason code of a refusal. Never the token, key, ticket, code, signature
or any request data.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from aws_lambda_powertools import Logger

from platform_callback.errors import CallbackError
from platform_callback.push import (
    DEFAULT_MAX_SKEW,
    MAX_BODY_BYTES,
    ConfigLookup,
    InMemoryNonceStore,
    NonceStore,
    Push,
    PushRefused,
    Unauthorized,
    UpdateAuthorized,
    VerifyTicket,
    verify_push,
)
from platform_callback.store import PushStore
from platform_callback.telemetry import logger as default_logger

__all__ = ["SUCCESS", "Answer", "PushHandler", "info_type_of"]

_HEADERS: Final = {"Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store"}
# Authentic pushes answered "success" although nothing new is stored: WeChat must stop
# retrying them.
_ANSWERED_SUCCESS: Final = frozenset({"replayed", "unsupported_info_type"})


@dataclass(frozen=True, slots=True)
class Answer:
    """The HTTP answer to one push: a status and a plain-text body (``success`` or a
    reason code)."""

    status: int
    body: str

    def to_response(self) -> dict[str, Any]:
        """A Lambda Function URL (HTTP API payload 2.0) response."""
        return {
            "statusCode": self.status,
            "headers": dict(_HEADERS),
            "body": self.body,
            "isBase64Encoded": False,
        }


SUCCESS: Final = Answer(200, "success")


def info_type_of(push: Push) -> str:
    """WeChat's ``InfoType`` of a push."""
    if isinstance(push, VerifyTicket):
        return "component_verify_ticket"
    if isinstance(push, Unauthorized):
        return "unauthorized"
    if isinstance(push, UpdateAuthorized):
        return "updateauthorized"
    return "authorized"


class PushHandler:
    """Verifies, stores and answers WeChat's pushes (see the module docstring).

    ``configs`` finds a platform's configuration by component appid
    (:meth:`platform_callback.config.ComponentConfigs.lookup`); ``nonces`` remembers the
    pushes accepted; ``store`` writes them; ``clock`` is epoch seconds.
    """

    def __init__(
        self,
        configs: ConfigLookup,
        nonces: NonceStore,
        store: PushStore,
        *,
        clock: Callable[[], float] = time.time,
        log: Logger = default_logger,
        max_skew: float = DEFAULT_MAX_SKEW,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self._configs = configs
        self._nonces = nonces
        self._store = store
        self._clock = clock
        self._log = log
        self._max_skew = max_skew
        self._max_body_bytes = max_body_bytes

    def handle(self, event: Mapping[str, Any]) -> Answer:
        """The answer to one HTTP API v2 / Function URL event."""
        started = time.perf_counter()
        if _method(event) not in (None, "POST"):
            return self._refuse("method_not_allowed", 405, started)
        now = self._clock()
        try:
            push = self._verify(event, self._nonces, now)
        except PushRefused as refused:
            if refused.authentic and refused.reason in _ANSWERED_SUCCESS:
                return self._authentic_but_unused(event, refused, now, started)
            return self._refuse(
                refused.reason, refused.status, started, component_appid=refused.component_appid
            )
        except CallbackError as error:
            return self._fail(error, started)
        return self._save(push, now, started)

    # ------------------------------------------------------------------ outcomes

    def _verify(self, event: Mapping[str, Any], nonces: NonceStore, now: float) -> Push:
        return verify_push(
            event,
            self._configs,
            nonces,
            now,
            max_skew=self._max_skew,
            max_body_bytes=self._max_body_bytes,
        )

    def _save(self, push: Push, now: float, started: float, *, replayed: bool = False) -> Answer:
        try:
            stored = self._store.save(push, now)
        except CallbackError as error:
            return self._fail(error, started)
        fields: dict[str, Any] = {
            "info_type": info_type_of(push),
            "component_appid": push.component_appid,
            "create_time": push.create_time,
            "stored": stored,
            "duration_ms": _elapsed_ms(started),
        }
        if not isinstance(push, VerifyTicket):
            fields["authorizer_appid"] = push.authorizer_appid
        if replayed:
            # A replay stores nothing new: the write is fenced on CreateTime. stored=True
            # means the first attempt's write had been lost after its nonce was taken.
            fields["reason"] = "replayed"
            self._log.info("push replayed: answered success", extra=fields)
        else:
            outcome = "stored" if stored else "already stored or superseded"
            self._log.info(f"push accepted: {fields['info_type']} {outcome}", extra=fields)
        return SUCCESS

    def _authentic_but_unused(
        self, event: Mapping[str, Any], refused: PushRefused, now: float, started: float
    ) -> Answer:
        if refused.reason == "replayed":
            # Its nonce was taken before: by the same push (nothing new to store) or by an
            # attempt whose write was lost. Verifying it again without the nonce store
            # gives the push; the fenced write is a no-op unless that write was lost.
            again: Push | None = None
            try:
                again = self._verify(event, InMemoryNonceStore(), now)
            except (PushRefused, CallbackError):
                again = None
            if again is not None:
                return self._save(again, now, started, replayed=True)
        self._log.info(
            f"push {refused.reason}: answered success, nothing stored",
            extra={
                "reason": refused.reason,
                "component_appid": refused.component_appid,
                "duration_ms": _elapsed_ms(started),
            },
        )
        return SUCCESS

    def _refuse(
        self, reason: str, status: int, started: float, *, component_appid: str | None = None
    ) -> Answer:
        extra: dict[str, Any] = {
            "reason": reason,
            "status": status,
            "duration_ms": _elapsed_ms(started),
        }
        if component_appid is not None:
            extra["component_appid"] = component_appid
        self._log.warning(f"push refused: {reason}", extra=extra)
        return Answer(status, reason)

    def _fail(self, error: CallbackError, started: float) -> Answer:
        self._log.error(
            f"push not processed: {error.reason}: {error}",
            extra={
                "reason": error.reason,
                "status": error.status,
                "duration_ms": _elapsed_ms(started),
            },
        )
        return Answer(error.status, error.reason)


def _method(event: Mapping[str, Any]) -> str | None:
    """The HTTP method of an HTTP API / Function URL event (payload 2.0 or 1.0), if any."""
    context = event.get("requestContext")
    if isinstance(context, Mapping):
        http = context.get("http")
        if isinstance(http, Mapping) and isinstance(http.get("method"), str):
            return str(http["method"]).upper()
    method = event.get("httpMethod")
    return method.upper() if isinstance(method, str) else None


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
