"""The cost report over the in-memory store: grouping, exact sums, ordering, per-strategy totals, budget
rejections, query validation, and how `costgate report` renders it."""

import json
import sys
import types
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from costgate.accounting.ports import LedgerStore
from costgate.accounting.report import CostReportRequest, GroupBy, StrategyTotals, build_report
from costgate.errors import InvalidRequestError
from costgate.pricing.cost import Strategy
from costgate.pricing.usage import TokenUsage
from costgate.reconcile.compare import compare
from costgate_local import cli
from costgate_local.cli import report as report_cli
from costgate_local.cli.report import render_strategy_table
from tests.fakes.accounting import InMemoryLedgerStore, make_entry
from tests.unit.reconcile_world import HAIKU, SETTLE, InMemoryResultStore, records, theirs, tokens

FIRST = date(2026, 11, 1)
LAST = date(2026, 11, 30)


def _at(day: int) -> datetime:
    return datetime(2026, 11, day, 12, 0, tzinfo=UTC)


def _store(*entries_args: tuple[str, dict[str, Any]]) -> InMemoryLedgerStore:
    store = InMemoryLedgerStore()
    for request_id, kwargs in entries_args:
        assert store.record(make_entry(request_id, **kwargs))
    return store


def _report(store: InMemoryLedgerStore, group_by: GroupBy, tenant: str | None = None) -> dict[str, Any]:
    return build_report(store, CostReportRequest(FIRST, LAST, group_by, tenant)).as_json()


@pytest.fixture
def store() -> InMemoryLedgerStore:
    """Two tenants, three features, two models over three days; costs float cannot add exactly."""
    return _store(
        ("r1", {"at": _at(3), "tenant": "acme", "feature": "chat", "cost_usd": "0.1", "baseline_usd": "0.15"}),
        ("r2", {"at": _at(3), "tenant": "acme", "feature": "search", "cost_usd": "0.2", "baseline_usd": "0.25"}),
        (
            "r3",
            {
                "at": _at(1),
                "tenant": "globex",
                "feature": "chat",
                "model": "claude-haiku-4-5",
                "cost_usd": "0.7",
                "baseline_usd": "0.9",
            },
        ),
        (
            "r4",
            {
                "at": _at(2),
                "tenant": "globex",
                "feature": "summarise",
                "model": "claude-haiku-4-5",
                "cost_usd": "0.05",
                "baseline_usd": "0.05",
            },
        ),
    )


def _rows(report: dict[str, Any]) -> list[tuple[str, int, Decimal, Decimal, Decimal]]:
    """(key, requests, cost, baseline, savings) per row; amounts parsed back from their exact strings."""
    return [
        (r["key"], r["requests"], Decimal(r["cost_usd"]), Decimal(r["baseline_cost_usd"]), Decimal(r["savings_usd"]))
        for r in report["rows"]
    ]


def _usd(*amounts: str) -> tuple[Decimal, ...]:
    return tuple(Decimal(a) for a in amounts)


# --- grouping and ordering ---------------------------------------------------------------------------


def test_group_by_day_is_chronological(store: InMemoryLedgerStore) -> None:
    # Given requests on Nov 1 (the largest cost), 2 and 3
    # When grouping by day
    report = _report(store, GroupBy.DAY)

    # Then there is one row per day, oldest first, whatever the costs
    assert _rows(report) == [
        ("2026-11-01", 1, *_usd("0.7", "0.9", "0.2")),
        ("2026-11-02", 1, *_usd("0.05", "0.05", "0")),
        ("2026-11-03", 2, *_usd("0.3", "0.4", "0.1")),
    ]


def test_group_by_tenant_is_largest_cost_first(store: InMemoryLedgerStore) -> None:
    # Given acme spending 0.1 + 0.2 and globex 0.7 + 0.05
    # When grouping by tenant
    report = _report(store, GroupBy.TENANT)

    # Then globex comes first, and acme's sum is exactly 0.3 (float would give 0.30000000000000004)
    assert _rows(report) == [
        ("globex", 2, *_usd("0.75", "0.95", "0.2")),
        ("acme", 2, *_usd("0.3", "0.4", "0.1")),
    ]


