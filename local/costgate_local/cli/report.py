"""`costgate report`: the ledger's rollups for a date range and the savings per strategy, as fixed-width
tables, exact JSON, or also an HTML page with charts."""

import argparse
import json
import sys
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from costgate.accounting.report import CostReport, CostReportRequest, GroupBy, ReportRow, StrategyTotals, build_report
from costgate.dal.ledger import DynamoLedgerStore
from costgate.dal.reconcile import DynamoReconcileStore
from costgate.money import format_usd
from costgate.reconcile.model import DayComparison
from costgate_local.cli.env import bind_table
from costgate_local.cli.formatting import money, ruled

UNCHECKED = "unchecked"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--from", dest="first", type=date.fromisoformat, help="first UTC day, YYYY-MM-DD (default: 6 days ago)"
    )
    parser.add_argument("--to", dest="last", type=date.fromisoformat, help="last UTC day, YYYY-MM-DD (default: today)")
    parser.add_argument("--group-by", choices=[g.value for g in GroupBy], default=GroupBy.DAY.value)
    parser.add_argument("--tenant", help="only this tenant")
    parser.add_argument("--json", action="store_true", help="exact figures as JSON instead of a table")
    parser.add_argument("--html", metavar="PATH", help="also write the report as an HTML page with charts to PATH")


def run(args: argparse.Namespace) -> int:
    bind_table()
    today = datetime.now(UTC).date()
    request = CostReportRequest(
        first=args.first or today - timedelta(days=6),
        last=args.last or today,
        group_by=GroupBy(args.group_by),
        tenant=args.tenant,
    )
    store = DynamoLedgerStore()
    report = build_report(store, request)
    checked = DynamoReconcileStore().results(request.first, request.last)
    if args.json:
        print(json.dumps({**report.as_json(), "reconciliation": reconciliation_json(request, checked)}, indent=2))
    else:
        print(render_report(report))
        print(f"\nSavings by strategy, {_range_text(request)}")
        print(render_strategy_table(report))
        print(f"\nReconciliation with Anthropic's records (ReconcileFunction, daily), {_range_text(request)}")
        print(render_reconciliation_status(request, checked))
    if args.html:
        # Imported here: plotly and Playwright load for seconds, and only --html draws charts.
        from costgate_local.tools.html_report import write_html_report  # noqa: PLC0415

        path = Path(args.html)
        try:
            write_html_report(store, request, path)
        except OSError as error:
            print(f"costgate: could not write the HTML report to {path}: {error.strerror or error}", file=sys.stderr)
            return 1
        # With --json, stdout stays one JSON document.
        print(f"HTML report: {path.resolve()}", file=sys.stderr if args.json else sys.stdout)
    return 0


def render_report(report: CostReport, title: str | None = None) -> str:
    """A fixed-width table; money rounded to 6 decimals for display only (the ledger keeps it exact)."""
    request = report.request
    heading = title or f"Claude cost by {request.group_by.value}, {_range_text(request)}"
    columns = ["", "requests", "cost USD", "baseline USD", "saved", "input", "output", "cache write", "cache read"]
    body = [_report_cells(row) for row in report.rows]
    table = ruled(columns, body, _report_cells(report.total), empty="(no requests in this range)")
    return "\n".join([heading, "-" * len(table[0]), *table])


def render_strategy_table(report: CostReport) -> str:
    """Per strategy that changed at least one request: those requests, what they would have cost
    without it (baseline), what they cost, and the saving; then the report's total over every request.

    Money is rounded to 6 decimals for display only, like `render_report`.
    """
    columns = ["strategy", "requests", "baseline USD", "actual USD", "saving USD", "saving %"]
    body = [_strategy_cells(s.value, totals) for s, totals in report.total.strategies.items() if totals.requests]
    table = ruled(
        columns, body, _strategy_cells("total", report.total.overall), empty="(no request changed by a strategy)"
    )
    if body:
        table.append("A request can count under several strategies, so the strategy rows do not add up to the total.")
    if report.budget_rejections:
        table.append(f"Budget rejections: {report.budget_rejections:,} (requests refused with a 429: budget exhausted)")
    return "\n".join(table)


def reconciliation_json(request: CostReportRequest, checked: Mapping[date, DayComparison]) -> dict[str, Any]:
    """Each day of the range: the kept verdict (match, pending, drift) or `unchecked`, and its drift."""
    days: dict[str, Any] = {}
    for day in _days(request):
        result = checked.get(day)
        days[day.isoformat()] = (
            {"status": UNCHECKED}
            if result is None
            else {
                "status": result.status.value,
                "settled": result.settled,
                "checked_at": result.checked_at.isoformat(),
                "drift_tokens": result.drift_tokens,
                "drift_usd": format_usd(result.drift_usd),
            }
        )
    return days


def render_reconciliation_status(request: CostReportRequest, checked: Mapping[date, DayComparison]) -> str:
    """One line per day; a tenant filter does not apply (Anthropic's records are per organization)."""
    lines = []
    for day, state in reconciliation_json(request, checked).items():
        if state["status"] == UNCHECKED:
            lines.append(f"{day}  unchecked")
            continue
        final = "final" if state["settled"] else "provisional"
        drift = (
            f"; drift {state['drift_tokens']:,} tokens, {state['drift_usd']} USD" if state["status"] == "drift" else ""
        )
        lines.append(f"{day}  {state['status']:<9} ({final}, checked {state['checked_at']}){drift}")
    return "\n".join(lines)


def _days(request: CostReportRequest) -> list[date]:
    return [request.first + timedelta(days=n) for n in range((request.last - request.first).days + 1)]


def _range_text(request: CostReportRequest) -> str:
    text = f"{request.first} to {request.last}"
    return f"{text} (tenant {request.tenant})" if request.tenant else text


def _strategy_cells(name: str, totals: StrategyTotals) -> list[str]:
    fraction = totals.saving_fraction
    return [
        name,
        f"{totals.requests:,}",
        money(totals.baseline_cost_usd),
        money(totals.cost_usd),
        money(totals.savings_usd),
        "-" if fraction is None else f"{fraction:.1%}",
    ]


def _report_cells(row: ReportRow) -> list[str]:
    saved = f"{row.savings_usd / row.baseline_cost_usd:.1%}" if row.baseline_cost_usd else "-"
    tokens = row.tokens
    return [
        row.key,
        f"{row.requests:,}",
        money(row.cost_usd),
        money(row.baseline_cost_usd),
        saved,
        f"{tokens['input_tokens']:,}",
        f"{tokens['output_tokens']:,}",
        f"{tokens['cache_write_5m_tokens'] + tokens['cache_write_1h_tokens']:,}",
        f"{tokens['cache_read_tokens']:,}",
    ]
