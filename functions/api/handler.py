"""ApiFunction: the gateway's HTTP entry point (API Gateway REST proxy events)."""

import base64
import json
import os
import time
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.typing import LambdaContext

from costgate.accounting.ports import LedgerStore
from costgate.accounting.report import CostReportRequest, build_report
from costgate.cache.answers import AnswerCache
from costgate.cache.embedding import Embedder, embedder_for
from costgate.claude.messages import HttpUpstream
from costgate.clock import SystemClock
from costgate.dal.answer_cache import DynamoAnswerCacheStore
from costgate.dal.budgets import DynamoBudgetStore
from costgate.dal.features import DynamoFeatureStore
from costgate.dal.keys import DynamoKeyStore
from costgate.dal.ledger import DynamoLedgerStore
from costgate.dal.prompt_cache import DynamoPromptCacheStore
from costgate.dal.table import bind_table
from costgate.errors import CostgateError, InternalError, NotFoundError, error_response
from costgate.gateway.service import Gateway, GatewayRequest, GatewayResponse
from costgate.observability import logger, tracer
from costgate.settings import ApiSettings

app = APIGatewayRestResolver()
# Time kept back from the Lambda timeout so a late answer is still priced and recorded.
RECORDING_MARGIN_S = 15.0
# The Claude key is read through Powertools' cache: a rotated secret is picked up within this time.
SECRET_MAX_AGE_S = 300


@cache
def settings() -> ApiSettings:
    loaded = ApiSettings.from_env(os.environ)
    bind_table(loaded.table_name)
    return loaded


@cache
def ledger_store() -> LedgerStore:
    settings()
    return DynamoLedgerStore()


@cache
def gateway() -> Gateway:
    config = settings()
    return Gateway(
        keys=DynamoKeyStore(),
        budgets=DynamoBudgetStore(),
        ledger=ledger_store(),
        features=DynamoFeatureStore(),
        prompt_cache=DynamoPromptCacheStore(),
        answers=AnswerCache(DynamoAnswerCacheStore(), embedder=lambda: _embedder(config.embedder)),
        upstream=HttpUpstream(
            config.upstream_url,
            api_key=lambda: str(parameters.get_secret(config.claude_key_secret, max_age=SECRET_MAX_AGE_S)),
        ),
        clock=SystemClock(),
    )


def _embedder(name: str) -> Embedder:
    if name == "titan-v2":
        # Only Titan deployments pay for the Bedrock client, and only on the first semantic lookup.
        return embedder_for(name, client=boto3.client("bedrock-runtime"))
    return embedder_for(name)


@app.get("/v1/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/v1/costs")
def costs() -> dict[str, Any]:
    request = CostReportRequest.from_query(app.current_event.query_string_parameters or {})
    return build_report(ledger_store(), request).as_json()


@app.post("/v1/messages")
def messages() -> Response[str]:
    return _respond(gateway().create_message(_gateway_request()))


@app.post("/v1/messages/count_tokens")
def count_tokens() -> Response[str]:
    return _respond(gateway().count_tokens(_gateway_request()))


def _gateway_request() -> GatewayRequest:
    event = app.current_event
    raw = event.body or ""
    body = base64.b64decode(raw) if event.is_base64_encoded else raw.encode("utf-8")
    remaining_s = app.lambda_context.get_remaining_time_in_millis() / 1000
    return GatewayRequest(
        body=body,
        headers={name.lower(): value for name, value in (event.headers or {}).items()},
        deadline=time.monotonic() + max(remaining_s - RECORDING_MARGIN_S, 0.0),
    )


def _respond(response: GatewayResponse) -> Response[str]:
    # Claude answers in UTF-8 JSON or SSE; passing the text keeps API Gateway out of binary mode.
    return Response(status_code=response.status, body=response.body.decode("utf-8"), headers=response.headers)


@app.not_found
def not_found(_: Exception) -> Response[str]:
    event = app.current_event
    return _error(NotFoundError(f"no route for {event.http_method} {event.path}"))


@app.exception_handler(CostgateError)
def costgate_error(error: CostgateError) -> Response[str]:
    return _error(error)


@app.exception_handler(Exception)
def unexpected_error(error: Exception) -> Response[str]:
    return _error(InternalError("internal error in costgate; quote the request-id header when reporting it"))


def _error(error: CostgateError) -> Response[str]:
    request_id = app.current_event.request_context.request_id
    status, body = error_response(error, request_id)
    if status >= 500:
        # Exception handlers run inside the `except`, so the traceback of the cause is logged too.
        logger.exception(error.message)
    else:
        logger.info(
            "request rejected",
            extra={"status": status, "error_type": error.error_type, "reason": error.message},
        )
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=json.dumps(body),
        # Nothing was billed for a request costgate refused (or that failed before Claude answered).
        headers={"request-id": request_id, "x-costgate-cost-usd": "0", **error.headers},
    )


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
