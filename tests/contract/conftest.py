"""The implementations every contract test runs against: the fake the unit tests use, and the real adapter.

A module's store fixture takes `table` and builds the fake (for "fake") or the DynamoDB store on a new
table built from template.yaml in moto (for "dynamo"). Stores that cache reads per container get a
`ManualClock`, so a test can step past a staleness allowance without waiting.
"""

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from costgate.accounting.ports import BudgetStore, LedgerStore
from costgate.dal.budgets import DynamoBudgetStore
from costgate.dal.ledger import DynamoLedgerStore
from costgate.dal.prompt_cache import DynamoPromptCacheStore
from costgate.routing.ports import PromptCacheStore
from tests.fakes.accounting import InMemoryBudgetStore, InMemoryLedgerStore
from tests.fakes.clock import ManualClock
from tests.fakes.routing import InMemoryPromptCacheStore

FAKE = "fake"
DYNAMO = "dynamo"


@pytest.fixture(params=[FAKE, DYNAMO])
def table(request: pytest.FixtureRequest) -> str:
    """Which implementation the test runs against; for "dynamo", a fresh table is bound first."""
    if request.param == DYNAMO:
        request.getfixturevalue("ledger_table")
    return str(request.param)


@dataclass
class Accounting:
    """A ledger with the budget and prompt-cache stores its `record` writes into, over the same data.

    `another_ledger()` and `another_prompt_cache()` are what another container holds: for DynamoDB a new
    store over the same table (with its own per-container cache), for the fakes the same objects.
    """

    ledger: LedgerStore
    budgets: BudgetStore
    prompt_cache: PromptCacheStore
    clock: ManualClock
    another_ledger: Callable[[], LedgerStore]
    another_prompt_cache: Callable[[], PromptCacheStore]


@pytest.fixture
def accounting(table: str) -> Accounting:
    clock = ManualClock()
    if table == FAKE:
        budgets = InMemoryBudgetStore()
        prompt_cache = InMemoryPromptCacheStore(clock)
        ledger = InMemoryLedgerStore(budgets=budgets, prompt_cache=prompt_cache)
        return Accounting(ledger, budgets, prompt_cache, clock, lambda: ledger, lambda: prompt_cache)
    return Accounting(
        DynamoLedgerStore(),
        DynamoBudgetStore(clock=clock),
        DynamoPromptCacheStore(clock=clock),
        clock,
        DynamoLedgerStore,
        lambda: DynamoPromptCacheStore(clock=clock),
    )
