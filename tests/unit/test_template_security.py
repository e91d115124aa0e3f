"""Security properties of the template, asserted on every form of it there is.

- ``source``: template.yaml as written;
- ``built``: .aws-sam/build/template.yaml, what ``sam build`` made of it (``make test``
  builds before it runs pytest; skipped when missing or older than template.yaml);
- ``synthesized``: the CloudFormation that SAM's transform makes of it, with the roles
  SAM generates (the schedule's, the example consumer's) and the AWS managed policies it
  attaches. Needs the SAM translator: importable here, or the SAM CLI's own Python
  (``.venv-sam``, ``SAM_PYTHON``, or the ``sam`` on PATH); skipped without one.

The rules: no ``*`` in any action; ``*`` as a resource only for X-Ray's trace actions
(they support no resource-level permissions) and ListSecrets (the optional registry shards);
only the refresher's roles (scheduled, passive, worker) and the push callback's read the app
secret, and the secret's resource policy denies it to everyone else; no consumer may invoke
the refresher, only the passive function; the example consumer reads only its own app's
records (``dynamodb:LeadingKeys``); the refresher cannot scan, query the table (its indexes
only), delete or put whole items; kms:Decrypt only on the optional table key, through DynamoDB;
every role is trusted by its own service only; queues, topic and table encrypted; table
with point-in-time recovery and retained; every log group with a retention; every checkov
skip with a reason.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from scripts.local_invoke import load_template

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "template.yaml"
BUILT = ROOT / ".aws-sam" / "build" / "template.yaml"
CHECKOV_CONFIG = ROOT / ".checkov.yaml"

TABLE_ARN = {"Fn::GetAtt": ["TokenTable", "Arn"]}
SECRET_REF = {"Ref": "AppRegistrySecret"}
NO_VALUE = {"Ref": "AWS::NoValue"}
PASSIVE_ARN = {"Fn::GetAtt": ["PassiveRefreshFunction", "Arn"]}
LEADING_KEYS_OWN_APP = {
    "ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [{"Ref": "ExampleAppId"}]}
}

# X-Ray's documented exception: these actions cannot be scoped to a resource.
XRAY_ACTIONS = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}
# Nor can Secrets Manager's ListSecrets (the optional registry shards, RegistrySecretPrefix).
LIST_SECRETS = "secretsmanager:ListSecrets"
REGISTRY_SHARDS_ARN = {
    "Fn::Sub": "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}"
    ":secret:${RegistrySecretPrefix}*"
}
# The refresher reads and updates single records; nothing that lists, replaces or removes them.
REFRESHER_DYNAMODB_ACTIONS = {"dynamodb:GetItem", "dynamodb:UpdateItem"}
COMPONENT_INDEX_ARN = {"Fn::Sub": "${TokenTable.Arn}/index/component-index"}
DUE_INDEX_ARN = {"Fn::Sub": "${TokenTable.Arn}/index/due-index"}
REFRESH_TOKEN_KEY_ARN = {"Fn::GetAtt": ["RefreshTokenKey", "Arn"]}
# The roles that call WeChat (and so read the registry): the refresher's and the passive one's.
WECHAT_CALLER_ROLES = {
    "RefresherRole": "RefresherFunction",
    "PassiveRefreshRole": "PassiveRefreshFunction",
    # The fan-out's workers (test_template_scale.py).
    "RefreshWorkerRole": "RefreshWorkerFunction",
}
# The push callback (third-party platforms): reads the registry for the platforms' message keys,
# writes push nonces (its only PutItem) and pushes; tests/unit/test_template_platform.py.
PUSH_CALLBACK_ROLE = "PlatformCallbackRole"
# The example consumers (Python and Node.js): each holds the scoped consumer policy.
EXAMPLE_CONSUMER_ROLES = ("ExampleConsumerFunctionRole", "ExampleConsumerNodeFunctionRole")
FORBIDDEN_DYNAMODB_ACTIONS = {
    "dynamodb:PutItem",
    "dynamodb:Scan",
    "dynamodb:Query",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:BatchGetItem",
    "dynamodb:PartiQLSelect",
    "dynamodb:PartiQLDelete",
    "dynamodb:DeleteTable",
}
# AWS managed policies a role may carry (SAM attaches the first two to roles it generates).
ALLOWED_MANAGED_POLICIES = {
    "service-role/AWSLambdaBasicExecutionRole",
    "AWSXrayWriteOnlyAccess",
    "AWSXRayDaemonWriteAccess",
    "service-role/AWSLambdaVPCAccessExecutionRole",
}
VPC_POLICY = "service-role/AWSLambdaVPCAccessExecutionRole"

# The translation runs in the SAM CLI's interpreter: local code paths become S3 URIs (as
# `sam validate` does), and managed policies are never looked up in IAM.
_TRANSLATE = r"""
import json, sys
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

