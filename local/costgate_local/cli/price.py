"""`costgate price`: JSON lines {"model", "usage", "at"?} on stdin → one cost line each on stdout."""

import argparse
import json
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, TextIO

from costgate.errors import CostgateError
from costgate.money import format_usd
from costgate.pricing.cost import CostComponent, price_usage


def register(parser: argparse.ArgumentParser) -> None:
    """No options: the usage objects come on stdin."""


def run(args: argparse.Namespace) -> int:
    return price_lines(sys.stdin, sys.stdout, sys.stderr)


def price_lines(lines: Iterable[str], out: TextIO, err: TextIO, now: datetime | None = None) -> int:
    """Price each line; a bad line gets an error line in its place (outputs stay aligned) and exit status 1."""
    failures = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            result = _price_line(line, now or datetime.now(UTC))
        except (CostgateError, ValueError) as error:
            failures += 1
            message = error.message if isinstance(error, CostgateError) else str(error)
            result = {"error": {"line": number, "message": message}}
            print(f"costgate price: line {number}: {message}", file=err)
        out.write(json.dumps(result) + "\n")
    return 1 if failures else 0


def _price_line(line: str, now: datetime) -> dict[str, Any]:
    try:
        item = json.loads(line)
    except json.JSONDecodeError as error:
        raise ValueError(f"not valid JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(item, dict):
        raise ValueError('each line must be a JSON object {"model": …, "usage": {…}, "at": optional ISO time}')
    model = item.get("model")
    if not isinstance(model, str):
        raise ValueError("'model' is required and must be a string")
    if "usage" not in item:
        raise ValueError("'usage' is required")
    at = _parse_time(item.get("at"), now)
    cost = price_usage(model, item["usage"], at)
    return {
        "cost_usd": format_usd(cost.total_usd),
        "components": {component.value: format_usd(cost.components[component]) for component in CostComponent},
        "price_version": cost.price_version,
        "model": cost.model,
        "modifiers": list(cost.modifiers),
        "confirmed": cost.confirmed,
    }


def _parse_time(raw: Any, now: datetime) -> datetime:
    if raw is None:
        return now
    if not isinstance(raw, str):
        raise ValueError("'at' must be an ISO 8601 time string")
    try:
        at = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"'at' is not an ISO 8601 time: {raw!r}") from None
    if at.tzinfo is None:
        raise ValueError(f"'at' must carry a UTC offset (e.g. {raw}Z): prices change at UTC midnight")
    return at
