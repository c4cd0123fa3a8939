"""SweeperFunction: every minute (EventBridge schedule), the rows no settle will reach and the dry budgets."""

import os
from functools import cache
from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from costgate.accounting.ports import BudgetStore, LedgerStore
from costgate.accounting.sweeper import sweep
from costgate.clock import Clock, SystemClock
from costgate.dal.budgets import DynamoBudgetStore
from costgate.dal.ledger import DynamoLedgerStore
from costgate.dal.table import bind_table
from costgate.observability import logger, tracer
from costgate.settings import SweeperSettings


@cache
def settings() -> SweeperSettings:
    loaded = SweeperSettings.from_env(os.environ)
    bind_table(loaded.table_name)
    return loaded


@cache
def stores() -> tuple[LedgerStore, BudgetStore]:
    settings()
    return DynamoLedgerStore(), DynamoBudgetStore()


@logger.inject_lambda_context(correlation_id_path=correlation_paths.EVENT_BRIDGE)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext, clock: Clock | None = None) -> dict[str, Any]:
    # The clock, not the event's `time`: a row is overdue by now, whenever the tick was scheduled.
    ledger, budgets = stores()
    report = sweep(ledger, budgets, (clock or SystemClock()).now())
    logger.info("swept", extra={"sweep": report.as_json()})
    return report.as_json()
