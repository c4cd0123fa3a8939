"""Batch summarisation in DynamoDB: jobs, documents, units, batches, and the queues the scheduler reads.

Entities (see `costgate.batch.model` for their states):

    Job        PK: JOB#<job>             SK: META
    Document   PK: JOB#<job>             SK: DOC#<doc_id>
    Unit       PK: JOB#<job>             SK: UNIT#<doc_id>#<seq:06d>
    Batch      PK: BATCH#<batch_id>      SK: META
    Remote id  PK: REMOTE#<remote_id>    SK: META      (→ batch_id, written with the move to SUBMITTED)

Queues are the sparse GSI `Queue` (hash `queue`, range `queue_at`, template.yaml): an item is on a
queue exactly while it carries `queue`, and it goes on or off in the same write as the change that
puts it there, so a queue never disagrees with the records for longer than the index lags:

    PENDING#<0-7>  units waiting for a batch, sharded by int(doc_id[:2], 16) % 8;
                   queue_at = <queued_at, UTC, microseconds>#<doc_id>#<seq:06d> (lexical = time order)
    BATCH          batches in an OPEN_BATCH_STATES state;  queue_at = <created_at>#<batch_id>
    CHECK          documents a finished unit flagged;      queue_at = <first flagged at>#<job>#<doc_id>
    MANIFEST       jobs whose documents changed since their manifest was written (changes !=
                   manifest_changes);                      queue_at = <first unwritten change>#<job>

Every method is one conditional write or one TransactWrite (retried on transaction conflicts), so a
crash between two calls leaves each record where the scheduler resumes from. Queue reads come from
the index (eventually consistent) and are re-read from the table where freshness matters.
"""

import heapq
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from itertools import batched, islice
from typing import Any, Final

from pynamodb.attributes import ListAttribute, MapAttribute, NumberAttribute, UnicodeAttribute, UTCDateTimeAttribute
from pynamodb.exceptions import DoesNotExist, PutError, UpdateError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.transactions import TransactWrite

