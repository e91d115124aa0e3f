"""The Node.js consumer layer against the real local world: DynamoDB Local, the WeChat
simulator over HTTP and a stand-in for Lambda's Invoke API answered by the Python refresher's
passive entry point, all on 127.0.0.1, all stopped after.

The Node side runs with ``node --test`` (layers/wechat_token_node/test/integration), its SDK
clients pointed at the local endpoints (``AWS_ENDPOINT_URL_DYNAMODB``,
``AWS_ENDPOINT_URL_LAMBDA``, dummy credentials). These tests fail, never skip, without Node.js
or the layer's development install (``make node-layer``), and they fail if node skips a test.
The example Node.js function runs through scripts/local_invoke.py from the SAM build.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from token_refresher.service import RefreshService
from token_refresher.triggers import Scheduled, parse_passive_event
from wechat_token import TokenError, TokenReader, fingerprint
from wechat_token import errors as python_errors
from wechat_token import settings as python_settings
from wechat_token.client import API_BASE_URL_ENV
from wechat_token.jssdk import sign
from wechat_token.passive import PASSIVE_BACKOFF_SECONDS, REPLACED_OUTCOMES
from wechat_token.reader import SAFE_MAX_WHY
from wechat_token.record import (
    FIELD_NAMES,
    INVALID_TOKEN_CODES,
    JSAPI_TICKET,
    RETIRED_ATTRIBUTES,
    STRICT_ENV,
    CredentialRecord,
    Kind,
)
from wechat_token.settings import DEFAULT_CACHE_SECONDS, SAFE_MAX_CACHE_SECONDS

from local_aws import LambdaInvokeServer, LocalTable
from local_aws.lambda_invoke import LambdaContext
from scripts.local_invoke import invoke, load_env_overrides
from simulator import CLASSIC_TOKEN, SimulatorServer, WeChatSimulator
from tests.support import local_refresher

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
NODE_LAYER = ROOT / "layers" / "wechat_token_node"
NODE_TESTS = NODE_LAYER / "test" / "integration"
BUILD = ROOT / ".aws-sam" / "build"
EVENTS = ROOT / "events"
APP = "wxnodeit00000001"
SECRET = "node-it-secret"
PASSIVE_FUNCTION = "PassiveRefreshFunction"
NODE_FUNCTION = "ExampleConsumerNodeFunction"
# WeChat's documented JS-SDK example values, signed with the stored ticket.
NONCE, TIMESTAMP, PAGE = "Wm3WZYTPz0wzccnW", 1414587457, "https://example.com/page?x=1"


@pytest.fixture(scope="module")
def node() -> str:
    executable = shutil.which("node")
    if executable is None:
        pytest.fail("Node.js is needed for the Node.js layer's tests: install node 20+", False)
    if not (NODE_LAYER / "node_modules" / "@aws-sdk" / "client-dynamodb").is_dir():
        pytest.fail(f"{NODE_LAYER} has no node_modules: run `make node-layer` (npm ci)", False)
    return executable


def _passive_function(service: RefreshService) -> Callable[[Any, LambdaContext], Any]:
    """functions/refresher/app.py's passive_handler, without Powertools' logging wrappers."""

    def handler(event: Any, context: LambdaContext) -> dict[str, Any]:
        summary = service.report(parse_passive_event(event), service.deadline(context))
        return summary.as_dict()

    return handler


@dataclass
class World:
    """DynamoDB Local, the simulator and the Lambda stand-in, with the refresher behind it."""

    table: LocalTable
    sim: WeChatSimulator
    wechat_url: str
    lambda_server: LambdaInvokeServer

    def stored(self, kind: str = "access_token") -> CredentialRecord:
        reader = TokenReader(self.table.name, client=self.table.dynamodb, passive_refresh=None)
        record = reader.read(APP, kind)
        assert record is not None
        assert record.value
        return record

    def token_calls(self) -> int:
        """Token fetches our refresher made (foreign fetches are counted apart)."""
        return self.sim.calls(CLASSIC_TOKEN, APP) - self.sim.foreign_fetches(APP)

    def node_env(self, **extra: str) -> dict[str, str]:
        """What a Node.js consumer in Lambda would have, pointed at the local world."""
        return {
            "PATH": os.environ.get("PATH", os.defpath),
            "HOME": os.environ.get("HOME", "/tmp"),
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_ENDPOINT_URL_DYNAMODB": self.table.endpoint_url,
            "AWS_ENDPOINT_URL_LAMBDA": self.lambda_server.endpoint_url,
            "TOKEN_TABLE_NAME": self.table.name,
            "WECHAT_APP_ID": APP,
            "WECHAT_API_BASE_URL": self.wechat_url,
            "PASSIVE_REFRESH_FUNCTION_NAME": PASSIVE_FUNCTION,
            "WECHAT_TOKEN_STRICT_RECORDS": "true",
            # The SDK warns that Node.js 20 is past its end of life (Lambda runs 22 and 24).
            "NODE_NO_WARNINGS": "1",
            **extra,
        }


def _world(token_table: LocalTable, sim: WeChatSimulator, **settings: Any) -> Iterator[World]:
    registry = {APP: {"secret": SECRET, "tickets": ["jsapi"]}}
    with SimulatorServer(sim) as server:
        service = local_refresher(
            table=token_table.name,
            endpoint_url=token_table.endpoint_url,
            wechat_base_url=server.base_url,
            registry=registry,
            clock=time.time,
            sleep=time.sleep,
            **settings,
        )
        outcomes = service.run(Scheduled())
        assert {str(o.outcome) for o in outcomes} == {"refreshed"}, outcomes
        functions = {PASSIVE_FUNCTION: _passive_function(service)}
        with LambdaInvokeServer(functions) as lambda_server:
            yield World(token_table, sim, server.base_url, lambda_server)


@pytest.fixture
def world(token_table: LocalTable) -> Iterator[World]:
    sim = WeChatSimulator(seed=13)
    sim.add_app(APP, SECRET)
    yield from _world(token_table, sim)


@pytest.fixture
def short_lived(token_table: LocalTable) -> Iterator[World]:
    """Tokens WeChat issues for 126 s: stored (less the 120 s skew margin) as valid for 6 s."""
    sim = WeChatSimulator(seed=14, token_lifetime=126, grace_seconds=60)
    sim.add_app(APP, SECRET)
    yield from _world(token_table, sim, expiry_skew_seconds=120)


@dataclass(frozen=True)
class TapSummary:
    tests: int
    passed: int
    failed: int
    skipped: int
    todo: int
    output: str


def _node_test(node: str, test_file: str, env: dict[str, str]) -> TapSummary:
    completed = subprocess.run(
        [node, "--test", "--test-reporter=tap", str(NODE_TESTS / test_file)],
        cwd=NODE_LAYER,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = completed.stdout + completed.stderr

    def count(name: str) -> int:
        found = re.findall(rf"^# {name} (\d+)$", completed.stdout, re.MULTILINE)
        assert found, f"no '# {name}' in node's TAP output:\n{output}"
        return int(found[-1])

    summary = TapSummary(
        count("tests"), count("pass"), count("fail"), count("skipped"), count("todo"), output
    )
    assert completed.returncode == 0, output
    assert summary.failed == 0, output
    assert summary.skipped == 0, f"node skipped tests:\n{output}"
    assert summary.todo == 0, output
    assert summary.passed == summary.tests > 0, output
    return summary


def _hidden_fields() -> set[str]:
    """The record's fields Python's repr leaves out: values, and what protects them."""
    return {field.name for field in dataclasses.fields(CredentialRecord) if not field.repr}


def test_node_and_python_layers_share_the_schema_and_the_numbers(node: str) -> None:
    probe = """
      import * as layer from "wechat-token";
      import { FIELDS, RETIRED_ATTRIBUTES, SECRET_FIELDS } from "./src/record.mjs";
      import * as settings from "./src/settings.mjs";
      console.log(JSON.stringify({
        fields: Object.keys(FIELDS).sort(),
        secret: [...SECRET_FIELDS].sort(),
        kinds: Object.values(layer.Kind).sort(),
        errors: Object.fromEntries(
          Object.entries(layer)
            .filter(([, v]) => typeof v === "function" && v.prototype instanceof layer.TokenError)
            .map(([name, v]) => [name, Object.getPrototypeOf(v).name]),
        ),
        retired: [...RETIRED_ATTRIBUTES].sort(),
        invalid: [...layer.INVALID_TOKEN_CODES].sort(),
        replaced: [...layer.REPLACED_OUTCOMES].sort(),
        backoff: layer.PASSIVE_BACKOFF_SECONDS,
        safeMax: layer.SAFE_MAX_CACHE_SECONDS,
        defaultCache: layer.DEFAULT_CACHE_SECONDS,
        env: [settings.TABLE_ENV, settings.APP_ID_ENV, settings.CACHE_SECONDS_ENV,
              settings.PASSIVE_FUNCTION_ENV, settings.STRICT_ENV, settings.API_BASE_URL_ENV],
        why: settings.SAFE_MAX_WHY,
        fingerprint: layer.fingerprint("令牌 token"),
        signature: layer.sign("ticket", "nonce", 1414587457, "https://example.com/a?b=1#c"),
      }));
    """
    completed = subprocess.run(
        [node, "--input-type=module", "-e", probe],
        cwd=NODE_LAYER,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    found = json.loads(completed.stdout)
    assert found["fields"] == sorted(FIELD_NAMES)
    # What Python's repr hides, Node's JSON, String() and inspect hide.
    assert found["secret"] == sorted(_hidden_fields())
    assert found["kinds"] == sorted(str(kind) for kind in Kind)
    # The same error classes under the same parents (TokenError's own parent aside).
    assert found["errors"] == {
        name: cls.__mro__[1].__name__
        for name, cls in vars(python_errors).items()
        if isinstance(cls, type) and issubclass(cls, TokenError) and cls is not TokenError
    }
    assert found["retired"] == sorted(RETIRED_ATTRIBUTES)
    assert found["invalid"] == sorted(INVALID_TOKEN_CODES)
    assert found["replaced"] == sorted(REPLACED_OUTCOMES)
    assert found["backoff"] == PASSIVE_BACKOFF_SECONDS
    assert found["safeMax"] == SAFE_MAX_CACHE_SECONDS
    assert found["defaultCache"] == DEFAULT_CACHE_SECONDS
    assert found["env"] == [
        python_settings.TABLE_ENV,
        python_settings.APP_ID_ENV,
        python_settings.CACHE_SECONDS_ENV,
        python_settings.PASSIVE_FUNCTION_ENV,
        STRICT_ENV,
        API_BASE_URL_ENV,
    ]
    assert found["why"] == SAFE_MAX_WHY
    assert found["fingerprint"] == fingerprint("令牌 token")
    assert found["signature"] == sign("ticket", "nonce", 1414587457, "https://example.com/a?b=1#c")


def test_two_hundred_node_consumers_hit_by_40001_make_one_wechat_call(
    node: str, world: World
) -> None:
    stale = world.stored().value
    _node_test(node, "storm.test.mjs", world.node_env())
    fresh = world.stored().value
    assert fresh != stale
    # The Node consumers reported once (one process: one report per credential at a time),
    # and the refresher, having verified the rejection with WeChat, fetched once.
    assert world.lambda_server.count(PASSIVE_FUNCTION) == 1
    [report] = world.lambda_server.invocations
    assert report.event == {
        "app_id": APP,
        "kind": "access_token",
        "stale_token": fingerprint(stale or ""),
        "errcode": 40001,
    }
    assert report.error is None
    assert world.sim.is_token_accepted(fresh or "")


def test_python_refresher_writes_node_reads(node: str, short_lived: World) -> None:
    record = short_lived.stored()
    ticket = short_lived.stored(JSAPI_TICKET)
    expected = {name: getattr(record, name) for name in FIELD_NAMES if name not in _hidden_fields()}
    expected["fingerprint"] = record.fingerprint()
    signature = {
        "url": PAGE,
        "nonceStr": NONCE,
        "timestamp": TIMESTAMP,
        "signature": sign(ticket.value or "", NONCE, TIMESTAMP, PAGE),
    }
    env = short_lived.node_env(
        EXPECTED_RECORD=json.dumps(expected),
        EXPECTED_TICKET_FINGERPRINT=ticket.fingerprint() or "",
        EXPECTED_SIGNATURE=json.dumps(signature),
    )
    assert record.expires_at is not None
    assert record.expires_at - time.time() > 3, "the token must outlive node's start-up"
    _node_test(node, "cross_language.test.mjs", env)
    assert short_lived.lambda_server.invocations == [], "no passive refresh was permitted"


# ---------------------------------------------------------------- the example Node.js function


@pytest.fixture(scope="module")
def build_dir() -> Path:
    if not (BUILD / NODE_FUNCTION / "index.mjs").is_file():
        pytest.fail(f"{BUILD} has no {NODE_FUNCTION}: run `make build` (sam build)", False)
    return BUILD


def _invoke_example(world: World, build_dir: Path) -> dict[str, Any]:
    env = load_env_overrides(EVENTS / "env.json", NODE_FUNCTION)
    env |= {
        "TOKEN_TABLE_NAME": world.table.name,
        "AWS_ENDPOINT_URL": world.table.endpoint_url,
        "AWS_ENDPOINT_URL_LAMBDA": world.lambda_server.endpoint_url,
        "WECHAT_API_BASE_URL": world.wechat_url,
        "NODE_NO_WARNINGS": "1",
    }
    event = json.loads((EVENTS / "consumer_node.json").read_text()) | {"app_id": APP}
    result = invoke(NODE_FUNCTION, event, env, build_dir=build_dir, timeout=60)
    assert result.ok, result.stdout + result.stderr
    for token in (world.stored().value or "", *world.sim.valid_tokens(APP)):
        assert token not in result.stdout + result.stderr, "a token was printed or returned"
    payload: dict[str, Any] = result.payload
    return payload


def test_example_node_function_runs_under_the_local_runner(
    node: str, world: World, build_dir: Path
) -> None:
    stored = world.stored()
    answer = _invoke_example(world, build_dir)
    assert answer == {
        "app_id": APP,
        "token_fingerprint": stored.fingerprint(),
        "ip_ranges": answer["ip_ranges"],
        "passive_refresh": True,
    }
    assert answer["ip_ranges"] > 0
    assert world.lambda_server.invocations == []


def test_example_node_function_recovers_a_token_killed_behind_its_back(
    node: str, world: World, build_dir: Path
) -> None:
    stale = world.stored()
    world.sim.foreign_fetch(APP)
    world.sim.foreign_fetch(APP)  # the stored token is now evicted
    before = world.token_calls()
    answer = _invoke_example(world, build_dir)
    fresh = world.stored()
    assert fresh.fingerprint() != stale.fingerprint()
    assert answer["token_fingerprint"] == fresh.fingerprint()
    assert world.token_calls() - before == 1
    [report] = world.lambda_server.invocations
    assert report.event["stale_token"] == stale.fingerprint()
