"""ExampleConsumerFunction: how a consumer Lambda uses the wechat_token layer.

It reads its app's token through the layer (cached in memory for about a minute, never past
its expiry) and calls a WeChat server API with it. It never logs or returns the token.

Settings (template.yaml): ``TOKEN_TABLE_NAME``, ``WECHAT_APP_ID``, ``WECHAT_API_BASE_URL``
and ``PASSIVE_REFRESH_FUNCTION_NAME`` (the PassiveRefreshFunction, the only function a
consumer may invoke: on a rejected token ``WeChatClient`` reports it there and retries once).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from wechat_token import WeChatClient, fingerprint, get_access_token
from wechat_token.settings import APP_ID_ENV, PASSIVE_FUNCTION_ENV, env_text, process_env

logger = logging.getLogger()
logger.setLevel(os.environ.get("LOG_LEVEL", "INFO").upper())

# Created once per execution environment and reused while warm.
_clients: dict[str, WeChatClient] = {}


def lambda_handler(event: dict[str, Any] | None, context: Any) -> dict[str, Any]:
    env = process_env()
    app_id = (event or {}).get("app_id") or env_text(
        env, APP_ID_ENV, what="the app's key in the wechat-token registry"
    )
    client = _clients.get(app_id) or _clients.setdefault(app_id, WeChatClient(app_id))
    reply = client.get("/cgi-bin/get_api_domain_ip")
    token = get_access_token(app_id)  # a cache hit: the client just read it
    ip_count = len(reply.get("ip_list", []))
    logger.info("app %s: WeChat API domain has %d IP ranges", app_id, ip_count)
    return {
        "app_id": app_id,
        "token_fingerprint": fingerprint(token),
        "ip_ranges": ip_count,
        "passive_refresh": bool(env.get(PASSIVE_FUNCTION_ENV, "").strip()),
    }
