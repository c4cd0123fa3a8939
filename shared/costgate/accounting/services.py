"""The accounting services for rows written settled at once: an answer-cache hit, a batch request.

A gateway request that goes to Claude is reserved first and ended after (`costgate.accounting.requests`);
the rules of what a ledger entry and a hold are live in `ledger` and `budgets`.
"""

from collections.abc import Sequence

from costgate.accounting.budgets import Hold
from costgate.accounting.ledger import LedgerEntry, RecordOutcome
from costgate.accounting.ports import LedgerStore
from costgate.observability import MetricName, emit_request_metrics, logger


def record_request(store: LedgerStore, entry: LedgerEntry, holds: Sequence[Hold] = ()) -> RecordOutcome:
    """Store the entry settled and settle its root holds, exactly once per request id."""
    if not store.record(entry, holds):
        logger.info("ledger: request already recorded", extra={"request_id": entry.request_id})
        return RecordOutcome.DUPLICATE
    emit_entry_metrics(entry)
    return RecordOutcome.RECORDED


def emit_entry_metrics(entry: LedgerEntry) -> None:
    """The cost, tokens and savings of a settled request, as CloudWatch metrics."""
    usage = entry.usage
    emit_request_metrics(
        model=entry.model,
        feature=entry.feature,
        cost_usd=entry.cost.total_usd,
        baseline_cost_usd=entry.baseline_cost_usd,
        tokens={
            MetricName.INPUT_TOKENS: usage.input_tokens,
            MetricName.OUTPUT_TOKENS: usage.output_tokens,
            MetricName.CACHE_WRITE_5M_TOKENS: usage.cache_write_5m_tokens,
            MetricName.CACHE_WRITE_1H_TOKENS: usage.cache_write_1h_tokens,
            MetricName.CACHE_READ_TOKENS: usage.cache_read_tokens,
            MetricName.WEB_SEARCH_REQUESTS: usage.web_search_requests,
        },
        savings={strategy.value: amount for strategy, amount in entry.savings.items()},
    )
