"""The accounting services the gateway and the batch scheduler call: hold budget, record a request.

Each is a thin, checked step over its store (`costgate.accounting.ports`); the rules of what a hold,
a ledger entry and a rollup are live in `budgets` and `ledger`.
"""

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from costgate.accounting.budgets import Budget, BudgetPeriod, Hold, Reservation
from costgate.accounting.ledger import LedgerEntry, RecordOutcome
from costgate.accounting.ports import BudgetStore, LedgerStore
from costgate.errors import BudgetExceededError
from costgate.observability import MetricName, emit_request_metrics, logger


def reserve_budget(store: BudgetStore, budgets: Sequence[Budget], amount_usd: Decimal, at: datetime) -> Reservation:
    """Hold `amount_usd` against every budget's current window, all or none.

    No budgets: an empty reservation and no I/O. An amount above a budget's whole limit fails at once
    (no I/O); a budget without room raises BudgetExceededError (429) naming it and what remains.
    """
    if not amount_usd.is_finite() or amount_usd < 0:
        raise ValueError(f"a reservation amount must be a finite amount of 0 or more, not {amount_usd}")
    strictest: dict[tuple[str, BudgetPeriod], Budget] = {}  # one hold per counter item
    for budget in budgets:
        seen = strictest.get((budget.scope, budget.period))
        if seen is None or budget.limit_usd < seen.limit_usd:
            strictest[(budget.scope, budget.period)] = budget
    unique = list(strictest.values())
    for budget in unique:
        if amount_usd > budget.limit_usd:
            raise BudgetExceededError(budget, remaining=None, needed=amount_usd)
    holds = tuple(Hold(budget, budget.window(at), amount_usd) for budget in unique)
    if holds:
        store.reserve(holds)
    return Reservation(holds=holds, amount_usd=amount_usd)


def release_reservation(store: BudgetStore, reservation: Reservation) -> None:
    """Give the held amount back: the request never reached Claude, or it was a duplicate."""
    if reservation.holds:
        store.release(reservation.holds)


def remaining_after(store: BudgetStore, reservation: Reservation) -> Decimal | None:
    """The least `limit − committed` among the reservation's budgets, read now; None if no budget applies."""
    if not reservation.holds:
        return None
    return store.remaining(reservation.holds)


def record_request(store: LedgerStore, entry: LedgerEntry, holds: Sequence[Hold] = ()) -> RecordOutcome:
    """Store the entry, add it to its rollup and settle its budget holds, exactly once per request id."""
    if not store.record(entry, holds):
        logger.info("ledger: request already recorded", extra={"request_id": entry.request_id})
        return RecordOutcome.DUPLICATE
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
    return RecordOutcome.RECORDED
