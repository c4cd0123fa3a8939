"""HttpUpstream against a scripted HTTP server on 127.0.0.1, and reading the final usage of a response.

Time is injected: `sleep` records and advances a fake monotonic clock, so no test really waits
for a retry (only the read-timeout test waits, 2 × 0.2 s).
"""

import gzip
import json
import logging
import random
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import pytest
from urllib3.connection import HTTPConnection
from urllib3.connectionpool import HTTPConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from costgate.claude.messages import HttpUpstream
from costgate.claude.ports import Upstream
from costgate.claude.transport import UpstreamErrorType, UpstreamResponse, status_error_type, transport_error_type
from costgate.claude.usage import read_final_usage
from costgate.errors import OverloadedError, UpstreamUnavailableError, error_response
from costgate.observability import MetricDimension, MetricName, logger
from tests.unit.test_metrics import SERVICE, Emitted, emitted

CLAUDE_KEY = "sk-ant-claude-secret-0001"
# urllib3's errors name the connection or pool they came from; these two are never opened.
CONNECTION = HTTPConnection("127.0.0.1")
POOL = HTTPConnectionPool("127.0.0.1")
START = 1_000.0  # the fake monotonic clock's start


# --- A scripted upstream ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=lambda: {"content-type": "application/json"})
    body: bytes | list[bytes] = b'{"type":"message"}'  # a list is sent chunked, without content-length


@dataclass(frozen=True)
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes


