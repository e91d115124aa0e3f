"""What users and operators rely on in template.yaml, asserted on the source template."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from scripts.local_invoke import load_template

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"

TABLE_ARN = {"Fn::GetAtt": ["TokenTable", "Arn"]}
REFRESHER_ARN = {"Fn::GetAtt": ["RefresherFunction", "Arn"]}
SECRET_ARN = {"Ref": "AppRegistrySecret"}
LAYER_REF = {"Ref": "WeChatTokenLayer"}

REFRESHER_ENV = {
    "TOKEN_TABLE_NAME",
    "WECHAT_APPS_SECRET_ID",
    "WECHAT_API_BASE_URL",
    "WECOM_API_BASE_URL",
    "REFRESH_INTERVAL_SECONDS",
    "DAILY_CALL_BUDGET",
    "REFRESH_CONCURRENCY",
    "POWERTOOLS_SERVICE_NAME",
    "LOG_LEVEL",
}
CONSUMER_ENV = {
    "TOKEN_TABLE_NAME",
    "WECHAT_APP_ID",
    "WECHAT_API_BASE_URL",
    "REFRESHER_FUNCTION_NAME",
}
OUTPUTS = {
    "TokenTableName",
    "WeChatTokenLayerArn",
    "RefresherFunctionArn",
    "RefresherFunctionName",
    "ConsumerPolicyArn",
    "AppRegistrySecretArn",
    "ExampleConsumerFunctionName",
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(ROOT / "template.yaml")


@pytest.fixture(scope="module")
def resources(template: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = template["Resources"]
    return found


def _props(resources: dict[str, Any], logical_id: str) -> dict[str, Any]:
    props: dict[str, Any] = resources[logical_id]["Properties"]
    return props


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _function_statements(resources: dict[str, Any], logical_id: str) -> list[dict[str, Any]]:
    policies = _props(resources, logical_id)["Policies"]
    # Inline statements only: SAM policy templates and managed policies are broader.
    assert all(isinstance(p, dict) and "Statement" in p for p in policies), policies
    return [statement for policy in policies for statement in policy["Statement"]]


def _grants(statements: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """action -> resources it is allowed on."""
    grants: dict[str, list[Any]] = {}
    for statement in statements:
        assert statement["Effect"] == "Allow"
        assert "NotAction" not in statement
        assert "NotResource" not in statement
        for action in _as_list(statement["Action"]):
            grants.setdefault(action, []).extend(_as_list(statement["Resource"]))
    return grants


def _contains_wildcard(value: Any) -> bool:
    if isinstance(value, str):
        return "*" in value
    if isinstance(value, list):
        return any(_contains_wildcard(item) for item in value)
    if isinstance(value, dict):
        return any(_contains_wildcard(item) for item in value.values())
    return False


def _effective_env(template: dict[str, Any], logical_id: str) -> dict[str, Any]:
    globals_env = template["Globals"]["Function"]["Environment"]["Variables"]
    own = _props(template["Resources"], logical_id).get("Environment", {}).get("Variables", {})
    return {**globals_env, **own}


def _rate_seconds(expression: str) -> int:
    match = re.fullmatch(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)", expression)
    assert match, f"not a rate expression: {expression}"
    unit = {"minute": 60, "hour": 3600, "day": 86400}[match.group(2).rstrip("s")]
    return int(match.group(1)) * unit


def test_is_a_sam_template_with_python313_arm64_globals(template: dict[str, Any]) -> None:
    assert template["Transform"] == "AWS::Serverless-2016-10-31"
    assert template["Description"]
    function_globals = template["Globals"]["Function"]
    assert function_globals["Runtime"] == "python3.13"
    assert function_globals["Architectures"] == ["arm64"]
    assert function_globals["Environment"]["Variables"]["TOKEN_TABLE_NAME"] == {"Ref": "TokenTable"}


def test_token_table_schema_billing_encryption_and_retention(resources: dict[str, Any]) -> None:
    table = resources["TokenTable"]
    assert table["Type"] == "AWS::DynamoDB::Table"
    assert table["DeletionPolicy"] == "Retain"
    assert table["UpdateReplacePolicy"] == "Retain"
    props = table["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["KeySchema"] == [
        {"AttributeName": "app_id", "KeyType": "HASH"},
        {"AttributeName": "kind", "KeyType": "RANGE"},
    ]
    assert sorted(props["AttributeDefinitions"], key=lambda a: a["AttributeName"]) == [
        {"AttributeName": "app_id", "AttributeType": "S"},
        {"AttributeName": "kind", "AttributeType": "S"},
    ]
    assert props["SSESpecification"]["SSEEnabled"] is True
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    # A retained table with a fixed name would make re-creating the stack fail.
    assert "TableName" not in props


def test_app_registry_secret_is_a_placeholder_that_updates_do_not_clobber(
    resources: dict[str, Any],
) -> None:
    secret = resources["AppRegistrySecret"]
    assert secret["Type"] == "AWS::SecretsManager::Secret"
    assert secret["DeletionPolicy"] == "Retain"
    assert secret["UpdateReplacePolicy"] == "Retain"
    props = secret["Properties"]
    assert json.loads(props["SecretString"]) == {}
    assert "GenerateSecretString" not in props
    assert "put-secret-value" in props["Description"]


def test_layer_builds_for_python313_arm64(resources: dict[str, Any]) -> None:
    layer = resources["WeChatTokenLayer"]
    assert layer["Type"] == "AWS::Serverless::LayerVersion"
    assert layer["Metadata"]["BuildMethod"] == "python3.13"
    assert layer["Metadata"].get("BuildArchitecture", "arm64") == "arm64"
    props = layer["Properties"]
    assert props["ContentUri"].rstrip("/") == "layers/wechat_token"
    assert props["CompatibleRuntimes"] == ["python3.13"]
    assert "arm64" in props["CompatibleArchitectures"]
    assert props["RetentionPolicy"] == "Retain"


@pytest.mark.parametrize(
    ("logical_id", "code_uri"),
    [
        ("RefresherFunction", "functions/refresher"),
        ("ExampleConsumerFunction", "functions/example_consumer"),
    ],
)
def test_functions_use_their_code_and_the_layer(
    resources: dict[str, Any], logical_id: str, code_uri: str
) -> None:
    props = _props(resources, logical_id)
    assert resources[logical_id]["Type"] == "AWS::Serverless::Function"
    assert props["CodeUri"].rstrip("/") == code_uri
    assert props["Handler"] == "app.lambda_handler"
    assert props["Layers"] == [LAYER_REF]


def test_refresher_has_time_for_retries_and_no_reserved_concurrency(
    resources: dict[str, Any],
) -> None:
    props = _props(resources, "RefresherFunction")
    assert props["Timeout"] >= 300
    assert props["MemorySize"] == 256
    # Accounts with a low concurrency limit cannot reserve any.
    assert "ReservedConcurrentExecutions" not in props


def test_environment_variable_names(template: dict[str, Any]) -> None:
    assert set(_effective_env(template, "RefresherFunction")) == REFRESHER_ENV
    assert set(_effective_env(template, "ExampleConsumerFunction")) >= CONSUMER_ENV
    consumer = _effective_env(template, "ExampleConsumerFunction")
    assert consumer["WECHAT_APP_ID"] == {"Ref": "ExampleAppId"}
    assert consumer["REFRESHER_FUNCTION_NAME"] == {"Ref": "RefresherFunction"}
    # Consumers never learn where the secrets are.
    assert "WECHAT_APPS_SECRET_ID" not in consumer


def test_refresher_runs_hourly_on_eventbridge_scheduler_with_retries(
    template: dict[str, Any],
) -> None:
    events = _props(template["Resources"], "RefresherFunction")["Events"]
    schedules = [event for event in events.values() if event["Type"] == "ScheduleV2"]
    assert len(schedules) == 1
    assert len(events) == 1
    schedule = schedules[0]["Properties"]
    assert schedule["ScheduleExpression"] == {"Ref": "ScheduleExpression"}
    assert template["Parameters"]["ScheduleExpression"]["Default"] == "rate(1 hour)"
    assert schedule["FlexibleTimeWindow"] == {"Mode": "OFF"}
    assert schedule["RetryPolicy"] == {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 900}
    assert schedule.get("State", "ENABLED") == "ENABLED"


def test_scheduled_input_is_events_scheduled_json_and_names_no_app(
    resources: dict[str, Any],
) -> None:
    (event,) = _props(resources, "RefresherFunction")["Events"].values()
    delivered = json.loads(event["Properties"]["Input"])
    assert delivered == json.loads((EVENTS / "scheduled.json").read_text())
    assert "app_id" not in delivered  # the handler treats it as a scheduled run


def test_refresh_interval_default_matches_the_schedule(template: dict[str, Any]) -> None:
    parameters = template["Parameters"]
    interval = parameters["RefreshIntervalSeconds"]
    assert _rate_seconds(parameters["ScheduleExpression"]["Default"]) == interval["Default"]
    env = _effective_env(template, "RefresherFunction")
    assert env["REFRESH_INTERVAL_SECONDS"] == {"Ref": "RefreshIntervalSeconds"}


def test_refresher_policy_is_exactly_its_table_and_secret(resources: dict[str, Any]) -> None:
    statements = _function_statements(resources, "RefresherFunction")
    assert _grants(statements) == {
        "dynamodb:GetItem": [TABLE_ARN],
        "dynamodb:PutItem": [TABLE_ARN],
        "dynamodb:UpdateItem": [TABLE_ARN],
        "secretsmanager:GetSecretValue": [SECRET_ARN],
    }
    assert not _contains_wildcard(statements)


def test_example_consumer_reads_only_its_own_app_and_no_secret(
    resources: dict[str, Any],
) -> None:
    statements = _function_statements(resources, "ExampleConsumerFunction")
    assert _grants(statements) == {
        "dynamodb:GetItem": [TABLE_ARN],
        "lambda:InvokeFunction": [REFRESHER_ARN],
    }
    assert not _contains_wildcard(statements)
    (read,) = [s for s in statements if s["Action"] in ("dynamodb:GetItem", ["dynamodb:GetItem"])]
    assert read["Condition"] == {
        "ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [{"Ref": "ExampleAppId"}]}
    }


def test_consumer_managed_policy_reads_the_table_and_requests_refreshes_only(
    resources: dict[str, Any],
) -> None:
    policy = resources["ConsumerPolicy"]
    assert policy["Type"] == "AWS::IAM::ManagedPolicy"
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    assert _grants(statements) == {
        "dynamodb:GetItem": [TABLE_ARN],
        "lambda:InvokeFunction": [REFRESHER_ARN],
    }
    assert not _contains_wildcard(statements)
    assert "dynamodb:LeadingKeys" in policy["Properties"]["Description"]


def _statements_anywhere(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, dict):
        found = [value] if "Effect" in value and "Action" in value else []
        return found + [s for item in value.values() for s in _statements_anywhere(item)]
    if isinstance(value, list):
        return [s for item in value for s in _statements_anywhere(item)]
    return []


def test_nothing_but_the_refresher_may_read_the_secret(resources: dict[str, Any]) -> None:
    readers = {
        logical_id
        for logical_id, resource in resources.items()
        for statement in _statements_anywhere(resource.get("Properties", {}))
        if any(str(a).startswith("secretsmanager:") for a in _as_list(statement["Action"]))
    }
    assert readers == {"RefresherFunction"}


def test_parameters_have_descriptions_and_safe_bounds(template: dict[str, Any]) -> None:
    parameters = template["Parameters"]
    for name in (
        "ScheduleExpression",
        "RefreshIntervalSeconds",
        "DailyCallBudget",
        "RefreshConcurrency",
        "WeChatApiBaseUrl",
        "WeComApiBaseUrl",
        "ExampleAppId",
        "LogLevel",
    ):
        assert parameters[name].get("Description"), name
    budget = parameters["DailyCallBudget"]
    assert budget["Default"] == 1000
    assert budget["MaxValue"] < 2000  # WeChat's daily quota per app
    assert parameters["RefreshIntervalSeconds"]["Default"] == 3600
    assert parameters["RefreshConcurrency"]["Default"] == 16
    assert parameters["WeChatApiBaseUrl"]["Default"] == "https://api.weixin.qq.com"
    assert parameters["WeComApiBaseUrl"]["Default"] == "https://qyapi.weixin.qq.com"
    assert re.fullmatch(parameters["ExampleAppId"]["AllowedPattern"], "wx0000000000000000")
    for url_parameter in ("WeChatApiBaseUrl", "WeComApiBaseUrl"):
        pattern = parameters[url_parameter]["AllowedPattern"]
        assert re.fullmatch(pattern, parameters[url_parameter]["Default"])
        assert not re.fullmatch(pattern, "https://api.weixin.qq.com/")


def test_all_outputs_present(template: dict[str, Any]) -> None:
    assert set(template["Outputs"]) >= OUTPUTS
    for name in OUTPUTS:
        assert template["Outputs"][name]["Value"], name


def test_event_payloads() -> None:
    assert json.loads((EVENTS / "force_refresh.json").read_text()) == {
        "app_id": "wx0000000000000000",
        "force": True,
    }
    passive = json.loads((EVENTS / "passive_refresh.json").read_text())
    assert passive["app_id"] == "wx0000000000000000"
    assert passive["kind"] == "access_token"
    assert passive["stale_token"].startswith("sha256:")
    assert isinstance(json.loads((EVENTS / "consumer.json").read_text()), dict)


def test_env_file_sets_only_what_each_function_declares(template: dict[str, Any]) -> None:
    """sam local invoke ignores names the template does not declare (AWS_* aside)."""
    env_file = json.loads((EVENTS / "env.json").read_text())
    for logical_id in ("RefresherFunction", "ExampleConsumerFunction"):
        declared = set(_effective_env(template, logical_id))
        section = env_file[logical_id]
        assert all(isinstance(value, str) for value in section.values())
        assert {name for name in section if not name.startswith("AWS_")} <= declared
        assert section["TOKEN_TABLE_NAME"] == "wechat-token-local"
    assert env_file["RefresherFunction"]["WECHAT_APPS_SECRET_ID"] == "wechat-token/apps"
