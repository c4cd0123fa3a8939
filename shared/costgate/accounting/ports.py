"""The ledger's and the budgets' stores, as the accounting services use them.

Production adapters live in `costgate.dal`; unit tests use the fakes in `tests/fakes/`.
"""

from collections.abc import Iterator, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from costgate.accounting.budgets import Budget, BudgetPeriod, Hold
    from costgate.accounting.ledger import LedgerEntry, RejectionCount, Rollup


class LedgerStore(Protocol):
    def record(self, entry: "LedgerEntry", holds: "Sequence[Hold]" = ()) -> bool:
        """Store the entry, add it to its daily rollup and settle its budget holds, atomically.

        An entry with `prompt_cache` also adds that use to its prefix's totals and, when it carries a
        gap, one count to its feature's gap histogram, in the same transaction.

        Settling turns each hold into the entry's exact cost. Returns False, changing nothing (the
        holds stay held: the caller releases them), when the request id is already stored.
        """
        ...

    def find(self, request_id: str) -> "LedgerEntry | None":
        """The entry recorded under this request id (strongly consistent), without its prompt-cache use;
        None if there is none."""
        ...

    def rollups(self, first: date, last: date) -> Iterator["Rollup"]:
        """Every rollup for the UTC days first..last, both included."""
        ...

    def count_rejection(self, at: datetime, tenant: str, feature: str) -> None:
        """Add one budget rejection to the counter of the UTC day of `at` × tenant × feature.

        One atomic increment, outside any transaction: concurrent rejections all count.
        """
        ...

    def rejections(self, first: date, last: date) -> Iterator["RejectionCount"]:
        """Every rejection counter for the UTC days first..last, both included, day by day."""
        ...


class BudgetStore(Protocol):
    """Budget definitions and, per budget window, a counter of what is committed (spent + held)."""

    def definitions(self, tenant: str, feature: str) -> list["Budget"]:
        """The tenant's budgets and this feature's (key budgets come from the key). May be up to 30 s stale."""
        ...

    def put_definition(self, budget: "Budget") -> None:
        """Create or replace a tenant or feature budget (InvalidRequestError for a key budget)."""
        ...

    def delete_definition(self, scope: str, period: "BudgetPeriod") -> bool:
        """Delete a tenant or feature budget; False, changing nothing, if there is none."""
        ...

    def list_definitions(self) -> list["Budget"]:
        """Every tenant and feature budget, by tenant, then scope, then period."""
        ...

    def reserve(self, holds: Sequence["Hold"]) -> None:
        """Add every hold to its window's committed amount, all or none, atomically.

        A hold fits when committed + amount <= the budget's limit at the moment it is written, so
        concurrent reservations never take a window past its limit. Raises BudgetExceededError,
        holding nothing anywhere, naming the first budget that did not fit and what it has left (None
        when the amount is above its whole limit: no window can take it, a new one included).
        """
        ...

    def release(self, holds: Sequence["Hold"]) -> None:
        """Give back every hold's amount: the request never reached Claude or was a duplicate."""
        ...

    def remaining(self, holds: Sequence["Hold"]) -> Decimal | None:
        """The least limit − committed (never below 0) among the holds' windows; None for no holds."""
        ...