class _Quiet(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return


class ScriptedServer:
    """Answers each request with the next scripted reply (the last one repeats) and records what it got."""

    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies) or [Reply()]
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._server: BaseWSGIServer = make_server("127.0.0.1", 0, self._app, threaded=True, request_handler=_Quiet)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def _app(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        with self._lock:
            self.seen.append(
                Seen(
                    path=request.full_path.rstrip("?"),
                    headers={name.lower(): value for name, value in request.headers.items()},
                    body=request.get_data(),
                )
            )
            reply = self.replies[min(len(self.seen), len(self.replies)) - 1]
        if isinstance(reply.body, list):
            response = Response(iter(reply.body), status=reply.status, headers=reply.headers, direct_passthrough=True)
        else:
            response = Response(reply.body, status=reply.status, headers=reply.headers)
        return response(environ, start_response)

    def __enter__(self) -> "ScriptedServer":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class FakeTime:
    """A monotonic clock that only moves when the upstream sleeps; every sleep is recorded."""

    def __init__(self) -> None:
        self.now = START
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


def upstream(
    base_url: str, fake_time: FakeTime, *, max_retries: int = 2, key: Callable[[], str] = lambda: CLAUDE_KEY, **kw: Any
) -> HttpUpstream:
    return HttpUpstream(
        base_url,
        key,
        max_retries=max_retries,
        sleep=fake_time.sleep,
        monotonic=fake_time.monotonic,
        rng=random.Random(7),
        **kw,
    )


def post(client: Upstream, body: bytes = b"{}", headers: dict[str, str] | None = None, **kw: Any) -> UpstreamResponse:
    return client.post(kw.pop("path", "/v1/messages"), body, headers or {}, kw.pop("deadline", START + 60))


def error_reply(status: int, **headers: str) -> Reply:
    body = json.dumps({"type": "error", "error": {"type": "api_error", "message": f"status {status}"}}).encode()
    return Reply(status, {"content-type": "application/json", **headers}, body)


# --- What goes upstream ------------------------------------------------------------------------------


def test_only_anthropic_version_and_beta_are_forwarded_and_costgates_key_authenticates(fake_time: FakeTime) -> None:
    # Given a client request carrying its gateway key both ways, costgate headers and API headers
    client_headers = {
        "Authorization": "Bearer cg-gateway-key",
        "X-Api-Key": "cg-gateway-key",
        "x-costgate-feature": "support-bot",
        "x-costgate-cache": "off",
        "Cookie": "session=1",
        "Accept-Encoding": "gzip, br",
        "Content-Type": "text/plain",
        "Anthropic-Version": "2026-10-21",
        "anthropic-beta": "files-api-2025-04-14,context-1m-2025-08-07",
        "anthropic-dangerous-direct-browser-access": "true",
    }
    with ScriptedServer() as server:
        # When it is posted upstream
        post(upstream(server.base_url, fake_time), headers=client_headers)
    # Then Anthropic sees costgate's Claude key, the two API headers value for value, and nothing else of the client's
    seen = server.seen[0].headers
    assert seen["x-api-key"] == CLAUDE_KEY
    assert seen["anthropic-version"] == "2026-10-21"
    assert seen["anthropic-beta"] == "files-api-2025-04-14,context-1m-2025-08-07"
    assert seen["content-type"] == "application/json"
    assert seen["accept-encoding"] == "identity"
    assert "authorization" not in seen
    assert "cookie" not in seen
    assert "anthropic-dangerous-direct-browser-access" not in seen
    assert not [name for name in seen if name.startswith("x-costgate")]
    assert "cg-gateway-key" not in json.dumps(seen)


def test_absent_api_headers_are_not_invented(fake_time: FakeTime) -> None:
    # Given a curl-style request without anthropic-version (Claude answers 400; costgate must not impose one)
    with ScriptedServer() as server:
        post(upstream(server.base_url, fake_time), headers={"x-api-key": "cg-key"})
    # Then none is sent
    assert "anthropic-version" not in server.seen[0].headers
    assert "anthropic-beta" not in server.seen[0].headers


def test_the_body_bytes_and_the_query_reach_the_upstream_unchanged(fake_time: FakeTime) -> None:
    # Given a body no serialiser would reproduce: key order, spacing, escapes, raw UTF-8, trailing spaces
    body = (
        b'{"stream":false,  "model" : "claude-opus-5-5","max_tokens":5,'
        b'"messages":[{"role":"user","content":"caf\\u00e9 \\ud83d\\ude00 '
        + "naïve 日本".encode()
        + b'"}],"unknown_future_field":{"z":1,"a":[1.0,1e2]}}   \n  '
    )
    with ScriptedServer() as server:
        # When it is posted to a beta path
        post(upstream(server.base_url, fake_time), body=body, path="/v1/messages?beta=true")
    # Then the upstream receives exactly those bytes, at that path and query
    assert server.seen[0].body == body
    assert server.seen[0].path == "/v1/messages?beta=true"
    assert server.seen[0].headers["content-length"] == str(len(body))


def test_the_key_provider_is_asked_on_every_request_so_a_rotated_secret_is_used(fake_time: FakeTime) -> None:
    # Given a key provider whose secret rotates between requests
    keys = iter(["sk-ant-old", "sk-ant-new"])
    with ScriptedServer() as server:
        client = upstream(server.base_url, fake_time, key=lambda: next(keys))
        # When two requests are made
        post(client)
        post(client)
    # Then each used the key current at its time
    assert [s.headers["x-api-key"] for s in server.seen] == ["sk-ant-old", "sk-ant-new"]


@pytest.mark.parametrize("path", ["v1/messages", "//evil.example/v1/messages", "https://evil.example/v1/messages"])
def test_a_path_that_could_leave_the_upstream_host_is_refused(fake_time: FakeTime, path: str) -> None:
    client = upstream("http://127.0.0.1:9", fake_time)
    with pytest.raises(ValueError, match="path must be absolute"):
        client.post(path, b"{}", {}, START + 60)


def test_settings_that_cannot_work_are_refused() -> None:
    with pytest.raises(ValueError, match="max_retries"):
        HttpUpstream("https://api.anthropic.com", lambda: CLAUDE_KEY, max_retries=-1)
    with pytest.raises(ValueError, match="base_url"):
        HttpUpstream("api.anthropic.com", lambda: CLAUDE_KEY)
    with pytest.raises(ValueError, match="timeout_s"):
        HttpUpstream("https://api.anthropic.com", lambda: CLAUDE_KEY, timeout_s=0)


# --- What comes back ---------------------------------------------------------------------------------


def test_the_response_comes_back_unchanged_with_lower_case_header_names(fake_time: FakeTime) -> None:
    # Given an answer with Claude's headers
    body = b'{"type":"message","model":"claude-opus-5-5",  "usage":{"input_tokens":3,"output_tokens":4}}'
    headers = {
        "Content-Type": "application/json",
        "Request-Id": "req_011",
        "anthropic-ratelimit-requests-remaining": "49",
        "X-Custom": "kept",
    }
    with ScriptedServer(Reply(200, headers, body)) as server:
        # When it is fetched
        response = post(upstream(server.base_url, fake_time))
    # Then status, headers and bytes are as sent, and the mapping is read-only
    assert (response.status, response.body, response.attempts) == (200, body, 1)
    assert response.headers["request-id"] == "req_011"
    assert response.headers["anthropic-ratelimit-requests-remaining"] == "49"
    assert response.headers["x-custom"] == "kept"
    assert response.headers["content-length"] == str(len(body))
    assert all(name == name.lower() for name in response.headers)
    with pytest.raises(TypeError):
        response.headers["x-custom"] = "changed"  # type: ignore[index]


def test_a_chunked_stream_comes_back_whole_without_hop_by_hop_headers(fake_time: FakeTime) -> None:
    # Given a streamed answer sent in chunks (transfer-encoding: chunked, no content-length)
    chunks = [b"event: ping\ndata: {}\n\n", b"event: message_stop\n", b'data: {"type":"message_stop"}\n\n']
    reply = Reply(200, {"content-type": "text/event-stream", "cache-control": "no-cache"}, chunks)
    with ScriptedServer(reply) as server:
        response = post(upstream(server.base_url, fake_time))
    # Then the body is the chunks joined, and framing headers of the hop are gone
    assert response.body == b"".join(chunks)
    assert "transfer-encoding" not in response.headers
    assert "connection" not in response.headers
    assert response.headers["cache-control"] == "no-cache"


def test_a_gzip_answer_is_returned_still_encoded_with_consistent_headers(fake_time: FakeTime) -> None:
    # Given an upstream that gzips although costgate asked for identity
    message = {"type": "message", "model": "claude-haiku-4-5", "usage": {"input_tokens": 12, "output_tokens": 5}}
    encoded = gzip.compress(json.dumps(message).encode(), mtime=0)
    reply = Reply(200, {"content-type": "application/json", "content-encoding": "gzip"}, encoded)
    with ScriptedServer(reply) as server:
        response = post(upstream(server.base_url, fake_time))
    # Then the bytes are the encoded bytes, content-encoding and content-length describe them,
    # and the usage is still readable for billing
    assert response.body == encoded
    assert response.headers["content-encoding"] == "gzip"
    assert response.headers["content-length"] == str(len(encoded))
    reading = response.final_usage()
    assert reading is not None
    assert reading.usage == message["usage"]
    assert reading.model == "claude-haiku-4-5"


def test_an_unknown_content_coding_gives_no_usage_rather_than_a_wrong_one() -> None:
    response = UpstreamResponse(200, {"content-type": "application/json", "content-encoding": "br"}, b"\x1b\x00")
    assert response.final_usage() is None


# --- Retry decisions ---------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 401, 402, 403, 404, 413, 422])
def test_client_errors_are_returned_at_once(fake_time: FakeTime, status: int) -> None:
    with ScriptedServer(error_reply(status)) as server:
        response = post(upstream(server.base_url, fake_time))
    assert (response.status, response.attempts, len(server.seen)) == (status, 1, 1)
    assert json.loads(response.body)["error"]["message"] == f"status {status}"
    assert fake_time.sleeps == []


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504, 529])
def test_retryable_statuses_are_retried_max_retries_times_then_returned(fake_time: FakeTime, status: int) -> None:
    # Given an upstream that always answers this status
    with ScriptedServer(error_reply(status)) as server:
        # When a request is made with 2 retries
        response = post(upstream(server.base_url, fake_time, max_retries=2))
    # Then it is tried three times and the last error comes back as Claude sent it
    assert (response.status, response.attempts, len(server.seen)) == (status, 3, 3)
    assert json.loads(response.body)["error"]["message"] == f"status {status}"
    assert len(fake_time.sleeps) == 2


