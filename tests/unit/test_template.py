"""What users and operators rely on in template.yaml, asserted on the source template.

Security properties (IAM, encryption, retention) are in test_template_security.py.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from token_refresher.settings import Settings

from local_aws.resources import TABLE_INDEXES, TABLE_TTL_ATTRIBUTE
from scripts.local_invoke import load_template

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
OPERATIONS_DOC = ROOT / "docs" / "operations.md"
REFRESHER_SOURCE = ROOT / "functions" / "refresher"
LAYER_SOURCE = ROOT / "layers" / "wechat_token" / "wechat_token"

TABLE_ARN = {"Fn::GetAtt": ["TokenTable", "Arn"]}
REFRESHER_ARN = {"Fn::GetAtt": ["RefresherFunction", "Arn"]}
PASSIVE_ARN = {"Fn::GetAtt": ["PassiveRefreshFunction", "Arn"]}
KMS_KEY_REF = {"Ref": "TableKmsKeyArn"}
KMS_VIA_DYNAMODB = {
    "StringEquals": {"kms:ViaService": {"Fn::Sub": "dynamodb.${AWS::Region}.amazonaws.com"}}
}
SECRET_ARN = {"Ref": "AppRegistrySecret"}
# The optional registry shards (RegistrySecretPrefix; granted only under HasRegistrySecretPrefix).
REGISTRY_SHARDS_ARN = {
    "Fn::Sub": "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}"
    ":secret:${RegistrySecretPrefix}*"
}
LAYER_REF = {"Ref": "WeChatTokenLayer"}
LOG_GROUP_ARN = {"Fn::GetAtt": ["RefresherLogGroup", "Arn"]}
FAILURE_QUEUE_ARN = {"Fn::GetAtt": ["RefresherFailureQueue", "Arn"]}
SCHEDULE_DLQ_ARN = {"Fn::GetAtt": ["ScheduleDeadLetterQueue", "Arn"]}
ALARM_TARGET = {"Fn::If": ["CreateAlarmTopic", {"Ref": "AlarmTopic"}, {"Ref": "AlarmTopicArn"}]}
METRICS_NAMESPACE = "WeChatToken"
SERVICE = "wechat-token"

REFRESHER_ENV = {
    "TOKEN_TABLE_NAME",
    "WECHAT_APPS_SECRET_ID",
    "WECHAT_API_BASE_URL",
    "WECOM_API_BASE_URL",
    "REFRESH_INTERVAL_SECONDS",
    "REFRESH_SLACK_SECONDS",
    "REFRESH_TOKEN_KMS_KEY_ID",
    "DAILY_CALL_BUDGET",
    "REFRESH_CONCURRENCY",
    "WECHAT_CALLS_PER_SECOND",
    "COMPONENT_CALLS_PER_SECOND",
    "WECHAT_APPS_SECRET_PREFIX",
    "WORK_QUEUE_URL",
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "LOG_LEVEL",
}
CONSUMER_ENV = {
    "TOKEN_TABLE_NAME",
    "WECHAT_APP_ID",
    "WECHAT_API_BASE_URL",
    "PASSIVE_REFRESH_FUNCTION_NAME",
}
OUTPUTS = {
    "TokenTableName",
    "WeChatTokenLayerArn",
    "RefresherFunctionArn",
    "RefresherFunctionName",
    "PassiveRefreshFunctionArn",
    "PassiveRefreshFunctionName",
    "ConsumerPolicyArn",
    "AppRegistrySecretArn",
    "ExampleConsumerFunctionName",
    "AlarmNotificationTopicArn",
    "RefresherFailureQueueUrl",
    "ScheduleDeadLetterQueueUrl",
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


NO_VALUE = {"Ref": "AWS::NoValue"}


def _expand(statements: list[Any]) -> list[dict[str, Any]]:
    """Statements with ``Fn::If`` ones replaced by each branch that is a statement, so that a
    conditional grant (e.g. kms:Decrypt with TableKmsKeyArn) is checked like any other."""
    found: list[dict[str, Any]] = []
    for statement in statements:
        if isinstance(statement, dict) and "Fn::If" in statement:
            _, when_true, when_false = statement["Fn::If"]
            found += _expand([b for b in (when_true, when_false) if b != NO_VALUE])
        else:
            found.append(statement)
    return found


def _conditional_statements(statements: list[Any]) -> dict[str, list[dict[str, Any]]]:
    """condition name -> the statements that exist only when it is true."""
    found: dict[str, list[dict[str, Any]]] = {}
    for statement in statements:
        if isinstance(statement, dict) and "Fn::If" in statement:
            condition, when_true, when_false = statement["Fn::If"]
            assert when_false == NO_VALUE, statement
            found.setdefault(condition, []).append(when_true)
    return found


def _role_statements(resources: dict[str, Any], logical_id: str) -> list[Any]:
    """Inline statements of an AWS::IAM::Role (``Fn::If`` ones as written)."""
    role = resources[logical_id]
    assert role["Type"] == "AWS::IAM::Role"
    return [
        statement
        for policy in role["Properties"]["Policies"]
        for statement in policy["PolicyDocument"]["Statement"]
    ]


def _function_statements(resources: dict[str, Any], logical_id: str) -> list[Any]:
    policies = _props(resources, logical_id)["Policies"]
    # Inline statements only: SAM policy templates and managed policies are broader.
    assert all(isinstance(p, dict) and "Statement" in p for p in policies), policies
    return [statement for policy in policies for statement in policy["Statement"]]


def _grants(statements: list[Any]) -> dict[str, list[Any]]:
    """action -> resources it is allowed on (conditional statements included)."""
    grants: dict[str, list[Any]] = {}
    for statement in _expand(statements):
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
        {"AttributeName": "component_appid", "AttributeType": "S"},
        {"AttributeName": "due_at", "AttributeType": "N"},  # the due index (planner)
        {"AttributeName": "due_shard", "AttributeType": "S"},
        {"AttributeName": "kind", "AttributeType": "S"},
    ]
    # The same table DynamoDB Local gets (local_aws.resources), index and TTL included.
    assert props["GlobalSecondaryIndexes"] == [dict(index) for index in TABLE_INDEXES]
    assert props["TimeToLiveSpecification"] == {
        "AttributeName": TABLE_TTL_ATTRIBUTE,
        "Enabled": True,
    }
    assert props["SSESpecification"]["SSEEnabled"] is True
    # Authorizers' refresh tokens live only here: recoverable, and never deleted by accident.
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert props["DeletionProtectionEnabled"] is True
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
    ("logical_id", "code_uri", "handler"),
    [
        ("RefresherFunction", "functions/refresher", "app.lambda_handler"),
        # The consumers' entry point: the refresher's code, its own handler.
        ("PassiveRefreshFunction", "functions/refresher", "app.passive_handler"),
        ("ExampleConsumerFunction", "functions/example_consumer", "app.lambda_handler"),
    ],
)
def test_functions_use_their_code_and_the_layer(
    resources: dict[str, Any], logical_id: str, code_uri: str, handler: str
) -> None:
    props = _props(resources, logical_id)
    assert resources[logical_id]["Type"] == "AWS::Serverless::Function"
    assert props["CodeUri"].rstrip("/") == code_uri
    assert props["Handler"] == handler
    assert props["Layers"] == [LAYER_REF]


def _layer_invoke_read_timeout() -> float:
    """The read timeout the layer gives its synchronous invocation of the passive function."""
    source = (LAYER_SOURCE / "passive.py").read_text(encoding="utf-8")
    found = {float(m) for m in re.findall(r"read_timeout\s*=\s*(\d+(?:\.\d+)?)", source)}
    assert len(found) == 1, f"expected one read_timeout=<seconds> in passive.py, found {found}"
    return found.pop()


def test_timeouts_fit_a_run_and_a_consumers_wait(resources: dict[str, Any]) -> None:
    refresher = _props(resources, "RefresherFunction")
    # A run stops starting credentials when one more refresh would not fit, so the
    # Timeout only has to hold a slow run; it must leave room for a few attempts.
    assert refresher["Timeout"] >= 300
    assert refresher["MemorySize"] == 256
    passive = _props(resources, "PassiveRefreshFunction")
    # A consumer waits synchronously: the function must answer (or time out itself) before
    # the layer's client gives up reading, or the consumer sees a client-side timeout.
    assert 30 <= passive["Timeout"] < _layer_invoke_read_timeout()
    # Accounts with a low concurrency limit cannot reserve any (see the checkov skips).
    for props in (refresher, passive):
        assert "ReservedConcurrentExecutions" not in props


def test_environment_variable_names(template: dict[str, Any]) -> None:
    assert set(_effective_env(template, "RefresherFunction")) == REFRESHER_ENV
    # The same code, the same settings: a passive refresh follows the refresher's rules
    # (only the planner sends to the work queue).
    planner = _effective_env(template, "RefresherFunction")
    planner.pop("WORK_QUEUE_URL")
    assert _effective_env(template, "PassiveRefreshFunction") == planner
    assert set(_effective_env(template, "ExampleConsumerFunction")) >= CONSUMER_ENV
    consumer = _effective_env(template, "ExampleConsumerFunction")
    assert consumer["WECHAT_APP_ID"] == {"Ref": "ExampleAppId"}
    assert consumer["PASSIVE_REFRESH_FUNCTION_NAME"] == {"Ref": "PassiveRefreshFunction"}
    assert "REFRESHER_FUNCTION_NAME" not in consumer
    # Consumers never learn where the secrets are.
    assert "WECHAT_APPS_SECRET_ID" not in consumer


def test_refresher_runs_every_two_minutes_on_eventbridge_scheduler_with_retries(
    template: dict[str, Any],
) -> None:
    # Only the refresher is scheduled; the passive function runs when a consumer asks.
    assert "Events" not in _props(template["Resources"], "PassiveRefreshFunction")
    events = _props(template["Resources"], "RefresherFunction")["Events"]
    assert {name: event["Type"] for name, event in events.items()} == {
        "ScheduledRefresh": "ScheduleV2",
        "StableScheduledRefresh": "ScheduleV2",
    }
    main = events["ScheduledRefresh"]["Properties"]
    stable = events["StableScheduledRefresh"]["Properties"]
    assert main["ScheduleExpression"] == {"Ref": "ScheduleExpression"}
    assert template["Parameters"]["ScheduleExpression"]["Default"] == "rate(2 minutes)"
    assert stable["ScheduleExpression"] == {"Ref": "StableScheduleExpression"}
    assert template["Parameters"]["StableScheduleExpression"]["Default"] == "rate(1 minute)"
    for schedule in (main, stable):
        assert schedule["FlexibleTimeWindow"] == {"Mode": "OFF"}
        assert schedule["RetryPolicy"] == {
            "MaximumRetryAttempts": 2,
            "MaximumEventAgeInSeconds": 900,
        }
        assert schedule["DeadLetterConfig"] == {"Arn": SCHEDULE_DLQ_ARN}
        assert schedule.get("State", "ENABLED") == "ENABLED"


def test_scheduled_input_is_events_scheduled_json_and_names_no_app(
    resources: dict[str, Any],
) -> None:
    events = _props(resources, "RefresherFunction")["Events"]
    for name, file in (
        ("ScheduledRefresh", "scheduled.json"),
        ("StableScheduledRefresh", "scheduled_stable.json"),
    ):
        delivered = json.loads(events[name]["Properties"]["Input"])
        assert delivered == json.loads((EVENTS / file).read_text())
        assert "app_id" not in delivered  # the handler treats it as a scheduled run


# A classic token lives 7200 s; the refresher stores it as usable for 7200 - 300 s of skew.
TOKEN_LIFE_SECONDS = 7200
STORED_LIFE_SECONDS = TOKEN_LIFE_SECONDS - 300


def _due_rule(template: dict[str, Any]) -> dict[str, float]:
    """The schedule and due rule the template deploys, from its defaults and environment."""
    parameters = template["Parameters"]
    env = _effective_env(template, "RefresherFunction")
    assert env["REFRESH_INTERVAL_SECONDS"] == {"Ref": "RefreshIntervalSeconds"}
    interval = float(parameters["RefreshIntervalSeconds"]["Default"])
    return {"interval": interval, "slack": float(env["REFRESH_SLACK_SECONDS"])}


def test_refresh_interval_default_matches_the_schedule(template: dict[str, Any]) -> None:
    parameters = template["Parameters"]
    interval = parameters["RefreshIntervalSeconds"]
    assert _rate_seconds(parameters["ScheduleExpression"]["Default"]) == interval["Default"]
    # The stable run's asks, stable_retry_seconds apart, cover its whole period.
    settings = Settings(table_name="t", registry_secret_id="s")
    stable_period = _rate_seconds(parameters["StableScheduleExpression"]["Default"])
    assert stable_period == 60
    assert settings.stable_calls_per_run * settings.stable_retry_seconds >= stable_period
    env = _effective_env(template, "RefresherFunction")
    assert env["REFRESH_INTERVAL_SECONDS"] == {"Ref": "RefreshIntervalSeconds"}
    # Lambda environment values are strings.
    assert env["REFRESH_SLACK_SECONDS"] == "3780"


def test_due_rule_absorbs_an_hour_of_outage_at_under_30_calls_a_day(
    template: dict[str, Any],
) -> None:
    """Due when remaining < interval + slack: renewed at age a = stored life - (interval +
    slack); with a run every c minutes that tolerates an outage of 115 - a - 2c minutes of
    the 115-minute stored life, at about 1440 / (a + c / 2) token calls a day."""
    rule = _due_rule(template)
    assert rule["interval"] == 120
    assert rule["interval"] + rule["slack"] == 3900  # renew below 65 minutes left
    renew_age_minutes = (STORED_LIFE_SECONDS - rule["interval"] - rule["slack"]) / 60
    run_minutes = rule["interval"] / 60
    assert renew_age_minutes == 50
    tolerated_outage = STORED_LIFE_SECONDS / 60 - renew_age_minutes - 2 * run_minutes
    assert tolerated_outage == 61
    assert tolerated_outage >= 60
    calls_a_day = 1440 / (renew_age_minutes + run_minutes / 2)
    assert round(calls_a_day) == 28
    assert calls_a_day <= 30
    # The largest interval the parameter allows still leaves the token alive past the next
    # run (the refresher refuses interval + slack >= the stored life).
    largest = template["Parameters"]["RefreshIntervalSeconds"]["MaxValue"]
    assert largest + rule["slack"] < STORED_LIFE_SECONDS


def test_refresher_role_is_exactly_its_table_secret_logs_queue_and_traces(
    resources: dict[str, Any],
) -> None:
    # Its own role, not SAM's: SAM would add logs on every log group and, with VpcConfig
    # set through Fn::If, the VPC policy even outside a VPC.
    props = _props(resources, "RefresherFunction")
    assert props["Role"] == {"Fn::GetAtt": ["RefresherRole", "Arn"]}
    assert "Policies" not in props
    statements = _role_statements(resources, "RefresherRole")
    assert _grants(statements) == {
        # No PutItem on a credential: every write is a conditional UpdateItem; the only
        # PutItem is the planner's state, under planner# (test_template_security.py).
        "dynamodb:GetItem": [TABLE_ARN],
        "dynamodb:UpdateItem": [TABLE_ARN],
        "dynamodb:PutItem": [TABLE_ARN],
        "dynamodb:Query": [
            {"Fn::Sub": "${TokenTable.Arn}/index/component-index"},
            {"Fn::Sub": "${TokenTable.Arn}/index/due-index"},
        ],
        "secretsmanager:GetSecretValue": [SECRET_ARN, REGISTRY_SHARDS_ARN],
        "secretsmanager:ListSecrets": ["*"],
        "kms:Decrypt": [KMS_KEY_REF],
        "logs:CreateLogStream": [LOG_GROUP_ARN],
        "logs:PutLogEvents": [LOG_GROUP_ARN],
        "sqs:SendMessage": [FAILURE_QUEUE_ARN, {"Fn::GetAtt": ["WorkQueue", "Arn"]}],
        # X-Ray's trace actions support no resource-level permissions.
        "xray:PutTraceSegments": ["*"],
        "xray:PutTelemetryRecords": ["*"],
    }
    # "*" only for X-Ray, the optional registry shards (test_template_scale.py) and the
    # planner's state (the LeadingKeys pattern planner#*).
    unscoped = {"WriteTraces", "ListRegistryShards", "ReadRegistryShards", "KeepPlannerState"}
    assert not _contains_wildcard([s for s in _expand(statements) if s["Sid"] not in unscoped])
    _assert_decrypt_only_with_the_table_key(statements)
    trust = resources["RefresherRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust == [
        {
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ]


def _assert_decrypt_only_with_the_table_key(statements: list[Any]) -> None:
    """kms:Decrypt exists only when TableKmsKeyArn is set, on that key, through DynamoDB."""
    conditional = _conditional_statements(statements)
    # The other condition: the optional registry shards (RegistrySecretPrefix).
    assert "HasTableKmsKey" in conditional, conditional
    assert set(conditional) <= {"HasTableKmsKey", "HasRegistrySecretPrefix"}, conditional
    (decrypt,) = conditional["HasTableKmsKey"]
    assert decrypt["Action"] == "kms:Decrypt"
    assert decrypt["Resource"] == KMS_KEY_REF
    assert decrypt["Condition"] == KMS_VIA_DYNAMODB
    unconditional = [s for s in statements if "Fn::If" not in s]
    assert not any("kms:" in json.dumps(s) for s in unconditional)


def test_passive_refresh_role_is_the_refreshers_minus_the_queue(
    resources: dict[str, Any],
) -> None:
    props = _props(resources, "PassiveRefreshFunction")
    assert props["Role"] == {"Fn::GetAtt": ["PassiveRefreshRole", "Arn"]}
    assert "Policies" not in props
    statements = _role_statements(resources, "PassiveRefreshRole")
    own_logs = {"Fn::GetAtt": ["PassiveRefreshLogGroup", "Arn"]}
    # It must call WeChat (verify the stored token, fetch if rejected), so it reads the
    # registry and writes records like the refresher; invoked synchronously, it has no queue.
    assert _grants(statements) == {
        "dynamodb:GetItem": [TABLE_ARN],
        "dynamodb:UpdateItem": [TABLE_ARN],
        "dynamodb:Query": [{"Fn::Sub": "${TokenTable.Arn}/index/component-index"}],
        "secretsmanager:GetSecretValue": [SECRET_ARN, REGISTRY_SHARDS_ARN],
        "secretsmanager:ListSecrets": ["*"],
        "kms:Decrypt": [KMS_KEY_REF],
        "logs:CreateLogStream": [own_logs],
        "logs:PutLogEvents": [own_logs],
        "xray:PutTraceSegments": ["*"],
        "xray:PutTelemetryRecords": ["*"],
    }
    _assert_decrypt_only_with_the_table_key(statements)
    # Consumers invoke it synchronously; an asynchronous report is not worth a retry.
    assert props["EventInvokeConfig"]["MaximumRetryAttempts"] == 0
    assert "DestinationConfig" not in props["EventInvokeConfig"]
    assert props["LoggingConfig"] == {"LogGroup": {"Ref": "PassiveRefreshLogGroup"}}
    role = resources["PassiveRefreshRole"]["Properties"]
    assert (
        role["AssumeRolePolicyDocument"]
        == (resources["RefresherRole"]["Properties"]["AssumeRolePolicyDocument"])
    )


@pytest.mark.parametrize("role", ["RefresherRole", "PassiveRefreshRole"])
def test_wechat_callers_get_the_vpc_policy_only_in_a_vpc(
    resources: dict[str, Any], role: str
) -> None:
    managed = resources[role]["Properties"]["ManagedPolicyArns"]
    condition, in_vpc, outside = managed["Fn::If"]
    assert condition == "InVpc"
    assert outside == {"Ref": "AWS::NoValue"}
    assert [arn["Fn::Sub"] for arn in in_vpc] == [
        "arn:${AWS::Partition}:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"
    ]


def test_example_consumer_reads_only_its_own_app_and_no_secret(
    resources: dict[str, Any],
) -> None:
    statements = _function_statements(resources, "ExampleConsumerFunction")
    assert _grants(statements) == {
        "dynamodb:GetItem": [TABLE_ARN],
        "kms:Decrypt": [KMS_KEY_REF],
        # The consumer entry point only: never the refresher (a forced refresh).
        "lambda:InvokeFunction": [PASSIVE_ARN],
    }
    assert not _contains_wildcard(_expand(statements))
    _assert_decrypt_only_with_the_table_key(statements)
    (read,) = [s for s in _expand(statements) if s["Action"] == "dynamodb:GetItem"]
    assert read["Condition"] == {
        "ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [{"Ref": "ExampleAppId"}]}
    }


def _consumer_statements(resources: dict[str, Any]) -> list[Any]:
    policy = resources["ConsumerPolicy"]
    assert policy["Type"] == "AWS::IAM::ManagedPolicy"
    statements: list[Any] = policy["Properties"]["PolicyDocument"]["Statement"]
    return statements


def test_consumer_managed_policy_reads_and_asks_the_passive_function_only(
    resources: dict[str, Any],
) -> None:
    statements = _consumer_statements(resources)
    assert _grants(statements) == {
        "dynamodb:GetItem": [TABLE_ARN],
        "kms:Decrypt": [KMS_KEY_REF],
        "lambda:InvokeFunction": [PASSIVE_ARN],
    }
    _assert_decrypt_only_with_the_table_key(statements)
    # Whatever else changes: a consumer can never invoke the refresher (force, any app).
    for document in (statements, _function_statements(resources, "ExampleConsumerFunction")):
        assert "RefresherFunction" not in json.dumps(document)
    description = resources["ConsumerPolicy"]["Properties"]["Description"]
    assert "dynamodb:LeadingKeys" in description
    assert "instead of this one, not next to it" in description


def test_consumer_policy_reads_only_the_app_ids_the_parameter_lists(
    template: dict[str, Any],
) -> None:
    parameter = template["Parameters"]["ConsumerAppIds"]
    assert parameter["Type"] == "CommaDelimitedList"
    # No default: who reads which app's token is decided when deploying, not by us.
    assert "Default" not in parameter
    (read,) = [
        s
        for s in _expand(_consumer_statements(template["Resources"]))
        if s["Sid"] == "ReadCredentials"
    ]
    assert read["Action"] == "dynamodb:GetItem"
    assert read["Resource"] == TABLE_ARN
    scoped = {"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": {"Ref": "ConsumerAppIds"}}}
    assert read["Condition"] == {"Fn::If": ["ConsumersReadEveryApp", NO_VALUE, scoped]}
    # Only exactly "*" drops the condition (the broad policy, chosen explicitly).
    every = "ConsumersReadEveryApp"
    assert _evaluate_condition(template, every, {"ConsumerAppIds": "*"})
    for scoped_value in ("wx1", "wx1,wx2", "*,wx1", "wx1,*", "", "**"):
        assert not _evaluate_condition(template, every, {"ConsumerAppIds": scoped_value})
    # "" leaves LeadingKeys [""], which matches nothing: DynamoDB keys are never empty.
    assert "fail closed" in parameter["Description"]
    assert "Exactly * grants every app" in parameter["Description"]


def _statements_anywhere(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, dict):
        found = [value] if "Effect" in value and "Action" in value else []
        return found + [s for item in value.values() for s in _statements_anywhere(item)]
    if isinstance(value, list):
        return [s for item in value for s in _statements_anywhere(item)]
    return []


WECHAT_CALLER_ROLES = {
    "RefresherRole": "RefresherFunction",
    "PassiveRefreshRole": "PassiveRefreshFunction",
    "RefreshWorkerRole": "RefreshWorkerFunction",
}


def test_nothing_but_the_refresher_roles_may_read_the_secret(resources: dict[str, Any]) -> None:
    readers = {
        logical_id
        for logical_id, resource in resources.items()
        for statement in _statements_anywhere(resource.get("Properties", {}))
        if statement["Effect"] == "Allow"
        and any(str(a).startswith("secretsmanager:") for a in _as_list(statement["Action"]))
    }
    # The push callback reads the platforms' message keys (tests/unit/test_template_platform.py).
    assert readers == {*WECHAT_CALLER_ROLES, "PlatformCallbackRole"}
    # ...and each role belongs to its function alone (the secret's policy names them too).
    for role, function in {
        **WECHAT_CALLER_ROLES,
        "PlatformCallbackRole": "PlatformCallbackFunction",
    }.items():
        role_users = {
            logical_id
            for logical_id, resource in resources.items()
            if f'"{role}"' in json.dumps(resource.get("Properties", {}))
        }
        # The refresher's roles are also named by the refresh-token key (its key policy and
        # RefreshTokenKeyPolicy): both are about that key only.
        key_users = (
            {"RefreshTokenKey", "RefreshTokenKeyPolicy"} if role in WECHAT_CALLER_ROLES else set()
        )
        assert role_users == {function, "AppRegistrySecretPolicy", *key_users}, role


def test_the_secret_denies_reading_to_all_but_the_refresher_roles(
    template: dict[str, Any],
) -> None:
    resources = template["Resources"]
    policy = resources["AppRegistrySecretPolicy"]
    assert policy["Type"] == "AWS::SecretsManager::ResourcePolicy"
    props = policy["Properties"]
    assert props["SecretId"] == SECRET_ARN
    assert props["BlockPublicPolicy"] is True
    (deny,) = props["ResourcePolicy"]["Statement"]
    assert deny["Effect"] == "Deny"
    assert deny["Principal"] == "*"
    assert _as_list(deny["Action"]) == ["secretsmanager:GetSecretValue"]
    assert deny["Resource"] == "*"
    # A negated operator over aws:PrincipalArn: denied unless the caller is one of these.
    ((operator, keys),) = deny["Condition"].items()
    assert operator in ("ArnNotEquals", "StringNotEquals")
    assert set(keys) == {"aws:PrincipalArn"}
    exempt = keys["aws:PrincipalArn"]
    assert exempt == [
        {"Fn::GetAtt": ["RefresherRole", "Arn"]},
        {"Fn::GetAtt": ["PassiveRefreshRole", "Arn"]},
        {"Fn::GetAtt": ["RefreshWorkerRole", "Arn"]},
        {"Fn::GetAtt": ["PlatformCallbackRole", "Arn"]},
        {"Fn::If": ["HasBreakGlassRole", {"Ref": "BreakGlassRoleArn"}, NO_VALUE]},
    ]
    # The break-glass role is optional and off by default.
    break_glass = template["Parameters"]["BreakGlassRoleArn"]
    assert break_glass["Default"] == ""
    assert not _evaluate_condition(template, "HasBreakGlassRole", {})
    role_arn = "arn:aws:iam::123456789012:role/admin/wechat-token-break-glass"
    assert _evaluate_condition(template, "HasBreakGlassRole", {"BreakGlassRoleArn": role_arn})
    assert re.fullmatch(break_glass["AllowedPattern"], role_arn)
    assert not re.fullmatch(break_glass["AllowedPattern"], "arn:aws:iam::123456789012:user/bob")
    # The runbook for administrators exists.
    anchors = _github_anchors(OPERATIONS_DOC.read_text(encoding="utf-8"))
    assert "reading-the-app-registry" in anchors


def test_table_key_is_optional_and_used_when_given(template: dict[str, Any]) -> None:
    parameter = template["Parameters"]["TableKmsKeyArn"]
    assert parameter["Default"] == ""
    key = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    assert re.fullmatch(parameter["AllowedPattern"], "")
    assert re.fullmatch(parameter["AllowedPattern"], key)
    # An alias cannot be the Resource of a kms:Decrypt grant: key ARNs only.
    assert not re.fullmatch(
        parameter["AllowedPattern"], "arn:aws:kms:us-east-1:123456789012:alias/x"
    )
    assert not _evaluate_condition(template, "HasTableKmsKey", {})
    assert _evaluate_condition(template, "HasTableKmsKey", {"TableKmsKeyArn": key})
    sse = _props(template["Resources"], "TokenTable")["SSESpecification"]
    assert sse == {
        "SSEEnabled": True,
        "SSEType": {"Fn::If": ["HasTableKmsKey", "KMS", NO_VALUE]},
        "KMSMasterKeyId": {"Fn::If": ["HasTableKmsKey", KMS_KEY_REF, NO_VALUE]},
    }


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
        "ConsumerAppIds",
        "TableKmsKeyArn",
        "BreakGlassRoleArn",
        "LogLevel",
        "AlarmTopicArn",
        "AlarmEmail",
        "ExpiryAlarmThresholdSeconds",
        "ExpiryAlarmWindowMinutes",
        "VpcSubnetIds",
        "VpcSecurityGroupIds",
    ):
        assert parameters[name].get("Description"), name
    budget = parameters["DailyCallBudget"]
    assert budget["Default"] == 1000
    assert budget["MaxValue"] < 2000  # WeChat's daily quota per app
    assert parameters["RefreshIntervalSeconds"]["Default"] == 120
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
    # Exactly what passive_handler accepts: these four fields and nothing else.
    passive = json.loads((EVENTS / "passive.json").read_text())
    assert set(passive) == {"app_id", "kind", "stale_token", "errcode"}
    assert passive["app_id"] == "wx0000000000000000"
    assert passive["kind"] == "access_token"
    assert re.fullmatch(r"sha256:[0-9a-f]{10}", passive["stale_token"])
    assert passive["errcode"] == 40001
    # The refresher's own entry point takes no consumer reports any more.
    assert not (EVENTS / "passive_refresh.json").exists()
    assert isinstance(json.loads((EVENTS / "consumer.json").read_text()), dict)


def test_env_file_sets_only_what_each_function_declares(template: dict[str, Any]) -> None:
    """sam local invoke ignores names the template does not declare (AWS_* aside)."""
    env_file = json.loads((EVENTS / "env.json").read_text())
    assert set(env_file) == {
        "RefresherFunction",
        "RefreshWorkerFunction",
        "PassiveRefreshFunction",
        "ExampleConsumerFunction",
        "ExampleConsumerNodeFunction",
        "PlatformCallbackFunction",
    }
    for logical_id in env_file:
        declared = set(_effective_env(template, logical_id))
        section = env_file[logical_id]
        assert all(isinstance(value, str) for value in section.values())
        assert {name for name in section if not name.startswith("AWS_")} <= declared
        assert section["TOKEN_TABLE_NAME"] == "wechat-token-local"
    assert env_file["RefresherFunction"]["WECHAT_APPS_SECRET_ID"] == "wechat-token/apps"
    # Empty: a scheduled run invoked by hand does its work in-process (the demo sets it to
    # its local queue); the workers and the passive refresh have the rest, and not this.
    refresher = dict(env_file["RefresherFunction"])
    assert refresher.pop("WORK_QUEUE_URL") == ""
    assert env_file["PassiveRefreshFunction"] == refresher
    assert env_file["RefreshWorkerFunction"] == refresher
    # The same schedule and due rule as the template's defaults.
    rule = _due_rule(template)
    assert env_file["RefresherFunction"]["REFRESH_INTERVAL_SECONDS"] == f"{rule['interval']:g}"
    assert env_file["RefresherFunction"]["REFRESH_SLACK_SECONDS"] == f"{rule['slack']:g}"
    consumer = env_file["ExampleConsumerFunction"]
    assert consumer["PASSIVE_REFRESH_FUNCTION_NAME"] == "PassiveRefreshFunction"
    assert "REFRESHER_FUNCTION_NAME" not in consumer
    # The Node.js example reads the same app in the same local world.
    assert env_file["ExampleConsumerNodeFunction"] == consumer


# ------------------------------------------------------------------ operations (alarms etc.)


def _alarms(resources: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        logical_id: resource["Properties"]
        for logical_id, resource in resources.items()
        if resource["Type"] == "AWS::CloudWatch::Alarm"
    }


def _github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives a document's headings."""
    anchors = set()
    for line in markdown.splitlines():
        match = re.match(r"#{1,6}\s+(.*)", line)
        if match:
            text = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower())
            anchors.add(text.replace(" ", "-"))
    return anchors


