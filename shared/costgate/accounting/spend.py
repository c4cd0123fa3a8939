"""Today's spend and where it is heading: what SpendWatchFunction publishes for the burn-rate alarm.

The projection is linear: the day's spend so far at the pace of the day so far, carried to UTC midnight.
It reacts to a burst within the day (a runaway loop at 10:00 shows at 10:05), which the rolling
24-hour `DailySpendAlarm` only sees once the spend itself is above the limit.
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal

from costgate.accounting.ports import LedgerStore
from costgate.accounting.report import CostReportRequest, GroupBy, build_report
from costgate.money import format_usd
from costgate.observability import emit_spend

SECONDS_PER_DAY = 86_400
# The least elapsed time a projection divides by. Just after midnight a few cents over a few seconds
# would project a fortune (1 cent after 10 s is $86.40 by midnight); below an hour the day's spend
# counts as if spread over its first hour, so it projects at most 24 × what is spent.
MIN_ELAPSED_S = 3_600


@dataclass(frozen=True)
class SpendObservation:
    """The UTC day observed, what the ledger says it has spent so far, and that spend projected to its end."""

    day: date
    spent_usd: Decimal
    projected_usd: Decimal

    def as_json(self) -> dict[str, str]:
        # Exact strings, not rounded: the log line is the record of what the alarm saw.
        return {
            "day": self.day.isoformat(),
            "spent_usd": format_usd(self.spent_usd),
            "projected_usd": format_usd(self.projected_usd),
        }


def project_day_spend(spent_usd: Decimal, now: datetime) -> Decimal:
    """`spent_usd` × 86400 / max(seconds since UTC midnight, 3600): the spend by the end of `now`'s UTC day.

    `now` must be timezone-aware (any zone: the day is the UTC day). At the end of the day the
    projection meets the spend; within its first hour it is at most 24 × the spend (MIN_ELAPSED_S).
    """
    utc = _utc(now)
    since_midnight = utc - datetime.combine(utc.date(), time(0), tzinfo=UTC)
    # Exact: whole seconds and microseconds as Decimals, no float on the way.
    elapsed = Decimal(since_midnight.seconds) + Decimal(since_midnight.microseconds) / 1_000_000
    return spent_usd * SECONDS_PER_DAY / max(elapsed, Decimal(MIN_ELAPSED_S))


def observe_spend(store: LedgerStore, now: datetime) -> SpendObservation:
    """Read the UTC day's total from the ledger's rollups, project it, and emit both as gauges."""
    day = _utc(now).date()
    report = build_report(store, CostReportRequest(first=day, last=day, group_by=GroupBy.DAY))
    spent = report.total.cost_usd
    observation = SpendObservation(day=day, spent_usd=spent, projected_usd=project_day_spend(spent, now))
    emit_spend(observation.spent_usd, observation.projected_usd)
    return observation


def _utc(now: datetime) -> datetime:
    if now.utcoffset() is None:
        raise ValueError(f"now must be timezone-aware, got {now!r}")
    return now.astimezone(UTC)
