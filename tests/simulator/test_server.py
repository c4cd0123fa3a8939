"""The simulator as a process and as options: `python -m costgate_local.simulator`, flags, clocks, routes."""

import argparse
import json
import select
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import anthropic
import httpx2
import pytest
from anthropic.types import MessageParam

from costgate_local.simulator import (
    FaultConfig,
    ManualClock,
    Simulator,
    SimulatorOptions,
    SystemClock,
    add_simulator_arguments,
    simulator_options_from_args,
)
from tests.simulator.conftest import API_KEY, START

HELLO: list[MessageParam] = [{"role": "user", "content": "Hello"}]


def test_the_module_prints_a_ready_line_serves_moves_its_clock_and_stops_on_sigterm() -> None:
    # Given the simulator started as a process with a manual clock and a 60-second batch delay
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "costgate_local.simulator",
            "--port",
            "0",
            "--manual-clock",
            START.isoformat(),
            "--batch-delay",
            "60",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        readable, _, _ = select.select([process.stdout], [], [], 20)  # bounded wait for the ready line
        assert readable, "no ready line within 20 s"
        ready = json.loads(process.stdout.readline())
        base_url = ready["base_url"]
        with anthropic.Anthropic(base_url=base_url, api_key=API_KEY, max_retries=0) as client:
            # When a message is sent, a batch created, and the clock moved through the admin endpoint
            message = client.messages.create(model="claude-haiku-5-5", max_tokens=10, messages=HELLO)
            batch = client.messages.batches.create(
                requests=[
                    {"custom_id": "a", "params": {"model": "claude-haiku-5-5", "max_tokens": 5, "messages": HELLO}}
                ]
            )
            moved = httpx2.post(f"{base_url}/_simulator/clock", json={"advance_seconds": 61}, timeout=10).json()
            ended = client.messages.batches.retrieve(batch.id)
        # Then it served them, and the batch ended by the moved clock
        assert base_url.startswith("http://127.0.0.1:")
        assert message.usage.output_tokens > 0
        assert datetime.fromisoformat(moved["now"]) == START + timedelta(seconds=61)
        assert ended.processing_status == "ended"
    finally:
        process.send_signal(signal.SIGTERM)
        returncode = process.wait(timeout=10)
    # And SIGTERM stops it cleanly
    assert returncode == 0


def test_help_documents_the_fault_flags() -> None:
    # Given the module's --help
    result = subprocess.run(
        [sys.executable, "-m", "costgate_local.simulator", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    # Then every flag is documented
    assert result.returncode == 0
    for flag in (
        "--fault-429",
        "--fault-529",
        "--fault-500",
        "--retry-after",
        "--latency-ms",
        "--batch-delay",
        "--seed",
    ):
        assert flag in result.stdout
    assert "rate_limit_error" in result.stdout


def test_simulator_options_come_from_the_flags() -> None:
    # Given a parser with the simulator's flags (as `costgate serve` builds it)
    parser = argparse.ArgumentParser()
    add_simulator_arguments(parser)
    # When flags are parsed
    faults = ["--fault-429", "0.1", "--fault-529", "0.2", "--fault-500", "0.05", "--retry-after", "3"]
    timing = ["--latency-ms", "20", "--batch-delay", "9", "--seed", "42", "--manual-clock", "2026-11-20T12:00:00+00:00"]
    args = parser.parse_args([*faults, *timing])
    options = simulator_options_from_args(args, port=8123)
    defaults = simulator_options_from_args(parser.parse_args([]))
    # Then the options carry them, and the defaults are a system clock, no faults and a 3-second batch delay
    assert options.port == 8123
    assert options.faults == FaultConfig(
        rate_429=0.1, rate_529=0.2, rate_500=0.05, retry_after_seconds=3, latency_ms=20
    )
    assert options.batch_delay == timedelta(seconds=9)
    assert options.seed == 42
    assert isinstance(options.clock, ManualClock)
    assert options.clock.now() == START
    assert isinstance(defaults.clock, SystemClock)
    assert defaults.faults == FaultConfig()
    assert defaults.batch_delay == timedelta(seconds=3)


@pytest.mark.parametrize("flags", [["--fault-429", "1.5"], ["--seed", "x"], ["--manual-clock", "2026-11-20T12:00:00"]])
def test_bad_flags_are_rejected_by_the_parser(flags: list[str]) -> None:
    parser = argparse.ArgumentParser()
    add_simulator_arguments(parser)
    # Given a bad value / Then argparse refuses it
    with pytest.raises(SystemExit):
        parser.parse_args(flags)


def test_the_clock_endpoint_exists_only_for_a_manual_clock(sim: Simulator) -> None:
    # Given one simulator on a ManualClock and one on the system clock
    with Simulator(SimulatorOptions(clock=SystemClock())) as system_sim:
        # When each is asked to move time
        manual = httpx2.post(f"{sim.base_url}/_simulator/clock", json={"advance_seconds": 90}, timeout=10)
        refused = httpx2.post(f"{system_sim.base_url}/_simulator/clock", json={"advance_seconds": 90}, timeout=10)
        negative = httpx2.post(f"{sim.base_url}/_simulator/clock", json={"advance_seconds": -1}, timeout=10)
    # Then only the manual one moves, and only forward
    assert manual.status_code == 200
    assert sim.clock.now() == START + timedelta(seconds=90)
    assert refused.status_code == 404
    assert refused.json()["error"]["type"] == "not_found_error"
    assert negative.status_code == 400


def test_a_manual_clock_moves_only_when_told() -> None:
    # Given a manual clock
    clock = ManualClock(START)
    # When it is advanced and set
    clock.advance(timedelta(minutes=6))
    after_advance = clock.now()
    clock.set(datetime(2027, 1, 1, tzinfo=UTC))
    # Then it reports exactly those times, and refuses naive times and going backwards by advance
    assert after_advance == START + timedelta(minutes=6)
    assert clock.now() == datetime(2027, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="timezone-aware"):
        ManualClock(datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="only moves forward"):
        clock.advance(timedelta(seconds=-1))


def test_unknown_routes_and_methods_answer_in_the_apis_error_shape(sim: Simulator) -> None:
    # Given paths and methods the API does not have
    missing = httpx2.get(f"{sim.base_url}/v1/nothing", headers={"x-api-key": API_KEY}, timeout=10)
    wrong = httpx2.get(f"{sim.base_url}/v1/messages", headers={"x-api-key": API_KEY}, timeout=10)
    # Then they are 404 not_found_error and 405, each with a request id
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "not_found_error"
    assert missing.json()["request_id"] == missing.headers["request-id"]
    assert wrong.status_code == 405
    assert wrong.headers["request-id"].startswith("req_")
