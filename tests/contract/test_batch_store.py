"""The batch store's contract, one set of tests run against both stores: InMemoryBatchStore (tests/fakes/batch.py,
what the unit tests and the bench run on) and DynamoBatchStore on moto (the table built from template.yaml).

Everything is read back through the ports (`costgate.batch.ports`) and the budget store's `remaining`: the queues
(pending units, open batches, documents to check, dirty manifests) and their order, every conditional write's
refusal changing nothing, budget holds taken by reserve_batch and given back by abort_batch and finish_unit,
and the manifests' change counting. How DynamoBatchStore lays the records out in the table is tested in
tests/integration/test_batches_dynamo.py.
"""

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

import pytest

from costgate.accounting.budgets import Budget, BudgetPeriod, Hold, key_scope, tenant_scope
from costgate.accounting.ports import BudgetStore
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
from costgate.batch.ports import DocumentRegistry, SchedulerStore
from costgate.dal.batch.store import DynamoBatchStore
from costgate.dal.budgets import DynamoBudgetStore
from costgate.errors import BudgetExceededError, ConflictError, UpstreamError
from tests.fakes.accounting import InMemoryBudgetStore
from tests.fakes.batch import InMemoryBatchStore
from tests.fakes.clock import ManualClock

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
DAY = "2026-11-20"
JOB = "reports"
# Documents whose units land on different PENDING shards of the DynamoDB store (int(doc_id[:2], 16) % 8).
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


class BatchStore(SchedulerStore, DocumentRegistry, Protocol):
    """Every batch port: what both stores implement."""


@dataclass
class World:
    store: BatchStore
    budgets: BudgetStore
    clock: ManualClock


@pytest.fixture(params=["memory", "dynamo"])
def world(request: pytest.FixtureRequest) -> World:
    clock = ManualClock(NOW)
    if request.param == "memory":
        in_memory = InMemoryBudgetStore()
        return World(InMemoryBatchStore(in_memory, clock), in_memory, clock)
    request.getfixturevalue("ledger_table")  # a fresh moto table, bound to every entity
    return World(DynamoBatchStore(sleep=lambda _: None, clock=clock), DynamoBudgetStore(), clock)


@pytest.fixture
def store(world: World) -> BatchStore:
    return world.store


@pytest.fixture
def budgets(world: World) -> BudgetStore:
    return world.budgets


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


def tenant_left(budgets: BudgetStore) -> Decimal | None:
    return budgets.remaining(holds()[:1])


def key_left(budgets: BudgetStore) -> Decimal | None:
    return budgets.remaining(holds()[1:])


def packed(store: BatchStore, u: Unit, batch_id: str = "b1", reserved: str = "0.25") -> Unit:
    assert store.pack_unit(u, batch_id, Decimal(reserved))
    return replace(u, state=UnitState.PACKED, batch_id=batch_id, reserved_usd=Decimal(reserved))


def reserved_batch(store: BatchStore, record: BatchRecord) -> BatchRecord:
    store.create_batch(record)
    return store.reserve_batch(record, holds(str(record.reserved_usd)))


def stored(store: BatchStore, u: Unit) -> Unit:
    return store.units(u.job, [u.custom_id])[u.custom_id]


# --- documents and the manifest's change count ------------------------------------------------------------


def test_a_registered_document_reads_back_equal_and_marks_its_manifest_dirty(store: BatchStore) -> None:
    # Given a document with every optional field set, its times in another timezone
    doc = document(
        registered_at=NOW.astimezone(datetime.fromisoformat("2026-01-01T00:00+05:30").tzinfo),
        result_key="results/reports/x.md",
        error="none",
        totals=TOTALS,
        finished_at=NOW + timedelta(hours=1),
    )

    # When it is registered
    registered = store.register_document(doc)

    # Then it reads back equal, alone and among others, and its job has one change to write
    assert registered is True
    assert store.document(JOB, DOC_A) == doc
    assert store.documents(JOB, [DOC_A, DOC_B]) == {DOC_A: doc}
    assert store.jobs_to_manifest(10) == [(JOB, 1)]
    # And it is not waiting for a check
    assert store.documents_to_check(10) == []


def test_a_document_registered_twice_keeps_the_first_and_counts_a_change_each_time(store: BatchStore) -> None:
    assert store.register_document(document()) is True
    assert store.register_document(document(size=1)) is False

    assert store.document(JOB, DOC_A) == document()
    # A redelivered event re-marks the job: it heals a crash between the document's write and the job's.
    assert store.jobs_to_manifest(10) == [(JOB, 2)]


