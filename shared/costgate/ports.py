"""Ports: the small interfaces domain services use to reach the outside world.

Production adapters live in `costgate.dal`; unit tests use in-memory fakes.
"""

from collections.abc import Iterator, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from costgate.answer_cache import SemanticCandidate, SemanticEntry, StoredAnswer
    from costgate.batch_api import RemoteBatch
    from costgate.batch_model import BatchRecord, BatchState, Document, DocumentStatus, Unit, UnitState, UsageTotals
    from costgate.budgets import Budget, BudgetPeriod, Hold
    from costgate.features import FeatureConfig
    from costgate.keys import GatewayKey
    from costgate.ledger import LedgerEntry, RejectionCount, Rollup
    from costgate.prompt_cache import GapHistogram, PrefixStats
    from costgate.upstream import UpstreamResponse


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware."""
        ...


class LedgerStore(Protocol):
    def record(self, entry: "LedgerEntry", holds: "Sequence[Hold]" = ()) -> bool:
        """Store the entry, add it to its daily rollup and settle its budget holds, atomically.

        An entry with `prompt_cache` also adds that use to its prefix's totals and, when it carries a
        gap, one count to its feature's gap histogram, in the same transaction.

        Settling turns each hold into the entry's exact cost. Returns False, changing nothing (the
        holds stay held: the caller releases them), when the request id is already stored.
        """
        ...

    def rollups(self, first: date, last: date) -> Iterator["Rollup"]:
        """Every rollup for the UTC days first..last, both included."""
        ...

    def count_rejection(self, at: datetime, tenant: str, feature: str) -> None:
        """Add one budget rejection to the counter of the UTC day of `at` × tenant × feature.

        One atomic increment, outside any transaction: concurrent rejections all count.
        """
        ...

    def rejections(self, first: date, last: date) -> Iterator["RejectionCount"]:
        """Every rejection counter for the UTC days first..last, both included, day by day."""
        ...


class KeyStore(Protocol):
    """Gateway keys by the sha256 of the whole key; the store never sees the key itself."""

    def create(self, key: "GatewayKey", key_hash: str) -> None:
        """Store the key under its hash, atomically with whatever lists it by key_id.

        Raises InvalidRequestError, storing nothing, when that hash or that key_id already exists.
        """
        ...

    def find(self, key_hash: str) -> "GatewayKey | None":
        """The key stored under this hash, revoked or not (strongly consistent); None if there is none."""
        ...

    def list_keys(self) -> list["GatewayKey"]:
        """Every key, revoked ones included, in no particular order."""
        ...

    def revoke(self, key_id: str, at: datetime) -> "GatewayKey | None":
        """Mark the key revoked at `at` and return it as stored; None if no key has this key_id.

        Revoking a revoked key changes nothing and returns it with its first revocation time.
        """
        ...


class Upstream(Protocol):
    def post(self, path: str, body: bytes, headers: Mapping[str, str], deadline: float) -> "UpstreamResponse":
        """POST `body` (bytes, forwarded untouched) to the Claude API at `path` (e.g. "/v1/messages?beta=true").

        Of `headers` (the client's; names in any case) only `anthropic-version` and `anthropic-beta` are
        forwarded; costgate's own Claude key authenticates. Retryable failures are retried with backoff;
        `deadline` is a `time.monotonic()` instant after which no attempt may start. Returns the last
        HTTP response as received, error statuses included; raises `UpstreamUnavailableError` when no
        attempt got an HTTP response.
        """
        ...


class BudgetStore(Protocol):
    """Budget definitions and, per budget window, a counter of what is committed (spent + held)."""

    def definitions(self, tenant: str, feature: str) -> list["Budget"]:
        """The tenant's budgets and this feature's (key budgets come from the key). May be up to 30 s stale."""
        ...

    def put_definition(self, budget: "Budget") -> None:
        """Create or replace a tenant or feature budget (InvalidRequestError for a key budget)."""
        ...

    def delete_definition(self, scope: str, period: "BudgetPeriod") -> bool:
        """Delete a tenant or feature budget; False, changing nothing, if there is none."""
        ...

    def list_definitions(self) -> list["Budget"]:
        """Every tenant and feature budget, by tenant, then scope, then period."""
        ...

    def reserve(self, holds: Sequence["Hold"]) -> None:
        """Add every hold to its window's committed amount, all or none, atomically.

        A hold fits when committed + amount <= the budget's limit at the moment it is written, so
        concurrent reservations never take a window past its limit. Raises BudgetExceededError,
        holding nothing anywhere, naming the first budget that did not fit and what it has left.
        """
        ...

    def release(self, holds: Sequence["Hold"]) -> None:
        """Give back every hold's amount: the request never reached Claude or was a duplicate."""
        ...

    def remaining(self, holds: Sequence["Hold"]) -> Decimal | None:
        """The least limit − committed (never below 0) among the holds' windows; None for no holds."""
        ...


class FeatureStore(Protocol):
    """Per-feature configuration (routing and prompt caching)."""

    def get(self, feature: str) -> "FeatureConfig | None":
        """The feature's stored configuration; None if it has none. May be up to 30 s stale."""
        ...

    def put(self, config: "FeatureConfig") -> None:
        """Create or replace the feature's configuration."""
        ...

    def delete(self, feature: str) -> bool:
        """Delete the feature's configuration; False, changing nothing, if there is none."""
        ...

    def list_configs(self) -> list["FeatureConfig"]:
        """Every stored configuration, by feature name."""
        ...


class PromptCacheStore(Protocol):
    """What the prompt-cache policy has observed: per prefix, and the gap histogram per feature.

    Written only through `LedgerStore.record` (with the request's ledger row); read here.
    """

    def last_seen(self, feature: str, prefix_key: str) -> "datetime | None":
        """When this feature last sent this prefix (any request recorded with it); None if never."""
        ...

    def gap_histogram(self, feature: str) -> "GapHistogram":
        """The feature's observed gaps between requests with the same prefix. May be up to 60 s stale."""
        ...

    def prefixes(self, feature: str | None = None) -> list["PrefixStats"]:
        """Every tracked prefix (of one feature, or all), by feature, then net saving, lowest first."""
        ...


class AnswerCacheStore(Protocol):
    """Stored answers: exact entries by key, semantic entries by scope and LSH bucket.

    Every read ignores entries whose `expires_at` has passed (DynamoDB's TTL deletes them later).
    """

    def get_exact(self, key: str, now: datetime) -> "StoredAnswer | None": ...

    def put_exact(self, key: str, tenant: str, feature: str, answer: "StoredAnswer") -> None:
        """Store (or replace) the answer under the key, indexed for `purge` by tenant and feature."""
        ...

    def semantic_candidates(self, scope: str, bucket_keys: Sequence[str], now: datetime) -> list["SemanticCandidate"]:
        """Every live entry of the scope in any of the buckets, each once: one Query per bucket."""
        ...

    def get_semantic(self, scope: str, entry_id: str, now: datetime) -> "StoredAnswer | None": ...

    def put_semantic(self, entry: "SemanticEntry") -> None:
        """Store the entry (its answer once, its vector and question in every bucket), indexed for `purge`."""
        ...

    def purge(self, tenant: str, feature: str | None = None) -> int:
        """Delete every entry of the tenant (or of one feature of it), exact and semantic; the count deleted."""
        ...


class BatchStore(Protocol):
    """Jobs, documents, units and batches (see `costgate.batch_model` for the states).

    Every method is one conditional write (or one transaction) unless it says otherwise, so a crash
    between two calls leaves each record in a state the scheduler resumes from. Queue reads
    (`pending_units`, `open_batches`, `documents_to_check`, `jobs_to_manifest`) may be a little stale
    and may list a record that has just moved on: the conditional write that follows decides.
    """

    # --- ingest -------------------------------------------------------------------------------------
    def document(self, job: str, doc_id: str) -> "Document | None":
        """The document, read strongly consistently; None if it is not registered."""
        ...

    def put_units(self, units: "Sequence[Unit]") -> None:
        """Create each (PENDING, queued) unit unless it exists (then it is left alone, attempts and all)."""
        ...

    def register_document(self, document: "Document") -> bool:
        """Store the document unless it exists (False); either way marks its job's manifest dirty."""
        ...

    # --- packing ------------------------------------------------------------------------------------
    def pending_units(self, limit: int) -> "list[Unit]":
        """Up to `limit` queued units, oldest `queued_at` first, across every job."""
        ...

    def documents(self, job: str, doc_ids: "Sequence[str]") -> "dict[str, Document]":
        """The job's documents among doc_ids (missing ones left out), by doc_id."""
        ...

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

    def set_batch_state(self, batch: "BatchRecord", new_state: "BatchState", **changes: Any) -> "BatchRecord":
        """batch.state -> new_state with `changes` (remote_id, submit_started_at, ended_at, note).

        Moving to SUBMITTED with a remote_id also records that id (see batch_for_remote). Moving to
        COLLECTED takes the batch off the open list. ConflictError if the stored state is not batch.state.
        """
        ...

    def abort_batch(self, batch: "BatchRecord", note: str) -> None:
        """batch.state -> ABORTED, off the open list, releasing its holds (if any) in the same transaction.

        ConflictError if the stored state is not batch.state.
        """
        ...

    def batch_for_remote(self, remote_id: str) -> "BatchRecord | None":
        """The batch that Claude's batch `remote_id` was recorded for, if any."""
        ...

    def open_batches(self) -> "list[BatchRecord]":
        """Every batch in an OPEN_BATCH_STATES state, oldest first."""
        ...

    def packed_units(self, batch: "BatchRecord") -> "Iterator[Unit]":
        """Every unit PACKED in this batch (a scan of its job's units: for recovery, not the hot path)."""
        ...

    def unpack_unit(self, unit: "Unit", batch_id: str) -> bool:
        """PACKED in batch_id -> PENDING (queued again, reservation cleared); False if not so packed."""
        ...

    # --- collecting ---------------------------------------------------------------------------------
    def units(self, job: str, custom_ids: "Sequence[str]") -> "dict[str, Unit]":
        """The job's units among custom_ids (`<doc_id>-<seq>`), read strongly consistently, by custom_id."""
        ...

    def fail_pending_unit(self, unit: "Unit", error: str) -> bool:
        """PENDING -> FAILED with `error`, off the queue, its document flagged for a check, in one
        transaction (its input is gone, so it can never be sent); False if it is not PENDING."""
        ...

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

    # --- finishing documents ------------------------------------------------------------------------
    def documents_to_check(self, limit: int) -> "list[Document]":
        """Up to `limit` documents flagged by finish_unit."""
        ...

    def units_of(self, document: "Document") -> "list[Unit]":
        """Every unit of the document, by seq, read strongly consistently."""
        ...

    def add_unit(self, unit: "Unit") -> bool:
        """Create a (PENDING, queued) unit; False, changing nothing, if it exists."""
        ...

    def clear_check(self, document: "Document") -> None:
        """Take the document off the check list (it is still waiting for units)."""
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

    # --- manifests ----------------------------------------------------------------------------------
    def jobs_to_manifest(self, limit: int) -> "list[tuple[str, int]]":
        """Jobs whose manifest is dirty, each with its change count."""
        ...

    def job_documents(self, job: str) -> "Iterator[Document]":
        """Every document of the job, page by page (never all in memory at once)."""
        ...

    def manifest_written(self, job: str, changes: int) -> None:
        """Mark the manifest clean, unless the job changed again since `changes` was read."""
        ...


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


class ClaudeBatches(Protocol):
    """The Message Batches API (the real one, or the local simulator)."""

    def create(self, body_path: Path) -> "RemoteBatch":
        """POST the file's bytes (`{"requests": [...]}`) as a new batch, never retried blindly.

        Raises BatchRejectedError when Claude answered that it did not create it (4xx, 429, 529) and
        BatchSubmitUncertainError when no answer came (timeout, connection lost, other 5xx): it may exist.
        """
        ...

    def retrieve(self, remote_id: str) -> "RemoteBatch": ...

    def created_since(self, since: datetime) -> "Iterator[RemoteBatch]":
        """The workspace's batches created at or after `since`, newest first."""
        ...

    def results(self, remote_id: str) -> "Iterator[Mapping[str, Any]]":
        """An ended batch's result lines (`{"custom_id", "result": {...}}`), streamed, in Claude's order."""
        ...