template = yaml_parse(sys.stdin.read())
for resource in (template.get("Resources") or {}).values():
    props = resource.get("Properties") or {}
    for key in ("CodeUri", "ContentUri"):
        if isinstance(props.get(key), str):
            props[key] = "s3://bucket/key"


class NoLookups:
    def load(self):
        return {}


print(json.dumps(transform(template, {}, NoLookups())))
"""


def _sam_python() -> str | None:
    if importlib.util.find_spec("samtranslator") is not None:
        return sys.executable
    candidates = [os.environ.get("SAM_PYTHON"), str(ROOT / ".venv-sam" / "bin" / "python")]
    sam = shutil.which("sam")
    if sam:
        candidates.append(str(Path(sam).resolve().parent / "python"))
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            probe = subprocess.run(
                [candidate, "-c", "import samtranslator"], capture_output=True, check=False
            )
            if probe.returncode == 0:
                return candidate
    return None


def _synthesize() -> dict[str, Any]:
    python = _sam_python()
    if python is None:
        pytest.skip("no SAM translator: `make sam-venv`, or set SAM_PYTHON to the SAM CLI's python")
    completed = subprocess.run(
        [python, "-c", _TRANSLATE],
        input=SOURCE.read_text(encoding="utf-8"),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        # Offline, and never the caller's credentials: the transform needs a region only.
        env={"PATH": os.environ.get("PATH", ""), "AWS_DEFAULT_REGION": "us-east-1"},
    )
    assert completed.returncode == 0, completed.stderr
    synthesized: dict[str, Any] = json.loads(completed.stdout)
    return synthesized


@pytest.fixture(scope="module", params=["source", "built", "synthesized"])
def variant(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    name: str = request.param
    if name == "source":
        return name, load_template(SOURCE)
    if name == "built":
        if not BUILT.is_file():
            pytest.skip(f"{BUILT} is missing: run `make build`")
        if BUILT.stat().st_mtime < SOURCE.stat().st_mtime:
            pytest.skip(f"{BUILT} is older than template.yaml: run `make build`")
        return name, load_template(BUILT)
    return name, _synthesize()


@pytest.fixture(scope="module")
def synthesized() -> dict[str, Any]:
    return _synthesize()


@pytest.fixture(scope="module")
def source() -> dict[str, Any]:
    return load_template(SOURCE)


# ------------------------------------------------------------------------------ helpers


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _resources(template: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = template["Resources"]
    return found


def _of_type(template: dict[str, Any], *types: str) -> dict[str, dict[str, Any]]:
    return {
        logical_id: resource
        for logical_id, resource in _resources(template).items()
        if resource["Type"] in types
    }


def _function_role(function_id: str, props: dict[str, Any]) -> str:
    """The logical id of a function's role (SAM names the one it generates <Function>Role)."""
    role = props.get("Role")
    if role is None:
        return f"{function_id}Role"
    assert isinstance(role, dict), f"{function_id}: Role must reference a role of this stack"
    if "Fn::GetAtt" in role:
        return str(role["Fn::GetAtt"][0])
    return str(role["Ref"])


def _expand(statements: list[Any]) -> list[dict[str, Any]]:
    """Statements with ``Fn::If`` ones replaced by each branch that is a statement (a grant
    that exists only under a condition is checked like any other)."""
    found: list[dict[str, Any]] = []
    for statement in statements:
        if isinstance(statement, dict) and "Fn::If" in statement:
            _, when_true, when_false = statement["Fn::If"]
            found += _expand([b for b in (when_true, when_false) if b != NO_VALUE])
        else:
            found.append(statement)
    return found


