"""Batch records (`costgate.batch.model`) to and from their table items."""

from costgate.accounting.budgets import Budget, BudgetPeriod, Hold
from costgate.batch.model import (
    OPEN_BATCH_STATES,
    BatchRecord,
    BatchState,
    Document,
    DocumentKind,
    DocumentStatus,
    Unit,
    UnitKind,
    UnitState,
    UsageTotals,
)
from costgate.dal.batch.entities import (
    BATCH_QUEUE,
    META,
    BatchItem,
    DocumentItem,
    HoldMap,
    TotalsMap,
    UnitItem,
    batch_pk,
    doc_sk,
    job_pk,
    pending_shard,
    queue_time,
    unit_sk,
)


def totals_map(totals: UsageTotals) -> TotalsMap:
    return TotalsMap(  # type: ignore[no-untyped-call]
        requests=totals.requests,
        input_tokens=totals.input_tokens,
        output_tokens=totals.output_tokens,
        cache_write_5m_tokens=totals.cache_write_5m_tokens,
        cache_write_1h_tokens=totals.cache_write_1h_tokens,
        cache_read_tokens=totals.cache_read_tokens,
        cost_usd=totals.cost_usd,
    )


def to_totals(totals: TotalsMap | None) -> UsageTotals:
    if totals is None:
        return UsageTotals()
    return UsageTotals(
        requests=int(totals.requests),
        input_tokens=int(totals.input_tokens),
        output_tokens=int(totals.output_tokens),
        cache_write_5m_tokens=int(totals.cache_write_5m_tokens),
        cache_write_1h_tokens=int(totals.cache_write_1h_tokens),
        cache_read_tokens=int(totals.cache_read_tokens),
        cost_usd=totals.cost_usd,
    )


def hold_map(hold: Hold) -> HoldMap:
    return HoldMap(  # type: ignore[no-untyped-call]
        scope=hold.budget.scope,
        period=hold.budget.period.value,
        limit_usd=hold.budget.limit_usd,
        window=hold.window,
        amount_usd=hold.amount_usd,
    )


def to_hold(hold: HoldMap) -> Hold:
    budget = Budget(hold.scope, BudgetPeriod(hold.period), hold.limit_usd)
    return Hold(budget, hold.window, hold.amount_usd)


def document_item(document: Document) -> DocumentItem:
    return DocumentItem(
        job_pk(document.job),
        doc_sk(document.doc_id),
        job=document.job,
        doc_id=document.doc_id,
        bucket=document.bucket,
        key=document.key,
        version_id=document.version_id,
        kind=document.kind.value,
        status=document.status.value,
        registered_at=document.registered_at,
        size=document.size,
        units=document.units,
        tenant=document.tenant,
        feature=document.feature,
        model=document.model,
        instruction=document.instruction,
        max_tokens=document.max_tokens,
        result_key=document.result_key,
        error=document.error,
        totals=totals_map(document.totals),
        finished_at=document.finished_at,
    )


def to_document(item: DocumentItem) -> Document:
    return Document(
        job=item.job,
        doc_id=item.doc_id,
        bucket=item.bucket,
        key=item.key,
        version_id=item.version_id,
        kind=DocumentKind(item.kind),
        status=DocumentStatus(item.status),
        registered_at=item.registered_at,
        size=int(item.size),
        units=int(item.units),
        tenant=item.tenant,
        feature=item.feature,
        model=item.model,
        instruction=item.instruction,
        max_tokens=None if item.max_tokens is None else int(item.max_tokens),
        result_key=item.result_key,
        error=item.error,
        totals=to_totals(item.totals),
        finished_at=item.finished_at,
    )


def unit_item(unit: Unit) -> UnitItem:
    item = UnitItem(
        job_pk(unit.job),
        unit_sk(unit.doc_id, unit.seq),
        job=unit.job,
        doc_id=unit.doc_id,
        seq=unit.seq,
        kind=unit.kind.value,
        state=unit.state.value,
        start=unit.start,
        end=unit.end,
        queued_at=unit.queued_at,
        attempts=unit.attempts,
        batch_id=unit.batch_id,
        reserved_usd=unit.reserved_usd,
        model=unit.model,
        totals=totals_map(unit.totals),
        output_key=unit.output_key,
        error=unit.error,
    )
    if unit.state is UnitState.PENDING:
        item.queue = f"PENDING#{pending_shard(unit.doc_id)}"
        item.queue_at = f"{queue_time(unit.queued_at)}#{unit.doc_id}#{unit.seq:06d}"
    return item


def to_unit(item: UnitItem) -> Unit:
    return Unit(
        job=item.job,
        doc_id=item.doc_id,
        seq=int(item.seq),
        kind=UnitKind(item.kind),
        state=UnitState(item.state),
        start=int(item.start),
        end=int(item.end),
        queued_at=item.queued_at,
        attempts=int(item.attempts),
        batch_id=item.batch_id,
        reserved_usd=item.reserved_usd,
        model=item.model,
        totals=to_totals(item.totals),
        output_key=item.output_key,
        error=item.error,
    )


def batch_item(batch: BatchRecord) -> BatchItem:
    item = BatchItem(
        batch_pk(batch.batch_id),
        META,
        batch_id=batch.batch_id,
        job=batch.job,
        state=batch.state.value,
        created_at=batch.created_at,
        request_count=batch.request_count,
        reserved_usd=batch.reserved_usd,
        holds=[hold_map(hold) for hold in batch.holds],
        remote_id=batch.remote_id,
        submit_started_at=batch.submit_started_at,
        ended_at=batch.ended_at,
        note=batch.note,
    )
    if batch.state in OPEN_BATCH_STATES:
        item.queue = BATCH_QUEUE
        item.queue_at = f"{queue_time(batch.created_at)}#{batch.batch_id}"
    return item


def to_batch(item: BatchItem) -> BatchRecord:
    return BatchRecord(
        batch_id=item.batch_id,
        job=item.job,
        state=BatchState(item.state),
        created_at=item.created_at,
        request_count=int(item.request_count),
        reserved_usd=item.reserved_usd,
        holds=tuple(to_hold(hold) for hold in item.holds or ()),
        remote_id=item.remote_id,
        submit_started_at=item.submit_started_at,
        ended_at=item.ended_at,
        note=item.note,
    )