def _evaluate_condition(template: dict[str, Any], name: str, overrides: dict[str, str]) -> bool:
    """Evaluates the template's (simple) conditions for given parameter values."""

    def value(node: Any) -> Any:
        if isinstance(node, dict):
            ((key, argument),) = node.items()
            if key == "Ref":
                parameter = template["Parameters"][argument]
                raw = overrides.get(argument, str(parameter.get("Default", "")))
                return raw.split(",") if parameter["Type"] == "CommaDelimitedList" else raw
            if key == "Condition":
                return value(template["Conditions"][argument])
            if key == "Fn::Equals":
                return value(argument[0]) == value(argument[1])
            if key == "Fn::Not":
                return not value(argument[0])
            if key == "Fn::Join":
                return argument[0].join(value(argument[1]))
            raise AssertionError(f"unexpected {key} in a condition")
        return node

    return bool(value(template["Conditions"][name]))


ALARMS = {
    "RefresherErrorsAlarm": ("AWS/Lambda", "Errors"),
    "PassiveRefreshErrorsAlarm": ("AWS/Lambda", "Errors"),
    "RefresherEventsDroppedAlarm": ("AWS/Lambda", "AsyncEventsDropped"),
    "RefresherDestinationFailuresAlarm": ("AWS/Lambda", "DestinationDeliveryFailures"),
    "RefresherFailureQueueAlarm": ("AWS/SQS", "ApproximateNumberOfMessagesVisible"),
    "ScheduleDeadLetterQueueAlarm": ("AWS/SQS", "ApproximateNumberOfMessagesVisible"),
    "TokenCloseToExpiryAlarm": (METRICS_NAMESPACE, "MinSecondsToExpiry"),
    "StableTokenCloseToExpiryAlarm": (METRICS_NAMESPACE, "MinStableSecondsToExpiry"),
    "TicketPushMissingAlarm": (METRICS_NAMESPACE, "MaxSecondsSinceTicketPush"),
    "BudgetNearlySpentAlarm": (METRICS_NAMESPACE, "BudgetRemaining"),
    "ForeignRotationAlarm": (METRICS_NAMESPACE, "ForeignRotation"),
    "RegistryFallbackAlarm": (METRICS_NAMESPACE, "RegistryFallback"),
    "RegistryEntryRefusedAlarm": (METRICS_NAMESPACE, "InvalidRegistryEntries"),
    # The fan-out's queues (test_template_scale.py).
    "WorkDeadLetterAlarm": ("AWS/SQS", "ApproximateNumberOfMessagesVisible"),
    "WorkQueueAgeAlarm": ("AWS/SQS", "ApproximateAgeOfOldestMessage"),
}


