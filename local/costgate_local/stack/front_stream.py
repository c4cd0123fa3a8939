"""The local front's STREAM transfer mode and request-size limit: what API Gateway does in front of Lambda.

STREAM mode (https://docs.aws.amazon.com/apigateway/latest/developerguide/response-transfer-mode.html):
API Gateway invokes the function with InvokeWithResponseStream, waits for the metadata prelude, sends
its status and headers, then relays the body as it comes, chunked. The integration timeout (up to
15 minutes) bounds the whole response; a regional endpoint also drops a stream idle for 5 minutes. A
prelude API Gateway cannot read is a 500, a function error before it a 502, no prelude within the
timeout a 504. What it sends after an error reported in the runtime's trailers is not documented:
locally the connection is closed without the last chunk, so the client sees an incomplete body.

Every request: API Gateway's REST payload limit is 10 MB. Above it the local front answers 413
`request_too_large` in Anthropic's error shape, before the function runs. (API Gateway itself answers
its default `{"message": ...}` there: its 413 REQUEST_TOO_LARGE gateway response cannot be customised.
The SDK raises the same RequestTooLargeError for both, as it goes by the status.)
"""

import contextlib
import json
import logging
import socket
import time
from collections.abc import Iterator
from typing import Any

from werkzeug.datastructures import Headers
from werkzeug.wrappers import Request, Response

from costgate.errors import PreludeError
from costgate.runtime.prelude import PreludeReader
from costgate_local.stack.runtime_api import FunctionError, PendingInvocation, ResponseChunk, ResponseEnd

log = logging.getLogger(__name__)

# "Payload size: 10 MB" (API Gateway quotas for REST APIs), read as 10 MiB.
MAX_REQUEST_BYTES = 10 * 1024 * 1024
STREAM_IDLE_TIMEOUT_S = 300.0  # regional and private endpoints
_HOP_BY_HOP = frozenset({"transfer-encoding", "connection", "keep-alive"})


def too_large(request: Request) -> Response | None:
    """API Gateway's refusal of a body over 10 MB, before anything reads it; None for a body within it."""
    if request.content_length is None or request.content_length <= MAX_REQUEST_BYTES:
        return None
    message = f"Request exceeds the maximum allowed number of bytes ({MAX_REQUEST_BYTES:,})"
    body = {"type": "error", "error": {"type": "request_too_large", "message": message}}
    # werkzeug's server reads and discards the unread body after the response, so the client sees the 413.
    return Response(json.dumps(body), status=413, content_type="application/json")


def streamed_response(pending: PendingInvocation, timeout_s: float, environ: dict[str, Any]) -> Response:
    """The HTTP response API Gateway's STREAM mode makes of an invocation's response stream."""
    deadline = time.monotonic() + timeout_s
    reader = PreludeReader()
    first = b""
    try:
        while reader.prelude is None:
            item = pending.get(_wait(deadline))
            if isinstance(item, FunctionError):
                log.error("the function failed before its response: %s %s", item.error_type, item.body)
                return gateway_error(502, "Internal server error")
            if isinstance(item, ResponseEnd):
                raise PreludeError("the response ended before its prelude")
            first += reader.feed(item.data)
    except TimeoutError:
        pending.abandon()
        return gateway_error(504, "Endpoint request timed out")
    except PreludeError as error:
        pending.abandon()
        log.error("the function's response is not in API Gateway's streaming format: %s", error)
        return gateway_error(500, "Internal server error")
    headers = Headers()
    for name, value in reader.prelude.header_list():
        if name.lower() not in _HOP_BY_HOP:
            headers.add(name, value)
    body = _relay(pending, first, deadline, environ)
    return Response(body, status=reader.prelude.status_code, headers=headers, direct_passthrough=True)


def gateway_error(status: int, message: str) -> Response:
    # API Gateway's own errors are not the function's: they have this shape, not Anthropic's.
    return Response(json.dumps({"message": message}), status=status, content_type="application/json")


def _relay(pending: PendingInvocation, first: bytes, deadline: float, environ: dict[str, Any]) -> Iterator[bytes]:
    """The body as it arrives; cut (no final chunk) on a late function error, the timeout or the idle limit."""
    try:
        if first:
            yield first
        while True:
            try:
                item = pending.get(min(STREAM_IDLE_TIMEOUT_S, _wait(deadline)))
            except TimeoutError:
                log.warning("stream cut: the integration timeout or the %s s idle limit passed", STREAM_IDLE_TIMEOUT_S)
                _cut(environ)
                return
            if isinstance(item, ResponseChunk):
                if item.data:
                    yield item.data
            elif isinstance(item, ResponseEnd) and not item.trailers:
                return
            else:
                log.error("stream cut: the function failed after its first byte: %s", item)
                _cut(environ)
                return
    finally:
        # The client may have gone (werkzeug closes this generator then): the function runs on regardless.
        pending.abandon()


def _wait(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the integration timeout passed")
    return left


def _cut(environ: dict[str, Any]) -> None:
    """End the response without its terminating chunk, as a dropped connection does."""
    connection: socket.socket | None = environ.get("werkzeug.socket")
    if connection is not None:
        with contextlib.suppress(OSError):  # the client may have closed it already
            connection.shutdown(socket.SHUT_RDWR)
