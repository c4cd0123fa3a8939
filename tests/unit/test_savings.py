"""Savings per strategy, hand-computed: what prompt caching and the batch discount took off the bill."""

from datetime import UTC, datetime
from decimal import Decimal

from costgate.pricing.cost import Strategy, measure_savings, price_usage, split_prompt_cache
from costgate.pricing.usage import TokenUsage

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


def test_routing_is_measured_against_the_baseline_model_on_the_same_tokens() -> None:
    # Routed to Haiku 5.5 (0.10/0.50), baseline Sonnet 5.5 (2/10): 2000 in, 1000 read, 400 out
    # cost       = 2000×0.1e-6 + 1000×0.1e-6×0.1 + 400×0.5e-6 = 0.0002 + 0.00001 + 0.0002 = 0.00041
    # uncached   = 3000×0.1e-6 + 0.0002 = 0.0005                → prompt cache 0.00009
    # on Sonnet  = 3000×2e-6 + 400×10e-6 = 0.006 + 0.004 = 0.01 → routing 0.0095
    usage = TokenUsage(input_tokens=2000, cache_read_tokens=1000, output_tokens=400)
    cost = price_usage("claude-haiku-5-5", usage, AT)
    measured = measure_savings("claude-haiku-5-5", usage, cost, AT, baseline_model="claude-sonnet-5-5")
    assert cost.total_usd == Decimal("0.00041")
    assert dict(measured.by_strategy) == {
        Strategy.PROMPT_CACHE: Decimal("0.00009"),
        Strategy.BATCH: Decimal(0),
        Strategy.ROUTING: Decimal("0.0095"),
    }
    assert measured.baseline_usd == Decimal("0.01")


def test_routing_up_is_a_negative_saving() -> None:
    # Routed to Opus 5.5 (4/20), baseline Sonnet 5.5 (2/10): 1000 in, 100 out
    # Opus 0.004 + 0.002 = 0.006; Sonnet 0.002 + 0.001 = 0.003 → routing −0.003
    usage = TokenUsage(input_tokens=1000, output_tokens=100)
    cost = price_usage("claude-opus-5-5", usage, AT)
    measured = measure_savings("claude-opus-5-5", usage, cost, AT, baseline_model="claude-sonnet-5-5")
    assert measured.by_strategy[Strategy.ROUTING] == Decimal("-0.003")
    assert measured.baseline_usd == Decimal("0.003")


def test_split_prompt_cache_separates_write_premium_from_read_saving() -> None:
    # Opus 5.5 (4/20, read ×0.05): 100 in, 2000 written 1h, 10,000 read, 0 out
    # write premium = 2000×4e-6×(2−1) = 0.008; read saving = 10000×4e-6×(1−0.05) = 0.038
    usage = TokenUsage(input_tokens=100, cache_write_1h_tokens=2000, cache_read_tokens=10_000)
    cost = price_usage("claude-opus-5-5", usage, AT)
    premium, saved = split_prompt_cache("claude-opus-5-5", usage, cost, AT)
    assert (premium, saved) == (Decimal("0.008"), Decimal("0.038"))
    assert saved - premium == measure_savings("claude-opus-5-5", usage, cost, AT).by_strategy[Strategy.PROMPT_CACHE]
