"""The rules that turn Anthropic's rows and the ledger's into verdicts.

Per row (UTC day × model × service tier), with difference = Anthropic − ledger:

- MATCH: every token category equal, and the costs within the cost report's own rounding (`tolerance`:
  half its rounding unit per amount summed into the row).
- IN_FLIGHT_AT_MIDNIGHT: the row's difference is exactly undone by the same model and tier's difference
  on the next day, tokens to the unit and cost within both rows' tolerance. A request in flight at
  midnight: the ledger dates a request by when the gateway admitted it and a batch result by when its
  batch ended, Anthropic by its own instant, which may fall on the other side of midnight.
- PENDING: the ledger is ahead of Anthropic (Anthropic has more of no category, nor more cost beyond the
  tolerance) on a day that is not settled: Anthropic's figures lag, or the tokens went to the next day,
  still open.
- DRIFT: anything else. Anthropic ahead: Claude billed tokens the ledger lacks (a request sent around the
  gateway, a ledger row lost, a usage field misread). Equal tokens at another cost: a price in prices.json
  is not Anthropic's. The ledger ahead on a settled day: the ledger counts what Claude did not bill.

Requests Claude answered with an error it did not bill, count_tokens calls and answer-cache hits (recorded
at $0, no Claude call) carry no tokens on either side, so they never make a difference.

A day is final once `min(now, Anthropic's complete_through)` is `settle` past its end (the settle period
lets the ledger catch up: streams still running at midnight, batches not yet collected). It is settled
once it and the next day are final and the next day has been read: only then can no request in flight at
its end still turn up.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal

from costgate.errors import UnknownModelError
from costgate.money import format_usd
from costgate.pricing.prices import PriceBook
from costgate.reconcile.model import (
    AnthropicRecords,
    AnthropicRow,
    DayComparison,
    DayStatus,
    LedgerRow,
    Reconciliation,
    RowComparison,
    RowKey,
    RowStatus,
    Tokens,
    day_end,
)

_ZERO = Decimal(0)


@dataclass(frozen=True)
class _Pair:
    anthropic: AnthropicRow
    ledger: LedgerRow
    tolerance_usd: Decimal

    @property
    def tokens(self) -> Tokens:
        return self.anthropic.tokens - self.ledger.tokens

    @property
    def cost_usd(self) -> Decimal:
        return self.anthropic.cost_usd - self.ledger.cost_usd


def compare(
    first: date,
    last: date,
    anthropic: AnthropicRecords,
    ledger: Iterable[LedgerRow],
    *,
    now: datetime,
    settle: timedelta,
    book: PriceBook | None = None,
) -> Reconciliation:
    """Compare the days first..last. `anthropic` must cover them; the days it covers around them (the day
    before and the day after, when read) only explain requests in flight at the range's midnights.

    Anthropic's model names are read through `book` (a dated id or an alias becomes the ledger's
    canonical id); a name the book does not know is compared as it is.
    """
    if now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    if settle < timedelta(0):
        raise ValueError("settle must not be negative")
    if not anthropic.first <= first <= last <= anthropic.last:
        raise ValueError(f"Anthropic's records ({anthropic.first}..{anthropic.last}) do not cover {first}..{last}")

    pairs = _pairs(anthropic, ledger, book)
    partner = _in_flight_at_midnight(pairs)
    reach = min(now, anthropic.complete_through)

    def final(day: date) -> bool:
        return reach >= day_end(day) + settle

    days: list[DayComparison] = []
    day = first
    while day <= last:
        following = day + timedelta(days=1)
        settled = final(day) and final(following) and following <= anthropic.last
        through = min(day_end(day), anthropic.complete_through)
        rows = tuple(
            _verdict(key, pairs[key], partner.get(key), settled=settled, through=through)
            for key in sorted(k for k in pairs if k.day == day)
        )
        days.append(
            DayComparison(
                day=day, status=_day_status(rows), settled=settled, through=through, checked_at=now, rows=rows
            )
        )
        day = following
    return Reconciliation(first=first, last=last, days=tuple(days))


def _pairs(anthropic: AnthropicRecords, ledger: Iterable[LedgerRow], book: PriceBook | None) -> dict[RowKey, _Pair]:
    theirs: dict[RowKey, AnthropicRow] = {}
    for reported in anthropic.rows.values():
        key = replace(reported.key, model=_canonical(reported.key.model, book))
        renamed = replace(reported, key=key)
        theirs[key] = theirs[key] + renamed if key in theirs else renamed
    ours: dict[RowKey, LedgerRow] = {}
    for recorded in ledger:
        if anthropic.first <= recorded.key.day <= anthropic.last:
            ours[recorded.key] = ours[recorded.key] + recorded if recorded.key in ours else recorded
    half_unit = anthropic.cost_quantum_usd / 2
    pairs: dict[RowKey, _Pair] = {}
    for key in theirs.keys() | ours.keys():
        their = theirs.get(key) or AnthropicRow(key=key)
        our = ours.get(key) or LedgerRow(key=key, tokens=Tokens(), cost_usd=_ZERO, requests=0)
        pairs[key] = _Pair(anthropic=their, ledger=our, tolerance_usd=their.cost_amounts * half_unit)
    return pairs


def _canonical(model: str, book: PriceBook | None) -> str:
    if book is None:
        return model
    try:
        return book.resolve(model)
    except UnknownModelError:
        return model  # a model costgate cannot price: compared as named, so its usage shows


def _in_flight_at_midnight(pairs: Mapping[RowKey, _Pair]) -> dict[RowKey, RowKey]:
    """Rows whose difference the same model and tier's next-day difference exactly undoes, each with its partner."""
    partner: dict[RowKey, RowKey] = {}
    for key in sorted(pairs):
        pair = pairs[key]
        if key in partner or pair.tokens.is_zero:
            continue
        following = replace(key, day=key.day + timedelta(days=1))
        other = pairs.get(following)
        if other is None or following in partner:
            continue
        if (pair.tokens + other.tokens).is_zero and abs(pair.cost_usd + other.cost_usd) <= (
            pair.tolerance_usd + other.tolerance_usd
        ):
            partner[key], partner[following] = following, key
    return partner


