"""Batch summarisation: documents dropped into S3, summarised through the Message Batches API.

`register_object` (IngestFunction) turns one uploaded object into a document and its requests;
`run_scheduler` (BatchFunction, on a schedule) moves everything else one step further per tick:
recover half-finished submissions, collect ended batches, finish documents, submit new batches,
rewrite dirty manifests. See `costgate.batch.model` for the states and why a crash loses nothing.
Only one tick runs at a time (BatchFunction's reserved concurrency is 1).
"""

import hashlib
import json
import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any

from costgate.accounting.budgets import Budget, Hold, estimate_worst_case
from costgate.accounting.ledger import LedgerEntry
from costgate.accounting.ports import BudgetStore, LedgerStore
from costgate.accounting.services import record_request
from costgate.batch.input import (
    COMBINE_NOTE,
    DEFAULT_FEATURE,
    INCOMING,
    JOB_CONFIG_NAME,
    MANIFEST_NAME,
    MAX_JOB_CONFIG_BYTES,
    MAX_TEXT_BYTES,
    PART_NOTE,
    RESULTS,
    WORK,
    ObjectPath,
    ObjectRole,
    decode_text,
    parse_job_config,
    parse_object_key,
    request_line,
    text_parts,
    unsupported_reason,
    validate_request_lines,
)
from costgate.batch.model import (
    BatchRecord,
    BatchState,
    Document,
    DocumentKind,
    DocumentStatus,
    JobConfig,
    Unit,
    UnitKind,
    UnitState,
    UsageTotals,
)
from costgate.batch.ports import BatchStore, ObjectStore
from costgate.claude.ports import ClaudeBatches
from costgate.clock import Clock
from costgate.errors import (
    BatchRejectedError,
    BatchSubmitUncertainError,
    BudgetExceededError,
    CostgateError,
    InputRejectedError,
    NotFoundError,
    PricingError,
    RequestTooLargeError,
)
from costgate.money import format_usd
from costgate.observability import MetricName, emit_count, logger
from costgate.pricing.cost import measure_savings, price_usage
from costgate.pricing.usage import normalise_usage

# A request is submitted at most this often; after that an expired or canceled one fails its document.
MAX_SUBMISSIONS = 3
# Requests per batch: the API allows 100,000, but smaller batches end sooner and each tick reads at
# most this many pending requests.
MAX_BATCH_REQUESTS = 10_000
MAX_BATCH_BYTES = 256_000_000  # the API's 256 MB, less the body's own framing
# Claude's list of batches is searched this far around a create call that got no answer.
SUBMIT_SEARCH_BEFORE = timedelta(minutes=5)
SUBMIT_SEARCH_AFTER = timedelta(minutes=15)
CHUNK = 100  # result lines handled together (one BatchGet of their units)
PARALLEL = 16  # concurrent S3 and DynamoDB calls while collecting and packing
TEXT_CONTENT_TYPE = "text/markdown; charset=utf-8"
JSON_CONTENT_TYPE = "application/json"


@dataclass(frozen=True)
class IngestServices:
    store: BatchStore
    objects: ObjectStore
    clock: Clock
    default_tenant: str


@dataclass(frozen=True)
class SchedulerServices:
    store: BatchStore
    objects: ObjectStore
    claude: ClaudeBatches
    ledger: LedgerStore
    budgets: BudgetStore
    clock: Clock
    work_dir: Path  # where request bodies, results and manifests are built before upload (/tmp in Lambda)
    monotonic: Callable[[], float] = time.monotonic


class IngestOutcome(StrEnum):
    REGISTERED = "registered"  # a new pending document
    REJECTED = "rejected"  # invalid input: its error file is written
    DUPLICATE = "duplicate"  # already registered (the same bucket/key/version)
    JOB_CONFIG = "job-config"  # `_job.json`: checked (an error file if invalid), nothing queued
    IGNORED = "ignored"  # not under incoming/<job>/, or a folder marker


@dataclass
class TickReport:
    """What one scheduler tick did (logged, and counted as metrics by the handler)."""

    recovered_batches: int = 0
    collected_results: int = 0
    requeued_requests: int = 0
    failed_requests: int = 0
    finished_documents: int = 0
    failed_documents: int = 0
    submitted_batches: int = 0
    submitted_requests: int = 0
    waiting_for_budget: int = 0
    manifests_written: int = 0
    out_of_time: bool = False  # stopped at the deadline; the next tick goes on
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class JobStatus:
    job: str
    documents: int
    done: int
    failed: int
    pending: int
    cost_usd: Decimal
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int


def document_id(bucket: str, key: str, version_id: str) -> str:
    return hashlib.sha256(f"{bucket}\0{key}\0{version_id}".encode()).hexdigest()[:24]


# --- ingest ------------------------------------------------------------------------------------------


