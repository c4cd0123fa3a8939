"""A client of Lambda's Runtime API (version 2018-06-01), with its streaming response mode.

Endpoints (https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html):
- GET  /runtime/invocation/next: the next event; headers carry the request id, the deadline
  (`Lambda-Runtime-Deadline-Ms`, epoch milliseconds), the function ARN and the X-Ray trace header.
  No timeout on this call: the environment may be frozen between two invocations.
- POST /runtime/invocation/{id}/response: the answer. In streaming mode the runtime sends
  `Lambda-Runtime-Function-Response-Mode: streaming` and `Transfer-Encoding: chunked`, writes HTTP/1.1
  chunks as the body is produced, and closes the connection afterwards. An error after the first byte
  goes into the trailers `Lambda-Runtime-Function-Error-Type` and `Lambda-Runtime-Function-Error-Body`
  (base64), which the request must announce in its `Trailer` header
  (https://docs.aws.amazon.com/lambda/latest/dg/runtimes-custom.html#runtimes-custom-response-streaming).
- POST /runtime/invocation/{id}/error: an error before the first byte of the response.
- POST /runtime/init/error: the function could not be initialised.
- GET  /runtime/restore/next and POST /runtime/restore/error: SnapStart's restore phase.

http.client writes the requests: chunked framing with trailers is a few lines, and no library in the
layer sends trailers (http.client's and urllib3's chunked bodies end without them).
"""

import base64
import http.client
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from costgate.errors import RuntimeApiError

VERSION = "2018-06-01"
ERROR_TYPE_HEADER = "Lambda-Runtime-Function-Error-Type"
ERROR_BODY_TRAILER = "Lambda-Runtime-Function-Error-Body"
RESPONSE_MODE_HEADER = "Lambda-Runtime-Function-Response-Mode"


@dataclass(frozen=True)
class ErrorReport:
    """An error as the Runtime API takes it: a type (`Category.Reason`), a message and a stack trace."""

    error_type: str
    message: str
    stack_trace: tuple[str, ...] = ()

    def to_json(self) -> bytes:
        document = {"errorType": self.error_type, "errorMessage": self.message, "stackTrace": list(self.stack_trace)}
        return json.dumps(document).encode("utf-8")


@dataclass(frozen=True)
class Invocation:
    """One event from /next and the headers that describe it."""

    request_id: str
    deadline_ms: int
    function_arn: str
    trace_id: str | None
    client_context: str | None
    cognito_identity: str | None
    body: bytes


class ChunkedPost:
    """An open POST whose body is written as HTTP/1.1 chunks, ended with optional trailers."""

    def __init__(self, connection: http.client.HTTPConnection, path: str, headers: Mapping[str, str]) -> None:
        self._connection = connection
        self._path = path
        connection.putrequest("POST", path, skip_accept_encoding=True)
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.putheader("Transfer-Encoding", "chunked")
        connection.endheaders()

    def write(self, data: bytes) -> None:
        if data:  # an empty chunk would end the body
            self._connection.send(b"%x\r\n%b\r\n" % (len(data), data))

    def finish(self, trailers: Mapping[str, str] | None = None) -> None:
        """End the body (with `trailers`), read the Runtime API's answer and close the connection."""
        lines = b"".join(f"{name}: {value}\r\n".encode("latin-1") for name, value in (trailers or {}).items())
        try:
            self._connection.send(b"0\r\n" + lines + b"\r\n")
            response = self._connection.getresponse()
            answer = response.read()
        finally:
            self._connection.close()
        if response.status != http.client.ACCEPTED:
            raise RuntimeApiError(f"POST {self._path}: {response.status} {answer[:500]!r}")

    def abort(self) -> None:
        self._connection.close()


