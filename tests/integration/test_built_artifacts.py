"""The artifacts `sam build` produces load the way Lambda loads them, and the Docker-free
runner (scripts/local_invoke.py) behaves like `sam local invoke`.

Needs `.aws-sam/build` (`make build`); the Makefile builds before running pytest.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from scripts.local_invoke import (
    LocalInvokeError,
    invoke,
    load_env_overrides,
    load_template,
    resolve_function,
)

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / ".aws-sam" / "build"
LOCAL_INVOKE = ROOT / "scripts" / "local_invoke.py"
FUNCTIONS = ("RefresherFunction", "PassiveRefreshFunction", "ExampleConsumerFunction")
EVENTS = ROOT / "events"
RUNTIME = f"python{sys.version_info.major}.{sys.version_info.minor}"


# --------------------------------------------------------------------------- sam build output


@pytest.fixture(scope="module")
def build_dir() -> Path:
    if not (BUILD / "template.yaml").is_file():
        pytest.fail(
            f"{BUILD} has no template.yaml: run `make build` (sam build) before these tests."
        )
    return BUILD


@pytest.fixture(scope="module")
def layer_python(build_dir: Path) -> Path:
    return build_dir / "WeChatTokenLayer" / "python"


def _run_like_lambda(
    build_dir: Path, function_id: str, layer_python: Path, code: str
) -> dict[str, Any]:
    """Run ``code`` in a clean interpreter whose sys.path starts like Lambda's: the function,
    then the layer. (-I ignores PYTHONPATH, so the paths are put in front explicitly.)"""
    spec = resolve_function(load_template(build_dir / "template.yaml"), build_dir, function_id)
    prelude = f"import json, sys\nsys.path[:0] = [{str(spec.code_dir)!r}, {str(layer_python)!r}]\n"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        **spec.environment,
    }
    completed = subprocess.run(
        [sys.executable, "-I", "-B", "-c", prelude + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        cwd=spec.code_dir,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    report: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return report


def test_build_holds_every_function_and_the_layer(build_dir: Path, layer_python: Path) -> None:
    for function_id in FUNCTIONS:
        assert (build_dir / function_id).is_dir(), function_id
    assert (layer_python / "wechat_token" / "__init__.py").is_file()
    assert (layer_python / "wechat_token" / "record.py").is_file()
    built = load_template(build_dir / "template.yaml")["Resources"]
    assert built["WeChatTokenLayer"]["Properties"]["ContentUri"] == "WeChatTokenLayer"


def test_built_layer_holds_no_cli_code(layer_python: Path) -> None:
    # The operators' CLI is the wechat_token_ops package (pip install ".[cli]"), never the
    # layer's: no command-line module, no CLI package, no rich, and nothing importing them.
    package = layer_python / "wechat_token"
    assert not (package / "cli.py").exists()
    assert not (package / "__main__.py").exists()
    assert not list(layer_python.rglob("wechat_token_ops"))
    assert not (layer_python / "rich").exists()
    for source in package.rglob("*.py"):
        text = source.read_text()
        for module in ("wechat_token_ops", "rich"):
            assert f"import {module}" not in text, source
            assert f"from {module}" not in text, source


def test_refresher_build_vendors_httpx(build_dir: Path) -> None:
    assert (build_dir / "RefresherFunction" / "httpx" / "__init__.py").is_file()


@pytest.mark.parametrize("function_id", FUNCTIONS)
def test_function_imports_like_in_lambda(
    build_dir: Path, layer_python: Path, function_id: str
) -> None:
    handler = resolve_function(
        load_template(build_dir / "template.yaml"), build_dir, function_id
    ).handler
    module, name = handler.rsplit(".", 1)
    loaded = _run_like_lambda(
        build_dir,
        function_id,
        layer_python,
        f"""
        import {module} as app
        names = ("wechat_token", "httpx")
        modules = {{n: getattr(sys.modules.get(n), "__file__", None) for n in names}}
        print(json.dumps({{
            "app": app.__file__,
            "handler": callable(getattr(app, {name!r}, None)),
            "modules": modules,
        }}))
        """,
    )
    code_dir = str(build_dir.resolve() / function_id)
    assert loaded["app"].startswith(code_dir)
    assert loaded["handler"] is True
    # Whatever the handler module pulled in came from the build, not from this venv.
    if loaded["modules"]["wechat_token"]:
        assert loaded["modules"]["wechat_token"].startswith(str(layer_python.resolve()))
    if loaded["modules"]["httpx"]:
        assert loaded["modules"]["httpx"].startswith(code_dir)


def test_layer_package_imports_without_httpx(build_dir: Path, layer_python: Path) -> None:
    loaded = _run_like_lambda(
        build_dir,
        "ExampleConsumerFunction",
        layer_python,
        """
        import wechat_token
        print(json.dumps({
            "file": wechat_token.__file__,
            "httpx_loaded": "httpx" in sys.modules,
            "api": [n for n in ("get_access_token", "TokenError", "TokenNotFoundError",
                                "TokenExpiredError") if hasattr(wechat_token, n)],
            "not_found_is_token_error": issubclass(wechat_token.TokenNotFoundError,
                                                   wechat_token.TokenError),
        }))
        """,
    )
    assert loaded["file"].startswith(str(layer_python.resolve()))
    assert loaded["httpx_loaded"] is False
    assert loaded["api"] == [
        "get_access_token",
        "TokenError",
        "TokenNotFoundError",
        "TokenExpiredError",
    ]
    assert loaded["not_found_is_token_error"] is True


def test_built_refresher_runs_under_the_local_runner(build_dir: Path) -> None:
    """An event the refresher rejects before touching AWS or WeChat: proves the built code,
    its vendored dependencies and the layer import in an isolated, Lambda-like process."""
    # Should the handler reach for AWS after all, it finds a closed local port, not AWS.
    env = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    result = invoke("RefresherFunction", {"app_id": 42}, env, build_dir=build_dir, timeout=30)
    assert result.returncode == 1
    assert result.error is not None
    assert not result.error["errorType"].startswith("Runtime."), result.payload


def test_built_passive_function_runs_events_passive_json_under_the_local_runner(
    build_dir: Path,
) -> None:
    """PassiveRefreshFunction's handler is found and takes events/passive.json: whatever it
    answers with AWS unreachable, it is the handler's answer, not the runtime's."""
    spec = resolve_function(
        load_template(build_dir / "template.yaml"), build_dir, "PassiveRefreshFunction"
    )
    assert spec.handler == "app.passive_handler"
    assert spec.code_dir.name == "PassiveRefreshFunction"
    assert spec.timeout == 60
    env = load_env_overrides(EVENTS / "env.json", "PassiveRefreshFunction")
    # Nothing listens there: no local AWS, no WeChat.
    env |= {"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "WECHAT_API_BASE_URL": "http://127.0.0.1:9"}
    event = json.loads((EVENTS / "passive.json").read_text())
    result = invoke("PassiveRefreshFunction", event, env, build_dir=build_dir, timeout=30)
    if result.error is not None:
        assert not result.error["errorType"].startswith(("Runtime.", "Sandbox.")), result.payload
    else:
        assert isinstance(result.payload, dict), result.stdout


# --------------------------------------------------------------------------- the runner itself

TEMPLATE = """\
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  Greeting:
    Type: String
    Default: hello
