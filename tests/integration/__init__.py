"""Integration tests: the real adapters and handlers against moto (tests/conftest.py: local_aws, ledger_table)."""

import pytest

from costgate.accounting.budgets import Hold
from costgate.dal.budgets import reserve_update

pytest.register_assert_rewrite("tests.integration.batch_world")


def nullable[T](value: T) -> T | None:
    """A pynamodb attribute as it may read: pynamodb types every attribute as its value type, but one
    declared `null=True` (or removed) reads as None; mypy needs to hear that before `== None` checks."""
    return value


def hold_on_root(hold: Hold) -> None:
    """What another batch's hold leaves on a budget window's root in the table: committed += amount, if it fits
    (InMemoryBudgetStore.reserve_root is the fake's)."""
    item, actions, condition = reserve_update(hold)
    item.update(actions=actions, condition=condition)
