"""SpendWatchFunction: every five minutes (EventBridge schedule), today's spend and its end-of-day projection."""

import os
from functools import cache
from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from costgate.accounting.ports import LedgerStore
from costgate.accounting.spend import observe_spend
from costgate.clock import Clock, SystemClock
from costgate.dal.ledger import DynamoLedgerStore
from costgate.dal.table import bind_table
from costgate.observability import logger, tracer
from costgate.settings import SpendSettings


@cache
def settings() -> SpendSettings:
    loaded = SpendSettings.from_env(os.environ)
    bind_table(loaded.table_name)
    return loaded


@cache
def ledger_store() -> LedgerStore:
    settings()
    return DynamoLedgerStore()


@logger.inject_lambda_context(correlation_id_path=correlation_paths.EVENT_BRIDGE)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext, clock: Clock | None = None) -> dict[str, str]:
    # The clock, not the event's `time`: the ledger is read now, so the projection divides by now.
    observation = observe_spend(ledger_store(), (clock or SystemClock()).now())
    logger.info("spend observed", extra={"spend": observation.as_json()})
    return observation.as_json()