Globals:
  Function:
    Runtime: {runtime}
    Timeout: 7
    MemorySize: 512
    Environment:
      Variables:
        SHARED: !Ref Greeting
        TABLE: !Ref SomeTable
Resources:
  SomeTable:
    Type: AWS::DynamoDB::Table
  EchoLayer:
    Type: AWS::Serverless::LayerVersion
    Properties:
      ContentUri: EchoLayer
  EchoFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: EchoFunction
      Handler: app.handler
      Layers:
        - !Ref EchoLayer
      Environment:
        Variables:
          OWN: !Sub "${{Greeting}}-${{AWS::Region}}"
          TABLE_ARN: !GetAtt SomeTable.Arn
          OVERRIDDEN: from-template
  FailingFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: FailingFunction
      Handler: app.handler
  SlowFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: SlowFunction
      Handler: app.handler
      Timeout: 1
  MissingHandlerFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: FailingFunction
      Handler: app.no_such_handler
"""

ECHO_APP = """\
import importlib.util
import logging
import os
import sys

import shadowed
import echolib

print("printed at import")

NAMES = ("SHARED", "TABLE", "TABLE_ARN", "OWN", "OVERRIDDEN", "EXTRA", "LEAK_CHECK", "HOME",
         "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_REGION",
         "AWS_ACCESS_KEY_ID", "LAMBDA_TASK_ROOT")


def handler(event, context):
    print("printed by the handler")
    logging.getLogger().warning("logged by the handler")
    return {
        "event": event,
        "env": {name: os.environ.get(name) for name in NAMES},
        "remaining_ms": context.get_remaining_time_in_millis(),
        "function_name": context.function_name,
        "arn": context.invoked_function_arn,
        "memory": context.memory_limit_in_mb,
        "request_id": context.aws_request_id,
        "sys_path": sys.path[:2],
        "shadowed": shadowed.WHERE,
        "echolib": echolib.WHERE,
        "pytest_importable": importlib.util.find_spec("pytest") is not None,
        "cwd": os.getcwd(),
    }