def register_object(
    services: IngestServices, *, bucket: str, key: str, version_id: str | None, size: int
) -> IngestOutcome:
    """Register one uploaded object, idempotently: the same bucket/key/version is one document.

    Invalid input gets its error file at once (and, inside a job, a FAILED document for the manifest).
    A re-delivered event for a registered, unfinished document re-creates any unit a crash left out.
    """
    try:
        path = parse_object_key(key)
    except ValueError:
        return IngestOutcome.IGNORED
    except InputRejectedError as rejected:
        if rejected.error_key is not None:
            _write_error(
                services.objects,
                rejected.error_key,
                key=key,
                version_id=version_id,
                reason=rejected.reason,
                at=services.clock.now(),
            )
        return IngestOutcome.REJECTED
    if path.role is ObjectRole.FOLDER:
        return IngestOutcome.IGNORED
    now = services.clock.now()
    if path.role is ObjectRole.JOB_CONFIG:
        try:
            raw = services.objects.read(key, version_id, max_bytes=MAX_JOB_CONFIG_BYTES)
            parse_job_config(raw, services.default_tenant, now)
        except (InputRejectedError, RequestTooLargeError, NotFoundError) as error:
            reason = error.reason if isinstance(error, InputRejectedError) else error.message
            _write_error(services.objects, path.error_key, key=key, version_id=version_id, reason=reason, at=now)
        return IngestOutcome.JOB_CONFIG

    version = version_id or "null"
    doc_id = document_id(bucket, key, version)
    existing = services.store.document(path.job, doc_id)
    if existing is not None:
        if existing.status is DocumentStatus.PENDING:
            services.store.put_units(_units(existing, _unit_ranges(services.objects, existing)))
        return IngestOutcome.DUPLICATE

    config: JobConfig | None = None
    try:
        if path.role is ObjectRole.UNSUPPORTED:
            raise InputRejectedError(unsupported_reason(path.name))
        config = _job_config(services, path.job, now)
        document = Document(
            job=path.job,
            doc_id=doc_id,
            bucket=bucket,
            key=key,
            version_id=version,
            kind=path.kind,
            status=DocumentStatus.PENDING,
            registered_at=now,
            size=size,
            units=0,
            tenant=config.tenant,
            feature=config.feature,
            model=config.model if path.kind is DocumentKind.TEXT else None,
            instruction=config.instruction if path.kind is DocumentKind.TEXT else None,
            max_tokens=config.max_tokens if path.kind is DocumentKind.TEXT else None,
        )
        ranges = _unit_ranges(services.objects, document)
    except InputRejectedError as rejected:
        return _reject(
            services,
            path,
            bucket=bucket,
            doc_id=doc_id,
            version=version,
            size=size,
            config=config,
            reason=rejected.reason,
            now=now,
        )

    document = replace(document, units=len(ranges))
    if services.store.register_document(document):
        services.store.put_units(_units(document, ranges))
        logger.info("batch: document registered", extra={"job": path.job, "key": key, "units": len(ranges)})
        return IngestOutcome.REGISTERED
    stored = services.store.document(path.job, doc_id)  # a concurrent delivery of the same event won
    if stored is not None and stored.status is DocumentStatus.PENDING:
        services.store.put_units(_units(stored, ranges))
    return IngestOutcome.DUPLICATE


def _job_config(services: IngestServices, job: str, now: datetime) -> JobConfig:
    config_key = f"{INCOMING}{job}/{JOB_CONFIG_NAME}"
    try:
        raw: bytes | None = services.objects.read(config_key, max_bytes=MAX_JOB_CONFIG_BYTES)
    except NotFoundError:
        raw = None
    except RequestTooLargeError:
        raise InputRejectedError(f"{config_key} is invalid: larger than {MAX_JOB_CONFIG_BYTES:,} bytes") from None
    try:
        return parse_job_config(raw, services.default_tenant, now)
    except InputRejectedError as rejected:
        raise InputRejectedError(f"{config_key} is invalid: {rejected.reason}") from None


def _unit_ranges(objects: ObjectStore, document: Document) -> list[tuple[UnitKind, int, int]]:
    """The document's units as (kind, start, end): character ranges of a text, line numbers of a .jsonl."""
    try:
        if document.kind is DocumentKind.REQUESTS:
            lines = validate_request_lines(
                objects.lines(document.key, document.version_id), document.name, document.registered_at
            )
            return [(UnitKind.REQUEST, line, line + 1) for line in lines]
        raw = objects.read(document.key, document.version_id, max_bytes=MAX_TEXT_BYTES)
    except RequestTooLargeError:
        raise InputRejectedError(
            f"{document.name} is larger than {MAX_TEXT_BYTES:,} bytes, the limit of a text document"
        ) from None
    except NotFoundError:
        raise InputRejectedError(f"{document.name} was deleted before it could be read") from None
    parts = text_parts(decode_text(raw, document.name), document.name)
    if len(parts) == 1:
        return [(UnitKind.WHOLE, *parts[0])]
    return [(UnitKind.PART, start, end) for start, end in parts]


def _units(document: Document, ranges: Sequence[tuple[UnitKind, int, int]]) -> list[Unit]:
    return [
        Unit(
            job=document.job,
            doc_id=document.doc_id,
            seq=seq,
            kind=kind,
            state=UnitState.PENDING,
            start=start,
            end=end,
            queued_at=document.registered_at,
        )
        for seq, (kind, start, end) in enumerate(ranges)
    ]