def test_group_by_feature_is_largest_cost_first(store: InMemoryLedgerStore) -> None:
    # Given chat (two tenants), search and summarise
    # When grouping by feature
    report = _report(store, GroupBy.FEATURE)

    # Then chat sums across tenants and the rows go by cost, largest first
    assert _rows(report) == [
        ("chat", 2, *_usd("0.8", "1.05", "0.25")),
        ("search", 1, *_usd("0.2", "0.25", "0.05")),
        ("summarise", 1, *_usd("0.05", "0.05", "0")),
    ]


def test_group_by_model(store: InMemoryLedgerStore) -> None:
    # Given two opus and two haiku requests
    # When grouping by model
    report = _report(store, GroupBy.MODEL)

    # Then one row per model, the costlier first
    assert _rows(report) == [
        ("claude-haiku-4-5", 2, *_usd("0.75", "0.95", "0.2")),
        ("claude-opus-5-5", 2, *_usd("0.3", "0.4", "0.1")),
    ]


def test_equal_costs_are_ordered_by_key() -> None:
    # Given two tenants with exactly the same cost
    store = _store(
        ("r1", {"tenant": "zeta", "cost_usd": "0.5"}),
        ("r2", {"tenant": "alpha", "cost_usd": "0.50"}),
    )

    # When grouping by tenant
    report = _report(store, GroupBy.TENANT)

    # Then the tie is broken alphabetically, so the order is stable
    assert [row[0] for row in _rows(report)] == ["alpha", "zeta"]


# --- sums ---------------------------------------------------------------------------------------------


def test_point_one_plus_point_two_is_exactly_the_string_0_3() -> None:
    # Given two requests costing 0.1 and 0.2 (in float, 0.1 + 0.2 == 0.30000000000000004)
    store = _store(("r1", {"cost_usd": "0.1"}), ("r2", {"cost_usd": "0.2"}))

    # When reporting them in one group
    report = _report(store, GroupBy.MODEL)

    # Then the row and the total say exactly 0.3
    (row,) = report["rows"]
    assert row["cost_usd"] == "0.3"
    assert report["total"]["cost_usd"] == "0.3"


def test_total_is_the_exact_sum_of_every_row(store: InMemoryLedgerStore) -> None:
    # Given 0.1 + 0.2 + 0.7 + 0.05 against baselines 0.15 + 0.25 + 0.9 + 0.05
    # When building any report
    total = _report(store, GroupBy.MODEL)["total"]

    # Then the total is exact
    assert total["key"] == "total"
    assert total["requests"] == 4
    assert total["cost_usd"] == "1.05"
    assert total["baseline_cost_usd"] == "1.35"
    assert Decimal(total["savings_usd"]) == Decimal("0.3")
    assert total["tokens"] == {
        "input_tokens": 4000,
        "output_tokens": 2000,
        "cache_write_5m_tokens": 0,
        "cache_write_1h_tokens": 0,
        "cache_read_tokens": 0,
        "web_search_requests": 0,
    }


def test_amounts_are_plain_strings_without_trailing_zeros() -> None:
    # Given costs as the cost engine writes them (normalised: 0.014, 0.016) and baselines 1.35 / 1.05 apart
    store = _store(
        ("r1", {"cost_usd": "0.014", "baseline_usd": "0.675"}),
        ("r2", {"cost_usd": "0.016", "baseline_usd": "0.675"}),
    )

    # When reporting them
    (row,) = _report(store, GroupBy.MODEL)["rows"]

    # Then each amount is written like the engine writes costs (format_usd: `0.014`, `12`)
    assert (row["cost_usd"], row["baseline_cost_usd"], row["savings_usd"]) == ("0.03", "1.35", "1.32")


def test_savings_are_baseline_minus_cost_even_when_negative() -> None:
    # Given one request cheaper than its baseline and one (routed up) dearer than it
    store = _store(
        ("r1", {"feature": "cheap", "cost_usd": "0.0000055", "baseline_usd": "0.0001"}),
        ("r2", {"feature": "dear", "cost_usd": "0.3", "baseline_usd": "0.1"}),
    )

    # When grouping by feature
    report = _report(store, GroupBy.FEATURE)

    # Then savings are exactly baseline − cost, in plain notation, negative where it cost more
    assert _rows(report) == [
        ("dear", 1, *_usd("0.3", "0.1", "-0.2")),
        ("cheap", 1, *_usd("0.0000055", "0.0001", "0.0000945")),
    ]