class RuntimeApiClient:
    """Talks to the Runtime API at `address` (the value of AWS_LAMBDA_RUNTIME_API, host:port)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._connection = http.client.HTTPConnection(address)

    def next_invocation(self) -> Invocation:
        status, headers, body = self._call("GET", "runtime/invocation/next")
        if status != http.client.OK:
            raise RuntimeApiError(f"GET next: {status} {body[:500]!r}")
        try:
            request_id = headers["lambda-runtime-aws-request-id"]
            deadline_ms = int(headers["lambda-runtime-deadline-ms"])
        except (KeyError, ValueError) as error:
            raise RuntimeApiError(f"GET next: missing or bad invocation header {error}") from None
        return Invocation(
            request_id=request_id,
            deadline_ms=deadline_ms,
            function_arn=headers.get("lambda-runtime-invoked-function-arn", ""),
            trace_id=headers.get("lambda-runtime-trace-id"),
            client_context=headers.get("lambda-runtime-client-context"),
            cognito_identity=headers.get("lambda-runtime-cognito-identity"),
            body=body,
        )

    def open_response_stream(self, request_id: str, content_type: str) -> ChunkedPost:
        """Start a streamed response on a connection of its own (closed when the response ends)."""
        connection = http.client.HTTPConnection(self.address)
        headers = {
            RESPONSE_MODE_HEADER: "streaming",
            "Content-Type": content_type,
            "Trailer": f"{ERROR_TYPE_HEADER}, {ERROR_BODY_TRAILER}",
        }
        try:
            return ChunkedPost(connection, f"/{VERSION}/runtime/invocation/{request_id}/response", headers)
        except OSError as error:
            connection.close()
            raise RuntimeApiError(f"POST response: {error}") from error

    def post_invocation_error(self, request_id: str, error: ErrorReport) -> None:
        self._post_error(f"runtime/invocation/{request_id}/error", error)

    def post_init_error(self, error: ErrorReport) -> None:
        self._post_error("runtime/init/error", error)

    def restore_next(self) -> None:
        status, _, body = self._call("GET", "runtime/restore/next")
        if status != http.client.OK:
            raise RuntimeApiError(f"GET restore/next: {status} {body[:500]!r}")

    def post_restore_error(self, error: ErrorReport) -> None:
        self._post_error("runtime/restore/error", error)

    def close(self) -> None:
        self._connection.close()

    def _post_error(self, path: str, error: ErrorReport) -> None:
        status, _, body = self._call("POST", path, error.to_json(), {ERROR_TYPE_HEADER: error.error_type})
        if status != http.client.ACCEPTED:
            raise RuntimeApiError(f"POST {path}: {status} {body[:500]!r}")

    def _call(
        self, method: str, path: str, body: bytes | None = None, headers: Mapping[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        # A kept-alive connection may have been closed while the environment was frozen: the first
        # failure to reuse it is retried once on a new connection; a second failure is the Runtime API's.
        for attempt in (1, 2):
            try:
                self._connection.request(method, f"/{VERSION}/{path}", body=body, headers=dict(headers or {}))
                response = self._connection.getresponse()
                data = response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as error:
                self._connection.close()
                if attempt == 2:
                    raise RuntimeApiError(f"{method} {path}: {error}") from error
                continue
            except (OSError, http.client.HTTPException) as error:
                self._connection.close()
                raise RuntimeApiError(f"{method} {path}: {error}") from error
            return response.status, {name.lower(): value for name, value in response.getheaders()}, data
        raise AssertionError("unreachable")


def trailer_report(error: ErrorReport) -> dict[str, str]:
    """The trailers that report an error after the first byte of a streamed response."""
    return {ERROR_TYPE_HEADER: error.error_type, ERROR_BODY_TRAILER: base64.b64encode(error.to_json()).decode("ascii")}


def decode_error_body(value: str) -> dict[str, Any]:
    """The JSON of a base64 `Lambda-Runtime-Function-Error-Body` trailer."""
    document: dict[str, Any] = json.loads(base64.b64decode(value))
    return document
