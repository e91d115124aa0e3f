"""``wechat-token``: the operators' command line.

    wechat-token status  [--table T] [--app APP] [--budget N] [--json] [--color WHEN]
    wechat-token refresh APP [--kind KIND] [--function NAME] [--json] [--color WHEN]
    wechat-token apps list [--json]
    wechat-token apps add APP [--type T] [--appid A] [--corpid C] [--agentid N]
                              [--tickets jsapi,wx_card] [--shard SECRET_ID]   (secret on stdin)
    wechat-token apps remove APP [--shard SECRET_ID]

``status`` shows every credential in the token table (one paginated, strongly consistent
Scan: needs ``dynamodb:Scan``); ``refresh`` invokes the refresher synchronously with
``{"app_id", "kind", "force": true}`` (needs ``lambda:InvokeFunction``); ``apps`` lists and
edits the app registry's secrets (``apps.py``: secrets on standard input only).

boto3 is imported when a command runs. Output holds fingerprints, never a token or a
secret: the scan does not even read a previous token, and error texts pass through
``redact``.

Exit codes: 0 healthy, 1 a credential needs attention (or the refresh failed), 2 the
check could not be made (usage, configuration, AWS access).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, TextIO

from wechat_token.record import ACCESS_TOKEN, Kind
from wechat_token.registry_format import TYPES
from wechat_token.settings import (
    DEFAULT_DAILY_CALL_BUDGET,
    TABLE_ENV,
    WECHAT_DAILY_QUOTA,
    env_int,
    env_text,
)

from . import EXIT_OK, EXIT_UNHEALTHY, EXIT_USAGE, PROG, apps, clients
from .errors import OpsError, UsageError
from .refresh import (
    REFRESHER_ENV,
    authorize_event,
    failed,
    function_error_message,
    invoke_refresher,
    invoke_with,
    summary_entries,
)
from .render import apps_text, change_text, refresh_text, status_text, use_color
from .status import is_healthy, scan_records, status_json

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_secretsmanager import SecretsManagerClient

BUDGET_ENV: Final = "DAILY_CALL_BUDGET"
_COLOR_CHOICES: Final = ("auto", "always", "never")
_COLOR_HELP: Final = "colour the table: auto (a terminal without NO_COLOR), always, never"


# --- the parser -----------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--color", choices=_COLOR_CHOICES, default="auto", help=_COLOR_HELP)


def _add_status(commands: Any) -> None:
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
        f"else {DEFAULT_DAILY_CALL_BUDGET})",
    )
    _add_output_options(status)


def _add_refresh(commands: Any) -> None:
    refresh = commands.add_parser(
        "refresh",
        help="force a refresh of one app now (invokes the refresher synchronously)",
        description='Invoke the refresher with {"app_id": APP, "kind": KIND, "force": true} '
        "and wait for its summary (needs lambda:InvokeFunction). The app is required: the "
        "refresher forces one credential at a time. Exit 0 on success, 1 if the refresher "
        "failed, 2 if it could not be invoked.",
    )
    refresh.add_argument("app_id", metavar="APP", help="the app_id, as in the app registry")
    refresh.add_argument(
        "--kind",
        default=str(ACCESS_TOKEN),
        choices=[str(k) for k in Kind],
        help="default: %(default)s",
    )
    refresh.add_argument(
        "--function", help=f"the refresher's function name or ARN (default: ${REFRESHER_ENV})"
    )
    _add_output_options(refresh)


def _add_authorize(commands: Any) -> None:
    authorize = commands.add_parser(
        "authorize",
        help="exchange a platform's authorization code obtained elsewhere (code on stdin)",
        description='Invoke the refresher with {"app_id": COMPONENT, "authorization_code": '
        "...}: it exchanges the code with api_query_auth at once and stores the merchant's "
        "token and refresh token. The code is read from standard input, never from an "
        "argument (arguments end up in shell history and process lists). Exit 0 on success, "
        "1 if the refresher failed, 2 if it could not be invoked.",
    )
    authorize.add_argument("component", metavar="COMPONENT", help="the component appid")
    authorize.add_argument(
        "--function", help=f"the refresher's function name or ARN (default: ${REFRESHER_ENV})"
    )
    _add_output_options(authorize)


def _add_registry_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--registry",
        metavar="IDS",
        help=f"the registry's secret ids or ARNs, comma-separated (default: ${apps.IDS_ENV})",
    )
    parser.add_argument(
        "--registry-prefix",
        metavar="PREFIX",
        help=f"every secret whose name starts with it is a shard too (default: ${apps.PREFIX_ENV})",
    )


def _tickets(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _add_apps(commands: Any) -> None:
    group = commands.add_parser(
        "apps",
        help="list, add or remove apps in the registry's secrets (secrets on stdin only)",
        description="The app registry: the union of the secrets in WECHAT_APPS_SECRET_ID "
        "(comma-separated) and those whose name starts with WECHAT_APPS_SECRET_PREFIX. "
        "Entries are checked by the refresher's rules. Never prints a secret.",
    )
    actions = group.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser(
        "list",
        help="every entry: app, type, shard, tickets (never secrets)",
        description="Every entry of every registry secret, with the refresher's verdict "
        "(ok, disabled, refused and why). Exit 0 when all are usable, 1 if an entry is "
        "refused or a secret cannot be read, 2 if none could be listed.",
        allow_abbrev=False,
    )
    _add_registry_options(listing)
    _add_output_options(listing)
    add = actions.add_parser(
        "add",
        help="add an app; its secret is read from standard input",
        description="Add an entry to the named shard, or the first with room (under "
        f"{apps.SHARD_LIMIT_BYTES} bytes), or a new secret <prefix>NNN. The app secret is "
        "read from standard input, never from an argument: one line (a component: three "
        'lines, secret, token, EncodingAESKey, or a JSON object {"secret", "token", '
        '"encoding_aes_key"}); a terminal is prompted without echo. Refuses an app already '
        "in any shard. Exit 0 when added, 2 when refused or it could not be written.",
        allow_abbrev=False,
    )
    add.add_argument("app_id", metavar="APP", help="the app_id consumers ask for")
    add.add_argument("--type", default="classic", choices=list(TYPES), help="default: %(default)s")
    add.add_argument("--appid", help="WeChat's appid when it differs from APP")
    add.add_argument("--corpid", help="WeCom: the corp id")
    add.add_argument("--agentid", help="WeCom: the agent id")
    add.add_argument(
        "--tickets", type=_tickets, default=[], help="JS-SDK tickets, e.g. jsapi,wx_card"
    )
    add.add_argument("--shard", metavar="SECRET_ID", help="the registry secret to add it to")
    _add_registry_options(add)
    _add_output_options(add)
    remove = actions.add_parser(
        "remove",
        help="remove an app from the shard holding it",
        description="Remove the entry from every registry secret holding it (--shard: from "
        "that one only, e.g. the refused copy of a duplicate). Exit 0 when "
        "removed, 2 when it is not there or could not be written.",
        allow_abbrev=False,
    )
    remove.add_argument("app_id", metavar="APP", help="the app_id to remove")
    remove.add_argument(
        "--shard", metavar="SECRET_ID", help="only from this registry secret (one of two copies)"
    )
    _add_registry_options(remove)
    _add_output_options(remove)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Operate the wechat-token central control server: check every stored "
        "WeChat credential, or force a refresh. Prints fingerprints, never tokens.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_status(commands)
    _add_refresh(commands)
    _add_authorize(commands)
    _add_apps(commands)
    return parser


# --- settings -------------------------------------------------------------------------------


def _setting(given: str | None, env: Mapping[str, str], name: str, what: str, flag: str) -> str:
    """The flag's value, else the environment's; a usage error naming both when neither."""
    if given is None:
        return env_text(env, name, what=f"{what}, or pass {flag}", error=UsageError)
    if not given.strip():
        raise UsageError(f"{flag} is empty: give {what}.")
    return given.strip()


def _budget(given: int | None, env: Mapping[str, str]) -> int:
    if given is not None:
        return given
    high = WECHAT_DAILY_QUOTA - 1  # as the refresher accepts it
    return env_int(env, BUDGET_ENV, DEFAULT_DAILY_CALL_BUDGET, 1, high, error=UsageError)


def _dump(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False)


# --- the commands ---------------------------------------------------------------------------


def _run_status(
    args: argparse.Namespace,
    dynamodb: DynamoDBClient | None,
    now: float,
    env: Mapping[str, str],
    out: TextIO,
) -> int:
    table = _setting(
        args.table, env, TABLE_ENV, "the token table (the stack output TokenTableName)", "--table"
    )
    budget = _budget(args.budget, env)
    records = scan_records(dynamodb or clients.dynamodb_client(), table, args.app)
    if args.json:
        print(_dump(status_json(records, table=table, now=now, budget=budget)), file=out)
    else:
        color = use_color(args.color, out, env)
        text = status_text(
            records, table=table, now=now, budget=budget, app_id=args.app, color=color
        )
        print(text, file=out)
    return EXIT_OK if is_healthy(records, now, budget) else EXIT_UNHEALTHY


def _run_refresh(
    args: argparse.Namespace,
    lambda_client: LambdaClient | None,
    env: Mapping[str, str],
    out: TextIO,
    err: TextIO,
) -> int:
    if not args.app_id.strip():
        raise UsageError("refresh needs an app_id: the refresher forces one app at a time.")
    function = _setting(
        args.function,
        env,
        REFRESHER_ENV,
        "the refresher function (the stack output RefresherFunctionName)",
        "--function",
    )
    client = lambda_client or clients.lambda_client()
    body, function_error = invoke_refresher(client, function, args.app_id, args.kind)
    entries = summary_entries(body)
    ok = not failed(entries, function_error)
    if args.json:
        result: dict[str, Any] = {
            "function": function,
            "app_id": args.app_id.strip(),
            "kind": args.kind,
            "ok": ok,
            "credentials": entries,
        }
        if function_error is not None:
            result["error"] = function_error_message(body, function_error)
        print(_dump(result), file=out)
    elif function_error is not None:
        message = function_error_message(body, function_error)
        print(f"{PROG}: the refresher failed: {message}", file=err)
    else:
        print(refresh_text(entries, color=use_color(args.color, out, env)), file=out)
    return EXIT_OK if ok else EXIT_UNHEALTHY


def _run_authorize(
    args: argparse.Namespace,
    lambda_client: LambdaClient | None,
    env: Mapping[str, str],
    out: TextIO,
    err: TextIO,
    stdin: TextIO,
) -> int:
    payload = authorize_event(args.component, stdin.readline())
    function = _setting(
        args.function,
        env,
        REFRESHER_ENV,
        "the refresher function (the stack output RefresherFunctionName)",
        "--function",
    )
    body, function_error = invoke_with(lambda_client or clients.lambda_client(), function, payload)
    entries = summary_entries(body)
    ok = not failed(entries, function_error)
    if args.json:
        result: dict[str, Any] = {"function": function, "ok": ok, "credentials": entries}
        if function_error is not None:
            result["error"] = function_error_message(body, function_error)
        print(_dump(result), file=out)
    elif function_error is not None:
        print(f"{PROG}: the refresher failed: {function_error_message(body, '')}", file=err)
    else:
        print(refresh_text(entries, color=use_color(args.color, out, env)), file=out)
    return EXIT_OK if ok else EXIT_UNHEALTHY


def _run_apps(
    args: argparse.Namespace,
    secrets: SecretsManagerClient | None,
    env: Mapping[str, str],
    out: TextIO,
    err: TextIO,
    stdin: TextIO,
    prompt: Callable[[str], str],
) -> int:
    ids, prefix = apps.shard_settings(args.registry, args.registry_prefix, env)
    if args.action == "list":
        shards = apps.Shards(secrets or clients.secrets_client(), ids, prefix)
        result = apps.listing(shards)
        if args.json:
            print(_dump(result.as_dict()), file=out)
        else:
            print(apps_text(result, color=use_color(args.color, out, env)), file=out)
        return EXIT_OK if result.healthy else EXIT_UNHEALTHY
    if args.action == "add":
        credentials = apps.read_credentials(args.type, stdin, prompt)
        raw, entry = apps.new_entry(
            args.app_id.strip(),
            kind=args.type,
            credentials=credentials,
            appid=args.appid,
            corpid=args.corpid,
            agentid=args.agentid,
            tickets=args.tickets,
        )
        client = secrets or clients.secrets_client()
        shards = apps.Shards(client, ids, prefix, secrets=list(credentials.values()))
        change = apps.add(shards, entry.app_id, raw, entry, shard=args.shard)
    else:
        shards = apps.Shards(secrets or clients.secrets_client(), ids, prefix)
        change, unreadable = apps.remove(shards, args.app_id.strip(), shard=args.shard)
        for shard_id in unreadable:
            print(
                f"{PROG}: warning: registry secret {shard_id!r} could not be read; it may "
                "hold the app too (wechat-token apps list).",
                file=err,
            )
    if args.json:
        print(_dump(change.as_dict()), file=out)
    else:
        print(change_text(change), file=out)
    return EXIT_OK


def _parse(arguments: list[str]) -> argparse.Namespace:
    """The parsed command line. ``apps``: what may be a secret is never parsed or echoed
    (argparse's errors repeat unrecognized arguments)."""
    parser = build_parser()
    if arguments[:1] != ["apps"]:
        return parser.parse_args(arguments)
    flag = apps.refused_flag(arguments)
    if flag is not None:
        raise UsageError(
            f"{flag} is refused: a secret on the command line ends up in shell history and "
            "process lists. Pipe it to standard input instead, e.g. printf '%s\\n' "
            '"$APP_SECRET" | wechat-token apps add APP_ID (or type it at the prompt).'
        )
    args, extras = parser.parse_known_args(arguments)
    if extras:
        raise UsageError(
            f"{len(extras)} unrecognized argument(s), not repeated here in case one is a "
            "secret: secrets are read from standard input only."
        )
    return args


def _exit_code(code: str | int | None) -> int:
    if code is None:
        return EXIT_OK
    return code if isinstance(code, int) else EXIT_USAGE


def _silence_stdout() -> None:
    """``wechat-token status | head``: the reader left. Silence the flush at exit too."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def main(
    argv: Sequence[str] | None = None,
    *,
    dynamodb: DynamoDBClient | None = None,
    lambda_client: LambdaClient | None = None,
    secrets: SecretsManagerClient | None = None,
    prompt: Callable[[str], str] | None = None,
    now: float | None = None,
    env: Mapping[str, str] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    stdin: TextIO | None = None,
) -> int:
    """Run the command line; the exit code. Clients, clock, environment, streams and the
    secret prompt are injectable for tests."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    environ = os.environ if env is None else env
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _parse(arguments)
        commands: dict[str, Callable[[], int]] = {
            "status": lambda: _run_status(
                args, dynamodb, time.time() if now is None else now, environ, out
            ),
            "authorize": lambda: _run_authorize(
                args, lambda_client, environ, out, err, stdin or sys.stdin
            ),
            "apps": lambda: _run_apps(
                args, secrets, environ, out, err, stdin or sys.stdin, prompt or getpass.getpass
            ),
            "refresh": lambda: _run_refresh(args, lambda_client, environ, out, err),
        }
        return commands[args.command]()
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return _exit_code(exc.code)
    except OpsError as exc:
        print(f"{PROG}: error: {exc}", file=err)
        return EXIT_USAGE
    except BrokenPipeError:
        if out is sys.stdout:
            _silence_stdout()
        return EXIT_UNHEALTHY