def _alarm_metric(props: dict[str, Any]) -> dict[str, Any]:
    """The (single) metric an alarm watches, for plain and metric-math alarms."""
    if "MetricName" in props:
        return {k: props[k] for k in ("Namespace", "MetricName", "Dimensions")}
    (stat,) = [m["MetricStat"] for m in props["Metrics"] if "MetricStat" in m]
    return dict(stat["Metric"])


def test_the_alarms_watch_what_the_runbooks_describe(resources: dict[str, Any]) -> None:
    alarms = _alarms(resources)
    assert set(alarms) == set(ALARMS)
    for logical_id, (namespace, metric_name) in ALARMS.items():
        metric = _alarm_metric(alarms[logical_id])
        assert (metric["Namespace"], metric["MetricName"]) == (namespace, metric_name), logical_id
    lambda_alarms = [a for a, (ns, _) in ALARMS.items() if ns == "AWS/Lambda"]
    for logical_id in lambda_alarms:
        function = (
            "PassiveRefreshFunction" if logical_id.startswith("Passive") else "RefresherFunction"
        )
        assert alarms[logical_id]["Dimensions"] == [
            {"Name": "FunctionName", "Value": {"Ref": function}}
        ]
    queue_dimensions = {
        json.dumps(alarms[a]["Dimensions"])
        for a in ("RefresherFailureQueueAlarm", "ScheduleDeadLetterQueueAlarm")
    }
    assert queue_dimensions == {
        json.dumps([{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue, "QueueName"]}}])
        for queue in ("RefresherFailureQueue", "ScheduleDeadLetterQueue")
    }


