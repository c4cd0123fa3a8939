"""`costgate replay LOG [--policy SPEC]... [--json]`: what a recorded request log would have cost under other
policies and price dates, before anyone turns a strategy on. The rules are `costgate_local.tools.replay`'s."""

import argparse
import json
import sys
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any, TextIO

from costgate.errors import CostgateError, InvalidRequestError
from costgate.money import format_usd
from costgate_local.cli.formatting import figures, money
from costgate_local.tools.replay import (
    DEFAULT_WHAT_IFS,
    Comparison,
    ReplayResult,
    WhatIf,
    compare_policies,
    parse_log,
    parse_policy,
)

BREAKDOWN_NOTE = (
    "Each setting's change is the bill with that setting alone applied to the log, minus the as-logged bill;"
    " 'together' is what the settings change only in combination."
)


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Re-price a request log under other policies. A policy is name=value settings joined by"
        " commas: prompt-cache=off|5m|1h, routing=off|on|all|<simple>/<medium>/<complex>,"
        " batch=off|all|<feature>[+<feature>...], answer-cache=off|exact|exact:<seconds>,"
        " price-date=YYYY-MM-DD. Settings not given stay as logged."
    )
    parser.add_argument(
        "log", type=Path, help='the log: one {"at", "tenant", "feature", "request", "model", "usage"} a line'
    )
    parser.add_argument(
        "--policy", action="append", default=[], metavar="SPEC",
        help="a what-if policy; repeatable (default: prompt-cache=off,routing=off,batch=off; prompt-cache=5m;"
        " routing=all)",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="the exact figures as one JSON object")


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Exit 0 with the bill; 2 with a message on stderr, and no bill, for a bad log line, policy or price."""
    out, err = out or sys.stdout, err or sys.stderr
    try:
        policies = [parse_policy(spec) for spec in args.policy or DEFAULT_WHAT_IFS]
        records = parse_log(_read(args.log))
        comparison = compare_policies(records, policies)
    except CostgateError as error:
        err.write(f"costgate replay: {error.message}\n")
        return 2
    logged = {record.feature for record in records}
    for policy in policies:
        if policy.batch is not None and (unseen := policy.batch.features - logged):
            err.write(f"costgate replay: warning: no request in the log has feature {', '.join(sorted(unseen))}\n")
    if args.json:
        out.write(json.dumps(comparison_json(comparison, str(args.log)), indent=2, ensure_ascii=False) + "\n")
    else:
        out.write(render_comparison(comparison, str(args.log)) + "\n")
    return 0


def _read(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise InvalidRequestError(f"cannot read {path}: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise InvalidRequestError(f"{path} is not UTF-8 text: {error.reason} at byte {error.start}") from None


def render_comparison(comparison: Comparison, source: str) -> str:
    """The bills as a table (money rounded to 6 decimals for display; --json has them exact), then each
    policy's change by setting."""
    logged = comparison.as_logged
    lines = [f"{source}: {_span(logged)}", ""]
    header = ["policy", "requests", "bill USD", "vs as logged", "change %"]
    rows = [["as logged", f"{len(logged.requests):,}", money(logged.total_usd), "", ""]]
    rows += [
        [
            what_if.policy.label,
            f"{len(what_if.result.requests):,}",
            money(what_if.result.total_usd),
            _signed(what_if.vs_as_logged_usd),
            _signed_percent(comparison.change_ratio(what_if)),
        ]
        for what_if in comparison.what_ifs
    ]
    header_line, *row_lines = figures([header, *rows])
    lines += [header_line, "-" * len(header_line), *(line.rstrip() for line in row_lines)]
    for what_if in comparison.what_ifs:
        lines += ["", f"{what_if.policy.label}:", *_breakdown(what_if)]
    if comparison.what_ifs:
        lines += ["", BREAKDOWN_NOTE]
    return "\n".join(lines)


def _span(result: ReplayResult) -> str:
    if not result.requests:
        return "no requests"
    first, last = result.requests[0].at, result.requests[-1].at
    return f"{len(result.requests):,} requests from {first.isoformat()} to {last.isoformat()}"


def _breakdown(what_if: WhatIf) -> list[str]:
    entries = list(what_if.by_setting)
    if len(entries) > 1:
        entries.append(("together", what_if.interaction_usd))
    shown = [(label, _signed(amount)) for label, amount in entries]
    width = max((len(label) for label, _ in shown), default=0)
    amount_width = max((len(amount) for _, amount in shown), default=0)
    lines = [f"  {label.ljust(width)}  {amount.rjust(amount_width)}" for label, amount in shown]
    result = what_if.result
    notes = []
    if result.answer_cache_hits:
        notes.append(f"{result.answer_cache_hits} answered from the answer cache")
    if result.prompt_cache_writes or result.prompt_cache_reads:
        notes.append(f"prompt cache {result.prompt_cache_writes} writes, {result.prompt_cache_reads} reads")
    if result.batched:
        notes.append(f"{result.batched} at batch tier")
    if notes:
        lines.append(f"  ({'; '.join(notes)})")
    return lines


def comparison_json(comparison: Comparison, source: str) -> dict[str, Any]:
    """The same figures, money as exact decimal strings; `change_percent` alone is rounded (2 decimals)."""
    logged = comparison.as_logged
    return {
        "log": source,
        "as_logged": {"requests": len(logged.requests), "bill_usd": format_usd(logged.total_usd)},
        "policies": [
            {
                "policy": what_if.policy.label,
                **_counts(what_if.result),
                "bill_usd": format_usd(what_if.result.total_usd),
                "vs_as_logged_usd": format_usd(what_if.vs_as_logged_usd),
                "change_percent": _percent(comparison.change_ratio(what_if)),
                "by_setting": {label: format_usd(amount) for label, amount in what_if.by_setting},
                "interaction_usd": format_usd(what_if.interaction_usd),
            }
            for what_if in comparison.what_ifs
        ],
    }


def _counts(result: ReplayResult) -> dict[str, int]:
    return {
        "requests": len(result.requests),
        "answer_cache_hits": result.answer_cache_hits,
        "prompt_cache_writes": result.prompt_cache_writes,
        "prompt_cache_reads": result.prompt_cache_reads,
        "batched": result.batched,
    }


def _signed(value: Decimal) -> str:
    return ("+" if value > 0 else "") + money(value) if value else "0"


def _percent(ratio: Decimal | None) -> str | None:
    """Two decimals; None when there is nothing to compare with (an as-logged bill of 0)."""
    return None if ratio is None else f"{(ratio * 100).quantize(Decimal('0.01'), rounding=ROUND_HALF_EVEN)}"


def _signed_percent(ratio: Decimal | None) -> str:
    text = _percent(ratio)
    if text is None:
        return "-"
    return f"+{text}%" if ratio is not None and ratio > 0 else f"{text}%"
