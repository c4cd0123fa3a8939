"""A gateway request in the ledger and the budgets: reserved before Claude is called, ended exactly once after.

    handle = reserve_request(ledger, budgets, row, hold)     # before the call: ≤ 1 round trip when warm
    settle_request(ledger, budgets, handle, entry)            # Claude answered: the exact cost
    abandon_request(ledger, budgets, handle)                  # it failed before reaching Claude

`reserve_request` writes the row and takes the hold in parallel (one round trip); a budget that
cannot cover the request ends the row `refused` and raises the 429. `settle_request` ends the row
with a bounded number of tries and then gives the unused part of the hold back; when every try
fails the row stays `reserved` and the sweeper settles it at what it held, so the ledger never
counts less than Claude billed. A streamed answer calls `settle_request` once its stream has ended.
"""

import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal

from costgate.accounting.budgets import ShardHold
from costgate.accounting.holds import check_limits, complete_hold, remaining_figure, tells_remaining
from costgate.accounting.ledger import LedgerEntry, RequestState, ReservedRequest
from costgate.accounting.ports import BudgetStore, LedgerStore, RootState
from costgate.accounting.services import emit_entry_metrics
from costgate.errors import BudgetExceededError
from costgate.observability import MetricName, emit_count, logger

# Tries of the write that settles a row (each already retried by botocore on throttling and 5xx);
# after the last the row is the sweeper's, and the client still gets its answer.
SETTLE_ATTEMPTS = 3
_SETTLE_BACKOFF_S = 0.05
# The writes of one request that go in parallel: the row and the hold, then the give-back and the roots.
_POOL = ThreadPoolExecutor(max_workers=16, thread_name_prefix="costgate-accounting")


@dataclass(frozen=True)
class RequestHandle:
    """A reserved request: its row, its hold (None when no budget applies) and its shard's headroom per slot
    just after the hold was taken (what a stream's budget-before figure is told from)."""

    row: ReservedRequest
    hold: ShardHold | None
    headroom: Mapping[str, Decimal] = field(default_factory=dict)

    @property
    def request_id(self) -> str:
        return self.row.request_id


@dataclass(frozen=True)
class Settlement:
    """`recorded`: the row is settled with the entry (False: it was left to the sweeper, or ended before).

    `headroom` is the shard's headroom per slot after the give-back; `roots` the hold's roots as read
    after it (only for unsharded budgets, for the remaining-budget receipt).
    """

    recorded: bool
    headroom: Mapping[str, Decimal]
    roots: Mapping[tuple[str, str, str], RootState]


def reserve_request(
    ledger: LedgerStore, budgets: BudgetStore, row: ReservedRequest, hold: ShardHold | None
) -> RequestHandle:
    """Write the request's row `reserved` and hold its worst case, before anything is sent to Claude.

    Raises BudgetExceededError (the 429) after ending the row `refused`; any other failure leaves
    nothing held and no row reserved (the row, if written, is ended `abandoned`).
    """
    if hold is None:
        ledger.reserve(row)
        return RequestHandle(row, None)
    try:
        check_limits(hold)
    except BudgetExceededError:
        ledger.reserve(row)
        _end_quietly(ledger, row.request_id, RequestState.REFUSED)
        raise
    put = _POOL.submit(ledger.reserve, row)
    take = _POOL.submit(budgets.take, hold)
    put_error, take_error = put.exception(), take.exception()
    if put_error is not None:
        if take_error is None and take.result().ok:
            _give_back_quietly(budgets, hold, hold.amount_usd)
        raise put_error
    if take_error is not None:
        _end_quietly(ledger, row.request_id, RequestState.ABANDONED)
        raise take_error
    try:
        taken = complete_hold(budgets, hold, take.result())
    except BudgetExceededError:
        _end_quietly(ledger, row.request_id, RequestState.REFUSED)
        raise
    except BaseException:
        _end_quietly(ledger, row.request_id, RequestState.ABANDONED)
        raise
    return RequestHandle(row, hold, taken.headroom)


