"""Message Batches, by the clock: create, retrieve, list, cancel, delete, results.

The rules, as the Claude API documents them (shared/reference/anthropic-api.md):

- `custom_id` matches `^[a-zA-Z0-9_-]{1,64}$` and is unique in the batch; at most 100,000 requests
  (and 256 MB, checked by the server); these are checked at creation (400).
- Params errors surface only when the batch ends, as `errored` results.
- The batch works through its requests in order, request i of n finishing at
  created_at + batch_delay × (i + 1) / n, so it ends `batch_delay` after creation. Progress is
  applied lazily, by the clock, whenever the simulator handles any request. Each request goes
  through the same prompt cache as interactive ones (at its finish time) and its usage says
  `service_tier: "batch"`.
- `request_counts`: everything stays `processing` until the batch ends.
- Cancel: the batch is `canceling` for `CANCEL_DURATION`, then ends; requests not yet processed
  when cancellation began are `canceled`. A batch not ended 24 h after creation expires: its
  unprocessed requests are `expired`. `expires_at` = created_at + 24 h.
- Results (JSONL) exist once the batch has ended and come in a seeded, shuffled order ("results come
  in any order"); delete works only on an ended batch ("If you'd like to delete an in-progress
  batch, you must first cancel it").
Batches belong to the workspace (API key) that created them.
"""

import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from costgate_local.simulator.errors import invalid_request, not_found

MAX_REQUESTS = 100_000
BATCH_LIFETIME = timedelta(hours=24)
CANCEL_DURATION = timedelta(seconds=1)
CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
DEFAULT_PAGE = 20
MAX_PAGE = 1000

type Processor = Callable[[Any, str, str, datetime], dict[str, Any]]


@dataclass
class _Request:
    custom_id: str
    params: Any
    due: datetime
    result: dict[str, Any] | None = None


@dataclass
class Batch:
    id: str
    workspace: str
    version: str
    sequence: int
    created_at: datetime
    requests: list[_Request]
    processing_status: str = "in_progress"
    cancel_initiated_at: datetime | None = None
    ended_at: datetime | None = None
    processed: int = 0  # requests[:processed] have results
    result_order: list[int] = field(default_factory=list)

    @property
    def expires_at(self) -> datetime:
        return self.created_at + BATCH_LIFETIME

    def to_json(self, base_url: str) -> dict[str, Any]:
        counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        if self.ended_at is None:
            counts["processing"] = len(self.requests)
        else:
            for request in self.requests:
                counts[(request.result or {}).get("type", "expired")] += 1
        return {
            "id": self.id,
            "type": "message_batch",
            "processing_status": self.processing_status,
            "request_counts": counts,
            "ended_at": _timestamp(self.ended_at),
            "created_at": _timestamp(self.created_at),
            "expires_at": _timestamp(self.expires_at),
            "archived_at": None,
            "cancel_initiated_at": _timestamp(self.cancel_initiated_at),
            "results_url": f"{base_url}/v1/messages/batches/{self.id}/results" if self.ended_at else None,
        }


