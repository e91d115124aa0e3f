"""RefresherFunction: the only component that calls WeChat's token endpoints.

Events:
- scheduled (anything without ``app_id``; ``{"types": ["stable"]}`` limits it to some types):
  refresh every configured credential that is due;
- ``{"app_id": "...", "force": true}``: refresh that app now;
- ``{"app_id": "...", "kind": "access_token", "stale_token": "sha256:...", "errcode": 40001}``:
  passive refresh, only if that token is still the stored one.
Returns a summary per credential (never a token or secret); raises after trying every
app if any failed, so that the invocation counts as failed and alarms fire.
"""

from __future__ import annotations

import json
from typing import Any

from token_refresher.errors import RefreshFailedError
from token_refresher.events import parse_event
from token_refresher.service import RefreshService
from token_refresher.settings import Settings
from token_refresher.telemetry import logger, metrics, publish
from token_refresher.wiring import build_service

_service: RefreshService | None = None


def _get_service() -> RefreshService:
    # Created on first use and reused while the execution environment stays warm.
    global _service  # noqa: PLW0603
    if _service is None:
        _service = build_service(Settings.from_env())
    return _service


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    request = parse_event(event)
    service = _get_service()
    remaining = None
    if context is not None and hasattr(context, "get_remaining_time_in_millis"):
        remaining = lambda: context.get_remaining_time_in_millis() / 1000.0  # noqa: E731
    invocation_id = getattr(context, "aws_request_id", "local")
    outcomes = service.run(request, remaining_seconds=remaining, invocation_id=invocation_id)
    publish(outcomes, service.settings.daily_call_budget)
    summary = {
        "credentials": [outcome.as_dict() for outcome in outcomes],
        "failed": sum(outcome.failed for outcome in outcomes),
        "refreshed": sum(outcome.outcome == "refreshed" for outcome in outcomes),
        "foreign_rotations": sum(outcome.foreign_rotation for outcome in outcomes),
    }
    if summary["failed"]:
        failed = [
            f"{o.app_id}/{o.kind}: {o.error['code'] if o.error else '?'}"
            for o in outcomes
            if o.failed
        ]
        raise RefreshFailedError(
            f"{summary['failed']} of {len(outcomes)} credential(s) failed to refresh "
            f"({'; '.join(failed)}); stored tokens were left untouched. Summary: "
            + json.dumps(summary, sort_keys=True)
        )
    return summary