def test_a_retried_request_returns_the_first_success(fake_time: FakeTime) -> None:
    with ScriptedServer(error_reply(529), error_reply(500), Reply()) as server:
        response = post(upstream(server.base_url, fake_time, max_retries=4))
    assert (response.status, response.attempts, len(server.seen)) == (200, 3, 3)
    assert all(s.body == b"{}" for s in server.seen)


def test_x_should_retry_false_stops_a_retryable_status(fake_time: FakeTime) -> None:
    with ScriptedServer(error_reply(529, **{"x-should-retry": "false"})) as server:
        response = post(upstream(server.base_url, fake_time))
    assert (response.status, response.attempts) == (529, 1)


def test_x_should_retry_true_retries_a_client_error(fake_time: FakeTime) -> None:
    with ScriptedServer(error_reply(400, **{"x-should-retry": "true"}), Reply()) as server:
        response = post(upstream(server.base_url, fake_time))
    assert (response.status, response.attempts) == (200, 2)


def test_max_retries_zero_makes_one_attempt(fake_time: FakeTime) -> None:
    with ScriptedServer(error_reply(529)) as server:
        response = post(upstream(server.base_url, fake_time, max_retries=0))
    assert (response.status, response.attempts, fake_time.sleeps) == (529, 1, [])


# --- How long to wait ----------------------------------------------------------------------------------


