"""In-memory fakes of costgate's ports for unit tests, and a builder for the ledger entries they hold."""

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal

from costgate.cost import Cost, CostComponent, price_usage
from costgate.ledger import LedgerEntry, Rollup
from costgate.usage import TokenUsage

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)

type RollupKey = tuple[date, str, str, str]


class InMemoryLedgerStore:
    """LedgerStore in two dicts: entries by request id, rollups by (UTC day, tenant, feature, model).

    Same contract as DynamoLedgerStore: a request id already stored changes nothing and returns
    False, whatever the second entry holds; rollups come day by day, then in sort-key order.
    """

    def __init__(self) -> None:
        self.entries: dict[str, LedgerEntry] = {}
        self.rollup_items: dict[RollupKey, Rollup] = {}

    def record(self, entry: LedgerEntry) -> bool:
        if entry.request_id in self.entries:
            return False
        self.entries[entry.request_id] = entry
        key = (entry.day, entry.tenant, entry.feature, entry.model)
        current = self.rollup_items.get(key) or _empty_rollup(key)
        usage = entry.usage
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
        )
        return True

    def rollups(self, first: date, last: date) -> Iterator[Rollup]:
        # '#' sorts before every character a tag may hold, so tuple order is the table's sort-key order.
        for key in sorted(self.rollup_items):
            if first <= key[0] <= last:
                yield self.rollup_items[key]


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
) -> LedgerEntry:
    """A ledger entry priced by the real cost engine, or with a literal `cost_usd` (all of it input).

    The baseline defaults to the same usage priced with no prompt caching (or to the literal cost).
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
    )