def _reject(
    services: IngestServices,
    path: ObjectPath,
    *,
    bucket: str,
    doc_id: str,
    version: str,
    size: int,
    config: JobConfig | None,
    reason: str,
    now: datetime,
) -> IngestOutcome:
    error_key = path.error_key
    _write_error(services.objects, error_key, key=path.key, version_id=version, reason=reason, at=now)
    document = Document(
        job=path.job,
        doc_id=doc_id,
        bucket=bucket,
        key=path.key,
        version_id=version,
        kind=path.kind,
        status=DocumentStatus.FAILED,
        registered_at=now,
        size=size,
        units=0,
        tenant=config.tenant if config else services.default_tenant,
        feature=config.feature if config else DEFAULT_FEATURE,
        result_key=error_key,
        error=reason,
        finished_at=now,
    )
    services.store.register_document(document)
    emit_count(MetricName.BATCH_DOCUMENTS_FAILED)
    logger.info("batch: input rejected", extra={"key": path.key, "reason": reason})
    return IngestOutcome.REJECTED


def _write_error(
    objects: ObjectStore, error_key: str, *, key: str, version_id: str | None, reason: str, at: datetime, **extra: Any
) -> None:
    body = {"key": key, "version_id": version_id, "error": reason, "at": at.isoformat(), **extra}
    objects.put(error_key, json.dumps(body, ensure_ascii=False, indent=2).encode(), JSON_CONTENT_TYPE)


# --- the scheduler -----------------------------------------------------------------------------------


def run_scheduler(services: SchedulerServices, deadline: float) -> TickReport:
    """One tick: everything the stored state says is due, until done or `deadline` (a monotonic instant)."""
    tick = _Tick(services, deadline)
    tick.run()
    return tick.report


@dataclass(frozen=True)
class _Planned:
    unit: Unit
    offset: int  # of its {"custom_id", "params"} line in the plan's lines file
    length: int
    worst_usd: Decimal


