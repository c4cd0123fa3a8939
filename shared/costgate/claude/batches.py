"""The Message Batches API over urllib3: `HttpClaudeBatches`, the `costgate.claude.ports.ClaudeBatches` adapter.

Why not the `anthropic` SDK: a batch body may be 256 MB, and the SDK takes the requests as Python
objects and serialises them into one body in memory (the objects alone weigh several times the JSON),
where this module sends the file the packer wrote, from disk. And the SDK's retries treat a create
that timed out or got a 500 like any request, so a retry may make a second batch of the same units:
billed twice, and collected twice unless the first is found and cancelled.

Retry contract:

- `create` is retried only when Claude's answer proves no batch exists: 429 and 529 (refused before
  any work), unless the answer says `x-should-retry: false`. Any other 4xx, and 429/529 once the
  retries are spent, raise `BatchRejectedError`: the units may go again. A timeout, a lost connection,
  or another 5xx raise `BatchSubmitUncertainError` at once: the batch may exist, and only
  `created_since` (with the caller's own record of when it submitted) can tell. A 2xx whose body is
  not a batch is uncertain too: something was created, but its id is unknown.
- Every GET is idempotent, so it is retried like `costgate.claude.messages` (`x-should-retry` first, else 408,
  409, 429 and ≥ 500; connection errors and timeouts; `retry-after-ms` / `retry-after` up to 60 s,
  else 0.5 s × 2^n capped at 8 s with ±25% jitter), at most `max_retries` times. A final 404 raises
  `NotFoundError`; any other final failure `UpstreamError` with the status and Claude's message.

Streaming guarantees: the create body goes out from the open file in urllib3's blocks with an explicit
content-length (never chunked: Claude must see the size to apply the 256 MB limit up front, and never
read whole). Results are read in `RESULT_CHUNK_BYTES` chunks and yielded line by line, so memory holds
one chunk and one line, never the JSONL file. Only the response status is retried: once lines have
been yielded a broken stream raises `UpstreamError`, and the caller reads the results again (recording
a unit's outcome is idempotent), since a silent restart would yield the first lines twice.

The API key goes with every request, so redirects are not followed (urllib3 would carry `x-api-key`
to wherever one points), and a `results_url` on another host must be https.

Metrics: every HTTP attempt (create, retrieve, list page, results; retries included) counts as
`costgate.claude.messages` counts its own, through the same `emit_upstream_attempt`, `status_error_type` and
`transport_error_type`: one `UpstreamCalls`, and one `UpstreamErrors` of its `ErrorType` when it got
no answer (timeout, connection) or a 408, 429, 529 or other 5xx. Any other answer is a call without
an upstream error: a refused batch (4xx) is the batch's fault. A results download is one attempt,
counted when its body has ended: a stream that breaks off is an error of its kind, one that the
caller stops reading is not.
"""

import json
import os
import random
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any, Self
from urllib.parse import urlencode, urljoin, urlsplit

import urllib3
from urllib3.exceptions import HTTPError as TransportError

from costgate.claude.retry import RetryPolicy, should_retry
from costgate.claude.transport import (
    CONNECT_TIMEOUT_S,
    USER_AGENT,
    UpstreamErrorType,
    UpstreamResponse,
    status_error_type,
    transport_error_type,
)
from costgate.errors import (
    BatchRejectedError,
    BatchSubmitUncertainError,
    NotFoundError,
    UpstreamError,
)
from costgate.observability import emit_upstream_attempt, logger

API_VERSION = "2023-06-01"
BATCHES_PATH = "/v1/messages/batches"
REMOTE_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
PROCESSING_STATUSES = frozenset({"in_progress", "canceling", "ended"})
REQUEST_COUNT_KEYS = ("processing", "succeeded", "errored", "canceled", "expired")
MAX_PAGE_SIZE = 1000
RESULT_CHUNK_BYTES = 64 * 1024
# A response we only quote in an error message: enough for Claude's error object, bounded for a proxy's HTML page.
_ERROR_BODY_BYTES = 64 * 1024
_NOT_CREATED_STATUSES = (429, 529)


