"""Logger, tracer and metrics for every layer, and the metric names the template's alarms use.

Dimension sets are chosen for CloudWatch cost: every metric has a service-only set (what alarms
watch), model and feature get their own sets for cost, and tenant is never a dimension (unbounded
cardinality; the ledger answers per-tenant questions).
"""

from collections.abc import Mapping
from decimal import Decimal
from enum import StrEnum

from aws_lambda_powertools import Logger, Tracer
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
    BUDGET_REJECTIONS = "BudgetRejections"
    UNPRICED_RESPONSES = "UnpricedResponses"
    SAVINGS_USD = "SavingsUsd"
    ROUTED_REQUESTS = "RoutedRequests"
    PROMPT_CACHE_DECISIONS = "PromptCacheDecisions"
    ANSWER_CACHE_LOOKUPS = "AnswerCacheLookups"
    ANSWER_CACHE_GUARD_REJECTIONS = "AnswerCacheGuardRejections"
    ANSWER_CACHE_ERRORS = "AnswerCacheErrors"  # the semantic cache could not run, or an answer not be stored
    # BatchFunction, per scheduler tick: documents finished with a result file, or with an error file,
    # and requests sent to Claude in new Message Batches.
    BATCH_DOCUMENTS_DONE = "BatchDocumentsDone"
    BATCH_DOCUMENTS_FAILED = "BatchDocumentsFailed"
    BATCH_REQUESTS_SUBMITTED = "BatchRequestsSubmitted"
    # Calls to the Claude API: the Messages endpoints (HttpUpstream) and the Message Batches API
    # (HttpClaudeBatches), one per HTTP attempt, retries included, so that errors / calls is the share of
    # attempts Claude (or the way to it) failed.
    UPSTREAM_CALLS = "UpstreamCalls"
    # An attempt that ended in a timeout, a connection error, 408, 429, 529 or another 5xx (ErrorType
    # says which); never a 4xx the request itself caused, nor 401/403 (costgate's own key, logged loud).
    UPSTREAM_ERRORS = "UpstreamErrors"
    # Milliseconds from sending a /v1/messages request to Claude's response headers, for answers that
    # succeeded (200): for a stream that is its time to first byte, not to its end.
    UPSTREAM_LATENCY = "UpstreamLatency"
    # Milliseconds a /v1/messages request that Claude answered spent in the gateway outside its upstream
    # call (auth, budget, caches, routing, pricing, the ledger write). The call itself, its retries and
    # their waits included, is upstream time, not overhead.
    GATEWAY_OVERHEAD = "GatewayOverhead"
    # Streams (`"stream": true`) that did not reach message_stop: Claude's error event, a broken
    # connection to Claude, or the function's deadline. Each is settled from the usage it reported.
    STREAM_ERRORS = "StreamErrors"
    # Streams whose client went away before their end: the gateway read Claude to the end all the same
    # (see docs/gateway.md: what it costs, why exactness won). Counted when a write to the client failed.
    CLIENT_DISCONNECTS = "ClientDisconnects"
    # SpendWatchFunction, every five minutes: the ledger's total for the UTC day so far, and that
    # total projected linearly to the end of the day (costgate.accounting.spend.project_day_spend).
    SPEND_TODAY_USD = "SpendTodayUsd"
    PROJECTED_DAILY_SPEND_USD = "ProjectedDailySpendUsd"
    # ReconcileFunction, per run (costgate.reconcile.service): the days whose ledger drifts from
    # Anthropic's records, the days still pending, and the drift: tokens (|Anthropic − ledger| over rows
    # and categories) and USD (|Anthropic − ledger| over rows, so drifts of both signs add up).
    RECONCILE_DRIFT_DAYS = "ReconcileDriftDays"
    RECONCILE_PENDING_DAYS = "ReconcilePendingDays"
    RECONCILE_DRIFT_TOKENS = "ReconcileDriftTokens"
    RECONCILE_DRIFT_USD = "ReconcileDriftUsd"
    # A ledger or budget write that failed after Claude answered (or while an error was on its way):
    # the row is left to the sweeper, or an unused hold stays held. Never a wrong total; always a look.
    ACCOUNTING_ERRORS = "AccountingErrors"
    # SweeperFunction, per run: rows whose settle never came, ended at what they held (flagged in the ledger).
    SWEPT_REQUESTS = "SweptRequests"


class MetricDimension(StrEnum):
    MODEL = "Model"
    FEATURE = "Feature"
    STRATEGY = "Strategy"  # prompt_cache | batch | routing | answer_cache
    ROUTE_TIER = "RouteTier"  # simple | medium | complex
    DECISION = "Decision"  # a prompt_cache.CacheDecision
    RESULT = "Result"  # an answer_cache.CacheResult: exact-hit | semantic-hit | miss | bypass
    # an upstream.UpstreamErrorType: timeout | connection | rate_limited | overloaded | server_error
    ERROR_TYPE = "ErrorType"


