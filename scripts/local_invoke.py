"""Run a built SAM function locally without Docker: a stand-in for ``sam local invoke``.

Usage::

    python scripts/local_invoke.py RefresherFunction -e events/scheduled.json \\
        --env-vars events/env.json [--build-dir .aws-sam/build] [--timeout 60]
    python scripts/local_invoke.py PassiveRefreshFunction -e events/passive.json \\
        --env-vars events/env.json
    python scripts/local_invoke.py RefreshWorkerFunction -e events/worker_sqs_batch.json \\
        --env-vars events/env.json

The function runs the way Lambda runs it, as far as a plain process can:

- the *built* template (``.aws-sam/build/template.yaml``, read with cfn-lint's template
  loader, as ``make template`` reads it) gives the code directory, the handler, the layers,
  the timeout, the memory size and the environment (``Globals`` merged with the function,
  ``!Ref`` of parameters resolved to their defaults, other references to placeholder
  strings such as the logical id);
- the env-vars file (``sam local invoke --env-vars`` format) overrides them: its
  ``Parameters`` section applies to every function, the function's own section wins.
  Unlike SAM, keys the template does not declare are passed too, so that
  ``AWS_ENDPOINT_URL`` can point boto3 at local servers;
- a fresh interpreter (this one, ``sys.executable``) with a clean environment: only the
  variables above, ``PATH``, and Lambda's ``AWS_*`` variables with stand-in credentials
  (never real ones);
- ``sys.path`` is the function directory, then the layers' ``python/`` directories, then
  the standard library, then only the packages Lambda's Python runtime ships (boto3,
  botocore, ...), so a dependency that ``sam build`` did not vendor fails here as it
  would in Lambda (``--no-isolation`` exposes this interpreter's site-packages instead);
- the handler gets a Lambda-like ``context``; the run is killed at the function's timeout.

Node.js functions (``nodejs*`` runtimes) run the same way in ``node`` (the one on ``PATH``),
through ``scripts/node_runtime/bootstrap.mjs``: ``NODE_PATH`` is what Lambda sets, the layers'
``nodejs/nodeXX/node_modules`` and ``nodejs/node_modules``, then a directory standing for the
runtime's own ``node_modules`` that holds only the AWS SDK for JavaScript v3 (``@aws-sdk``,
linked from the first of ``NODE_SDK_SOURCES`` that has it), so a package the function did
not bring fails here as in Lambda; ``--no-isolation`` adds those whole ``node_modules``
directories. As in Lambda's Node.js runtimes, ``import`` searches ``NODE_PATH`` too.

The handler's JSON result goes to stdout, everything the function prints or logs to
stderr. If the handler raises, stdout holds Lambda's error document
(``{"errorType", "errorMessage", ...}``) and the exit status is 1.

``invoke()`` is the same thing as a function, for the demo and the tests. This module
never imports the project's own code: the function only ever runs in the child process.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "FunctionSpec",
    "InvokeResult",
    "LocalInvokeError",
    "invoke",
    "load_env_overrides",
    "load_template",
    "resolve_function",
]

# `sam build`'s output in this repository, wherever the caller runs from.
DEFAULT_BUILD_DIR = Path(__file__).resolve().parent.parent / ".aws-sam" / "build"
DEFAULT_REGION = "us-east-1"
ACCOUNT_ID = "123456789012"  # the account id SAM uses locally
# CloudFormation's defaults when a function sets neither the property nor Globals.
DEFAULT_TIMEOUT_SECONDS = 3
DEFAULT_MEMORY_MB = 128
# Lambda gives the init phase (imports) up to 10 s on top of the function's timeout.
INIT_ALLOWANCE_SECONDS = 10.0
# What Lambda's Python runtime has on sys.path besides the function and its layers.
RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six")
# Stand-ins so that boto3 never finds, let alone uses, the caller's real credentials.
STAND_IN_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}
# The Node.js runtime's part of an invocation (bootstrap.mjs and its NODE_PATH resolver).
NODE_RUNTIME_DIR = Path(__file__).resolve().parent / "node_runtime"
# Where the AWS SDK for JavaScript v3 that Lambda's Node.js runtimes ship is found locally:
# the Node.js layer's development install (`npm ci` in layers/wechat_token_node), else the
# repository's. Only its @aws-sdk scope is exposed to the function.
NODE_SDK_SOURCES = (
    Path(__file__).resolve().parent.parent / "layers" / "wechat_token_node" / "node_modules",
    Path(__file__).resolve().parent.parent / "node_modules",
)
NODE_RUNTIME_SCOPES = ("@aws-sdk",)


class LocalInvokeError(Exception):
    """The function cannot be run: unknown id, missing build, unsupported template feature."""


# --------------------------------------------------------------------------- templates


def load_template(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Parse a CloudFormation/SAM template (YAML or JSON) into plain dicts and lists.

    cfn-lint's loader (the one ``make template`` lints with) reads it: short tags (``!Ref``,
    ``!Sub``...) become the long form (``{"Ref": ...}``, ``{"Fn::Sub": ...}``), as
    CloudFormation reads them. Its node classes are turned into plain ``dict``/``list``/``str``,
    and YAML dates back into the strings CloudFormation sees.
    """
    from cfnlint.decode import decode  # noqa: PLC0415 - a second to import; only loading needs it

    template, problems = decode(os.fspath(path))
    if problems or template is None:
        details = "; ".join(str(problem.message) for problem in problems) or "unreadable"
        raise LocalInvokeError(f"{path} cannot be parsed: {details}")
    document = _plain(template)
    if not isinstance(document, dict) or not isinstance(document.get("Resources"), dict):
        raise LocalInvokeError(f"{path} is not a CloudFormation template (no Resources).")
    return document


