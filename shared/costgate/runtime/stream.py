"""What a streaming handler writes its HTTP response to: `start` once with the prelude, then `write`."""

import http.client
import logging
from collections.abc import Callable, Mapping
from typing import Protocol

from costgate.errors import ResponseStreamError
from costgate.runtime.api import ErrorReport, trailer_report
from costgate.runtime.prelude import HttpPrelude

log = logging.getLogger(__name__)


class Sink(Protocol):
    """The transport under a response stream: the Runtime API's chunked POST on Lambda."""

    def write(self, data: bytes) -> None: ...

    def finish(self, trailers: Mapping[str, str] | None = None) -> None: ...

    def abort(self) -> None: ...


class ResponseStream:
    """A streamed HTTP response on its way to API Gateway.

    The transport opens on `start`, whose prelude is the first chunk, so a handler that fails before
    starting is reported through the Runtime API's /error endpoint (API Gateway answers 5xx). A client
    that went away is not an error for the handler: writes are dropped from then on and `client_gone`
    says so, so the handler can still finish what must not be lost (reading Claude to the end of the
    message, recording its usage). On Lambda the invocation goes on after API Gateway has dropped the
    client, up to the function's timeout.
    """

    def __init__(self, open_sink: Callable[[], Sink]) -> None:
        self._open_sink = open_sink
        self._sink: Sink | None = None
        self._ended = False
        self.client_gone = False
        self.bytes_written = 0

    @property
    def started(self) -> bool:
        return self._sink is not None or self.client_gone

    def start(self, prelude: HttpPrelude) -> None:
        """Send the status and headers; call once, before any `write`."""
        if self.started:
            raise ResponseStreamError("the response has already started")
        encoded = prelude.encode()  # PreludeError before anything is sent
        self._sink = self._open_sink()
        self._send(encoded)

    def write(self, data: bytes) -> None:
        """Send body bytes at once (one HTTP chunk each)."""
        if not self.started:
            raise ResponseStreamError("write before start: the prelude must come first")
        if self._ended:
            raise ResponseStreamError("write after the response ended")
        self._send(data)
        if not self.client_gone:
            self.bytes_written += len(data)

    def end(self) -> None:
        """Complete the response (the runtime calls it when the handler returns)."""
        self._close(None)

    def fail(self, error: ErrorReport) -> None:
        """End the response with the error in its trailers (for an error after the first byte)."""
        self._close(trailer_report(error))

    def _send(self, data: bytes) -> None:
        if self.client_gone or self._sink is None:
            return
        try:
            self._sink.write(data)
        except (OSError, http.client.HTTPException) as error:
            self._gone(error)

    def _close(self, trailers: Mapping[str, str] | None) -> None:
        if self._ended:
            return
        self._ended = True
        if self._sink is None or self.client_gone:
            return
        try:
            self._sink.finish(trailers)
        except (OSError, http.client.HTTPException) as error:
            self._gone(error)

    def _gone(self, error: BaseException) -> None:
        self.client_gone = True
        log.warning("the response stream broke; the rest of the response is dropped: %s", error)
        if self._sink is not None:
            self._sink.abort()
