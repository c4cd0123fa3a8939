"""In-memory ledger and budget stores, and a builder for the ledger entries they hold."""

import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import date, datetime
from decimal import Decimal

from costgate.accounting.budgets import (
    Budget,
    BudgetPeriod,
    Hold,
    feature_scope,
    remaining_in,
    reservation_ceiling,
    tenant_scope,
)
from costgate.accounting.ledger import LedgerEntry, RejectionCount, Rollup, utc_day, validate_tag
from costgate.errors import BudgetExceededError, InvalidRequestError, UpstreamError
from costgate.pricing.cost import Cost, CostComponent, Strategy, price_usage
from costgate.pricing.usage import TokenUsage
from costgate.routing.prompt_cache import PrefixUse
from tests.fakes.clock import NOW
from tests.fakes.routing import InMemoryPromptCacheStore

type RollupKey = tuple[date, str, str, str]


type RejectionKey = tuple[date, str, str]


class InMemoryLedgerStore:
    """LedgerStore in dicts: entries by request id, rollups by (UTC day, tenant, feature, model) and
    budget rejection counts by (UTC day, tenant, feature).

    Same contract as DynamoLedgerStore: a request id already stored changes nothing and returns
    False, whatever the second entry holds (its holds and prompt-cache use included); rollups and
    rejection counts come day by day, then in sort-key order. Thread-safe: concurrent records and
    rejections all count, once each.
    """

    def __init__(
        self, budgets: "InMemoryBudgetStore | None" = None, prompt_cache: "InMemoryPromptCacheStore | None" = None
    ) -> None:
        self.entries: dict[str, LedgerEntry] = {}
        self.rollup_items: dict[RollupKey, Rollup] = {}
        self.rejection_counts: dict[RejectionKey, int] = {}
        self._budgets = budgets
        self._prompt_cache = prompt_cache
        self._lock = threading.Lock()

    def find(self, request_id: str) -> LedgerEntry | None:
        entry = self.entries.get(request_id)
        return None if entry is None else replace(entry, prompt_cache=None)

    def record(self, entry: LedgerEntry, holds: Sequence[Hold] = ()) -> bool:
        with self._lock:
            return self._record(entry, holds)

    def _record(self, entry: LedgerEntry, holds: Sequence[Hold]) -> bool:
        if entry.request_id in self.entries:
            return False
        if holds:
            if self._budgets is None:
                raise AssertionError("this fake ledger was built without the budget store its holds live in")
            self._budgets.settle(holds, entry.cost.total_usd)
        if entry.prompt_cache is not None:
            if self._prompt_cache is None:
                raise AssertionError("this fake ledger was built without the prompt-cache store its prefix use goes to")
            self._prompt_cache.observe(entry.feature, entry.at, entry.prompt_cache)
        self.entries[entry.request_id] = entry
        key = (entry.day, entry.tenant, entry.feature, entry.model)
        current = self.rollup_items.get(key) or _empty_rollup(key)
        usage = entry.usage
        applied = entry.applied_strategies
        self.rollup_items[key] = replace(
            current,
            requests=current.requests + 1,
            cost_usd=current.cost_usd + entry.cost.total_usd,
            baseline_cost_usd=current.baseline_cost_usd + entry.baseline_cost_usd,
            input_tokens=current.input_tokens + usage.input_tokens,
            output_tokens=current.output_tokens + usage.output_tokens,
            cache_write_5m_tokens=current.cache_write_5m_tokens + usage.cache_write_5m_tokens,
            cache_write_1h_tokens=current.cache_write_1h_tokens + usage.cache_write_1h_tokens,
            cache_read_tokens=current.cache_read_tokens + usage.cache_read_tokens,
            web_search_requests=current.web_search_requests + usage.web_search_requests,
            savings_usd={
                strategy: current.savings_usd.get(strategy, Decimal(0)) + entry.savings.get(strategy, Decimal(0))
                for strategy in {*current.savings_usd, *entry.savings}
            },
            strategy_requests={
                **current.strategy_requests,
                **{strategy: current.strategy_requests.get(strategy, 0) + 1 for strategy in applied},
            },
            strategy_cost_usd={
                **current.strategy_cost_usd,
                **{
                    strategy: current.strategy_cost_usd.get(strategy, Decimal(0)) + entry.cost.total_usd
                    for strategy in applied
                },
            },
        )
        return True

    def rollups(self, first: date, last: date) -> Iterator[Rollup]:
        with self._lock:
            items = dict(self.rollup_items)
        # '#' sorts before every character a tag may hold, so tuple order is the table's sort-key order.
        for key in sorted(items):
            if first <= key[0] <= last:
                yield items[key]

    def count_rejection(self, at: datetime, tenant: str, feature: str) -> None:
        key = (utc_day(at), validate_tag(tenant, "tenant"), validate_tag(feature, "feature"))
        with self._lock:
            self.rejection_counts[key] = self.rejection_counts.get(key, 0) + 1

    def rejections(self, first: date, last: date) -> Iterator[RejectionCount]:
        with self._lock:
            counts = dict(self.rejection_counts)
        for key in sorted(counts):
            day, tenant, feature = key
            if first <= day <= last:
                yield RejectionCount(day=day, tenant=tenant, feature=feature, count=counts[key])


