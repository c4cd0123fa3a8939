"""Waiting for the aggregator: until the rollups count every ended ledger row of a date range.

Rollups are written asynchronously from the table's stream (lag: about a second locally, a few in AWS).
A script that reads a report right after its requests (`make run`, the end-to-end tests) waits here
first. The truth it compares with is the ledger's rows, read by a Scan: fine for the local stack's
table, never for a production one.
"""

import time
from dataclasses import dataclass
from datetime import date

from costgate.accounting.ledger import RequestState
from costgate.accounting.ports import LedgerStore

WAIT_POLL_S = 0.2


@dataclass(frozen=True)
class Counted:
    """Requests (settled or swept) and rejections (refused), in the rows and in the rollups."""

    rows_requests: int
    rows_rejections: int
    rolled_requests: int
    rolled_rejections: int

    @property
    def caught_up(self) -> bool:
        return (self.rows_requests, self.rows_rejections) == (self.rolled_requests, self.rolled_rejections)


def count(store: LedgerStore, first: date, last: date, tenant: str | None = None) -> Counted:
    from costgate.dal.ledger import LedgerItem  # noqa: PLC0415 - the data layer only when asked

    requests = rejections = 0
    ended = {RequestState.SETTLED.value, RequestState.SWEPT.value}
    for row in LedgerItem.scan(LedgerItem.status.exists(), consistent_read=True):
        if not first.isoformat() <= row.day <= last.isoformat() or tenant not in (None, row.tenant):
            continue
        requests += row.status in ended
        rejections += row.status == RequestState.REFUSED.value
    rolled = sum(rollup.requests for rollup in store.rollups(first, last, tenant))
    refused = sum(counter.count for counter in store.rejections(first, last, tenant))
    return Counted(requests, rejections, rolled, refused)


def wait_for_aggregation(
    store: LedgerStore, first: date, last: date, *, tenant: str | None = None, timeout_s: float = 60.0
) -> Counted:
    """Poll until the rollups count every ended row (or `timeout_s` passes); what was counted last."""
    deadline = time.monotonic() + timeout_s
    while True:
        counted = count(store, first, last, tenant)
        if counted.caught_up or time.monotonic() >= deadline:
            return counted
        time.sleep(WAIT_POLL_S)