def test_an_unregistered_document_is_none_and_left_out(store: BatchStore) -> None:
    store.register_document(document(DOC_A))

    assert store.document(JOB, DOC_B) is None
    assert store.document("other", DOC_A) is None
    assert store.documents(JOB, [DOC_B, DOC_C]) == {}
    assert store.documents("other", [DOC_A]) == {}


# --- the pending queue ------------------------------------------------------------------------------------


def test_pending_units_come_oldest_first_across_documents_and_jobs(store: BatchStore) -> None:
    # Given units of three documents and two jobs, queued in interleaved order (one a microsecond apart)
    units = [
        unit(DOC_A, 0, minutes=5),
        unit(DOC_B, 0, minutes=1, job="other"),
        unit(DOC_C, 0, minutes=3),
        unit(DOC_A, 1, minutes=2),
        unit(DOC_B, 1, minutes=4, job="other"),
        unit(DOC_C, 1, minutes=0),
        replace(unit(DOC_A, 2), queued_at=NOW + timedelta(microseconds=1)),
    ]
    store.put_units(units)

    # When the oldest are read
    every = store.pending_units(100)

    # Then they come in queued_at order, whatever their document or job, and a limit keeps the oldest
    assert every == sorted(units, key=lambda u: u.queued_at)
    assert store.pending_units(3) == every[:3]
    assert store.pending_units(0) == []


def test_units_queued_at_the_same_instant_come_in_document_then_seq_order(store: BatchStore) -> None:
    units = [unit(DOC_C, 0), unit(DOC_A, 1), unit(DOC_B, 0), unit(DOC_A, 0)]
    store.put_units(units)

    assert store.pending_units(10) == [unit(DOC_A, 0), unit(DOC_A, 1), unit(DOC_B, 0), unit(DOC_C, 0)]


def test_put_units_creates_missing_units_and_leaves_existing_ones_alone(store: BatchStore) -> None:
    # Given unit 0 packed in a batch and unit 1 queued
    first, second = unit(seq=0), unit(seq=1)
    store.put_units([first, second])
    packed_first = packed(store, first)

    # When ingest runs again (a retried event): the same units, one with a later queue time, and a new one
    third = unit(seq=2)
    store.put_units([replace(first, queued_at=NOW + timedelta(hours=1)), replace(second, attempts=5), third])

    # Then only the new one is written: the packed unit stays packed, the queued one keeps its place
    assert stored(store, first) == packed_first
    assert stored(store, second) == second
    assert store.pending_units(10) == [second, third]


def test_pack_unit_takes_a_pending_unit_off_the_queue_once(store: BatchStore) -> None:
    u = unit()
    store.put_units([u])

    assert store.pack_unit(u, "b1", Decimal("0.25")) is True
    assert store.pack_unit(u, "b2", Decimal("0.5")) is False

    assert stored(store, u) == replace(u, state=UnitState.PACKED, batch_id="b1", reserved_usd=Decimal("0.25"))
    assert store.pending_units(10) == []


def test_pack_unit_refuses_a_unit_that_does_not_exist(store: BatchStore) -> None:
    assert store.pack_unit(unit(), "b1", Decimal("0.25")) is False
    assert store.units(JOB, [unit().custom_id]) == {}


def test_unpack_unit_requeues_it_where_it_was(store: BatchStore) -> None:
    # Given a unit queued at +7 min and packed in b1, and a unit queued later
    u = unit(minutes=7)
    later = unit(DOC_B, minutes=9)
    store.put_units([u, later])
    packed(store, u)

    # When it is unpacked from another batch, from b1, and from b1 again
    outcomes = [store.unpack_unit(u, "other"), store.unpack_unit(u, "b1"), store.unpack_unit(u, "b1")]

    # Then only b1's first unpack counted: it is pending as it was, back ahead of the later unit
    assert outcomes == [False, True, False]
    assert stored(store, u) == u
    assert store.pending_units(10) == [u, later]


def test_packed_units_lists_the_batch_s_units_by_document_and_seq(store: BatchStore) -> None:
    a, b, c, d = unit(seq=0), unit(seq=1), unit(DOC_B, 0), unit(seq=2)
    store.put_units([c, d, a, b])
    in_b1 = [packed(store, a), packed(store, d), packed(store, c, reserved="0.1")]
    packed(store, b, "b2")

    assert list(store.packed_units(batch("b1"))) == [in_b1[0], in_b1[1], in_b1[2]]
    assert list(store.packed_units(batch("b3"))) == []


