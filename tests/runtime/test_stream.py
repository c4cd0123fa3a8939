"""The response stream's rules: the prelude first, and a broken transport is the client gone, not an error."""

from collections.abc import Mapping

import pytest

from costgate.errors import ResponseStreamError
from costgate.runtime.api import ErrorReport
from costgate.runtime.prelude import HttpPrelude
from costgate.runtime.stream import ResponseStream


class RecordingSink:
    def __init__(self, break_after: int | None = None) -> None:
        self.writes: list[bytes] = []
        self.trailers: Mapping[str, str] | None = None
        self.finished = self.aborted = False
        self._break_after = break_after

    def write(self, data: bytes) -> None:
        if self._break_after is not None and len(self.writes) >= self._break_after:
            raise BrokenPipeError("connection reset by peer")
        self.writes.append(data)

    def finish(self, trailers: Mapping[str, str] | None = None) -> None:
        self.finished, self.trailers = True, trailers

    def abort(self) -> None:
        self.aborted = True


def test_the_transport_opens_at_start_and_the_prelude_is_its_first_chunk() -> None:
    sinks: list[RecordingSink] = []

    def open_sink() -> RecordingSink:
        sinks.append(RecordingSink())
        return sinks[-1]

    stream = ResponseStream(open_sink)
    with pytest.raises(ResponseStreamError):
        stream.write(b"too early")
    assert sinks == []
    stream.start(HttpPrelude(200))
    stream.write(b"a")
    stream.write(b"")
    stream.end()
    (sink,) = sinks
    assert sink.writes == [HttpPrelude(200).encode(), b"a", b""]
    assert sink.finished
    assert sink.trailers is None
    assert stream.bytes_written == 1
    with pytest.raises(ResponseStreamError):
        stream.start(HttpPrelude(200))
    with pytest.raises(ResponseStreamError):
        stream.write(b"after the end")


def test_a_broken_transport_drops_the_rest_without_raising() -> None:
    # Given a transport that breaks after the prelude and one chunk
    sink = RecordingSink(break_after=2)
    stream = ResponseStream(lambda: sink)
    stream.start(HttpPrelude(200))
    stream.write(b"delivered")
    # When the handler keeps writing and ends
    stream.write(b"lost")
    stream.write(b"lost too")
    stream.end()
    # Then nothing raised, the stream says the client is gone, and the transport was aborted, not finished
    assert stream.client_gone
    assert sink.aborted
    assert not sink.finished
    assert sink.writes == [HttpPrelude(200).encode(), b"delivered"]
    assert stream.bytes_written == len(b"delivered")


def test_fail_ends_the_response_with_error_trailers() -> None:
    sink = RecordingSink()
    stream = ResponseStream(lambda: sink)
    stream.start(HttpPrelude(200))
    stream.fail(ErrorReport("Runtime.Oops", "it broke"))
    assert sink.trailers is not None
    assert sink.trailers["Lambda-Runtime-Function-Error-Type"] == "Runtime.Oops"
    stream.end()  # a second end is a no-op
    assert sink.finished
