"""Helpers shared by the integration, scenario and fault tests."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import httpx
from token_refresher.service import RefreshService
from token_refresher.settings import Settings
from token_refresher.triggers import Trigger, parse_operator_event, parse_passive_event
from token_refresher.wiring import build_service

from local_aws import dynamodb_client
from local_aws.static_secrets import SECRET_ID, StaticSecrets


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


def parse_event(event: Any) -> Trigger:
    """Either entry point's event, as its handler would parse it (a report if it has a
    ``stale_token``)."""
    if isinstance(event, dict) and "stale_token" in event:
        return parse_passive_event(event)
    return parse_operator_event(event)
