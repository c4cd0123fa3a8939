"""The API function's upstream: the Claude API over a pooled urllib3 connection, retried like the SDK.

Why not the `anthropic` SDK here: the gateway forwards the client's body BYTES and returns Claude's
response unchanged, so it needs no request or response models, and `import anthropic` (2.14) costs
about 0.9 s of a 400 ms cold-start budget. urllib3 ships with botocore, so it adds nothing to the
Lambda layer. Measured with `bench/bench_upstream_import.py` (`python -X importtime`, median of 5
fresh interpreters) on the 2-core dev machine while other test runs loaded it — `import anthropic`
took 4.7 s there against the 0.9 s of a quiet machine, so read the figures as ratios:

- `import costgate.upstream`, cold and alone: 0.93 s. Of that, `costgate.observability` is ~0.80 s
  (Powertools' Tracer imports aws_xray_sdk) and urllib3 ~0.16 s; the ApiFunction imports both
  anyway (its handler logs through Powertools; pynamodb → botocore → urllib3).
- What `costgate.upstream` adds after the handler's imports: 12.5 ms, compiling this file included
  (the dev shell sets PYTHONDONTWRITEBYTECODE); 3–5 ms from bytecode.
- `import anthropic`: 4.7 s, 5× the whole cold import above and ~380× what this module adds.

Contract of `HttpUpstream.post` (the `costgate.ports.Upstream` port):

- The body bytes go out untouched (never parsed or re-serialised). Of the client's headers only
  `anthropic-version` and `anthropic-beta` are forwarded, value for value: they choose the API's
  behaviour and must be the client's own. Everything else the client sent stays behind — its
  gateway key (`x-api-key` / `Authorization`), `x-costgate-*`, cookies, hop-by-hop headers —
  because only costgate's Claude key may authenticate to Anthropic and Anthropic has no use for
  the rest. `anthropic-dangerous-direct-browser-access` stays behind too: it vouches that a browser
  holds its own key, which is never true of costgate's server-side key.
- Content encoding: the request asks for `accept-encoding: identity` and urllib3's decoding is off.
  The gateway must read `usage` from the body to bill it, and compressing towards the client is API
  Gateway's job (its `minimumCompressionSize`), not Lambda's. Should Claude send an encoded body
  anyway, its bytes come back as received, with `content-encoding` and `content-length` unchanged,
  so the three stay consistent; `UpstreamResponse.final_usage()` decodes gzip/deflate to read it.
  Only hop-by-hop headers are dropped (`transfer-encoding` among them: the body is already de-chunked).
  Repeated response headers are joined with ", " (RFC 9110 field combination).
- Retries, like the SDK: `x-should-retry: true|false` decides when present; otherwise 408, 409, 429
  and every status ≥ 500 (529 included) are retried, and so are connection errors and timeouts (as
  in the SDK, a timed-out attempt may have reached Claude). The wait is `retry-after-ms`, else
  `retry-after` (seconds or an HTTP date), when that is > 0 and ≤ 60 s; else 0.5 s × 2^n, n the
  retry number from 0, capped at 8 s, then ±25% jitter. At most `max_retries` retries, and none
  whose start would fall after `deadline`. The last HTTP response is returned whatever its status
  (Claude's errors are already in the shape clients expect); `UpstreamUnavailableError` only when
  no attempt got an HTTP response at all.
- The per-attempt timeout is urllib3's: 5 s to connect, `timeout_s` idle between reads. The deadline
  limits when attempts start, not how long one runs: cutting a running answer would lose a usage
  Claude bills anyway.
- Metrics, per attempt (not per request): each counts one `UpstreamCalls`, and one `UpstreamErrors`
  too when it failed, its `ErrorType` one of `UpstreamErrorType`: `timeout` (connect or read timed
  out, or Claude answered 408), `connection` (refused, DNS, reset, TLS: no HTTP answer), `rate_limited`
  (429), `overloaded` (529), `server_error` (any other 5xx). Every other status is a call, not an
  upstream error: a 4xx is the request's own fault, and 401/403 (costgate's key refused) is a
  misconfiguration the gateway reports loudly itself. Per attempt, so that a 529 that succeeded on
  retry still shows Claude overloaded, and errors / calls counts the same thing on both sides.
  `costgate.batch_api` (the Message Batches client) counts its attempts through the same
  `emit_upstream_attempt`, `status_error_type` and `transport_error_type`: the metrics and their
  alarm cover every call costgate makes to Claude, the gateway's and the batch scheduler's.
- `UpstreamResponse.latency_s` is the answered attempt's time from sending to its response headers.
  Claude sends the headers of a JSON answer when the whole answer is ready, and those of a stream
  (`"stream": true`) at once, so for a stream it is the time to first byte, not to the stream's end.
"""

import json
import random
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import urllib3
from urllib3.exceptions import HTTPError as TransportError
from urllib3.exceptions import NewConnectionError
from urllib3.exceptions import TimeoutError as TransportTimeout