def test_token_categories_are_summed_per_group() -> None:
    # Given two requests with every token category
    usage = TokenUsage(
        input_tokens=10,
        output_tokens=20,
        cache_write_5m_tokens=30,
        cache_write_1h_tokens=40,
        cache_read_tokens=50,
        web_search_requests=1,
        web_fetch_requests=7,
    )
    store = _store(("r1", {"usage": usage}), ("r2", {"usage": usage}))

    # When reporting by model
    (row,) = _report(store, GroupBy.MODEL)["rows"]

    # Then each billed category is doubled (web fetches are free and not reported)
    assert row["tokens"] == {
        "input_tokens": 20,
        "output_tokens": 40,
        "cache_write_5m_tokens": 60,
        "cache_write_1h_tokens": 80,
        "cache_read_tokens": 100,
        "web_search_requests": 2,
    }


# --- filters and ranges -------------------------------------------------------------------------------


def test_tenant_filter_keeps_only_that_tenant(store: InMemoryLedgerStore) -> None:
    # Given two tenants
    # When asking for acme only, by feature
    report = _report(store, GroupBy.FEATURE, tenant="acme")

    # Then globex's features and costs are not in the rows or the total
    assert report["tenant"] == "acme"
    assert _rows(report) == [
        ("search", 1, *_usd("0.2", "0.25", "0.05")),
        ("chat", 1, *_usd("0.1", "0.15", "0.05")),
    ]
    assert report["total"]["cost_usd"] == "0.3"
    assert report["total"]["requests"] == 2


def test_range_includes_first_and_last_day_only() -> None:
    # Given requests on the day before, the first, the last and the day after a range
    store = _store(
        ("before", {"at": datetime(2026, 11, 9, 23, 59, 59, tzinfo=UTC), "cost_usd": "1"}),
        ("first", {"at": datetime(2026, 11, 10, 0, 0, tzinfo=UTC), "cost_usd": "0.01"}),
        ("last", {"at": datetime(2026, 11, 12, 23, 59, 59, tzinfo=UTC), "cost_usd": "0.02"}),
        ("after", {"at": datetime(2026, 11, 13, 0, 0, tzinfo=UTC), "cost_usd": "2"}),
    )

    # When reporting Nov 10..12 by day
    report = build_report(store, CostReportRequest(date(2026, 11, 10), date(2026, 11, 12), GroupBy.DAY)).as_json()

    # Then only the first and the last day are in it
    assert [(row[0], row[2]) for row in _rows(report)] == [
        ("2026-11-10", Decimal("0.01")),
        ("2026-11-12", Decimal("0.02")),
    ]
    assert report["total"]["cost_usd"] == "0.03"


def test_empty_range_gives_no_rows_and_a_zero_total(store: InMemoryLedgerStore) -> None:
    # Given a store with nothing in December
    request = CostReportRequest(date(2026, 12, 1), date(2026, 12, 31), GroupBy.TENANT)

    # When reporting December
    report = build_report(store, request).as_json()

    # Then there are no rows and the total is zero
    assert report["rows"] == []
    assert report["total"]["requests"] == 0
    assert report["total"]["cost_usd"] == "0"
    assert report["total"]["savings_usd"] == "0"
    assert report["from"] == "2026-12-01"
    assert report["to"] == "2026-12-31"
    assert report["group_by"] == "tenant"


# --- per strategy --------------------------------------------------------------------------------------


def _strategies(report: dict[str, Any], row: str = "total") -> dict[str, dict[str, Any]]:
    found = report["total"] if row == "total" else next(r for r in report["rows"] if r["key"] == row)
    strategies: dict[str, dict[str, Any]] = found["strategies"]
    return strategies


