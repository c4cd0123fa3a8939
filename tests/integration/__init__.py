"""Integration tests: the real adapters and handlers against moto (tests/conftest.py: local_aws, ledger_table)."""

import pytest

pytest.register_assert_rewrite("tests.integration.batch_world")
