"""ExampleConsumerFunction: how a consumer Lambda uses the wechat_token layer.

It reads its app's token through the layer (cached in memory for about a minute, never past
its expiry) and calls a WeChat server API with it. It never logs or returns the token.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from wechat_token import WeChatClient, fingerprint, get_access_token

logger = logging.getLogger()
logger.setLevel(os.environ.get("LOG_LEVEL", "INFO").upper())

# Created once per execution environment and reused while warm.
_clients: dict[str, WeChatClient] = {}


def lambda_handler(event: dict[str, Any] | None, context: Any) -> dict[str, Any]:
    app_id = (event or {}).get("app_id") or os.environ["WECHAT_APP_ID"]
    client = _clients.get(app_id) or _clients.setdefault(app_id, WeChatClient(app_id))
    reply = client.get("/cgi-bin/get_api_domain_ip")
    token = get_access_token(app_id)  # a cache hit: the client just read it
    ip_count = len(reply.get("ip_list", []))
    logger.info("app %s: WeChat API domain has %d IP ranges", app_id, ip_count)
    return {"app_id": app_id, "token_fingerprint": fingerprint(token), "ip_ranges": ip_count}
