"""DynamoBatchStore against moto: how it lays the batch records out in the table - each entity's key, the
queue (GSI `Queue`) attributes an item carries exactly while it is on a queue, the remote-id item, the job's
change counts - and put_units' parallel writes. What the store does, read back through its ports, is the
contract both it and the in-memory fake pass: tests/contract/test_batch_store.py."""

import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from costgate.accounting.budgets import Budget, BudgetPeriod, Hold, key_scope, tenant_scope
from costgate.batch.model import (
    BatchRecord,
    BatchState,
    Document,
    DocumentKind,
    DocumentStatus,
    Unit,
    UnitKind,
    UnitState,
    UsageTotals,
)
from costgate.dal.batch.entities import BatchItem, DocumentItem, JobItem, RemoteBatchItem, UnitItem
from costgate.dal.batch.store import DynamoBatchStore
from costgate.dal.budgets import DynamoBudgetStore
from costgate.errors import ConflictError
from tests.fakes.clock import ManualClock
from tests.integration import nullable

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
DAY = "2026-11-20"
JOB = "reports"
# Documents whose units land on different PENDING shards (int(doc_id[:2], 16) % 8): 0, 1 and 7.
DOC_A = "00aa11bb22cc33dd44ee55ff"
DOC_B = "01bb22cc33dd44ee55ff6600"
DOC_C = "0fcc33dd44ee55ff66007711"
TOTALS = UsageTotals(
    requests=1,
    input_tokens=1200,
    output_tokens=300,
    cache_write_5m_tokens=5,
    cache_write_1h_tokens=7,
    cache_read_tokens=11,
    cost_usd=Decimal("0.0012345"),
)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


@pytest.fixture
def store(ledger_table: str, clock: ManualClock) -> DynamoBatchStore:
    return DynamoBatchStore(sleep=lambda _: None, clock=clock)


@pytest.fixture
def budgets(ledger_table: str) -> DynamoBudgetStore:
    return DynamoBudgetStore()


def document(doc_id: str = DOC_A, job: str = JOB, **changes: Any) -> Document:
    doc = Document(
        job=job,
        doc_id=doc_id,
        bucket="costgate-docs",
        key=f"incoming/{job}/{doc_id}.txt",
        version_id="v1",
        kind=DocumentKind.TEXT,
        status=DocumentStatus.PENDING,
        registered_at=NOW,
        size=12_345,
        units=2,
        tenant="acme",
        feature="summaries",
        model="claude-haiku-4-5",
        instruction="Summarise.",
        max_tokens=800,
    )
    return replace(doc, **changes)


def unit(doc_id: str = DOC_A, seq: int = 0, minutes: int = 0, job: str = JOB, **changes: Any) -> Unit:
    queued = Unit(
        job=job,
        doc_id=doc_id,
        seq=seq,
        kind=UnitKind.PART,
        state=UnitState.PENDING,
        start=seq * 1000,
        end=seq * 1000 + 1000,
        queued_at=NOW + timedelta(minutes=minutes),
    )
    return replace(queued, **changes)


def batch(batch_id: str = "b1", reserved: str = "0.5", minutes: int = 0, **changes: Any) -> BatchRecord:
    record = BatchRecord(
        batch_id=batch_id,
        job=JOB,
        state=BatchState.PACKING,
        created_at=NOW + timedelta(minutes=minutes),
        request_count=2,
        reserved_usd=Decimal(reserved),
    )
    return replace(record, **changes)


def tenant_daily(limit: str = "1") -> Budget:
    return Budget(tenant_scope("acme"), BudgetPeriod.DAY, Decimal(limit))


def key_daily(limit: str = "5") -> Budget:
    return Budget(key_scope("0a1b2c3d4e5f"), BudgetPeriod.DAY, Decimal(limit))


def holds(amount: str = "0.5") -> tuple[Hold, ...]:
    return (Hold(tenant_daily(), DAY, Decimal(amount)), Hold(key_daily(), DAY, Decimal(amount)))


def unit_item(u: Unit) -> UnitItem:
    """The unit as stored, by its documented key: PK JOB#<job>, SK UNIT#<doc_id>#<seq:06d>."""
    return UnitItem.get(f"JOB#{u.job}", f"UNIT#{u.doc_id}#{u.seq:06d}", consistent_read=True)


def doc_item(doc_id: str = DOC_A) -> DocumentItem:
    return DocumentItem.get(f"JOB#{JOB}", f"DOC#{doc_id}", consistent_read=True)