def test_retry_after_ms_wins_over_retry_after(fake_time: FakeTime) -> None:
    reply = error_reply(429, **{"retry-after-ms": "250", "retry-after": "5"})
    with ScriptedServer(reply, Reply()) as server:
        post(upstream(server.base_url, fake_time))
    assert fake_time.sleeps == [0.25]


def test_retry_after_in_seconds_is_honoured(fake_time: FakeTime) -> None:
    with ScriptedServer(error_reply(429, **{"retry-after": "3"}), Reply()) as server:
        post(upstream(server.base_url, fake_time))
    assert fake_time.sleeps == [3.0]


def test_retry_after_as_an_http_date_is_honoured(fake_time: FakeTime) -> None:
    # Given a retry-after date 10 s after the (injected) wall-clock time
    now = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)
    later = format_datetime(datetime(2026, 11, 29, 12, 0, 10, tzinfo=UTC), usegmt=True)
    with ScriptedServer(error_reply(503, **{"retry-after": later}), Reply()) as server:
        post(upstream(server.base_url, fake_time, wall_time=now.timestamp))
    # Then the wait is those 10 s
    assert later == "Sun, 29 Nov 2026 12:00:10 GMT"
    assert fake_time.sleeps == [10.0]


@pytest.mark.parametrize(
    "headers",
    [
        {"retry-after": "120"},  # too long: not waited for
        {"retry-after-ms": "61000"},
        {"retry-after": "0"},  # as the SDK: only 0 < wait ≤ 60 s is taken from the header
        {"retry-after": "-3"},
        {"retry-after": "soon"},
        {"retry-after": "Sun, 29 Nov 2026 11:59:00 GMT"},  # in the past
    ],
)
def test_unusable_retry_after_falls_back_to_the_policys_backoff(fake_time: FakeTime, headers: dict[str, str]) -> None:
    # Given a 429 whose retry-after cannot be used
    wall = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC).timestamp
    with ScriptedServer(error_reply(429, **headers)) as server:
        # When it is retried twice
        response = post(upstream(server.base_url, fake_time, wall_time=wall))
    # Then the waits are the policy's first two backoffs (0.5 s, 1 s ±25%), no more retries than the policy's
    assert response.attempts == 3
    first, second = fake_time.sleeps
    assert 0.375 <= first <= 0.625
    assert 0.75 <= second <= 1.25


def test_backoff_doubles_from_half_a_second_caps_at_8_s_and_jitters_25_percent(fake_time: FakeTime) -> None:
    # Given an upstream that is always overloaded and 7 retries
    with ScriptedServer(error_reply(529)) as server:
        post(upstream(server.base_url, fake_time, max_retries=7))
    # Then each wait is within ±25% of 0.5, 1, 2, 4, 8, 8, 8 s, and they are not all at the centre
    bases = [0.5, 1, 2, 4, 8, 8, 8]
    assert len(fake_time.sleeps) == len(bases)
    for wait, base in zip(fake_time.sleeps, bases, strict=True):
        assert 0.75 * base <= wait <= 1.25 * base
    assert len({round(w / b, 6) for w, b in zip(fake_time.sleeps, bases, strict=True)}) > 1


# --- The deadline ---------------------------------------------------------------------------------------


def test_no_retry_starts_after_the_deadline(fake_time: FakeTime) -> None:
    # Given 5 s left and an upstream asking to come back in 3 s every time
    with ScriptedServer(error_reply(529, **{"retry-after": "3"})) as server:
        # When a request with 4 retries is made
        response = post(upstream(server.base_url, fake_time, max_retries=4), deadline=START + 5)
    # Then one retry fits (at 3 s), the next (at 6 s) does not: the last 529 comes back
    assert fake_time.sleeps == [3.0]
    assert (response.status, response.attempts, len(server.seen)) == (529, 2, 2)


def test_a_retry_that_would_start_exactly_at_the_deadline_still_runs(fake_time: FakeTime) -> None:
    with ScriptedServer(error_reply(529, **{"retry-after": "3"}), Reply()) as server:
        response = post(upstream(server.base_url, fake_time), deadline=START + 3)
    assert (response.status, response.attempts) == (200, 2)