class _Tick:
    def __init__(self, services: SchedulerServices, deadline: float) -> None:
        self.s = services
        self.store = services.store
        self.deadline = deadline
        self.report = TickReport()
        self.waiting: set[str] = set()  # custom ids left for lack of budget room, counted once per tick

    def time_left(self) -> bool:
        if self.s.monotonic() < self.deadline:
            return True
        self.report.out_of_time = True
        return False

    def run(self) -> None:
        for batch in self.store.open_batches():
            if not self.time_left():
                return
            try:
                self._advance(batch)
            except CostgateError as error:
                # One batch Claude cannot serve now (down, or deleted by hand) must not stop the others.
                self.report.errors.append(f"batch {batch.batch_id}: {error.message}")
                logger.warning("batch: could not advance", extra={"batch_id": batch.batch_id, "error": error.message})
        if self.time_left():
            self._finish_documents()
        if self.time_left():
            self._submit()
        self.report.waiting_for_budget = len(self.waiting)
        if self.waiting:
            logger.info("batch: waiting for budget", extra={"requests": len(self.waiting)})
        if self.time_left():
            self._write_manifests()

    # --- open batches ---------------------------------------------------------------------------------

    def _advance(self, batch: BatchRecord) -> None:
        if batch.state in (BatchState.PACKING, BatchState.RESERVED):
            self._abort(batch, "the scheduler stopped before submitting it")
            self.report.recovered_batches += 1
        elif batch.state is BatchState.SUBMITTING:
            self._recover_submission(batch)
        elif batch.state is BatchState.SUBMITTED and batch.remote_id is not None:
            remote = self.s.claude.retrieve(batch.remote_id)
            if remote.ended and remote.ended_at is not None:
                self._collect(batch, remote.id, remote.ended_at)

    def _abort(self, batch: BatchRecord, note: str) -> None:
        """Units back to the queue first, then the batch: a crash in between leaves it open, so it is redone."""
        for unit in self.store.packed_units(batch):
            self.store.unpack_unit(unit, batch.batch_id)
        self.store.abort_batch(batch, note)

    def _recover_submission(self, batch: BatchRecord) -> None:
        """A create call that got no answer: adopt the batch Claude made of it, or put its units back."""
        started = batch.submit_started_at or batch.created_at
        candidates = [
            remote
            for remote in self.s.claude.created_since(started - SUBMIT_SEARCH_BEFORE)
            if remote.created_at <= started + SUBMIT_SEARCH_AFTER
            and remote.total == batch.request_count
            and self.store.batch_for_remote(remote.id) is None
        ]
        if len(candidates) > 1:
            # Several unknown batches of the same size: only their results tell which is ours.
            candidates = [remote for remote in candidates if remote.ended and self._holds_our_units(batch, remote.id)]
            if not candidates:
                self.report.errors.append(f"batch {batch.batch_id}: submission still ambiguous")
                return
        if candidates:
            self.store.set_batch_state(batch, BatchState.SUBMITTED, remote_id=candidates[0].id)
            logger.info("batch: adopted after an unanswered create", extra={"batch_id": batch.batch_id})
        else:
            self._abort(batch, "its create call got no answer and Claude has no such batch")
        self.report.recovered_batches += 1

    def _holds_our_units(self, batch: BatchRecord, remote_id: str) -> bool:
        first = next(iter(self.s.claude.results(remote_id)), None)
        if first is None:
            return False
        unit = self.store.units(batch.job, [str(first["custom_id"])]).get(str(first["custom_id"]))
        return unit is not None and unit.batch_id == batch.batch_id

    # --- collecting -------------------------------------------------------------------------------------

    def _collect(self, batch: BatchRecord, remote_id: str, ended_at: datetime) -> None:
        seen = 0
        chunk: list[Mapping[str, Any]] = []
        for line in self.s.claude.results(remote_id):
            chunk.append(line)
            if len(chunk) == CHUNK:
                seen += self._collect_chunk(batch, remote_id, ended_at, chunk)
                chunk = []
                if not self.time_left():
                    return
        seen += self._collect_chunk(batch, remote_id, ended_at, chunk)
        if seen < batch.request_count:
            # Resumed after a deadline (requeued units are no longer in this batch), an adopted batch
            # that was not ours, or Claude left a request out: whatever is still packed here is
            # treated as a request that never ran.
            for unit in self.store.packed_units(batch):
                self._retry_or_fail(batch, unit, {"type": "expired"})
        self.store.set_batch_state(batch, BatchState.COLLECTED, ended_at=ended_at)
        logger.info("batch: collected", extra={"batch_id": batch.batch_id, "remote_id": remote_id})

    def _collect_chunk(
        self, batch: BatchRecord, remote_id: str, ended_at: datetime, lines: Sequence[Mapping[str, Any]]
    ) -> int:
        if not lines:
            return 0
        units = self.store.units(batch.job, [str(line["custom_id"]) for line in lines])
        documents = self.store.documents(batch.job, sorted({unit.doc_id for unit in units.values()}))

        def handle(line: Mapping[str, Any]) -> None:
            unit = units.get(str(line["custom_id"]))
            if unit is None or unit.state is not UnitState.PACKED or unit.batch_id != batch.batch_id:
                return  # handled before a crash or a deadline, or not ours
            result = line["result"]
            kind = result.get("type") if isinstance(result, Mapping) else None
            if kind == "succeeded":
                self._succeeded(
                    batch,
                    remote_id=remote_id,
                    ended_at=ended_at,
                    unit=unit,
                    document=documents[unit.doc_id],
                    result=result,
                )
            elif kind in ("expired", "canceled"):
                self._retry_or_fail(batch, unit, result)
            else:
                self._fail(batch, unit, result if isinstance(result, Mapping) else {"type": "errored"})

        with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
            list(pool.map(handle, lines))
        ours = sum(1 for unit in units.values() if unit.batch_id == batch.batch_id)
        self.report.collected_results += ours
        return ours

    def _succeeded(
        self,
        batch: BatchRecord,
        *,
        remote_id: str,
        ended_at: datetime,
        unit: Unit,
        document: Document,
        result: Mapping[str, Any],
    ) -> None:
        message = result["message"]
        model = str(message.get("model"))
        try:
            usage = normalise_usage(message.get("usage"))
            cost = price_usage(model, usage, ended_at)
            savings = measure_savings(model, usage, cost, ended_at)
        except PricingError as error:
            # Claude billed it, but costgate cannot price it (a model missing from the price data).
            emit_count(MetricName.UNPRICED_RESPONSES)
            self._fail(
                batch, unit, {"type": "errored", "error": {"type": "costgate_pricing_error", "message": error.message}}
            )
            return
        output_key, body, content_type = self._output(document, unit, result)
        self.s.objects.put(output_key, body, content_type)
        entry = LedgerEntry(
            request_id=f"batch/{remote_id}/{unit.custom_id}",
            at=ended_at,
            tenant=document.tenant,
            feature=document.feature,
            usage=usage,
            cost=cost,
            baseline_cost_usd=savings.baseline_usd,
            savings=savings.by_strategy,
            requested_model=model,
        )
        # A duplicate (collected before a crash) settled its holds the first time: nothing to release.
        record_request(self.s.ledger, entry, _unit_holds(batch, unit))
        self.store.finish_unit(
            unit,
            batch,
            UnitState.DONE,
            totals=UsageTotals.of(usage, cost.total_usd),
            model=model,
            output_key=output_key,
        )

    def _output(self, document: Document, unit: Unit, result: Mapping[str, Any]) -> tuple[str, bytes, str]:
        if unit.kind is UnitKind.REQUEST:
            key = f"{WORK}{document.job}/{document.doc_id}/{unit.seq}.json"
            return key, json.dumps(result, ensure_ascii=False).encode(), JSON_CONTENT_TYPE
        text = _message_text(result["message"]).encode()
        if unit.kind is UnitKind.PART:
            return f"{WORK}{document.job}/{document.doc_id}/{unit.seq}.md", text, TEXT_CONTENT_TYPE
        return _path(document).result_key, text, TEXT_CONTENT_TYPE

    def _fail(self, batch: BatchRecord, unit: Unit, result: Mapping[str, Any]) -> None:
        error = json.dumps(result, ensure_ascii=False)
        if self.store.finish_unit(unit, batch, UnitState.FAILED, release=_unit_holds(batch, unit), error=error):
            self.report.failed_requests += 1

    def _retry_or_fail(self, batch: BatchRecord, unit: Unit, result: Mapping[str, Any]) -> None:
        if unit.attempts + 1 >= MAX_SUBMISSIONS:
            self._fail(batch, unit, {**result, "submissions": unit.attempts + 1})
            return
        requeued = self.store.finish_unit(
            unit, batch, UnitState.PENDING, release=_unit_holds(batch, unit), queued_at=self.s.clock.now()
        )
        if requeued:
            self.report.requeued_requests += 1

    # --- finishing documents --------------------------------------------------------------------------

    def _finish_documents(self) -> None:
        checked: set[str] = set()
        while self.time_left():
            fresh = [doc for doc in self.store.documents_to_check(100) if doc.doc_id not in checked]
            if not fresh:
                return  # a stale index may list a document just cleared: it was checked this tick
            checked.update(document.doc_id for document in fresh)
            with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
                list(pool.map(self._check_safely, fresh))

    def _check_safely(self, document: Document) -> None:
        try:
            self._check(document)
        except CostgateError as error:
            # Left flagged: the next tick tries again; the other documents go on.
            self.report.errors.append(f"document {document.key}: {error.message}")
            logger.warning("batch: could not finish a document", extra={"key": document.key, "error": error.message})

    def _check(self, document: Document) -> None:
        if document.status is not DocumentStatus.PENDING:
            self.store.clear_check(document)
            return
        units = self.store.units_of(document)
        registered = [unit for unit in units if unit.kind is not UnitKind.COMBINE]
        if len(registered) < document.units or any(
            unit.state in (UnitState.PENDING, UnitState.PACKED) for unit in units
        ):
            self.store.clear_check(document)
            return
        if document.kind is DocumentKind.REQUESTS:
            self._finish_requests(document, units)
            return
        failed = [unit for unit in units if unit.state is UnitState.FAILED]
        if failed:
            self._finish_failed(document, units, failed)
            return
        combine = next((unit for unit in units if unit.kind is UnitKind.COMBINE), None)
        if len(registered) > 1 and combine is None:
            self.store.add_unit(
                Unit(
                    job=document.job,
                    doc_id=document.doc_id,
                    seq=document.units,
                    kind=UnitKind.COMBINE,
                    state=UnitState.PENDING,
                    start=0,
                    end=0,
                    queued_at=self.s.clock.now(),
                )
            )
            self.store.clear_check(document)
            return
        last = combine or registered[0]
        self._finished(document, units, DocumentStatus.DONE, result_key=str(last.output_key), model=last.model)

    def _finished(
        self,
        document: Document,
        units: Sequence[Unit],
        status: DocumentStatus,
        *,
        result_key: str,
        model: str | None,
        error: str | None = None,
    ) -> None:
        totals = sum((unit.totals for unit in units), UsageTotals())
        finished = self.store.finish_document(
            document,
            status,
            result_key=result_key,
            totals=totals,
            finished_at=self.s.clock.now(),
            model=model,
            error=error,
        )
        if finished and status is DocumentStatus.DONE:
            self.report.finished_documents += 1
        elif finished:
            self.report.failed_documents += 1

    def _finish_failed(self, document: Document, units: Sequence[Unit], failed: Sequence[Unit]) -> None:
        requests = [
            {"request": unit.seq, "kind": unit.kind.value, "result": json.loads(unit.error or "{}")} for unit in failed
        ]
        reason = "; ".join(_describe_failure(unit) for unit in failed)
        error_key = _path(document).error_key
        totals = sum((unit.totals for unit in units), UsageTotals())
        _write_error(
            self.s.objects,
            error_key,
            key=document.key,
            version_id=document.version_id,
            reason=reason,
            at=self.s.clock.now(),
            failed_requests=requests,
            cost_usd=format_usd(totals.cost_usd),
        )
        self._finished(document, units, DocumentStatus.FAILED, result_key=error_key, model=document.model, error=reason)

    def _finish_requests(self, document: Document, units: Sequence[Unit]) -> None:
        """Every line's result, in the file's order, under the line's own custom_id."""
        by_line = {unit.start: unit for unit in units}
        path = self.s.work_dir / f"{document.doc_id}.results.jsonl"
        failed = 0
        with path.open("w", encoding="utf-8") as out, ThreadPoolExecutor(max_workers=PARALLEL) as pool:
            for window in _windows(self._request_lines(document, by_line), 256):
                results = pool.map(self._request_result, [unit for _, unit in window])
                for (custom_id, unit), result in zip(window, results, strict=True):
                    failed += unit.state is not UnitState.DONE
                    out.write(json.dumps({"custom_id": custom_id, "result": result}, ensure_ascii=False) + "\n")
        self.s.objects.put_file(_path(document).result_key, path, "application/jsonl")
        path.unlink()
        models = sorted({unit.model for unit in units if unit.model})
        error = f"{failed} of {len(units)} requests did not succeed; see their results" if failed else None
        self._finished(
            document,
            units,
            DocumentStatus.DONE,
            result_key=_path(document).result_key,
            model=", ".join(models) or None,
            error=error,
        )

    def _request_lines(self, document: Document, by_line: Mapping[int, Unit]) -> Iterator[tuple[str, Unit]]:
        for index, raw in enumerate(self.s.objects.lines(document.key, document.version_id)):
            unit = by_line.get(index)
            if unit is not None:
                yield request_line(raw)[0], unit

    def _request_result(self, unit: Unit) -> Any:
        if unit.state is UnitState.DONE and unit.output_key:
            return json.loads(self.s.objects.read(unit.output_key, max_bytes=MAX_BATCH_BYTES))
        return json.loads(unit.error or '{"type": "errored"}')

    # --- submitting ---------------------------------------------------------------------------------------

    def _submit(self) -> None:
        for _ in range(50):  # rounds; each submits at least one batch or stops
            pending = self.store.pending_units(MAX_BATCH_REQUESTS)
            if not pending:
                return
            jobs: dict[str, list[Unit]] = {}
            for unit in pending:
                jobs.setdefault(unit.job, []).append(unit)
            progressed = False
            for job, units in jobs.items():
                documents = self.store.documents(job, sorted({unit.doc_id for unit in units}))
                # One batch per job and billing owner: each holds against its own tenant's and feature's
                # budgets, so an owner out of budget does not hold up the others.
                owners: dict[tuple[str, str], list[Unit]] = {}
                for unit in units:
                    document = documents.get(unit.doc_id)
                    if document is not None and document.status is DocumentStatus.PENDING:
                        owners.setdefault((document.tenant, document.feature), []).append(unit)
                for (tenant, feature), ready in owners.items():
                    if not self.time_left():
                        return
                    try:
                        progressed |= self._submit_group(job, tenant, feature, ready, documents)
                    except BatchSubmitUncertainError as error:
                        self.report.errors.append(f"job {job}: {error.message}")
                        return  # Claude is not answering: the next tick recovers this batch first
                    except CostgateError as error:
                        self.report.errors.append(f"job {job}: {error.message}")
                        logger.warning("batch: could not submit", extra={"job": job, "error": error.message})
            if not progressed:
                return

    def _submit_group(
        self, job: str, tenant: str, feature: str, ready: Sequence[Unit], documents: Mapping[str, Document]
    ) -> bool:
        now = self.s.clock.now()
        budgets = _strictest(self.s.budgets.definitions(tenant, feature))
        room = (
            self.s.budgets.remaining([Hold(budget, budget.window(now), Decimal(0)) for budget in budgets])
            if budgets
            else None
        )
        if room is not None and room <= 0:
            self.waiting.update(unit.custom_id for unit in ready)  # not even read until there is room
            return False
        lines_path = self.s.work_dir / f"plan-{secrets.token_hex(6)}.jsonl"
        try:
            planned = self._plan(ready, documents, now, lines_path, room)
            planned_ids = {entry.unit.custom_id for entry in planned}
            if room is not None:
                self.waiting.update(unit.custom_id for unit in ready if unit.custom_id not in planned_ids)
            if not planned:
                return False
            return self._send(job, planned, budgets, now, lines_path)
        finally:
            lines_path.unlink(missing_ok=True)

    def _send(
        self, job: str, planned: Sequence["_Planned"], budgets: Sequence[Budget], now: datetime, lines_path: Path
    ) -> bool:
        batch = BatchRecord(
            batch_id=f"{now:%Y%m%dT%H%M%S}-{secrets.token_hex(4)}",
            job=job,
            state=BatchState.PACKING,
            created_at=now,
            request_count=len(planned),
        )
        self.store.create_batch(batch)
        with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
            packed = list(pool.map(lambda p: self.store.pack_unit(p.unit, batch.batch_id, p.worst_usd), planned))
        if not all(packed):
            # A stale queue listed a unit another tick already took: start over with a fresh list.
            self._abort(batch, "a unit was no longer pending")
            return False
        total = sum((p.worst_usd for p in planned), Decimal(0))
        holds = tuple(Hold(budget, budget.window(now), total) for budget in budgets)
        try:
            batch = self.store.reserve_batch(replace(batch, reserved_usd=total), holds)
        except BudgetExceededError as refused:
            # Room went to the gateway's own requests between the look and the hold: try again next tick.
            self._abort(batch, refused.message)
            self.waiting.update(p.unit.custom_id for p in planned)
            return False
        body = self._write_body(batch, planned, lines_path)
        batch = self.store.set_batch_state(batch, BatchState.SUBMITTING, submit_started_at=self.s.clock.now())
        try:
            remote = self.s.claude.create(body)
        except BatchRejectedError as error:
            self._abort(batch, error.message)
            self.report.errors.append(f"job {job}: {error.message}")
            return False
        finally:
            body.unlink(missing_ok=True)
        self.store.set_batch_state(batch, BatchState.SUBMITTED, remote_id=remote.id)
        emit_count(MetricName.BATCH_REQUESTS_SUBMITTED, len(planned))
        logger.info(
            "batch: submitted",
            extra={
                "batch_id": batch.batch_id,
                "remote_id": remote.id,
                "requests": len(planned),
                "reserved_usd": str(total),
            },
        )
        self.report.submitted_batches += 1
        self.report.submitted_requests += len(planned)
        return True

    def _plan(
        self,
        units: Sequence[Unit],
        documents: Mapping[str, Document],
        now: datetime,
        lines_path: Path,
        room: Decimal | None,
    ) -> list["_Planned"]:
        """Each unit's request line (written to `lines_path`, not kept in memory) and worst case, in queue
        order, while they fit one batch's limits and the budgets' `room` (None: no budget applies).
        Documents are read PARALLEL at a time, in order; one whose input is gone fails its units."""
        planned: list[_Planned] = []
        size = 0
        total = Decimal(0)
        with lines_path.open("wb") as out, ThreadPoolExecutor(max_workers=PARALLEL) as pool:
            for window in _windows(_by_document(units), PARALLEL * 4):
                for document, requests in pool.map(lambda group: self._requests(documents[group[0]], group[1]), window):
                    if requests is None:
                        self._input_gone(document)
                        continue
                    for unit, params in requests:
                        line = json.dumps({"custom_id": unit.custom_id, "params": params}, ensure_ascii=False).encode()
                        if len(planned) == MAX_BATCH_REQUESTS or size + len(line) + 1 > MAX_BATCH_BYTES:
                            return planned
                        worst = estimate_worst_case(str(params["model"]), params, now, batch=True)
                        if room is not None and total + worst > room:
                            return planned
                        planned.append(_Planned(unit, out.tell(), len(line), worst))
                        out.write(line)
                        size += len(line) + 1
                        total += worst
        return planned

    def _requests(
        self, document: Document, units: Sequence[Unit]
    ) -> tuple[Document, list[tuple[Unit, Mapping[str, Any]]] | None]:
        """The document and its units' requests; None when its input (or a part summary) is gone."""
        try:
            return document, list(self._params(document, units))
        except NotFoundError:
            return document, None

    def _input_gone(self, document: Document) -> None:
        reason = f"{document.name} (version {document.version_id}) was deleted before it could be summarised"
        error = json.dumps({"type": "errored", "error": {"type": "not_found_error", "message": reason}})
        for unit in self.store.units_of(document):
            if unit.state is UnitState.PENDING:
                self.store.fail_pending_unit(unit, error)

    def _params(self, document: Document, units: Sequence[Unit]) -> Iterator[tuple[Unit, Mapping[str, Any]]]:
        if document.kind is DocumentKind.REQUESTS:
            wanted = {unit.start: unit for unit in units}
            for index, raw in enumerate(self.s.objects.lines(document.key, document.version_id)):
                if index in wanted:
                    yield wanted[index], request_line(raw)[1]
            return
        text: str | None = None
        parts = document.units
        for unit in units:
            if unit.kind is UnitKind.COMBINE:
                yield unit, self._text_params(document, self._combined_parts(document))
                continue
            if text is None:
                raw = self.s.objects.read(document.key, document.version_id, max_bytes=MAX_TEXT_BYTES)
                text = decode_text(raw, document.name)
            content = _document_block(document.name, text[unit.start : unit.end])
            if unit.kind is UnitKind.PART:
                content = PART_NOTE.format(part=unit.seq + 1, parts=parts) + "\n\n" + content
            yield unit, self._text_params(document, content)

    def _combined_parts(self, document: Document) -> str:
        parts = [unit for unit in self.store.units_of(document) if unit.kind is UnitKind.PART]
        summaries = [
            self.s.objects.read(str(unit.output_key), max_bytes=MAX_TEXT_BYTES).decode("utf-8") for unit in parts
        ]
        blocks = "\n\n".join(
            f'<part number="{index + 1}">\n{summary}\n</part>' for index, summary in enumerate(summaries)
        )
        return COMBINE_NOTE.format(parts=len(parts)) + "\n\n" + blocks

    @staticmethod
    def _text_params(document: Document, content: str) -> dict[str, Any]:
        return {
            "model": document.model,
            "max_tokens": document.max_tokens,
            # Every request of the job starts with the same instruction: cached for an hour, it is
            # written once per batch run and read by the rest (when it reaches the model's minimum).
            "system": [
                {"type": "text", "text": document.instruction, "cache_control": {"type": "ephemeral", "ttl": "1h"}}
            ],
            "messages": [{"role": "user", "content": content}],
        }

    def _write_body(self, batch: BatchRecord, planned: Sequence[_Planned], lines_path: Path) -> Path:
        path = self.s.work_dir / f"{batch.batch_id}.json"
        with path.open("wb") as out, lines_path.open("rb") as lines:
            out.write(b'{"requests":[')
            for index, entry in enumerate(planned):
                if index:
                    out.write(b",")
                lines.seek(entry.offset)
                out.write(lines.read(entry.length))
            out.write(b"]}")
        return path

    # --- manifests ----------------------------------------------------------------------------------------

    def _write_manifests(self) -> None:
        for job, changes in self.store.jobs_to_manifest(50):
            if not self.time_left():
                return
            path = self.s.work_dir / f"{job}.manifest.json"
            write_manifest(path, job, self.store.job_documents(job), self.s.clock.now())
            self.s.objects.put_file(f"{RESULTS}{job}/{MANIFEST_NAME}", path, JSON_CONTENT_TYPE)
            path.unlink()
            self.store.manifest_written(job, changes)
            self.report.manifests_written += 1


