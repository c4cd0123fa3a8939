"""Streams through the Gateway service: relayed live, priced at message_stop, receipt, then settled once."""

import json
import threading
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import pytest

from costgate.accounting.budgets import Budget
from costgate.accounting.ledger import RequestState
from costgate.accounting.ports import RootState
from costgate.errors import NotFoundError
from costgate.gateway import service
from costgate.gateway.receipts import REQUEST_ID_HEADER, receipt_document
from costgate.gateway.streaming import DetachedSink, StreamedAnswer
from costgate.observability import MetricName
from costgate.pricing.cost import price_usage
from costgate.pricing.model_limits import limits_for
from tests.unit.gateway_world import (
    NOW,
    OPUS,
    LiveScript,
    RecordingSink,
    error_reply,
    live_script,
    make_world,
    receipt_of,
    stream_reply,
    worst_case,
)

START = {"input_tokens": 1000, "output_tokens": 1, "cache_read_input_tokens": 0, "service_tier": "standard"}
FINAL = {**START, "output_tokens": 500}
FINAL_COST = Decimal("0.014")  # 1000×4/1e6 + 500×20/1e6
STREAM_BODY = json.dumps(
    {"model": OPUS, "max_tokens": 512, "stream": True, "messages": [{"role": "user", "content": "Say hello."}]}
).encode()


def events(*, stop: bool = True, deltas: tuple[int, ...] = (200, 500), text_deltas: int = 3) -> list[dict[str, Any]]:
    message = {"id": "msg_s1", "type": "message", "role": "assistant", "model": OPUS, "content": [], "usage": START}
    found: list[dict[str, Any]] = [
        {"type": "message_start", "message": message},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
    ]
    found += [
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": f"part {i} "}}
        for i in range(text_deltas)
    ]
    found.append({"type": "content_block_stop", "index": 0})
    found += [
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn" if n == deltas[-1] else None},
            "usage": {"output_tokens": n},
        }
        for n in deltas
    ]
    if stop:
        found.append({"type": "message_stop"})
    return found


def overloaded() -> dict[str, Any]:
    return {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}


@pytest.fixture
def metrics(monkeypatch: pytest.MonkeyPatch) -> list[MetricName]:
    emitted: list[MetricName] = []
    monkeypatch.setattr(service, "emit_count", lambda name, value=1, dimension=None: emitted.append(name))
    return emitted


def test_each_event_reaches_the_client_before_claude_sends_the_next() -> None:
    # Given a stream that, before each chunk, records how much the client already has
    script = live_script(stream_reply(*events()))
    world = make_world(script)
    seen: list[int] = []
    sink = RecordingSink()
    script.on_chunk = lambda i: seen.append(len(sink.writes))

    # When it is relayed
    world.send_streamed(STREAM_BODY, sink)

    # Then chunk i was handed over only once the client had the i chunks before it: nothing is buffered
    assert seen == list(range(len(script.chunks)))
    # and Claude's bytes reached the client unchanged, the receipt after them
    assert sink.body.startswith(b"".join(script.chunks))
    assert script.closed


def test_the_headers_say_what_is_known_at_the_start_and_no_cost() -> None:
    world = make_world(stream_reply(*events(), request_id="req_live1"), daily_budget_usd="1")
    held = worst_case(STREAM_BODY)

    answer = world.gateway.create_message(world.request(STREAM_BODY))

    assert isinstance(answer, StreamedAnswer)
    headers = answer.headers
    assert headers[REQUEST_ID_HEADER].startswith("cg_")  # costgate's id, its ledger row's, known before Claude
    assert headers["request-id"] == "req_live1"
    assert headers["x-costgate-model"] == OPUS
    assert headers["x-costgate-route-reason"] == "explicit model"
    assert headers["x-costgate-cache"] == "miss"
    assert OPUS in headers["x-costgate-price-version"]
    # the budget left before this call: the whole 1 USD (its worst case is held while it runs)
    assert headers["x-costgate-budget-remaining-before-usd"] == "1"
    assert world.counter(world.key_scope) == (held, Decimal(0))
    # and no cost yet: it is known only at the end
    assert "x-costgate-cost-usd" not in headers
    assert "x-costgate-baseline-cost-usd" not in headers
    assert world.ledger.entries == {}


