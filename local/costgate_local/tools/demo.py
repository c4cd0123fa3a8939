"""`make run`: the shipped workload through the whole local stack, and what each strategy saved.

It starts `costgate serve` (moto as AWS, the Claude API simulator, the real handlers), then acts as
three client teams and a document drop:

- acme-legal's contract analysis: a long legal system prompt, questions about contract clauses
  (the prompt-cache policy caches the prompt);
- hanbit-shop's customer FAQ: questions, their exact repeats and paraphrases (the answer cache);
- nova-research's assistant: questions of every difficulty sent with `model: "auto"` (routing), under
  a daily budget that runs out (budget rejections);
- a folder of documents dropped into S3 and summarised through the Message Batches API.

Every request goes through the official `anthropic` SDK. The tables are then read back from the
ledger, checked against `costgate report` and against the receipts the clients received, and the
HTML report and a request log for `costgate replay` are written.
"""

import io
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from costgate.money import format_usd

WORKLOAD = Path(__file__).parents[1] / "workload"
BATCH_WAIT_S = 300.0
BATCH_POLL_S = 1.0
# nova-research's daily budget for its assistant: enough for most of the day's questions, not all.
ASSISTANT_BUDGET_USD = Decimal("0.06")


@dataclass(frozen=True)
class Team:
    """One client team: its tenant, its feature (sent as x-costgate-feature) and its requests in order."""

    tenant: str
    feature: str
    bodies: tuple[dict[str, Any], ...]
    # What x-costgate-cache each request should get, where the workload says (customer_faq's `expect`),
    # and each request's intent: a hit must carry the answer the intent's first question got.
    expected_cache: tuple[str, ...] = ()
    intents: tuple[str, ...] = ()


@dataclass
class Sent:
    """What one team's client saw: the receipts' costs, the answer-cache results, the rejections."""

    team: Team
    cost_usd: Decimal = Decimal(0)
    answered: int = 0
    rejected: int = 0
    cache: Counter[str] = field(default_factory=Counter)
    cache_results: list[str] = field(default_factory=list)  # x-costgate-cache per answered request, in order
    answers: list[str] = field(default_factory=list)  # the answer's text per answered request, in order
    models: Counter[str] = field(default_factory=Counter)
    log: list[dict[str, Any]] = field(default_factory=list)


def load_workload(root: Path = WORKLOAD) -> list[Team]:
    """The three teams' requests, as the shipped files (workload/README.md) describe them."""
    contract_system = (root / "contract_analysis" / "system.md").read_text(encoding="utf-8")
    faq_system = (root / "customer_faq" / "system.md").read_text(encoding="utf-8")

    def questions(path: str) -> Iterator[dict[str, Any]]:
        for line in (root / path).read_text(encoding="utf-8").splitlines():
            if line.strip():
                yield json.loads(line)

    def body(model: str, question: str, max_tokens: int, system: str | None = None) -> dict[str, Any]:
        message = {"model": model, "max_tokens": max_tokens, "messages": [{"role": "user", "content": question}]}
        return message | ({"system": system} if system else {})

    contract = [
        body("claude-opus-5-5", q["question"], 1024, contract_system)
        for q in questions("contract_analysis/requests.jsonl")
    ]
    faq_questions = list(questions("customer_faq/requests.jsonl"))
    faq = [body("claude-haiku-5-5", q["question"], 400, faq_system) for q in faq_questions]
    assistant = [body("auto", q["question"], 1024) for q in questions("auto_questions/requests.jsonl")]
    return [
        Team("acme-legal", "contract-analysis", tuple(contract)),
        Team(
            "hanbit-shop",
            "customer-faq",
            tuple(faq),
            tuple(q["expect"] for q in faq_questions),
            tuple(q["intent"] for q in faq_questions),
        ),
        Team("nova-research", "research-assistant", tuple(assistant)),
    ]


