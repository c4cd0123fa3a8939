"""Message Batches through the SDK, on the ManualClock: each test quotes the documented rule it checks."""

import json
from datetime import timedelta
from typing import Any, cast

import anthropic
import httpx2
import pytest
from anthropic.types import Message, TextBlockParam
from anthropic.types.messages import MessageBatchErroredResult, MessageBatchResult, MessageBatchSucceededResult
from anthropic.types.messages.batch_create_params import Request
from anthropic.types.shared import ErrorObject

from costgate_local.simulator import ManualClock, Simulator, SimulatorOptions
from costgate_local.simulator import server as simulator_server
from tests.simulator.conftest import API_KEY, BATCH_DELAY, START, error_body, first_text, prose, sdk

MODEL = "claude-haiku-5-5"


def request(custom_id: str, text: str = "Summarise the day.", **params: Any) -> Request:
    """A batch request as JSON; some tests send invalid ones on purpose, so `params` are not checked here."""
    return cast(
        "Request",
        {
            "custom_id": custom_id,
            "params": {"model": MODEL, "max_tokens": 100, "messages": [{"role": "user", "content": text}], **params},
        },
    )


def succeeded(result: MessageBatchResult) -> Message:
    assert isinstance(result, MessageBatchSucceededResult), result
    return result.message


def errored(result: MessageBatchResult) -> ErrorObject:
    assert isinstance(result, MessageBatchErroredResult), result
    return result.error.error


def finish(clock: ManualClock) -> None:
    clock.advance(BATCH_DELAY + timedelta(seconds=1))


def test_a_batch_of_3_ends_after_the_delay_with_batch_tier_usage_in_every_result(
    client: anthropic.Anthropic, clock: ManualClock
) -> None:
    """ "request_counts … (all but processing stay 0 until the batch ends)"; results carry service_tier "batch"."""
    # Given a batch of three requests
    batch = client.messages.batches.create(requests=[request(f"req-{i}", f"Question {i}?") for i in range(3)])
    # When it is read before and after batch_delay has passed on the clock
    running = client.messages.batches.retrieve(batch.id)
    with pytest.raises(anthropic.AnthropicError, match="No `results_url`"):
        client.messages.batches.results(batch.id)
    finish(clock)
    ended = client.messages.batches.retrieve(batch.id)
    results = list(client.messages.batches.results(batch.id))
    # Then it was in progress with everything processing, and ended with three batch-tier successes
    assert running.processing_status == "in_progress"
    assert running.request_counts.model_dump() == {
        "processing": 3,
        "succeeded": 0,
        "errored": 0,
        "canceled": 0,
        "expired": 0,
    }
    assert running.results_url is None
    assert batch.expires_at - batch.created_at == timedelta(hours=24)
    assert ended.processing_status == "ended"
    assert ended.ended_at == START + BATCH_DELAY
    assert ended.request_counts.succeeded == 3
    assert ended.results_url is not None
    assert ended.results_url.startswith("http://127.0.0.1:")
    assert sorted(r.custom_id for r in results) == ["req-0", "req-1", "req-2"]
    for result in results:
        assert result.result.type == "succeeded"
        assert succeeded(result.result).usage.service_tier == "batch"
        assert first_text(succeeded(result.result)).startswith("[simulated] ")


def test_batch_requests_go_through_the_same_prompt_cache(client: anthropic.Anthropic, clock: ManualClock) -> None:
    """ "Use the 1 h cache TTL for shared prefixes in batches": the first request writes, the rest read."""
    # Given two batch requests sharing a 1-hour cached system prompt
    system: list[TextBlockParam] = [
        {"type": "text", "text": prose(60), "cache_control": {"type": "ephemeral", "ttl": "1h"}}
    ]
    batch = client.messages.batches.create(
        requests=[request("first", "One?", system=system), request("second", "Two?", system=system)]
    )
    # When the batch ends
    finish(clock)
    usage = {r.custom_id: succeeded(r.result).usage for r in client.messages.batches.results(batch.id)}
    # Then the first wrote the prefix as a 1-hour write and the second read it
    written = usage["first"].cache_creation
    assert written is not None
    assert written.ephemeral_1h_input_tokens > 512
    assert usage["second"].cache_read_input_tokens == usage["first"].cache_creation_input_tokens
    # And an interactive request in the same workspace reads it too, at the standard tier
    message = client.messages.create(
        model=MODEL, max_tokens=20, system=system, messages=[{"role": "user", "content": "Three?"}]
    )
    assert message.usage.cache_read_input_tokens == usage["first"].cache_creation_input_tokens
    assert message.usage.service_tier == "standard"


