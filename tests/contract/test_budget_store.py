"""BudgetStore's contract, for InMemoryBudgetStore and DynamoBudgetStore: reservations all or none that never
pass a limit, refusals naming the budget, releases, remaining room, and definitions (up to 30 s stale)."""

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from costgate.accounting.budgets import Budget, BudgetPeriod, Hold, Reservation, feature_scope, key_scope, tenant_scope
from costgate.accounting.ports import BudgetStore
from costgate.accounting.services import release_reservation, remaining_after, reserve_budget
from costgate.dal.budgets import DynamoBudgetStore
from costgate.errors import BudgetExceededError, InvalidRequestError, UpstreamError
from tests.contract.conftest import FAKE
from tests.fakes.accounting import InMemoryBudgetStore
from tests.fakes.clock import ManualClock

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
WINDOW = "2026-11-20"
KEY_ID = "0a1b2c3d4e5f"


@dataclass
class Budgets:
    """The store under test, and `container(clock)`: the store another container holds over the same data."""

    store: BudgetStore
    container: Callable[[ManualClock], BudgetStore]


@pytest.fixture
def budgets(table: str) -> Budgets:
    if table == FAKE:
        store = InMemoryBudgetStore()
        return Budgets(store, lambda clock: store)
    return Budgets(DynamoBudgetStore(), lambda clock: DynamoBudgetStore(clock=clock))


@pytest.fixture
def store(budgets: Budgets) -> BudgetStore:
    return budgets.store


def tenant_daily(limit: str = "5", tenant: str = "acme") -> Budget:
    return Budget(tenant_scope(tenant), BudgetPeriod.DAY, Decimal(limit))


def key_daily(limit: str = "1") -> Budget:
    return Budget(key_scope(KEY_ID), BudgetPeriod.DAY, Decimal(limit))


def hold(budget: Budget, amount: str, window: str = WINDOW) -> Hold:
    return Hold(budget, window, Decimal(amount))


# --- reserve -------------------------------------------------------------------------------------------------


def test_a_reservation_that_fits_is_held(store: BudgetStore) -> None:
    # Given no spend yet on tenant acme's $5 daily budget
    # When $0.3 is reserved
    reservation = reserve_budget(store, [tenant_daily()], Decimal("0.3"), NOW)
    # Then $4.7 remains in the window
    assert remaining_after(store, reservation) == Decimal("4.7")


def test_a_reservation_that_does_not_fit_names_the_budget_and_what_remains(store: BudgetStore) -> None:
    # Given $4.8 committed on tenant acme's $5 daily budget
    for _ in range(16):
        store.reserve([hold(tenant_daily(), "0.3")])

    # When another $0.3 is reserved
    with pytest.raises(BudgetExceededError) as caught:
        store.reserve([hold(tenant_daily(), "0.3")])

    # Then it is a 429 naming the budget and its $0.2 left, and the window did not move
    assert caught.value.status == 429
    assert (caught.value.budget, caught.value.remaining, caught.value.needed) == (
        tenant_daily(),
        Decimal("0.2"),
        Decimal("0.3"),
    )
    assert caught.value.message == (
        "costgate: tenant acme's daily budget is exhausted: limit $5, $0.2 remaining, this request may cost up to $0.3"
    )
    assert store.remaining([hold(tenant_daily(), "0")]) == Decimal("0.2")
    # And exactly what remains still fits
    store.reserve([hold(tenant_daily(), "0.2")])
    assert store.remaining([hold(tenant_daily(), "0")]) == Decimal(0)


def test_all_or_none_across_two_budgets(store: BudgetStore) -> None:
    # Given the key's $1 daily budget with $0.9 committed and the tenant's $5 budget with $0.9 committed
    store.reserve([hold(tenant_daily(), "0.9"), hold(key_daily(), "0.9")])

    # When $0.3 is reserved against both: the tenant has room, the key does not
    with pytest.raises(BudgetExceededError) as caught:
        store.reserve([hold(tenant_daily(), "0.3"), hold(key_daily(), "0.3")])

    # Then the key's budget is named, and nothing was held on either budget
    assert (caught.value.budget, caught.value.remaining) == (key_daily(), Decimal("0.1"))
    assert store.remaining([hold(tenant_daily(), "0")]) == Decimal("4.1")
    assert store.remaining([hold(key_daily(), "0")]) == Decimal("0.1")


