"""BatchFunction: one scheduler tick (EventBridge schedule) - submit, collect and finish batch work."""

import os
import tempfile
import time
from dataclasses import asdict, replace
from functools import cache
from pathlib import Path
from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.typing import LambdaContext

from costgate.batch.scheduler import SchedulerServices, run_scheduler
from costgate.batch.tick import TickReport
from costgate.claude.batches import HttpClaudeBatches
from costgate.clock import SystemClock
from costgate.dal.batch.store import DynamoBatchStore
from costgate.dal.budgets import DynamoBudgetStore
from costgate.dal.ledger import DynamoLedgerStore
from costgate.dal.objects import S3ObjectStore
from costgate.dal.table import bind_table
from costgate.observability import MetricName, emit_count, logger, tracer
from costgate.settings import BatchSettings

# Time kept back from the Lambda timeout: the tick stops starting work this long before it, so what
# is under way (an upload, a batch of ledger writes) ends inside the invocation.
STOP_MARGIN_S = 60.0
# The Claude key is read through Powertools' cache: a rotated secret is picked up within this time.
SECRET_MAX_AGE_S = 300


@cache
def settings() -> BatchSettings:
    loaded = BatchSettings.from_env(os.environ)
    bind_table(loaded.table_name)
    return loaded


@cache
def services() -> SchedulerServices:
    """Built once per container, so its clients keep their connections; each tick gets its own work_dir."""
    config = settings()
    return SchedulerServices(
        store=DynamoBatchStore(),
        objects=S3ObjectStore(config.bucket),
        claude=HttpClaudeBatches(
            config.upstream_url,
            api_key=lambda: str(parameters.get_secret(config.claude_key_secret, max_age=SECRET_MAX_AGE_S)),
        ),
        ledger=DynamoLedgerStore(),
        budgets=DynamoBudgetStore(),
        clock=SystemClock(),
        work_dir=Path(tempfile.gettempdir()),
    )


@logger.inject_lambda_context(correlation_id_path=correlation_paths.EVENT_BRIDGE)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    remaining_s = context.get_remaining_time_in_millis() / 1000
    deadline = time.monotonic() + max(remaining_s - STOP_MARGIN_S, 0.0)
    # A fresh folder per tick, removed after it: /tmp outlives the invocation in a warm container.
    with tempfile.TemporaryDirectory(prefix="costgate-batch-") as work_dir:
        report = run_scheduler(replace(services(), work_dir=Path(work_dir)), deadline)
    _record(report)
    return asdict(report)


def _record(report: TickReport) -> None:
    # Every tick counts, zeros included. BatchRequestsSubmitted is counted by the scheduler as each
    # batch is accepted, and a document rejected at ingest by register_object: not again here.
    emit_count(MetricName.BATCH_DOCUMENTS_DONE, report.finished_documents)
    emit_count(MetricName.BATCH_DOCUMENTS_FAILED, report.failed_documents)
    for error in report.errors:
        logger.error("scheduler tick error", extra={"error": error})
    # An idle tick (every two minutes, all day) is not worth a log line.
    busy = any(value for value in asdict(report).values())
    (logger.info if busy else logger.debug)("scheduler tick", extra={"report": asdict(report)})
