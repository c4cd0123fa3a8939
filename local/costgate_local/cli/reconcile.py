"""`costgate reconcile --from D --to D [--json]`: the ledger (COSTGATE_TABLE) against Anthropic's own usage and cost
records, read with the Admin key in ANTHROPIC_ADMIN_API_KEY. The rules are `costgate.reconcile`'s.

Exit 0 when no day drifts (a pending day is not a drift), 1 when one does, 2 when it cannot tell (a bad range,
a missing key, Anthropic unreachable or refusing the key). Days are compared as of now: a day not yet settled
is marked provisional, and the day in progress is compared through Anthropic's last complete minute.
"""

import argparse
import json
import logging
import os
import sys
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import TextIO

from costgate.dal.reconcile import DynamoLedgerTotals
from costgate.dal.table import bind_table
from costgate.errors import CostgateError
from costgate.money import format_usd
from costgate.observability import logger
from costgate.reconcile.admin_api import AdminApiRecords
from costgate.reconcile.model import DayComparison, Reconciliation, RowComparison
from costgate.reconcile.service import ReconcileSources, reconcile
from costgate.settings import CliReconcileSettings

DEFAULT_ADMIN_API_URL = "https://api.anthropic.com"
DEFAULT_SETTLE_HOURS = 6  # the template's ReconcileSettleHours default
_CATEGORY_LABELS = {
    "input_tokens": "input",
    "cache_write_5m_tokens": "cache write 5m",
    "cache_write_1h_tokens": "cache write 1h",
    "cache_read_tokens": "cache read",
    "output_tokens": "output",
    "web_search_requests": "web searches",
}


def register(reconcile: argparse.ArgumentParser) -> None:
    reconcile.description = (
        "Compare the ledger (COSTGATE_TABLE) with Anthropic's usage and cost records, per UTC day,"
        " model and service tier: every token category exactly, the cost within the cost report's rounding."
        " The Admin API key comes from ANTHROPIC_ADMIN_API_KEY."
    )
    reconcile.add_argument("--from", dest="first", required=True, type=_day, help="first UTC day, YYYY-MM-DD")
    reconcile.add_argument("--to", dest="last", required=True, type=_day, help="last UTC day, YYYY-MM-DD")
    reconcile.add_argument(
        "--api-key-id", action="append", default=[], metavar="ID",
        help="compare only this Claude API key's usage (apikey_...; repeatable; default: the whole organization)",
    )  # fmt: skip
    reconcile.add_argument(
        "--admin-api-url",
        default=os.environ.get("COSTGATE_ADMIN_API_URL", DEFAULT_ADMIN_API_URL),
        help=f"where Anthropic's Admin API is (default: $COSTGATE_ADMIN_API_URL, else {DEFAULT_ADMIN_API_URL})",
    )
    reconcile.add_argument(
        "--settle-hours", type=int, default=DEFAULT_SETTLE_HOURS, metavar="H",
        help=f"hours after a day's end before its verdict is final (default {DEFAULT_SETTLE_HOURS})",
    )  # fmt: skip
    reconcile.add_argument("--json", action="store_true", help="one JSON object: ok, drift_tokens, drift_usd, rows")


def run(
    args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None, now: datetime | None = None
) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    logger.setLevel(logging.WARNING)  # the services' info lines go to stdout, which holds the output
    try:
        if not 0 <= args.settle_hours <= 72:
            raise CostgateError(f"--settle-hours must be 0-72, got {args.settle_hours}")
        settings = CliReconcileSettings.from_env(os.environ)
        bind_table(settings.table_name)
        key = settings.admin_api_key
        sources = ReconcileSources(
            anthropic=AdminApiRecords(args.admin_api_url, lambda: key, api_key_ids=tuple(args.api_key_id)),
            ledger=DynamoLedgerTotals(),
        )
        result = reconcile(
            args.first,
            args.last,
            sources,
            now=now or datetime.now(UTC),
            settle=timedelta(hours=args.settle_hours),
        )
    except CostgateError as error:
        err.write(f"costgate reconcile: {error.message}\n")
        return 2
    if args.json:
        out.write(json.dumps(result.as_json(), indent=2) + "\n")
    else:
        out.write(render_reconciliation(result) + "\n")
    return 0 if result.ok else 1


def render_reconciliation(result: Reconciliation) -> str:
    """Each day's verdict, then every row that differs, category by category; the verdict last.
    Money rounded to 6 decimals for display (--json has it exact)."""
    lines = [f"Reconciliation with Anthropic's records, {result.first} to {result.last} (UTC days)", ""]
    lines += ["day         status   Anthropic's figures through"]
    lines += [f"{day.day}  {day.status.value:<7}  {_through(day)}" for day in result.days]
    differing = [row for day in result.days for row in day.rows if not _same(row)]
    if differing:
        lines += ["", "Rows that differ (difference = Anthropic - ledger):"]
        header = ["day", "model", "tier", "", "Anthropic", "ledger", "difference"]
        cells = [cell for row in differing for cell in _row_cells(row)]
        widths = [max(len(str(line[i])) for line in [header, *cells]) for i in range(len(header))]
        for line in [header, *cells]:
            left = "  ".join(str(line[i]).ljust(widths[i]) for i in range(4))
            right = "  ".join(str(line[i]).rjust(widths[i]) for i in range(4, len(header)))
            lines.append(f"{left}  {right}".rstrip())
        for row in differing:
            lines.append(f"  {row.key.day} {row.key.model} {row.key.service_tier}: {row.status.value}: {row.reason}")
    lines.append("")
    if result.ok:
        pending = sum(1 for day in result.days if day.status.value == "pending")
        note = f"; {pending} day(s) pending, to be checked again" if pending else ""
        lines.append(f"Verdict: the ledger matches Anthropic's records{note}.")
    else:
        lines.append(
            f"Verdict: DRIFT - {result.drift_tokens:,} tokens and {format_usd(result.drift_usd)} USD"
            " (Anthropic - ledger) differ from Anthropic's records."
        )
    return "\n".join(lines)


def _same(row: RowComparison) -> bool:
    return row.token_difference.is_zero and row.cost_difference_usd == 0


def _row_cells(row: RowComparison) -> list[list[str]]:
    label = [str(row.key.day), row.key.model, row.key.service_tier]
    cells = []
    theirs, ours, difference = row.anthropic.as_json(), row.ledger.as_json(), row.token_difference.as_json()
    for name, text in _CATEGORY_LABELS.items():
        if theirs[name] or ours[name]:
            cells.append([*label, text, f"{theirs[name]:,}", f"{ours[name]:,}", f"{difference[name]:+,}"])
            label = ["", "", ""]
    cells.append(
        [
            *label,
            "cost USD",
            _money(row.anthropic_cost_usd),
            _money(row.ledger_cost_usd),
            _money(row.cost_difference_usd, sign=True),
        ]
    )
    return cells


def _through(day: DayComparison) -> str:
    text = "the whole day" if day.complete else day.through.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
    return text + ("" if day.settled else " (provisional: not settled yet)")


def _money(value: Decimal, *, sign: bool = False) -> str:
    rounded = value.quantize(Decimal("0.000001"), rounding=ROUND_HALF_EVEN)
    return f"{rounded:+f}" if sign else f"{rounded:f}"


def _day(text: str) -> date:
    try:
        if len(text) != 10:
            raise ValueError(text)
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a day as YYYY-MM-DD: {text!r}") from None
