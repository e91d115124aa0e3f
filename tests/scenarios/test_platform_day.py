"""A third-party platform (第三方平台) through a simulated day, and what goes wrong around it.

Real parts, all on 127.0.0.1: DynamoDB Local (the template's table, ``component-index``
included); the simulator over HTTP (3 servers, +-90 s skew) playing WeChat, which pushes
its verify tickets and authorization events over HTTP to the real push callback
(``platform_callback``, built as ``app.py`` builds it, on the simulated clock) behind the
Function URL stand-in (``local_aws.function_url``); moto's server as KMS, which seals the
authorizers' refresh tokens. The refreshers are wired like production (``build_service``)
on the simulated clock, one Lambda environment per schedule: each minute WeChat delivers its
due pushes at :00, the fast schedule (``{"types": ["stable", "component"]}``) runs at :04
and, every other minute, the main one at :33 (:class:`Schedules`). Consumers call
``/cgi-bin/get_api_domain_ip`` with an authorizer's token every 10 s, through
``TokenReader`` (over the harness's mirror; one over DynamoDB Local through boto3) or
``WeChatClient`` with passive refresh.

What was chosen to keep each test near two minutes of wall time: a scheduled run plans
from the due index and works what is due, and the scheduled probe makes every authorizer
due at least every 5 minutes, so a run with 50 authorizers takes ~0.2-0.4 s (median) and a
full day at the template's cadence (2160 runs) ~12 minutes. A scheduled run reports only
what it worked: the platform's own steps (authorization events, the nightly reconciliation,
the verify-ticket age) show in the table, WeChat's call log and ``RunSummary.ticket_ages``.
The 50-authorizer day is therefore a 2.5-hour window of it at the
full cadence, from 23:00 in WeChat's day (UTC+8) so that the nightly reconciliation falls
inside; per-day call counts are worked out from the renewal intervals it measures. The
ticket-push outage runs 5 hours with 10 authorizers (the same world otherwise); the fault
scenarios use 3.

Every figure a user would notice is printed and repeated in the assertion messages.
"""

from __future__ import annotations

import base64
import itertools
import statistics
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import httpx
import pytest
from platform_callback.wiring import SECRET_ENV, TABLE_ENV, build_handler
from token_refresher.outcome import Outcome, RunSummary, Status
from token_refresher.service import RefreshService
from token_refresher.token_store import TokenStore
from token_refresher.triggers import Scheduled
from wechat_token.record import (
    ACCESS_TOKEN,
    CredentialKey,
    CredentialRecord,
    fingerprint,
    ticket_key,
)

from local_aws import (
    DUMMY_ACCESS_KEY_ID,
    DUMMY_SECRET_ACCESS_KEY,
    LOCAL_REGION,
    MotoServer,
    dynamodb_client,
)
from local_aws.function_url import FunctionUrlServer
from local_aws.lambda_invoke import LambdaContext
from local_aws.static_secrets import SECRET_ID, StaticSecrets
from simulator import (
    AUTHORIZER_LIST,
    AUTHORIZER_TOKEN,
    COMPONENT_TOKEN,
    QUERY_AUTH,
    START_PUSH_TICKET,
    ManualClock,
    PushDelivery,
    WeChatSimulator,
)
from simulator.clock import DEFAULT_START
from simulator.msgcrypt import PushKey
from tests.scenarios.harness import (
    BUSINESS,
    DAY,
    HOUR,
    TICK,
    TOKEN_ERROR,
    Consumer,
    Deployment,
    Fleet,
    Stopwatch,
    Timeline,
    passive_refresh,
    with_client,
)

pytestmark = pytest.mark.scenario

COMP = "wxplatformday00001"
COMP_SECRET = "platform-day-component-appsecret-0"
MSG_TOKEN = "PlatformDayMessageToken"
AES_KEY = "PlatformDayEncodingAESKey0123456789abcdefgh"
MERCHANTS = [f"wxdaymerchant{i:05d}" for i in range(50)]
FAST = Scheduled(types=("stable", "component"))
MAIN = Scheduled()
CACHE_SECONDS = 60.0  # the layer's default
RENEW_BELOW = 3900.0  # Settings: refresh_interval_seconds + refresh_slack_seconds
GRACE = 300.0  # WeChat keeps a replaced token (and a rotated-away refresh token) 5 minutes
SKEW = 90.0  # the simulator's servers disagree by up to this
TICKET_ALARM_SECONDS = 3600.0  # TicketPushAlarmSeconds' default
ALARM_PERIOD = 300  # TicketPushMissingAlarm: Maximum over 5 minutes, one period
# 23:00 in WeChat's day (UTC+8): the first run after midnight reconciles (nightly).
LATE_EVENING = DEFAULT_START + 16 * HOUR + 46 * 60 + 40


def app_id(merchant: str) -> str:
    return f"{COMP}:{merchant}"


class Killed(BaseException):
    """The refresher's process died (Lambda's timeout, an out-of-memory kill): nothing of it
    runs any more, not even the code that would release its lease."""


# --------------------------------------------------------------------------- the world


@dataclass(frozen=True)
class Kms:
    client: Any
    key_id: str


@pytest.fixture(scope="module")
def kms() -> Iterator[Kms]:
    """moto's server on 127.0.0.1 as KMS (DynamoDB Local has none), with one key."""
    with MotoServer() as server:
        client = boto3.client(
            "kms",
            endpoint_url=server.endpoint_url,
            region_name=LOCAL_REGION,
            aws_access_key_id=DUMMY_ACCESS_KEY_ID,
            aws_secret_access_key=DUMMY_SECRET_ACCESS_KEY,
        )
        key = client.create_key(Description="wechat-token scenarios: refresh tokens")
        yield Kms(client, key["KeyMetadata"]["KeyId"])
        client.close()


