"""The Messages engine: a validated request → the prompt cache → a deterministic answer → a Message.

Not thread-safe: the server serialises calls (the cache is shared state).
"""

import random
import secrets
import string
import zlib
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any

from costgate_local.simulator.answers import Answer, answer
from costgate_local.simulator.caching import CacheUsage, PromptCache
from costgate_local.simulator.errors import ApiError
from costgate_local.simulator.prompt import build_prompt, canonical_json
from costgate_local.simulator.tokens import count_text, token_pieces
from costgate_local.simulator.validation import MessagesRequest, validate_messages_request

_ALPHABET = string.ascii_letters + string.digits
_JSON_DELTA_CHARS = 16
# Claude's text and thinking deltas carry a few tokens each.
_DELTA_TOKENS = (1, 2, 3)

type Pace = Callable[[int], None]  # called with the tokens of a delta before it is sent


def new_id(prefix: str) -> str:
    """A random id in the API's style (`msg_…`, `req_…`, `msgbatch_…`): unique across runs, so a ledger
    keyed on request ids never sees one twice."""
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(24))


class Engine:
    def __init__(self, answer_tokens: int | None = None) -> None:
        self.cache = PromptCache()
        self._answer_tokens = answer_tokens

    def count_tokens(self, body: Any, version: str) -> int:
        """count_tokens: the whole prompt, caching ignored (input + creation + read of the same body)."""
        return build_prompt(validate_messages_request(body, version, count_only=True)).total_tokens

    def create_message(
        self, request: MessagesRequest, *, workspace: str, now: datetime, service_tier: str = "standard"
    ) -> dict[str, Any]:
        prompt = build_prompt(request)
        cache = self.cache.apply(
            prompt,
            workspace=workspace,
            model=request.profile.canonical,
            min_tokens=request.profile.min_cacheable_tokens,
            now=now,
        )
        result = answer(request, self._answer_tokens)
        return {
            "id": new_id("msg_"),
            "type": "message",
            "role": "assistant",
            "model": request.model,
            "content": list(result.content),
            "stop_reason": result.stop_reason,
            "stop_sequence": None,
            "usage": _usage(cache, result, request, service_tier),
        }

    def batch_result(self, params: Any, *, workspace: str, version: str, now: datetime) -> dict[str, Any]:
        """One batch request's result: `succeeded` with a batch-tier message, or `errored` (params errors
        surface here, never at batch creation)."""
        try:
            request = validate_messages_request(params, version, in_batch=True)
            message = self.create_message(request, workspace=workspace, now=now, service_tier="batch")
        except ApiError as error:
            return {"type": "errored", "error": error.body(new_id("req_"))}
        return {"type": "succeeded", "message": message}


def _usage(cache: CacheUsage, result: Answer, request: MessagesRequest, service_tier: str) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "input_tokens": cache.input_tokens,
        "cache_creation_input_tokens": cache.cache_creation_input_tokens,
        "cache_read_input_tokens": cache.cache_read_input_tokens,
        "cache_creation": {
            "ephemeral_5m_input_tokens": cache.ephemeral_5m_input_tokens,
            "ephemeral_1h_input_tokens": cache.ephemeral_1h_input_tokens,
        },
        "output_tokens": result.output_tokens,
        "service_tier": service_tier,
        "inference_geo": request.inference_geo,
        "speed": request.speed,
    }
    if result.server_tools:
        usage["server_tool_use"] = {
            "web_search_requests": result.web_search_requests,
            "web_fetch_requests": result.web_fetch_requests,
        }
    if result.thinking_tokens is not None:
        usage["output_tokens_details"] = {"thinking_tokens": result.thinking_tokens}
    return usage


def start_usage(usage: Mapping[str, Any]) -> dict[str, Any]:
    """What `message_start` reports: input and cache counts, tier, geography, speed; output 1."""
    found = {k: v for k, v in usage.items() if k != "output_tokens_details"}
    found["output_tokens"] = min(1, usage["output_tokens"])
    if "server_tool_use" in usage:
        found["server_tool_use"] = {"web_search_requests": 0, "web_fetch_requests": 0}
    return found