def job_item(job: str = JOB) -> JobItem:
    return JobItem.get(f"JOB#{job}", "META", consistent_read=True)


def batch_item(batch_id: str = "b1") -> BatchItem:
    return BatchItem.get(f"BATCH#{batch_id}", "META", consistent_read=True)


def packed(store: DynamoBatchStore, u: Unit, batch_id: str = "b1", reserved: str = "0.25") -> Unit:
    assert store.pack_unit(u, batch_id, Decimal(reserved))
    return replace(u, state=UnitState.PACKED, batch_id=batch_id, reserved_usd=Decimal(reserved))


def reserved_batch(store: DynamoBatchStore, budgets: DynamoBudgetStore, record: BatchRecord) -> BatchRecord:
    store.create_batch(record)
    return store.reserve_batch(record, holds(str(record.reserved_usd)))


# --- ingest ------------------------------------------------------------------------------------------------


def test_a_registered_document_round_trips_and_marks_its_manifest_dirty(store: DynamoBatchStore) -> None:
    # Given a document with every optional field set, its times in another timezone
    doc = document(
        registered_at=NOW.astimezone(datetime.fromisoformat("2026-01-01T00:00+05:30").tzinfo),
        result_key="results/reports/x.md",
        error="none",
        totals=TOTALS,
        finished_at=NOW + timedelta(hours=1),
    )

    # When it is registered
    assert store.register_document(doc) is True

    # Then it reads back equal, the job counts one change and is on the MANIFEST queue
    assert store.document(JOB, DOC_A) == doc
    job = job_item()
    assert (job.job, job.created_at, job.changes, nullable(job.manifest_changes)) == (JOB, NOW, 1, None)
    assert (job.queue, job.queue_at) == ("MANIFEST", f"2026-11-20T12:00:00.000000+00:00#{JOB}")
    assert doc_item().queue is None
    assert store.jobs_to_manifest(10) == [(JOB, 1)]


def test_put_units_creates_missing_units_and_leaves_existing_ones_alone(store: DynamoBatchStore) -> None:
    # Given unit 0 already packed in a batch
    first, second = unit(seq=0), unit(seq=1)
    store.put_units([first, second])
    packed(store, first)

    # When ingest runs again (a retried event) with the same units, one with a later queue time
    store.put_units([replace(first, queued_at=NOW + timedelta(hours=1)), replace(second, attempts=0)])

    # Then neither is rewritten: the packed unit is untouched, the pending one keeps its place in the queue
    assert unit_item(first).state == "packed"
    assert unit_item(first).queue is None
    item = unit_item(second)
    assert (item.queue, item.queue_at) == ("PENDING#0", f"2026-11-20T12:00:00.000000+00:00#{DOC_A}#000001")
    assert store.pending_units(10) == [second]


@pytest.mark.slow
def test_put_units_writes_two_thousand_units_in_parallel(store: DynamoBatchStore) -> None:
    # Given 2,000 units over 256 documents (every shard), one of them already in a batch
    units = [unit(f"{n % 256:02x}{'ab' * 11}", seq=n, minutes=n) for n in range(2_000)]
    store.put_units(units[:1])
    packed_first = packed(store, units[0])

    # When they are put (moto serves one request at a time, ~10 ms each: the bound is moto's, not the store's)
    started = time.monotonic()
    store.put_units(units)
    elapsed = time.monotonic() - started

    # Then the units are stored and queued, oldest first, and the packed one was left alone
    # (a sample: moto answers a BatchGetItem or a GSI query over 2,000 items in seconds)
    assert elapsed < 60
    sample = units[::97]
    assert store.units(JOB, [u.custom_id for u in sample]) == {u.custom_id: u for u in sample[1:]} | {
        units[0].custom_id: packed_first
    }
    assert store.pending_units(2) == units[1:3]


# --- packing ----------------------------------------------------------------------------------------------


def test_pack_unit_takes_a_pending_unit_off_the_queue_once(store: DynamoBatchStore) -> None:
    u = unit()
    store.put_units([u])

    assert store.pack_unit(u, "b1", Decimal("0.25")) is True
    assert store.pack_unit(u, "b2", Decimal("0.5")) is False

    item = unit_item(u)
    assert (item.state, item.batch_id, item.reserved_usd) == ("packed", "b1", Decimal("0.25"))
    assert (nullable(item.queue), nullable(item.queue_at)) == (None, None)
    assert store.pending_units(10) == []


