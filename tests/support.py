"""Helpers shared by the integration, scenario and fault tests."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import httpx
from token_refresher.service import RefreshService
from token_refresher.settings import Settings
from token_refresher.triggers import Authorize, Trigger, parse_operator_event, parse_passive_event
from token_refresher.wiring import build_service
from wechat_token.record import event_key, ticket_key

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


def parse_event(event: Any) -> Trigger | Authorize:
    """Either entry point's event, as its handler would parse it (a report if it has a
    ``stale_token``)."""
    if isinstance(event, dict) and "stale_token" in event:
        return parse_passive_event(event)
    return parse_operator_event(event)


class TableWriter:
    """The callback's two writes (platform_callback), as update expressions."""

    def __init__(self, dynamodb: Any, table: str) -> None:
        self.dynamodb, self.table = dynamodb, table

    def store_ticket(self, component: str, ticket: str, *, create_time: float) -> None:
        self.dynamodb.update_item(
            TableName=self.table,
            Key=ticket_key(component).item_key(),
            UpdateExpression=(
                "SET prior_value = if_not_exists(#v, :empty), prior_expires_at = "
                "if_not_exists(expires_at, :zero), #v = :t, expires_at = :e, create_time = :c,"
                " fetched_at = :c, version = if_not_exists(version, :zero) + :one"
            ),
            ConditionExpression="attribute_not_exists(create_time) OR create_time < :c",
            ExpressionAttributeNames={"#v": "value"},
            ExpressionAttributeValues={
                ":empty": {"S": ""},
                ":zero": {"N": "0"},
                ":one": {"N": "1"},
                ":t": {"S": ticket},
                ":e": {"N": str(int(create_time) + 43200 - 600)},
                ":c": {"N": str(int(create_time))},
            },
        )

    def store_authorization(
        self,
        component: str,
        merchant: str,
        info_type: str,
        *,
        create_time: float,
        code: str | None = None,
        code_expires_at: float | None = None,
    ) -> None:
        values: dict[str, Any] = {
            ":i": {"S": info_type},
            ":c": {"N": str(int(create_time))},
            ":p": {"S": f"pending#{component}"},
        }
        expression = "SET info_type = :i, create_time = :c, fetched_at = :c, component_appid = :p"
        if code is not None:
            expression += ", #v = :code, expires_at = :e"
            values |= {":code": {"S": code}, ":e": {"N": str(int(code_expires_at or 0))}}
        else:
            expression += " REMOVE #v, expires_at"
        self.dynamodb.update_item(
            TableName=self.table,
            Key=event_key(component, merchant).item_key(),
            UpdateExpression=expression,
            ConditionExpression="attribute_not_exists(create_time) OR create_time < :c",
            ExpressionAttributeNames={"#v": "value"},
            ExpressionAttributeValues=values,
        )
