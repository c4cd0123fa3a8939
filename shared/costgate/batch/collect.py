"""Collecting an ended batch: each result line becomes an output in S3, a ledger row and the unit's outcome.

Per result, in this order: the output written, the ledger row recorded (it settles the unit's share of
the batch's budget holds), then the unit finished - DONE, FAILED (its hold released) or PENDING again
(expired or canceled, with submissions left) - in one transaction with its document's `check` flag.
A unit's ledger request id is `batch/<remote batch id>/<custom_id>`, so re-collecting a result after a
crash charges nothing; a unit already finished is skipped.
"""

import json
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from costgate.accounting.budgets import Hold
from costgate.accounting.ledger import LedgerEntry
from costgate.accounting.ports import LedgerStore
from costgate.accounting.services import record_request
from costgate.batch.input import WORK, parse_object_key
from costgate.batch.model import BatchRecord, BatchState, Document, Unit, UnitKind, UnitState, UsageTotals
from costgate.batch.outputs import JSON_CONTENT_TYPE, TEXT_CONTENT_TYPE
from costgate.batch.ports import ObjectStore, ResultStore
from costgate.batch.tick import MAX_SUBMISSIONS, PARALLEL, Tick
from costgate.claude.ports import ClaudeBatches
from costgate.clock import Clock
from costgate.errors import PricingError
from costgate.observability import MetricName, emit_count, logger
from costgate.pricing.cost import measure_savings, price_usage
from costgate.pricing.usage import normalise_usage

CHUNK = 100  # result lines handled together (one BatchGet of their units)


class Collector:
    def __init__(
        self,
        *,
        store: ResultStore,
        objects: ObjectStore,
        claude: ClaudeBatches,
        ledger: LedgerStore,
        clock: Clock,
        tick: Tick,
    ) -> None:
        self.store = store
        self.objects = objects
        self.claude = claude
        self.ledger = ledger
        self.clock = clock
        self.tick = tick
        self.report = tick.report

    def collect(self, batch: BatchRecord, remote_id: str, ended_at: datetime) -> None:
        seen = 0
        chunk: list[Mapping[str, Any]] = []
        for line in self.claude.results(remote_id):
            chunk.append(line)
            if len(chunk) == CHUNK:
                seen += self._collect_chunk(batch, remote_id, ended_at, chunk)
                chunk = []
                if not self.tick.time_left():
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
        self.objects.put(output_key, body, content_type)
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
        record_request(self.ledger, entry, _unit_holds(batch, unit))
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
        return parse_object_key(document.key).result_key, text, TEXT_CONTENT_TYPE

    def _fail(self, batch: BatchRecord, unit: Unit, result: Mapping[str, Any]) -> None:
        error = json.dumps(result, ensure_ascii=False)
        if self.store.finish_unit(unit, batch, UnitState.FAILED, release=_unit_holds(batch, unit), error=error):
            self.report.failed_requests += 1

    def _retry_or_fail(self, batch: BatchRecord, unit: Unit, result: Mapping[str, Any]) -> None:
        if unit.attempts + 1 >= MAX_SUBMISSIONS:
            self._fail(batch, unit, {**result, "submissions": unit.attempts + 1})
            return
        requeued = self.store.finish_unit(
            unit, batch, UnitState.PENDING, release=_unit_holds(batch, unit), queued_at=self.clock.now()
        )
        if requeued:
            self.report.requeued_requests += 1


def _unit_holds(batch: BatchRecord, unit: Unit) -> list[Hold]:
    """The unit's share of the batch's holds: its own worst case, in each budget window."""
    if not unit.reserved_usd:
        return []
    return [Hold(hold.budget, hold.window, unit.reserved_usd) for hold in batch.holds]


def _message_text(message: Mapping[str, Any]) -> str:
    blocks = message.get("content") or []
    return "".join(
        block.get("text", "") for block in blocks if isinstance(block, Mapping) and block.get("type") == "text"
    )