# --- manifests and status ----------------------------------------------------------------------------


def write_manifest(path: Path, job: str, documents: Iterable[Document], at: datetime) -> None:
    """results/<job>/_manifest.json: every document's status, model, tokens and cost, by file name.

    One file per line (compact JSON), so a 100,000-document manifest stays quick to write and to grep.
    """
    rows: list[tuple[str, str]] = []
    totals = UsageTotals()
    counts = {status.value: 0 for status in DocumentStatus}
    for document in documents:
        counts[document.status.value] += 1
        totals = totals + document.totals
        rows.append((document.name, json.dumps(_manifest_row(document), ensure_ascii=False)))
    rows.sort()
    head = {
        "job": job,
        "generated_at": at.isoformat(),
        "documents": len(rows),
        "status": counts,
        "totals": _totals_json(totals),
    }
    with path.open("w", encoding="utf-8") as out:
        out.write(json.dumps(head, ensure_ascii=False)[:-1] + ',\n"files": [\n')
        out.write(",\n".join(row for _, row in rows))
        out.write("\n]}\n")


def _manifest_row(document: Document) -> dict[str, Any]:
    return {
        "file": document.name,
        "key": document.key,
        "version_id": document.version_id,
        "kind": document.kind.value,
        "status": document.status.value,
        "model": document.model,
        "requests": document.totals.requests,
        **_totals_json(document.totals),
        "result": document.result_key,
        "error": document.error,
        "registered_at": document.registered_at.isoformat(),
        "finished_at": document.finished_at.isoformat() if document.finished_at else None,
    }