@dataclass(frozen=True)
class RemoteBatch:
    """A Message Batch as Claude reports it. `results_url` is set once it has ended."""

    id: str
    processing_status: str
    created_at: datetime
    ended_at: datetime | None
    request_counts: Mapping[str, int]
    results_url: str | None = None

    @property
    def total(self) -> int:
        return sum(self.request_counts.values())

    @property
    def ended(self) -> bool:
        return self.processing_status == "ended"

    @classmethod
    def from_json(cls, data: Any) -> Self:
        """The batch from Claude's `message_batch` object; UpstreamError naming the first field that is wrong."""
        if not isinstance(data, Mapping):
            raise UpstreamError(f"malformed message batch: expected an object, got {type(data).__name__}")
        batch_id = data.get("id")
        if not isinstance(batch_id, str) or not REMOTE_ID.fullmatch(batch_id):
            raise UpstreamError(f"malformed message batch: id {batch_id!r} is not a batch id")
        status = data.get("processing_status")
        if status not in PROCESSING_STATUSES:
            raise UpstreamError(f"malformed message batch {batch_id}: unknown processing_status {status!r}")
        counts = data.get("request_counts")
        if not isinstance(counts, Mapping):
            raise UpstreamError(f"malformed message batch {batch_id}: request_counts is not an object")
        parsed_counts: dict[str, int] = {}
        for key in REQUEST_COUNT_KEYS:
            value = counts.get(key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise UpstreamError(f"malformed message batch {batch_id}: request_counts.{key} is {value!r}")
            parsed_counts[key] = value
        results_url = data.get("results_url")
        if results_url is not None and not isinstance(results_url, str):
            raise UpstreamError(f"malformed message batch {batch_id}: results_url is {results_url!r}")
        created_at = _timestamp(data, "created_at", batch_id)
        if created_at is None:
            raise UpstreamError(f"malformed message batch {batch_id}: created_at is missing")
        return cls(
            id=batch_id,
            processing_status=str(status),
            created_at=created_at,
            ended_at=_timestamp(data, "ended_at", batch_id),
            request_counts=MappingProxyType(parsed_counts),
            results_url=results_url,
        )


def _timestamp(data: Mapping[str, Any], key: str, batch_id: str) -> datetime | None:
    value = data.get(key)
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.utcoffset() is None:
        raise UpstreamError(f"malformed message batch {batch_id}: {key} {value!r} is not an RFC 3339 time")
    return parsed.astimezone(UTC)


class HttpClaudeBatches:
    """`costgate.claude.ports.ClaudeBatches` over one urllib3 pool (see the module docstring for the contract).

    `api_key` is called for every request, so a rotated secret is picked up. `sleep`, `rng`,
    `monotonic` and `wall_time` are injected so tests neither wait nor guess. `page_size` is how many
    batches one list request asks for (the API allows 1-1000).
    """

    def __init__(
        self,
        base_url: str,
        api_key: Callable[[], str],
        *,
        max_retries: int = 2,
        timeout_s: float = 120,
        page_size: int = 100,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        wall_time: Callable[[], float] = time.time,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be 1-{MAX_PAGE_SIZE}, got {page_size}")
        if not base_url.startswith(("https://", "http://")):
            raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._origin = _origin(self.base_url)
        self._api_key = api_key
        self._timeout = urllib3.Timeout(connect=CONNECT_TIMEOUT_S, read=timeout_s)
        self._page_size = page_size
        self._retry = RetryPolicy(max_retries, sleep, rng or random.Random(), wall_time)  # noqa: S311 - jitter
        # Kept for parity with HttpUpstream's signature; batch calls have no deadline to measure against.
        self._monotonic = monotonic
        self._wall_time = wall_time
        # retries=False: every retry is ours, under the rules above (urllib3 would also retry a create).
        self._pool = urllib3.PoolManager(num_pools=2, maxsize=4, retries=False)

    # --- create ------------------------------------------------------------------------------------

    def create(self, body_path: Path) -> RemoteBatch:
        url = self.base_url + BATCHES_PATH
        with body_path.open("rb") as body:
            size = os.fstat(body.fileno()).st_size
            attempts = 0
            while True:  # bounded: attempts grows by one per pass and stops past max_retries
                attempts += 1
                body.seek(0)  # a refused attempt may have sent part or all of the file
                response = self._post_file(url, body, size, attempts)
                if 200 <= response.status < 300:
                    return self._created(response)
                if not _definitely_not_created(response):
                    raise BatchSubmitUncertainError(
                        f"batch create got {_describe(response)}: the batch may or may not exist"
                    )
                if not _retryable_refusal(response) or self._retry.exhausted(attempts):
                    raise BatchRejectedError(
                        f"Claude rejected the batch after {attempts} attempt(s): {_describe(response)}"
                    )
                self._pause("batch create", attempts, response)

    def _post_file(self, url: str, body: IO[bytes], size: int, attempt: int) -> UpstreamResponse:
        try:
            raw = self._pool.request(
                "POST",
                url,
                body=body,
                headers={**self._headers(), "content-length": str(size)},
                timeout=self._timeout,
                redirect=False,
                preload_content=True,
            )
        except (TransportError, OSError) as error:
            emit_upstream_attempt(transport_error_type(error))
            raise BatchSubmitUncertainError(
                f"batch create attempt {attempt} got no answer ({type(error).__name__}): the batch may or may not exist"
            ) from error
        emit_upstream_attempt(status_error_type(raw.status))
        return _as_response(raw, raw.data)

    def _created(self, response: UpstreamResponse) -> RemoteBatch:
        try:
            return RemoteBatch.from_json(json.loads(response.body))
        except (ValueError, RecursionError, UpstreamError) as error:
            raise BatchSubmitUncertainError(
                f"batch create answered HTTP {response.status} with an unreadable batch ({error}): it was "
                "probably created, under an id we could not read"
            ) from error

    # --- reads -------------------------------------------------------------------------------------

    def retrieve(self, remote_id: str) -> RemoteBatch:
        return RemoteBatch.from_json(self._get_json(f"{BATCHES_PATH}/{_checked_id(remote_id)}"))

    def created_since(self, since: datetime) -> Iterator[RemoteBatch]:
        if since.utcoffset() is None:
            raise ValueError(f"since must be timezone-aware, got {since!r}")
        after_id: str | None = None
        while True:  # bounded: each page must move the cursor to an id not seen before (checked below)
            query = {"limit": str(self._page_size)} | ({"after_id": after_id} if after_id else {})
            page = self._get_json(f"{BATCHES_PATH}?{urlencode(query)}")
            data = page.get("data") if isinstance(page, Mapping) else None
            has_more = page.get("has_more") if isinstance(page, Mapping) else None
            if not isinstance(data, list) or not isinstance(has_more, bool):
                raise UpstreamError("malformed batch list: expected {data: [...], has_more: bool}")
            batches = [RemoteBatch.from_json(item) for item in data]
            for batch in batches:
                if batch.created_at < since:
                    return  # newest first: everything further is older still
                yield batch
            if not has_more or not batches:
                return
            last_id = page.get("last_id") or batches[-1].id
            if not isinstance(last_id, str) or last_id == after_id:
                raise UpstreamError(f"malformed batch list: the page cursor did not advance past {after_id!r}")
            after_id = _checked_id(last_id)

    def results(self, remote_id: str) -> Iterator[Mapping[str, Any]]:
        """Checks the id and retrieves the batch at the call (a bad id or a batch without results fails
        here); the results are fetched on the first `next()`, so an iterator never started holds no connection."""
        batch = self.retrieve(remote_id)
        if batch.results_url is None:
            raise UpstreamError(
                f"message batch {batch.id} is {batch.processing_status} and has no results_url: "
                "results exist once it has ended"
            )
        return self._result_lines(self._results_url(batch), batch.id)

    def _result_lines(self, url: str, batch_id: str) -> Iterator[Mapping[str, Any]]:
        raw = self._get(url, preload=False)
        number = 0
        completed = False
        broke_off: UpstreamErrorType | None = None
        try:
            for line in _split_lines(raw.stream(RESULT_CHUNK_BYTES, decode_content=True)):
                number += 1
                if line.strip():
                    yield _result(line, batch_id, number)
            completed = True
        except (TransportError, OSError) as error:
            broke_off = transport_error_type(error)
            raise UpstreamError(
                f"the results of message batch {batch_id} broke off after {number} line(s): {type(error).__name__}"
            ) from error
        finally:
            # The attempt `_get` answered 2xx and left uncounted: done, abandoned or broken off, it ends here.
            emit_upstream_attempt(broke_off)
            if not completed:
                raw.close()  # the rest is unread: this connection cannot serve another request
            raw.release_conn()

    def _results_url(self, batch: RemoteBatch) -> str:
        url = urljoin(self.base_url + "/", batch.results_url or "")
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.netloc:
            raise UpstreamError(f"message batch {batch.id} has an unusable results_url {batch.results_url!r}")
        # The API key goes with the request: never in clear text to a host other than the API's own.
        if _origin(url) != self._origin and parts.scheme != "https":
            raise UpstreamError(
                f"message batch {batch.id}: refusing to send the API key over http to {parts.netloc} "
                f"(results_url {batch.results_url!r} is not on {self._origin})"
            )
        return url

    def _get_json(self, path: str) -> Any:
        raw = self._get(self.base_url + path, preload=True)
        try:
            return json.loads(raw.data)
        except (ValueError, RecursionError) as error:
            raise UpstreamError(f"GET {path} answered HTTP {raw.status} with a body that is not JSON") from error

    def _get(self, url: str, *, preload: bool) -> urllib3.BaseHTTPResponse:
        """The first 2xx response to GET url, retried; with `preload` False its body is still unread, and
        that last attempt is left for the caller to count once the body has ended (every other is counted here)."""
        attempts = 0
        while True:  # bounded: attempts grows by one per pass and stops past max_retries
            attempts += 1
            try:
                raw = self._pool.request(
                    "GET",
                    url,
                    headers=self._headers(),
                    timeout=self._timeout,
                    redirect=False,
                    preload_content=preload,
                )
            except (TransportError, OSError) as error:
                emit_upstream_attempt(transport_error_type(error))
                if self._retry.exhausted(attempts):
                    raise UpstreamError(
                        f"GET {_path(url)} got no answer after {attempts} attempt(s): {type(error).__name__}"
                    ) from error
                self._pause(f"GET {_path(url)}", attempts, None, type(error).__name__)
                continue
            if 200 <= raw.status < 300:
                if preload:
                    emit_upstream_attempt(None)
                return raw
            emit_upstream_attempt(status_error_type(raw.status))
            response = _as_response(raw, _error_body(raw, preload))
            if not should_retry(response) or self._retry.exhausted(attempts):
                detail = f"GET {_path(url)} after {attempts} attempt(s): {_describe(response)}"
                raise NotFoundError(detail) if response.status == 404 else UpstreamError(detail)
            self._pause(f"GET {_path(url)}", attempts, response)

    # --- shared steps ------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        return {
            "x-api-key": self._api_key(),
            "anthropic-version": API_VERSION,
            "content-type": "application/json",
            "user-agent": USER_AGENT,
        }

    def _pause(self, what: str, attempt: int, response: UpstreamResponse | None, error: str | None = None) -> None:
        delay = self._retry.delay(attempt - 1, response.headers if response is not None else {})
        logger.info(
            "batch API retry",
            extra={
                "call": what,
                "attempt": attempt,
                "status": response.status if response is not None else None,
                "error": error,
                "delay_s": round(delay, 3),
            },
        )
        self._retry.sleep(delay)


def _split_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The lines of a chunked byte stream, without their b"\\n"; each byte is scanned once, however long the line."""
    parts: list[bytes] = []
    for chunk in chunks:
        start = 0
        while (end := chunk.find(b"\n", start)) != -1:
            parts.append(chunk[start:end])
            yield b"".join(parts)
            parts = []
            start = end + 1
        if start < len(chunk):
            parts.append(chunk[start:])
    if parts:
        yield b"".join(parts)


def _result(line: bytes, batch_id: str, number: int) -> Mapping[str, Any]:
    where = f"message batch {batch_id} results line {number}"
    try:
        item = json.loads(line)
    except (ValueError, RecursionError) as error:
        raise UpstreamError(f"{where} is not JSON: {error}") from error
    if not isinstance(item, dict):
        raise UpstreamError(f"{where} is not an object")
    if not isinstance(item.get("custom_id"), str):
        raise UpstreamError(f"{where} has no string custom_id")
    if not isinstance(item.get("result"), dict):
        raise UpstreamError(f"{where} ({item['custom_id']}) has no result object")
    return item


def _definitely_not_created(response: UpstreamResponse) -> bool:
    """A 4xx refuses before anything is made; of the 5xx only 529 is a refusal at the door."""
    return 400 <= response.status < 500 or response.status == 529


def _retryable_refusal(response: UpstreamResponse) -> bool:
    """Only a rate limit or an overload may be retried (`x-should-retry: false` vetoes even those):
    any other refusal would be refused again, and no other answer proves the batch was not made."""
    return response.status in _NOT_CREATED_STATUSES and response.headers.get("x-should-retry") != "false"


def _as_response(raw: urllib3.BaseHTTPResponse, body: bytes) -> UpstreamResponse:
    return UpstreamResponse(
        status=raw.status, headers=MappingProxyType({k.lower(): v for k, v in raw.headers.items()}), body=body
    )


def _error_body(raw: urllib3.BaseHTTPResponse, preloaded: bool) -> bytes:
    if preloaded:
        return raw.data[:_ERROR_BODY_BYTES]
    try:
        return raw.read(_ERROR_BODY_BYTES)
    except (TransportError, OSError):
        return b""
    finally:
        raw.close()  # an error body is quoted, not drained: the connection is not reused
        raw.release_conn()


def _describe(response: UpstreamResponse) -> str:
    """`HTTP 400 invalid_request_error: <Claude's message> (request-id req_…)`, else the body's start."""
    text = f"HTTP {response.status}"
    try:
        error = json.loads(response.body)["error"]
        text += f" {error['type']}: {error['message']}"
    except (ValueError, KeyError, TypeError, RecursionError):
        snippet = response.body[:200].decode("utf-8", "replace").strip()
        if snippet:
            text += f": {snippet}"
    if request_id := response.headers.get("request-id"):
        text += f" (request-id {request_id})"
    return text


def _checked_id(remote_id: str) -> str:
    # fullmatch: `$` alone would let a trailing newline through into the URL.
    if not isinstance(remote_id, str) or not REMOTE_ID.fullmatch(remote_id):
        raise ValueError(f"not a message batch id: {remote_id!r}")
    return remote_id


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def _path(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")