from costgate.errors import UpstreamUnavailableError
from costgate.observability import emit_upstream_attempt, logger

FORWARDED_HEADERS = ("anthropic-version", "anthropic-beta")
HOP_BY_HOP_HEADERS = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "transfer-encoding"}
    | {"upgrade", "proxy-connection"}
)
CONNECT_TIMEOUT_S = 5.0
INITIAL_RETRY_DELAY_S = 0.5
MAX_RETRY_DELAY_S = 8.0
RETRY_JITTER = 0.25
MAX_RETRY_AFTER_S = 60.0
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

    def final_usage(self) -> "FinalUsage | None":
        """The billable usage and model of a message (JSON or SSE), or None when the body has none."""
        body = _decoded(self.body, self.headers.get("content-encoding", ""))
        if body is None:
            return None
        return read_final_usage(body, self.headers.get("content-type", ""))


class HttpUpstream:
    """`costgate.ports.Upstream` over one urllib3 pool, made once per process and reused by every call.

    `api_key` is called on every `post`, so a rotated secret (Powertools' cached `get_secret`) is
    picked up. `sleep`, `monotonic`, `wall_time` and `rng` are injected so tests neither wait nor guess.
    """

    def __init__(
        self,
        base_url: str,
        api_key: Callable[[], str],
        *,
        max_retries: int = 2,
        timeout_s: float = 600,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        wall_time: Callable[[], float] = time.time,
    ) -> None:
        if max_retries < 0:
            raise ValueError(f"max_retries must not be negative, got {max_retries}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        if not base_url.startswith(("https://", "http://")):
            raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._max_retries = max_retries
        self._timeout_s = timeout_s
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._monotonic = monotonic
        self._wall_time = wall_time
        # retries=False: every retry is ours (urllib3 would retry behind our backoff and deadline);
        # maxsize 10: the local stack's threaded front shares one instance, a Lambda uses one connection.
        self._pool = urllib3.PoolManager(num_pools=2, maxsize=10, retries=False)

    def post(self, path: str, body: bytes, headers: Mapping[str, str], deadline: float) -> UpstreamResponse:
        if not path.startswith("/") or path.startswith("//"):
            raise ValueError(f"path must be absolute on the upstream host, got {path!r}")
        url = self.base_url + path
        request_headers = self._request_headers(headers)
        answered: UpstreamResponse | None = None  # the latest attempt that got an HTTP response
        failure = "the deadline passed before the first attempt could start"
        attempts = 0
        if self._monotonic() <= deadline:
            while True:  # bounded: attempts grows by one per pass and stops past max_retries
                attempts += 1
                response: UpstreamResponse | None = None
                try:
                    response = answered = self._send(url, body, request_headers)
                except (TransportError, OSError) as error:
                    failure = type(error).__name__
                    emit_upstream_attempt(transport_error_type(error))
                else:
                    emit_upstream_attempt(status_error_type(response.status))
                if (response is not None and not _should_retry(response)) or attempts > self._max_retries:
                    break
                delay = self._retry_delay(attempts - 1, response.headers if response is not None else {})
                details = {
                    "attempt": attempts,
                    "status": response.status if response is not None else None,
                    "error": failure if response is None else None,
                    "delay_s": round(delay, 3),
                }
                if self._monotonic() + delay > deadline:
                    logger.info("upstream retry skipped: it would start after the deadline", extra=details)
                    break
                logger.info("upstream retry", extra=details)
                self._sleep(delay)
        if answered is None:
            raise UpstreamUnavailableError(f"{failure} after {attempts} attempt(s)" if attempts else failure)
        return replace(answered, attempts=attempts)

    def _send(self, url: str, body: bytes, headers: Mapping[str, str]) -> UpstreamResponse:
        sent_at = self._monotonic()
        # preload_content=False: request() returns at the response headers, so they can be timed
        # apart from the body (a stream's body can take minutes after its first byte).
        raw = self._pool.request(
            "POST",
            url,
            body=body,
            headers=dict(headers),
            timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT_S, read=self._timeout_s),
            redirect=False,
            preload_content=False,
            decode_content=False,
        )
        latency_s = self._monotonic() - sent_at
        try:
            data = raw.read()
        finally:
            raw.release_conn()
        names = {name.lower() for name in raw.headers}
        connection_named = {token.strip().lower() for token in raw.headers.get("connection", "").split(",")}
        kept = {name: raw.headers[name] for name in sorted(names - HOP_BY_HOP_HEADERS - connection_named)}
        return UpstreamResponse(status=raw.status, headers=MappingProxyType(kept), body=data, latency_s=latency_s)

    def _request_headers(self, client_headers: Mapping[str, str]) -> dict[str, str]:
        headers = {
            "x-api-key": self._api_key(),
            "content-type": "application/json",
            "accept-encoding": "identity",
            "user-agent": USER_AGENT,
        }
        for name, value in client_headers.items():
            if name.lower() in FORWARDED_HEADERS:
                headers[name.lower()] = value
        return headers

    def _retry_delay(self, retry_number: int, headers: Mapping[str, str]) -> float:
        retry_after = _retry_after_s(headers, self._wall_time)
        if retry_after is not None and 0 < retry_after <= MAX_RETRY_AFTER_S:
            return retry_after
        backoff = min(INITIAL_RETRY_DELAY_S * 2.0 ** min(retry_number, 32), MAX_RETRY_DELAY_S)
        return backoff * self._rng.uniform(1 - RETRY_JITTER, 1 + RETRY_JITTER)


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


