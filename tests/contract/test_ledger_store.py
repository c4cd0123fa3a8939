"""LedgerStore's contract, for InMemoryLedgerStore and DynamoLedgerStore: exactly-once recording with its
budget settlement, rollups per UTC day in key order, exact sums, per-strategy counts, rejection counters."""

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from costgate.accounting.budgets import Budget, BudgetPeriod, Hold, tenant_scope
from costgate.accounting.ledger import LedgerEntry, RecordOutcome, RejectionCount, Rollup
from costgate.accounting.services import record_request, reserve_budget
from costgate.errors import InvalidRequestError
from costgate.pricing.cost import Strategy
from costgate.pricing.usage import TokenUsage
from costgate.routing.prompt_cache import GapBucket, GapHistogram, PrefixUse
from tests.contract.conftest import Accounting
from tests.fakes.accounting import make_entry

DAY = date(2026, 11, 20)
NOON = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def usage(n: int) -> TokenUsage:
    """Varied usage, so every entry has a different cost with up to 7 decimal places."""
    return TokenUsage(
        input_tokens=100 + 37 * n,
        output_tokens=50 + 11 * n,
        cache_write_5m_tokens=13 * (n % 5),
        cache_write_1h_tokens=7 * (n % 3),
        cache_read_tokens=1000 + 101 * n,
        web_search_requests=n % 2,
    )


def rollup_of(entries: list[LedgerEntry]) -> Rollup:
    """The rollup the entries (one day, tenant, feature and model) add up to, computed here."""
    first = entries[0]
    applied = {s: [e for e in entries if s in e.applied_strategies] for s in Strategy}
    return Rollup(
        day=first.day,
        tenant=first.tenant,
        feature=first.feature,
        model=first.model,
        requests=len(entries),
        cost_usd=sum((e.cost.total_usd for e in entries), Decimal(0)),
        baseline_cost_usd=sum((e.baseline_cost_usd for e in entries), Decimal(0)),
        input_tokens=sum(e.usage.input_tokens for e in entries),
        output_tokens=sum(e.usage.output_tokens for e in entries),
        cache_write_5m_tokens=sum(e.usage.cache_write_5m_tokens for e in entries),
        cache_write_1h_tokens=sum(e.usage.cache_write_1h_tokens for e in entries),
        cache_read_tokens=sum(e.usage.cache_read_tokens for e in entries),
        web_search_requests=sum(e.usage.web_search_requests for e in entries),
        savings_usd={
            s: sum((e.savings[s] for e in entries if s in e.savings), Decimal(0))
            for s in Strategy
            if any(s in e.savings for e in entries)
        },
        strategy_requests={s: len(changed) for s, changed in applied.items() if changed},
        strategy_cost_usd={
            s: sum((e.cost.total_usd for e in changed), Decimal(0)) for s, changed in applied.items() if changed
        },
    )


def prefix_use(write: int = 100, gap: GapBucket | None = GapBucket.BEYOND_1H) -> PrefixUse:
    return PrefixUse(
        prefix_key="3f9a0c4d5e6b7a8190a1b2c3d4e5f607",
        model="claude-opus-5-5",
        managed_by="costgate",
        ttl="5m",
        gap=gap,
        write_tokens=write,
        read_tokens=0,
        write_premium_usd=Decimal(write) / 1_000_000,
        read_saved_usd=Decimal(0),
    )


# --- recording -------------------------------------------------------------------------------------------


def test_a_new_request_is_recorded_once_into_its_rollup(accounting: Accounting) -> None:
    # Given a request with every token category
    entry = make_entry("req-1", usage=usage(4))

    # When it is recorded
    recorded = accounting.ledger.record(entry)

    # Then the store says so, and the day's rollup is that request's exact totals
    assert recorded is True
    assert list(accounting.ledger.rollups(DAY, DAY)) == [rollup_of([entry])]


def test_the_same_request_id_again_changes_nothing_whatever_it_holds(accounting: Accounting) -> None:
    # Given a recorded request, with a prefix use and $1 held and settled on the tenant's budget
    budget = Budget(tenant_scope("acme"), BudgetPeriod.DAY, Decimal(10))
    first_hold = reserve_budget(accounting.budgets, [budget], Decimal(1), NOON).holds
    original = make_entry("req-1", usage=usage(3), prompt_cache=prefix_use())
    assert record_request(accounting.ledger, original, first_hold) is RecordOutcome.RECORDED
    after_first = accounting.budgets.remaining(first_hold)
    assert after_first is not None
    prefixes = accounting.prompt_cache.prefixes()

    # When the same id comes again with another cost, feature, prefix use and its own $1 hold
    second_hold = reserve_budget(accounting.budgets, [budget], Decimal(1), NOON).holds
    retry = make_entry("req-1", feature="search", usage=usage(9), cost_usd="5", prompt_cache=prefix_use(9000))
    outcome = record_request(accounting.ledger, retry, second_hold)

    # Then it is a duplicate: the rollup counts the original once, nothing is settled (the second hold
    # stays held for its caller to release), and the prefix totals did not move
    assert outcome is RecordOutcome.DUPLICATE
    assert list(accounting.ledger.rollups(DAY, DAY)) == [rollup_of([original])]
    assert accounting.budgets.remaining(second_hold) == after_first - Decimal(1)
    assert accounting.prompt_cache.prefixes() == prefixes
    assert after_first == Decimal(10) - original.cost.total_usd


