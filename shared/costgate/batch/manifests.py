"""Manifests and job status: what a job's documents came to, written to `results/<job>/_manifest.json`
by the scheduler whenever the job changed (the MANIFEST queue), and read by `costgate batch status`."""

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from costgate.batch.input import MANIFEST_NAME, RESULTS
from costgate.batch.model import Document, DocumentStatus, UsageTotals
from costgate.batch.outputs import JSON_CONTENT_TYPE
from costgate.batch.ports import JobDocuments, ManifestQueue, ObjectStore
from costgate.batch.tick import Tick
from costgate.clock import Clock
from costgate.money import format_usd


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


class ManifestWriter:
    """The scheduler's last step: rewrite the manifests of jobs that changed, oldest change first."""

    def __init__(self, store: ManifestQueue, objects: ObjectStore, clock: Clock, work_dir: Path, tick: Tick) -> None:
        self.store = store
        self.objects = objects
        self.clock = clock
        self.work_dir = work_dir
        self.tick = tick
        self.report = tick.report

    def write_manifests(self) -> None:
        for job, changes in self.store.jobs_to_manifest(50):
            if not self.tick.time_left():
                return
            path = self.work_dir / f"{job}.manifest.json"
            write_manifest(path, job, self.store.job_documents(job), self.clock.now())
            self.objects.put_file(f"{RESULTS}{job}/{MANIFEST_NAME}", path, JSON_CONTENT_TYPE)
            path.unlink()
            self.store.manifest_written(job, changes)
            self.report.manifests_written += 1


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


def job_status(store: JobDocuments, job: str) -> JobStatus:
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