@pytest.mark.parametrize(
    ("requests", "message"),
    [
        pytest.param([request("has space")], "custom_id: String should match pattern", id="space"),
        pytest.param([request("x" * 65)], "custom_id: String should match pattern", id="too-long"),
        pytest.param([request("")], "custom_id: String should match pattern", id="empty"),
        pytest.param([request("same"), request("same")], "'same' is not unique", id="duplicate"),
        pytest.param([], "at least 1 item", id="no-requests"),
    ],
)
def test_custom_ids_must_match_the_pattern_and_be_unique(
    client: anthropic.Anthropic, requests: list[Request], message: str
) -> None:
    """ "custom_id matches ^[a-zA-Z0-9_-]{1,64}$, unique in the batch" — checked at creation (400)."""
    # Given an invalid batch / When it is created
    with pytest.raises(anthropic.BadRequestError, match=message):
        client.messages.batches.create(requests=requests)
    # Then no batch exists
    assert list(client.messages.batches.list()) == []


def test_more_than_100000_requests_is_a_400(sim: Simulator) -> None:
    """ "≤ 100,000 requests … per batch"."""
    # Given 100,001 (minimal) requests
    body = {"requests": [{"custom_id": f"r{i}", "params": {}} for i in range(100_001)]}
    # When the batch is created
    response = httpx2.post(
        f"{sim.base_url}/v1/messages/batches",
        content=json.dumps(body).encode(),
        headers={"x-api-key": API_KEY, "content-type": "application/json"},
        timeout=60,
    )
    # Then it is rejected
    assert response.status_code == 400
    assert "at most 100,000 requests" in response.json()["error"]["message"]


def test_a_batch_body_over_the_limit_is_a_413(client: anthropic.Anthropic, monkeypatch: pytest.MonkeyPatch) -> None:
    """ "256 MB per batch" → 413 request_too_large (the limit is lowered here so the test stays small)."""
    # Given a batch limit of 10 kB
    monkeypatch.setattr(simulator_server, "BATCH_MAX_BYTES", 10_000)
    # When a larger batch is created
    with pytest.raises(anthropic.APIStatusError) as raised:
        client.messages.batches.create(requests=[request("big", "x " * 10_000)])
    # Then it is a 413 request_too_large
    assert raised.value.status_code == 413
    assert error_body(raised.value)["error"]["type"] == "request_too_large"


def test_params_errors_surface_only_in_the_results(client: anthropic.Anthropic, clock: ManualClock) -> None:
    """ "Params errors surface only when the batch ends" — as `errored` results with the error object."""
    # Given a batch with a good request, one without max_tokens and one for an unknown model
    no_max = cast(
        "Request", {"custom_id": "no-max", "params": {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]}}
    )
    unknown = request("unknown-model", model="claude-imaginary-9")
    batch = client.messages.batches.create(requests=[request("good"), no_max, unknown])
    # When it is created, then ends
    assert batch.processing_status == "in_progress"
    finish(clock)
    results = {r.custom_id: r.result for r in client.messages.batches.results(batch.id)}
    ended = client.messages.batches.retrieve(batch.id)
    # Then only the results say what was wrong
    assert ended.request_counts.succeeded == 1
    assert ended.request_counts.errored == 2
    assert results["good"].type == "succeeded"
    assert results["no-max"].type == "errored"
    assert errored(results["no-max"]).type == "invalid_request_error"
    assert "max_tokens" in errored(results["no-max"]).message
    assert errored(results["unknown-model"]).type == "not_found_error"


def test_cancel_moves_to_canceling_then_ends_with_unprocessed_requests_canceled(
    client: anthropic.Anthropic, clock: ManualClock
) -> None:
    """ "Once cancellation is initiated, the batch enters a canceling state"; unprocessed requests end `canceled`."""
    # Given a batch of 4 whose first 2 requests are done (each takes a quarter of batch_delay)
    batch = client.messages.batches.create(requests=[request(f"r{i}") for i in range(4)])
    clock.advance(BATCH_DELAY * 0.55)
    # When it is canceled
    canceling = client.messages.batches.cancel(batch.id)
    still = client.messages.batches.retrieve(batch.id)
    clock.advance(timedelta(seconds=1))
    ended = client.messages.batches.retrieve(batch.id)
    results = {r.custom_id: r.result.type for r in client.messages.batches.results(batch.id)}
    # Then it is canceling until cancellation completes, then ended with the rest canceled
    assert canceling.processing_status == "canceling"
    assert canceling.cancel_initiated_at == START + BATCH_DELAY * 0.55
    assert still.processing_status == "canceling"
    assert still.request_counts.processing == 4
    assert ended.processing_status == "ended"
    assert (ended.request_counts.succeeded, ended.request_counts.canceled) == (2, 2)
    assert results == {"r0": "succeeded", "r1": "succeeded", "r2": "canceled", "r3": "canceled"}
    # And an ended batch cannot be canceled again
    with pytest.raises(anthropic.BadRequestError, match="already ended"):
        client.messages.batches.cancel(batch.id)


