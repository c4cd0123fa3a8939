"""BudgetStore's contract, for InMemoryBudgetStore and DynamoBudgetStore (docs/scale.md §3): a request's hold is
one conditional take from its pair's shard; draws move money from a budget window's root to a shard, all or none,
never past the limit; a budget that runs short is flagged dry, refused at the shard, and whole again once gathered;
give-backs skip a day that has closed; a lowered limit gathers at once; roots' room for batch holds; definitions
(up to 30 s stale).

Holds are made as the gateway makes them (`costgate.accounting.holds`: limits, one take, draws until it holds).
How DynamoBudgetStore lays the items out is tested in tests/integration/test_budgets_dynamo.py.
"""

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from costgate.accounting.budgets import (
    Budget,
    BudgetPeriod,
    Hold,
    ShardHold,
    feature_scope,
    key_scope,
    make_hold,
    tenant_scope,
)
from costgate.accounting.holds import check_limits, complete_hold
from costgate.accounting.ports import BudgetStore, Grant
from costgate.dal.budgets import DynamoBudgetStore
from costgate.errors import BudgetExceededError, InvalidRequestError
from tests.contract.conftest import FAKE
from tests.fakes.accounting import InMemoryBudgetStore
from tests.fakes.clock import ManualClock
from tests.integration import hold_on_root

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
DAY = "2026-11-20"
MONTH = "2026-11"
KEY_ID = "0a1b2c3d4e5f"


@dataclass
class Budgets:
    """The store under test; `container(clock)`: the store another container holds over the same data;
    `hold_elsewhere(hold)`: what a batch's hold leaves on a root."""

    store: BudgetStore
    container: Callable[[ManualClock], BudgetStore]
    hold_elsewhere: Callable[[Hold], None]


@pytest.fixture
def budgets(table: str) -> Budgets:
    if table == FAKE:
        store = InMemoryBudgetStore()
        return Budgets(store, lambda clock: store, store.reserve_root)
    return Budgets(DynamoBudgetStore(clock=ManualClock()), lambda clock: DynamoBudgetStore(clock=clock), hold_on_root)


@pytest.fixture
def store(budgets: Budgets) -> BudgetStore:
    return budgets.store


def tenant_daily(limit: str = "5", tenant: str = "acme", shards: int = 1) -> Budget:
    return Budget(tenant_scope(tenant), BudgetPeriod.DAY, Decimal(limit), shards=shards)


def key_daily(limit: str = "1") -> Budget:
    return Budget(key_scope(KEY_ID), BudgetPeriod.DAY, Decimal(limit))


def feature_monthly(limit: str = "100") -> Budget:
    return Budget(feature_scope("acme", "chat"), BudgetPeriod.MONTH, Decimal(limit))


def hold(store: BudgetStore, budgets: list[Budget], amount: str, at: datetime = NOW) -> ShardHold:
    """As the gateway holds a request's worst case: the limits, one take, draws until it holds."""
    held = make_hold(KEY_ID, "chat", budgets, Decimal(amount), at)
    check_limits(held)
    complete_hold(store, held, store.take(held))
    return held


def usd(amount: Decimal | None) -> str:
    """An amount as a figure, whatever places it was computed to ("0.1", not "0.100000000")."""
    return "None" if amount is None else format(amount.normalize(), "f")


def committed(store: BudgetStore, budget: Budget, window: str = DAY) -> Decimal:
    """What the window's root has handed out (to shards and batch holds)."""
    found = store.roots([(budget, window)])
    return found[(budget.scope, budget.period.value, window)].committed_usd if found else Decimal(0)


def in_use(store: BudgetStore, budget: Budget, window: str = DAY) -> Decimal:
    """Spent plus held: what the root handed out less what the shards still hold."""
    return committed(store, budget, window) - store.held_in_shards(budget, window)


# --- take and draw ---------------------------------------------------------------------------------------------