def test_a_passed_deadline_sends_nothing(fake_time: FakeTime) -> None:
    # Given a deadline already behind us
    # When a request is made / Then no attempt starts and the caller gets a 529-shaped error
    with ScriptedServer() as server, pytest.raises(UpstreamUnavailableError, match="deadline passed"):
        post(upstream(server.base_url, fake_time), deadline=START - 0.001)
    assert server.seen == []


# --- No HTTP answer at all ------------------------------------------------------------------------------


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A port bound on 127.0.0.1 but not listening: every connection is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_a_refused_connection_is_retried_then_reported_as_upstream_unavailable(
    fake_time: FakeTime, refusing_port: int
) -> None:
    # Given no upstream listening
    client = upstream(f"http://127.0.0.1:{refusing_port}", fake_time, max_retries=3)
    # When a request is made
    with pytest.raises(UpstreamUnavailableError) as raised:
        post(client)
    # Then it tried 1 + 3 times with backoff, and fails as a 529 overloaded_error naming no secret
    error = raised.value
    assert len(fake_time.sleeps) == 3
    assert isinstance(error, OverloadedError)
    assert error.message == "upstream Claude API unreachable: NewConnectionError after 4 attempt(s)"
    status, body = error_response(error, "req_1")
    assert status == 529
    assert body["error"]["type"] == "overloaded_error"
    assert CLAUDE_KEY not in json.dumps(body)


def test_a_timed_out_read_is_retried_and_bounded() -> None:
    # Given an upstream that accepts connections and never answers, and a 0.2 s read timeout
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        client = HttpUpstream(
            f"http://127.0.0.1:{port}", lambda: CLAUDE_KEY, max_retries=1, timeout_s=0.2, sleep=lambda _: None
        )
        started = time.monotonic()
        # When a request is made
        with pytest.raises(UpstreamUnavailableError, match="ReadTimeoutError after 2 attempt"):
            client.post("/v1/messages", b"{}", {}, time.monotonic() + 30)
        elapsed = time.monotonic() - started
    # Then both attempts timed out and the whole took about 2 × 0.2 s
    assert 0.35 <= elapsed < 3


def test_an_earlier_http_answer_beats_a_later_connection_failure(
    fake_time: FakeTime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an upstream that answers 529 once and then cannot be reached
    overloaded = UpstreamResponse(529, {"x-should-retry": "true"}, b'{"type":"error"}')
    outcomes: list[UpstreamResponse | Exception] = []
    client = upstream("http://127.0.0.1:9", fake_time, max_retries=2)

    def scripted_send(url: str, body: bytes, headers: dict[str, str], *, live: bool = False) -> UpstreamResponse:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr(client, "_send", scripted_send)
    # When the request is retried twice (529, refused, 529 would be the next; max_retries stops at 3 attempts)
    outcomes[:] = [overloaded, NewConnectionError(CONNECTION, "refused"), NewConnectionError(CONNECTION, "refused")]
    response = post(client)
    # Then the caller gets the 529 Claude sent, with all attempts counted
    assert (response.status, response.body, response.attempts) == (529, b'{"type":"error"}', 3)
    assert outcomes == []


# --- Logging -----------------------------------------------------------------------------------------


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def log_records() -> Iterator[list[logging.LogRecord]]:
    handler = _Records()
    logger.addHandler(handler)
    yield handler.records
    # Powertools passes removeHandler on to its logging.Logger only at runtime, hidden from type checkers.
    logger._logger.removeHandler(handler)


def test_retries_are_logged_at_info_with_attempt_status_and_delay_never_the_key(
    fake_time: FakeTime, log_records: list[logging.LogRecord]
) -> None:
    with ScriptedServer(error_reply(429, **{"retry-after": "2"}), Reply()) as server:
        post(upstream(server.base_url, fake_time))
    retries = [r for r in log_records if r.getMessage() == "upstream retry"]
    assert len(retries) == 1
    record = retries[0]
    assert record.levelno == logging.INFO
    assert (record.attempt, record.status, record.delay_s) == (1, 429, 2.0)  # type: ignore[attr-defined]
    assert all(CLAUDE_KEY not in json.dumps(vars(r), default=str) for r in log_records)


# --- Metrics: calls, errors per kind, latency ----------------------------------------------------------


@pytest.fixture
def metrics_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", SERVICE)


def calls_and_errors(found: Emitted) -> tuple[int, int, dict[str, int]]:
    """(calls, errors, errors per ErrorType) as the EMF blobs printed them."""
    calls = int(sum(found.get((MetricName.UPSTREAM_CALLS, frozenset()), [])))
    errors = int(sum(found.get((MetricName.UPSTREAM_ERRORS, frozenset()), [])))
    by_type = {
        next(iter(values)): len(ones)
        for (name, values), ones in found.items()
        if name == f"{MetricDimension.ERROR_TYPE}="
    }
    typed = int(sum(found.get((MetricName.UPSTREAM_ERRORS, frozenset({MetricDimension.ERROR_TYPE})), [])))
    assert typed == errors, "every error is counted once in total and once under its type"
    return calls, errors, by_type


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (429, UpstreamErrorType.RATE_LIMITED),
        (529, UpstreamErrorType.OVERLOADED),
        (500, UpstreamErrorType.SERVER_ERROR),
        (502, UpstreamErrorType.SERVER_ERROR),
        (503, UpstreamErrorType.SERVER_ERROR),
        (504, UpstreamErrorType.SERVER_ERROR),
        (408, UpstreamErrorType.TIMEOUT),
    ],
)
def test_every_failed_attempt_is_a_call_and_an_error_of_its_kind(
    fake_time: FakeTime, metrics_on: None, capsys: pytest.CaptureFixture[str], status: int, error_type: str
) -> None:
    # Given an upstream that always answers this status
    with ScriptedServer(error_reply(status)) as server:
        # When a request is made with 2 retries
        response = post(upstream(server.base_url, fake_time, max_retries=2))
    found = emitted(capsys.readouterr().out)

    # Then each of the 3 attempts is one call and one error of that kind
    assert response.attempts == 3
    assert calls_and_errors(found) == (3, 3, {error_type: 3})


