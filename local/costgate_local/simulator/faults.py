"""Injected faults: shares of 429 / 529 / 500 answers and added latency, drawn from a seeded RNG.

They apply to `POST /v1/messages`, `/v1/messages/count_tokens` and batch creation, after
authentication and the size check, before the body is parsed. One draw per request, in arrival
order, so a run with the same seed and the same request sequence sees the same faults.
"""

import random
from collections import Counter
from dataclasses import dataclass

from costgate_local.simulator.errors import ApiError


@dataclass(frozen=True)
class FaultConfig:
    """Each rate is the share (0–1) of requests answered with that error; together at most 1."""

    rate_429: float = 0.0
    rate_529: float = 0.0
    rate_500: float = 0.0
    retry_after_seconds: float = 1.0
    latency_ms: float = 0.0
    # Share (0-1) of streams that break off with an SSE `error` event (overloaded_error) after
    # `stream_error_after` events, as Claude's streams do when it is overloaded mid-answer.
    stream_error_rate: float = 0.0
    stream_error_after: int = 4

    def __post_init__(self) -> None:
        for name in ("rate_429", "rate_529", "rate_500"):
            rate = getattr(self, name)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"fault {name} must be between 0 and 1, got {rate}")
        if self.rate_429 + self.rate_529 + self.rate_500 > 1.0 + 1e-9:
            raise ValueError("fault rates add up to more than 1")
        if self.retry_after_seconds < 0 or self.latency_ms < 0:
            raise ValueError("retry-after and latency must not be negative")
        if not 0.0 <= self.stream_error_rate <= 1.0:
            raise ValueError(f"stream_error_rate must be between 0 and 1, got {self.stream_error_rate}")
        if self.stream_error_after < 0:
            raise ValueError("stream_error_after must not be negative")

    @property
    def any_errors(self) -> bool:
        return self.rate_429 + self.rate_529 + self.rate_500 > 0


class FaultInjector:
    """Draws faults. Not thread-safe: the server draws under its lock, so arrival order decides."""

    def __init__(self, config: FaultConfig, seed: int) -> None:
        self.config = config
        self._rng = random.Random(seed)  # noqa: S311 - seeded on purpose: a run is reproducible
        self.injected: Counter[int] = Counter()
        self.stream_errors = 0

    def draw_stream_error(self) -> int | None:
        """How many events a stream sends before it breaks off with an error event; None: it does not."""
        if self.config.stream_error_rate <= 0 or self._rng.random() >= self.config.stream_error_rate:
            return None
        self.stream_errors += 1
        return self.config.stream_error_after

    def draw(self) -> ApiError | None:
        """The error to answer this request with, or None to serve it."""
        config = self.config
        if not config.any_errors:
            return None
        roll = self._rng.random()
        error: ApiError | None = None
        if roll < config.rate_429:
            error = ApiError(
                429,
                "rate_limit_error",
                "Number of request tokens has exceeded your per-minute rate limit (simulated fault)",
                {
                    "retry-after": _seconds(config.retry_after_seconds),
                    "x-should-retry": "true",
                    "anthropic-ratelimit-requests-remaining": "0",
                },
            )
        elif roll < config.rate_429 + config.rate_529:
            error = ApiError(529, "overloaded_error", "Overloaded (simulated fault)", {"x-should-retry": "true"})
        elif roll < config.rate_429 + config.rate_529 + config.rate_500:
            error = ApiError(500, "api_error", "Internal server error (simulated fault)", {"x-should-retry": "true"})
        if error is not None:
            self.injected[error.status] += 1
        return error


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"
