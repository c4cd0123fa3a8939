"""LedgerStore's contract, for InMemoryLedgerStore and DynamoLedgerStore: a row per request id, reserved once and
ended once (settled, refused, abandoned, swept), `record` for rows settled at once with their root holds, the
rows the sweeper finds, and what the aggregator keeps of ended rows (docs/scale.md): rollups per UTC day and hour
in key order, exact sums, per-strategy counts, swept rows flagged, rejection counters.

Reads of rollups and rejections are what a reader sees once the aggregator has caught up (tests/contract/conftest.py).
"""

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from costgate.accounting.budgets import Budget, BudgetPeriod, Hold, feature_scope, tenant_scope
from costgate.accounting.ledger import (
    LedgerEntry,
    RecordOutcome,
    RejectionCount,
    RequestState,
    ReservedRequest,
    Rollup,
    new_request_id,
)
from costgate.accounting.services import record_request
from costgate.errors import ConflictError, InvalidRequestError
from costgate.pricing.cost import Strategy
from costgate.pricing.usage import TokenUsage
from costgate.routing.prompt_cache import GapHistogram, PrefixUse
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
    """The rollup the entries (one day and hour, tenant, feature and model) add up to, computed here."""
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
        hour=first.at.astimezone(UTC).hour,
    )


def prefix_use(write: int = 100) -> PrefixUse:
    return PrefixUse(
        prefix_key="3f9a0c4d5e6b7a8190a1b2c3d4e5f607",
        model="claude-opus-5-5",
        managed_by="costgate",
        ttl="5m",
        write_tokens=write,
        read_tokens=0,
        write_premium_usd=Decimal(write) / 1_000_000,
        read_saved_usd=Decimal(0),
    )


def reserved(at: datetime = NOON, held: str = "0.25", tenant: str = "acme", feature: str = "chat") -> ReservedRequest:
    return ReservedRequest(
        new_request_id(),
        at,
        tenant,
        feature,
        "claude-opus-5-5",
        Decimal(held),
        key_id="0a1b2c3d4e5f",
        requested_model="auto",
        route_tier="medium",
        route_reason="auto: medium",
        hold_shard="0a1b2c3d4e5f/chat/3/2026-11",
    )


def refuse(accounting: Accounting, at: datetime, tenant: str, feature: str) -> None:
    """What a budget's 429 leaves in the ledger: a row reserved, then ended refused."""
    row = reserved(at, held="0", tenant=tenant, feature=feature)
    accounting.ledger.reserve(row)
    assert accounting.ledger.end(row.request_id, RequestState.REFUSED) is True


def root_hold(amount: str, limit: str = "10") -> Hold:
    """A hold on the root of tenant acme's daily budget, as a batch's reservation leaves it."""
    return Hold(Budget(tenant_scope("acme"), BudgetPeriod.DAY, Decimal(limit)), "2026-11-20", Decimal(amount))


# --- a request's row: reserved, then ended once ---------------------------------------------------------------


def test_a_reserved_row_counts_nowhere_until_it_is_settled(accounting: Accounting) -> None:
    # Given a row reserved before the Claude call
    row = reserved()
    accounting.ledger.reserve(row)
    assert list(accounting.ledger.rollups(DAY, DAY)) == []

    # When it is settled with the request's exact cost
    entry = make_entry(row.request_id, usage=usage(4))
    assert accounting.ledger.settle(row.request_id, entry) is True

    # Then the day's rollup is that request's exact totals
    assert list(accounting.ledger.rollups(DAY, DAY)) == [rollup_of([entry])]


def test_a_request_id_is_reserved_once(accounting: Accounting) -> None:
    row = reserved()
    accounting.ledger.reserve(row)
    with pytest.raises(ConflictError):
        accounting.ledger.reserve(row)
    # and once ended, still not again
    assert accounting.ledger.end(row.request_id, RequestState.ABANDONED) is True
    with pytest.raises(ConflictError):
        accounting.ledger.reserve(row)