def _totals_json(totals: UsageTotals) -> dict[str, Any]:
    return {
        "input_tokens": totals.input_tokens,
        "output_tokens": totals.output_tokens,
        "cache_write_5m_tokens": totals.cache_write_5m_tokens,
        "cache_write_1h_tokens": totals.cache_write_1h_tokens,
        "cache_read_tokens": totals.cache_read_tokens,
        "cost_usd": format_usd(totals.cost_usd),
    }


def job_status(store: BatchStore, job: str) -> JobStatus:
    counts = dict.fromkeys(DocumentStatus, 0)
    totals = UsageTotals()
    for document in store.job_documents(job):
        counts[document.status] += 1
        totals = totals + document.totals
    return JobStatus(
        job=job,
        documents=sum(counts.values()),
        done=counts[DocumentStatus.DONE],
        failed=counts[DocumentStatus.FAILED],
        pending=counts[DocumentStatus.PENDING],
        cost_usd=totals.cost_usd,
        input_tokens=totals.input_tokens,
        output_tokens=totals.output_tokens,
        cache_read_tokens=totals.cache_read_tokens,
        cache_write_tokens=totals.cache_write_5m_tokens + totals.cache_write_1h_tokens,
    )


# --- helpers -----------------------------------------------------------------------------------------------