def _verdict(key: RowKey, pair: _Pair, partner: RowKey | None, *, settled: bool, through: datetime) -> RowComparison:
    tokens, cost, tolerance = pair.tokens, pair.cost_usd, pair.tolerance_usd
    if tokens.is_zero and abs(cost) <= tolerance:
        status = RowStatus.MATCH
        reason = "" if cost == 0 else f"cost within the cost report's rounding (±{format_usd(tolerance)} USD)"
    elif partner is not None:
        status = RowStatus.IN_FLIGHT_AT_MIDNIGHT
        reason = (
            f"the {partner.day.isoformat()} row has exactly the opposite difference: a request in flight at midnight"
        )
    elif tokens.all_at_most_zero() and cost <= tolerance and not settled:
        status = RowStatus.PENDING
        reason = (
            f"the ledger is ahead of Anthropic's figures (through {through.strftime('%Y-%m-%d %H:%M')} UTC); "
            "theirs may still come"
        )
    else:
        status = RowStatus.DRIFT
        reason = _drift_reason(tokens, cost, tolerance) + ("" if settled else " (provisional: the day is not settled)")
    return RowComparison(
        key=key,
        anthropic=pair.anthropic.tokens,
        ledger=pair.ledger.tokens,
        anthropic_cost_usd=pair.anthropic.cost_usd,
        ledger_cost_usd=pair.ledger.cost_usd,
        tolerance_usd=tolerance,
        anthropic_requests=pair.anthropic.requests,
        ledger_requests=pair.ledger.claude_requests,
        answer_cache_hits=pair.ledger.answer_cache_hits,
        status=status,
        reason=reason,
    )


def _drift_reason(tokens: Tokens, cost: Decimal, tolerance: Decimal) -> str:
    if tokens.is_zero:
        return (
            f"same tokens, but the cost differs by {format_usd(cost)} USD (beyond the report's rounding of "
            f"±{format_usd(tolerance)}): a price in prices.json is not Anthropic's"
        )
    more = [name for name, value in tokens.as_json().items() if value > 0]
    fewer = [name for name, value in tokens.as_json().items() if value < 0]
    parts = []
    if more:
        parts.append(f"Anthropic billed more {', '.join(more)} than the ledger recorded")
    if fewer:
        parts.append(f"the ledger recorded more {', '.join(fewer)} than Anthropic billed")
    return "; ".join(parts)


def _day_status(rows: tuple[RowComparison, ...]) -> DayStatus:
    statuses = {row.status for row in rows}
    if RowStatus.DRIFT in statuses:
        return DayStatus.DRIFT
    if RowStatus.PENDING in statuses:
        return DayStatus.PENDING
    return DayStatus.MATCH
