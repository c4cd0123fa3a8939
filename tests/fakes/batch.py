"""In-memory batch records and documents bucket: the queues and conditional writes of the DynamoDB store."""

import heapq
import itertools
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from costgate.accounting.budgets import (
    Hold,
    remaining_in,
    reservation_ceiling,
)
from costgate.batch.model import (
    OPEN_BATCH_STATES,
    BatchRecord,
    BatchState,
    Document,
    DocumentStatus,
    Unit,
    UnitState,
    UsageTotals,
)
from costgate.clock import Clock
from costgate.errors import (
    BudgetExceededError,
    ConflictError,
    NotFoundError,
    RequestTooLargeError,
    UpstreamError,
)
from tests.fakes.accounting import InMemoryBudgetStore, counter_key
from tests.fakes.clock import ManualClock

_BATCH_CHANGES = frozenset({"remote_id", "submit_started_at", "ended_at", "note"})


def _queue_time(at: datetime) -> str:
    """DynamoBatchStore's queue time: fixed-width UTC ISO with microseconds, so strings sort as times do."""
    if at.tzinfo is None:
        raise ValueError("queue times must be timezone-aware")
    return at.astimezone(UTC).isoformat(timespec="microseconds")


@dataclass
class _JobBook:
    """A job's manifest bookkeeping, as DynamoBatchStore's JobItem keeps it."""

    created_at: datetime
    changes: int = 0
    manifest_changes: int | None = None
    queue_at: str | None = None  # set while the manifest is dirty (on the MANIFEST queue)


class _LazyQueue:
    """A queue ordered by `queue_at` strings, read without scanning: a heap whose stale entries are dropped
    when they surface. An item is on the queue exactly while `at[key]` holds the entry's queue_at."""

    def __init__(self) -> None:
        self.at: dict[Any, str] = {}
        self._heap: list[tuple[str, Any]] = []

    def put(self, key: Any, queue_at: str) -> None:
        if self.at.get(key) != queue_at:
            self.at[key] = queue_at
            heapq.heappush(self._heap, (queue_at, key))

    def remove(self, key: Any) -> None:
        self.at.pop(key, None)

    def oldest(self, limit: int) -> list[Any]:
        """Up to `limit` keys, oldest queue_at first (ties by key), left on the queue."""
        taken: list[tuple[str, Any]] = []
        seen: set[Any] = set()
        while self._heap and len(taken) < limit:
            entry = heapq.heappop(self._heap)
            if self.at.get(entry[1]) == entry[0] and entry[1] not in seen:
                taken.append(entry)
                seen.add(entry[1])
        for entry in taken:
            heapq.heappush(self._heap, entry)
        return [key for _, key in taken]


