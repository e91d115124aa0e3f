"""Structured logs and CloudWatch metrics (Embedded Metric Format) for each invocation.

Powertools for AWS Lambda is the ecosystem's convention for both: JSON log lines that
CloudWatch Logs Insights can query, and EMF metrics that cost no API calls. Only
fingerprints, outcomes and counts are emitted: never a token or a secret.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from .due import STABLE_LANE
from .outcome import Outcome, RunSummary, Status

SERVICE = "wechat-token"
NAMESPACE = "WeChatToken"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
# The service modules log through the standard library; give them the same JSON format.
copy_config_to_registered_loggers(source_logger=logger, include={"wechat_token"})


def publish(summary: RunSummary, *, scheduled: bool = True) -> None:
    """One log line per credential, and the run's metrics.

    Only scheduled runs report ``MinSecondsToExpiry``: the close-to-expiry alarm treats
    missing data as breaching, and a consumer's report must not hide a stopped schedule.
    """
    outcomes = summary.outcomes
    for key, message in summary.invalid_entries:
        logger.error(f"registry entry {key}: {message}", extra={"app_id": key})
    if summary.invalid_entries:
        metrics.add_metric("InvalidRegistryEntries", MetricUnit.Count, len(summary.invalid_entries))
    if summary.registry_fallback:
        metrics.add_metric("RegistryFallback", MetricUnit.Count, 1)
    for outcome in outcomes:
        _publish_outcome(outcome)
    remaining = [
        outcome.budget - outcome.calls_today
        for outcome in outcomes
        if outcome.calls_today is not None and outcome.budget is not None
    ]
    if remaining:
        metrics.add_metric("BudgetRemaining", MetricUnit.Count, min(remaining))
    if not scheduled:
        return
    least = min_seconds_to_expiry(summary)
    if least is not None:
        metrics.add_metric("MinSecondsToExpiry", MetricUnit.Seconds, least)
    _publish_plan(summary)
    # Always reported, so that its alarm's missing-data rule only means "not running".
    stable = min_seconds_to_expiry(summary, stable=True)
    metrics.add_metric(
        "MinStableSecondsToExpiry",
        MetricUnit.Seconds,
        NO_STABLE_TOKEN_SECONDS if stable is None else stable,
    )


def _publish_outcome(outcome: Outcome) -> None:
    fields = outcome.as_dict()
    log = logger.error if outcome.failed else logger.info
    log(f"{outcome.app_id}/{outcome.kind}: {outcome.outcome}", extra=fields)
    if outcome.wechat_calls:
        metrics.add_metric("WeChatCalls", MetricUnit.Count, outcome.wechat_calls)
    if outcome.status is Status.REFRESHED:
        metrics.add_metric("RefreshSuccess", MetricUnit.Count, 1)
        if outcome.replaced_age is not None:
            metrics.add_metric("TokenAgeAtRefresh", MetricUnit.Seconds, outcome.replaced_age)
        if outcome.passive:
            metrics.add_metric("PassiveRefresh", MetricUnit.Count, 1)
    elif outcome.failed:
        with single_metric(
            name="RefreshFailure",
            unit=MetricUnit.Count,
            value=1,
            namespace=NAMESPACE,
            default_dimensions={"service": SERVICE},
        ) as failure:
            failure.add_dimension("error_class", str(outcome.error_class or outcome.status))
    if outcome.foreign_rotation:
        metrics.add_metric("ForeignRotation", MetricUnit.Count, 1)


def _publish_plan(summary: RunSummary) -> None:
    ages = [o.ticket_age for o in summary.outcomes if o.ticket_age is not None]
    ages += summary.ticket_ages
    if ages:  # third-party platforms: how long ago WeChat's last verify-ticket push came
        metrics.add_metric("MaxSecondsSinceTicketPush", MetricUnit.Seconds, max(ages))
    if summary.plan is not None:
        metrics.add_metric("PlannedCredentials", MetricUnit.Count, summary.plan.planned)
    if summary.unreadable_shards:
        unreadable = len(summary.unreadable_shards)
        metrics.add_metric("UnreadableRegistrySecrets", MetricUnit.Count, unreadable)


# MinStableSecondsToExpiry when the run looked at no stable app's token: a token's life.
NO_STABLE_TOKEN_SECONDS = 7200.0


def min_seconds_to_expiry(summary: RunSummary, *, stable: bool = False) -> float | None:
    """A close-to-expiry alarm's metric: the least time left on any credential the run
    looked at (a failed one without any stored value counts as 0), and on the due entries
    the plan saw but did not send (due earlier and still not renewed, or due soon).

    Stable apps' tokens (``stable``) have their own metric: they are renewed in WeChat's
    last 5 minutes, so a healthy one is down to a few minutes every two hours. Otherwise,
    credentials whose endpoint cannot renew them earlier (WeCom hands out its token until
    it expires) are left out: their expiry is no refresher failure."""
    outcomes = [o for o in summary.outcomes if o.is_stable_token is stable]
    expiries = [
        o.seconds_to_expiry
        for o in outcomes
        if o.seconds_to_expiry is not None and (stable or o.renewable_in is None)
    ]
    if summary.plan is not None:  # due entries the plan saw and did not send (due.py)
        expiries += [left for lane, left in summary.plan.watched if (lane == STABLE_LANE) is stable]
    if any(o.seconds_to_expiry is None and o.failed for o in outcomes):
        expiries.append(0.0)
    if not expiries and not stable and summary.plan is not None:
        return summary.plan.quiet_floor  # nothing due: nothing has less than this
    return max(0.0, min(expiries)) if expiries else None
