"""What every Claude client shares on the wire: the response as received, how a failed attempt is
classified for the `UpstreamErrors` metric, and the connection settings.

The messages client (`claude.messages`) and the Message Batches client (`claude.batches`) both count
each attempt through `emit_upstream_attempt` with `status_error_type` / `transport_error_type`, so the
upstream metrics and their alarm cover every call costgate makes to Claude.
"""

import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from urllib3.exceptions import NewConnectionError
from urllib3.exceptions import TimeoutError as TransportTimeout

from costgate.claude.usage import FinalUsage, read_final_usage

HOP_BY_HOP_HEADERS = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "transfer-encoding"}
    | {"upgrade", "proxy-connection"}
)
CONNECT_TIMEOUT_S = 5.0
USER_AGENT = "costgate/0.1"


class UpstreamErrorType(StrEnum):
    """Why an attempt at Claude failed: the `ErrorType` of the `UpstreamErrors` metric (a bounded set)."""

    TIMEOUT = "timeout"
    CONNECTION = "connection"
    RATE_LIMITED = "rate_limited"
    OVERLOADED = "overloaded"
    SERVER_ERROR = "server_error"


@dataclass(frozen=True)
class UpstreamResponse:
    """Claude's answer as received: `headers` has lower-case names; `body` is the bytes on the wire
    (de-chunked, never decoded); `attempts` counts every attempt made, the answered one included;
    `latency_s` is the answered attempt's time to its response headers, None where nothing measured it."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    attempts: int = 1
    latency_s: float | None = None

    def final_usage(self) -> FinalUsage | None:
        """The billable usage and model of a message (JSON or SSE), or None when the body has none."""
        body = decoded_body(self.body, self.headers.get("content-encoding", ""))
        if body is None:
            return None
        return read_final_usage(body, self.headers.get("content-type", ""))


def status_error_type(status: int) -> UpstreamErrorType | None:
    """The upstream error an HTTP answer is, or None for a success or an error the request caused."""
    if status == 429:
        return UpstreamErrorType.RATE_LIMITED
    if status == 529:
        return UpstreamErrorType.OVERLOADED
    if status == 408:  # the API gave up waiting for the request: the way there, not its content
        return UpstreamErrorType.TIMEOUT
    if status >= 500:
        return UpstreamErrorType.SERVER_ERROR
    return None


def transport_error_type(error: Exception) -> UpstreamErrorType:
    """An attempt that got no HTTP answer: timed out (connect or read), else could not connect or talk."""
    # urllib3's NewConnectionError (refused, DNS) subclasses its ConnectTimeoutError: checked first.
    if isinstance(error, NewConnectionError):
        return UpstreamErrorType.CONNECTION
    if isinstance(error, TransportTimeout | TimeoutError):
        return UpstreamErrorType.TIMEOUT
    return UpstreamErrorType.CONNECTION


def decoded_body(body: bytes, content_encoding: str) -> bytes | None:
    """The body without its content coding, for reading only; None for a coding it cannot undo."""
    coding = content_encoding.strip().lower()
    if coding in ("", "identity"):
        return body
    # wbits: 31 a gzip header, 15 a zlib header (HTTP's "deflate"), -15 raw deflate (what some servers send).
    formats = {"gzip": (31,), "x-gzip": (31,), "deflate": (15, -15)}.get(coding, ())
    for wbits in formats:
        try:
            return zlib.decompress(body, wbits)
        except zlib.error:
            continue
    return None
