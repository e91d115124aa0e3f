"""Keeping secrets and tokens out of log lines and exception messages."""

from __future__ import annotations

import logging
import re

_SENSITIVE_QUERY = re.compile(r"(secret|corpsecret|access_token|ticket)=[^&\s'\"]*", re.IGNORECASE)

# Loggers that write request or response bodies: botocore's parser logs every DynamoDB
# response (the stored token) at DEBUG, urllib3 logs URLs, httpx logs every URL at INFO
# (WeChat URLs carry the token or the secret).
AWS_WIRE_LOGGERS = ("botocore", "boto3", "urllib3")
HTTP_WIRE_LOGGERS = ("httpx", "httpcore")


def redact(text: str, *values: str) -> str:
    """Mask ``secret=``/``access_token=``-style query values and any of ``values`` in text."""
    text = _SENSITIVE_QUERY.sub(r"\1=***", text)
    for value in values:
        if value:
            text = text.replace(value, "***")
    return text


def quiet_http_loggers() -> None:
    """httpx logs every request URL at INFO, and WeChat URLs carry the token or the secret."""
    for name in HTTP_WIRE_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def quiet_aws_loggers() -> None:
    """botocore logs request and response bodies at DEBUG (a GetItem answer holds the token):
    keep boto3, botocore and urllib3 at WARNING, whatever the root logger's level."""
    for name in AWS_WIRE_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


_MAX_DETAIL = 300


def aws_error_detail(exc: BaseException) -> str:
    """What may be said about a boto3/botocore error without quoting a payload.

    AWS error responses (``ClientError``: code and message) and connection failures (the
    endpoint) are safe and say what to fix. Anything else (a parser error quotes the raw
    response body; an unexpected error could quote anything) is named by its class only.
    """
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error") or {}
        code = str(error.get("Code") or type(exc).__name__)
        message = str(error.get("Message") or "")
        return _bounded(f"{code}: {message}" if message else code)
    if _is_connection_error(exc):
        return _bounded(f"{type(exc).__name__}: {exc}")
    return f"{type(exc).__name__} (details withheld: they may quote the request or the answer)"


def _is_connection_error(exc: BaseException) -> bool:
    try:
        from botocore.exceptions import (  # noqa: PLC0415 - only once boto3 is in use
            ConnectionClosedError,
            ConnectTimeoutError,
            EndpointConnectionError,
            ReadTimeoutError,
        )
    except ImportError:  # pragma: no cover - botocore ships with every Lambda runtime
        return False
    connection = (
        EndpointConnectionError,
        ConnectTimeoutError,
        ReadTimeoutError,
        ConnectionClosedError,
    )
    return isinstance(exc, connection)


def _bounded(text: str) -> str:
    text = redact(text)
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 1] + "…"