def test_the_receipt_comes_after_message_stop_the_stream_ends_then_the_books_settle() -> None:
    # Given a budgeted key, and a client whose end of stream looks at the books
    world = make_world(stream_reply(*events(), request_id="req_s2"), daily_budget_usd="1")
    at_end: list[tuple[int, tuple[Decimal, Decimal]]] = []
    sink = RecordingSink(on_end=lambda: at_end.append((len(world.ledger.entries), world.counter(world.key_scope))))

    # When the stream is relayed
    response = world.send_streamed(STREAM_BODY, sink)

    # Then the receipt is the ledger's row, priced from the LAST cumulative usage (500, never 1+200+500)
    receipt = receipt_of(response.body)
    request_id = response.headers[REQUEST_ID_HEADER]
    entry = world.ledger.entries[request_id]
    assert entry.upstream_request_id == receipt["upstream_request_id"] == "req_s2"
    assert receipt == {**json.loads(json.dumps(receipt_document(entry))), "complete": True}
    assert receipt["cost_usd"] == str(FINAL_COST)
    assert Decimal(receipt["cost_usd"]) == price_usage(OPUS, FINAL, NOW).total_usd
    assert receipt["tokens"]["output"] == 500
    # and the stream had ended before anything was recorded; the hold was still the worst case then
    assert at_end == [(0, (worst_case(STREAM_BODY), Decimal(0)))]
    # and afterwards the hold is settled to the exact cost, once
    assert world.counter(world.key_scope) == (FINAL_COST, FINAL_COST)
    assert list(world.ledger.entries) == [request_id]


def test_a_client_that_hangs_up_after_four_events_is_billed_once_for_the_whole_answer(
    metrics: list[MetricName],
) -> None:
    # Given a long answer and a client that goes away after 4 events
    script = live_script(stream_reply(*events(text_deltas=40), request_id="req_gone"))
    world = make_world(script, daily_budget_usd="1")
    sink = RecordingSink(hang_up_after=4)

    # When it is relayed
    world.send_streamed(STREAM_BODY, sink)

    # Then Claude was read to its end and the whole answer billed, exactly once
    assert script.handed == len(script.chunks)
    assert sink.client_gone
    assert len(sink.writes) == 4
    (entry,) = world.ledger.entries.values()
    assert (entry.upstream_request_id, entry.usage.output_tokens) == ("req_gone", 500)
    assert world.counter(world.key_scope) == (FINAL_COST, FINAL_COST)
    assert MetricName.CLIENT_DISCONNECTS in metrics


def test_claudes_error_event_mid_stream_is_relayed_and_the_hold_settled_from_the_usage_seen(
    metrics: list[MetricName],
) -> None:
    # Given a stream that breaks off with Claude's own error event after 200 output tokens
    body = stream_reply(*events(stop=False, deltas=(200,)), overloaded(), request_id="req_err1")
    world = make_world(body, daily_budget_usd="1")

    response = world.send(STREAM_BODY)

    # Then the client gets Claude's error event as sent (and no second one of ours)
    assert response.body.count(b"event: error") == 1
    assert b'"overloaded_error"' in response.body
    # and the request is billed what Claude reported before it: 1000 in, 200 out = 0.008
    receipt = receipt_of(response.body)
    assert (receipt["cost_usd"], receipt["complete"]) == ("0.008", False)
    assert world.counter(world.key_scope) == (Decimal("0.008"), Decimal("0.008"))
    assert MetricName.STREAM_ERRORS in metrics


