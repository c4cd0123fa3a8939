"""In-memory ledger, rollup and budget stores, and a builder for the ledger entries they hold."""

import threading
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from costgate.accounting.aggregator import aggregate, applied_cost_field, applied_requests_field, savings_field
from costgate.accounting.budgets import (
    Budget,
    BudgetPeriod,
    Hold,
    ShardHold,
    ShardKey,
    feature_scope,
    remaining_in,
    reservation_ceiling,
    tenant_scope,
)
from costgate.accounting.ledger import (
    ENDED,
    LedgerEntry,
    RejectionCount,
    RequestState,
    ReservedRequest,
    Rollup,
    new_request_id,
)
from costgate.accounting.ports import Grant, RootState, Taken
from costgate.accounting.targets import (
    Ended,
    GapTarget,
    PrefixTarget,
    RejectionTarget,
    RollupTarget,
    Target,
    TargetDelta,
    padded,
)
from costgate.errors import ConflictError, InvalidRequestError
from costgate.pricing.cost import Cost, CostComponent, Strategy, price_usage
from costgate.pricing.usage import TokenUsage
from costgate.routing.prompt_cache import PrefixUse
from tests.fakes.clock import NOW
from tests.fakes.routing import InMemoryPromptCacheStore

FAKE_LANE = "fake-stream-shard"


class InjectedFaultError(RuntimeError):
    """What a fake store raises where a test asked it to fail."""


@dataclass
class _Faults:
    """Per method name, how many of its next calls raise InjectedFaultError (-1: every call)."""

    left: dict[str, int] = field(default_factory=dict)

    def fail(self, method: str, times: int = 1) -> None:
        self.left[method] = times

    def check(self, method: str) -> None:
        left = self.left.get(method, 0)
        if left == 0:
            return
        if left > 0:
            self.left[method] = left - 1
        raise InjectedFaultError(f"injected: {method} failed")


@dataclass
class _Row:
    state: RequestState
    reserved: ReservedRequest | None = None
    entry: LedgerEntry | None = None


class InMemoryRollupStore:
    """RollupStore in a dict: per target its counters, values, seen range and per-lane marks.

    Prefix and gap targets also feed `prompt_cache` (what the Dynamo store's PCACHE items are to
    DynamoPromptCacheStore). `applied` counts the deltas written.
    """

    def __init__(self, prompt_cache: InMemoryPromptCacheStore | None = None) -> None:
        self.counters: dict[Target, dict[str, int | Decimal]] = {}
        self.marks: dict[Target, dict[str, str]] = {}
        self.applied = 0
        self.faults = _Faults()
        self._prompt_cache = prompt_cache
        self._lock = threading.Lock()

    def apply(self, target: Target, lane: str, delta: TargetDelta, after: str | None) -> str | None:
        self.faults.check("apply")
        with self._lock:
            marks = self.marks.setdefault(target, {})
            mark = marks.get(lane)
            fits = (mark is None or mark < delta.first) if after is None else mark == after
            if not fits:
                return mark if mark is not None else ""
            counters = self.counters.setdefault(target, {})
            for name, amount in delta.adds.items():
                counters[name] = counters.get(name, 0) + amount
            marks[lane] = delta.last
            self.applied += 1
        if self._prompt_cache is not None and isinstance(target, PrefixTarget | GapTarget):
            self._prompt_cache.apply(target, delta)
        return None

    def previous_seen(self, target: Target) -> datetime | None:
        if self._prompt_cache is None or not isinstance(target, PrefixTarget):
            return None
        return self._prompt_cache.last_seen_of(target.feature, target.prefix_key)

    def rollups(self, first: date, last: date, tenant: str | None = None) -> Iterator[Rollup]:
        found = [
            t
            for t in self.counters
            if isinstance(t, RollupTarget) and first <= t.day <= last and tenant in (None, t.tenant)
        ]
        for target in sorted(found, key=lambda t: (t.day, t.tenant, t.feature, t.model, t.hour)):
            yield _to_rollup(target, self.counters[target])

    def rejections(self, first: date, last: date, tenant: str | None = None) -> Iterator[RejectionCount]:
        found = [
            t
            for t in self.counters
            if isinstance(t, RejectionTarget) and first <= t.day <= last and tenant in (None, t.tenant)
        ]
        for target in sorted(found, key=lambda t: (t.day, t.tenant, t.feature, t.hour)):
            count = int(self.counters[target].get("rejected", 0))
            yield RejectionCount(
                day=target.day, tenant=target.tenant, feature=target.feature, count=count, hour=target.hour
            )


