"""Batches: created, reserved against the budgets, submitted, collected or aborted; and Claude's ids."""

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Final

from pynamodb.exceptions import DoesNotExist, PutError
from pynamodb.expressions.update import Action
from pynamodb.transactions import TransactWrite

from costgate.accounting.budgets import Hold, remaining_in, reservation_ceiling
from costgate.batch.model import OPEN_BATCH_STATES, BatchRecord, BatchState
from costgate.dal.batch.base import BatchTable, update_if
from costgate.dal.batch.entities import (
    BATCH_QUEUE,
    META,
    QUEUE_INDEX,
    BatchItem,
    RemoteBatchItem,
    batch_pk,
    batch_queue,
    remote_pk,
)
from costgate.dal.batch.records import batch_item, hold_map, to_batch
from costgate.dal.budgets import committed_usd, release_update, reserve_update
from costgate.dal.table import CONDITION_FAILED, transact
from costgate.errors import BudgetExceededError, ConflictError, UpstreamError

_BATCH_CHANGES: Final = frozenset({"remote_id", "submit_started_at", "ended_at", "note"})


class BatchRecords(BatchTable):
    """Batch records: create, reserve (with the budget counters), move, abort, and find by Claude's id."""

    def create_batch(self, batch: BatchRecord) -> None:
        try:
            batch_item(batch).save(condition=BatchItem.pk.does_not_exist())
        except PutError as error:
            if error.cause_response_code != "ConditionalCheckFailedException":
                raise
            raise ConflictError(f"batch {batch.batch_id} already exists") from None

    def reserve_batch(self, batch: BatchRecord, holds: Sequence[Hold]) -> BatchRecord:
        holds = tuple(holds)
        for hold in holds:
            if hold.amount_usd != batch.reserved_usd:
                raise ValueError(
                    f"batch {batch.batch_id}: a hold of {hold.amount_usd} is not the batch's reservation"
                    f" ({batch.reserved_usd}); each hold holds the whole batch"
                )
            if hold.amount_usd > hold.budget.limit_usd:
                raise BudgetExceededError(hold.budget, remaining=None, needed=hold.amount_usd)
        updates = [reserve_update(hold) for hold in holds]

        def write(transaction: TransactWrite) -> None:
            transaction.update(
                BatchItem(batch_pk(batch.batch_id), META),
                actions=[
                    BatchItem.state.set(BatchState.RESERVED.value),
                    BatchItem.holds.set([hold_map(hold) for hold in holds]),
                    BatchItem.reserved_usd.set(batch.reserved_usd),
                ],
                condition=BatchItem.state == BatchState.PACKING.value,
            )
            for item, actions, condition in updates:
                transaction.update(item, actions=actions, condition=condition)

        def worth_retrying(codes: list[str | None]) -> bool:
            if codes[0] == CONDITION_FAILED:
                raise ConflictError(f"batch {batch.batch_id} is no longer {BatchState.PACKING.value}")
            for hold, code in zip(holds, codes[1:], strict=False):
                if code == CONDITION_FAILED:
                    committed = committed_usd(hold)
                    if committed > reservation_ceiling(hold):
                        raise BudgetExceededError(hold.budget, remaining_in(hold.budget, committed), hold.amount_usd)
            # Room came back between the refusal and the read (a release, a settlement): try again.
            return True

        transact(
            write,
            area="batches",
            what=f"reserve batch {batch.batch_id}",
            sleep=self._sleep,
            retry_refused=worth_retrying,
        )
        return replace(batch, state=BatchState.RESERVED, holds=holds)

    def set_batch_state(self, batch: BatchRecord, new_state: BatchState, **changes: Any) -> BatchRecord:
        unknown = sorted(set(changes) - _BATCH_CHANGES)
        if unknown:
            raise TypeError(f"set_batch_state() cannot change {', '.join(unknown)}")
        updated = replace(batch, state=new_state, **changes)
        item = BatchItem(batch_pk(batch.batch_id), META)
        actions: list[Action] = [BatchItem.state.set(new_state.value), *batch_queue(updated)]
        actions += [getattr(BatchItem, name).set(value) for name, value in changes.items()]
        condition = BatchItem.state == batch.state.value
        remote_id = changes.get("remote_id")
        if new_state is not BatchState.SUBMITTED or remote_id is None:
            if not update_if(item, actions, condition):
                raise ConflictError(f"batch {batch.batch_id} is no longer {batch.state.value}")
            return updated

        def write(transaction: TransactWrite) -> None:
            # TransactWrite sends puts before updates: the cancellation reasons come in that order.
            transaction.save(
                RemoteBatchItem(remote_pk(remote_id), META, batch_id=batch.batch_id),
                condition=RemoteBatchItem.pk.does_not_exist(),
            )
            transaction.update(item, actions=actions, condition=condition)

        codes = transact(write, area="batches", what=f"record batch {batch.batch_id} as submitted", sleep=self._sleep)
        if codes is not None:
            if codes[-1] == CONDITION_FAILED:
                raise ConflictError(f"batch {batch.batch_id} is no longer {batch.state.value}")
            raise ConflictError(f"Claude batch {remote_id} is already recorded for another batch")
        return updated

    def abort_batch(self, batch: BatchRecord, note: str) -> None:
        releases = (
            [release_update(hold) for hold in batch.holds]
            if batch.state in (BatchState.RESERVED, BatchState.SUBMITTING)
            else []
        )

        def write(transaction: TransactWrite) -> None:
            transaction.update(
                BatchItem(batch_pk(batch.batch_id), META),
                actions=[
                    BatchItem.state.set(BatchState.ABORTED.value),
                    BatchItem.note.set(note),
                    BatchItem.queue.remove(),
                    BatchItem.queue_at.remove(),
                ],
                condition=BatchItem.state == batch.state.value,
            )
            for item, actions, condition in releases:
                transaction.update(item, actions=actions, condition=condition)

        codes = transact(write, area="batches", what=f"abort batch {batch.batch_id}", sleep=self._sleep)
        if codes is None:
            return
        if codes[0] == CONDITION_FAILED:
            raise ConflictError(f"batch {batch.batch_id} is no longer {batch.state.value}")
        raise UpstreamError(f"batches: batch {batch.batch_id} holds a budget that was never reserved; not aborted")

    def batch_for_remote(self, remote_id: str) -> BatchRecord | None:
        try:
            remote = RemoteBatchItem.get(remote_pk(remote_id), META, consistent_read=True)
            item = BatchItem.get(batch_pk(remote.batch_id), META, consistent_read=True)
        except DoesNotExist:
            return None
        return to_batch(item)

    def open_batches(self) -> list[BatchRecord]:
        queued = [(item.pk, item.sk) for item in BatchItem.query(BATCH_QUEUE, index_name=QUEUE_INDEX)]
        fresh = {(item.pk, item.sk): item for item in BatchItem.batch_get(queued, consistent_read=True)}
        records = [to_batch(fresh[key]) for key in queued if key in fresh]
        return [record for record in records if record.state in OPEN_BATCH_STATES]