def test_a_request_changed_by_two_strategies_counts_under_both() -> None:
    # Given a routed request that also read the prompt cache, and a request only routed
    store = _store(
        (
            "both",
            {"cost_usd": "0.1", "savings": {Strategy.ROUTING: "0.3", Strategy.PROMPT_CACHE: "0.05"}},
        ),
        ("routed", {"cost_usd": "0.2", "savings": {Strategy.ROUTING: "0.4"}}),
    )

    # When reporting them
    strategies = _strategies(_report(store, GroupBy.MODEL))

    # Then routing counts both requests and prompt caching the one it changed, each with its own baseline
    assert strategies["routing"] == {
        "requests": 2,
        "cost_usd": "0.3",
        "baseline_cost_usd": "1",
        "savings_usd": "0.7",
    }
    assert strategies["prompt_cache"] == {
        "requests": 1,
        "cost_usd": "0.1",
        "baseline_cost_usd": "0.15",
        "savings_usd": "0.05",
    }


def test_a_zero_saving_changes_no_request() -> None:
    # Given a batch-tier request measured with no prompt-cache effect (a saving of exactly 0)
    store = _store(("batch", {"cost_usd": "0.5", "savings": {Strategy.PROMPT_CACHE: "0", Strategy.BATCH: "0.5"}}))

    # When reporting it
    strategies = _strategies(_report(store, GroupBy.MODEL))

    # Then only the batch discount counts it; every strategy is still listed
    assert set(strategies) == {s.value for s in Strategy}
    assert strategies["batch"]["requests"] == 1
    for name in ("prompt_cache", "routing", "answer_cache"):
        assert strategies[name] == {"requests": 0, "cost_usd": "0", "baseline_cost_usd": "0", "savings_usd": "0"}


def test_a_negative_saving_counts_as_a_change() -> None:
    # Given a request that only wrote to the prompt cache: it cost 0.0125 more than plain input
    store = _store(("write", {"cost_usd": "0.0625", "savings": {Strategy.PROMPT_CACHE: "-0.0125"}}))

    # When reporting it
    report = build_report(store, CostReportRequest(FIRST, LAST, GroupBy.MODEL))

    # Then prompt caching counts it, with a negative saving against a lower baseline
    totals = report.total.strategies[Strategy.PROMPT_CACHE]
    assert totals == StrategyTotals(requests=1, cost_usd=Decimal("0.0625"), savings_usd=Decimal("-0.0125"))
    assert totals.baseline_cost_usd == Decimal("0.05")
    assert totals.saving_fraction == Decimal("-0.25")


def test_strategy_totals_are_summed_per_group_and_in_the_total() -> None:
    # Given routed requests for two features over two days
    store = _store(
        ("a", {"at": _at(1), "feature": "chat", "cost_usd": "0.1", "savings": {Strategy.ROUTING: "0.2"}}),
        ("b", {"at": _at(2), "feature": "chat", "cost_usd": "0.2", "savings": {Strategy.ROUTING: "0.1"}}),
        ("c", {"at": _at(2), "feature": "search", "cost_usd": "0.4"}),
    )

    # When grouping by feature
    report = _report(store, GroupBy.FEATURE)

    # Then each row has its own strategy totals and the total adds the rows up
    assert _strategies(report, "chat")["routing"]["requests"] == 2
    assert _strategies(report, "search")["routing"]["requests"] == 0
    assert _strategies(report)["routing"] == {
        "requests": 2,
        "cost_usd": "0.3",
        "baseline_cost_usd": "0.6",
        "savings_usd": "0.3",
    }


def test_savings_by_strategy_is_derived_from_the_strategy_totals() -> None:
    # Given a request with savings from two strategies
    store = _store(("r1", {"cost_usd": "0.1", "savings": {Strategy.ROUTING: "0.2", Strategy.ANSWER_CACHE: "0.3"}}))

    # When reporting it
    total = build_report(store, CostReportRequest(FIRST, LAST, GroupBy.DAY)).total

    # Then the per-strategy savings (and their JSON) are the strategy totals' savings
    assert total.savings_by_strategy == {s: totals.savings_usd for s, totals in total.strategies.items()}
    assert total.as_json()["savings_by_strategy"] == {
        "prompt_cache": "0",
        "batch": "0",
        "routing": "0.2",
        "answer_cache": "0.3",
    }


