"""The burn-rate projection (spent × 86400 / max(seconds since UTC midnight, 3600)) and the spend observation."""

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from costgate.accounting.spend import MIN_ELAPSED_S, SpendObservation, observe_spend, project_day_spend
from costgate.observability import MetricName
from tests.fakes.accounting import InMemoryLedgerStore, make_entry
from tests.unit.test_metrics import SERVICE, emitted

DAY = date(2026, 11, 29)
MIDNIGHT = datetime(2026, 11, 29, tzinfo=UTC)


def at(hours: float) -> datetime:
    return MIDNIGHT + timedelta(hours=hours)


@pytest.fixture
def metrics_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", SERVICE)


@pytest.mark.parametrize(
    ("now", "projected"),
    [
        (at(12), "20"),  # half the day gone: twice what is spent
        (at(6), "40"),
        (at(18), "13.33333333333333333333333333"),
        (at(1), "240"),  # the floor itself: an hour in, 24 ×
        (at(2), "120"),
    ],
)
def test_the_projection_carries_the_days_pace_to_midnight(now: datetime, projected: str) -> None:
    assert project_day_spend(Decimal(10), now) == Decimal(projected)


@pytest.mark.parametrize("now", [MIDNIGHT, MIDNIGHT + timedelta(seconds=1), at(0.5), at(1) - timedelta(microseconds=1)])
def test_within_the_first_hour_the_projection_is_floored_at_24_times_the_spend(now: datetime) -> None:
    # Given one cent spent in the day's first hour (1 s in would otherwise project $864)
    # When / Then it is projected as if spread over a whole hour: 24 × 0.01
    assert project_day_spend(Decimal("0.01"), now) == Decimal("0.24")
    assert MIN_ELAPSED_S == 3600


def test_at_the_end_of_the_day_the_projection_meets_the_spend() -> None:
    last_microsecond = MIDNIGHT + timedelta(days=1) - timedelta(microseconds=1)
    projected = project_day_spend(Decimal("48.5"), last_microsecond)
    # 48.5 × 86400 / 86399.999999: a hair above the spend, never below it
    assert Decimal("48.5") < projected < Decimal("48.50000001")


def test_nothing_spent_projects_nothing() -> None:
    assert project_day_spend(Decimal(0), at(9)) == 0


def test_the_day_is_the_utc_day_whatever_the_clocks_zone() -> None:
    # Given 14:00 in UTC+8, which is 06:00 UTC
    beijing = datetime(2026, 11, 29, 14, 0, tzinfo=timezone(timedelta(hours=8)))
    # When / Then the projection counts from UTC midnight: a quarter of the day gone
    assert project_day_spend(Decimal(5), beijing) == Decimal(20)


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        project_day_spend(Decimal(1), datetime(2026, 11, 29, 12, 0))


def test_the_observation_reads_todays_rollups_only_and_emits_both_gauges(
    metrics_on: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a ledger with two requests today (two tenants, two features), one yesterday and one tomorrow
    store = InMemoryLedgerStore()
    store.record(make_entry("today-1", at=at(2), tenant="acme", feature="chat", cost_usd="1.25"))
    store.record(make_entry("today-2", at=at(5.5), tenant="globex", feature="search", cost_usd="3.75"))
    store.record(make_entry("yesterday", at=at(-1), cost_usd="100"))
    store.record(make_entry("tomorrow", at=at(25), cost_usd="100"))
    capsys.readouterr()

    # When spend is observed at 08:00 UTC
    observation = observe_spend(store, at(8))
    found = emitted(capsys.readouterr().out)

    # Then today's spend is 5.00 and it projects to 15.00 (a third of the day gone)
    assert observation == SpendObservation(day=DAY, spent_usd=Decimal("5.00"), projected_usd=Decimal(15))
    assert observation.as_json() == {"day": "2026-11-29", "spent_usd": "5", "projected_usd": "15"}
    # and both are emitted once, service-only
    assert found[(MetricName.SPEND_TODAY_USD, frozenset())] == [5.0]
    assert found[(MetricName.PROJECTED_DAILY_SPEND_USD, frozenset())] == [15.0]


def test_a_day_without_spend_is_observed_as_zero(metrics_on: None, capsys: pytest.CaptureFixture[str]) -> None:
    # Given an empty ledger / When observed / Then both gauges are 0: a data point, not a gap
    observation = observe_spend(InMemoryLedgerStore(), at(3))
    found = emitted(capsys.readouterr().out)
    assert (observation.spent_usd, observation.projected_usd) == (Decimal(0), Decimal(0))
    assert found[(MetricName.SPEND_TODAY_USD, frozenset())] == [0.0]
    assert found[(MetricName.PROJECTED_DAILY_SPEND_USD, frozenset())] == [0.0]