"""


@pytest.fixture
def fake_build(tmp_path: Path) -> Path:
    """A built-looking SAM app that has nothing to do with the project's code."""
    files = {
        "template.yaml": TEMPLATE.format(runtime=RUNTIME),
        "EchoFunction/app.py": ECHO_APP,
        "EchoFunction/shadowed.py": "WHERE = 'function'\n",
        "EchoLayer/python/shadowed.py": "WHERE = 'layer'\n",
        "EchoLayer/python/echolib.py": "WHERE = 'layer'\n",
        "FailingFunction/app.py": "def handler(event, context):\n    raise ValueError('boom 42')\n",
        "SlowFunction/app.py": (
            "import time\n\ndef handler(event, context):\n    time.sleep(30)\n    return 'late'\n"
        ),
    }
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_runner_runs_the_handler_like_lambda(
    fake_build: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEAK_CHECK", "parent-only")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIA-parent-real-looking")
    event = {"app_id": "wx1", "nested": {"n": [1, 2]}}

    result = invoke(
        "EchoFunction",
        event,
        {"OVERRIDDEN": "from-env-file", "EXTRA": "x"},
        build_dir=fake_build,
    )

    assert result.returncode == 0, result.stderr
    payload = result.payload
    assert payload["event"] == event
    assert payload["env"] == {
        "SHARED": "hello",  # !Ref of a parameter: its default
        "TABLE": "SomeTable",  # !Ref of a resource: a placeholder (the logical id), as SAM
        "TABLE_ARN": "arn:aws:dynamodb:us-east-1:123456789012:table/SomeTable",
        "OWN": "hello-us-east-1",
        "OVERRIDDEN": "from-env-file",
        "EXTRA": "x",
        "LEAK_CHECK": None,  # a clean environment
        "HOME": None,
        "AWS_LAMBDA_FUNCTION_NAME": "EchoFunction",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "local",  # stand-ins, never the caller's credentials
        "LAMBDA_TASK_ROOT": str((fake_build / "EchoFunction").resolve()),
    }
    assert 5000 < payload["remaining_ms"] <= 7000
    assert payload["function_name"] == "EchoFunction"
    assert payload["arn"] == "arn:aws:lambda:us-east-1:123456789012:function:EchoFunction"
    assert payload["memory"] == "512"  # a string, as in Lambda's Python runtime
    assert payload["request_id"]
    assert payload["sys_path"] == [
        str((fake_build / "EchoFunction").resolve()),
        str((fake_build / "EchoLayer" / "python").resolve()),
    ]
    assert payload["shadowed"] == "function"  # the function directory comes first
    assert payload["echolib"] == "layer"
    assert payload["pytest_importable"] is False  # only what Lambda's runtime ships
    assert payload["cwd"] == str((fake_build / "EchoFunction").resolve())
    # stdout is the payload alone; prints and logs are on stderr.
    assert json.loads(result.stdout) == payload
    assert "printed at import" in result.stderr
    assert "printed by the handler" in result.stderr
    assert "logged by the handler" in result.stderr
    assert not (fake_build / "EchoFunction" / "__pycache__").exists()


def test_runner_honours_timeout_and_parameter_overrides(fake_build: Path) -> None:
    result = invoke(
        "EchoFunction",
        {},
        {},
        build_dir=fake_build,
        timeout=2,
        parameter_overrides={"Greeting": "hi"},
    )
    assert result.ok, result.stderr
    assert 0 < result.payload["remaining_ms"] <= 2000
    assert result.payload["env"]["SHARED"] == "hi"
    assert result.payload["env"]["OWN"] == "hi-us-east-1"


def test_runner_reports_a_raised_error_like_lambda(fake_build: Path) -> None:
    result = invoke("FailingFunction", {}, {}, build_dir=fake_build)
    assert result.returncode != 0
    assert result.error is not None
    assert result.error["errorType"] == "ValueError"
    assert result.error["errorMessage"] == "boom 42"
    assert any("app.py" in frame for frame in result.error["stackTrace"])
    assert json.loads(result.stdout) == result.payload
    assert "boom 42" in result.stderr


def test_runner_times_out_at_the_template_timeout(fake_build: Path) -> None:
    started = time.monotonic()
    result = invoke("SlowFunction", {}, {}, build_dir=fake_build)
    assert time.monotonic() - started < 10
    assert result.returncode != 0
    assert result.error is not None
    assert result.error["errorType"] == "Sandbox.Timedout"
    assert "1.00 seconds" in result.error["errorMessage"]


