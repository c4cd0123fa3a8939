"""Cost engine throughput: price_usage per call, against normalise_usage alone (the baseline) in the same run.

Pricing runs once per recorded request; this shows what the exact-Decimal engine adds on top of
reading the usage object, so a regression in the engine shows up as a worse ratio.
"""

import argparse
import statistics
import time
from datetime import UTC, datetime

from costgate.pricing.cost import price_usage
from costgate.pricing.prices import default_price_book
from costgate.pricing.usage import normalise_usage

USAGE = {
    "input_tokens": 2_113,
    "output_tokens": 917,
    "cache_creation_input_tokens": 6_200,
    "cache_read_input_tokens": 18_600,
    "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 6_200},
    "server_tool_use": {"web_search_requests": 2, "web_fetch_requests": 0},
    "service_tier": "batch",
    "inference_geo": "us",
}
AT = datetime(2026, 11, 29, 12, tzinfo=UTC)
ROUNDS, CALLS = 7, 5_000
QUICK_ROUNDS, QUICK_CALLS = 2, 200


def per_call_us(fn: object, rounds: int = ROUNDS, calls: int = CALLS) -> float:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            fn()  # type: ignore[operator]
        samples.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run: every figure once, few repetitions")
    size = (QUICK_ROUNDS, QUICK_CALLS) if parser.parse_args().quick else (ROUNDS, CALLS)
    default_price_book()  # loaded once per process in production too
    baseline = per_call_us(lambda: normalise_usage(USAGE), *size)
    engine = per_call_us(lambda: price_usage("claude-opus-4-6", USAGE, AT), *size)
    print(f"normalise_usage (baseline): {baseline:8.2f} µs/call")
    print(f"price_usage (full engine):  {engine:8.2f} µs/call  = {engine / baseline:.1f}× the baseline")
    print(f"=> {1e6 / engine:,.0f} requests priced per second on one core")


if __name__ == "__main__":
    main()
