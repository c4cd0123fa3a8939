"""What the CLI and ReconcileFunction run: read both sides, compare, keep and report the verdicts.

`reconcile` compares a range of days as of now (the CLI's question: does the ledger match Anthropic so
far?). Anthropic is read before the ledger, so a request recorded between the two reads can only make
the ledger ahead, which waits as pending, never a false drift.

`reconcile_closed_days` is the scheduled check: yesterday, and every day of the look-back window still
pending or never checked. It keeps each day's recorded verdict (pending until settled) and emits the
drift of the days it settled; `recheck_days` re-checks a range on request and emits its drift as of now.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from costgate.errors import InvalidRequestError
from costgate.money import format_usd
from costgate.observability import emit_reconciliation, logger
from costgate.pricing.prices import PriceBook, default_price_book
from costgate.reconcile.compare import compare
from costgate.reconcile.model import DayComparison, DayStatus, Reconciliation, RowStatus
from costgate.reconcile.ports import AnthropicRecordsReader, LedgerTotalsReader, ReconcileResultStore

# Anthropic's usage report reaches back 365 days; a longer range could not be compared anyway.
MAX_RANGE_DAYS = 366
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class ReconcileSources:
    anthropic: AnthropicRecordsReader
    ledger: LedgerTotalsReader
    book: PriceBook | None = None  # how Anthropic's model names map to the ledger's; the shipped book by default


def reconcile(
    first: date, last: date, sources: ReconcileSources, *, now: datetime, settle: timedelta
) -> Reconciliation:
    """The days first..last compared as of `now`. InvalidRequestError for a range that is empty, too long,
    or reaches past today (UTC)."""
    today = _utc(now).date()
    if last < first:
        raise InvalidRequestError(f"'to' ({last}) is before 'from' ({first})")
    if last > today:
        raise InvalidRequestError(f"'to' ({last}) is after today ({today}, UTC): Anthropic has no records of it yet")
    if (last - first).days + 1 > MAX_RANGE_DAYS:
        raise InvalidRequestError(f"a reconciliation covers at most {MAX_RANGE_DAYS} days")
    # The neighbouring days explain requests in flight at the range's midnights.
    read_first, read_last = first - timedelta(days=1), min(last + timedelta(days=1), today)
    anthropic = sources.anthropic.read(read_first, read_last, now)
    if anthropic.first > first:
        raise InvalidRequestError(f"Anthropic reports usage from {anthropic.first} on; {first} is earlier")
    ledger = list(sources.ledger.totals(anthropic.first, anthropic.last))
    return compare(first, last, anthropic, ledger, now=now, settle=settle, book=sources.book or default_price_book())


@dataclass(frozen=True)
class CheckReport:
    """What one run checked and kept: each day's kept verdict, and the totals it emitted as metrics."""

    checked: tuple[DayComparison, ...]
    drift_days: int
    pending_days: int
    drift_tokens: int
    drift_usd: str

    def as_json(self) -> dict[str, object]:
        return {
            "checked": [{k: v for k, v in day.as_json().items() if k != "rows"} for day in self.checked],
            "drift_days": self.drift_days,
            "pending_days": self.pending_days,
            "drift_tokens": self.drift_tokens,
            "drift_usd": self.drift_usd,
        }


def reconcile_closed_days(
    store: ReconcileResultStore,
    sources: ReconcileSources,
    *,
    now: datetime,
    settle: timedelta,
    lookback_days: int,
) -> CheckReport:
    """Check yesterday and each earlier day of the last `lookback_days` that is pending or unchecked.

    Each checked day is kept as its recorded verdict; the metrics count the days that settled as drift.
    """
    if lookback_days < 1:
        raise ValueError("lookback_days must be at least 1")
    yesterday = _utc(now).date() - timedelta(days=1)
    window_first = yesterday - timedelta(days=lookback_days - 1)
    kept = store.results(window_first, yesterday)
    due = [day for day in _days(window_first, yesterday) if day not in kept or kept[day].status is DayStatus.PENDING]
    if not due:
        return _emit(())
    result = reconcile(due[0], due[-1], sources, now=now, settle=settle)
    recorded = tuple(day.recorded() for day in result.days if day.day in due)
    for day in recorded:
        store.save(day)
    return _emit(recorded)


def recheck_days(
    first: date,
    last: date,
    store: ReconcileResultStore,
    sources: ReconcileSources,
    *,
    now: datetime,
    settle: timedelta,
) -> CheckReport:
    """Re-check first..last on request (an operator's invocation): keep each day's recorded verdict, and
    emit the drift as of now, provisional days included, since someone asked about them now."""
    result = reconcile(first, last, sources, now=now, settle=settle)
    for day in result.days:
        store.save(day.recorded())
    return _emit(result.days)


def requested_days(event: Mapping[str, object]) -> tuple[date, date] | None:
    """The days an invocation asks to re-check, `{"from": "YYYY-MM-DD", "to": "YYYY-MM-DD"}`; None for an
    event that names no days (the schedule's). InvalidRequestError for anything else."""
    if "from" not in event and "to" not in event:
        return None
    days = []
    for name in ("from", "to"):
        value = event.get(name)
        if not isinstance(value, str) or not _DAY.fullmatch(value):
            raise InvalidRequestError(f"'{name}' must be a day as YYYY-MM-DD, got {value!r}")
        try:
            days.append(date.fromisoformat(value))
        except ValueError:
            raise InvalidRequestError(f"'{name}' must be a day as YYYY-MM-DD, got {value!r}") from None
    return days[0], days[1]


def _emit(days: tuple[DayComparison, ...]) -> CheckReport:
    drifting = [day for day in days if day.status is DayStatus.DRIFT]
    drift_tokens = sum(day.drift_tokens for day in drifting)
    # The metric is a magnitude: drifts of both signs must add up, not cancel.
    drift_usd = sum((abs(row.drift_usd) for day in drifting for row in day.rows), start=Decimal(0))
    pending = sum(1 for day in days if day.status is DayStatus.PENDING)
    emit_reconciliation(drift_days=len(drifting), pending_days=pending, drift_tokens=drift_tokens, drift_usd=drift_usd)
    for day in drifting:
        logger.error(
            "reconciliation: the ledger drifts from Anthropic's records",
            extra={"day": day.day.isoformat(), "drift_tokens": day.drift_tokens, "rows": _drift_rows(day)},
        )
    report = CheckReport(
        checked=days,
        drift_days=len(drifting),
        pending_days=pending,
        drift_tokens=drift_tokens,
        drift_usd=format_usd(drift_usd),
    )
    logger.info("reconciliation checked", extra={"reconciliation": report.as_json()})
    return report


def _drift_rows(day: DayComparison) -> list[dict[str, object]]:
    return [row.as_json() for row in day.rows if row.status is RowStatus.DRIFT]


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def _utc(now: datetime) -> datetime:
    if now.utcoffset() is None:
        raise ValueError(f"now must be timezone-aware, got {now!r}")
    return now.astimezone(UTC)
