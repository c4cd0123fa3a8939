"""Reading what a Messages response says it cost: the model and the final `usage`, JSON or SSE."""

import json
from collections.abc import Mapping
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
# An event larger than this (no blank line yet) is passed on unfinished: a relay never buffers without bound.
_MAX_HELD_BYTES = 1024 * 1024


class StreamUsageReader:
    """Reads a Messages stream's usage as its bytes arrive, whatever the chunking (the one reader of
    stream usage: `read_final_usage` feeds it a whole body).

    `message_start.message.usage` is the usage so far (input, cache reads and writes with their 5m/1h
    breakdown, tier, geography, speed) and each `message_delta.usage` is CUMULATIVE: later values
    replace earlier ones key by key (nested `cache_creation` and `server_tool_use` too; a null never
    replaces a number), never added. Content deltas carry no usage and are not parsed, so a long
    answer stays cheap to read. Never raises on bad input: a stream it cannot read is `broken`.

    `feed` returns the bytes that complete events, holding back the start of an unfinished one, so a
    relay can pass Claude's bytes on unchanged yet never leave a client with half an event.
    """

    def __init__(self) -> None:
        self._pending = b""  # the current line, not yet ended
        self._held = b""  # bytes fed since the last event boundary, not yet returned
        self._name: str | None = None
        self._data: list[str] = []
        self.usage: dict[str, Any] | None = None
        self.model: str | None = None
        self.stopped = False  # message_stop seen: the message is complete
        self.error: dict[str, Any] | None = None  # the `error` object of an error event, if one came
        self.broken = False  # the stream's usage cannot be read (bad JSON, a second start, ...)

    @property
    def done(self) -> bool:
        """Nothing after this point can change the usage: message_stop, an error event, or unreadable."""
        return self.stopped or self.error is not None or self.broken

    def feed(self, chunk: bytes) -> bytes:
        """Read `chunk`; return the bytes now known to end on an event boundary (all of them once done)."""
        if self.done:
            return self._release(chunk)
        data = self._pending + chunk
        held_before = len(self._held) - len(self._pending)  # held bytes that come before `data`
        # A CR at the very end may be the first half of a CRLF: keep it for the next chunk.
        cut = len(data) - 1 if data.endswith(b"\r") else len(data)
        start = 0
        boundary = -1  # in `data`: the end of the last blank line (the end of an event)
        while start < cut and not self.done:
            lf, cr = data.find(b"\n", start, cut), data.find(b"\r", start, cut)
            end = lf if cr < 0 else cr if lf < 0 else min(lf, cr)
            if end < 0:
                break
            line = data[start:end]
            start = end + (2 if data[end : end + 2] == b"\r\n" else 1)
            self._line(line)
            if not line:
                boundary = start
        self._pending = data[start:]
        held = self._held + chunk
        if self.done or len(held) > _MAX_HELD_BYTES:
            return self._release(b"", held)
        if boundary < 0:
            self._held = held
            return b""
        split = held_before + boundary
        self._held = held[split:]
        return held[:split]

    def close(self) -> bytes:
        """The stream ended: a last line without its line break still counts, and so does its event.
        Returns the bytes still held (an unfinished event, or the last one that had no blank line)."""
        if self._pending and not self.done:
            self._line(self._pending.rstrip(b"\r"))
        self._pending = b""
        if self._data and not self.done:
            self._dispatch()
        return self._release(b"")

    def _release(self, chunk: bytes, held: bytes | None = None) -> bytes:
        out = (self._held if held is None else held) + chunk
        self._held = b""
        return out

    def final(self) -> FinalUsage | None:
        """The usage read so far: complete after message_stop, else what was reported before the end."""
        if self.broken or self.usage is None:
            return None
        return FinalUsage(model=self.model, usage=self.usage, complete=self.stopped)

    def _line(self, raw: bytes) -> None:
        if not raw:
            if self._data:
                self._dispatch()
            self._name, self._data = None, []
            return
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            self.broken = True
            return
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            self._name = value
        elif field == "data":
            self._data.append(value)

    def _dispatch(self) -> None:
        name, data = self._name, "\n".join(self._data)
        self._name, self._data = None, []
        if name is not None and name not in _USAGE_EVENTS:
            return
        try:
            event = json.loads(data)
        except (ValueError, RecursionError):
            self.broken = True
            return
        if not isinstance(event, dict):
            self.broken = True
            return
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message")
            if self.usage is not None or not isinstance(message, dict) or not isinstance(message.get("usage"), dict):
                self.broken = True  # a second start, or a start without a usage object
                return
            self.usage = dict(message["usage"])
            self.model = _text(message, "model")
        elif kind == "message_delta":
            delta_usage = event.get("usage")
            if self.usage is None or not isinstance(delta_usage, dict):
                self.broken = True
                return
            self.usage = _merge(self.usage, delta_usage)
        elif kind == "message_stop":
            self.stopped = True
        elif kind == "error":
            error = event.get("error")
            self.error = error if isinstance(error, dict) else {"type": "api_error", "message": str(error)}


def _stream_usage(body: bytes) -> FinalUsage | None:
    reader = StreamUsageReader()
    reader.feed(body)
    reader.close()
    return reader.final()


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if value is None and key in merged:
            continue
        current = merged.get(key)
        merged[key] = _merge(current, value) if isinstance(current, dict) and isinstance(value, dict) else value
    return merged
