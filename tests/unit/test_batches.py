"""Batch summarisation (costgate.batch) end to end through the in-memory fakes: ingest, the scheduler's
ticks, budgets, Claude's failures and the result files. Claude is FakeClaudeBatches: a batch ends when a
test calls `end_all`, and each request is answered by the test's `answer` (a summary by default)."""

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from costgate.accounting.budgets import Budget, BudgetPeriod, estimate_worst_case, tenant_scope
from costgate.batch import input as batch_input
from costgate.batch.ingest import IngestOutcome, IngestServices, document_id, register_object
from costgate.batch.input import (
    COMBINE_NOTE,
    DEFAULT_FEATURE,
    DEFAULT_INSTRUCTION,
    DEFAULT_MAX_TOKENS,
    DEFAULT_MODEL,
    PART_NOTE,
)
from costgate.batch.manifests import job_status
from costgate.batch.model import BatchState, Document, DocumentStatus, UnitKind, UnitState
from costgate.batch.scheduler import SchedulerServices, run_scheduler
from costgate.batch.tick import MAX_SUBMISSIONS, TickReport
from costgate.pricing.cost import Strategy, price_usage
from costgate.pricing.usage import normalise_usage
from tests.fakes.accounting import InMemoryBudgetStore, InMemoryLedgerStore
from tests.fakes.batch import InMemoryBatchStore, InMemoryObjectStore
from tests.fakes.claude import FakeClaudeBatches, errored_answer, succeeded_answer
from tests.fakes.clock import NOW, ManualClock

JOB = "weekly"
TENANT = "acme"
RESULTS = f"results/{JOB}"
MANIFEST = f"{RESULTS}/_manifest.json"


@dataclass
class World:
    """Every port the batch services use, in memory, on one manual clock."""

    clock: ManualClock
    budgets: InMemoryBudgetStore
    store: InMemoryBatchStore
    objects: InMemoryObjectStore
    claude: FakeClaudeBatches
    ledger: InMemoryLedgerStore
    work_dir: Path

    def upload(self, name: str, body: bytes, job: str = JOB) -> IngestOutcome:
        """A user's PUT to incoming/<job>/<name> and the IngestFunction run its event triggers."""
        key = f"incoming/{job}/{name}"
        version = self.objects.upload(key, body)
        self.clock.at += timedelta(seconds=1)  # uploads queue in the order they were made
        return self.register(key, version, len(body))

    def register(self, key: str, version: str, size: int) -> IngestOutcome:
        services = IngestServices(self.store, self.objects, self.clock, default_tenant=TENANT)
        return register_object(services, bucket=self.objects.bucket, key=key, version_id=version, size=size)

    def services(self, **changes: Any) -> SchedulerServices:
        return SchedulerServices(
            store=self.store,
            objects=self.objects,
            claude=self.claude,
            ledger=self.ledger,
            budgets=self.budgets,
            clock=self.clock,
            work_dir=self.work_dir,
            **changes,
        )

    def tick(self) -> TickReport:
        """One scheduler tick with all the time it needs, then two minutes pass (the schedule)."""
        report = run_scheduler(self.services(), deadline=math.inf)
        self.clock.at += timedelta(minutes=2)
        return report

    def end_and_tick(self) -> TickReport:
        """Claude ends every batch now; the next tick collects them."""
        self.claude.end_all(self.clock.now())
        return self.tick()

    def run_to_end(self, max_ticks: int = 12) -> None:
        for _ in range(max_ticks):
            self.end_and_tick()
            if self.settled():
                return
        raise AssertionError(f"the job did not settle in {max_ticks} ticks")

    def settled(self) -> bool:
        return (
            all(doc.status is not DocumentStatus.PENDING for doc in self.store.job_documents(JOB))
            and not self.store.open_batches()
            and not self.store.jobs_to_manifest(10)
        )

    def doc(self, name: str, job: str = JOB) -> Document:
        found = [doc for doc in self.store.job_documents(job) if doc.name == name]
        assert len(found) == 1, f"{name}: {len(found)} documents"
        return found[0]

    def json(self, key: str) -> Any:
        return json.loads(self.objects.latest(key))

    def committed(self, budget: Budget) -> Decimal:
        return self.budgets.committed.get((budget.scope, budget.period, budget.window(NOW)), Decimal(0))

    def spent(self, budget: Budget) -> Decimal:
        return self.budgets.spent.get((budget.scope, budget.period, budget.window(NOW)), Decimal(0))