def test_every_alarm_notifies_the_topic_and_points_to_its_runbook(
    resources: dict[str, Any],
) -> None:
    anchors = _github_anchors(OPERATIONS_DOC.read_text(encoding="utf-8"))
    for logical_id, props in _alarms(resources).items():
        assert props["AlarmActions"] == [ALARM_TARGET], logical_id
        assert props["OKActions"] == [ALARM_TARGET], logical_id
        links = re.findall(r"docs/operations\.md#([\w-]+)", props["AlarmDescription"])
        assert links, f"{logical_id}: AlarmDescription names no runbook section"
        assert set(links) <= anchors, f"{logical_id}: no such section in docs/operations.md"
        assert "AlarmName" not in props  # generated names: ${AWS::StackName}-... (topic policy)


def test_counting_alarms_fire_on_the_first_event(resources: dict[str, Any]) -> None:
    alarms = _alarms(resources)
    for logical_id in (
        "RefresherErrorsAlarm",
        "PassiveRefreshErrorsAlarm",
        "RegistryFallbackAlarm",
        "RegistryEntryRefusedAlarm",
        "RefresherEventsDroppedAlarm",
        "RefresherDestinationFailuresAlarm",
        "RefresherFailureQueueAlarm",
        "ScheduleDeadLetterQueueAlarm",
        "ForeignRotationAlarm",
    ):
        props = alarms[logical_id]
        assert props["ComparisonOperator"] == "GreaterThanOrEqualToThreshold", logical_id
        assert props["Threshold"] == 1, logical_id
        assert props["EvaluationPeriods"] == 1, logical_id
        assert props["TreatMissingData"] == "notBreaching", logical_id


