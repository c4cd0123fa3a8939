"""Validation of a Messages request body, as the Claude API does it, into a typed request.

Every rejection is a 400 `invalid_request_error` naming the offending field, except an unknown model
(404 `not_found_error`, like the API). Unknown top-level fields are tolerated (forward compatible).
"""

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from costgate_local.simulator.errors import invalid_request
from costgate_local.simulator.models import ModelProfile, resolve_model

# API version 2026-10-21 removed the sampling parameters; older versions still accept them.
SAMPLING_REMOVED_IN = "2026-10-21"
# What a request without an `anthropic-version` header is treated as (the header is optional in the
# current API reference; the oldest version keeps such clients working).
DEFAULT_API_VERSION = "2023-06-01"
_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")

MESSAGE_BLOCK_TYPES = frozenset(
    {
        "text",
        "image",
        "document",
        "search_result",
        "thinking",
        "redacted_thinking",
        "tool_use",
        "tool_result",
        "server_tool_use",
        "web_search_tool_result",
        "web_fetch_tool_result",
        "code_execution_tool_result",
        "bash_code_execution_tool_result",
        "text_editor_code_execution_tool_result",
        "tool_search_tool_result",
        "container_upload",
    }
)
# Blocks that cannot carry cache_control (and so never take an automatic breakpoint).
UNCACHEABLE_BLOCK_TYPES = frozenset({"thinking", "redacted_thinking"})
THINKING_TYPES = frozenset({"enabled", "disabled", "adaptive", "between_tools"})
TOOL_CHOICE_TYPES = frozenset({"auto", "any", "tool", "none"})
CACHE_TTLS = ("5m", "1h")


@dataclass(frozen=True)
class InputMessage:
    role: str
    blocks: tuple[Mapping[str, Any], ...]


@dataclass(frozen=True)
class MessagesRequest:
    """A validated request. `body` is the request as sent; the rest are normalised views of it."""

    body: Mapping[str, Any]
    model: str
    profile: ModelProfile
    max_tokens: int
    system: tuple[Mapping[str, Any], ...]
    messages: tuple[InputMessage, ...]
    tools: tuple[Mapping[str, Any], ...]
    tool_choice: Mapping[str, Any] | None
    thinking: Mapping[str, Any] | None
    cache_control_ttl: str | None
    stream: bool
    speed: str
    inference_geo: str

    @property
    def thinking_on(self) -> bool:
        return self.thinking is not None and self.thinking.get("type") != "disabled"


def api_version(header: str | None) -> str:
    """The request's `anthropic-version`, validated as a YYYY-MM-DD date."""
    if header is None or header == "":
        return DEFAULT_API_VERSION
    if not _VERSION.match(header):
        raise invalid_request(f"anthropic-version: invalid version {header!r}; expected a date like 2023-06-01")
    return header


def validate_messages_request(
    body: Any, version: str, *, count_only: bool = False, in_batch: bool = False
) -> MessagesRequest:
    """Validate a /v1/messages body (or a count_tokens body when `count_only`, or batch `params`)."""
    if not isinstance(body, Mapping):
        raise invalid_request("request body must be a JSON object")
    model = body.get("model")
    if model is None:
        raise invalid_request("model: Field required")
    if not isinstance(model, str) or not model:
        raise invalid_request("model: Input should be a non-empty string")

    max_tokens = 0
    if not count_only:
        raw_max = body.get("max_tokens")
        if raw_max is None:
            raise invalid_request("max_tokens: Field required")
        if isinstance(raw_max, bool) or not isinstance(raw_max, int):
            raise invalid_request("max_tokens: Input should be a valid integer")
        if raw_max < 1:
            raise invalid_request("max_tokens: Input should be greater than or equal to 1")
        max_tokens = raw_max

    messages = _messages(body.get("messages"))
    system = _system(body.get("system"))
    tools = _tools(body.get("tools"))
    tool_choice = _tool_choice(body.get("tool_choice"), tools)
    thinking = _thinking(body.get("thinking"), max_tokens, count_only)
    top_level_cache = body.get("cache_control")
    cache_ttl = cache_control_ttl(top_level_cache, "cache_control") if top_level_cache is not None else None
    _sampling(body, version)

    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise invalid_request("stream: Input should be a valid boolean")
    if stream and in_batch:
        raise invalid_request("stream: streaming is not supported for requests in a Message Batch")
    _optional_list_of_strings(body, "stop_sequences")
    _optional_object(body, "metadata")
    service_tier = body.get("service_tier")
    if service_tier is not None and service_tier not in ("auto", "standard_only"):
        raise invalid_request("service_tier: Input should be 'auto' or 'standard_only'")

    profile = resolve_model(model)
    if max_tokens > profile.max_output_tokens:
        # The API's own wording, which clients parse to find the model's limit.
        raise invalid_request(
            f"max_tokens: {max_tokens} > {profile.max_output_tokens}, "
            f"which is the maximum allowed number of output tokens for {model}"
        )
    speed = body.get("speed") or "standard"
    if speed not in ("standard", "fast"):
        raise invalid_request("speed: Input should be 'standard' or 'fast'")
    if speed == "fast":
        if in_batch:
            raise invalid_request("speed: fast mode is not available for requests in a Message Batch")
        if not profile.fast_mode:
            raise invalid_request(f"speed: fast mode is not available for model {model}")
    geo = body.get("inference_geo") or "global"
    if not isinstance(geo, str) or geo not in profile.inference_geos:
        raise invalid_request(
            f"inference_geo: {geo!r} is not available for model {model}; use one of {sorted(profile.inference_geos)}"
        )
    return MessagesRequest(
        body=body,
        model=model,
        profile=profile,
        max_tokens=max_tokens,
        system=system,
        messages=messages,
        tools=tools,
        tool_choice=tool_choice,
        thinking=thinking,
        cache_control_ttl=cache_ttl,
        stream=stream and not count_only,
        speed=speed,
        inference_geo=geo,
    )