def test_the_first_budget_that_does_not_fit_is_named(store: BudgetStore) -> None:
    # Given two full budgets
    store.reserve([hold(tenant_daily("1"), "1"), hold(key_daily("1"), "1")])
    # When both refuse the next hold, in either order
    # Then the refusal names the first one asked
    for first, second in ((tenant_daily("1"), key_daily("1")), (key_daily("1"), tenant_daily("1"))):
        with pytest.raises(BudgetExceededError) as caught:
            store.reserve([hold(first, "0.5"), hold(second, "0.5")])
        assert caught.value.budget == first


def test_an_amount_above_the_whole_limit_is_refused_even_by_a_new_window(store: BudgetStore) -> None:
    # Given a window nothing was ever reserved in, beside one with room
    # When a hold above its whole $1 limit is reserved (reserve_budget refuses it first; the store must too)
    with pytest.raises(BudgetExceededError) as caught:
        store.reserve([hold(tenant_daily(), "0.5"), hold(key_daily("1"), "1.01")])

    # Then it is refused without a remaining figure (no window could take it), and nothing was held
    assert (caught.value.budget, caught.value.remaining, caught.value.needed) == (key_daily("1"), None, Decimal("1.01"))
    assert store.remaining([hold(tenant_daily(), "0")]) == Decimal(5)
    assert store.remaining([hold(key_daily("1"), "0")]) == Decimal(1)
    # And the whole limit itself fits
    store.reserve([hold(key_daily("1"), "1")])
    assert store.remaining([hold(key_daily("1"), "0")]) == Decimal(0)


def test_concurrent_reservations_never_pass_the_limit(budgets: Budgets) -> None:
    # Given a $1 budget and 10 containers each reserving $0.3 at once (3 fit)
    stores = [budgets.container(ManualClock()) for _ in range(10)]
    start = threading.Barrier(10)

    def reserve(n: int) -> str:
        start.wait()
        try:
            stores[n].reserve([hold(tenant_daily("1"), "0.3")])
        except BudgetExceededError as error:
            return f"refused, {error.remaining} left"
        return "held"

    # When they run
    with ThreadPoolExecutor(max_workers=10) as pool:
        outcomes = Counter(pool.map(reserve, range(10)))

    # Then exactly three are held and the rest refused with the $0.1 left
    assert outcomes == {"held": 3, "refused, 0.1 left": 7}
    assert budgets.store.remaining([hold(tenant_daily("1"), "0")]) == Decimal("0.1")


# --- release and remaining -------------------------------------------------------------------------------------


def test_release_gives_the_hold_back(store: BudgetStore) -> None:
    # Given $4.8 held on two budgets
    reservation = reserve_budget(store, [tenant_daily(), key_daily("10")], Decimal("4.8"), NOW)

    # When the request never reaches Claude and its reservation is released
    release_reservation(store, reservation)

    # Then the whole limits remain
    assert store.remaining([hold(tenant_daily(), "0")]) == Decimal(5)
    assert store.remaining([hold(key_daily("10"), "0")]) == Decimal(10)
    assert remaining_after(store, reservation) == Decimal(5)


def test_releasing_a_hold_that_was_never_reserved_fails_loudly(store: BudgetStore) -> None:
    with pytest.raises(UpstreamError, match="never reserved"):
        store.release([Hold(tenant_daily(), WINDOW, Decimal("0.3"))])


