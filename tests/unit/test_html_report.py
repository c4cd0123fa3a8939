"""The HTML report's data, chart by chart, over the in-memory ledger: exact amounts, the tenant filter, empty ranges."""

import re
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from costgate.accounting.report import CostReportRequest, GroupBy, StrategyTotals
from costgate.pricing.cost import Strategy
from costgate.pricing.usage import TokenUsage
from costgate_local.tools.html_report import (
    CHART_TITLES,
    NO_DATA,
    CacheRates,
    ReportPage,
    gather_report_page,
    percent,
    render_html_report,
    usd,
    write_html_report,
)
from tests.fakes.accounting import InMemoryLedgerStore, make_entry

FIRST = date(2026, 11, 1)
LAST = date(2026, 11, 4)  # Nov 4 has no traffic at all
ZERO = Decimal(0)


def _at(day: int, hour: int = 12) -> datetime:
    return datetime(2026, 11, day, hour, 0, tzinfo=UTC)


def _usd(*amounts: str) -> tuple[Decimal, ...]:
    return tuple(Decimal(a) for a in amounts)


@pytest.fixture
def store() -> InMemoryLedgerStore:
    """Two tenants, three features, two models, four strategies' worth of savings and budget rejections."""
    store = InMemoryLedgerStore()
    entries = [
        # Nov 1, globex: a haiku chat that read 700 of its 1,000 prompt tokens from the prompt cache
        make_entry(
            "r1",
            at=_at(1),
            tenant="globex",
            feature="chat",
            model="claude-haiku-4-5",
            usage=TokenUsage(input_tokens=200, output_tokens=50, cache_write_5m_tokens=100, cache_read_tokens=700),
            cost_usd="0.7",
            savings={Strategy.PROMPT_CACHE: "0.2"},
        ),
        # Nov 2, globex: answered from the answer cache, at no cost and no tokens
        make_entry(
            "r2",
            at=_at(2),
            tenant="globex",
            feature="summarise",
            model="claude-haiku-4-5",
            usage=TokenUsage(input_tokens=0, output_tokens=0),
            cost_usd="0",
            savings={Strategy.ANSWER_CACHE: "0.05"},
        ),
        # Nov 3, acme (opus, 1,000 input tokens each): a routed chat, a routed search that also read the
        # prompt cache, and a tiny summarise at 7 decimals
        make_entry("r3", at=_at(3), feature="chat", cost_usd="0.1", savings={Strategy.ROUTING: "0.05"}),
        make_entry(
            "r4",
            at=_at(3, 23),
            feature="search",
            cost_usd="0.2",
            savings={Strategy.ROUTING: "0.05", Strategy.PROMPT_CACHE: "0.01"},
        ),
        make_entry("r5", at=_at(3), feature="summarise", cost_usd="0.0000055"),
    ]
    for entry in entries:
        assert store.record(entry)
    for day, tenant, feature in [(2, "acme", "chat"), (2, "acme", "chat"), (3, "acme", "search")]:
        store.count_rejection(_at(day), tenant, feature)
    for _ in range(3):
        store.count_rejection(_at(3), "globex", "chat")
    return store


def _page(store: InMemoryLedgerStore, tenant: str | None = None, first: date = FIRST, last: date = LAST) -> ReportPage:
    return gather_report_page(store, CostReportRequest(first, last, GroupBy.DAY, tenant))


# --- 1 and 2: daily cost by feature and by model ---------------------------------------------------------------


def test_daily_cost_by_feature_has_every_day_exactly(store: InMemoryLedgerStore) -> None:
    # Given traffic on Nov 1-3 and none on Nov 4
    # When shaping the page for Nov 1-4
    stack = _page(store).cost_by_feature

    # Then there is one bar per UTC day (the empty day included) and exact amounts per feature, largest first
    assert stack.days == (date(2026, 11, 1), date(2026, 11, 2), date(2026, 11, 3), date(2026, 11, 4))
    assert list(stack.series.items()) == [
        ("chat", _usd("0.7", "0", "0.1", "0")),
        ("search", _usd("0", "0", "0.2", "0")),
        ("summarise", _usd("0", "0", "0.0000055", "0")),
    ]


def test_daily_cost_by_model_sums_features(store: InMemoryLedgerStore) -> None:
    # Given three opus features on Nov 3 and two haiku requests on Nov 1-2
    # When shaping the page
    stack = _page(store).cost_by_model

    # Then Nov 3's opus bar is the exact sum 0.1 + 0.2 + 0.0000055, and haiku (0.7) comes first
    assert list(stack.series.items()) == [
        ("claude-haiku-4-5", _usd("0.7", "0", "0", "0")),
        ("claude-opus-5-5", _usd("0", "0", "0.3000055", "0")),
    ]