def run_demo(out: Path) -> int:
    """Run the whole story; 0 when every figure read back agrees, 1 when one does not."""
    from costgate_local.stack.child import LocalStack  # noqa: PLC0415 - starts processes only here

    started = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    teams = load_workload()
    print(
        f"starting the local stack (costgate serve: moto as AWS, the Claude API simulator); log in {out / 'serve.log'}"
    )
    with LocalStack("--batch-interval", "1", "--batch-delay", "2", log=out / "serve.log") as stack:
        os.environ.update(stack.environ() | {"POWERTOOLS_METRICS_DISABLED": "true"})
        _quiet()
        first = datetime.now(UTC).date()
        keys = _set_up(teams)
        print(f"API at {stack.base_url}; {sum(len(t.bodies) for t in teams)} requests from {len(teams)} teams "
              "through the anthropic SDK ...", flush=True)  # fmt: skip
        sent = _send_all(stack.base_url, teams, keys)
        for result in sent:
            print(_team_line(result))
        job = f"demo-{datetime.now(UTC):%Y%m%d-%H%M%S}"
        batch_cost = _run_batch(job, stack.ready["bucket"])
        last = datetime.now(UTC).date()
        ok = _report(first, last, sent=sent, batch_cost=batch_cost, stack=stack, out=out)
    _write_log(out / "requests.jsonl", sent)
    print(f"\nrequest log for `costgate replay`: {(out / 'requests.jsonl').resolve()}")
    print(f"HTML report: {(out / 'report.html').resolve()}")
    print(f"done in {time.monotonic() - started:.0f} s")
    return 0 if ok else 1


def _quiet() -> None:
    from costgate.observability import logger  # noqa: PLC0415

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    logger.setLevel(logging.WARNING)


def _set_up(teams: list[Team]) -> dict[str, str]:
    """A gateway key per tenant, and the assistant's daily budget."""
    from costgate.accounting.budgets import Budget, BudgetPeriod, feature_scope  # noqa: PLC0415
    from costgate.dal.budgets import DynamoBudgetStore  # noqa: PLC0415
    from costgate.dal.keys import DynamoKeyStore  # noqa: PLC0415
    from costgate.dal.table import bind_table  # noqa: PLC0415
    from costgate.gateway.keys import issue_key  # noqa: PLC0415

    bind_table(os.environ["COSTGATE_TABLE"])
    now = datetime.now(UTC)
    keys = {team.tenant: issue_key(DynamoKeyStore(), tenant=team.tenant, now=now)[0] for team in teams}
    budget = Budget(feature_scope("nova-research", "research-assistant"), BudgetPeriod.DAY, ASSISTANT_BUDGET_USD)
    DynamoBudgetStore().put_definition(budget)
    print(f"keys for {', '.join(keys)}; a daily budget of {ASSISTANT_BUDGET_USD} USD on {budget.scope}")
    return keys


def _send_all(base_url: str, teams: list[Team], keys: Mapping[str, str]) -> list[Sent]:
    """Each team sends its requests in order (the caches depend on it); the teams run side by side."""
    sent = [Sent(team) for team in teams]
    errors: list[BaseException] = []

    def run(result: Sent) -> None:
        try:
            _send_team(base_url, keys[result.team.tenant], result)
        except BaseException as error:  # noqa: BLE001 - re-raised in the main thread
            errors.append(error)

    threads = [threading.Thread(target=run, args=(result,), name=result.team.feature) for result in sent]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return sent


def _send_team(base_url: str, api_key: str, result: Sent) -> None:
    import anthropic  # noqa: PLC0415 - the heavy import only where it is used

    client = anthropic.Anthropic(
        base_url=base_url,
        api_key=api_key,
        max_retries=0,
        timeout=120,
        default_headers={"x-costgate-feature": result.team.feature},
    )
    for body in result.team.bodies:
        at = datetime.now(UTC)
        try:
            raw = client.messages.with_raw_response.create(**body)
        except anthropic.RateLimitError as error:
            if "budget" not in str(error).lower():
                raise
            result.rejected += 1
            continue
        message = raw.parse()
        result.answered += 1
        result.cost_usd += Decimal(raw.headers["x-costgate-cost-usd"])
        result.cache[raw.headers.get("x-costgate-cache", "none")] += 1
        result.cache_results.append(raw.headers.get("x-costgate-cache", "none"))
        result.answers.append("".join(block.text for block in message.content if block.type == "text"))
        result.models[message.model] += 1
        result.log.append(
            {
                "at": at.isoformat().replace("+00:00", "Z"),
                "tenant": result.team.tenant,
                "feature": result.team.feature,
                "request": body,
                "model": message.model,
                "usage": raw.http_response.json()["usage"],
            }
        )