def test_a_release_with_one_hold_never_reserved_gives_nothing_back(store: BudgetStore) -> None:
    # Given $1 held on the tenant's budget, and no counter for the key's
    store.reserve([hold(tenant_daily(), "1")])
    # When both are released together
    with pytest.raises(UpstreamError, match="never reserved"):
        store.release([hold(tenant_daily(), "1"), hold(key_daily(), "1")])
    # Then the tenant's hold is still held: all or none
    assert store.remaining([hold(tenant_daily(), "0")]) == Decimal(4)


def test_remaining_reads_the_least_room_left(store: BudgetStore) -> None:
    # Given a key budget of $1 and a tenant budget of $5, $0.25 held on both, and a month never used
    reservation = reserve_budget(store, [tenant_daily(), key_daily()], Decimal("0.25"), NOW)
    unused = Hold(Budget(tenant_scope("acme"), BudgetPeriod.MONTH, Decimal(50)), "2026-11", Decimal(0))

    # Then the least room is the key's $0.75, and an unused window has its whole limit
    assert remaining_after(store, reservation) == Decimal("0.75")
    assert store.remaining([unused]) == Decimal(50)
    assert store.remaining([]) is None


def test_windows_of_one_budget_are_counted_apart(store: BudgetStore) -> None:
    # Given the tenant's daily budget full on Nov 20
    store.reserve([hold(tenant_daily(), "5")])
    # Then Nov 21 has its whole limit, and takes a hold
    store.reserve([hold(tenant_daily(), "5", "2026-11-21")])
    assert store.remaining([hold(tenant_daily(), "0", "2026-11-21")]) == Decimal(0)


def test_the_fake_and_dynamo_agree_on_a_sequence(store: BudgetStore) -> None:
    # Given reservations and a release against a $1 tenant and a $0.7 key budget (moved from the
    # DynamoDB suite, where it compared the two stores' answers)
    budgets = [tenant_daily("1"), key_daily("0.7")]
    amounts = ["0.3", "0.3", "0.3", "0.1", "0.05", "0.2"]
    answers: list[str] = []
    held: list[Reservation] = []
    for n, amount in enumerate(amounts):
        try:
            held.append(reserve_budget(store, budgets, Decimal(amount), NOW))
            answers.append(f"held {store.remaining(held[-1].holds)}")
        except BudgetExceededError as error:
            answers.append(error.message)
        if n == 3:
            release_reservation(store, held.pop(0))

    # Then every answer, refusal messages included, is the contract's
    refused = (
        "costgate: key {key}'s daily budget is exhausted: limit $0.7, ${left} remaining,"
        " this request may cost up to ${amount}"
    )
    assert answers == [
        "held 0.4",
        "held 0.1",
        refused.format(key=KEY_ID, left="0.1", amount="0.3"),
        "held 0.0",
        "held 0.25",
        "held 0.05",
    ]


# --- definitions ---------------------------------------------------------------------------------------------


def test_definitions_for_a_request_are_the_tenants_and_that_features(store: BudgetStore) -> None:
    # Given budgets for acme, acme/chat, acme/search, acme-labs (same prefix) and globex
    chat = Budget(feature_scope("acme", "chat"), BudgetPeriod.MONTH, Decimal(100))
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

    # Then they are acme's two and acme/chat's, in key order, exact
    assert found == [chat, tenant_daily("5"), Budget(tenant_scope("acme"), BudgetPeriod.MONTH, Decimal(120))]
    # And a feature with no budget of its own gets the tenant's only
    assert store.definitions("acme", "summarise") == found[1:]
    assert store.definitions("initech", "chat") == []


def test_definitions_are_listed_replaced_and_deleted(store: BudgetStore) -> None:
    # Given two budgets, one set twice, and a feature budget
    store.put_definition(tenant_daily("5"))
    store.put_definition(tenant_daily("6"))
    store.put_definition(tenant_daily("1", tenant="globex"))
    chat = Budget(feature_scope("acme", "chat"), BudgetPeriod.MONTH, Decimal("0.0000001"))
    store.put_definition(chat)

    # Then the list has the latest limit, exact, by tenant, then scope, then period
    assert store.list_definitions() == [chat, tenant_daily("6"), tenant_daily("1", tenant="globex")]

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
