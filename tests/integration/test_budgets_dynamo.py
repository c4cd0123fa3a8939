"""DynamoBudgetStore against moto: window counters at their keys, settlement in a transaction, the definitions'
warm cache, the CLI, and the proof that concurrent requests never overshoot a budget. The port's contract,
which the in-memory fake must pass too, is in tests/contract/test_budget_store.py."""

import contextlib
import json
import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from pynamodb.connection import Connection
from pynamodb.exceptions import DoesNotExist, TransactWriteError
from pynamodb.transactions import TransactWrite

from costgate.accounting.budgets import Budget, BudgetPeriod, Hold, Reservation, feature_scope, key_scope, tenant_scope
from costgate.accounting.services import release_reservation, remaining_after, reserve_budget
from costgate.dal.budgets import BudgetCounterItem, BudgetDefinitionItem, DynamoBudgetStore, settle_updates
from costgate.dal.table import CostgateItem
from costgate.errors import BudgetExceededError
from costgate_local.cli import main
from tests.fakes.clock import ManualClock
from tests.integration import nullable

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
KEY_ID = "0a1b2c3d4e5f"


class SettlementMarker(CostgateItem, discriminator="test_settlement"):
    """Stands in for the ledger row the ledger DAL writes in the same transaction.  PK: REQ#<request_id>  SK: REQ"""


@pytest.fixture
def store(ledger_table: str) -> DynamoBudgetStore:
    return DynamoBudgetStore()


def tenant_daily(limit: str = "5", tenant: str = "acme") -> Budget:
    return Budget(tenant_scope(tenant), BudgetPeriod.DAY, Decimal(limit))


def key_daily(limit: str = "1") -> Budget:
    return Budget(key_scope(KEY_ID), BudgetPeriod.DAY, Decimal(limit))


def counter(budget: Budget, window: str = "2026-11-20") -> BudgetCounterItem:
    """The window's counter, read by its documented key: PK BUDGET#<scope>, SK <period>#<window>."""
    return BudgetCounterItem.get(f"BUDGET#{budget.scope}", f"{budget.period.value}#{window}", consistent_read=True)


def settle(holds: tuple[Hold, ...], actual: Decimal, request_id: str, connection: Connection | None = None) -> bool:
    """What the ledger DAL will do: the ledger row (on condition it is new) and the settlement, in one transaction."""
    try:
        with TransactWrite(connection=connection or Connection()) as transaction:
            transaction.save(
                SettlementMarker(f"REQ#{request_id}", "REQ"), condition=SettlementMarker.pk.does_not_exist()
            )
            for item, actions in settle_updates(holds, actual):
                transaction.update(item, actions=actions)
    except TransactWriteError as error:
        first = error.cancellation_reasons[0] if error.cancellation_reasons else None
        if first is not None and first.code == "ConditionalCheckFailed":
            return False  # the ledger row exists: a duplicate, and nothing was settled
        raise
    return True


# --- reserve ---------------------------------------------------------------------------------------------


def test_a_reservation_that_fits_writes_the_window_counter(store: DynamoBudgetStore) -> None:
    # Given no spend yet on tenant acme's $5 daily budget
    # When $0.3 is reserved at noon on Nov 20
    reservation = reserve_budget(store, [tenant_daily()], Decimal("0.3"), NOW)

    # Then the day's counter holds it, with the limit it was checked against and a TTL 7 days after the day
    item = counter(tenant_daily())
    assert (item.scope, item.period, item.window) == ("tenant:acme", "day", "2026-11-20")
    assert item.committed_usd == Decimal("0.3")
    assert item.limit_usd == Decimal(5)
    assert nullable(item.spent_usd) is None
    assert item.expires_at == datetime(2026, 11, 28, tzinfo=UTC).timestamp()
    assert remaining_after(store, reservation) == Decimal("4.7")


