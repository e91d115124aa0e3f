"""``wechat-token``: the operators' command line.

    wechat-token status  [--table T] [--app APP] [--budget N] [--json] [--color WHEN]
    wechat-token refresh APP [--kind KIND] [--function NAME] [--json] [--color WHEN]

``status`` shows every credential in the token table (one paginated, strongly consistent
Scan: needs ``dynamodb:Scan``); ``refresh`` invokes the refresher synchronously with
``{"app_id", "kind", "force": true}`` (needs ``lambda:InvokeFunction``).

Standard library only, boto3 imported when a command runs; ``wechat_token`` itself never
imports this module. Output holds fingerprints, never a token or a secret: the scan does
not even read the previous token, and error texts pass through ``redact``.

Exit codes: 0 healthy, 1 a credential needs attention (or the refresh failed), 2 the
check could not be made (usage, configuration, AWS access).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, TextIO

from .errors import ConfigurationError, TokenError, TokenStoreError
from .passive import REFRESHER_ENV
from .record import ACCESS_TOKEN, PK, CredentialRecord, iso, wechat_day
from .redaction import redact
from .store import TABLE_ENV, default_dynamodb_client

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_lambda import LambdaClient

PROG = "wechat-token"

EXIT_OK = 0
EXIT_UNHEALTHY = 1
EXIT_USAGE = 2

BUDGET_ENV = "DAILY_CALL_BUDGET"
DEFAULT_BUDGET = 1000  # the refresher's default DAILY_CALL_BUDGET
EXPIRY_WARN_SECONDS = 30 * 60
BUDGET_WARN_FRACTION = 0.8
SHORT_MESSAGE_CHARS = 40

# Health levels, per credential.
OK = "ok"
WARN = "warn"
ERROR = "error"

# Never fetched by the status scan: only the current value is needed (for its fingerprint).
_NOT_READ = frozenset({"previous_value"})

# Longer than the refresher's 300 s timeout; never retried, as a retry would force again.
_INVOKE_READ_TIMEOUT = 310

# The summary fields `refresh` shows; anything else a summary might carry is dropped.
_SUMMARY_FIELDS = (
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

_REFUSED = re.compile(r"WeChat \S+ refused app '[^']*' with -?\d+ \((.*?)\): ")

_RED = "31"
_YELLOW = "33"
_GREEN = "32"


class UsageError(TokenError):
    """The command cannot run as given (missing setting, bad value, no AWS access)."""


# --- health ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Health:
    """How a credential stands: ``problems`` make the command exit 1, ``warnings`` do not."""

    level: str
    problems: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


def has_current_error(record: CredentialRecord) -> bool:
    """True if the recorded error is newer than the last success (or nothing ever succeeded)."""
    if record.last_error_code is None:
        return False
    if record.last_success_at is None or record.last_error_at is None:
        return True
    return record.last_error_at > record.last_success_at


def classify(record: CredentialRecord, now: float, budget: int) -> Health:
    """The credential's health at ``now``.

    Problems: ``missing_value`` (no usable value stored), ``expired``, ``last_error`` (newer
    than the last success). Warnings: ``expires_soon`` (under 30 min left), ``budget``
    (more than 80 % of the daily call budget used in WeChat's day).
    """
    problems: list[str] = []
    warnings: list[str] = []
    if not record.has_value:
        problems.append("missing_value")
    elif not record.is_valid(now):
        problems.append("expired")
    elif record.remaining(now) < EXPIRY_WARN_SECONDS:
        warnings.append("expires_soon")
    if has_current_error(record):
        problems.append("last_error")
    if record.calls_today(now) > BUDGET_WARN_FRACTION * budget:
        warnings.append("budget")
    level = ERROR if problems else WARN if warnings else OK
    return Health(level, tuple(problems), tuple(warnings))


# --- human times ----------------------------------------------------------------------------


def human_duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``1 h 55 min``, ``2 d 3 h`` (rounded down; sign ignored)."""
    total = int(abs(seconds))
    if total < 60:
        return f"{total} s"
    minutes, _ = divmod(total, 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def _ago(ts: float | None, now: float) -> str:
    return "never" if ts is None else f"{human_duration(max(0.0, now - ts))} ago"


def _clean(message: str | None, *secrets: str | None) -> str:
    """One line, anything token-like masked (the refresher never stores any: belt and braces)."""
    return redact(" ".join((message or "").split()), *(s for s in secrets if s))


def _short(message: str | None, *secrets: str | None) -> str:
    text = _clean(message, *secrets)
    # The refresher's "WeChat <path> refused app '<id>' with <code> (<errmsg>): <advice>":
    # in a table cell, WeChat's own errmsg says the most in the fewest characters.
    match = _REFUSED.match(text)
    if match:
        text = match.group(1)
    if len(text) > SHORT_MESSAGE_CHARS:
        text = text[: SHORT_MESSAGE_CHARS - 3].rstrip() + "..."
    return text


# --- reading the table ----------------------------------------------------------------------


def scan_records(
    client: DynamoDBClient, table: str, app_id: str | None = None
) -> list[CredentialRecord]:
    """Every credential in the table (or one app's), sorted; paginated, strongly consistent."""
    from boto3.dynamodb.types import TypeDeserializer  # noqa: PLC0415

    deserializer = TypeDeserializer()
    wanted = [f.name for f in fields(CredentialRecord) if f.name not in _NOT_READ]
    # Placeholders for every name: some (e.g. "source") are DynamoDB reserved words.
    names = {f"#f{i}": name for i, name in enumerate(wanted)}
    request: dict[str, Any] = {
        "TableName": table,
        "ConsistentRead": True,
        "ProjectionExpression": ", ".join(names),
        "ExpressionAttributeNames": names,
    }
    if app_id is not None:
        request["FilterExpression"] = f"#f{wanted.index(PK)} = :app"
        request["ExpressionAttributeValues"] = {":app": {"S": app_id}}
    records: list[CredentialRecord] = []
    try:
        while True:
            page = client.scan(**request)
            for item in page.get("Items", []):
                values = {key: deserializer.deserialize(value) for key, value in item.items()}
                records.append(CredentialRecord.from_item(values))
            start = page.get("LastEvaluatedKey")
            if not start:
                break
            request["ExclusiveStartKey"] = start
    except Exception as exc:
        raise TokenStoreError(
            f"Could not scan DynamoDB table '{table}': {type(exc).__name__}: {exc}. Check the "
            "table name (--table or TOKEN_TABLE_NAME; the stack output TokenTableName), the "
            "region (AWS_REGION) and that your credentials allow dynamodb:Scan on the table."
        ) from exc
    return sorted(records, key=lambda r: (r.app_id, r.kind))


# --- status ---------------------------------------------------------------------------------


def _iso(ts: float | None) -> str | None:
    return None if ts is None else iso(ts)


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _live_lease(record: CredentialRecord, now: float) -> bool:
    return record.lease_until is not None and record.lease_until > now


def credential_json(record: CredentialRecord, now: float, budget: int) -> dict[str, Any]:
    """One credential for ``status --json``: ISO times and seconds, never a value."""
    health = classify(record, now, budget)
    calls = record.calls_today(now)
    last_error = None
    if record.last_error_code is not None:
        last_error = {
            "code": record.last_error_code,
            "message": redact(record.last_error_message or "", record.value or ""),
            "at": _iso(record.last_error_at),
            "current": has_current_error(record),
        }
    lease = None
    if _live_lease(record, now):
        assert record.lease_until is not None
        lease = {
            "owner": record.lease_owner,
            "until": iso(record.lease_until),
            "remaining_seconds": _seconds(record.lease_until - now),
        }
    return {
        "app_id": record.app_id,
        "kind": record.kind,
        "status": health.level,
        "problems": list(health.problems),
        "warnings": list(health.warnings),
        "fingerprint": record.fingerprint(),
        "version": record.version,
        "source": record.source,
        "fetched_at": _iso(record.fetched_at),
        "age_seconds": _seconds(None if record.fetched_at is None else now - record.fetched_at),
        "expires_at": _iso(record.expires_at),
        "expires_in_seconds": _seconds(
            None if record.expires_at is None else record.expires_at - now
        ),
        "previous_valid_until": _iso(record.previous_valid_until),
        "previous_valid_for_seconds": _seconds(
            None if record.previous_valid_until is None else record.previous_valid_until - now
        ),
        "last_success_at": _iso(record.last_success_at),
        "last_error": last_error,
        "calls_today": calls,
        "budget": budget,
        "budget_used": round(calls / budget, 4),
        "lease": lease,
    }


def status_json(
    records: Sequence[CredentialRecord], *, table: str, now: float, budget: int
) -> dict[str, Any]:
    credentials = [credential_json(record, now, budget) for record in records]
    return {
        "table": table,
        "checked_at": iso(now),
        "wechat_day": wechat_day(now),
        "budget": budget,
        "healthy": bool(credentials) and all(c["status"] != ERROR for c in credentials),
        "credentials": credentials,
    }


# A table cell: its text and an ANSI colour code (or None).
Cell = tuple[str, str | None]

STATUS_COLUMNS = (
    "STATUS",
    "APP",
    "KIND",
    "FINGERPRINT",
    "AGE",
    "EXPIRES IN",
    "PREV GRACE",
    "LAST SUCCESS",
    "LAST ERROR",
    "CALLS TODAY",
    "LEASE",
)


def status_row(record: CredentialRecord, now: float, budget: int) -> list[Cell]:
    """The table row for one credential (plain text plus colour hints)."""
    health = classify(record, now, budget)
    level_colour = {OK: _GREEN, WARN: _YELLOW, ERROR: _RED}[health.level]

    if record.expires_at is None or not record.has_value:
        expires: Cell = ("no value", _RED)
    elif record.remaining(now) <= 0:
        expires = (f"expired {_ago(record.expires_at, now)}", _RED)
    else:
        soon = "expires_soon" in health.warnings
        expires = (human_duration(record.remaining(now)), _YELLOW if soon else None)

    if record.previous_valid_until is None:
        grace = "-"
    elif record.previous_valid_until > now:
        grace = human_duration(record.previous_valid_until - now)
    else:
        grace = f"ended {_ago(record.previous_valid_until, now)}"

    if record.last_error_code is None:
        error: Cell = ("-", None)
    else:
        text = f"{record.last_error_code} {_short(record.last_error_message, record.value)}"
        text = f"{text.rstrip()} ({_ago(record.last_error_at, now)})"
        error = (text, _RED if has_current_error(record) else None)

    calls = (
        f"{record.calls_today(now)}/{budget}",
        _YELLOW if "budget" in health.warnings else None,
    )
    lease = "-"
    if _live_lease(record, now):
        assert record.lease_until is not None
        lease = f"{record.lease_owner or '?'} ({human_duration(record.lease_until - now)} left)"

    return [
        (health.level.upper(), level_colour),
        (record.app_id, None),
        (record.kind, None),
        (record.fingerprint() or "-", None),
        (
            "-" if record.fetched_at is None else human_duration(max(0.0, now - record.fetched_at)),
            None,
        ),
        expires,
        (grace, None),
        (_ago(record.last_success_at, now), None),
        error,
        calls,
        (lease, None),
    ]


def render_table(header: Sequence[str], rows: Sequence[Sequence[Cell]], *, color: bool) -> str:
    """Left-aligned columns two spaces apart; colour wraps the padded text, so it aligns."""
    widths = [len(title) for title in header]
    for row in rows:
        for i, (text, _) in enumerate(row):
            widths[i] = max(widths[i], len(text))

    def line(cells: Sequence[Cell]) -> str:
        parts = []
        for i, (text, colour) in enumerate(cells):
            padded = text if i == len(cells) - 1 else text.ljust(widths[i])
            parts.append(_paint(padded, colour) if color and colour else padded)
        return "  ".join(parts).rstrip()

    titles: list[Cell] = [(title, "1") for title in header]
    return "\n".join([line(titles), *(line(row) for row in rows)])


def _paint(text: str, code: str) -> str:
    # Colour the text only, not the padding after it, so terminals copy clean columns.
    stripped = text.rstrip()
    return f"\x1b[{code}m{stripped}\x1b[0m{text[len(stripped) :]}"


def status_text(
    records: Sequence[CredentialRecord],
    *,
    table: str,
    now: float,
    budget: int,
    app_id: str | None,
    color: bool,
) -> str:
    where = f"app '{app_id}' in table '{table}'" if app_id else f"table '{table}'"
    if not records:
        return (
            f"No credentials {'for' if app_id else 'in'} {where}: has the refresher run, "
            "and is the app in the registry secret?"
        )
    rows = [status_row(record, now, budget) for record in records]
    counts = dict.fromkeys((OK, WARN, ERROR), 0)
    for record in records:
        counts[classify(record, now, budget).level] += 1
    footer = (
        f"{len(records)} credential(s) in {where}: {counts[OK]} ok, {counts[WARN]} warn, "
        f"{counts[ERROR]} error. WeChat day {wechat_day(now)} (UTC+8), budget {budget} calls "
        f"per credential, checked {iso(now)}."
    )
    details = [_problem_line(r, now, budget) for r in records if classify(r, now, budget).problems]
    text = render_table(STATUS_COLUMNS, rows, color=color) + "\n\n" + footer
    if details:
        text += "\n\nNeeds attention:\n" + "\n".join(details)
    return text


def _problem_line(record: CredentialRecord, now: float, budget: int) -> str:
    """The full story of an unhealthy credential, which the table's cells abbreviate."""
    health = classify(record, now, budget)
    parts = []
    if "missing_value" in health.problems:
        parts.append("no value stored")
    if "expired" in health.problems:
        parts.append(f"expired {_ago(record.expires_at, now)}")
    if record.last_error_code is not None and "last_error" in health.problems:
        parts.append(
            f"last error {record.last_error_code} {_ago(record.last_error_at, now)}: "
            f"{_clean(record.last_error_message, record.value) or 'no details'}"
        )
    return f"- {record.app_id}/{record.kind}: " + "; ".join(parts)


# --- refresh --------------------------------------------------------------------------------


def invoke_refresher(
    client: LambdaClient, function_name: str, app_id: str, kind: str
) -> tuple[Any, str | None]:
    """Invoke the refresher synchronously with a forced refresh; ``(body, FunctionError)``."""
    payload = {"app_id": app_id, "kind": kind, "force": True}
    try:
        response = client.invoke(
            FunctionName=function_name,
            InvocationType="RequestResponse",
            Payload=json.dumps(payload).encode(),
        )
        raw = response["Payload"].read()
    except Exception as exc:
        raise UsageError(
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
        {key: entry.get(key) for key in _SUMMARY_FIELDS}
        for entry in entries
        if isinstance(entry, dict)
    ]


def _function_error_message(body: Any, kind: str) -> str:
    if isinstance(body, dict):
        error_type = str(body.get("errorType") or kind)
        message = str(body.get("errorMessage") or "no message")
    else:
        error_type, message = kind, "no message"
    return redact(f"{error_type}: {message}")


REFRESH_COLUMNS = ("APP", "KIND", "OUTCOME", "FINGERPRINT", "EXPIRES AT", "WECHAT CALLS", "ERROR")


def refresh_text(entries: Sequence[Mapping[str, Any]], *, color: bool) -> str:
    if not entries:
        return "The refresher answered without any credential entry."
    rows: list[list[Cell]] = []
    for entry in entries:
        outcome = str(entry.get("outcome"))
        colour = _GREEN if outcome == "refreshed" else _RED if outcome == "failed" else _YELLOW
        error = entry.get("error")
        error_text = "-"
        if isinstance(error, dict):
            error_text = f"{error.get('code', '?')} {_short(str(error.get('message') or ''))}"
        rows.append(
            [
                (str(entry.get("app_id") or "-"), None),
                (str(entry.get("kind") or "-"), None),
                (outcome, colour),
                (str(entry.get("fingerprint") or "-"), None),
                (str(entry.get("expires_at") or "-"), None),
                (str(entry.get("wechat_calls", 0)), None),
                (redact(error_text.rstrip()), _RED if isinstance(error, dict) else None),
            ]
        )
    return render_table(REFRESH_COLUMNS, rows, color=color)


# --- command line ---------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Operate the wechat-token central control server: check every stored "
        "WeChat credential, or force a refresh. Prints fingerprints, never tokens.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    color_help = "colour the table: auto (a terminal without NO_COLOR), always, never"

    status = commands.add_parser(
        "status",
        help="show every credential in the token table",
        description="Show every credential in the token table (a consistent, paginated Scan: "
        "needs dynamodb:Scan). Exit 0 healthy, 1 if a credential is expired, has no value, "
        "or has an error newer than its last success (or none was found), 2 if the check "
        "could not be made.",
    )
    status.add_argument("--table", help=f"the DynamoDB token table (default: ${TABLE_ENV})")
    status.add_argument("--app", metavar="APP", help="only this app_id")
    status.add_argument(
        "--budget",
        type=_positive_int,
        help=f"daily WeChat call budget per credential (default: ${BUDGET_ENV}, "
        f"else {DEFAULT_BUDGET})",
    )
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument(
        "--color", choices=("auto", "always", "never"), default="auto", help=color_help
    )

    refresh = commands.add_parser(
        "refresh",
        help="force a refresh now (invokes the refresher synchronously)",
        description='Invoke the refresher with {"app_id": APP, "kind": KIND, "force": true} '
        "and wait for its summary (needs lambda:InvokeFunction). Exit 0 on success, 1 if "
        "the refresher failed, 2 if it could not be invoked.",
    )
    refresh.add_argument("app_id", metavar="APP", help="the app_id, as in the app registry")
    refresh.add_argument("--kind", default=ACCESS_TOKEN, help="default: %(default)s")
    refresh.add_argument(
        "--function", help=f"the refresher's function name or ARN (default: ${REFRESHER_ENV})"
    )
    refresh.add_argument("--json", action="store_true", help="machine-readable output")
    refresh.add_argument(
        "--color", choices=("auto", "always", "never"), default="auto", help=color_help
    )
    return parser


def _setting(given: str | None, env: str, what: str, flag: str) -> str:
    value = (given if given is not None else os.environ.get(env, "")).strip()
    if not value:
        raise UsageError(f"No {what}: pass {flag} or set {env}.")
    return value


def _budget(given: int | None) -> int:
    if given is not None:
        return given
    raw = os.environ.get(BUDGET_ENV, "").strip()
    if not raw:
        return DEFAULT_BUDGET
    try:
        return _positive_int(raw)
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"{BUDGET_ENV}: {exc} (the daily call budget, default 1000).") from None


def _use_color(mode: str, stream: TextIO) -> bool:
    if mode != "auto":
        return mode == "always"
    if os.environ.get("NO_COLOR"):
        return False
    isatty: Callable[[], bool] | None = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _dump(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False)


def _run_status(
    args: argparse.Namespace, dynamodb: DynamoDBClient | None, now: float, out: TextIO
) -> int:
    table = _setting(
        args.table, TABLE_ENV, "token table (the stack output TokenTableName)", "--table"
    )
    budget = _budget(args.budget)
    if dynamodb is None:
        try:
            dynamodb = default_dynamodb_client()
        except Exception as exc:
            raise UsageError(f"Could not create a DynamoDB client: {exc}") from exc
    records = scan_records(dynamodb, table, args.app)
    healthy = bool(records) and all(classify(r, now, budget).level != ERROR for r in records)
    if args.json:
        print(_dump(status_json(records, table=table, now=now, budget=budget)), file=out)
    else:
        color = _use_color(args.color, out)
        text = status_text(
            records, table=table, now=now, budget=budget, app_id=args.app, color=color
        )
        print(text, file=out)
    return EXIT_OK if healthy else EXIT_UNHEALTHY


def _run_refresh(
    args: argparse.Namespace, lambda_client: LambdaClient | None, out: TextIO, err: TextIO
) -> int:
    function = _setting(
        args.function,
        REFRESHER_ENV,
        "refresher function (the stack output RefresherFunctionName)",
        "--function",
    )
    if lambda_client is None:
        lambda_client = _default_lambda_client()
    body, function_error = invoke_refresher(lambda_client, function, args.app_id, args.kind)
    entries = summary_entries(body)
    failed = function_error is not None or any(e.get("outcome") == "failed" for e in entries)
    if args.json:
        result: dict[str, Any] = {
            "function": function,
            "app_id": args.app_id,
            "kind": args.kind,
            "ok": not failed,
            "credentials": entries,
        }
        if function_error is not None:
            result["error"] = _function_error_message(body, function_error)
        print(_dump(result), file=out)
    elif function_error is not None:
        print(
            f"{PROG}: the refresher failed: {_function_error_message(body, function_error)}",
            file=err,
        )
    else:
        print(refresh_text(entries, color=_use_color(args.color, out)), file=out)
    return EXIT_UNHEALTHY if failed else EXIT_OK


def _default_lambda_client() -> LambdaClient:
    try:
        import boto3  # noqa: PLC0415
        from botocore.config import Config  # noqa: PLC0415

        config = Config(
            connect_timeout=5,
            read_timeout=_INVOKE_READ_TIMEOUT,
            retries={"mode": "standard", "total_max_attempts": 1},
        )
        return boto3.client("lambda", config=config)
    except Exception as exc:
        raise UsageError(f"Could not create a Lambda client: {exc}") from exc


def _exit_code(code: str | int | None) -> int:
    if code is None:
        return EXIT_OK
    return code if isinstance(code, int) else EXIT_USAGE


def main(
    argv: Sequence[str] | None = None,
    *,
    dynamodb: DynamoDBClient | None = None,
    lambda_client: LambdaClient | None = None,
    now: float | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run the command line; the exit code. Clients, clock and streams injectable for tests."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return _exit_code(exc.code)
    try:
        if args.command == "status":
            return _run_status(args, dynamodb, time.time() if now is None else now, out)
        return _run_refresh(args, lambda_client, out, err)
    except (UsageError, ConfigurationError, TokenStoreError) as exc:
        print(f"{PROG}: error: {exc}", file=err)
        return EXIT_USAGE
    except BrokenPipeError:
        # `wechat-token status | head`: the reader left. Silence the flush at exit too.
        if out is sys.stdout:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return EXIT_UNHEALTHY
