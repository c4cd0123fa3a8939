"""The streaming runtime loop against the local stand-in of Lambda's Runtime API."""

import base64
import json
import threading
import time
from typing import Any

import pytest
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

from costgate.runtime.loop import LambdaContext, as_streaming, is_streaming, streaming
from costgate.runtime.prelude import CONTENT_TYPE, HttpPrelude
from costgate.runtime.stream import ResponseStream
from costgate_local.stack.runtime_api import FunctionError, ResponseChunk, ResponseEnd
from tests.runtime.conftest import WAIT_S, Serve, read_all


def test_a_streaming_handler_reaches_the_caller_chunk_by_chunk(serve: Serve) -> None:
    # Given a handler that writes its second chunk only after the test has received the first
    release = threading.Event()

    @streaming
    def handler(event: Any, context: Any, *, response_stream: ResponseStream) -> None:
        response_stream.start(HttpPrelude(200, {"content-type": "text/event-stream"}))
        response_stream.write(b"event: one\n\n")
        assert release.wait(WAIT_S)
        response_stream.write(b"event: two\n\n")

    api = serve(handler, 1)
    pending = api.invoke({"path": "/v1/messages"})
    # When the first chunks arrive, the handler is still blocked: so they were not buffered
    first = b""
    while b"event: one" not in first:
        item = pending.get(WAIT_S)
        assert isinstance(item, ResponseChunk)
        first += item.data
    assert not release.is_set()
    release.set()
    rest = b""
    while not isinstance(item := pending.get(WAIT_S), ResponseEnd):
        assert isinstance(item, ResponseChunk)
        rest += item.data
    # Then the request was the Runtime API's streaming mode, the prelude first, and no error trailers
    assert pending.response_mode == "streaming"
    assert pending.content_type == CONTENT_TYPE
    assert first.startswith(HttpPrelude(200, {"content-type": "text/event-stream"}).encode())
    assert rest == b"event: two\n\n"
    assert item.trailers == {}


def test_an_error_before_the_first_byte_goes_to_the_error_endpoint(serve: Serve) -> None:
    @streaming
    def handler(event: Any, context: Any, *, response_stream: ResponseStream) -> None:
        raise KeyError("no such tenant")

    pending = serve(handler, 1).invoke({})
    item = pending.get(WAIT_S)
    assert isinstance(item, FunctionError)
    assert item.error_type == "KeyError"
    assert item.body["errorType"] == "KeyError"
    assert "no such tenant" in item.body["errorMessage"]
    assert any("raise KeyError" in line for line in item.body["stackTrace"])


def test_an_error_after_the_first_byte_goes_into_the_trailers(serve: Serve) -> None:
    @streaming
    def handler(event: Any, context: Any, *, response_stream: ResponseStream) -> None:
        response_stream.start(HttpPrelude(200))
        response_stream.write(b"partial")
        raise ConnectionResetError("Claude went away")

    reader, body, end = read_all(serve(handler, 1).invoke({}))
    assert reader.prelude == HttpPrelude(200)
    assert body == b"partial"
    assert isinstance(end, ResponseEnd)
    assert end.trailers["lambda-runtime-function-error-type"] == "ConnectionResetError"
    report = json.loads(base64.b64decode(end.trailers["lambda-runtime-function-error-body"]))
    assert report["errorMessage"] == "Claude went away"


def test_a_handler_that_never_starts_its_response_is_an_error(serve: Serve) -> None:
    @streaming
    def handler(event: Any, context: Any, *, response_stream: ResponseStream) -> None:
        return None

    item = serve(handler, 1).invoke({}).get(WAIT_S)
    assert isinstance(item, FunctionError)
    assert item.error_type == "PreludeError"


def test_a_proxy_response_handler_answers_through_the_stream(serve: Serve) -> None:
    # Given a plain handler returning a REST proxy response (what ApiFunction's Powertools routes return)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {"statusCode": 418, "multiValueHeaders": {"x-n": ["1", "2"]}, "body": json.dumps(event)}

    assert not is_streaming(handler)
    reader, body, end = read_all(serve(as_streaming(handler), 1).invoke({"q": "차"}))
    assert reader.prelude == HttpPrelude(418, multi_value_headers={"x-n": ["1", "2"]})
    assert json.loads(body) == {"q": "차"}
    assert end == ResponseEnd({})


def test_the_context_has_the_invocation_and_the_deadline(serve: Serve) -> None:
    seen: list[LambdaContext] = []

    @streaming
    def handler(event: Any, context: LambdaContext, *, response_stream: ResponseStream) -> None:
        seen.append(context)
        response_stream.start(HttpPrelude(204))

    api = serve(handler, 1, timeout_s=120, function_arn="arn:aws:lambda:eu-west-1:1:function:f")
    pending = api.invoke({})
    assert read_all(pending)[2] == ResponseEnd({})
    (context,) = seen
    assert context.aws_request_id == pending.request_id
    assert context.invoked_function_arn == "arn:aws:lambda:eu-west-1:1:function:f"
    assert context.deadline_ms == pending.deadline_ms
    assert 100_000 < context.get_remaining_time_in_millis() <= 120_000
    assert context.function_name == "ApiFunction"
    assert context.memory_limit_in_mb == 1024


