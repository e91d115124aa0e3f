"""Builds the service from settings: production defaults, every dependency injectable."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import boto3
import httpx
from botocore.config import Config
from wechat_token.redaction import quiet_aws_loggers, quiet_http_loggers

from .refresh_tokens import KmsRefreshTokenCipher
from .registry import RegistryLoader
from .service import RefreshService
from .settings import Settings
from .token_store import TokenStore
from .wechat_api import WeChatTokenAPI
from .work_queue import SqsWorkQueue

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_secretsmanager import SecretsManagerClient

# botocore logs request and response bodies at DEBUG (the secret, the token) and httpx
# logs every URL at INFO (the secret in the query string): keep them quiet at any level.
quiet_aws_loggers()
quiet_http_loggers()

# botocore's standard retry mode: backoff with jitter on throttling, 5xx and timeouts.
AWS_CONFIG = Config(
    connect_timeout=3,
    read_timeout=5,
    retries={"mode": "standard", "total_max_attempts": 5},
    # Up to REFRESH_CONCURRENCY (16 by default) threads share one client.
    max_pool_connections=64,
)


def build_service(
    settings: Settings,
    *,
    dynamodb: DynamoDBClient | None = None,
    secrets: SecretsManagerClient | None = None,
    http: httpx.Client | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
    kms: Any = None,
    sqs: Any = None,
) -> RefreshService:
    """The service; ``kms`` is a boto3 KMS client (made when a key is configured)."""
    if dynamodb is None or secrets is None:
        session = boto3.session.Session()
        dynamodb = dynamodb or session.client("dynamodb", config=AWS_CONFIG)
        secrets = secrets or session.client("secretsmanager", config=AWS_CONFIG)
    cipher = None
    if settings.refresh_token_kms_key_id:
        kms = kms or boto3.session.Session().client("kms", config=AWS_CONFIG)
        cipher = KmsRefreshTokenCipher(kms, settings.refresh_token_kms_key_id)
    queue = None
    if settings.work_queue_url:
        sqs = sqs or boto3.session.Session().client("sqs", config=AWS_CONFIG)
        queue = SqsWorkQueue(sqs, settings.work_queue_url)
    return RefreshService(
        settings,
        TokenStore(dynamodb, settings.table_name),
        WeChatTokenAPI(
            wechat_base_url=settings.wechat_api_base_url,
            wecom_base_url=settings.wecom_api_base_url,
            timeout_seconds=settings.http_timeout_seconds,
            clock=clock,
            http=http,
        ),
        RegistryLoader(
            secrets,
            settings.registry_secret_ids,
            prefix=settings.registry_secret_prefix,
            cache_seconds=settings.registry_cache_seconds,
        ),
        clock=clock,
        sleep=sleep,
        rng=rng,
        refresh_tokens=cipher,
        queue=queue,
    )
