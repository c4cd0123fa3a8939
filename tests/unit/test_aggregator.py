"""The aggregator with the in-memory rollup store: what each ended row adds, exactly once under Lambda's retries."""

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from costgate.accounting.aggregator import aggregate
from costgate.accounting.ledger import RequestState, ReservedRequest
from costgate.accounting.targets import Ended, GapTarget, PrefixTarget, RejectionTarget, RollupTarget, padded
from costgate.pricing.cost import Strategy
from costgate.routing.prompt_cache import GapHistogram, PrefixUse
from tests.fakes.accounting import InjectedFaultError, InMemoryRollupStore, make_entry
from tests.fakes.clock import ManualClock
from tests.fakes.routing import InMemoryPromptCacheStore

NOW = datetime(2026, 11, 20, 12, 10, tzinfo=UTC)
DAY = NOW.date()
LANE = "shardId-00000001700000000000-0a1b2c3d"
OTHER_LANE = "shardId-00000001700000000001-9f8e7d6c"
OPUS = "claude-opus-5-5"


def settled(sequence: int, cost: str, at: datetime = NOW, **fields: object) -> Ended:
    entry = make_entry(f"cg_{sequence}", at=at, cost_usd=cost, **fields)  # type: ignore[arg-type]
    return Ended(padded(str(sequence)), RequestState.SETTLED, entry=entry)


def reserved(sequence: int, held: str, at: datetime = NOW, feature: str = "chat") -> ReservedRequest:
    return ReservedRequest(f"cg_{sequence}", at, "acme", feature, OPUS, Decimal(held))


def ended(sequence: int, state: RequestState, held: str = "0.5", at: datetime = NOW, feature: str = "chat") -> Ended:
    return Ended(padded(str(sequence)), state, request=reserved(sequence, held, at, feature))


def totals(store: InMemoryRollupStore) -> dict[object, dict[str, object]]:
    return {target: dict(counters) for target, counters in store.counters.items()}


ROLLUP = RollupTarget(DAY, 12, "acme", "chat", OPUS)


# --- what each ended row adds ----------------------------------------------------------------------------


def test_settled_rows_add_cost_baseline_tokens_and_the_strategies_they_changed() -> None:
    store = InMemoryRollupStore()
    events = [
        settled(1, "0.3", savings={Strategy.ROUTING: "0.7"}),
        settled(2, "0.1", savings={Strategy.PROMPT_CACHE: "0.05", Strategy.ROUTING: "0"}),
    ]

    aggregate(store, LANE, events)

    counters = store.counters[ROLLUP]
    assert counters["requests"] == 2
    assert counters["cost_usd"] == Decimal("0.4")
    assert counters["baseline_cost_usd"] == Decimal("1.15")
    assert counters["input_tokens"] == 2000
    assert counters["savings_routing_usd"] == Decimal("0.7")
    assert counters["applied_routing_requests"] == 1
    assert counters["applied_prompt_cache_cost_usd"] == Decimal("0.1")
    assert store.marks[ROLLUP] == {LANE: padded("2")}


def test_a_swept_row_counts_at_its_hold_and_as_swept_a_refused_one_as_a_rejection_an_abandoned_one_not_at_all() -> None:
    store = InMemoryRollupStore()

    aggregate(
        store,
        LANE,
        [ended(1, RequestState.SWEPT, "0.25"), ended(2, RequestState.REFUSED), ended(3, RequestState.ABANDONED)],
    )

    assert store.counters[ROLLUP] == {
        "requests": 1,
        "cost_usd": Decimal("0.25"),
        "baseline_cost_usd": Decimal("0.25"),
        "swept_requests": 1,
        "swept_usd": Decimal("0.25"),
    }
    assert store.counters[RejectionTarget(DAY, 12, "acme", "chat")] == {"rejected": 1}
    assert len(store.counters) == 2


def test_rows_go_to_the_hour_and_utc_day_they_were_admitted_in() -> None:
    store = InMemoryRollupStore()
    late = datetime(2026, 11, 20, 23, 59, tzinfo=UTC)

    aggregate(store, LANE, [settled(1, "0.1", at=late), settled(2, "0.2", at=late + timedelta(minutes=2))])

    assert set(store.counters) == {
        RollupTarget(DAY, 23, "acme", "chat", OPUS),
        RollupTarget(date(2026, 11, 21), 0, "acme", "chat", OPUS),
    }


# --- exactly once ----------------------------------------------------------------------------------------