def _identity_statements(template: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(owner, statement) for every identity-based statement; owner is the role or policy."""
    found: list[tuple[str, dict[str, Any]]] = []
    for logical_id, resource in _resources(template).items():
        props = resource.get("Properties") or {}
        kind = resource["Type"]
        if kind == "AWS::IAM::Role":
            for policy in props.get("Policies", []):
                statements = _expand(policy["PolicyDocument"]["Statement"])
                found += [(logical_id, s) for s in statements]
        elif kind in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy"):
            owners = [logical_id, *[r["Ref"] for r in props.get("Roles", [])]]
            for owner in owners:
                found += [(owner, s) for s in _expand(props["PolicyDocument"]["Statement"])]
        elif kind == "AWS::Serverless::Function":
            owner = _function_role(logical_id, props)
            for policy in props.get("Policies", []):
                # Inline statements only: SAM policy templates and managed policies by name
                # are broader than they look.
                assert isinstance(policy, dict), f"{logical_id}: managed policy {policy}"
                assert "Statement" in policy, f"{logical_id}: SAM policy template {policy}"
                found += [(owner, s) for s in _expand(policy["Statement"])]
    return found


def _resource_policies(template: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    for logical_id, resource in _resources(template).items():
        props = resource.get("Properties") or {}
        document = props.get("KeyPolicy") or (
            props.get("PolicyDocument")
            if resource["Type"].endswith(("TopicPolicy", "QueuePolicy"))
            else None
        )
        if resource["Type"] == "AWS::SecretsManager::ResourcePolicy":
            document = props["ResourcePolicy"]
        if document:
            found += [(logical_id, s) for s in _expand(document["Statement"])]
    return found


def _actions(statement: dict[str, Any]) -> set[str]:
    return {str(action) for action in _as_list(statement["Action"])}


def _grants_of(template: dict[str, Any], owner: str) -> dict[str, list[Any]]:
    grants: dict[str, list[Any]] = {}
    for statement_owner, statement in _identity_statements(template):
        if statement_owner == owner:
            for action in _actions(statement):
                grants.setdefault(action, []).extend(_as_list(statement["Resource"]))
    return grants


def _managed_policy_names(value: Any) -> list[tuple[str, bool]]:
    """(policy name after ':policy/', conditional?) from a ManagedPolicyArns value."""
    names: list[tuple[str, bool]] = []

    def walk(node: Any, conditional: bool) -> None:
        if isinstance(node, str):
            match = re.fullmatch(
                r"arn:(?:aws[a-z-]*|\$\{AWS::Partition\}):iam::aws:policy/(.+)", node
            )
            assert match, f"not an AWS managed policy: {node}"
            names.append((match.group(1), conditional))
        elif isinstance(node, list):
            for item in node:
                walk(item, conditional)
        elif isinstance(node, dict) and "Fn::If" in node:
            _, when_true, when_false = node["Fn::If"]
            walk(when_true, True)
            walk(when_false, True)
        elif isinstance(node, dict) and "Fn::Sub" in node:
            walk(node["Fn::Sub"], conditional)
        elif isinstance(node, dict) and node.get("Ref") == "AWS::NoValue":
            return
        else:
            raise AssertionError(f"unexpected managed policy value {node}")

    walk(value, False)
    return names


# ---------------------------------------------------------------------------------- IAM


def test_no_wildcard_actions_and_no_negations(variant: tuple[str, dict[str, Any]]) -> None:
    _, template = variant
    statements = _identity_statements(template)
    assert statements
    for owner, statement in statements:
        assert statement["Effect"] == "Allow", owner
        assert "NotAction" not in statement, owner
        assert "NotResource" not in statement, owner
        assert "NotPrincipal" not in statement, owner
        for action in _actions(statement):
            assert "*" not in action, f"{owner}: wildcard action {action}"


def test_wildcard_resources_only_for_xray(variant: tuple[str, dict[str, Any]]) -> None:
    _, template = variant
    for owner, statement in _identity_statements(template):
        resources = _as_list(statement["Resource"])
        if any(isinstance(r, str) and "*" in r for r in resources):
            assert resources == ["*"], owner
            if _actions(statement) == {LIST_SECRETS}:
                # Registry shards: ListSecrets returns names, never a value.
                assert owner in WECHAT_CALLER_ROLES, owner
                continue
            assert _actions(statement) <= XRAY_ACTIONS, f"{owner}: {statement}"


def test_only_the_refresher_roles_read_the_secret(variant: tuple[str, dict[str, Any]]) -> None:
    _, template = variant
    readers = {
        owner
        for owner, statement in _identity_statements(template)
        if any(action.startswith("secretsmanager:") for action in _actions(statement))
    }
    assert readers == {*WECHAT_CALLER_ROLES, PUSH_CALLBACK_ROLE}
    for role, function in {
        **WECHAT_CALLER_ROLES,
        PUSH_CALLBACK_ROLE: "PlatformCallbackFunction",
    }.items():
        grants = _grants_of(template, role)
        secret_grants = {a: r for a, r in grants.items() if a.startswith("secretsmanager:")}
        if role in WECHAT_CALLER_ROLES:
            # And the optional registry shards; never the push callback.
            assert secret_grants == {
                "secretsmanager:GetSecretValue": [SECRET_REF, REGISTRY_SHARDS_ARN],
                LIST_SECRETS: ["*"],
            }, role
        else:
            assert secret_grants == {"secretsmanager:GetSecretValue": [SECRET_REF]}
        # Each role is its function's alone.
        users = {
            logical_id
            for logical_id, resource in _of_type(
                template, "AWS::Serverless::Function", "AWS::Lambda::Function"
            ).items()
            if resource["Properties"].get("Role") == {"Fn::GetAtt": [role, "Arn"]}
        }
        assert users == {function}, role


def test_the_secret_policy_denies_reading_to_everyone_else(
    variant: tuple[str, dict[str, Any]],
) -> None:
    _, template = variant
    policies = _of_type(template, "AWS::SecretsManager::ResourcePolicy")
    assert set(policies) == {"AppRegistrySecretPolicy"}
    props = policies["AppRegistrySecretPolicy"]["Properties"]
    assert props["SecretId"] == SECRET_REF
    assert props["BlockPublicPolicy"] is True
    statements = props["ResourcePolicy"]["Statement"]
    # Only a Deny: the policy opens the secret to nobody.
    assert [s["Effect"] for s in statements] == ["Deny"]
    (deny,) = statements
    assert _actions(deny) == {"secretsmanager:GetSecretValue"}
    assert deny["Principal"] == "*"
    ((operator, keys),) = deny["Condition"].items()
    assert operator in ("ArnNotEquals", "StringNotEquals")
    exempt = keys["aws:PrincipalArn"]
    callers = len(WECHAT_CALLER_ROLES)
    assert exempt[:callers] == [{"Fn::GetAtt": [role, "Arn"]} for role in WECHAT_CALLER_ROLES]
    # The only other exemptions are the push callback's role and the optional break-glass role.
    break_glass = {"Fn::If": ["HasBreakGlassRole", {"Ref": "BreakGlassRoleArn"}, NO_VALUE]}
    assert exempt[callers:] == [{"Fn::GetAtt": [PUSH_CALLBACK_ROLE, "Arn"]}, break_glass]


def test_consumers_may_invoke_the_passive_function_only(
    variant: tuple[str, dict[str, Any]],
) -> None:
    _, template = variant
    for owner in ("ConsumerPolicy", *EXAMPLE_CONSUMER_ROLES):
        invoke = _grants_of(template, owner).get("lambda:InvokeFunction")
        assert invoke == [PASSIVE_ARN], owner
    # Nothing but the schedules' roles may invoke the refresher itself.
    refresher = {"Fn::GetAtt": ["RefresherFunction", "Arn"]}
    invokers = {
        owner
        for owner, statement in _identity_statements(template)
        if "lambda:InvokeFunction" in _actions(statement)
        and refresher in _as_list(statement["Resource"])
    }
    assert invokers <= {
        "RefresherFunctionScheduledRefreshRole",
        "RefresherFunctionStableScheduledRefreshRole",
    }


def test_refresher_roles_read_and_update_single_records_only(
    variant: tuple[str, dict[str, Any]],
) -> None:
    _, template = variant
    for role in WECHAT_CALLER_ROLES:
        grants = _grants_of(template, role)
        dynamodb = {a: r for a, r in grants.items() if a.startswith("dynamodb:")}
        # Query only on the component index (a platform's authorizers) and, for the
        # planner, the due index; never the table.
        indexes = (
            [COMPONENT_INDEX_ARN, DUE_INDEX_ARN]
            if role == "RefresherRole"
            else [COMPONENT_INDEX_ARN]
        )
        assert dynamodb.pop("dynamodb:Query") == indexes, role
        if role == "RefresherRole":
            # The planner's state items (planner#<lane>), checked below.
            assert dynamodb.pop("dynamodb:PutItem") == [TABLE_ARN], role
        assert set(dynamodb) == REFRESHER_DYNAMODB_ACTIONS, role
        assert all(resources == [TABLE_ARN] for resources in dynamodb.values())
    for owner, statement in _identity_statements(template):
        forbidden = _actions(statement) & FORBIDDEN_DYNAMODB_ACTIONS
        if forbidden == {"dynamodb:Query"} and owner in WECHAT_CALLER_ROLES:
            # The refresher finds a platform's authorizers in the component index, the
            # planner due credentials in the due index: indexes only (keys only).
            assert _as_list(statement["Resource"]) in ([COMPONENT_INDEX_ARN], [DUE_INDEX_ARN])
            continue
        if forbidden == {"dynamodb:PutItem"} and owner == "RefresherRole":
            # Its only PutItem: the planner's state, under planner#, never a credential.
            assert statement["Condition"] == {
                "ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["planner#*"]}
            }, owner
            continue
        if forbidden == {"dynamodb:PutItem"} and owner == PUSH_CALLBACK_ROLE:
            # Its only PutItem: push nonces, under push-nonce# (test_template_platform.py).
            leading = statement["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
            assert leading == ["push-nonce#*"], owner
            continue
        assert not forbidden, owner


def test_kms_decrypt_only_on_the_optional_table_key_through_dynamodb(
    variant: tuple[str, dict[str, Any]],
) -> None:
    _, template = variant
    decrypters, sealers = set(), set()
    for owner, statement in _identity_statements(template):
        kms = {a for a in _actions(statement) if a.startswith("kms:")}
        if not kms:
            continue
        if _as_list(statement["Resource"]) == [REFRESH_TOKEN_KEY_ARN]:
            # Authorizers' refresh tokens: the refresher's roles only (RefreshTokenKeyPolicy).
            assert kms == {"kms:Encrypt", "kms:Decrypt"}, owner
            sealers.add(owner)
            continue
        decrypters.add(owner)
        assert kms == {"kms:Decrypt"}, owner
        assert _as_list(statement["Resource"]) == [{"Ref": "TableKmsKeyArn"}], owner
        via = statement["Condition"]["StringEquals"]["kms:ViaService"]
        assert via == {"Fn::Sub": "dynamodb.${AWS::Region}.amazonaws.com"}, owner
    assert decrypters == {
        *WECHAT_CALLER_ROLES,
        PUSH_CALLBACK_ROLE,
        "ConsumerPolicy",
        *EXAMPLE_CONSUMER_ROLES,
    }
    assert sealers == {*WECHAT_CALLER_ROLES, "RefreshTokenKeyPolicy"}


def test_only_the_refresher_roles_may_use_the_refresh_token_key(
    variant: tuple[str, dict[str, Any]],
) -> None:
    _, template = variant
    key = _resources(template)["RefreshTokenKey"]["Properties"]
    assert key["EnableKeyRotation"] is True
    statements = {s["Sid"]: s for s in key["KeyPolicy"]["Statement"]}
    use = statements["RefresherUsesIt"]
    assert use["Principal"] == {
        "AWS": [{"Fn::GetAtt": [role, "Arn"]} for role in WECHAT_CALLER_ROLES]
    }
    assert set(use["Action"]) == {"kms:Encrypt", "kms:Decrypt"}
    admin = statements["AccountAdministers"]
    assert not any(a in ("kms:Encrypt", "kms:Decrypt", "kms:*") for a in admin["Action"])
    assert not any("Decrypt" in a or "Encrypt" in a for a in admin["Action"])


@pytest.mark.parametrize("role", EXAMPLE_CONSUMER_ROLES)
def test_example_consumer_reads_only_its_own_app(
    variant: tuple[str, dict[str, Any]], role: str
) -> None:
    _, template = variant
    statements = [s for owner, s in _identity_statements(template) if owner == role]
    dynamodb = [s for s in statements if any(a.startswith("dynamodb:") for a in _actions(s))]
    assert dynamodb
    for statement in dynamodb:
        assert _actions(statement) == {"dynamodb:GetItem"}
        assert _as_list(statement["Resource"]) == [TABLE_ARN]
        assert statement["Condition"] == LEADING_KEYS_OWN_APP
    assert not any(a.startswith("secretsmanager:") for s in statements for a in _actions(s))


def test_roles_are_assumed_by_their_own_service_only(
    variant: tuple[str, dict[str, Any]],
) -> None:
    _, template = variant
    expected = {"lambda.amazonaws.com", "scheduler.amazonaws.com"}
    for logical_id, role in _of_type(template, "AWS::IAM::Role").items():
        statements = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert len(statements) == 1, logical_id
        (trust,) = statements
        assert trust["Effect"] == "Allow"
        assert _actions(trust) == {"sts:AssumeRole"}
        assert set(trust["Principal"]) == {"Service"}, logical_id
        services = set(_as_list(trust["Principal"]["Service"]))
        assert len(services) == 1, logical_id
        assert services <= expected, logical_id
        if logical_id.endswith("ScheduledRefreshRole"):
            assert services == {"scheduler.amazonaws.com"}


def test_managed_policies_are_the_documented_aws_ones(
    variant: tuple[str, dict[str, Any]],
) -> None:
    _, template = variant
    for logical_id, role in _of_type(template, "AWS::IAM::Role").items():
        for name, conditional in _managed_policy_names(
            role["Properties"].get("ManagedPolicyArns", [])
        ):
            assert name in ALLOWED_MANAGED_POLICIES, f"{logical_id}: {name}"
            if name == VPC_POLICY:
                # ENI management only for the WeChat callers, and only when in a VPC.
                assert logical_id in WECHAT_CALLER_ROLES
                assert conditional
    for role in WECHAT_CALLER_ROLES:
        arns = _resources(template)[role]["Properties"]["ManagedPolicyArns"]
        assert _managed_policy_names(arns) == [(VPC_POLICY, True)]
        assert arns["Fn::If"][0] == "InVpc"


def test_synthesized_roles_are_the_expected_ones(synthesized: dict[str, Any]) -> None:
    roles = _of_type(synthesized, "AWS::IAM::Role")
    assert set(roles) == {
        "RefresherRole",
        "PassiveRefreshRole",
        "RefreshWorkerRole",
        PUSH_CALLBACK_ROLE,
        *EXAMPLE_CONSUMER_ROLES,
        "RefresherFunctionScheduledRefreshRole",
        "RefresherFunctionStableScheduledRefreshRole",
    }
    # Each schedule may invoke the refresher and write to its dead-letter queue, nothing else.
    for role in (
        "RefresherFunctionScheduledRefreshRole",
        "RefresherFunctionStableScheduledRefreshRole",
    ):
        assert _grants_of(synthesized, role) == {
            "lambda:InvokeFunction": [{"Fn::GetAtt": ["RefresherFunction", "Arn"]}],
            "sqs:SendMessage": [{"Fn::GetAtt": ["ScheduleDeadLetterQueue", "Arn"]}],
        }
    for role in EXAMPLE_CONSUMER_ROLES:
        consumer = {
            name
            for name, _ in _managed_policy_names(roles[role]["Properties"]["ManagedPolicyArns"])
        }
        assert consumer <= ALLOWED_MANAGED_POLICIES - {VPC_POLICY}, role
    # SAM added nothing to the refresher's own roles.
    functions = _of_type(synthesized, "AWS::Lambda::Function")
    for role, function in WECHAT_CALLER_ROLES.items():
        assert roles[role] == _resources(load_template(SOURCE))[role]
        assert functions[function]["Properties"]["Role"] == {"Fn::GetAtt": [role, "Arn"]}


def test_resource_policies_name_principals_and_this_account(
    variant: tuple[str, dict[str, Any]],
) -> None:
    _, template = variant
    statements = _resource_policies(template)
    assert statements
    own_root = {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}
    for owner, statement in statements:
        if statement["Effect"] == "Deny":
            # A deny opens nothing; the secret's is checked on its own above, the work
            # queues' refuses requests without TLS only.
            if owner == "WorkQueuesPolicy":
                assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
                continue
            assert owner == "AppRegistrySecretPolicy", owner
            continue
        assert statement["Effect"] == "Allow", owner
        principal = statement["Principal"]
        assert principal not in ("*", {"AWS": "*"}), owner
        if "AWS" in principal and statement.get("Sid") == "RefresherUsesIt":
            # RefreshTokenKey: the refresher's roles by ARN, nobody else.
            assert owner == "RefreshTokenKey", owner
            roles = [{"Fn::GetAtt": [role, "Arn"]} for role in WECHAT_CALLER_ROLES]
            assert principal == {"AWS": roles}, owner
        elif "AWS" in principal:
            # A key policy's administrator statement: this account, through IAM.
            assert principal == {"AWS": own_root}, owner
            assert template["Resources"][owner]["Type"] == "AWS::KMS::Key"
        else:
            assert set(principal) == {"Service"}, owner
            for action in _actions(statement):
                # AWS's documented grant for services publishing to encrypted topics.
                assert "*" not in action or action == "kms:GenerateDataKey*", (owner, action)
            condition = statement["Condition"]["StringEquals"]
            assert condition["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}, owner


# ---------------------------------------------------------------------- data at rest


def test_queues_and_topics_are_encrypted(variant: tuple[str, dict[str, Any]]) -> None:
    _, template = variant
    queues = _of_type(template, "AWS::SQS::Queue")
    assert set(queues) >= {"RefresherFailureQueue", "ScheduleDeadLetterQueue"}
    for logical_id, queue in queues.items():
        props = queue["Properties"]
        assert props.get("SqsManagedSseEnabled") is True or props.get("KmsMasterKeyId"), logical_id
    topics = _of_type(template, "AWS::SNS::Topic")
    assert set(topics) == {"AlarmTopic"}
    for logical_id, topic in topics.items():
        key = topic["Properties"]["KmsMasterKeyId"]
        # CloudWatch alarms cannot publish to a topic under the AWS managed key.
        assert key == {"Ref": "AlarmTopicKey"}, logical_id
    for logical_id, key in _of_type(template, "AWS::KMS::Key").items():
        assert key["Properties"]["EnableKeyRotation"] is True, logical_id


def test_table_is_encrypted_recoverable_and_retained(
    variant: tuple[str, dict[str, Any]],
) -> None:
    _, template = variant
    table = _resources(template)["TokenTable"]
    assert table["DeletionPolicy"] == "Retain"
    assert table["UpdateReplacePolicy"] == "Retain"
    props = table["Properties"]
    assert props["SSESpecification"]["SSEEnabled"] is True
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    secret = _resources(template)["AppRegistrySecret"]
    assert secret["DeletionPolicy"] == "Retain"
    assert secret["UpdateReplacePolicy"] == "Retain"


def test_every_function_logs_to_a_log_group_with_retention(
    variant: tuple[str, dict[str, Any]],
) -> None:
    _, template = variant
    log_groups = _of_type(template, "AWS::Logs::LogGroup")
    assert log_groups
    for logical_id, group in log_groups.items():
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionInDays"}, logical_id
    functions = _of_type(template, "AWS::Serverless::Function", "AWS::Lambda::Function")
    assert functions
    for logical_id, function in functions.items():
        # Without one, Lambda writes to /aws/lambda/<name>, which never expires.
        target = function["Properties"]["LoggingConfig"]["LogGroup"]
        assert target["Ref"] in log_groups, logical_id


# ------------------------------------------------------------------------------ checkov


def test_every_checkov_skip_has_a_reason(source: dict[str, Any]) -> None:
    skips = [
        (logical_id, skip)
        for logical_id, resource in _resources(source).items()
        for skip in (resource.get("Metadata") or {}).get("checkov", {}).get("skip", [])
    ]
    assert skips
    for logical_id, skip in skips:
        assert re.fullmatch(r"CKV2?_AWS_\d+", skip["id"]), (logical_id, skip)
        assert len(skip.get("comment", "").split()) >= 8, f"{logical_id}: explain {skip['id']}"
    # One skip per check and resource, and no global skips hiding from the template.
    assert len({(logical_id, skip["id"]) for logical_id, skip in skips}) == len(skips)
    config = yaml.safe_load(CHECKOV_CONFIG.read_text(encoding="utf-8"))
    assert "skip-check" not in config
    assert "soft-fail" not in config
    assert config["file"] == ["template.yaml"]
