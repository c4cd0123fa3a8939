"""AggregatorFunction: the table's stream (a Lambda event source mapping with a tumbling window) into rollups.

The tumbling window is there for one field: only then does Lambda say which stream shard a batch comes
from (`shardId`), and the exactly-once scheme keeps one mark per shard on every target
(`costgate.accounting.aggregator`). The window's `state` is not used: every invocation writes what it
read, and returns an empty state. A batch that fails raises: Lambda retries it (or a half of it).
"""

import os
from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from costgate.accounting.aggregator import aggregate
from costgate.accounting.ports import RollupStore
from costgate.accounting.targets import Ended
from costgate.dal.ledger import ended_event
from costgate.dal.rollups import DynamoRollupStore
from costgate.dal.table import bind_table
from costgate.observability import logger, tracer
from costgate.settings import AggregatorSettings


@cache
def settings() -> AggregatorSettings:
    loaded = AggregatorSettings.from_env(os.environ)
    bind_table(loaded.table_name)
    return loaded


@cache
def rollup_store() -> RollupStore:
    settings()
    return DynamoRollupStore()


def lane_of(event: dict[str, Any]) -> str:
    """The stream shard a batch comes from: its stream's ARN and shard id (tumbling-window events carry both)."""
    shard = event.get("shardId")
    if not shard:
        raise ValueError("the event names no shardId: AggregatorFunction's event source needs a tumbling window")
    records = event.get("Records") or []
    source = event.get("eventSourceARN") or (records[0].get("eventSourceARN") if records else "") or ""
    return f"{source}|{shard}"


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    records = event.get("Records") or []
    events: list[Ended] = [found for record in records if (found := ended_event(record)) is not None]
    if events:
        written = aggregate(rollup_store(), lane_of(event), events)
        logger.info("aggregated", extra={"records": len(records), "ended_rows": len(events), "targets": written})
    # A tumbling window's invocation must answer with a state, or Lambda counts it failed.
    return {"state": {}, "batchItemFailures": []}
