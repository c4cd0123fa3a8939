"""Budgets in DynamoDB: definitions, and one counter per budget window that reservations race on.

DynamoDB conditions cannot add, so a reservation turns "committed + amount <= limit" into
"committed <= limit − amount" with the right side computed here, exactly, per hold. Every hold of a
reservation goes into ONE TransactWrite: all budgets fit or none is touched. Settlement is not a
method here: `settle_updates` returns the updates for the ledger's own transaction, so a request is
settled exactly when (and only once when) its ledger row is written. Likewise `reserve_update` and
`release_update` build one hold's conditional update, for this store's transactions and for those
that move a record in the same write (a batch reserved, a unit finished, a batch aborted).
"""

import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Context, Decimal, Inexact, localcontext

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import DeleteError, DoesNotExist, TransactWriteError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action
from pynamodb.transactions import TransactWrite

from costgate.accounting.budgets import (
    Budget,
    BudgetPeriod,
    Hold,
    feature_scope,
    remaining_in,
    reservation_ceiling,
    tenant_scope,
)
from costgate.clock import Clock, SystemClock
from costgate.dal.table import (
    MAX_TRANSACTION_ATTEMPTS,
    CostgateItem,
    DecimalAttribute,
    cancellation_codes,
    conflict_backoff,
    is_transaction_conflict,
    transaction_connection,
)
from costgate.errors import BudgetExceededError, InvalidRequestError, UpstreamError
from costgate.observability import logger

DEFINITIONS_TTL = timedelta(seconds=30)
# A window's counter outlives the window by this much (DynamoDB TTL), then the table forgets it.
COUNTER_RETENTION = timedelta(days=7)
_DEFINITIONS_PK = "BUDGETDEF"
_EXACT = Context(prec=60, traps=[Inexact])


class BudgetCounterItem(CostgateItem, discriminator="budget_counter"):
    """One budget window.  PK: BUDGET#<scope>  SK: <period>#<window>  (e.g. BUDGET#tenant:acme, day#2026-11-29)

    committed_usd = spent_usd + what is held by requests not yet settled; changed only by atomic ADDs.
    limit_usd is the limit the last reservation was checked against. Expires COUNTER_RETENTION after
    the window ends.
    """

    scope = UnicodeAttribute()
    period = UnicodeAttribute()
    window = UnicodeAttribute()
    limit_usd = DecimalAttribute()
    committed_usd = DecimalAttribute()
    spent_usd = DecimalAttribute(null=True)
    requests = NumberAttribute(null=True)


class BudgetDefinitionItem(CostgateItem, discriminator="budget_definition"):
    """A tenant or feature budget.  PK: BUDGETDEF  SK: <tenant>#<scope>#<period>

    One partition, sorted by tenant: a request's budgets are one Query on begins_with(SK, "<tenant>#").
    Key budgets live on the key item instead.
    """

    scope = UnicodeAttribute()
    period = UnicodeAttribute()
    limit_usd = DecimalAttribute()


def _counter_key(hold: Hold) -> tuple[str, str]:
    return f"BUDGET#{hold.budget.scope}", f"{hold.budget.period.value}#{hold.window}"


def _definition_sk(scope: str, period: BudgetPeriod) -> str:
    tenant = Budget(scope, period, Decimal(0)).tenant  # validates the scope
    if tenant is None:
        raise InvalidRequestError("key budgets are set on the key (costgate keys create --daily-budget-usd …)")
    return f"{tenant}#{scope}#{period.value}"