BATCH = [
    settled(11, "0.1"),
    ended(12, RequestState.REFUSED),
    settled(13, "0.2", feature="search"),
    ended(14, RequestState.SWEPT, "0.4"),
    settled(15, "0.3"),
    ended(16, RequestState.REFUSED, feature="search"),
]


def once(events: Sequence[Ended] = BATCH) -> dict[object, dict[str, object]]:
    store = InMemoryRollupStore()
    aggregate(store, LANE, events)
    return totals(store)


def test_the_same_batch_twice_changes_nothing_the_second_time() -> None:
    store = InMemoryRollupStore()
    aggregate(store, LANE, BATCH)
    written = store.applied

    aggregate(store, LANE, BATCH)

    assert totals(store) == once()
    assert store.applied == written


def test_half_a_batch_again_or_a_batch_from_a_reported_failure_on_adds_only_what_is_new() -> None:
    store = InMemoryRollupStore()
    aggregate(store, LANE, BATCH[:4])
    # its second half again (a bisected retry)
    aggregate(store, LANE, BATCH[2:4])
    # then a batch from a reported failure at the third record, running further
    aggregate(store, LANE, BATCH[2:])

    assert totals(store) == once()


def test_a_batch_that_failed_after_writing_some_targets_writes_only_the_others_when_retried() -> None:
    store = InMemoryRollupStore()
    calls = 0
    real_apply = store.apply

    def apply_then_fail(*args: object, **kwargs: object) -> str | None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise InjectedFaultError("timeout after two targets")
        return real_apply(*args, **kwargs)  # type: ignore[arg-type]

    store.apply = apply_then_fail  # type: ignore[method-assign]
    with pytest.raises(InjectedFaultError):
        aggregate(store, LANE, BATCH)
    store.apply = real_apply  # type: ignore[method-assign]

    aggregate(store, LANE, BATCH)

    assert totals(store) == once()


def test_lanes_are_independent_a_mark_on_one_does_not_hide_the_others_records() -> None:
    # Given records of two stream shards whose sequence numbers interleave
    store = InMemoryRollupStore()
    aggregate(store, LANE, [settled(100, "0.1"), settled(300, "0.1")])

    # When the other shard's lower-numbered records arrive, twice
    aggregate(store, OTHER_LANE, [settled(200, "0.2")])
    aggregate(store, OTHER_LANE, [settled(200, "0.2")])

    # Then each counts once
    assert store.counters[ROLLUP]["requests"] == 3
    assert store.counters[ROLLUP]["cost_usd"] == Decimal("0.4")
    assert store.marks[ROLLUP] == {LANE: padded("300"), OTHER_LANE: padded("200")}


