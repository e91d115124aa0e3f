"""What users and operators rely on in template.yaml, asserted on the source template.

Security properties (IAM, encryption, retention) are in test_template_security.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from scripts.local_invoke import load_template

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
OPERATIONS_DOC = ROOT / "docs" / "operations.md"
REFRESHER_SOURCE = ROOT / "functions" / "refresher"

TABLE_ARN = {"Fn::GetAtt": ["TokenTable", "Arn"]}
REFRESHER_ARN = {"Fn::GetAtt": ["RefresherFunction", "Arn"]}
SECRET_ARN = {"Ref": "AppRegistrySecret"}
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
    "STABLE_REFRESH_INTERVAL_SECONDS",
    "DAILY_CALL_BUDGET",
    "REFRESH_CONCURRENCY",
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
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


def _role_statements(resources: dict[str, Any], logical_id: str) -> list[dict[str, Any]]:
    """Inline statements of an AWS::IAM::Role."""
    role = resources[logical_id]
    assert role["Type"] == "AWS::IAM::Role"
    return [
        statement
        for policy in role["Properties"]["Policies"]
        for statement in policy["PolicyDocument"]["Statement"]
    ]


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
    assert {name: event["Type"] for name, event in events.items()} == {
        "ScheduledRefresh": "ScheduleV2",
        "StableScheduledRefresh": "ScheduleV2",
    }
    hourly = events["ScheduledRefresh"]["Properties"]
    stable = events["StableScheduledRefresh"]["Properties"]
    assert hourly["ScheduleExpression"] == {"Ref": "ScheduleExpression"}
    assert template["Parameters"]["ScheduleExpression"]["Default"] == "rate(1 hour)"
    assert stable["ScheduleExpression"] == {"Ref": "StableScheduleExpression"}
    assert template["Parameters"]["StableScheduleExpression"]["Default"] == "rate(30 minutes)"
    for schedule in (hourly, stable):
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


def test_refresh_interval_default_matches_the_schedule(template: dict[str, Any]) -> None:
    parameters = template["Parameters"]
    interval = parameters["RefreshIntervalSeconds"]
    assert _rate_seconds(parameters["ScheduleExpression"]["Default"]) == interval["Default"]
    env = _effective_env(template, "RefresherFunction")
    assert env["REFRESH_INTERVAL_SECONDS"] == {"Ref": "RefreshIntervalSeconds"}


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
        "dynamodb:GetItem": [TABLE_ARN],
        "dynamodb:PutItem": [TABLE_ARN],
        "dynamodb:UpdateItem": [TABLE_ARN],
        "secretsmanager:GetSecretValue": [SECRET_ARN],
        "logs:CreateLogStream": [LOG_GROUP_ARN],
        "logs:PutLogEvents": [LOG_GROUP_ARN],
        "sqs:SendMessage": [FAILURE_QUEUE_ARN],
        # X-Ray's trace actions support no resource-level permissions.
        "xray:PutTraceSegments": ["*"],
        "xray:PutTelemetryRecords": ["*"],
    }
    assert not _contains_wildcard([s for s in statements if s["Sid"] != "WriteTraces"])
    trust = resources["RefresherRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust == [
        {
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ]


def test_refresher_gets_the_vpc_policy_only_in_a_vpc(resources: dict[str, Any]) -> None:
    managed = resources["RefresherRole"]["Properties"]["ManagedPolicyArns"]
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
    assert readers == {"RefresherRole"}
    # ...and that role belongs to the refresher alone.
    role_users = {
        logical_id
        for logical_id, resource in resources.items()
        if "RefresherRole" in json.dumps(resource.get("Properties", {}))
    }
    assert role_users == {"RefresherFunction"}


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
        "AlarmTopicArn",
        "AlarmEmail",
        "ExpiryAlarmWindowMinutes",
        "VpcSubnetIds",
        "VpcSecurityGroupIds",
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
    "RefresherEventsDroppedAlarm": ("AWS/Lambda", "AsyncEventsDropped"),
    "RefresherDestinationFailuresAlarm": ("AWS/Lambda", "DestinationDeliveryFailures"),
    "RefresherFailureQueueAlarm": ("AWS/SQS", "ApproximateNumberOfMessagesVisible"),
    "ScheduleDeadLetterQueueAlarm": ("AWS/SQS", "ApproximateNumberOfMessagesVisible"),
    "TokenCloseToExpiryAlarm": (METRICS_NAMESPACE, "MinSecondsToExpiry"),
    "BudgetNearlySpentAlarm": (METRICS_NAMESPACE, "BudgetRemaining"),
    "ForeignRotationAlarm": (METRICS_NAMESPACE, "ForeignRotation"),
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
        assert alarms[logical_id]["Dimensions"] == [
            {"Name": "FunctionName", "Value": {"Ref": "RefresherFunction"}}
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
    # After a good run every credential has more than one interval left.
    assert props["Threshold"] == {"Ref": "RefreshIntervalSeconds"}
    # No report at all (refresher not running) must alarm too.
    assert props["TreatMissingData"] == "breaching"
    # Every 1-minute period of the window must breach: one healthy run keeps it quiet.
    assert props["Period"] == 60
    assert props["EvaluationPeriods"] == {"Ref": "ExpiryAlarmWindowMinutes"}
    assert props["DatapointsToAlarm"] == {"Ref": "ExpiryAlarmWindowMinutes"}
    parameters = template["Parameters"]
    window = parameters["ExpiryAlarmWindowMinutes"]["Default"]
    interval_minutes = parameters["RefreshIntervalSeconds"]["Default"] // 60
    # Longer than the gap between two runs (with some minutes for a late or slow run), and
    # shorter than interval + the refresher's 15-minute margin: a credential just short of
    # due when the refresher stopped still lives when the alarm fires.
    assert interval_minutes + 5 <= window < interval_minutes + 15


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


def test_failed_invocations_are_retried_then_queued(resources: dict[str, Any]) -> None:
    config = _props(resources, "RefresherFunction")["EventInvokeConfig"]
    assert config == {
        "MaximumRetryAttempts": 2,
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
    # Only the refresher calls WeChat, so only it needs the fixed egress IP.
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
    } <= anchors
