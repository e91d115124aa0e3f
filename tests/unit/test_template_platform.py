"""PlatformCallbackFunction in template.yaml: a public Function URL, a concurrency cap, and a
role that can write pushes but read no token. Asserted on the source template, on what
`sam build` made of it and on SAM's transform (helpers from test_template_security.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from platform_callback.push import ComponentConfig, InMemoryNonceStore, VerifyTicket, verify_push
from platform_callback.schema import (
    EVENT_PREFIX,
    NONCE_ATTRIBUTES,
    NONCE_PREFIX,
    TICKET_PREFIX,
    WRITTEN_ATTRIBUTES,
)

from scripts.local_invoke import load_template
from scripts.platform_push_event import (
    DEMO_AES_KEY,
    DEMO_COMPONENT_APPID,
    DEMO_TOKEN,
    demo_registry_entry,
)
from tests.unit.test_template_security import (
    BUILT,
    SOURCE,
    _as_list,
    _expand,
    _grants_of,
    _identity_statements,
    _of_type,
    _synthesize,
)

ROOT = Path(__file__).resolve().parents[2]
FUNCTION = "PlatformCallbackFunction"
ROLE = "PlatformCallbackRole"
TABLE_ARN = {"Fn::GetAtt": ["TokenTable", "Arn"]}
SECRET_REF = {"Ref": "AppRegistrySecret"}
NO_VALUE = {"Ref": "AWS::NoValue"}
RETURN_NOTHING = {"StringEqualsIfExists": {"dynamodb:ReturnValues": "NONE"}}
# Every DynamoDB action that returns stored data, removes it or writes several items.
READS_OR_DELETES = {
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:Query",
    "dynamodb:Scan",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:TransactGetItems",
    "dynamodb:TransactWriteItems",
    "dynamodb:ConditionCheckItem",
    "dynamodb:PartiQLSelect",
    "dynamodb:PartiQLUpdate",
    "dynamodb:PartiQLInsert",
    "dynamodb:PartiQLDelete",
    "dynamodb:GetRecords",
    "dynamodb:ExportTableToPointInTime",
    "dynamodb:RestoreTableToPointInTime",
}


@pytest.fixture(scope="module")
def source() -> dict[str, Any]:
    return load_template(SOURCE)


@pytest.fixture(scope="module")
def synthesized() -> dict[str, Any]:
    return _synthesize()


@pytest.fixture(scope="module", params=["source", "built", "synthesized"])
def variant(request: pytest.FixtureRequest) -> dict[str, Any]:
    if request.param == "source":
        return load_template(SOURCE)
    if request.param == "built":
        if not BUILT.is_file() or BUILT.stat().st_mtime < SOURCE.stat().st_mtime:
            pytest.skip(f"{BUILT} is missing or older than template.yaml: run `make build`")
        return load_template(BUILT)
    return _synthesize()


def _props(template: dict[str, Any], logical_id: str) -> dict[str, Any]:
    props: dict[str, Any] = template["Resources"][logical_id]["Properties"]
    return props


def _statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for owner, s in _identity_statements(template) if owner == ROLE]


def _by_action(template: dict[str, Any], action: str) -> dict[str, Any]:
    [statement] = [s for s in _statements(template) if action in _as_list(s["Action"])]
    return statement


# ------------------------------------------------------------------ the function


def test_the_function_runs_the_callback_like_the_other_functions(source: dict[str, Any]) -> None:
    function = source["Resources"][FUNCTION]
    assert function["Type"] == "AWS::Serverless::Function"
    props = function["Properties"]
    assert props["CodeUri"].rstrip("/") == "functions/platform_callback"
    assert props["Handler"] == "app.lambda_handler"
    assert props["Role"] == {"Fn::GetAtt": [ROLE, "Arn"]}
    # Globals: python3.13, arm64, Tracing Active, TOKEN_TABLE_NAME, LOG_LEVEL.
    assert not {"Runtime", "Architectures", "Tracing"} & set(props)
    assert source["Globals"]["Function"]["Tracing"] == "Active"
    # Inside WeChat's 5 s; a modest size.
    assert props["Timeout"] <= 5
    assert props["MemorySize"] <= 512
    # No layer (its package carries the few constants it needs), no schedule, no VPC.
    assert not {"Layers", "Events", "VpcConfig", "EventInvokeConfig"} & set(props)
    assert props["Environment"]["Variables"] == {"WECHAT_APPS_SECRET_ID": SECRET_REF}
    assert props["LoggingConfig"] == {"LogGroup": {"Ref": "PlatformCallbackLogGroup"}}
    group = source["Resources"]["PlatformCallbackLogGroup"]["Properties"]
    assert group["RetentionInDays"] == {"Ref": "LogRetentionInDays"}
    skips = {s["id"] for s in function["Metadata"]["checkov"]["skip"]}
    assert skips == {"CKV_AWS_116", "CKV_AWS_117", "CKV_AWS_173", "CKV_AWS_258"}


def test_the_function_url_is_public_and_is_an_output(source: dict[str, Any]) -> None:
    assert _props(source, FUNCTION)["FunctionUrlConfig"] == {"AuthType": "NONE"}
    output = source["Outputs"]["PlatformCallbackUrl"]
    assert output["Value"] == {"Fn::GetAtt": ["PlatformCallbackFunctionUrl", "FunctionUrl"]}
    assert "授权事件接收URL" in output["Description"]


def test_sam_makes_the_url_and_exactly_its_public_permissions(
    synthesized: dict[str, Any],
) -> None:
    urls = _of_type(synthesized, "AWS::Lambda::Url")
    assert set(urls) == {"PlatformCallbackFunctionUrl"}
    url = urls["PlatformCallbackFunctionUrl"]["Properties"]
    assert url["AuthType"] == "NONE"
    assert url["TargetFunctionArn"] == {"Ref": FUNCTION}
    assert "Cors" not in url
    permissions = [
        p["Properties"]
        for p in _of_type(synthesized, "AWS::Lambda::Permission").values()
        if p["Properties"]["FunctionName"] == {"Ref": FUNCTION}
    ]
    # Since October 2025 a public URL needs both: InvokeFunctionUrl (AuthType NONE) and
    # InvokeFunction restricted to calls through the URL. Nothing else invokes it.
    assert sorted(permissions, key=lambda p: p["Action"]) == [
        {
            "Action": "lambda:InvokeFunction",
            "FunctionName": {"Ref": FUNCTION},
            "InvokedViaFunctionUrl": True,
            "Principal": "*",
        },
        {
            "Action": "lambda:InvokeFunctionUrl",
            "FunctionName": {"Ref": FUNCTION},
            "FunctionUrlAuthType": "NONE",
            "Principal": "*",
        },
    ]


def test_reserved_concurrency_caps_a_flood(source: dict[str, Any]) -> None:
    reserved = _props(source, FUNCTION)["ReservedConcurrentExecutions"]
    assert reserved == {
        "Fn::If": [
            "CapPlatformCallbackConcurrency",
            {"Ref": "PlatformCallbackConcurrency"},
            NO_VALUE,
        ]
    }
    parameter = source["Parameters"]["PlatformCallbackConcurrency"]
    assert (parameter["Type"], parameter["Default"]) == ("Number", 5)
    assert parameter["MinValue"] == 0  # 0: no reservation (accounts with a low limit)
    assert parameter["MaxValue"] <= 100
    assert parameter["Description"]
    assert source["Conditions"]["CapPlatformCallbackConcurrency"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "PlatformCallbackConcurrency"}, "0"]}]
    }


# ------------------------------------------------------------------ least privilege


def test_the_role_holds_exactly_what_the_callback_does(variant: dict[str, Any]) -> None:
    grants = _grants_of(variant, ROLE)
    assert grants == {
        "dynamodb:PutItem": [TABLE_ARN],
        "dynamodb:UpdateItem": [TABLE_ARN],
        "secretsmanager:GetSecretValue": [SECRET_REF],
        "kms:Decrypt": [{"Ref": "TableKmsKeyArn"}],
        "logs:CreateLogStream": [{"Fn::GetAtt": ["PlatformCallbackLogGroup", "Arn"]}],
        "logs:PutLogEvents": [{"Fn::GetAtt": ["PlatformCallbackLogGroup", "Arn"]}],
        "xray:PutTraceSegments": ["*"],
        "xray:PutTelemetryRecords": ["*"],
    }
    role = variant["Resources"][ROLE]["Properties"]
    assert "ManagedPolicyArns" not in role  # no AWSLambdaBasicExecutionRole, no VPC access
    # kms:Decrypt only with a customer managed table key, and only through DynamoDB.
    [policy] = role["Policies"]
    conditional = [s for s in policy["PolicyDocument"]["Statement"] if "Fn::If" in s]
    [(condition, decrypt, otherwise)] = [tuple(s["Fn::If"]) for s in conditional]
    assert (condition, otherwise) == ("HasTableKmsKey", NO_VALUE)
    assert decrypt["Condition"] == {
        "StringEquals": {"kms:ViaService": {"Fn::Sub": "dynamodb.${AWS::Region}.amazonaws.com"}}
    }
    # The role is the callback's alone.
    users = [
        logical_id
        for logical_id, resource in _of_type(
            variant, "AWS::Serverless::Function", "AWS::Lambda::Function"
        ).items()
        if resource["Properties"].get("Role") == {"Fn::GetAtt": [ROLE, "Arn"]}
    ]
    assert users == [FUNCTION]


def test_puts_are_nonces_only_and_updates_touch_only_the_push_attributes(
    variant: dict[str, Any],
) -> None:
    put = _by_action(variant, "dynamodb:PutItem")
    assert _as_list(put["Action"]) == ["dynamodb:PutItem"]
    assert set(put["Condition"]) == {
        "ForAllValues:StringLike",
        "ForAllValues:StringEquals",
        "StringEqualsIfExists",
    }
    put_attributes = put["Condition"]["ForAllValues:StringEquals"]["dynamodb:Attributes"]
    assert set(put_attributes) == NONCE_ATTRIBUTES
    assert put["Condition"]["ForAllValues:StringLike"] == {
        "dynamodb:LeadingKeys": [f"{NONCE_PREFIX}*"]
    }
    update = _by_action(variant, "dynamodb:UpdateItem")
    assert _as_list(update["Action"]) == ["dynamodb:UpdateItem"]
    # Only its own partitions: a public URL's function can never overwrite a token record.
    assert update["Condition"]["ForAllValues:StringLike"] == {
        "dynamodb:LeadingKeys": [f"{TICKET_PREFIX}*", f"{EVENT_PREFIX}*"]
    }
    attributes = update["Condition"]["ForAllValues:StringEquals"]["dynamodb:Attributes"]
    # Exactly what platform_callback/store.py's writes name (schema.WRITTEN_ATTRIBUTES).
    assert len(attributes) == len(set(attributes))
    assert set(attributes) == WRITTEN_ATTRIBUTES
    assert set(attributes) == {
        "app_id",
        "kind",
        "value",
        "expires_at",
        "prior_value",
        "prior_expires_at",
        "create_time",
        "fetched_at",
        "source",
        "version",
        "info_type",
        "component_appid",
        "expires_ttl",
    }
    for statement in (put, update):
        assert (
            statement["Condition"]["StringEqualsIfExists"] == RETURN_NOTHING["StringEqualsIfExists"]
        )


def test_the_callback_cannot_read_tokens(variant: dict[str, Any]) -> None:
    statements = _statements(variant)
    actions = {a for s in statements for a in _as_list(s["Action"])}
    dynamodb = {a for a in actions if a.startswith("dynamodb:")}
    assert dynamodb == {"dynamodb:PutItem", "dynamodb:UpdateItem"}
    assert not dynamodb & READS_OR_DELETES
    # Neither write may return what it overwrote (ReturnValues NONE): no token read back.
    for statement in statements:
        if {a for a in _as_list(statement["Action"]) if a.startswith("dynamodb:")}:
            assert statement["Condition"]["StringEqualsIfExists"] == {
                "dynamodb:ReturnValues": "NONE"
            }
    # No other grant reaches a token: no Lambda invoke, no other secret, no wildcard action.
    assert all("*" not in a for a in actions)
    assert not {a for a in actions if a.startswith("lambda:")}
    # And the consumers' policy does not name the callback.
    consumer = json.dumps(_props(variant, "ConsumerPolicy"))
    assert FUNCTION not in consumer


def test_the_secret_policy_lets_the_callback_read_the_registry(variant: dict[str, Any]) -> None:
    policy = _props(variant, "AppRegistrySecretPolicy")["ResourcePolicy"]
    (deny,) = _expand(policy["Statement"])
    assert {"Fn::GetAtt": [ROLE, "Arn"]} in deny["Condition"]["ArnNotEquals"]["aws:PrincipalArn"]


# ------------------------------------------------------------------ build and local files


def _elf_machine(path: Path) -> int:
    header = path.read_bytes()[:20]
    assert header[:4] == b"\x7fELF", path
    return int.from_bytes(header[18:20], "little")


def test_sam_build_vendored_linux_arm64_wheels() -> None:
    built = ROOT / ".aws-sam" / "build" / FUNCTION
    if not built.is_dir() or BUILT.stat().st_mtime < SOURCE.stat().st_mtime:
        pytest.skip(f"{built} is missing or older than template.yaml: run `make build`")
    assert (built / "app.py").is_file()
    assert (built / "platform_callback" / "push.py").is_file()
    for package in ("cryptography", "defusedxml", "aws_lambda_powertools"):
        assert (built / package / "__init__.py").is_file(), package
    [wheel] = built.glob("cryptography-*.dist-info/WHEEL")
    tags = re.findall(r"^Tag: (\S+)$", wheel.read_text(), re.MULTILINE)
    assert tags
    assert all(re.fullmatch(r"cp3\d+-abi3-manylinux[_0-9]*_aarch64", tag) for tag in tags), tags
    native = [*built.rglob("*.so")]
    assert native
    assert {_elf_machine(path) for path in native} == {0xB7}  # EM_AARCH64


def test_the_sample_push_and_the_env_file(source: dict[str, Any]) -> None:
    event = json.loads((ROOT / "events" / "platform_push.json").read_text())
    assert event["version"] == "2.0"
    assert event["requestContext"]["http"]["method"] == "POST"
    stamp = int(event["queryStringParameters"]["timestamp"])
    entry = demo_registry_entry()
    assert (entry["token"], entry["encoding_aes_key"]) == (DEMO_TOKEN, DEMO_AES_KEY)
    configs = {
        DEMO_COMPONENT_APPID: ComponentConfig(DEMO_COMPONENT_APPID, DEMO_TOKEN, DEMO_AES_KEY)
    }
    push = verify_push(event, configs.get, InMemoryNonceStore(), stamp)
    assert isinstance(push, VerifyTicket)
    assert push.ticket.startswith("ticket@@@local-fake-")  # clearly fake
    env = json.loads((ROOT / "events" / "env.json").read_text())[FUNCTION]
    assert env["WECHAT_APPS_SECRET_ID"] == "wechat-token/apps"
    assert env["TOKEN_TABLE_NAME"] == "wechat-token-local"
