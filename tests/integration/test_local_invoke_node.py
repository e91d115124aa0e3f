"""The Docker-free runner (scripts/local_invoke.py) runs Node.js functions the way Lambda's
Node.js runtime does: NODE_PATH with the layers and the runtime's AWS SDK only, ES module
imports resolved through it, the handler's result on stdout and its logs on stderr, Lambda's
error documents, the timeout. A built-looking app that has nothing to do with the project.
Fails (never skips) without Node.js.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from scripts.local_invoke import NODE_SDK_SOURCES, LocalInvokeError, invoke

TEMPLATE = """\
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Globals:
  Function:
    Runtime: nodejs22.x
    Timeout: 7
    MemorySize: 512
Resources:
  EsmLayer:
    Type: AWS::Serverless::LayerVersion
    Properties:
      ContentUri: EsmLayer
  EchoFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: EchoFunction
      Handler: index.handler
      Layers: [!Ref EsmLayer]
      Environment:
        Variables:
          OWN: from-template
  StrayFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: StrayFunction
      Handler: index.handler
  FailingFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: FailingFunction
      Handler: app.handler
  CallbackFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: CallbackFunction
      Handler: lib/handlers.main
  SlowFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: FailingFunction
      Handler: app.slow
      Timeout: 1
  MissingHandlerFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: FailingFunction
      Handler: app.nothing
  UnbuiltLayerFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: FailingFunction
      Handler: app.handler
      Layers: [!Ref UnbuiltLayer]
  UnbuiltLayer:
    Type: AWS::Serverless::LayerVersion
    Properties:
      ContentUri: UnbuiltLayer
"""

ECHO = """\
import { greeting } from "esmlib";
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";

console.log("logged at import");