def _path(document: Document) -> ObjectPath:
    return parse_object_key(document.key)


def _unit_holds(batch: BatchRecord, unit: Unit) -> list[Hold]:
    """The unit's share of the batch's holds: its own worst case, in each budget window."""
    if not unit.reserved_usd:
        return []
    return [Hold(hold.budget, hold.window, unit.reserved_usd) for hold in batch.holds]


def _strictest(budgets: Sequence[Budget]) -> list[Budget]:
    strictest: dict[tuple[str, str], Budget] = {}
    for budget in budgets:
        seen = strictest.get((budget.scope, budget.period))
        if seen is None or budget.limit_usd < seen.limit_usd:
            strictest[(budget.scope, budget.period)] = budget
    return list(strictest.values())


def _by_document(units: Sequence[Unit]) -> Iterator[tuple[str, list[Unit]]]:
    groups: dict[str, list[Unit]] = {}
    for unit in units:
        groups.setdefault(unit.doc_id, []).append(unit)
    yield from groups.items()


def _windows(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    window: list[Any] = []
    for item in items:
        window.append(item)
        if len(window) == size:
            yield window
            window = []
    if window:
        yield window


def _document_block(name: str, text: str) -> str:
    return f'<document name="{name}">\n{text}\n</document>'


def _message_text(message: Mapping[str, Any]) -> str:
    blocks = message.get("content") or []
    return "".join(
        block.get("text", "") for block in blocks if isinstance(block, Mapping) and block.get("type") == "text"
    )


def _describe_failure(unit: Unit) -> str:
    result = json.loads(unit.error or "{}")
    what = (
        f"part {unit.seq + 1}"
        if unit.kind is UnitKind.PART
        else "the combining request"
        if unit.kind is UnitKind.COMBINE
        else "the request"
    )
    kind = result.get("type", "errored")
    if kind == "errored":
        error = (result.get("error") or {}).get("error") or result.get("error") or {}
        return f"{what} errored: {error.get('type', 'error')}: {error.get('message', 'no message')}"
    return f"{what} {kind} {result.get('submissions', MAX_SUBMISSIONS)} times"