@pytest.mark.parametrize("status", [200, 400, 401, 403, 404, 409, 413, 422])
def test_an_answer_or_a_client_error_is_a_call_but_no_upstream_error(
    fake_time: FakeTime, metrics_on: None, capsys: pytest.CaptureFixture[str], status: int
) -> None:
    # Given an answer, or an error the request (or costgate's own key) caused, told not to be retried
    reply = Reply() if status == 200 else error_reply(status, **{"x-should-retry": "false"})
    with ScriptedServer(reply) as server:
        post(upstream(server.base_url, fake_time))
    # Then it is one call and no upstream error
    assert calls_and_errors(emitted(capsys.readouterr().out)) == (1, 0, {})


def test_a_retry_that_succeeds_still_counts_the_failures_before_it(
    fake_time: FakeTime, metrics_on: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given Claude overloaded, then rate limiting, then answering
    with ScriptedServer(error_reply(529), error_reply(429), Reply()) as server:
        response = post(upstream(server.base_url, fake_time, max_retries=4))
    # Then the client got its answer, and the metrics show 3 calls of which 2 failed, one of each kind
    assert response.status == 200
    found = emitted(capsys.readouterr().out)
    assert calls_and_errors(found) == (3, 2, {"overloaded": 1, "rate_limited": 1})


def test_a_refused_connection_counts_as_a_connection_error_per_attempt(
    fake_time: FakeTime, refusing_port: int, metrics_on: None, capsys: pytest.CaptureFixture[str]
) -> None:
    client = upstream(f"http://127.0.0.1:{refusing_port}", fake_time, max_retries=1)
    with pytest.raises(UpstreamUnavailableError):
        post(client)
    assert calls_and_errors(emitted(capsys.readouterr().out)) == (2, 2, {"connection": 2})


def test_a_read_timeout_counts_as_a_timeout(metrics_on: None, capsys: pytest.CaptureFixture[str]) -> None:
    # Given an upstream that accepts the connection and never answers, and a 0.2 s read timeout
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        client = HttpUpstream(
            f"http://127.0.0.1:{port}", lambda: CLAUDE_KEY, max_retries=0, timeout_s=0.2, sleep=lambda _: None
        )
        with pytest.raises(UpstreamUnavailableError, match="ReadTimeoutError"):
            client.post("/v1/messages", b"{}", {}, time.monotonic() + 30)
    assert calls_and_errors(emitted(capsys.readouterr().out)) == (1, 1, {"timeout": 1})


@pytest.mark.parametrize(
    ("error", "error_type"),
    [
        (ReadTimeoutError(POOL, "/v1/messages", "read timed out"), UpstreamErrorType.TIMEOUT),
        (ConnectTimeoutError(None, "connect timed out"), UpstreamErrorType.TIMEOUT),
        (TimeoutError("timed out"), UpstreamErrorType.TIMEOUT),
        # urllib3's refused and DNS errors subclass its ConnectTimeoutError: they are still connection errors
        (NewConnectionError(CONNECTION, "refused"), UpstreamErrorType.CONNECTION),
        (
            NameResolutionError("api.anthropic.com", CONNECTION, socket.gaierror("no such host")),
            UpstreamErrorType.CONNECTION,
        ),
        (ProtocolError("Connection aborted.", ConnectionResetError()), UpstreamErrorType.CONNECTION),
        (SSLError("certificate verify failed"), UpstreamErrorType.CONNECTION),
        (ConnectionResetError("reset by peer"), UpstreamErrorType.CONNECTION),
    ],
)
def test_transport_errors_are_timeouts_or_connection_errors(error: Exception, error_type: UpstreamErrorType) -> None:
    assert transport_error_type(error) is error_type


@pytest.mark.parametrize("status", [200, 201, 400, 401, 403, 404, 409, 413, 422])
def test_success_and_statuses_the_request_caused_are_no_upstream_error(status: int) -> None:
    assert status_error_type(status) is None


def test_any_5xx_without_a_kind_of_its_own_is_a_server_error() -> None:
    assert status_error_type(599) is UpstreamErrorType.SERVER_ERROR


class SlowChunks(list[bytes]):
    """A streamed body whose chunks come `pause_s` apart (the headers go out with the first one)."""

    pause_s = 0.5

    def __iter__(self) -> Iterator[bytes]:
        for index, chunk in enumerate(list.__iter__(self)):
            if index:
                time.sleep(self.pause_s)
            yield chunk


def test_latency_is_the_time_to_the_headers_not_to_the_end_of_a_stream(fake_time: FakeTime) -> None:
    # Given a stream whose last event comes 0.5 s after its first (and its headers)
    chunks = SlowChunks([b"event: ping\ndata: {}\n\n", b'event: message_stop\ndata: {"type":"message_stop"}\n\n'])
    reply = Reply(200, {"content-type": "text/event-stream"}, chunks)
    with ScriptedServer(reply) as server:
        client = HttpUpstream(server.base_url, lambda: CLAUDE_KEY, sleep=fake_time.sleep)
        # When it is fetched, with the real monotonic clock
        started = time.monotonic()
        response = post(client, deadline=started + 60)
        elapsed = time.monotonic() - started
    # Then the whole body arrived after the pause, but the latency stops at the headers
    assert response.body == b"".join(chunks)
    assert elapsed >= SlowChunks.pause_s
    assert response.latency_s is not None
    assert 0 <= response.latency_s < SlowChunks.pause_s


# --- Reading the final usage -------------------------------------------------------------------------------


def sse(*events: tuple[str, dict[str, Any]], newline: str = "\n") -> bytes:
    return "".join(
        f"event: {name}{newline}data: {json.dumps(data)}{newline}{newline}" for name, data in events
    ).encode()


def start(usage: dict[str, Any], model: str = "claude-opus-5-5") -> tuple[str, dict[str, Any]]:
    message = {"id": "msg_1", "type": "message", "role": "assistant", "model": model, "content": [], "usage": usage}
    return "message_start", {"type": "message_start", "message": message}


def delta(usage: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return "message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": usage}


STOP = ("message_stop", {"type": "message_stop"})
TEXT = (
    "content_block_delta",
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hi\u2028there"}},
)


def test_a_json_message_gives_its_usage_and_model() -> None:
    usage = {"input_tokens": 10, "output_tokens": 3, "cache_read_input_tokens": 2048, "service_tier": "standard"}
    body = json.dumps({"type": "message", "model": "claude-sonnet-5-5", "usage": usage}).encode()
    reading = read_final_usage(body, "application/json")
    assert reading is not None
    assert reading.usage == usage
    assert reading.model == "claude-sonnet-5-5"
    assert read_final_usage(body, "Application/JSON; charset=utf-8") == reading


@pytest.mark.parametrize(
    "body",
    [
        b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}',
        b'{"input_tokens": 42}',  # count_tokens
        b'{"type":"message","usage":"lots"}',
        b"[1, 2]",
        b"{not json",
        b"",
        b"\xff\xfe",
    ],
)
def test_a_json_body_without_a_message_usage_gives_none(body: bytes) -> None:
    assert read_final_usage(body, "application/json") is None


