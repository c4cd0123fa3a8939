"""The installed `costgate` command, as a user runs it: price, report against local AWS, and the demo."""

import json
import os
import subprocess
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from costgate.cost import measure_savings, price_usage
from costgate.usage import normalise_usage
from costgate_local.sample import sample_day

COSTGATE = Path(sys.executable).parent / "costgate"


def costgate(
    *args: str, stdin: str = "", env: dict[str, str] | None = None, timeout: int = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(COSTGATE), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_price_prints_the_exact_cost() -> None:
    result = costgate("price", stdin='{"model":"claude-opus-5-5","usage":{"input_tokens":1000,"output_tokens":500}}\n')
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["cost_usd"] == "0.014"


def test_price_fails_clearly_on_an_unknown_model() -> None:
    result = costgate("price", stdin='{"model":"claude-unknown-9","usage":{"input_tokens":1}}\n')
    assert result.returncode == 1
    assert json.loads(result.stdout) == {
        "error": {
            "line": 1,
            "message": "costgate has no price for model 'claude-unknown-9'; add it to the price data before use",
        }
    }


@pytest.mark.slow
def test_demo_reports_exactly_what_the_sample_day_costs() -> None:
    # Given the demo's sample day, priced independently here
    day = date(2026, 11, 29)
    expected_cost = Decimal(0)
    expected_baseline = Decimal(0)
    requests = sample_day(day)
    for request in requests:
        usage = normalise_usage(request.usage)
        cost = price_usage(request.model, usage, request.at)
        expected_cost += cost.total_usd
        expected_baseline += measure_savings(request.model, usage, cost, request.at).baseline_usd
    # When the demo records it through the ledger (moto) and reads the report back
    result = costgate("demo", "--day", day.isoformat(), timeout=300)
    # Then its total rows show the same figures (rounded to 6 places for display) and count duplicates once
    assert result.returncode == 0, result.stderr
    totals = [line.split() for line in result.stdout.splitlines() if line.startswith("total ")]
    assert len(totals) == 3  # by feature, by model, by tenant
    display = Decimal("0.000001")
    for row in totals:
        assert int(row[1].replace(",", "")) == len(requests)
        assert Decimal(row[2].replace(",", "")) == expected_cost.quantize(display)
        assert Decimal(row[3].replace(",", "")) == expected_baseline.quantize(display)
    assert "10 recognised as duplicates" in result.stdout
