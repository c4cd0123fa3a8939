"""HttpClaudeBatches against the Claude API simulator on a ManualClock, and a scripted server for what it cannot do;
and the upstream metrics (UpstreamCalls, UpstreamErrors per ErrorType) its attempts emit.

Batches end when a test advances the clock; retry waits go to a recording `sleep`, so no test waits
for a backoff or a retry-after. The simulator injects faults only into batch creation, so GET retries
and malformed answers are checked against a scripted server.
"""

import io
import json
import socket
import threading
import time
import types
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import urllib3
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from costgate.claude import batches as batch_api
from costgate.claude.batches import HttpClaudeBatches, RemoteBatch
from costgate.claude.transport import UpstreamErrorType
from costgate.errors import BatchRejectedError, BatchSubmitUncertainError, NotFoundError, UpstreamError
from costgate_local.simulator import FaultConfig, ManualClock, Simulator, SimulatorOptions
from costgate_local.simulator import server as simulator_server
from tests.unit.test_metrics import SERVICE, emitted
from tests.unit.test_upstream import calls_and_errors

START = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
BATCH_DELAY = timedelta(seconds=3)
API_KEY = "sk-sim-batches"
MODEL = "claude-haiku-5-5"
LONG_AGO = START - timedelta(days=1)


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@dataclass
class Calls:
    """What HttpClaudeBatches handed urllib3, request by request."""

    seen: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    def of(self, method: str, path_part: str = "") -> list[dict[str, Any]]:
        return [kw for m, url, kw in self.seen if m == method and path_part in url]


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    recorded = Calls()
    original = urllib3.PoolManager.request

    def spy(self: urllib3.PoolManager, method: str, url: str, **kw: Any) -> urllib3.BaseHTTPResponse:
        recorded.seen.append((method, url, dict(kw)))
        return original(self, method, url, **kw)

    monkeypatch.setattr(urllib3.PoolManager, "request", spy)
    return recorded


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


def simulator(clock: ManualClock, **faults: Any) -> Simulator:
    return Simulator(SimulatorOptions(clock=clock, batch_delay=BATCH_DELAY, faults=FaultConfig(**faults), seed=7))


@pytest.fixture
def sim(clock: ManualClock) -> Iterator[Simulator]:
    with simulator(clock) as running:
        yield running


def batches(
    base_url: str, sleeps: Callable[[float], None] | None = None, key: str = API_KEY, **kw: Any
) -> HttpClaudeBatches:
    return HttpClaudeBatches(base_url, lambda: key, sleep=Sleeps() if sleeps is None else sleeps, **kw)


def request(custom_id: str, text: str = "Summarise the day.") -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "params": {"model": MODEL, "max_tokens": 16, "messages": [{"role": "user", "content": text}]},
    }


