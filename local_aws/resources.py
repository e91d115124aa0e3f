"""Local AWS resources shaped like the SAM template, plus clients and env for local endpoints.

Everything here talks only to the endpoint it is given (DynamoDB Local or the moto server),
with dummy credentials, so nothing can reach real AWS.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import boto3
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.literals import BillingModeType
    from mypy_boto3_dynamodb.type_defs import (
        AttributeDefinitionTypeDef,
        GlobalSecondaryIndexTypeDef,
        KeySchemaElementTypeDef,
    )
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sqs import SQSClient

DUMMY_ACCESS_KEY_ID: Final = "testing"
DUMMY_SECRET_ACCESS_KEY: Final = "testing"
LOCAL_REGION: Final = "us-east-1"

# Must match TokenTable in template.yaml and wechat_token.record.PK / SK (checked by a test;
# not imported, so this package works without the layer on sys.path).
TABLE_KEY_SCHEMA: Final[tuple[KeySchemaElementTypeDef, ...]] = (
    {"AttributeName": "app_id", "KeyType": "HASH"},
    {"AttributeName": "kind", "KeyType": "RANGE"},
)
TABLE_ATTRIBUTE_DEFINITIONS: Final[tuple[AttributeDefinitionTypeDef, ...]] = (
    {"AttributeName": "app_id", "AttributeType": "S"},
    {"AttributeName": "kind", "AttributeType": "S"},
    {"AttributeName": "component_appid", "AttributeType": "S"},
    {"AttributeName": "due_shard", "AttributeType": "S"},
    {"AttributeName": "due_at", "AttributeType": "N"},
)
# A third-party platform's authorizers, found with a query (never a scan): only items with
# a component_appid are in it (sparse), keys only.
COMPONENT_INDEX: Final = "component-index"
# The planner's due index: due_at (epoch seconds) per due_shard; keys and expires_at only.
DUE_INDEX: Final = "due-index"
TABLE_INDEXES: Final[tuple[GlobalSecondaryIndexTypeDef, ...]] = (
    {
        "IndexName": COMPONENT_INDEX,
        "KeySchema": [
            {"AttributeName": "component_appid", "KeyType": "HASH"},
            {"AttributeName": "app_id", "KeyType": "RANGE"},
        ],
        "Projection": {"ProjectionType": "KEYS_ONLY"},
    },
    {
        "IndexName": DUE_INDEX,
        "KeySchema": [
            {"AttributeName": "due_shard", "KeyType": "HASH"},
            {"AttributeName": "due_at", "KeyType": "RANGE"},
        ],
        "Projection": {
            "ProjectionType": "INCLUDE",
            "NonKeyAttributes": ["expires_at", "renewable_at"],
        },
    },
)
# Push nonces (replay protection) expire by themselves.
TABLE_TTL_ATTRIBUTE: Final = "expires_ttl"
TABLE_BILLING_MODE: Final[BillingModeType] = "PAY_PER_REQUEST"

_CLIENT_CONFIG: Final = Config(
    connect_timeout=2,
    read_timeout=30,
    retries={"mode": "standard", "max_attempts": 3},
)


class LocalClients(NamedTuple):
    """boto3 clients bound to one local endpoint."""

    dynamodb: DynamoDBClient
    secretsmanager: SecretsManagerClient


class LocalTable(NamedTuple):
    """A token table on a local endpoint, as handed to tests (``token_table`` fixture)."""

    name: str
    endpoint_url: str
    dynamodb: DynamoDBClient


def _session() -> boto3.session.Session:
    return boto3.session.Session(
        aws_access_key_id=DUMMY_ACCESS_KEY_ID,
        aws_secret_access_key=DUMMY_SECRET_ACCESS_KEY,
        region_name=LOCAL_REGION,
    )


def dynamodb_client(endpoint_url: str, *, config: Config | None = None) -> DynamoDBClient:
    """A DynamoDB client for ``endpoint_url`` with dummy credentials."""
    return _session().client("dynamodb", endpoint_url=endpoint_url, config=config or _CLIENT_CONFIG)


def secretsmanager_client(
    endpoint_url: str, *, config: Config | None = None
) -> SecretsManagerClient:
    """A Secrets Manager client for ``endpoint_url`` with dummy credentials."""
    return _session().client(
        "secretsmanager", endpoint_url=endpoint_url, config=config or _CLIENT_CONFIG
    )


def sqs_client(endpoint_url: str, *, config: Config | None = None) -> SQSClient:
    """An SQS client for ``endpoint_url`` with dummy credentials.

    Its pool has room for many threads (an ``EventSourceMapping``'s pollers share it).
    """
    return _session().client(
        "sqs",
        endpoint_url=endpoint_url,
        config=config or _CLIENT_CONFIG.merge(Config(max_pool_connections=64)),
    )


def local_clients(endpoint_url: str) -> LocalClients:
    """DynamoDB and Secrets Manager clients for one local endpoint (e.g. the moto server)."""
    return LocalClients(
        dynamodb=dynamodb_client(endpoint_url),
        secretsmanager=secretsmanager_client(endpoint_url),
    )


def aws_env(
    endpoint_url: str,
    *,
    dynamodb_endpoint_url: str | None = None,
    secretsmanager_endpoint_url: str | None = None,
) -> dict[str, str]:
    """Environment variables a Lambda function needs to use the local endpoint(s) only.

    ``AWS_ENDPOINT_URL`` covers every service; the per-service variables are set too, so a
    stray ``AWS_ENDPOINT_URL_DYNAMODB`` in the caller's environment cannot win. Merge this over
    the environment you pass on; a dict cannot unset, so drop ``AWS_PROFILE`` and
    ``AWS_SESSION_TOKEN`` yourself if they may be set.
    """
    return {
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_ENDPOINT_URL_DYNAMODB": dynamodb_endpoint_url or endpoint_url,
        "AWS_ENDPOINT_URL_SECRETS_MANAGER": secretsmanager_endpoint_url or endpoint_url,
        "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "false",
        "AWS_ACCESS_KEY_ID": DUMMY_ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET_ACCESS_KEY,
        "AWS_DEFAULT_REGION": LOCAL_REGION,
        "AWS_REGION": LOCAL_REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def create_token_table(dynamodb: DynamoDBClient, name: str) -> None:
    """Create the token table as the SAM template defines it, and wait until it is ACTIVE."""
    dynamodb.create_table(
        TableName=name,
        KeySchema=TABLE_KEY_SCHEMA,
        AttributeDefinitions=TABLE_ATTRIBUTE_DEFINITIONS,
        GlobalSecondaryIndexes=TABLE_INDEXES,
        BillingMode=TABLE_BILLING_MODE,
    )
    dynamodb.get_waiter("table_exists").wait(
        TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
    )
    dynamodb.update_time_to_live(
        TableName=name,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": TABLE_TTL_ATTRIBUTE},
    )


def create_registry_secret(
    secretsmanager: SecretsManagerClient, name: str, registry: Mapping[str, Any]
) -> str:
    """Store the app registry as a JSON secret named ``name``; return its ARN."""
    response = secretsmanager.create_secret(Name=name, SecretString=json.dumps(registry))
    return response["ARN"]


class WorkQueues(NamedTuple):
    """A work queue and its dead-letter queue (``create_work_queues``)."""

    queue_url: str
    dlq_url: str


def create_work_queues(
    sqs: SQSClient, name: str, *, visibility_timeout: int, max_receive_count: int
) -> WorkQueues:
    """Create queue ``name`` and its DLQ ``name-dlq``, both with SSE-SQS.

    The queue's RedrivePolicy moves a message to the DLQ after ``max_receive_count``
    receives; the DLQ keeps messages 14 days (SQS's maximum), the queue 4 (its default).
    """
    dlq_url = sqs.create_queue(
        QueueName=f"{name}-dlq",
        Attributes={"SqsManagedSseEnabled": "true", "MessageRetentionPeriod": "1209600"},
    )["QueueUrl"]
    dlq_attributes = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])
    dlq_arn = dlq_attributes["Attributes"]["QueueArn"]
    redrive_policy = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count}
    queue_url = sqs.create_queue(
        QueueName=name,
        Attributes={
            "VisibilityTimeout": str(visibility_timeout),
            "SqsManagedSseEnabled": "true",
            "RedrivePolicy": json.dumps(redrive_policy),
        },
    )["QueueUrl"]
    return WorkQueues(queue_url=queue_url, dlq_url=dlq_url)
