"""Reconciliation in DynamoDB: the ledger's totals per day × model × service tier, and each day's verdict.

The totals are read from the ledger's rollups (`costgate.dal.ledger.RollupItem`, whose key carries the
service tier): one Query per day, summed over tenants and features. Verdicts sit in the same day
partition, one item per day, written once per check: never a hot key.
"""

import json
from collections.abc import Iterator, Mapping
from datetime import date, timedelta

from pynamodb.attributes import BooleanAttribute, NumberAttribute, UnicodeAttribute, UTCDateTimeAttribute

from costgate.dal.ledger import ROLLUP_PREFIX, RollupItem, day_key
from costgate.dal.table import CostgateItem, DecimalAttribute
from costgate.pricing.cost import Strategy
from costgate.reconcile.model import UNRECORDED_TIER, DayComparison, DayStatus, LedgerRow, RowKey, Tokens

RESULT_SORT_KEY = "RECONCILE"


class ReconcileItem(CostgateItem, discriminator="reconcile"):
    """One UTC day's reconciliation verdict, as the scheduled check keeps it.  PK: DAY#<yyyy-mm-dd>  SK: RECONCILE

    `rows` is the day's rows as JSON (costs as exact decimal strings): read back whole, never queried.
    """

    day = UnicodeAttribute()
    status = UnicodeAttribute()  # a DayStatus
    settled = BooleanAttribute()
    through = UTCDateTimeAttribute()
    checked_at = UTCDateTimeAttribute()
    drift_tokens = NumberAttribute()
    drift_usd = DecimalAttribute()
    rows = UnicodeAttribute()


class DynamoLedgerTotals:
    """`LedgerTotalsReader` over the rollups."""

    def totals(self, first: date, last: date) -> Iterator[LedgerRow]:
        day = first
        while day <= last:
            rows: dict[RowKey, LedgerRow] = {}
            for item in RollupItem.query(day_key(day), RollupItem.sk.startswith(ROLLUP_PREFIX)):
                row = _ledger_row(day, item)
                rows[row.key] = rows[row.key] + row if row.key in rows else row
            yield from (rows[key] for key in sorted(rows))
            day += timedelta(days=1)


def _ledger_row(day: date, item: RollupItem) -> LedgerRow:
    hits = getattr(item, f"applied_{Strategy.ANSWER_CACHE.value}_requests")
    return LedgerRow(
        key=RowKey(day=day, model=item.model, service_tier=item.service_tier or UNRECORDED_TIER),
        tokens=Tokens(
            input_tokens=int(item.input_tokens),
            cache_write_5m_tokens=int(item.cache_write_5m_tokens),
            cache_write_1h_tokens=int(item.cache_write_1h_tokens),
            cache_read_tokens=int(item.cache_read_tokens),
            output_tokens=int(item.output_tokens),
            web_search_requests=int(item.web_search_requests),
        ),
        cost_usd=item.cost_usd,
        requests=int(item.requests),
        answer_cache_hits=int(hits or 0),
    )


class DynamoReconcileStore:
    """`ReconcileResultStore` over the single table."""

    def save(self, result: DayComparison) -> None:
        ReconcileItem(
            day_key(result.day),
            RESULT_SORT_KEY,
            day=result.day.isoformat(),
            status=result.status.value,
            settled=result.settled,
            through=result.through,
            checked_at=result.checked_at,
            drift_tokens=result.drift_tokens,
            drift_usd=result.drift_usd,
            rows=json.dumps([row.as_json() for row in result.rows], ensure_ascii=False),
        ).save()

    def results(self, first: date, last: date) -> Mapping[date, DayComparison]:
        keys = [(day_key(first + timedelta(days=n)), RESULT_SORT_KEY) for n in range((last - first).days + 1)]
        found: dict[date, DayComparison] = {}
        for item in ReconcileItem.batch_get(keys):
            parsed = DayComparison.from_json(
                {
                    "day": item.day,
                    "status": DayStatus(item.status).value,
                    "settled": item.settled,
                    "through": item.through.isoformat(),
                    "checked_at": item.checked_at.isoformat(),
                    "rows": json.loads(item.rows),
                }
            )
            found[parsed.day] = parsed
        return dict(sorted(found.items()))