def _to_rollup(target: RollupTarget, counters: Mapping[str, int | Decimal]) -> Rollup:
    def number(name: str) -> int:
        return int(counters.get(name, 0))

    def money(name: str) -> Decimal:
        return Decimal(counters.get(name, 0))

    return Rollup(
        day=target.day,
        tenant=target.tenant,
        feature=target.feature,
        model=target.model,
        requests=number("requests"),
        cost_usd=money("cost_usd"),
        baseline_cost_usd=money("baseline_cost_usd"),
        input_tokens=number("input_tokens"),
        output_tokens=number("output_tokens"),
        cache_write_5m_tokens=number("cache_write_5m_tokens"),
        cache_write_1h_tokens=number("cache_write_1h_tokens"),
        cache_read_tokens=number("cache_read_tokens"),
        web_search_requests=number("web_search_requests"),
        savings_usd={s: money(savings_field(s)) for s in Strategy if savings_field(s) in counters},
        strategy_requests={
            s: number(applied_requests_field(s)) for s in Strategy if applied_requests_field(s) in counters
        },
        strategy_cost_usd={s: money(applied_cost_field(s)) for s in Strategy if applied_cost_field(s) in counters},
        hour=target.hour,
        swept_requests=number("swept_requests"),
        swept_usd=money("swept_usd"),
    )


class InMemoryLedgerStore:
    """LedgerStore in dicts, with the stream and the aggregator run in-line.

    Same contract as DynamoLedgerStore: a row is reserved once and ended once (every end is conditional
    on `reserved`); `record` writes a settled row unless its id exists. Each end becomes a stream
    event with the next sequence number; with `aggregate=True` (the default) the aggregator applies it
    at once, so reports read it immediately; with False, `drain()` applies what waits in `stream`.
    `faults.fail("settle", n)` makes the next n settles raise (-1: every one).
    """

    def __init__(
        self,
        budgets: "InMemoryBudgetStore | None" = None,
        prompt_cache: InMemoryPromptCacheStore | None = None,
        *,
        aggregate: bool = True,
    ) -> None:
        self.rows: dict[str, _Row] = {}
        self.stream: list[Ended] = []
        self.rollup_store = InMemoryRollupStore(prompt_cache)
        self.faults = _Faults()
        self._budgets = budgets
        self._aggregate = aggregate
        self._sequence = 0
        self._lock = threading.Lock()

    # --- rows ----------------------------------------------------------------------------------------

    @property
    def entries(self) -> dict[str, LedgerEntry]:
        """The settled rows' entries, by request id."""
        return {request_id: row.entry for request_id, row in self.rows.items() if row.entry is not None}

    def state(self, request_id: str) -> RequestState:
        return self.rows[request_id].state

    def reserve(self, row: ReservedRequest) -> None:
        self.faults.check("reserve")
        with self._lock:
            if row.request_id in self.rows:
                raise ConflictError(f"ledger: request {row.request_id} is already reserved")
            self.rows[row.request_id] = _Row(RequestState.RESERVED, reserved=row)

    def settle(self, request_id: str, entry: LedgerEntry) -> bool:
        self.faults.check("settle")
        with self._lock:
            row = self.rows.get(request_id)
            if row is None or row.state is not RequestState.RESERVED:
                return row is not None and row.state is RequestState.SETTLED and row.entry == entry
            row.state, row.entry = RequestState.SETTLED, entry
            event = self._emit(RequestState.SETTLED, entry=entry)
        self._deliver(event)
        return True

    def end(self, request_id: str, state: RequestState) -> bool:
        if state not in ENDED or state is RequestState.SETTLED:
            raise ValueError(f"end() takes refused, abandoned or swept, not {state}")
        self.faults.check(f"end:{state.value}")
        with self._lock:
            row = self.rows.get(request_id)
            if row is None or row.state is not RequestState.RESERVED:
                # Ended so already: a retry of a refusal or an abandon (a sweep is the sweeper's once).
                return row is not None and row.state is state and state is not RequestState.SWEPT
            row.state = state
            event = self._emit(state, request=row.reserved)
        self._deliver(event)
        return True

    def record(self, entry: LedgerEntry, holds: Sequence[Hold] = ()) -> bool:
        self.faults.check("record")
        with self._lock:
            if entry.request_id in self.rows:
                return False
            if holds:
                if self._budgets is None:
                    raise AssertionError("this fake ledger was built without the budget store its holds live in")
                self._budgets.settle(holds, entry.cost.total_usd)
            self.rows[entry.request_id] = _Row(RequestState.SETTLED, entry=entry)
            event = self._emit(RequestState.SETTLED, entry=entry)
        self._deliver(event)
        return True

    def refuse(self, at: datetime, tenant: str, feature: str, model: str = "claude-opus-5-5") -> str:
        """What a budget's 429 leaves in the ledger: a row reserved, then ended refused. Its request id."""
        row = ReservedRequest(new_request_id(), at, tenant, feature, model, held_usd=Decimal(0))
        self.reserve(row)
        self.end(row.request_id, RequestState.REFUSED)
        return row.request_id

    def find(self, request_id: str) -> LedgerEntry | None:
        with self._lock:
            row = self.rows.get(request_id)
            return row.entry if row is not None and row.state is RequestState.SETTLED else None

    def unsettled(self, reserved_before: datetime) -> Iterator[ReservedRequest]:
        with self._lock:
            found = [
                row.reserved
                for row in self.rows.values()
                if row.state is RequestState.RESERVED and row.reserved is not None and row.reserved.at < reserved_before
            ]
        yield from sorted(found, key=lambda row: row.at)

    # --- the stream and the aggregator ---------------------------------------------------------------

    def _emit(self, state: RequestState, **found: ReservedRequest | LedgerEntry | None) -> Ended:
        self._sequence += 1
        event = Ended(padded(str(self._sequence)), state, **found)  # type: ignore[arg-type]
        self.stream.append(event)
        return event

    def _deliver(self, event: Ended) -> None:
        if self._aggregate:
            self.drain()

    def drain(self) -> int:
        """Aggregate every event waiting in `stream` as one batch; how many there were."""
        with self._lock:
            waiting, self.stream = self.stream, []
        if waiting:
            aggregate(self.rollup_store, FAKE_LANE, waiting)
        return len(waiting)

    def rollups(self, first: date, last: date, tenant: str | None = None) -> Iterator[Rollup]:
        return self.rollup_store.rollups(first, last, tenant)

    def rejections(self, first: date, last: date, tenant: str | None = None) -> Iterator[RejectionCount]:
        return self.rollup_store.rejections(first, last, tenant)