def test_a_monthly_counter_expires_a_week_after_the_month(store: DynamoBudgetStore) -> None:
    budget = Budget(feature_scope("acme", "chat"), BudgetPeriod.MONTH, Decimal(100))
    reserve_budget(store, [budget], Decimal("1"), datetime(2026, 12, 15, tzinfo=UTC))
    item = counter(budget, "2026-12")
    assert item.expires_at == datetime(2027, 1, 8, tzinfo=UTC).timestamp()


def test_a_reservation_that_does_not_fit_names_the_budget_and_what_remains(store: DynamoBudgetStore) -> None:
    # Given $4.8 committed on tenant acme's $5 daily budget
    for _ in range(16):
        reserve_budget(store, [tenant_daily()], Decimal("0.3"), NOW)

    # When another $0.3 is reserved
    with pytest.raises(BudgetExceededError) as caught:
        reserve_budget(store, [tenant_daily()], Decimal("0.3"), NOW)

    # Then it is a 429 naming the budget and its $0.2 left, and the counter did not move
    assert caught.value.status == 429
    assert caught.value.message == (
        "costgate: tenant acme's daily budget is exhausted: limit $5, $0.2 remaining, this request may cost up to $0.3"
    )
    assert counter(tenant_daily()).committed_usd == Decimal("4.8")
    # And a smaller request still fits exactly
    reserve_budget(store, [tenant_daily()], Decimal("0.2"), NOW)
    assert counter(tenant_daily()).committed_usd == Decimal(5)


def test_all_or_none_across_two_budgets(store: DynamoBudgetStore) -> None:
    # Given the key's $1 daily budget with $0.9 committed and the tenant's $5 budget with $0.9 committed
    reserve_budget(store, [tenant_daily(), key_daily()], Decimal("0.9"), NOW)

    # When $0.3 is reserved against both: the tenant has room, the key does not
    with pytest.raises(BudgetExceededError) as caught:
        reserve_budget(store, [tenant_daily(), key_daily()], Decimal("0.3"), NOW)

    # Then the key's budget is named, and nothing was held on either budget
    assert caught.value.budget == key_daily()
    assert caught.value.remaining == Decimal("0.1")
    assert counter(tenant_daily()).committed_usd == Decimal("0.9")
    assert counter(key_daily()).committed_usd == Decimal("0.9")


def test_a_budget_that_was_never_reserved_does_not_block_and_is_not_created(store: DynamoBudgetStore) -> None:
    # Given the key's $1 budget, full, and a tenant budget never used
    reserve_budget(store, [key_daily()], Decimal("1"), NOW)

    # When a reservation fails on the key
    with pytest.raises(BudgetExceededError):
        reserve_budget(store, [tenant_daily(), key_daily()], Decimal("0.5"), NOW)

    # Then the tenant's counter was not created by the cancelled transaction
    with pytest.raises(DoesNotExist):
        counter(tenant_daily())


def test_release_gives_the_hold_back(store: DynamoBudgetStore) -> None:
    # Given $4.8 held on two budgets
    reservation = reserve_budget(store, [tenant_daily(), key_daily("10")], Decimal("4.8"), NOW)

    # When the request never reaches Claude and its reservation is released
    release_reservation(store, reservation)

    # Then both counters are back at zero and the whole limits remain
    assert counter(tenant_daily()).committed_usd == Decimal(0)
    assert counter(key_daily("10")).committed_usd == Decimal(0)
    assert remaining_after(store, reservation) == Decimal(5)


# --- settlement in the ledger's transaction ------------------------------------------------------------------


