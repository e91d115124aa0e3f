"""The push callback's latency (PlatformCallbackFunction), cold and warm, from the built
function (``make build``) against DynamoDB Local, without Docker.

Usage::

    .venv/bin/python -m bench.callback_latency [--cold 10] [--warm 200] [--json]

What WeChat waits for is the callback's answer, within 5 s. Measured here:

1. **cold, through the Docker-free runner**: ``scripts/local_invoke.invoke`` of a signed
   verify-ticket push, ``--cold`` times, each a fresh isolated interpreter (Lambda's
   sys.path, the built code, no site-packages). The wall time includes the runner's own
   work (parsing the built template, starting the interpreter), so it bounds the cold
   answer from above;
2. **the same, broken down**, in one fresh interpreter set up the way the runner sets it
   up (same isolation, same environment): importing ``app`` (Lambda's init phase), the
   first invocation (boto3 clients, GetSecretValue, PutItem, UpdateItem), then ``--warm``
   warm invocations of fresh pushes (p50/p95/p99), and as many forged ones (a bad
   signature: refused before any write).

DynamoDB is DynamoDB Local (Java 17, ``npm ci``); Secrets Manager is moto's server; both on
127.0.0.1. ``sam build`` vendors arm64 wheels: on another machine, the function's native
extensions are swapped for this interpreter's copies of the same versions
(``local_aws.host_build``). Loopback latency is far below AWS's in-region latency
(single-digit milliseconds per DynamoDB call), so add those for a deployed estimate.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from botocore.config import Config

from bench.stats import machine, quantile
from local_aws import DynamoDBLocal, MotoServer, aws_env, create_token_table, dynamodb_client
from local_aws.host_build import host_runnable_build
from local_aws.resources import create_registry_secret, secretsmanager_client
from scripts.local_invoke import (
    RUNTIME_PACKAGES,
    invoke,
    load_env_overrides,
    load_template,
    resolve_function,
)
from scripts.platform_push_event import (
    DEMO_COMPONENT_APPID,
    demo_registry_entry,
    push_event,
    ticket_xml,
)

REPO = Path(__file__).resolve().parent.parent
BUILD = REPO / ".aws-sam" / "build"
FUNCTION = "PlatformCallbackFunction"
TABLE = "wechat-token-local"
SECRET = "wechat-token/apps"

# Runs in the isolated child: init, one cold invocation, then warm ones; prints JSON.
_CHILD = r"""
import importlib, json, os, sys, time
config = json.loads(sys.argv[1])
sys.path[:0] = config["paths"]
sys.path.extend(config["append_paths"])
events = json.loads(sys.stdin.read())
result_fd = os.dup(1)
os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # the function's log lines

class Context:
    function_name = "PlatformCallbackFunction"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:PlatformCallbackFunction"
    memory_limit_in_mb = "256"
    aws_request_id = "bench"
    def get_remaining_time_in_millis(self):
        return 4000

started = time.perf_counter()
app = importlib.import_module("app")
init_ms = (time.perf_counter() - started) * 1000

def call(event):
    t = time.perf_counter()
    answer = app.lambda_handler(event, Context())
    return (time.perf_counter() - t) * 1000, answer["statusCode"], answer["body"]

first = call(events["cold"])
warm = [call(e) for e in events["warm"]]
forged = [call(e) for e in events["forged"]]
os.write(result_fd, json.dumps({"init_ms": init_ms, "first": first, "warm": warm,
                                "forged": forged}).encode())
