"""HTTP answers as the simulator produces them (no sockets involved)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

__all__ = ["HTML", "JSON", "SimResponse", "html_page", "json_object", "json_response"]

# WeChat really labels its JSON this way.
JSON = {"Content-Type": "application/json; encoding=utf-8"}
HTML = {"Content-Type": "text/html; charset=utf-8"}


@dataclass(frozen=True)
class SimResponse:
    """An HTTP answer. ``timed_out`` marks an injected timeout."""

    status: int
    headers: dict[str, str]
    body: bytes
    timed_out: bool = False

    def json(self) -> Any:
        """The body parsed as JSON (raises on a garbled body, as a client would)."""
        return json.loads(self.body)


def json_response(payload: Any, status: int = 200) -> SimResponse:
    """A JSON answer with WeChat's content type."""
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    return SimResponse(status, dict(JSON), body)


def json_object(body: bytes) -> dict[str, Any] | None:
    """``body`` parsed as a JSON object, or None if it is not one."""
    try:
        data = json.loads(body or b"null")
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def html_page(status: int, reason: str | None = None) -> SimResponse:
    """The HTML error page a gateway in front of WeChat would answer with."""
    if reason is None:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Error"
    title = f"{status} {reason}"
    body = (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    ).encode()
    return SimResponse(status, dict(HTML), body)