def test_settlement_in_a_transaction_keeps_the_exact_cost_once(store: DynamoBudgetStore) -> None:
    # Given $0.3 held on the tenant's and the key's budgets
    reservation = reserve_budget(store, [tenant_daily(), key_daily()], Decimal("0.3"), NOW)

    # When the response costs $0.0000123 and is settled with its ledger row, then the same request again
    assert settle(reservation.holds, Decimal("0.0000123"), "req-1") is True
    assert settle(reservation.holds, Decimal("0.0000123"), "req-1") is False

    # Then each budget has the exact cost committed and spent, counted once
    for budget in (tenant_daily(), key_daily()):
        item = counter(budget)
        assert item.committed_usd == item.spent_usd == Decimal("0.0000123")
        assert item.requests == 1
    assert remaining_after(store, reservation) == Decimal("0.9999877")


def test_a_settlement_above_its_hold_is_recorded_and_blocks_the_next_request(store: DynamoBudgetStore) -> None:
    # Given $4.9 held on a $5 budget, and a response that cost $5.2 (a PDF beyond the estimate's allowance)
    reservation = reserve_budget(store, [tenant_daily()], Decimal("4.9"), NOW)
    settle(reservation.holds, Decimal("5.2"), "req-big")

    # Then the spend is recorded as it was, nothing remains, and the next request is refused
    assert counter(tenant_daily()).committed_usd == Decimal("5.2")
    assert remaining_after(store, reservation) == Decimal(0)
    with pytest.raises(BudgetExceededError, match=r"\$0 remaining"):
        reserve_budget(store, [tenant_daily()], Decimal("0.01"), NOW)


# --- definitions -----------------------------------------------------------------------------------------


def test_definitions_are_listed_replaced_and_deleted(store: DynamoBudgetStore) -> None:
    # Given two budgets, one set twice
    store.put_definition(tenant_daily("5"))
    store.put_definition(tenant_daily("6"))
    store.put_definition(tenant_daily("1", tenant="globex"))

    # Then the list has the latest limit, by tenant
    assert store.list_definitions() == [tenant_daily("6"), tenant_daily("1", tenant="globex")]

    # When one is deleted, twice
    assert store.delete_definition("tenant:acme", BudgetPeriod.DAY) is True
    assert store.delete_definition("tenant:acme", BudgetPeriod.DAY) is False

    # Then only the other remains, and the stored item is where its docstring says
    assert store.list_definitions() == [tenant_daily("1", tenant="globex")]
    assert BudgetDefinitionItem.get("BUDGETDEF", "globex#tenant:globex#day").limit_usd == Decimal(1)


def test_definitions_are_cached_for_30_seconds_in_a_warm_container(ledger_table: str) -> None:
    # Given a warm API container that has read acme's budgets, and an operator's CLI (another store)
    clock = ManualClock()
    api = DynamoBudgetStore(clock=clock)
    operator = DynamoBudgetStore()
    operator.put_definition(tenant_daily("5"))
    assert api.definitions("acme", "chat") == [tenant_daily("5")]

    # When the operator lowers the limit
    operator.put_definition(tenant_daily("2"))

    # Then the container keeps the old limit for up to 30 s, then reads the new one
    clock.at = NOW + timedelta(seconds=29)
    assert api.definitions("acme", "chat") == [tenant_daily("5")]
    clock.at = NOW + timedelta(seconds=30)
    assert api.definitions("acme", "chat") == [tenant_daily("2")]


# --- the CLI ---------------------------------------------------------------------------------------------


