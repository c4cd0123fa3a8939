"""What the CLI and ReconcileFunction run (costgate.reconcile.service): reading order, ranges, the scheduled
check's choice of days, the verdicts it keeps, and the metrics it emits."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from costgate.errors import InvalidRequestError
from costgate.observability import DIMENSION_SETS, RECONCILE_FIGURES, MetricName
from costgate.reconcile.model import AnthropicRecords, AnthropicRow, DayStatus, LedgerRow
from costgate.reconcile.service import ReconcileSources, recheck_days, reconcile, reconcile_closed_days
from tests.unit.reconcile_world import (
    DAY,
    HAIKU,
    NEXT,
    SETTLE,
    FakeAnthropic,
    FakeLedger,
    InMemoryResultStore,
    ours,
    theirs,
    tokens,
)
from tests.unit.test_metrics import SERVICE, emitted

USED = tokens(1000, 250)
# The scheduled run of Dec 3, 07:00: Nov 30 and Dec 1 are settled, Dec 2 (yesterday) is final but Dec 3 is open.
RUN = datetime(2026, 12, 3, 7, 0, tzinfo=UTC)


@pytest.fixture
def metrics_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", SERVICE)


def _sources(
    anthropic_rows: list[AnthropicRow], ledger_rows: list[LedgerRow], calls: list[str] | None = None
) -> ReconcileSources:
    return ReconcileSources(anthropic=FakeAnthropic(anthropic_rows, calls), ledger=FakeLedger(ledger_rows, calls))


def test_anthropic_is_read_before_the_ledger_with_the_neighbouring_days() -> None:
    # Given sources that note the order they are read in
    calls: list[str] = []
    sources = _sources([], [], calls)

    # When Nov 30 is reconciled on Dec 3
    reconcile(DAY, DAY, sources, now=RUN, settle=SETTLE)

    # Then Anthropic came first (a request recorded meanwhile can only put the ledger ahead: pending, not
    # drift), for Nov 29..Dec 1 (the neighbours explain requests in flight at midnight)
    assert calls == ["anthropic", "ledger"]
    assert sources.anthropic.reads == [(DAY - timedelta(days=1), NEXT)]  # type: ignore[attr-defined]


def test_the_day_after_is_not_read_beyond_today() -> None:
    sources = _sources([], [])
    reconcile(DAY, DAY, sources, now=datetime(2026, 11, 30, 15, tzinfo=UTC), settle=SETTLE)
    assert sources.anthropic.reads == [(DAY - timedelta(days=1), DAY)]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("first", "last", "message"),
    [
        (NEXT, DAY, "before 'from'"),
        (DAY, date(2026, 12, 4), "after today"),
        (date(2025, 11, 1), DAY, "at most 366 days"),
    ],
)
def test_a_bad_range_is_refused_before_any_read(first: date, last: date, message: str) -> None:
    sources = _sources([], [])
    with pytest.raises(InvalidRequestError, match=message):
        reconcile(first, last, sources, now=RUN, settle=SETTLE)
    assert sources.anthropic.reads == []  # type: ignore[attr-defined]


def test_the_scheduled_check_takes_yesterday_and_the_pending_or_unchecked_days(
    metrics_on: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given Nov 28 kept as a match, Nov 29 as pending, Nov 30 never checked; Dec 1 has a drift; Dec 2 is clean
    first_check = reconcile(
        date(2026, 11, 28),
        date(2026, 11, 29),
        _sources([], []),
        now=datetime(2026, 11, 30, 7, tzinfo=UTC),
        settle=SETTLE,
    )
    store = InMemoryResultStore({d.day: d.recorded() for d in first_check.days})
    assert [store.kept[d].status for d in sorted(store.kept)] == [DayStatus.MATCH, DayStatus.PENDING]
    anthropic_rows = [
        theirs(date(2026, 12, 1), HAIKU, "standard", USED + tokens(57, 19), "0.002", amounts=1),
        theirs(date(2026, 12, 2), HAIKU, "standard", USED, "0.0015", amounts=1),
    ]
    ledger_rows = [
        ours(date(2026, 12, 1), HAIKU, "standard", USED, "0.0015"),
        ours(date(2026, 12, 2), HAIKU, "standard", USED, "0.0015"),
    ]
    capsys.readouterr()

    # When the run of Dec 3, 07:00 looks back 5 days
    report = reconcile_closed_days(
        store, _sources(anthropic_rows, ledger_rows), now=RUN, settle=SETTLE, lookback_days=5
    )

    # Then it checked Nov 29 .. Dec 2 (not Nov 28, already settled), and kept each day's recorded verdict
    assert [d.day for d in report.checked] == [date(2026, 11, 29) + timedelta(days=n) for n in range(4)]
    assert {d: store.kept[d].status for d in sorted(store.kept)} == {
        date(2026, 11, 28): DayStatus.MATCH,
        date(2026, 11, 29): DayStatus.MATCH,
        date(2026, 11, 30): DayStatus.MATCH,
        date(2026, 12, 1): DayStatus.DRIFT,
        date(2026, 12, 2): DayStatus.PENDING,  # clean so far, but Dec 3 is open: not settled
    }
    # and emitted the settled drift: one day, 76 tokens, 0.0005 USD, and one pending day
    assert (report.drift_days, report.pending_days, report.drift_tokens, report.drift_usd) == (1, 1, 76, "0.0005")
    found = emitted(capsys.readouterr().out)
    assert found[(MetricName.RECONCILE_DRIFT_DAYS, frozenset())] == [1]
    assert found[(MetricName.RECONCILE_PENDING_DAYS, frozenset())] == [1]
    assert found[(MetricName.RECONCILE_DRIFT_TOKENS, frozenset())] == [76]
    assert found[(MetricName.RECONCILE_DRIFT_USD, frozenset())] == [0.0005]


def test_a_provisional_drift_waits_in_the_scheduled_check_but_counts_when_an_operator_asks(
    metrics_on: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given yesterday (Dec 2) with a request Anthropic billed and the ledger lacks, checked on Dec 3 at 07:00
    yesterday = date(2026, 12, 2)
    rows = [theirs(yesterday, HAIKU, "standard", USED, "0.0015", amounts=1)]
    store = InMemoryResultStore()

    # When the scheduled check runs, and then an operator re-checks the day
    scheduled = reconcile_closed_days(store, _sources(rows, []), now=RUN, settle=SETTLE, lookback_days=1)
    asked = recheck_days(yesterday, yesterday, store, _sources(rows, []), now=RUN, settle=SETTLE)

    # Then the schedule keeps it pending (Dec 3 may still hold its other half), the operator sees the drift
    assert (scheduled.drift_days, scheduled.pending_days) == (0, 1)
    assert (asked.drift_days, asked.drift_tokens, asked.drift_usd) == (1, 1250, "0.0015")
    assert store.kept[yesterday].status is DayStatus.PENDING
    found = emitted(capsys.readouterr().out)
    assert found[(MetricName.RECONCILE_DRIFT_DAYS, frozenset())] == [0, 1]


def test_a_run_with_nothing_due_still_emits_its_zeros(metrics_on: None, capsys: pytest.CaptureFixture[str]) -> None:
    # Given yesterday already kept as a settled match
    settled = reconcile(
        date(2026, 12, 2), date(2026, 12, 2), _sources([], []), now=datetime(2026, 12, 4, 7, tzinfo=UTC), settle=SETTLE
    )
    store = InMemoryResultStore({settled.days[0].day: settled.days[0].recorded()})

    # When the run of Dec 3 looks back one day
    report = reconcile_closed_days(store, _sources([], []), now=RUN, settle=SETTLE, lookback_days=1)

    # Then it checked nothing and said so with zeros (a missing data point would look like a stopped check)
    assert report.checked == ()
    found = emitted(capsys.readouterr().out)
    assert {name: found[(name, frozenset())] for name in RECONCILE_FIGURES} == {name: [0] for name in RECONCILE_FIGURES}
    assert all(DIMENSION_SETS[name] == {frozenset()} for name in RECONCILE_FIGURES)


def test_drift_usd_metric_adds_both_signs() -> None:
    day = date(2026, 12, 1)
    rows_anthropic = [
        theirs(day, HAIKU, "standard", USED + tokens(10), "0.02", amounts=1),
        theirs(day, "claude-opus-5-5", "standard", USED, "0.5", amounts=1),
    ]
    rows_ledger = [
        ours(day, HAIKU, "standard", USED, "0.01"),
        ours(day, "claude-opus-5-5", "standard", USED + tokens(4), "0.52"),
    ]
    report = recheck_days(
        day, day, InMemoryResultStore(), _sources(rows_anthropic, rows_ledger), now=RUN, settle=SETTLE
    )
    assert report.drift_usd == "0.03"
    assert Decimal(report.drift_usd) == abs(Decimal("0.01")) + abs(Decimal("-0.02"))


def test_days_before_what_anthropic_keeps_are_refused_as_a_bad_range() -> None:
    # Given an Anthropic that reports from Nov 30 on
    class Keeps(FakeAnthropic):
        def read(self, first: date, last: date, now: datetime) -> AnthropicRecords:
            return super().read(max(first, DAY), last, now)

    # When Nov 29 is asked for / Then the range is refused, not compared against nothing
    with pytest.raises(InvalidRequestError, match="from 2026-11-30 on"):
        reconcile(date(2026, 11, 29), DAY, ReconcileSources(Keeps([]), FakeLedger([])), now=RUN, settle=SETTLE)