def test_units_reads_by_custom_id_and_leaves_out_the_rest(store: BatchStore) -> None:
    a, b = unit(seq=0), unit(seq=12)
    store.put_units([a, b])

    found = store.units(JOB, [f"{DOC_A}-0", f"{DOC_A}-12", f"{DOC_A}-3", f"{DOC_A}-012", "junk", f"{DOC_A}-x", "-1"])

    assert found == {f"{DOC_A}-0": a, f"{DOC_A}-12": b}
    assert store.units("other", [a.custom_id]) == {}
    assert store.units(JOB, []) == {}


def test_units_of_reads_every_unit_by_seq_and_add_unit_adds_once(store: BatchStore) -> None:
    store.put_units([unit(seq=1), unit(seq=0), unit(DOC_B, 0)])
    combine = unit(seq=2, kind=UnitKind.COMBINE, start=0, end=0, minutes=30)

    assert store.add_unit(combine) is True
    assert store.add_unit(replace(combine, start=5)) is False

    assert store.units_of(document()) == [unit(seq=0), unit(seq=1), combine]
    # An added unit is queued like any other
    assert store.pending_units(10)[-1] == combine


# --- batches ----------------------------------------------------------------------------------------------


def test_create_batch_lists_it_open_oldest_first_and_refuses_its_id_again(store: BatchStore) -> None:
    store.create_batch(batch("b2", minutes=1))
    store.create_batch(batch("b1", minutes=2))
    store.create_batch(batch("b0", state=BatchState.COLLECTED))
    store.create_batch(batch("b3", minutes=1))

    with pytest.raises(ConflictError):
        store.create_batch(batch("b1", minutes=5))

    # Ties on created_at go by batch id
    assert store.open_batches() == [batch("b2", minutes=1), batch("b3", minutes=1), batch("b1", minutes=2)]


def test_reserve_batch_holds_the_budgets_with_the_move_to_reserved(store: BatchStore, budgets: BudgetStore) -> None:
    # Given a packing batch worth $0.5
    store.create_batch(batch())

    # When it is reserved against the tenant's $1 and the key's $5 daily budgets
    updated = store.reserve_batch(batch(), holds())

    # Then it is RESERVED with its holds, and both windows hold $0.5
    assert updated == batch(state=BatchState.RESERVED, holds=holds())
    assert store.open_batches() == [updated]
    assert tenant_left(budgets) == Decimal("0.5")
    assert key_left(budgets) == Decimal("4.5")


def test_reserve_batch_that_does_not_fit_changes_nothing(store: BatchStore, budgets: BudgetStore) -> None:
    # Given $0.6 already committed on the tenant's $1 budget and a packing batch worth $0.5
    budgets.reserve([Hold(tenant_daily(), DAY, Decimal("0.6"))])
    store.create_batch(batch())

    # When the batch is reserved
    with pytest.raises(BudgetExceededError) as caught:
        store.reserve_batch(batch(), holds())

    # Then the tenant's budget is named with its $0.4 left; the batch is still PACKING, no counter moved
    assert caught.value.budget == tenant_daily()
    assert caught.value.remaining == Decimal("0.4")
    assert store.open_batches() == [batch()]
    assert tenant_left(budgets) == Decimal("0.4")
    assert key_left(budgets) == Decimal(5)


def test_reserve_batch_that_exactly_fills_the_budget_fits(store: BatchStore, budgets: BudgetStore) -> None:
    budgets.reserve([Hold(tenant_daily(), DAY, Decimal("0.5"))])
    store.create_batch(batch())

    store.reserve_batch(batch(), holds())

    assert tenant_left(budgets) == Decimal(0)


def test_reserve_batch_above_a_whole_limit_is_refused_with_no_remaining(
    store: BatchStore, budgets: BudgetStore
) -> None:
    store.create_batch(batch(reserved="2"))

    with pytest.raises(BudgetExceededError) as caught:
        store.reserve_batch(batch(reserved="2"), holds("2"))

    assert caught.value.remaining is None
    assert store.open_batches() == [batch(reserved="2")]
    assert tenant_left(budgets) == Decimal(1)