def cache_control_ttl(value: Any, where: str) -> str:
    """The TTL of a `cache_control` object ("5m" when absent); 400 on anything but an ephemeral control."""
    if not isinstance(value, Mapping):
        raise invalid_request(f"{where}: Input should be an object")
    if value.get("type") != "ephemeral":
        raise invalid_request(f"{where}.type: Input should be 'ephemeral'")
    ttl = value.get("ttl", "5m")
    if ttl not in CACHE_TTLS:
        raise invalid_request(f"{where}.ttl: Input should be '5m' or '1h'")
    return str(ttl)


def _messages(value: Any) -> tuple[InputMessage, ...]:
    if value is None:
        raise invalid_request("messages: Field required")
    if not isinstance(value, list):
        raise invalid_request("messages: Input should be a valid list")
    if not value:
        raise invalid_request("messages: at least one message is required")
    result = []
    for i, message in enumerate(value):
        where = f"messages.{i}"
        if not isinstance(message, Mapping):
            raise invalid_request(f"{where}: Input should be an object")
        role = message.get("role")
        if role not in ("user", "assistant"):
            raise invalid_request(f"{where}.role: Input should be 'user' or 'assistant'")
        if i == 0 and role != "user":
            raise invalid_request("messages: the first message must use the 'user' role")
        if "content" not in message:
            raise invalid_request(f"{where}.content: Field required")
        blocks = _content(message["content"], f"{where}.content")
        final_assistant = i == len(value) - 1 and role == "assistant"
        if not blocks and not final_assistant:
            raise invalid_request(
                f"{where}: all messages must have non-empty content except for the optional final assistant message"
            )
        result.append(InputMessage(role=role, blocks=blocks))
    return tuple(result)


def _content(value: Any, where: str) -> tuple[Mapping[str, Any], ...]:
    if isinstance(value, str):
        return ({"type": "text", "text": value},) if value else ()
    if not isinstance(value, list):
        raise invalid_request(f"{where}: Input should be a string or a list of content blocks")
    for j, block in enumerate(value):
        _block(block, f"{where}.{j}", MESSAGE_BLOCK_TYPES)
    return tuple(value)


def _block(block: Any, where: str, allowed: frozenset[str]) -> None:
    if not isinstance(block, Mapping):
        raise invalid_request(f"{where}: Input should be an object")
    kind = block.get("type")
    if kind not in allowed:
        raise invalid_request(
            f"{where}.type: Input tag {kind!r} does not match any of the expected tags: {sorted(allowed)}"
        )
    if "cache_control" in block and block["cache_control"] is not None:
        if kind in UNCACHEABLE_BLOCK_TYPES:
            raise invalid_request(f"{where}.cache_control: {kind} blocks cannot be cached directly")
        cache_control_ttl(block["cache_control"], f"{where}.cache_control")
    if kind == "text":
        text = block.get("text")
        if not isinstance(text, str):
            raise invalid_request(f"{where}.text: Input should be a valid string")
        if not text:
            raise invalid_request(f"{where}: text content blocks must be non-empty")
    elif kind in ("image", "document"):
        source = block.get("source")
        if not isinstance(source, Mapping) or not isinstance(source.get("type"), str):
            raise invalid_request(f"{where}.source: Field required")
    elif kind == "tool_use":
        if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
            raise invalid_request(f"{where}: tool_use blocks need a string id and name")
        if not isinstance(block.get("input"), Mapping):
            raise invalid_request(f"{where}.input: Input should be an object")
    elif kind == "tool_result":
        if not isinstance(block.get("tool_use_id"), str):
            raise invalid_request(f"{where}.tool_use_id: Field required")
        content = block.get("content")
        if content is not None and not isinstance(content, str):
            if not isinstance(content, list):
                raise invalid_request(f"{where}.content: Input should be a string or a list of content blocks")
            for k, inner in enumerate(content):
                _block(inner, f"{where}.content.{k}", MESSAGE_BLOCK_TYPES)