def _empty_rollup(key: RollupKey) -> Rollup:
    day, tenant, feature, model = key
    return Rollup(
        day=day,
        tenant=tenant,
        feature=feature,
        model=model,
        requests=0,
        cost_usd=Decimal(0),
        baseline_cost_usd=Decimal(0),
        input_tokens=0,
        output_tokens=0,
        cache_write_5m_tokens=0,
        cache_write_1h_tokens=0,
        cache_read_tokens=0,
        web_search_requests=0,
    )


def make_entry(
    request_id: str,
    *,
    at: datetime = NOW,
    tenant: str = "acme",
    feature: str = "chat",
    model: str = "claude-opus-5-5",
    usage: TokenUsage | None = None,
    cost_usd: str | None = None,
    baseline_usd: str | None = None,
    requested_model: str | None = None,
    route_tier: str | None = None,
    route_reason: str | None = None,
    prompt_cache: PrefixUse | None = None,
    savings: Mapping[Strategy, str] | None = None,
) -> LedgerEntry:
    """A ledger entry priced by the real cost engine, or with a literal `cost_usd` (all of it input).

    The baseline defaults to the same usage priced with no prompt caching (or to the literal cost);
    with `savings` (exact strings per strategy), to the cost plus those savings.
    """
    usage = usage or TokenUsage(input_tokens=1000, output_tokens=500)
    if cost_usd is None:
        cost = price_usage(model, usage, at)
        baseline = price_usage(model, usage.without_cache(), at).total_usd
    else:
        total = Decimal(cost_usd)
        components = dict.fromkeys(CostComponent, Decimal(0)) | {CostComponent.INPUT: total}
        cost = Cost(
            model=model,
            total_usd=total,
            components=components,
            price_version="test-literal",
            modifiers=(),
            confirmed=True,
        )
        baseline = total
    by_strategy = {strategy: Decimal(amount) for strategy, amount in (savings or {}).items()}
    if by_strategy:
        baseline = cost.total_usd + sum(by_strategy.values(), Decimal(0))
    if baseline_usd is not None:
        baseline = Decimal(baseline_usd)
    return LedgerEntry(
        request_id=request_id,
        at=at,
        tenant=tenant,
        feature=feature,
        usage=usage,
        cost=cost,
        baseline_cost_usd=baseline,
        savings=by_strategy,
        requested_model=requested_model,
        route_tier=route_tier,
        route_reason=route_reason,
        prompt_cache=prompt_cache,
    )


type CounterKey = tuple[str, BudgetPeriod, str]