def _team_line(result: Sent) -> str:
    team = result.team
    hits = {k: v for k, v in sorted(result.cache.items()) if k.endswith("hit")}
    parts = [f"{result.answered} answered"]
    if hits:
        parts.append("answer cache " + ", ".join(f"{v} {k}" for k, v in hits.items()))
    if result.rejected:
        parts.append(f"{result.rejected} rejected by the budget")
    models = ", ".join(f"{count} {model}" for model, count in result.models.most_common())
    return (
        f"  {team.feature:<19} ({team.tenant}): {'; '.join(parts)}; models: {models}; {format_usd(result.cost_usd)} USD"
    )


def _run_batch(job: str, bucket: str) -> Decimal:
    """Drop the documents into S3 as a job and wait until every one has a result or an error file."""
    from costgate.batch.manifests import job_status  # noqa: PLC0415
    from costgate.dal.batch.store import DynamoBatchStore  # noqa: PLC0415
    from costgate.dal.objects import S3ObjectStore  # noqa: PLC0415
    from costgate_local.cli.batch import render_batch_status, submit_batch  # noqa: PLC0415

    print()
    submit_batch(WORKLOAD / "documents", job, S3ObjectStore(bucket), sys.stdout, io.StringIO())
    store = DynamoBatchStore()
    deadline = time.monotonic() + BATCH_WAIT_S
    shown = ""
    while True:
        status = job_status(store, job)
        line = render_batch_status(status)
        if line != shown:
            print(f"  {line}", flush=True)
            shown = line
        if status.documents and not status.pending:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"batch job {job} still had {status.pending} pending documents after {BATCH_WAIT_S:.0f} s"
            )
        time.sleep(BATCH_POLL_S)
    print(f"  results and the manifest are under s3://{bucket}/results/{job}/")
    return status.cost_usd


def _report(first: date, last: date, *, sent: list[Sent], batch_cost: Decimal, stack: Any, out: Path) -> bool:
    """Print the ledger's tables and check them against `costgate report` and the clients' receipts."""
    from costgate.accounting.report import CostReportRequest, GroupBy, build_report  # noqa: PLC0415
    from costgate.dal.ledger import DynamoLedgerStore  # noqa: PLC0415
    from costgate_local.cli.report import render_report, render_strategy_table  # noqa: PLC0415
    from costgate_local.stack.child import COSTGATE, child_environment  # noqa: PLC0415
    from costgate_local.tools.html_report import write_html_report  # noqa: PLC0415

    store = DynamoLedgerStore()
    request = CostReportRequest(first=first, last=last, group_by=GroupBy.FEATURE)
    report = build_report(store, request)
    print("\n" + render_report(report, title=f"Cost by feature, read back from the ledger ({first} to {last}, UTC)"))
    print("\nSavings by strategy (ledger):\n" + render_strategy_table(report))

    checks: list[tuple[str, Callable[[], bool]]] = []
    command = [str(COSTGATE), "report", "--from", first.isoformat(), "--to", last.isoformat()]
    command += ["--group-by", "feature", "--json"]
    env = child_environment(stack)
    listed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)  # noqa: S603
    if listed.returncode != 0:
        print(listed.stderr, file=sys.stderr)
    reported = json.loads(listed.stdout) if listed.returncode == 0 else {}
    reported.pop("reconciliation", None)  # the kept daily verdicts, checked below against Anthropic's records
    checks.append(("the table's totals equal `costgate report --json`", lambda: reported == report.as_json()))
    receipts = sum((result.cost_usd for result in sent), Decimal(0)) + batch_cost
    checks.append(
        (
            f"the ledger's total ({format_usd(report.total.cost_usd)} USD) equals the receipts the clients got plus "
            f"the batch manifest ({format_usd(receipts)} USD)",
            lambda: receipts == report.total.cost_usd,
        )
    )
    rejected = sum(result.rejected for result in sent)
    checks.append(
        (f"{rejected} budget rejections seen by the clients, {report.budget_rejections} in the ledger",
         lambda: rejected == report.budget_rejections),
    )  # fmt: skip
    checks += [_cache_check(result) for result in sent if result.team.expected_cache]
    reconciled = _reconcile(last, env)
    checks.append(
        (
            "the day reconciles with the simulator's Usage and Cost Analytics records: "
            f"{reconciled.get('drift_tokens')} tokens and {reconciled.get('drift_usd')} USD of drift",
            lambda: reconciled.get("ok") is True and reconciled.get("drift_tokens") == 0,
        )
    )
    print()
    ok = True
    for text, check in checks:
        passed = check()
        ok = ok and passed
        print(f"  [{'ok' if passed else 'MISMATCH'}] {text}")
    write_html_report(store, CostReportRequest(first=first, last=last, group_by=GroupBy.DAY), out / "report.html")
    return ok


