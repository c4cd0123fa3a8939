"""The ports reconciliation works through: Anthropic's records, the ledger's totals, the results kept."""

from collections.abc import Iterator, Mapping
from datetime import date, datetime
from typing import Protocol

from costgate.reconcile.model import AnthropicRecords, DayComparison, LedgerRow


class AnthropicRecordsReader(Protocol):
    def read(self, first: date, last: date, now: datetime) -> AnthropicRecords:
        """Anthropic's usage and cost for the UTC days first..last (both included, none after `now`'s day).

        One row per day × model × service tier. The day in progress is read through its last complete
        bucket, which `complete_through` says. Raises UpstreamError when Anthropic cannot be read,
        ConfigurationError when it refuses the key; never returns partial figures as if whole.
        """
        ...


class LedgerTotalsReader(Protocol):
    def totals(self, first: date, last: date) -> Iterator[LedgerRow]:
        """The ledger's rollups for the UTC days first..last, summed per day × model × service tier."""
        ...


class ReconcileResultStore(Protocol):
    def save(self, result: DayComparison) -> None:
        """Keep the day's result, replacing an earlier one for the same day."""
        ...

    def results(self, first: date, last: date) -> Mapping[date, DayComparison]:
        """The kept results for the UTC days first..last, by day; a day never checked is absent."""
        ...
