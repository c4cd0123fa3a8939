"""Ports: the small interfaces domain services use to reach the outside world.

Production adapters live in `costgate.dal`; unit tests use in-memory fakes.
"""

from collections.abc import Iterator
from datetime import date, datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from costgate.ledger import LedgerEntry, Rollup


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware."""
        ...


class LedgerStore(Protocol):
    def record(self, entry: "LedgerEntry") -> bool:
        """Store the entry and add it to its daily rollup atomically.

        Returns False, changing nothing, when an entry with the same request id is already stored.
        """
        ...

    def rollups(self, first: date, last: date) -> Iterator["Rollup"]:
        """Every rollup for the UTC days first..last, both included."""
        ...
