"""Holding a request's worst case on its budgets: one take from a shard, and draws from the roots when it is short.

The shard, the roots and why no budget can be overshot are in `costgate.accounting.budgets`. A take is
one conditional write; only a shard that is short (a new one, a new day, or its allowance spent) costs
more: a strong read of the short budgets' roots and one transaction moving money to the shard, then
the take again. A budget whose root cannot cover what the request lacks is flagged dry on the root and
the shard, and the request is refused (429); later requests on that shard are refused at once, until
the sweeper gathers the budget's crumbs back to its root.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import NoReturn

from costgate.accounting.budgets import Budget, ShardHold, draw_size, remaining_in, shard_count
from costgate.accounting.ports import BudgetStore, Grant, RootState, Taken
from costgate.errors import BudgetExceededError, UpstreamError
from costgate.observability import logger

# A round is a draw and a take. Another request can win each race for the root or the shard, but
# every lost race means money reached some shard: a handful of rounds is plenty, then the client retries.
MAX_ROUNDS = 4


def check_limits(hold: ShardHold) -> None:
    """A worst case above a budget's whole limit can never fit: 429 at once, before any I/O."""
    for budget in hold.budgets:
        if hold.amount_usd > budget.limit_usd:
            raise BudgetExceededError(budget, remaining=None, needed=hold.amount_usd)


def complete_hold(store: BudgetStore, hold: ShardHold, taken: Taken) -> Taken:
    """Finish a take that `store.take(hold)` answered with `taken`: draw and take again until it holds.

    Raises BudgetExceededError naming the first budget that cannot cover the request (nothing held), or
    UpstreamError when MAX_ROUNDS rounds of races were all lost (nothing held).

    A root that cannot cover the shortfall refuses the request only when a second look finds it the
    same: between the take and the root's read another request may have drawn the root's last money to
    this very shard, where a take would find it. So the first time, the shard is taken again instead.
    """
    exhausted: _Exhausted | None = None
    for _ in range(MAX_ROUNDS):
        if taken.ok:
            return taken
        headroom = dict(taken.headroom)
        if taken.day != hold.day:
            # A new shard, or its day slots still hold a closed day: that day's allowance is void.
            store.roll_day(hold.shard, taken.day, hold.day)
            headroom = {slot: amount for slot, amount in headroom.items() if not slot.endswith("_day")}
        short = {
            slot: budget for slot, budget in hold.slots.items() if headroom.get(slot, Decimal(0)) < hold.amount_usd
        }
        for slot, budget in short.items():
            have = max(headroom.get(slot, Decimal(0)), Decimal(0))
            if slot in taken.dry and hold.amount_usd - have > taken.dry[slot]:
                # The root had less than this shortfall when it ran dry, and has had no more since (a gather
                # clears the flag): refused without reading it.
                raise BudgetExceededError(budget, taken.dry[slot] + have, hold.amount_usd)
        if short:
            grants, found = _grants(store, hold, short, headroom)
            if found is not None:
                if found == exhausted:  # the same root, unmoved, and the shard no better: refused
                    found.refuse(store, hold)
                exhausted = found
            elif not store.draw(hold.shard, hold.day, grants):
                logger.info("budgets: a draw lost a race; taking again", extra={"shard": hold.shard.label})
        taken = store.take(hold)
    if taken.ok:
        return taken
    if exhausted is not None:
        exhausted.refuse(store, hold)
    raise UpstreamError(f"budgets: could not hold the request's worst case after {MAX_ROUNDS} rounds; retry")


@dataclass(frozen=True)
class _Exhausted:
    """A budget whose root could not cover what the shard lacked: its root as read, and what the shard had."""

    budget: Budget
    committed_usd: Decimal
    have_usd: Decimal

    def refuse(self, store: BudgetStore, hold: ShardHold) -> NoReturn:
        unallocated = remaining_in(self.budget, self.committed_usd)
        store.mark_dry(hold, self.budget, unallocated)
        raise BudgetExceededError(self.budget, unallocated + self.have_usd, hold.amount_usd)


def _grants(
    store: BudgetStore, hold: ShardHold, short: Mapping[str, Budget], headroom: Mapping[str, Decimal]
) -> tuple[list[Grant], _Exhausted | None]:
    """What to draw for the short slots, or the first budget whose root cannot cover its slot's shortfall."""
    windows = [(budget, hold.window(budget)) for budget in short.values()]
    roots = store.roots(windows)
    shards = shard_count(hold.budgets)
    grants: list[Grant] = []
    for slot, budget in short.items():
        window = hold.window(budget)
        root = roots.get((budget.scope, budget.period.value, window))
        committed = root.committed_usd if root is not None else Decimal(0)
        have = max(headroom.get(slot, Decimal(0)), Decimal(0))
        amount = draw_size(remaining_in(budget, committed), hold.amount_usd - have, shards)
        if amount is None:
            return [], _Exhausted(budget, committed, have)
        grants.append(Grant(budget, window, amount))
    return grants, None


def tells_remaining(hold: ShardHold | None) -> bool:
    """Whether the hold's budgets have a remaining figure for a receipt: only unsharded ones do."""
    return hold is not None and shard_count(hold.budgets) == 1


def remaining_figure(
    hold: ShardHold, headroom: Mapping[str, Decimal], roots: Mapping[tuple[str, str, str], RootState]
) -> Decimal | None:
    """The least `limit − committed` among the hold's budgets, for the receipt; None when it cannot be told.

    committed = what the root handed out − this shard's headroom: exact when this pair's shard is the
    only one holding the budget (one shard, one key and feature), a lower bound otherwise. Sharded
    budgets (shards > 1) get no figure: reading their roots on every request would make them hot.
    None too when the give-back or the root read failed (`headroom` or `roots` empty).
    """
    if not hold.budgets or shard_count(hold.budgets) > 1 or not headroom or not roots:
        return None
    figures = []
    for budget in hold.budgets:
        root = roots.get((budget.scope, budget.period.value, hold.window(budget)))
        committed = root.committed_usd if root is not None else Decimal(0)
        figures.append(remaining_in(budget, committed - headroom.get(budget.slot, Decimal(0))))
    return min(figures)
