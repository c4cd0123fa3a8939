"""`costgate replay` as a user runs it: the installed command on a log file, as a table and as JSON."""

import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from costgate.pricing.cost import price_usage
from tests.e2e.test_cli import costgate

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "replay" / "sample_requests.jsonl"


def _line(at: str, feature: str, request_model: str, model: str, usage: dict[str, int], prompt: str) -> str:
    request = {"model": request_model, "max_tokens": 512, "messages": [{"role": "user", "content": prompt}]}
    item = {"at": at, "tenant": "acme", "feature": feature, "request": request, "model": model, "usage": usage}
    return json.dumps(item, ensure_ascii=False)


# An auto question answered by Haiku 5.5 twice, 10 minutes apart (1,000 in, 1,000 out: 0.0001 + 0.0005 = 0.0006
# each; 0.002 + 0.01 = 0.012 on Sonnet 5.5), and a Haiku 4.5 summary (2,000 in, 400 out: 0.002 + 0.002 = 0.004;
# 0.002 at batch tier). As logged: 0.0052.
QUESTION = "비밀번호를 어떻게 바꾸나요?"
EVEN = {"input_tokens": 1000, "output_tokens": 1000}
SUMMARY = {"input_tokens": 2000, "output_tokens": 400}
LOG = "\n".join(
    [
        _line("2026-11-29T09:00:00Z", "support-bot", "auto", "claude-haiku-5-5", EVEN, QUESTION),
        "",
        _line("2026-11-29T09:05:00Z", "meeting-notes", "claude-haiku-4-5", "claude-haiku-4-5", SUMMARY, "Summarise."),
        _line("2026-11-29T09:10:00Z", "support-bot", "auto", "claude-haiku-5-5", EVEN, QUESTION),
    ]
)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "requests.jsonl"
    path.write_text(text + "\n", encoding="utf-8")
    return path


def test_replay_prints_the_as_logged_bill_then_each_policy_and_what_moved_it(tmp_path: Path) -> None:
    # Given the small log
    log = _write(tmp_path, LOG)
    # When it is replayed without routing but with the summaries batched, and with the exact answer cache
    result = costgate(
        "replay", str(log), "--policy", "routing=off,batch=meeting-notes", "--policy", "answer-cache=exact"
    )
    # Then the table shows as logged (0.0052), 2 × 0.012 + 0.002 = 0.026 (+0.0208, +400%), and 0.0046 (-0.0006)
    assert result.returncode == 0, result.stderr
    heading, table, *breakdowns, note = result.stdout.strip().split("\n\n")
    assert heading == f"{log}: 3 requests from 2026-11-29T09:00:00+00:00 to 2026-11-29T09:10:00+00:00"
    assert [line.split() for line in table.splitlines()] == [
        ["policy", "requests", "bill", "USD", "vs", "as", "logged", "change", "%"],
        ["-" * len(table.splitlines()[0])],
        ["as", "logged", "3", "0.005200"],
        ["routing=off,batch=meeting-notes", "3", "0.026000", "+0.020800", "+400.00%"],
        ["answer-cache=exact", "3", "0.004600", "-0.000600", "-11.54%"],
    ]
    # And the breakdown: routing off alone +0.0228 (2 × 0.0114), batching alone -0.002, nothing only together
    assert [line.split() for line in breakdowns[0].splitlines()] == [
        ["routing=off,batch=meeting-notes:"],
        ["routing=off", "+0.022800"],
        ["batch=meeting-notes", "-0.002000"],
        ["together", "0"],
        ["(1", "at", "batch", "tier)"],
    ]
    assert breakdowns[1].splitlines() == [
        "answer-cache=exact:",
        "  answer-cache=exact  -0.000600",
        "  (1 answered from the answer cache)",
    ]
    assert note.startswith("Each setting's change is the bill with that setting alone applied to the log")


def test_replay_json_has_the_same_figures_as_exact_decimal_strings(tmp_path: Path) -> None:
    log = _write(tmp_path, LOG)
    result = costgate("replay", str(log), "--policy", "batch=meeting-notes,routing=off", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "log": str(log),
        "as_logged": {"requests": 3, "bill_usd": "0.0052"},
        "policies": [
            {
                "policy": "routing=off,batch=meeting-notes",
                "requests": 3,
                "answer_cache_hits": 0,
                "prompt_cache_writes": 0,
                "prompt_cache_reads": 0,
                "batched": 1,
                "bill_usd": "0.026",
                "vs_as_logged_usd": "0.0208",
                "change_percent": "400.00",
                "by_setting": {"routing=off": "0.0228", "batch=meeting-notes": "-0.002"},
                "interaction_usd": "0",
            }
        ],
    }


def test_a_bad_line_exits_2_naming_it_and_prints_no_bill(tmp_path: Path) -> None:
    log = _write(tmp_path, LOG + "\n{not json")
    result = costgate("replay", str(log))
    assert result.returncode == 2
    assert result.stdout == ""
    assert (
        result.stderr
        == "costgate replay: line 5: not valid JSON (Expecting property name enclosed in double quotes at column 2)\n"
    )


def test_an_unknown_model_or_a_bad_policy_exits_2(tmp_path: Path) -> None:
    log = _write(tmp_path, LOG.replace('"model": "claude-haiku-4-5", "usage"', '"model": "claude-nope", "usage"'))
    unknown = costgate("replay", str(log))
    assert (unknown.returncode, unknown.stdout) == (2, "")
    assert "line 3: costgate has no price for model 'claude-nope'" in unknown.stderr

    bad_policy = costgate("replay", str(_write(tmp_path, LOG)), "--policy", "prompt-cache=10m")
    assert (bad_policy.returncode, bad_policy.stdout) == (2, "")
    assert bad_policy.stderr == "costgate replay: prompt-cache must be off, 5m or 1h, not '10m'\n"

    missing = costgate("replay", str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 2
    assert "cannot read" in missing.stderr


def test_the_sample_log_replays_under_the_three_standard_what_ifs() -> None:
    # Given the sample log, its as-logged bill priced here line by line
    expected = Decimal(0)
    for line in SAMPLE.read_text(encoding="utf-8").splitlines():
        item = json.loads(line)
        expected += price_usage(item["model"], item["usage"], datetime.fromisoformat(item["at"])).total_usd
    # When it is replayed with no --policy
    result = costgate("replay", str(SAMPLE), "--json")
    # Then it shows the as-logged bill exactly and the three standard what-ifs
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert Decimal(shown["as_logged"]["bill_usd"]) == expected
    assert shown["as_logged"]["requests"] == 15
    assert [p["policy"] for p in shown["policies"]] == [
        "prompt-cache=off,routing=off,batch=off",
        "prompt-cache=5m",
        "routing=all",
    ]
    for policy in shown["policies"]:
        assert Decimal(policy["bill_usd"]) - expected == Decimal(policy["vs_as_logged_usd"])


def test_a_batch_feature_missing_from_the_log_is_warned_about(tmp_path: Path) -> None:
    result = costgate("replay", str(_write(tmp_path, LOG)), "--policy", "batch=meeting-notse", "--json")
    assert result.returncode == 0, result.stderr
    assert result.stderr == "costgate replay: warning: no request in the log has feature meeting-notse\n"
    assert json.loads(result.stdout)["policies"][0]["vs_as_logged_usd"] == "0"