def test_nothing_is_handed_out_before_the_first_hold(store: BudgetStore) -> None:
    held = make_hold(KEY_ID, "chat", [tenant_daily()], Decimal("0.3"), NOW)
    assert store.take(held).ok is False
    assert store.roots([(tenant_daily(), DAY)]) == {}
    assert store.held_in_shards(tenant_daily(), DAY) == Decimal(0)
    assert store.remaining([Hold(tenant_daily(), DAY, Decimal(0))]) == Decimal(5)


def test_the_first_hold_draws_half_of_each_root_to_one_shard_and_takes_from_it(store: BudgetStore) -> None:
    # When $0.3 is held on a key's daily, a tenant's daily and a feature's monthly budget
    hold(store, [key_daily("1"), tenant_daily("5"), feature_monthly("100")], "0.3")

    # Then each root handed half of what it had to the pair's shard, of which the hold took $0.3
    assert [committed(store, key_daily()), committed(store, tenant_daily())] == [Decimal("0.5"), Decimal("2.5")]
    assert committed(store, feature_monthly(), MONTH) == Decimal(50)
    assert store.held_in_shards(tenant_daily(), DAY) == Decimal("2.2")
    assert [in_use(store, b, w) for b, w in [(key_daily(), DAY), (feature_monthly(), MONTH)]] == [
        Decimal("0.3"),
        Decimal("0.3"),
    ]
    # And the roots' room for batch holds is what they have not handed out
    assert store.remaining([Hold(key_daily(), DAY, Decimal(0)), Hold(tenant_daily(), DAY, Decimal(0))]) == Decimal(
        "0.5"
    )


def test_a_hold_that_fits_the_shard_is_one_take(store: BudgetStore) -> None:
    # Given a shard holding $2.2 of the tenant's budget
    hold(store, [tenant_daily()], "0.3")
    held = make_hold(KEY_ID, "chat", [tenant_daily()], Decimal("0.3"), NOW)

    # When the next $0.3 is taken
    taken = store.take(held)

    # Then the take alone holds it, and says what the slot has left
    assert taken.ok
    assert (taken.headroom, taken.day) == ({"tenant_day": Decimal("1.9")}, DAY)
    assert in_use(store, tenant_daily()) == Decimal("0.6")
    assert committed(store, tenant_daily()) == Decimal("2.5")


def test_a_take_that_does_not_fit_changes_nothing_and_says_what_is_there(store: BudgetStore) -> None:
    hold(store, [tenant_daily("1")], "0.3")  # the shard holds $0.2 of the $0.5 drawn
    held = make_hold(KEY_ID, "chat", [tenant_daily("1")], Decimal("0.3"), NOW)

    taken = store.take(held)

    assert not taken.ok
    assert (taken.headroom, taken.day, dict(taken.dry)) == ({"tenant_day": Decimal("0.2")}, DAY, {})
    assert store.held_in_shards(tenant_daily("1"), DAY) == Decimal("0.2")


def test_a_draw_is_all_or_none_and_never_passes_a_limit(budgets: Budgets) -> None:
    # Given the pair's shard started on Nov 20, and the key's $1 root with $0.8 held by a batch
    store = budgets.store
    held = hold(store, [tenant_daily("5")], "0.1")
    budgets.hold_elsewhere(Hold(key_daily("1"), DAY, Decimal("0.8")))
    before = (committed(store, key_daily()), committed(store, tenant_daily()))

    # When a draw asks $0.3 of the key (only $0.2 left) and $0.3 of the tenant
    grants = [Grant(tenant_daily("5"), DAY, Decimal("0.3")), Grant(key_daily("1"), DAY, Decimal("0.3"))]
    assert store.draw(held.shard, DAY, grants) is False

    # Then neither root moved; and a draw for a day the shard does not hold is refused too
    assert (committed(store, key_daily()), committed(store, tenant_daily())) == before
    assert store.draw(held.shard, "2026-11-21", grants[:1]) is False
    assert committed(store, tenant_daily()) == before[1]
    # But what fits is drawn, to the last cent, into the shard
    assert store.draw(held.shard, DAY, [Grant(key_daily("1"), DAY, Decimal("0.2"))]) is True
    assert committed(store, key_daily()) == Decimal(1)
    assert store.held_in_shards(key_daily("1"), DAY) == Decimal("0.2")


