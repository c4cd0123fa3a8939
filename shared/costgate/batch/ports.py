"""The batch feature's stores: its records, one small port per step that uses them, and the documents bucket.

Every store method is one conditional write (or one transaction) unless it says otherwise, so a crash
between two calls leaves each record in a state the scheduler resumes from (see `costgate.batch.model`).
Queue reads (`pending_units`, `open_batches`, `documents_to_check`, `jobs_to_manifest`) may be a little
stale and may list a record that has just moved on: the conditional write that follows decides.

One store (`DynamoBatchStore`) implements every port; each step takes only the one it uses:

    DocumentRegistry  ingest (register_object)
    OpenBatches       the scheduler: which batches to move on
    BatchAborts       putting a batch's units back and aborting it (recovery, and a failed submission)
    RemoteBatches     adopting the batch an unanswered create call made (recovery)
    PendingQueue      choosing the units to submit
    UnitInputs        building their requests (a document whose input is gone fails its units)
    BatchLaunch       packing, reserving and submitting a batch
    ResultStore       collecting an ended batch's results
    DocumentChecks    finishing documents whose units are all finished
    ManifestQueue     rewriting dirty manifests (JobDocuments: a job's status)
"""

from collections.abc import Iterator, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from costgate.accounting.budgets import Hold
    from costgate.batch.model import BatchRecord, BatchState, Document, DocumentStatus, Unit, UnitState, UsageTotals


class DocumentRegistry(Protocol):
    """Registering an uploaded object as a document and its units."""

    def document(self, job: str, doc_id: str) -> "Document | None":
        """The document, read strongly consistently; None if it is not registered."""
        ...

    def put_units(self, units: "Sequence[Unit]") -> None:
        """Create each (PENDING, queued) unit unless it exists (then it is left alone, attempts and all)."""
        ...

    def register_document(self, document: "Document") -> bool:
        """Store the document unless it exists (False); either way marks its job's manifest dirty."""
        ...


class OpenBatches(Protocol):
    def open_batches(self) -> "list[BatchRecord]":
        """Every batch in an OPEN_BATCH_STATES state, oldest first."""
        ...


class PackedUnits(Protocol):
    def packed_units(self, batch: "BatchRecord") -> "Iterator[Unit]":
        """Every unit PACKED in this batch (a scan of its job's units: for recovery, not the hot path)."""
        ...


class BatchAborts(PackedUnits, Protocol):
    """A batch that never reached Claude: its units back on the queue, then the batch aborted."""

    def unpack_unit(self, unit: "Unit", batch_id: str) -> bool:
        """PACKED in batch_id -> PENDING (queued again, reservation cleared); False if not so packed."""
        ...

    def abort_batch(self, batch: "BatchRecord", note: str) -> None:
        """batch.state -> ABORTED, off the open list, releasing its holds (if any) in the same transaction.

        ConflictError if the stored state is not batch.state.
        """
        ...


class BatchStateChanges(Protocol):
    def set_batch_state(self, batch: "BatchRecord", new_state: "BatchState", **changes: Any) -> "BatchRecord":
        """batch.state -> new_state with `changes` (remote_id, submit_started_at, ended_at, note).

        Moving to SUBMITTED with a remote_id also records that id (see batch_for_remote). Moving to
        COLLECTED takes the batch off the open list. ConflictError if the stored state is not batch.state.
        """
        ...


class UnitReads(Protocol):
    def units(self, job: str, custom_ids: "Sequence[str]") -> "dict[str, Unit]":
        """The job's units among custom_ids (`<doc_id>-<seq>`), read strongly consistently, by custom_id."""
        ...


class DocumentReads(Protocol):
    def documents(self, job: str, doc_ids: "Sequence[str]") -> "dict[str, Document]":
        """The job's documents among doc_ids (missing ones left out), by doc_id."""
        ...


class RemoteBatches(BatchStateChanges, UnitReads, Protocol):
    """Which of Claude's batches is ours, after a create call that got no answer."""

    def batch_for_remote(self, remote_id: str) -> "BatchRecord | None":
        """The batch that Claude's batch `remote_id` was recorded for, if any."""
        ...


class PendingQueue(DocumentReads, Protocol):
    """The units waiting for a batch, and their documents."""

    def pending_units(self, limit: int) -> "list[Unit]":
        """Up to `limit` queued units, oldest `queued_at` first, across every job."""
        ...


class DocumentUnits(Protocol):
    def units_of(self, document: "Document") -> "list[Unit]":
        """Every unit of the document, by seq, read strongly consistently."""
        ...