class BatchStore:
    """Batches in creation order. Not thread-safe: the server serialises calls."""

    def __init__(self, process: Processor, delay: timedelta, seed: int) -> None:
        self._process = process
        self._delay = delay
        self._seed = seed
        self._batches: dict[str, Batch] = {}
        self._sequence_of: dict[str, int] = {}  # every id ever issued, so a deleted one still works as a cursor

    def create(self, body: Any, *, batch_id: str, workspace: str, version: str, now: datetime) -> Batch:
        if not isinstance(body, Mapping):
            raise invalid_request("request body must be a JSON object")
        items = body.get("requests")
        if not isinstance(items, list):
            raise invalid_request("requests: Field required (a list of {custom_id, params})")
        if not items:
            raise invalid_request("requests: List should have at least 1 item")
        if len(items) > MAX_REQUESTS:
            raise invalid_request(f"requests: a batch may hold at most {MAX_REQUESTS:,} requests, got {len(items):,}")
        seen: set[str] = set()
        requests = []
        for i, item in enumerate(items):
            if not isinstance(item, Mapping):
                raise invalid_request(f"requests.{i}: Input should be an object")
            custom_id = item.get("custom_id")
            if not isinstance(custom_id, str) or not CUSTOM_ID.match(custom_id):
                raise invalid_request(f"requests.{i}.custom_id: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'")
            if custom_id in seen:
                raise invalid_request(f"requests.{i}.custom_id: {custom_id!r} is not unique in the batch")
            seen.add(custom_id)
            if not isinstance(item.get("params"), Mapping):
                raise invalid_request(f"requests.{i}.params: Input should be an object")
            due = now + self._delay * (i + 1) / len(items)
            requests.append(_Request(custom_id=custom_id, params=item["params"], due=due))
        sequence = len(self._sequence_of)
        order = list(range(len(requests)))
        # Seeded, not secret: the same seed and batch id give the same order.
        random.Random(f"{self._seed}/{batch_id}").shuffle(order)  # noqa: S311
        batch = Batch(
            id=batch_id,
            workspace=workspace,
            version=version,
            sequence=sequence,
            created_at=now,
            requests=requests,
            result_order=order,
        )
        self._batches[batch_id] = batch
        self._sequence_of[batch_id] = sequence
        return batch

    def advance(self, now: datetime) -> None:
        """Process every request due by `now` (in due order across batches), then end what is finished."""
        due: list[tuple[datetime, int, Batch]] = []
        for batch in self._batches.values():
            if batch.processing_status != "in_progress":
                continue
            horizon = min(now, batch.expires_at)
            due.extend(
                (request.due, batch.sequence, batch)
                for request in batch.requests[batch.processed :]
                if request.due <= horizon
            )
        for when, _, batch in sorted(due, key=lambda d: (d[0], d[1])):
            request = batch.requests[batch.processed]
            request.result = self._process(request.params, batch.workspace, batch.version, when)
            batch.processed += 1

        for batch in self._batches.values():
            if batch.ended_at is not None:
                continue
            if batch.processing_status == "canceling" and batch.cancel_initiated_at is not None:
                finished = batch.cancel_initiated_at + CANCEL_DURATION
                if now >= finished:
                    self._end(batch, finished, "canceled")
            elif batch.processed == len(batch.requests):
                self._end(batch, batch.requests[-1].due, "expired")
            elif now >= batch.expires_at:
                self._end(batch, batch.expires_at, "expired")

    def get(self, batch_id: str, workspace: str) -> Batch:
        batch = self._batches.get(batch_id)
        if batch is None or batch.workspace != workspace:
            raise not_found(f"message_batch: no batch with id {batch_id!r}")
        return batch

    def page(
        self, workspace: str, *, limit: int, after_id: str | None, before_id: str | None
    ) -> tuple[list[Batch], bool]:
        """A page of the workspace's batches, newest first, and whether more lie beyond it in that direction."""
        if not 1 <= limit <= MAX_PAGE:
            raise invalid_request(f"limit: Input should be between 1 and {MAX_PAGE}")
        if after_id is not None and before_id is not None:
            raise invalid_request("only one of after_id and before_id may be given")
        newest_first = sorted(
            (b for b in self._batches.values() if b.workspace == workspace), key=lambda b: -b.sequence
        )
        if after_id is not None:
            older = [b for b in newest_first if b.sequence < self._cursor(after_id, "after_id")]
            return older[:limit], len(older) > limit
        if before_id is not None:
            newer = [b for b in newest_first if b.sequence > self._cursor(before_id, "before_id")]
            return newer[-limit:], len(newer) > limit
        return newest_first[:limit], len(newest_first) > limit

    def cancel(self, batch_id: str, workspace: str, now: datetime) -> Batch:
        batch = self.get(batch_id, workspace)
        if batch.processing_status == "ended":
            raise invalid_request(f"message_batch {batch_id} has already ended and cannot be canceled")
        if batch.processing_status == "in_progress":
            batch.processing_status = "canceling"
            batch.cancel_initiated_at = now
        return batch

    def delete(self, batch_id: str, workspace: str) -> None:
        batch = self.get(batch_id, workspace)
        if batch.ended_at is None:
            raise invalid_request(
                f"message_batch {batch_id} is still {batch.processing_status}; only ended batches can be deleted "
                "(cancel an in-progress batch first)"
            )
        del self._batches[batch_id]

    def results(self, batch_id: str, workspace: str) -> list[dict[str, Any]]:
        batch = self.get(batch_id, workspace)
        if batch.ended_at is None:
            raise invalid_request(
                f"message_batch {batch_id} is still {batch.processing_status}; results come once it ends"
            )
        return [
            {"custom_id": batch.requests[i].custom_id, "result": batch.requests[i].result or {"type": "expired"}}
            for i in batch.result_order
        ]

    def _cursor(self, batch_id: str, name: str) -> int:
        sequence = self._sequence_of.get(batch_id)
        if sequence is None:
            raise invalid_request(f"{name}: no message batch with id {batch_id!r}")
        return sequence

    @staticmethod
    def _end(batch: Batch, at: datetime, unprocessed: str) -> None:
        for request in batch.requests[batch.processed :]:
            request.result = {"type": unprocessed}
        batch.processing_status = "ended"
        batch.ended_at = at


def _timestamp(at: datetime | None) -> str | None:
    return None if at is None else at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
