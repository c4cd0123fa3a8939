"""Submitting: the oldest pending units, packed into one batch per job and billing owner, sent to Claude.

Each batch goes PACKING (created) -> its units PACKED -> RESERVED (its worst case held against the
owner's budgets, in the same transaction) -> SUBMITTING -> SUBMITTED with Claude's id. A unit taken by
another tick, a budget with no room or a create call Claude refuses aborts the batch (its units back on
the queue); a create call that gets no answer leaves it SUBMITTING for the next tick's recovery. Units
that do not fit the budgets' room are left queued and counted as waiting.
"""

import json
import secrets
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from costgate.accounting.budgets import Budget, Hold, estimate_worst_case
from costgate.accounting.ports import BudgetStore
from costgate.batch.model import BatchRecord, BatchState, Document, DocumentStatus, Unit
from costgate.batch.ports import BatchAborts, BatchLaunch, PendingQueue
from costgate.batch.recovery import abort
from costgate.batch.requests import RequestBuilder
from costgate.batch.tick import MAX_BATCH_BYTES, MAX_BATCH_REQUESTS, PARALLEL, Tick, windows
from costgate.claude.ports import ClaudeBatches
from costgate.clock import Clock
from costgate.errors import BatchRejectedError, BatchSubmitUncertainError, BudgetExceededError, CostgateError
from costgate.observability import MetricName, emit_count, logger


@dataclass(frozen=True)
class _Planned:
    unit: Unit
    offset: int  # of its {"custom_id", "params"} line in the plan's lines file
    length: int
    worst_usd: Decimal


class Submitter:
    def __init__(
        self,
        *,
        queue: PendingQueue,
        launch: BatchLaunch,
        aborts: BatchAborts,
        builder: RequestBuilder,
        budgets: BudgetStore,
        claude: ClaudeBatches,
        clock: Clock,
        work_dir: Path,
        tick: Tick,
    ) -> None:
        self.queue = queue
        self.launch = launch
        self.aborts = aborts
        self.builder = builder
        self.budgets = budgets
        self.claude = claude
        self.clock = clock
        self.work_dir = work_dir
        self.tick = tick
        self.report = tick.report
        self.waiting: set[str] = set()  # custom ids left for lack of budget room, counted once per tick

    def submit(self) -> None:
        for _ in range(50):  # rounds; each submits at least one batch or stops
            pending = self.queue.pending_units(MAX_BATCH_REQUESTS)
            if not pending:
                return
            jobs: dict[str, list[Unit]] = {}
            for unit in pending:
                jobs.setdefault(unit.job, []).append(unit)
            progressed = False
            for job, units in jobs.items():
                documents = self.queue.documents(job, sorted({unit.doc_id for unit in units}))
                # One batch per job and billing owner: each holds against its own tenant's and feature's
                # budgets, so an owner out of budget does not hold up the others.
                owners: dict[tuple[str, str], list[Unit]] = {}
                for unit in units:
                    document = documents.get(unit.doc_id)
                    if document is not None and document.status is DocumentStatus.PENDING:
                        owners.setdefault((document.tenant, document.feature), []).append(unit)
                for (tenant, feature), ready in owners.items():
                    if not self.tick.time_left():
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
        now = self.clock.now()
        budgets = _strictest(self.budgets.definitions(tenant, feature))
        room = (
            self.budgets.remaining([Hold(budget, budget.window(now), Decimal(0)) for budget in budgets])
            if budgets
            else None
        )
        if room is not None and room <= 0:
            self.waiting.update(unit.custom_id for unit in ready)  # not even read until there is room
            return False
        lines_path = self.work_dir / f"plan-{secrets.token_hex(6)}.jsonl"
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
        self.launch.create_batch(batch)
        with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
            packed = list(pool.map(lambda p: self.launch.pack_unit(p.unit, batch.batch_id, p.worst_usd), planned))
        if not all(packed):
            # A stale queue listed a unit another tick already took: start over with a fresh list.
            abort(self.aborts, batch, "a unit was no longer pending")
            return False
        total = sum((p.worst_usd for p in planned), Decimal(0))
        holds = tuple(Hold(budget, budget.window(now), total) for budget in budgets)
        try:
            batch = self.launch.reserve_batch(replace(batch, reserved_usd=total), holds)
        except BudgetExceededError as refused:
            # Room went to the gateway's own requests between the look and the hold: try again next tick.
            abort(self.aborts, batch, refused.message)
            self.waiting.update(p.unit.custom_id for p in planned)
            return False
        body = self._write_body(batch, planned, lines_path)
        batch = self.launch.set_batch_state(batch, BatchState.SUBMITTING, submit_started_at=self.clock.now())
        try:
            remote = self.claude.create(body)
        except BatchRejectedError as error:
            abort(self.aborts, batch, error.message)
            self.report.errors.append(f"job {job}: {error.message}")
            return False
        finally:
            body.unlink(missing_ok=True)
        self.launch.set_batch_state(batch, BatchState.SUBMITTED, remote_id=remote.id)
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
            for window in windows(_by_document(units), PARALLEL * 4):
                for document, requests in pool.map(
                    lambda group: self.builder.build(documents[group[0]], group[1]), window
                ):
                    if requests is None:
                        self.builder.input_gone(document)
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

    def _write_body(self, batch: BatchRecord, planned: Sequence[_Planned], lines_path: Path) -> Path:
        path = self.work_dir / f"{batch.batch_id}.json"
        with path.open("wb") as out, lines_path.open("rb") as lines:
            out.write(b'{"requests":[')
            for index, entry in enumerate(planned):
                if index:
                    out.write(b",")
                lines.seek(entry.offset)
                out.write(lines.read(entry.length))
            out.write(b"]}")
        return path


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
