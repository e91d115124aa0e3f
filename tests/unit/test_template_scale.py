"""The fan-out in template.yaml (planner -> WorkQueue -> RefreshWorkerFunction): the due index,
the queue and its event source, the workers' least privilege and settings, the optional
registry shards and the queue alarms. Asserted on the source template and, for IAM and the
event source, on what `sam build` made of it and on SAM's transform (helpers from
test_template_security.py and test_template.py)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from wechat_token.record import DUE_INDEX as RECORD_DUE_INDEX

from local_aws.resources import DUE_INDEX, TABLE_ATTRIBUTE_DEFINITIONS, TABLE_INDEXES
from scripts.local_invoke import load_template
from tests.unit.test_template import ALARM_TARGET, _effective_env, _evaluate_condition
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
EVENTS = ROOT / "events"

PLANNER = "RefresherFunction"
PLANNER_ROLE = "RefresherRole"
WORKER = "RefreshWorkerFunction"
WORKER_ROLE = "RefreshWorkerRole"
PASSIVE = "PassiveRefreshFunction"
CALLBACK = "PlatformCallbackFunction"
CALLBACK_ROLE = "PlatformCallbackRole"
# Every role whose function refreshes credentials (and so reads the registry and its shards).
REFRESHING_ROLES = (PLANNER_ROLE, "PassiveRefreshRole", WORKER_ROLE)

NO_VALUE = {"Ref": "AWS::NoValue"}
TABLE_ARN = {"Fn::GetAtt": ["TokenTable", "Arn"]}
SECRET_REF = {"Ref": "AppRegistrySecret"}
WORK_QUEUE_ARN = {"Fn::GetAtt": ["WorkQueue", "Arn"]}
WORK_DLQ_ARN = {"Fn::GetAtt": ["WorkDeadLetterQueue", "Arn"]}
FAILURE_QUEUE_ARN = {"Fn::GetAtt": ["RefresherFailureQueue", "Arn"]}
COMPONENT_INDEX_ARN = {"Fn::Sub": "${TokenTable.Arn}/index/component-index"}
DUE_INDEX_ARN = {"Fn::Sub": "${TokenTable.Arn}/index/due-index"}
WORKER_LOGS_ARN = {"Fn::GetAtt": ["RefreshWorkerLogGroup", "Arn"]}
SHARDS_ARN = {
    "Fn::Sub": "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}"
    ":secret:${RegistrySecretPrefix}*"
}
PREFIX_ENV = {"Fn::If": ["HasRegistrySecretPrefix", {"Ref": "RegistrySecretPrefix"}, NO_VALUE]}
SQS_POLLER_ACTIONS = [
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
    "sqs:ChangeMessageVisibility",
]
# AWS's guidance for an SQS event source: visibility timeout >= 6 x the function's timeout.
VISIBILITY_FACTOR = 6
LAMBDA_MAX_TIMEOUT = 900
SQS_MAX_VISIBILITY = 43200
SQS_MAX_RETENTION = 1209600
# A credential is due with REFRESH_SLACK_SECONDS (3780 s) + one interval of life left.
REFRESH_SLACK_SECONDS = 3780


@pytest.fixture(scope="module")
def source() -> dict[str, Any]:
    return load_template(SOURCE)


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


def _parameter(template: dict[str, Any], name: str) -> dict[str, Any]:
    parameter: dict[str, Any] = template["Parameters"][name]
    assert parameter.get("Description"), name
    return parameter


def _allowed(parameter: dict[str, Any]) -> list[int]:
    """Every value a Number parameter allows (its AllowedValues, or MinValue..MaxValue)."""
    if "AllowedValues" in parameter:
        return [int(value) for value in parameter["AllowedValues"]]
    return list(range(int(parameter["MinValue"]), int(parameter["MaxValue"]) + 1))


def _visibility_timeout(template: dict[str, Any], worker_timeout: int) -> int:
    """WorkQueue's VisibilityTimeout for a WorkerTimeoutSeconds value, as CloudFormation
    resolves it (Fn::FindInMap on the parameter)."""
    value = _props(template, "WorkQueue")["VisibilityTimeout"]
    assert value == {
        "Fn::FindInMap": ["WorkerTimeouts", {"Ref": "WorkerTimeoutSeconds"}, "VisibilityTimeout"]
    }
    return int(template["Mappings"]["WorkerTimeouts"][str(worker_timeout)]["VisibilityTimeout"])


# ------------------------------------------------------------------------ the due index


def test_the_due_index_is_the_one_local_aws_creates(source: dict[str, Any]) -> None:
    table = _props(source, "TokenTable")
    indexes = {index["IndexName"]: index for index in table["GlobalSecondaryIndexes"]}
    local = {index["IndexName"]: dict(index) for index in TABLE_INDEXES}
    # The name the code queries (wechat_token.record) is the one deployed and created locally.
    assert RECORD_DUE_INDEX == DUE_INDEX == "due-index"
    assert (
        indexes[DUE_INDEX]
        == local[DUE_INDEX]
        == {
            "IndexName": "due-index",
            "KeySchema": [
                {"AttributeName": "due_shard", "KeyType": "HASH"},
                {"AttributeName": "due_at", "KeyType": "RANGE"},
            ],
            # The keys, expires_at and renewable_at (MinSecondsToExpiry): never a token value.
            "Projection": {
                "ProjectionType": "INCLUDE",
                "NonKeyAttributes": ["expires_at", "renewable_at"],
            },
        }
    )
    assert indexes == local
    defined = {(a["AttributeName"], a["AttributeType"]) for a in table["AttributeDefinitions"]}
    assert defined == {
        (a["AttributeName"], a["AttributeType"]) for a in TABLE_ATTRIBUTE_DEFINITIONS
    }
    assert {("due_shard", "S"), ("due_at", "N")} <= defined
    # Every defined attribute is a key of the table or of an index (CloudFormation insists).
    keys = {k["AttributeName"] for k in table["KeySchema"]} | {
        k["AttributeName"] for index in indexes.values() for k in index["KeySchema"]
    }
    assert {name for name, _ in defined} == keys


# ------------------------------------------------------------- the queue and its source


def test_the_worker_reads_the_queue_in_batches_with_partial_failures(
    variant: dict[str, Any],
) -> None:
    mappings = _of_type(variant, "AWS::Lambda::EventSourceMapping")
    if mappings:  # SAM's transform: the event became an EventSourceMapping
        assert set(mappings) == {f"{WORKER}Work"}
        props = mappings[f"{WORKER}Work"]["Properties"]
        assert props["FunctionName"] == {"Ref": WORKER}
        assert props["EventSourceArn"] == WORK_QUEUE_ARN
    else:
        events = _props(variant, WORKER)["Events"]
        assert {name: event["Type"] for name, event in events.items()} == {"Work": "SQS"}
        props = events["Work"]["Properties"]
        assert props["Queue"] == WORK_QUEUE_ARN
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["BatchSize"] == {"Ref": "WorkerBatchSize"}
    assert props["ScalingConfig"] == {"MaximumConcurrency": {"Ref": "WorkerMaxConcurrency"}}
    window = props["MaximumBatchingWindowInSeconds"]
    # Lambda refuses BatchSize > 10 without a window; a fixed one covers every size.
    batch = _parameter(variant, "WorkerBatchSize")
    assert (batch["Default"], batch["MinValue"], batch["MaxValue"]) == (10, 1, 100)
    assert isinstance(window, int)
    assert window >= 1
    assert window <= 5  # nothing next to a 2-minute planner cycle
    concurrency = _parameter(variant, "WorkerMaxConcurrency")
    # Lambda's bounds for MaximumConcurrency.
    assert (concurrency["Default"], concurrency["MinValue"]) == (20, 2)
    assert concurrency["MaxValue"] <= 1000


def test_visibility_timeout_is_six_worker_timeouts_for_every_allowed_value(
    source: dict[str, Any],
) -> None:
    worker = _props(source, WORKER)
    assert worker["Timeout"] == {"Ref": "WorkerTimeoutSeconds"}
    parameter = _parameter(source, "WorkerTimeoutSeconds")
    assert parameter["Type"] == "Number"
    assert parameter["Default"] == 120
    allowed = _allowed(parameter)
    assert parameter["Default"] in allowed
    assert min(allowed) >= 30
    assert max(allowed) <= LAMBDA_MAX_TIMEOUT
    # One mapping entry per allowed value, no more (a missing one fails the deploy).
    assert set(source["Mappings"]["WorkerTimeouts"]) == {str(value) for value in allowed}
    for timeout in allowed:
        visibility = _visibility_timeout(source, timeout)
        # At least AWS's six times (Lambda itself refuses a visibility below the timeout)...
        assert visibility >= VISIBILITY_FACTOR * timeout, timeout
        # ...and no more: a killed worker's messages reappear only after this.
        assert visibility == VISIBILITY_FACTOR * timeout, timeout
        assert visibility <= SQS_MAX_VISIBILITY, timeout
    assert _visibility_timeout(source, parameter["Default"]) == 720


def test_messages_expire_after_a_day_but_only_after_reaching_the_dead_letter_queue(
    source: dict[str, Any],
) -> None:
    queue = _props(source, "WorkQueue")
    dlq = _props(source, "WorkDeadLetterQueue")
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": WORK_DLQ_ARN,
        "maxReceiveCount": {"Ref": "WorkMaxReceiveCount"},
    }
    receives = _parameter(source, "WorkMaxReceiveCount")
    assert (receives["Default"], receives["MinValue"], receives["MaxValue"]) == (5, 1, 100)
    retention = queue["MessageRetentionPeriod"]
    assert retention == 86400  # older than a planner cycle is worth nothing; a day is plenty
    # A message that fails every time must reach the DLQ before it expires: receive count x
    # visibility timeout, for the default count at every timeout and every count at the
    # default timeout.
    timeouts = _allowed(_parameter(source, "WorkerTimeoutSeconds"))
    default_timeout = _parameter(source, "WorkerTimeoutSeconds")["Default"]
    for timeout in timeouts:
        assert receives["Default"] * _visibility_timeout(source, timeout) < retention, timeout
    for count in _allowed(receives):
        assert count * _visibility_timeout(source, default_timeout) < retention, count
    # SQS keeps a message's first enqueue time when it moves it: the DLQ keeps longer.
    assert dlq["MessageRetentionPeriod"] == SQS_MAX_RETENTION > retention
    for props in (queue, dlq):
        assert props["SqsManagedSseEnabled"] is True
        assert "FifoQueue" not in props
        assert "QueueName" not in props  # two stacks in one account


def test_both_work_queues_refuse_requests_without_tls(source: dict[str, Any]) -> None:
    policies = {
        logical_id: resource["Properties"]
        for logical_id, resource in _of_type(source, "AWS::SQS::QueuePolicy").items()
    }
    assert set(policies) == {"WorkQueuesPolicy"}
    props = policies["WorkQueuesPolicy"]
    assert props["Queues"] == [{"Ref": "WorkQueue"}, {"Ref": "WorkDeadLetterQueue"}]
    (statement,) = props["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Principal"] == "*"
    assert statement["Action"] == "sqs:*"
    assert statement["Resource"] == [WORK_QUEUE_ARN, WORK_DLQ_ARN]
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


# ------------------------------------------------------------------------ the workers


def test_the_worker_is_the_refreshers_code_with_its_own_handler_role_and_logs(
    source: dict[str, Any],
) -> None:
    worker = _props(source, WORKER)
    planner = _props(source, PLANNER)
    assert source["Resources"][WORKER]["Type"] == "AWS::Serverless::Function"
    assert worker["CodeUri"] == planner["CodeUri"]
    assert worker["Handler"] == "app.worker_handler"
    assert worker["Layers"] == planner["Layers"]
    assert worker["MemorySize"] == planner["MemorySize"]
    assert worker["VpcConfig"] == planner["VpcConfig"]  # the fixed egress IP, when set
    # Runtime, architecture and tracing from the Globals, like the refresher.
    for key in ("Runtime", "Architectures", "Tracing"):
        assert key not in worker
        assert key not in planner
    assert worker["Role"] == {"Fn::GetAtt": [WORKER_ROLE, "Arn"]}
    assert "Policies" not in worker
    log_group = worker["LoggingConfig"]["LogGroup"]["Ref"]
    assert log_group == "RefreshWorkerLogGroup" != planner["LoggingConfig"]["LogGroup"]["Ref"]
    assert _props(source, log_group)["RetentionInDays"] == {"Ref": "LogRetentionInDays"}
    # MaximumConcurrency caps the workers without reserving the account's concurrency.
    assert "ReservedConcurrentExecutions" not in worker
    skips = {s["id"] for s in source["Resources"][WORKER]["Metadata"]["checkov"]["skip"]}
    assert "CKV_AWS_115" in skips
    # Invoked synchronously by the event source: no asynchronous retries or destinations.
    assert "EventInvokeConfig" not in worker


def test_the_worker_has_every_refresh_setting_of_the_refresher(source: dict[str, Any]) -> None:
    planner = _effective_env(source, PLANNER)
    worker = _effective_env(source, WORKER)
    passive = _effective_env(source, PASSIVE)
    # Only the planner sends to the queue.
    assert planner.pop("WORK_QUEUE_URL") == {"Ref": "WorkQueue"}
    assert "WORK_QUEUE_URL" not in worker
    assert "WORK_QUEUE_URL" not in passive
    # Everything else the refresher's settings read, with the same values: a worker refreshes
    # by exactly the refresher's rules.
    assert worker == planner
    assert passive == planner
    for name, parameter in (
        ("WECHAT_CALLS_PER_SECOND", "WechatCallsPerSecond"),
        ("COMPONENT_CALLS_PER_SECOND", "ComponentCallsPerSecond"),
    ):
        assert worker[name] == {"Ref": parameter}
    rates = source["Parameters"]
    assert (
        rates["WechatCallsPerSecond"]["Default"],
        rates["ComponentCallsPerSecond"]["Default"],
    ) == (200, 200), "the settings' defaults (200/s carries about 600 000 credentials)"
    for name in ("WechatCallsPerSecond", "ComponentCallsPerSecond"):
        assert _parameter(source, name)["MinValue"] >= 1


def test_the_worker_role_refreshes_and_consumes_but_never_sends_or_invokes(
    variant: dict[str, Any],
) -> None:
    grants = {
        action: sorted(map(json.dumps, r)) for action, r in _grants_of(variant, WORKER_ROLE).items()
    }
    refresh_token_key = {"Fn::GetAtt": ["RefreshTokenKey", "Arn"]}
    expected = {
        # The refresher's record access (rate# limiter items included): table-wide, like
        # RefresherRole; reads by key and conditional updates only.
        "dynamodb:GetItem": [TABLE_ARN],
        "dynamodb:UpdateItem": [TABLE_ARN],
        # A platform's authorizers; the due index is the planner's.
        "dynamodb:Query": [COMPONENT_INDEX_ARN],
        "secretsmanager:GetSecretValue": [SECRET_REF, SHARDS_ARN],
        "secretsmanager:ListSecrets": ["*"],
        # The optional table key (through DynamoDB) and authorizers' refresh tokens
        # (RefreshTokenKeyPolicy).
        "kms:Decrypt": [{"Ref": "TableKmsKeyArn"}, refresh_token_key],
        "kms:Encrypt": [refresh_token_key],
        "logs:CreateLogStream": [WORKER_LOGS_ARN],
        "logs:PutLogEvents": [WORKER_LOGS_ARN],
        **{action: [WORK_QUEUE_ARN] for action in SQS_POLLER_ACTIONS},
        "xray:PutTraceSegments": ["*"],
        "xray:PutTelemetryRecords": ["*"],
    }
    assert grants == {action: sorted(map(json.dumps, r)) for action, r in expected.items()}
    for forbidden in ("sqs:SendMessage", "lambda:InvokeFunction", "dynamodb:Scan"):
        assert forbidden not in grants, forbidden
    role = variant["Resources"][WORKER_ROLE]["Properties"]
    # SAM adds nothing to it (no SQS poller policy, no basic execution role).
    assert role == load_template(SOURCE)["Resources"][WORKER_ROLE]["Properties"]
    assert role["ManagedPolicyArns"]["Fn::If"][0] == "InVpc"
    # The role is the worker's alone.
    users = [
        logical_id
        for logical_id, resource in _of_type(
            variant, "AWS::Serverless::Function", "AWS::Lambda::Function"
        ).items()
        if resource["Properties"].get("Role") == {"Fn::GetAtt": [WORKER_ROLE, "Arn"]}
    ]
    assert users == [WORKER]


def test_the_worker_may_use_the_refresh_token_key_and_read_the_registry(
    source: dict[str, Any],
) -> None:
    key = _props(source, "RefreshTokenKey")["KeyPolicy"]["Statement"]
    (use,) = [s for s in key if s["Sid"] == "RefresherUsesIt"]
    assert {"Fn::GetAtt": [WORKER_ROLE, "Arn"]} in use["Principal"]["AWS"]
    assert {"Ref": WORKER_ROLE} in _props(source, "RefreshTokenKeyPolicy")["Roles"]
    policy = _props(source, "AppRegistrySecretPolicy")["ResourcePolicy"]
    (deny,) = _expand(policy["Statement"])
    exempt = deny["Condition"]["ArnNotEquals"]["aws:PrincipalArn"]
    assert {"Fn::GetAtt": [WORKER_ROLE, "Arn"]} in exempt


# ------------------------------------------------------------------------ the planner


def test_the_planner_queries_the_due_index_and_sends_only_to_the_work_queue(
    variant: dict[str, Any],
) -> None:
    grants = _grants_of(variant, PLANNER_ROLE)
    assert grants["dynamodb:Query"] == [COMPONENT_INDEX_ARN, DUE_INDEX_ARN]
    # The work queue, and the on-failure destination of its own asynchronous runs; never
    # the dead-letter queue.
    assert grants["sqs:SendMessage"] == [FAILURE_QUEUE_ARN, WORK_QUEUE_ARN]
    assert not {a for a in grants if a.startswith("sqs:")} - {"sqs:SendMessage"}
    assert "dynamodb:Scan" not in grants
    # Its lanes' state items (planner.py: planner#<lane>) are its only whole-item writes.
    (put,) = [
        s
        for owner, s in _identity_statements(variant)
        if owner == PLANNER_ROLE and "dynamodb:PutItem" in _as_list(s["Action"])
    ]
    assert _as_list(put["Action"]) == ["dynamodb:PutItem"]
    assert put["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["planner#*"]}}
    # Nobody else may send to the work queues, or act on its DLQ at all.
    for owner, statement in _identity_statements(variant):
        resources = _as_list(statement["Resource"])
        assert WORK_DLQ_ARN not in resources, owner
        if WORK_QUEUE_ARN in resources:
            sends = {a for a in _as_list(statement["Action"]) if a.startswith("sqs:Send")}
            assert not sends or owner == PLANNER_ROLE, owner
            assert owner in (PLANNER_ROLE, WORKER_ROLE), owner


# -------------------------------------------------------------------- registry shards


def test_registry_shards_are_granted_only_with_a_prefix(source: dict[str, Any]) -> None:
    parameter = _parameter(source, "RegistrySecretPrefix")
    assert parameter["Default"] == ""
    pattern = parameter["AllowedPattern"]
    for value in ("", "wechat-token/apps/", "prod/wechat-token-apps-"):
        assert re.fullmatch(pattern, value), value
    for value in ("*", "apps/*", "a b", "arn:aws:secretsmanager:x"):
        assert not re.fullmatch(pattern, value), value
    condition = "HasRegistrySecretPrefix"
    assert not _evaluate_condition(source, condition, {})
    assert _evaluate_condition(source, condition, {"RegistrySecretPrefix": "wechat-token/apps/"})
    for role in REFRESHING_ROLES:
        statements = [
            s
            for policy in _props(source, role)["Policies"]
            for s in policy["PolicyDocument"]["Statement"]
        ]
        shards = [
            s
            for s in statements
            if "Fn::If" in s
            and s["Fn::If"][1]["Sid"] in ("ListRegistryShards", "ReadRegistryShards")
        ]
        # Both exist only under the condition, and are nothing when it is false.
        assert [s["Fn::If"][0] for s in shards] == [condition, condition], role
        assert all(s["Fn::If"][2] == NO_VALUE for s in shards), role
        listing, reading = (s["Fn::If"][1] for s in shards)
        # ListSecrets supports no resource-level permissions; GetSecretValue is scoped.
        assert (listing["Action"], listing["Resource"]) == ("secretsmanager:ListSecrets", "*")
        assert (reading["Action"], reading["Resource"]) == (
            "secretsmanager:GetSecretValue",
            SHARDS_ARN,
        )
        # Nothing unconditional mentions ListSecrets or the prefix.
        plain = [s for s in statements if "Fn::If" not in s]
        assert "ListSecrets" not in json.dumps(plain), role
        assert "RegistrySecretPrefix" not in json.dumps(plain), role
    for function in (PLANNER, WORKER, PASSIVE):
        assert _effective_env(source, function)["WECHAT_APPS_SECRET_PREFIX"] == PREFIX_ENV


def test_the_push_callback_never_gets_the_shards(variant: dict[str, Any]) -> None:
    env = _props(variant, CALLBACK)["Environment"]["Variables"]
    assert "WECHAT_APPS_SECRET_PREFIX" not in env
    grants = _grants_of(variant, CALLBACK_ROLE)
    assert "secretsmanager:ListSecrets" not in grants
    assert grants["secretsmanager:GetSecretValue"] == [SECRET_REF]
    assert "RegistrySecretPrefix" not in json.dumps(variant["Resources"][CALLBACK_ROLE])


# -------------------------------------------------------------------- alarms, outputs


def _alarm(source: dict[str, Any], logical_id: str) -> dict[str, Any]:
    resource = source["Resources"][logical_id]
    assert resource["Type"] == "AWS::CloudWatch::Alarm"
    props: dict[str, Any] = resource["Properties"]
    # The same topic as every other alarm of the stack.
    assert props["AlarmActions"] == [ALARM_TARGET], logical_id
    assert props["OKActions"] == [ALARM_TARGET], logical_id
    assert props["Namespace"] == "AWS/SQS"
    assert props["Statistic"] == "Maximum"
    assert props["Period"] == 60
    assert props["TreatMissingData"] == "notBreaching"
    return props


def test_a_dead_letter_alarms_at_once(source: dict[str, Any]) -> None:
    props = _alarm(source, "WorkDeadLetterAlarm")
    assert props["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert props["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["WorkDeadLetterQueue", "QueueName"]}}
    ]
    assert props["EvaluationPeriods"] == 1
    assert props["Threshold"] == 1
    assert props["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"


def test_a_backlog_alarms_long_before_a_due_credential_is_at_risk(source: dict[str, Any]) -> None:
    props = _alarm(source, "WorkQueueAgeAlarm")
    assert props["MetricName"] == "ApproximateAgeOfOldestMessage"
    assert props["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["WorkQueue", "QueueName"]}}
    ]
    assert props["Threshold"] == {"Ref": "WorkQueueMaxAgeSeconds"}
    assert props["ComparisonOperator"] == "GreaterThanThreshold"
    assert (props["EvaluationPeriods"], props["DatapointsToAlarm"]) == (3, 3)
    parameter = _parameter(source, "WorkQueueMaxAgeSeconds")
    assert parameter["Default"] == 600
    # A credential is queued with at least REFRESH_SLACK_SECONDS of life left: the default
    # alarms (threshold + 3 minutes) with most of that still to go.
    waited = parameter["Default"] + props["EvaluationPeriods"] * props["Period"]
    assert waited < REFRESH_SLACK_SECONDS / 4
    # Beyond the retention nothing is left to be old.
    assert parameter["MaxValue"] <= _props(source, "WorkQueue")["MessageRetentionPeriod"]


def test_outputs_and_parameter_groups(source: dict[str, Any]) -> None:
    outputs = source["Outputs"]
    assert outputs["WorkQueueUrl"]["Value"] == {"Ref": "WorkQueue"}
    assert outputs["WorkDeadLetterQueueUrl"]["Value"] == {"Ref": "WorkDeadLetterQueue"}
    assert outputs["RefreshWorkerFunctionName"]["Value"] == {"Ref": WORKER}
    grouped = [
        name
        for group in source["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
        for name in group["Parameters"]
    ]
    assert len(grouped) == len(set(grouped))
    for name in (
        "WorkerTimeoutSeconds",
        "WorkerBatchSize",
        "WorkerMaxConcurrency",
        "WorkMaxReceiveCount",
        "WorkQueueMaxAgeSeconds",
        "WechatCallsPerSecond",
        "ComponentCallsPerSecond",
        "RegistrySecretPrefix",
    ):
        assert name in grouped, name
        _parameter(source, name)


# ------------------------------------------------------------------------------ events


def test_the_sample_batch_carries_app_ids_only() -> None:
    event = json.loads((EVENTS / "worker_sqs_batch.json").read_text())
    records = event["Records"]
    bodies = [json.loads(record["body"]) for record in records]
    assert bodies == [
        {"app_id": "wx1234567890abcdef"},
        {"app_id": "wxcomponent000001", "kind": "component_access_token"},
    ]
    assert all(set(body) <= {"app_id", "kind"} for body in bodies)
    for record in records:
        assert record["eventSource"] == "aws:sqs"
        assert record["messageId"]
        assert record["receiptHandle"]
        digest = hashlib.md5(record["body"].encode(), usedforsecurity=False).hexdigest()
        assert record["md5OfBody"] == digest  # what SQS computes
        assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert len({record["messageId"] for record in records}) == len(records)
    assert "secret" not in json.dumps(event).lower()