def test_custom_metric_alarms_match_what_the_refresher_emits(
    template: dict[str, Any],
) -> None:
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == METRICS_NAMESPACE
    assert env["POWERTOOLS_SERVICE_NAME"] == SERVICE
    source = "\n".join(
        path.read_text(encoding="utf-8") for path in sorted(REFRESHER_SOURCE.rglob("*.py"))
    )
    for logical_id, props in _alarms(template["Resources"]).items():
        metric = _alarm_metric(props)
        if metric["Namespace"] != METRICS_NAMESPACE:
            continue
        # Powertools' default dimension set is [service]; per-app series are extra.
        assert metric["Dimensions"] == [{"Name": "service", "Value": SERVICE}], logical_id
        assert f'"{metric["MetricName"]}"' in source, f"the refresher emits no {metric}"


def test_token_close_to_expiry_alarm_also_fires_when_the_refresher_goes_quiet(
    template: dict[str, Any],
) -> None:
    props = _alarms(template["Resources"])["TokenCloseToExpiryAlarm"]
    assert props["Statistic"] == "Minimum"
    assert props["ComparisonOperator"] == "LessThanThreshold"
    assert props["Threshold"] == {"Ref": "ExpiryAlarmThresholdSeconds"}
    # No report at all (the schedule stopped) must alarm too.
    assert props["TreatMissingData"] == "breaching"
    # Every 1-minute period of the window must breach: one healthy run keeps it quiet.
    assert props["Period"] == 60
    assert props["EvaluationPeriods"] == {"Ref": "ExpiryAlarmWindowMinutes"}
    assert props["DatapointsToAlarm"] == {"Ref": "ExpiryAlarmWindowMinutes"}
    parameters = template["Parameters"]
    assert parameters["ExpiryAlarmThresholdSeconds"]["Default"] == 1500
    window = parameters["ExpiryAlarmWindowMinutes"]
    # CloudWatch: Period x EvaluationPeriods at most one day.
    assert window["MaxValue"] * 60 <= 86400