def test_reserve_batch_names_the_first_budget_that_does_not_fit(store: BatchStore, budgets: BudgetStore) -> None:
    # Given the key's $5 budget with $4.7 committed: the tenant's $1 has room for $0.5, the key's does not
    budgets.reserve([Hold(key_daily(), DAY, Decimal("4.7"))])
    store.create_batch(batch())

    with pytest.raises(BudgetExceededError) as caught:
        store.reserve_batch(batch(), holds())

    assert (caught.value.budget, caught.value.remaining) == (key_daily(), Decimal("0.3"))
    assert tenant_left(budgets) == Decimal(1)
    assert key_left(budgets) == Decimal("0.3")


def test_reserve_batch_without_budgets_holds_nothing(store: BatchStore, budgets: BudgetStore) -> None:
    store.create_batch(batch())

    reserved = store.reserve_batch(batch(), ())

    assert reserved == batch(state=BatchState.RESERVED)
    assert store.open_batches() == [reserved]
    assert tenant_left(budgets) == Decimal(1)


def test_a_batch_no_longer_packing_is_a_conflict_before_any_budget(store: BatchStore, budgets: BudgetStore) -> None:
    # Given a reserved batch and a tenant budget with no room left
    reserved_batch(store, batch())
    budgets.reserve([Hold(tenant_daily(), DAY, Decimal("0.5"))])

    # Then reserving it again is a conflict, not a budget refusal, and holds nothing more
    with pytest.raises(ConflictError):
        store.reserve_batch(batch(), holds())
    assert tenant_left(budgets) == Decimal(0)
    assert key_left(budgets) == Decimal("4.5")


def test_reserve_batch_refuses_holds_that_are_not_the_batch_s_reservation(store: BatchStore) -> None:
    store.create_batch(batch())

    with pytest.raises(ValueError, match="each hold holds the whole batch"):
        store.reserve_batch(batch(), holds("0.25"))

    assert store.open_batches() == [batch()]


def test_reserve_batch_refuses_a_batch_that_is_no_longer_packing(store: BatchStore, budgets: BudgetStore) -> None:
    reserved_batch(store, batch())

    with pytest.raises(ConflictError):
        store.reserve_batch(batch(), holds())
    with pytest.raises(ConflictError):
        store.reserve_batch(batch("never-created"), holds())

    assert tenant_left(budgets) == Decimal("0.5")


def test_set_batch_state_moves_it_and_records_the_remote_id(store: BatchStore) -> None:
    # Given a reserved batch
    record = reserved_batch(store, batch())

    # When it is submitted: SUBMITTING, then SUBMITTED with Claude's id
    submitting = store.set_batch_state(record, BatchState.SUBMITTING, submit_started_at=NOW)
    submitted = store.set_batch_state(submitting, BatchState.SUBMITTED, remote_id="msgbatch_1")

    # Then each record is as stored, and Claude's id leads back to it
    assert submitted == replace(record, state=BatchState.SUBMITTED, submit_started_at=NOW, remote_id="msgbatch_1")
    assert store.open_batches() == [submitted]
    assert store.batch_for_remote("msgbatch_1") == submitted
    assert store.batch_for_remote("msgbatch_2") is None

    # And collecting it takes it off the open list; Claude's id still leads to it
    collected = store.set_batch_state(submitted, BatchState.COLLECTED, ended_at=NOW + timedelta(hours=2))
    assert collected == replace(submitted, state=BatchState.COLLECTED, ended_at=NOW + timedelta(hours=2))
    assert store.open_batches() == []
    assert store.batch_for_remote("msgbatch_1") == collected


def test_set_batch_state_refuses_a_stale_state_and_unknown_changes(store: BatchStore) -> None:
    store.create_batch(batch())

    with pytest.raises(ConflictError):
        store.set_batch_state(batch(state=BatchState.RESERVED), BatchState.SUBMITTING)
    with pytest.raises(ConflictError):
        store.set_batch_state(batch("never-created"), BatchState.SUBMITTING)
    with pytest.raises(TypeError):
        store.set_batch_state(batch(), BatchState.RESERVED, reserved_usd=Decimal(0))

    assert store.open_batches() == [batch()]


def test_a_stale_move_to_submitted_records_no_remote_id(store: BatchStore) -> None:
    store.create_batch(batch(state=BatchState.SUBMITTING))

    with pytest.raises(ConflictError, match="no longer"):
        store.set_batch_state(batch(state=BatchState.RESERVED), BatchState.SUBMITTED, remote_id="msgbatch_1")

    assert store.batch_for_remote("msgbatch_1") is None
    assert store.open_batches() == [batch(state=BatchState.SUBMITTING)]


