"""``refresh``: invoke the refresher synchronously with a forced refresh of one credential.

The operators' entry point (``lambda_handler``) takes ``{"app_id", "kind", "force": true}``;
it refuses a forced refresh without an app, so this module never sends one. The answer is
the refresher's run summary, of which only the fields below are shown.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Final

from wechat_token.redaction import redact

from .errors import AWSAccessError, UsageError

if TYPE_CHECKING:
    from mypy_boto3_lambda import LambdaClient

REFRESHER_ENV: Final = "REFRESHER_FUNCTION_NAME"

# The summary fields `refresh` shows; anything else a summary might carry is dropped.
SUMMARY_FIELDS: Final = (
    "app_id",
    "kind",
    "outcome",
    "version",
    "fingerprint",
    "expires_at",
    "wechat_calls",
    "calls_today",
    "budget",
    "foreign_rotation",
    "error",
    "detail",
)

# The outcomes the refresher counts as failures (its Status.failed): the credential needed
# a refresh and did not get one.
FAILED: Final = frozenset({"failed", "configuration_hold", "deadline"})


def force_event(app_id: str, kind: str) -> dict[str, Any]:
    """The operator event of a forced refresh; an app is required."""
    if not app_id.strip():
        raise UsageError("refresh needs an app_id: the refresher forces one credential at a time.")
    return {"app_id": app_id.strip(), "kind": kind, "force": True}


def authorize_event(component: str, code: str) -> dict[str, Any]:
    """The operator event exchanging an authorization code of a component."""
    if not component.strip():
        raise UsageError("authorize needs the component appid (the platform's registry key).")
    if not code.strip():
        raise UsageError("no authorization code on standard input.")
    return {"app_id": component.strip(), "authorization_code": code.strip()}


def invoke_refresher(
    client: LambdaClient, function_name: str, app_id: str, kind: str
) -> tuple[Any, str | None]:
    """Invoke the refresher synchronously with a forced refresh; ``(body, FunctionError)``."""
    return invoke_with(client, function_name, force_event(app_id, kind))


def invoke_with(
    client: LambdaClient, function_name: str, payload: dict[str, Any]
) -> tuple[Any, str | None]:
    """Invoke the refresher synchronously with ``payload``; ``(body, FunctionError)``."""
    try:
        response = client.invoke(
            FunctionName=function_name,
            InvocationType="RequestResponse",
            Payload=json.dumps(payload).encode(),
        )
        raw = response["Payload"].read()
    except Exception as exc:
        raise AWSAccessError(
            f"Could not invoke the refresher {function_name!r}: {type(exc).__name__}: {exc}. "
            f"Check the function name (--function or {REFRESHER_ENV}; the stack output "
            "RefresherFunctionName), the region, and lambda:InvokeFunction in your policy."
        ) from exc
    try:
        body: Any = json.loads(raw or b"null")
    except ValueError:
        body = {"errorMessage": "the refresher's answer is not JSON"}
    return body, response.get("FunctionError")


def summary_entries(body: Any) -> list[dict[str, Any]]:
    """The summary's credential entries, restricted to the fields this command shows."""
    entries = body.get("credentials") if isinstance(body, dict) else None
    if not isinstance(entries, list):
        return []
    return [
        {key: entry.get(key) for key in SUMMARY_FIELDS}
        for entry in entries
        if isinstance(entry, dict)
    ]


def function_error_message(body: Any, kind: str) -> str:
    """``errorType: errorMessage`` of a failed invocation (no stack trace), redacted."""
    if isinstance(body, dict):
        error_type = str(body.get("errorType") or kind)
        message = str(body.get("errorMessage") or "no message")
    else:
        error_type, message = kind, "no message"
    return redact(f"{error_type}: {message}")


def failed(entries: list[dict[str, Any]], function_error: str | None) -> bool:
    """The refresher raised, or left a credential unrefreshed that needed it."""
    return function_error is not None or any(e.get("outcome") in FAILED for e in entries)
