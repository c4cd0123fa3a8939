"""POST /v1/messages and count_tokens: validation and errors as the API sends them, and deterministic answers."""

import json
from typing import Any

import anthropic
import httpx2
import pytest
from anthropic.types import MessageParam, ToolParam

from costgate.pricing.prices import default_price_book
from costgate_local.simulator import Simulator
from costgate_local.simulator.models import MODEL_TOKENIZERS
from tests.simulator.conftest import API_KEY, error_body, first_text

MODEL = "claude-sonnet-5-5"
HELLO: list[MessageParam] = [{"role": "user", "content": "Hello, what does this month cost us?"}]


def raw_post(sim: Simulator, path: str, body: Any, headers: dict[str, str] | None = None) -> httpx2.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx2.post(
        f"{sim.base_url}{path}",
        content=content,
        headers={"content-type": "application/json", **(headers or {})},
        timeout=30,
    )


def test_an_older_client_authenticates_with_x_api_key_and_an_older_version_accepts_temperature(
    sim: Simulator,
) -> None:
    # Given a pre-2.x client: x-api-key, anthropic-version 2023-06-01, and a temperature
    body = {"model": MODEL, "max_tokens": 64, "temperature": 0.2, "messages": HELLO}
    # When it posts to /v1/messages
    response = raw_post(sim, "/v1/messages", body, {"x-api-key": API_KEY, "anthropic-version": "2023-06-01"})
    # Then it gets a message with usage and a request id
    assert response.status_code == 200, response.text
    message = response.json()
    assert message["type"] == "message"
    assert message["content"][0]["text"].startswith("[simulated] ")
    assert message["usage"]["input_tokens"] > 0
    assert response.headers["request-id"].startswith("req_")


def test_temperature_is_rejected_under_api_version_2026_10_21(client: anthropic.Anthropic) -> None:
    # Given the SDK 2.14 client, which sends anthropic-version 2026-10-21
    # When a request carries temperature
    with pytest.raises(anthropic.BadRequestError) as raised:
        client.messages.create(model=MODEL, max_tokens=64, messages=HELLO, extra_body={"temperature": 0.5})
    # Then it is a 400 invalid_request_error naming the parameter
    assert error_body(raised.value)["error"]["type"] == "invalid_request_error"
    assert "temperature" in error_body(raised.value)["error"]["message"]


def test_a_missing_max_tokens_is_a_400(client: anthropic.Anthropic) -> None:
    # Given a body without max_tokens
    # When it is sent
    with pytest.raises(anthropic.BadRequestError, match="max_tokens: Field required") as raised:
        client.post("/v1/messages", body={"model": MODEL, "messages": HELLO}, cast_to=object)
    # Then the error has the API's shape, with the request id in the body and the header
    body = raised.value.body
    assert isinstance(body, dict)
    assert body["type"] == "error"
    assert body["request_id"] == raised.value.response.headers["request-id"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param({"max_tokens": 10, "messages": HELLO}, "model: Field required", id="no-model"),
        pytest.param({"model": 5, "max_tokens": 10, "messages": HELLO}, "model: Input should be", id="model-type"),
        pytest.param({"model": MODEL, "max_tokens": 0, "messages": HELLO}, "greater than or equal to 1", id="zero"),
        pytest.param({"model": MODEL, "max_tokens": "9", "messages": HELLO}, "valid integer", id="max-str"),
        pytest.param({"model": MODEL, "max_tokens": 10, "messages": []}, "at least one message", id="empty"),
        pytest.param({"model": MODEL, "max_tokens": 10}, "messages: Field required", id="no-messages"),
        pytest.param(
            {"model": MODEL, "max_tokens": 10, "messages": [{"role": "system", "content": "x"}]},
            "role: Input should be 'user' or 'assistant'",
            id="bad-role",
        ),
        pytest.param(
            {"model": MODEL, "max_tokens": 10, "messages": [{"role": "assistant", "content": "x"}]},
            "first message must use the 'user' role",
            id="assistant-first",
        ),
        pytest.param(
            {"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": [{"type": "video"}]}]},
            "does not match any of the expected tags",
            id="unknown-block",
        ),
        pytest.param(
            {"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": ""}]},
            "non-empty content",
            id="empty-content",
        ),
        pytest.param(
            {"model": MODEL, "max_tokens": 10, "messages": HELLO, "cache_control": {"type": "ephemeral", "ttl": "2h"}},
            "ttl: Input should be '5m' or '1h'",
            id="bad-ttl",
        ),
    ],
)
def test_invalid_requests_are_400_invalid_request_error(
    client: anthropic.Anthropic, body: dict[str, Any], message: str
) -> None:
    # Given an invalid body / When it is sent
    with pytest.raises(anthropic.BadRequestError, match=message) as raised:
        client.post("/v1/messages", body=body, cast_to=object)
    # Then it is a 400 invalid_request_error
    assert error_body(raised.value)["error"]["type"] == "invalid_request_error"