def test_a_remote_id_recorded_for_another_batch_is_a_conflict(store: BatchStore) -> None:
    for batch_id in ("b1", "b2"):
        store.create_batch(batch(batch_id, state=BatchState.SUBMITTING))
    store.set_batch_state(batch("b1", state=BatchState.SUBMITTING), BatchState.SUBMITTED, remote_id="msgbatch_1")

    with pytest.raises(ConflictError, match="another batch"):
        store.set_batch_state(batch("b2", state=BatchState.SUBMITTING), BatchState.SUBMITTED, remote_id="msgbatch_1")

    assert store.open_batches() == [
        batch("b1", state=BatchState.SUBMITTED, remote_id="msgbatch_1"),
        batch("b2", state=BatchState.SUBMITTING),
    ]
    assert store.batch_for_remote("msgbatch_1") == batch("b1", state=BatchState.SUBMITTED, remote_id="msgbatch_1")


def test_abort_batch_releases_exactly_its_holds(store: BatchStore, budgets: BudgetStore) -> None:
    # Given $0.2 held elsewhere on the tenant's budget and a batch reserved for $0.5 and now submitting
    budgets.reserve([Hold(tenant_daily(), DAY, Decimal("0.2"))])
    record = reserved_batch(store, batch())
    submitting = store.set_batch_state(record, BatchState.SUBMITTING, submit_started_at=NOW)

    # When it is aborted
    store.abort_batch(submitting, "rejected: 400")

    # Then it is off the open list, and only its $0.5 came back
    assert store.open_batches() == []
    assert tenant_left(budgets) == Decimal("0.8")
    assert key_left(budgets) == Decimal(5)

    # And aborting it again is a conflict that releases nothing
    with pytest.raises(ConflictError):
        store.abort_batch(submitting, "again")
    assert tenant_left(budgets) == Decimal("0.8")


def test_abort_batch_keeps_its_note(store: BatchStore) -> None:
    # The note is read through Claude's id: the one way the ports read a batch that is not open
    store.create_batch(batch(state=BatchState.SUBMITTING))
    submitted = store.set_batch_state(batch(state=BatchState.SUBMITTING), BatchState.SUBMITTED, remote_id="msgbatch_1")

    store.abort_batch(submitted, "deleted by hand")

    assert store.batch_for_remote("msgbatch_1") == replace(submitted, state=BatchState.ABORTED, note="deleted by hand")


def test_aborting_a_packing_batch_releases_nothing(store: BatchStore, budgets: BudgetStore) -> None:
    budgets.reserve([Hold(tenant_daily(), DAY, Decimal("0.2"))])
    store.create_batch(batch())

    # Its record carries holds, but a PACKING batch has reserved none of them
    store.abort_batch(batch(holds=holds()), "packing failed")

    assert store.open_batches() == []
    assert tenant_left(budgets) == Decimal("0.8")


def test_aborting_a_batch_whose_holds_were_never_reserved_fails_and_changes_nothing(
    store: BatchStore, budgets: BudgetStore
) -> None:
    # Given a batch recorded as RESERVED without its budget windows ever holding anything
    unreserved = batch(state=BatchState.RESERVED, holds=holds())
    store.create_batch(unreserved)

    # When it is aborted
    with pytest.raises(UpstreamError, match="never reserved"):
        store.abort_batch(unreserved, "stopped")

    # Then it is still open, and no counter went below nothing
    assert store.open_batches() == [unreserved]
    assert tenant_left(budgets) == Decimal(1)


# --- a unit's outcome, and the documents to check -----------------------------------------------------------


def test_finish_unit_done_stores_its_outcome_releases_once_and_flags_its_document(
    store: BatchStore, budgets: BudgetStore
) -> None:
    # Given a reserved batch of $0.5 with a unit packed for $0.25, its document registered
    store.register_document(document())
    record = reserved_batch(store, batch())
    store.put_units([unit()])
    u = packed(store, unit())
    share = tuple(replace(hold, amount_usd=Decimal("0.25")) for hold in holds())

    # When its result is handled (its share released) twice
    first = store.finish_unit(
        u, record, UnitState.DONE, release=share, totals=TOTALS, model="claude-haiku-4-5", output_key="out/0"
    )
    second = store.finish_unit(u, record, UnitState.DONE, release=share, totals=TOTALS)

    # Then only the first counted: the unit is DONE with its outcome, the share came back once
    assert (first, second) == (True, False)
    assert store.units_of(document()) == [
        replace(u, state=UnitState.DONE, totals=TOTALS, model="claude-haiku-4-5", output_key="out/0")
    ]
    assert tenant_left(budgets) == Decimal("0.75")
    assert key_left(budgets) == Decimal("4.75")
    # And its document is waiting for a check
    assert store.documents_to_check(10) == [document()]