def make_entry(
    request_id: str,
    *,
    at: datetime = NOW,
    tenant: str = "acme",
    feature: str = "chat",
    model: str = "claude-opus-5-5",
    usage: TokenUsage | None = None,
    cost_usd: str | None = None,
    baseline_usd: str | None = None,
    requested_model: str | None = None,
    route_tier: str | None = None,
    route_reason: str | None = None,
    prompt_cache: PrefixUse | None = None,
    savings: Mapping[Strategy, str] | None = None,
) -> LedgerEntry:
    """A ledger entry priced by the real cost engine, or with a literal `cost_usd` (all of it input).

    The baseline defaults to the same usage priced with no prompt caching (or to the literal cost);
    with `savings` (exact strings per strategy), to the cost plus those savings.
    """
    usage = usage or TokenUsage(input_tokens=1000, output_tokens=500)
    if cost_usd is None:
        cost = price_usage(model, usage, at)
        baseline = price_usage(model, usage.without_cache(), at).total_usd
    else:
        total = Decimal(cost_usd)
        components = dict.fromkeys(CostComponent, Decimal(0)) | {CostComponent.INPUT: total}
        cost = Cost(
            model=model,
            total_usd=total,
            components=components,
            price_version="test-literal",
            modifiers=(),
            confirmed=True,
        )
        baseline = total
    by_strategy = {strategy: Decimal(amount) for strategy, amount in (savings or {}).items()}
    if by_strategy:
        baseline = cost.total_usd + sum(by_strategy.values(), Decimal(0))
    if baseline_usd is not None:
        baseline = Decimal(baseline_usd)
    return LedgerEntry(
        request_id=request_id,
        at=at,
        tenant=tenant,
        feature=feature,
        usage=usage,
        cost=cost,
        baseline_cost_usd=baseline,
        savings=by_strategy,
        requested_model=requested_model,
        route_tier=route_tier,
        route_reason=route_reason,
        prompt_cache=prompt_cache,
    )


type CounterKey = tuple[str, BudgetPeriod, str]


def counter_key(hold: Hold) -> CounterKey:
    return hold.budget.scope, hold.budget.period, hold.window


def root_key(budget: Budget, window: str) -> CounterKey:
    return budget.scope, budget.period, window


@dataclass
class FakeShard:
    day: str | None = None
    headroom: dict[str, Decimal] = field(default_factory=dict)
    dry: dict[str, tuple[str, Decimal]] = field(default_factory=dict)  # slot -> (window, what the root had left)


def _slot_window(shard: ShardKey, state: FakeShard, slot: str) -> str | None:
    return state.day if slot.endswith("_day") else shard.month