def _plain(value: Any) -> Any:
    """cfn-lint's nodes (subclasses carrying line marks) as plain Python values."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, bool | int | float) or value is None:
        return value
    if isinstance(value, datetime.date):  # datetime.datetime is a date too
        return value.isoformat()
    return str(value)


_NO_VALUE = object()
_SUB_VARIABLE = re.compile(r"\$\{(!?)([^}]*)\}")


class _Resolver:
    """Resolves the intrinsic functions a function's configuration uses, locally.

    Parameters resolve to their overrides or defaults; resources to placeholders (``Ref``:
    the logical id, as SAM does; ``GetAtt ...Arn``: a plausible ARN); what cannot be known
    locally to ``None``, which becomes an empty string, as in SAM.
    """

    def __init__(
        self, template: Mapping[str, Any], parameters: Mapping[str, str], region: str
    ) -> None:
        self._parameters: Mapping[str, Any] = template.get("Parameters") or {}
        self._resources: Mapping[str, Any] = template.get("Resources") or {}
        self._conditions: Mapping[str, Any] = template.get("Conditions") or {}
        self._overrides = parameters
        self._region = region
        self._pseudo = {
            "AWS::Region": region,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": "local",
            "AWS::StackId": f"arn:aws:cloudformation:{region}:{ACCOUNT_ID}:stack/local/local",
        }

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            items = [self.resolve(item) for item in value]
            return [item for item in items if item is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, argument),) = value.items()
            if key == "Ref" and isinstance(argument, str):
                return self._ref(argument)
            if key == "Condition" and isinstance(argument, str):
                return self._condition(argument)
            if key.startswith("Fn::"):
                return self._function(key[4:], argument)
        resolved = {key: self.resolve(item) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item is not _NO_VALUE}

    def _ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return _NO_VALUE
        if name in self._pseudo:
            return self._pseudo[name]
        if name in self._parameters:
            if name in self._overrides:
                return self._overrides[name]
            default = (self._parameters[name] or {}).get("Default")
            return None if default is None else _stringify(default)
        return name

    def _get_att(self, logical_id: str, attribute: str) -> str:
        if attribute != "Arn":
            return f"{logical_id}.{attribute}"
        resource_type = str((self._resources.get(logical_id) or {}).get("Type", ""))
        region, account = self._region, ACCOUNT_ID
        if resource_type in ("AWS::Serverless::Function", "AWS::Lambda::Function"):
            return f"arn:aws:lambda:{region}:{account}:function:{logical_id}"
        if resource_type == "AWS::DynamoDB::Table":
            return f"arn:aws:dynamodb:{region}:{account}:table/{logical_id}"
        service = resource_type.split("::")[1].lower() if "::" in resource_type else "local"
        return f"arn:aws:{service}:{region}:{account}:{logical_id}"

    def _condition(self, name: str) -> bool:
        if name not in self._conditions:
            raise LocalInvokeError(f"Condition {name!r} is not defined in the template.")
        return bool(self.resolve(self._conditions[name]))

    def _function(self, name: str, argument: Any) -> Any:  # noqa: PLR0911 - one case per function
        if name == "GetAtt":
            parts = argument.split(".", 1) if isinstance(argument, str) else argument
            return self._get_att(str(parts[0]), str(self.resolve(parts[1])))
        if name == "Sub":
            return self._sub(argument)
        if name == "Join":
            delimiter, items = argument
            return str(delimiter).join(_stringify(item) for item in self.resolve(items))
        if name == "Select":
            index, items = self.resolve(argument)
            return items[int(index)]
        if name == "If":
            condition, when_true, when_false = argument
            return self.resolve(when_true if self._condition(condition) else when_false)
        if name == "Equals":
            left, right = self.resolve(argument)
            return _stringify(left) == _stringify(right)
        if name == "Not":
            return not self.resolve(argument)[0]
        if name == "And":
            return all(self.resolve(argument))
        if name == "Or":
            return any(self.resolve(argument))
        return None  # Fn::ImportValue, Fn::FindInMap, ...: unknown locally

    def _sub(self, argument: Any) -> str:
        if isinstance(argument, list):
            text, variables = str(argument[0]), self.resolve(argument[1])
        else:
            text, variables = str(argument), {}

        def replace(match: re.Match[str]) -> str:
            literal, name = match.groups()
            if literal:
                return "${" + name + "}"
            if name in variables:
                return _stringify(variables[name])
            if "." in name and not name.startswith("AWS::"):
                logical_id, attribute = name.split(".", 1)
                return self._get_att(logical_id, attribute)
            return _stringify(self._ref(name))

        return _SUB_VARIABLE.sub(replace, text)


def _stringify(value: Any) -> str:
    """Lambda environment values are strings; SAM's rules for turning values into them."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None or value is _NO_VALUE or isinstance(value, dict | list | tuple):
        return ""
    return str(value)


