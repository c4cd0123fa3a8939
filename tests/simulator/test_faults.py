"""Injected faults: seeded shares of 429 / 529 / 500 and added latency, as the SDK experiences them."""

import json
import time

import anthropic
import httpx2
import pytest
from anthropic.types import MessageParam

from costgate_local.simulator import FaultConfig, Simulator, SimulatorOptions
from tests.simulator.conftest import API_KEY, error_body, first_text, sdk

MODEL = "claude-haiku-4-5"
HELLO: list[MessageParam] = [{"role": "user", "content": "Ping?"}]


def statuses(sim: Simulator, count: int) -> list[int]:
    with httpx2.Client(base_url=sim.base_url, headers={"x-api-key": API_KEY}, timeout=30) as http:
        body = json.dumps({"model": MODEL, "max_tokens": 5, "messages": HELLO}).encode()
        return [http.post("/v1/messages", content=body).status_code for _ in range(count)]


def test_a_429_rate_of_1_gives_the_sdk_a_rate_limit_error_with_retry_after() -> None:
    # Given every request rate-limited, with a 7-second retry-after
    options = SimulatorOptions(faults=FaultConfig(rate_429=1.0, retry_after_seconds=7))
    # When the SDK (no retries) asks
    with Simulator(options) as sim, sdk(sim) as client, pytest.raises(anthropic.RateLimitError) as raised:
        client.messages.create(model=MODEL, max_tokens=5, messages=HELLO)
    # Then it sees a 429 rate_limit_error telling it when to come back
    assert raised.value.status_code == 429
    assert raised.value.response.headers["retry-after"] == "7"
    assert error_body(raised.value)["error"]["type"] == "rate_limit_error"
    assert raised.value.request_id is not None


def test_the_sdk_retries_through_a_seeded_50_percent_529_rate_and_succeeds() -> None:
    # Given half the requests overloaded (seeded), and the SDK's default of 2 retries
    options = SimulatorOptions(faults=FaultConfig(rate_529=0.5), seed=10)
    with Simulator(options) as sim, sdk(sim, max_retries=2) as client:
        # When it sends three requests
        messages = [client.messages.create(model=MODEL, max_tokens=5, messages=HELLO) for _ in range(3)]
        injected = sim.injected_faults
    # Then each eventually succeeds, after at least one 529 on the way
    assert all(first_text(m).startswith("[simulated]") for m in messages)
    assert injected[529] == 2


def test_faults_are_reproducible_for_a_seed() -> None:
    # Given two simulators with the same seed and one with another, each a third 529 / a third 500
    faults = FaultConfig(rate_529=1 / 3, rate_500=1 / 3)
    runs = []
    for seed in (11, 11, 12):
        with Simulator(SimulatorOptions(faults=faults, seed=seed)) as sim:
            # When the same 30 requests are sent
            runs.append(statuses(sim, 30))
    # Then the same seed gives the same sequence, and a mix of all three outcomes
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]
    assert set(runs[0]) == {200, 500, 529}


def test_faults_apply_to_messages_count_tokens_and_batch_creation_but_not_reads() -> None:
    # Given every faulted request failing with a 500
    with Simulator(SimulatorOptions(faults=FaultConfig(rate_500=1.0))) as sim, sdk(sim) as client:
        # When each kind of request is made
        with pytest.raises(anthropic.InternalServerError):
            client.messages.create(model=MODEL, max_tokens=5, messages=HELLO)
        with pytest.raises(anthropic.InternalServerError):
            client.messages.count_tokens(model=MODEL, messages=HELLO)
        with pytest.raises(anthropic.InternalServerError):
            client.messages.batches.create(
                requests=[{"custom_id": "a", "params": {"model": MODEL, "max_tokens": 5, "messages": HELLO}}]
            )
        listed = client.messages.batches.list()
        injected = sim.injected_faults
    # Then the three fail with api_error and listing batches is untouched
    assert listed.data == []
    assert injected[500] == 3


def test_added_latency_delays_each_request() -> None:
    # Given 150 ms of added latency
    with Simulator(SimulatorOptions(faults=FaultConfig(latency_ms=150))) as sim, sdk(sim) as client:
        # When a request is timed
        started = time.monotonic()
        client.messages.count_tokens(model=MODEL, messages=HELLO)
        elapsed = time.monotonic() - started
    # Then it took at least that long
    assert elapsed >= 0.15


def test_fault_rates_are_validated() -> None:
    # Given rates that cannot be shares / Then the config refuses them
    with pytest.raises(ValueError, match="between 0 and 1"):
        FaultConfig(rate_429=1.5)
    with pytest.raises(ValueError, match="more than 1"):
        FaultConfig(rate_429=0.6, rate_529=0.6)