def _healthy_minimum(rule: dict[str, float]) -> float:
    """The least time left a healthy run can see on a classic or WeCom credential: one just
    above its due threshold at one run is one period older at the next."""
    return rule["interval"] + rule["slack"] - rule["interval"]


def test_expiry_alarm_threshold_is_below_every_healthy_minimum(template: dict[str, Any]) -> None:
    rule = _due_rule(template)
    minimum = _healthy_minimum(rule)
    assert minimum == 3780
    parameters = template["Parameters"]
    threshold = parameters["ExpiryAlarmThresholdSeconds"]
    # With a margin for a late or slow run (a few minutes), at the default and at the largest
    # threshold the parameter allows.
    for value in (threshold["Default"], threshold["MaxValue"]):
        assert value + 120 <= minimum, value
    window_seconds = parameters["ExpiryAlarmWindowMinutes"]["Default"] * 60
    # A credential that stops being renewed alarms with a quarter of an hour to spare...
    assert threshold["Default"] - window_seconds >= 15 * 60
    # ...and the window spans several runs, so one missing report never alarms.
    assert window_seconds >= 4 * rule["interval"]


# WeChat's servers disagree by up to this much (the stable-week scenario's +-90 s).
STABLE_SERVER_SPREAD_SECONDS = 180.0