def _merge_globals(globals_: Any, properties: Any) -> Any:
    """SAM's Globals rules: maps merge, lists concatenate (Globals first), scalars override."""
    if isinstance(globals_, dict) and isinstance(properties, dict):
        merged = dict(globals_)
        for key, value in properties.items():
            merged[key] = _merge_globals(globals_[key], value) if key in globals_ else value
        return merged
    if isinstance(globals_, list) and isinstance(properties, list):
        return globals_ + properties
    return properties


_RUN_PROPERTIES = frozenset(
    {
        "CodeUri",
        "Code",
        "Handler",
        "Runtime",
        "PackageType",
        "Timeout",
        "MemorySize",
        "Layers",
        "Environment",
        "FunctionName",
    }
)


@dataclass(frozen=True)
class FunctionSpec:
    """What the template says about one function, resolved for a local run."""

    logical_id: str
    function_name: str
    runtime: str
    handler: str
    code_dir: Path
    layer_paths: tuple[Path, ...]
    timeout: float
    memory_mb: int
    environment: dict[str, str] = field(default_factory=dict)

    def function_arn(self, region: str) -> str:
        return f"arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{self.function_name}"


def _code_dir(properties: Mapping[str, Any], template_dir: Path, function_id: str) -> Path:
    """The function's local code directory (a zip function's CodeUri)."""
    if properties.get("PackageType") == "Image":
        raise LocalInvokeError(f"{function_id} is an image function; only zip functions run here.")
    code_uri = properties.get("CodeUri", properties.get("Code"))
    if not isinstance(code_uri, str):
        raise LocalInvokeError(
            f"{function_id}'s code is not a local directory ({code_uri!r}); run `sam build` and "
            "use the built template."
        )
    code_dir = (template_dir / code_uri).resolve()
    if not code_dir.is_dir():
        raise LocalInvokeError(f"{function_id}'s code directory {code_dir} does not exist.")
    return code_dir