def test_the_fake_and_dynamo_agree_on_duplicates(accounting: Accounting) -> None:
    # Given a sequence with a replayed id (moved from the DynamoDB suite, where it compared the two)
    sequence = [
        make_entry("a", usage=usage(1)),
        make_entry("b", usage=usage(2)),
        make_entry("a", feature="search", usage=usage(5)),
    ]

    # When it is recorded
    answers = [accounting.ledger.record(e) for e in sequence]

    # Then the replay is refused and only the first two are in the rollup
    assert answers == [True, True, False]
    assert list(accounting.ledger.rollups(DAY, DAY)) == [rollup_of(sequence[:2])]


def test_holds_are_settled_to_the_exact_cost_by_the_record(accounting: Accounting) -> None:
    # Given $0.3 held on a tenant's and a feature's daily budgets
    budgets = [
        Budget(tenant_scope("acme"), BudgetPeriod.DAY, Decimal(5)),
        Budget("feature:acme/chat", BudgetPeriod.DAY, Decimal(1)),
    ]
    reservation = reserve_budget(accounting.budgets, budgets, Decimal("0.3"), NOON)
    entry = make_entry("req-1", cost_usd="0.0000123")

    # When the request is recorded with its holds
    assert accounting.ledger.record(entry, reservation.holds) is True

    # Then each window has the exact cost committed in place of the hold
    assert [accounting.budgets.remaining([hold]) for hold in reservation.holds] == [
        Decimal("4.9999877"),
        Decimal("0.9999877"),
    ]


def test_concurrent_records_of_one_request_id_count_it_once(accounting: Accounting) -> None:
    # Given 6 writers (6 containers) holding the same request, each with its own hold on one budget
    budget = Budget(tenant_scope("acme"), BudgetPeriod.DAY, Decimal(10))
    holds = [reserve_budget(accounting.budgets, [budget], Decimal(1), NOON).holds for _ in range(6)]
    entry = make_entry("req-race", cost_usd="0.25")
    ledgers = [accounting.another_ledger() for _ in range(6)]
    start = threading.Barrier(6)

    def write(n: int) -> bool:
        start.wait()
        return ledgers[n].record(entry, holds[n])

    # When they all record at once
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(write, range(6)))

    # Then exactly one recorded it and settled its hold; the other five holds are still held
    assert Counter(answers) == {True: 1, False: 5}
    assert list(accounting.ledger.rollups(DAY, DAY)) == [rollup_of([entry])]
    assert accounting.budgets.remaining(holds[0]) == Decimal(10) - Decimal("0.25") - 5


# --- rollups -----------------------------------------------------------------------------------------------


def test_rollups_over_a_range_return_each_days_items_only(accounting: Accounting) -> None:
    # Given requests on Nov 17 .. 21, two tenants on the 19th
    def at(day: int) -> datetime:
        return datetime(2026, 11, day, 8, 0, tzinfo=UTC)

    entries = [
        make_entry("before", at=at(17), cost_usd="9"),
        make_entry("d18-a", at=at(18), cost_usd="0.1"),
        make_entry("d18-b", at=at(18), cost_usd="0.2"),
        make_entry("d19-acme", at=at(19), cost_usd="0.003"),
        make_entry("d19-globex", at=at(19), tenant="globex", model="claude-haiku-4-5", cost_usd="0.004"),
        make_entry("d20", at=at(20), feature="search", cost_usd="0.05"),
        make_entry("after", at=at(21), cost_usd="7"),
    ]
    for entry in entries:
        assert accounting.ledger.record(entry) is True

    # When reading Nov 18 .. 20
    rollups = list(accounting.ledger.rollups(date(2026, 11, 18), date(2026, 11, 20)))

    # Then each day's rollups are there, in day order, and the days outside the range are not
    assert [(r.day.day, r.tenant, r.feature, r.model, r.requests, r.cost_usd) for r in rollups] == [
        (18, "acme", "chat", "claude-opus-5-5", 2, Decimal("0.3")),
        (19, "acme", "chat", "claude-opus-5-5", 1, Decimal("0.003")),
        (19, "globex", "chat", "claude-haiku-4-5", 1, Decimal("0.004")),
        (20, "acme", "search", "claude-opus-5-5", 1, Decimal("0.05")),
    ]