"""


def _ticket_event(now: int, serial: int) -> dict[str, Any]:
    # Increasing CreateTimes: every push is newer and stored (the full write path).
    ticket = f"ticket@@@bench-fake-{serial:06d}"
    return push_event(ticket_xml(DEMO_COMPONENT_APPID, now + serial, ticket), timestamp=now)


def _forged(event: dict[str, Any]) -> dict[str, Any]:
    forged: dict[str, Any] = json.loads(json.dumps(event))
    forged["queryStringParameters"]["msg_signature"] = "0" * 40
    return forged


def _runtime_packages(directory: Path) -> str:
    """The packages Lambda's Python runtime provides, linked into ``directory`` (as the
    runner does)."""
    import importlib.util  # noqa: PLC0415

    for name in RUNTIME_PACKAGES:
        found = importlib.util.find_spec(name)
        if found is None:
            continue
        if found.submodule_search_locations:
            source = Path(next(iter(found.submodule_search_locations)))
            (directory / name).symlink_to(source, target_is_directory=True)
        elif found.origin:
            (directory / Path(found.origin).name).symlink_to(found.origin)
    return str(directory)


def _breakdown(build: Path, env: dict[str, str], warm: int) -> dict[str, Any]:
    spec = resolve_function(load_template(build / "template.yaml"), build, FUNCTION)
    now = int(time.time())
    events = {
        "cold": _ticket_event(now, 0),
        "warm": [_ticket_event(now, i) for i in range(1, warm + 1)],
        "forged": [_forged(_ticket_event(now, 10**6 + i)) for i in range(warm)],
    }
    child_env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "AWS_LAMBDA_FUNCTION_NAME": FUNCTION,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        **spec.environment,
        **env,
    }
    with tempfile.TemporaryDirectory(prefix="callback-bench-runtime-") as runtime:
        config = {
            "paths": [str(spec.code_dir)],
            "append_paths": [_runtime_packages(Path(runtime))],
        }
        started = time.perf_counter()
        completed = subprocess.run(
            [sys.executable, "-I", "-B", "-S", "-c", _CHILD, json.dumps(config)],
            input=json.dumps(events),
            capture_output=True,
            text=True,
            env=child_env,
            cwd=spec.code_dir,
            timeout=600,
            check=False,
        )
        process_ms = (time.perf_counter() - started) * 1000
    if completed.returncode != 0:
        raise RuntimeError(f"the measuring interpreter failed:\n{completed.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(completed.stdout)
    result["process_ms"] = process_ms
    return result


def _cold_runs(build: Path, env: dict[str, str], runs: int) -> list[float]:
    walls: list[float] = []
    for serial in range(runs):
        event = _ticket_event(int(time.time()), 10**7 + serial)
        started = time.perf_counter()
        outcome = invoke(FUNCTION, event, env, build_dir=build)
        walls.append((time.perf_counter() - started) * 1000)
        payload = outcome.payload if isinstance(outcome.payload, dict) else {}
        if not outcome.ok or payload.get("body") != "success":
            raise RuntimeError(f"cold invocation failed: {outcome.payload}\n{outcome.stderr}")
    return walls


def _raw_dynamodb(endpoint_url: str, rounds: int) -> list[float]:
    """The two writes of a stored push, alone: what DynamoDB Local itself costs."""
    # platform_callback.wiring.AWS_CONFIG (the function's package is not importable here).
    config = Config(connect_timeout=1, read_timeout=1, retries={"mode": "standard"})
    client = dynamodb_client(endpoint_url, config=config)
    samples: list[float] = []
    for _ in range(rounds):
        started = time.perf_counter()
        client.put_item(
            TableName=TABLE,
            Item={"app_id": {"S": "push-nonce#bench"}, "kind": {"S": f"raw:{time.time_ns()}"}},
            ConditionExpression="attribute_not_exists(app_id)",
        )
        client.update_item(
            TableName=TABLE,
            Key={"app_id": {"S": "bench-raw"}, "kind": {"S": "component_verify_ticket"}},
            UpdateExpression="SET #v = :v, create_time = :t",
            ConditionExpression="attribute_not_exists(create_time) OR create_time < :t",
            ExpressionAttributeNames={"#v": "value"},
            ExpressionAttributeValues={":v": {"S": "x"}, ":t": {"N": str(time.time_ns())}},
        )
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def _percentiles(samples: list[float]) -> dict[str, float]:
    return {
        "p50": round(quantile(samples, 0.50), 2),
        "p95": round(quantile(samples, 0.95), 2),
        "p99": round(quantile(samples, 0.99), 2),
        "max": round(max(samples), 2),
        "n": len(samples),
    }


def measure(cold: int, warm: int) -> dict[str, Any]:
    if not (BUILD / FUNCTION).is_dir():
        raise SystemExit(f"{BUILD / FUNCTION} is missing: run `make build` first")
    with DynamoDBLocal() as ddb, MotoServer() as moto, tempfile.TemporaryDirectory() as tmp:
        create_token_table(dynamodb_client(ddb.endpoint_url), TABLE)
        create_registry_secret(
            secretsmanager_client(moto.endpoint_url),
            SECRET,
            {DEMO_COMPONENT_APPID: demo_registry_entry()},
        )
        build = host_runnable_build(BUILD, Path(tmp) / "build", [FUNCTION])
        env = {
            **load_env_overrides(REPO / "events" / "env.json", FUNCTION),
            **aws_env(moto.endpoint_url, dynamodb_endpoint_url=ddb.endpoint_url),
            "TOKEN_TABLE_NAME": TABLE,
            "WECHAT_APPS_SECRET_ID": SECRET,
            "LOG_LEVEL": "INFO",
        }
        load_template(build / "template.yaml")  # imports cfn-lint once, as a warm runner has
        started = time.perf_counter()
        load_template(build / "template.yaml")
        template_ms = (time.perf_counter() - started) * 1000
        walls = _cold_runs(build, env, cold)
        # DynamoDB Local alone, before and after (its JVM keeps warming up): the bracket.
        raw = _raw_dynamodb(ddb.endpoint_url, warm // 2)
        parts = _breakdown(build, env, warm)
        raw += _raw_dynamodb(ddb.endpoint_url, warm - warm // 2)
    warm_ok = all(status == 200 and body == "success" for _, status, body in parts["warm"])
    forged_ok = all(status == 403 for _, status, _ in parts["forged"])
    if not (warm_ok and forged_ok and parts["first"][1] == 200):
        raise RuntimeError("an invocation answered something unexpected")
    return {
        "machine": machine(),
        "cold_local_invoke_wall_ms": _percentiles(walls),
        "runner_template_parse_ms": round(template_ms, 1),
        "init_import_ms": round(parts["init_ms"], 1),
        "first_invocation_ms": round(parts["first"][0], 1),
        "cold_total_ms": round(parts["init_ms"] + parts["first"][0], 1),
        "warm_ms": _percentiles([ms for ms, _, _ in parts["warm"]]),
        "forged_warm_ms": _percentiles([ms for ms, _, _ in parts["forged"]]),
        "dynamodb_local_put_plus_update_ms": _percentiles(raw),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.callback_latency")
    parser.add_argument("--cold", type=int, default=10, help="fresh-process invocations")
    parser.add_argument("--warm", type=int, default=200, help="warm invocations")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args(argv)
    report = measure(args.cold, args.warm)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    walls = report["cold_local_invoke_wall_ms"]
    warm, forged = report["warm_ms"], report["forged_warm_ms"]
    raw = report["dynamodb_local_put_plus_update_ms"]
    host = report["machine"]

    def spread(p: dict[str, float]) -> str:
        return f"p50 {p['p50']:.2f} ms, p95 {p['p95']:.2f} ms, p99 {p['p99']:.2f} ms"

    lines = [
        "PlatformCallbackFunction latency (built function, DynamoDB Local, moto Secrets Manager)",
        f"machine: {host.get('CPU', '?')}, {host.get('cores', '?')} cores, {host.get('Python')}",
        f"cold, scripts/local_invoke.invoke, a fresh interpreter each (n={walls['n']}):",
        f"    wall p50 {walls['p50']:.0f} ms, p95 {walls['p95']:.0f} ms, max {walls['max']:.0f} ms",
        f"    (of which the runner parsing the built template: "
        f"{report['runner_template_parse_ms']:.0f} ms)",
        "cold, broken down (one fresh isolated interpreter):",
        f"    init: import app, boto3 clients   {report['init_import_ms']:.1f} ms",
        f"    first invocation                  {report['first_invocation_ms']:.1f} ms"
        "  (GetSecretValue, PutItem, UpdateItem)",
        f"    init + first                      {report['cold_total_ms']:.1f} ms",
        f"warm, a valid ticket push, stored (n={warm['n']}):",
        f"    {spread(warm)}, max {warm['max']:.2f} ms",
        f"warm, a forged push (bad signature), refused (n={forged['n']}):",
        f"    {spread(forged)}",
        f"for comparison, DynamoDB Local alone, PutItem + UpdateItem (n={raw['n']}):",
        f"    {spread(raw)}",
    ]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