def stream_events(message: Mapping[str, Any], pace: Pace | None = None) -> Iterator[bytes]:
    """The message as the API streams it (SSE). `message_start` carries the usage so far (input and
    cache fields, tier, geo, speed; output 1); `message_delta` carries the CUMULATIVE final usage, so a
    client that keeps the last values ends with exactly the non-streaming usage.

    Text and thinking come in deltas of 1–3 tokens (the simulator's token counter; a seeded draw, so
    the same answer is cut the same way). `pace`, if given, is called with each delta's tokens before it
    is sent (and with the tokens of an omitted thinking block): the server sleeps there to stream at a
    set pace."""
    usage = message["usage"]
    start = {**message, "content": [], "stop_reason": None, "stop_sequence": None, "usage": start_usage(usage)}
    yield _event("message_start", {"type": "message_start", "message": start})

    for index, block in enumerate(message["content"]):
        events = _block_events(index, block, pace or _no_pace, _thinking_tokens(message))
        yield next(events)  # content_block_start; the API pings right after the first one
        if index == 0:
            yield _event("ping", {"type": "ping"})
        yield from events
    if not message["content"]:
        yield _event("ping", {"type": "ping"})

    delta_usage = {
        k: usage[k]
        for k in (
            "input_tokens",
            "cache_creation_input_tokens",
            "cache_read_input_tokens",
            "output_tokens",
            "server_tool_use",
            "output_tokens_details",
        )
        if k in usage
    }
    delta = {"stop_reason": message["stop_reason"], "stop_sequence": message["stop_sequence"]}
    yield _event("message_delta", {"type": "message_delta", "delta": delta, "usage": delta_usage})
    yield _event("message_stop", {"type": "message_stop"})


def _block_events(index: int, block: Mapping[str, Any], pace: Pace, thinking_tokens: int) -> Iterator[bytes]:
    kind = block["type"]
    if kind == "text":
        yield _start(index, {"type": "text", "text": ""})
        for chunk, tokens in token_deltas(block["text"]):
            pace(tokens)
            yield _delta(index, {"type": "text_delta", "text": chunk})
    elif kind == "thinking":
        yield _start(index, {"type": "thinking", "thinking": "", "signature": ""})
        if not block["thinking"]:
            pace(thinking_tokens)  # display omitted: the thinking still takes its time
        for chunk, tokens in token_deltas(block["thinking"]):
            pace(tokens)
            yield _delta(index, {"type": "thinking_delta", "thinking": chunk})
        yield _delta(index, {"type": "signature_delta", "signature": block["signature"]})
    elif kind == "tool_use":
        yield _start(index, {**block, "input": {}})
        payload = canonical_json(block["input"])
        for i in range(0, len(payload), _JSON_DELTA_CHARS):
            chunk = payload[i : i + _JSON_DELTA_CHARS]
            pace(max(1, count_text(chunk)))
            yield _delta(index, {"type": "input_json_delta", "partial_json": chunk})
    else:
        yield _start(index, dict(block))
    yield _event("content_block_stop", {"type": "content_block_stop", "index": index})


def token_deltas(text: str) -> list[tuple[str, int]]:
    """`text` as deltas of 1–3 tokens each (a piece beyond the BMP costs 2, so a delta never exceeds 3)."""
    rng = random.Random(zlib.crc32(text.encode()))  # noqa: S311 - a reproducible cut, not a secret
    deltas: list[tuple[str, int]] = []
    pieces = token_pieces(text)
    i = 0
    while i < len(pieces):
        target = rng.choice(_DELTA_TOKENS)
        chunk, tokens = pieces[i]
        i += 1
        while i < len(pieces) and tokens + pieces[i][1] <= target:
            chunk, tokens = chunk + pieces[i][0], tokens + pieces[i][1]
            i += 1
        deltas.append((chunk, tokens))
    return deltas


def _thinking_tokens(message: Mapping[str, Any]) -> int:
    details = message["usage"].get("output_tokens_details") or {}
    return int(details.get("thinking_tokens", 0))


def _no_pace(tokens: int) -> None:
    return None


def _start(index: int, block: Mapping[str, Any]) -> bytes:
    return _event("content_block_start", {"type": "content_block_start", "index": index, "content_block": block})


def _delta(index: int, delta: Mapping[str, Any]) -> bytes:
    return _event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})


def _event(name: str, data: Mapping[str, Any]) -> bytes:
    return f"event: {name}\ndata: {canonical_json(data)}\n\n".encode()