def test_a_row_ends_once(accounting: Accounting) -> None:
    row = reserved()
    accounting.ledger.reserve(row)
    entry = make_entry(row.request_id, cost_usd="0.02")

    # Settled, and the same settle again (a retry whose answer was lost) is still a success
    assert accounting.ledger.settle(row.request_id, entry) is True
    assert accounting.ledger.settle(row.request_id, entry) is True

    # But nothing else may end it any more: not a settle at another cost, not the sweeper, not an abandon
    assert accounting.ledger.settle(row.request_id, make_entry(row.request_id, cost_usd="0.03")) is False
    assert accounting.ledger.end(row.request_id, RequestState.SWEPT) is False
    assert accounting.ledger.end(row.request_id, RequestState.ABANDONED) is False

    # And the rollup counts it once, at its first cost
    (rollup,) = accounting.ledger.rollups(DAY, DAY)
    assert (rollup.requests, rollup.cost_usd, rollup.swept_requests) == (1, Decimal("0.02"), 0)


def test_ending_a_row_refused_or_abandoned_again_is_a_retry_that_changes_nothing(accounting: Accounting) -> None:
    # A retried end whose first answer was lost: the row is already in that state, which is all the caller asks
    refused, abandoned = reserved(held="0"), reserved()
    for row in (refused, abandoned):
        accounting.ledger.reserve(row)
    for _ in range(2):
        assert accounting.ledger.end(refused.request_id, RequestState.REFUSED) is True
        assert accounting.ledger.end(abandoned.request_id, RequestState.ABANDONED) is True
    # but not as the other state
    assert accounting.ledger.end(refused.request_id, RequestState.ABANDONED) is False
    (counter,) = accounting.ledger.rejections(DAY, DAY)
    assert counter.count == 1
    assert list(accounting.ledger.rollups(DAY, DAY)) == []


def test_an_unknown_request_id_cannot_be_ended(accounting: Accounting) -> None:
    assert accounting.ledger.settle("cg_unknown", make_entry("cg_unknown")) is False
    assert accounting.ledger.end("cg_unknown", RequestState.SWEPT) is False
    assert list(accounting.ledger.rollups(DAY, DAY)) == []


def test_a_row_is_ended_only_as_refused_abandoned_or_swept(accounting: Accounting) -> None:
    row = reserved()
    accounting.ledger.reserve(row)
    for state in (RequestState.SETTLED, RequestState.RESERVED):
        with pytest.raises(ValueError, match="refused, abandoned or swept"):
            accounting.ledger.end(row.request_id, state)
    assert [r.request_id for r in accounting.ledger.unsettled(NOON + timedelta(hours=1))] == [row.request_id]


def test_a_swept_row_is_counted_at_its_hold_and_flagged(accounting: Accounting) -> None:
    # Given a row that held $0.25 and was never settled
    row = reserved(held="0.25")
    accounting.ledger.reserve(row)

    # When the sweeper ends it, once (a second sweep finds it ended)
    assert accounting.ledger.end(row.request_id, RequestState.SWEPT) is True
    assert accounting.ledger.end(row.request_id, RequestState.SWEPT) is False

    # Then a late settle loses, and the rollup counts it at what it held, flagged swept
    assert accounting.ledger.settle(row.request_id, make_entry(row.request_id, cost_usd="0.01")) is False
    (rollup,) = accounting.ledger.rollups(DAY, DAY)
    assert (rollup.requests, rollup.cost_usd, rollup.swept_requests, rollup.swept_usd) == (
        1,
        Decimal("0.25"),
        1,
        Decimal("0.25"),
    )
    assert (rollup.tenant, rollup.feature, rollup.model, rollup.hour) == ("acme", "chat", "claude-opus-5-5", 12)


