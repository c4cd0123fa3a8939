"""The cost report over the in-memory store: grouping, exact sums, ordering, and query validation."""

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from costgate.errors import InvalidRequestError
from costgate.report import CostReportRequest, GroupBy, build_report
from costgate.usage import TokenUsage
from tests.fakes import InMemoryLedgerStore, make_entry

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
