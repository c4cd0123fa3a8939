"""Streams as Claude sends them: text deltas of 1–3 tokens, paced by --stream-token-ms; max_tokens bounded per model."""

import argparse
from typing import Any

import anthropic
import pytest

from costgate.pricing.model_limits import limits_for, model_limits
from costgate.pricing.prices import default_price_book
from costgate_local.simulator import Simulator, SimulatorOptions, add_simulator_arguments, simulator_options_from_args
from costgate_local.simulator import server as simulator_server
from costgate_local.simulator.engine import stream_events, token_deltas
from costgate_local.simulator.tokens import count_text
from tests.simulator.conftest import sdk

MODEL = "claude-haiku-5-5"


def _text_deltas(events: list[Any]) -> list[str]:
    return [e.delta.text for e in events if e.type == "content_block_delta" and e.delta.type == "text_delta"]


@pytest.mark.parametrize(
    "question",
    ["Summarise the refund policy.", "환불 정책을 세 문장으로 요약해 주세요.", "Emoji please 😀😀 and numbers 1234567"],
)
def test_text_comes_in_deltas_of_one_to_three_tokens(client: anthropic.Anthropic, question: str) -> None:
    messages: list[anthropic.types.MessageParam] = [{"role": "user", "content": question}]
    # When an answer is streamed
    events = list(client.messages.create(model=MODEL, max_tokens=400, messages=messages, stream=True))
    deltas = _text_deltas(events)
    # Then every delta is 1-3 tokens, they join into the answer, and together they are its output tokens
    message = client.messages.create(model=MODEL, max_tokens=400, messages=messages)
    block = message.content[0]
    assert block.type == "text"
    assert "".join(deltas) == block.text
    assert all(1 <= count_text(delta) <= 3 for delta in deltas)
    assert sum(count_text(delta) for delta in deltas) == message.usage.output_tokens
    assert len({count_text(delta) for delta in deltas}) > 1  # the sizes vary, as Claude's do


def test_the_cut_is_reproducible_and_exact() -> None:
    text = "[simulated] 안녕하세요, this answer has words of every length: extraordinarily 12345 😀."
    assert token_deltas(text) == token_deltas(text)
    assert "".join(chunk for chunk, _ in token_deltas(text)) == text
    assert [tokens for _, tokens in token_deltas(text)] == [count_text(chunk) for chunk, _ in token_deltas(text)]


def test_the_pace_is_asked_for_every_output_token(client: anthropic.Anthropic) -> None:
    # Given a message with thinking and text (both count as output)
    message = client.messages.create(
        model=MODEL,
        max_tokens=2000,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": "Why is the sky blue?"}],
    ).model_dump()
    paced: list[int] = []
    # When it is streamed with a pace
    events = b"".join(stream_events(message, paced.append)).decode()
    # Then the pace saw exactly the message's output tokens, one delta at a time
    assert sum(paced) == message["usage"]["output_tokens"]
    assert all(1 <= tokens <= 3 for tokens in paced)
    assert events.count("event: content_block_delta") == len(paced) + 1  # + the signature delta


def test_the_server_sleeps_stream_token_ms_per_token(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a simulator at 40 ms per token, whose sleeps are recorded instead of slept
    slept: list[float] = []
    monkeypatch.setattr(simulator_server, "_sleep", slept.append)
    with Simulator(SimulatorOptions(stream_token_ms=40)) as sim, sdk(sim) as client:
        messages: list[anthropic.types.MessageParam] = [{"role": "user", "content": "Tell me a story."}]
        with client.messages.stream(model=MODEL, max_tokens=300, messages=messages) as stream:
            final = stream.get_final_message()
        plain = client.messages.create(model=MODEL, max_tokens=300, messages=messages)
    # Then the stream slept 40 ms per output token, and a non-streamed answer did not sleep at all
    assert sum(slept) == pytest.approx(final.usage.output_tokens * 0.040)
    assert plain.usage.output_tokens == final.usage.output_tokens


def test_stream_token_ms_is_a_serve_and_simulator_flag() -> None:
    parser = argparse.ArgumentParser()
    add_simulator_arguments(parser)
    assert simulator_options_from_args(parser.parse_args(["--stream-token-ms", "150"])).stream_token_ms == 150
    assert simulator_options_from_args(parser.parse_args([])).stream_token_ms == 0
    with pytest.raises(SystemExit):
        parser.parse_args(["--stream-token-ms", "-1"])


def test_max_tokens_above_the_model_limit_is_claudes_400(client: anthropic.Anthropic) -> None:
    limit = limits_for(MODEL).max_output_tokens
    message: anthropic.types.MessageParam = {"role": "user", "content": "hi"}
    # (an explicit timeout: without one the SDK itself refuses a non-streamed call with a large max_tokens)
    client = client.with_options(timeout=60)
    # A max_tokens at the limit is accepted
    assert client.messages.create(model=MODEL, max_tokens=limit, messages=[message]).stop_reason == "end_turn"
    # One above it, or a trillion, is refused in the API's words
    for max_tokens in (limit + 1, 1_000_000_000_000):
        with pytest.raises(anthropic.BadRequestError) as raised:
            client.messages.create(model=MODEL, max_tokens=max_tokens, messages=[message])
        body = raised.value.body
        assert isinstance(body, dict)
        assert body["error"]["message"] == (
            f"max_tokens: {max_tokens} > {limit}, which is the maximum allowed number of output tokens for {MODEL}"
        )
    # An alias takes its model's limit and is named as the request named it
    with pytest.raises(anthropic.BadRequestError, match=r"32000, which .* claude-opus-4-1-20250805"):
        client.messages.create(model="claude-opus-4-1-20250805", max_tokens=32001, messages=[message])


def test_every_priced_model_has_an_output_limit() -> None:
    assert set(model_limits()) == set(default_price_book().rows)