def settle_request(
    ledger: LedgerStore,
    budgets: BudgetStore,
    handle: RequestHandle,
    entry: LedgerEntry,
    *,
    read_roots: bool = False,
    sleep: Callable[[float], None] = time.sleep,
) -> Settlement:
    """End the row `settled` at the entry's exact cost, then give back what the hold did not need.

    The settle is tried SETTLE_ATTEMPTS times; if none lands, nothing is given back (the sweeper will
    count the row at its hold, which the budget still holds) and `recorded` is False. `read_roots`
    also reads the hold's roots, in parallel with the give-back, for the receipt.
    """
    if not _settle_row(ledger, handle.request_id, entry, sleep):
        return Settlement(recorded=False, headroom={}, roots={})
    emit_entry_metrics(entry)
    hold = handle.hold
    if hold is None:
        return Settlement(recorded=True, headroom={}, roots={})
    give = _POOL.submit(budgets.give_back, hold, hold.amount_usd - entry.cost.total_usd)
    roots: Future[dict[tuple[str, str, str], RootState]] | None = None
    if read_roots:
        roots = _POOL.submit(budgets.roots, [(budget, hold.window(budget)) for budget in hold.budgets])
    headroom: Mapping[str, Decimal] = {}
    try:
        headroom = give.result()
    except Exception:  # noqa: BLE001 - the client has its answer; the unused hold stays held, made loud here
        logger.exception("budgets: could not give back an unused hold", extra={"request_id": handle.request_id})
        emit_count(MetricName.ACCOUNTING_ERRORS)
    found: Mapping[tuple[str, str, str], RootState] = {}
    if roots is not None:
        try:
            found = roots.result()
        except Exception:  # noqa: BLE001 - only the receipt's remaining-budget figure depends on it
            logger.exception("budgets: could not read the roots for the receipt")
    return Settlement(recorded=True, headroom=headroom if roots is None or found else {}, roots=found)


def budget_left_before(budgets: BudgetStore, handle: RequestHandle) -> Decimal | None:
    """The least budget left before the request's hold (its worst case given back): a stream's opening figure.

    None without budgets, or for sharded ones (reading their roots on every request would make them hot).
    """
    hold = handle.hold
    if hold is None or not tells_remaining(hold):
        return None
    roots = budgets.roots([(budget, hold.window(budget)) for budget in hold.budgets])
    remaining = remaining_figure(hold, handle.headroom, roots)
    return None if remaining is None else remaining + hold.amount_usd


def abandon_request(ledger: LedgerStore, budgets: BudgetStore, handle: RequestHandle) -> bool:
    """The request failed before reaching Claude: end its row `abandoned` (nothing spent) and give the hold back.

    Never raises (it runs while another error is on its way to the client). False when the row could
    not be ended: then it stays reserved, the hold stays held, and the sweeper counts it at the hold.
    """
    if not _end_quietly(ledger, handle.request_id, RequestState.ABANDONED):
        return False
    if handle.hold is not None:
        _give_back_quietly(budgets, handle.hold, handle.hold.amount_usd)
    return True


def _settle_row(ledger: LedgerStore, request_id: str, entry: LedgerEntry, sleep: Callable[[float], None]) -> bool:
    for attempt in range(1, SETTLE_ATTEMPTS + 1):
        try:
            if ledger.settle(request_id, entry):
                return True
        except Exception:  # noqa: BLE001 - tried again, then left to the sweeper; never fails the answered request
            logger.exception("ledger: settle failed", extra={"request_id": request_id, "attempt": attempt})
        else:
            logger.warning("ledger: the row was no longer reserved; not settled", extra={"request_id": request_id})
            return False
        if attempt < SETTLE_ATTEMPTS:
            sleep(_SETTLE_BACKOFF_S * 2 ** (attempt - 1))
    logger.error(
        "ledger: could not settle; the sweeper will count the request at its hold", extra={"request_id": request_id}
    )
    emit_count(MetricName.ACCOUNTING_ERRORS)
    return False


def _end_quietly(ledger: LedgerStore, request_id: str, state: RequestState) -> bool:
    try:
        return ledger.end(request_id, state)
    except Exception:  # noqa: BLE001 - an error is already on its way to the client; this one is made loud
        logger.exception("ledger: could not end a row", extra={"request_id": request_id, "state": state.value})
        emit_count(MetricName.ACCOUNTING_ERRORS)
        return False


def _give_back_quietly(budgets: BudgetStore, hold: ShardHold, amount_usd: Decimal) -> None:
    try:
        budgets.give_back(hold, amount_usd)
    except Exception:  # noqa: BLE001 - strands the hold until its window ends (stricter, never looser): made loud
        logger.exception("budgets: could not give a hold back", extra={"shard": hold.shard.label})
        emit_count(MetricName.ACCOUNTING_ERRORS)