def test_runner_reports_a_missing_handler(fake_build: Path) -> None:
    result = invoke("MissingHandlerFunction", {}, {}, build_dir=fake_build)
    assert result.error is not None
    assert result.error["errorType"] == "Runtime.HandlerNotFound"


def test_runner_rejects_unknown_functions_and_missing_builds(
    fake_build: Path, tmp_path: Path
) -> None:
    with pytest.raises(LocalInvokeError, match="EchoFunction"):
        invoke("NoSuchFunction", {}, {}, build_dir=fake_build)
    with pytest.raises(LocalInvokeError, match="make build"):
        invoke("EchoFunction", {}, {}, build_dir=tmp_path / "nowhere")


def test_templates_load_with_cfn_lints_loader(tmp_path: Path) -> None:
    """Short tags become CloudFormation's long form, values plain Python, dates strings."""
    path = tmp_path / "template.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            AWSTemplateFormatVersion: 2010-09-09
            Conditions:
              IsOn: !Equals [!Ref Mode, "on"]
            Resources:
              Thing:
                Type: AWS::Serverless::Function
                Condition: IsOn
                Properties:
                  Arn: !GetAtt Other.Arn
                  Sub: !Sub "${AWS::Region}-x"
                  Joined: !Join [",", [a, !Ref Mode]]
                  Picked: !If [IsOn, "yes", !Ref AWS::NoValue]
                  Number: 60
                  Flag: true
            """
        )
    )
    template = load_template(path)
    assert template["AWSTemplateFormatVersion"] == "2010-09-09"
    assert template["Conditions"] == {"IsOn": {"Fn::Equals": [{"Ref": "Mode"}, "on"]}}
    props = template["Resources"]["Thing"]["Properties"]
    assert props == {
        "Arn": {"Fn::GetAtt": ["Other", "Arn"]},
        "Sub": {"Fn::Sub": "${AWS::Region}-x"},
        "Joined": {"Fn::Join": [",", ["a", {"Ref": "Mode"}]]},
        "Picked": {"Fn::If": ["IsOn", "yes", {"Ref": "AWS::NoValue"}]},
        "Number": 60,
        "Flag": True,
    }
    # Plain types, not the loader's node classes.
    assert type(props) is dict
    assert type(props["Sub"]["Fn::Sub"]) is str
    assert type(props["Joined"]["Fn::Join"]) is list

    broken = tmp_path / "broken.yaml"
    broken.write_text("Resources: [unclosed\n")
    with pytest.raises(LocalInvokeError, match="cannot be parsed"):
        load_template(broken)
    not_cfn = tmp_path / "plain.yaml"
    not_cfn.write_text("just: a mapping\n")
    with pytest.raises(LocalInvokeError, match="no Resources"):
        load_template(not_cfn)


def test_env_file_sections_override_like_sam(tmp_path: Path) -> None:
    env_file = tmp_path / "env.json"
    env_file.write_text(
        json.dumps(
            {
                "Parameters": {"A": "all", "B": "all", "FLAG": True},
                "EchoFunction": {"B": "mine", "N": 3},
                "OtherFunction": {"A": "other"},
            }
        )
    )
    assert load_env_overrides(env_file, "EchoFunction") == {
        "A": "all",
        "B": "mine",
        "FLAG": "true",
        "N": "3",
    }
    assert load_env_overrides(env_file, "Unlisted") == {"A": "all", "B": "all", "FLAG": "true"}


def test_command_line_prints_the_payload_and_fails_on_errors(fake_build: Path) -> None:
    event_file = fake_build / "event.json"
    event_file.write_text('{"hello": "world"}')
    env_file = fake_build / "env.json"
    env_file.write_text(json.dumps({"EchoFunction": {"OVERRIDDEN": "cli"}}))
    base = [sys.executable, str(LOCAL_INVOKE), "--build-dir", str(fake_build)]

    ok = subprocess.run(
        [*base, "EchoFunction", "-e", str(event_file), "--env-vars", str(env_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    payload = json.loads(ok.stdout)
    assert payload["event"] == {"hello": "world"}
    assert payload["env"]["OVERRIDDEN"] == "cli"
    assert "printed by the handler" in ok.stderr

    failed = subprocess.run(
        [*base, "FailingFunction", "-e", str(event_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert failed.returncode == 1
    assert json.loads(failed.stdout)["errorType"] == "ValueError"