class InMemoryBatchStore:
    """Every batch store port (`costgate.batch.ports`) in dicts, with DynamoBatchStore's semantics and no index
    lag: tests/contract/test_batch_store.py runs the same tests against both.

    Every conditional write refuses (False, ConflictError, BudgetExceededError or UpstreamError) where
    the adapter's condition or transaction would, changing nothing. reserve_batch, abort_batch and
    finish_unit move `budgets`' counters as the adapter's transactions move the counter items
    (committed += / −= amount); the ledger's settlement stays with InMemoryLedgerStore. Queues keep
    the adapter's order keys (`<queued_at>#<doc_id>#<seq:06d>`, `<first flagged at>#<job>#<doc_id>`, …),
    and clear_check keeps a document flagged again since documents_to_check read it. The clock dates
    those flags. Thread-safe (the scheduler finishes units from a thread pool).
    """

    def __init__(self, budgets: InMemoryBudgetStore, clock: Clock | None = None) -> None:
        self.budgets = budgets
        self.clock = clock or ManualClock()
        self.jobs: dict[str, _JobBook] = {}
        self.docs: dict[tuple[str, str], Document] = {}
        self.units_by_doc: dict[tuple[str, str], dict[int, Unit]] = {}
        self.batches: dict[str, BatchRecord] = {}
        self.remotes: dict[str, str] = {}  # Claude's batch id -> batch_id
        self.flags: dict[tuple[str, str], int] = {}  # finish_unit's flag count per document
        self._docs_of_job: dict[str, set[str]] = {}
        self._unit_docs_of_job: dict[str, set[str]] = {}
        self._pending = _LazyQueue()  # (job, doc_id, seq)
        self._check = _LazyQueue()  # (job, doc_id)
        self._read_flags: dict[tuple[str, str], int] = {}  # flags as documents_to_check read them
        self._lock = threading.RLock()

    # --- ingest -----------------------------------------------------------------------------------------

    def document(self, job: str, doc_id: str) -> Document | None:
        with self._lock:
            return self.docs.get((job, doc_id))

    def put_units(self, units: Sequence[Unit]) -> None:
        with self._lock:
            for unit in units:
                if self._unit(unit.job, unit.doc_id, unit.seq) is None:
                    self._store_unit(unit)

    def register_document(self, document: Document) -> bool:
        with self._lock:
            key = (document.job, document.doc_id)
            self._job_changed(document, document.registered_at)  # a duplicate re-marks, as the Dynamo store does
            if key in self.docs:
                return False
            self.docs[key] = document
            self._docs_of_job.setdefault(document.job, set()).add(document.doc_id)
            return True

    # --- packing ----------------------------------------------------------------------------------------

    def pending_units(self, limit: int) -> list[Unit]:
        if limit <= 0:
            return []
        with self._lock:
            return [self.units_by_doc[(job, doc_id)][seq] for job, doc_id, seq in self._pending.oldest(limit)]

    def documents(self, job: str, doc_ids: Sequence[str]) -> dict[str, Document]:
        with self._lock:
            return {doc_id: doc for doc_id in doc_ids if (doc := self.docs.get((job, doc_id))) is not None}

    def create_batch(self, batch: BatchRecord) -> None:
        with self._lock:
            if batch.batch_id in self.batches:
                raise ConflictError(f"batch {batch.batch_id} already exists")
            self.batches[batch.batch_id] = batch

    def pack_unit(self, unit: Unit, batch_id: str, reserved_usd: Decimal) -> bool:
        with self._lock:
            stored = self._unit(unit.job, unit.doc_id, unit.seq)
            if stored is None or stored.state is not UnitState.PENDING:
                return False
            self._store_unit(replace(stored, state=UnitState.PACKED, batch_id=batch_id, reserved_usd=reserved_usd))
            return True

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
        with self._lock, self.budgets._lock:
            stored = self.batches.get(batch.batch_id)
            if stored is None or stored.state is not BatchState.PACKING:
                raise ConflictError(f"batch {batch.batch_id} is no longer {BatchState.PACKING.value}")
            committed = self.budgets.committed
            for hold in holds:
                # A window without a counter takes any hold (the limit was checked above).
                if (now := committed.get(counter_key(hold))) is not None and now > reservation_ceiling(hold):
                    raise BudgetExceededError(hold.budget, remaining_in(hold.budget, now), hold.amount_usd)
            for hold in holds:
                committed[counter_key(hold)] = committed.get(counter_key(hold), Decimal(0)) + hold.amount_usd
            self.batches[batch.batch_id] = replace(
                stored, state=BatchState.RESERVED, holds=holds, reserved_usd=batch.reserved_usd
            )
        return replace(batch, state=BatchState.RESERVED, holds=holds)

    def set_batch_state(self, batch: BatchRecord, new_state: BatchState, **changes: Any) -> BatchRecord:
        unknown = sorted(set(changes) - _BATCH_CHANGES)
        if unknown:
            raise TypeError(f"set_batch_state() cannot change {', '.join(unknown)}")
        remote_id = changes.get("remote_id")
        with self._lock:
            stored = self.batches.get(batch.batch_id)
            if stored is None or stored.state is not batch.state:
                raise ConflictError(f"batch {batch.batch_id} is no longer {batch.state.value}")
            if new_state is BatchState.SUBMITTED and remote_id is not None:
                if remote_id in self.remotes:
                    raise ConflictError(f"Claude batch {remote_id} is already recorded for another batch")
                self.remotes[remote_id] = batch.batch_id
            self.batches[batch.batch_id] = replace(stored, state=new_state, **changes)
        return replace(batch, state=new_state, **changes)

    def abort_batch(self, batch: BatchRecord, note: str) -> None:
        releases = batch.holds if batch.state in (BatchState.RESERVED, BatchState.SUBMITTING) else ()
        with self._lock, self.budgets._lock:
            stored = self.batches.get(batch.batch_id)
            if stored is None or stored.state is not batch.state:
                raise ConflictError(f"batch {batch.batch_id} is no longer {batch.state.value}")
            if any(counter_key(hold) not in self.budgets.committed for hold in releases):
                raise UpstreamError(
                    f"batches: batch {batch.batch_id} holds a budget that was never reserved; not aborted"
                )
            self._release(releases)
            self.batches[batch.batch_id] = replace(stored, state=BatchState.ABORTED, note=note)

    def batch_for_remote(self, remote_id: str) -> BatchRecord | None:
        with self._lock:
            batch_id = self.remotes.get(remote_id)
            return None if batch_id is None else self.batches.get(batch_id)

    def open_batches(self) -> list[BatchRecord]:
        with self._lock:
            found = [batch for batch in self.batches.values() if batch.state in OPEN_BATCH_STATES]
        return sorted(found, key=lambda batch: f"{_queue_time(batch.created_at)}#{batch.batch_id}")

    def packed_units(self, batch: BatchRecord) -> Iterator[Unit]:
        with self._lock:
            found = [
                unit
                for doc_id in sorted(self._unit_docs_of_job.get(batch.job, ()))
                for _, unit in sorted(self.units_by_doc.get((batch.job, doc_id), {}).items())
                if unit.state is UnitState.PACKED and unit.batch_id == batch.batch_id
            ]
        yield from found

    def unpack_unit(self, unit: Unit, batch_id: str) -> bool:
        with self._lock:
            stored = self._unit(unit.job, unit.doc_id, unit.seq)
            if stored is None or stored.state is not UnitState.PACKED or stored.batch_id != batch_id:
                return False
            # Requeued where it was: at the queued_at of the unit it was given (as the adapter does).
            self._store_unit(
                replace(stored, state=UnitState.PENDING, batch_id=None, reserved_usd=None), queued_at=unit.queued_at
            )
            return True

    # --- collecting -------------------------------------------------------------------------------------

    def units(self, job: str, custom_ids: Sequence[str]) -> dict[str, Unit]:
        found: dict[str, Unit] = {}
        with self._lock:
            for custom_id in custom_ids:
                parsed = _parse_custom_id(custom_id)
                if parsed is not None and (unit := self._unit(job, *parsed)) is not None:
                    found[unit.custom_id] = unit
        return found

    def fail_pending_unit(self, unit: Unit, error: str) -> bool:
        with self._lock:
            stored = self._unit(unit.job, unit.doc_id, unit.seq)
            if stored is None or stored.state is not UnitState.PENDING:
                return False
            doc_key = (unit.job, unit.doc_id)
            if doc_key not in self.docs:
                raise ConflictError(f"unit {unit.custom_id}'s document is not registered in job {unit.job}")
            self._store_unit(replace(stored, state=UnitState.FAILED, error=error))
            self.flags[doc_key] = self.flags.get(doc_key, 0) + 1
            if doc_key not in self._check.at:
                self._check.put(doc_key, f"{_queue_time(self.clock.now())}#{unit.job}#{unit.doc_id}")
            return True

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
        if state not in (UnitState.PENDING, UnitState.DONE, UnitState.FAILED):
            raise ValueError(f"a unit finishes as {UnitState.PENDING}, {UnitState.DONE} or {UnitState.FAILED}")
        with self._lock, self.budgets._lock:
            stored = self._unit(unit.job, unit.doc_id, unit.seq)
            if stored is None or stored.state is not UnitState.PACKED or stored.batch_id != batch.batch_id:
                return False
            doc_key = (unit.job, unit.doc_id)
            if doc_key not in self.docs:
                raise ConflictError(f"unit {unit.custom_id}'s document is not registered in job {unit.job}")
            if any(counter_key(hold) not in self.budgets.committed for hold in release):
                raise UpstreamError(f"batches: unit {unit.custom_id} releases a budget hold that was never reserved")
            if state is UnitState.PENDING:
                when = queued_at or unit.queued_at
                finished = replace(
                    stored,
                    state=state,
                    attempts=stored.attempts + 1,
                    batch_id=None,
                    reserved_usd=None,
                    queued_at=when,
                )
                self._store_unit(finished)
            elif state is UnitState.DONE:
                finished = replace(stored, state=state, model=model, output_key=output_key)
                self._store_unit(finished if totals is None else replace(finished, totals=totals))
            else:
                self._store_unit(replace(stored, state=state, error=error))
            self._release(release)
            self.flags[doc_key] = self.flags.get(doc_key, 0) + 1
            if doc_key not in self._check.at:
                self._check.put(doc_key, f"{_queue_time(self.clock.now())}#{unit.job}#{unit.doc_id}")
            return True

    # --- finishing documents ----------------------------------------------------------------------------

    def documents_to_check(self, limit: int) -> list[Document]:
        if limit <= 0:
            return []
        with self._lock:
            keys = self._check.oldest(limit)
            for key in keys:
                self._read_flags[key] = self.flags.get(key, 0)
            return [self.docs[key] for key in keys]

    def units_of(self, document: Document) -> list[Unit]:
        with self._lock:
            return [unit for _, unit in sorted(self.units_by_doc.get((document.job, document.doc_id), {}).items())]

    def add_unit(self, unit: Unit) -> bool:
        with self._lock:
            if self._unit(unit.job, unit.doc_id, unit.seq) is not None:
                return False
            self._store_unit(unit)
            return True

    def clear_check(self, document: Document) -> None:
        key = (document.job, document.doc_id)
        with self._lock:
            read = self._read_flags.pop(key, None)
            if key not in self.docs or (read is not None and self.flags.get(key, 0) != read):
                return  # flagged again since it was read: it stays on the check list
            self._check.remove(key)

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
        key = (document.job, document.doc_id)
        with self._lock:
            self._read_flags.pop(key, None)
            stored = self.docs.get(key)
            if stored is None or stored.status is not DocumentStatus.PENDING:
                return False
            changes: dict[str, Any] = {"model": model} if model is not None else {}
            if error is not None:
                changes["error"] = error
            self.docs[key] = replace(
                stored, status=status, result_key=result_key, totals=totals, finished_at=finished_at, **changes
            )
            self._check.remove(key)
            self._job_changed(document, finished_at)
            return True

    # --- manifests --------------------------------------------------------------------------------------

    def jobs_to_manifest(self, limit: int) -> list[tuple[str, int]]:
        if limit <= 0:
            return []
        with self._lock:
            dirty = sorted((book.queue_at, job) for job, book in self.jobs.items() if book.queue_at is not None)
            return [(job, self.jobs[job].changes) for _, job in dirty[:limit]]

    def job_documents(self, job: str) -> Iterator[Document]:
        with self._lock:
            found = [self.docs[(job, doc_id)] for doc_id in sorted(self._docs_of_job.get(job, ()))]
        yield from found

    def manifest_written(self, job: str, changes: int) -> None:
        with self._lock:
            book = self.jobs.get(job)
            if book is not None and book.changes == changes:
                book.manifest_changes = changes
                book.queue_at = None

    # --- inside -----------------------------------------------------------------------------------------

    def _unit(self, job: str, doc_id: str, seq: int) -> Unit | None:
        return self.units_by_doc.get((job, doc_id), {}).get(seq)

    def _store_unit(self, unit: Unit, queued_at: datetime | None = None) -> None:
        """Store the unit; on its PENDING queue exactly while PENDING (at `queued_at`, default its own)."""
        self.units_by_doc.setdefault((unit.job, unit.doc_id), {})[unit.seq] = unit
        self._unit_docs_of_job.setdefault(unit.job, set()).add(unit.doc_id)
        key = (unit.job, unit.doc_id, unit.seq)
        if unit.state is UnitState.PENDING:
            self._pending.put(key, f"{_queue_time(queued_at or unit.queued_at)}#{unit.doc_id}#{unit.seq:06d}")
        else:
            self._pending.remove(key)

    def _release(self, holds: Sequence[Hold]) -> None:
        """committed −= amount per hold; the caller holds the budget store's lock and checked the counters."""
        for hold in holds:
            self.budgets.committed[counter_key(hold)] -= hold.amount_usd

    def _job_changed(self, document: Document, at: datetime) -> None:
        book = self.jobs.setdefault(document.job, _JobBook(created_at=document.registered_at))
        book.changes += 1
        if book.queue_at is None:
            book.queue_at = f"{_queue_time(at)}#{document.job}"