@settings(max_examples=80, deadline=None)
@given(data=st.data(), count=st.integers(min_value=1, max_value=30))
def test_any_delivery_lambda_can_make_adds_each_record_once(data: st.DataObject, count: int) -> None:
    # Given a shard's records (settled, swept, refused, on two features), and Lambda delivering them in
    # batches from its checkpoint, failing some after any number of writes and retrying the same records,
    # a half of them, or fewer
    kinds = data.draw(st.lists(st.sampled_from(["settled", "swept", "refused"]), min_size=count, max_size=count))
    events = [
        settled(n + 1, f"0.{n + 1}", feature="chat" if n % 2 else "search")
        if kind == "settled"
        else ended(n + 1, RequestState.SWEPT if kind == "swept" else RequestState.REFUSED, f"0.0{n + 1}")
        for n, kind in enumerate(kinds)
    ]
    store = InMemoryRollupStore()
    real_apply = store.apply
    checkpoint, size = 0, data.draw(st.integers(min_value=1, max_value=count))
    for _ in range(200):  # bounded: every failure is followed by a success within a few tries below
        if checkpoint >= len(events):
            break
        batch = events[checkpoint : checkpoint + size]
        fail_after = data.draw(st.one_of(st.none(), st.integers(min_value=0, max_value=6)))
        calls = 0

        def flaky(*args: object, fail_after: int | None = fail_after, **kwargs: object) -> str | None:
            nonlocal calls
            calls += 1
            if fail_after is not None and calls > fail_after:
                raise InjectedFaultError("the invocation died")
            return real_apply(*args, **kwargs)  # type: ignore[arg-type]

        store.apply = flaky  # type: ignore[method-assign]
        try:
            aggregate(store, LANE, batch)
        except InjectedFaultError:
            size = data.draw(st.sampled_from([size, max(1, size // 2)]))
            continue
        checkpoint += len(batch)
        size = data.draw(st.integers(min_value=1, max_value=count))
    store.apply = real_apply  # type: ignore[method-assign]
    assert checkpoint >= len(events)

    # Then the targets hold exactly one application of every record
    assert totals(store) == once(events)


# --- prompt-cache prefixes ------------------------------------------------------------------------------


def use(prefix: str = "p1", managed_by: str = "costgate", write: int = 0, read: int = 0) -> PrefixUse:
    return PrefixUse(
        prefix_key=prefix,
        model=OPUS,
        managed_by=managed_by,  # type: ignore[arg-type]
        ttl="5m",
        write_tokens=write,
        read_tokens=read,
        write_premium_usd=Decimal(write) / 1_000_000,
        read_saved_usd=Decimal(read) / 1_000_000,
    )


def test_prefix_uses_add_to_their_totals_and_their_gaps_to_the_days_histogram() -> None:
    # Given a prefix last used 40 minutes ago, then three uses: 2 minutes apart, then 2 hours later
    prompt_cache = InMemoryPromptCacheStore(ManualClock())
    store = InMemoryRollupStore(prompt_cache)
    aggregate(store, LANE, [settled(1, "0.1", at=NOW - timedelta(minutes=40), prompt_cache=use(write=1000))])
    prompt_cache.gaps.clear()  # only the gaps of the batch below

    aggregate(
        store,
        LANE,
        [
            settled(2, "0.1", at=NOW, prompt_cache=use(read=1000)),
            settled(3, "0.1", at=NOW + timedelta(minutes=2), prompt_cache=use(read=1000)),
            settled(4, "0.1", at=NOW + timedelta(hours=2), prompt_cache=use(read=500)),
        ],
    )

    # Then the gaps are 40 minutes, 2 minutes and 2 hours
    assert prompt_cache.gap_histogram("chat") == GapHistogram(within_5m=1, within_1h=1, beyond_1h=1)
    (stats,) = prompt_cache.prefixes("chat")
    assert (stats.requests, stats.write_tokens, stats.read_tokens) == (4, 1000, 2500)
    assert stats.first_seen == NOW - timedelta(minutes=40)
    assert stats.last_seen == NOW + timedelta(hours=2)
    assert store.marks[GapTarget("chat", DAY)] == {LANE: padded("4")}


def test_a_prefix_the_client_manages_adds_to_its_totals_but_no_gap() -> None:
    prompt_cache = InMemoryPromptCacheStore(ManualClock())
    store = InMemoryRollupStore(prompt_cache)

    aggregate(store, LANE, [settled(1, "0.1", prompt_cache=use(managed_by="client", write=10))])

    assert prompt_cache.gaps == {}
    assert prompt_cache.prefixes("chat")[0].requests == 1
    assert PrefixTarget("chat", "p1") in store.counters


def test_a_retried_batch_loses_the_gap_it_cannot_know_rather_than_count_a_wrong_one() -> None:
    # Given a batch whose prefix totals were written, but not its gaps, before the invocation died
    prompt_cache = InMemoryPromptCacheStore(ManualClock())
    store = InMemoryRollupStore(prompt_cache)
    batch = [
        settled(1, "0.1", at=NOW, prompt_cache=use(write=100)),
        settled(2, "0.1", at=NOW + timedelta(minutes=1), prompt_cache=use(read=100)),
    ]
    real_apply = store.apply

    def die_on_gaps(target: object, *args: object, **kwargs: object) -> str | None:
        if isinstance(target, GapTarget):
            raise InjectedFaultError("died before the gaps")
        return real_apply(target, *args, **kwargs)  # type: ignore[arg-type]

    store.apply = die_on_gaps  # type: ignore[method-assign]
    with pytest.raises(InjectedFaultError):
        aggregate(store, LANE, batch)
    store.apply = real_apply  # type: ignore[method-assign]

    # When it is retried
    aggregate(store, LANE, batch)

    # Then the totals count each use once, and only the gap measured inside the batch is counted
    assert prompt_cache.prefixes("chat")[0].requests == 2
    assert prompt_cache.gap_histogram("chat") == GapHistogram(within_5m=1)


def test_a_sequence_number_is_compared_as_40_digits() -> None:
    assert padded("21258800000000008186106757") == "0" * 14 + "21258800000000008186106757"
    assert padded("9") < padded("10")
    with pytest.raises(ValueError, match="sequence"):
        padded("12a")