def test_cli_sets_lists_and_deletes_budgets(ledger_table: str, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a tenant budget and a feature budget set from the command line
    assert main(["budgets", "set", "--tenant", "acme", "--period", "day", "--limit-usd", "5.50"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "scope": "tenant:acme",
        "tenant": "acme",
        "feature": None,
        "period": "day",
        "limit_usd": "5.5",
    }
    assert (
        main(["budgets", "set", "--tenant", "acme", "--feature", "chat", "--period", "month", "--limit-usd", "80"]) == 0
    )
    capsys.readouterr()
    # And $1.25 spent today on the tenant's budget
    reservation = reserve_budget(DynamoBudgetStore(), [tenant_daily("5.50")], Decimal("2"), datetime.now(UTC))
    settle(reservation.holds, Decimal("1.25"), "req-cli")

    # When they are listed as JSON
    assert main(["budgets", "list", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]

    # Then each shows its limit and what remains in the current window
    today = datetime.now(UTC).date()
    assert [(r["scope"], r["period"], r["limit_usd"], r["window"], r["remaining_usd"]) for r in rows] == [
        ("feature:acme/chat", "month", "80", f"{today:%Y-%m}", "80"),
        ("tenant:acme", "day", "5.5", today.isoformat(), "4.25"),
    ]
    # And as a table
    assert main(["budgets", "list"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["scope", "period", "limit", "USD", "window", "remaining", "USD"]
    assert table[2].split() == ["tenant:acme", "day", "5.5", today.isoformat(), "4.25"]

    # When the feature budget is deleted, twice
    assert main(["budgets", "delete", "--tenant", "acme", "--feature", "chat", "--period", "month"]) == 0
    assert json.loads(capsys.readouterr().out) == {"deleted": {"scope": "feature:acme/chat", "period": "month"}}
    assert main(["budgets", "delete", "--tenant", "acme", "--feature", "chat", "--period", "month"]) == 1
    assert "there is no month budget for feature:acme/chat" in capsys.readouterr().err


def test_cli_refuses_an_invalid_limit(ledger_table: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["budgets", "set", "--tenant", "acme", "--period", "day", "--limit-usd", "lots"]) == 2
    assert "--limit-usd must be a decimal amount in USD" in capsys.readouterr().err
    assert main(["budgets", "set", "--tenant", "acme", "--period", "day", "--limit-usd", "-3"]) == 2
    assert "0 or more" in capsys.readouterr().err
    assert main(["budgets", "list"]) == 0
    assert "(no budgets)" in capsys.readouterr().out


# --- the concurrency proof --------------------------------------------------------------------------------

LIMIT = Decimal(5)
HOLD = Decimal("0.30")
FIRST_WAVE = 60
SECOND_WAVE = 50
STORES = 8  # one store per Lambda instance; threads share them as concurrent requests share instances


@dataclass
class Observer:
    """Reads the counter over and over while requests race, remembering the highest committed it saw."""

    budget: Budget
    seen: list[Decimal] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def look(self) -> None:
        with contextlib.suppress(DoesNotExist):
            self.seen.append(counter(self.budget).committed_usd)  # list.append is atomic

    def run(self) -> None:
        while not self.stop.is_set():
            self.look()
            time.sleep(0.005)

    @property
    def highest(self) -> Decimal:
        return max(self.seen)


@pytest.fixture
def observer(ledger_table: str) -> Iterator[Observer]:
    watching = Observer(tenant_daily())
    thread = threading.Thread(target=watching.run, name="budget-observer", daemon=True)
    thread.start()
    yield watching
    watching.stop.set()
    thread.join(timeout=5)


def warm_stores(table: str) -> tuple[list[DynamoBudgetStore], list[Connection]]:
    """Stores and ledger connections as warm Lambda instances hold them: each botocore client already built.

    (A cold pynamodb Connection builds its client on first use without a lock; 60 threads racing on
    8 cold ones would build ~60 clients, ~0.3 s of CPU each, and measure that instead of DynamoDB.)
    """
    stores = [DynamoBudgetStore() for _ in range(STORES)]
    warm_up = Budget(tenant_scope("warm-up"), BudgetPeriod.DAY, Decimal(1))
    for store in stores:
        release_reservation(store, reserve_budget(store, [warm_up], Decimal("0.01"), NOW))
    connections = [Connection() for _ in range(STORES)]
    for connection in connections:
        connection.describe_table(table)
    counter(warm_up)  # the model's own connection, which reads use
    return stores, connections


@pytest.mark.slow
def test_concurrent_requests_never_overshoot_a_budget(ledger_table: str, observer: Observer) -> None:
    # Given tenant acme's $5 daily budget, and 60 requests that may each cost $0.30 (16 fit: 16 × 0.30 = 4.80)
    budget = tenant_daily()
    stores, connections = warm_stores(ledger_table)
    start = threading.Barrier(FIRST_WAVE)

    def first_wave(n: int) -> Reservation | BudgetExceededError:
        start.wait()
        try:
            reservation = reserve_budget(stores[n % STORES], [budget], HOLD, NOW)
        except BudgetExceededError as error:
            return error
        observer.look()  # right after each accepted reservation, as well as in the background
        return reservation

    # When they all reserve at once, and none settles
    with ThreadPoolExecutor(max_workers=FIRST_WAVE) as pool:
        outcomes = list(pool.map(first_wave, range(FIRST_WAVE)))

    # Then exactly floor(5 / 0.30) = 16 are accepted, the rest are refused with the $0.20 that is left
    accepted = [o for o in outcomes if isinstance(o, Reservation)]
    refused = [o for o in outcomes if isinstance(o, BudgetExceededError)]
    assert len(accepted) == 16
    assert len(refused) == 44
    assert {(e.budget, e.remaining, e.needed) for e in refused} == {(budget, Decimal("0.2"), HOLD)}
    assert counter(budget).committed_usd == 16 * HOLD

    # Given the 16 finishing (even ones settle to an exact cost below their hold, odd ones are released)
    # while 50 more requests arrive, each settling or releasing at once when accepted, retrying when refused
    settled: list[Decimal] = []
    refusals: list[BudgetExceededError] = []
    lock = threading.Lock()
    first_done = threading.Event()
    second_start = threading.Barrier(len(accepted) + SECOND_WAVE)

    def finish(n: int, holds: tuple[Hold, ...], actual: Decimal) -> None:
        if n % 2 == 0:
            assert settle(holds, actual, f"req-{n}", connections[n % STORES]) is True
            with lock:
                settled.append(actual)
        else:
            release_reservation(stores[n % STORES], Reservation(holds, HOLD))

    def winner(n: int) -> None:
        second_start.wait()
        finish(n, accepted[n].holds, Decimal("0.1") + Decimal(n) / 10_000_000)  # 0.1, 0.1000002, …

    def second_wave(n: int) -> bool:
        second_start.wait()
        for attempt in range(20):
            try:
                reservation = reserve_budget(stores[n % STORES], [budget], HOLD, NOW)
            except BudgetExceededError as error:
                with lock:
                    refusals.append(error)
                if attempt:
                    time.sleep(random.uniform(0.01, 0.05))
                else:
                    first_done.wait(timeout=20)
                continue
            observer.look()
            finish(100 + n, reservation.holds, Decimal("0.05") + Decimal(n) / 10_000_000)
            return True
        return False

    # When they all run at once
    with ThreadPoolExecutor(max_workers=len(accepted) + SECOND_WAVE) as pool:
        winners = [pool.submit(winner, n) for n in range(len(accepted))]
        arrivals = [pool.submit(second_wave, n) for n in range(SECOND_WAVE)]
        for future in winners:
            future.result()
        first_done.set()
        second = [future.result() for future in arrivals]

    # Then every second-wave request got in eventually, and each refusal was real (less room than $0.30)
    assert all(second)
    assert all(e.remaining is not None and e.remaining < HOLD for e in refusals)
    # And no moment observed had more committed than the limit
    observer.stop.set()
    assert len(observer.seen) >= 16 + SECOND_WAVE
    assert observer.highest <= LIMIT
    # And spent + held is exactly the sum of what was accepted: nothing is held now, so committed is the
    # exact sum of the settled costs, counted once each
    item = counter(budget)
    assert len(settled) == 8 + 25
    assert item.committed_usd == item.spent_usd == sum(settled, Decimal(0))
    assert item.requests == len(settled)
    assert item.committed_usd <= LIMIT