def test_list_pages_newest_first_by_after_id_and_before_id(client: anthropic.Anthropic, clock: ManualClock) -> None:
    """List pagination: `limit`, `after_id`, `before_id`; responses carry data/has_more/first_id/last_id."""
    # Given five batches created a second apart (b0 oldest)
    ids = []
    for i in range(5):
        ids.append(client.messages.batches.create(requests=[request(f"r{i}")]).id)
        clock.advance(timedelta(seconds=1))
    newest_first = ids[::-1]
    # When they are listed two at a time
    first = client.messages.batches.list(limit=2)
    assert first.last_id is not None
    second = client.messages.batches.list(limit=2, after_id=first.last_id)
    assert second.first_id is not None
    back = client.messages.batches.list(limit=2, before_id=second.first_id)
    everything = [b.id for b in client.messages.batches.list(limit=2)]
    # Then pages follow newest-first order with correct cursors and has_more
    assert [b.id for b in first.data] == newest_first[:2]
    assert (first.first_id, first.last_id, first.has_more) == (newest_first[0], newest_first[1], True)
    assert [b.id for b in second.data] == newest_first[2:4]
    assert [b.id for b in back.data] == newest_first[:2]
    assert back.has_more is False
    assert everything == newest_first
    last = client.messages.batches.list(limit=2, after_id=newest_first[3])
    assert ([b.id for b in last.data], last.has_more) == ([newest_first[4]], False)


def test_delete_works_only_once_the_batch_has_ended(client: anthropic.Anthropic, clock: ManualClock) -> None:
    """ "Message Batches can only be deleted once they've finished processing"."""
    # Given a batch in progress
    batch = client.messages.batches.create(requests=[request("only")])
    # When it is deleted before and after it ends
    with pytest.raises(anthropic.BadRequestError, match="only ended batches can be deleted"):
        client.messages.batches.delete(batch.id)
    finish(clock)
    deleted = client.messages.batches.delete(batch.id)
    # Then the second delete succeeds and the batch is gone
    assert (deleted.id, deleted.type) == (batch.id, "message_batch_deleted")
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.retrieve(batch.id)


def test_a_batch_not_ended_24h_after_creation_expires() -> None:
    """ "expires 24 h after creation": unprocessed requests end `expired`."""
    # Given a simulator whose batches would take 30 hours
    clock = ManualClock(START)
    options = SimulatorOptions(clock=clock, batch_delay=timedelta(hours=30))
    with Simulator(options) as sim, sdk(sim) as client:
        batch = client.messages.batches.create(requests=[request(f"r{i}") for i in range(5)])
        # When 24 hours pass
        clock.advance(timedelta(hours=24))
        ended = client.messages.batches.retrieve(batch.id)
        results = sorted(r.result.type for r in client.messages.batches.results(batch.id))
    # Then the batch ended at expires_at; requests due by then succeeded, the rest expired
    assert ended.processing_status == "ended"
    assert ended.ended_at == ended.expires_at == START + timedelta(hours=24)
    # (request i of 5 finishes at 6 h × (i + 1): four are done by 24 h)
    assert results == ["expired", "succeeded", "succeeded", "succeeded", "succeeded"]
    assert (ended.request_counts.succeeded, ended.request_counts.expired) == (4, 1)


def test_batches_belong_to_the_workspace_that_created_them(sim: Simulator) -> None:
    with sdk(sim, api_key="sk-owner") as owner, sdk(sim, api_key="sk-other") as other:
        # Given a batch created by one key
        batch = owner.messages.batches.create(requests=[request("mine")])
        # When another key looks for it
        with pytest.raises(anthropic.NotFoundError):
            other.messages.batches.retrieve(batch.id)
        listed = list(other.messages.batches.list())
    # Then it neither finds nor lists it
    assert listed == []