def test_a_rows_overall_totals_are_every_request_of_it(store: InMemoryLedgerStore) -> None:
    # Given the fixture's four requests: 1.05 spent against a 1.35 baseline
    # When taking the total row as strategy totals
    overall = build_report(store, CostReportRequest(FIRST, LAST, GroupBy.DAY)).total.overall

    # Then they are every request, its cost and its whole saving
    assert overall == StrategyTotals(requests=4, cost_usd=Decimal("1.05"), savings_usd=Decimal("0.3"))
    assert overall.baseline_cost_usd == Decimal("1.35")


@pytest.mark.parametrize(
    ("totals", "baseline", "fraction"),
    [
        pytest.param(StrategyTotals(1, Decimal("0.3"), Decimal("0.1")), Decimal("0.4"), Decimal("0.25"), id="saved"),
        pytest.param(StrategyTotals(), Decimal(0), None, id="nothing"),
        pytest.param(StrategyTotals(1, Decimal("0.5"), Decimal("-0.5")), Decimal(0), None, id="zero-baseline"),
    ],
)
def test_strategy_totals_baseline_and_fraction(
    totals: StrategyTotals, baseline: Decimal, fraction: Decimal | None
) -> None:
    # Given what a strategy changed
    # When / Then its baseline is cost + savings, and its fraction savings / baseline (None for no baseline)
    assert totals.baseline_cost_usd == baseline
    assert totals.saving_fraction == fraction


# --- budget rejections ------------------------------------------------------------------------------------


def _rejections(store: InMemoryLedgerStore) -> None:
    """acme/chat: 2 on Nov 3; acme/search: 1 on Nov 4; globex/chat: 4 on Nov 3; acme/chat: 5 on Dec 1."""
    for day, tenant, feature, count in [
        (3, "acme", "chat", 2),
        (4, "acme", "search", 1),
        (3, "globex", "chat", 4),
    ]:
        for _ in range(count):
            store.count_rejection(_at(day), tenant, feature)
    for _ in range(5):
        store.count_rejection(datetime(2026, 12, 1, tzinfo=UTC), "acme", "chat")


def test_budget_rejections_are_summed_over_the_range(store: InMemoryLedgerStore) -> None:
    # Given rejections in November and on Dec 1
    _rejections(store)

    # When reporting November, and Dec 1 alone
    november = _report(store, GroupBy.DAY)
    december = build_report(store, CostReportRequest(date(2026, 12, 1), date(2026, 12, 1), GroupBy.DAY))

    # Then each counts its own days' rejections, every tenant and feature
    assert november["budget_rejections"] == 7
    assert december.budget_rejections == 5
    assert december.rows == []


def test_budget_rejections_follow_the_tenant_filter(store: InMemoryLedgerStore) -> None:
    # Given rejections for acme and globex
    _rejections(store)

    # When reporting each tenant
    # Then each sees only its own
    assert _report(store, GroupBy.FEATURE, tenant="acme")["budget_rejections"] == 3
    assert _report(store, GroupBy.FEATURE, tenant="globex")["budget_rejections"] == 4


def test_a_report_with_no_rejections_says_zero(store: InMemoryLedgerStore) -> None:
    # Given requests and no rejection
    # When reporting them
    # Then the count is there, and 0
    assert _report(store, GroupBy.DAY)["budget_rejections"] == 0


def test_report_json_shape() -> None:
    # Given one routed request
    store = _store(("r1", {"cost_usd": "0.1", "savings": {Strategy.ROUTING: "0.2"}}))
    store.count_rejection(_at(20), "acme", "chat")

    # When reporting it as JSON
    report = _report(store, GroupBy.TENANT)

    # Then the report and every row carry the new keys beside the old ones
    assert set(report) == {"from", "to", "group_by", "tenant", "rows", "total", "budget_rejections"}
    for row in [*report["rows"], report["total"]]:
        assert set(row) == {
            "key",
            "requests",
            "cost_usd",
            "baseline_cost_usd",
            "savings_usd",
            "savings_by_strategy",
            "strategies",
            "tokens",
        }
        assert list(row["strategies"]) == ["prompt_cache", "batch", "routing", "answer_cache"]
        for totals in row["strategies"].values():
            assert set(totals) == {"requests", "cost_usd", "baseline_cost_usd", "savings_usd"}
            assert isinstance(totals["requests"], int)
            assert all(isinstance(totals[k], str) for k in ("cost_usd", "baseline_cost_usd", "savings_usd"))
    assert report["budget_rejections"] == 1


