"""The local front in STREAM mode, over real sockets: what API Gateway does with a streamed Lambda response."""

import http.client
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import pytest
import urllib3
from werkzeug.serving import make_server

from costgate.runtime.api import RuntimeApiClient
from costgate.runtime.loop import streaming
from costgate.runtime.prelude import CONTENT_TYPE, HttpPrelude
from costgate.runtime.stream import ResponseStream
from costgate_local.simulator import Simulator
from costgate_local.stack.front import ApiFront, LocalFunction, _route, _template_route
from costgate_local.stack.front_stream import MAX_REQUEST_BYTES, streamed_response
from costgate_local.stack.runtime_api import LocalRuntimeApi

WAIT_S = 10.0

type Connect = Callable[..., http.client.HTTPConnection]
type Serve = Callable[[LocalFunction], Connect]


def _function(handler: Any, *, timeout_s: float = WAIT_S, path: str = "/v1/messages") -> LocalFunction:
    return LocalFunction(
        logical_id="ApiFunction",
        handler=handler,
        memory_mb=1024,
        timeout_s=900,
        environment={},
        routes=(_route("POST", path, streaming=True, timeout_s=timeout_s), _route("GET", "/v1/health")),
    )


@pytest.fixture
def serve() -> Iterator[Serve]:
    """`serve(function)`: the front on 127.0.0.1 in a thread; returns a connection factory."""
    servers: list[tuple[Any, threading.Thread, LocalFunction]] = []

    def start(function: LocalFunction) -> Connect:
        server = make_server("127.0.0.1", 0, ApiFront(function), threaded=True)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        servers.append((server, thread, function))
        return lambda: http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=WAIT_S)

    yield start
    for server, thread, function in servers:
        server.shutdown()
        server.server_close()
        thread.join(timeout=WAIT_S)
        function.close()


def _post(connect: Connect, body: bytes = b"{}", path: str = "/v1/messages") -> http.client.HTTPResponse:
    connection = connect()
    connection.request("POST", path, body=body, headers={"content-type": "application/json"})
    return connection.getresponse()


def test_status_headers_and_body_arrive_as_the_function_streams(serve: Serve) -> None:
    # Given a streaming handler that sends its second event only once the client has read the first
    release = threading.Event()

    @streaming
    def handler(event: Any, context: Any, *, response_stream: ResponseStream) -> None:
        response_stream.start(
            HttpPrelude(200, {"content-type": "text/event-stream"}, {"x-costgate-model": ["claude-haiku-5-5"]}, ["s=1"])
        )
        response_stream.write(b"event: message_start\ndata: {}\n\n")
        assert release.wait(WAIT_S)
        response_stream.write(b"event: message_stop\ndata: {}\n\n")

    response = _post(serve(_function(handler)))
    # Then status and headers come from the prelude, the body is chunked, and the first event is readable
    # while the function is still blocked, i.e. nothing buffered it
    assert response.status == 200
    assert response.getheader("content-type") == "text/event-stream"
    assert response.getheader("x-costgate-model") == "claude-haiku-5-5"
    assert response.getheader("set-cookie") == "s=1"
    assert response.getheader("transfer-encoding") == "chunked"
    first = b""
    while not first.endswith(b"\n\n"):
        first += response.read1()
    assert first == b"event: message_start\ndata: {}\n\n"
    assert not release.is_set()
    release.set()
    assert response.read() == b"event: message_stop\ndata: {}\n\n"


def test_a_proxy_response_handler_works_on_a_stream_route(serve: Serve) -> None:
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {"statusCode": 201, "headers": {"content-type": "application/json"}, "body": event["body"]}

    response = _post(serve(_function(handler)), b'{"q": 1}')
    assert response.status == 201
    assert response.read() == b'{"q": 1}'


def test_a_function_error_before_the_first_byte_is_a_502(serve: Serve) -> None:
    @streaming
    def handler(event: Any, context: Any, *, response_stream: ResponseStream) -> None:
        raise RuntimeError("no secret")

    response = _post(serve(_function(handler)))
    assert response.status == 502
    assert json.loads(response.read()) == {"message": "Internal server error"}


def test_no_prelude_within_the_integration_timeout_is_a_504(serve: Serve) -> None:
    done = threading.Event()

    @streaming
    def handler(event: Any, context: Any, *, response_stream: ResponseStream) -> None:
        assert done.wait(WAIT_S)
        response_stream.start(HttpPrelude(200))

    response = _post(serve(_function(handler, timeout_s=0.2)))
    assert response.status == 504
    assert json.loads(response.read()) == {"message": "Endpoint request timed out"}
    done.set()


def test_an_error_after_the_first_byte_cuts_the_stream(serve: Serve) -> None:
    @streaming
    def handler(event: Any, context: Any, *, response_stream: ResponseStream) -> None:
        response_stream.start(HttpPrelude(200, {"content-type": "text/event-stream"}))
        response_stream.write(b"event: ping\ndata: {}\n\n")
        raise ConnectionResetError("upstream reset")

    response = _post(serve(_function(handler)))
    assert response.status == 200
    with pytest.raises(http.client.IncompleteRead) as raised:
        response.read()
    assert raised.value.partial == b"event: ping\ndata: {}\n\n"


