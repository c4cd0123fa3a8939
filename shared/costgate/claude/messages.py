"""The API function's upstream: the Claude API over a pooled urllib3 connection, retried like the SDK.

Why not the `anthropic` SDK here: the gateway forwards the client's body BYTES and returns Claude's
response unchanged, so it needs no request or response models, and `import anthropic` (2.14) costs
about 0.9 s of a 400 ms cold-start budget. urllib3 ships with botocore, so it adds nothing to the
Lambda layer. Measured with `bench/bench_upstream_import.py` (`python -X importtime`, median of 5
fresh interpreters) on the 2-core dev machine while other test runs loaded it — `import anthropic`
took 4.7 s there against the 0.9 s of a quiet machine, so read the figures as ratios:

- `import costgate.claude.messages`, cold and alone: 0.93 s. Of that, `costgate.observability` is ~0.80 s
  (Powertools' Tracer imports aws_xray_sdk) and urllib3 ~0.16 s; the ApiFunction imports both
  anyway (its handler logs through Powertools; pynamodb → botocore → urllib3).
- What `costgate.claude.messages` adds after the handler's imports: 12.5 ms, compiling this file included
  (the dev shell sets PYTHONDONTWRITEBYTECODE); 3–5 ms from bytecode.
- `import anthropic`: 4.7 s, 5× the whole cold import above and ~380× what this module adds.

Contract of `HttpUpstream.post` (the `costgate.claude.ports.Upstream` port):

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
  `costgate.claude.batches` (the Message Batches client) counts its attempts through the same
  `emit_upstream_attempt`, `status_error_type` and `transport_error_type`: the metrics and their
  alarm cover every call costgate makes to Claude, the gateway's and the batch scheduler's.
- `UpstreamResponse.latency_s` is the answered attempt's time from sending to its response headers.
  Claude sends the headers of a JSON answer when the whole answer is ready, and those of a stream
  (`"stream": true`) at once, so for a stream it is the time to first byte, not to the stream's end.
"""

import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from types import MappingProxyType

import urllib3
from urllib3 import BaseHTTPResponse
from urllib3.exceptions import HTTPError as TransportError

from costgate.claude.retry import RetryPolicy, should_retry
from costgate.claude.transport import (
    CONNECT_TIMEOUT_S,
    HOP_BY_HOP_HEADERS,
    USER_AGENT,
    UpstreamResponse,
    status_error_type,
    transport_error_type,
)
from costgate.errors import UpstreamStreamError, UpstreamUnavailableError
from costgate.observability import emit_upstream_attempt, logger

FORWARDED_HEADERS = ("anthropic-version", "anthropic-beta")
# What one read of a live stream asks for at most; it returns as soon as any bytes have arrived.
_READ_SIZE = 64 * 1024


class HttpUpstream:
    """`costgate.claude.ports.Upstream` over one urllib3 pool, made once per process and reused by every call.

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
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        if not base_url.startswith(("https://", "http://")):
            raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._timeout_s = timeout_s
        self._retry = RetryPolicy(max_retries, sleep, rng or random.Random(), wall_time)  # noqa: S311 - jitter
        self._monotonic = monotonic
        # retries=False: every retry is ours (urllib3 would retry behind our backoff and deadline);
        # maxsize 10: the local stack's threaded front shares one instance, a Lambda uses one connection.
        self._pool = urllib3.PoolManager(num_pools=2, maxsize=10, retries=False)

    def post(self, path: str, body: bytes, headers: Mapping[str, str], deadline: float) -> UpstreamResponse:
        answer = self._call(path, body, headers, deadline, live=False)
        assert isinstance(answer, UpstreamResponse)  # live=False never leaves a response open
        return answer

    def post_stream(
        self, path: str, body: bytes, headers: Mapping[str, str], deadline: float
    ) -> "UpstreamResponse | LiveResponse":
        """As `post`, but a 200 `text/event-stream` answer comes back at its headers, its body still on the
        wire (`LiveResponse.chunks`): retried only before the response headers, never after the first byte."""
        return self._call(path, body, headers, deadline, live=True)

    def _call(
        self, path: str, body: bytes, headers: Mapping[str, str], deadline: float, *, live: bool
    ) -> "UpstreamResponse | LiveResponse":
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
                    sent = self._send(url, body, request_headers, live=live)
                except (TransportError, OSError) as error:
                    failure = type(error).__name__
                    emit_upstream_attempt(transport_error_type(error))
                else:
                    emit_upstream_attempt(status_error_type(sent.status))
                    if isinstance(sent, LiveResponse):
                        sent.attempts = attempts
                        return sent
                    response = answered = sent
                if (response is not None and not should_retry(response)) or self._retry.exhausted(attempts):
                    break
                delay = self._retry.delay(attempts - 1, response.headers if response is not None else {})
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
                self._retry.sleep(delay)
        if answered is None:
            raise UpstreamUnavailableError(f"{failure} after {attempts} attempt(s)" if attempts else failure)
        return replace(answered, attempts=attempts)

    def _send(
        self, url: str, body: bytes, headers: Mapping[str, str], *, live: bool = False
    ) -> "UpstreamResponse | LiveResponse":
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
        names = {name.lower() for name in raw.headers}
        connection_named = {token.strip().lower() for token in raw.headers.get("connection", "").split(",")}
        kept = MappingProxyType(
            {name: raw.headers[name] for name in sorted(names - HOP_BY_HOP_HEADERS - connection_named)}
        )
        if live and raw.status == 200 and kept.get("content-type", "").startswith("text/event-stream"):
            return LiveResponse(status=raw.status, headers=kept, latency_s=latency_s, raw=raw)
        try:
            data = raw.read()
        finally:
            raw.release_conn()
        return UpstreamResponse(status=raw.status, headers=kept, body=data, latency_s=latency_s)

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


class LiveResponse:
    """A 200 stream whose headers have arrived and whose body is still coming: `chunks` yields its bytes
    as they arrive (never decoded, never re-framed); `close` gives the connection back (or drops it,
    when the body was not read to its end)."""

    def __init__(self, *, status: int, headers: Mapping[str, str], latency_s: float, raw: BaseHTTPResponse) -> None:
        self.status = status
        self.headers = headers
        self.latency_s = latency_s
        self.attempts = 1
        self._raw = raw
        self._read_to_end = False

    def chunks(self) -> Iterator[bytes]:
        """The body's bytes as they arrive; UpstreamStreamError when the connection fails before its end."""
        try:
            while True:  # bounded by the body: each read returns what has arrived, b"" at its end
                data = self._raw.read1(_READ_SIZE)
                if not data:
                    self._read_to_end = True
                    return
                yield data
        except (TransportError, OSError) as error:
            raise UpstreamStreamError(f"{type(error).__name__}: {error}") from error

    def close(self) -> None:
        if not self._read_to_end:
            # Unread bytes would poison a pooled connection: drop it instead of returning it.
            self._raw.close()
        self._raw.release_conn()
