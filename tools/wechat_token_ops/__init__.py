"""wechat_token_ops: the operators' command line, ``wechat-token status`` / ``refresh``.

Installed with ``pip install ".[cli]"``; it is not part of the Lambda layer (consumers never
need it). It reads records through the layer's schema (``wechat_token.record``) and its
settings through the layer's helpers (``wechat_token.settings``).

    cli.py      argparse, settings from flags and the environment, exit codes: ``main``
    status.py   the Scan of the token table and each credential's health (JSON shape too)
    refresh.py  the synchronous forced invocation of the refresher and its summary
    render.py   human output: durations, the rich tables, colour only when asked for
    clients.py  boto3 clients with an operator's timeouts, imported only when a command runs
    errors.py   what makes a command exit 2

Output holds fingerprints, never a token or a secret.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_UNHEALTHY = 1
EXIT_USAGE = 2

PROG = "wechat-token"
