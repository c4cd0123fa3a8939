"""Text tables and display amounts, shared by the commands' outputs."""

from collections.abc import Sequence
from decimal import ROUND_HALF_EVEN, Decimal


def money(value: Decimal) -> str:
    """USD rounded to 6 decimals with thousands separators, for display only (the ledger and --json keep it exact)."""
    return f"{value.quantize(Decimal('0.000001'), rounding=ROUND_HALF_EVEN):,}"


def left_aligned(rows: Sequence[Sequence[str]]) -> list[str]:
    """One line per row, every column left-aligned, two spaces apart, no trailing spaces."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]


def figures(rows: Sequence[Sequence[str]]) -> list[str]:
    """One line per row: the first column (the labels) left-aligned, the others (the figures) right-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for first, *rest in rows:
        cells = [first.ljust(widths[0]), *(cell.rjust(width) for cell, width in zip(rest, widths[1:], strict=True))]
        lines.append("  ".join(cells))
    return lines


def ruled(columns: Sequence[str], body: Sequence[Sequence[str]], total: Sequence[str], empty: str) -> list[str]:
    """Header, rule, body rows (or `empty`), rule, total, laid out as `figures`."""
    header, *lines, total_line = figures([columns, *body, total])
    rule = "-" * len(header)
    return [header, rule, *(lines or [empty]), rule, total_line]