def resolve_function(
    template: Mapping[str, Any],
    template_dir: Path,
    function_id: str,
    *,
    parameter_overrides: Mapping[str, str] | None = None,
    region: str = DEFAULT_REGION,
) -> FunctionSpec:
    """Find ``function_id`` in the template and resolve what running it needs."""
    resources: Mapping[str, Any] = template.get("Resources") or {}
    resource = resources.get(function_id)
    functions = sorted(
        name
        for name, res in resources.items()
        if isinstance(res, dict)
        and res.get("Type") in ("AWS::Serverless::Function", "AWS::Lambda::Function")
    )
    if not isinstance(resource, dict) or function_id not in functions:
        raise LocalInvokeError(
            f"{function_id!r} is not a function in the template; functions: {', '.join(functions)}."
        )
    resolver = _Resolver(template, parameter_overrides or {}, region)
    properties: dict[str, Any] = resource.get("Properties") or {}
    if resource["Type"] == "AWS::Serverless::Function":
        globals_ = ((template.get("Globals") or {}).get("Function")) or {}
        properties = _merge_globals(globals_, properties)
    # Only what a local run needs: policies, events and the like may hold intrinsics
    # that mean nothing here.
    properties = resolver.resolve({k: v for k, v in properties.items() if k in _RUN_PROPERTIES})

    code_dir = _code_dir(properties, template_dir, function_id)
    runtime = str(properties.get("Runtime", ""))
    if not runtime.startswith(("python", "nodejs")):
        raise LocalInvokeError(
            f"{function_id} has runtime {runtime!r}; only Python and Node.js run here."
        )
    handler = properties.get("Handler")
    if not isinstance(handler, str) or not handler:
        raise LocalInvokeError(f"{function_id} has no Handler.")

    layer_paths = _layer_paths(resources, template_dir, properties.get("Layers") or [], runtime)
    name = properties.get("FunctionName")
    variables = (properties.get("Environment") or {}).get("Variables") or {}
    return FunctionSpec(
        logical_id=function_id,
        function_name=name if isinstance(name, str) and name else function_id,
        runtime=runtime,
        handler=handler,
        code_dir=code_dir,
        layer_paths=layer_paths,
        timeout=float(properties.get("Timeout") or DEFAULT_TIMEOUT_SECONDS),
        memory_mb=int(properties.get("MemorySize") or DEFAULT_MEMORY_MB),
        environment={str(key): _stringify(value) for key, value in variables.items()},
    )


def _layer_contents(
    resources: Mapping[str, Any], template_dir: Path, layers: Sequence[Any]
) -> list[tuple[str, dict[str, Any], Path]]:
    """(logical id, resource, content directory) of each layer defined in the template."""
    found: list[tuple[str, dict[str, Any], Path]] = []
    for layer in layers:
        # After resolution a Ref to a layer in this template is its logical id.
        resource = resources.get(layer) if isinstance(layer, str) else None
        if not isinstance(resource, dict):
            print(
                f"local_invoke: layer {layer!r} is not defined in the template; skipped.",
                file=sys.stderr,
            )
            continue
        properties = resource.get("Properties") or {}
        content = properties.get("ContentUri", properties.get("Content"))
        if not isinstance(content, str):
            raise LocalInvokeError(
                f"Layer {layer}'s content is not a local directory ({content!r}); run `sam build`."
            )
        found.append((str(layer), resource, (template_dir / content).resolve()))
    return found


def _layer_paths(
    resources: Mapping[str, Any], template_dir: Path, layers: Sequence[Any], runtime: str
) -> tuple[Path, ...]:
    """The layers' import roots in Lambda's order.

    Lambda extracts every layer into /opt, later layers over earlier ones, and puts
    /opt/python/lib/pythonX.Y/site-packages and then /opt/python on sys.path; for Node.js,
    /opt/nodejs/nodeXX/node_modules and then /opt/nodejs/node_modules on NODE_PATH.
    """
    contents = _layer_contents(resources, template_dir, layers)
    if runtime.startswith("nodejs"):
        return _node_layer_paths(contents, runtime)
    site_packages: list[Path] = []
    roots: list[Path] = []
    for layer, resource, base in contents:
        if (base / "python").is_dir():
            site_packages.append(base / "python" / "lib" / runtime / "site-packages")
            roots.append(base / "python")
        elif str((resource.get("Metadata") or {}).get("BuildMethod", "")).startswith("python"):
            # An unbuilt template: `sam build` would copy this directory into python/.
            roots.append(base)
        else:
            raise LocalInvokeError(f"Layer {layer} at {base} has no python/ directory.")
    ordered = [*reversed(site_packages), *reversed(roots)]
    return tuple(path for path in ordered if path.is_dir())


def _node_layer_paths(
    contents: list[tuple[str, dict[str, Any], Path]], runtime: str
) -> tuple[Path, ...]:
    versioned: list[Path] = []
    shared: list[Path] = []
    major = _node_major(runtime)
    for layer, _, base in contents:
        if not (base / "nodejs").is_dir():
            raise LocalInvokeError(
                f"Layer {layer} at {base} has no nodejs/ directory: run `sam build` and use the "
                "built template."
            )
        versioned.append(base / "nodejs" / f"node{major}" / "node_modules")
        shared.append(base / "nodejs" / "node_modules")
    ordered = [*reversed(versioned), *reversed(shared)]
    return tuple(path for path in ordered if path.is_dir())


