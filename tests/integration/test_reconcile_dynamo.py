"""Reconciliation's data access against moto: the ledger's totals per day × model × service tier, read from
the rollups the ledger writes, and the verdicts kept per day."""

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from costgate.accounting.services import record_request
from costgate.dal.ledger import DynamoLedgerStore
from costgate.dal.reconcile import DynamoLedgerTotals, DynamoReconcileStore
from costgate.pricing.cost import Strategy
from costgate.pricing.usage import TokenUsage
from costgate.reconcile.compare import compare
from costgate.reconcile.model import AnthropicRecords, AnthropicRow, DayStatus, LedgerRow, RowKey, Tokens
from tests.fakes.accounting import make_entry

DAY = date(2026, 11, 30)
AT = datetime(2026, 11, 30, 10, tzinfo=UTC)
HAIKU = "claude-haiku-5-5"


def test_totals_sum_tenants_and_features_per_model_and_tier(ledger_table: str) -> None:
    # Given, on one day: two tenants' standard requests, a batch request, and an answer-cache hit
    store = DynamoLedgerStore()
    standard = TokenUsage(input_tokens=1000, output_tokens=200, cache_read_tokens=4096, web_search_requests=1)
    batch = TokenUsage(input_tokens=300, output_tokens=50, cache_write_1h_tokens=2048, service_tier="batch")
    entries = [
        make_entry("r1", at=AT, tenant="acme", feature="chat", model=HAIKU, usage=standard),
        make_entry("r2", at=AT, tenant="globex", feature="faq", model=HAIKU, usage=standard),
        make_entry("r3", at=AT, tenant="acme", feature="docs", model=HAIKU, usage=batch),
        make_entry(
            "r4", at=AT, tenant="acme", feature="faq", model=HAIKU, usage=TokenUsage(), cost_usd="0",
            savings={Strategy.ANSWER_CACHE: "0.002"},
        ),
        make_entry("r5", at=AT + timedelta(days=1), model=HAIKU, usage=standard),
    ]  # fmt: skip
    for entry in entries:
        record_request(store, entry)

    # When the ledger's totals are read for that day
    totals = {row.key: row for row in DynamoLedgerTotals().totals(DAY, DAY)}

    # Then there is one row per tier, summed over tenants and features, the hit counted apart
    assert set(totals) == {RowKey(DAY, HAIKU, "standard"), RowKey(DAY, HAIKU, "batch")}
    row = totals[RowKey(DAY, HAIKU, "standard")]
    assert row.tokens == Tokens(input_tokens=2000, output_tokens=400, cache_read_tokens=8192, web_search_requests=2)
    assert row.cost_usd == entries[0].cost.total_usd * 2
    assert (row.requests, row.answer_cache_hits, row.claude_requests) == (3, 1, 2)
    batch_row = totals[RowKey(DAY, HAIKU, "batch")]
    assert batch_row.tokens == Tokens(input_tokens=300, output_tokens=50, cache_write_1h_tokens=2048)
    assert batch_row.cost_usd == entries[2].cost.total_usd
    # and the report's rollups still add up to the same day total
    assert sum((r.cost_usd for r in store.rollups(DAY, DAY)), Decimal(0)) == row.cost_usd + batch_row.cost_usd


def test_the_ledgers_totals_reconcile_with_the_same_figures_from_anthropic(ledger_table: str) -> None:
    store = DynamoLedgerStore()
    usage = TokenUsage(input_tokens=1000, output_tokens=200, service_tier="batch")
    entry = make_entry("r1", at=AT, model=HAIKU, usage=usage)
    record_request(store, entry)
    ledger = list(DynamoLedgerTotals().totals(DAY - timedelta(days=1), DAY + timedelta(days=1)))
    theirs = AnthropicRow(
        key=RowKey(DAY, HAIKU, "batch"),
        tokens=Tokens(input_tokens=1000, output_tokens=200),
        cost_usd=entry.cost.total_usd,
        cost_amounts=2,
    )
    anthropic = AnthropicRecords(
        first=DAY - timedelta(days=1),
        last=DAY + timedelta(days=1),
        rows={theirs.key: theirs},
        complete_through=datetime(2026, 12, 3, tzinfo=UTC),
        cost_quantum_usd=Decimal("0.0001"),
    )
    result = compare(DAY, DAY, anthropic, ledger, now=datetime(2026, 12, 3, tzinfo=UTC), settle=timedelta(hours=6))
    assert result.days[0].status is DayStatus.MATCH


def test_a_verdict_is_kept_per_day_and_read_back_whole(ledger_table: str) -> None:
    # Given a drifting day's comparison
    ours = LedgerRow(RowKey(DAY, HAIKU, "standard"), Tokens(input_tokens=10), Decimal("0.00001"), requests=1)
    theirs = AnthropicRow(
        RowKey(DAY, HAIKU, "standard"), Tokens(input_tokens=67, output_tokens=19), Decimal("0.0001"), 1
    )
    anthropic = AnthropicRecords(
        first=DAY,
        last=DAY + timedelta(days=1),
        rows={theirs.key: theirs},
        complete_through=datetime(2026, 12, 3, tzinfo=UTC),
        cost_quantum_usd=Decimal("0.0000001"),
    )
    (day,) = compare(DAY, DAY, anthropic, [ours], now=datetime(2026, 12, 3, tzinfo=UTC), settle=timedelta(hours=6)).days
    store = DynamoReconcileStore()

    # When it is kept, and then a later check of the same day replaces it
    store.save(day)
    kept_first = store.results(DAY - timedelta(days=2), DAY + timedelta(days=2))
    later = replace(day, status=DayStatus.PENDING, settled=False, checked_at=datetime(2026, 12, 4, tzinfo=UTC))
    store.save(later)

    # Then it reads back equal (exact decimals included), keyed by its day, and only the days kept are there
    assert kept_first == {DAY: day}
    assert kept_first[DAY].status is DayStatus.DRIFT
    assert kept_first[DAY].drift_tokens == 57 + 19
    assert store.results(DAY, DAY) == {DAY: later}
    assert store.results(DAY + timedelta(days=1), DAY + timedelta(days=3)) == {}