def test_an_abandoned_row_counts_nowhere(accounting: Accounting) -> None:
    # Given a row abandoned before anything was sent (a crash, a failure before the Claude call)
    row = reserved()
    accounting.ledger.reserve(row)
    assert accounting.ledger.end(row.request_id, RequestState.ABANDONED) is True

    # Then it is neither spent, nor refused, nor left for the sweeper
    assert list(accounting.ledger.rollups(DAY, DAY)) == []
    assert list(accounting.ledger.rejections(DAY, DAY)) == []
    assert list(accounting.ledger.unsettled(NOON + timedelta(days=1))) == []
    assert accounting.ledger.settle(row.request_id, make_entry(row.request_id)) is False


def test_find_answers_a_settled_row_whole_and_nothing_for_any_other(accounting: Accounting) -> None:
    # Given a row reserved, one settled with an entry that used a cached prefix, one refused and one recorded at once
    waiting, settled, refused = reserved(), reserved(), reserved()
    for row in (waiting, settled, refused):
        accounting.ledger.reserve(row)
    use = PrefixUse("p" * 64, "claude-opus-5-5", "costgate", "5m", 2048, 0, Decimal("0.00128"), Decimal(0))
    entry = replace(
        make_entry(settled.request_id, at=NOON, usage=usage(3), prompt_cache=use),
        key_id=settled.key_id,  # what the gateway settles with: the reserved row's own who and why
        requested_model=settled.requested_model,
        route_tier=settled.route_tier,
        route_reason=settled.route_reason,
    )
    assert accounting.ledger.settle(settled.request_id, entry)
    assert accounting.ledger.end(refused.request_id, RequestState.REFUSED)
    hit = make_entry(new_request_id(), at=NOON, savings={Strategy.ANSWER_CACHE: "0.02"}, cost_usd="0")
    assert record_request(accounting.ledger, hit) is RecordOutcome.RECORDED

    # Then find reads the settled rows back exactly as they were settled, and nothing for the others
    assert accounting.ledger.find(settled.request_id) == entry
    assert accounting.ledger.find(hit.request_id) == hit
    assert accounting.ledger.find(waiting.request_id) is None
    assert accounting.ledger.find(refused.request_id) is None
    assert accounting.ledger.find(new_request_id()) is None


def test_the_sweeper_finds_the_rows_still_reserved_before_a_time(accounting: Accounting) -> None:
    # Given two rows reserved at noon (one then settled) and one at 12:30, in UTC+9
    early, settled = reserved(), reserved()
    late = reserved(datetime(2026, 11, 20, 21, 30, tzinfo=timezone(timedelta(hours=9))))
    for row in (early, settled, late):
        accounting.ledger.reserve(row)
    assert accounting.ledger.settle(settled.request_id, make_entry(settled.request_id, cost_usd="0.01"))

    # Then the rows still reserved before 12:15 UTC are the other noon one, read back whole
    (found,) = accounting.ledger.unsettled(NOON + timedelta(minutes=15))
    assert found == early
    # And before 13:00 the late one too; none before noon
    later = accounting.ledger.unsettled(NOON + timedelta(hours=1))
    assert sorted(r.request_id for r in later) == sorted([early.request_id, late.request_id])
    assert list(accounting.ledger.unsettled(NOON)) == []


def test_a_settle_racing_the_sweeper_ends_the_row_exactly_once(accounting: Accounting) -> None:
    # Given 20 reserved rows, each settled by one writer while another sweeps it at the same moment
    rows = [reserved() for _ in range(20)]
    for row in rows:
        accounting.ledger.reserve(row)
    start = threading.Barrier(2)

    def settle_all() -> list[bool]:
        ledger = accounting.another_ledger()
        start.wait()
        return [ledger.settle(r.request_id, make_entry(r.request_id, cost_usd="0.01")) for r in rows]

    def sweep_all() -> list[bool]:
        ledger = accounting.another_ledger()
        start.wait()
        return [ledger.end(r.request_id, RequestState.SWEPT) for r in rows]

    with ThreadPoolExecutor(max_workers=2) as pool:
        settled_future, swept_future = pool.submit(settle_all), pool.submit(sweep_all)
        settled, swept = settled_future.result(), swept_future.result()

    # Then each row was ended by exactly one of them, and the rollup counts each once at what that one said
    assert all(a != b for a, b in zip(settled, swept, strict=True))
    (rollup,) = accounting.ledger.rollups(DAY, DAY)
    assert (rollup.requests, rollup.swept_requests) == (20, sum(swept))
    assert rollup.cost_usd == Decimal("0.01") * sum(settled) + Decimal("0.25") * sum(swept)


