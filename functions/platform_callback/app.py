"""PlatformCallbackFunction: WeChat's pushes to a third-party platform's 授权事件接收URL.

A Lambda Function URL (payload 2.0) event in: query ``timestamp``, ``nonce``,
``encrypt_type=aes``, ``msg_signature``; an XML body with ``Encrypt``. Out: 200 ``success``
(text/plain) for every authentic push, a 4xx whose body is the reason code for anything
else, 503 when the registry or DynamoDB is unavailable. Stores the verify ticket and the
authorization events the refresher picks up (platform_callback.store). The logic is in
platform_callback.handler.
"""

from __future__ import annotations

from typing import Any

from platform_callback.telemetry import logger
from platform_callback.wiring import build_handler

# Built once per execution environment, in Lambda's init phase (SDK clients outside the
# handler, as AWS recommends), so that warm invocations pay nothing for it. A missing
# TOKEN_TABLE_NAME or WECHAT_APPS_SECRET_ID fails the init, naming the variable.
_handler = build_handler()


@logger.inject_lambda_context(log_event=False)
def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    return _handler.handle(event if isinstance(event, dict) else {}).to_response()
