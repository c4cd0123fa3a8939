"""Streaming: both SDK paths work, and the final usage equals the non-streaming usage for the same state."""

from typing import Any

import anthropic
from anthropic.types.message_create_params import MessageCreateParamsBase

from costgate_local.simulator import Simulator
from tests.simulator.conftest import first_text, prompt_total, prose, sdk

MODEL = "claude-opus-5-5"


def _params(**overrides: Any) -> dict[str, Any]:
    system = [{"type": "text", "text": prose(80), "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
    return {
        "model": MODEL,
        "max_tokens": 3000,
        "system": system,
        "messages": [{"role": "user", "content": "How much did the support bot cost yesterday?"}],
        **overrides,
    }


def test_streamed_final_usage_equals_the_non_streaming_usage_for_the_same_cache_state(sim: Simulator) -> None:
    """ "Each message_delta carries CUMULATIVE usage. Take the last values": the SDK's final message
    then matches the non-streaming message field for field."""
    params = _params(
        thinking={"type": "enabled", "budget_tokens": 1024},
        tools=[{"type": "web_search_20260318", "name": "web_search"}],
    )
    # Given two workspaces in the same state (nothing cached), one asked with and one without streaming
    with sdk(sim, api_key="sk-plain") as plain, sdk(sim, api_key="sk-streamed") as streamed:
        written = plain.messages.create(**params)
        with streamed.messages.stream(**params) as stream:
            streamed_written = stream.get_final_message()
        # When both repeat the request (now a cache read)
        read = plain.messages.create(**params)
        with streamed.messages.stream(**params) as stream:
            streamed_read = stream.get_final_message()
    # Then usage and content agree in both states
    assert streamed_written.usage == written.usage
    assert streamed_read.usage == read.usage
    assert written.usage.cache_creation_input_tokens > 0
    assert read.usage.cache_read_input_tokens == written.usage.cache_creation_input_tokens
    assert [b.model_dump() for b in streamed_read.content] == [b.model_dump() for b in read.content]
    assert streamed_read.stop_reason == read.stop_reason


def test_create_with_stream_true_yields_the_documented_event_sequence(client: anthropic.Anthropic) -> None:
    # Given a tool the user asks for by name
    tool = {
        "name": "get_spend",
        "input_schema": {"type": "object", "properties": {"day": {"type": "string"}}, "required": ["day"]},
    }
    params = _params(tools=[tool], messages=[{"role": "user", "content": "Use get_spend for yesterday."}])
    # When it is streamed with create(stream=True)
    events = list(client.messages.create(stream=True, **params))
    # Then the events come in the documented order, with usage so far first and cumulative usage last
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start"
    assert kinds[-2:] == ["message_delta", "message_stop"]
    assert set(kinds[1:-2]) == {"content_block_start", "content_block_delta", "content_block_stop"}
    start, delta = events[0], events[-2]
    assert start.type == "message_start"
    assert delta.type == "message_delta"
    assert start.message.usage.output_tokens == 1
    assert start.message.usage.cache_creation_input_tokens == delta.usage.cache_creation_input_tokens
    assert delta.usage.output_tokens > 1
    assert delta.delta.stop_reason == "tool_use"
    json_deltas = [
        e.delta.partial_json for e in events if e.type == "content_block_delta" and e.delta.type == "input_json_delta"
    ]
    assert "".join(json_deltas) == '{"day":"simulated day"}'


def test_a_streamed_text_reassembles_to_the_non_streamed_text(client: anthropic.Anthropic) -> None:
    # Given a Korean question without caching
    params: MessageCreateParamsBase = {
        "model": MODEL,
        "max_tokens": 400,
        "messages": [{"role": "user", "content": "어제 비용은 얼마였나요?"}],
    }
    # When it is asked with and without streaming
    plain = client.messages.create(**params)
    with client.messages.stream(**params) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    # Then the deltas join to the same text and the usage is the same
    assert text == first_text(plain)
    assert final.usage == plain.usage
    assert (
        prompt_total(final.usage) == client.messages.count_tokens(model=MODEL, messages=params["messages"]).input_tokens
    )