def _node_major(runtime: str) -> str:
    match = re.fullmatch(r"nodejs(\d+)\.x", runtime)
    if match is None:
        raise LocalInvokeError(f"Unknown Node.js runtime {runtime!r} (expected nodejsNN.x).")
    return match.group(1)


def load_env_overrides(
    path: str | os.PathLike[str], function_id: str, function_name: str | None = None
) -> dict[str, str]:
    """Read a ``sam local invoke --env-vars`` file: ``Parameters`` for every function, then
    the function's own section (by logical id, else by name) on top."""
    with open(path, encoding="utf-8") as handle:
        document = json.load(handle)
    if not isinstance(document, dict) or not all(isinstance(v, dict) for v in document.values()):
        raise LocalInvokeError(
            f"{path}: expected {{'FunctionLogicalId': {{'NAME': 'value'}}, 'Parameters': {{...}}}}."
        )
    overrides: dict[str, str] = {}
    overrides.update({k: _stringify(v) for k, v in (document.get("Parameters") or {}).items()})
    section = document.get(function_id) or (document.get(function_name) if function_name else None)
    overrides.update({k: _stringify(v) for k, v in (section or {}).items()})
    return overrides


# --------------------------------------------------------------------------- running

# Runs in the child interpreter (started with -I, and -S when isolated): the Lambda
# runtime's part. argv[1] is the JSON configuration, stdin the event.
_BOOTSTRAP = r"""
import importlib, json, logging, os, sys, threading, time, traceback, uuid

config = json.loads(sys.argv[1])
sys.path[:0] = config["paths"]
sys.path.extend(config["append_paths"])
# The result travels on the original stdout; whatever the function prints is a log line.
result_fd = os.dup(1)
os.dup2(2, 1)
request_id = str(uuid.uuid4())
finished = threading.Lock()


def emit(document, status):
    if not finished.acquire(blocking=False):
        # Another thread (the timeout, or the handler) is answering and will exit.
        threading.Event().wait()
    try:
        data = json.dumps(document)
    except (TypeError, ValueError) as error:
        document = {
            "errorType": "Runtime.MarshalError",
            "errorMessage": "Unable to marshal response: " + str(error),
            "requestId": request_id,
            "stackTrace": [],
        }
        data, status = json.dumps(document), 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os.write(result_fd, data.encode())
        os._exit(status)


def fail(error_type, message, stack):
    trace = "Traceback (most recent call last):\n" + "".join(stack) if stack else ""
    sys.stderr.write("[ERROR] %s: %s\n%s" % (error_type, message, trace))
    emit({"errorType": error_type, "errorMessage": message, "requestId": request_id,
          "stackTrace": stack}, 1)


class RequestIdFilter(logging.Filter):
    def filter(self, record):
        record.aws_request_id = request_id
        return True


# Lambda's runtime installs this handler on the root logger before importing the function.
log_handler = logging.StreamHandler(sys.stderr)
log_handler.setFormatter(logging.Formatter(
    "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s",
    "%Y-%m-%dT%H:%M:%S"))
log_handler.formatter.converter = time.gmtime
log_handler.addFilter(RequestIdFilter())
logging.getLogger().addHandler(log_handler)

event = json.loads(sys.stdin.buffer.read() or b"null")
handler_name = config["handler"]
try:
    module_name, function_name = handler_name.rsplit(".", 1)
except ValueError as error:
    fail("Runtime.MalformedHandlerName", "Bad handler '%s': %s" % (handler_name, error), [])
module_name = module_name.replace("/", ".")
try:
    module = importlib.import_module(module_name)
except ImportError as error:
    fail("Runtime.ImportModuleError",
         "Unable to import module '%s': %s" % (module_name, error), [])
except SyntaxError as error:
    fail("Runtime.UserCodeSyntaxError",
         "Syntax error in module '%s': %s" % (module_name, error),
         ['  File "%s" Line %s\n    %s' % (error.filename, error.lineno, error.text)])
except Exception as error:
    fail(type(error).__name__, str(error), traceback.format_tb(error.__traceback__))
handler = getattr(module, function_name, None)
if handler is None:
    fail("Runtime.HandlerNotFound",
         "Handler '%s' missing on module '%s'" % (function_name, module_name), [])


class LambdaContext:
    def __init__(self, deadline):
        self._deadline = deadline
        self.function_name = config["function_name"]
        self.function_version = "$LATEST"
        self.invoked_function_arn = config["function_arn"]
        # A string, as in Lambda's Python runtime (it comes from the environment).
        self.memory_limit_in_mb = config["memory"]
        self.aws_request_id = request_id
        self.log_group_name = config["log_group"]
        self.log_stream_name = config["log_stream"]
        self.identity = None
        self.client_context = None
        self.tenant_id = None

    def get_remaining_time_in_millis(self):
        return max(0, int((self._deadline - time.monotonic()) * 1000))

    def log(self, message):
        sys.stderr.write(str(message))


timeout = config["timeout"]
message = "Task timed out after %.2f seconds" % timeout
watchdog = threading.Timer(timeout, fail, ("Sandbox.Timedout", message, []))
watchdog.daemon = True
context = LambdaContext(time.monotonic() + timeout)
watchdog.start()
try:
    response = handler(event, context)
except SystemExit as error:
    fail("Runtime.ExitError", "Runtime exited with error: exit status %s" % error.code, [])
except Exception as error:
    # Drop this bootstrap's own frame, as Lambda does with its runtime's.
    fail(type(error).__name__, str(error), traceback.format_tb(error.__traceback__.tb_next))
emit(response, 0)
"""