# --- record: rows settled at once, with their root holds ---------------------------------------------------------


def test_a_new_request_is_recorded_once_into_its_rollup(accounting: Accounting) -> None:
    # Given a request with every token category (an answer-cache hit, a batch request)
    entry = make_entry("req-1", usage=usage(4))

    # When it is recorded
    recorded = accounting.ledger.record(entry)

    # Then the store says so, and the day's rollup is that request's exact totals
    assert recorded is True
    assert list(accounting.ledger.rollups(DAY, DAY)) == [rollup_of([entry])]


def test_the_same_request_id_again_changes_nothing_whatever_it_holds(accounting: Accounting) -> None:
    # Given a recorded request, with a prefix use and $1 held and settled on the tenant's budget
    first_hold = [root_hold("1")]
    accounting.hold_elsewhere(first_hold[0])
    original = make_entry("req-1", usage=usage(3), prompt_cache=prefix_use())
    assert record_request(accounting.ledger, original, first_hold) is RecordOutcome.RECORDED
    after_first = accounting.budgets.remaining(first_hold)
    prefixes = accounting.prompt_cache.prefixes()

    # When the same id comes again with another cost, feature, prefix use and its own $1 hold
    second_hold = [root_hold("1")]
    accounting.hold_elsewhere(second_hold[0])
    retry = make_entry("req-1", feature="search", usage=usage(9), cost_usd="5", prompt_cache=prefix_use(9000))
    outcome = record_request(accounting.ledger, retry, second_hold)

    # Then it is a duplicate: the rollup counts the original once, nothing is settled (the second hold
    # stays held for its caller to release), and the prefix totals did not move
    assert outcome is RecordOutcome.DUPLICATE
    assert list(accounting.ledger.rollups(DAY, DAY)) == [rollup_of([original])]
    assert after_first == Decimal(10) - original.cost.total_usd
    assert accounting.budgets.remaining(second_hold) == after_first - Decimal(1)
    assert accounting.prompt_cache.prefixes() == prefixes


def test_a_reserved_id_cannot_be_recorded(accounting: Accounting) -> None:
    row = reserved()
    accounting.ledger.reserve(row)
    assert accounting.ledger.record(make_entry(row.request_id)) is False
    assert [r.request_id for r in accounting.ledger.unsettled(NOON + timedelta(hours=1))] == [row.request_id]


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
    # Given $0.3 held on the roots of a tenant's and a feature's daily budgets
    budgets = [
        Budget(tenant_scope("acme"), BudgetPeriod.DAY, Decimal(5)),
        Budget(feature_scope("acme", "chat"), BudgetPeriod.DAY, Decimal(1)),
    ]
    holds = [Hold(budget, "2026-11-20", Decimal("0.3")) for budget in budgets]
    for hold in holds:
        accounting.hold_elsewhere(hold)
    entry = make_entry("req-1", cost_usd="0.0000123")

    # When the request is recorded with its holds
    assert accounting.ledger.record(entry, holds) is True

    # Then each window has the exact cost committed in place of the hold
    assert [accounting.budgets.remaining([hold]) for hold in holds] == [Decimal("4.9999877"), Decimal("0.9999877")]


