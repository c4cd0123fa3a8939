"""ClaudeBatches' contract, for FakeClaudeBatches and HttpClaudeBatches against the Claude API simulator (both
on a ManualClock): a batch's life from a file to its results, listing, and what Claude refuses.

How a batch ends differs (the fake ends when told, the simulator after its batch delay), so each
implementation comes with `finish()`, which moves the clock past that point and ends every batch.
"""

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from costgate.claude.batches import HttpClaudeBatches
from costgate.claude.ports import ClaudeBatches
from costgate.errors import BatchRejectedError, NotFoundError, UpstreamError
from costgate_local.simulator import FaultConfig, ManualClock, Simulator, SimulatorOptions
from tests.contract.conftest import FAKE
from tests.fakes.claude import FakeClaudeBatches

START = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
BATCH_DELAY = timedelta(seconds=3)
MODEL = "claude-haiku-5-5"


@dataclass
class Claude:
    client: ClaudeBatches
    clock: ManualClock
    finish: Callable[[], None]


@pytest.fixture(params=[FAKE, "simulator"])
def claude(request: pytest.FixtureRequest) -> Iterator[Claude]:
    clock = ManualClock(START)

    def past_the_delay() -> None:
        clock.advance(BATCH_DELAY + timedelta(seconds=1))

    if request.param == FAKE:
        fake = FakeClaudeBatches(clock)

        def finish() -> None:
            past_the_delay()
            fake.end_all(clock.now())

        yield Claude(fake, clock, finish)
        return
    options = SimulatorOptions(clock=clock, batch_delay=BATCH_DELAY, faults=FaultConfig(), seed=7)
    with Simulator(options) as sim:
        yield Claude(
            HttpClaudeBatches(sim.base_url, lambda: "sk-sim-contract", sleep=lambda _: None), clock, past_the_delay
        )


def request(custom_id: str, text: str = "Summarise the day.") -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "params": {"model": MODEL, "max_tokens": 16, "messages": [{"role": "user", "content": text}]},
    }


def batch_file(tmp_path: Path, requests: Iterable[Any], name: str = "batch.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps({"requests": list(requests)}), encoding="utf-8")
    return path


def test_a_batch_from_a_file_is_in_progress_then_ended_with_every_result(claude: Claude, tmp_path: Path) -> None:
    # Given a file of three requests
    path = batch_file(tmp_path, (request(f"doc-{i}", f"Question {i}?") for i in range(3)))

    # When it is created, read, and read again once it has ended
    created = claude.client.create(path)
    running = claude.client.retrieve(created.id)
    claude.finish()
    ended = claude.client.retrieve(created.id)
    results = list(claude.client.results(created.id))

    # Then it was in progress with everything processing, created now
    assert (created.processing_status, created.created_at, created.ended_at, created.results_url) == (
        "in_progress",
        START,
        None,
        None,
    )
    assert (running.id, running.ended, running.total) == (created.id, False, 3)
    assert dict(running.request_counts) == {"processing": 3, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
    # And it ended with three successes, each custom_id once
    assert ended.ended
    assert ended.ended_at is not None
    assert START < ended.ended_at <= claude.clock.now()
    assert ended.results_url is not None
    assert (dict(ended.request_counts), ended.total) == (
        {"processing": 0, "succeeded": 3, "errored": 0, "canceled": 0, "expired": 0},
        3,
    )
    assert sorted(r["custom_id"] for r in results) == ["doc-0", "doc-1", "doc-2"]
    for result in results:
        assert result["result"]["type"] == "succeeded"
        assert result["result"]["message"]["model"] == MODEL
        assert result["result"]["message"]["usage"]["service_tier"] == "batch"


def test_the_results_of_a_batch_that_has_not_ended_are_refused_at_the_call(claude: Claude, tmp_path: Path) -> None:
    created = claude.client.create(batch_file(tmp_path, [request("a")]))
    with pytest.raises(UpstreamError, match="in_progress"):
        claude.client.results(created.id)


def test_an_unknown_batch_is_not_found_and_a_malformed_id_is_refused(claude: Claude) -> None:
    with pytest.raises(NotFoundError, match="msgbatch_unknown"):
        claude.client.retrieve("msgbatch_unknown")
    with pytest.raises(NotFoundError, match="msgbatch_unknown"):
        claude.client.results("msgbatch_unknown")
    for bad in ("../messages", "a/b", "", "x" * 129, "msgbatch_1?limit=1", "msgbatch_1\n"):
        with pytest.raises(ValueError, match="not a message batch id"):
            claude.client.retrieve(bad)
        with pytest.raises(ValueError, match="not a message batch id"):
            claude.client.results(bad)


def test_created_since_lists_newest_first_and_stops_before_older_batches(claude: Claude, tmp_path: Path) -> None:
    # Given four batches created a second apart
    path = batch_file(tmp_path, [request("only")])
    ids = []
    for _ in range(4):
        ids.append(claude.client.create(path).id)
        claude.clock.advance(timedelta(seconds=1))

    # When listing those created at or after the second one's creation
    listed = list(claude.client.created_since(START + timedelta(seconds=1)))

    # Then the last three come, newest first, ended or not
    assert [b.id for b in listed] == ids[:0:-1]
    assert [b.created_at for b in listed] == [START + timedelta(seconds=s) for s in (3, 2, 1)]
    assert list(claude.client.created_since(START + timedelta(seconds=4))) == []
    claude.finish()
    assert [b.id for b in claude.client.created_since(START)] == ids[::-1]


def test_created_since_needs_an_aware_time(claude: Claude) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next(iter(claude.client.created_since(datetime(2026, 11, 20))))


@pytest.mark.parametrize(
    ("requests", "reason"),
    [
        ([], "at least 1 item"),
        ([request("doc-1"), request("doc-1")], "not unique"),
        ([request("doc 1")], "custom_id"),
        ([request("d" * 65)], "custom_id"),
        ([{"custom_id": "doc-1", "params": "hello"}], "params"),
        (["doc-1"], "requests.0"),
    ],
    ids=["empty", "duplicate-id", "space-in-id", "65-char-id", "params-not-an-object", "request-not-an-object"],
)
def test_a_batch_claude_refuses_is_rejected_and_nothing_exists(
    claude: Claude, tmp_path: Path, requests: list[Any], reason: str
) -> None:
    # When a body Claude refuses is sent
    with pytest.raises(BatchRejectedError, match="HTTP 400 invalid_request_error") as caught:
        claude.client.create(batch_file(tmp_path, requests))
    # Then the refusal says why, and no batch was created
    assert caught.match(reason)
    assert list(claude.client.created_since(START - timedelta(days=1))) == []
