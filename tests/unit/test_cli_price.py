"""`costgate price`: JSON lines in, one exact cost line out per input line, errors in place."""

import io
import json
from datetime import UTC, datetime

from costgate_local.cli.price import price_lines

NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)


def run(text: str) -> tuple[int, list[dict[str, object]], str]:
    out, err = io.StringIO(), io.StringIO()
    status = price_lines(io.StringIO(text), out, err, now=NOW)
    return status, [json.loads(line) for line in out.getvalue().splitlines()], err.getvalue()


def test_prices_the_issue_example_exactly() -> None:
    # Given the example from the issue: Opus 5.5, 1000 in, 500 out
    status, lines, _ = run('{"model":"claude-opus-5-5","usage":{"input_tokens":1000,"output_tokens":500}}\n')
    # Then the cost is 1000×4/1e6 + 500×20/1e6 = 0.014, as an exact string
    assert status == 0
    assert lines[0]["cost_usd"] == "0.014"
    assert lines[0]["components"] == {
        "input": "0.004",
        "cache_write_5m": "0",
        "cache_write_1h": "0",
        "cache_read": "0",
        "output": "0.01",
        "web_search": "0",
    }
    assert str(lines[0]["price_version"]).endswith(":claude-opus-5-5@2026-02-05")


def test_at_selects_the_rate_in_effect() -> None:
    # Given Sonnet 5.5 cache reads either side of the 2026-10-07 read-multiplier change
    usage = '"usage":{"input_tokens":0,"output_tokens":0,"cache_read_input_tokens":1000000}'
    text = (
        f'{{"model":"claude-sonnet-5-5",{usage},"at":"2026-10-06T23:59:59Z"}}\n'
        f'{{"model":"claude-sonnet-5-5",{usage},"at":"2026-10-07T00:00:00+00:00"}}\n'
    )
    status, lines, _ = run(text)
    # Then 1M reads × $2 × 0.10 = 0.2 before, × 0.05 = 0.1 from the change
    assert status == 0
    assert [line["cost_usd"] for line in lines] == ["0.2", "0.1"]


def test_bad_lines_get_an_error_line_in_place_and_exit_1() -> None:
    # Given a good line between an unknown model, broken JSON, a naive time and a missing usage
    text = "\n".join(
        [
            '{"model":"claude-nope","usage":{"input_tokens":1}}',
            '{"model":"claude-haiku-4-5","usage":{"input_tokens":1000000,"output_tokens":0}}',
            "{not json",
            '{"model":"claude-haiku-4-5","usage":{},"at":"2026-11-01T00:00:00"}',
            '{"model":"claude-haiku-4-5"}',
            '{"model":"claude-haiku-4-5","usage":{"input_tokens":-1}}',
        ]
    )
    status, lines, err = run(text)
    # Then each bad line is answered by an error naming its line, the good one is priced, exit 1
    assert status == 1
    assert lines[1]["cost_usd"] == "1"
    errors = {line["error"]["line"]: line["error"]["message"] for line in lines if "error" in line}  # type: ignore[index]
    assert sorted(errors) == [1, 3, 4, 5, 6]
    assert "claude-nope" in errors[1]
    assert "JSON" in errors[3]
    assert "UTC offset" in errors[4]
    assert "'usage' is required" in errors[5]
    assert "negative" in errors[6]
    assert "line 1:" in err
    assert "line 6:" in err


def test_blank_lines_are_skipped() -> None:
    status, lines, _ = run('\n{"model":"claude-haiku-4-5","usage":{"output_tokens":200000}}\n\n')
    assert status == 0
    assert [line["cost_usd"] for line in lines] == ["1"]
