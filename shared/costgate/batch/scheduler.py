"""The batch scheduler (BatchFunction, on a schedule): one tick moves everything one step further.

In order: open batches first (recover half-finished submissions, collect ended batches), then finish
documents whose units are all finished, submit new batches, and rewrite dirty manifests, each until
done or the deadline. See `costgate.batch.model` for the states and why a crash loses nothing, and
`costgate.batch.ingest` for how documents arrive. Only one tick runs at a time (BatchFunction's
reserved concurrency is 1).
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from costgate.accounting.ports import BudgetStore, LedgerStore
from costgate.batch.collect import Collector
from costgate.batch.finish import DocumentFinisher
from costgate.batch.manifests import ManifestWriter
from costgate.batch.model import BatchRecord, BatchState
from costgate.batch.ports import ObjectStore, SchedulerStore
from costgate.batch.recovery import Recovery
from costgate.batch.requests import RequestBuilder
from costgate.batch.submit import Submitter
from costgate.batch.tick import Tick, TickReport
from costgate.claude.ports import ClaudeBatches
from costgate.clock import Clock
from costgate.errors import CostgateError
from costgate.observability import logger


@dataclass(frozen=True)
class SchedulerServices:
    store: SchedulerStore
    objects: ObjectStore
    claude: ClaudeBatches
    ledger: LedgerStore
    budgets: BudgetStore
    clock: Clock
    work_dir: Path  # where request bodies, results and manifests are built before upload (/tmp in Lambda)
    monotonic: Callable[[], float] = time.monotonic


def run_scheduler(services: SchedulerServices, deadline: float) -> TickReport:
    """One tick: everything the stored state says is due, until done or `deadline` (a monotonic instant)."""
    tick = Tick(deadline, services.monotonic)
    _Steps(services, tick).run()
    return tick.report


class _Steps:
    """The tick's steps, each given only the store port it uses."""

    def __init__(self, s: SchedulerServices, tick: Tick) -> None:
        self.tick = tick
        self.store = s.store
        self.claude = s.claude
        store = s.store
        self.recovery = Recovery(store=store, aborts=store, claude=s.claude, tick=tick)
        self.collector = Collector(
            store=store, objects=s.objects, claude=s.claude, ledger=s.ledger, clock=s.clock, tick=tick
        )
        self.finisher = DocumentFinisher(store, s.objects, s.clock, s.work_dir, tick)
        self.submitter = Submitter(
            queue=store,
            launch=store,
            aborts=store,
            builder=RequestBuilder(store, s.objects),
            budgets=s.budgets,
            claude=s.claude,
            clock=s.clock,
            work_dir=s.work_dir,
            tick=tick,
        )
        self.manifests = ManifestWriter(store, s.objects, s.clock, s.work_dir, tick)

    def run(self) -> None:
        report = self.tick.report
        for batch in self.store.open_batches():
            if not self.tick.time_left():
                return
            try:
                self._advance(batch)
            except CostgateError as error:
                # One batch Claude cannot serve now (down, or deleted by hand) must not stop the others.
                report.errors.append(f"batch {batch.batch_id}: {error.message}")
                logger.warning("batch: could not advance", extra={"batch_id": batch.batch_id, "error": error.message})
        if self.tick.time_left():
            self.finisher.finish_documents()
        if self.tick.time_left():
            self.submitter.submit()
        report.waiting_for_budget = len(self.submitter.waiting)
        if self.submitter.waiting:
            logger.info("batch: waiting for budget", extra={"requests": len(self.submitter.waiting)})
        if self.tick.time_left():
            self.manifests.write_manifests()

    def _advance(self, batch: BatchRecord) -> None:
        if batch.state in (BatchState.PACKING, BatchState.RESERVED):
            self.recovery.recover_unsent(batch)
        elif batch.state is BatchState.SUBMITTING:
            self.recovery.recover_submission(batch)
        elif batch.state is BatchState.SUBMITTED and batch.remote_id is not None:
            remote = self.claude.retrieve(batch.remote_id)
            if remote.ended and remote.ended_at is not None:
                self.collector.collect(batch, remote.id, remote.ended_at)