def test_a_hold_that_does_not_fit_names_the_budget_and_flags_it_dry(store: BudgetStore) -> None:
    # Given $0.8 in use on a $1 key budget (all of it drawn to the shard: the hold was more than half)
    hold(store, [key_daily("1"), tenant_daily("5")], "0.8")

    # When $0.3 more is asked on both
    with pytest.raises(BudgetExceededError) as caught:
        hold(store, [tenant_daily("5"), key_daily("1")], "0.3")

    # Then the key's budget is named with its $0.2 left, the 429 as before, nothing more in use, the key dry
    assert caught.value.status == 429
    assert (caught.value.budget, caught.value.remaining, caught.value.needed) == (
        key_daily("1"),
        Decimal("0.2"),
        Decimal("0.3"),
    )
    assert caught.value.message == (
        f"costgate: key {KEY_ID}'s daily budget is exhausted: limit $1, $0.2 remaining,"
        " this request may cost up to $0.3"
    )
    assert in_use(store, key_daily()) == in_use(store, tenant_daily()) == Decimal("0.8")
    assert store.dry_windows() == [(key_daily("1"), DAY)]

    # When the next request asks as much, Then the shard alone refuses it, with the same figure
    held = make_hold(KEY_ID, "chat", [key_daily("1"), tenant_daily("5")], Decimal("0.3"), NOW)
    taken = store.take(held)
    assert not taken.ok
    assert taken.dry == {"key_day": Decimal("0.2")}
    with pytest.raises(BudgetExceededError, match=r"\$0.2 remaining"):
        complete_hold(store, held, taken)

    # But a request that the shard can still cover gets in
    hold(store, [key_daily("1"), tenant_daily("5")], "0.2")
    assert in_use(store, key_daily()) == Decimal(1)


def test_an_amount_above_the_whole_limit_is_refused_before_any_io(store: BudgetStore) -> None:
    held = make_hold(KEY_ID, "chat", [tenant_daily("5"), key_daily("1")], Decimal("1.01"), NOW)
    with pytest.raises(BudgetExceededError) as caught:
        check_limits(held)
    assert (caught.value.budget, caught.value.remaining, caught.value.needed) == (key_daily("1"), None, Decimal("1.01"))
    assert store.roots([(key_daily(), DAY), (tenant_daily(), DAY)]) == {}
    # And the whole limit itself fits
    hold(store, [key_daily("1")], "1")
    assert in_use(store, key_daily()) == Decimal(1)


def test_concurrent_holds_never_pass_the_limit(budgets: Budgets) -> None:
    # Given a $1 budget on one shard and 10 containers each holding $0.3 at once (3 fit)
    stores = [budgets.container(ManualClock()) for _ in range(10)]
    start = threading.Barrier(10)

    def request(n: int) -> str:
        start.wait()
        try:
            hold(stores[n], [tenant_daily("1")], "0.3")
        except BudgetExceededError as error:
            return f"refused, {usd(error.remaining)} left"
        return "held"

    # When they run
    with ThreadPoolExecutor(max_workers=10) as pool:
        outcomes = Counter(pool.map(request, range(10)))

    # Then exactly three are held and the rest refused with the $0.1 left
    assert outcomes == {"held": 3, "refused, 0.1 left": 7}
    assert in_use(budgets.store, tenant_daily("1")) == Decimal("0.9")
    assert committed(budgets.store, tenant_daily("1")) <= Decimal(1)


# --- give-backs, gathers, days, limits ----------------------------------------------------------------------------