export async function handler(event, context) {
  console.info("logged by the handler");
  process.stdout.write("written to stdout\\n");
  return {
    event,
    greeting: greeting(),
    sdk: typeof DynamoDBClient,
    own: process.env.OWN,
    nodePath: process.env.NODE_PATH.split(":"),
    execution: process.env.AWS_EXECUTION_ENV,
    taskRoot: process.env.LAMBDA_TASK_ROOT,
    functionName: context.functionName,
    arn: context.invokedFunctionArn,
    memory: context.memoryLimitInMB,
    requestId: context.awsRequestId,
    remaining: context.getRemainingTimeInMillis(),
    cwd: process.cwd(),
  };
}
"""

FILES = {
    "EchoFunction/index.mjs": ECHO,
    # An ES-module-only package, as the wechat-token layer is: "exports" with no require.
    "EsmLayer/nodejs/node_modules/esmlib/package.json": json.dumps(
        {"name": "esmlib", "type": "module", "exports": {".": {"import": "./main.js"}}}
    ),
    "EsmLayer/nodejs/node_modules/esmlib/main.js": (
        "export const greeting = () => 'from the layer';\n"
    ),
    "UnbuiltLayer/package.json": "{}",
    # A package that is in the development install but not in Lambda's runtime.
    "StrayFunction/index.mjs": (
        'import { mockClient } from "aws-sdk-client-mock";\n'
        "export const handler = async () => typeof mockClient;\n"
    ),
    "FailingFunction/app.mjs": (
        "export async function handler() { throw new RangeError('boom 42'); }\n"
        "export async function slow() { await new Promise((r) => setTimeout(r, 30000)); }\n"
    ),
    "CallbackFunction/lib/handlers.cjs": (
        "exports.main = (event, context, callback) => {\n"
        "  setTimeout(() => callback(null, { doubled: event.n * 2 }), 10);\n"
        "};\n"
    ),
}


@pytest.fixture(scope="module")
def fake_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("node") is None:
        pytest.fail("Node.js is needed to run Node.js functions locally: install node 20+", False)
    root = tmp_path_factory.mktemp("node-build")
    (root / "template.yaml").write_text(TEMPLATE)
    for name, text in FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if not any((source / "@aws-sdk" / "client-dynamodb").is_dir() for source in NODE_SDK_SOURCES):
        pytest.fail("no AWS SDK for JavaScript v3 to stand for Lambda's: `make node-layer`", False)
    return root


def test_runs_an_esm_handler_with_layer_and_runtime_packages_like_lambda(
    fake_build: Path,
) -> None:
    result = invoke("EchoFunction", {"n": [1, 2]}, {"NODE_NO_WARNINGS": "1"}, build_dir=fake_build)
    assert result.ok, result.stderr
    payload = result.payload
    assert payload["event"] == {"n": [1, 2]}
    assert payload["greeting"] == "from the layer"
    assert payload["sdk"] == "function"  # the runtime's AWS SDK
    assert payload["own"] == "from-template"
    code = fake_build.resolve() / "EchoFunction"
    layer = fake_build.resolve() / "EsmLayer" / "nodejs" / "node_modules"
    assert payload["nodePath"][0] == str(layer)
    assert payload["nodePath"][-1] == str(code)
    assert payload["execution"] == "AWS_Lambda_nodejs22.x"
    assert payload["taskRoot"] == str(code)
    assert payload["cwd"] == str(code)
    assert payload["functionName"] == "EchoFunction"
    assert payload["arn"] == "arn:aws:lambda:us-east-1:123456789012:function:EchoFunction"
    assert payload["memory"] == "512"  # a string, as in Lambda
    assert payload["requestId"]
    assert 5000 < payload["remaining"] <= 7000
    # stdout is the payload alone; prints and logs are on stderr, in Lambda's format.
    assert json.loads(result.stdout) == payload
    assert "logged at import" in result.stderr
    assert "\tINFO\tlogged by the handler" in result.stderr
    assert "written to stdout" in result.stderr


def test_a_package_lambda_would_not_have_fails_unless_isolation_is_off(fake_build: Path) -> None:
    env = {"NODE_NO_WARNINGS": "1"}
    isolated = invoke("StrayFunction", {}, env, build_dir=fake_build)
    assert isolated.error is not None
    assert isolated.error["errorType"] == "Runtime.ImportModuleError"
    assert "aws-sdk-client-mock" in isolated.error["errorMessage"]
    open_ = invoke("StrayFunction", {}, env, build_dir=fake_build, isolate=False)
    assert open_.ok, open_.stderr
    assert open_.payload == "function"


def test_errors_are_lambdas_error_documents(fake_build: Path) -> None:
    result = invoke("FailingFunction", {}, {}, build_dir=fake_build)
    assert result.returncode == 1
    assert result.error is not None
    assert result.error["errorType"] == "RangeError"
    assert result.error["errorMessage"] == "boom 42"
    assert any("app.mjs" in line for line in result.error["trace"])
    assert json.loads(result.stdout) == result.payload
    missing = invoke("MissingHandlerFunction", {}, {}, build_dir=fake_build)
    assert missing.error is not None
    assert missing.error["errorType"] == "Runtime.HandlerNotFound"


def test_callback_handlers_in_subdirectories_run(fake_build: Path) -> None:
    result = invoke("CallbackFunction", {"n": 21}, {}, build_dir=fake_build)
    assert result.ok, result.stderr
    assert result.payload == {"doubled": 42}


def test_the_function_times_out_at_its_timeout(fake_build: Path) -> None:
    started = time.monotonic()
    result = invoke("SlowFunction", {}, {}, build_dir=fake_build)
    assert time.monotonic() - started < 10
    assert result.error is not None
    assert result.error["errorType"] == "Sandbox.Timedout"
    assert result.error["errorMessage"] == "Task timed out after 1.00 seconds"


def test_an_unbuilt_node_layer_is_refused(fake_build: Path) -> None:
    with pytest.raises(LocalInvokeError, match="has no nodejs/ directory: run `sam build`"):
        invoke("UnbuiltLayerFunction", {}, {}, build_dir=fake_build)