from costgate.accounting.budgets import Budget, BudgetPeriod, Hold, remaining_in, reservation_ceiling
from costgate.batch.model import (
    OPEN_BATCH_STATES,
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
from costgate.clock import Clock, SystemClock
from costgate.dal.budgets import committed_usd, release_update, reserve_update
from costgate.dal.table import CONDITION_FAILED, CostgateItem, DecimalAttribute, transact
from costgate.errors import BudgetExceededError, ConflictError, UpstreamError
from costgate.observability import logger

QUEUE_INDEX: Final = "Queue"
PENDING_SHARDS: Final = 8
# put_units writes one conditional PutItem per unit (BatchWriteItem has no conditions): in parallel
# from this many units on, a chunk at a time so 100,000 units never become 100,000 futures at once.
PUT_WORKERS: Final = 8
_PARALLEL_FROM: Final = 16
_PUT_CHUNK: Final = 1_000
# Flag counts remembered between documents_to_check and clear_check (see clear_check), newest kept.
_REMEMBERED_FLAGS: Final = 10_000

_META: Final = "META"
_CHECK: Final = "CHECK"
_MANIFEST: Final = "MANIFEST"
_BATCH: Final = "BATCH"
_BATCH_CHANGES: Final = frozenset({"remote_id", "submit_started_at", "ended_at", "note"})


class QueueIndex(GlobalSecondaryIndex[Any]):  # type: ignore[no-untyped-call]  # pynamodb's __init_subclass__
    """The table's sparse GSI: every queued item by queue, oldest `queue_at` first."""

    class Meta:
        index_name = QUEUE_INDEX
        projection = AllProjection()

    queue = UnicodeAttribute(hash_key=True)
    queue_at = UnicodeAttribute(range_key=True)


class _QueuedItem(CostgateItem):
    """An entity that can sit on a queue: `queue` and `queue_at` present exactly while it does."""

    queue = UnicodeAttribute(null=True)
    queue_at = UnicodeAttribute(null=True)
    queue_index = QueueIndex()


class TotalsMap(MapAttribute[str, Any]):
    requests = NumberAttribute()
    input_tokens = NumberAttribute()
    output_tokens = NumberAttribute()
    cache_write_5m_tokens = NumberAttribute()
    cache_write_1h_tokens = NumberAttribute()
    cache_read_tokens = NumberAttribute()
    cost_usd = DecimalAttribute()


class HoldMap(MapAttribute[str, Any]):
    scope = UnicodeAttribute()
    period = UnicodeAttribute()
    limit_usd = DecimalAttribute()
    window = UnicodeAttribute()
    amount_usd = DecimalAttribute()


class JobItem(_QueuedItem, discriminator="batch_job"):
    """A job's manifest bookkeeping.  PK: JOB#<job>  SK: META

    `changes` counts document changes (ADD 1 with each: a registration, a finished document);
    `manifest_changes` is the count the last written manifest reflects. While they differ the job
    is on the MANIFEST queue.
    """

    job = UnicodeAttribute()
    created_at = UTCDateTimeAttribute()
    changes = NumberAttribute()
    manifest_changes = NumberAttribute(null=True)


class DocumentItem(_QueuedItem, discriminator="batch_document"):
    """One input document.  PK: JOB#<job>  SK: DOC#<doc_id>

    On the CHECK queue while a finished unit has flagged it; `flags` counts those flags, so a check
    that read the document before another unit finished cannot take it off the queue (clear_check).
    """

    job = UnicodeAttribute()
    doc_id = UnicodeAttribute()
    bucket = UnicodeAttribute()
    key = UnicodeAttribute()
    version_id = UnicodeAttribute()
    kind = UnicodeAttribute()
    status = UnicodeAttribute()
    registered_at = UTCDateTimeAttribute()
    size = NumberAttribute()
    units = NumberAttribute()
    tenant = UnicodeAttribute()
    feature = UnicodeAttribute()
    model = UnicodeAttribute(null=True)
    instruction = UnicodeAttribute(null=True)
    max_tokens = NumberAttribute(null=True)
    result_key = UnicodeAttribute(null=True)
    error = UnicodeAttribute(null=True)
    totals = TotalsMap()  # type: ignore[no-untyped-call]
    finished_at = UTCDateTimeAttribute(null=True)
    flags = NumberAttribute(null=True)


class UnitItem(_QueuedItem, discriminator="batch_unit"):
    """One request of a document.  PK: JOB#<job>  SK: UNIT#<doc_id>#<seq:06d>

    On its PENDING#<shard> queue exactly while PENDING; `batch_id` and `reserved_usd` only while PACKED.
    """

    job = UnicodeAttribute()
    doc_id = UnicodeAttribute()
    seq = NumberAttribute()
    kind = UnicodeAttribute()
    state = UnicodeAttribute()
    start = NumberAttribute()
    end = NumberAttribute()
    queued_at = UTCDateTimeAttribute()
    attempts = NumberAttribute()
    batch_id = UnicodeAttribute(null=True)
    reserved_usd = DecimalAttribute(null=True)
    model = UnicodeAttribute(null=True)
    totals = TotalsMap()  # type: ignore[no-untyped-call]
    output_key = UnicodeAttribute(null=True)
    error = UnicodeAttribute(null=True)


class BatchItem(_QueuedItem, discriminator="batch"):
    """One Message Batch.  PK: BATCH#<batch_id>  SK: META

    On the BATCH queue while its state is open. `holds` are the budget holds reserve_batch took, each
    for the whole batch's reservation.
    """

    batch_id = UnicodeAttribute()
    job = UnicodeAttribute()
    state = UnicodeAttribute()
    created_at = UTCDateTimeAttribute()
    request_count = NumberAttribute()
    reserved_usd = DecimalAttribute()
    holds = ListAttribute(of=HoldMap)
    remote_id = UnicodeAttribute(null=True)
    submit_started_at = UTCDateTimeAttribute(null=True)
    ended_at = UTCDateTimeAttribute(null=True)
    note = UnicodeAttribute(null=True)


class RemoteBatchItem(CostgateItem, discriminator="batch_remote"):
    """Which batch Claude's batch id belongs to.  PK: REMOTE#<remote_id>  SK: META

    Put on condition that it does not exist, in the transaction that moves the batch to SUBMITTED.
    """

    batch_id = UnicodeAttribute()


class DynamoBatchStore:
    """BatchStore over the single table. The clock only dates the CHECK flags finish_unit sets."""

    def __init__(self, sleep: Callable[[float], None] = time.sleep, clock: Clock | None = None) -> None:
        self._sleep = sleep
        self._clock = clock or SystemClock()
        self._flags: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._flags_lock = threading.Lock()

    # --- ingest -------------------------------------------------------------------------------------

    def document(self, job: str, doc_id: str) -> Document | None:
        try:
            item = DocumentItem.get(_job_pk(job), _doc_sk(doc_id), consistent_read=True)
        except DoesNotExist:
            return None
        return _to_document(item)

    def put_units(self, units: Sequence[Unit]) -> None:
        if len(units) < _PARALLEL_FROM:
            for unit in units:
                self._put_unit(unit)
            return
        with ThreadPoolExecutor(max_workers=PUT_WORKERS, thread_name_prefix="put-units") as pool:
            for chunk in batched(units, _PUT_CHUNK, strict=False):
                for _ in pool.map(self._put_unit, chunk):
                    pass  # iterating re-raises a worker's error

    def register_document(self, document: Document) -> bool:
        try:
            _document_item(document).save(condition=DocumentItem.pk.does_not_exist())
            registered = True
        except PutError as error:
            if error.cause_response_code != "ConditionalCheckFailedException":
                raise
            registered = False
        # Not in one transaction with the put: every upload of a job updates this one item, and
        # concurrent transactions on an item cancel each other where plain updates queue. A crash in
        # between is healed by the event's redelivery, which lands here again (a duplicate re-marks).
        JobItem(_job_pk(document.job), _META).update(actions=_job_changed(document))
        return registered

    # --- packing ------------------------------------------------------------------------------------

    def pending_units(self, limit: int) -> list[Unit]:
        if limit <= 0:
            return []
        shards = [
            UnitItem.query(f"PENDING#{shard}", index_name=QUEUE_INDEX, limit=limit) for shard in range(PENDING_SHARDS)
        ]
        merged = heapq.merge(*shards, key=lambda item: item.queue_at or "")
        return [_to_unit(item) for item in islice(merged, limit)]

    def documents(self, job: str, doc_ids: Sequence[str]) -> dict[str, Document]:
        keys = {(_job_pk(job), _doc_sk(doc_id)) for doc_id in doc_ids}
        return {item.doc_id: _to_document(item) for item in DocumentItem.batch_get(keys, consistent_read=True)}

    def create_batch(self, batch: BatchRecord) -> None:
        try:
            _batch_item(batch).save(condition=BatchItem.pk.does_not_exist())
        except PutError as error:
            if error.cause_response_code != "ConditionalCheckFailedException":
                raise
            raise ConflictError(f"batch {batch.batch_id} already exists") from None

    def pack_unit(self, unit: Unit, batch_id: str, reserved_usd: Decimal) -> bool:
        return _update(
            UnitItem(_job_pk(unit.job), _unit_sk(unit.doc_id, unit.seq)),
            [
                UnitItem.state.set(UnitState.PACKED.value),
                UnitItem.batch_id.set(batch_id),
                UnitItem.reserved_usd.set(reserved_usd),
                UnitItem.queue.remove(),
                UnitItem.queue_at.remove(),
            ],
            UnitItem.state == UnitState.PENDING.value,
        )

    def reserve_batch(self, batch: BatchRecord, holds: Sequence[Hold]) -> BatchRecord:
        holds = tuple(holds)
        for hold in holds:
            if hold.amount_usd != batch.reserved_usd:
                raise ValueError(
                    f"batch {batch.batch_id}: a hold of {hold.amount_usd} is not the batch's reservation"
                    f" ({batch.reserved_usd}); each hold holds the whole batch"
                )
            if hold.amount_usd > hold.budget.limit_usd:
                raise BudgetExceededError(hold.budget, remaining=None, needed=hold.amount_usd)
        updates = [reserve_update(hold) for hold in holds]

        def write(transaction: TransactWrite) -> None:
            transaction.update(
                BatchItem(_batch_pk(batch.batch_id), _META),
                actions=[
                    BatchItem.state.set(BatchState.RESERVED.value),
                    BatchItem.holds.set([_hold_map(hold) for hold in holds]),
                    BatchItem.reserved_usd.set(batch.reserved_usd),
                ],
                condition=BatchItem.state == BatchState.PACKING.value,
            )
            for item, actions, condition in updates:
                transaction.update(item, actions=actions, condition=condition)

        def worth_retrying(codes: list[str | None]) -> bool:
            if codes[0] == CONDITION_FAILED:
                raise ConflictError(f"batch {batch.batch_id} is no longer {BatchState.PACKING.value}")
            for hold, code in zip(holds, codes[1:], strict=False):
                if code == CONDITION_FAILED:
                    committed = committed_usd(hold)
                    if committed > reservation_ceiling(hold):
                        raise BudgetExceededError(hold.budget, remaining_in(hold.budget, committed), hold.amount_usd)
            # Room came back between the refusal and the read (a release, a settlement): try again.
            return True

        transact(
            write,
            area="batches",
            what=f"reserve batch {batch.batch_id}",
            sleep=self._sleep,
            retry_refused=worth_retrying,
        )
        return replace(batch, state=BatchState.RESERVED, holds=holds)

    def set_batch_state(self, batch: BatchRecord, new_state: BatchState, **changes: Any) -> BatchRecord:
        unknown = sorted(set(changes) - _BATCH_CHANGES)
        if unknown:
            raise TypeError(f"set_batch_state() cannot change {', '.join(unknown)}")
        updated = replace(batch, state=new_state, **changes)
        item = BatchItem(_batch_pk(batch.batch_id), _META)
        actions: list[Action] = [BatchItem.state.set(new_state.value), *_batch_queue(updated)]
        actions += [getattr(BatchItem, name).set(value) for name, value in changes.items()]
        condition = BatchItem.state == batch.state.value
        remote_id = changes.get("remote_id")
        if new_state is not BatchState.SUBMITTED or remote_id is None:
            if not _update(item, actions, condition):
                raise ConflictError(f"batch {batch.batch_id} is no longer {batch.state.value}")
            return updated

        def write(transaction: TransactWrite) -> None:
            # TransactWrite sends puts before updates: the cancellation reasons come in that order.
            transaction.save(
                RemoteBatchItem(_remote_pk(remote_id), _META, batch_id=batch.batch_id),
                condition=RemoteBatchItem.pk.does_not_exist(),
            )
            transaction.update(item, actions=actions, condition=condition)

        codes = transact(write, area="batches", what=f"record batch {batch.batch_id} as submitted", sleep=self._sleep)
        if codes is not None:
            if codes[-1] == CONDITION_FAILED:
                raise ConflictError(f"batch {batch.batch_id} is no longer {batch.state.value}")
            raise ConflictError(f"Claude batch {remote_id} is already recorded for another batch")
        return updated

    def abort_batch(self, batch: BatchRecord, note: str) -> None:
        releases = (
            [release_update(hold) for hold in batch.holds]
            if batch.state in (BatchState.RESERVED, BatchState.SUBMITTING)
            else []
        )

        def write(transaction: TransactWrite) -> None:
            transaction.update(
                BatchItem(_batch_pk(batch.batch_id), _META),
                actions=[
                    BatchItem.state.set(BatchState.ABORTED.value),
                    BatchItem.note.set(note),
                    BatchItem.queue.remove(),
                    BatchItem.queue_at.remove(),
                ],
                condition=BatchItem.state == batch.state.value,
            )
            for item, actions, condition in releases:
                transaction.update(item, actions=actions, condition=condition)

        codes = transact(write, area="batches", what=f"abort batch {batch.batch_id}", sleep=self._sleep)
        if codes is None:
            return
        if codes[0] == CONDITION_FAILED:
            raise ConflictError(f"batch {batch.batch_id} is no longer {batch.state.value}")
        raise UpstreamError(f"batches: batch {batch.batch_id} holds a budget that was never reserved; not aborted")

    def batch_for_remote(self, remote_id: str) -> BatchRecord | None:
        try:
            remote = RemoteBatchItem.get(_remote_pk(remote_id), _META, consistent_read=True)
            item = BatchItem.get(_batch_pk(remote.batch_id), _META, consistent_read=True)
        except DoesNotExist:
            return None
        return _to_batch(item)

    def open_batches(self) -> list[BatchRecord]:
        queued = [(item.pk, item.sk) for item in BatchItem.query(_BATCH, index_name=QUEUE_INDEX)]
        fresh = {(item.pk, item.sk): item for item in BatchItem.batch_get(queued, consistent_read=True)}
        records = [_to_batch(fresh[key]) for key in queued if key in fresh]
        return [record for record in records if record.state in OPEN_BATCH_STATES]

    def packed_units(self, batch: BatchRecord) -> Iterator[Unit]:
        items = UnitItem.query(
            _job_pk(batch.job),
            UnitItem.sk.startswith("UNIT#"),
            filter_condition=(UnitItem.state == UnitState.PACKED.value) & (UnitItem.batch_id == batch.batch_id),
            consistent_read=True,
        )
        for item in items:
            yield _to_unit(item)

    def unpack_unit(self, unit: Unit, batch_id: str) -> bool:
        return _update(
            UnitItem(_job_pk(unit.job), _unit_sk(unit.doc_id, unit.seq)),
            [
                UnitItem.state.set(UnitState.PENDING.value),
                UnitItem.batch_id.remove(),
                UnitItem.reserved_usd.remove(),
                *_pending_queue(unit.doc_id, unit.seq, unit.queued_at),
            ],
            (UnitItem.state == UnitState.PACKED.value) & (UnitItem.batch_id == batch_id),
        )

    # --- collecting ---------------------------------------------------------------------------------

    def units(self, job: str, custom_ids: Sequence[str]) -> dict[str, Unit]:
        keys = set()
        for custom_id in custom_ids:
            parsed = _parse_custom_id(custom_id)
            if parsed is not None:
                keys.add((_job_pk(job), _unit_sk(*parsed)))
        found = (_to_unit(item) for item in UnitItem.batch_get(keys, consistent_read=True))
        return {unit.custom_id: unit for unit in found}

    def fail_pending_unit(self, unit: Unit, error: str) -> bool:
        flagged_at = f"{_iso(self._clock.now())}#{unit.job}#{unit.doc_id}"

        def write(transaction: TransactWrite) -> None:
            transaction.update(
                UnitItem(_job_pk(unit.job), _unit_sk(unit.doc_id, unit.seq)),
                actions=[
                    UnitItem.state.set(UnitState.FAILED.value),
                    UnitItem.error.set(error),
                    UnitItem.queue.remove(),
                    UnitItem.queue_at.remove(),
                ],
                condition=UnitItem.state == UnitState.PENDING.value,
            )
            transaction.update(
                DocumentItem(_job_pk(unit.job), _doc_sk(unit.doc_id)),
                actions=[
                    DocumentItem.queue.set(_CHECK),
                    DocumentItem.queue_at.set(DocumentItem.queue_at | flagged_at),
                    DocumentItem.flags.add(1),
                ],
                condition=DocumentItem.pk.exists(),
            )

        codes = transact(write, area="batches", what=f"fail unit {unit.custom_id}", sleep=self._sleep)
        if codes is None:
            return True
        if codes[0] == CONDITION_FAILED:
            return False
        raise ConflictError(f"unit {unit.custom_id}'s document is not registered in job {unit.job}")

    def finish_unit(
        self,
        unit: Unit,
        batch: BatchRecord,
        state: UnitState,
        *,
        release: Sequence[Hold] = (),
        totals: UsageTotals | None = None,
        model: str | None = None,
        output_key: str | None = None,
        error: str | None = None,
        queued_at: datetime | None = None,
    ) -> bool:
        actions: list[Action] = [UnitItem.state.set(state.value)]
        if state is UnitState.PENDING:
            actions += [
                UnitItem.attempts.add(1),
                UnitItem.batch_id.remove(),
                UnitItem.reserved_usd.remove(),
                UnitItem.queued_at.set(queued_at or unit.queued_at),
                *_pending_queue(unit.doc_id, unit.seq, queued_at or unit.queued_at),
            ]
        elif state is UnitState.DONE:
            if totals is not None:
                actions.append(UnitItem.totals.set(_totals_map(totals)))
            actions += [_set_or_remove(UnitItem.model, model), _set_or_remove(UnitItem.output_key, output_key)]
        elif state is UnitState.FAILED:
            actions.append(_set_or_remove(UnitItem.error, error))
        else:
            raise ValueError(f"a unit finishes as {UnitState.PENDING}, {UnitState.DONE} or {UnitState.FAILED}")
        releases = [release_update(hold) for hold in release]
        flagged_at = f"{_iso(self._clock.now())}#{unit.job}#{unit.doc_id}"
        doc_actions: list[Action] = [
            DocumentItem.queue.set(_CHECK),
            DocumentItem.queue_at.set(DocumentItem.queue_at | flagged_at),
            DocumentItem.flags.add(1),
        ]

        def write(transaction: TransactWrite) -> None:
            transaction.update(
                UnitItem(_job_pk(unit.job), _unit_sk(unit.doc_id, unit.seq)),
                actions=actions,
                condition=(UnitItem.state == UnitState.PACKED.value) & (UnitItem.batch_id == batch.batch_id),
            )
            for item, release_actions, condition in releases:
                transaction.update(item, actions=release_actions, condition=condition)
            transaction.update(
                DocumentItem(_job_pk(unit.job), _doc_sk(unit.doc_id)),
                actions=doc_actions,
                condition=DocumentItem.pk.exists(),
            )

        codes = transact(write, area="batches", what=f"finish unit {unit.custom_id}", sleep=self._sleep)
        if codes is None:
            return True
        if codes[0] == CONDITION_FAILED:
            return False
        if codes[-1] == CONDITION_FAILED:
            raise ConflictError(f"unit {unit.custom_id}'s document is not registered in job {unit.job}")
        raise UpstreamError(f"batches: unit {unit.custom_id} releases a budget hold that was never reserved")

    # --- finishing documents ------------------------------------------------------------------------

    def documents_to_check(self, limit: int) -> list[Document]:
        if limit <= 0:
            return []
        flagged = [(item.pk, item.sk) for item in DocumentItem.query(_CHECK, index_name=QUEUE_INDEX, limit=limit)]
        fresh = {(item.pk, item.sk): item for item in DocumentItem.batch_get(flagged, consistent_read=True)}
        documents = []
        for key in flagged:
            item = fresh.get(key)
            if item is None or item.queue != _CHECK:
                continue  # checked since the index was read
            self._remember_flags(item)
            documents.append(_to_document(item))
        return documents

    def units_of(self, document: Document) -> list[Unit]:
        items = UnitItem.query(
            _job_pk(document.job), UnitItem.sk.startswith(f"UNIT#{document.doc_id}#"), consistent_read=True
        )
        return sorted((_to_unit(item) for item in items), key=lambda unit: unit.seq)

    def add_unit(self, unit: Unit) -> bool:
        try:
            _unit_item(unit).save(condition=UnitItem.pk.does_not_exist())
        except PutError as error:
            if error.cause_response_code != "ConditionalCheckFailedException":
                raise
            return False
        return True

    def clear_check(self, document: Document) -> None:
        """Off the CHECK queue, unless a unit finished (flagging it again) since documents_to_check read it.

        Without that guard a unit finishing between the check's read of the units and this write
        would lose its flag, and the document would wait forever. The flag count read is kept in
        this store; a document it did not read through documents_to_check is cleared unguarded.
        """
        with self._flags_lock:
            flags = self._flags.pop((document.job, document.doc_id), None)
        condition = DocumentItem.pk.exists()
        if flags is not None:
            condition &= DocumentItem.flags == flags
        cleared = _update(
            DocumentItem(_job_pk(document.job), _doc_sk(document.doc_id)),
            [DocumentItem.queue.remove(), DocumentItem.queue_at.remove()],
            condition,
        )
        if not cleared:
            logger.info("batches: document flagged again, left on the check list", extra={"doc": document.doc_id})

    def finish_document(
        self,
        document: Document,
        status: DocumentStatus,
        *,
        result_key: str,
        totals: UsageTotals,
        finished_at: datetime,
        model: str | None = None,
        error: str | None = None,
    ) -> bool:
        if status is DocumentStatus.PENDING:
            raise ValueError(f"a document finishes as {DocumentStatus.DONE} or {DocumentStatus.FAILED}")
        actions: list[Action] = [
            DocumentItem.status.set(status.value),
            DocumentItem.result_key.set(result_key),
            DocumentItem.totals.set(_totals_map(totals)),
            DocumentItem.finished_at.set(finished_at),
            DocumentItem.queue.remove(),
            DocumentItem.queue_at.remove(),
        ]
        if model is not None:
            actions.append(DocumentItem.model.set(model))
        if error is not None:
            actions.append(DocumentItem.error.set(error))

        def write(transaction: TransactWrite) -> None:
            transaction.update(
                DocumentItem(_job_pk(document.job), _doc_sk(document.doc_id)),
                actions=actions,
                condition=DocumentItem.status == DocumentStatus.PENDING.value,
            )
            transaction.update(JobItem(_job_pk(document.job), _META), actions=_job_changed(document, at=finished_at))

        codes = transact(write, area="batches", what=f"finish document {document.doc_id}", sleep=self._sleep)
        with self._flags_lock:
            self._flags.pop((document.job, document.doc_id), None)
        return codes is None

    # --- manifests ----------------------------------------------------------------------------------

    def jobs_to_manifest(self, limit: int) -> list[tuple[str, int]]:
        if limit <= 0:
            return []
        dirty = [(item.pk, item.sk) for item in JobItem.query(_MANIFEST, index_name=QUEUE_INDEX, limit=limit)]
        fresh = {(item.pk, item.sk): item for item in JobItem.batch_get(dirty, consistent_read=True)}
        return [
            (item.job, int(item.changes))
            for key in dirty
            if (item := fresh.get(key)) is not None and item.queue == _MANIFEST
        ]

    def job_documents(self, job: str) -> Iterator[Document]:
        for item in DocumentItem.query(_job_pk(job), DocumentItem.sk.startswith("DOC#"), consistent_read=True):
            yield _to_document(item)

    def manifest_written(self, job: str, changes: int) -> None:
        written = _update(
            JobItem(_job_pk(job), _META),
            [JobItem.manifest_changes.set(changes), JobItem.queue.remove(), JobItem.queue_at.remove()],
            JobItem.changes == changes,
        )
        if not written:
            logger.info("batches: job changed while its manifest was written", extra={"job": job})

    # --- writing ------------------------------------------------------------------------------------

    def _put_unit(self, unit: Unit) -> None:
        try:
            _unit_item(unit).save(condition=UnitItem.pk.does_not_exist())
        except PutError as error:
            if error.cause_response_code != "ConditionalCheckFailedException":
                raise
            # It exists: queued, in flight or finished, with its own attempts; it stays as it is.

    def _remember_flags(self, item: DocumentItem) -> None:
        with self._flags_lock:
            key = (item.job, item.doc_id)
            self._flags[key] = int(item.flags or 0)
            self._flags.move_to_end(key)
            while len(self._flags) > _REMEMBERED_FLAGS:
                self._flags.popitem(last=False)


def _update(item: CostgateItem, actions: list[Action], condition: Condition) -> bool:
    """One conditional UpdateItem; False, changing nothing, when the condition is refused."""
    try:
        item.update(actions=actions, condition=condition)
    except UpdateError as error:
        if error.cause_response_code != "ConditionalCheckFailedException":
            raise
        return False
    return True


def _set_or_remove(attribute: UnicodeAttribute, value: str | None) -> Action:
    return attribute.remove() if value is None else attribute.set(value)


# --- keys and queues --------------------------------------------------------------------------------------


def _job_pk(job: str) -> str:
    return f"JOB#{job}"


def _doc_sk(doc_id: str) -> str:
    return f"DOC#{doc_id}"


def _unit_sk(doc_id: str, seq: int) -> str:
    return f"UNIT#{doc_id}#{seq:06d}"


def _batch_pk(batch_id: str) -> str:
    return f"BATCH#{batch_id}"


def _remote_pk(remote_id: str) -> str:
    return f"REMOTE#{remote_id}"


def _parse_custom_id(custom_id: str) -> tuple[str, int] | None:
    """(doc_id, seq) of `<doc_id>-<seq>`; None for anything a unit could not have sent."""
    doc_id, dash, seq = custom_id.rpartition("-")
    if not dash or not doc_id or "-" in doc_id or not (seq.isascii() and seq.isdigit()) or str(int(seq)) != seq:
        return None
    return doc_id, int(seq)


def _iso(at: datetime) -> str:
    """Fixed-width UTC ISO time with microseconds, so queue keys sort as time does."""
    if at.tzinfo is None:
        raise ValueError("queue times must be timezone-aware")
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def pending_shard(doc_id: str) -> int:
    """The PENDING queue shard of a document's units: spreads the queue over PENDING_SHARDS partitions."""
    return int(doc_id[:2], 16) % PENDING_SHARDS


def _pending_queue(doc_id: str, seq: int, queued_at: datetime) -> list[Action]:
    return [
        UnitItem.queue.set(f"PENDING#{pending_shard(doc_id)}"),
        UnitItem.queue_at.set(f"{_iso(queued_at)}#{doc_id}#{seq:06d}"),
    ]


def _batch_queue(batch: BatchRecord) -> list[Action]:
    if batch.state in OPEN_BATCH_STATES:
        return [BatchItem.queue.set(_BATCH), BatchItem.queue_at.set(f"{_iso(batch.created_at)}#{batch.batch_id}")]
    return [BatchItem.queue.remove(), BatchItem.queue_at.remove()]


def _job_changed(document: Document, at: datetime | None = None) -> list[Action]:
    """A document of the job changed at `at` (default: its registration): count it, mark the manifest dirty.

    The job item is created by its first document; queue_at keeps the first change not yet in a
    manifest, so a busy job does not keep moving to the back of the MANIFEST queue.
    """
    changed_at = at or document.registered_at
    return [
        JobItem.entity.set(JobItem),
        JobItem.job.set(document.job),
        JobItem.created_at.set(JobItem.created_at | document.registered_at),
        JobItem.changes.add(1),
        JobItem.queue.set(_MANIFEST),
        JobItem.queue_at.set(JobItem.queue_at | f"{_iso(changed_at)}#{document.job}"),
    ]


# --- records <-> items ------------------------------------------------------------------------------------


def _totals_map(totals: UsageTotals) -> TotalsMap:
    return TotalsMap(  # type: ignore[no-untyped-call]
        requests=totals.requests,
        input_tokens=totals.input_tokens,
        output_tokens=totals.output_tokens,
        cache_write_5m_tokens=totals.cache_write_5m_tokens,
        cache_write_1h_tokens=totals.cache_write_1h_tokens,
        cache_read_tokens=totals.cache_read_tokens,
        cost_usd=totals.cost_usd,
    )


def _to_totals(totals: TotalsMap | None) -> UsageTotals:
    if totals is None:
        return UsageTotals()
    return UsageTotals(
        requests=int(totals.requests),
        input_tokens=int(totals.input_tokens),
        output_tokens=int(totals.output_tokens),
        cache_write_5m_tokens=int(totals.cache_write_5m_tokens),
        cache_write_1h_tokens=int(totals.cache_write_1h_tokens),
        cache_read_tokens=int(totals.cache_read_tokens),
        cost_usd=totals.cost_usd,
    )


def _hold_map(hold: Hold) -> HoldMap:
    return HoldMap(  # type: ignore[no-untyped-call]
        scope=hold.budget.scope,
        period=hold.budget.period.value,
        limit_usd=hold.budget.limit_usd,
        window=hold.window,
        amount_usd=hold.amount_usd,
    )


def _to_hold(hold: HoldMap) -> Hold:
    budget = Budget(hold.scope, BudgetPeriod(hold.period), hold.limit_usd)
    return Hold(budget, hold.window, hold.amount_usd)


def _document_item(document: Document) -> DocumentItem:
    return DocumentItem(
        _job_pk(document.job),
        _doc_sk(document.doc_id),
        job=document.job,
        doc_id=document.doc_id,
        bucket=document.bucket,
        key=document.key,
        version_id=document.version_id,
        kind=document.kind.value,
        status=document.status.value,
        registered_at=document.registered_at,
        size=document.size,
        units=document.units,
        tenant=document.tenant,
        feature=document.feature,
        model=document.model,
        instruction=document.instruction,
        max_tokens=document.max_tokens,
        result_key=document.result_key,
        error=document.error,
        totals=_totals_map(document.totals),
        finished_at=document.finished_at,
    )


def _to_document(item: DocumentItem) -> Document:
    return Document(
        job=item.job,
        doc_id=item.doc_id,
        bucket=item.bucket,
        key=item.key,
        version_id=item.version_id,
        kind=DocumentKind(item.kind),
        status=DocumentStatus(item.status),
        registered_at=item.registered_at,
        size=int(item.size),
        units=int(item.units),
        tenant=item.tenant,
        feature=item.feature,
        model=item.model,
        instruction=item.instruction,
        max_tokens=None if item.max_tokens is None else int(item.max_tokens),
        result_key=item.result_key,
        error=item.error,
        totals=_to_totals(item.totals),
        finished_at=item.finished_at,
    )


def _unit_item(unit: Unit) -> UnitItem:
    item = UnitItem(
        _job_pk(unit.job),
        _unit_sk(unit.doc_id, unit.seq),
        job=unit.job,
        doc_id=unit.doc_id,
        seq=unit.seq,
        kind=unit.kind.value,
        state=unit.state.value,
        start=unit.start,
        end=unit.end,
        queued_at=unit.queued_at,
        attempts=unit.attempts,
        batch_id=unit.batch_id,
        reserved_usd=unit.reserved_usd,
        model=unit.model,
        totals=_totals_map(unit.totals),
        output_key=unit.output_key,
        error=unit.error,
    )
    if unit.state is UnitState.PENDING:
        item.queue = f"PENDING#{pending_shard(unit.doc_id)}"
        item.queue_at = f"{_iso(unit.queued_at)}#{unit.doc_id}#{unit.seq:06d}"
    return item


def _to_unit(item: UnitItem) -> Unit:
    return Unit(
        job=item.job,
        doc_id=item.doc_id,
        seq=int(item.seq),
        kind=UnitKind(item.kind),
        state=UnitState(item.state),
        start=int(item.start),
        end=int(item.end),
        queued_at=item.queued_at,
        attempts=int(item.attempts),
        batch_id=item.batch_id,
        reserved_usd=item.reserved_usd,
        model=item.model,
        totals=_to_totals(item.totals),
        output_key=item.output_key,
        error=item.error,
    )


def _batch_item(batch: BatchRecord) -> BatchItem:
    item = BatchItem(
        _batch_pk(batch.batch_id),
        _META,
        batch_id=batch.batch_id,
        job=batch.job,
        state=batch.state.value,
        created_at=batch.created_at,
        request_count=batch.request_count,
        reserved_usd=batch.reserved_usd,
        holds=[_hold_map(hold) for hold in batch.holds],
        remote_id=batch.remote_id,
        submit_started_at=batch.submit_started_at,
        ended_at=batch.ended_at,
        note=batch.note,
    )
    if batch.state in OPEN_BATCH_STATES:
        item.queue = _BATCH
        item.queue_at = f"{_iso(batch.created_at)}#{batch.batch_id}"
    return item


def _to_batch(item: BatchItem) -> BatchRecord:
    return BatchRecord(
        batch_id=item.batch_id,
        job=item.job,
        state=BatchState(item.state),
        created_at=item.created_at,
        request_count=int(item.request_count),
        reserved_usd=item.reserved_usd,
        holds=tuple(_to_hold(hold) for hold in item.holds or ()),
        remote_id=item.remote_id,
        submit_started_at=item.submit_started_at,
        ended_at=item.ended_at,
        note=item.note,
    )