def _parse_custom_id(custom_id: str) -> tuple[str, int] | None:
    """(doc_id, seq) of `<doc_id>-<seq>`; None for anything a unit could not have sent."""
    doc_id, dash, seq = custom_id.rpartition("-")
    if not dash or not doc_id or "-" in doc_id or not (seq.isascii() and seq.isdigit()) or str(int(seq)) != seq:
        return None
    return doc_id, int(seq)


class InMemoryObjectStore:
    """ObjectStore as a versioned bucket in memory: key -> [(version_id, bytes), …], oldest first.

    Like S3ObjectStore: a version id of None or "null" reads the newest version; a missing key or
    version raises NotFoundError, an object above max_bytes RequestTooLargeError; `lines` splits on
    \\n, \\r\\n and \\r and fetches nothing until its first next(). `upload` is what a user's PUT does
    (it returns the new version id); `put` and `put_file` record their content type. Thread-safe.
    """

    def __init__(self, bucket: str = "costgate-docs") -> None:
        self.bucket = bucket
        self.objects: dict[str, list[tuple[str, bytes]]] = {}
        self.content_types: dict[str, str] = {}
        self._versions = itertools.count(1)
        self._lock = threading.Lock()

    def upload(self, key: str, body: bytes) -> str:
        with self._lock:
            version_id = f"v{next(self._versions)}"
            self.objects.setdefault(key, []).append((version_id, body))
        return version_id

    def delete(self, key: str) -> None:
        """Every version of the key, gone (as a user emptying it from a versioned bucket)."""
        with self._lock:
            self.objects.pop(key, None)

    def latest(self, key: str) -> bytes:
        return self.read(key, max_bytes=1 << 62)

    def keys(self, prefix: str = "") -> set[str]:
        with self._lock:
            return {key for key in self.objects if key.startswith(prefix)}

    def read(self, key: str, version_id: str | None = None, *, max_bytes: int) -> bytes:
        body = self._get(key, version_id)
        if len(body) > max_bytes:
            raise RequestTooLargeError(
                f"s3://{self.bucket}/{key} is {len(body):,} bytes, over the {max_bytes:,} allowed"
            )
        return body

    def lines(self, key: str, version_id: str | None = None) -> Iterator[bytes]:
        yield from self._get(key, version_id).splitlines()

    def put(self, key: str, body: bytes, content_type: str) -> None:
        self.upload(key, body)
        with self._lock:
            self.content_types[key] = content_type

    def put_file(self, key: str, path: Path, content_type: str) -> None:
        self.put(key, path.read_bytes(), content_type)

    def _get(self, key: str, version_id: str | None) -> bytes:
        with self._lock:
            versions = self.objects.get(key, [])
            if version_id is None or version_id == "null":
                found = versions[-1:]
            else:
                found = [entry for entry in versions if entry[0] == version_id]
        if not found:
            version = f" version {version_id}" if version_id else ""
            raise NotFoundError(f"s3://{self.bucket}/{key}{version} does not exist")
        return found[0][1]
