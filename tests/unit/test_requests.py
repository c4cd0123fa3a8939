"""A request's row and hold through faults: reserve, settle, abandon and the sweeper, with the in-memory stores."""

import contextlib
from datetime import timedelta
from decimal import Decimal

import pytest

from costgate.accounting.budgets import Budget, BudgetPeriod, make_hold, tenant_scope
from costgate.accounting.ledger import SWEEP_AFTER, RequestState, ReservedRequest, new_request_id
from costgate.accounting.requests import abandon_request, reserve_request, settle_request
from costgate.accounting.sweeper import sweep
from costgate.errors import BudgetExceededError
from tests.fakes.accounting import InjectedFaultError, InMemoryBudgetStore, InMemoryLedgerStore, make_entry
from tests.fakes.clock import NOW
from tests.unit.gateway_world import PLAIN_COST, make_world, worst_case

BUDGET = Budget(tenant_scope("acme"), BudgetPeriod.DAY, Decimal("10"))
WINDOW = "2026-11-20"
HELD = Decimal("0.5")


def stores() -> tuple[InMemoryLedgerStore, InMemoryBudgetStore]:
    budgets = InMemoryBudgetStore([BUDGET], now=NOW)
    return InMemoryLedgerStore(budgets), budgets


def new_row(held: Decimal = HELD) -> ReservedRequest:
    return ReservedRequest(new_request_id(), NOW, "acme", "chat", "claude-opus-5-5", held, key_id="k1")


def in_use(budgets: InMemoryBudgetStore) -> Decimal:
    return budgets.in_use(BUDGET.scope, BUDGET.period, WINDOW)


def no_sleep(_: float) -> None:
    return None


def test_a_request_id_is_cg_and_22_base62_characters() -> None:
    ids = {new_request_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 25 and i.startswith("cg_") and i[3:].isalnum() for i in ids)


def test_the_row_exists_and_the_hold_is_taken_before_the_call() -> None:
    ledger, budgets = stores()
    row = new_row()

    handle = reserve_request(ledger, budgets, row, make_hold("k1", "chat", [BUDGET], HELD, NOW))

    assert ledger.state(row.request_id) is RequestState.RESERVED
    assert in_use(budgets) == HELD
    assert handle.request_id == row.request_id


def test_the_settle_failing_every_time_leaves_the_row_to_the_sweeper_which_settles_it_once_at_its_hold() -> None:
    # Given a reserved request whose settle write fails every time it is tried
    ledger, budgets = stores()
    row = new_row()
    handle = reserve_request(ledger, budgets, row, make_hold("k1", "chat", [BUDGET], HELD, NOW))
    ledger.faults.fail("settle", times=-1)

    # When Claude's answer is settled
    settlement = settle_request(ledger, budgets, handle, make_entry(row.request_id, cost_usd="0.1"), sleep=no_sleep)

    # Then it is not recorded, the row stays reserved and the whole hold stays held
    assert not settlement.recorded
    assert ledger.state(row.request_id) is RequestState.RESERVED
    assert in_use(budgets) == HELD
    assert list(ledger.rollups(NOW.date(), NOW.date())) == []

    # When the sweeper runs before the row is due, Then it leaves it alone
    assert sweep(ledger, budgets, NOW + SWEEP_AFTER - timedelta(seconds=1)).swept == 0

    # When it runs 17 minutes later, twice
    first = sweep(ledger, budgets, NOW + timedelta(minutes=17))
    second = sweep(ledger, budgets, NOW + timedelta(minutes=18))

    # Then it settled the row exactly once, at its hold, flagged as swept
    assert (first.swept, first.swept_usd, second.swept) == (1, HELD, 0)
    assert ledger.state(row.request_id) is RequestState.SWEPT
    (rollup,) = ledger.rollups(NOW.date(), NOW.date())
    assert (rollup.requests, rollup.cost_usd, rollup.swept_requests, rollup.swept_usd) == (1, HELD, 1, HELD)
    # and the budget holds exactly what the ledger counts: the hold is the swept amount
    assert in_use(budgets) == rollup.cost_usd


def test_a_settle_that_fails_once_lands_on_the_next_try() -> None:
    ledger, budgets = stores()
    row = new_row()
    handle = reserve_request(ledger, budgets, row, make_hold("k1", "chat", [BUDGET], HELD, NOW))
    ledger.faults.fail("settle", times=1)

    settlement = settle_request(ledger, budgets, handle, make_entry(row.request_id, cost_usd="0.1"), sleep=no_sleep)

    assert settlement.recorded
    assert ledger.state(row.request_id) is RequestState.SETTLED
    assert in_use(budgets) == Decimal("0.1")


