"""The aggregator: ended ledger rows, as the table's stream delivers them, summed into rollup targets exactly once.

No I/O of its own: `aggregate` is handed the events of one stream batch and a `RollupStore`.

What each ended row adds (docs/scale.md §4):
- `settled`: its hour's rollup (tenant × feature × model): requests, cost, baseline, tokens, savings
  and the applied strategies; its prefix's totals when it used a cached prefix, and, when costgate
  manages that prefix, one gap between it and the prefix's previous use to the feature's day histogram;
- `swept`: its hour's rollup at what it held (cost = baseline = held, no tokens), counted as swept;
- `refused`: one rejection to its hour's counter (tenant × feature);
- `abandoned`: nothing (nothing was spent).

Exactly once. Lambda hands a function one batch at a time per stream shard, in sequence order, and a
retried batch may be the same records, a half of them, or records from a reported failure on. Every
target keeps, per stream shard (its *lane*), the sequence number of the last record it has applied
(zero-padded to 40 digits, so text order is number order). A batch's records for a target are applied
in one conditional write: on the condition that the target's mark for the lane is below the first of
them. Refused, the mark says how far an earlier try got: only the records after it are applied, on the
condition that the mark is still that. The same batch twice adds nothing the second time; a batch
that died after writing some targets writes only the others when retried.

The gap of a request is measured from its prefix's `last_seen` as the aggregator finds it (a guess for
choosing a TTL, not money): a retried batch whose prefix target was already written loses the gap of
its first use of that prefix rather than count a wrong one.
"""

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Protocol

from costgate.accounting.ledger import LedgerEntry, RequestState
from costgate.accounting.targets import (
    Ended,
    GapTarget,
    PrefixTarget,
    RejectionTarget,
    RollupTarget,
    Target,
    TargetDelta,
)
from costgate.pricing.cost import Strategy
from costgate.routing.prompt_cache import GapBucket, PrefixUse, gap_bucket

if TYPE_CHECKING:
    from costgate.accounting.ports import RollupStore

# Two refusals in a row on one target mean another writer moved its mark meanwhile: with one batch at
# a time per lane that cannot happen, so a few tries are plenty before the batch fails and comes back.
MAX_APPLY_ATTEMPTS = 4


def hour_of(at: datetime) -> int:
    return at.astimezone(UTC).hour


def targets(events: Iterable[Ended]) -> dict[Target, list[Ended]]:
    """The rollup, rejection and prefix targets each event adds to, with its events in sequence order.

    Gap targets are not here: a gap needs the prefix's previous use, which `aggregate` reads.
    """
    found: dict[Target, list[Ended]] = defaultdict(list)
    for event in sorted(events, key=lambda e: e.sequence):
        if event.state is RequestState.SETTLED and event.entry is not None:
            entry = event.entry
            tier = entry.usage.service_tier
            found[RollupTarget(entry.day, hour_of(entry.at), entry.tenant, entry.feature, entry.model, tier)].append(
                event
            )
            if entry.prompt_cache is not None:
                found[PrefixTarget(entry.feature, entry.prompt_cache.prefix_key)].append(event)
        elif event.state is RequestState.SWEPT and event.request is not None:
            # A swept row has no usage, so no tier of its own: it is counted as standard (its hold was priced
            # at the dearest non-batch tier, which is standard's price today).
            row = event.request
            found[RollupTarget(row.day, hour_of(row.at), row.tenant, row.feature, row.model)].append(event)
        elif event.state is RequestState.REFUSED and event.request is not None:
            row = event.request
            found[RejectionTarget(row.day, hour_of(row.at), row.tenant, row.feature)].append(event)
    return dict(found)


def delta(target: Target, events: Sequence[Ended]) -> TargetDelta:
    """What the events (in sequence order, all of this target) add to it."""
    if not events:
        raise ValueError("a delta needs at least one event")
    first, last = events[0].sequence, events[-1].sequence
    if isinstance(target, RollupTarget):
        return TargetDelta(first, last, _rollup_adds(events))
    if isinstance(target, RejectionTarget):
        return TargetDelta(first, last, {"rejected": len(events)})
    if isinstance(target, PrefixTarget):
        return _prefix_delta(first, last, events)
    raise TypeError(f"gap deltas come from gap_delta, not {target!r}")


@dataclass(frozen=True)
class GapUse:
    """One costgate-managed use of a prefix, with the gap since the prefix's use before it."""

    sequence: str
    day: date
    bucket: GapBucket


def gap_uses(events: Sequence[Ended], previous_seen: datetime | None, first_gap_known: bool) -> list[GapUse]:
    """The gaps of a prefix's costgate-managed uses among `events` (one prefix, in sequence order).

    Each use is measured from the use before it (of any kind); the first from `previous_seen`, unless
    `first_gap_known` is False (the prefix target had already taken these records, so its `last_seen`
    is no longer the one before them): then that use's gap is left out.
    """
    found: list[GapUse] = []
    before = previous_seen
    for index, event in enumerate(events):
        entry = _entry(event)
        use = entry.prompt_cache
        if use is None:
            continue
        if use.managed_by == "costgate" and (index > 0 or first_gap_known):
            found.append(GapUse(event.sequence, entry.day, gap_bucket(before, entry.at)))
        before = entry.at
    return found