def test_a_client_that_hangs_up_leaves_the_function_running_to_its_end(serve: Serve) -> None:
    # Given a function that writes 200 chunks, and a client that reads one and hangs up
    finished = threading.Event()
    second_call = threading.Event()

    @streaming
    def handler(event: Any, context: Any, *, response_stream: ResponseStream) -> None:
        response_stream.start(HttpPrelude(200))
        if event["body"] == "second":
            second_call.set()
            return
        for n in range(200):
            response_stream.write(b"%d," % n)
        finished.set()

    function = _function(handler)
    connect = serve(function)
    response = _post(connect)
    assert response.read1()
    response.close()
    # Then the function still ran to its end, and its environment serves the next request
    assert finished.wait(WAIT_S)
    assert _post(connect, b"second").status == 200
    assert second_call.is_set()


def test_a_body_over_10_mb_is_refused_before_the_function_runs(serve: Serve) -> None:
    calls: list[Any] = []

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        calls.append(event)
        return {"statusCode": 200, "body": ""}

    connect = serve(_function(handler))
    response = _post(connect, b"x" * (MAX_REQUEST_BYTES + 1))
    assert response.status == 413
    body = json.loads(response.read())
    assert body["type"] == "error"
    assert body["error"]["type"] == "request_too_large"
    assert calls == []
    # exactly 10 MB passes (the same front, on a buffered route, answers)
    connection = connect()
    connection.request("GET", "/v1/health", body=b"y" * MAX_REQUEST_BYTES)
    assert connection.getresponse().status == 200
    assert len(calls) == 1


def test_a_stream_without_a_valid_prelude_is_a_500() -> None:
    # Given a runtime that breaks the format: raw bytes, no prelude, no delimiter
    with LocalRuntimeApi() as api:
        pending = api.invoke({})
        client = RuntimeApiClient(api.address)
        invocation = client.next_invocation()
        post = client.open_response_stream(invocation.request_id, CONTENT_TYPE)
        post.write(b"data: not a prelude\n\n")
        post.finish()
        # When the front turns it into an HTTP response
        response = streamed_response(pending, WAIT_S, {})
        # Then it is API Gateway's 500, as the developer guide's table says for a malformed stream
        assert response.status_code == 500
        assert response.get_json() == {"message": "Internal server error"}


@pytest.mark.parametrize(
    ("properties", "streaming", "timeout_s"),
    [
        ({"ResponseTransferMode": "RESPONSE_STREAM", "TimeoutInMillis": 900000}, True, 900.0),
        # SAM ignores the CloudFormation spelling: the integration stays buffered
        ({"ResponseTransferMode": "STREAM"}, False, 29.0),
        ({"TimeoutInMillis": 12000}, False, 12.0),
    ],
)
def test_routes_read_their_transfer_mode_and_timeout(
    properties: dict[str, Any], streaming: bool, timeout_s: float
) -> None:
    route = _template_route({"Method": "post", "Path": "/v1/messages", **properties})
    assert route.streaming is streaming
    assert route.timeout_s == timeout_s


def test_the_sdk_reads_claudes_stream_relayed_through_the_front(serve: Serve) -> None:
    # Given a STREAM route whose function relays the simulator's stream byte for byte, then a receipt comment
    pool = urllib3.PoolManager()
    params: dict[str, Any] = {
        "model": "claude-sonnet-5-5",
        "max_tokens": 300,
        "messages": [{"role": "user", "content": "스트리밍으로 답해 주세요."}],
    }
    with Simulator() as sim:

        @streaming
        def relay(event: dict[str, Any], context: Any, *, response_stream: ResponseStream) -> None:
            upstream = pool.request(
                "POST",
                f"{sim.base_url}/v1/messages",
                body=event["body"].encode(),
                headers={"x-api-key": "sk-relay", "content-type": "application/json"},
                preload_content=False,
            )
            response_stream.start(HttpPrelude(upstream.status, {"content-type": upstream.headers["content-type"]}))
            for chunk in upstream.stream(64 * 1024):
                response_stream.write(chunk)
            response_stream.write(b': costgate-receipt {"cost_usd": "0.001"}\n\n')

        connection = serve(_function(relay))()
        front_url = f"http://127.0.0.1:{connection.port}"
        with anthropic.Anthropic(base_url=sim.base_url, api_key="sk-relay", max_retries=0) as direct:
            expected = direct.messages.create(**params)
        # When the SDK streams through the front
        client = anthropic.Anthropic(base_url=front_url, api_key="sk-relay", max_retries=0)
        with client, client.messages.stream(**params) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
    # Then it gets Claude's answer and usage, exactly as without the front
    assert text == expected.content[0].text
    assert final.usage == expected.usage
    assert [block.text for block in final.content if block.type == "text"] == [expected.content[0].text]