# --- costgate report: the strategy table, --json and --html -------------------------------------------------


def _strategy_store() -> InMemoryLedgerStore:
    """Nov 20: routed + cached (0.1), a cache write only (0.0625, saved -0.0125), untouched (1234.5); 2 rejections."""
    store = _store(
        (
            "both",
            {"at": _at(20), "cost_usd": "0.1", "savings": {Strategy.ROUTING: "0.3", Strategy.PROMPT_CACHE: "0.05"}},
        ),
        ("write", {"at": _at(20), "cost_usd": "0.0625", "savings": {Strategy.PROMPT_CACHE: "-0.0125"}}),
        ("plain", {"at": _at(20), "cost_usd": "1234.5"}),
    )
    store.count_rejection(_at(20), "acme", "chat")
    store.count_rejection(_at(20), "globex", "chat")
    return store


def test_the_strategy_table_lists_each_strategy_that_changed_a_request_then_the_total() -> None:
    # Given requests changed by routing and prompt caching (one of them by both), one by neither, 2 rejections
    report = build_report(_strategy_store(), CostReportRequest(FIRST, LAST, GroupBy.FEATURE))

    # When rendering the strategy table
    lines = render_strategy_table(report).splitlines()

    # Then it has a row per strategy used (Strategy order), the report's total, and says why they do not add up
    assert lines[0].split() == [
        "strategy",
        "requests",
        "baseline",
        "USD",
        "actual",
        "USD",
        "saving",
        "USD",
        "saving",
        "%",
    ]
    assert set(lines[1]) == {"-"}
    assert [line.split() for line in lines[2:4]] == [
        ["prompt_cache", "2", "0.200000", "0.162500", "0.037500", "18.8%"],
        ["routing", "1", "0.400000", "0.100000", "0.300000", "75.0%"],
    ]
    assert set(lines[4]) == {"-"}
    assert lines[5].split() == ["total", "3", "1,235.000000", "1,234.662500", "0.337500", "0.0%"]
    assert "several strategies" in lines[6]
    assert "do not add up to the total" in lines[6]
    assert lines[7].startswith("Budget rejections: 2 ")
    assert len(lines) == 8


def test_the_strategy_table_of_an_empty_range_has_only_the_total() -> None:
    # Given a range with no request and no rejection
    report = build_report(_strategy_store(), CostReportRequest(date(2020, 1, 1), date(2020, 1, 1), GroupBy.DAY))

    # When rendering the strategy table
    lines = render_strategy_table(report).splitlines()

    # Then it says no strategy changed a request, has a zero total with no percentage, and no rejection line
    assert lines[2] == "(no request changed by a strategy)"
    assert lines[4].split() == ["total", "0", "0.000000", "0.000000", "0.000000", "-"]
    assert len(lines) == 5


@pytest.fixture
def report_command(monkeypatch: pytest.MonkeyPatch) -> list[tuple[LedgerStore, CostReportRequest, Path]]:
    """`costgate report` over `_strategy_store()`, with a stand-in html_report module recording its calls."""
    store = _strategy_store()
    written: list[tuple[LedgerStore, CostReportRequest, Path]] = []

    def write_html_report(store: LedgerStore, request: CostReportRequest, path: Path) -> None:
        written.append((store, request, path))
        path.write_text("<html></html>", encoding="utf-8")

    html_report = types.ModuleType("costgate_local.tools.html_report")
    html_report.write_html_report = write_html_report  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "costgate_local.tools.html_report", html_report)
    monkeypatch.setattr(report_cli, "DynamoLedgerStore", lambda: store)
    monkeypatch.setattr(report_cli, "DynamoReconcileStore", lambda: InMemoryResultStore(CHECKED))
    monkeypatch.setattr(report_cli, "bind_table", lambda: None)
    return written


