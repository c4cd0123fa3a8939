"""Batches a crash or a failed call left on the way to Claude (see `costgate.batch.model` for the states).

A PACKING or RESERVED batch never reached Claude: its units go back to the queue and it is aborted,
its budget holds released. A SUBMITTING batch's create call got no answer: Claude's own list of
batches tells whether it made one (then it is adopted as SUBMITTED) or not (then it is aborted).
"""

from datetime import timedelta

from costgate.batch.model import BatchRecord, BatchState
from costgate.batch.ports import BatchAborts, RemoteBatches
from costgate.batch.tick import Tick
from costgate.claude.ports import ClaudeBatches
from costgate.observability import logger

# Claude's list of batches is searched this far around a create call that got no answer.
SUBMIT_SEARCH_BEFORE = timedelta(minutes=5)
SUBMIT_SEARCH_AFTER = timedelta(minutes=15)


def abort(store: BatchAborts, batch: BatchRecord, note: str) -> None:
    """Units back to the queue first, then the batch: a crash in between leaves it open, so it is redone."""
    for unit in store.packed_units(batch):
        store.unpack_unit(unit, batch.batch_id)
    store.abort_batch(batch, note)


class Recovery:
    def __init__(self, store: RemoteBatches, aborts: BatchAborts, claude: ClaudeBatches, tick: Tick) -> None:
        self.store = store
        self.aborts = aborts
        self.claude = claude
        self.report = tick.report

    def recover_unsent(self, batch: BatchRecord) -> None:
        """A PACKING or RESERVED batch: the scheduler stopped before it reached Claude."""
        abort(self.aborts, batch, "the scheduler stopped before submitting it")
        self.report.recovered_batches += 1

    def recover_submission(self, batch: BatchRecord) -> None:
        """A create call that got no answer: adopt the batch Claude made of it, or put its units back."""
        started = batch.submit_started_at or batch.created_at
        candidates = [
            remote
            for remote in self.claude.created_since(started - SUBMIT_SEARCH_BEFORE)
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
            abort(self.aborts, batch, "its create call got no answer and Claude has no such batch")
        self.report.recovered_batches += 1

    def _holds_our_units(self, batch: BatchRecord, remote_id: str) -> bool:
        first = next(iter(self.claude.results(remote_id)), None)
        if first is None:
            return False
        unit = self.store.units(batch.job, [str(first["custom_id"])]).get(str(first["custom_id"]))
        return unit is not None and unit.batch_id == batch.batch_id