def _reconcile(day: date, env: dict[str, str]) -> dict[str, Any]:
    """`costgate reconcile` for the day, as an operator would run it, once Anthropic's last minute is complete.

    The Admin API reports usage in 1-minute buckets and the day in progress is compared through the last
    complete one, so the demo waits for the minute its last request fell in to close.
    """
    from costgate_local.stack.child import COSTGATE  # noqa: PLC0415

    wait = 61 - datetime.now(UTC).second
    print(
        f"\nwaiting {wait} s for the current minute to close (the Admin API reports 1-minute buckets) ...", flush=True
    )
    time.sleep(wait)
    command = [str(COSTGATE), "reconcile", "--from", day.isoformat(), "--to", day.isoformat()]
    shown = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)  # noqa: S603
    print(shown.stdout.rstrip() or shown.stderr.rstrip())
    listed = subprocess.run([*command, "--json"], env=env, capture_output=True, text=True, timeout=120, check=False)  # noqa: S603
    if listed.returncode not in (0, 1):
        print(listed.stderr, file=sys.stderr)
        return {}
    result: dict[str, Any] = json.loads(listed.stdout)
    return result


def _cache_check(result: Sent) -> tuple[str, Callable[[], bool]]:
    """Each question's x-costgate-cache against the workload's label for it (repeats, paraphrases, misses)."""
    expected = list(result.team.expected_cache)
    wrong = [
        f"{body['messages'][0]['content']!r}: {got}, expected {want}"
        for body, got, want in zip(result.team.bodies, result.cache_results, expected, strict=False)
        if got != want
    ]
    first_answer: dict[str, str] = {}
    for body, intent, got, text in zip(
        result.team.bodies, result.team.intents, result.cache_results, result.answers, strict=False
    ):
        first_answer.setdefault(intent, text)
        if got.endswith("hit") and text != first_answer[intent]:
            wrong.append(f"{body['messages'][0]['content']!r}: a {got} with another answer than its intent's first")
    counts = Counter(expected)
    text = (
        f"{result.team.feature}: every answer-cache result as the workload labels it ({counts['exact-hit']} exact-hit, "
        f"{counts['semantic-hit']} semantic-hit, {counts['miss']} miss)"
    )
    if wrong:
        text += "; differs: " + "; ".join(wrong[:5])
    return text, lambda: not wrong and len(result.cache_results) == len(expected)


def _write_log(path: Path, sent: list[Sent]) -> None:
    lines = sorted((line for result in sent for line in result.log), key=lambda line: line["at"])
    with path.open("w", encoding="utf-8") as log:
        for line in lines:
            log.write(json.dumps(line, ensure_ascii=False) + "\n")
