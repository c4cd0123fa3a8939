"""The incremental SSE usage reader: the same usage however a stream is cut into chunks, and whole events only."""

import json
from typing import Any

import pytest

from costgate.claude.usage import StreamUsageReader, read_final_usage

START_USAGE = {
    "input_tokens": 12,
    "cache_creation_input_tokens": 3000,
    "cache_read_input_tokens": 900,
    "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 2000},
    "output_tokens": 1,
    "service_tier": "standard",
}


def event(name: str, data: dict[str, Any], newline: str = "\n") -> bytes:
    return f"event: {name}{newline}data: {json.dumps(data, ensure_ascii=False)}{newline}{newline}".encode()


def stream(*, newline: str = "\n", deltas: tuple[int, ...] = (40, 90), text: str = "안녕하세요, hello") -> bytes:
    message = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-opus-5-5", "usage": START_USAGE}
    parts = [
        event("message_start", {"type": "message_start", "message": message}, newline),
        event("content_block_start", {"type": "content_block_start", "index": 0}, newline),
        event("ping", {"type": "ping"}, newline),
        event("content_block_delta", {"type": "content_block_delta", "delta": {"text": text}}, newline),
    ]
    parts += [event("message_delta", {"type": "message_delta", "usage": {"output_tokens": n}}, newline) for n in deltas]
    parts.append(event("message_stop", {"type": "message_stop"}, newline))
    return b"".join(parts)


def read(chunks: list[bytes]) -> tuple[StreamUsageReader, list[bytes]]:
    reader = StreamUsageReader()
    out = [reader.feed(chunk) for chunk in chunks]
    out.append(reader.close())
    return reader, out


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_every_split_of_a_stream_gives_the_same_usage_and_the_same_bytes(newline: str) -> None:
    # Given a stream with a 5m/1h cache breakdown, Korean text and two cumulative deltas
    body = stream(newline=newline)
    whole = read_final_usage(body, "text/event-stream")
    assert whole is not None
    assert whole.complete
    # Then the usage is message_start's, the output the LAST delta's (90, not 1 + 40 + 90)
    assert whole.usage == {**START_USAGE, "output_tokens": 90}

    for cut in range(1, len(body)):
        # When it arrives in two chunks split at any byte (a multi-byte character or a CRLF included)
        reader, out = read([body[:cut], body[cut:]])
        # Then the reading is the same, and every byte is passed on exactly once, in order
        assert reader.final() == whole
        assert b"".join(out) == body


def test_feed_returns_whole_events_only_and_holds_back_the_start_of_one() -> None:
    body = stream()
    boundaries = {i + 2 for i in range(len(body)) if body[i : i + 2] == b"\n\n"}
    reader = StreamUsageReader()
    sent = 0
    for i in range(0, len(body), 7):  # 7-byte chunks: most of them end inside an event
        out = reader.feed(body[i : i + 7])
        if out and not reader.done:
            sent += len(out)
            # what comes out always ends where an event ends
            assert sent in boundaries
    assert reader.stopped


def test_an_error_event_ends_the_reading_with_the_usage_so_far() -> None:
    message = {
        "id": "m",
        "type": "message",
        "model": "claude-opus-5-5",
        "usage": {"input_tokens": 5, "output_tokens": 1},
    }
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    body = (
        event("message_start", {"type": "message_start", "message": message})
        + event("message_delta", {"type": "message_delta", "usage": {"output_tokens": 30}})
        + event("error", error)
    )
    reader, out = read([body])
    assert reader.error == error["error"]
    assert reader.done
    assert not reader.stopped
    final = reader.final()
    assert final is not None
    assert not final.complete
    assert final.usage == {"input_tokens": 5, "output_tokens": 30}
    assert b"".join(out) == body


def test_an_unreadable_stream_is_broken_and_passed_on_whole() -> None:
    body = b"event: message_start\ndata: {not json\n\n" + event("message_stop", {"type": "message_stop"})
    reader, out = read([body[:10], body[10:]])
    assert reader.broken
    assert reader.final() is None
    assert b"".join(out) == body


def test_an_event_without_its_blank_line_at_the_end_still_counts_and_is_passed_on() -> None:
    body = stream().removesuffix(b"\n\n")
    reader = StreamUsageReader()
    head = reader.feed(body)
    before = reader.final()
    assert before is not None
    assert not before.complete  # message_stop has no blank line after it yet
    tail = reader.close()
    final = reader.final()
    assert final is not None
    assert final.complete
    assert head + tail == body


def test_a_huge_event_without_an_end_is_passed_on_rather_than_held_without_bound() -> None:
    reader = StreamUsageReader()
    out = reader.feed(b"data: " + b"x" * (2 * 1024 * 1024))
    assert len(out) > 1024 * 1024
