"""ApiFunction: the gateway's HTTP entry point (API Gateway REST proxy events)."""

import json
import os
from functools import cache
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from costgate.dal.ledger import DynamoLedgerStore
from costgate.dal.table import bind_table
from costgate.errors import CostgateError, NotFoundError, UpstreamError, error_response
from costgate.observability import logger, tracer
from costgate.ports import LedgerStore
from costgate.report import CostReportRequest, build_report
from costgate.settings import ApiSettings

app = APIGatewayRestResolver()


@cache
def ledger_store() -> LedgerStore:
    settings = ApiSettings.from_env(os.environ)
    bind_table(settings.table_name)
    return DynamoLedgerStore()


@app.get("/v1/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/v1/costs")
def costs() -> dict[str, Any]:
    request = CostReportRequest.from_query(app.current_event.query_string_parameters or {})
    return build_report(ledger_store(), request).as_json()


@app.not_found
def not_found(_: Exception) -> Response[str]:
    event = app.current_event
    return _error(NotFoundError(f"no route for {event.http_method} {event.path}"))


@app.exception_handler(CostgateError)
def costgate_error(error: CostgateError) -> Response[str]:
    return _error(error)


@app.exception_handler(Exception)
def unexpected_error(error: Exception) -> Response[str]:
    logger.exception("unexpected error")
    return _error(UpstreamError("internal error in costgate; quote the request-id header when reporting it"))


def _error(error: CostgateError) -> Response[str]:
    request_id = app.current_event.request_context.request_id
    status, body = error_response(error, request_id)
    if status >= 500 and not isinstance(error, UpstreamError):
        logger.exception(error.message)
    elif status < 500:
        logger.info(
            "request rejected",
            extra={"status": status, "error_type": error.error_type, "reason": error.message},
        )
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=json.dumps(body),
        headers={"request-id": request_id},
    )


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
