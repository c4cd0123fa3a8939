"""The one owner of turning a Claude `usage` object into billable token categories.

The Claude API reports `input_tokens` EXCLUDING cached tokens: the whole prompt is
input + cache writes + cache reads. Cache writes are split by TTL in `cache_creation`; when that
breakdown is absent every write counts as a 5-minute write. Streaming usage is cumulative, so
callers pass the last usage they saw, never a sum of deltas.
"""

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from costgate.errors import UsageError

SERVICE_TIERS = frozenset({"standard", "priority", "batch"})
SPEEDS = frozenset({"standard", "fast"})


@dataclass(frozen=True)
class TokenUsage:
    """Token counts per billing category, plus the response fields that change the rates."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    cache_read_tokens: int = 0
    web_search_requests: int = 0
    web_fetch_requests: int = 0
    thinking_tokens: int | None = None
    service_tier: str = "standard"
    inference_geo: str | None = None
    speed: str = "standard"

    @property
    def cache_write_tokens(self) -> int:
        return self.cache_write_5m_tokens + self.cache_write_1h_tokens

    @property
    def prompt_tokens(self) -> int:
        """Every prompt token, cached or not: what prompt-size rate bands are measured on."""
        return self.input_tokens + self.cache_write_tokens + self.cache_read_tokens

    def without_cache(self) -> "TokenUsage":
        """The same request with no prompt caching: every cached token billed as plain input."""
        return replace(
            self,
            input_tokens=self.prompt_tokens,
            cache_write_5m_tokens=0,
            cache_write_1h_tokens=0,
            cache_read_tokens=0,
        )


def normalise_usage(usage: Mapping[str, Any] | Any) -> TokenUsage:
    """Read a usage object as the Claude API (a dict) or the anthropic SDK (a pydantic model) returns it.

    Raises UsageError on anything that cannot be billed exactly: a non-integer or negative count,
    a cache breakdown that does not add up to `cache_creation_input_tokens`, an unknown tier or speed.
    """
    data = _as_mapping(usage, "usage")
    cache_creation_total = _count(data, "cache_creation_input_tokens")
    breakdown = data.get("cache_creation")
    if breakdown is None:
        write_5m, write_1h = cache_creation_total, 0
    else:
        parts = _as_mapping(breakdown, "usage.cache_creation")
        write_5m = _count(parts, "ephemeral_5m_input_tokens", "usage.cache_creation.")
        write_1h = _count(parts, "ephemeral_1h_input_tokens", "usage.cache_creation.")
        if write_5m + write_1h != cache_creation_total:
            raise UsageError(
                f"usage.cache_creation 5m ({write_5m}) + 1h ({write_1h}) tokens do not add up to "
                f"cache_creation_input_tokens ({cache_creation_total})"
            )

    server_tools = data.get("server_tool_use")
    tools = _as_mapping(server_tools, "usage.server_tool_use") if server_tools is not None else {}
    details = data.get("output_tokens_details")
    thinking = (
        _count(
            _as_mapping(details, "usage.output_tokens_details"),
            "thinking_tokens",
            "usage.output_tokens_details.",
        )
        if details is not None
        else None
    )
    return TokenUsage(
        input_tokens=_count(data, "input_tokens"),
        output_tokens=_count(data, "output_tokens"),
        cache_write_5m_tokens=write_5m,
        cache_write_1h_tokens=write_1h,
        cache_read_tokens=_count(data, "cache_read_input_tokens"),
        web_search_requests=_count(tools, "web_search_requests", "usage.server_tool_use."),
        web_fetch_requests=_count(tools, "web_fetch_requests", "usage.server_tool_use."),
        thinking_tokens=thinking,
        service_tier=_choice(data, "service_tier", SERVICE_TIERS, default="standard"),
        inference_geo=_optional_str(data, "inference_geo"),
        speed=_choice(data, "speed", SPEEDS, default="standard"),
    )


def _as_mapping(value: Any, where: str) -> Mapping[str, Any]:
    if isinstance(value, Mapping):
        return value
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        dumped = dump()
        if isinstance(dumped, Mapping):
            return dumped
    raise UsageError(f"{where} must be an object, not {type(value).__name__}")


def _count(data: Mapping[str, Any], name: str, prefix: str = "usage.") -> int:
    value = data.get(name)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"{prefix}{name} must be a whole number, not {value!r}")
    if value < 0:
        raise UsageError(f"{prefix}{name} must not be negative, got {value}")
    return value


def _optional_str(data: Mapping[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise UsageError(f"usage.{name} must be a string, not {value!r}")
    return value


def _choice(data: Mapping[str, Any], name: str, allowed: frozenset[str], *, default: str) -> str:
    value = _optional_str(data, name)
    if value is None:
        return default
    if value not in allowed:
        raise UsageError(f"usage.{name} {value!r} is not one of {sorted(allowed)}; costgate cannot price it")
    return value