def test_giving_back_and_gathering_make_the_whole_budget_usable_again(store: BudgetStore) -> None:
    # Given a $5 budget with $4.8 held, so $0.3 is refused and the budget flagged dry
    held = hold(store, [tenant_daily()], "4.8")
    with pytest.raises(BudgetExceededError):
        hold(store, [tenant_daily()], "0.3")

    # When the hold comes back (its request never reached Claude) and the sweeper gathers the budget
    assert store.give_back(held, Decimal("4.8")) == {"tenant_day": Decimal("4.8")}
    assert store.gather(tenant_daily(), DAY) == Decimal("4.8")

    # Then the root has it all again, no shard holds any, nothing is dry, and the whole limit fits
    assert committed(store, tenant_daily()) == Decimal(0)
    assert store.held_in_shards(tenant_daily(), DAY) == Decimal(0)
    assert store.dry_windows() == []
    hold(store, [tenant_daily()], "5")


def test_mark_dry_flags_the_root_and_the_shard_until_gathered(store: BudgetStore) -> None:
    held = hold(store, [tenant_daily()], "0.3")
    store.mark_dry(held, tenant_daily(), Decimal("2.5"))

    assert store.dry_windows() == [(tenant_daily(), DAY)]
    assert store.roots([(tenant_daily(), DAY)])[("tenant:acme", "day", DAY)].dry is True
    # a take the shard cannot cover is refused at once with what the root had left (no draw is tried)
    assert store.take(make_hold(KEY_ID, "chat", [tenant_daily()], Decimal("2.3"), NOW)).dry == {
        "tenant_day": Decimal("2.5")
    }
    # one it can cover is not
    assert store.take(make_hold(KEY_ID, "chat", [tenant_daily()], Decimal("0.1"), NOW)).ok

    assert store.gather(tenant_daily(), DAY) == Decimal("2.1")
    assert store.dry_windows() == []
    assert store.roots([(tenant_daily(), DAY)])[("tenant:acme", "day", DAY)].dry is False


def test_a_give_back_after_midnight_returns_nothing_to_the_closed_day(store: BudgetStore) -> None:
    # Given $0.3 held at 23:59 on a daily and a monthly budget, and the shard's day then rolled to Nov 21
    late = NOW.replace(hour=23, minute=59)
    both = [tenant_daily("5"), feature_monthly("100")]
    held = hold(store, both, "0.3", at=late)
    tomorrow = replace(make_hold(KEY_ID, "chat", both, Decimal("0.1"), late + timedelta(minutes=2)), shard=held.shard)
    complete_hold(store, tomorrow, store.take(tomorrow))

    # When the late answer gives back its unused $0.2
    headroom = store.give_back(held, Decimal("0.2"))

    # Then only the month takes it back; the new day holds only its own request
    assert set(headroom) == {"feature_month"}
    assert in_use(store, feature_monthly(), MONTH) == Decimal("0.2")
    assert in_use(store, tenant_daily(), "2026-11-21") == Decimal("0.1")


def test_a_shard_rolls_to_a_new_day_once(store: BudgetStore) -> None:
    held = hold(store, [tenant_daily()], "0.3")
    # A roll that saw another day than the shard holds changes nothing
    store.roll_day(held.shard, "2026-11-19", "2026-11-21")
    assert store.take(held).day == DAY
    # The roll that saw the shard's day starts the day slots on the new day, empty
    store.roll_day(held.shard, DAY, "2026-11-21")
    taken = store.take(held)
    assert (taken.ok, taken.day, dict(taken.headroom)) == (False, "2026-11-21", {"tenant_day": Decimal(0)})
    store.roll_day(held.shard, DAY, "2026-11-22")
    assert store.take(held).day == "2026-11-21"