def test_unpack_unit_requeues_it_where_it_was(store: DynamoBatchStore) -> None:
    u = unit(minutes=7)
    store.put_units([u])
    packed(store, u)

    assert store.unpack_unit(u, "other") is False
    assert store.unpack_unit(u, "b1") is True
    assert store.unpack_unit(u, "b1") is False

    item = unit_item(u)
    assert (nullable(item.batch_id), nullable(item.reserved_usd)) == (None, None)
    assert item.queue_at == f"2026-11-20T12:07:00.000000+00:00#{DOC_A}#000000"
    assert store.pending_units(10) == [u]


def test_create_batch_lists_it_open_and_refuses_its_id_again(store: DynamoBatchStore) -> None:
    store.create_batch(batch("b2", minutes=1))
    store.create_batch(batch("b1", minutes=2))
    store.create_batch(batch("b0", state=BatchState.COLLECTED))

    with pytest.raises(ConflictError):
        store.create_batch(batch("b1"))

    assert store.open_batches() == [batch("b2", minutes=1), batch("b1", minutes=2)]
    assert batch_item("b0").queue is None


def test_set_batch_state_moves_it_and_records_the_remote_id(
    store: DynamoBatchStore, budgets: DynamoBudgetStore
) -> None:
    # Given a reserved batch
    record = reserved_batch(store, budgets, batch())

    # When it is submitted: SUBMITTING, then SUBMITTED with Claude's id
    submitting = store.set_batch_state(record, BatchState.SUBMITTING, submit_started_at=NOW)
    submitted = store.set_batch_state(submitting, BatchState.SUBMITTED, remote_id="msgbatch_1")

    # Then each record is as stored, and Claude's id leads back to it
    assert submitted == replace(record, state=BatchState.SUBMITTED, submit_started_at=NOW, remote_id="msgbatch_1")
    assert store.open_batches() == [submitted]
    assert store.batch_for_remote("msgbatch_1") == submitted
    assert RemoteBatchItem.get("REMOTE#msgbatch_1", "META").batch_id == "b1"
    assert store.batch_for_remote("msgbatch_2") is None

    # And collecting it takes it off the open list
    collected = store.set_batch_state(submitted, BatchState.COLLECTED, ended_at=NOW + timedelta(hours=2))
    assert store.open_batches() == []
    assert (nullable(batch_item().queue), nullable(batch_item().queue_at)) == (None, None)
    assert store.batch_for_remote("msgbatch_1") == collected


def test_abort_batch_releases_exactly_its_holds(store: DynamoBatchStore, budgets: DynamoBudgetStore) -> None:
    # Given $0.2 held elsewhere on the tenant's budget and a batch reserved for $0.5 and now submitting
    budgets.reserve([Hold(tenant_daily(), DAY, Decimal("0.2"))])
    record = reserved_batch(store, budgets, batch())
    submitting = store.set_batch_state(record, BatchState.SUBMITTING, submit_started_at=NOW)

    # When it is aborted
    store.abort_batch(submitting, "rejected: 400")

    # Then it is ABORTED with its note, off the open list, and only its $0.5 came back
    item = batch_item()
    assert (item.state, item.note, nullable(item.queue)) == ("aborted", "rejected: 400", None)
    assert store.open_batches() == []
    assert budgets.remaining(holds()[:1]) == Decimal("0.8")
    assert budgets.remaining(holds()[1:]) == Decimal(5)

    # And aborting it again is a conflict that releases nothing
    with pytest.raises(ConflictError):
        store.abort_batch(submitting, "again")
    assert budgets.remaining(holds()[:1]) == Decimal("0.8")


# --- collecting -------------------------------------------------------------------------------------------


def test_finish_unit_done_stores_its_outcome_releases_once_and_flags_its_document(
    store: DynamoBatchStore, budgets: DynamoBudgetStore
) -> None:
    # Given a reserved batch of $0.5 with a unit packed for $0.25, its document registered
    store.register_document(document())
    record = reserved_batch(store, budgets, batch())
    store.put_units([unit()])
    u = packed(store, unit())
    share = tuple(replace(hold, amount_usd=Decimal("0.25")) for hold in holds())

    # When its result is handled (the ledger settled the cost; here its unused share is released) twice
    first = store.finish_unit(
        u, record, UnitState.DONE, release=share, totals=TOTALS, model="claude-haiku-4-5", output_key="out/0"
    )
    second = store.finish_unit(u, record, UnitState.DONE, release=share, totals=TOTALS)

    # Then only the first counted: the unit is DONE with its outcome, the share came back once
    assert (first, second) == (True, False)
    done = store.units_of(document())[0]
    assert done == replace(u, state=UnitState.DONE, totals=TOTALS, model="claude-haiku-4-5", output_key="out/0")
    assert budgets.remaining(holds()[:1]) == Decimal("0.75")
    # And its document is on the CHECK queue
    item = doc_item()
    assert (item.queue, item.queue_at) == ("CHECK", f"2026-11-20T12:00:00.000000+00:00#{JOB}#{DOC_A}")
    assert store.documents_to_check(10) == [document()]