def test_concurrent_records_of_one_request_id_count_it_once(accounting: Accounting) -> None:
    # Given 6 writers (6 containers) holding the same request, each with its own hold on one budget
    holds = [[root_hold("1")] for _ in range(6)]
    for hold in holds:
        accounting.hold_elsewhere(hold[0])
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


def test_a_record_without_holds_settles_no_window(accounting: Accounting) -> None:
    # Given a hold on a window, and the request recorded without holds
    hold = root_hold("1", limit="2")
    accounting.hold_elsewhere(hold)
    accounting.ledger.record(make_entry("req-1", cost_usd="0.5"))
    # Then the hold is untouched: only the holds passed to record are settled
    assert accounting.budgets.remaining([hold]) == Decimal(1)


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

    # When reading Nov 18 .. 20, and one tenant's
    rollups = list(accounting.ledger.rollups(date(2026, 11, 18), date(2026, 11, 20)))
    globex = list(accounting.ledger.rollups(date(2026, 11, 18), date(2026, 11, 20), tenant="globex"))

    # Then each day's rollups are there, in day order, and the days outside the range are not
    assert [(r.day.day, r.tenant, r.feature, r.model, r.requests, r.cost_usd) for r in rollups] == [
        (18, "acme", "chat", "claude-opus-5-5", 2, Decimal("0.3")),
        (19, "acme", "chat", "claude-opus-5-5", 1, Decimal("0.003")),
        (19, "globex", "chat", "claude-haiku-4-5", 1, Decimal("0.004")),
        (20, "acme", "search", "claude-opus-5-5", 1, Decimal("0.05")),
    ]
    assert globex == [rollups[2]]


def test_rollups_of_one_day_come_in_key_order_hour_by_hour(accounting: Accounting) -> None:
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
    # and one of them again at 09:00 and at 23:00
    for hour in (23, 9):
        at = datetime(2026, 11, 20, hour, tzinfo=UTC)
        accounting.ledger.record(make_entry(f"req-{hour}", at=at, tenant="acme", feature="chat.v2", cost_usd="1"))

    # When the day is read
    read = [(r.tenant, r.feature, r.model, r.hour) for r in accounting.ledger.rollups(DAY, DAY)]

    # Then they come by tenant, then feature, then model, as strings ('#' before any tag character), then hour
    assert read == sorted([(*key, 12) for key in keys] + [("acme", "chat.v2", "claude-opus-5-5", h) for h in (9, 23)])


def test_range_with_no_rollups_is_empty(accounting: Accounting) -> None:
    # Given a request on Nov 20
    accounting.ledger.record(make_entry("req-1", at=NOON))

    # When reading the days around it, or another tenant's
    # Then nothing is returned for them
    assert list(accounting.ledger.rollups(date(2026, 11, 21), date(2026, 11, 30))) == []
    assert list(accounting.ledger.rollups(date(2026, 11, 19), date(2026, 11, 19))) == []
    assert list(accounting.ledger.rollups(DAY, DAY, tenant="globex")) == []


def test_a_late_evening_west_of_utc_counts_on_the_next_utc_day(accounting: Accounting) -> None:
    # Given a request at 23:59:59 on Nov 20 in UTC−5 (04:59:59 on Nov 21 UTC)
    entry = make_entry("req-late", at=datetime(2026, 11, 20, 23, 59, 59, tzinfo=timezone(timedelta(hours=-5))))

    # When it is recorded
    accounting.ledger.record(entry)

    # Then its rollup is on Nov 21 at 04:00, and Nov 20 has nothing
    assert list(accounting.ledger.rollups(DAY, DAY)) == []
    (rollup,) = accounting.ledger.rollups(date(2026, 11, 21), date(2026, 11, 21))
    assert (rollup.day, rollup.hour, rollup.cost_usd) == (date(2026, 11, 21), 4, entry.cost.total_usd)


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


