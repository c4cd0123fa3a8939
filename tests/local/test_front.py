"""The local HTTP front: API Gateway REST proxy events in, proxy responses out, API Gateway's own errors."""

import json
import threading
import time
from typing import Any

from werkzeug.test import Client

from costgate_local.stack.front import ApiFront, LocalFunction, _route
from costgate_local.stack.template import load_template


def _function(handler: Any, *routes: tuple[str, str], timeout_s: float = 3.0) -> LocalFunction:
    return LocalFunction(
        logical_id="TestFunction",
        handler=handler,
        memory_mb=128,
        timeout_s=timeout_s,
        environment={},
        routes=tuple(_route(method, path) for method, path in routes),
    )


def _echo(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": json.dumps(event)}


def test_request_becomes_a_rest_proxy_event() -> None:
    # Given a front over a function that echoes its event
    client = Client(ApiFront(_function(_echo, ("POST", "/v1/items/{item}"))))
    # When a request with repeated headers and query parameters arrives
    response = client.post(
        "/v1/items/abc?tag=a&tag=b&one=1",
        data=b'{"x": 1}',
        headers=[("x-api-key", "k1"), ("X-Multi", "1"), ("X-Multi", "2")],
    )
    event = response.get_json()
    # Then the event has API Gateway v1's shape: single and multi-value maps, path parameters, context
    assert response.status_code == 200
    assert event["resource"] == "/v1/items/{item}"
    assert event["path"] == "/v1/items/abc"
    assert event["httpMethod"] == "POST"
    assert event["pathParameters"] == {"item": "abc"}
    assert event["queryStringParameters"] == {"tag": "b", "one": "1"}
    assert event["multiValueQueryStringParameters"] == {"tag": ["a", "b"], "one": ["1"]}
    assert event["headers"]["X-Api-Key"] == "k1"
    # WSGI folds a repeated header into one comma-joined value before the front sees it
    assert event["multiValueHeaders"]["X-Multi"] == ["1, 2"]
    assert event["body"] == '{"x": 1}'
    assert event["isBase64Encoded"] is False
    assert event["requestContext"]["resourcePath"] == "/v1/items/{item}"
    assert event["requestContext"]["requestId"]


def test_binary_body_is_base64_both_ways() -> None:
    # Given a function that returns the body it received, base64-encoded as binary
    def binary(event: dict[str, Any], context: Any) -> dict[str, Any]:
        assert event["isBase64Encoded"] is True
        return {"statusCode": 200, "body": event["body"], "isBase64Encoded": True}

    client = Client(ApiFront(_function(binary, ("POST", "/upload"))))
    # When non-UTF-8 bytes are posted
    payload = bytes([0xFF, 0xFE, 0x00, 0x81])
    response = client.post("/upload", data=payload)
    # Then the same bytes come back
    assert response.data == payload


def test_multi_value_response_headers_are_all_sent() -> None:
    def cookies(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {
            "statusCode": 201,
            "multiValueHeaders": {"x-costgate-a": ["1", "2"]},
            "headers": {"x-b": "3"},
            "body": "",
        }

    response = Client(ApiFront(_function(cookies, ("GET", "/h")))).get("/h")
    assert response.status_code == 201
    assert response.headers.getlist("x-costgate-a") == ["1", "2"]
    assert response.headers["x-b"] == "3"


def test_unknown_route_is_api_gateways_403() -> None:
    # Given a front with one GET route
    client = Client(ApiFront(_function(_echo, ("GET", "/v1/health"))))
    # When another path, or another method on the same path, is requested
    for response in (client.get("/v1/nothing"), client.post("/v1/health")):
        # Then API Gateway's answer comes back, not the function's
        assert response.status_code == 403
        assert response.get_json() == {"message": "Missing Authentication Token"}


def test_greedy_path_parameter_matches_slashes() -> None:
    client = Client(ApiFront(_function(_echo, ("ANY", "/files/{key+}"))))
    event = client.delete("/files/a/b/c.txt").get_json()
    assert event["pathParameters"] == {"key": "a/b/c.txt"}


def test_gateway_timeout_is_504_and_the_invocation_still_finishes() -> None:
    # Given a function slower than the integration timeout
    finished = threading.Event()

    def slow(event: dict[str, Any], context: Any) -> dict[str, Any]:
        time.sleep(0.5)
        finished.set()
        return {"statusCode": 200, "body": "late"}

    client = Client(ApiFront(_function(slow, ("GET", "/slow")), integration_timeout_s=0.1))
    # When it is called
    response = client.get("/slow")
    # Then the client gets API Gateway's 504 at once, and the function runs to its end anyway
    assert response.status_code == 504
    assert response.get_json() == {"message": "Endpoint request timed out"}
    assert not finished.is_set()
    assert finished.wait(timeout=5)


def test_unhandled_exception_or_malformed_response_is_502() -> None:
    def broken(event: dict[str, Any], context: Any) -> dict[str, Any]:
        raise RuntimeError("boom")

    def malformed(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {"body": "no status"}

    for handler in (broken, malformed):
        response = Client(ApiFront(_function(handler, ("GET", "/x")))).get("/x")
        assert response.status_code == 502
        assert response.get_json() == {"message": "Internal server error"}
        assert b"boom" not in response.data


def test_api_function_loads_from_the_template_with_its_routes_and_environment() -> None:
    # Given the repository's template
    refs = {"Table": "t-local", "Bucket": "b", "ClaudeApiUrl": "http://127.0.0.1:1", "ClaudeApiKeySecretName": "s"}
    function = LocalFunction.from_template(load_template(), "ApiFunction", refs=refs)
    # Then its handler, routes, globals and !Ref-resolved environment come from the template
    assert callable(function.handler)
    assert function.environment["COSTGATE_TABLE"] == "t-local"
    assert function.environment["POWERTOOLS_SERVICE_NAME"] == "costgate"
    assert {(r.method, r.resource) for r in function.routes} >= {("GET", "/v1/health"), ("GET", "/v1/costs")}
    assert function.environment["COSTGATE_UPSTREAM_URL"] == "http://127.0.0.1:1"
    assert function.timeout_s == 900
    assert function.context().get_remaining_time_in_millis() > 29_000
