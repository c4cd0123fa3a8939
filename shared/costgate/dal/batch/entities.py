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

Every write of DynamoBatchStore (`costgate.dal.batch.store`) is one conditional write or one
TransactWrite (retried on transaction conflicts), so a crash between two calls leaves each record
where the scheduler resumes from. Queue reads come from the index (eventually consistent) and are
re-read from the table where freshness matters.
"""

from datetime import UTC, datetime
from typing import Any, Final

from pynamodb.attributes import ListAttribute, MapAttribute, NumberAttribute, UnicodeAttribute, UTCDateTimeAttribute
from pynamodb.expressions.update import Action
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex

from costgate.batch.model import OPEN_BATCH_STATES, BatchRecord, Document
from costgate.dal.table import CostgateItem, DecimalAttribute

QUEUE_INDEX: Final = "Queue"
PENDING_SHARDS: Final = 8

META: Final = "META"
CHECK_QUEUE: Final = "CHECK"
MANIFEST_QUEUE: Final = "MANIFEST"
BATCH_QUEUE: Final = "BATCH"


class QueueIndex(GlobalSecondaryIndex[Any]):  # type: ignore[no-untyped-call]  # pynamodb's __init_subclass__
    """The table's sparse GSI: every queued item by queue, oldest `queue_at` first."""

    class Meta:
        index_name = QUEUE_INDEX
        projection = AllProjection()

    queue = UnicodeAttribute(hash_key=True)
    queue_at = UnicodeAttribute(range_key=True)


class QueuedItem(CostgateItem):
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


class JobItem(QueuedItem, discriminator="batch_job"):
    """A job's manifest bookkeeping.  PK: JOB#<job>  SK: META

    `changes` counts document changes (ADD 1 with each: a registration, a finished document);
    `manifest_changes` is the count the last written manifest reflects. While they differ the job
    is on the MANIFEST queue.
    """

    job = UnicodeAttribute()
    created_at = UTCDateTimeAttribute()
    changes = NumberAttribute()
    manifest_changes = NumberAttribute(null=True)


class DocumentItem(QueuedItem, discriminator="batch_document"):
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


class UnitItem(QueuedItem, discriminator="batch_unit"):
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


class BatchItem(QueuedItem, discriminator="batch"):
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


# --- keys and queues --------------------------------------------------------------------------------------


def job_pk(job: str) -> str:
    return f"JOB#{job}"


def doc_sk(doc_id: str) -> str:
    return f"DOC#{doc_id}"


def unit_sk(doc_id: str, seq: int) -> str:
    return f"UNIT#{doc_id}#{seq:06d}"


def batch_pk(batch_id: str) -> str:
    return f"BATCH#{batch_id}"


def remote_pk(remote_id: str) -> str:
    return f"REMOTE#{remote_id}"


def parse_custom_id(custom_id: str) -> tuple[str, int] | None:
    """(doc_id, seq) of `<doc_id>-<seq>`; None for anything a unit could not have sent."""
    doc_id, dash, seq = custom_id.rpartition("-")
    if not dash or not doc_id or "-" in doc_id or not (seq.isascii() and seq.isdigit()) or str(int(seq)) != seq:
        return None
    return doc_id, int(seq)


def queue_time(at: datetime) -> str:
    """Fixed-width UTC ISO time with microseconds, so queue keys sort as time does."""
    if at.tzinfo is None:
        raise ValueError("queue times must be timezone-aware")
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def pending_shard(doc_id: str) -> int:
    """The PENDING queue shard of a document's units: spreads the queue over PENDING_SHARDS partitions."""
    return int(doc_id[:2], 16) % PENDING_SHARDS


def pending_queue(doc_id: str, seq: int, queued_at: datetime) -> list[Action]:
    return [
        UnitItem.queue.set(f"PENDING#{pending_shard(doc_id)}"),
        UnitItem.queue_at.set(f"{queue_time(queued_at)}#{doc_id}#{seq:06d}"),
    ]


def batch_queue(batch: BatchRecord) -> list[Action]:
    if batch.state in OPEN_BATCH_STATES:
        return [
            BatchItem.queue.set(BATCH_QUEUE),
            BatchItem.queue_at.set(f"{queue_time(batch.created_at)}#{batch.batch_id}"),
        ]
    return [BatchItem.queue.remove(), BatchItem.queue_at.remove()]


def job_changed(document: Document, at: datetime | None = None) -> list[Action]:
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
        JobItem.queue.set(MANIFEST_QUEUE),
        JobItem.queue_at.set(JobItem.queue_at | f"{queue_time(changed_at)}#{document.job}"),
    ]
