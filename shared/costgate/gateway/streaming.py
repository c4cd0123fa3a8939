"""Relaying a Claude stream: its bytes to the client as they arrive, its usage read on the way.

Claude's events go out unchanged, whole: a chunk is written up to its last complete event, so that
a stream cut in the middle of an event can still end with a well-formed SSE `error` event (as Claude
sends one) instead of half an event. Claude sends whole events, so nothing waits in practice.

The relay reads Claude to `message_stop` whatever the client does: a client that hangs up does not
stop the reading (its writes are dropped), because Claude bills every token it generates and the
ledger must hold exactly that. Only the function's deadline stops it early.
"""

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from costgate.cache.answers import MAX_STORED_BODY_BYTES
from costgate.claude.ports import LiveStream
from costgate.claude.usage import FinalUsage, StreamUsageReader
from costgate.errors import UpstreamStreamError
from costgate.gateway.ports import ResponseSink
from costgate.observability import logger


@dataclass(frozen=True)
class StreamOutcome:
    """How a relayed stream ended: its usage as read, whether it completed, what broke it, what the client saw."""

    usage: FinalUsage | None  # None: no usage was reported (or it could not be read)
    complete: bool  # message_stop arrived
    failure: str | None  # why it did not complete: Claude's error event, a broken connection, the deadline
    relayed_error: bool  # Claude's own error event reached the client (no error event of ours is needed)
    unreadable: bool  # the stream's usage could not be read (it is relayed all the same)
    body: bytes | None  # every byte relayed, when kept for the answer cache and small enough to store
    chunks: int  # writes to the client (one per chunk of whole events)


class StreamedAnswer:
    """A 200 stream on its way: `headers` go first (the prelude), then `relay` writes the body and finishes
    the request (pricing, the receipt, the ledger), exactly once."""

    status = 200

    def __init__(self, headers: dict[str, str], produce: Callable[[ResponseSink], None]) -> None:
        self.headers = headers
        self._produce: Callable[[ResponseSink], None] | None = produce

    def relay(self, sink: ResponseSink) -> None:
        produce, self._produce = self._produce, None
        if produce is None:
            raise RuntimeError("a streamed answer is relayed once")
        produce(sink)


class DetachedSink:
    """A ResponseSink whose client is already gone: for a streamed answer whose response could not even
    start. Relaying into it still reads Claude to the end and records the request."""

    client_gone = True

    def write(self, data: bytes) -> None:
        return

    def end(self) -> None:
        return


def relay_live(
    live: LiveStream,
    sink: ResponseSink,
    *,
    deadline: float,
    keep_body: bool,
    monotonic: Callable[[], float] = time.monotonic,
) -> StreamOutcome:
    """Relay `live` to `sink` until message_stop, an error, its end or `deadline` (a monotonic instant)."""
    reader = StreamUsageReader()
    kept: bytearray | None = bytearray() if keep_body else None
    failure: str | None = None
    chunks = 0

    def send(data: bytes) -> None:
        nonlocal kept, chunks
        if not data:
            return
        sink.write(data)
        chunks += 1
        if kept is not None:
            kept += data
            if len(kept) > MAX_STORED_BODY_BYTES:
                kept = None  # too large to store: stop keeping it

    try:
        for chunk in live.chunks():
            send(reader.feed(chunk))
            if reader.stopped or reader.error is not None:
                break
            if monotonic() > deadline:
                failure = "the function's deadline came before the end of Claude's stream"
                break
    except UpstreamStreamError as error:
        failure = f"the connection to Claude broke: {error}"
    finally:
        live.close()
    if failure is None and not reader.stopped and reader.error is None:
        tail = reader.close()  # the stream's end: a last event without its blank line still counts
        if reader.done:
            send(tail)  # Claude's own bytes, whole (an unfinished event is never passed on)
        if not reader.stopped and reader.error is None:
            failure = (
                "Claude's stream could not be read" if reader.broken else "Claude's stream ended before message_stop"
            )
    if reader.error is not None:
        failure = f"Claude sent an error event: {reader.error.get('type')}: {reader.error.get('message')}"
    if failure is not None:
        logger.warning("stream did not complete", extra={"reason": failure, "client_gone": sink.client_gone})
    return StreamOutcome(
        usage=reader.final(),
        complete=reader.stopped and reader.error is None,
        failure=failure,
        relayed_error=reader.error is not None,
        unreadable=reader.broken,
        body=bytes(kept) if kept is not None and reader.stopped else None,
        chunks=chunks,
    )


def error_event(error_type: str, message: str) -> bytes:
    """An SSE `error` event in Claude's own shape (what its streams send when they fail after the headers)."""
    data = json.dumps({"type": "error", "error": {"type": error_type, "message": message}}, separators=(",", ":"))
    return f"event: error\ndata: {data}\n\n".encode()
