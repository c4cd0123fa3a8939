"""normalise_usage: the one place a Claude `usage` object becomes billable token categories."""

from typing import Any

import pytest

from costgate.errors import PricingError, UsageError
from costgate.pricing.usage import TokenUsage, normalise_usage


@pytest.mark.parametrize(
    ("usage", "message"),
    [
        pytest.param(
            {"input_tokens": -1, "output_tokens": 0}, "input_tokens must not be negative", id="negative-input"
        ),
        pytest.param(
            {"input_tokens": 0, "output_tokens": -5},
            "output_tokens must not be negative",
            id="negative-output",
        ),
        pytest.param(
            {"input_tokens": 0, "output_tokens": 0, "cache_read_input_tokens": -1},
            "cache_read_input_tokens must not be negative",
            id="negative-cache-read",
        ),
        pytest.param(
            {"input_tokens": 0, "output_tokens": 0, "server_tool_use": {"web_search_requests": -2}},
            "usage.server_tool_use.web_search_requests must not be negative",
            id="negative-web-search",
        ),
        pytest.param({"input_tokens": 10.0, "output_tokens": 0}, "input_tokens must be a whole number", id="float"),
        pytest.param({"input_tokens": 10.5, "output_tokens": 0}, "input_tokens must be a whole number", id="fraction"),
        pytest.param({"input_tokens": True, "output_tokens": 0}, "input_tokens must be a whole number", id="bool"),
        pytest.param({"input_tokens": 0, "output_tokens": "500"}, "output_tokens must be a whole number", id="string"),
        pytest.param(
            {"input_tokens": 0, "output_tokens": 0, "cache_creation_input_tokens": 1.5},
            "cache_creation_input_tokens must be a whole number",
            id="float-cache-write",
        ),
        pytest.param(
            {
                "input_tokens": 0,
                "output_tokens": 0,
                "cache_creation_input_tokens": 3000,
                "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 1000},
            },
            r"do not add up to cache_creation_input_tokens \(3000\)",
            id="cache-breakdown-does-not-add-up",
        ),
        pytest.param(
            {
                "input_tokens": 0,
                "output_tokens": 0,
                "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 0},
            },
            r"do not add up to cache_creation_input_tokens \(0\)",
            id="cache-breakdown-without-total",
        ),
        pytest.param(
            {
                "input_tokens": 0,
                "output_tokens": 0,
                "cache_creation_input_tokens": 100,
                "cache_creation": {"ephemeral_5m_input_tokens": -100, "ephemeral_1h_input_tokens": 200},
            },
            "ephemeral_5m_input_tokens must not be negative",
            id="cache-breakdown-negative-part",
        ),
        pytest.param(
            {"input_tokens": 0, "output_tokens": 0, "service_tier": "flex"},
            "usage.service_tier 'flex' is not one of",
            id="unknown-service-tier",
        ),
        pytest.param(
            {"input_tokens": 0, "output_tokens": 0, "speed": "turbo"},
            "usage.speed 'turbo' is not one of",
            id="unknown-speed",
        ),
        pytest.param(
            {"input_tokens": 0, "output_tokens": 0, "inference_geo": 1},
            "usage.inference_geo must be a string",
            id="non-string-inference-geo",
        ),
        pytest.param(
            {"input_tokens": 0, "output_tokens": 0, "cache_creation": [1000, 0]},
            "usage.cache_creation must be an object",
            id="non-object-cache-breakdown",
        ),
        pytest.param(
            {"input_tokens": 0, "output_tokens": 0, "server_tool_use": 3},
            "usage.server_tool_use must be an object",
            id="non-object-server-tool-use",
        ),
        pytest.param([1000, 500], "usage must be an object, not list", id="usage-is-a-list"),
        pytest.param("1000 in / 500 out", "usage must be an object, not str", id="usage-is-a-string"),
        pytest.param(None, "usage must be an object, not NoneType", id="usage-is-none"),
        pytest.param(1500, "usage must be an object, not int", id="usage-is-a-number"),
    ],
)
def test_unbillable_usage_raises_usage_error(usage: Any, message: str) -> None:
    # Given a usage object that cannot be billed exactly
    # When it is normalised
    with pytest.raises(UsageError, match=message) as raised:
        normalise_usage(usage)

    # Then the error is a UsageError, which is a PricingError (a 400 to the client)
    assert isinstance(raised.value, PricingError)
    assert raised.value.status == 400