# --- 3: savings by strategy ----------------------------------------------------------------------------------


def test_savings_by_strategy_compare_baseline_and_actual_of_the_requests_changed(store: InMemoryLedgerStore) -> None:
    # Given prompt caching on r1 and r4, routing on r3 and r4, the answer cache on r2, no batch
    # When shaping the page
    strategies = _page(store).strategies

    # Then each strategy counts only the requests it changed (r4 under two), with exact amounts
    prompt = strategies[Strategy.PROMPT_CACHE]
    assert (prompt.requests, prompt.baseline_cost_usd, prompt.cost_usd, prompt.savings_usd) == (
        2,
        *_usd("1.11", "0.9", "0.21"),
    )
    assert prompt.saving_fraction == Decimal("0.21") / Decimal("1.11")
    routing = strategies[Strategy.ROUTING]
    assert (routing.requests, routing.baseline_cost_usd, routing.cost_usd, routing.saving_fraction) == (
        2,
        *_usd("0.4", "0.3", "0.25"),
    )
    answer = strategies[Strategy.ANSWER_CACHE]
    assert (answer.requests, answer.baseline_cost_usd, answer.cost_usd, answer.saving_fraction) == (
        1,
        *_usd("0.05", "0", "1"),
    )
    batch = strategies[Strategy.BATCH]
    assert (batch.requests, batch.baseline_cost_usd, batch.saving_fraction) == (0, ZERO, None)


# --- 4: cache hit rates per feature --------------------------------------------------------------------------


def test_cache_hit_rates_per_feature(store: InMemoryLedgerStore) -> None:
    # Given chat read 700 of 2,000 prompt tokens (200 + 100 written + 700 read, and acme's 1,000), and one
    # of summarise's two requests came from the answer cache
    # When shaping the page
    rates = _page(store).cache_rates

    # Then prompt cache = reads / (input + writes + reads), answer cache = answered / requests, by cost order
    assert [(r.feature, r.prompt_cache, r.answer_cache) for r in rates] == [
        ("chat", Decimal("0.35"), ZERO),
        ("search", ZERO, ZERO),
        ("summarise", ZERO, Decimal("0.5")),
    ]
    assert rates[0] == CacheRates(
        feature="chat", requests=2, answered_from_cache=0, prompt_tokens=2000, cache_read_tokens=700
    )


def test_a_rate_with_nothing_to_divide_by_is_none() -> None:
    # Given a feature whose only request had no prompt tokens at all
    rates = CacheRates(feature="ping", requests=1, answered_from_cache=1, prompt_tokens=0, cache_read_tokens=0)

    # Then its prompt-cache rate is unknown rather than 0 %, and shows as a dash
    assert (rates.prompt_cache, rates.answer_cache) == (None, Decimal(1))
    assert percent(rates.prompt_cache) == "—"
    assert (
        CacheRates(feature="idle", requests=0, answered_from_cache=0, prompt_tokens=0, cache_read_tokens=0).answer_cache
        is None
    )


# --- 5: budget rejections per day by tenant ------------------------------------------------------------------


def test_rejections_per_day_by_tenant(store: InMemoryLedgerStore) -> None:
    # Given acme refused twice on Nov 2 and once on Nov 3 (two features), globex three times on Nov 3
    # When shaping the page
    page = _page(store)

    # Then features are summed per tenant and day; equal totals are ordered by name
    assert list(page.rejections_by_tenant.series.items()) == [("acme", (0, 2, 1, 0)), ("globex", (0, 0, 3, 0))]
    assert page.report.budget_rejections == 6


# --- the tenant filter and empty ranges ----------------------------------------------------------------------


def test_the_tenant_filter_applies_to_every_chart(store: InMemoryLedgerStore) -> None:
    # Given the same ledger
    # When shaping the page for acme only
    page = _page(store, tenant="acme")

    # Then no chart, total or table holds globex's traffic or rejections
    assert list(page.cost_by_feature.series.items()) == [
        ("search", _usd("0", "0", "0.2", "0")),
        ("chat", _usd("0", "0", "0.1", "0")),
        ("summarise", _usd("0", "0", "0.0000055", "0")),
    ]
    assert list(page.cost_by_model.series) == ["claude-opus-5-5"]
    assert {s: (t.requests, t.cost_usd, t.savings_usd) for s, t in page.strategies.items()} == {
        Strategy.PROMPT_CACHE: (1, *_usd("0.2", "0.01")),
        Strategy.BATCH: (0, ZERO, ZERO),
        Strategy.ROUTING: (2, *_usd("0.3", "0.1")),
        Strategy.ANSWER_CACHE: (0, ZERO, ZERO),
    }
    assert [(r.feature, r.requests, r.cache_read_tokens) for r in page.cache_rates] == [
        ("search", 1, 0),
        ("chat", 1, 0),
        ("summarise", 1, 0),
    ]
    assert list(page.rejections_by_tenant.series.items()) == [("acme", (0, 2, 1, 0))]
    assert (page.report.total.requests, page.report.total.cost_usd, page.report.budget_rejections) == (
        3,
        Decimal("0.3000055"),
        3,
    )