@dataclass(frozen=True)
class InvokeResult:
    """The outcome of one local invocation.

    ``returncode`` is 0 when the handler returned; ``payload`` is the parsed JSON it
    returned, or Lambda's error document when it raised or timed out; ``stdout`` is the
    raw payload text; ``stderr`` the function's logs (empty when they were streamed).
    """

    returncode: int
    payload: Any
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def error(self) -> dict[str, Any] | None:
        """Lambda's ``{"errorType", "errorMessage", ...}`` when the invocation failed."""
        if self.ok or not isinstance(self.payload, dict):
            return None
        return self.payload


def _built_template(
    build_dir: str | os.PathLike[str], template: str | os.PathLike[str] | None
) -> Path:
    template_path = Path(template) if template is not None else Path(build_dir) / "template.yaml"
    if not template_path.is_file():
        raise LocalInvokeError(
            f"{template_path} not found: build first (`make build`, i.e. `sam build`)."
        )
    return template_path


def invoke(
    function_id: str,
    event: Any,
    env: Mapping[str, str] | None = None,
    build_dir: str | os.PathLike[str] = DEFAULT_BUILD_DIR,
    timeout: float | None = None,
    *,
    template: str | os.PathLike[str] | None = None,
    region: str | None = None,
    parameter_overrides: Mapping[str, str] | None = None,
    isolate: bool = True,
    stream_logs: bool = False,
) -> InvokeResult:
    """Invoke ``function_id`` of the built template with ``event`` in a fresh interpreter
    (``node`` for a Node.js function).

    ``env`` overrides the template's environment (pass ``load_env_overrides(...)`` for an
    env-vars file). ``timeout`` overrides the template's Timeout. ``isolate=False`` lets
    the function import anything this interpreter can (not just what Lambda would have).
    ``stream_logs`` sends the function's logs to this process's stderr as they happen.
    """
    template_path = _built_template(build_dir, template)
    overrides = {str(key): _stringify(value) for key, value in (env or {}).items()}
    region = region or overrides.get("AWS_REGION") or DEFAULT_REGION
    spec = resolve_function(
        load_template(template_path),
        template_path.parent,
        function_id,
        parameter_overrides=parameter_overrides,
        region=region,
    )
    if timeout is not None:
        spec = dataclasses.replace(spec, timeout=float(timeout))
    child_env = _child_environment(spec, overrides, region)
    if spec.runtime.startswith("nodejs"):
        return _invoke_node(spec, child_env, event, isolate=isolate, stream_logs=stream_logs)
    if spec.runtime != f"python{sys.version_info.major}.{sys.version_info.minor}":
        print(
            f"local_invoke: {function_id} targets {spec.runtime}; running it with "
            f"Python {sys.version.split()[0]} ({sys.executable}).",
            file=sys.stderr,
        )
    with tempfile.TemporaryDirectory(prefix="local-invoke-runtime-") as runtime_dir:
        append_paths = [_link_runtime_packages(Path(runtime_dir))] if isolate else []
        config = {
            "paths": [str(spec.code_dir), *map(str, spec.layer_paths)],
            "append_paths": append_paths,
            "handler": spec.handler,
            "timeout": spec.timeout,
            "function_name": child_env["AWS_LAMBDA_FUNCTION_NAME"],
            "function_arn": spec.function_arn(child_env["AWS_REGION"]),
            "memory": child_env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"],
            "log_group": child_env["AWS_LAMBDA_LOG_GROUP_NAME"],
            "log_stream": child_env["AWS_LAMBDA_LOG_STREAM_NAME"],
        }
        # -I: no PYTHON* variables, no user site; -S: no site-packages (Lambda has none of
        # ours); -B: no __pycache__ written into the build directory that gets deployed.
        flags = ["-I", "-B", "-S"] if isolate else ["-I", "-B"]
        command = [sys.executable, *flags, "-c", _BOOTSTRAP, json.dumps(config)]
        return _run(command, spec, child_env, event, stream_logs)