@pytest.fixture
def world(tmp_path: Path) -> World:
    clock = ManualClock(NOW)
    budgets = InMemoryBudgetStore()
    return World(
        clock=clock,
        budgets=budgets,
        store=InMemoryBatchStore(budgets, clock),
        objects=InMemoryObjectStore(),
        claude=FakeClaudeBatches(clock),
        ledger=InMemoryLedgerStore(budgets),
        work_dir=tmp_path,
    )


def tenant_budget(world: World, limit: Decimal | str) -> Budget:
    budget = Budget(tenant_scope(TENANT), BudgetPeriod.DAY, Decimal(limit))
    world.budgets.put_definition(budget)
    return budget


def text_params(name: str, text: str, **changes: Any) -> dict[str, Any]:
    """The request the scheduler makes of a short text with the default job settings."""
    return {
        "model": DEFAULT_MODEL,
        "max_tokens": DEFAULT_MAX_TOKENS,
        "system": [{"type": "text", "text": DEFAULT_INSTRUCTION, "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
        "messages": [{"role": "user", "content": f'<document name="{name}">\n{text}\n</document>'}],
    } | changes


def only_request(world: World) -> tuple[str, dict[str, Any]]:
    sent = world.claude.requests()
    assert len(sent) == 1
    return sent[0]


def custom_ids(world: World, remote_id: str) -> list[str]:
    return [custom_id for custom_id, _ in world.claude.batches[remote_id].requests]


# --- a text document ------------------------------------------------------------------------------------------


def test_a_short_text_is_one_request_under_the_cached_instruction_and_gets_its_summary(world: World) -> None:
    # Given a short text uploaded to a job with no _job.json
    assert world.upload("notes.txt", b"The launch moved to Friday.") is IngestOutcome.REGISTERED
    doc = world.doc("notes.txt")

    # When a tick runs
    report = world.tick()

    # Then one batch of one request went to Claude: the default instruction as a system prompt cached
    # for an hour, the text in a document block, under the custom_id <doc_id>-0
    assert (report.submitted_batches, report.submitted_requests) == (1, 1)
    custom_id, params = only_request(world)
    assert custom_id == f"{doc.doc_id}-0"
    assert params == text_params("notes.txt", "The launch moved to Friday.")

    # And when Claude has ended it and the next tick collects it
    report = world.end_and_tick()

    # Then the summary is the result file, the document is done and the manifest lists it
    assert (report.collected_results, report.finished_documents, report.manifests_written) == (1, 1, 1)
    summary = f"{RESULTS}/notes.txt.summary.md"
    assert world.objects.latest(summary) == f"Summary of {custom_id}.".encode()
    assert world.objects.content_types[summary] == "text/markdown; charset=utf-8"
    assert world.doc("notes.txt").status is DocumentStatus.DONE
    manifest = world.json(MANIFEST)
    assert manifest["status"] == {"pending": 0, "done": 1, "failed": 0}
    [row] = manifest["files"]
    assert (row["file"], row["status"], row["result"], row["model"]) == ("notes.txt", "done", summary, DEFAULT_MODEL)
    assert world.settled()


def test_the_job_settings_shape_the_request_and_the_ledger_entry(world: World) -> None:
    # Given a job whose _job.json sets every field, and a document in it
    settings = {
        "instruction": "List the action items.",
        "model": "claude-sonnet-4-5",
        "max_tokens": 30,
        "tenant": "globex",
        "feature": "minutes",
    }
    assert world.upload("_job.json", json.dumps(settings).encode()) is IngestOutcome.JOB_CONFIG
    world.upload("standup.md", b"Ana ships the fix; Bo reviews it.")

    # When it is submitted and collected
    world.tick()
    _, params = only_request(world)
    world.end_and_tick()

    # Then the request used the job's instruction, model and max_tokens
    assert params["model"] == "claude-sonnet-4-5"
    assert params["max_tokens"] == 30
    assert params["system"][0]["text"] == "List the action items."
    # And the ledger charged the job's tenant and feature for that model (the fake answers min(30, 50) tokens)
    [entry] = world.ledger.entries.values()
    assert (entry.tenant, entry.feature, entry.model) == ("globex", "minutes", "claude-sonnet-4-5")
    assert entry.usage.output_tokens == 30
    doc = world.doc("standup.md")
    assert (doc.tenant, doc.feature, doc.model, doc.status) == ("globex", "minutes", "claude-sonnet-4-5", "done")
    assert not world.objects.keys(f"{RESULTS}/_job.json")


def test_an_invalid_job_config_gets_its_error_file_and_rejects_the_job_s_documents(world: World) -> None:
    # Given a _job.json whose model is not a string
    outcome = world.upload("_job.json", b'{"model": 5}')

    # Then it gets its own error file, naming the field
    assert outcome is IngestOutcome.JOB_CONFIG
    config_error = world.json(f"{RESULTS}/_job.json.error.json")
    assert config_error["key"] == f"incoming/{JOB}/_job.json"
    assert "model must be a model id string" in config_error["error"]

    # When a document is uploaded to the job
    outcome = world.upload("report.txt", b"Quarterly numbers.")

    # Then it is rejected with a reason naming _job.json, in its error file and its FAILED document
    assert outcome is IngestOutcome.REJECTED
    reason = world.json(f"{RESULTS}/report.txt.error.json")["error"]
    assert reason.startswith(f"incoming/{JOB}/_job.json is invalid:")
    doc = world.doc("report.txt")
    assert (doc.status, doc.error, doc.result_key) == (
        DocumentStatus.FAILED,
        reason,
        f"{RESULTS}/report.txt.error.json",
    )
    # And nothing is sent; the manifest lists it as failed
    report = world.tick()
    assert (report.submitted_batches, report.manifests_written) == (0, 1)
    assert world.claude.batches == {}
    assert world.json(MANIFEST)["status"] == {"pending": 0, "done": 0, "failed": 1}


def test_the_same_version_registers_once_and_a_new_version_is_a_second_document(world: World) -> None:
    # Given a document registered from its S3 event
    key = f"incoming/{JOB}/plan.txt"
    first = world.objects.upload(key, b"Plan A.")
    assert world.register(key, first, 7) is IngestOutcome.REGISTERED

    # When the same event is delivered again, then the file is overwritten (a new version)
    again = world.register(key, first, 7)
    second = world.objects.upload(key, b"Plan B, revised.")
    newer = world.register(key, second, 16)

    # Then the redelivery is a duplicate and the new version a second document, each with its own unit
    assert (again, newer) == (IngestOutcome.DUPLICATE, IngestOutcome.REGISTERED)
    docs = sorted(world.store.job_documents(JOB), key=lambda doc: doc.version_id)
    assert [(doc.version_id, doc.doc_id) for doc in docs] == [
        (first, document_id(world.objects.bucket, key, first)),
        (second, document_id(world.objects.bucket, key, second)),
    ]
    assert sorted(unit.custom_id for unit in world.store.pending_units(10)) == sorted(f"{d.doc_id}-0" for d in docs)


def test_a_long_text_is_summarised_in_parts_then_combined_into_one_summary(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given parts of at most 120 bytes and a text of three 100-byte paragraphs
    monkeypatch.setattr(batch_input, "MAX_PART_BYTES", 120)
    paragraphs = [f"Paragraph {n}: " + "x" * (100 - len(f"Paragraph {n}: ")) for n in (1, 2, 3)]
    text = "\n\n".join(paragraphs)
    world.upload("long.txt", text.encode())
    doc = world.doc("long.txt")
    assert doc.units == 3

    # When a tick runs, each part is a request that says which part it is
    world.tick()
    parts = world.claude.requests()
    assert [custom_id for custom_id, _ in parts] == [f"{doc.doc_id}-{seq}" for seq in range(3)]
    for seq, (_, params) in enumerate(parts):
        content = params["messages"][0]["content"]
        assert content.startswith(PART_NOTE.format(part=seq + 1, parts=3) + '\n\n<document name="long.txt">\n')
        assert paragraphs[seq] in content

    # And when the parts are collected, the same tick submits the combining request built from their summaries
    report = world.end_and_tick()
    assert (report.collected_results, report.submitted_requests) == (3, 1)
    combine_id, combine = world.claude.requests()[-1]
    assert combine_id == f"{doc.doc_id}-3"
    assert combine["messages"][0]["content"] == (
        COMBINE_NOTE.format(parts=3)
        + "\n\n"
        + "\n\n".join(f'<part number="{n + 1}">\nSummary of {doc.doc_id}-{n}.\n</part>' for n in range(3))
    )
    assert combine["system"] == text_params("long.txt", text)["system"]

    # Then once that is collected, the combined summary is the document's one result file
    world.end_and_tick()
    done = world.doc("long.txt")
    assert (done.status, done.totals.requests) == (DocumentStatus.DONE, 4)
    assert world.objects.latest(f"{RESULTS}/long.txt.summary.md") == f"Summary of {combine_id}.".encode()
    assert world.objects.keys(RESULTS) == {f"{RESULTS}/long.txt.summary.md", MANIFEST}
    assert [unit.kind for unit in world.store.units_of(done)] == [UnitKind.PART] * 3 + [UnitKind.COMBINE]


# --- a .jsonl of ready requests ---------------------------------------------------------------------------------


def request_line(custom_id: str, text: str) -> bytes:
    params = {"model": "claude-haiku-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": text}]}
    return json.dumps({"custom_id": custom_id, "params": params}).encode()


def test_a_jsonl_file_gets_its_results_in_file_order_under_the_user_s_custom_ids(world: World) -> None:
    # Given Claude returning results shuffled and erroring the request that says "fail"
    def answer(custom_id: str, params: Mapping[str, Any]) -> dict[str, Any]:
        fails = params["messages"][0]["content"] == "fail"
        return errored_answer(custom_id, params) if fails else succeeded_answer(custom_id, params)

    world.claude = FakeClaudeBatches(world.clock, answer=answer, shuffle_seed=3)
    # And a file of four requests with a blank line among them
    lines = [
        request_line("zeta", "one"),
        b"",
        request_line("alpha", "fail"),
        request_line("mid-1", "three"),
        request_line("b_2", "four"),
    ]
    world.upload("questions.jsonl", b"\n".join(lines) + b"\n")
    doc = world.doc("questions.jsonl")
    assert doc.units == 4

    # When it runs to the end
    world.run_to_end()

    # Then each request went as written, under <doc_id>-<seq>
    sent = world.claude.requests()
    assert sorted(custom_id for custom_id, _ in sent) == [f"{doc.doc_id}-{seq}" for seq in range(4)]
    # And the results file has one line per request, in the file's order, under the user's custom_ids,
    # the errored one kept as Claude reported it
    results_key = f"{RESULTS}/questions.jsonl.results.jsonl"
    results = [json.loads(line) for line in world.objects.latest(results_key).splitlines()]
    assert [line["custom_id"] for line in results] == ["zeta", "alpha", "mid-1", "b_2"]
    assert results[1]["result"] == errored_answer(f"{doc.doc_id}-1", {})
    assert results[0]["result"] == succeeded_answer(f"{doc.doc_id}-0", dict(sent[0][1]))
    assert world.objects.content_types[results_key] == "application/jsonl"
    done = world.doc("questions.jsonl")
    assert (done.status, done.error) == (DocumentStatus.DONE, "1 of 4 requests did not succeed; see their results")
    assert done.totals.requests == 3


# --- failures -------------------------------------------------------------------------------------------------


def test_an_errored_text_request_fails_its_document_and_releases_its_hold(world: World) -> None:
    # Given a tenant budget and a Claude that errors every request
    budget = tenant_budget(world, "10")
    world.claude.answer = errored_answer
    world.upload("memo.txt", b"Budget memo.")

    # When it is submitted, its worst case is held
    world.tick()
    held = world.committed(budget)
    assert held > 0

    # And when its errored result is collected
    report = world.end_and_tick()

    # Then the document fails with the reason, in its error file; nothing is charged and the hold is released
    custom_id, _ = only_request(world)
    reason = f"the request errored: invalid_request_error: {custom_id}: max_tokens is too large"
    assert (report.failed_requests, report.failed_documents) == (1, 1)
    doc = world.doc("memo.txt")
    assert (doc.status, doc.error, doc.result_key) == (DocumentStatus.FAILED, reason, f"{RESULTS}/memo.txt.error.json")
    error_file = world.json(f"{RESULTS}/memo.txt.error.json")
    assert error_file["error"] == reason
    assert error_file["failed_requests"] == [{"request": 0, "kind": "whole", "result": errored_answer(custom_id, {})}]
    assert world.ledger.entries == {}
    assert world.committed(budget) == world.spent(budget) == 0


def expire_first(times: int) -> Any:
    """An answer that expires each request the first `times` times it is asked, then succeeds."""
    asked: dict[str, int] = {}

    def answer(custom_id: str, params: Mapping[str, Any]) -> dict[str, Any]:
        asked[custom_id] = asked.get(custom_id, 0) + 1
        return {"type": "expired"} if asked[custom_id] <= times else succeeded_answer(custom_id, params)

    return answer


def test_an_expired_request_is_requeued_and_succeeds_in_a_later_batch(world: World) -> None:
    # Given a Claude that expires the first attempt
    world.claude.answer = expire_first(1)
    world.upload("slow.txt", b"Takes a while.")
    world.tick()

    # When the expired result is collected, the same tick sends the request again
    report = world.end_and_tick()
    assert (report.requeued_requests, report.submitted_requests, report.failed_requests) == (1, 1, 0)

    # Then the second batch's result finishes the document, charged once under the second batch's id
    world.end_and_tick()
    first, second = world.claude.batches
    custom_id = custom_ids(world, first)[0]
    assert custom_ids(world, second) == [custom_id]
    assert world.doc("slow.txt").status is DocumentStatus.DONE
    assert list(world.ledger.entries) == [f"batch/{second}/{custom_id}"]
    [unit] = world.store.units_of(world.doc("slow.txt"))
    assert (unit.state, unit.attempts) == (UnitState.DONE, 1)


def test_a_redelivered_upload_event_does_not_reset_a_requeued_requests_attempts(world: World) -> None:
    # Given a request that came back expired once and waits in the queue again
    world.claude.answer = expire_first(1)
    world.upload("slow.txt", b"Takes a while.")
    world.tick()
    world.claude.end_all(world.clock.now())
    world.claude.reject_next_create()  # so it stays queued after it is collected
    world.tick()
    [queued] = world.store.units_of(world.doc("slow.txt"))
    assert (queued.state, queued.attempts) == (UnitState.PENDING, 1)

    # When S3 delivers the upload's event again
    document = world.doc("slow.txt")
    outcome = world.register(document.key, document.version_id, document.size)

    # Then it is a duplicate, and the queued request keeps its attempt count
    assert outcome is IngestOutcome.DUPLICATE
    [unit] = world.store.units_of(world.doc("slow.txt"))
    assert (unit.state, unit.attempts) == (UnitState.PENDING, 1)


def test_a_request_that_expires_max_submissions_times_fails_its_document(world: World) -> None:
    # Given a Claude that never gets to the request, and a budget
    budget = tenant_budget(world, "10")
    world.claude.answer = expire_first(99)
    world.upload("never.txt", b"Never answered.")

    # When it runs to the end
    world.run_to_end()

    # Then it was submitted MAX_SUBMISSIONS times, and its document failed saying so, with nothing held
    assert len(world.claude.batches) == MAX_SUBMISSIONS
    doc = world.doc("never.txt")
    assert (doc.status, doc.error) == (DocumentStatus.FAILED, f"the request expired {MAX_SUBMISSIONS} times")
    assert world.committed(budget) == world.spent(budget) == 0


def test_a_rejected_create_aborts_the_batch_and_releases_its_hold(world: World) -> None:
    # Given a budget, a document, and Claude refusing the next create
    budget = tenant_budget(world, "10")
    world.upload("a.txt", b"Alpha.")
    world.claude.reject_next_create()

    # When a tick submits it
    report = world.tick()

    # Then the batch is ABORTED with Claude's answer, its unit is pending again and its hold released
    assert report.submitted_batches == 0
    refusal = "Claude rejected the batch after 1 attempt(s): HTTP 400 invalid_request_error: refused (fake)"
    assert report.errors == [f"job {JOB}: {refusal}"]
    [batch] = world.store.batches.values()
    assert (batch.state, batch.note) == (BatchState.ABORTED, refusal)
    assert [unit.state for unit in world.store.pending_units(10)] == [UnitState.PENDING]
    assert world.committed(budget) == 0
    assert world.claude.batches == {}

    # And the next tick submits it again
    assert world.tick().submitted_requests == 1


def test_an_unanswered_create_is_adopted_when_claude_made_the_batch(world: World) -> None:
    # Given a create that reached Claude but whose answer was lost
    world.upload("a.txt", b"Alpha.")
    world.claude.lose_next_create_answer(created=True)
    first = world.tick()
    [batch] = world.store.batches.values()
    assert batch.state is BatchState.SUBMITTING
    assert len(first.errors) == 1
    assert "may or may not exist" in first.errors[0]

    # When the next tick runs
    report = world.tick()

    # Then it adopts the batch Claude made instead of submitting again, and collects it once it ends
    [remote_id] = world.claude.batches
    assert (report.recovered_batches, report.submitted_batches) == (1, 0)
    assert world.store.batches[batch.batch_id].remote_id == remote_id
    assert world.store.batch_for_remote(remote_id) == world.store.batches[batch.batch_id]
    world.end_and_tick()
    assert world.doc("a.txt").status is DocumentStatus.DONE
    assert len(world.claude.batches) == 1
    assert len(world.ledger.entries) == 1


def test_an_unanswered_create_is_aborted_when_claude_has_no_such_batch(world: World) -> None:
    # Given a budget and a create that never reached Claude
    budget = tenant_budget(world, "10")
    world.upload("a.txt", b"Alpha.")
    world.claude.lose_next_create_answer(created=False)
    world.tick()
    [batch] = world.store.batches.values()
    held = world.committed(budget)

    # When the next tick runs
    report = world.tick()

    # Then that batch is aborted (its hold released) and its unit goes out in a new batch in the same tick
    assert (report.recovered_batches, report.submitted_batches) == (1, 1)
    assert world.store.batches[batch.batch_id].state is BatchState.ABORTED
    assert len(world.claude.batches) == 1
    assert world.committed(budget) == held  # the new batch's hold only
    world.end_and_tick()
    assert world.doc("a.txt").status is DocumentStatus.DONE
    assert world.committed(budget) == world.spent(budget)


# --- budgets and the ledger -------------------------------------------------------------------------------------


def test_a_budget_too_small_for_all_submits_the_fitting_prefix_and_the_rest_once_raised(world: World) -> None:
    # Given five equal documents and a tenant budget with room for two and a half worst cases
    names = [f"doc{n}.txt" for n in range(5)]
    worst = estimate_worst_case(DEFAULT_MODEL, text_params(names[0], "Same size."), NOW, batch=True)
    budget = tenant_budget(world, worst * 5 / 2)
    for name in names:
        world.upload(name, b"Same size.")

    # When a tick runs
    report = world.tick()

    # Then the two oldest went in one batch, the rest wait for the budget, and the batch's worst case is held
    assert report.submitted_requests == 2
    assert report.waiting_for_budget > 0  # see test_waiting_for_budget_counts_each_waiting_request_once
    assert [unit.doc_id for unit in world.store.pending_units(10)] == [world.doc(name).doc_id for name in names[2:]]
    [remote_id] = world.claude.batches
    assert custom_ids(world, remote_id) == [f"{world.doc(name).doc_id}-0" for name in names[:2]]
    assert world.committed(budget) == 2 * worst
    # And they keep waiting while the budget has no room
    assert (world.tick().submitted_requests, len(world.claude.batches)) == (0, 1)

    # When the budget is raised
    tenant_budget(world, worst * 6)
    report = world.tick()

    # Then the rest is submitted, and once all is collected only what was spent stays committed
    assert (report.submitted_requests, report.waiting_for_budget) == (3, 0)
    assert world.store.pending_units(10) == []
    world.run_to_end()
    assert all(world.doc(name).status is DocumentStatus.DONE for name in names)
    assert (
        world.committed(budget) == world.spent(budget) == sum(e.cost.total_usd for e in world.ledger.entries.values())
    )


def test_ledger_entries_are_at_batch_prices_with_the_batch_saving(world: World) -> None:
    # Given two documents summarised in one batch that ended an hour after submission
    world.upload("a.txt", b"Alpha.")
    world.upload("b.md", b"# Beta\n\nSecond document.")
    world.tick()
    [remote_id] = world.claude.batches
    ended_at = world.clock.now() + timedelta(hours=1)
    world.claude.end_all(ended_at)

    # When it is collected
    world.tick()

    # Then each result has its ledger entry under batch/<remote id>/<custom_id>, at the time the batch ended,
    # priced at the batch tier, with the batch discount as its saving
    results = {line["custom_id"]: line["result"]["message"] for line in world.claude.batches[remote_id].results or []}
    assert set(world.ledger.entries) == {f"batch/{remote_id}/{custom_id}" for custom_id in results}
    for custom_id, message in results.items():
        entry = world.ledger.entries[f"batch/{remote_id}/{custom_id}"]
        usage = normalise_usage(message["usage"])
        assert usage.service_tier == "batch"
        assert entry.at == ended_at
        assert entry.cost == price_usage(DEFAULT_MODEL, usage, ended_at)
        standard = price_usage(DEFAULT_MODEL, replace(usage, service_tier="standard"), ended_at)
        assert entry.savings[Strategy.BATCH] == standard.total_usd - entry.cost.total_usd > 0
        assert (entry.tenant, entry.feature) == (TENANT, DEFAULT_FEATURE)


def test_the_manifest_totals_are_the_sum_of_the_ledger_costs(world: World) -> None:
    # Given texts, a .jsonl file and a rejected file in one job
    world.upload("a.txt", b"Alpha.")
    world.upload("b.txt", b"Beta, a little longer than alpha.")
    world.upload("c.jsonl", request_line("q1", "one") + b"\n" + request_line("q2", "two"))
    world.upload("d.pdf", b"%PDF-1.7")

    # When the job runs to the end
    world.run_to_end()

    # Then the manifest's totals are what the ledger charged, file by file and in all
    manifest = world.json(MANIFEST)
    charged = sum((entry.cost.total_usd for entry in world.ledger.entries.values()), Decimal(0))
    assert charged > 0
    assert Decimal(manifest["totals"]["cost_usd"]) == charged
    assert sum(Decimal(row["cost_usd"]) for row in manifest["files"]) == charged
    assert manifest["status"] == {"pending": 0, "done": 3, "failed": 1}
    assert [row["file"] for row in manifest["files"]] == ["a.txt", "b.txt", "c.jsonl", "d.pdf"]
    assert sum(row["output_tokens"] for row in manifest["files"]) == sum(
        entry.usage.output_tokens for entry in world.ledger.entries.values()
    )
    status = job_status(world.store, JOB)
    assert (status.documents, status.done, status.failed, status.cost_usd) == (4, 3, 1, charged)


# --- the deadline -----------------------------------------------------------------------------------------------


def test_a_tick_started_past_its_deadline_does_nothing(world: World) -> None:
    # Given a registered document and an open batch with results waiting
    world.upload("a.txt", b"Alpha.")
    world.upload("b.txt", b"Beta.")
    world.tick()
    world.claude.end_all(world.clock.now())
    world.upload("c.txt", b"Gamma.")
    before = (dict(world.store.batches), dict(world.store.units_by_doc), dict(world.store.docs))
    files = world.objects.keys()

    # When a tick starts with its deadline already behind it
    report = run_scheduler(world.services(monotonic=lambda: 100.0), deadline=99.0)

    # Then it reports being out of time and changed nothing
    assert report == TickReport(out_of_time=True)
    assert (dict(world.store.batches), dict(world.store.units_by_doc), dict(world.store.docs)) == before
    assert len(world.claude.batches) == 1
    assert world.ledger.entries == {}
    assert world.objects.keys() == files


# --- one document's or one owner's trouble does not stop the others ------------------------------------------


def test_a_document_deleted_before_submission_does_not_stop_the_others(world: World) -> None:
    # Given two registered documents, the older one's object deleted from the bucket before any tick
    world.upload("gone.txt", b"Deleted by its owner.")
    world.upload("kept.txt", b"Still here.")
    world.objects.delete(f"incoming/{JOB}/gone.txt")

    # When ticks run
    world.tick()
    world.tick()

    # Then the other document is still submitted, and the deleted one fails with an error file saying so
    assert any(custom_id.startswith(world.doc("kept.txt").doc_id) for custom_id, _ in world.claude.requests())
    gone = world.doc("gone.txt")
    assert gone.status is DocumentStatus.FAILED
    assert gone.error is not None
    assert "was deleted before it could be summarised" in gone.error
    assert gone.result_key == f"results/{JOB}/gone.txt.error.json"


def test_a_tenant_out_of_budget_does_not_hold_up_another_tenant(world: World) -> None:
    # Given tenant acme out of budget with three documents, then another tenant's document
    tenant_budget(world, "0")
    for name in ("a.txt", "b.txt", "c.txt"):
        world.upload(name, b"Waiting for budget.")
    world.upload("_job.json", b'{"tenant": "globex"}', job="other")
    world.upload("x.txt", b"Globex has budget.", job="other")

    # When a tick runs
    report = world.tick()

    # Then globex's document is submitted and acme's three wait
    assert (report.submitted_requests, report.waiting_for_budget) == (1, 3)


def test_waiting_for_budget_counts_each_waiting_request_once(world: World) -> None:
    # Given room for two of five equal documents
    worst = estimate_worst_case(DEFAULT_MODEL, text_params("doc0.txt", "Same size."), NOW, batch=True)
    tenant_budget(world, worst * 5 / 2)
    for n in range(5):
        world.upload(f"doc{n}.txt", b"Same size.")

    # When a tick runs
    report = world.tick()

    # Then three requests are reported waiting, once each
    assert (report.submitted_requests, report.waiting_for_budget) == (2, 3)
