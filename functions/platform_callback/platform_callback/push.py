"""Verify and parse one third-party-platform push (授权事件接收URL).

WeChat POSTs to the platform's authorization-event URL every 10 minutes (the
``component_verify_ticket``) and whenever a merchant authorizes, updates or revokes an
authorization. :func:`verify_push` takes one HTTP API (payload v2) event and returns a
typed :data:`Push` or raises :class:`PushRefused`, in this order:

1. size: a body over ``max_body_bytes`` (64 KiB) is refused before it is parsed;
2. query: ``timestamp``, ``nonce``, ``msg_signature``, ``encrypt_type=aes``;
3. the outer XML, parsed with ``defusedxml`` (no DTD, no entities, no external
   references): one ``<Encrypt>`` and the platform's ``<AppId>`` (or ``<ToUserName>``);
4. the platform's configuration, looked up by that AppId (several platforms may share
   one URL);
5. freshness: the timestamp within ``max_skew`` seconds of ``now``;
6. the signature (constant-time), then decryption (the AppId inside must match);
7. the decrypted XML (``defusedxml`` again) into a :data:`Push`; its ``<AppId>`` must
   be the platform's;
8. replay: the (AppId, nonce, timestamp, msg_signature) must be new to the
   :class:`NonceStore`. Only a push that passed every other check is remembered.

Refusals carry a stable ``reason`` code, an HTTP ``status`` and ``authentic``: True
when the signature verified (WeChat sent it), so that a handler may still answer
``success`` to an authentic push it cannot use (a replay, an InfoType it does not
handle) and WeChat stops retrying. No refusal, push repr or log-safe field contains
the token, the EncodingAESKey, a ticket, an authorization code or request data.
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol, get_args
from urllib.parse import parse_qsl
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as SafeElementTree
from defusedxml import DefusedXmlException

from platform_callback.wxcrypt import (
    AppIdMismatch,
    BadCiphertext,
    BadSignature,
    MessageCrypt,
    is_signature_format,
)

__all__ = [
    "DEFAULT_MAX_SKEW",
    "MAX_BODY_BYTES",
    "REASONS",
    "AuthorizationEvent",
    "Authorized",
    "ComponentConfig",
    "ConfigLookup",
    "InMemoryNonceStore",
    "NonceStore",
    "Push",
    "PushRefused",
    "Reason",
    "Unauthorized",
    "UpdateAuthorized",
    "VerifyTicket",
    "parse_push_xml",
    "verify_push",
]

MAX_BODY_BYTES: Final = 64 * 1024
DEFAULT_MAX_SKEW: Final = 300.0
_MAX_FIELD: Final = 512  # longest value accepted in a decrypted push field
_NONCE: Final = re.compile(r"[!-~]{1,128}")  # visible ASCII
_TIMESTAMP: Final = re.compile(r"[0-9]{1,12}")
_INTEGER: Final = re.compile(r"-?[0-9]{1,15}")

Reason = Literal[
    "too_large",
    "missing_parameter",
    "bad_parameter",
    "malformed_xml",
    "unknown_app_id",
    "stale_timestamp",
    "bad_signature",
    "bad_ciphertext",
    "app_id_mismatch",
    "malformed_push",
    "unsupported_info_type",
    "replayed",
]
REASONS: Final[tuple[str, ...]] = get_args(Reason)

_STATUS: Final[dict[str, int]] = {
    "too_large": 413,
    "unknown_app_id": 403,
    "stale_timestamp": 403,
    "bad_signature": 403,
    "app_id_mismatch": 403,
    "replayed": 409,
}


class PushRefused(Exception):
    """A push that is not accepted.

    ``reason`` is one of :data:`REASONS`; ``status`` an HTTP status for the answer;
    ``authentic`` says whether the signature had verified; ``component_appid`` is the
    configured platform the push was addressed to, once known. The message is a fixed
    sentence per cause: it never quotes the request.
    """

    def __init__(
        self,
        reason: Reason,
        message: str,
        *,
        component_appid: str | None = None,
        authentic: bool = False,
    ) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason: Reason = reason
        self.message = message
        self.component_appid = component_appid
        self.authentic = authentic

    @property
    def status(self) -> int:
        """The HTTP status to answer with (400 unless the reason calls for another)."""
        return _STATUS.get(self.reason, 400)

    def __repr__(self) -> str:
        return (
            f"PushRefused(reason={self.reason!r}, component_appid={self.component_appid!r}, "
            f"authentic={self.authentic!r})"
        )


# ------------------------------------------------------------------ typed pushes


@dataclass(frozen=True, slots=True)
class VerifyTicket:
    """``InfoType=component_verify_ticket``: a new ticket (valid 12 h). The repr hides it."""

    component_appid: str
    create_time: int
    ticket: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class AuthorizationEvent:
    """A merchant granted (or changed) an authorization: exchange the code at once
    with ``api_query_auth``. The repr hides the code."""

    component_appid: str
    authorizer_appid: str
    authorization_code: str = field(repr=False)
    code_expires_at: int
    create_time: int


@dataclass(frozen=True, slots=True)
class Authorized(AuthorizationEvent):
    """``InfoType=authorized``: a new authorization."""


@dataclass(frozen=True, slots=True)
class UpdateAuthorized(AuthorizationEvent):
    """``InfoType=updateauthorized``: the merchant changed the permissions granted."""


@dataclass(frozen=True, slots=True)
class Unauthorized:
    """``InfoType=unauthorized``: stop refreshing this authorizer and drop its tokens."""

    component_appid: str
    authorizer_appid: str
    create_time: int


Push = VerifyTicket | Authorized | UpdateAuthorized | Unauthorized


# ------------------------------------------------------------------ configuration


class ComponentConfig:
    """One platform's push credentials: its component appid, the message-check Token
    and the EncodingAESKey (the key is validated here). ``repr()`` shows the appid only."""

    __slots__ = ("component_appid", "crypt")

    def __init__(self, component_appid: str, token: str, encoding_aes_key: str) -> None:
        self.component_appid = component_appid
        self.crypt = MessageCrypt(token, encoding_aes_key, component_appid)

    def __repr__(self) -> str:
        return f"ComponentConfig(component_appid={self.component_appid!r})"

    def __reduce__(self) -> str:
        raise TypeError("ComponentConfig holds secrets and cannot be pickled")


ConfigLookup = Callable[[str], ComponentConfig | None]
"""The configuration of a platform by component appid, or None (e.g. ``dict.get``)."""


class NonceStore(Protocol):
    """Remembers pushes already accepted (replay protection)."""

    def remember(
        self, component_appid: str, nonce: str, timestamp: int, msg_signature: str
    ) -> bool:
        """Record one push; False when it was already recorded (a replay)."""
        ...


class InMemoryNonceStore:
    """A :class:`NonceStore` for one process (tests, or a single warm container).

    An entry is kept until ``retention_seconds`` after the push's timestamp by
    ``clock``; keep ``retention_seconds`` at least :func:`verify_push`'s ``max_skew``
    so that a replay is caught for as long as its timestamp would be accepted. When
    ``max_entries`` are held the oldest are forgotten. Thread-safe.
    """

    def __init__(
        self,
        retention_seconds: float = 900.0,
        *,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if retention_seconds <= 0 or max_entries < 1:
            raise ValueError("retention_seconds and max_entries must be positive")
        self._retention = float(retention_seconds)
        self._max = max_entries
        self._clock = clock
        self._seen: OrderedDict[tuple[str, str, int, str], float] = OrderedDict()
        self._lock = threading.Lock()

    def remember(
        self, component_appid: str, nonce: str, timestamp: int, msg_signature: str
    ) -> bool:
        """Record one push; False when it was already recorded."""
        key = (component_appid, nonce, int(timestamp), msg_signature.lower())
        with self._lock:
            self._prune(self._clock())
            if key in self._seen:
                return False
            self._seen[key] = int(timestamp) + self._retention
            while len(self._seen) > self._max:
                self._seen.popitem(last=False)
            return True

    def __len__(self) -> int:
        with self._lock:
            return len(self._seen)

    def _prune(self, now: float) -> None:
        # Entries arrive nearly in timestamp order (an accepted timestamp is within the
        # skew of the clock), so expired ones are at the front; one that arrived out of
        # order is dropped a little late, and max_entries bounds the total anyway.
        while self._seen:
            key, until = next(iter(self._seen.items()))
            if until > now:
                break
            del self._seen[key]


# ------------------------------------------------------------------ verification


def verify_push(
    event: Mapping[str, Any],
    configs: ConfigLookup,
    nonces: NonceStore,
    now: float,
    *,
    max_skew: float = DEFAULT_MAX_SKEW,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> Push:
    """Verify one HTTP API v2 event carrying a push; return it typed or raise
    :class:`PushRefused`. Pure apart from ``nonces.remember`` (called last, only for a
    push that passed every other check)."""
    body = _body(event, max_body_bytes)
    timestamp, nonce, msg_signature = _query(event)
    outer = _parse_xml(body, "malformed_xml", "the body is not a WeChat push XML")
    encrypt = _single_text(outer, "Encrypt", "malformed_xml")
    app_id = _outer_app_id(outer)
    config = configs(app_id)
    if config is None:
        raise PushRefused("unknown_app_id", "the push names an unknown AppId")
    appid = config.component_appid
    if appid != app_id:
        raise PushRefused(
            "app_id_mismatch",
            "the configuration found is another platform's",
            component_appid=appid,
        )
    if abs(now - timestamp) > max_skew:
        raise PushRefused(
            "stale_timestamp", "the timestamp is too far from the clock", component_appid=appid
        )
    message = _decrypt(config, msg_signature, timestamp, nonce, encrypt)
    push = parse_push_xml(message, appid)
    if not nonces.remember(appid, nonce, timestamp, msg_signature):
        raise PushRefused(
            "replayed", "this push was already accepted", component_appid=appid, authentic=True
        )
    return push


def parse_push_xml(message: str, component_appid: str) -> Push:
    """A decrypted push as a typed :data:`Push` (its ``AppId`` must be
    ``component_appid``); :class:`PushRefused` marked authentic otherwise."""
    root = _parse_xml(
        message.encode("utf-8"),
        "malformed_push",
        "the decrypted push is not XML",
        component_appid=component_appid,
        authentic=True,
    )

    def text(name: str) -> str:
        return _single_text(
            root, name, "malformed_push", component_appid=component_appid, authentic=True
        )

    def integer(name: str) -> int:
        value = text(name)
        if not _INTEGER.fullmatch(value):
            raise PushRefused(
                "malformed_push",
                f"<{name}> is not an integer",
                component_appid=component_appid,
                authentic=True,
            )
        return int(value)

    if text("AppId") != component_appid:
        raise PushRefused(
            "app_id_mismatch",
            "the decrypted push names another AppId",
            component_appid=component_appid,
            authentic=True,
        )
    info_type = text("InfoType")
    create_time = integer("CreateTime")
    if info_type == "component_verify_ticket":
        return VerifyTicket(component_appid, create_time, text("ComponentVerifyTicket"))
    if info_type in ("authorized", "updateauthorized"):
        kind = Authorized if info_type == "authorized" else UpdateAuthorized
        return kind(
            component_appid,
            text("AuthorizerAppid"),
            text("AuthorizationCode"),
            integer("AuthorizationCodeExpiredTime"),
            create_time,
        )
    if info_type == "unauthorized":
        return Unauthorized(component_appid, text("AuthorizerAppid"), create_time)
    raise PushRefused(
        "unsupported_info_type",
        "the push has an InfoType this handler does not process",
        component_appid=component_appid,
        authentic=True,
    )


# ------------------------------------------------------------------ steps


def _body(event: Mapping[str, Any], limit: int) -> bytes:
    raw = event.get("body")
    if raw is None or raw == "":
        raise PushRefused("missing_parameter", "the request has no body")
    if not isinstance(raw, str):
        raise PushRefused("bad_parameter", "the body is not text")
    encoded = event.get("isBase64Encoded") is True
    # A str of n characters is at least n UTF-8 bytes; Base64 is 4 characters per 3 bytes.
    if len(raw) > (4 * ((limit + 2) // 3) if encoded else limit):
        raise PushRefused("too_large", "the body is larger than the limit")
    if encoded:
        data = _b64(raw)
        if data is None:
            raise PushRefused("malformed_xml", "the body is not valid Base64")
    else:
        data = raw.encode("utf-8", "surrogatepass")
    if len(data) > limit:
        raise PushRefused("too_large", "the body is larger than the limit")
    return data


def _query(event: Mapping[str, Any]) -> tuple[int, str, str]:
    params = _query_params(event)

    def required(name: str) -> str:
        value = params.get(name)
        if not isinstance(value, str) or not value:
            raise PushRefused("missing_parameter", f"the query has no {name}")
        return value

    encrypt_type = required("encrypt_type")
    timestamp = required("timestamp")
    nonce = required("nonce")
    msg_signature = required("msg_signature")
    if encrypt_type != "aes":
        raise PushRefused("bad_parameter", "encrypt_type must be aes")
    if not _TIMESTAMP.fullmatch(timestamp):
        raise PushRefused("bad_parameter", "the timestamp is not a number of seconds")
    if not _NONCE.fullmatch(nonce):
        raise PushRefused("bad_parameter", "the nonce is not 1-128 visible ASCII characters")
    if not is_signature_format(msg_signature):
        raise PushRefused("bad_parameter", "the msg_signature is not 40 hex digits")
    return int(timestamp), nonce, msg_signature.lower()


def _query_params(event: Mapping[str, Any]) -> Mapping[str, Any]:
    params = event.get("queryStringParameters")
    if isinstance(params, Mapping):
        return params
    raw = event.get("rawQueryString")
    if isinstance(raw, str) and raw:
        parsed: dict[str, str] = {}
        for key, value in parse_qsl(raw, keep_blank_values=True):
            parsed.setdefault(key, value)
        return parsed
    return {}


def _parse_xml(
    data: bytes,
    reason: Reason,
    message: str,
    *,
    component_appid: str | None = None,
    authentic: bool = False,
) -> Element:
    root: Element | None
    try:
        root = SafeElementTree.fromstring(
            data, forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
    except (ParseError, DefusedXmlException, ValueError, UnicodeError):
        root = None
    # Raised here, not in the except block: no chained exception quotes the input.
    if root is None or root.tag != "xml":
        raise PushRefused(
            reason, message, component_appid=component_appid, authentic=authentic
        ) from None
    return root


def _single_text(
    root: Element,
    name: str,
    reason: Reason,
    *,
    component_appid: str | None = None,
    authentic: bool = False,
) -> str:
    found = root.findall(name)
    value = (found[0].text or "").strip() if len(found) == 1 else ""
    if not value or len(found[0]) or (reason == "malformed_push" and len(value) > _MAX_FIELD):
        raise PushRefused(
            reason,
            f"<{name}> must appear once, with a value",
            component_appid=component_appid,
            authentic=authentic,
        )
    return value


def _outer_app_id(root: Element) -> str:
    names = [n for n in ("AppId", "ToUserName") if root.find(n) is not None]
    if not names:
        raise PushRefused("malformed_xml", "the push names no AppId")
    values = {_single_text(root, n, "malformed_xml") for n in names}
    if len(values) != 1:
        raise PushRefused("app_id_mismatch", "<AppId> and <ToUserName> disagree")
    return values.pop()


def _decrypt(
    config: ComponentConfig, msg_signature: str, timestamp: int, nonce: str, encrypt: str
) -> str:
    # Failures are noted inside the except blocks and raised after them, so that the
    # refusal's __context__ is empty.
    appid = config.component_appid
    verified = True
    try:
        config.crypt.verify(msg_signature, timestamp, nonce, encrypt)
    except BadSignature:
        verified = False
    if not verified:
        raise PushRefused(
            "bad_signature", "the msg_signature does not match", component_appid=appid
        ) from None
    failure: tuple[Reason, str] = ("bad_ciphertext", "the Encrypt value does not decrypt")
    try:
        return config.crypt.decrypt(encrypt)[0]
    except BadCiphertext:
        pass
    except AppIdMismatch:
        failure = ("app_id_mismatch", "the push was encrypted for another AppId")
    raise PushRefused(*failure, component_appid=appid, authentic=True) from None


def _b64(value: str) -> bytes | None:
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError):
        return None