RANGE = ["--from", "2026-11-20", "--to", "2026-11-20"]
# Nov 20 was checked (one request's tokens and cost missing from the ledger); Nov 21 never was.
CHECKED = {
    date(2026, 11, 20): compare(
        date(2026, 11, 20),
        date(2026, 11, 20),
        records(
            date(2026, 11, 20),
            date(2026, 11, 20),
            [theirs(date(2026, 11, 20), HAIKU, "standard", tokens(100, 20), "0.0002")],
            through=datetime(2026, 11, 22, 12, tzinfo=UTC),
        ),
        [],
        now=datetime(2026, 11, 22, 12, tzinfo=UTC),
        settle=SETTLE,
    ).days[0]
}


def test_report_shows_each_days_reconciliation_and_which_were_never_checked(
    report_command: list[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a kept drift verdict for Nov 20 and none for Nov 21
    # When running `costgate report` for both days, as a table and as JSON
    assert cli.main(["report", "--from", "2026-11-20", "--to", "2026-11-21"]) == 0
    table = capsys.readouterr().out
    assert cli.main(["report", "--from", "2026-11-20", "--to", "2026-11-21", "--json"]) == 0
    reported = json.loads(capsys.readouterr().out)

    # Then each day says its status: the drift with its tokens and cost, the other day unchecked
    assert "2026-11-20  drift" in table
    assert "drift 120 tokens, 0.0002 USD" in table
    assert "2026-11-21  unchecked" in table
    assert reported["reconciliation"]["2026-11-20"]["status"] == "drift"
    assert reported["reconciliation"]["2026-11-20"]["drift_tokens"] == 120
    assert reported["reconciliation"]["2026-11-20"]["drift_usd"] == "0.0002"
    assert reported["reconciliation"]["2026-11-21"] == {"status": "unchecked"}


def test_report_prints_the_cost_table_then_the_strategy_table(
    report_command: list[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the ledger of _strategy_store()
    # When running `costgate report` for the day
    assert cli.main(["report", *RANGE]) == 0

    # Then the cost table comes first, the strategy table after it, and no HTML is written
    out = capsys.readouterr().out
    assert out.index("Claude cost by day") < out.index("Savings by strategy, 2026-11-20 to 2026-11-20")
    assert "prompt_cache" in out.split("Savings by strategy")[1]
    assert "Budget rejections: 2 " in out
    assert "HTML report" not in out
    assert report_command == []


def test_report_html_writes_the_page_and_prints_its_absolute_path(
    report_command: list[Any], capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a working directory
    monkeypatch.chdir(tmp_path)

    # When running `costgate report --html` with a relative path, for one tenant
    assert cli.main(["report", *RANGE, "--tenant", "acme", "--html", "report.html"]) == 0

    # Then the HTML writer got the store, the same request and the path, and its absolute path is printed
    ((_, request, path),) = report_command
    assert request == CostReportRequest(date(2026, 11, 20), date(2026, 11, 20), GroupBy.DAY, "acme")
    assert path == Path("report.html")
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == f"HTML report: {tmp_path / 'report.html'}"
    assert "Savings by strategy" in out


def test_report_json_and_html_do_both_and_keep_stdout_json(
    report_command: list[Any], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Given a path for the page
    page = tmp_path / "out" / "report.html"
    page.parent.mkdir()

    # When running `costgate report --json --html`
    assert cli.main(["report", *RANGE, "--json", "--html", str(page)]) == 0

    # Then stdout is the JSON report alone, the page is written, and its path goes to stderr
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["budget_rejections"] == 2
    assert report["total"]["strategies"]["routing"]["requests"] == 1
    assert page.read_text(encoding="utf-8") == "<html></html>"
    assert captured.err.strip() == f"HTML report: {page}"


def test_report_html_to_a_missing_directory_fails_cleanly(
    report_command: list[Any], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Given a path whose directory does not exist
    page = tmp_path / "missing" / "report.html"

    # When running `costgate report --html` to it
    status = cli.main(["report", *RANGE, "--html", str(page)])

    # Then it fails with a one-line error naming the path, not a traceback
    assert status == 1
    assert f"costgate: could not write the HTML report to {page}" in capsys.readouterr().err


# --- CostReportRequest.from_query ------------------------------------------------------------------------


def test_from_query_parses_every_parameter() -> None:
    # Given a full query
    params = {"from": "2026-11-01", "to": "2026-11-29", "group_by": "feature", "tenant": "acme"}

    # When parsing it
    request = CostReportRequest.from_query(params)

    # Then every field is typed
    assert request == CostReportRequest(date(2026, 11, 1), date(2026, 11, 29), GroupBy.FEATURE, "acme")


def test_from_query_defaults_to_group_by_day_and_all_tenants() -> None:
    # Given only the range
    # When parsing it
    request = CostReportRequest.from_query({"from": "2026-11-01", "to": "2026-11-01"})

    # Then the report is by day, for every tenant
    assert request.group_by is GroupBy.DAY
    assert request.tenant is None


def test_from_query_accepts_366_days() -> None:
    # Given the whole of leap year 2028
    # When parsing it
    request = CostReportRequest.from_query({"from": "2028-01-01", "to": "2028-12-31"})

    # Then it is allowed
    assert (request.last - request.first).days + 1 == 366


@pytest.mark.parametrize(
    ("params", "names"),
    [
        pytest.param({"to": "2026-11-29"}, ["'from'"], id="missing-from"),
        pytest.param({"from": "2026-11-01"}, ["'to'"], id="missing-to"),
        pytest.param({"from": "", "to": "2026-11-29"}, ["'from'"], id="empty-from"),
        pytest.param({"from": "2026-13-01", "to": "2026-11-29"}, ["'from'"], id="month-13"),
        pytest.param({"from": "2026-11-01", "to": "2026-11-31"}, ["'to'"], id="nov-31"),
        pytest.param({"from": "yesterday", "to": "2026-11-29"}, ["'from'"], id="not-a-date"),
        pytest.param({"from": "2026-11-29", "to": "2026-11-01"}, ["'from'", "'to'"], id="to-before-from"),
        pytest.param({"from": "2026-11-01", "to": "2026-11-29", "group_by": "week"}, ["'group_by'"], id="group-by"),
        pytest.param({"from": "2026-11-01", "to": "2026-11-29", "group_by": "Model"}, ["'group_by'"], id="case"),
        pytest.param({"from": "2026-11-01", "to": "2026-11-29", "tenant": "acme#eu"}, ["tenant"], id="tenant-hash"),
        pytest.param({"from": "2026-11-01", "to": "2026-11-29", "tenant": "a b"}, ["tenant"], id="tenant-space"),
    ],
)
def test_from_query_rejects_bad_parameters_naming_them(params: dict[str, str], names: list[str]) -> None:
    # Given a query with one bad or missing parameter
    # When parsing it
    with pytest.raises(InvalidRequestError) as raised:
        CostReportRequest.from_query(params)

    # Then it is a 400 whose message names the parameter
    assert raised.value.status == 400
    for name in names:
        assert name in raised.value.message


def test_from_query_rejects_367_days_naming_the_range() -> None:
    # Given a range one day longer than the limit
    params = {"from": "2026-01-01", "to": "2027-01-02"}

    # When parsing it
    with pytest.raises(InvalidRequestError) as raised:
        CostReportRequest.from_query(params)

    # Then the 400 says which parameters to change
    assert "'from'" in raised.value.message
    assert "'to'" in raised.value.message


def test_from_query_rejects_367_days() -> None:
    # Given a range one day longer than the limit
    # When / Then parsing it fails as a 400 that states the limit
    with pytest.raises(InvalidRequestError, match="366 days"):
        CostReportRequest.from_query({"from": "2026-01-01", "to": "2027-01-02"})


@pytest.mark.parametrize("raw", ["20261101", "2026-W45-1"])
def test_from_query_accepts_only_yyyy_mm_dd(raw: str) -> None:
    # Given a date in another ISO 8601 form than the documented YYYY-MM-DD
    # When / Then parsing it fails as the error message says it must
    with pytest.raises(InvalidRequestError, match="'from'"):
        CostReportRequest.from_query({"from": raw, "to": "2026-11-29"})