def test_rollups_of_one_day_come_in_sort_key_order(accounting: Accounting) -> None:
    # Given one day's rollups whose tags share prefixes ('#' separates them in the table's sort key)
    keys = [
        ("acme-labs", "chat", "claude-opus-5-5"),
        ("acme", "chat.v2", "claude-opus-5-5"),
        ("acme", "chat", "claude-sonnet-5-5"),
        ("acme", "chat", "claude-haiku-4-5"),
        ("Acme", "chat", "claude-opus-5-5"),
        ("acme", "chat-2", "claude-opus-5-5"),
    ]
    for n, (tenant, feature, model) in enumerate(keys):
        accounting.ledger.record(make_entry(f"req-{n}", tenant=tenant, feature=feature, model=model, cost_usd="1"))

    # When the day is read
    read = [(r.tenant, r.feature, r.model) for r in accounting.ledger.rollups(DAY, DAY)]

    # Then they come by tenant, then feature, then model, as strings ('#' before any tag character)
    assert read == sorted(keys)


def test_range_with_no_rollups_is_empty(accounting: Accounting) -> None:
    # Given a request on Nov 20
    accounting.ledger.record(make_entry("req-1", at=NOON))

    # When reading the days around it
    # Then nothing is returned for them
    assert list(accounting.ledger.rollups(date(2026, 11, 21), date(2026, 11, 30))) == []
    assert list(accounting.ledger.rollups(date(2026, 11, 19), date(2026, 11, 19))) == []


def test_a_late_evening_west_of_utc_counts_on_the_next_utc_day(accounting: Accounting) -> None:
    # Given a request at 23:59:59 on Nov 20 in UTC−5 (04:59:59 on Nov 21 UTC)
    entry = make_entry("req-late", at=datetime(2026, 11, 20, 23, 59, 59, tzinfo=timezone(timedelta(hours=-5))))

    # When it is recorded
    accounting.ledger.record(entry)

    # Then its rollup is on Nov 21, and Nov 20 has nothing
    assert list(accounting.ledger.rollups(DAY, DAY)) == []
    (rollup,) = accounting.ledger.rollups(date(2026, 11, 21), date(2026, 11, 21))
    assert (rollup.day, rollup.cost_usd) == (date(2026, 11, 21), entry.cost.total_usd)


def test_costs_below_a_millionth_of_a_dollar_add_up_exactly(accounting: Accounting) -> None:
    # Given three one-token Haiku 5.5 requests: $0.0000001 each, which moto once rendered as '1E-7'
    entries = [make_entry(f"tiny-{n}", model="claude-haiku-5-5", usage=TokenUsage(input_tokens=1)) for n in range(3)]
    # When they are recorded into one rollup
    for entry in entries:
        assert record_request(accounting.ledger, entry) is RecordOutcome.RECORDED
    # Then the rollup holds their exact sum
    (rollup,) = list(accounting.ledger.rollups(entries[0].day, entries[0].day))
    assert rollup.cost_usd == Decimal("0.0000003")
    assert rollup.requests == 3


def test_each_strategys_requests_and_cost_reach_the_rollup(accounting: Accounting) -> None:
    # Given, in one rollup: a request routed and cached, one that only wrote to the cache (a negative
    # saving), one with a zero batch saving beside a tiny routing one, and one no strategy touched
    entries = [
        make_entry("both", cost_usd="0.1", savings={Strategy.ROUTING: "0.3", Strategy.PROMPT_CACHE: "0.05"}),
        make_entry("write", cost_usd="0.0625", savings={Strategy.PROMPT_CACHE: "-0.0125"}),
        make_entry("zero", cost_usd="0.2", savings={Strategy.BATCH: "0", Strategy.ROUTING: "0.0000001"}),
        make_entry("plain", cost_usd="0.7"),
    ]
    for entry in entries:
        assert accounting.ledger.record(entry) is True

    # When reading the rollup back
    (rollup,) = accounting.ledger.rollups(DAY, DAY)

    # Then each strategy counts the requests it changed (negative savings too, zero ones not) and their cost
    assert rollup.strategy_requests == {Strategy.ROUTING: 2, Strategy.PROMPT_CACHE: 2}
    assert rollup.strategy_cost_usd == {Strategy.ROUTING: Decimal("0.3"), Strategy.PROMPT_CACHE: Decimal("0.1625")}
    assert rollup.savings_usd[Strategy.PROMPT_CACHE] == Decimal("0.0375")
    assert rollup.savings_usd[Strategy.BATCH] == Decimal(0)
    assert rollup == rollup_of(entries)


