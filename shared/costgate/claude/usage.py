"""Reading what a Messages response says it cost: the model and the final `usage`, JSON or SSE."""

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FinalUsage:
    """What a message response says it cost: the model that answered and its final `usage` object.

    `complete` is False for a stream that ended without `message_stop` (cut short, or an `error`
    event): `usage` is then what the stream had reported so far, and the caller decides.
    """

    model: str | None
    usage: dict[str, Any]
    complete: bool = True


def read_final_usage(body: bytes, content_type: str) -> FinalUsage | None:
    """The final usage and model of a Messages API response body, JSON or `text/event-stream`.

    A stream's `message_start.message.usage` is the usage so far and each `message_delta.usage` is
    CUMULATIVE: later values replace earlier ones key by key (nested `cache_creation` and
    `server_tool_use` too; a null never replaces a number), never added. Returns None for a body
    without a message usage (an error, count_tokens, malformed JSON or SSE); never raises on bad input.
    """
    media_type = content_type.partition(";")[0].strip().lower()
    try:
        if media_type == "application/json":
            return _json_usage(body)
        if media_type == "text/event-stream":
            return _stream_usage(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return None
    return None


def _json_usage(body: bytes) -> FinalUsage | None:
    message = json.loads(body)
    if not isinstance(message, dict) or message.get("type") != "message":
        return None
    usage = message.get("usage")
    if not isinstance(usage, dict):
        return None
    return FinalUsage(model=_text(message, "model"), usage=usage)


def _text(mapping: Mapping[str, Any], key: str) -> str | None:
    value = mapping.get(key)
    return value if isinstance(value, str) else None


_USAGE_EVENTS = frozenset({"message_start", "message_delta", "message_stop", "error"})


def _stream_usage(body: bytes) -> FinalUsage | None:
    usage: dict[str, Any] | None = None
    model: str | None = None
    for name, data in _sse_events(body.decode("utf-8")):
        if name is not None and name not in _USAGE_EVENTS:
            continue  # content deltas carry no usage: not parsed, a long answer stays cheap to read
        event = json.loads(data)
        if not isinstance(event, dict):
            return None
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message")
            if usage is not None or not isinstance(message, dict) or not isinstance(message.get("usage"), dict):
                return None  # a second start, or a start without a usage object
            usage = dict(message["usage"])
            model = _text(message, "model")
        elif kind == "message_delta":
            delta_usage = event.get("usage")
            if usage is None or not isinstance(delta_usage, dict):
                return None
            usage = _merge(usage, delta_usage)
        elif kind == "message_stop":
            return FinalUsage(model=model, usage=usage, complete=True) if usage is not None else None
        elif kind == "error":
            break
    return FinalUsage(model=model, usage=usage, complete=False) if usage is not None else None


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if value is None and key in merged:
            continue
        current = merged.get(key)
        merged[key] = _merge(current, value) if isinstance(current, dict) and isinstance(value, dict) else value
    return merged


def _sse_events(text: str) -> Iterator[tuple[str | None, str]]:
    """(event name or None, data) per event of a text/event-stream body, as the SSE spec frames them."""
    name: str | None = None
    data: list[str] = []
    # Only CRLF, CR and LF end an SSE line (str.splitlines would also split on U+2028 inside JSON).
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if not line:
            if data:
                yield name, "\n".join(data)
            name, data = None, []
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)
    if data:
        yield name, "\n".join(data)