def _invoke_node(
    spec: FunctionSpec, env: dict[str, str], event: Any, *, isolate: bool, stream_logs: bool
) -> InvokeResult:
    """Run a Node.js handler in ``node`` the way Lambda's Node.js runtime does."""
    node = shutil.which("node", path=env.get("PATH"))
    if node is None:
        raise LocalInvokeError(
            f"node is not on PATH: install Node.js {_node_major(spec.runtime)} to run "
            f"{spec.logical_id} locally."
        )
    _note_node_version(node, spec)
    with tempfile.TemporaryDirectory(prefix="local-invoke-node-runtime-") as runtime_dir:
        runtime_modules = _link_node_runtime_packages(Path(runtime_dir) / "node_modules")
        sources = [] if isolate else [str(p) for p in NODE_SDK_SOURCES if p.is_dir()]
        # Lambda: the layers, the runtime's node_modules, /var/runtime, /var/task.
        node_path = [*map(str, spec.layer_paths), str(runtime_modules), *sources]
        node_path.append(str(spec.code_dir))
        if env.get("NODE_PATH"):  # the function's own setting extends the runtime's
            node_path.append(env["NODE_PATH"])
        child_env = {**env, "NODE_PATH": os.pathsep.join(node_path)}
        config = {
            "handler": spec.handler,
            "task_root": str(spec.code_dir),
            "timeout": spec.timeout,
            "function_name": child_env["AWS_LAMBDA_FUNCTION_NAME"],
            "function_arn": spec.function_arn(child_env["AWS_REGION"]),
            "memory": child_env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"],
            "log_group": child_env["AWS_LAMBDA_LOG_GROUP_NAME"],
            "log_stream": child_env["AWS_LAMBDA_LOG_STREAM_NAME"],
        }
        command = [node, str(NODE_RUNTIME_DIR / "bootstrap.mjs"), json.dumps(config)]
        return _run(command, spec, child_env, event, stream_logs)


def _note_node_version(node: str, spec: FunctionSpec) -> None:
    completed = subprocess.run(
        [node, "--version"], capture_output=True, text=True, timeout=30, check=False
    )
    version = completed.stdout.strip()
    if not version.startswith(f"v{_node_major(spec.runtime)}."):
        print(
            f"local_invoke: {spec.logical_id} targets {spec.runtime}; running it with "
            f"Node.js {version or '(unknown version)'} ({node}).",
            file=sys.stderr,
        )


def _link_node_runtime_packages(directory: Path) -> Path:
    """A node_modules directory holding only what Lambda's Node.js runtimes provide (the AWS
    SDK for JavaScript v3), linked from the first of ``NODE_SDK_SOURCES`` that has it."""
    directory.mkdir(parents=True, exist_ok=True)
    for source in NODE_SDK_SOURCES:
        scopes = [scope for scope in NODE_RUNTIME_SCOPES if (source / scope).is_dir()]
        for scope in scopes:
            (directory / scope).symlink_to(source / scope, target_is_directory=True)
        if scopes:
            return directory
    print(
        "local_invoke: no AWS SDK for JavaScript v3 found (run `npm ci` in "
        "layers/wechat_token_node): a function that uses it fails here, not in Lambda.",
        file=sys.stderr,
    )
    return directory