def batch_file(tmp_path: Path, requests: Iterable[dict[str, Any]], name: str = "batch.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps({"requests": list(requests)}), encoding="utf-8")
    return path


# --- The lifecycle ---------------------------------------------------------------------------------


def test_a_batch_from_a_file_is_in_progress_then_ended_with_every_result(
    sim: Simulator, clock: ManualClock, tmp_path: Path
) -> None:
    # Given a file of three requests
    client = batches(sim.base_url)
    path = batch_file(tmp_path, (request(f"doc-{i}", f"Question {i}?") for i in range(3)))
    # When it is created, read, and read again once the batch delay has passed on the clock
    created = client.create(path)
    running = client.retrieve(created.id)
    clock.advance(BATCH_DELAY + timedelta(seconds=1))
    ended = client.retrieve(created.id)
    results = list(client.results(created.id))
    # Then it was in progress with everything processing, and ended with three successes
    assert created.id.startswith("msgbatch_")
    assert (created.processing_status, created.created_at, created.ended_at) == ("in_progress", START, None)
    assert created.created_at.tzinfo == UTC
    assert (running.ended, running.total, running.results_url) == (False, 3, None)
    assert dict(running.request_counts) == {"processing": 3, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
    assert ended.ended
    assert ended.ended_at == START + BATCH_DELAY
    assert (ended.request_counts["succeeded"], ended.total) == (3, 3)
    assert sorted(r["custom_id"] for r in results) == ["doc-0", "doc-1", "doc-2"]
    assert all(r["result"]["type"] == "succeeded" for r in results)
    assert all(r["result"]["message"]["usage"]["service_tier"] == "batch" for r in results)


def test_created_since_pages_newest_first_and_stops_at_the_first_older_batch(
    sim: Simulator, clock: ManualClock, tmp_path: Path, calls: Calls
) -> None:
    # Given 11 batches created a second apart, listed 4 to a page
    client = batches(sim.base_url, page_size=4)
    path = batch_file(tmp_path, [request("only")])
    ids = []
    for _ in range(11):
        ids.append(client.create(path).id)
        clock.advance(timedelta(seconds=1))
    # When the batches created since the 6th are listed, and then all of them
    recent = list(client.created_since(START + timedelta(seconds=5)))
    recent_pages = len(calls.of("GET", "?limit="))
    everything = list(client.created_since(LONG_AGO))
    # Then they come newest first; the first listing stopped on page 2 at the first older batch
    assert [b.id for b in recent] == ids[:4:-1]
    assert all(b.created_at >= START + timedelta(seconds=5) for b in recent)
    assert recent_pages == 2
    assert [b.id for b in everything] == ids[::-1]
    pages = [urllib3.util.parse_url(url).query for m, url, _ in calls.seen if m == "GET" and "?limit=" in url][2:]
    assert pages == [
        "limit=4",
        f"limit=4&after_id={ids[7]}",
        f"limit=4&after_id={ids[3]}",
    ]


def test_created_since_needs_an_aware_time(sim: Simulator) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next(batches(sim.base_url).created_since(datetime(2026, 11, 20)))


def test_ids_are_checked_before_they_reach_a_url_and_an_unknown_one_is_not_found(sim: Simulator) -> None:
    client = batches(sim.base_url)
    for bad in ("../messages", "a/b", "", "x" * 129, "msgbatch_1?limit=1", "msgbatch_1\n"):
        with pytest.raises(ValueError, match="not a message batch id"):
            client.retrieve(bad)
        with pytest.raises(ValueError, match="not a message batch id"):
            client.results(bad)
    with pytest.raises(NotFoundError, match="HTTP 404 not_found_error: message_batch: no batch with id"):
        client.retrieve("msgbatch_unknown")


def test_the_results_of_a_batch_that_has_not_ended_are_refused_at_the_call(sim: Simulator, tmp_path: Path) -> None:
    client = batches(sim.base_url)
    created = client.create(batch_file(tmp_path, [request("a")]))
    with pytest.raises(UpstreamError, match="is in_progress and has no results_url"):
        client.results(created.id)


# --- Streaming -------------------------------------------------------------------------------------


def test_a_large_batch_goes_up_from_the_file_and_its_results_come_back_as_a_stream(
    sim: Simulator, clock: ManualClock, tmp_path: Path, calls: Calls, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a batch of 3,000 requests, and results read in 1,000-byte chunks (every line spans chunks)
    monkeypatch.setattr(batch_api, "RESULT_CHUNK_BYTES", 1000)
    client = batches(sim.base_url)
    path = batch_file(tmp_path, (request(f"unit-{i}", f"Question {i}?") for i in range(3000)))
    # When it is created, ends, and its results are read
    created = client.create(path)
    clock.advance(BATCH_DELAY)
    results = client.results(created.id)
    fetched_before_next = len(calls.of("GET", "/results"))
    first = next(results)
    rest = list(results)
    # Then the body went to urllib3 as the open file with its size, never as bytes
    (post,) = calls.of("POST")
    assert isinstance(post["body"], io.BufferedReader)
    assert post["body"].name == str(path)
    assert post["headers"]["content-length"] == str(path.stat().st_size)
    # And the results were a lazy generator over an unpreloaded response, every line whole
    assert isinstance(results, types.GeneratorType)
    assert fetched_before_next == 0
    (get,) = calls.of("GET", "/results")
    assert get["preload_content"] is False
    assert len(rest) + 1 == created.total == 3000
    assert {r["custom_id"] for r in [first, *rest]} == {f"unit-{i}" for i in range(3000)}


def test_results_abandoned_half_read_leave_the_client_usable(
    sim: Simulator, clock: ManualClock, tmp_path: Path
) -> None:
    # Given an ended batch of 50
    client = batches(sim.base_url)
    created = client.create(batch_file(tmp_path, (request(f"u{i}") for i in range(50))))
    clock.advance(BATCH_DELAY)
    # When its results are read half-way and closed, then read again in full
    results = client.results(created.id)
    half = [next(results) for _ in range(25)]
    results.close()  # type: ignore[attr-defined]
    again = list(client.results(created.id))
    # Then the second read is complete (results come in any order: only the set is compared)
    assert {r["custom_id"] for r in half} < {r["custom_id"] for r in again}
    assert len(again) == 50


# --- Refusals and uncertainty ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("requests", "key", "message"),
    [
        pytest.param([request("same"), request("same")], API_KEY, "HTTP 400 .*'same' is not unique", id="duplicate"),
        pytest.param([], API_KEY, "HTTP 400 .*at least 1 item", id="empty"),
        pytest.param([request("a")], "", "HTTP 401 authentication_error", id="no-key"),
    ],
)
def test_a_batch_claude_refuses_is_rejected_at_once_and_nothing_exists(
    sim: Simulator, tmp_path: Path, requests: list[dict[str, Any]], key: str, message: str
) -> None:
    # Given a batch Claude will refuse
    sleeps = Sleeps()
    client = batches(sim.base_url, sleeps, key=key)
    # When it is created / Then it is rejected with Claude's status and message, without a retry
    with pytest.raises(BatchRejectedError, match=message) as raised:
        client.create(batch_file(tmp_path, requests))
    assert "after 1 attempt(s)" in raised.value.message
    assert "request-id req_" in raised.value.message
    assert sleeps == []
    # And the workspace has no batch
    assert list(batches(sim.base_url).created_since(LONG_AGO)) == []


def test_a_body_over_the_size_limit_is_rejected_as_413(
    sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a batch limit of 10 kB (lowered so the test stays small) and a larger file
    monkeypatch.setattr(simulator_server, "BATCH_MAX_BYTES", 10_000)
    path = batch_file(tmp_path, [request("big", "word " * 5_000)])
    # When it is created / Then it is rejected as too large
    with pytest.raises(BatchRejectedError, match="HTTP 413 request_too_large"):
        batches(sim.base_url).create(path)


def test_a_rate_limited_create_waits_the_retry_after_and_succeeds(clock: ManualClock, tmp_path: Path) -> None:
    # Given half the creates rate-limited with a 3 s retry-after; seed 7 limits the first two attempts
    sleeps = Sleeps()
    with simulator(clock, rate_429=0.5, retry_after_seconds=3) as sim:
        client = batches(sim.base_url, sleeps, max_retries=2)
        # When a batch of 20 is created
        created = client.create(batch_file(tmp_path, (request(f"r{i}") for i in range(20))))
        listed = list(client.created_since(LONG_AGO))
        injected = sim.injected_faults
    # Then it was created on the third attempt, from the whole file each time, after two retry-after waits
    assert injected[429] == 2
    assert sleeps == [3.0, 3.0]
    assert created.total == 20
    assert [b.id for b in listed] == [created.id]


def test_an_overloaded_create_is_retried_with_backoff(clock: ManualClock, tmp_path: Path) -> None:
    # Given half the creates overloaded (no retry-after); seed 7 overloads the first two attempts
    sleeps = Sleeps()
    with simulator(clock, rate_529=0.5) as sim:
        created = batches(sim.base_url, sleeps).create(batch_file(tmp_path, [request("a")]))
    # Then it succeeded after two jittered backoffs of 0.5 s and 1 s
    assert created.total == 1
    assert len(sleeps) == 2
    assert 0.375 <= sleeps[0] <= 0.625
    assert 0.75 <= sleeps[1] <= 1.25


def test_a_rate_limit_that_outlasts_the_retries_is_a_rejection(clock: ManualClock, tmp_path: Path) -> None:
    sleeps = Sleeps()
    with simulator(clock, rate_429=1.0, retry_after_seconds=2) as sim:
        client = batches(sim.base_url, sleeps, max_retries=2)
        with pytest.raises(BatchRejectedError, match=r"after 3 attempt\(s\): HTTP 429 rate_limit_error"):
            client.create(batch_file(tmp_path, [request("a")]))
        injected = sim.injected_faults
        listed = list(client.created_since(LONG_AGO))
    assert (injected[429], sleeps, listed) == (3, [2.0, 2.0], [])


def test_a_500_on_create_is_uncertain_and_never_retried(clock: ManualClock, tmp_path: Path) -> None:
    # Given every create answered 500 (with x-should-retry: true)
    sleeps = Sleeps()
    with simulator(clock, rate_500=1.0) as sim:
        # When a batch is created / Then the outcome is uncertain after one attempt
        with pytest.raises(BatchSubmitUncertainError, match=r"HTTP 500 api_error.*may or may not exist"):
            batches(sim.base_url, sleeps, max_retries=2).create(batch_file(tmp_path, [request("a")]))
        injected = sim.injected_faults
    assert (injected[500], sleeps) == (1, [])


@pytest.fixture
def closed_port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


@pytest.mark.parametrize("target", ["closed_port", "silent_server"])
def test_a_create_that_gets_no_answer_is_uncertain_and_never_retried(
    target: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    # Given nothing that answers (connection refused, or a read timeout of 0.2 s)
    sleeps = Sleeps()
    client = batches(request.getfixturevalue(target), sleeps, timeout_s=0.2)
    # When a batch is created / Then it may exist: no retry
    with pytest.raises(BatchSubmitUncertainError, match="got no answer"):
        client.create(batch_file(tmp_path, [{"custom_id": "a", "params": {}}]))
    assert sleeps == []


def test_uncertain_means_it_may_exist_a_create_that_timed_out_is_found_by_created_since(
    clock: ManualClock, tmp_path: Path
) -> None:
    # Given an API that takes 0.5 s before it creates a batch, and a client that waits 0.1 s
    sleeps = Sleeps()
    with simulator(clock, latency_ms=500) as sim:
        client = batches(sim.base_url, sleeps, timeout_s=0.1)
        # When a batch is created
        with pytest.raises(BatchSubmitUncertainError, match=r"got no answer \(ReadTimeoutError\)"):
            client.create(batch_file(tmp_path, [request("a")]))
        # Then it was not retried, and the batch appears once the API has finished with it
        found: list[RemoteBatch] = []
        for _ in range(40):  # up to 2 s
            found = list(batches(sim.base_url).created_since(START))
            if found:
                break
            time.sleep(0.05)
    assert sleeps == []
    assert [b.total for b in found] == [1]


def test_reads_that_get_no_answer_are_retried_then_fail(closed_port: str) -> None:
    sleeps = Sleeps()
    with pytest.raises(UpstreamError, match=r"GET /v1/messages/batches/msgbatch_1 got no answer after 3 attempt\(s\)"):
        batches(closed_port, sleeps, max_retries=2).retrieve("msgbatch_1")
    assert len(sleeps) == 2


# --- A scripted server: GET retries and malformed answers ------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes | list[bytes] | Callable[[str], bytes] = b"{}"  # a list is sent chunked; a callable gets base_url
    headers: dict[str, str] = field(default_factory=dict)


class _Quiet(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return


class ScriptedServer:
    """Answers the n-th request with the n-th reply (the last repeats) and records each path."""

    def __init__(self, *replies: Reply) -> None:
        self.replies = replies
        self.paths: list[str] = []
        self._lock = threading.Lock()
        self._server: BaseWSGIServer = make_server("127.0.0.1", 0, self._app, threaded=True, request_handler=_Quiet)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def _app(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        request.get_data()
        with self._lock:
            self.paths.append(request.full_path.rstrip("?"))
            reply = self.replies[min(len(self.paths), len(self.replies)) - 1]
        body = reply.body(self.base_url) if callable(reply.body) else reply.body
        headers = {"content-type": "application/json", **reply.headers}
        if isinstance(body, list):
            response = Response(iter(body), status=reply.status, headers=headers, direct_passthrough=True)
        else:
            response = Response(body, status=reply.status, headers=headers)
        return response(environ, start_response)

    def __enter__(self) -> "ScriptedServer":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def batch_json(results_url: str | None = None, **overrides: Any) -> dict[str, Any]:
    return {
        "id": "msgbatch_01",
        "type": "message_batch",
        "processing_status": "ended" if results_url else "in_progress",
        "request_counts": {"processing": 0, "succeeded": 2, "errored": 0, "canceled": 0, "expired": 0},
        "created_at": "2026-11-20T12:00:00.000000Z",
        "ended_at": "2026-11-20T12:00:03+00:00" if results_url else None,
        "results_url": results_url,
        **overrides,
    }


def ended_batch(results_url: str = "/v1/messages/batches/msgbatch_01/results") -> Reply:
    return Reply(body=lambda base: json.dumps(batch_json(base + results_url)).encode())


def error_reply(status: int, error_type: str, message: str, **headers: str) -> Reply:
    body = json.dumps({"type": "error", "error": {"type": error_type, "message": message}}).encode()
    return Reply(status, body, headers)


def test_a_read_is_retried_through_503_and_429_honouring_retry_after() -> None:
    sleeps = Sleeps()
    replies = (
        error_reply(503, "api_error", "busy"),
        error_reply(429, "rate_limit_error", "slow down", **{"retry-after-ms": "1500"}),
        Reply(body=json.dumps(batch_json()).encode()),
    )
    with ScriptedServer(*replies) as server:
        batch = batches(server.base_url, sleeps, max_retries=2).retrieve("msgbatch_01")
    assert batch.id == "msgbatch_01"
    assert len(server.paths) == 3
    assert 0.375 <= sleeps[0] <= 0.625
    assert sleeps[1] == 1.5


def test_a_read_that_keeps_failing_names_the_status_and_claudes_message() -> None:
    sleeps = Sleeps()
    with (
        ScriptedServer(error_reply(500, "api_error", "Internal server error")) as server,
        pytest.raises(UpstreamError, match=r"after 2 attempt\(s\): HTTP 500 api_error: Internal server error"),
    ):
        batches(server.base_url, sleeps, max_retries=1).retrieve("msgbatch_01")
    assert len(sleeps) == 1


def test_a_429_on_create_that_says_do_not_retry_is_rejected_at_once(tmp_path: Path) -> None:
    sleeps = Sleeps()
    reply = error_reply(429, "rate_limit_error", "spend limit reached", **{"x-should-retry": "false"})
    with ScriptedServer(reply) as server, pytest.raises(BatchRejectedError, match="spend limit reached"):
        batches(server.base_url, sleeps).create(batch_file(tmp_path, [request("a")]))
    assert (len(server.paths), sleeps) == (1, [])


def test_a_create_answered_2xx_without_a_batch_is_uncertain(tmp_path: Path) -> None:
    with ScriptedServer(Reply(200, b"<html>ok</html>")) as server, pytest.raises(BatchSubmitUncertainError):
        batches(server.base_url).create(batch_file(tmp_path, [request("a")]))


def test_results_lines_split_across_chunks_are_joined_and_blank_lines_skipped() -> None:
    lines = [b'{"custom_id": "a", "result": {"type": "succ', b'eeded"}}\r\n\n{"custom_id": "b", ', b'"result": {}}']
    with ScriptedServer(ended_batch(), Reply(body=lines)) as server:
        results = list(batches(server.base_url).results("msgbatch_01"))
    assert results == [{"custom_id": "a", "result": {"type": "succeeded"}}, {"custom_id": "b", "result": {}}]
    assert server.paths == ["/v1/messages/batches/msgbatch_01", "/v1/messages/batches/msgbatch_01/results"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        pytest.param(b"{not json", "line 2 is not JSON", id="not-json"),
        pytest.param(b"[1, 2]", "line 2 is not an object", id="array"),
        pytest.param(b'{"result": {}}', "line 2 has no string custom_id", id="no-custom-id"),
        pytest.param(b'{"custom_id": "b", "result": "ok"}', r"line 2 \(b\) has no result object", id="bad-result"),
    ],
)
def test_a_malformed_results_line_is_an_upstream_error(line: bytes, message: str) -> None:
    body = b'{"custom_id": "a", "result": {"type": "expired"}}\n' + line + b"\n"
    with ScriptedServer(ended_batch(), Reply(body=body)) as server:
        results = batches(server.base_url).results("msgbatch_01")
        assert next(results)["custom_id"] == "a"
        with pytest.raises(UpstreamError, match=message):
            next(results)


def test_the_key_is_never_sent_over_http_to_another_host() -> None:
    reply = Reply(body=json.dumps(batch_json("http://files.example/results.jsonl")).encode())
    with ScriptedServer(reply) as server, pytest.raises(UpstreamError, match="refusing to send the API key"):
        batches(server.base_url).results("msgbatch_01")


# --- RemoteBatch.from_json -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        pytest.param({"id": None}, "id None is not a batch id", id="no-id"),
        pytest.param({"processing_status": "done"}, "unknown processing_status 'done'", id="status"),
        pytest.param({"request_counts": []}, "request_counts is not an object", id="counts"),
        pytest.param(
            {"request_counts": {"processing": 1, "succeeded": 0, "errored": 0, "canceled": 0}},
            "request_counts.expired is None",
            id="count-missing",
        ),
        pytest.param(
            {"request_counts": {"processing": -1, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}},
            "request_counts.processing is -1",
            id="negative",
        ),
        pytest.param({"created_at": "2026-11-20T12:00:00"}, "created_at .* is not an RFC 3339 time", id="naive"),
        pytest.param({"created_at": "yesterday"}, "created_at 'yesterday' is not", id="unparsable"),
        pytest.param({"created_at": None}, "created_at is missing", id="no-created-at"),
        pytest.param({"results_url": 7}, "results_url is 7", id="results-url"),
    ],
)
def test_a_malformed_batch_object_is_an_upstream_error(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(UpstreamError, match=message):
        RemoteBatch.from_json(batch_json(**overrides))


def test_a_batch_object_reads_times_as_utc() -> None:
    batch = RemoteBatch.from_json(batch_json("https://api.anthropic.com/r", created_at="2026-11-20T13:00:00+01:00"))
    assert batch.created_at == START
    assert batch.created_at.tzinfo == UTC
    assert batch.ended_at == START + BATCH_DELAY
    assert (batch.ended, batch.total) == (True, 2)


# --- Metrics: every attempt is an upstream call, a failed one an upstream error -----------------------


@pytest.fixture
def metrics_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", SERVICE)


def counted(capsys: pytest.CaptureFixture[str]) -> tuple[int, int, dict[str, int]]:
    """(calls, errors, errors per ErrorType) in the EMF printed since the last look."""
    return calls_and_errors(emitted(capsys.readouterr().out))


def test_a_batchs_lifecycle_counts_each_request_as_a_call_without_errors(
    sim: Simulator, clock: ManualClock, tmp_path: Path, metrics_on: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a batch created, read, listed, and its results read once it has ended
    client = batches(sim.base_url)
    created = client.create(batch_file(tmp_path, [request("a"), request("b")]))
    assert counted(capsys) == (1, 0, {})
    clock.advance(BATCH_DELAY)
    client.retrieve(created.id)
    list(client.created_since(LONG_AGO))
    results = list(client.results(created.id))
    # Then retrieve, the list page, and results' own retrieve and download are one call each
    assert len(results) == 2
    assert counted(capsys) == (4, 0, {})


@pytest.mark.parametrize(
    ("fault", "error_type"), [("rate_429", UpstreamErrorType.RATE_LIMITED), ("rate_529", UpstreamErrorType.OVERLOADED)]
)
def test_a_create_refused_at_the_door_then_made_counts_every_attempt(
    clock: ManualClock,
    tmp_path: Path,
    metrics_on: None,
    capsys: pytest.CaptureFixture[str],
    fault: str,
    error_type: UpstreamErrorType,
) -> None:
    # Given half the creates refused (seed 7 refuses the first two attempts)
    with simulator(clock, **{fault: 0.5}) as sim:
        # When a batch is created
        batches(sim.base_url, max_retries=2).create(batch_file(tmp_path, [request("a")]))
    # Then the three attempts are three calls, the two refused ones upstream errors of their kind
    assert counted(capsys) == (3, 2, {error_type: 2})


def test_a_create_claude_rejects_is_a_call_but_no_upstream_error(
    sim: Simulator, tmp_path: Path, metrics_on: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(BatchRejectedError, match="HTTP 400"):
        batches(sim.base_url).create(batch_file(tmp_path, []))
    assert counted(capsys) == (1, 0, {})


def test_attempts_that_get_no_answer_are_connection_errors(
    closed_port: str, tmp_path: Path, metrics_on: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given nothing listening
    client = batches(closed_port, max_retries=2)
    # When a batch is created (never retried: it may exist) and one is read (retried twice)
    with pytest.raises(BatchSubmitUncertainError):
        client.create(batch_file(tmp_path, [request("a")]))
    create = counted(capsys)
    with pytest.raises(UpstreamError, match="got no answer"):
        client.retrieve("msgbatch_1")
    # Then each attempt is a call and a connection error
    assert create == (1, 1, {UpstreamErrorType.CONNECTION: 1})
    assert counted(capsys) == (3, 3, {UpstreamErrorType.CONNECTION: 3})


def test_a_read_retried_through_503_and_429_counts_each_failure_by_kind(
    metrics_on: None, capsys: pytest.CaptureFixture[str]
) -> None:
    replies = (
        error_reply(503, "api_error", "busy"),
        error_reply(429, "rate_limit_error", "slow down"),
        Reply(body=json.dumps(batch_json()).encode()),
    )
    with ScriptedServer(*replies) as server:
        batches(server.base_url, max_retries=2).retrieve("msgbatch_01")
    assert counted(capsys) == (3, 2, {UpstreamErrorType.SERVER_ERROR: 1, UpstreamErrorType.RATE_LIMITED: 1})


class CutOff(list[bytes]):
    """Chunks a scripted server sends before it fails mid-body and drops the connection."""

    def __iter__(self) -> Iterator[bytes]:
        yield from super().__iter__()
        raise RuntimeError("the server broke off the results")


def test_results_that_break_off_count_the_download_as_one_failed_call(
    metrics_on: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an ended batch whose results stream breaks after its first line
    body = CutOff([b'{"custom_id": "a", "result": {"type": "succeeded"}}\n'])
    with ScriptedServer(ended_batch(), Reply(body=body)) as server:
        results = batches(server.base_url).results("msgbatch_01")
        # When the results are read / Then the first line comes, then the break
        assert next(results)["custom_id"] == "a"
        with pytest.raises(UpstreamError, match="broke off after 1 line"):
            next(results)
    # And the retrieve is a call, the download a call and a connection error: counted once, at its end
    assert counted(capsys) == (2, 1, {UpstreamErrorType.CONNECTION: 1})


def test_results_abandoned_half_read_count_the_download_once_without_an_error(
    sim: Simulator, clock: ManualClock, tmp_path: Path, metrics_on: None, capsys: pytest.CaptureFixture[str]
) -> None:
    client = batches(sim.base_url)
    created = client.create(batch_file(tmp_path, (request(f"u{i}") for i in range(10))))
    clock.advance(BATCH_DELAY)
    capsys.readouterr()
    results = client.results(created.id)
    next(results)
    results.close()  # type: ignore[attr-defined]
    assert counted(capsys) == (2, 0, {})
