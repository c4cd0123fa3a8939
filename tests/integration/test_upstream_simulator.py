"""HttpUpstream against the Claude API simulator: usage read from JSON and SSE, retries through faults.

Retry waits go to a recording `sleep`, so no test waits for a backoff or a retry-after.
"""

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from costgate.claude.messages import HttpUpstream
from costgate.claude.transport import UpstreamResponse
from costgate.claude.usage import read_final_usage
from costgate_local.simulator import FaultConfig, Simulator, SimulatorOptions

VERSION = {"anthropic-version": "2026-10-21"}
MODEL = "claude-opus-5-5"
SYSTEM = "Costgate keeps every Claude request within budget and explains each cost. " * 80


def body(**overrides: Any) -> bytes:
    params = {
        "model": MODEL,
        "max_tokens": 3000,
        "system": [{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "tools": [{"type": "web_search_20260318", "name": "web_search"}],
        "messages": [{"role": "user", "content": "How much did the support bot cost yesterday?"}],
        **overrides,
    }
    return json.dumps(params).encode()


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(SimulatorOptions()) as simulator:
        yield simulator


def client(sim: Simulator, key: str = "sk-sim-test", **kw: Any) -> HttpUpstream:
    return HttpUpstream(sim.base_url, lambda: key, **kw)


def post(upstream: HttpUpstream, payload: bytes, headers: dict[str, str] | None = None) -> UpstreamResponse:
    return upstream.post("/v1/messages", payload, headers or VERSION, time.monotonic() + 30)


def test_streamed_and_plain_messages_give_the_same_final_usage_in_each_cache_state(sim: Simulator) -> None:
    # Given two workspaces in the same state (nothing cached): one asks plainly, one streams
    plain, streamed = client(sim, "sk-plain"), client(sim, "sk-streamed")
    readings = []
    for _state in ("cache write", "cache read"):
        # When both send the same request (the second round reads the cache the first wrote)
        answer = post(plain, body())
        stream = post(streamed, body(stream=True))
        assert (answer.status, stream.status) == (200, 200)
        assert stream.headers["content-type"].startswith("text/event-stream")
        readings.append((json.loads(answer.body), answer.final_usage(), stream.final_usage()))
    # Then the SSE's final usage is the JSON message's usage, field for field, nested objects included
    for message, from_json, from_stream in readings:
        assert from_json is not None
        assert from_stream is not None
        assert from_json.usage == message["usage"]
        assert from_stream.usage == message["usage"]
        assert from_stream.model == from_json.model == MODEL
        assert from_stream.complete
    (written, _, _), (read, _, _) = readings
    assert written["usage"]["cache_creation"]["ephemeral_1h_input_tokens"] > 0
    assert read["usage"]["cache_read_input_tokens"] == written["usage"]["cache_creation_input_tokens"]
    assert "server_tool_use" in written["usage"]


def test_the_clients_anthropic_version_reaches_the_api_and_its_400_comes_back_as_is(sim: Simulator) -> None:
    # Given a body with `temperature`, removed in API version 2026-10-21
    payload = body(temperature=0.2, thinking={"type": "disabled"}, tools=[])
    upstream = client(sim, max_retries=2, sleep=Sleeps())
    # When it is sent with the new version, then with an old one
    rejected = post(upstream, payload, {"anthropic-version": "2026-10-21"})
    accepted = post(upstream, payload, {"anthropic-version": "2023-06-01"})
    # Then the version decided: the 400 is Claude's own error, not retried; the old version succeeds
    assert (rejected.status, rejected.attempts) == (400, 1)
    error = json.loads(rejected.body)
    assert error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"
    assert "temperature" in error["error"]["message"]
    assert rejected.headers["request-id"].startswith("req_")
    assert accepted.status == 200


def test_a_seeded_half_overloaded_api_is_retried_to_success() -> None:
    # Given half the requests overloaded; seed 7 overloads the first request's first two attempts
    sleeps = Sleeps()
    options = SimulatorOptions(faults=FaultConfig(rate_529=0.5), seed=7)
    with Simulator(options) as sim:
        upstream = client(sim, max_retries=4, sleep=sleeps)
        # When three requests are sent
        responses = [post(upstream, body(stream=bool(i % 2))) for i in range(3)]
        injected = sim.injected_faults
    # Then all succeed, the first after retries, and every extra attempt answered a 529
    assert [r.status for r in responses] == [200, 200, 200]
    assert responses[0].attempts > 1
    assert sum(r.attempts for r in responses) == 3 + injected[529]
    assert len(sleeps) == injected[529]
    assert all(0.375 <= wait <= 10 for wait in sleeps)  # backoff: no retry-after on a 529
    assert all(r.final_usage() is not None for r in responses)


def test_a_rate_limit_that_never_lifts_returns_the_last_429_with_its_retry_after() -> None:
    # Given every request rate-limited, with a 7-second retry-after
    sleeps = Sleeps()
    with Simulator(SimulatorOptions(faults=FaultConfig(rate_429=1.0, retry_after_seconds=7))) as sim:
        # When a request is made with 2 retries
        response = post(client(sim, max_retries=2, sleep=sleeps), body())
        injected = sim.injected_faults
    # Then it waited the retry-after twice (recorded, not slept) and returns Claude's 429 for the client's SDK
    assert sleeps == [7.0, 7.0]
    assert (response.status, response.attempts, injected[429]) == (429, 3, 3)
    assert response.headers["retry-after"] == "7"
    assert response.headers["x-should-retry"] == "true"
    assert json.loads(response.body)["error"]["type"] == "rate_limit_error"
    assert response.final_usage() is None


def test_added_latency_is_all_the_time_a_call_takes() -> None:
    # Given 150 ms of added latency per request
    with Simulator(SimulatorOptions(faults=FaultConfig(latency_ms=150))) as sim:
        upstream = client(sim)
        post(upstream, body())  # warm the pool, as a warm Lambda would be
        # When a request is timed
        started = time.monotonic()
        response = post(upstream, body())
        elapsed = time.monotonic() - started
    # Then it took the latency plus little overhead
    assert response.status == 200
    assert 0.15 <= elapsed < 0.15 + 0.5
    assert read_final_usage(response.body, response.headers["content-type"]) is not None
