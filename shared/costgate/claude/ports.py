"""The Claude API as costgate's services call it: Messages and Message Batches."""

from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from costgate.claude.batches import RemoteBatch
    from costgate.claude.transport import UpstreamResponse


class Upstream(Protocol):
    def post(self, path: str, body: bytes, headers: Mapping[str, str], deadline: float) -> "UpstreamResponse":
        """POST `body` (bytes, forwarded untouched) to the Claude API at `path` (e.g. "/v1/messages?beta=true").

        Of `headers` (the client's; names in any case) only `anthropic-version` and `anthropic-beta` are
        forwarded; costgate's own Claude key authenticates. Retryable failures are retried with backoff;
        `deadline` is a `time.monotonic()` instant after which no attempt may start. Returns the last
        HTTP response as received, error statuses included; raises `UpstreamUnavailableError` when no
        attempt got an HTTP response.
        """
        ...

    def post_stream(
        self, path: str, body: bytes, headers: Mapping[str, str], deadline: float
    ) -> "UpstreamResponse | LiveStream":
        """As `post`, for a request with `"stream": true`: a 200 `text/event-stream` answer is returned at its
        response headers as a `LiveStream`, its body still arriving; anything else is read whole, as `post`
        returns it. Retried only before the response headers: never once a stream has started."""
        ...


class LiveStream(Protocol):
    """A Claude stream whose headers have arrived (status 200) and whose body is still coming."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]:
        """Lower-case names, hop-by-hop headers dropped."""
        ...

    @property
    def latency_s(self) -> float | None:
        """The answered attempt's time to its response headers."""
        ...

    @property
    def attempts(self) -> int: ...

    def chunks(self) -> Iterator[bytes]:
        """The body's bytes as they arrive, unchanged; `UpstreamStreamError` if the connection fails first."""
        ...

    def close(self) -> None:
        """Give the connection back (or drop it when the body was not read to its end)."""
        ...


class ClaudeBatches(Protocol):
    """The Message Batches API (the real one, or the local simulator)."""

    def create(self, body_path: Path) -> "RemoteBatch":
        """POST the file's bytes (`{"requests": [...]}`) as a new batch, never retried blindly.

        Raises BatchRejectedError when Claude answered that it did not create it (4xx, 429, 529) and
        BatchSubmitUncertainError when no answer came (timeout, connection lost, other 5xx): it may exist.
        """
        ...

    def retrieve(self, remote_id: str) -> "RemoteBatch": ...

    def created_since(self, since: datetime) -> "Iterator[RemoteBatch]":
        """The workspace's batches created at or after `since`, newest first."""
        ...

    def results(self, remote_id: str) -> "Iterator[Mapping[str, Any]]":
        """An ended batch's result lines (`{"custom_id", "result": {...}}`), streamed, in Claude's order."""
        ...