_TOKENS = (
    MetricName.INPUT_TOKENS,
    MetricName.OUTPUT_TOKENS,
    MetricName.CACHE_WRITE_5M_TOKENS,
    MetricName.CACHE_WRITE_1H_TOKENS,
    MetricName.CACHE_READ_TOKENS,
    MetricName.WEB_SEARCH_REQUESTS,
)
# What BatchFunction counts after each scheduler tick (emit_count, service-only).
BATCH_COUNTS = (
    MetricName.BATCH_DOCUMENTS_DONE,
    MetricName.BATCH_DOCUMENTS_FAILED,
    MetricName.BATCH_REQUESTS_SUBMITTED,
)
# What HttpUpstream and HttpClaudeBatches count per attempt (emit_upstream_attempt).
UPSTREAM_COUNTS = (MetricName.UPSTREAM_CALLS, MetricName.UPSTREAM_ERRORS)
# SpendWatchFunction's gauges (emit_spend).
SPEND_GAUGES = (MetricName.SPEND_TODAY_USD, MetricName.PROJECTED_DAILY_SPEND_USD)
# ReconcileFunction's figures (emit_reconciliation).
RECONCILE_FIGURES = (
    MetricName.RECONCILE_DRIFT_DAYS,
    MetricName.RECONCILE_PENDING_DAYS,
    MetricName.RECONCILE_DRIFT_TOKENS,
    MetricName.RECONCILE_DRIFT_USD,
)
# SweeperFunction's count (sweep).
SWEEPER_COUNTS = (MetricName.SWEPT_REQUESTS,)
_SERVICE: frozenset[MetricDimension] = frozenset()
# Every dimension set (besides `service`, always present) each metric is emitted with: what a dashboard
# widget or an alarm may ask for. A unit test checks the emitters against it, the template test reads it.
DIMENSION_SETS: Mapping[MetricName, frozenset[frozenset[MetricDimension]]] = {
    MetricName.COST_USD: frozenset(
        {_SERVICE, frozenset({MetricDimension.MODEL}), frozenset({MetricDimension.FEATURE})}
    ),
    MetricName.REQUESTS: frozenset(
        {_SERVICE, frozenset({MetricDimension.MODEL}), frozenset({MetricDimension.FEATURE})}
    ),
    MetricName.BASELINE_COST_USD: frozenset({_SERVICE}),
    **{name: frozenset({_SERVICE, frozenset({MetricDimension.MODEL})}) for name in _TOKENS},
    MetricName.SAVINGS_USD: frozenset({frozenset({MetricDimension.STRATEGY})}),
    MetricName.BUDGET_REJECTIONS: frozenset({_SERVICE}),
    MetricName.UNPRICED_RESPONSES: frozenset({_SERVICE}),
    MetricName.ROUTED_REQUESTS: frozenset({_SERVICE, frozenset({MetricDimension.ROUTE_TIER})}),
    MetricName.PROMPT_CACHE_DECISIONS: frozenset({_SERVICE, frozenset({MetricDimension.DECISION})}),
    MetricName.ANSWER_CACHE_LOOKUPS: frozenset({_SERVICE, frozenset({MetricDimension.RESULT})}),
    MetricName.ANSWER_CACHE_GUARD_REJECTIONS: frozenset({_SERVICE}),
    MetricName.ANSWER_CACHE_ERRORS: frozenset({_SERVICE}),
    **{name: frozenset({_SERVICE}) for name in BATCH_COUNTS},
    MetricName.UPSTREAM_CALLS: frozenset({_SERVICE}),
    MetricName.UPSTREAM_ERRORS: frozenset({_SERVICE, frozenset({MetricDimension.ERROR_TYPE})}),
    MetricName.UPSTREAM_LATENCY: frozenset({_SERVICE, frozenset({MetricDimension.MODEL})}),
    MetricName.GATEWAY_OVERHEAD: frozenset({_SERVICE}),
    MetricName.STREAM_ERRORS: frozenset({_SERVICE}),
    MetricName.CLIENT_DISCONNECTS: frozenset({_SERVICE}),
    **{name: frozenset({_SERVICE}) for name in SPEND_GAUGES},
    **{name: frozenset({_SERVICE}) for name in RECONCILE_FIGURES},
    MetricName.ACCOUNTING_ERRORS: frozenset({_SERVICE}),
    MetricName.SWEPT_REQUESTS: frozenset({_SERVICE}),
}

logger = Logger()
# Only botocore is patched: patching every supported library costs ~55 ms of cold start (bench_gateway).
tracer = Tracer(patch_modules=["botocore"])