def test_windows_of_one_budget_are_counted_apart(store: BudgetStore) -> None:
    # Given the tenant's daily budget full on Nov 20
    hold(store, [tenant_daily()], "5")
    # Then Nov 21 has its whole limit, and takes a hold of all of it
    hold(store, [tenant_daily()], "5", at=NOW + timedelta(days=1))
    assert in_use(store, tenant_daily(), "2026-11-21") == Decimal(5)
    assert store.remaining([Hold(tenant_daily(), "2026-11-21", Decimal(0))]) == Decimal(0)


def test_setting_a_lower_limit_gathers_what_the_shards_hold(store: BudgetStore) -> None:
    # Given a $5 tenant budget with $0.3 in use and $2.2 sitting in the shard
    store.put_definition(tenant_daily("5"))
    hold(store, [tenant_daily("5")], "0.3")
    assert store.held_in_shards(tenant_daily(), DAY) == Decimal("2.2")

    # When the operator lowers it to $1
    store.put_definition(tenant_daily("1"))

    # Then the shard's money is back at the root, so the new limit governs: $0.7 fits, $0.8 does not
    assert store.held_in_shards(tenant_daily(), DAY) == Decimal(0)
    with pytest.raises(BudgetExceededError, match=r"limit \$1, \$0.7 remaining"):
        hold(store, [tenant_daily("1")], "0.8")
    hold(store, [tenant_daily("1")], "0.7")


# --- roots' room: what Message Batches hold ------------------------------------------------------------------------


def test_remaining_reads_the_least_room_left_among_the_roots(budgets: Budgets) -> None:
    # Given batch holds of $0.25 on a $1 key budget's and a $5 tenant budget's roots, and a month never used
    store = budgets.store
    holds = [Hold(key_daily(), DAY, Decimal("0.25")), Hold(tenant_daily(), DAY, Decimal("0.25"))]
    for root_hold in holds:
        budgets.hold_elsewhere(root_hold)
    unused = Hold(Budget(tenant_scope("acme"), BudgetPeriod.MONTH, Decimal(50)), MONTH, Decimal(0))

    # Then the least room is the key's $0.75, an unused window has its whole limit, and no holds have none
    assert store.remaining(holds) == Decimal("0.75")
    assert store.remaining([unused]) == Decimal(50)
    assert store.remaining([]) is None
    # And a request's draw sees the same room: half of it goes to the shard
    hold(store, [key_daily()], "0.1")
    assert committed(store, key_daily()) == Decimal("0.625")


def test_the_fake_and_dynamo_agree_on_a_sequence(store: BudgetStore) -> None:
    # Given holds, a give-back and a gather against a $1 tenant and a $0.7 key budget (moved from the
    # DynamoDB suite, where it compared the two stores' answers)
    both = [tenant_daily("1"), key_daily("0.7")]
    amounts = ["0.3", "0.3", "0.3", "0.1", "0.05", "0.2", "0.4"]
    answers: list[str] = []
    held: list[ShardHold] = []
    for n, amount in enumerate(amounts):
        try:
            held.append(hold(store, both, amount))
            answers.append(f"held {usd(store.remaining([Hold(b, DAY, Decimal(0)) for b in both]))}")
        except BudgetExceededError as error:
            answers.append(error.message)
        if n == 3:
            first = held.pop(0)
            back = store.give_back(first, first.amount_usd)
            answers.append(f"back {', '.join(f'{slot} {usd(left)}' for slot, left in sorted(back.items()))}")
        if n == 4:
            answers.append(f"gathered {', '.join(usd(store.gather(b, w)) for b, w in store.dry_windows())}")

    # Then every answer, refusal messages included, is the contract's
    refused = (
        "costgate: key {key}'s daily budget is exhausted: limit $0.7, ${left} remaining,"
        " this request may cost up to ${amount}"
    )
    assert answers == [
        "held 0.35",  # the first hold drew half of each root: the key's root has $0.35 to hand out
        "held 0.1",
        refused.format(key=KEY_ID, left="0.1", amount="0.3"),
        "held 0",
        "back key_day 0.3, tenant_day 0.35",  # the first hold's $0.3, back in the shard
        "held 0",
        "gathered 0.25",  # the dry key budget's shard headroom, back at its root
        "held 0.05",
        refused.format(key=KEY_ID, left="0.05", amount="0.4"),
    ]


