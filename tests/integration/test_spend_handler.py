"""SpendWatchFunction end to end: the real handler on its scheduled event, the ledger in DynamoDB (moto)."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from costgate.dal.ledger import DynamoLedgerStore
from costgate.errors import ConfigurationError
from costgate.observability import MetricName
from functions.spend_watch import handler
from tests.conftest import FakeLambdaContext
from tests.events import load_event
from tests.fakes.accounting import make_entry
from tests.fakes.clock import ManualClock
from tests.unit.test_metrics import SERVICE, emitted

MIDNIGHT = datetime(2026, 11, 29, tzinfo=UTC)
CONTEXT = FakeLambdaContext(
    function_name="costgate-SpendWatchFunction-test",
    invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:costgate-SpendWatchFunction-test",
)


@pytest.fixture(autouse=True)
def cold_container() -> Iterator[None]:
    """Each test is a fresh Lambda instance: no cached settings or store."""
    for cached in (handler.settings, handler.ledger_store):
        cached.cache_clear()
    yield
    for cached in (handler.settings, handler.ledger_store):
        cached.cache_clear()


@pytest.fixture
def metrics_on(ledger_table: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """EMF printed (the ledger_table fixture turns it off), under a service name the parser expects."""
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", SERVICE)


def test_a_tick_emits_todays_spend_and_its_projection_from_the_ledger(
    ledger_table: str, metrics_on: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a ledger in DynamoDB with three requests today, 0.40 + 1.10 + 2.50 USD, and larger ones on the days around
    store = DynamoLedgerStore()
    for request_id, hours, tenant, cost in [
        ("req-today-1", 1.5, "acme", "0.40"),
        ("req-today-2", 3.0, "acme", "1.10"),
        ("req-today-3", 5.75, "globex", "2.50"),
        ("req-yesterday", -0.5, "acme", "70"),
        ("req-tomorrow", 24.5, "acme", "90"),
    ]:
        assert store.record(make_entry(request_id, at=MIDNIGHT + timedelta(hours=hours), tenant=tenant, cost_usd=cost))
    capsys.readouterr()

    # When SpendWatchFunction runs on its scheduled event at 06:00 UTC
    result = handler.lambda_handler(
        load_event("spend_watch", "scheduled"), CONTEXT, clock=ManualClock(MIDNIGHT + timedelta(hours=6))
    )
    found = emitted(capsys.readouterr().out)

    # Then it read today's 4.00 and projected it to 16.00 by midnight (a quarter of the day gone)
    assert result == {"day": "2026-11-29", "spent_usd": "4", "projected_usd": "16"}
    assert Decimal(result["projected_usd"]) == 4 * Decimal(result["spent_usd"])
    # and emitted both gauges once, on the service-only dimension set the burn-rate alarm watches
    assert found[(MetricName.SPEND_TODAY_USD, frozenset())] == [4.0]
    assert found[(MetricName.PROJECTED_DAILY_SPEND_USD, frozenset())] == [16.0]
    assert {name for name, _ in found} == {MetricName.SPEND_TODAY_USD, MetricName.PROJECTED_DAILY_SPEND_USD}


def test_a_tick_in_the_first_hour_projects_at_most_24_times_the_spend(
    ledger_table: str, metrics_on: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given 0.05 USD spent ten minutes after midnight
    DynamoLedgerStore().record(make_entry("req-early", at=MIDNIGHT + timedelta(minutes=10), cost_usd="0.05"))
    capsys.readouterr()

    # When the function runs at 00:15 UTC
    result = handler.lambda_handler(
        load_event("spend_watch", "scheduled"), CONTEXT, clock=ManualClock(MIDNIGHT + timedelta(minutes=15))
    )

    # Then the projection is floored at one hour: 24 × 0.05, not 96 × 0.05
    assert result["projected_usd"] == "1.2"
    assert emitted(capsys.readouterr().out)[(MetricName.PROJECTED_DAILY_SPEND_USD, frozenset())] == [1.2]


def test_a_deployment_without_the_table_setting_fails_naming_it(
    ledger_table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COSTGATE_TABLE")
    with pytest.raises(ConfigurationError, match="COSTGATE_TABLE"):
        handler.lambda_handler(load_event("spend_watch", "scheduled"), CONTEXT, clock=ManualClock(MIDNIGHT))