def test_finish_unit_pending_requeues_it(store: DynamoBatchStore) -> None:
    store.register_document(document())
    store.put_units([unit()])
    u = packed(store, unit())

    later = NOW + timedelta(minutes=30)
    assert store.finish_unit(u, batch(), UnitState.PENDING, queued_at=later) is True
    assert store.finish_unit(u, batch(), UnitState.PENDING, queued_at=later) is False

    requeued = replace(unit(), queued_at=later, attempts=1)
    assert store.pending_units(10) == [requeued]
    assert unit_item(u).queue_at == f"2026-11-20T12:30:00.000000+00:00#{DOC_A}#000000"
    assert store.documents_to_check(10) == [document()]


# --- finishing documents ----------------------------------------------------------------------------------


def test_clear_check_takes_the_document_off_the_check_list(store: DynamoBatchStore) -> None:
    store.register_document(document())
    store.put_units([unit()])
    assert store.finish_unit(packed(store, unit()), batch(), UnitState.DONE, totals=TOTALS)

    [flagged] = store.documents_to_check(10)
    store.clear_check(flagged)

    assert store.documents_to_check(10) == []
    assert (nullable(doc_item().queue), nullable(doc_item().queue_at)) == (None, None)


def test_finish_document_finishes_it_once_and_marks_the_manifest(store: DynamoBatchStore) -> None:
    # Given a registered document, flagged by its finished unit, whose manifest was written
    store.register_document(document())
    store.manifest_written(JOB, 1)
    store.put_units([unit()])
    assert store.finish_unit(packed(store, unit()), batch(), UnitState.DONE, totals=TOTALS)
    finished_at = NOW + timedelta(hours=3)

    # When it is finished, twice
    first = store.finish_document(
        document(), DocumentStatus.DONE, result_key="results/x.md", totals=TOTALS, finished_at=finished_at
    )
    second = store.finish_document(
        document(), DocumentStatus.FAILED, result_key="results/x.error.json", totals=TOTALS, finished_at=NOW, error="e"
    )

    # Then the first finished it: DONE with its result, off the check list, its job's manifest dirty again
    assert (first, second) == (True, False)
    assert store.document(JOB, DOC_A) == document(
        status=DocumentStatus.DONE, result_key="results/x.md", totals=TOTALS, finished_at=finished_at
    )
    assert store.documents_to_check(10) == []
    assert store.jobs_to_manifest(10) == [(JOB, 2)]
    assert job_item().queue_at == f"2026-11-20T15:00:00.000000+00:00#{JOB}"


# --- manifests ----------------------------------------------------------------------------------------------


def test_manifest_written_cleans_the_job(store: DynamoBatchStore) -> None:
    store.register_document(document(DOC_A))
    store.register_document(document(DOC_B, registered_at=NOW + timedelta(minutes=1)))
    store.register_document(document(DOC_C, job="older", registered_at=NOW - timedelta(minutes=1)))

    assert store.jobs_to_manifest(10) == [("older", 1), (JOB, 2)]
    assert store.jobs_to_manifest(1) == [("older", 1)]
    # The first unwritten change dates the job's place in the queue
    assert job_item().queue_at == f"2026-11-20T12:00:00.000000+00:00#{JOB}"

    store.manifest_written(JOB, 2)

    assert store.jobs_to_manifest(10) == [("older", 1)]
    item = job_item()
    assert (item.changes, item.manifest_changes, nullable(item.queue), nullable(item.queue_at)) == (2, 2, None, None)


def test_manifest_written_after_another_change_leaves_the_job_dirty(store: DynamoBatchStore) -> None:
    # Given a job read as dirty at 1 change
    store.register_document(document(DOC_A))
    [(job, changes)] = store.jobs_to_manifest(10)

    # When a document registers while its manifest is written, then the manifest is marked written
    store.register_document(document(DOC_B))
    store.manifest_written(job, changes)

    # Then the job is still dirty, at 2 changes, for the next tick
    assert store.jobs_to_manifest(10) == [(JOB, 2)]
    assert job_item().manifest_changes is None
