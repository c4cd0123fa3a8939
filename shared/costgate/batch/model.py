"""Batch summarisation's records: jobs, documents, requests ("units") and submitted batches.

How a document moves (every arrow is one conditional write, so a crash between two arrows leaves a
state the next scheduler tick resumes from; nothing is lost, submitted twice or charged twice):

    S3 incoming/<job>/<file> ──ingest──► Document (pending) + its Units (pending, queued)
    pending Units ──pack──► Batch PACKING ──► Units PACKED (batch_id) ──► Batch RESERVED (budget held,
        same transaction) ──► Batch SUBMITTING ──POST /v1/messages/batches──► Batch SUBMITTED (remote id)
    ended batch ──collect, per result──► output in S3, ledger row (settles the unit's hold), then
        Unit DONE | FAILED (errored; its hold released) | PENDING again (expired/canceled, attempts left)
        — the unit's change and its document's `check` flag in one transaction
    Document with every Unit finished ──finalise──► result or error file, Document DONE | FAILED
        (a split text first gets its COMBINE unit, which goes round the same loop)
    Document changes mark the Job's manifest dirty ──► results/<job>/_manifest.json rewritten

A unit's `custom_id` is `<doc_id>-<seq>`; its ledger request id is `batch/<remote batch id>/<custom_id>`,
so the ledger's idempotency makes re-collecting a result after a crash charge nothing.
"""

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from costgate.accounting.budgets import Hold
from costgate.pricing.usage import TokenUsage


class DocumentKind(StrEnum):
    TEXT = "text"  # .txt / .md: summarised with the job's instruction
    REQUESTS = "requests"  # .jsonl: ready Messages requests, one per line
    OTHER = "other"  # any other file in a job folder: rejected, listed in the manifest with its error


class DocumentStatus(StrEnum):
    PENDING = "pending"  # registered; some units not yet finished
    DONE = "done"  # its result file is written
    FAILED = "failed"  # its error file is written


class UnitKind(StrEnum):
    WHOLE = "whole"  # a text short enough for one request: [start, end) is all of it
    PART = "part"  # one part of a split text: characters [start, end)
    COMBINE = "combine"  # the follow-up request that joins a split text's part summaries
    REQUEST = "request"  # line `start` (0-based) of a .jsonl file


class UnitState(StrEnum):
    PENDING = "pending"  # waiting for a batch (queued)
    PACKED = "packed"  # in batch `batch_id`
    DONE = "done"  # succeeded: output written, cost in the ledger
    FAILED = "failed"  # errored, or expired/canceled too often


class BatchState(StrEnum):
    PACKING = "packing"  # created; its units are being marked PACKED
    RESERVED = "reserved"  # units marked, worst case held against the budgets
    SUBMITTING = "submitting"  # the create call may or may not have reached Claude
    SUBMITTED = "submitted"  # Claude has it (remote_id)
    COLLECTED = "collected"  # every result handled
    ABORTED = "aborted"  # never reached Claude; its units went back to pending, its hold released


OPEN_BATCH_STATES = frozenset({BatchState.PACKING, BatchState.RESERVED, BatchState.SUBMITTING, BatchState.SUBMITTED})


@dataclass(frozen=True)
class JobConfig:
    """What `incoming/<job>/_job.json` may set (read when each document registers)."""

    instruction: str
    model: str
    max_tokens: int
    tenant: str
    feature: str


@dataclass(frozen=True)
class UsageTotals:
    """What a unit or a document used and cost (the sum of its units' ledger rows)."""

    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    cache_read_tokens: int = 0
    cost_usd: Decimal = Decimal(0)

    @classmethod
    def of(cls, usage: TokenUsage, cost_usd: Decimal) -> "UsageTotals":
        return cls(
            requests=1,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_write_5m_tokens=usage.cache_write_5m_tokens,
            cache_write_1h_tokens=usage.cache_write_1h_tokens,
            cache_read_tokens=usage.cache_read_tokens,
            cost_usd=cost_usd,
        )

    def __add__(self, other: "UsageTotals") -> "UsageTotals":
        return UsageTotals(
            requests=self.requests + other.requests,
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_write_5m_tokens=self.cache_write_5m_tokens + other.cache_write_5m_tokens,
            cache_write_1h_tokens=self.cache_write_1h_tokens + other.cache_write_1h_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            cost_usd=self.cost_usd + other.cost_usd,
        )


@dataclass(frozen=True)
class Document:
    """One input object: `incoming/<job>/<name>` at one S3 version. `doc_id` = sha256(bucket, key, version)[:24]."""

    job: str
    doc_id: str
    bucket: str
    key: str
    version_id: str  # "null" for an object written while versioning was off
    kind: DocumentKind
    status: DocumentStatus
    registered_at: datetime
    size: int
    units: int  # units registered with it (parts or lines; a COMBINE unit is added later)
    tenant: str
    feature: str
    model: str | None = None  # TEXT: the job's model; REQUESTS: None (each line names its own)
    instruction: str | None = None  # TEXT only
    max_tokens: int | None = None  # TEXT only
    result_key: str | None = None  # the result or error file, once finished
    error: str | None = None
    totals: UsageTotals = field(default_factory=UsageTotals)
    finished_at: datetime | None = None

    @property
    def name(self) -> str:
        """The file's path below `incoming/<job>/`."""
        return self.key.removeprefix(f"incoming/{self.job}/")


@dataclass(frozen=True)
class Unit:
    """One Messages request of a document, as it goes through batches."""

    job: str
    doc_id: str
    seq: int
    kind: UnitKind
    state: UnitState
    start: int
    end: int
    queued_at: datetime  # queue order among pending units
    attempts: int = 0  # batches it has been submitted in
    batch_id: str | None = None
    reserved_usd: Decimal | None = None  # its worst case, held while PACKED
    model: str | None = None  # the model that answered
    totals: UsageTotals = field(default_factory=UsageTotals)
    output_key: str | None = None
    error: str | None = None

    @property
    def custom_id(self) -> str:
        return f"{self.doc_id}-{self.seq}"


@dataclass(frozen=True)
class BatchRecord:
    """One Message Batch as costgate tracks it; `batch_id` is costgate's, `remote_id` Claude's."""

    batch_id: str
    job: str
    state: BatchState
    created_at: datetime
    request_count: int
    reserved_usd: Decimal = Decimal(0)
    # Each hold's amount is the whole batch's reservation; a unit settles its own share (reserved_usd).
    holds: tuple[Hold, ...] = ()
    remote_id: str | None = None
    submit_started_at: datetime | None = None
    ended_at: datetime | None = None  # Claude's ended_at: the time its results are billed at
    note: str | None = None  # why it was aborted