class InMemoryBudgetStore:
    """BudgetStore in dicts: definitions by (scope, period); roots by (scope, period, window): `committed`
    (handed out to shards and batch holds), `spent` and `requests` (batch settlements); shards by ShardKey.

    Same contract as DynamoBudgetStore. `in_use(...)` is a window's committed less its shards' headroom:
    spent plus holds in flight. `calls` lists every port method called; `faults.fail(name)` makes calls
    of a method raise. Thread-safe.
    """

    def __init__(self, budgets: Sequence[Budget] = (), now: datetime = NOW) -> None:
        self.budgets: dict[tuple[str, BudgetPeriod], Budget] = {(b.scope, b.period): b for b in budgets}
        self.committed: dict[CounterKey, Decimal] = {}
        self.spent: dict[CounterKey, Decimal] = {}
        self.requests: dict[CounterKey, int] = {}
        self.limits: dict[CounterKey, Decimal] = {}
        self.root_dry: dict[CounterKey, tuple[Budget, Decimal]] = {}
        self.shards: dict[ShardKey, FakeShard] = {}
        self.registry: dict[CounterKey, set[ShardKey]] = defaultdict(set)
        self.calls: list[str] = []
        self.faults = _Faults()
        self.now = now
        self._lock = threading.RLock()

    # --- definitions ---------------------------------------------------------------------------------

    def definitions(self, tenant: str, feature: str) -> list[Budget]:
        self.calls.append("definitions")
        scopes = {tenant_scope(tenant)} | ({feature_scope(tenant, feature)} if "/" not in tenant else set())
        return [b for b in self._sorted() if b.scope in scopes]

    def put_definition(self, budget: Budget) -> None:
        self.calls.append("put_definition")
        if budget.tenant is None:
            raise InvalidRequestError("key budgets are set on the key (costgate keys create --daily-budget-usd …)")
        self.budgets[(budget.scope, budget.period)] = budget
        self.gather(budget, budget.window(self.now))

    def delete_definition(self, scope: str, period: BudgetPeriod) -> bool:
        self.calls.append("delete_definition")
        if Budget(scope, period, Decimal(0)).tenant is None:
            raise InvalidRequestError("key budgets are set on the key (costgate keys create --daily-budget-usd …)")
        return self.budgets.pop((scope, period), None) is not None

    def list_definitions(self) -> list[Budget]:
        self.calls.append("list_definitions")
        return self._sorted()

    # --- shards and roots ----------------------------------------------------------------------------

    def take(self, hold: ShardHold) -> Taken:
        self.calls.append("take")
        self.faults.check("take")
        with self._lock:
            shard = self.shards.get(hold.shard)
            if shard is None:
                return Taken(ok=False)
            slots = hold.slots
            dry = {
                slot: left
                for slot, (window, left) in shard.dry.items()
                if slot in slots and window == hold.window(slots[slot])
            }
            fits = all(shard.headroom.get(slot, Decimal(0)) >= hold.amount_usd for slot in slots)
            held = {slot: amount for slot, amount in shard.headroom.items() if slot in slots}
            if shard.day != hold.day or not fits:
                return Taken(ok=False, headroom=held, day=shard.day, dry=dry)
            for slot in slots:
                shard.headroom[slot] -= hold.amount_usd
            return Taken(ok=True, headroom={slot: shard.headroom[slot] for slot in slots}, day=shard.day)

    def roll_day(self, shard: ShardKey, seen_day: str | None, day: str) -> None:
        self.calls.append("roll_day")
        with self._lock:
            state = self.shards.setdefault(shard, FakeShard())
            if state.day != seen_day:
                return
            state.day = day
            for slot in [s for s in state.headroom if s.endswith("_day")]:
                state.headroom[slot] = Decimal(0)
            for slot in [s for s in state.dry if s.endswith("_day")]:
                del state.dry[slot]

    def roots(self, windows: Sequence[tuple[Budget, str]]) -> dict[tuple[str, str, str], RootState]:
        self.calls.append("roots")
        self.faults.check("roots")
        with self._lock:
            return {
                (budget.scope, budget.period.value, window): RootState(
                    self.committed[root_key(budget, window)], root_key(budget, window) in self.root_dry
                )
                for budget, window in windows
                if root_key(budget, window) in self.committed
            }

    def draw(self, shard: ShardKey, day: str, grants: Sequence[Grant]) -> bool:
        self.calls.append("draw")
        with self._lock:
            state = self.shards.get(shard)
            if state is None or state.day != day:
                return False
            for grant in grants:
                committed = self.committed.get(root_key(grant.budget, grant.window), Decimal(0))
                if committed > grant.budget.limit_usd - grant.amount_usd:
                    return False
            for grant in grants:
                key = root_key(grant.budget, grant.window)
                self.committed[key] = self.committed.get(key, Decimal(0)) + grant.amount_usd
                self.limits[key] = grant.budget.limit_usd
                slot = grant.budget.slot
                state.headroom[slot] = state.headroom.get(slot, Decimal(0)) + grant.amount_usd
                self.registry[key].add(shard)
            return True

    def mark_dry(self, hold: ShardHold, budget: Budget, left_usd: Decimal) -> None:
        self.calls.append("mark_dry")
        with self._lock:
            window = hold.window(budget)
            self.root_dry[root_key(budget, window)] = (budget, left_usd)
            self.shards.setdefault(hold.shard, FakeShard()).dry[budget.slot] = (window, left_usd)

    def give_back(self, hold: ShardHold, amount_usd: Decimal) -> dict[str, Decimal]:
        self.calls.append("give_back")
        self.faults.check("give_back")
        with self._lock:
            state = self.shards[hold.shard]
            open_slots = [slot for slot in hold.slots if not (slot.endswith("_day") and state.day != hold.day)]
            for slot in open_slots:  # a day slot whose day has closed takes nothing: that money is void
                state.headroom[slot] = state.headroom.get(slot, Decimal(0)) + amount_usd
            return {slot: state.headroom[slot] for slot in open_slots}

    def gather(self, budget: Budget, window: str) -> Decimal:
        self.calls.append("gather")
        key = root_key(budget, window)
        gathered = Decimal(0)
        with self._lock:
            for shard in sorted(self.registry.get(key, ()), key=lambda s: s.label):
                state = self.shards[shard]
                if _slot_window(shard, state, budget.slot) != window:
                    continue
                headroom = state.headroom.get(budget.slot, Decimal(0))
                if headroom > 0:
                    state.headroom[budget.slot] = Decimal(0)
                    self.committed[key] -= headroom
                    gathered += headroom
                if state.dry.get(budget.slot, ("",))[0] == window:
                    del state.dry[budget.slot]
            self.root_dry.pop(key, None)
        return gathered

    def dry_windows(self) -> list[tuple[Budget, str]]:
        self.calls.append("dry_windows")
        with self._lock:
            return [(budget, key[2]) for key, (budget, _) in sorted(self.root_dry.items())]

    def remaining(self, holds: Sequence[Hold]) -> Decimal | None:
        self.calls.append("remaining")
        if not holds:
            return None
        with self._lock:
            return min(remaining_in(h.budget, self.committed.get(counter_key(h), Decimal(0))) for h in holds)

    def held_in_shards(self, budget: Budget, window: str) -> Decimal:
        self.calls.append("held_in_shards")
        key = root_key(budget, window)
        with self._lock:
            return sum(
                (
                    self.shards[shard].headroom.get(budget.slot, Decimal(0))
                    for shard in self.registry.get(key, ())
                    if _slot_window(shard, self.shards[shard], budget.slot) == window
                ),
                Decimal(0),
            )

    # --- what the tests read, and what the ledger's transaction does for batch holds -------------------

    def in_use(self, scope: str, period: BudgetPeriod, window: str) -> Decimal:
        """Spent plus held in flight: what the root handed out less what its shards still hold."""
        with self._lock:
            committed = self.committed.get((scope, period, window), Decimal(0))
            return committed - self.held_in_shards(Budget(scope, period, Decimal(0)), window)

    def settle(self, holds: Sequence[Hold], actual_usd: Decimal) -> None:
        """What the ledger's transaction does with settle_updates: committed += actual − held, spent += actual."""
        with self._lock:
            for hold in holds:
                key = counter_key(hold)
                self.committed[key] = self.committed.get(key, Decimal(0)) + actual_usd - hold.amount_usd
                self.spent[key] = self.spent.get(key, Decimal(0)) + actual_usd
                self.requests[key] = self.requests.get(key, 0) + 1

    def reserve_root(self, hold: Hold) -> None:
        """What a batch's reservation does on a root (committed += amount, if it fits); for tests."""
        with self._lock:
            committed = self.committed.get(counter_key(hold), Decimal(0))
            if committed > reservation_ceiling(hold):
                raise AssertionError("the hold does not fit")
            self.committed[counter_key(hold)] = committed + hold.amount_usd

    def _sorted(self) -> list[Budget]:
        return sorted(self.budgets.values(), key=lambda b: (b.tenant or "", b.scope, b.period.value))