def test_a_stream_whose_delta_carries_only_output_tokens_keeps_the_start_counts() -> None:
    # Given a stream: start with input and cache counts, a text delta, a delta with output tokens only
    start_usage = {"input_tokens": 25, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 900}
    body = sse(start({**start_usage, "output_tokens": 1}), TEXT, delta({"output_tokens": 87}), STOP)
    # When its final usage is read
    reading = read_final_usage(body, "text/event-stream; charset=utf-8")
    # Then the start's counts stand and output is the delta's value
    assert reading is not None
    assert reading.usage == {**start_usage, "output_tokens": 87}
    assert reading.model == "claude-opus-5-5"
    assert reading.complete


def test_cumulative_deltas_are_replaced_never_added() -> None:
    body = sse(
        start({"input_tokens": 5, "output_tokens": 1}), delta({"output_tokens": 40}), delta({"output_tokens": 90})
    )
    reading = read_final_usage(body + sse(STOP), "text/event-stream")
    assert reading is not None
    assert reading.usage == {"input_tokens": 5, "output_tokens": 90}


def test_a_stream_with_cache_fields_and_server_tools_merges_nested_objects_key_by_key() -> None:
    # Given a start with a cache breakdown and zeroed server tools, and a delta with partial nested objects and nulls
    first = {
        "input_tokens": 30,
        "cache_creation_input_tokens": 4096,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 4096},
        "output_tokens": 1,
        "server_tool_use": {"web_search_requests": 0, "web_fetch_requests": 0},
        "service_tier": "standard",
        "inference_geo": "us",
    }
    last = {
        "input_tokens": 31,
        "cache_creation_input_tokens": None,
        "cache_read_input_tokens": None,
        "output_tokens": 512,
        "server_tool_use": {"web_search_requests": 3},
        "output_tokens_details": {"thinking_tokens": 200},
    }
    body = sse(start(first), TEXT, delta(last), STOP, newline="\r\n")
    # When the final usage is read
    reading = read_final_usage(body, "text/event-stream")
    assert reading is not None
    usage = reading.usage
    # Then later values replace earlier ones, nested ones key by key, and nulls replace nothing
    assert usage == {
        "input_tokens": 31,
        "cache_creation_input_tokens": 4096,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 4096},
        "output_tokens": 512,
        "server_tool_use": {"web_search_requests": 3, "web_fetch_requests": 0},
        "service_tier": "standard",
        "inference_geo": "us",
        "output_tokens_details": {"thinking_tokens": 200},
    }