def test_a_crash_between_the_reserve_and_the_call_counts_nothing_as_spent() -> None:
    # Given a reserved request whose call to Claude raised before anything was sent
    ledger, budgets = stores()
    row = new_row()
    handle = reserve_request(ledger, budgets, row, make_hold("k1", "chat", [BUDGET], HELD, NOW))

    # When it is abandoned
    assert abandon_request(ledger, budgets, handle)

    # Then the row is abandoned, the hold back, and no rollup counts it; the sweeper leaves it alone
    assert ledger.state(row.request_id) is RequestState.ABANDONED
    assert in_use(budgets) == 0
    assert list(ledger.rollups(NOW.date(), NOW.date())) == []
    assert sweep(ledger, budgets, NOW + timedelta(hours=1)).swept == 0


def test_a_row_a_killed_process_left_reserved_is_swept_at_its_hold_flagged() -> None:
    ledger, budgets = stores()
    row = new_row()
    reserve_request(ledger, budgets, row, make_hold("k1", "chat", [BUDGET], HELD, NOW))

    report = sweep(ledger, budgets, NOW + timedelta(minutes=17))

    assert (report.swept, report.swept_usd) == (1, HELD)
    (rollup,) = ledger.rollups(NOW.date(), NOW.date())
    assert (rollup.swept_requests, rollup.cost_usd) == (1, HELD)


def test_a_row_that_cannot_be_written_gives_its_hold_back() -> None:
    ledger, budgets = stores()
    ledger.faults.fail("reserve")

    with pytest.raises(InjectedFaultError):
        reserve_request(ledger, budgets, new_row(), make_hold("k1", "chat", [BUDGET], HELD, NOW))

    assert ledger.rows == {}
    assert in_use(budgets) == 0


def test_a_hold_that_cannot_be_taken_abandons_its_row() -> None:
    ledger, budgets = stores()
    budgets.faults.fail("take")
    row = new_row()

    with pytest.raises(InjectedFaultError):
        reserve_request(ledger, budgets, row, make_hold("k1", "chat", [BUDGET], HELD, NOW))

    assert ledger.state(row.request_id) is RequestState.ABANDONED
    assert in_use(budgets) == 0


def test_a_refused_request_leaves_a_refused_row_and_holds_nothing() -> None:
    ledger, budgets = stores()
    row = new_row(Decimal("11"))

    with pytest.raises(BudgetExceededError):
        reserve_request(ledger, budgets, row, make_hold("k1", "chat", [BUDGET], Decimal("11"), NOW))

    assert ledger.state(row.request_id) is RequestState.REFUSED
    assert budgets.calls == []
    (rejection,) = ledger.rejections(NOW.date(), NOW.date())
    assert (rejection.tenant, rejection.feature, rejection.count) == ("acme", "chat", 1)


def test_a_give_back_that_fails_strands_the_unused_hold_but_the_request_stays_settled() -> None:
    ledger, budgets = stores()
    row = new_row()
    handle = reserve_request(ledger, budgets, row, make_hold("k1", "chat", [BUDGET], HELD, NOW))
    budgets.faults.fail("give_back")

    settlement = settle_request(ledger, budgets, handle, make_entry(row.request_id, cost_usd="0.1"), sleep=no_sleep)

    assert settlement.recorded
    assert ledger.state(row.request_id) is RequestState.SETTLED
    assert in_use(budgets) == HELD  # stricter, never looser


def test_the_sweeper_gathers_a_dry_budget_back_to_its_root() -> None:
    ledger, budgets = stores()
    small = Budget(tenant_scope("acme"), BudgetPeriod.DAY, Decimal("1"), shards=4)
    for _ in range(30):
        with contextlib.suppress(BudgetExceededError):
            reserve_request(
                ledger, budgets, new_row(Decimal("0.09")), make_hold("k1", "chat", [small], Decimal("0.09"), NOW)
            )
    in_shards = budgets.held_in_shards(small, WINDOW)

    report = sweep(ledger, budgets, NOW)

    assert (report.gathered_windows, report.gathered_usd) == (1, in_shards)
    assert budgets.held_in_shards(small, WINDOW) == 0


# --- through the gateway -------------------------------------------------------------------------------


def test_the_client_gets_its_answer_when_the_settle_never_lands() -> None:
    # Given a budgeted key, and a ledger whose settle fails every time
    world = make_world(daily_budget_usd="1")
    world.ledger.faults.fail("settle", times=-1)

    # When a request is answered
    response = world.send()

    # Then the client has the answer and its receipt, but no remaining-budget figure (nothing settled)
    assert response.status == 200
    assert response.headers["x-costgate-cost-usd"] == str(PLAIN_COST)
    assert "x-costgate-budget-remaining-usd" not in response.headers
    # and the row waits for the sweeper with its worst case still held
    assert world.ledger.state(response.headers["x-costgate-request-id"]) is RequestState.RESERVED
    assert world.counter(world.key_scope)[0] == worst_case()