def test_finish_unit_failed_stores_the_error(store: BatchStore, budgets: BudgetStore) -> None:
    store.register_document(document())
    record = reserved_batch(store, batch())
    store.put_units([unit()])
    u = packed(store, unit())

    assert store.finish_unit(u, record, UnitState.FAILED, release=holds("0.25"), error="invalid_request") is True

    assert stored(store, u) == replace(u, state=UnitState.FAILED, error="invalid_request")
    assert store.pending_units(10) == []
    assert tenant_left(budgets) == Decimal("0.75")
    assert store.documents_to_check(10) == [document()]


def test_finish_unit_pending_requeues_it_with_one_more_attempt(store: BatchStore) -> None:
    store.register_document(document())
    store.put_units([unit()])
    u = packed(store, unit())

    later = NOW + timedelta(minutes=30)
    assert store.finish_unit(u, batch(), UnitState.PENDING, queued_at=later) is True
    assert store.finish_unit(u, batch(), UnitState.PENDING, queued_at=later) is False

    requeued = replace(unit(), queued_at=later, attempts=1)
    assert store.pending_units(10) == [requeued]
    assert store.documents_to_check(10) == [document()]


def test_finish_unit_of_another_batch_changes_nothing(store: BatchStore, budgets: BudgetStore) -> None:
    store.register_document(document())
    reserved_batch(store, batch())
    store.put_units([unit()])
    u = packed(store, unit())

    assert store.finish_unit(u, batch("b2"), UnitState.DONE, release=holds("0.25"), totals=TOTALS) is False

    assert stored(store, u) == u
    assert tenant_left(budgets) == Decimal("0.5")
    assert store.documents_to_check(10) == []


def test_finish_unit_refuses_what_cannot_be_an_outcome(store: BatchStore, budgets: BudgetStore) -> None:
    # Given a packed unit, one whose document was never registered, and holds never reserved
    store.register_document(document())
    store.put_units([unit(), unit(DOC_B)])
    u, orphan = packed(store, unit()), packed(store, unit(DOC_B))

    # Then PACKED is no outcome, an unregistered document is a conflict, an unreserved hold an upstream error
    with pytest.raises(ValueError, match="finishes as"):
        store.finish_unit(u, batch(), UnitState.PACKED)
    with pytest.raises(ConflictError, match="not registered"):
        store.finish_unit(orphan, batch(), UnitState.DONE, totals=TOTALS)
    with pytest.raises(UpstreamError, match="never reserved"):
        store.finish_unit(u, batch(), UnitState.FAILED, release=holds("0.25"), error="e")

    # And each refusal changed nothing
    assert (stored(store, u), stored(store, orphan)) == (u, orphan)
    assert store.documents_to_check(10) == []
    assert tenant_left(budgets) == Decimal(1)


def test_fail_pending_unit_fails_it_off_the_queue_once_and_flags_its_document(store: BatchStore) -> None:
    # Given a document with a pending unit and a packed one
    store.register_document(document())
    store.put_units([unit(seq=0), unit(seq=1)])
    in_batch = packed(store, unit(seq=1))

    # When both are failed for a deleted input, the pending one twice
    outcomes = [
        store.fail_pending_unit(unit(seq=0), "gone"),
        store.fail_pending_unit(unit(seq=0), "gone"),
        store.fail_pending_unit(unit(seq=1), "gone"),
    ]

    # Then only the pending one failed, once; it left the queue and flagged its document
    assert outcomes == [True, False, False]
    assert store.units_of(document()) == [replace(unit(seq=0), state=UnitState.FAILED, error="gone"), in_batch]
    assert store.pending_units(10) == []
    assert store.documents_to_check(10) == [document()]


def test_fail_pending_unit_of_a_unit_that_does_not_exist_changes_nothing(store: BatchStore) -> None:
    assert store.fail_pending_unit(unit(), "gone") is False
    assert store.fail_pending_unit(unit(DOC_B), "gone") is False  # its document is not registered either

    assert store.units(JOB, [unit().custom_id]) == {}
    assert store.documents_to_check(10) == []


def test_fail_pending_unit_of_an_unregistered_document_is_a_conflict(store: BatchStore) -> None:
    store.put_units([unit()])

    with pytest.raises(ConflictError, match="not registered"):
        store.fail_pending_unit(unit(), "gone")

    assert store.pending_units(10) == [unit()]


