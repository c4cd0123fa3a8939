"""Finishing documents: once every unit of a flagged document is finished, its result or error file.

A finished unit flags its document (the CHECK queue). A check finds either units still to wait for
(the flag is cleared; the next finished unit sets it again), a split text whose parts are all DONE
(its COMBINE unit is added, and goes round the batch loop), or a finished document: a text's summary,
a .jsonl's results file (every line's result, in the file's order), or an error file naming the
requests that failed. The document is then DONE or FAILED and its job's manifest dirty.
"""

import json
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from costgate.batch.input import parse_object_key, request_line
from costgate.batch.model import Document, DocumentKind, DocumentStatus, Unit, UnitKind, UnitState, UsageTotals
from costgate.batch.outputs import write_error
from costgate.batch.ports import DocumentChecks, ObjectStore
from costgate.batch.tick import MAX_BATCH_BYTES, MAX_SUBMISSIONS, PARALLEL, Tick, windows
from costgate.clock import Clock
from costgate.errors import CostgateError
from costgate.money import format_usd
from costgate.observability import logger


class DocumentFinisher:
    def __init__(self, store: DocumentChecks, objects: ObjectStore, clock: Clock, work_dir: Path, tick: Tick) -> None:
        self.store = store
        self.objects = objects
        self.clock = clock
        self.work_dir = work_dir
        self.tick = tick
        self.report = tick.report

    def finish_documents(self) -> None:
        checked: set[str] = set()
        while self.tick.time_left():
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
                    queued_at=self.clock.now(),
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
            finished_at=self.clock.now(),
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
        error_key = parse_object_key(document.key).error_key
        totals = sum((unit.totals for unit in units), UsageTotals())
        write_error(
            self.objects,
            error_key,
            key=document.key,
            version_id=document.version_id,
            reason=reason,
            at=self.clock.now(),
            failed_requests=requests,
            cost_usd=format_usd(totals.cost_usd),
        )
        self._finished(document, units, DocumentStatus.FAILED, result_key=error_key, model=document.model, error=reason)

    def _finish_requests(self, document: Document, units: Sequence[Unit]) -> None:
        """Every line's result, in the file's order, under the line's own custom_id."""
        by_line = {unit.start: unit for unit in units}
        path = self.work_dir / f"{document.doc_id}.results.jsonl"
        failed = 0
        with path.open("w", encoding="utf-8") as out, ThreadPoolExecutor(max_workers=PARALLEL) as pool:
            for window in windows(self._request_lines(document, by_line), 256):
                results = pool.map(self._request_result, [unit for _, unit in window])
                for (custom_id, unit), result in zip(window, results, strict=True):
                    failed += unit.state is not UnitState.DONE
                    out.write(json.dumps({"custom_id": custom_id, "result": result}, ensure_ascii=False) + "\n")
        self.objects.put_file(parse_object_key(document.key).result_key, path, "application/jsonl")
        path.unlink()
        models = sorted({unit.model for unit in units if unit.model})
        error = f"{failed} of {len(units)} requests did not succeed; see their results" if failed else None
        self._finished(
            document,
            units,
            DocumentStatus.DONE,
            result_key=parse_object_key(document.key).result_key,
            model=", ".join(models) or None,
            error=error,
        )

    def _request_lines(self, document: Document, by_line: Mapping[int, Unit]) -> Iterator[tuple[str, Unit]]:
        for index, raw in enumerate(self.objects.lines(document.key, document.version_id)):
            unit = by_line.get(index)
            if unit is not None:
                yield request_line(raw)[0], unit

    def _request_result(self, unit: Unit) -> Any:
        if unit.state is UnitState.DONE and unit.output_key:
            return json.loads(self.objects.read(unit.output_key, max_bytes=MAX_BATCH_BYTES))
        return json.loads(unit.error or '{"type": "errored"}')


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
