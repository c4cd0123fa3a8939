"""Logger, tracer and metrics for every layer, and the metric names the template's alarms use.

Dimension sets are chosen for CloudWatch cost: every metric has a service-only set (what alarms
watch), model and feature get their own sets for cost, and tenant is never a dimension (unbounded
cardinality; the ledger answers per-tenant questions).
"""

from decimal import Decimal
from enum import StrEnum

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

NAMESPACE = "Costgate"


class MetricName(StrEnum):
    COST_USD = "CostUsd"
    BASELINE_COST_USD = "BaselineCostUsd"
    REQUESTS = "Requests"
    INPUT_TOKENS = "InputTokens"
    OUTPUT_TOKENS = "OutputTokens"
    CACHE_WRITE_5M_TOKENS = "CacheWrite5mTokens"
    CACHE_WRITE_1H_TOKENS = "CacheWrite1hTokens"
    CACHE_READ_TOKENS = "CacheReadTokens"
    WEB_SEARCH_REQUESTS = "WebSearchRequests"


class MetricDimension(StrEnum):
    MODEL = "Model"
    FEATURE = "Feature"


logger = Logger()
tracer = Tracer()
metrics = Metrics(namespace=NAMESPACE)


def emit_request_metrics(
    *, model: str, feature: str, cost_usd: Decimal, baseline_cost_usd: Decimal, tokens: dict[MetricName, int]
) -> None:
    """Emit one recorded request as three EMF blobs: the service-only set, per model, per feature.

    Each blob is flushed at once (EphemeralMetrics), so a process that records many requests, like
    the batch function or the CLI, neither accumulates nor prints past POWERTOOLS_METRICS_DISABLED.
    """
    cost = float(cost_usd)
    totals = EphemeralMetrics(namespace=NAMESPACE)
    totals.add_metric(name=MetricName.COST_USD, unit=MetricUnit.NoUnit, value=cost)
    totals.add_metric(name=MetricName.BASELINE_COST_USD, unit=MetricUnit.NoUnit, value=float(baseline_cost_usd))
    totals.add_metric(name=MetricName.REQUESTS, unit=MetricUnit.Count, value=1)
    for name, count in tokens.items():
        totals.add_metric(name=name, unit=MetricUnit.Count, value=count)
    totals.flush_metrics()

    by_model = EphemeralMetrics(namespace=NAMESPACE)
    by_model.add_dimension(name=MetricDimension.MODEL, value=model)
    by_model.add_metric(name=MetricName.COST_USD, unit=MetricUnit.NoUnit, value=cost)
    by_model.add_metric(name=MetricName.REQUESTS, unit=MetricUnit.Count, value=1)
    for name, count in tokens.items():
        by_model.add_metric(name=name, unit=MetricUnit.Count, value=count)
    by_model.flush_metrics()

    by_feature = EphemeralMetrics(namespace=NAMESPACE)
    by_feature.add_dimension(name=MetricDimension.FEATURE, value=feature)
    by_feature.add_metric(name=MetricName.COST_USD, unit=MetricUnit.NoUnit, value=cost)
    by_feature.add_metric(name=MetricName.REQUESTS, unit=MetricUnit.Count, value=1)
    by_feature.flush_metrics()