def test_a_broken_connection_to_claude_ends_the_stream_with_an_error_event_of_claudes_shape() -> None:
    # Given a stream whose connection breaks in the middle of an event
    script = live_script(stream_reply(*events(deltas=(200, 500)), request_id="req_cut"))
    delta_200 = next(i for i, chunk in enumerate(script.chunks) if b'"output_tokens": 200' in chunk)
    script.chunks[delta_200 + 1] = script.chunks[delta_200 + 1][:15]  # half of the next event, then nothing
    script.break_after = delta_200 + 2
    world = make_world(script, daily_budget_usd="1")

    response = world.send(STREAM_BODY)

    # Then the half event never reached the client; an error event follows the last whole one
    whole = b"".join(script.chunks[: delta_200 + 1])
    error = b'event: error\ndata: {"type":"error","error":{"type":"api_error",'
    assert response.body.startswith(whole + error)
    assert script.closed
    # and the hold is settled from the usage seen: 200 output tokens
    assert receipt_of(response.body)["tokens"]["output"] == 200
    assert world.counter(world.key_scope) == (Decimal("0.008"), Decimal("0.008"))


def test_an_error_before_any_usage_releases_the_hold() -> None:
    world = make_world(stream_reply(overloaded(), request_id="req_none"), daily_budget_usd="1")

    response = world.send(STREAM_BODY)

    assert response.body.startswith(b"event: error\n")
    assert b"costgate-receipt" not in response.body
    assert world.ledger.entries == {}
    assert world.counter(world.key_scope) == (Decimal(0), Decimal(0))
    assert world.budgets.calls.count("give_back") == 1
    assert [world.ledger.state(request_id) for request_id in world.ledger.rows] == [RequestState.ABANDONED]


def test_the_functions_deadline_stops_the_reading_and_bills_what_was_reported() -> None:
    # Given a stream still running when the deadline has passed (the world's deadline is a fixed instant)
    script = live_script(stream_reply(*events(deltas=(200, 500))))
    world = make_world(script, daily_budget_usd="1")
    request = world.request(STREAM_BODY)
    answer = world.gateway.create_message(type(request)(request.body, request.headers, deadline=-1.0))
    assert isinstance(answer, StreamedAnswer)
    sink = RecordingSink()

    answer.relay(sink)

    # Then it stopped after the first chunk, with an error event, billed on message_start's usage
    assert script.handed == 1
    assert b"event: error" in sink.body
    assert receipt_of(sink.body)["tokens"]["output"] == 1


@pytest.mark.parametrize("status", [400, 429, 529])
def test_an_error_before_the_first_byte_keeps_its_status_and_shape(status: int) -> None:
    failure = error_reply(status, "overloaded_error" if status == 529 else "invalid_request_error", "no")
    world = make_world(failure, daily_budget_usd="1")

    response = world.send(STREAM_BODY)

    assert (response.status, response.body) == (failure.status, failure.body)
    assert world.counter(world.key_scope) == (Decimal(0), Decimal(0))


def test_max_tokens_beyond_the_models_limit_reaches_claude_for_its_400_not_a_budget_429() -> None:
    # Given a 1 USD budget, which 10^12 output tokens would exceed a million times over
    refusal = error_reply(400, "invalid_request_error", "max_tokens: 1000000000000 > 128000")
    world = make_world(refusal, daily_budget_usd="1000")
    body = json.dumps({"model": OPUS, "max_tokens": 10**12, "messages": [{"role": "user", "content": "hi"}]}).encode()
    held: list[Decimal] = []
    world.upstream.during_call = lambda: held.append(world.counter(world.key_scope)[0])

    response = world.send(body)

    # Then Claude's 400 comes back, and the hold was the worst case at the model's own output limit
    assert response.status == 400
    limit = limits_for(OPUS).max_output_tokens
    output_at_limit = price_usage(OPUS, {"output_tokens": limit}, NOW).total_usd
    assert held == [worst_case(body)]
    assert output_at_limit < held[0] < output_at_limit + Decimal("0.01")  # plus the (overestimated) prompt