# --- definitions ---------------------------------------------------------------------------------------------


def test_definitions_for_a_request_are_the_tenants_and_that_features(store: BudgetStore) -> None:
    # Given budgets for acme, acme/chat (on 8 shards), acme/search, acme-labs (same prefix) and globex
    chat = Budget(feature_scope("acme", "chat"), BudgetPeriod.MONTH, Decimal(100), shards=8)
    for budget in (
        tenant_daily("5"),
        Budget(tenant_scope("acme"), BudgetPeriod.MONTH, Decimal(120)),
        chat,
        Budget(feature_scope("acme", "search"), BudgetPeriod.DAY, Decimal(1)),
        tenant_daily("7", tenant="acme-labs"),
        tenant_daily("9", tenant="globex"),
    ):
        store.put_definition(budget)

    # When acme/chat's budgets are read
    found = store.definitions("acme", "chat")

    # Then they are acme's two and acme/chat's, in key order, exact, shard counts included
    assert found == [chat, tenant_daily("5"), Budget(tenant_scope("acme"), BudgetPeriod.MONTH, Decimal(120))]
    assert found[0].shards == 8
    # And a feature with no budget of its own gets the tenant's only
    assert store.definitions("acme", "summarise") == found[1:]
    assert store.definitions("initech", "chat") == []


def test_definitions_are_listed_replaced_and_deleted(store: BudgetStore) -> None:
    # Given two budgets, one set twice, and a feature budget
    store.put_definition(tenant_daily("5"))
    store.put_definition(tenant_daily("6", shards=4))
    store.put_definition(tenant_daily("1", tenant="globex"))
    chat = Budget(feature_scope("acme", "chat"), BudgetPeriod.MONTH, Decimal("0.0000001"))
    store.put_definition(chat)

    # Then the list has the latest limit and shard count, exact, by tenant, then scope, then period
    assert store.list_definitions() == [chat, tenant_daily("6", shards=4), tenant_daily("1", tenant="globex")]

    # When one is deleted, twice
    assert store.delete_definition("tenant:acme", BudgetPeriod.DAY) is True
    assert store.delete_definition("tenant:acme", BudgetPeriod.DAY) is False

    # Then only the others remain; a period never set is not there to delete
    assert store.list_definitions() == [chat, tenant_daily("1", tenant="globex")]
    assert store.delete_definition("tenant:globex", BudgetPeriod.MONTH) is False


def test_key_budgets_cannot_be_stored_as_definitions(store: BudgetStore) -> None:
    with pytest.raises(InvalidRequestError, match="set on the key"):
        store.put_definition(key_daily())
    with pytest.raises(InvalidRequestError, match="set on the key"):
        store.delete_definition(key_scope(KEY_ID), BudgetPeriod.DAY)
    assert store.list_definitions() == []


def test_definitions_may_be_up_to_30_seconds_stale(budgets: Budgets) -> None:
    # Given a container that has read acme's budgets, and an operator (another store) changing them
    clock = ManualClock()
    api = budgets.container(clock)
    budgets.store.put_definition(tenant_daily("5"))
    assert api.definitions("acme", "chat") == [tenant_daily("5")]
    budgets.store.put_definition(tenant_daily("2"))

    # Then before 30 s the container answers the old limit or the new one, and from 30 s on the new one
    clock.at = NOW + timedelta(seconds=29)
    assert api.definitions("acme", "chat") in ([tenant_daily("5")], [tenant_daily("2")])
    clock.at = NOW + timedelta(seconds=30)
    assert api.definitions("acme", "chat") == [tenant_daily("2")]
