"""IngestFunction: each object created under incoming/ (an S3 event) becomes a pending batch document."""

import os
from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from costgate.batch.ingest import IngestServices, register_object
from costgate.clock import SystemClock
from costgate.dal.batch.store import DynamoBatchStore
from costgate.dal.objects import S3ObjectStore, parse_s3_event
from costgate.dal.table import bind_table
from costgate.observability import logger, tracer
from costgate.settings import IngestSettings


@cache
def services() -> IngestServices:
    settings = IngestSettings.from_env(os.environ)
    bind_table(settings.table_name)
    return IngestServices(
        store=DynamoBatchStore(),
        objects=S3ObjectStore(settings.bucket),
        clock=SystemClock(),
        default_tenant=settings.batch_tenant,
    )


# Nothing is caught: an upload that could not be registered fails the invocation, so Lambda retries
# the event and then keeps it in the on-failure destination (registering is idempotent per version).
@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    outcomes: dict[str, str] = {}
    for created in parse_s3_event(event):
        outcome = register_object(
            services(), bucket=created.bucket, key=created.key, version_id=created.version_id, size=created.size
        )
        logger.info(
            "object ingested",
            extra={"key": created.key, "version_id": created.version_id, "size": created.size, "outcome": outcome},
        )
        outcomes[created.key] = outcome.value
    return {"outcomes": outcomes}