def test_a_stream_cut_short_or_ended_by_an_error_gives_the_usage_so_far_marked_incomplete() -> None:
    head = sse(start({"input_tokens": 8, "output_tokens": 1}), TEXT, delta({"output_tokens": 20}))
    cut = read_final_usage(head, "text/event-stream")
    errored = read_final_usage(
        head + sse(("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})),
        "text/event-stream",
    )
    assert cut is not None
    assert errored is not None
    assert (cut.usage, cut.complete) == ({"input_tokens": 8, "output_tokens": 20}, False)
    assert (errored.usage, errored.complete) == ({"input_tokens": 8, "output_tokens": 20}, False)


@pytest.mark.parametrize(
    "body",
    [
        sse(delta({"output_tokens": 3}), STOP),  # no message_start
        sse(TEXT, STOP),
        sse(start({"input_tokens": 1}), start({"input_tokens": 2}), STOP),  # two starts
        sse(("message_start", {"type": "message_start", "message": {"model": "m"}})),  # no usage
        sse(start({"input_tokens": 1}), ("message_delta", {"type": "message_delta", "usage": [1]})),
        b"event: message_start\ndata: {not json\n\n",
        b'event: message_start\ndata: ["a"]\n\n',
        b"event: message_start\ndata: \xff\n\n",
        b"",
        b"hello",
    ],
)
def test_malformed_streams_give_none(body: bytes) -> None:
    assert read_final_usage(body, "text/event-stream") is None


def test_an_unknown_content_type_gives_none() -> None:
    body = json.dumps({"type": "message", "model": "m", "usage": {"input_tokens": 1}}).encode()
    assert read_final_usage(body, "text/html") is None
    assert read_final_usage(body, "") is None
