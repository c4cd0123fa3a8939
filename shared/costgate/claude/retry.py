"""One retry policy for every Claude client, the SDK's: `x-should-retry` first, else 408, 409, 429 and
every status >= 500; the server's `retry-after-ms` / `retry-after` when sane, else jittered backoff.
"""

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from costgate.claude.transport import UpstreamResponse

INITIAL_RETRY_DELAY_S = 0.5
MAX_RETRY_DELAY_S = 8.0
RETRY_JITTER = 0.25
MAX_RETRY_AFTER_S = 60.0


@dataclass
class RetryPolicy:
    """At most `max_retries` retries; `sleep`, `rng` and `wall_time` are injected so tests neither wait nor guess."""

    max_retries: int = 2
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)
    wall_time: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"max_retries must not be negative, got {self.max_retries}")

    def exhausted(self, attempts: int) -> bool:
        """True once `attempts` attempts leave no retry."""
        return attempts > self.max_retries

    def delay(self, retry_number: int, headers: Mapping[str, str]) -> float:
        """The wait before retry `retry_number` (from 0): the server's when it gives a sane one, else
        0.5 s × 2^n capped at 8 s, ±25% jitter."""
        retry_after = retry_after_s(headers, self.wall_time)
        if retry_after is not None and 0 < retry_after <= MAX_RETRY_AFTER_S:
            return retry_after
        backoff = min(INITIAL_RETRY_DELAY_S * 2.0 ** min(retry_number, 32), MAX_RETRY_DELAY_S)
        return backoff * self.rng.uniform(1 - RETRY_JITTER, 1 + RETRY_JITTER)


def should_retry(response: UpstreamResponse) -> bool:
    should_retry = response.headers.get("x-should-retry")
    if should_retry == "true":
        return True
    if should_retry == "false":
        return False
    return response.status in (408, 409, 429) or response.status >= 500


def retry_after_s(headers: Mapping[str, str], wall_time: Callable[[], float]) -> float | None:
    """Seconds to wait from `retry-after-ms`, else `retry-after` (seconds or an HTTP date); None if neither parses."""
    try:
        return float(headers["retry-after-ms"]) / 1000
    except (KeyError, ValueError):
        pass
    text = headers.get("retry-after")
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    # email.utils only on this rare path: it is not otherwise needed at cold start.
    from email.utils import mktime_tz, parsedate_tz  # noqa: PLC0415

    parsed = parsedate_tz(text)
    return None if parsed is None else mktime_tz(parsed) - wall_time()
