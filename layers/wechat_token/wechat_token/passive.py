"""Asking the refresher to replace a token WeChat rejected (passive refresh)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .errors import ConfigurationError, TokenError
from .record import ACCESS_TOKEN

if TYPE_CHECKING:
    from mypy_boto3_lambda import LambdaClient

REFRESHER_ENV = "REFRESHER_FUNCTION_NAME"

# (app_id, kind, stale fingerprint, errcode) -> the refresher's outcome for that credential
PassiveRefresh = Callable[[str, str, str, int | None], str]


class PassiveRefreshError(TokenError):
    """The refresher could not be asked, or it failed to replace the token."""


class LambdaPassiveRefresh:
    """Invokes the RefresherFunction synchronously with ``{app_id, kind, stale_token, errcode}``.

    Only the token's fingerprint travels: invocation payloads can end up in logs.
    """

    def __init__(self, function_name: str | None = None, *, client: LambdaClient | None = None):
        self._function_name = function_name
        self._client = client

    @property
    def function_name(self) -> str:
        if self._function_name is None:
            name = os.environ.get(REFRESHER_ENV, "").strip()
            if not name:
                raise ConfigurationError(
                    f"{REFRESHER_ENV} is not set: set it to the stack output "
                    "RefresherFunctionName to let this consumer request a passive refresh."
                )
            self._function_name = name
        return self._function_name

    def __call__(
        self, app_id: str, kind: str = ACCESS_TOKEN, stale: str = "", errcode: int | None = None
    ) -> str:
        if self._client is None:
            import boto3  # noqa: PLC0415
            from botocore.config import Config  # noqa: PLC0415

            self._client = boto3.client(
                "lambda",
                config=Config(read_timeout=70, retries={"mode": "standard", "max_attempts": 2}),
            )
        payload = {"app_id": app_id, "kind": kind, "stale_token": stale, "errcode": errcode}
        try:
            response = self._client.invoke(
                FunctionName=self.function_name,
                InvocationType="RequestResponse",
                Payload=json.dumps(payload).encode(),
            )
        except Exception as exc:
            raise PassiveRefreshError(
                f"Could not invoke the refresher {self.function_name!r} for a passive refresh of "
                f"{app_id}/{kind}: {type(exc).__name__}: {exc}. Check lambda:InvokeFunction in "
                "the consumer's policy (attach the stack's ConsumerPolicy)."
            ) from exc
        body: Any = json.loads(response["Payload"].read() or b"null")
        if response.get("FunctionError"):
            message = body.get("errorMessage", "") if isinstance(body, dict) else ""
            raise PassiveRefreshError(
                f"The refresher failed to replace {app_id}/{kind}: {message[:300]}"
            )
        return _outcome(body)


def default_passive_refresh() -> PassiveRefresh | None:
    """Passive refresh is permitted when the stack told this function which refresher to ask."""
    return LambdaPassiveRefresh() if os.environ.get(REFRESHER_ENV, "").strip() else None


def _outcome(summary: Any) -> str:
    try:
        return str(summary["credentials"][0]["outcome"])
    except (KeyError, IndexError, TypeError):
        return "unknown"
