"""Savings per strategy, hand-computed: what prompt caching and the batch discount took off the bill."""

from datetime import UTC, datetime
from decimal import Decimal

from costgate.cost import Strategy, measure_savings, price_usage
from costgate.usage import TokenUsage

AT = datetime(2026, 11, 29, 12, tzinfo=UTC)


def _savings(model: str, usage: TokenUsage) -> tuple[Decimal, Decimal, dict[Strategy, Decimal]]:
    cost = price_usage(model, usage, AT)
    measured = measure_savings(model, usage, cost, AT)
    return cost.total_usd, measured.baseline_usd, dict(measured.by_strategy)


def test_cache_reads_save_against_plain_input() -> None:
    # Opus 5.5 (4/20, read ×0.05): 1000 in, 10,000 read, 500 out
    # cost     = 1000×4e-6 + 10000×4e-6×0.05 + 500×20e-6 = 0.004 + 0.002 + 0.01 = 0.016
    # uncached = 11000×4e-6 + 0.01 = 0.054 → prompt-cache saving 0.038
    cost, baseline, by = _savings(
        "claude-opus-5-5", TokenUsage(input_tokens=1000, cache_read_tokens=10_000, output_tokens=500)
    )
    assert cost == Decimal("0.016")
    assert baseline == Decimal("0.054")
    assert by == {Strategy.PROMPT_CACHE: Decimal("0.038"), Strategy.BATCH: Decimal(0)}


def test_a_cache_write_alone_is_a_negative_saving() -> None:
    # Opus 5.5: 100 in, 5000 written for 5 min, 100 out
    # cost     = 100×4e-6 + 5000×4e-6×1.25 + 100×20e-6 = 0.0004 + 0.025 + 0.002 = 0.0274
    # uncached = 5100×4e-6 + 0.002 = 0.0224 → saving −0.005 (the write's premium)
    cost, baseline, by = _savings(
        "claude-opus-5-5", TokenUsage(input_tokens=100, cache_write_5m_tokens=5000, output_tokens=100)
    )
    assert cost == Decimal("0.0274")
    assert baseline == Decimal("0.0224")
    assert by[Strategy.PROMPT_CACHE] == Decimal("-0.005")


def test_batch_discount_is_measured_on_the_uncached_cost() -> None:
    # Haiku 4.5 (1/5) batch: 2000 in, 400 out → (0.002 + 0.002) × 0.5 = 0.002; standard 0.004
    cost, baseline, by = _savings(
        "claude-haiku-4-5", TokenUsage(input_tokens=2000, output_tokens=400, service_tier="batch")
    )
    assert cost == Decimal("0.002")
    assert baseline == Decimal("0.004")
    assert by == {Strategy.PROMPT_CACHE: Decimal(0), Strategy.BATCH: Decimal("0.002")}


def test_batch_and_cache_savings_add_up_to_the_baseline() -> None:
    # Haiku 4.5 batch: 1000 in, 9000 read (×0.10), 100 out
    # cost     = (1000×1e-6 + 9000×1e-6×0.1 + 100×5e-6) × 0.5 = (0.001 + 0.0009 + 0.0005) × 0.5 = 0.0012
    # uncached = (10000×1e-6 + 0.0005) × 0.5 = 0.00525; standard uncached = 0.0105
    cost, baseline, by = _savings(
        "claude-haiku-4-5",
        TokenUsage(input_tokens=1000, cache_read_tokens=9000, output_tokens=100, service_tier="batch"),
    )
    assert cost == Decimal("0.0012")
    assert by == {Strategy.PROMPT_CACHE: Decimal("0.00405"), Strategy.BATCH: Decimal("0.00525")}
    assert baseline == Decimal("0.0105")