def test_stable_alarm_never_fires_for_a_healthy_stable_token(template: dict[str, Any]) -> None:
    """A healthy stable token is renewed, at the latest, when the slowest server sees under
    300 s left: by our measurement (the issuing server's) at most spread - 300 + one retry
    before its end. Its stored life (that end less the margin) left then is the healthy
    minimum; below the threshold for less than a minute, it touches at most two 1-minute
    datapoints, and the alarm needs three."""
    settings = Settings(table_name="t", registry_secret_id="s")
    latest_rotation = STABLE_SERVER_SPREAD_SECONDS - 300 + settings.stable_retry_seconds
    healthy_minimum = -latest_rotation - settings.stable_expiry_margin_seconds
    assert healthy_minimum == 40
    props = _alarms(template["Resources"])["StableTokenCloseToExpiryAlarm"]
    assert props["Threshold"] == {"Ref": "StableExpiryAlarmThresholdSeconds"}
    assert (props["Period"], props["EvaluationPeriods"], props["DatapointsToAlarm"]) == (60, 3, 3)
    assert props["Statistic"] == "Minimum"
    assert props["ComparisonOperator"] == "LessThanThreshold"
    assert props["TreatMissingData"] == "breaching"  # a stopped refresher alarms
    parameter = template["Parameters"]["StableExpiryAlarmThresholdSeconds"]
    for threshold in (parameter["Default"], parameter["MaxValue"]):
        assert threshold - healthy_minimum < 60, threshold
    # Its window opens with the stored life at 300 s: a stopped refresher alarms within
    # four minutes, before a token whose window opens after the stop expires.
    assert settings.stable_window_opens_below == 300
    assert settings.stable_window_opens_below > 4 * 60


# ------------------------------------------------------- the alarm through a simulated day


@dataclass
class _Credential:
    name: str
    expires_at: float
    renewable_until: float = float("inf")  # after this, every renewal fails


