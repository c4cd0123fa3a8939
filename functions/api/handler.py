"""ApiFunction: the gateway's HTTP entry point (API Gateway REST proxy events, every route in STREAM mode).

The function runs on costgate's own runtime loop (`costgate.runtime`, started by its exec wrapper), which
calls `lambda_handler` with the invocation's response stream. `POST /v1/messages` goes straight to the
gateway: a streamed answer is relayed as Claude sends it, anything else is written in one piece. Every
other route goes through Powertools' resolver, its proxy response written as one prelude and one body; the
resolver is built on the first such request, so a cold start for `POST /v1/messages` does not import it.
"""

import base64
import json
import os
import time
from functools import cache
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from costgate.accounting.ports import LedgerStore
from costgate.cache.answers import AnswerCache
from costgate.claude.messages import HttpUpstream
from costgate.clock import SystemClock
from costgate.dal.answer_cache import DynamoAnswerCacheStore
from costgate.dal.budgets import DynamoBudgetStore
from costgate.dal.features import DynamoFeatureStore
from costgate.dal.keys import DynamoKeyStore
from costgate.dal.ledger import DynamoLedgerStore
from costgate.dal.prompt_cache import DynamoPromptCacheStore
from costgate.dal.secrets import CachedSecret
from costgate.dal.table import bind_table
from costgate.errors import CostgateError, InternalError, NotFoundError, error_response
from costgate.gateway.admission import GatewayRequest, GatewayResponse
from costgate.gateway.receipts import receipt_document
from costgate.gateway.service import Gateway
from costgate.gateway.streaming import DetachedSink, StreamedAnswer
from costgate.observability import logger, tracer
from costgate.runtime.loop import streaming
from costgate.runtime.prelude import HttpPrelude, from_proxy_response
from costgate.runtime.stream import ResponseStream
from costgate.settings import ApiSettings

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response

    from costgate.cache.embedding import Embedder

# Time kept back from the Lambda timeout so a late answer is still priced and recorded.
RECORDING_MARGIN_S = 15.0
MESSAGES_RESOURCE = "/v1/messages"
INTERNAL_MESSAGE = "internal error in costgate; quote the request-id header when reporting it"
# The Claude key is read through the table connection's botocore session (not Powertools' parameters, which
# import boto3 and build a second session on a cold start), and read again after this time (rotation).
SECRET_MAX_AGE_S = 300
JSON = "application/json"


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
            api_key=CachedSecret(config.claude_key_secret, SECRET_MAX_AGE_S),
        ),
        clock=SystemClock(),
    )


def _embedder(name: str) -> "Embedder":
    # The embedder (and numpy with it) loads on the first semantic lookup, not with this module.
    from costgate.cache.embedding import embedder_for  # noqa: PLC0415

    if name == "titan-v2":
        # Only Titan deployments pay for boto3 and the Bedrock client, and only on the first semantic lookup.
        import boto3  # noqa: PLC0415

        return embedder_for(name, client=boto3.client("bedrock-runtime"))
    return embedder_for(name)


@cache
def router() -> "APIGatewayRestResolver":
    """Powertools' resolver for every route but `POST /v1/messages`. Built on the first request it serves:
    importing Powertools' event_handler (AppSync's resolver and asyncio with it) cost ~55 ms of every cold start
    (bench_gateway's import breakdown), and most cold starts are a message's."""
    from aws_lambda_powertools.event_handler import APIGatewayRestResolver  # noqa: PLC0415

    app = APIGatewayRestResolver()
    app.get("/v1/health")(health)
    app.get("/v1/costs")(costs)
    app.get("/v1/requests/<request_id>")(request_receipt)
    app.post("/v1/messages/count_tokens")(count_tokens)
    app.not_found(not_found)
    app.exception_handler(CostgateError)(costgate_error)
    app.exception_handler(Exception)(unexpected_error)
    return app


def health() -> dict[str, str]:
    return {"status": "ok"}


def costs() -> dict[str, Any]:
    from costgate.accounting.report import CostReportRequest, build_report  # noqa: PLC0415 - off the messages path

    request = CostReportRequest.from_query(router().current_event.query_string_parameters or {})
    return build_report(ledger_store(), request).as_json()