def _child_environment(
    spec: FunctionSpec, overrides: Mapping[str, str], region: str
) -> dict[str, str]:
    name = spec.function_name
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "LAMBDA_TASK_ROOT": str(spec.code_dir),
        "_HANDLER": spec.handler,
        "AWS_EXECUTION_ENV": f"AWS_Lambda_{spec.runtime}",
        "AWS_SAM_LOCAL": "true",
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
        "AWS_LAMBDA_FUNCTION_TIMEOUT": f"{spec.timeout:g}",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": time.strftime("%Y/%m/%d/[$LATEST]local", time.gmtime()),
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        **STAND_IN_CREDENTIALS,
        # Keep the caller's ~/.aws (profiles, endpoints, real keys) out of the function.
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    env.update(spec.environment)
    env.update(overrides)
    return env


def _link_runtime_packages(directory: Path) -> str:
    """A directory holding only the packages Lambda's Python runtime provides."""
    for name in RUNTIME_PACKAGES:
        found = importlib.util.find_spec(name)
        if found is None:
            continue
        if found.submodule_search_locations:
            source = Path(next(iter(found.submodule_search_locations)))
            (directory / name).symlink_to(source, target_is_directory=True)
        elif found.origin:
            source = Path(found.origin)
            (directory / source.name).symlink_to(source)
    return str(directory)


def _run(
    command: list[str],
    spec: FunctionSpec,
    env: dict[str, str],
    event: Any,
    stream_logs: bool,
) -> InvokeResult:
    with subprocess.Popen(
        command,
        cwd=spec.code_dir,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=None if stream_logs else subprocess.PIPE,
    ) as process:
        try:
            # The child enforces the timeout itself; this is the backstop for a hung init.
            out, err = process.communicate(
                json.dumps(event).encode(), timeout=spec.timeout + INIT_ALLOWANCE_SECONDS + 5
            )
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
            document = {
                "errorType": "Sandbox.Timedout",
                "errorMessage": f"Task timed out after {spec.timeout:.2f} seconds (killed)",
            }
            return InvokeResult(
                returncode=process.returncode or 1,
                payload=document,
                stdout=json.dumps(document),
                stderr=(err or b"").decode(errors="replace"),
            )
    stdout = out.decode(errors="replace")
    stderr = (err or b"").decode(errors="replace")
    try:
        payload = json.loads(stdout) if stdout else None
    except json.JSONDecodeError:
        payload = None
    returncode = process.returncode
    if returncode == 0 and not stdout:
        returncode = 1  # the interpreter died before answering
    return InvokeResult(returncode=returncode, payload=payload, stdout=stdout, stderr=stderr)


# --------------------------------------------------------------------------- command line


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="local_invoke.py",
        description="Invoke a built SAM function without Docker (like `sam local invoke`).",
    )
    parser.add_argument("function_id", help="logical id in the template, e.g. RefresherFunction")
    parser.add_argument(
        "-e", "--event", help="event JSON file, or - for stdin (default: an empty object {})"
    )
    parser.add_argument("-n", "--env-vars", help="env-vars JSON file, as for sam local invoke")
    parser.add_argument(
        "--build-dir",
        default=str(DEFAULT_BUILD_DIR),
        help="default: this repository's .aws-sam/build",
    )
    parser.add_argument("-t", "--template", help="default: <build-dir>/template.yaml")
    parser.add_argument("--timeout", type=float, help="seconds; default: the template's Timeout")
    parser.add_argument(
        "--region", help=f"default: AWS_REGION from env-vars, else {DEFAULT_REGION}"
    )
    parser.add_argument(
        "--parameter-overrides",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="template parameter values, as for sam local invoke",
    )
    parser.add_argument(
        "--no-isolation",
        action="store_true",
        help="let the function import this interpreter's site-packages (Node.js: every "
        "package of NODE_SDK_SOURCES, not only the AWS SDK)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        if args.event in (None, ""):
            event: Any = {}
        elif args.event == "-":
            event = json.load(sys.stdin)
        else:
            with open(args.event, encoding="utf-8") as handle:
                event = json.load(handle)
        env = load_env_overrides(args.env_vars, args.function_id) if args.env_vars else {}
        parameters = dict(item.split("=", 1) for item in args.parameter_overrides)
        result = invoke(
            args.function_id,
            event,
            env,
            build_dir=args.build_dir,
            timeout=args.timeout,
            template=args.template,
            region=args.region,
            parameter_overrides=parameters,
            isolate=not args.no_isolation,
            stream_logs=True,
        )
    except (LocalInvokeError, OSError, ValueError) as error:
        print(f"local_invoke: {error}", file=sys.stderr)
        return 2
    print(result.stdout)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
