"""`make run` (= `costgate demo`) as a newcomer runs it: the whole story ends with the table and the report."""

import json
import re
import subprocess
import sys
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest

from costgate_local.tools.demo import WORKLOAD, load_workload

COSTGATE = Path(sys.executable).parent / "costgate"
DEMO_TIMEOUT_S = 900


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path_factory.mktemp("demo-out")
    result = subprocess.run(
        [str(COSTGATE), "demo", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT_S,
        check=False,
    )
    return result, out


def _strategy_rows(stdout: str) -> dict[str, list[str]]:
    """The per-strategy table's rows by their first cell (`prompt_cache`, ..., `total`)."""
    table = stdout.split("Savings by strategy (ledger):", 1)[1]
    rows = {}
    for line in table.splitlines():
        cells = line.split()
        if cells and cells[0] in {"prompt_cache", "answer_cache", "routing", "batch", "total"}:
            rows[cells[0]] = cells
    return rows


def _percent(cells: list[str]) -> Decimal:
    match = re.fullmatch(r"(-?[\d.]+)%", cells[-1])
    assert match, cells
    return Decimal(match.group(1))


def test_make_run_ends_with_every_check_passing(demo: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    result, _ = demo
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    checks = re.findall(r"\[(ok|MISMATCH)\] (.*)", result.stdout)
    # The ledger against the report, the receipts and the rejections, the FAQ's cache labels, and Anthropic's records.
    assert [status for status, _ in checks] == ["ok", "ok", "ok", "ok", "ok"], checks
    assert "equal `costgate report --json`" in checks[0][1]
    assert "0 tokens and 0 USD of drift" in checks[4][1]
    assert "Verdict: the ledger matches Anthropic's records" in result.stdout


def test_every_strategy_saved_on_the_workload(demo: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    result, _ = demo
    rows = _strategy_rows(result.stdout)
    assert set(rows) == {"prompt_cache", "answer_cache", "routing", "batch", "total"}, rows
    # The batch tier halves every component of every request it carried, whatever else applied.
    assert _percent(rows["batch"]) == Decimal(50)
    # An answer from the cache costs nothing upstream.
    assert _percent(rows["answer_cache"]) == Decimal(100)
    for strategy in ("prompt_cache", "routing", "total"):
        assert Decimal(0) < _percent(rows[strategy]) < Decimal(100), rows[strategy]


def test_the_answer_cache_answers_each_faq_question_as_the_workload_labels_it(
    demo: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    # The workload labels each FAQ question with the cache result it should get: an original (near-misses
    # and role swaps included) and the paraphrases the cache cannot vouch for miss, a repeat is an exact
    # hit, the other paraphrases semantic hits (each served the first question's answer).
    result, out = demo
    questions = [
        json.loads(line)
        for line in (WORKLOAD / "customer_faq" / "requests.jsonl").read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    expected = Counter(q["expect"] for q in questions)
    assert {q["expect"] for q in questions if q["kind"] == "paraphrase"} == {"semantic-hit", "miss"}
    match = re.search(
        r"customer-faq .*: (\d+) answered; answer cache (\d+) exact-hit, (\d+) semantic-hit;", result.stdout
    )
    assert match, result.stdout[-3000:]
    # A store that failed is logged by the stack (ERROR): shown with the figures if they differ.
    errors = [line for line in (out / "serve.log").read_text(encoding="utf-8").splitlines() if '"ERROR"' in line]
    hits = [int(group) for group in match.groups()]
    assert hits == [len(questions), expected["exact-hit"], expected["semantic-hit"]], errors[:5]
    # And question by question, as the demo checks it.
    assert "[ok] customer-faq: every answer-cache result as the workload labels it" in result.stdout


def test_budget_runs_out_and_is_counted(demo: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    result, _ = demo
    match = re.search(r"(\d+) budget rejections seen by the clients, (\d+) in the ledger", result.stdout)
    assert match, result.stdout[-2000:]
    assert int(match.group(1)) == int(match.group(2)) > 0


def test_the_report_and_the_replay_log_are_written(demo: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    result, out = demo
    html = out / "report.html"
    assert f"HTML report: {html.resolve()}" in result.stdout
    page = html.read_text(encoding="utf-8")
    assert page.lstrip().lower().startswith("<!doctype html") or page.lstrip().lower().startswith("<html")
    # Self-contained: no script or stylesheet fetched when it is opened (the browser test proves it offline).
    assert not re.search(r"<(script|link)[^>]+(src|href)=[\"']https?:", page)
    lines = [json.loads(line) for line in (out / "requests.jsonl").read_text(encoding="utf-8").splitlines()]
    teams = load_workload()
    sent = sum(len(team.bodies) for team in teams)
    rejected = int(re.search(r"(\d+) budget rejections seen", result.stdout).group(1))  # type: ignore[union-attr]
    assert len(lines) == sent - rejected
    assert {line["feature"] for line in lines} == {team.feature for team in teams}
    assert all(set(line) == {"at", "tenant", "feature", "request", "model", "usage"} for line in lines)


def test_replay_reads_the_demo_log(demo: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    _, out = demo
    replay = subprocess.run(
        [str(COSTGATE), "replay", str(out / "requests.jsonl"), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert replay.returncode == 0, replay.stderr
    assert json.loads(replay.stdout)