def _expires_at(hold: Hold) -> int:
    start = date.fromisoformat(hold.window if hold.budget.period is BudgetPeriod.DAY else f"{hold.window}-01")
    if hold.budget.period is BudgetPeriod.DAY:
        end = start + timedelta(days=1)
    else:
        end = date(start.year + start.month // 12, start.month % 12 + 1, 1)
    return int((datetime(end.year, end.month, end.day, tzinfo=UTC) + COUNTER_RETENTION).timestamp())


def settle_updates(holds: Sequence[Hold], actual_usd: Decimal) -> list[tuple[CostgateItem, list[Action]]]:
    """The counter updates that turn each hold into the exact cost, for the ledger's TransactWrite.

    For each hold: committed += actual − held, spent += actual, requests += 1. Unconditional (the
    money is spent), so put them in the same transaction as the ledger row's does-not-exist
    condition: a duplicate request then settles nothing, and its caller releases its holds instead.
    """
    updates: list[tuple[CostgateItem, list[Action]]] = []
    for hold in holds:
        with localcontext(_EXACT):
            delta = actual_usd - hold.amount_usd
        actions: list[Action] = [
            BudgetCounterItem.entity.set(BudgetCounterItem),
            BudgetCounterItem.committed_usd.add(delta),
            BudgetCounterItem.spent_usd.add(actual_usd),
            BudgetCounterItem.requests.add(1),
        ]
        updates.append((BudgetCounterItem(*_counter_key(hold)), actions))
    return updates


def reserve_update(hold: Hold) -> tuple[BudgetCounterItem, list[Action], Condition]:
    """The counter update that holds `hold`, for a TransactWrite: (item, actions, condition).

    committed += amount on condition that committed <= limit − amount (or the window has no counter
    yet and the amount is within the limit: it is created). A refused condition means the hold did not
    fit when it was written; read `committed_usd` to tell a full window from one that room came back to.
    """
    actions: list[Action] = [
        BudgetCounterItem.entity.set(BudgetCounterItem),
        BudgetCounterItem.scope.set(hold.budget.scope),
        BudgetCounterItem.period.set(hold.budget.period.value),
        BudgetCounterItem.window.set(hold.window),
        BudgetCounterItem.limit_usd.set(hold.budget.limit_usd),
        BudgetCounterItem.expires_at.set(_expires_at(hold)),
        BudgetCounterItem.committed_usd.add(hold.amount_usd),
    ]
    ceiling = reservation_ceiling(hold)
    condition = BudgetCounterItem.committed_usd <= ceiling
    if ceiling >= 0:
        # A missing counter is 0 committed; with a negative ceiling (an amount above the whole limit)
        # no window can take the hold, a new one included, so the comparison alone must decide.
        condition = BudgetCounterItem.committed_usd.does_not_exist() | condition
    return BudgetCounterItem(*_counter_key(hold)), actions, condition


def release_update(hold: Hold) -> tuple[BudgetCounterItem, list[Action], Condition]:
    """The counter update that gives `hold` back, for a TransactWrite: (item, actions, condition).

    committed −= amount on condition that the counter exists: a refusal means the hold was never
    reserved, a bug the caller reports rather than a counter created below zero.
    """
    with localcontext(_EXACT):
        amount = -hold.amount_usd
    actions: list[Action] = [BudgetCounterItem.committed_usd.add(amount)]
    return BudgetCounterItem(*_counter_key(hold)), actions, BudgetCounterItem.committed_usd.exists()


def committed_usd(hold: Hold) -> Decimal:
    """What the hold's window has committed, read strongly consistently (0 without a counter)."""
    try:
        item = BudgetCounterItem.get(*_counter_key(hold), consistent_read=True)
    except DoesNotExist:
        return Decimal(0)
    return item.committed_usd


class DynamoBudgetStore:
    """BudgetStore over the single table. Definitions are cached per store (one per warm container) for 30 s."""

    def __init__(self, clock: Clock | None = None, sleep: Callable[[float], None] = time.sleep) -> None:
        self._clock = clock or SystemClock()
        self._sleep = sleep
        self._cache: dict[tuple[str, str], tuple[datetime, list[Budget]]] = {}
        self._cache_lock = threading.Lock()

    # --- definitions -----------------------------------------------------------------------------------

    def definitions(self, tenant: str, feature: str) -> list[Budget]:
        now = self._clock.now()
        with self._cache_lock:
            cached = self._cache.get((tenant, feature))
        if cached is not None and cached[0] <= now < cached[0] + DEFINITIONS_TTL:
            return list(cached[1])
        scopes = [tenant_scope(tenant)]
        if "/" not in tenant:
            scopes.append(feature_scope(tenant, feature))
        found = [
            _to_budget(item)
            for item in BudgetDefinitionItem.query(
                _DEFINITIONS_PK,
                BudgetDefinitionItem.sk.startswith(f"{tenant}#"),
                filter_condition=BudgetDefinitionItem.scope.is_in(*scopes),
            )
        ]
        with self._cache_lock:
            self._cache[(tenant, feature)] = (now, found)
        return list(found)

    def put_definition(self, budget: Budget) -> None:
        item = BudgetDefinitionItem(
            _DEFINITIONS_PK,
            _definition_sk(budget.scope, budget.period),
            scope=budget.scope,
            period=budget.period.value,
            limit_usd=budget.limit_usd,
        )
        item.save()
        self._forget_definitions()

    def delete_definition(self, scope: str, period: BudgetPeriod) -> bool:
        item = BudgetDefinitionItem(_DEFINITIONS_PK, _definition_sk(scope, period))
        try:
            item.delete(condition=BudgetDefinitionItem.pk.exists())
        except DeleteError as error:
            if error.cause_response_code != "ConditionalCheckFailedException":
                raise
            return False
        finally:
            self._forget_definitions()
        return True

    def list_definitions(self) -> list[Budget]:
        return [_to_budget(item) for item in BudgetDefinitionItem.query(_DEFINITIONS_PK, consistent_read=True)]

    def _forget_definitions(self) -> None:
        with self._cache_lock:
            self._cache.clear()

    # --- counters --------------------------------------------------------------------------------------

    def reserve(self, holds: Sequence[Hold]) -> None:
        if not holds:
            return
        for attempt in range(1, MAX_TRANSACTION_ATTEMPTS + 1):
            codes = self._transact_reserve(holds)
            if codes is None:
                return
            if "ConditionalCheckFailed" in codes:
                hold = holds[codes.index("ConditionalCheckFailed")]
                committed = committed_usd(hold)
                if committed > reservation_ceiling(hold):
                    raise _exceeded(hold, committed)
                # Room was given back between the refusal and the read (a release or a settlement): try again.
            logger.info("budgets: reservation retried", extra={"attempt": attempt, "reasons": codes})
            conflict_backoff(attempt, self._sleep)
        raise UpstreamError(f"budgets: could not reserve after {MAX_TRANSACTION_ATTEMPTS} attempts; retry the request")

    def release(self, holds: Sequence[Hold]) -> None:
        if not holds:
            return
        for attempt in range(1, MAX_TRANSACTION_ATTEMPTS + 1):
            try:
                with TransactWrite(connection=transaction_connection()) as transaction:
                    for hold in holds:
                        item, actions, condition = release_update(hold)
                        transaction.update(item, actions=actions, condition=condition)
            except TransactWriteError as error:
                codes = cancellation_codes(error)
                if "ConditionalCheckFailed" in codes:
                    hold = holds[codes.index("ConditionalCheckFailed")]
                    raise UpstreamError(
                        f"budgets: cannot release a hold on {hold.budget.label} ({hold.window}) that was never reserved"
                    ) from error
                if not is_transaction_conflict(error):
                    raise
                logger.info("budgets: release retried", extra={"attempt": attempt})
                conflict_backoff(attempt, self._sleep)
            else:
                return
        raise UpstreamError(f"budgets: could not release holds after {MAX_TRANSACTION_ATTEMPTS} attempts")

    def remaining(self, holds: Sequence[Hold]) -> Decimal | None:
        if not holds:
            return None
        committed = {
            (item.pk, item.sk): item.committed_usd
            for item in BudgetCounterItem.batch_get({_counter_key(h) for h in holds}, consistent_read=True)
        }
        return min(remaining_in(h.budget, committed.get(_counter_key(h), Decimal(0))) for h in holds)

    def _transact_reserve(self, holds: Sequence[Hold]) -> list[str | None] | None:
        """None when every hold was written; otherwise the cancellation reason of each hold, by index."""
        try:
            with TransactWrite(connection=transaction_connection()) as transaction:
                for hold in holds:
                    item, actions, condition = reserve_update(hold)
                    transaction.update(item, actions=actions, condition=condition)
        except TransactWriteError as error:
            codes = cancellation_codes(error)
            if "ConditionalCheckFailed" not in codes and not is_transaction_conflict(error):
                raise
            return codes
        return None


def _exceeded(hold: Hold, committed: Decimal) -> BudgetExceededError:
    # BudgetExceededError's convention: no `remaining` when the amount is above the whole limit.
    remaining = None if hold.amount_usd > hold.budget.limit_usd else remaining_in(hold.budget, committed)
    return BudgetExceededError(hold.budget, remaining, hold.amount_usd)


def _to_budget(item: BudgetDefinitionItem) -> Budget:
    return Budget(item.scope, BudgetPeriod(item.period), item.limit_usd)
