"""The Node.js consumer layer and its example function, as template.yaml and the package define
them: the same guarantees and the same least privilege as the Python layer and its example."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from scripts.local_invoke import load_template

ROOT = Path(__file__).resolve().parents[2]
NODE_LAYER = ROOT / "layers" / "wechat_token_node"
NODE_EXAMPLE = ROOT / "functions" / "example_consumer_node"
EVENTS = ROOT / "events"
LAYER_REF = {"Ref": "WeChatTokenNodeLayer"}
# The Node.js runtimes Lambda runs on 2026-12 (nodejs20.x is deprecated but still runs).
CURRENT_NODE_RUNTIMES = {"nodejs22.x", "nodejs24.x"}


@pytest.fixture(scope="module")
def resources() -> dict[str, Any]:
    found: dict[str, Any] = load_template(ROOT / "template.yaml")["Resources"]
    return found


@pytest.fixture(scope="module")
def package() -> dict[str, Any]:
    found: dict[str, Any] = json.loads((NODE_LAYER / "package.json").read_text())
    return found


def test_layer_is_built_without_docker_for_current_node_runtimes(
    resources: dict[str, Any],
) -> None:
    layer = resources["WeChatTokenNodeLayer"]
    assert layer["Type"] == "AWS::Serverless::LayerVersion"
    # A Makefile copies the package into nodejs/node_modules: no Docker, no npm registry.
    assert layer["Metadata"]["BuildMethod"] == "makefile"
    makefile = (NODE_LAYER / "Makefile").read_text()
    assert re.search(r"^build-WeChatTokenNodeLayer:", makefile, re.MULTILINE)
    assert "nodejs/node_modules/wechat-token" in makefile
    assert "npm" not in re.sub(r"#.*", "", makefile)
    props = layer["Properties"]
    assert props["ContentUri"].rstrip("/") == "layers/wechat_token_node"
    assert set(props["CompatibleRuntimes"]) >= CURRENT_NODE_RUNTIMES
    assert all(runtime.startswith("nodejs") for runtime in props["CompatibleRuntimes"])
    assert set(props["CompatibleArchitectures"]) == {"arm64", "x86_64"}
    assert props["RetentionPolicy"] == "Retain"


def test_example_runs_on_the_node_layer(resources: dict[str, Any]) -> None:
    props = resources["ExampleConsumerNodeFunction"]["Properties"]
    assert props["CodeUri"].rstrip("/") == "functions/example_consumer_node"
    assert props["Handler"] == "index.handler"
    assert props["Runtime"] in CURRENT_NODE_RUNTIMES
    assert props["Runtime"] in resources["WeChatTokenNodeLayer"]["Properties"]["CompatibleRuntimes"]
    assert props["Layers"] == [LAYER_REF]
    source = (NODE_EXAMPLE / "index.mjs").read_text()
    assert re.search(r"^export async function handler\(", source, re.MULTILINE)
    assert 'from "wechat-token"' in source


def test_example_has_exactly_the_python_examples_policy_and_settings(
    resources: dict[str, Any],
) -> None:
    node = resources["ExampleConsumerNodeFunction"]
    python = resources["ExampleConsumerFunction"]
    # Statement for statement the scoped consumer policy (test_template_security.py checks it).
    assert node["Properties"]["Policies"] == python["Properties"]["Policies"]
    assert node["Properties"]["Environment"] == python["Properties"]["Environment"]
    assert "Role" not in node["Properties"]
    skipped = {skip["id"] for skip in node["Metadata"]["checkov"]["skip"]}
    assert skipped == {skip["id"] for skip in python["Metadata"]["checkov"]["skip"]}
    log_group = node["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
    assert resources[log_group]["Type"] == "AWS::Logs::LogGroup"
    assert log_group != python["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]


def test_the_layer_waits_for_the_passive_function_to_answer(resources: dict[str, Any]) -> None:
    source = (NODE_LAYER / "src" / "passive.mjs").read_text()
    (timeout_ms,) = re.findall(r"INVOKE_TIMEOUT_MS = ([\d_]+);", source)
    passive = resources["PassiveRefreshFunction"]["Properties"]
    assert passive["Timeout"] < int(timeout_ms.replace("_", "")) / 1000


def test_outputs_and_event() -> None:
    outputs = load_template(ROOT / "template.yaml")["Outputs"]
    assert outputs["WeChatTokenNodeLayerArn"]["Value"] == LAYER_REF
    assert outputs["ExampleConsumerNodeFunctionName"]["Value"] == {
        "Ref": "ExampleConsumerNodeFunction"
    }
    assert json.loads((EVENTS / "consumer_node.json").read_text()) == json.loads(
        (EVENTS / "consumer.json").read_text()
    )


def test_package_is_an_es_module_with_types_and_only_the_aws_sdk_at_runtime(
    package: dict[str, Any],
) -> None:
    assert package["name"] == "wechat-token"
    assert package["type"] == "module"
    assert package["exports"]["."]["types"] == package["types"] == "./src/index.d.ts"
    assert (NODE_LAYER / package["exports"]["."]["default"]).is_file()
    assert (NODE_LAYER / package["types"]).is_file()
    assert "dependencies" not in package
    assert set(package["peerDependencies"]) == {
        "@aws-sdk/client-dynamodb",
        "@aws-sdk/client-lambda",
    }
    assert "aws-sdk-client-mock" in package["devDependencies"]
    lock = json.loads((NODE_LAYER / "package-lock.json").read_text())
    assert lock["packages"][""]["devDependencies"] == package["devDependencies"]


def test_layer_sources_hold_no_todo_and_no_static_sdk_import() -> None:
    for source in (NODE_LAYER / "src").glob("*.mjs"):
        text = source.read_text()
        assert "TODO" not in text, source
        # The SDK loads on first use (import("@aws-sdk/...")), never at import time.
        assert not re.search(r"^import .* from \"@aws-sdk/", text, re.MULTILINE), source
