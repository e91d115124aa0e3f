"""Keeping secrets and tokens out of log lines and exception messages."""

from __future__ import annotations

import logging
import re

_SENSITIVE_QUERY = re.compile(r"(secret|corpsecret|access_token|ticket)=[^&\s'\"]*", re.IGNORECASE)


def redact(text: str, *values: str) -> str:
    """Mask ``secret=``/``access_token=``-style query values and any of ``values`` in text."""
    text = _SENSITIVE_QUERY.sub(r"\1=***", text)
    for value in values:
        if value:
            text = text.replace(value, "***")
    return text


def quiet_http_loggers() -> None:
    """httpx logs every request URL at INFO, and WeChat URLs carry the token or the secret."""
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
