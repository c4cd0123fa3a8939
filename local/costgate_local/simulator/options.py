"""How a simulator is configured, in code (`SimulatorOptions`) or from a command line."""

import argparse
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from costgate.clock import Clock
from costgate.errors import ConfigurationError
from costgate.pricing.prices import PriceBook, load_price_book
from costgate_local.simulator.admin import new_admin_key
from costgate_local.simulator.clock import ManualClock, SystemClock
from costgate_local.simulator.faults import FaultConfig


@dataclass(frozen=True)
class SimulatorOptions:
    """`port` 0 picks a free port; `batch_delay` is how long a batch takes by `clock`; `seed` drives faults
    and the order of batch results; `stream_token_ms` paces streams (wall-clock milliseconds per output
    token, 0: as fast as possible). `admin_key` is the one key its Usage and Cost Analytics endpoints
    take; `prices` is what it bills there (costgate's shipped price book when None)."""

    port: int = 0
    clock: Clock = field(default_factory=SystemClock)
    faults: FaultConfig = field(default_factory=FaultConfig)
    batch_delay: timedelta = timedelta(seconds=3)
    seed: int = 0
    stream_token_ms: float = 0.0
    answer_tokens: int | None = None  # the length of every text answer (max_tokens still caps it)
    admin_key: str = field(default_factory=new_admin_key, repr=False)
    prices: PriceBook | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0–65535, got {self.port}")
        if self.batch_delay < timedelta(0):
            raise ValueError("batch_delay must not be negative")
        if not self.stream_token_ms >= 0:
            raise ValueError("stream_token_ms must not be negative")
        if self.answer_tokens is not None and self.answer_tokens < 1:
            raise ValueError("answer_tokens must be at least 1")


def add_simulator_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the simulator's flags (faults, latency, batch timing, seed, manual clock) to `parser`."""
    group = parser.add_argument_group("Claude API simulator")
    group.add_argument(
        "--fault-429",
        dest="simulator_fault_429",
        type=_rate,
        default=0.0,
        metavar="RATE",
        help="share of messages, count_tokens and batch-create requests answered 429 rate_limit_error (0-1)",
    )
    group.add_argument(
        "--fault-529",
        dest="simulator_fault_529",
        type=_rate,
        default=0.0,
        metavar="RATE",
        help="share answered 529 overloaded_error (0-1)",
    )
    group.add_argument(
        "--fault-500",
        dest="simulator_fault_500",
        type=_rate,
        default=0.0,
        metavar="RATE",
        help="share answered 500 api_error (0-1)",
    )
    group.add_argument(
        "--retry-after",
        dest="simulator_retry_after",
        type=_non_negative,
        default=1.0,
        metavar="S",
        help="seconds in the retry-after header of an injected 429 (default 1)",
    )
    group.add_argument(
        "--latency-ms",
        dest="simulator_latency_ms",
        type=_non_negative,
        default=0.0,
        metavar="MS",
        help="latency added to every messages, count_tokens and batch-create request (default 0)",
    )
    group.add_argument(
        "--stream-token-ms",
        dest="simulator_stream_token_ms",
        type=_non_negative,
        default=0.0,
        metavar="MS",
        help="milliseconds per output token of a stream, sent in deltas of 1-3 tokens as Claude does: "
        "a 200-token answer at 150 lasts 30 s (default 0: no pause)",
    )
    group.add_argument(
        "--answer-tokens",
        dest="simulator_answer_tokens",
        type=_positive_int,
        default=None,
        metavar="N",
        help="every text answer is N tokens long, unless max_tokens stops it first (default: 20-249, drawn "
        "from the request): long streams on demand",
    )
    group.add_argument(
        "--fault-stream-error",
        dest="simulator_fault_stream_error",
        type=_rate,
        default=0.0,
        metavar="RATE",
        help="share of streams that break off with an SSE error event (overloaded_error) after "
        "--fault-stream-error-after events, as Claude's do when overloaded mid-answer (0-1)",
    )
    group.add_argument(
        "--fault-stream-error-after",
        dest="simulator_fault_stream_error_after",
        type=_non_negative_int,
        default=4,
        metavar="N",
        help="events a faulty stream sends before its error event (default 4: after the first text delta)",
    )
    group.add_argument(
        "--batch-delay",
        dest="simulator_batch_delay",
        type=_non_negative,
        default=3.0,
        metavar="S",
        help="seconds, by the simulator's clock, from batch creation to its end (default 3)",
    )
    group.add_argument(
        "--seed",
        dest="simulator_seed",
        type=int,
        default=0,
        metavar="N",
        help="seed of the fault draws and batch result order: a run is reproducible (default 0)",
    )
    group.add_argument(
        "--manual-clock",
        dest="simulator_manual_clock",
        type=_aware_time,
        default=None,
        metavar="ISO_TIME",
        help="use a manual clock starting at this time (with offset); enables POST /_simulator/clock "
        '{"advance_seconds": N} so another process can move time',
    )
    group.add_argument(
        "--prices",
        dest="simulator_prices",
        type=Path,
        default=None,
        metavar="PATH",
        help="bill the usage and cost report with this price file (a prices.json), as if Anthropic's prices "
        "differed from costgate's (default: costgate's own)",
    )


def simulator_options_from_args(args: argparse.Namespace, port: int = 0) -> SimulatorOptions:
    """Options from flags added by `add_simulator_arguments`; ValueError if the fault rates exceed 1 together."""
    start: datetime | None = args.simulator_manual_clock
    clock: Clock = ManualClock(start) if start is not None else SystemClock()
    return SimulatorOptions(
        port=port,
        clock=clock,
        faults=FaultConfig(
            rate_429=args.simulator_fault_429,
            rate_529=args.simulator_fault_529,
            rate_500=args.simulator_fault_500,
            retry_after_seconds=args.simulator_retry_after,
            latency_ms=args.simulator_latency_ms,
            stream_error_rate=args.simulator_fault_stream_error,
            stream_error_after=args.simulator_fault_stream_error_after,
        ),
        batch_delay=timedelta(seconds=args.simulator_batch_delay),
        seed=args.simulator_seed,
        stream_token_ms=args.simulator_stream_token_ms,
        answer_tokens=args.simulator_answer_tokens,
        prices=_prices(args.simulator_prices),
    )


def _prices(path: Path | None) -> PriceBook | None:
    if path is None:
        return None
    try:
        return load_price_book(path.read_bytes())
    except OSError as error:
        raise ConfigurationError(f"--prices: cannot read {path}: {error.strerror or error}") from None


def _rate(text: str) -> float:
    value = _number(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"a rate is between 0 and 1, got {text}")
    return value


def _non_negative(text: str) -> float:
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return value


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


def _aware_time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO time: {text!r}") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"give the time with an offset, e.g. {text}+00:00")
    return value