def test_rejections_are_counted_per_day_hour_tenant_and_feature(accounting: Accounting) -> None:
    # Given rejections for two tenants and features on Nov 20, one on Nov 21 (23:30 in UTC−5), one on Nov 22
    for tenant, feature in [("acme", "chat"), ("acme", "chat"), ("acme", "search"), ("globex", "chat")]:
        refuse(accounting, NOON, tenant, feature)
    refuse(accounting, datetime(2026, 11, 20, 23, 30, tzinfo=timezone(timedelta(hours=-5))), "acme", "chat")
    refuse(accounting, datetime(2026, 11, 22, 0, 0, tzinfo=UTC), "acme", "chat")

    # When reading Nov 20 .. 21
    counts = list(accounting.ledger.rejections(date(2026, 11, 20), date(2026, 11, 21)))

    # Then each day × tenant × feature × hour has its count, day by day, and Nov 22 is outside the range
    assert counts == [
        RejectionCount(date(2026, 11, 20), "acme", "chat", 2, hour=12),
        RejectionCount(date(2026, 11, 20), "acme", "search", 1, hour=12),
        RejectionCount(date(2026, 11, 20), "globex", "chat", 1, hour=12),
        RejectionCount(date(2026, 11, 21), "acme", "chat", 1, hour=4),
    ]
    # And one tenant's are read alone
    assert [c.tenant for c in accounting.ledger.rejections(DAY, DAY, tenant="globex")] == ["globex"]


def test_rollups_and_rejections_share_a_day_without_mixing(accounting: Accounting) -> None:
    # Given a request and a rejection on the same day (the same partition in the table)
    accounting.ledger.record(make_entry("req-1", at=NOON, cost_usd="0.1"))
    refuse(accounting, NOON, "acme", "chat")

    # When reading the day's rollups and rejections
    rollups = list(accounting.ledger.rollups(DAY, DAY))
    rejections = list(accounting.ledger.rejections(DAY, DAY))

    # Then each reads only its own items
    assert [(r.tenant, r.feature, r.requests) for r in rollups] == [("acme", "chat", 1)]
    assert [(r.tenant, r.feature, r.count) for r in rejections] == [("acme", "chat", 1)]


def test_concurrent_rejections_all_count(accounting: Accounting) -> None:
    # Given 6 writers, each refusing 5 requests for the same tenant and feature at once
    writers, each = 6, 5
    start = threading.Barrier(writers)

    def reject(_: int) -> None:
        ledger = accounting.another_ledger()
        start.wait()
        for _ in range(each):
            row = reserved(held="0")
            ledger.reserve(row)
            assert ledger.end(row.request_id, RequestState.REFUSED) is True

    # When they run
    with ThreadPoolExecutor(max_workers=writers) as pool:
        list(pool.map(reject, range(writers)))

    # Then the counter holds every one of them
    (counter,) = accounting.ledger.rejections(DAY, DAY)
    assert counter.count == writers * each


@pytest.mark.parametrize(("tenant", "feature"), [("ac me", "chat"), ("acme", "chat#1"), ("", "chat")])
def test_a_row_with_an_invalid_tag_cannot_be_made(tenant: str, feature: str) -> None:
    with pytest.raises(InvalidRequestError, match="is invalid"):
        reserved(tenant=tenant, feature=feature)


# --- what the aggregator hands on to the prompt cache ---------------------------------------------------------


def test_a_prefix_seen_again_counts_its_gap_for_its_feature(accounting: Accounting) -> None:
    # Given a prefix used at noon and again three minutes later, by requests settled in the ledger
    for n, minutes in enumerate((0, 3)):
        row = reserved(NOON + timedelta(minutes=minutes))
        accounting.ledger.reserve(row)
        entry = make_entry(row.request_id, at=row.at, prompt_cache=prefix_use())
        assert accounting.ledger.settle(row.request_id, entry), n

    # Then a reader that has not cached the histogram sees the second use within 5 minutes of the first
    # (the first had none before it: beyond an hour)
    assert accounting.another_prompt_cache().gap_histogram("chat") == GapHistogram(within_5m=1, beyond_1h=1)
