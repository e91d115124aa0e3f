"""Builds the production service from the environment, once per execution environment."""

from __future__ import annotations

import logging
import time

import boto3
from botocore.config import Config
from wechat_token.redaction import quiet_http_loggers

from .registry import RegistryLoader
from .service import RefreshService
from .settings import Settings
from .token_store import TokenStore
from .wechat_api import WeChatTokenAPI

# botocore logs request and response bodies at DEBUG (the secret, the token) and httpx
# logs every URL at INFO (the secret in the query string): keep both quiet at any level.
for _name in ("botocore", "boto3", "urllib3"):
    logging.getLogger(_name).setLevel(logging.WARNING)
quiet_http_loggers()

_AWS_CONFIG = Config(
    connect_timeout=3,
    read_timeout=5,
    retries={"mode": "standard", "max_attempts": 5},
)


def build_service(settings: Settings) -> RefreshService:
    session = boto3.session.Session()
    dynamodb = session.client("dynamodb", config=_AWS_CONFIG)
    secrets = session.client("secretsmanager", config=_AWS_CONFIG)
    return RefreshService(
        settings,
        TokenStore(dynamodb, settings.table_name),
        WeChatTokenAPI(
            wechat_base_url=settings.wechat_api_base_url,
            wecom_base_url=settings.wecom_api_base_url,
            timeout_seconds=settings.http_timeout_seconds,
            clock=time.time,
        ),
        RegistryLoader(
            secrets, settings.registry_secret_id, cache_seconds=settings.registry_cache_seconds
        ),
    )