def test_an_unknown_model_is_a_404_not_found_error(client: anthropic.Anthropic) -> None:
    # Given a model the price book does not know / When it is asked
    with pytest.raises(anthropic.NotFoundError) as raised:
        client.messages.create(model="claude-imaginary-9", max_tokens=10, messages=HELLO)
    # Then it is a 404 not_found_error naming the model, like the API
    assert error_body(raised.value)["error"] == {"type": "not_found_error", "message": "model: claude-imaginary-9"}


def test_a_request_without_a_key_is_a_401(sim: Simulator) -> None:
    # Given no x-api-key and no Authorization header / When a message is posted
    response = raw_post(sim, "/v1/messages", {"model": MODEL, "max_tokens": 10, "messages": HELLO})
    # Then it is a 401 authentication_error
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"
    assert response.headers["request-id"].startswith("req_")


def test_malformed_json_is_a_400_and_an_oversized_body_a_413(sim: Simulator) -> None:
    headers = {"authorization": f"Bearer {API_KEY}"}
    # Given a body that is not JSON, and one over 32 MB
    broken = raw_post(sim, "/v1/messages", b'{"model": ', headers)
    huge = raw_post(sim, "/v1/messages", b" " * (32 * 1024 * 1024 + 1), headers)
    # Then the first is a 400 and the second a 413 request_too_large
    assert broken.status_code == 400
    assert broken.json()["error"]["type"] == "invalid_request_error"
    assert huge.status_code == 413
    assert huge.json()["error"]["type"] == "request_too_large"


def test_unknown_top_level_fields_are_tolerated_and_the_requested_model_id_is_echoed(
    client: anthropic.Anthropic,
) -> None:
    # Given a dated model id and a field the simulator has never heard of
    # When it is sent
    message = client.messages.create(
        model="claude-haiku-4-5-20251001", max_tokens=40, messages=HELLO, extra_body={"future_option": {"x": 1}}
    )
    # Then it is served, echoing the id as sent, with the standard usage fields
    assert message.model == "claude-haiku-4-5-20251001"
    assert message.usage.service_tier == "standard"
    assert message.usage.inference_geo == "global"
    assert message.usage.speed == "standard"


def test_the_simulator_serves_exactly_the_models_the_price_book_knows(client: anthropic.Anthropic) -> None:
    # Given every id and alias in costgate's price book
    book = default_price_book()
    # Then each has a caching profile and is served
    assert set(MODEL_TOKENIZERS) == set(book.models)
    for name in book.aliases:
        assert client.messages.count_tokens(model=name, messages=HELLO).input_tokens > 0


def test_answers_are_deterministic_marked_and_capped_by_max_tokens(client: anthropic.Anthropic) -> None:
    # Given the same request twice, and once with a tiny max_tokens
    first = client.messages.create(model=MODEL, max_tokens=1000, messages=HELLO)
    again = client.messages.create(model=MODEL, max_tokens=1000, messages=HELLO)
    capped = client.messages.create(model=MODEL, max_tokens=7, messages=HELLO)
    # Then the answer repeats exactly (new message id), starts "[simulated] ", and the cap stops it
    assert first.content == again.content
    assert first.id != again.id
    assert first.content[0].type == "text"
    assert first_text(first).startswith("[simulated] ")
    assert first.stop_reason == "end_turn"
    assert 20 <= first.usage.output_tokens < 1000
    assert capped.stop_reason == "max_tokens"
    assert capped.usage.output_tokens == 7


def test_a_korean_question_gets_a_korean_answer(client: anthropic.Anthropic) -> None:
    # Given a question in Korean
    message = client.messages.create(
        model=MODEL, max_tokens=300, messages=[{"role": "user", "content": "이번 달 비용을 요약해 주세요."}]
    )
    # Then the answer is marked and written in Hangul
    text = first_text(message)
    assert text.startswith("[simulated] ")
    assert sum("\uac00" <= ch <= "\ud7a3" for ch in text) > 20