def gap_delta(uses: Sequence[GapUse]) -> TargetDelta:
    counts: dict[str, int] = defaultdict(int)
    for use in uses:
        counts[use.bucket.value] += 1
    return TargetDelta(uses[0].sequence, uses[-1].sequence, dict(counts))


def aggregate(store: "RollupStore", lane: str, events: Sequence[Ended]) -> int:
    """Apply one stream batch's events to every target they touch, exactly once; the targets written."""
    written = 0
    for target, target_events in targets(events).items():
        previous_seen = store.previous_seen(target) if isinstance(target, PrefixTarget) else None
        fresh = _apply(store, lane, target, target_events, partial(delta, target))
        written += fresh is not None
        if isinstance(target, PrefixTarget):
            by_day: dict[date, list[GapUse]] = defaultdict(list)
            for use in gap_uses(target_events, previous_seen, first_gap_known=fresh is True):
                by_day[use.day].append(use)
            for day, uses in by_day.items():
                written += _apply(store, lane, GapTarget(target.feature, day), uses, gap_delta) is not None
    return written


class _Sequenced(Protocol):
    @property
    def sequence(self) -> str: ...


def _apply[T: _Sequenced](
    store: "RollupStore", lane: str, target: Target, items: Sequence[T], make: Callable[[Sequence[T]], TargetDelta]
) -> bool | None:
    """True: every item applied now; False: some had been by an earlier try; None: all had been."""
    mark = store.apply(target, lane, make(items), after=None)
    if mark is None:
        return True
    for _ in range(MAX_APPLY_ATTEMPTS):
        remaining = [item for item in items if item.sequence > mark]
        if not remaining:
            return None
        again = store.apply(target, lane, make(remaining), after=mark)
        if again is None:
            return False
        mark = again
    raise RuntimeError(f"aggregator: the mark of {target} on lane {lane} kept moving; the batch comes back")


def _entry(event: Ended) -> LedgerEntry:
    if event.entry is None:
        raise ValueError("a prefix event is a settled row")
    return event.entry


def _prefix_use(event: Ended) -> "PrefixUse":
    use = _entry(event).prompt_cache
    if use is None:
        raise ValueError("a prefix target's event used no prefix")
    return use


def _rollup_adds(events: Sequence[Ended]) -> dict[str, int | Decimal]:
    adds: dict[str, int | Decimal] = defaultdict(int)
    for event in events:
        adds["requests"] += 1
        if event.state is RequestState.SWEPT and event.request is not None:
            held = event.request.held_usd
            adds["cost_usd"] += held
            adds["baseline_cost_usd"] += held
            adds["swept_requests"] += 1
            adds["swept_usd"] += held
            continue
        entry = _entry(event)
        usage = entry.usage
        cost = entry.cost.total_usd
        adds["cost_usd"] += cost
        adds["baseline_cost_usd"] += entry.baseline_cost_usd
        adds["input_tokens"] += usage.input_tokens
        adds["output_tokens"] += usage.output_tokens
        adds["cache_write_5m_tokens"] += usage.cache_write_5m_tokens
        adds["cache_write_1h_tokens"] += usage.cache_write_1h_tokens
        adds["cache_read_tokens"] += usage.cache_read_tokens
        adds["web_search_requests"] += usage.web_search_requests
        for strategy, amount in entry.savings.items():
            adds[savings_field(strategy)] += amount
        for strategy in entry.applied_strategies:
            adds[applied_requests_field(strategy)] += 1
            adds[applied_cost_field(strategy)] += cost
    return {name: Decimal(value) if name.endswith("_usd") else value for name, value in adds.items()}


def _prefix_delta(first: str, last: str, events: Sequence[Ended]) -> TargetDelta:
    adds: dict[str, int | Decimal] = {
        "requests": 0,
        "write_tokens": 0,
        "read_tokens": 0,
        "write_premium_usd": Decimal(0),
        "read_saved_usd": Decimal(0),
    }
    uses = [(_entry(event).at, _prefix_use(event)) for event in events]
    for _, use in uses:
        adds["requests"] += 1
        adds["write_tokens"] += use.write_tokens
        adds["read_tokens"] += use.read_tokens
        adds["write_premium_usd"] += use.write_premium_usd
        adds["read_saved_usd"] += use.read_saved_usd
    at_last, use_last = uses[-1]
    sets: dict[str, str | None] = {"model": use_last.model, "managed_by": use_last.managed_by, "ttl": use_last.ttl}
    ats = [at for at, _ in uses]
    return TargetDelta(first, last, adds, sets, seen=(min(ats), at_last))


def savings_field(strategy: Strategy) -> str:
    return f"savings_{strategy.value}_usd"


def applied_requests_field(strategy: Strategy) -> str:
    return f"applied_{strategy.value}_requests"


def applied_cost_field(strategy: Strategy) -> str:
    return f"applied_{strategy.value}_cost_usd"


GAP_FIELDS: tuple[str, ...] = tuple(bucket.value for bucket in GapBucket)
