"""The HTML report as a reader opens it: written from a moto ledger, drawn offline by headless Chromium.

Needs Debian's /usr/bin/chromium (`make browser`): without it the test is skipped, unless CI is set,
where a missing browser is a failure rather than a silently untested page.
"""

import os
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from playwright.sync_api import ConsoleMessage, Error

from costgate.accounting.report import CostReportRequest, GroupBy
from costgate.dal.ledger import DynamoLedgerStore
from costgate.pricing.cost import Strategy
from costgate.pricing.usage import TokenUsage
from costgate_local.tools.browser import CHROMIUM, headless_chromium, offline
from costgate_local.tools.html_report import CHART_TITLES, wait_for_charts, write_html_report
from tests.fakes.accounting import make_entry

pytestmark = pytest.mark.slow

FIRST = date(2026, 11, 1)
LAST = date(2026, 11, 7)


@pytest.fixture
def chromium() -> None:
    if CHROMIUM.is_file():
        return
    reason = f"{CHROMIUM} is missing: run `make browser` as root (apt-get install chromium) to render the HTML report"
    if "CI" in os.environ:
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture
def report_html(ledger_table: str, tmp_path: Path) -> Path:
    """A week with two tenants, three features, two models, three strategies and budget rejections."""
    store = DynamoLedgerStore()
    entries = [
        make_entry("r1", at=datetime(2026, 11, 2, 9, tzinfo=UTC), feature="chat", cost_usd="0.1"),
        make_entry(
            "r2",
            at=datetime(2026, 11, 2, 10, tzinfo=UTC),
            feature="search",
            cost_usd="0.2",
            savings={Strategy.ROUTING: "0.05"},
        ),
        make_entry(
            "r3",
            at=datetime(2026, 11, 4, 23, 59, tzinfo=UTC),
            tenant="globex",
            model="claude-haiku-4-5",
            usage=TokenUsage(input_tokens=300, output_tokens=100, cache_read_tokens=700),
            cost_usd="0.7",
            savings={Strategy.PROMPT_CACHE: "0.2"},
        ),
        make_entry(
            "r4",
            at=datetime(2026, 11, 5, 8, tzinfo=UTC),
            feature="summarise",
            cost_usd="0",
            savings={Strategy.ANSWER_CACHE: "0.05"},
        ),
    ]
    for entry in entries:
        assert store.record(entry)
    for tenant in ("acme", "acme", "globex"):
        store.count_rejection(datetime(2026, 11, 3, 15, tzinfo=UTC), tenant, "chat")
    path = tmp_path / "html" / "report.html"
    write_html_report(store, CostReportRequest(FIRST, LAST, GroupBy.DAY), path)
    return path


def test_report_opens_offline_and_draws_every_chart(chromium: None, report_html: Path) -> None:
    # Given the report written from the moto ledger (one browser launch and page load: plotly.js alone is 4.8 MB)
    errors: list[str] = []

    def console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(f"console: {message.text}")

    def page_error(error: Error) -> None:
        errors.append(f"page error: {error}")

    # When a fresh headless Chromium opens it from disk, every non-file request blocked and recorded
    with headless_chromium() as browser:
        page = browser.new_page()
        refused = offline(page)
        page.on("console", console)
        page.on("pageerror", page_error)
        page.goto(report_html.resolve().as_uri())
        wait_for_charts(page)

        # Then it asked for nothing over the network and logged no error
        assert refused == []
        assert errors == []
        # and each of the five charts is a plotly SVG with its title and at least one drawn bar
        charts = page.locator(".js-plotly-plot")
        assert charts.count() == len(CHART_TITLES)
        for n, title in enumerate(CHART_TITLES):
            chart = charts.nth(n)
            assert chart.locator(".main-svg").count() >= 1, title
            assert chart.locator(".gtitle").text_content() == title
            assert chart.locator(".trace.bars .point path").count() >= 1, title
        assert page.get_by_text("No data for this period").count() == 0
        # and the header shows the exact totals (0.1 + 0.2 + 0.7 + 0 spent, 0.3 saved), the table the routed request
        header = page.locator("header").inner_text()
        assert "2026-11-01 to 2026-11-07" in header
        assert "$1.00" in header
        assert "$1.30" in header
        assert "$0.30 (23.1%)" in header
        routing = page.locator("tr", has_text="Model routing").inner_text().split()
        assert routing[-5:] == ["1", "$0.25", "$0.20", "$0.05", "20.0%"]
