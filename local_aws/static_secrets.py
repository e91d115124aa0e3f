"""An in-process stand-in for Secrets Manager, for code that only reads the registry secret.

The tests, the fault and scenario suites and the benchmarks wire a production refresher with
it instead of a Secrets Manager endpoint (``tests/support.py`` re-exports it).
"""

from __future__ import annotations

import json
from typing import Any, Final

# The registry secret's id in every local setup (as events/env.json names it).
SECRET_ID: Final = "wechat-token/apps"


class StaticSecrets:
    """Stands in for Secrets Manager where only the registry secret is read."""

    def __init__(self, registry: dict[str, Any]) -> None:
        self.registry = registry
        self.reads = 0

    def get_secret_value(self, SecretId: str) -> dict[str, str]:
        self.reads += 1
        return {"SecretString": json.dumps(self.registry)}
