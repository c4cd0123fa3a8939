"""DynamoLedgerStore against moto: exact round trips, exactly-once recording, rollups through the table's stream
and the real AggregatorFunction (concurrent writers, day ranges, per-strategy counts), and budget rejection counters.
The port's contract, which the in-memory fake must pass too, is in tests/contract/test_ledger_store.py."""

import random
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from costgate.accounting.ledger import (
    LedgerEntry,
    RecordOutcome,
    RejectionCount,
    RequestState,
    ReservedRequest,
    Rollup,
    new_request_id,
)
from costgate.accounting.report import CostReportRequest, GroupBy, build_report
from costgate.accounting.services import record_request
from costgate.dal.ledger import DynamoLedgerStore, LedgerItem
from costgate.dal.rollups import RejectionItem, day_partition
from costgate.pricing.cost import CostComponent, Strategy, measure_savings, price_usage
from costgate.pricing.usage import TokenUsage
from tests.fakes.accounting import make_entry
from tests.integration import nullable
from tests.integration.stream import AggregatedLedger

DAY = date(2026, 11, 20)
NOON = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
ROLLUP_TOKEN_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "cache_read_tokens",
    "web_search_requests",
)


@pytest.fixture
def store(ledger_table: str) -> AggregatedLedger:
    return AggregatedLedger()


def refuse(store: DynamoLedgerStore, at: datetime, tenant: str, feature: str) -> None:
    """What a budget's 429 leaves in the ledger: a row reserved, then ended refused."""
    row = ReservedRequest(new_request_id(), at, tenant, feature, "claude-opus-5-5", Decimal("0.1"))
    store.reserve(row)
    assert store.end(row.request_id, RequestState.REFUSED)


def _stored(request_id: str) -> LedgerItem:
    """The ledger row, read by its documented key: PK REQ#<request_id>, SK REQ."""
    return LedgerItem.get(f"REQ#{request_id}", "REQ")


def _usage(n: int) -> TokenUsage:
    """Varied usage, so every entry has a different cost with up to 7 decimal places."""
    return TokenUsage(
        input_tokens=100 + 37 * n,
        output_tokens=50 + 11 * n,
        cache_write_5m_tokens=13 * (n % 5),
        cache_write_1h_tokens=7 * (n % 3),
        cache_read_tokens=1000 + 101 * n,
        web_search_requests=n % 2,
    )


def _expected_rollup(entries: list[LedgerEntry]) -> dict[str, int | Decimal]:
    return {
        "requests": len(entries),
        "cost_usd": sum((e.cost.total_usd for e in entries), Decimal(0)),
        "baseline_cost_usd": sum((e.baseline_cost_usd for e in entries), Decimal(0)),
        **{name: sum(getattr(e.usage, name) for e in entries) for name in ROLLUP_TOKEN_FIELDS},
    }


def _totals(rollup: Rollup) -> dict[str, int | Decimal]:
    return {name: getattr(rollup, name) for name in ("requests", "cost_usd", "baseline_cost_usd", *ROLLUP_TOKEN_FIELDS)}


# --- one entry -----------------------------------------------------------------------------------------