def test_documents_to_check_come_in_the_order_they_were_first_flagged(store: BatchStore, world: World) -> None:
    # Given three documents whose units finish at +0 (B), +1 (A) and +2 min (C), and B's second unit at +3
    for doc_id in (DOC_A, DOC_B, DOC_C):
        store.register_document(document(doc_id))
    store.put_units([unit(DOC_A), unit(DOC_B, 0), unit(DOC_B, 1), unit(DOC_C)])
    for minutes, u in enumerate([unit(DOC_B, 0), unit(DOC_A), unit(DOC_C), unit(DOC_B, 1)]):
        world.clock.at = NOW + timedelta(minutes=minutes)
        assert store.finish_unit(packed(store, u), batch(), UnitState.DONE, totals=TOTALS)

    # When the documents to check are read
    flagged = store.documents_to_check(10)

    # Then each is listed once, by the time of its first flag; a limit keeps the oldest
    assert [doc.doc_id for doc in flagged] == [DOC_B, DOC_A, DOC_C]
    assert [doc.doc_id for doc in store.documents_to_check(2)] == [DOC_B, DOC_A]
    assert store.documents_to_check(0) == []


def test_clear_check_takes_the_document_off_the_check_list(store: BatchStore) -> None:
    store.register_document(document())
    store.put_units([unit()])
    assert store.finish_unit(packed(store, unit()), batch(), UnitState.DONE, totals=TOTALS)

    [flagged] = store.documents_to_check(10)
    store.clear_check(flagged)

    assert store.documents_to_check(10) == []


def test_clear_check_keeps_a_flag_set_after_the_check_read(store: BatchStore) -> None:
    # Given a document whose first unit finished, read for a check
    store.register_document(document())
    store.put_units([unit(seq=0), unit(seq=1)])
    first, second = packed(store, unit(seq=0)), packed(store, unit(seq=1))
    assert store.finish_unit(first, batch(), UnitState.DONE, totals=TOTALS)
    [flagged] = store.documents_to_check(10)

    # When the second unit finishes before the check clears the flag (the check saw it unfinished)
    assert store.finish_unit(second, batch(), UnitState.DONE, totals=TOTALS)
    store.clear_check(flagged)

    # Then the document stays flagged, so the next check finds every unit finished
    assert store.documents_to_check(10) == [document()]
    # And the next clear, after a fresh read, takes it off
    [again] = store.documents_to_check(10)
    store.clear_check(again)
    assert store.documents_to_check(10) == []


def test_a_document_flagged_again_after_its_check_queues_behind_the_others(store: BatchStore, world: World) -> None:
    # Given A flagged at +0 and checked (cleared), then B flagged at +1
    for doc_id in (DOC_A, DOC_B):
        store.register_document(document(doc_id))
    store.put_units([unit(DOC_A, 0), unit(DOC_A, 1), unit(DOC_B)])
    assert store.finish_unit(packed(store, unit(DOC_A, 0)), batch(), UnitState.DONE, totals=TOTALS)
    [checked] = store.documents_to_check(10)
    store.clear_check(checked)
    world.clock.at = NOW + timedelta(minutes=1)
    assert store.finish_unit(packed(store, unit(DOC_B)), batch(), UnitState.DONE, totals=TOTALS)

    # When A's second unit finishes at +2
    world.clock.at = NOW + timedelta(minutes=2)
    assert store.finish_unit(packed(store, unit(DOC_A, 1)), batch(), UnitState.DONE, totals=TOTALS)

    # Then A waits behind B: its place is its new flag's, not its first
    assert [doc.doc_id for doc in store.documents_to_check(10)] == [DOC_B, DOC_A]


def test_clear_check_of_a_document_not_read_for_a_check_is_unguarded(store: BatchStore) -> None:
    store.register_document(document())
    store.put_units([unit()])
    assert store.finish_unit(packed(store, unit()), batch(), UnitState.DONE, totals=TOTALS)

    store.clear_check(document())

    assert store.documents_to_check(10) == []