def test_an_empty_range_renders_no_data_in_every_chart(store: InMemoryLedgerStore) -> None:
    # Given a week with no traffic and no rejections
    # When shaping and rendering it
    page = _page(store, first=date(2026, 12, 1), last=date(2026, 12, 7))
    html = render_html_report(page)

    # Then every series is empty, and each of the five charts says so instead of failing
    assert len(page.cost_by_feature.days) == 7
    assert page.cost_by_feature.series == page.cost_by_model.series == page.rejections_by_tenant.series == {}
    assert page.cache_rates == []
    assert html.count(NO_DATA) == 5
    assert html.count("Plotly.newPlot") == 5
    assert "<dd>$0.00 (—)</dd>" in html


# --- the page --------------------------------------------------------------------------------------------------


def test_page_is_self_contained_and_written_where_asked(store: InMemoryLedgerStore, tmp_path: Path) -> None:
    # Given a path in folders that do not exist yet
    path = tmp_path / "out" / "reports" / "report.html"

    # When writing the report
    write_html_report(store, CostReportRequest(FIRST, LAST, GroupBy.MODEL), path)

    # Then the folders are made, and the page loads nothing: plotly.js is inline, no script or link has a source
    html = path.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>")
    assert not re.search(r"<script[^>]*\ssrc=|<link\b|<iframe\b|<img\b", html)
    assert "window.PlotlyConfig" in html
    assert html.count("Plotly.newPlot") == 5
    assert all(title in html for title in CHART_TITLES)


def test_header_table_and_hover_text_show_exact_amounts(store: InMemoryLedgerStore) -> None:
    # Given the ledger above (total cost 1.0000055 against a 1.3600055 baseline)
    # When rendering the page
    html = render_html_report(_page(store))

    # Then the header states the period, scope and exact totals
    assert "2026-11-01 to 2026-11-04 (UTC days), all tenants" in html
    assert "<dt>Requests</dt><dd>5</dd>" in html
    assert "<dt>Cost</dt><dd>$1.0000055</dd>" in html
    assert "<dd>$1.3600055</dd>" in html
    assert "<dd>$0.36 (26.5%)</dd>" in html
    assert "<dt>Budget rejections</dt><dd>6</dd>" in html
    # and the strategy table has one row per strategy: requests, baseline, actual, saving, %
    assert _row(html, "Prompt caching") == ["2", "$1.11", "$0.90", "$0.21", "18.9%"]
    assert _row(html, "Model routing") == ["2", "$0.40", "$0.30", "$0.10", "25.0%"]
    assert _row(html, "Answer cache") == ["1", "$0.05", "$0.00", "$0.05", "100.0%"]
    assert _row(html, "Batch API") == ["0", "$0.00", "$0.00", "$0.00", "—"]
    assert _row(html, "All requests") == ["5", "$1.3600055", "$1.0000055", "$0.36", "26.5%"]
    # and the charts' hover text carries exact amounts (the bars themselves are floats)
    assert '"$0.0000055"' in html
    assert '"$0.3000055"' in html


def _row(html: str, name: str) -> list[str]:
    match = re.search(rf'<th scope="row">{re.escape(name)}</th>(.*?)</tr>', html)
    assert match, name
    return re.findall(r'<td class="num">(.*?)</td>', match.group(1))


@pytest.mark.parametrize(
    ("amount", "shown"),
    [
        ("0", "$0.00"),
        ("12", "$12.00"),
        ("0.7", "$0.70"),
        ("1234.5", "$1,234.50"),
        ("0.0000055", "$0.0000055"),
        ("1234567.1234567", "$1,234,567.1234567"),
        ("-0.2", "-$0.20"),
        ("0.30", "$0.30"),
    ],
)
def test_usd_is_exact_with_at_least_cents(amount: str, shown: str) -> None:
    assert usd(Decimal(amount)) == shown


def test_percent_of_a_zero_baseline_is_a_dash() -> None:
    # Given nothing spent, so no baseline to divide by
    # Then the saving percentage is a dash rather than a division by zero; others get one decimal
    assert percent(StrategyTotals().saving_fraction) == "—"
    assert percent(Decimal("0.2367")) == "23.7%"