@dataclass
class World:
    """One platform on a deployment: its registry entry, the callback behind its Function
    URL, WeChat's pushes to it (every request kept, for replays), KMS."""

    deployment: Deployment
    kms: Kms
    callback: FunctionUrlServer
    push_http: httpx.Client
    pushed: list[httpx.Request]

    @property
    def sim(self) -> WeChatSimulator:
        return self.deployment.sim

    @property
    def clock(self) -> ManualClock:
        return self.deployment.clock

    def refresher(self, seed: int = 0, **kw: Any) -> RefreshService:
        """A refresher (one Lambda environment) wired like production, KMS included."""
        return self.deployment.refresher(
            seed=seed, kms=self.kms.client, refresh_token_kms_key_id=self.kms.key_id, **kw
        )

    def deliver(self) -> list[PushDelivery]:
        """WeChat POSTs its due pushes to the callback URL."""
        return self.sim.platform.deliver_due_pushes(self.push_http)

    def record(self, app: str, kind: str = ACCESS_TOKEN) -> CredentialRecord:
        return self._store().read(CredentialKey(app, kind))

    def ticket(self) -> CredentialRecord:
        """The verify ticket as the callback stored it."""
        return self._store().read(ticket_key(COMP))

    def _store(self) -> TokenStore:
        return TokenStore(self.deployment._boto3(), self.deployment.table)

    def items(self) -> list[dict[str, Any]]:
        """Every item of the table (a consistent scan), sorted by key."""
        client = self.deployment._boto3()
        items: list[dict[str, Any]] = []
        extra: dict[str, Any] = {}
        while True:
            page = client.scan(TableName=self.deployment.table, ConsistentRead=True, **extra)
            items += page["Items"]
            if "LastEvaluatedKey" not in page:
                break
            extra = {"ExclusiveStartKey": page["LastEvaluatedKey"]}
        return sorted(items, key=lambda i: (i["app_id"]["S"], i["kind"]["S"]))

    def consumer(self, merchant: str, *, boto3: bool = False) -> Consumer:
        [consumer] = self.deployment.consumers(app_id(merchant), 1, boto3_first=boto3)
        return consumer

    def passive_consumer(self, merchant: str) -> Consumer:
        """A consumer calling through ``WeChatClient``, which reports a rejected token to
        the PassiveRefreshFunction (a refresher environment of its own) and retries once."""
        return with_client(self.consumer(merchant), passive_refresh(self.refresher(seed=9)))

    def newest_refresh_fp(self, merchant: str) -> str | None:
        """The fingerprint of the refresh token WeChat issued last (None: none is valid)."""
        tokens = self.sim.platform.refresh_tokens(COMP, merchant)
        return fingerprint(tokens[0]) if tokens else None