def _should_retry(response: UpstreamResponse) -> bool:
    should_retry = response.headers.get("x-should-retry")
    if should_retry == "true":
        return True
    if should_retry == "false":
        return False
    return response.status in (408, 409, 429) or response.status >= 500


def _retry_after_s(headers: Mapping[str, str], wall_time: Callable[[], float]) -> float | None:
    """Seconds to wait from `retry-after-ms`, else `retry-after` (seconds or an HTTP date); None if neither parses."""
    try:
        return float(headers["retry-after-ms"]) / 1000
    except (KeyError, ValueError):
        pass
    text = headers.get("retry-after")
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    # email.utils only on this rare path: it is not otherwise needed at cold start.
    from email.utils import mktime_tz, parsedate_tz  # noqa: PLC0415

    parsed = parsedate_tz(text)
    return None if parsed is None else mktime_tz(parsed) - wall_time()


def _decoded(body: bytes, content_encoding: str) -> bytes | None:
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


# --- Reading the final usage --------------------------------------------------------------------------


@dataclass(frozen=True)
class FinalUsage:
    """What a message response says it cost: the model that answered and its final `usage` object.

    `complete` is False for a stream that ended without `message_stop` (cut short, or an `error`
    event): `usage` is then what the stream had reported so far, and the caller decides.
    """

    model: str | None
    usage: dict[str, Any]
    complete: bool = True


def read_final_usage(body: bytes, content_type: str) -> FinalUsage | None:
    """The final usage and model of a Messages API response body, JSON or `text/event-stream`.

    A stream's `message_start.message.usage` is the usage so far and each `message_delta.usage` is
    CUMULATIVE: later values replace earlier ones key by key (nested `cache_creation` and
    `server_tool_use` too; a null never replaces a number), never added. Returns None for a body
    without a message usage (an error, count_tokens, malformed JSON or SSE); never raises on bad input.
    """
    media_type = content_type.partition(";")[0].strip().lower()
    try:
        if media_type == "application/json":
            return _json_usage(body)
        if media_type == "text/event-stream":
            return _stream_usage(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return None
    return None


def _json_usage(body: bytes) -> FinalUsage | None:
    message = json.loads(body)
    if not isinstance(message, dict) or message.get("type") != "message":
        return None
    usage = message.get("usage")
    if not isinstance(usage, dict):
        return None
    return FinalUsage(model=_text(message, "model"), usage=usage)


def _text(mapping: Mapping[str, Any], key: str) -> str | None:
    value = mapping.get(key)
    return value if isinstance(value, str) else None


_USAGE_EVENTS = frozenset({"message_start", "message_delta", "message_stop", "error"})


def _stream_usage(body: bytes) -> FinalUsage | None:
    usage: dict[str, Any] | None = None
    model: str | None = None
    for name, data in _sse_events(body.decode("utf-8")):
        if name is not None and name not in _USAGE_EVENTS:
            continue  # content deltas carry no usage: not parsed, a long answer stays cheap to read
        event = json.loads(data)
        if not isinstance(event, dict):
            return None
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message")
            if usage is not None or not isinstance(message, dict) or not isinstance(message.get("usage"), dict):
                return None  # a second start, or a start without a usage object
            usage = dict(message["usage"])
            model = _text(message, "model")
        elif kind == "message_delta":
            delta_usage = event.get("usage")
            if usage is None or not isinstance(delta_usage, dict):
                return None
            usage = _merge(usage, delta_usage)
        elif kind == "message_stop":
            return FinalUsage(model=model, usage=usage, complete=True) if usage is not None else None
        elif kind == "error":
            break
    return FinalUsage(model=model, usage=usage, complete=False) if usage is not None else None


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if value is None and key in merged:
            continue
        current = merged.get(key)
        merged[key] = _merge(current, value) if isinstance(current, dict) and isinstance(value, dict) else value
    return merged


def _sse_events(text: str) -> Iterator[tuple[str | None, str]]:
    """(event name or None, data) per event of a text/event-stream body, as the SSE spec frames them."""
    name: str | None = None
    data: list[str] = []
    # Only CRLF, CR and LF end an SSE line (str.splitlines would also split on U+2028 inside JSON).
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if not line:
            if data:
                yield name, "\n".join(data)
            name, data = None, []
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)
    if data:
        yield name, "\n".join(data)


if TYPE_CHECKING:
    from costgate.ports import Upstream

    _conforms: type[Upstream] = HttpUpstream