class UnitInputs(DocumentUnits, Protocol):
    """A document's units as its requests are built (a COMBINE request reads its parts' outputs)."""

    def fail_pending_unit(self, unit: "Unit", error: str) -> bool:
        """PENDING -> FAILED with `error`, off the queue, its document flagged for a check, in one
        transaction (its input is gone, so it can never be sent); False if it is not PENDING."""
        ...


class BatchLaunch(BatchStateChanges, Protocol):
    """A new batch: PACKING with its units, RESERVED against the budgets, then SUBMITTING and SUBMITTED."""

    def create_batch(self, batch: "BatchRecord") -> None:
        """Store a new PACKING batch (listed by open_batches) - its id must be new."""
        ...

    def pack_unit(self, unit: "Unit", batch_id: str, reserved_usd: Decimal) -> bool:
        """PENDING -> PACKED in batch_id with its worst case, off the queue; False if it is not PENDING."""
        ...

    def reserve_batch(self, batch: "BatchRecord", holds: "Sequence[Hold]") -> "BatchRecord":
        """PACKING -> RESERVED and every hold added to its budget window, in one transaction.

        Raises BudgetExceededError (nothing changed) when a hold does not fit, ConflictError when the
        batch is no longer PACKING.
        """
        ...


class ResultStore(BatchStateChanges, UnitReads, DocumentReads, PackedUnits, Protocol):
    """An ended batch's results: each unit's outcome (a unit left PACKED is one that never ran), then the
    batch COLLECTED."""

    def finish_unit(
        self,
        unit: "Unit",
        batch: "BatchRecord",
        state: "UnitState",
        *,
        release: "Sequence[Hold]" = (),
        totals: "UsageTotals | None" = None,
        model: str | None = None,
        output_key: str | None = None,
        error: str | None = None,
        queued_at: datetime | None = None,
    ) -> bool:
        """The unit's outcome, once: PACKED in batch.batch_id -> `state`, in one transaction with
        releasing `release` (holds whose amounts are given back) and flagging its document for a check.

        state PENDING re-queues it (at `queued_at`, attempts + 1, reservation cleared); DONE stores
        totals, model and output_key; FAILED stores error. False, changing nothing, if the unit is not
        PACKED in that batch (already finished).
        """
        ...


class DocumentChecks(DocumentUnits, Protocol):
    """Documents flagged by a finished unit: finished once all their units are, else taken off the list."""

    def documents_to_check(self, limit: int) -> "list[Document]":
        """Up to `limit` documents flagged by finish_unit or fail_pending_unit."""
        ...

    def add_unit(self, unit: "Unit") -> bool:
        """Create a (PENDING, queued) unit; False, changing nothing, if it exists."""
        ...

    def clear_check(self, document: "Document") -> None:
        """Take the document off the check list (it is still waiting for units), unless a unit flagged it
        again since documents_to_check read it."""
        ...

    def finish_document(
        self,
        document: "Document",
        status: "DocumentStatus",
        *,
        result_key: str,
        totals: "UsageTotals",
        finished_at: datetime,
        model: str | None = None,
        error: str | None = None,
    ) -> bool:
        """PENDING -> DONE or FAILED, off the check list, its job's manifest marked dirty; False if not PENDING."""
        ...


class JobDocuments(Protocol):
    def job_documents(self, job: str) -> "Iterator[Document]":
        """Every document of the job, page by page (never all in memory at once)."""
        ...


class ManifestQueue(JobDocuments, Protocol):
    """Jobs whose documents changed since their manifest was written."""

    def jobs_to_manifest(self, limit: int) -> "list[tuple[str, int]]":
        """Jobs whose manifest is dirty, each with its change count."""
        ...

    def manifest_written(self, job: str, changes: int) -> None:
        """Mark the manifest clean, unless the job changed again since `changes` was read."""
        ...


class SchedulerStore(
    OpenBatches,
    BatchAborts,
    RemoteBatches,
    PendingQueue,
    UnitInputs,
    BatchLaunch,
    ResultStore,
    DocumentChecks,
    ManifestQueue,
    Protocol,
):
    """Every port a scheduler tick hands to its steps (the tick itself only reads open_batches)."""


class ObjectStore(Protocol):
    """The documents bucket."""

    def read(self, key: str, version_id: str | None = None, *, max_bytes: int) -> bytes:
        """The object's bytes. NotFoundError if it (or that version) is gone; RequestTooLargeError above max_bytes."""
        ...

    def lines(self, key: str, version_id: str | None = None) -> "Iterator[bytes]":
        """The object's lines (without line ends), streamed."""
        ...

    def put(self, key: str, body: bytes, content_type: str) -> None: ...

    def put_file(self, key: str, path: Path, content_type: str) -> None:
        """Upload a local file (multipart when large): results and manifests built on disk."""
        ...
