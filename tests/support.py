"""Helpers shared by the integration, scenario and fault tests."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

import httpx
from token_refresher.service import RefreshService
from token_refresher.settings import Settings
from token_refresher.wiring import build_service

from local_aws import dynamodb_client

SECRET_ID = "wechat-token/apps"


class StaticSecrets:
    """Stands in for Secrets Manager where only the registry secret is read."""

    def __init__(self, registry: dict[str, Any]) -> None:
        self.registry = registry
        self.reads = 0

    def get_secret_value(self, SecretId: str) -> dict[str, str]:
        self.reads += 1
        return {"SecretString": json.dumps(self.registry)}


def local_refresher(
    *,
    table: str,
    endpoint_url: str,
    wechat_base_url: str,
    registry: dict[str, Any],
    clock: Callable[[], float],
    sleep: Callable[[float], None] = lambda _: None,
    seed: int = 0,
    **settings: Any,
) -> RefreshService:
    """A refresher wired like production, against a local DynamoDB and the simulator.

    Each call makes its own DynamoDB and HTTP clients, as two Lambda instances would.
    """
    return build_service(
        Settings(
            table_name=table,
            registry_secret_id=SECRET_ID,
            wechat_api_base_url=wechat_base_url,
            wecom_api_base_url=wechat_base_url,
            registry_cache_seconds=0,
            **settings,
        ),
        dynamodb=dynamodb_client(endpoint_url),
        secrets=StaticSecrets(registry),  # type: ignore[arg-type]
        http=httpx.Client(timeout=10),
        clock=clock,
        sleep=sleep,
        rng=random.Random(seed),
    )
