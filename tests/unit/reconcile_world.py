"""Builders and in-memory fakes for reconciliation tests: Anthropic's records, the ledger's totals, kept results."""

from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from costgate.reconcile.model import AnthropicRecords, AnthropicRow, DayComparison, LedgerRow, RowKey, Tokens

HAIKU = "claude-haiku-5-5"
OPUS = "claude-opus-5-5"
DAY = date(2026, 11, 30)
NEXT = DAY + timedelta(days=1)
# Two days after DAY's end: DAY and NEXT are final under SETTLE, so DAY is settled.
LATER = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
SETTLE = timedelta(hours=6)
# Cost amounts with 2 decimals of a cent: the report's unit is 0.0001 USD.
QUANTUM = Decimal("0.0001")


def tokens(input_tokens: int = 0, output: int = 0, **more: int) -> Tokens:
    return Tokens(input_tokens=input_tokens, output_tokens=output, **more)


def theirs(
    day: date, model: str, tier: str, used: Tokens, cost: str, *, amounts: int = 1, requests: int | None = None
) -> AnthropicRow:
    return AnthropicRow(
        key=RowKey(day, model, tier), tokens=used, cost_usd=Decimal(cost), cost_amounts=amounts, requests=requests
    )


def ours(day: date, model: str, tier: str, used: Tokens, cost: str, *, requests: int = 1, hits: int = 0) -> LedgerRow:
    return LedgerRow(
        key=RowKey(day, model, tier), tokens=used, cost_usd=Decimal(cost), requests=requests, answer_cache_hits=hits
    )


def records(
    first: date,
    last: date,
    rows: Iterable[AnthropicRow],
    *,
    through: datetime | None = None,
    quantum: Decimal = QUANTUM,
) -> AnthropicRecords:
    return AnthropicRecords(
        first=first,
        last=last,
        rows={row.key: row for row in rows},
        complete_through=through or LATER,
        cost_quantum_usd=quantum,
    )


class FakeAnthropic:
    """`AnthropicRecordsReader` over a fixed list of rows; records each call (and into `calls`, when shared)."""

    def __init__(self, rows: Iterable[AnthropicRow], calls: list[str] | None = None, through: datetime | None = None):
        self.rows = list(rows)
        self.calls = calls if calls is not None else []
        self.through = through
        self.reads: list[tuple[date, date]] = []

    def read(self, first: date, last: date, now: datetime) -> AnthropicRecords:
        self.calls.append("anthropic")
        self.reads.append((first, last))
        return records(first, last, (r for r in self.rows if first <= r.key.day <= last), through=self.through or now)


class FakeLedger:
    def __init__(self, rows: Iterable[LedgerRow], calls: list[str] | None = None):
        self.rows = list(rows)
        self.calls = calls if calls is not None else []

    def totals(self, first: date, last: date) -> Iterator[LedgerRow]:
        self.calls.append("ledger")
        return iter([r for r in self.rows if first <= r.key.day <= last])


class InMemoryResultStore:
    def __init__(self, kept: Mapping[date, DayComparison] | None = None):
        self.kept: dict[date, DayComparison] = dict(kept or {})
        self.saved: list[DayComparison] = []

    def save(self, result: DayComparison) -> None:
        self.kept[result.day] = result
        self.saved.append(result)

    def results(self, first: date, last: date) -> Mapping[date, DayComparison]:
        return {day: result for day, result in sorted(self.kept.items()) if first <= day <= last}
