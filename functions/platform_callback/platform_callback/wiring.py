"""Builds the push handler from the environment: production defaults, every dependency
injectable (tests pass moto's or DynamoDB Local's clients and a manual clock)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Final

import boto3
from botocore.config import Config

from platform_callback.config import ComponentConfigs
from platform_callback.handler import PushHandler
from platform_callback.store import DynamoDBNonceStore, PushStore

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_secretsmanager import SecretsManagerClient

__all__ = ["AWS_CONFIG", "SECRET_ENV", "TABLE_ENV", "build_handler"]

TABLE_ENV: Final = "TOKEN_TABLE_NAME"
SECRET_ENV: Final = "WECHAT_APPS_SECRET_ID"

# WeChat waits 5 s for "success", network included. A healthy push costs one
# GetSecretValue (cold environments only, then once a minute), one PutItem and one
# UpdateItem of a few milliseconds each; a slow attempt is cut short and tried once more
# (standard mode: jittered backoff, throttling and 5xx retried), so that a push still
# answers within the function's 4 s Timeout in the common failure cases. A push that
# fails anyway is answered 503 and WeChat pushes it again.
AWS_CONFIG: Final = Config(
    connect_timeout=1,
    read_timeout=1,
    retries={"mode": "standard", "total_max_attempts": 2},
)


def build_handler(
    env: Mapping[str, str] | None = None,
    *,
    dynamodb: DynamoDBClient | None = None,
    secrets: SecretsManagerClient | None = None,
    clock: Callable[[], float] = time.time,
    config_cache_seconds: float = 60.0,
) -> PushHandler:
    """The handler for ``env`` (default ``os.environ``): ``TOKEN_TABLE_NAME`` and
    ``WECHAT_APPS_SECRET_ID`` are required."""
    env = os.environ if env is None else env
    missing = [name for name in (TABLE_ENV, SECRET_ENV) if not env.get(name)]
    if missing:
        raise RuntimeError(
            f"{' and '.join(missing)} must be set (the template sets them for "
            "PlatformCallbackFunction; locally, see events/env.json)"
        )
    table = env[TABLE_ENV]
    if dynamodb is None or secrets is None:
        session = boto3.session.Session()
        dynamodb = dynamodb or session.client("dynamodb", config=AWS_CONFIG)
        secrets = secrets or session.client("secretsmanager", config=AWS_CONFIG)
    configs = ComponentConfigs(secrets, env[SECRET_ENV], cache_seconds=config_cache_seconds)
    return PushHandler(
        configs.lookup,
        DynamoDBNonceStore(dynamodb, table, clock=clock),
        PushStore(dynamodb, table),
        clock=clock,
    )
