"""Integration tests: the real adapters and handlers against moto (tests/conftest.py: local_aws, ledger_table)."""

import pytest

pytest.register_assert_rewrite("tests.integration.batch_world")


def nullable[T](value: T) -> T | None:
    """A pynamodb attribute as it may read: pynamodb types every attribute as its value type, but one
    declared `null=True` (or removed) reads as None; mypy needs to hear that before `== None` checks."""
    return value
