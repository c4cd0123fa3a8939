"""The ledger's, the budgets' and the rollups' stores, as the accounting services use them.

Production adapters live in `costgate.dal`; unit tests use the fakes in `tests/fakes/`.
"""

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from costgate.accounting.budgets import Budget, BudgetPeriod, Hold, ShardHold, ShardKey
    from costgate.accounting.ledger import LedgerEntry, RejectionCount, RequestState, ReservedRequest, Rollup
    from costgate.accounting.targets import Target, TargetDelta


class LedgerStore(Protocol):
    """Request rows (one per costgate request id, ended once) and the rollups the aggregator keeps of them."""

    def reserve(self, row: "ReservedRequest") -> None:
        """Write the row `reserved`, before the request is sent. ConflictError if the id exists."""
        ...

    def settle(self, request_id: str, entry: "LedgerEntry") -> bool:
        """End a reserved row `settled` with the entry's exact cost and usage.

        False, changing nothing, when the row is not `reserved` (the sweeper ended it first). True also
        when the row is already settled with this very entry (a retried write that had landed).
        """
        ...

    def end(self, request_id: str, state: "RequestState") -> bool:
        """End a reserved row `refused`, `abandoned` or `swept` (cost = what it held).

        False, changing nothing, if the row is not `reserved`; except that ending a row again as `refused`
        or `abandoned` when it already is (a retry whose answer was lost) is True. A sweep is True once only.
        """
        ...

    def record(self, entry: "LedgerEntry", holds: "Sequence[Hold]" = ()) -> bool:
        """Write a row `settled` at once (an answer-cache hit, a batch request), settling its root holds with it.

        Settling turns each hold into the entry's exact cost. Returns False, changing nothing (the
        holds stay held: the caller releases them), when the request id is already stored.
        """
        ...

    def unsettled(self, reserved_before: datetime) -> Iterator["ReservedRequest"]:
        """Every row still `reserved` that was reserved before the given time (the sweeper's work)."""
        ...

    def find(self, request_id: str) -> "LedgerEntry | None":
        """The entry a settled row was settled with (strongly consistent); None if the row is not settled
        (reserved, refused, abandoned, swept) or there is none."""
        ...

    def rollups(self, first: date, last: date, tenant: str | None = None) -> Iterator["Rollup"]:
        """Every rollup the aggregator holds for the UTC days first..last, both included (by hour), day by day;
        of one tenant if given."""
        ...

    def rejections(self, first: date, last: date, tenant: str | None = None) -> Iterator["RejectionCount"]:
        """Every rejection counter for the UTC days first..last, both included (by hour); of one tenant if given."""
        ...


@dataclass(frozen=True)
class Taken:
    """What one conditional take on a shard found: `ok`, or why not.

    `headroom` is every slot's headroom after the take (ok) or as it stood (refused); `day` the day
    the shard's day slots hold; `dry` the slots flagged dry for the window held, with what their root
    had left when it was flagged.
    """

    ok: bool
    headroom: Mapping[str, Decimal] = field(default_factory=dict)
    day: str | None = None
    dry: Mapping[str, Decimal] = field(default_factory=dict)


@dataclass(frozen=True)
class RootState:
    """A budget window's root: what it has handed out (to shards and batch holds) and whether it ran dry."""

    committed_usd: Decimal
    dry: bool = False


@dataclass(frozen=True)
class Grant:
    """One budget's part of a draw: `amount_usd` from its root (window `window`) to a shard's slot."""

    budget: "Budget"
    window: str
    amount_usd: Decimal


class BudgetStore(Protocol):
    """Budget definitions, the roots (one per budget window) and the pairs' shard items (docs/scale.md)."""

    def definitions(self, tenant: str, feature: str) -> list["Budget"]:
        """The tenant's budgets and this feature's (key budgets come from the key). May be up to 30 s stale."""
        ...

    def put_definition(self, budget: "Budget") -> None:
        """Create or replace a tenant or feature budget (InvalidRequestError for a key budget).

        What the budget's shards hold in its current window goes back to its root at once, so a lowered
        limit holds for every request admitted after the definitions caches expire (30 s).
        """
        ...

    def delete_definition(self, scope: str, period: "BudgetPeriod") -> bool:
        """Delete a tenant or feature budget; False, changing nothing, if there is none."""
        ...

    def list_definitions(self) -> list["Budget"]:
        """Every tenant and feature budget, by tenant, then scope, then period."""
        ...

    def take(self, hold: "ShardHold") -> Taken:
        """One conditional write on the hold's shard: every slot's headroom −= amount, if every headroom
        ≥ amount and the shard's day slots hold `hold.day`; else nothing changes (and `dry` says which
        short slots were flagged dry)."""
        ...

    def roll_day(self, shard: "ShardKey", seen_day: str | None, day: str) -> None:
        """Start the shard's day slots on `day` at 0 (the old day's window is closed), if they still hold `seen_day`."""
        ...

    def roots(self, windows: Sequence[tuple["Budget", str]]) -> dict[tuple[str, str, str], RootState]:
        """The roots of these budget windows, read strongly, by (scope, period, window); absent: nothing handed out."""
        ...

    def draw(self, shard: "ShardKey", day: str, grants: Sequence[Grant]) -> bool:
        """Move each grant from its root to the shard's slot, all or none: each root only if it still has
        the amount (committed ≤ limit − amount) and the shard's day slots hold `day`. False if not."""
        ...

    def mark_dry(self, hold: "ShardHold", budget: "Budget", left_usd: Decimal) -> None:
        """Flag the budget's root (this window) and the hold's shard slot dry, noting what the root had left:
        from now on a take the shard cannot cover is refused at once (no draw is tried), with that figure,
        until the sweeper gathers the budget (or its limit changes)."""
        ...

    def give_back(self, hold: "ShardHold", amount_usd: Decimal) -> dict[str, Decimal]:
        """Add `amount_usd` back to the hold's shard for every slot still in its window; the slots' headroom after."""
        ...

    def gather(self, budget: "Budget", window: str) -> Decimal:
        """Move every shard's headroom of this budget window back to its root and clear its dry flags; the amount."""
        ...

    def dry_windows(self) -> list[tuple["Budget", str]]:
        """Every budget window whose root is flagged dry (with the limit it was flagged under)."""
        ...

    def remaining(self, holds: "Sequence[Hold]") -> Decimal | None:
        """The least `limit − committed` (never below 0) among the holds' roots: what they can still hand out
        (to a batch's holds, or to shards); None for no holds. Message Batches size their submissions by it."""
        ...

    def held_in_shards(self, budget: "Budget", window: str) -> Decimal:
        """Σ of every shard's headroom of this budget window (an operator's figure: reads every shard)."""
        ...


class RollupStore(Protocol):
    """The aggregator's targets, each applied exactly once per stream record (docs/scale.md §4)."""

    def apply(self, target: "Target", lane: str, delta: "TargetDelta", after: str | None) -> str | None:
        """Add `delta` (its records up to `delta.last`) to the target and move its mark for `lane` to `delta.last`.

        Only if the target's mark for the lane is `after` (None: it has none, or one below `delta.first`).
        Returns None when applied, else the target's mark for the lane (the delta was not applied).
        """
        ...

    def previous_seen(self, target: "Target") -> datetime | None:
        """A prefix target's `last_seen` as stored (None if absent or not a prefix target)."""
        ...