def test_forced_tool_choice_returns_a_tool_use_built_from_the_schema(client: anthropic.Anthropic) -> None:
    # Given a tool with required properties and tool_choice any
    tool: ToolParam = {
        "name": "get_invoice",
        "description": "Fetch an invoice.",
        "input_schema": {
            "type": "object",
            "properties": {
                "number": {"type": "string"},
                "year": {"type": "integer", "minimum": 2020},
                "currency": {"enum": ["USD", "EUR"]},
                "note": {"type": "string"},
            },
            "required": ["number", "year", "currency"],
        },
    }
    # When it is asked
    message = client.messages.create(
        model=MODEL, max_tokens=500, messages=HELLO, tools=[tool], tool_choice={"type": "any"}
    )
    # Then it answers with only a tool_use holding the required properties, and stops for it
    assert message.stop_reason == "tool_use"
    [block] = message.content
    assert block.type == "tool_use"
    assert block.id.startswith("toolu_")
    assert block.name == "get_invoice"
    assert block.input == {"number": "simulated number", "year": 2020, "currency": "USD"}


def test_a_user_asking_for_a_tool_by_name_gets_a_tool_use_under_auto(client: anthropic.Anthropic) -> None:
    # Given tool_choice auto and a question that names the tool
    tool: ToolParam = {"name": "get_weather", "input_schema": {"type": "object", "properties": {}}}
    ask: list[MessageParam] = [{"role": "user", "content": "Please call get_weather for Seoul."}]
    # When it is asked
    message = client.messages.create(model=MODEL, max_tokens=500, messages=ask, tools=[tool])
    # Then a short text precedes the tool_use
    assert [b.type for b in message.content] == ["text", "tool_use"]
    assert message.stop_reason == "tool_use"


def test_thinking_adds_a_thinking_block_counted_in_output_tokens(client: anthropic.Anthropic) -> None:
    # Given extended thinking with a budget
    message = client.messages.create(
        model=MODEL, max_tokens=4000, messages=HELLO, thinking={"type": "enabled", "budget_tokens": 2048}
    )
    # Then the first block is thinking and its tokens are part of output_tokens
    assert message.content[0].type == "thinking"
    details = message.usage.output_tokens_details
    assert details is not None
    assert 40 <= details.thinking_tokens < message.usage.output_tokens


def test_a_web_search_tool_reports_1_to_3_searches(client: anthropic.Anthropic) -> None:
    # Given a web search server tool
    tools: Any = [{"type": "web_search_20260318", "name": "web_search"}]
    # When asked twice
    usages = [client.messages.create(model=MODEL, max_tokens=100, messages=HELLO, tools=tools).usage for _ in range(2)]
    counts = {usage.server_tool_use.web_search_requests for usage in usages if usage.server_tool_use is not None}
    # Then the same, deterministic count between 1 and 3 is reported
    assert len(counts) == 1
    assert 1 <= counts.pop() <= 3


def test_fast_mode_and_us_inference_follow_the_models_price_rows(client: anthropic.Anthropic) -> None:
    # Given Opus 5.5 (fast rates, a "us" rate) and Haiku 4.5 (neither)
    fast = client.messages.create(
        model="claude-opus-5-5", max_tokens=20, messages=HELLO, speed="fast", inference_geo="us"
    )
    # Then Opus reports what it did, and Haiku rejects both
    assert (fast.usage.speed, fast.usage.inference_geo) == ("fast", "us")
    with pytest.raises(anthropic.BadRequestError, match="fast mode is not available"):
        client.messages.create(model="claude-haiku-4-5", max_tokens=20, messages=HELLO, speed="fast")
    with pytest.raises(anthropic.BadRequestError, match="inference_geo"):
        client.messages.create(model="claude-haiku-4-5", max_tokens=20, messages=HELLO, inference_geo="us")


def test_count_tokens_counts_the_whole_prompt_and_ignores_caching(client: anthropic.Anthropic) -> None:
    # Given a cached system prompt
    system: Any = [{"type": "text", "text": "Policy. " * 3000, "cache_control": {"type": "ephemeral"}}]
    client.messages.create(model=MODEL, max_tokens=10, system=system, messages=HELLO)
    # When the tokens are counted
    counted = client.messages.count_tokens(model=MODEL, system=system, messages=HELLO)
    read = client.messages.create(model=MODEL, max_tokens=10, system=system, messages=HELLO).usage
    # Then it is the whole prompt, the sum of the cached read and the rest
    assert read.cache_read_input_tokens is not None
    assert counted.input_tokens == read.input_tokens + read.cache_read_input_tokens
    assert read.cache_read_input_tokens > 0
