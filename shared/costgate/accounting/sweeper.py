"""The sweeper: what no request path will finish, finished once a minute.

- A row still `reserved` SWEEP_AFTER after it was reserved can no longer be settled (no invocation of
  ApiFunction outlives its timeout): it is ended `swept`, counted at what it held. Its hold needs no
  write: the budget already counts it as committed, and the row is now settled at exactly that.
- A budget window flagged dry (a short shard found its root unable to cover a request) gets every
  shard's headroom gathered back to its root and its dry flags cleared, so crumbs spread over shards
  become whole again for the next draws: what a full budget strands lasts at most a run.
"""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from costgate.accounting.ledger import SWEEP_AFTER, RequestState
from costgate.accounting.ports import BudgetStore, LedgerStore
from costgate.money import format_usd
from costgate.observability import MetricName, emit_count, logger

# Bounds one run's work; what is left waits for the next run, a minute later.
MAX_SWEPT_PER_RUN = 10_000


@dataclass(frozen=True)
class SweepReport:
    swept: int
    swept_usd: Decimal
    gathered_windows: int
    gathered_usd: Decimal

    def as_json(self) -> dict[str, str | int]:
        return {
            "swept": self.swept,
            "swept_usd": format_usd(self.swept_usd),
            "gathered_windows": self.gathered_windows,
            "gathered_usd": format_usd(self.gathered_usd),
        }


def sweep(ledger: LedgerStore, budgets: BudgetStore, now: datetime) -> SweepReport:
    """End every overdue reserved row `swept` and gather every dry budget window; what was done."""
    swept, swept_usd = 0, Decimal(0)
    for row in ledger.unsettled(now - SWEEP_AFTER):
        if swept >= MAX_SWEPT_PER_RUN:
            logger.warning("sweeper: run bound reached; the rest waits for the next run")
            break
        if ledger.end(row.request_id, RequestState.SWEPT):
            swept += 1
            swept_usd += row.held_usd
            logger.warning(
                "sweeper: a request was never settled; counted at its hold",
                extra={"request_id": row.request_id, "held_usd": format_usd(row.held_usd), "at": row.at.isoformat()},
            )
    if swept:
        emit_count(MetricName.SWEPT_REQUESTS, swept)
    gathered, windows = Decimal(0), 0
    for budget, window in budgets.dry_windows():
        gathered += budgets.gather(budget, window)
        windows += 1
    return SweepReport(swept=swept, swept_usd=swept_usd, gathered_windows=windows, gathered_usd=gathered)
