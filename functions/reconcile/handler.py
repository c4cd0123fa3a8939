"""ReconcileFunction: every day (EventBridge schedule), the ledger against Anthropic's own records; invoked with
`{"from": "YYYY-MM-DD", "to": "YYYY-MM-DD"}`, a re-check of those days as of now."""

import os
from functools import cache
from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.typing import LambdaContext

from costgate.clock import Clock, SystemClock
from costgate.dal.reconcile import DynamoLedgerTotals, DynamoReconcileStore
from costgate.dal.table import bind_table
from costgate.observability import logger, tracer
from costgate.reconcile.admin_api import AdminApiRecords
from costgate.reconcile.service import ReconcileSources, recheck_days, reconcile_closed_days, requested_days
from costgate.settings import ReconcileSettings

# The Admin key is read through Powertools' cache: a rotated secret is picked up within this time.
SECRET_MAX_AGE_S = 300


@cache
def settings() -> ReconcileSettings:
    loaded = ReconcileSettings.from_env(os.environ)
    bind_table(loaded.table_name)
    return loaded


@cache
def sources() -> ReconcileSources:
    config = settings()
    return ReconcileSources(
        anthropic=AdminApiRecords(
            config.admin_api_url,
            admin_key=lambda: str(parameters.get_secret(config.admin_key_secret, max_age=SECRET_MAX_AGE_S)),
            api_key_ids=config.key_ids,
        ),
        ledger=DynamoLedgerTotals(),
    )


@logger.inject_lambda_context(correlation_id_path=correlation_paths.EVENT_BRIDGE)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext, clock: Clock | None = None) -> dict[str, Any]:
    config = settings()
    now = (clock or SystemClock()).now()
    asked = requested_days(event)
    if asked is None:
        report = reconcile_closed_days(
            DynamoReconcileStore(), sources(), now=now, settle=config.settle, lookback_days=config.lookback
        )
    else:
        report = recheck_days(*asked, DynamoReconcileStore(), sources(), now=now, settle=config.settle)
    return report.as_json()
