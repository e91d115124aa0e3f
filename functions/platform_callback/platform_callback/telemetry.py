"""The callback's structured logs: Powertools' JSON lines, service ``wechat-token``.

One line per push: what was accepted (InfoType, platform, authorizer, CreateTime, whether
it was stored), or the reason code of a refusal. Never a token, an EncodingAESKey, a
ticket, an authorization code, a signature or any request data: those live only in the
objects :mod:`platform_callback.push` returns, whose ``repr`` hides them.
"""

from __future__ import annotations

import logging
from typing import Final

from aws_lambda_powertools import Logger

__all__ = ["AWS_WIRE_LOGGERS", "SERVICE", "logger", "quiet_aws_loggers"]

SERVICE: Final = "wechat-token"
# botocore logs every request and answer body at DEBUG: a push's ticket or code is in the
# UpdateItem request, every registry secret in the GetSecretValue answer.
AWS_WIRE_LOGGERS: Final = ("boto3", "botocore", "urllib3", "s3transfer")

logger = Logger(service=SERVICE)


def quiet_aws_loggers() -> None:
    """Keep the AWS SDK's loggers at WARNING whatever LOG_LEVEL or the root logger says."""
    for name in AWS_WIRE_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


quiet_aws_loggers()