def test_finish_document_finishes_it_once_and_marks_the_manifest(store: BatchStore) -> None:
    # Given a registered document, flagged by its finished unit, whose manifest was written
    store.register_document(document())
    store.manifest_written(JOB, 1)
    store.put_units([unit()])
    assert store.finish_unit(packed(store, unit()), batch(), UnitState.DONE, totals=TOTALS)
    finished_at = NOW + timedelta(hours=3)

    # When it is finished, twice
    first = store.finish_document(
        document(),
        DocumentStatus.DONE,
        result_key="results/x.md",
        totals=TOTALS,
        finished_at=finished_at,
        model="claude-sonnet-4-5",
    )
    second = store.finish_document(
        document(), DocumentStatus.FAILED, result_key="results/x.error.json", totals=TOTALS, finished_at=NOW, error="e"
    )

    # Then the first finished it: DONE with its result, off the check list, its job's manifest dirty again
    assert (first, second) == (True, False)
    assert store.document(JOB, DOC_A) == document(
        status=DocumentStatus.DONE,
        result_key="results/x.md",
        totals=TOTALS,
        finished_at=finished_at,
        model="claude-sonnet-4-5",
    )
    assert store.documents_to_check(10) == []
    assert store.jobs_to_manifest(10) == [(JOB, 2)]


def test_finish_document_keeps_its_model_unless_given_and_stores_an_error(store: BatchStore) -> None:
    store.register_document(document())

    assert store.finish_document(
        document(), DocumentStatus.FAILED, result_key="results/x.error.json", totals=TOTALS, finished_at=NOW, error="e"
    )

    assert store.document(JOB, DOC_A) == document(
        status=DocumentStatus.FAILED, result_key="results/x.error.json", totals=TOTALS, finished_at=NOW, error="e"
    )


def test_finish_document_refuses_pending_and_an_unregistered_document(store: BatchStore) -> None:
    with pytest.raises(ValueError, match="finishes as"):
        store.finish_document(document(), DocumentStatus.PENDING, result_key="x", totals=TOTALS, finished_at=NOW)

    assert (
        store.finish_document(document(), DocumentStatus.DONE, result_key="x", totals=TOTALS, finished_at=NOW) is False
    )
    assert store.document(JOB, DOC_A) is None
    assert store.jobs_to_manifest(10) == []


# --- manifests ------------------------------------------------------------------------------------------------


def test_jobs_to_manifest_come_by_their_first_unwritten_change(store: BatchStore) -> None:
    store.register_document(document(DOC_A))
    store.register_document(document(DOC_B, registered_at=NOW + timedelta(minutes=1)))
    store.register_document(document(DOC_C, job="older", registered_at=NOW - timedelta(minutes=1)))

    assert store.jobs_to_manifest(10) == [("older", 1), (JOB, 2)]
    assert store.jobs_to_manifest(1) == [("older", 1)]
    assert store.jobs_to_manifest(0) == []


def test_manifest_written_cleans_the_job_until_its_next_change(store: BatchStore) -> None:
    # Given two dirty jobs
    store.register_document(document(DOC_A))
    store.register_document(document(DOC_B))
    store.register_document(document(DOC_C, job="older", registered_at=NOW - timedelta(minutes=1)))

    # When the job's manifest is written at its 2 changes
    store.manifest_written(JOB, 2)

    # Then only the other job is dirty
    assert store.jobs_to_manifest(10) == [("older", 1)]

    # And a document finishing later makes it dirty again, queued by that change's time
    finished_at = NOW + timedelta(hours=1)
    store.finish_document(document(DOC_A), DocumentStatus.DONE, result_key="x", totals=TOTALS, finished_at=finished_at)
    store.register_document(document(DOC_C, job="newer", registered_at=NOW + timedelta(minutes=30)))
    assert store.jobs_to_manifest(10) == [("older", 1), ("newer", 1), (JOB, 3)]


def test_manifest_written_after_another_change_leaves_the_job_dirty(store: BatchStore) -> None:
    # Given a job read as dirty at 1 change
    store.register_document(document(DOC_A))
    [(job, changes)] = store.jobs_to_manifest(10)

    # When a document registers while its manifest is written, then the manifest is marked written
    store.register_document(document(DOC_B))
    store.manifest_written(job, changes)

    # Then the job is still dirty, at 2 changes, for the next tick
    assert store.jobs_to_manifest(10) == [(JOB, 2)]


def test_job_documents_lists_the_job_s_documents_by_id_as_an_iterator(store: BatchStore) -> None:
    docs = [document(f"{n:02x}{'cd' * 11}") for n in (3, 0, 4, 1, 2)]
    for doc in docs:
        store.register_document(doc)
    store.register_document(document(DOC_A, job="other"))
    store.put_units([unit(docs[0].doc_id)])

    listed = store.job_documents(JOB)

    assert iter(listed) is listed
    assert list(listed) == sorted(docs, key=lambda doc: doc.doc_id)
    assert list(store.job_documents("nobody")) == []