def test_a_completed_stream_is_stored_and_a_hit_replays_it_as_a_stream_with_its_receipt() -> None:
    world = make_world(stream_reply(*events(), request_id="req_first"))

    first = world.send(STREAM_BODY)
    second = world.send(STREAM_BODY)

    # Claude answered once; the second stream is the first one's bytes, its own receipt after them
    assert len(world.upstream.sent) == 1
    original = first.body[: first.body.index(b": costgate-receipt")]
    assert second.body.startswith(original)
    assert second.headers["x-costgate-cache"] == "exact-hit"
    receipt = receipt_of(second.body)
    assert receipt["cost_usd"] == "0"
    assert receipt["savings_usd"] == {"answer_cache": str(FINAL_COST)}
    assert receipt["request_id"] == second.headers[REQUEST_ID_HEADER]
    assert receipt["request_id"] in world.ledger.entries


def test_an_incomplete_stream_is_never_stored() -> None:
    world = make_world(stream_reply(*events(stop=False), overloaded()), stream_reply(*events()))

    world.send(STREAM_BODY)
    world.send(STREAM_BODY)

    assert len(world.upstream.sent) == 2


def test_a_request_is_found_by_its_own_tenant_only() -> None:
    world = make_world(stream_reply(*events(), request_id="req_mine"))
    mine = world.send(STREAM_BODY).headers[REQUEST_ID_HEADER]
    headers = {"x-api-key": world.api_key}

    assert world.gateway.find_request(headers, mine).cost.total_usd == FINAL_COST
    with pytest.raises(NotFoundError):
        world.gateway.find_request(headers, "req_unknown")

    other = make_world(tenant="other")
    other.ledger.rows.update(world.ledger.rows)  # the same rows, seen with another tenant's key
    with pytest.raises(NotFoundError):
        other.gateway.find_request({"x-api-key": other.api_key}, mine)


def test_a_live_script_is_only_for_streaming_requests() -> None:
    world = make_world(LiveScript(headers={}, chunks=[]))
    with pytest.raises(AssertionError):
        world.send()


def test_a_failure_between_claudes_headers_and_the_first_byte_closes_the_stream_and_releases_the_hold(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a stream whose headers came, and a budget store that fails when the gateway reads what remains
    script = live_script(stream_reply(*events()))
    world = make_world(script, daily_budget_usd="1")

    roots = world.budgets.roots

    def broken(windows: Sequence[tuple[Budget, str]]) -> dict[tuple[str, str, str], RootState]:
        if threading.current_thread().name.startswith("costgate-beside-claude"):  # the read for the headers
            raise RuntimeError("the budget table is unreachable")
        return roots(windows)

    monkeypatch.setattr(world.budgets, "roots", broken)

    # When the request is made, the failure reaches the caller (a 500 before any byte)
    with pytest.raises(RuntimeError):
        world.gateway.create_message(world.request(STREAM_BODY))

    # Then Claude's connection was given back and nothing stays held
    assert script.closed
    assert world.counter(world.key_scope) == (Decimal(0), Decimal(0))


def test_a_stream_whose_response_could_not_start_is_still_read_to_the_end_and_recorded() -> None:
    # Given a streamed answer whose response never started (its relay goes to a detached sink)
    script = live_script(stream_reply(*events(), request_id="req_detached"))
    world = make_world(script, daily_budget_usd="1")
    answer = world.gateway.create_message(world.request(STREAM_BODY))
    assert isinstance(answer, StreamedAnswer)

    answer.relay(DetachedSink())

    # Then Claude was read to its end and the request billed and settled, once
    assert script.handed == len(script.chunks)
    (entry,) = world.ledger.entries.values()
    assert (entry.upstream_request_id, entry.usage.output_tokens) == ("req_detached", 500)
    assert world.counter(world.key_scope) == (FINAL_COST, FINAL_COST)