def test_none_fields_count_as_zero_and_defaults() -> None:
    # Given a usage object whose optional fields are explicitly null, as the SDK dumps them
    usage = {
        "input_tokens": 12,
        "output_tokens": 34,
        "cache_creation_input_tokens": None,
        "cache_read_input_tokens": None,
        "cache_creation": None,
        "server_tool_use": None,
        "output_tokens_details": None,
        "service_tier": None,
        "inference_geo": None,
        "speed": None,
    }

    # When it is normalised
    tokens = normalise_usage(usage)

    # Then every null is 0 or the default, and only the given counts remain
    assert tokens == TokenUsage(input_tokens=12, output_tokens=34)
    assert tokens.service_tier == "standard"
    assert tokens.speed == "standard"
    assert tokens.inference_geo is None
    assert tokens.thinking_tokens is None


def test_none_inside_the_breakdown_counts_as_zero() -> None:
    # Given a breakdown with a null 1h part
    usage = {
        "input_tokens": 0,
        "output_tokens": 0,
        "cache_creation_input_tokens": 700,
        "cache_creation": {"ephemeral_5m_input_tokens": 700, "ephemeral_1h_input_tokens": None},
    }

    # When normalised, Then all 700 writes are 5-minute writes
    tokens = normalise_usage(usage)
    assert (tokens.cache_write_5m_tokens, tokens.cache_write_1h_tokens) == (700, 0)


def test_missing_cache_breakdown_makes_every_write_5m() -> None:
    # Given cache writes with no TTL breakdown
    usage = {"input_tokens": 5, "output_tokens": 6, "cache_creation_input_tokens": 900}

    # When normalised, Then every write counts as a 5-minute write
    tokens = normalise_usage(usage)
    assert (tokens.cache_write_5m_tokens, tokens.cache_write_1h_tokens) == (900, 0)


def test_full_usage_maps_every_category() -> None:
    # Given a full usage object as the Claude API returns it
    usage = {
        "input_tokens": 10,
        "output_tokens": 20,
        "cache_creation_input_tokens": 300,
        "cache_creation": {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 200},
        "cache_read_input_tokens": 4000,
        "server_tool_use": {"web_search_requests": 2, "web_fetch_requests": 3},
        "output_tokens_details": {"thinking_tokens": 15},
        "service_tier": "batch",
        "inference_geo": "us",
        "speed": "fast",
    }

    # When normalised
    tokens = normalise_usage(usage)

    # Then each field lands in its own category
    assert tokens == TokenUsage(
        input_tokens=10,
        output_tokens=20,
        cache_write_5m_tokens=100,
        cache_write_1h_tokens=200,
        cache_read_tokens=4000,
        web_search_requests=2,
        web_fetch_requests=3,
        thinking_tokens=15,
        service_tier="batch",
        inference_geo="us",
        speed="fast",
    )
    assert tokens.cache_write_tokens == 300


def test_prompt_tokens_is_input_plus_cache_writes_plus_reads() -> None:
    # Given input that excludes cached tokens, 5m and 1h writes, and reads
    tokens = TokenUsage(
        input_tokens=7,
        output_tokens=1000,
        cache_write_5m_tokens=30,
        cache_write_1h_tokens=200,
        cache_read_tokens=4000,
    )

    # When the prompt size is read, Then it is 7 + 30 + 200 + 4000, output excluded
    assert tokens.prompt_tokens == 4237


def test_without_cache_bills_every_prompt_token_as_input() -> None:
    # Given a request that used caching
    tokens = TokenUsage(
        input_tokens=7,
        output_tokens=1000,
        cache_write_5m_tokens=30,
        cache_write_1h_tokens=200,
        cache_read_tokens=4000,
        web_search_requests=2,
        service_tier="batch",
        inference_geo="us",
    )

    # When the same request is imagined without caching
    plain = tokens.without_cache()

    # Then all 4237 prompt tokens are plain input, nothing else changes, and the original is untouched
    assert plain == TokenUsage(
        input_tokens=4237,
        output_tokens=1000,
        web_search_requests=2,
        service_tier="batch",
        inference_geo="us",
    )
    assert plain.prompt_tokens == tokens.prompt_tokens
    assert tokens.cache_read_tokens == 4000