def test_the_trace_header_is_set_for_each_invocation(serve: Serve) -> None:
    environ: dict[str, str] = {"_X_AMZN_TRACE_ID": "stale"}
    seen: list[str | None] = []

    @streaming
    def handler(event: Any, context: Any, *, response_stream: ResponseStream) -> None:
        seen.append(environ.get("_X_AMZN_TRACE_ID"))
        response_stream.start(HttpPrelude(200))

    api = serve(handler, 2, environ=environ)
    read_all(api.invoke({}, trace_id="Root=1-abc;Parent=def;Sampled=1"))
    read_all(api.invoke({}))
    assert seen == ["Root=1-abc;Parent=def;Sampled=1", None]


def test_an_event_that_is_not_json_is_reported_and_the_loop_goes_on(serve: Serve) -> None:
    @streaming
    def handler(event: Any, context: Any, *, response_stream: ResponseStream) -> None:
        response_stream.start(HttpPrelude(200))
        response_stream.write(json.dumps(event).encode())

    api = serve(handler, 2)
    item = api.invoke(b"{not json").get(WAIT_S)
    assert isinstance(item, FunctionError)
    assert item.error_type == "Runtime.UnmarshalError"
    assert read_all(api.invoke({"ok": True}))[1] == b'{"ok": true}'


def test_a_client_that_goes_away_does_not_stop_the_handler(serve: Serve) -> None:
    # Given a caller that stops reading after the first chunk (API Gateway lost its client)
    finished = threading.Event()

    @streaming
    def handler(event: Any, context: Any, *, response_stream: ResponseStream) -> None:
        response_stream.start(HttpPrelude(200))
        for n in range(50):
            response_stream.write(b"chunk %d\n" % n)
        finished.set()

    api = serve(handler, 1)
    pending = api.invoke({})
    assert isinstance(pending.get(WAIT_S), ResponseChunk)
    pending.abandon()
    # Then the handler still writes to its end, and the invocation completes without an error of its own:
    # whether its body ended before the closed connection was noticed is a race, which only the stand-in's
    # own closed-stream mark tells apart
    assert finished.wait(WAIT_S)
    while not isinstance(item := pending.get(WAIT_S), ResponseEnd):
        pass
    assert item.trailers in ({}, {"lambda-runtime-function-error-type": "Runtime.ResponseStreamClosed"})


def test_powertools_decorators_keep_the_stream_and_the_mark(serve: Serve, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a handler under Logger, Tracer and Metrics, as ApiFunction's handler is
    logger, tracer, metrics = Logger(service="costgate-test"), Tracer(disabled=True), Metrics(namespace="Test")
    seen: dict[str, Any] = {}

    @logger.inject_lambda_context
    @tracer.capture_lambda_handler
    @metrics.log_metrics
    @streaming
    def handler(event: Any, context: Any, *, response_stream: ResponseStream) -> None:
        seen["request_id"] = logger.get_current_keys().get("function_request_id")
        metrics.add_metric(name="StreamedRequests", unit=MetricUnit.Count, value=1)
        response_stream.start(HttpPrelude(200))

    assert is_streaming(handler)
    pending = serve(handler, 1).invoke({})
    assert read_all(pending)[2] == ResponseEnd({})
    # Then the logger saw the invocation's request id, and the metric was flushed as EMF on stdout
    assert seen["request_id"] == pending.request_id
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert [blob["StreamedRequests"] for blob in emf] == [[1.0]]


def test_a_dropped_idle_connection_is_reopened(serve: Serve) -> None:
    # Given a Runtime API that closes every connection after answering, without saying so
    @streaming
    def handler(event: Any, context: Any, *, response_stream: ResponseStream) -> None:
        response_stream.start(HttpPrelude(200))
        response_stream.write(json.dumps(event).encode())

    api = serve(handler, 3, keep_alive=False)
    # Then each /next after the first reconnects, and the loop serves every invocation
    assert [read_all(api.invoke({"n": n}))[1] for n in range(3)] == [b'{"n": 0}', b'{"n": 1}', b'{"n": 2}']


def test_the_loop_ends_when_the_runtime_api_goes_away(serve: Serve) -> None:
    @streaming
    def handler(event: Any, context: Any, *, response_stream: ResponseStream) -> None:
        response_stream.start(HttpPrelude(200))

    api = serve(handler, 100)
    read_all(api.invoke({}))
    start = time.monotonic()
    api.close()  # the fixture then checks that the loop thread has ended
    assert time.monotonic() - start < WAIT_S
