"""Tokens, the pools that hold them, and WeChat's rules for accepting them.

Pure data and pure functions: the simulator's lock guards every mutation.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "ERRMSG",
    "HashedSecret",
    "Pool",
    "Token",
    "TokenKind",
    "TokenPool",
    "fingerprint",
    "token_status",
    "wechat_day",
]

Pool = Literal["classic", "stable", "wecom"]
# A third-party platform's own token, and the tokens it holds for its authorizers.
TokenKind = Literal["classic", "stable", "wecom", "component", "authorizer"]

_DAY = 86_400
_UTC8 = 8 * 3600

OK = 0
NOT_LATEST = 40001
INVALID = 40014
EXPIRED = 42001
NEEDS_COMPONENT_TOKEN = 61014
NEEDS_BIZ_TOKEN = 61015

ERRMSG = {
    OK: "ok",
    NOT_LATEST: "invalid credential, access_token is invalid or not latest",
    INVALID: "invalid access_token",
    EXPIRED: "access_token expired",
    NEEDS_COMPONENT_TOKEN: "must use component token for component api",
    NEEDS_BIZ_TOKEN: "must use biz account token for not component api",
}


def wechat_day(t: float) -> int:
    """WeChat's day number for epoch time ``t``: days start at midnight UTC+8."""
    return int((t + _UTC8) // _DAY)


def fingerprint(value: str) -> str:
    """A short, stable, non-reversible name for a token or ticket (for logs and stats)."""
    return hashlib.sha256(value.encode()).hexdigest()[:12]


@dataclass(slots=True, eq=False)
class Token:
    """One issued access_token and what happened to it since."""

    value: str
    fp: str
    pool: TokenKind
    owner: str  # appid, or corpid for WeCom; the component or authorizer appid on a platform
    agentid: str | None
    issued_at: float
    expires_at: float
    retired_at: float | None = None  # a newer token replaced it: its expiry became this
    revoked: bool = False  # invalid at once: forced stable refresh, WeCom early invalidation
    evicted: bool = False  # pushed out by a third fetch
    component: str | None = None  # an authorizer token: the platform that holds it


@dataclass(slots=True)
class TokenPool:
    """One credential's live tokens (oldest first) and its counters."""

    live: list[Token] = field(default_factory=list)
    issued: int = 0
    foreign: int = 0
    day: int = -1
    day_calls: int = 0
    minute: int = -1
    minute_calls: int = 0
    force_day: int = -1
    force_count: int = 0
    last_force_at: float | None = None
    force_rejected: int = 0
    invalidated: int = 0

    def current(self) -> Token | None:
        """The newest live token."""
        return self.live[-1] if self.live else None

    def roll(self, now: float) -> None:
        """Start new day / minute counters when WeChat's day or the minute changed."""
        day = wechat_day(now)
        if day != self.day:
            self.day, self.day_calls = day, 0
        if day != self.force_day:
            self.force_day, self.force_count = day, 0
        minute = int(now // 60)
        if minute != self.minute:
            self.minute, self.minute_calls = minute, 0


@dataclass(slots=True)
class HashedSecret:
    """A salted SHA-256 of a secret: the simulator never keeps one in plain text."""

    salt: bytes
    digest: bytes

    @classmethod
    def of(cls, secret: str) -> HashedSecret:
        """Hash ``secret`` with a fresh random salt."""
        salt = os.urandom(16)
        return cls(salt, hashlib.sha256(salt + secret.encode()).digest())

    def matches(self, secret: str) -> bool:
        """Constant-time comparison with a candidate secret."""
        candidate = hashlib.sha256(self.salt + secret.encode()).digest()
        return hmac.compare_digest(self.digest, candidate)


def token_status(token: Token, server_now: float, grace_seconds: float) -> int:
    """The errcode a WeChat server whose clock reads ``server_now`` gives ``token``.

    Classic and stable tokens: evicted or revoked -> 40001; the current token
    past its lifetime -> 42001; a replaced token is accepted until its
    replacement time plus the grace (unless it had already expired on its
    own), then 40001. WeCom has no 40001 for tokens: invalidated -> 40014,
    expired -> 42001.
    """
    if token.pool == "wecom":
        if token.revoked:
            return INVALID
        return EXPIRED if server_now >= token.expires_at else OK
    if token.evicted or token.revoked:
        return NOT_LATEST
    if token.retired_at is None:
        return EXPIRED if server_now >= token.expires_at else OK
    if token.expires_at <= token.retired_at:
        deadline = token.expires_at
    else:
        deadline = token.retired_at + grace_seconds
    return NOT_LATEST if server_now >= deadline else OK