@pytest.fixture
def world(deployment: Deployment, kms: Kms) -> Iterator[World]:
    deployment.registry[COMP] = {
        "type": "component",
        "secret": COMP_SECRET,
        "token": MSG_TOKEN,
        "encoding_aes_key": AES_KEY,
    }
    # A client of its own: the callback writes tickets, events and nonces, which no
    # consumer reads (the consumers' mirror holds what the refreshers write).
    callback_dynamodb = dynamodb_client(deployment.endpoint_url)
    handler = build_handler(
        {TABLE_ENV: deployment.table, SECRET_ENV: SECRET_ID},
        dynamodb=callback_dynamodb,
        secrets=StaticSecrets(deployment.registry),  # type: ignore[arg-type]
        clock=deployment.clock.now,
    )

    def function(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        return handler.handle(event).to_response()

    pushed: list[httpx.Request] = []
    push_http = httpx.Client(timeout=5, event_hooks={"request": [pushed.append]})
    server = FunctionUrlServer(
        function, function_name="PlatformCallbackFunction", timeout_seconds=4, max_concurrency=5
    )
    with server:
        deployment.sim.platform.add_component(COMP, COMP_SECRET, MSG_TOKEN, AES_KEY, server.url)
        yield World(deployment, kms, server, push_http, pushed)
    push_http.close()
    callback_dynamodb.close()


# --------------------------------------------------------------------------- the schedules


@dataclass
class Run:
    """One refresher run: when, which schedule, its real duration and what it did."""

    at: float
    schedule: str
    seconds: float
    summary: RunSummary | None  # None: the process was killed

    @property
    def ticket_age(self) -> float | None:
        """The MaxSecondsSinceTicketPush this run publishes (telemetry.publish): the
        planner run's own ages (``ticket_ages``) and any an outcome carries."""
        if self.summary is None:
            return None
        ages = [o.ticket_age for o in self.summary if o.ticket_age is not None]
        ages += self.summary.ticket_ages
        return max(ages) if ages else None

    def outcome(self, app: str) -> Outcome | None:
        found = [o for o in self.summary or () if o.app_id == app and o.key.kind == ACCESS_TOKEN]
        return found[-1] if found else None


EachMinute = Callable[[int, float], None]


class Schedules:
    """Both of the template's schedules, WeChat's pushes and the consumers, minute by
    minute on the simulated clock (see the module docstring).

    ``each_minute(minute, at)`` runs at the start of every minute, before the pushes: the
    test's events (a merchant authorizes, pushes stop, a refresher is swapped for one that
    will be killed). ``down`` stops both schedules. A run whose process is killed
    (:class:`Killed`) is recorded without a summary and its schedule gets a fresh
    refresher, as Lambda starts a new execution environment. ``after_run(run)``, if set,
    looks at the table after each run (a scheduled run reports only what it worked, not
    what its platform steps did).
    """

    def __init__(self, world: World, consumers: list[Consumer], *, consumers_from: float):
        self.world = world
        self.fleet = Fleet(consumers)
        self.timeline = Timeline(world.clock, self.fleet, first_call=consumers_from)
        self.refreshers = {
            "fast": world.refresher(seed=1, sleep=self.timeline.sleep),
            "main": world.refresher(seed=2, sleep=self.timeline.sleep),
        }
        self.runs: list[Run] = []
        self.deliveries: list[PushDelivery] = []
        self.start = world.clock.now()
        self.minute = 0
        self.down = False
        self.after_run: Callable[[Run], None] | None = None
        self._seed = 10

    def environment(self, **settings: Any) -> RefreshService:
        """A new refresher environment on this timeline."""
        self._seed += 1
        return self.world.refresher(seed=self._seed, sleep=self.timeline.sleep, **settings)

    def run_minutes(self, minutes: int, each_minute: EachMinute | None = None) -> None:
        for _ in range(minutes):
            at = self.start + 60.0 * self.minute
            self.timeline.run_until(at)
            if each_minute is not None:
                each_minute(self.minute, at)
            self.deliveries += self.world.deliver()
            if not self.down:
                self._run("fast", FAST, at + 4)
                if self.minute % 2 == 0:
                    self._run("main", MAIN, at + 33)
            self.minute += 1
        self.timeline.run_until(self.start + 60.0 * self.minute)

    def _run(self, schedule: str, trigger: Scheduled, at: float) -> None:
        self.timeline.run_until(at)
        watch = Stopwatch()
        summary: RunSummary | None = None
        try:
            summary = self.refreshers[schedule].run(trigger)
        except Killed:
            self.refreshers[schedule] = self.environment()
        self.runs.append(Run(at, schedule, watch.seconds, summary))
        if self.after_run is not None:
            self.after_run(self.runs[-1])

    # -- what happened ------------------------------------------------------------------

    def durations(self, schedule: str) -> str:
        ms = sorted(r.seconds * 1000 for r in self.runs if r.schedule == schedule)
        if not ms:
            return f"{schedule}: no runs"
        p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
        return (
            f"{schedule} ({len(ms)} runs): median {statistics.median(ms):.0f} ms, "
            f"p95 {p95:.0f} ms, max {ms[-1]:.0f} ms"
        )

    def statuses(self) -> Counter[str]:
        return Counter(str(o.status) for r in self.runs for o in r.summary or ())

    def failed(self) -> list[str]:
        return [
            f"{o.app_id}/{o.key.kind} {o.status} {o.error_code}: {o.error_message}"
            for r in self.runs
            for o in r.summary or ()
            if o.failed
        ]

    def outcomes(self, app: str) -> list[tuple[float, Outcome]]:
        return [(r.at, o) for r in self.runs if (o := r.outcome(app)) is not None]


def authorize_gradually(world: World, merchants: list[str], per_minute: int = 5) -> EachMinute:
    """``each_minute``: ``per_minute`` merchants authorize the platform each minute."""
    waiting = list(merchants)

    def each_minute(minute: int, at: float) -> None:
        for merchant in waiting[:per_minute]:
            world.sim.platform.authorize(COMP, merchant)
        del waiting[:per_minute]

    return each_minute


def both(*hooks: EachMinute | None) -> EachMinute:
    def each_minute(minute: int, at: float) -> None:
        for hook in hooks:
            if hook is not None:
                hook(minute, at)

    return each_minute


def authorizer_calls(
    sim: WeChatSimulator, *, since: float = 0.0, until: float = float("inf")
) -> dict[str, list[float]]:
    """When api_authorizer_token was called (whatever the answer), per authorizer."""
    calls: dict[str, list[float]] = {}
    for r in sim.call_log:
        if r.endpoint == AUTHORIZER_TOKEN and since <= r.time < until:
            calls.setdefault((r.note or "?").split()[0], []).append(r.time)
    return calls


def answers(sim: WeChatSimulator, endpoint: str, merchant: str | None = None) -> Counter[Any]:
    """WeChat's errcodes on one endpoint (for one authorizer), as counts."""
    return Counter(
        r.errcode
        for r in sim.call_log
        if r.endpoint == endpoint and (merchant is None or (r.note or "").startswith(merchant))
    )


def rejected_business_calls(sim: WeChatSimulator, merchants: list[str]) -> int:
    """Business calls WeChat rejected for these authorizers (consumers' and probes')."""
    return sum(sim.calls(BUSINESS, m) - sim.calls(BUSINESS, m, errcode=0) for m in merchants)


def describe(fleet: Fleet) -> str:
    errors = f" e.g. {fleet.errors()[:2]}" if fleet.failures else ""
    return f"{fleet.calls} consumer calls, failures {dict(fleet.failures) or 'none'}{errors}"


def platform_day(
    world: World, merchants: list[str], minutes: int, each_minute: EachMinute | None = None
) -> Schedules:
    """The merchants authorize during the first minutes (five a minute); from a minute
    after the last, consumers of five of them call WeChat every 10 s: one over DynamoDB
    Local, one through WeChatClient with passive refresh, three over the mirror."""
    watched = merchants[:5]
    consumers = [
        world.consumer(watched[0], boto3=True),
        *(world.consumer(m) for m in watched[1:4]),
        world.passive_consumer(watched[4]),
    ]
    first_call = world.clock.now() + (len(merchants) // 5 + 1) * 60
    schedules = Schedules(world, consumers, consumers_from=first_call)
    schedules.run_minutes(minutes, both(authorize_gradually(world, merchants), each_minute))
    return schedules


# --------------------------------------------------------------------------- a. a day


def test_a_day_of_a_platform_with_50_authorizers(world: World) -> None:
    """Two and a half hours of the day at the template's cadence, from 23:00 (UTC+8)."""
    sim, clock = world.sim, world.clock
    clock.set(LATE_EVENING)
    watch = Stopwatch()
    start = clock.now()
    minutes = 150
    day = platform_day(world, MERCHANTS, minutes)
    calls = authorizer_calls(sim)
    per_merchant = sorted(len(calls.get(m, [])) for m in MERCHANTS)
    gaps = sorted(b - a for times in calls.values() for a, b in itertools.pairwise(times))
    gap = statistics.median(gaps)
    component = [r.time for r in sim.call_log if r.endpoint == COMPONENT_TOKEN]
    component_gap = statistics.median(b - a for a, b in itertools.pairwise(component))
    stats = sim.stats()["platform"]["components"][COMP]["authorizers"]
    rotations = sum(stats[m]["refresh_rotations"] for m in MERCHANTS)
    kept = sum(
        world.record(app_id(m)).refresh_token_fp == world.newest_refresh_fp(m) for m in MERCHANTS
    )
    delivered = Counter(d.info_type for d in day.deliveries if d.ok)
    reconciled = [r.time - start for r in sim.call_log if r.endpoint == AUTHORIZER_LIST]
    figures = (
        f"{minutes / 60:.1f} simulated hours (from 23:00 UTC+8) in {watch.seconds:.0f} s; "
        f"{describe(day.fleet)}; rejected at WeChat (consumers and probes) "
        f"{rejected_business_calls(sim, MERCHANTS)}; pushes delivered {dict(delivered)} of "
        f"{len(day.deliveries)}; codes exchanged {sim.calls(QUERY_AUTH, errcode=0)}; "
        f"component-token calls {len(component)} ({dict(answers(sim, COMPONENT_TOKEN))}), "
        f"every {component_gap / 60:.0f} min = {DAY / component_gap:.1f} a day; "
        f"authorizer-token calls per authorizer in {minutes} min: min {per_merchant[0]}, max "
        f"{per_merchant[-1]} ({dict(answers(sim, AUTHORIZER_TOKEN))}), renewed every "
        f"{gap / 60:.1f} min (shortest {gaps[0] / 60:.1f}) = {DAY / gap:.1f} per authorizer "
        f"per day; refresh tokens WeChat rotated {rotations}, stored = WeChat's newest for "
        f"{kept}/50; reconciliations (api_get_authorizer_list) at "
        f"{[f'+{t / 60:.0f} min' for t in reconciled]}; api_start_push_ticket "
        f"{sim.calls(START_PUSH_TICKET)}; run durations {day.durations('fast')}; "
        f"{day.durations('main')}; outcomes {dict(day.statuses())}"
    )
    print(figures)

    assert not day.fleet.failures, figures
    assert rejected_business_calls(sim, MERCHANTS) == 0, figures
    assert not day.failed(), f"{day.failed()[:3]}; {figures}"
    assert delivered["authorized"] == 50, figures
    assert sim.calls(QUERY_AUTH, errcode=0) == 50, figures
    # Renewed at an age of ~50 minutes, like any classic token: 28 a day, never sooner.
    assert gaps[0] >= 49 * 60, figures
    assert gap <= 53 * 60, figures
    assert per_merchant[0] >= minutes // 60, figures
    # The component token too, and never because a ticket arrived (one every 10 minutes).
    assert sim.calls(COMPONENT_TOKEN) == sim.calls(COMPONENT_TOKEN, errcode=0), figures
    assert sim.calls(COMPONENT_TOKEN) <= minutes // 50 + 1, figures
    assert 49 * 60 <= component_gap <= 53 * 60, figures
    assert delivered["component_verify_ticket"] >= minutes // 10, figures
    assert rotations > 0, figures
    assert kept == 50, figures
    # Once a WeChat day: the first run (nothing stored yet), then the first after midnight.
    assert len(reconciled) == 2, figures
    assert 60 * 60 <= reconciled[1] <= 62 * 60, figures


# --------------------------------------------------------------------------- b. no pushes


def alarm_datapoints(runs: list[Run]) -> dict[int, float]:
    """MaxSecondsSinceTicketPush as TicketPushMissingAlarm sees it: the Maximum of each
    5-minute period (by period start)."""
    points: dict[int, float] = {}
    for run in runs:
        if run.ticket_age is not None:
            period = int(run.at // ALARM_PERIOD) * ALARM_PERIOD
            points[period] = max(points.get(period, 0.0), run.ticket_age)
    return points


def test_ticket_pushes_stop_for_three_hours(world: World) -> None:
    sim, clock = world.sim, world.clock
    merchants = MERCHANTS[:10]
    start = clock.now()
    stop, restart, end = start + HOUR, start + 4 * HOUR, start + 5 * HOUR
    tickets: dict[str, str | None] = {}

    def outage(minute: int, at: float) -> None:
        if at == stop:
            sim.platform.stop_pushes(COMP)
        if at == restart:
            tickets["before"] = world.ticket().fingerprint()
            sim.platform.start_pushes(COMP)
        if at == stop + 120:
            tickets["first"] = world.ticket().fingerprint()

    watch = Stopwatch()
    day = platform_day(world, merchants, int((end - start) // 60), outage)
    points = alarm_datapoints(day.runs)
    in_alarm = sorted(p for p, age in points.items() if age > TICKET_ALARM_SECONDS)
    during = [r.time for r in sim.call_log if r.endpoint == COMPONENT_TOKEN and stop < r.time]
    renewed = [t for t in during if t < restart]
    pushes = [d.time for d in day.deliveries if d.ok and d.info_type == "component_verify_ticket"]
    last_push = max(t for t in pushes if t < restart)
    oldest = max(points.values())
    after = [r.ticket_age or 0.0 for r in day.runs if r.at >= restart + 120]
    alarm_span = "never"
    if in_alarm:
        first, last = (in_alarm[0] - stop) / 60, (in_alarm[-1] + ALARM_PERIOD - stop) / 60
        alarm_span = f"from +{first:.0f} to +{last:.0f} min"
    figures = (
        f"5 simulated hours in {watch.seconds:.0f} s, ticket pushes stopped from +1 h to +4 h "
        f"(last push before the restart at +{(last_push - start) / 60:.0f} min); "
        f"{describe(day.fleet)}; rejected at WeChat {rejected_business_calls(sim, merchants)}; "
        f"component token renewed {len(renewed)} times during the outage "
        f"({dict(answers(sim, COMPONENT_TOKEN))}), with the stored ticket "
        f"{'unchanged' if tickets.get('first') == tickets.get('before') else 'CHANGED'}; "
        f"MaxSecondsSinceTicketPush: highest {oldest:.0f} s, above {TICKET_ALARM_SECONDS:.0f} s "
        f"in {len(in_alarm)} 5-minute periods, {alarm_span} after the stop; after the restart "
        f"at most {max(after):.0f} s; api_start_push_ticket "
        f"{sim.calls(START_PUSH_TICKET)}; runs {day.durations('fast')}; "
        f"{day.durations('main')}; outcomes {dict(day.statuses())}"
    )
    print(figures)

    assert not day.fleet.failures, figures
    assert rejected_business_calls(sim, merchants) == 0, figures
    assert not day.failed(), f"{day.failed()[:3]}; {figures}"
    # The component token is renewed on schedule with the last good ticket.
    assert len(renewed) >= 3, figures
    assert set(answers(sim, COMPONENT_TOKEN)) == {0}, figures
    assert tickets["first"] is not None, figures
    assert tickets["first"] == tickets["before"], figures
    assert sim.calls(START_PUSH_TICKET) == 0, figures  # the ticket stayed valid (12 h)
    # The alarm: once the last push is an hour old, until the first push after the restart.
    assert in_alarm, f"TicketPushMissingAlarm never fired: {figures}"
    assert last_push + TICKET_ALARM_SECONDS <= in_alarm[0] + ALARM_PERIOD, figures
    assert in_alarm[0] <= last_push + TICKET_ALARM_SECONDS + ALARM_PERIOD, figures
    assert oldest >= 3 * HOUR - 10 * 60, figures
    assert in_alarm[-1] < restart, f"still alarming after the pushes resumed: {figures}"
    assert max(after) <= 660, figures


# --------------------------------------------------------------------------- c. crashes


class Doom:
    """Kills a refresher's process at the fenced write of ``app``'s refresh, i.e. after
    WeChat answered: before the write reaches DynamoDB or (``landed``) right after it did.
    The killed process writes nothing more for ``app`` (its lease stays until it ends).
    Armed on every schedule's refresher; the first to get there is killed, once."""

    def __init__(self, app: str, clock: ManualClock, *, landed: bool, on_kill: Callable[[], None]):
        self.key = CredentialKey(app, ACCESS_TOKEN)
        self.clock, self.landed, self.on_kill = clock, landed, on_kill
        self.at: float | None = None

    def arm(self, service: RefreshService) -> None:
        real = service.store.update
        dead: list[bool] = []

        def update(key: CredentialKey, update: Any, **extra: Any) -> Any:
            if key == self.key and dead:
                raise Killed()
            if (
                key == self.key
                and self.at is None
                and extra.get("ReturnValues") == "ALL_NEW"
                and "ReturnValuesOnConditionCheckFailure" in extra
            ):
                # Lease.commit, its only such write (the lease, taken with the first call's
                # count, returns ALL_OLD).
                self.at = self.clock.now()
                dead.append(True)
                self.on_kill()
                if self.landed:
                    real(key, update, **extra)
                raise Killed()
            return real(key, update, **extra)

        service.store.update = update  # type: ignore[method-assign]


@pytest.mark.parametrize(
    ("landed", "down_minutes"),
    [(False, 0), (False, 10), (True, 0), (True, 10)],
    ids=[
        "killed-before-the-write,next-run-in-the-overlap",
        "killed-before-the-write,next-run-after-the-overlap",
        "killed-after-the-write,next-run-in-the-overlap",
        "killed-after-the-write,next-run-after-the-overlap",
    ],
)
def test_a_refresher_killed_between_wechats_answer_and_its_write(
    world: World, landed: bool, down_minutes: int
) -> None:
    """WeChat rotates the merchant's refresh token in the answer the refresher never
    stores (or stores, and dies before anything else). The next run must go on with the
    refresh token WeChat issued last: within its 5-minute overlap with the old one, the old
    one still works; after it, 61023 and reconciliation."""
    sim, clock = world.sim, world.clock
    merchants = MERCHANTS[:3]
    victim = app_id(merchants[0])
    consumers = [world.consumer(merchants[0]), world.consumer(merchants[0]),
                 world.consumer(merchants[1])]  # fmt: skip
    schedules = Schedules(world, consumers, consumers_from=clock.now() + 120)
    schedules.run_minutes(2, authorize_gradually(world, merchants))
    sim.platform.force_refresh_token_rotation(COMP, merchants[0])

    def stop() -> None:
        schedules.down = down_minutes > 0

    doom = Doom(victim, clock, landed=landed, on_kill=stop)
    armed: list[float] = []

    def crash(minute: int, at: float) -> None:
        if not armed and world.record(victim).remaining(at + 60) < RENEW_BELOW:
            armed.append(at)  # it is refreshed during this minute, by one or the other
            for schedule in ("fast", "main"):
                schedules.refreshers[schedule] = schedules.environment()
                doom.arm(schedules.refreshers[schedule])
        if doom.at is not None:
            schedules.down = at < doom.at + down_minutes * 60

    schedules.run_minutes(110, crash)
    assert doom.at is not None, "the refresher was never killed"
    crashed = doom.at
    rejected = answers(sim, AUTHORIZER_TOKEN, merchants[0])
    after = [(t - crashed, o) for t, o in schedules.outcomes(victim) if t > crashed]
    refreshed = [(t, o) for t, o in after if o.status is Status.REFRESHED]
    first_run = after[0] if after else None
    record = world.record(victim)
    listed = [r.time - crashed for r in sim.call_log if r.endpoint == AUTHORIZER_LIST]
    refetched = [
        r.time
        for r in sim.call_log
        if r.endpoint == AUTHORIZER_TOKEN
        and (r.note or "").startswith(merchants[0])
        and r.time > crashed  # the killed fetch itself was answered at ``crashed``
        and r.errcode == 0
    ]
    victims = schedules.fleet.consumers[:2]
    firsts = [c.first_failure for c in victims if c.first_failure is not None]
    lasts = [c.last_failure for c in victims if c.last_failure is not None]
    window = (min(firsts) - crashed, max(lasts) - crashed) if firsts else None
    refetch = refetched[0] - crashed if refetched else None
    figures = (
        f"killed {'after' if landed else 'before'} the write at +{crashed - schedules.start:.0f} s"
        f", refresher down {down_minutes} min; then the victim's outcomes "
        f"{[(f'+{t:.0f} s', str(o.status), o.error_code) for t, o in after[:3]]}, first "
        f"refreshed by the run of +{refreshed[0][0] if refreshed else None} s (WeChat called "
        f"+{refetch if refetch is None else round(refetch)} s), reported as a foreign rotation: "
        f"{any(o.foreign_rotation for _, o in refreshed[:1])}; api_authorizer_token answers "
        f"{dict(rejected)}; api_get_authorizer_list at {[f'{t:+.0f} s' for t in listed]}; "
        f"stored refresh token {record.refresh_token_fp}, WeChat's newest "
        f"{world.newest_refresh_fp(merchants[0])}; {describe(schedules.fleet)}; the victim's "
        f"consumers failed {window and f'from +{window[0]:.0f} to +{window[1]:.0f} s'}"
    )
    print(figures)

    assert record.refresh_token_fp == world.newest_refresh_fp(merchants[0]), figures
    assert record.value, figures
    assert sim.is_token_accepted(record.value), figures
    assert first_run is not None, figures
    assert not first_run[1].failed, figures
    assert refreshed, f"never refreshed again after the kill: {figures}"
    assert not schedules.failed(), f"{schedules.failed()[:3]}; {figures}"
    assert not schedules.fleet.consumers[2].failures, figures  # another merchant's
    if landed:
        # Stored with WeChat's answer: nothing to recover, the next renewal is on schedule.
        assert rejected[61023] == 0, figures
        assert len(listed) == 1, figures
        assert refreshed[0][0] >= 45 * 60, figures
        assert window is None, figures
        return
    assert refetch is not None, figures
    # WeChat keeps two tokens: the fetch it answered made the consumers' token the older
    # one, and the next fetch evicts it at once (a third); they switch within their cache.
    assert window is not None, figures
    assert window[1] <= refetch + CACHE_SECONDS + TICK, figures
    if not down_minutes:
        # The next run waits out the dead lease (90 s) and refreshes with the old refresh
        # token, still in its overlap: WeChat answers with the new one, which is stored.
        assert refetch <= 90 + 2 * TICK, figures
        assert rejected[61023] == 0, figures
        assert len(listed) == 1, figures
        assert window[0] >= refetch, figures
    else:
        # The old refresh token is past its overlap: 61023, reconciliation, and the victim
        # refreshed in that same first run.
        assert rejected[61023] == 1, figures
        assert len(listed) == 2, figures
        assert refreshed[0][0] == first_run[0] <= down_minutes * 60 + 120, figures
        assert window[0] >= GRACE - SKEW - TICK, figures


# --------------------------------------------------------------------------- d. wiped


def test_a_wiped_refresh_token_is_restored_by_reconciliation(world: World) -> None:
    sim, clock = world.sim, world.clock
    merchants = MERCHANTS[:3]
    victim = app_id(merchants[0])
    consumers = [world.consumer(merchants[0]), world.passive_consumer(merchants[0])]
    schedules = Schedules(world, consumers, consumers_from=clock.now() + 120)
    schedules.run_minutes(5, authorize_gradually(world, merchants))
    before = world.record(victim)
    # Someone wipes it (a bad migration, a hand edit, a restore of an old backup).
    world.deployment._boto3().update_item(
        TableName=world.deployment.table,
        Key=CredentialKey(victim, ACCESS_TOKEN).item_key(),
        UpdateExpression="REMOVE refresh_token_cipher, refresh_token_fp, refresh_token_at",
    )
    world.deployment.sync(victim)
    listed_before = sim.calls(AUTHORIZER_LIST)
    schedules.run_minutes(60)
    refreshed = [(t, o) for t, o in schedules.outcomes(victim) if o.status is Status.REFRESHED]
    record = world.record(victim)
    figures = (
        f"wiped at +5 min; victim refreshed at "
        f"{[f'+{(t - schedules.start) / 60:.0f} min' for t, _ in refreshed]}; "
        f"api_get_authorizer_list calls since the wipe {sim.calls(AUTHORIZER_LIST) - listed_before}"
        f"; api_authorizer_token answers {dict(answers(sim, AUTHORIZER_TOKEN, merchants[0]))}; "
        f"refresh token stored {record.refresh_token_fp} (before the wipe "
        f"{before.refresh_token_fp}), WeChat's newest {world.newest_refresh_fp(merchants[0])}; "
        f"{describe(schedules.fleet)}; outcomes {dict(schedules.statuses())}"
    )
    print(figures)

    assert refreshed, figures
    assert record.refresh_token_cipher, figures
    assert record.refresh_token_fp == world.newest_refresh_fp(merchants[0]), figures
    assert sim.calls(AUTHORIZER_LIST) - listed_before == 1, figures
    assert not schedules.failed(), f"{schedules.failed()[:3]}; {figures}"
    assert not schedules.fleet.failures, figures


# --------------------------------------------------------------------------- e. revoked


def test_an_unauthorized_merchant_is_retired_and_its_consumers_told_why(world: World) -> None:
    sim, clock = world.sim, world.clock
    merchants = MERCHANTS[:3]
    victim, other = app_id(merchants[0]), app_id(merchants[1])
    reader, client, bystander = (world.consumer(merchants[0]),
                                 world.passive_consumer(merchants[0]),
                                 world.consumer(merchants[1]))  # fmt: skip
    schedules = Schedules(world, [reader, client, bystander], consumers_from=clock.now() + 120)
    revoked_at = schedules.start + 15 * 60
    settled: dict[str, tuple[int, Counter[int]]] = {}

    def revoke(minute: int, at: float) -> None:
        if at == revoked_at:
            assert sim.platform.unauthorize(COMP, merchants[0])
        if at == revoked_at + 3 * 60:  # the refresher's next run, plus the layer's cache
            for name, consumer in (("reader", reader), ("client", client)):
                settled[name] = (consumer.calls, Counter(consumer.failures))

    retired: list[float] = []

    def retirement(run: Run) -> None:
        """The first run after which the victim's record is retired: the planner run's
        own step (the pending event), which reports no outcome for the victim."""
        if not retired and world.record(victim).is_revoked:
            retired.append(run.at)

    schedules.after_run = retirement
    schedules.run_minutes(15 + 180, both(authorize_gradually(world, merchants), revoke))
    assert retired, "the victim was never retired"
    retired_at = retired[0]
    visits = Counter(str(o.status) for t, o in schedules.outcomes(victim) if t >= retired_at)
    after = authorizer_calls(sim, since=retired_at + 1)
    stored = world.record(victim)
    late = {
        name: (consumer.calls - settled[name][0], consumer.failures - settled[name][1])
        for name, consumer in (("reader", reader), ("client", client))
    }
    revoked_errors = [e for e in reader.errors + client.errors if "AuthorizationRevoked" in e]
    figures = (
        f"revoked at +15 min, retired by the run at +{(retired_at - revoked_at):.0f} s; "
        f"api_authorizer_token after that: {len(after.get(merchants[0], []))} for the "
        f"revoked merchant, {len(after.get(merchants[1], []))} for another; from 3 minutes "
        f"after the revocation: {late}; before: reader {dict(reader.failures - late['reader'][1])}"
        f", client {dict(client.failures - late['client'][1])}; error: "
        f"{revoked_errors[:1]}; the other's consumer {dict(bystander.failures) or 'no failures'}"
        f"; the victim's outcomes in scheduled runs since {dict(visits) or 'none'}"
    )
    print(figures)

    assert stored.is_revoked, figures
    assert stored.value is None, figures
    assert not stored.refresh_token_cipher, figures
    assert retired_at - revoked_at <= 64, figures
    assert merchants[0] not in after, f"still refreshed after the revocation: {figures}"
    assert len(after.get(merchants[1], [])) >= 3, figures
    assert not bystander.failures, figures
    for name, (calls, failures) in late.items():
        assert calls > 0, figures
        assert failures == Counter({TOKEN_ERROR: calls}), f"{name}: {figures}"
    assert revoked_errors, figures
    message = revoked_errors[0]
    for words in (victim, "revoked", "authorize the platform again"):
        assert words in message, figures
    assert not schedules.failed(), f"{schedules.failed()[:3]}; {figures}"
    # The other merchant's token is untouched by it.
    assert world.record(other).value, figures


# --------------------------------------------------------------------------- f. forged


@dataclass(frozen=True)
class Attempt:
    what: str
    method: str
    params: dict[str, str]
    body: bytes


def _replay(request: httpx.Request, what: str) -> Attempt:
    params = dict(request.url.params)
    return Attempt(what, "POST", params, request.content)


def _forgeries(world: World, authentic: list[httpx.Request]) -> list[Attempt]:
    """180 requests no one but WeChat could have sent correctly, or that are broken."""
    now = str(int(world.clock.now()))
    key = PushKey(MSG_TOKEN, AES_KEY)
    wrong = PushKey("attackersOwnToken", "A" * 43)
    inner = (
        f"<xml><AppId><![CDATA[{COMP}]]></AppId><CreateTime>{now}</CreateTime>"
        "<InfoType><![CDATA[component_verify_ticket]]></InfoType>"
        "<ComponentVerifyTicket><![CDATA[ticket@@@forged]]></ComponentVerifyTicket></xml>"
    )

    def signed(
        number: int, signer: PushKey, appid: str = COMP, encrypt: str | None = None
    ) -> tuple[dict[str, str], bytes]:
        nonce = str(7_000_000_000 + number)
        sealed = encrypt or signer.seal(appid, inner.replace(COMP, appid), bytes(16))
        params = {"timestamp": now, "nonce": nonce, "encrypt_type": "aes",
                  "msg_signature": signer.sign(now, nonce, sealed)}  # fmt: skip
        body = (
            f"<xml><AppId><![CDATA[{COMP}]]></AppId><Encrypt><![CDATA[{sealed}]]></Encrypt></xml>"
        )
        return params, body.encode()

    attempts: list[Attempt] = []
    for i in range(30):  # a real push with a made-up signature
        request = authentic[i % len(authentic)]
        params = dict(request.url.params) | {"msg_signature": f"{i:040x}"}
        attempts.append(Attempt("forged signature", "POST", params, request.content))
    for i in range(20):  # signed and sealed with a key that is not the platform's
        attempts.append(Attempt("wrong key", "POST", *signed(i, wrong)))
    for i in range(20):  # a real push whose ciphertext was altered
        request = authentic[i % len(authentic)]
        head, _, tail = request.content.partition(b"<Encrypt><![CDATA[")
        body = head + b"<Encrypt><![CDATA[" + (b"A" if tail[:1] != b"A" else b"B") + tail[1:]
        attempts.append(Attempt("tampered ciphertext", "POST", dict(request.url.params), body))
    for i in range(20):  # addressed to a platform the registry does not list
        params, body = signed(100 + i, key)
        body = body.replace(COMP.encode(), b"wxnotourplatform01", 1)
        attempts.append(Attempt("unknown AppId", "POST", params, body))
    for i in range(5):  # sealed for another AppId (the signature is right)
        attempts.append(
            Attempt("AppId mismatch", "POST", *signed(200 + i, key, "wxsomeoneelse001"))
        )
    for i in range(5):  # the signature is right, the ciphertext is not AES of anything
        garbage = base64.b64encode(bytes(range(i, i + 64))).decode()
        attempts.append(
            Attempt("garbage ciphertext", "POST", *signed(300 + i, key, encrypt=garbage))
        )
    good_params = dict(authentic[0].url.params)
    malformed = [b"not xml at all", b"<xml><AppId>x</AppId>", b"{\"json\": true}",
                 b"<xml><AppId><![CDATA[" + COMP.encode() + b"]]></AppId></xml>",
                 b"<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'a'>]><xml>&a;</xml>"]  # fmt: skip
    for i in range(20):
        attempts.append(Attempt("malformed body", "POST", good_params, malformed[i % 5]))
    for i in range(10):  # a parameter missing or wrong
        params = dict(good_params)
        if i % 3 == 0:
            params.pop("msg_signature")
        elif i % 3 == 1:
            params.pop("timestamp")
        else:
            params["encrypt_type"] = "raw"
        attempts.append(Attempt("bad parameters", "POST", params, authentic[0].content))
    for _ in range(5):
        attempts.append(Attempt("oversized", "POST", good_params, b"<xml>" + b"A" * 70_000))
    for _ in range(5):
        attempts.append(Attempt("GET", "GET", good_params, b""))
    return attempts


def test_forged_replayed_and_malformed_pushes_store_nothing(world: World) -> None:
    sim, clock = world.sim, world.clock
    schedules = Schedules(world, [], consumers_from=clock.now() + DAY)
    schedules.run_minutes(3, authorize_gradually(world, MERCHANTS[:2]))
    authentic = [r for r in world.pushed if r.method == "POST"]
    assert len(authentic) == 3, [str(r.url) for r in authentic]
    before = world.items()
    attempts = [_replay(authentic[i % 3], "replay") for i in range(40)]
    attempts += _forgeries(world, authentic)
    answered: list[tuple[Attempt, int, str]] = []
    with httpx.Client(base_url=world.callback.url, timeout=5) as http:

        def send(attempt: Attempt) -> None:
            response = http.request(
                attempt.method,
                "/",
                params=attempt.params,
                content=attempt.body,
                headers={"Content-Type": "text/xml; charset=utf-8"},
            )
            answered.append((attempt, response.status_code, response.text))

        for attempt in attempts:
            send(attempt)
        clock.advance(400)  # the same authentic pushes, now too old
        for i in range(20):
            send(_replay(authentic[i % 3], "stale replay"))
    after = world.items()
    table: Counter[tuple[str, int, str]] = Counter((a.what, s, t) for a, s, t in answered)
    figures = (
        f"{len(answered)} requests: "
        + "; ".join(
            f"{what} -> {status} {text!r} x{n}" for (what, status, text), n in table.items()
        )
        + f"; items before {len(before)}, after {len(after)}"
    )
    print(figures)

    assert len(answered) == 200, figures
    assert after == before, f"something was stored: {figures}"
    for attempt, status, text in answered:
        if attempt.what == "replay":
            assert (status, text) == (200, "success"), figures
        else:
            assert 400 <= status < 500, f"{attempt.what} answered {status}: {figures}"
    assert sim.platform.stats()["deliveries_ok"] == 3, figures