class InMemoryBudgetStore:
    """BudgetStore in dicts: definitions by (scope, period), counters by (scope, period, window).

    Same contract as DynamoBudgetStore: a reservation holds on every budget or on none and names the
    first that did not fit; releasing a hold never reserved fails. `settle` does what the ledger's
    transaction does with `settle_updates`. Thread-safe. `calls` lists every port method called.
    """

    def __init__(self, budgets: Sequence[Budget] = ()) -> None:
        self.budgets: dict[tuple[str, BudgetPeriod], Budget] = {(b.scope, b.period): b for b in budgets}
        self.committed: dict[CounterKey, Decimal] = {}
        self.spent: dict[CounterKey, Decimal] = {}
        self.requests: dict[CounterKey, int] = {}
        self.calls: list[str] = []
        self._lock = threading.Lock()

    def definitions(self, tenant: str, feature: str) -> list[Budget]:
        self.calls.append("definitions")
        scopes = {tenant_scope(tenant)} | ({feature_scope(tenant, feature)} if "/" not in tenant else set())
        return [b for b in self._sorted() if b.scope in scopes]

    def put_definition(self, budget: Budget) -> None:
        self.calls.append("put_definition")
        if budget.tenant is None:
            raise InvalidRequestError("key budgets are set on the key (costgate keys create --daily-budget-usd …)")
        self.budgets[(budget.scope, budget.period)] = budget

    def delete_definition(self, scope: str, period: BudgetPeriod) -> bool:
        self.calls.append("delete_definition")
        if Budget(scope, period, Decimal(0)).tenant is None:
            raise InvalidRequestError("key budgets are set on the key (costgate keys create --daily-budget-usd …)")
        return self.budgets.pop((scope, period), None) is not None

    def list_definitions(self) -> list[Budget]:
        self.calls.append("list_definitions")
        return self._sorted()

    def reserve(self, holds: Sequence[Hold]) -> None:
        self.calls.append("reserve")
        with self._lock:
            for hold in holds:
                committed = self.committed.get(counter_key(hold), Decimal(0))
                if committed > reservation_ceiling(hold):
                    oversized = hold.amount_usd > hold.budget.limit_usd
                    remaining = None if oversized else remaining_in(hold.budget, committed)
                    raise BudgetExceededError(hold.budget, remaining, hold.amount_usd)
            for hold in holds:
                key = counter_key(hold)
                self.committed[key] = self.committed.get(key, Decimal(0)) + hold.amount_usd

    def release(self, holds: Sequence[Hold]) -> None:
        self.calls.append("release")
        with self._lock:
            for hold in holds:
                if counter_key(hold) not in self.committed:
                    raise UpstreamError(
                        f"budgets: cannot release a hold on {hold.budget.label} ({hold.window}) that was never reserved"
                    )
            for hold in holds:
                self.committed[counter_key(hold)] -= hold.amount_usd

    def remaining(self, holds: Sequence[Hold]) -> Decimal | None:
        self.calls.append("remaining")
        if not holds:
            return None
        with self._lock:
            return min(remaining_in(h.budget, self.committed.get(counter_key(h), Decimal(0))) for h in holds)

    def settle(self, holds: Sequence[Hold], actual_usd: Decimal) -> None:
        """What the ledger's transaction does with settle_updates: committed += actual − held, spent += actual."""
        with self._lock:
            for hold in holds:
                key = counter_key(hold)
                self.committed[key] = self.committed.get(key, Decimal(0)) + actual_usd - hold.amount_usd
                self.spent[key] = self.spent.get(key, Decimal(0)) + actual_usd
                self.requests[key] = self.requests.get(key, 0) + 1

    def _sorted(self) -> list[Budget]:
        return sorted(self.budgets.values(), key=lambda b: (b.tenant or "", b.scope, b.period.value))


def counter_key(hold: Hold) -> CounterKey:
    return hold.budget.scope, hold.budget.period, hold.window
