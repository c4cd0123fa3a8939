"""Units: the PENDING queue, packing into a batch, and each unit's outcome."""

import heapq
from collections.abc import Iterator, Sequence
from datetime import datetime
from decimal import Decimal
from itertools import islice

from pynamodb.exceptions import PutError
from pynamodb.expressions.update import Action
from pynamodb.transactions import TransactWrite

from costgate.accounting.budgets import Hold
from costgate.batch.model import BatchRecord, Document, Unit, UnitState, UsageTotals
from costgate.dal.batch.base import BatchTable, set_or_remove, update_if
from costgate.dal.batch.entities import (
    CHECK_QUEUE,
    PENDING_SHARDS,
    QUEUE_INDEX,
    DocumentItem,
    UnitItem,
    doc_sk,
    job_pk,
    parse_custom_id,
    pending_queue,
    queue_time,
    unit_sk,
)
from costgate.dal.batch.records import to_unit, totals_map, unit_item
from costgate.dal.budgets import release_update
from costgate.dal.table import CONDITION_FAILED, transact
from costgate.errors import ConflictError, UpstreamError


class UnitRecords(BatchTable):
    """Unit records: the PENDING queue, packing and unpacking, and each unit's outcome (flagging its document)."""

    def pending_units(self, limit: int) -> list[Unit]:
        if limit <= 0:
            return []
        shards = [
            UnitItem.query(f"PENDING#{shard}", index_name=QUEUE_INDEX, limit=limit) for shard in range(PENDING_SHARDS)
        ]
        merged = heapq.merge(*shards, key=lambda item: item.queue_at or "")
        return [to_unit(item) for item in islice(merged, limit)]

    def pack_unit(self, unit: Unit, batch_id: str, reserved_usd: Decimal) -> bool:
        return update_if(
            UnitItem(job_pk(unit.job), unit_sk(unit.doc_id, unit.seq)),
            [
                UnitItem.state.set(UnitState.PACKED.value),
                UnitItem.batch_id.set(batch_id),
                UnitItem.reserved_usd.set(reserved_usd),
                UnitItem.queue.remove(),
                UnitItem.queue_at.remove(),
            ],
            UnitItem.state == UnitState.PENDING.value,
        )

    def packed_units(self, batch: BatchRecord) -> Iterator[Unit]:
        items = UnitItem.query(
            job_pk(batch.job),
            UnitItem.sk.startswith("UNIT#"),
            filter_condition=(UnitItem.state == UnitState.PACKED.value) & (UnitItem.batch_id == batch.batch_id),
            consistent_read=True,
        )
        for item in items:
            yield to_unit(item)

    def unpack_unit(self, unit: Unit, batch_id: str) -> bool:
        return update_if(
            UnitItem(job_pk(unit.job), unit_sk(unit.doc_id, unit.seq)),
            [
                UnitItem.state.set(UnitState.PENDING.value),
                UnitItem.batch_id.remove(),
                UnitItem.reserved_usd.remove(),
                *pending_queue(unit.doc_id, unit.seq, unit.queued_at),
            ],
            (UnitItem.state == UnitState.PACKED.value) & (UnitItem.batch_id == batch_id),
        )

    def units(self, job: str, custom_ids: Sequence[str]) -> dict[str, Unit]:
        keys = set()
        for custom_id in custom_ids:
            parsed = parse_custom_id(custom_id)
            if parsed is not None:
                keys.add((job_pk(job), unit_sk(*parsed)))
        found = (to_unit(item) for item in UnitItem.batch_get(keys, consistent_read=True))
        return {unit.custom_id: unit for unit in found}

    def fail_pending_unit(self, unit: Unit, error: str) -> bool:
        flagged_at = f"{queue_time(self._clock.now())}#{unit.job}#{unit.doc_id}"

        def write(transaction: TransactWrite) -> None:
            transaction.update(
                UnitItem(job_pk(unit.job), unit_sk(unit.doc_id, unit.seq)),
                actions=[
                    UnitItem.state.set(UnitState.FAILED.value),
                    UnitItem.error.set(error),
                    UnitItem.queue.remove(),
                    UnitItem.queue_at.remove(),
                ],
                condition=UnitItem.state == UnitState.PENDING.value,
            )
            transaction.update(
                DocumentItem(job_pk(unit.job), doc_sk(unit.doc_id)),
                actions=[
                    DocumentItem.queue.set(CHECK_QUEUE),
                    DocumentItem.queue_at.set(DocumentItem.queue_at | flagged_at),
                    DocumentItem.flags.add(1),
                ],
                condition=DocumentItem.pk.exists(),
            )

        codes = transact(write, area="batches", what=f"fail unit {unit.custom_id}", sleep=self._sleep)
        if codes is None:
            return True
        if codes[0] == CONDITION_FAILED:
            return False
        raise ConflictError(f"unit {unit.custom_id}'s document is not registered in job {unit.job}")

    def finish_unit(
        self,
        unit: Unit,
        batch: BatchRecord,
        state: UnitState,
        *,
        release: Sequence[Hold] = (),
        totals: UsageTotals | None = None,
        model: str | None = None,
        output_key: str | None = None,
        error: str | None = None,
        queued_at: datetime | None = None,
    ) -> bool:
        actions: list[Action] = [UnitItem.state.set(state.value)]
        if state is UnitState.PENDING:
            actions += [
                UnitItem.attempts.add(1),
                UnitItem.batch_id.remove(),
                UnitItem.reserved_usd.remove(),
                UnitItem.queued_at.set(queued_at or unit.queued_at),
                *pending_queue(unit.doc_id, unit.seq, queued_at or unit.queued_at),
            ]
        elif state is UnitState.DONE:
            if totals is not None:
                actions.append(UnitItem.totals.set(totals_map(totals)))
            actions += [set_or_remove(UnitItem.model, model), set_or_remove(UnitItem.output_key, output_key)]
        elif state is UnitState.FAILED:
            actions.append(set_or_remove(UnitItem.error, error))
        else:
            raise ValueError(f"a unit finishes as {UnitState.PENDING}, {UnitState.DONE} or {UnitState.FAILED}")
        releases = [release_update(hold) for hold in release]
        flagged_at = f"{queue_time(self._clock.now())}#{unit.job}#{unit.doc_id}"
        doc_actions: list[Action] = [
            DocumentItem.queue.set(CHECK_QUEUE),
            DocumentItem.queue_at.set(DocumentItem.queue_at | flagged_at),
            DocumentItem.flags.add(1),
        ]

        def write(transaction: TransactWrite) -> None:
            transaction.update(
                UnitItem(job_pk(unit.job), unit_sk(unit.doc_id, unit.seq)),
                actions=actions,
                condition=(UnitItem.state == UnitState.PACKED.value) & (UnitItem.batch_id == batch.batch_id),
            )
            for item, release_actions, condition in releases:
                transaction.update(item, actions=release_actions, condition=condition)
            transaction.update(
                DocumentItem(job_pk(unit.job), doc_sk(unit.doc_id)),
                actions=doc_actions,
                condition=DocumentItem.pk.exists(),
            )

        codes = transact(write, area="batches", what=f"finish unit {unit.custom_id}", sleep=self._sleep)
        if codes is None:
            return True
        if codes[0] == CONDITION_FAILED:
            return False
        if codes[-1] == CONDITION_FAILED:
            raise ConflictError(f"unit {unit.custom_id}'s document is not registered in job {unit.job}")
        raise UpstreamError(f"batches: unit {unit.custom_id} releases a budget hold that was never reserved")

    def units_of(self, document: Document) -> list[Unit]:
        items = UnitItem.query(
            job_pk(document.job), UnitItem.sk.startswith(f"UNIT#{document.doc_id}#"), consistent_read=True
        )
        return sorted((to_unit(item) for item in items), key=lambda unit: unit.seq)

    def add_unit(self, unit: Unit) -> bool:
        try:
            unit_item(unit).save(condition=UnitItem.pk.does_not_exist())
        except PutError as error:
            if error.cause_response_code != "ConditionalCheckFailedException":
                raise
            return False
        return True
