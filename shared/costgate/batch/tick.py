"""What the steps of one scheduler tick share: its deadline, its report, and the limits of a batch."""

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

# A request is submitted at most this often; after that an expired or canceled one fails its document.
MAX_SUBMISSIONS = 3
# Requests per batch: the API allows 100,000, but smaller batches end sooner and each tick reads at
# most this many pending requests.
MAX_BATCH_REQUESTS = 10_000
MAX_BATCH_BYTES = 256_000_000  # the API's 256 MB, less the body's own framing
PARALLEL = 16  # concurrent S3 and DynamoDB calls while collecting and packing


@dataclass
class TickReport:
    """What one scheduler tick did (logged, and counted as metrics by the handler)."""

    recovered_batches: int = 0
    collected_results: int = 0
    requeued_requests: int = 0
    failed_requests: int = 0
    finished_documents: int = 0
    failed_documents: int = 0
    submitted_batches: int = 0
    submitted_requests: int = 0
    waiting_for_budget: int = 0
    manifests_written: int = 0
    out_of_time: bool = False  # stopped at the deadline; the next tick goes on
    errors: list[str] = field(default_factory=list)


class Tick:
    """One tick's report and deadline (a monotonic instant), shared by its steps."""

    def __init__(self, deadline: float, monotonic: Callable[[], float]) -> None:
        self.report = TickReport()
        self._deadline = deadline
        self._monotonic = monotonic

    def time_left(self) -> bool:
        """False once the deadline has passed (and the report says the tick stopped for it)."""
        if self._monotonic() < self._deadline:
            return True
        self.report.out_of_time = True
        return False


def windows(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    window: list[Any] = []
    for item in items:
        window.append(item)
        if len(window) == size:
            yield window
            window = []
    if window:
        yield window
