"""A fake Message Batches API: batches end when the test's clock says so, with made-up answers."""

import itertools
import json
import random
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from costgate.claude.batches import REMOTE_ID, RemoteBatch
from costgate.clock import Clock
from costgate.errors import (
    BatchRejectedError,
    BatchSubmitUncertainError,
    CostgateError,
    NotFoundError,
    UpstreamError,
)

_FAILURE_MESSAGES: dict[type[CostgateError], str] = {
    BatchRejectedError: "Claude rejected the batch after 1 attempt(s): HTTP 400 invalid_request_error: refused (fake)",
    BatchSubmitUncertainError: "batch create attempt 1 got no answer (TimeoutError): the batch may or may not exist",
}


type BatchAnswer = Callable[[str, Mapping[str, Any]], dict[str, Any]]

# What Claude checks when a batch is created (shared/reference/anthropic-api.md, "Message Batches").
MAX_REQUESTS = 100_000
CUSTOM_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")


def succeeded_answer(custom_id: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """A `succeeded` result for any request: the text "Summary of <custom_id>.", deterministic batch-tier
    usage (input tokens: the characters of its system and message text / 4, at least 1; output tokens:
    min(max_tokens, 50)) and the model it asked for."""
    return {
        "type": "succeeded",
        "message": {
            "id": f"msg_{custom_id}",
            "type": "message",
            "role": "assistant",
            "model": params["model"],
            "content": [{"type": "text", "text": f"Summary of {custom_id}."}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {
                "input_tokens": max(1, _prompt_chars(params) // 4),
                "output_tokens": min(int(params["max_tokens"]), 50),
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "service_tier": "batch",
            },
        },
    }


def errored_answer(custom_id: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """An `errored` result, as Claude reports a request whose params it refused when the batch ran."""
    return {
        "type": "errored",
        "error": {
            "type": "error",
            "error": {"type": "invalid_request_error", "message": f"{custom_id}: max_tokens is too large"},
        },
    }


def _prompt_chars(params: Mapping[str, Any]) -> int:
    def text(content: Any) -> int:
        if isinstance(content, str):
            return len(content)
        if isinstance(content, list):
            return sum(len(block.get("text", "")) for block in content if isinstance(block, Mapping))
        return 0

    messages = params.get("messages") or []
    return text(params.get("system")) + sum(text(m.get("content")) for m in messages if isinstance(m, Mapping))


@dataclass
class FakeBatch:
    """One batch the fake Claude created: its requests as sent and, once ended, their results."""

    id: str
    created_at: datetime
    requests: list[tuple[str, dict[str, Any]]]
    ended_at: datetime | None = None
    results: list[dict[str, Any]] | None = None

    def remote(self) -> RemoteBatch:
        counts = dict.fromkeys(("processing", "succeeded", "errored", "canceled", "expired"), 0)
        if self.results is None:
            counts["processing"] = len(self.requests)
        else:
            for line in self.results:
                counts[line["result"]["type"]] += 1
        return RemoteBatch(
            id=self.id,
            processing_status="in_progress" if self.ended_at is None else "ended",
            created_at=self.created_at,
            ended_at=self.ended_at,
            request_counts=counts,
            results_url=None
            if self.ended_at is None
            else f"https://api.anthropic.test/v1/messages/batches/{self.id}/results",
        )


class FakeClaudeBatches:
    """ClaudeBatches in memory: `create` reads the body file and keeps each batch's requests (`batches`,
    in creation order; `requests()` flattens them); results come from `answer(custom_id, params)`.

    A batch ends at `end_all(at)` (results are answered then), or at once when `instant`. Results come
    in request order, or shuffled by `shuffle_seed` ("in any order", as Claude says). `reject_next_create`
    and `lose_next_create_answer` make the next create raise BatchRejectedError (nothing created) or
    BatchSubmitUncertainError (created or not, as asked). Like HttpClaudeBatches against Claude, a body
    Claude would refuse (no requests, more than 100,000, a custom_id that is malformed or not unique, params
    that are not an object) raises BatchRejectedError, and an id that is not a batch id ValueError. Thread-safe.
    """

    def __init__(
        self,
        clock: Clock,
        *,
        answer: BatchAnswer = succeeded_answer,
        instant: bool = False,
        shuffle_seed: int | None = None,
    ) -> None:
        self.clock = clock
        self.answer = answer
        self.instant = instant
        self.batches: dict[str, FakeBatch] = {}
        self._shuffle = random.Random(shuffle_seed) if shuffle_seed is not None else None
        self._next_failure: tuple[type[BatchRejectedError | BatchSubmitUncertainError], bool] | None = None
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def reject_next_create(self) -> None:
        self._next_failure = (BatchRejectedError, False)

    def lose_next_create_answer(self, *, created: bool) -> None:
        self._next_failure = (BatchSubmitUncertainError, created)

    def requests(self) -> list[tuple[str, dict[str, Any]]]:
        """Every request of every batch, in creation order: (custom_id, params)."""
        with self._lock:
            return [request for batch in self.batches.values() for request in batch.requests]

    def create(self, body_path: Path) -> RemoteBatch:
        with body_path.open("rb") as body:
            sent = _checked_requests(json.load(body))
        with self._lock:
            failure, self._next_failure = self._next_failure, None
            if failure is not None and not failure[1]:
                raise failure[0](_FAILURE_MESSAGES[failure[0]])
            batch = FakeBatch(
                id=f"msgbatch_{next(self._ids):06d}",
                created_at=self.clock.now(),
                requests=[(str(line["custom_id"]), line["params"]) for line in sent],
            )
            self.batches[batch.id] = batch
            if self.instant:
                self._end(batch, batch.created_at)
            if failure is not None:
                raise failure[0](_FAILURE_MESSAGES[failure[0]])
            return batch.remote()

    def end_all(self, at: datetime) -> list[str]:
        """End every batch still in progress at `at`, answering its requests; their ids."""
        with self._lock:
            ending = [batch for batch in self.batches.values() if batch.ended_at is None]
            for batch in ending:
                self._end(batch, at)
        return [batch.id for batch in ending]

    def retrieve(self, remote_id: str) -> RemoteBatch:
        _checked_id(remote_id)
        with self._lock:
            batch = self.batches.get(remote_id)
            if batch is None:
                raise NotFoundError(f"GET /v1/messages/batches/{remote_id}: HTTP 404 not_found_error")
            return batch.remote()

    def created_since(self, since: datetime) -> Iterator[RemoteBatch]:
        if since.utcoffset() is None:
            raise ValueError(f"since must be timezone-aware, got {since!r}")
        with self._lock:
            found = [batch.remote() for batch in reversed(self.batches.values()) if batch.created_at >= since]
        yield from found

    def results(self, remote_id: str) -> Iterator[Mapping[str, Any]]:
        remote = self.retrieve(remote_id)
        if not remote.ended:
            raise UpstreamError(f"message batch {remote_id} is {remote.processing_status}: it has no results yet")
        return iter(list(self.batches[remote_id].results or []))

    def _end(self, batch: FakeBatch, at: datetime) -> None:
        lines = [
            {"custom_id": custom_id, "result": self.answer(custom_id, params)} for custom_id, params in batch.requests
        ]
        if self._shuffle is not None:
            self._shuffle.shuffle(lines)
        batch.results, batch.ended_at = lines, at


def _checked_requests(body: Any) -> list[Mapping[str, Any]]:
    """The body's requests, refused as Claude refuses them (HTTP 400, nothing created)."""

    def refused(reason: str) -> BatchRejectedError:
        return BatchRejectedError(
            f"Claude rejected the batch after 1 attempt(s): HTTP 400 invalid_request_error: {reason} (fake)"
        )

    requests = body.get("requests") if isinstance(body, Mapping) else None
    if not isinstance(requests, list):
        raise refused("requests: Field required (a list of {custom_id, params})")
    if not requests:
        raise refused("requests: List should have at least 1 item")
    if len(requests) > MAX_REQUESTS:
        raise refused(f"requests: a batch may hold at most {MAX_REQUESTS:,} requests, got {len(requests):,}")
    seen: set[str] = set()
    for i, request in enumerate(requests):
        custom_id = request.get("custom_id") if isinstance(request, Mapping) else None
        if not isinstance(custom_id, str) or not CUSTOM_ID.fullmatch(custom_id):
            raise refused(f"requests.{i}.custom_id: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'")
        if custom_id in seen:
            raise refused(f"requests.{i}.custom_id: {custom_id!r} is not unique in the batch")
        seen.add(custom_id)
        if not isinstance(request.get("params"), Mapping):
            raise refused(f"requests.{i}.params: Input should be an object")
    return requests


def _checked_id(remote_id: str) -> None:
    if not isinstance(remote_id, str) or not REMOTE_ID.fullmatch(remote_id):
        raise ValueError(f"not a message batch id: {remote_id!r}")