def _simulate_expiry_alarm(
    template: dict[str, Any],
    credentials: list[_Credential],
    *,
    hours: float = 24,
    schedule_stops_at: float = float("inf"),
) -> tuple[list[float], dict[str, list[tuple[float, float]]]]:
    """Runs the template's main schedule over ``credentials`` with the refresher's due rule,
    reports MinSecondsToExpiry per run, and evaluates TokenCloseToExpiryAlarm the way
    CloudWatch does (1-minute Minimum, missing = breaching, all of the window breaching).

    Each run reports the least time left *before* it renews anything (the conservative
    reading), a few seconds after it was scheduled. Returns the minutes at which the alarm
    is in ALARM, and per credential its (time, seconds left) at each run.
    """
    rule = _due_rule(template)
    parameters = template["Parameters"]
    threshold = float(parameters["ExpiryAlarmThresholdSeconds"]["Default"])
    window = int(parameters["ExpiryAlarmWindowMinutes"]["Default"])
    stored = float(STORED_LIFE_SECONDS)
    runs = [k * rule["interval"] for k in range(int(hours * 3600 / rule["interval"]))]
    datapoints: dict[int, float] = {}
    seen: dict[str, list[tuple[float, float]]] = {c.name: [] for c in credentials}
    for index, at in enumerate(runs):
        if at >= schedule_stops_at:
            continue
        now = at + 3 + 17 * ((index * 7919) % 13) / 13  # 3-20 s after the scheduled minute
        lefts = []
        for credential in credentials:
            left = credential.expires_at - now
            lefts.append(left)
            seen[credential.name].append((now, left))
            if left < rule["interval"] + rule["slack"] and now < credential.renewable_until:
                credential.expires_at = now + stored
        minute = int(now // 60)
        datapoints[minute] = min(datapoints.get(minute, float("inf")), max(0.0, min(lefts)))
    in_alarm = []
    for minute in range(window, int(hours * 60)):
        last = range(minute - window + 1, minute + 1)
        if all(datapoints.get(m, -1.0) < threshold for m in last):
            in_alarm.append(minute * 60.0)
    return in_alarm, seen


def _mixed_apps(start_ages: list[float]) -> list[_Credential]:
    """Classic and WeCom credentials of every age (WeCom tokens live 7200 s too)."""
    stored = float(STORED_LIFE_SECONDS)
    credentials = []
    for index, age in enumerate(start_ages):
        for kind in ("classic", "wecom"):
            credentials.append(_Credential(f"{kind}-{index}", stored - age))
    return credentials


AGES = [0.0, 1000.0, 2999.0, 3001.0, 3500.0, 4199.0, 4201.0, 5000.0]


def test_expiry_alarm_stays_quiet_through_a_healthy_day_of_mixed_apps(
    template: dict[str, Any],
) -> None:
    credentials = _mixed_apps(AGES)
    in_alarm, seen = _simulate_expiry_alarm(template, credentials)
    assert in_alarm == []
    floor = _healthy_minimum(_due_rule(template))
    # After the first hour (when the initial ages have been renewed away) every run sees at
    # least the healthy minimum of the credential's type, give or take a run's lateness.
    for credential in credentials:
        steady = [left for at, left in seen[credential.name] if at > 3600]
        assert min(steady) >= floor - 30, credential.name


def test_expiry_alarm_fires_soon_after_the_schedule_stops(template: dict[str, Any]) -> None:
    stop = 10 * 3600.0
    credentials = _mixed_apps(AGES)
    in_alarm, _ = _simulate_expiry_alarm(template, credentials, schedule_stops_at=stop)
    assert in_alarm, "a stopped schedule must alarm"
    first = in_alarm[0]
    window = template["Parameters"]["ExpiryAlarmWindowMinutes"]["Default"]
    assert first <= stop + (window + 2) * 60
    # Long before any consumer fails: the first credential still has about 50 minutes.
    assert min(c.expires_at for c in credentials) - first >= 50 * 60


@pytest.mark.parametrize("kind", ["classic", "wecom"])
def test_expiry_alarm_fires_before_a_credential_that_is_not_renewed_expires(
    template: dict[str, Any], kind: str
) -> None:
    credentials = _mixed_apps(AGES)
    failing = next(c for c in credentials if c.name.startswith(kind))
    failing.renewable_until = 8 * 3600.0
    in_alarm, _ = _simulate_expiry_alarm(template, credentials)
    assert in_alarm, failing.name
    # At least a quarter of an hour before consumers get TokenExpiredError.
    assert failing.expires_at - in_alarm[0] >= 15 * 60
    # And not before the credential really was below the threshold.
    threshold = template["Parameters"]["ExpiryAlarmThresholdSeconds"]["Default"]
    assert failing.expires_at - in_alarm[0] < threshold


def test_budget_alarm_is_a_percentage_of_the_daily_budget(resources: dict[str, Any]) -> None:
    props = _alarms(resources)["BudgetNearlySpentAlarm"]
    (expression,) = [m for m in props["Metrics"] if m.get("ReturnData")]
    assert expression["Expression"] == {"Fn::Sub": "100 * remaining / ${DailyCallBudget}"}
    (remaining,) = [m for m in props["Metrics"] if m["Id"] == "remaining"]
    assert remaining["MetricStat"]["Stat"] == "Minimum"
    assert remaining["ReturnData"] is False
    assert props["Threshold"] == 20
    assert props["ComparisonOperator"] == "LessThanThreshold"
    # Reported once per run: keep the state between runs.
    assert props["TreatMissingData"] == "ignore"


def test_failed_runs_are_queued_and_the_next_run_is_the_retry(
    resources: dict[str, Any],
) -> None:
    config = _props(resources, "RefresherFunction")["EventInvokeConfig"]
    # No Lambda retries: with a run every 2 minutes they would only multiply the WeChat
    # attempts of a failing run (an outage would spend the daily budget three times faster).
    assert config == {
        "MaximumRetryAttempts": 0,
        "MaximumEventAgeInSeconds": 900,
        "DestinationConfig": {"OnFailure": {"Type": "SQS", "Destination": FAILURE_QUEUE_ARN}},
    }
    for queue in ("RefresherFailureQueue", "ScheduleDeadLetterQueue"):
        assert resources[queue]["Type"] == "AWS::SQS::Queue"
        props = resources[queue]["Properties"]
        assert props["MessageRetentionPeriod"] == 14 * 24 * 3600
        assert "FifoQueue" not in props  # Lambda destinations take standard queues only


def test_alarm_topic_is_created_unless_one_is_given(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    for logical_id in ("AlarmTopic", "AlarmTopicKey", "AlarmTopicPolicy"):
        assert resources[logical_id]["Condition"] == "CreateAlarmTopic", logical_id
    assert _evaluate_condition(template, "CreateAlarmTopic", {})
    assert not _evaluate_condition(
        template, "CreateAlarmTopic", {"AlarmTopicArn": "arn:aws:sns:us-east-1:123456789012:t"}
    )
    subscription = resources["AlarmEmailSubscription"]
    assert subscription["Condition"] == "HasAlarmEmail"
    assert subscription["Properties"]["Protocol"] == "email"
    assert subscription["Properties"]["TopicArn"] == ALARM_TARGET
    assert not _evaluate_condition(template, "HasAlarmEmail", {})
    assert _evaluate_condition(template, "HasAlarmEmail", {"AlarmEmail": "ops@example.com"})
    email = template["Parameters"]["AlarmEmail"]["AllowedPattern"]
    assert re.fullmatch(email, "")
    assert re.fullmatch(email, "ops@example.com")
    assert not re.fullmatch(email, "not an address")
    assert template["Outputs"]["AlarmNotificationTopicArn"]["Value"] == ALARM_TARGET


def test_vpc_is_optional_and_needs_security_groups(template: dict[str, Any]) -> None:
    parameters = template["Parameters"]
    for name in ("VpcSubnetIds", "VpcSecurityGroupIds"):
        assert parameters[name]["Type"] == "CommaDelimitedList"
        assert parameters[name]["Default"] == ""
    assert not _evaluate_condition(template, "InVpc", {})
    assert _evaluate_condition(template, "InVpc", {"VpcSubnetIds": "subnet-1,subnet-2"})
    vpc_config = _props(template["Resources"], "RefresherFunction")["VpcConfig"]
    assert vpc_config == {
        "Fn::If": [
            "InVpc",
            {
                "SubnetIds": {"Ref": "VpcSubnetIds"},
                "SecurityGroupIds": {"Ref": "VpcSecurityGroupIds"},
            },
            {"Ref": "AWS::NoValue"},
        ]
    }
    # Both functions that call WeChat need the fixed egress IP, and only they.
    assert _props(template["Resources"], "PassiveRefreshFunction")["VpcConfig"] == vpc_config
    assert "VpcConfig" not in _props(template["Resources"], "ExampleConsumerFunction")
    assert "VpcConfig" not in template["Globals"]["Function"]
    rule = template["Rules"]["VpcNeedsSecurityGroups"]
    assert rule["RuleCondition"] == {"Fn::Not": [{"Fn::Contains": [{"Ref": "VpcSubnetIds"}, ""]}]}
    (assertion,) = rule["Assertions"]
    assert assertion["Assert"] == {
        "Fn::Not": [{"Fn::Contains": [{"Ref": "VpcSecurityGroupIds"}, ""]}]
    }


def test_operations_doc_has_the_runbooks() -> None:
    anchors = _github_anchors(OPERATIONS_DOC.read_text(encoding="utf-8"))
    assert {
        "40001-storm",
        "45009-quota",
        "40164-ip-whitelist",
        "refresher-failing",
        "token-close-to-expiry",
        "budget-nearly-spent",
        "foreign-rotation",
        "failure-queues",
        "registry-fallback",
        "registry-entry-refused",
        "passive-refresh-failing",
        "reading-the-app-registry",
    } <= anchors