def _system(value: Any) -> tuple[Mapping[str, Any], ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return ({"type": "text", "text": value},) if value else ()
    if not isinstance(value, list):
        raise invalid_request("system: Input should be a string or a list of text blocks")
    for j, block in enumerate(value):
        _block(block, f"system.{j}", frozenset({"text"}))
    return tuple(value)


def _tools(value: Any) -> tuple[Mapping[str, Any], ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise invalid_request("tools: Input should be a valid list")
    names: set[str] = set()
    for j, tool in enumerate(value):
        where = f"tools.{j}"
        if not isinstance(tool, Mapping):
            raise invalid_request(f"{where}: Input should be an object")
        name = tool.get("name")
        if not isinstance(name, str) or not _TOOL_NAME.match(name):
            raise invalid_request(f"{where}.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'")
        if is_custom_tool(tool) and not isinstance(tool.get("input_schema"), Mapping):
            raise invalid_request(f"{where}.input_schema: Field required")
        if not is_custom_tool(tool) and not isinstance(tool.get("type"), str):
            raise invalid_request(f"{where}.type: Input should be a valid string")
        if tool.get("cache_control") is not None:
            cache_control_ttl(tool["cache_control"], f"{where}.cache_control")
        if name in names:
            raise invalid_request(f"tools: Tool names must be unique; {name!r} appears twice")
        names.add(name)
    return tuple(value)


def is_custom_tool(tool: Mapping[str, Any]) -> bool:
    return tool.get("type") in (None, "custom")


def _tool_choice(value: Any, tools: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or value.get("type") not in TOOL_CHOICE_TYPES:
        raise invalid_request(f"tool_choice.type: Input should be one of {sorted(TOOL_CHOICE_TYPES)}")
    kind = value["type"]
    if kind in ("any", "tool") and not tools:
        raise invalid_request("tool_choice: tool_choice may only be specified while providing tools")
    if kind == "tool" and value.get("name") not in {t.get("name") for t in tools}:
        raise invalid_request(f"tool_choice.name: no tool named {value.get('name')!r} in tools")
    return value


def _thinking(value: Any, max_tokens: int, count_only: bool) -> Mapping[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or value.get("type") not in THINKING_TYPES:
        raise invalid_request(f"thinking.type: Input should be one of {sorted(THINKING_TYPES)}")
    if value["type"] == "enabled":
        budget = value.get("budget_tokens")
        if isinstance(budget, bool) or not isinstance(budget, int):
            raise invalid_request("thinking.budget_tokens: Field required")
        if budget < 1024:
            raise invalid_request("thinking.budget_tokens: Input should be greater than or equal to 1024")
        if not count_only and budget >= max_tokens:
            raise invalid_request("max_tokens: must be greater than thinking.budget_tokens")
    return value


def _sampling(body: Mapping[str, Any], version: str) -> None:
    for name, upper in (("temperature", 1.0), ("top_p", 1.0), ("top_k", None)):
        if name not in body:
            continue
        if version >= SAMPLING_REMOVED_IN:
            raise invalid_request(
                f"{name}: this parameter is not supported in anthropic-version {version} "
                f"(removed in {SAMPLING_REMOVED_IN}); remove it or send an older anthropic-version"
            )
        value = body[name]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise invalid_request(f"{name}: Input should be a valid number")
        if name == "top_k" and not isinstance(value, int):
            raise invalid_request("top_k: Input should be a valid integer")
        if value < 0:
            raise invalid_request(f"{name}: Input should be greater than or equal to 0")
        if upper is not None and value > upper:
            raise invalid_request(f"{name}: Input should be less than or equal to {upper}")


def _optional_list_of_strings(body: Mapping[str, Any], name: str) -> None:
    value = body.get(name)
    if value is not None and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
        raise invalid_request(f"{name}: Input should be a list of strings")


def _optional_object(body: Mapping[str, Any], name: str) -> None:
    value = body.get(name)
    if value is not None and not isinstance(value, Mapping):
        raise invalid_request(f"{name}: Input should be an object")