def test_recorded_entry_round_trips_every_field(store: DynamoLedgerStore) -> None:
    # Given a batch request served in the US, with every token category and a non-UTC timestamp
    usage = TokenUsage(
        input_tokens=1200,
        output_tokens=800,
        cache_write_5m_tokens=3000,
        cache_write_1h_tokens=500,
        cache_read_tokens=20000,
        web_search_requests=2,
        web_fetch_requests=1,
        thinking_tokens=300,
        service_tier="batch",
        inference_geo="us",
    )
    at = datetime(2026, 11, 20, 9, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
    entry = make_entry("msg_01XFDUDYJgAACzvnptvVoYEL", at=at, tenant="acme", feature="support-bot", usage=usage)
    assert entry.cost.modifiers == ("batch", "inference_geo:us")

    # When it is recorded and read back
    assert store.record(entry) is True
    item = _stored(entry.request_id)

    # Then every field is exactly what was recorded
    assert item.request_id == entry.request_id
    assert item.at == at
    assert item.at.utcoffset() == timedelta(0)
    assert item.day == "2026-11-20"
    assert (item.tenant, item.feature, item.model) == ("acme", "support-bot", "claude-opus-5-5")
    assert item.price_version == entry.cost.price_version
    assert item.price_confirmed is True
    assert item.modifiers == ["batch", "inference_geo:us"]
    assert isinstance(item.cost_usd, Decimal)
    assert str(item.cost_usd) == str(entry.cost.total_usd)
    assert item.baseline_cost_usd == entry.baseline_cost_usd
    assert {c: getattr(item.components, c.value) for c in CostComponent} == dict(entry.cost.components)
    assert all(isinstance(getattr(item.components, c.value), Decimal) for c in CostComponent)
    assert (
        item.input_tokens,
        item.output_tokens,
        item.cache_write_5m_tokens,
        item.cache_write_1h_tokens,
        item.cache_read_tokens,
        item.web_search_requests,
        item.web_fetch_requests,
        item.thinking_tokens,
    ) == (1200, 800, 3000, 500, 20000, 2, 1, 300)
    assert (item.service_tier, item.inference_geo, item.speed) == ("batch", "us", "standard")


def test_optional_usage_fields_round_trip_as_none(store: DynamoLedgerStore) -> None:
    # Given a plain request with no thinking breakdown and no inference_geo
    entry = make_entry("req-plain", usage=TokenUsage(input_tokens=1000, output_tokens=500))

    # When it is recorded and read back
    store.record(entry)
    item = _stored("req-plain")

    # Then the optional fields are absent, not zero or empty
    assert nullable(item.thinking_tokens) is None
    assert nullable(item.inference_geo) is None
    assert item.modifiers == []
    assert item.cost_usd == Decimal("0.014")  # 1000×4/1e6 + 500×20/1e6


def test_same_request_id_twice_is_recorded_once(store: DynamoLedgerStore) -> None:
    # Given a recorded request
    original = make_entry("req-1", usage=_usage(3))
    assert record_request(store, original) is RecordOutcome.RECORDED

    # When the same request id arrives again with another cost and usage (a client retry, a replay)
    retry = make_entry("req-1", usage=_usage(9), cost_usd="5")
    outcome = record_request(store, retry)

    # Then it is a duplicate: the row and the rollup count the original once
    assert outcome is RecordOutcome.DUPLICATE
    assert _stored("req-1").cost_usd == original.cost.total_usd
    (rollup,) = store.rollups(DAY, DAY)
    assert _totals(rollup) == _expected_rollup([original])


# --- concurrency ---------------------------------------------------------------------------------------

THREADS = 8
OWN_PER_THREAD = 20
DUPLICATES_PER_THREAD = 5  # each thread also replays 5 ids that another thread owns


@pytest.mark.slow
def test_concurrent_writers_sum_rollups_exactly_once_per_request(ledger_table: str, store: AggregatedLedger) -> None:
    # Given 160 distinct requests on one day: 3 in 4 on one hot rollup (acme/chat/opus), the rest on another,
    # and 8 writers that each record their own 20 plus 5 owned by the next writer, shuffled
    entries = [
        make_entry(f"req-{n:03d}", feature="search" if n % 4 == 3 else "chat", usage=_usage(n)) for n in range(160)
    ]
    plans = []
    for t in range(THREADS):
        own = entries[t * OWN_PER_THREAD : (t + 1) * OWN_PER_THREAD]
        neighbour = (t + 1) % THREADS
        replayed = entries[neighbour * OWN_PER_THREAD : neighbour * OWN_PER_THREAD + DUPLICATES_PER_THREAD]
        plan = own + replayed
        random.Random(t).shuffle(plan)
        plans.append(plan)
    start = threading.Barrier(THREADS)

    def write(plan: list[LedgerEntry]) -> list[bool]:
        store = DynamoLedgerStore()  # one per writer, like one per Lambda instance
        start.wait()
        return [store.record(entry) for entry in plan]

    # When they all write at once
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        results = [flag for flags in pool.map(write, plans) for flag in flags]

    # Then each distinct id is recorded exactly once and every replay is refused
    assert Counter(results) == {True: 160, False: THREADS * DUPLICATES_PER_THREAD}
    rollups: dict[str, Rollup] = {}
    for rollup in store.rollups(DAY, DAY):  # one per hour: these are all at noon
        assert rollup.feature not in rollups
        rollups[rollup.feature] = rollup
    assert set(rollups) == {"chat", "search"}
    # And each rollup is the exact Decimal sum of its distinct entries (requests, cost, baseline, tokens)
    hot = [e for e in entries if e.feature == "chat"]
    cold = [e for e in entries if e.feature == "search"]
    assert len(hot) == 120
    assert _totals(rollups["chat"]) == _expected_rollup(hot)
    assert _totals(rollups["search"]) == _expected_rollup(cold)


# --- day ranges ----------------------------------------------------------------------------------------


def test_late_evening_in_utc_minus_5_lands_on_the_next_utc_day(store: DynamoLedgerStore) -> None:
    # Given a request at 23:59:59 on Nov 20 in UTC−5 (04:59:59 on Nov 21 UTC)
    at = datetime(2026, 11, 20, 23, 59, 59, tzinfo=timezone(timedelta(hours=-5)))
    entry = make_entry("req-late", at=at)

    # When it is recorded
    store.record(entry)

    # Then its row and its rollup are on Nov 21, and Nov 20 has nothing
    item = _stored("req-late")
    assert item.day == "2026-11-21"
    assert item.at == datetime(2026, 11, 21, 4, 59, 59, tzinfo=UTC)
    assert list(store.rollups(date(2026, 11, 20), date(2026, 11, 20))) == []
    (rollup,) = store.rollups(date(2026, 11, 21), date(2026, 11, 21))
    assert rollup.day == date(2026, 11, 21)
    assert rollup.cost_usd == entry.cost.total_usd


def test_savings_per_strategy_reach_the_rollup_and_the_report(store: DynamoLedgerStore) -> None:
    # Given two requests whose savings were measured per strategy (a cache read, then a batch)
    entries = []
    for n, usage in enumerate(
        [
            TokenUsage(input_tokens=1000, cache_read_tokens=10_000, output_tokens=500),
            TokenUsage(input_tokens=2000, output_tokens=400, service_tier="batch"),
        ]
    ):
        at = datetime(2026, 11, 29, 12, tzinfo=UTC)
        cost = price_usage("claude-opus-5-5", usage, at)
        savings = measure_savings("claude-opus-5-5", usage, cost, at)
        entries.append(
            LedgerEntry(
                request_id=f"saving-{n}",
                at=at,
                tenant="acme",
                feature="chat",
                usage=usage,
                cost=cost,
                baseline_cost_usd=savings.baseline_usd,
                savings=savings.by_strategy,
                key_id="0123456789ab",
            )
        )
    # When they are recorded
    for entry in entries:
        record_request(store, entry)
    # Then the ledger row keeps them, and the rollup and the report add them up exactly
    assert _stored("saving-0").savings.prompt_cache == Decimal("0.038")
    assert _stored("saving-0").key_id == "0123456789ab"
    rollups = list(store.rollups(date(2026, 11, 29), date(2026, 11, 29)))
    assert len(rollups) == 2  # standard and batch: a rollup's key keeps the service tier (for reconciliation)
    saved = {s: sum((r.savings_usd.get(s, Decimal(0)) for r in rollups), Decimal(0)) for s in Strategy}
    expected_batch = entries[1].savings[Strategy.BATCH]
    assert saved[Strategy.PROMPT_CACHE] == Decimal("0.038")
    assert saved[Strategy.BATCH] == expected_batch
    report = build_report(
        store, CostReportRequest(first=date(2026, 11, 29), last=date(2026, 11, 29), group_by=GroupBy.DAY)
    )
    assert report.total.as_json()["savings_by_strategy"]["prompt_cache"] == "0.038"
    assert report.total.savings_usd == Decimal("0.038") + expected_batch


# --- per strategy --------------------------------------------------------------------------------------


def test_measured_savings_count_each_request_under_the_strategies_that_changed_it(store: DynamoLedgerStore) -> None:
    # Given a cache read and a batch request, their savings measured by the cost engine (zeros included)
    at = datetime(2026, 11, 29, 12, tzinfo=UTC)
    usages = [
        TokenUsage(input_tokens=1000, cache_read_tokens=10_000, output_tokens=500),
        TokenUsage(input_tokens=2000, output_tokens=400, service_tier="batch"),
    ]
    entries = []
    for n, usage in enumerate(usages):
        cost = price_usage("claude-opus-5-5", usage, at)
        savings = measure_savings("claude-opus-5-5", usage, cost, at)
        entries.append(
            LedgerEntry(
                request_id=f"measured-{n}",
                at=at,
                tenant="acme",
                feature="chat",
                usage=usage,
                cost=cost,
                baseline_cost_usd=savings.baseline_usd,
                savings=savings.by_strategy,
            )
        )
        record_request(store, entries[-1])

    # When reporting the day
    day = at.date()
    total = build_report(store, CostReportRequest(first=day, last=day, group_by=GroupBy.DAY)).total

    # Then prompt caching counts only the cache read, and the batch discount only the batch request
    cached, batched = entries
    assert total.strategies[Strategy.PROMPT_CACHE].requests == 1
    assert total.strategies[Strategy.PROMPT_CACHE].cost_usd == cached.cost.total_usd
    assert total.strategies[Strategy.BATCH].requests == 1
    assert total.strategies[Strategy.BATCH].cost_usd == batched.cost.total_usd
    assert total.strategies[Strategy.BATCH].baseline_cost_usd == batched.baseline_cost_usd
    assert total.strategies[Strategy.ROUTING].requests == 0


# --- budget rejections ---------------------------------------------------------------------------------


def test_rejections_are_counted_per_day_hour_tenant_and_feature(store: AggregatedLedger) -> None:
    # Given refused rows for two tenants and features on Nov 20, one on Nov 21 (23:30 in UTC−5), one on Nov 22
    for tenant, feature in [("acme", "chat"), ("acme", "chat"), ("acme", "search"), ("globex", "chat")]:
        refuse(store, NOON, tenant, feature)
    refuse(store, datetime(2026, 11, 20, 23, 30, tzinfo=timezone(timedelta(hours=-5))), "acme", "chat")
    refuse(store, datetime(2026, 11, 22, 0, 0, tzinfo=UTC), "acme", "chat")

    # When reading Nov 20 .. 21
    counts = list(store.rejections(date(2026, 11, 20), date(2026, 11, 21)))

    # Then each day × tenant × feature × hour has its count, day by day, and Nov 22 is outside the range
    assert counts == [
        RejectionCount(date(2026, 11, 20), "acme", "chat", 2, hour=12),
        RejectionCount(date(2026, 11, 20), "acme", "search", 1, hour=12),
        RejectionCount(date(2026, 11, 20), "globex", "chat", 1, hour=12),
        RejectionCount(date(2026, 11, 21), "acme", "chat", 1, hour=4),
    ]
    # And the counter is stored where its docstring says: PK DAY#<date>#<n>, SK REJECT#<tenant>#<feature>#<hh>
    item = RejectionItem.get(day_partition(DAY, "acme"), "REJECT#acme#chat#12")
    assert (item.day, item.tenant, item.feature, item.hour, item.rejected) == ("2026-11-20", "acme", "chat", 12, 2)
    # And one tenant's are one partition per day
    assert [c.tenant for c in store.rejections(DAY, DAY, tenant="globex")] == ["globex"]


# --- row states ------------------------------------------------------------------------------------------


def _reserved(at: datetime = NOON, held: str = "0.25") -> ReservedRequest:
    return ReservedRequest(
        new_request_id(),
        at,
        "acme",
        "chat",
        "claude-opus-5-5",
        Decimal(held),
        key_id="0a1b2c3d4e5f",
        requested_model="auto",
        route_tier="medium",
        route_reason="auto: medium",
        hold_shard="0a1b2c3d4e5f/chat/3/2026-11",
    )


def test_a_reserved_row_is_on_the_sweep_index_until_it_ends(store: AggregatedLedger) -> None:
    # Given two rows reserved at noon and one at 12:30
    early, other, late = _reserved(), _reserved(), _reserved(NOON + timedelta(minutes=30))
    for row in (early, other, late):
        store.reserve(row)
    item = _stored(early.request_id)
    assert (item.status, item.held_usd, item.hold_shard) == ("reserved", Decimal("0.25"), early.hold_shard)
    assert item.queue is not None
    assert item.queue.startswith("sweep#")

    # When one of the noon rows is settled
    assert store.settle(other.request_id, make_entry(other.request_id, cost_usd="0.01"))

    # Then the rows still reserved before 12:15 are the other noon one only, read back whole
    assert list(store.unsettled(NOON + timedelta(minutes=15))) == [early]
    assert sorted(r.request_id for r in store.unsettled(NOON + timedelta(hours=1))) == sorted(
        [early.request_id, late.request_id]
    )
    # and the settled row left the index
    assert _stored(other.request_id).queue is None


def test_a_swept_row_is_counted_at_its_hold_and_flagged(store: AggregatedLedger) -> None:
    row = _reserved(held="0.25")
    store.reserve(row)

    assert store.end(row.request_id, RequestState.SWEPT) is True
    assert store.end(row.request_id, RequestState.SWEPT) is False
    assert store.settle(row.request_id, make_entry(row.request_id, cost_usd="0.01")) is False

    item = _stored(row.request_id)
    assert (item.status, item.cost_usd, nullable(item.queue)) == ("swept", Decimal("0.25"), None)
    (rollup,) = store.rollups(DAY, DAY)
    assert (rollup.requests, rollup.cost_usd, rollup.swept_requests, rollup.swept_usd) == (
        1,
        Decimal("0.25"),
        1,
        Decimal("0.25"),
    )


def test_a_settled_row_carries_everything_the_aggregator_needs(store: AggregatedLedger) -> None:
    # Given a reserved row settled with a routed, prompt-cached entry
    row = _reserved()
    store.reserve(row)
    entry = make_entry(
        row.request_id,
        usage=_usage(7),
        savings={Strategy.ROUTING: "0.5"},
        requested_model="auto",
        route_tier="medium",
        route_reason="auto: medium",
    )
    entry = LedgerEntry(**{**entry.__dict__, "key_id": "0a1b2c3d4e5f", "upstream_request_id": "req_011CVx"})
    assert store.settle(row.request_id, entry)

    # When the aggregator reads it from the stream, Then the rollup counts exactly that entry
    (rollup,) = store.rollups(DAY, DAY)
    assert _totals(rollup) == _expected_rollup([entry])
    assert rollup.savings_usd == {Strategy.ROUTING: Decimal("0.5")}
    assert _stored(row.request_id).upstream_request_id == "req_011CVx"


def test_rollups_written_before_the_aggregator_are_still_read(store: AggregatedLedger) -> None:
    # Given a day's rollup in the layout before hourly rollups (PK DAY#<day>, no hour) and one of today's
    from costgate.dal.rollups import RollupItem  # noqa: PLC0415

    RollupItem(
        "DAY#2026-11-20",
        "ROLLUP#acme#chat#claude-opus-5-5",
        day="2026-11-20",
        tenant="acme",
        feature="chat",
        model="claude-opus-5-5",
        requests=3,
        cost_usd=Decimal("0.3"),
        baseline_cost_usd=Decimal("0.4"),
        input_tokens=10,
        output_tokens=5,
        cache_write_5m_tokens=0,
        cache_write_1h_tokens=0,
        cache_read_tokens=0,
        web_search_requests=0,
    ).save()
    store.record(make_entry("new", cost_usd="0.1"))

    # When the day is reported
    report = build_report(store, CostReportRequest(first=DAY, last=DAY, group_by=GroupBy.DAY))

    # Then both count
    assert (report.total.requests, report.total.cost_usd) == (4, Decimal("0.4"))