def request_receipt(request_id: str) -> dict[str, Any]:
    """The ledger row of one of the caller's own requests (by its x-costgate-request-id), else 404."""
    headers = {name.lower(): value for name, value in (router().current_event.headers or {}).items()}
    return receipt_document(gateway().find_request(headers, request_id))


def count_tokens() -> "Response[str]":
    app = router()
    answer = gateway().count_tokens(_gateway_request(app.current_event.raw_event, app.lambda_context))
    return _response(answer.status, answer.body.decode("utf-8"), answer.headers)


def _gateway_request(event: dict[str, Any], context: LambdaContext) -> GatewayRequest:
    raw = event.get("body") or ""
    body = base64.b64decode(raw) if event.get("isBase64Encoded") else raw.encode("utf-8")
    remaining_s = context.get_remaining_time_in_millis() / 1000
    return GatewayRequest(
        body=body,
        headers={name.lower(): value for name, value in (event.get("headers") or {}).items()},
        deadline=time.monotonic() + max(remaining_s - RECORDING_MARGIN_S, 0.0),
    )


def _messages(event: dict[str, Any], context: LambdaContext, stream: ResponseStream) -> None:
    """POST /v1/messages: the gateway's answer, streamed as Claude streams it or written whole."""
    request_id = event["requestContext"]["requestId"]
    try:
        answer = gateway().create_message(_gateway_request(event, context))
    except CostgateError as error:
        _write_error(stream, error, request_id)
        return
    except Exception:  # noqa: BLE001 - the client gets Anthropic's 500 shape; the traceback goes to the log
        _write_error(stream, InternalError(INTERNAL_MESSAGE), request_id)
        return
    try:
        stream.start(HttpPrelude(answer.status, answer.headers))
    except Exception:
        if isinstance(answer, StreamedAnswer):
            answer.relay(DetachedSink())  # Claude is still read to the end and the request recorded
        raise
    if isinstance(answer, GatewayResponse):
        stream.write(answer.body)
    else:
        answer.relay(stream)


def not_found(_: Exception) -> "Response[str]":
    event = router().current_event
    return _error(NotFoundError(f"no route for {event.http_method} {event.path}"))


def costgate_error(error: CostgateError) -> "Response[str]":
    return _error(error)


def unexpected_error(error: Exception) -> "Response[str]":
    return _error(InternalError(INTERNAL_MESSAGE))


def _error(error: CostgateError) -> "Response[str]":
    status, headers, body = _error_parts(error, router().current_event.request_context.request_id)
    return _response(status, body, {"Content-Type": JSON, **headers})


def _response(status: int, body: str, headers: dict[str, str]) -> "Response[str]":
    from aws_lambda_powertools.event_handler import Response  # noqa: PLC0415 - loaded with router()

    return Response(status_code=status, body=body, headers=headers)


def _write_error(stream: ResponseStream, error: CostgateError, request_id: str) -> None:
    status, headers, body = _error_parts(error, request_id)
    stream.start(HttpPrelude(status, {"Content-Type": JSON, **headers}))
    stream.write(body.encode("utf-8"))


def _error_parts(error: CostgateError, request_id: str) -> tuple[int, dict[str, str], str]:
    status, body = error_response(error, request_id)
    if status >= 500:
        # Called inside the `except`, so the traceback of the cause is logged too.
        logger.exception(error.message)
    else:
        logger.info(
            "request rejected",
            extra={"status": status, "error_type": error.error_type, "reason": error.message},
        )
    # Nothing was billed for a request costgate refused (or that failed before Claude answered).
    return status, {"request-id": request_id, "x-costgate-cost-usd": "0", **error.headers}, json.dumps(body)


@streaming
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext, response_stream: ResponseStream) -> None:
    if event.get("httpMethod") == "POST" and event.get("resource") == MESSAGES_RESOURCE:
        _messages(event, context, response_stream)
        return
    prelude, body = from_proxy_response(router().resolve(event, context))
    response_stream.start(prelude)
    response_stream.write(body)