# --- budget rejections ---------------------------------------------------------------------------------------


def test_rejections_are_counted_per_day_tenant_and_feature(accounting: Accounting) -> None:
    # Given rejections for two tenants and features on Nov 20, one on Nov 21 (23:30 in UTC−5), one on Nov 22
    ledger = accounting.ledger
    for tenant, feature in [("acme", "chat"), ("acme", "chat"), ("acme", "search"), ("globex", "chat")]:
        ledger.count_rejection(NOON, tenant, feature)
    ledger.count_rejection(datetime(2026, 11, 20, 23, 30, tzinfo=timezone(timedelta(hours=-5))), "acme", "chat")
    ledger.count_rejection(datetime(2026, 11, 22, 0, 0, tzinfo=UTC), "acme", "chat")

    # When reading Nov 20 .. 21
    counts = list(ledger.rejections(date(2026, 11, 20), date(2026, 11, 21)))

    # Then each day × tenant × feature has its count, day by day, and Nov 22 is outside the range
    assert counts == [
        RejectionCount(date(2026, 11, 20), "acme", "chat", 2),
        RejectionCount(date(2026, 11, 20), "acme", "search", 1),
        RejectionCount(date(2026, 11, 20), "globex", "chat", 1),
        RejectionCount(date(2026, 11, 21), "acme", "chat", 1),
    ]


def test_rollups_and_rejections_share_a_day_without_mixing(accounting: Accounting) -> None:
    # Given a request and a rejection on the same day (the same partition in the table)
    accounting.ledger.record(make_entry("req-1", at=NOON, cost_usd="0.1"))
    accounting.ledger.count_rejection(NOON, "acme", "chat")

    # When reading the day's rollups and rejections
    rollups = list(accounting.ledger.rollups(DAY, DAY))
    rejections = list(accounting.ledger.rejections(DAY, DAY))

    # Then each reads only its own items
    assert [(r.tenant, r.feature, r.requests) for r in rollups] == [("acme", "chat", 1)]
    assert [(r.tenant, r.feature, r.count) for r in rejections] == [("acme", "chat", 1)]


def test_concurrent_rejections_all_count(accounting: Accounting) -> None:
    # Given 6 writers, each counting 5 rejections for the same tenant and feature at once
    writers, each = 6, 5
    start = threading.Barrier(writers)

    def reject(_: int) -> None:
        ledger = accounting.another_ledger()
        start.wait()
        for _ in range(each):
            ledger.count_rejection(NOON, "acme", "chat")

    # When they run
    with ThreadPoolExecutor(max_workers=writers) as pool:
        list(pool.map(reject, range(writers)))

    # Then the counter holds every one of them
    (counter,) = accounting.ledger.rejections(DAY, DAY)
    assert counter.count == writers * each


@pytest.mark.parametrize(("tenant", "feature"), [("ac me", "chat"), ("acme", "chat#1"), ("", "chat")])
def test_a_rejection_with_an_invalid_tag_is_refused_and_not_counted(
    accounting: Accounting, tenant: str, feature: str
) -> None:
    with pytest.raises(InvalidRequestError, match="is invalid"):
        accounting.ledger.count_rejection(NOON, tenant, feature)
    assert list(accounting.ledger.rejections(DAY, DAY)) == []


def test_a_gap_in_a_recorded_request_counts_for_its_feature(accounting: Accounting) -> None:
    # Given a request whose prefix use carries a gap: the record adds it to the feature's histogram
    accounting.ledger.record(make_entry("req-1", prompt_cache=prefix_use(gap=GapBucket.WITHIN_5M)))
    # Then a reader that has not cached the histogram sees it
    assert accounting.another_prompt_cache().gap_histogram("chat") == GapHistogram(within_5m=1)


def test_a_record_without_holds_settles_no_window(accounting: Accounting) -> None:
    # Given a hold on a window that was reserved, and the request recorded without holds
    budget = Budget(tenant_scope("acme"), BudgetPeriod.DAY, Decimal(2))
    hold = Hold(budget, "2026-11-20", Decimal(1))
    accounting.budgets.reserve([hold])
    accounting.ledger.record(make_entry("req-1", cost_usd="0.5"))
    # Then the hold is untouched: only the holds passed to record are settled
    assert accounting.budgets.remaining([hold]) == Decimal(1)
