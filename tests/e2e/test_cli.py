"""The installed `costgate` command, as a user runs it: price, report against local AWS, and the demo."""

import json
import os
import subprocess
import sys
from pathlib import Path

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
