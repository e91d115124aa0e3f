"""boto3 clients for the operators' machine, imported only when a command runs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import AWSAccessError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_secretsmanager import SecretsManagerClient

# Longer than the refresher's 300 s timeout; never retried, as a retry would force again.
INVOKE_READ_TIMEOUT = 310


def dynamodb_client() -> DynamoDBClient:
    """Short timeouts and botocore's standard retries: a Scan is safe to retry."""
    try:
        import boto3  # noqa: PLC0415
        from botocore.config import Config  # noqa: PLC0415

        config = Config(
            connect_timeout=2, read_timeout=10, retries={"mode": "standard", "max_attempts": 3}
        )
        return boto3.client("dynamodb", config=config)
    except Exception as exc:
        raise AWSAccessError(f"Could not create a DynamoDB client: {exc}") from exc


def lambda_client() -> LambdaClient:
    """Waits for the refresher's whole run and never retries (a retry would force again)."""
    try:
        import boto3  # noqa: PLC0415
        from botocore.config import Config  # noqa: PLC0415

        config = Config(
            connect_timeout=5,
            read_timeout=INVOKE_READ_TIMEOUT,
            retries={"mode": "standard", "total_max_attempts": 1},
        )
        return boto3.client("lambda", config=config)
    except Exception as exc:
        raise AWSAccessError(f"Could not create a Lambda client: {exc}") from exc


def secrets_client() -> SecretsManagerClient:
    """Standard retries: reads are safe to retry, and so are puts (ClientRequestToken)."""
    try:
        import boto3  # noqa: PLC0415
        from botocore.config import Config  # noqa: PLC0415

        config = Config(
            connect_timeout=2, read_timeout=10, retries={"mode": "standard", "max_attempts": 3}
        )
        return boto3.client("secretsmanager", config=config)
    except Exception as exc:
        raise AWSAccessError(f"Could not create a Secrets Manager client: {exc}") from exc