def emit_request_metrics(
    *,
    model: str,
    feature: str,
    cost_usd: Decimal,
    baseline_cost_usd: Decimal,
    tokens: dict[MetricName, int],
    savings: Mapping[str, Decimal],
) -> None:
    """Emit one recorded request as EMF blobs: the service-only set, per model, per feature, per strategy.

    Each blob is flushed at once (EphemeralMetrics), so a process that records many requests, like
    the batch function or the CLI, neither accumulates nor prints past POWERTOOLS_METRICS_DISABLED.
    """
    cost: dict[MetricName, tuple[MetricUnit, float]] = {
        MetricName.COST_USD: (MetricUnit.NoUnit, float(cost_usd)),
        MetricName.REQUESTS: (MetricUnit.Count, 1),
    }
    counts = {name: (MetricUnit.Count, float(count)) for name, count in tokens.items()}
    baseline = {MetricName.BASELINE_COST_USD: (MetricUnit.NoUnit, float(baseline_cost_usd))}
    _flush(None, cost | baseline | counts)
    _flush((MetricDimension.MODEL, model), cost | counts)
    _flush((MetricDimension.FEATURE, feature), cost)
    for strategy, amount in savings.items():
        if amount:
            _flush((MetricDimension.STRATEGY, strategy), {MetricName.SAVINGS_USD: (MetricUnit.NoUnit, float(amount))})


def _flush(dimension: tuple[MetricDimension, str] | None, values: dict[MetricName, tuple[MetricUnit, float]]) -> None:
    blob = EphemeralMetrics(namespace=NAMESPACE)
    if dimension is not None:
        blob.add_dimension(name=dimension[0], value=dimension[1])
    for name, (unit, value) in values.items():
        blob.add_metric(name=name, unit=unit, value=value)
    blob.flush_metrics()


def emit_count(name: MetricName, value: int = 1, dimension: tuple[MetricDimension, str] | None = None) -> None:
    """One count on the service-only dimension set (what alarms watch), and on `dimension` if given."""
    _flush(None, {name: (MetricUnit.Count, float(value))})
    if dimension is not None:
        _flush(dimension, {name: (MetricUnit.Count, float(value))})


def emit_upstream_attempt(error_type: str | None) -> None:
    """One HTTP attempt at Claude: a call, and when `error_type` is given an error, service-only and per ErrorType.

    Calls and errors of one attempt share a blob, so errors / calls never sees one without the other.
    """
    values: dict[MetricName, tuple[MetricUnit, float]] = {MetricName.UPSTREAM_CALLS: (MetricUnit.Count, 1)}
    if error_type is None:
        _flush(None, values)
        return
    error = {MetricName.UPSTREAM_ERRORS: (MetricUnit.Count, 1.0)}
    _flush(None, values | error)
    _flush((MetricDimension.ERROR_TYPE, error_type), error)


def emit_upstream_latency(model: str, latency_s: float) -> None:
    """Claude's time to answer one request, service-only (all models) and per model, in milliseconds."""
    latency = {MetricName.UPSTREAM_LATENCY: (MetricUnit.Milliseconds, latency_s * 1000)}
    _flush(None, latency)
    _flush((MetricDimension.MODEL, model), latency)


def emit_gateway_overhead(overhead_s: float) -> None:
    """The gateway's own time for one request that reached Claude, in milliseconds (service-only)."""
    _flush(None, {MetricName.GATEWAY_OVERHEAD: (MetricUnit.Milliseconds, max(overhead_s, 0.0) * 1000)})


def emit_spend(spent_usd: Decimal, projected_usd: Decimal) -> None:
    """The day's spend so far and its end-of-day projection, as gauges in one blob (service-only)."""
    _flush(
        None,
        {
            MetricName.SPEND_TODAY_USD: (MetricUnit.NoUnit, float(spent_usd)),
            MetricName.PROJECTED_DAILY_SPEND_USD: (MetricUnit.NoUnit, float(projected_usd)),
        },
    )


def emit_reconciliation(*, drift_days: int, pending_days: int, drift_tokens: int, drift_usd: Decimal) -> None:
    """One reconciliation run's figures in one blob (service-only), zeros included: a clean run is a data point."""
    _flush(
        None,
        {
            MetricName.RECONCILE_DRIFT_DAYS: (MetricUnit.Count, float(drift_days)),
            MetricName.RECONCILE_PENDING_DAYS: (MetricUnit.Count, float(pending_days)),
            MetricName.RECONCILE_DRIFT_TOKENS: (MetricUnit.Count, float(drift_tokens)),
            MetricName.RECONCILE_DRIFT_USD: (MetricUnit.NoUnit, float(drift_usd)),
        },
    )
