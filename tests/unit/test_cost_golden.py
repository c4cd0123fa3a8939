"""Golden costs: every expected value is computed by hand from shared/reference/anthropic-api.md.

Each case names the rule it pins. Expected totals and components are decimal string literals; the
arithmetic is in the comment beside them (USD per million tokens, so `N×rate/1e6`). Components a
case does not list must be exactly 0.
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from anthropic.types import CacheCreation, OutputTokensDetails, ServerToolUsage, Usage

from costgate.errors import PricingError
from costgate.money import format_usd
from costgate.pricing.cost import CostComponent, price_usage

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
HAIKU_3_5_ERA = datetime(2025, 1, 15, 12, 0, tzinfo=UTC)
OPUS_4_ERA = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Golden:
    model: str
    usage: dict[str, Any]
    total: str
    components: dict[str, str]
    modifiers: tuple[str, ...] = ()
    at: datetime = NOW
    confirmed: bool = True
    canonical: str | None = None
    row_from: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


GOLDEN = [
    # --- plain input/output, current, historical, dated ids and aliases -------------------------
    pytest.param(
        Golden(
            "claude-opus-5-5",
            {"input_tokens": 1000, "output_tokens": 500},
            # 1000×4/1e6 + 500×20/1e6 = 0.004 + 0.01
            "0.014",
            {"input": "0.004", "output": "0.01"},
        ),
        id="cli-golden-opus-5-5-plain",
    ),
    pytest.param(
        Golden(
            "claude-fable-5-2",
            {"input_tokens": 1000, "output_tokens": 1000},
            # 1000×8/1e6 + 1000×40/1e6 = 0.008 + 0.04; Fable 5.2's row is unconfirmed
            "0.048",
            {"input": "0.008", "output": "0.04"},
            confirmed=False,
        ),
        id="plain-fable-5-2-unconfirmed-row",
    ),
    pytest.param(
        Golden(
            "claude-mythos-5-1",
            {"input_tokens": 1000, "output_tokens": 200},
            # 1000×10/1e6 + 200×50/1e6 = 0.01 + 0.01
            "0.02",
            {"input": "0.01", "output": "0.01"},
        ),
        id="plain-mythos-5-1",
    ),
    pytest.param(
        Golden(
            "claude-sonnet-5",
            {"input_tokens": 3000, "output_tokens": 700},
            # 3000×2/1e6 + 700×10/1e6 = 0.006 + 0.007
            "0.013",
            {"input": "0.006", "output": "0.007"},
        ),
        id="plain-sonnet-5",
    ),
    pytest.param(
        Golden(
            "claude-opus-4-5-20251101",
            {"input_tokens": 2000, "output_tokens": 300},
            # 2000×5/1e6 + 300×25/1e6 = 0.01 + 0.0075
            "0.0175",
            {"input": "0.01", "output": "0.0075"},
            canonical="claude-opus-4-5",
        ),
        id="plain-opus-4-5-dated-id",
    ),
    pytest.param(
        Golden(
            "claude-haiku-4-5-20251001",
            {"input_tokens": 5000, "output_tokens": 1000},
            # 5000×1/1e6 + 1000×5/1e6 = 0.005 + 0.005
            "0.01",
            {"input": "0.005", "output": "0.005"},
            canonical="claude-haiku-4-5",
        ),
        id="plain-haiku-4-5-dated-id",
    ),
    pytest.param(
        Golden(
            "claude-3-5-haiku-20241022",
            {"input_tokens": 10000, "output_tokens": 2000},
            # 10000×0.80/1e6 + 2000×4/1e6 = 0.008 + 0.008
            "0.016",
            {"input": "0.008", "output": "0.008"},
            at=HAIKU_3_5_ERA,
            canonical="claude-haiku-3-5",
        ),
        id="plain-haiku-3-5-historical-dated-id",
    ),
    pytest.param(
        Golden(
            "claude-opus-4-20250514",
            {"input_tokens": 1_000_000, "output_tokens": 1_000_000},
            # 1e6×15/1e6 + 1e6×75/1e6 = 15 + 75 (a whole total prints as "90", not "9E+1")
            "90",
            {"input": "15", "output": "75"},
            at=OPUS_4_ERA,
            canonical="claude-opus-4",
        ),
        id="plain-opus-4-retired-dated-id-whole-dollars",
    ),
    # --- cache writes: 5m 1.25×, 1h 2×, breakdown absent → 5m --------------------------------
    pytest.param(
        Golden(
            "claude-opus-5-5",
            {
                "input_tokens": 100,
                "cache_creation_input_tokens": 2000,
                "cache_creation": {"ephemeral_5m_input_tokens": 2000, "ephemeral_1h_input_tokens": 0},
                "output_tokens": 100,
            },
            # 100×4/1e6 + 2000×4×1.25/1e6 + 100×20/1e6 = 0.0004 + 0.01 + 0.002
            "0.0124",
            {"input": "0.0004", "cache_write_5m": "0.01", "output": "0.002"},
        ),
        id="cache-write-5m-1.25x",
    ),
    pytest.param(
        Golden(
            "claude-opus-5-5",
            {
                "input_tokens": 0,
                "cache_creation_input_tokens": 2000,
                "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 2000},
                "output_tokens": 0,
            },
            # 2000×4×2/1e6 = 0.016
            "0.016",
            {"cache_write_1h": "0.016"},
        ),
        id="cache-write-1h-2x",
    ),
    pytest.param(
        Golden(
            "claude-sonnet-4-6",
            {"input_tokens": 50, "cache_creation_input_tokens": 10000, "output_tokens": 200},
            # 50×3/1e6 + 10000×3×1.25/1e6 + 200×15/1e6 = 0.00015 + 0.0375 + 0.003
            "0.04065",
            {"input": "0.00015", "cache_write_5m": "0.0375", "output": "0.003"},
        ),
        id="cache-creation-absent-all-writes-5m",
    ),
    pytest.param(
        Golden(
            "claude-haiku-4-5",
            {
                "input_tokens": 10,
                "cache_creation_input_tokens": 3000,
                "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 2000},
                "output_tokens": 20,
            },
            # 10×1/1e6 + 1000×1×1.25/1e6 + 2000×1×2/1e6 + 20×5/1e6 = 0.00001 + 0.00125 + 0.004 + 0.0001
            "0.00536",
            {"input": "0.00001", "cache_write_5m": "0.00125", "cache_write_1h": "0.004", "output": "0.0001"},
        ),
        id="cache-write-breakdown-both-ttls",
    ),
    # --- cache reads at 0.10, 0.05, 0.025 ---------------------------------------------------------
    pytest.param(
        Golden(
            "claude-opus-4-6",
            {"input_tokens": 1000, "cache_read_input_tokens": 100_000, "output_tokens": 500},
            # 1000×5/1e6 + 100000×5×0.10/1e6 + 500×25/1e6 = 0.005 + 0.05 + 0.0125
            "0.0675",
            {"input": "0.005", "cache_read": "0.05", "output": "0.0125"},
        ),
        id="cache-read-0.10-opus-4-6",
    ),
    pytest.param(
        Golden(
            "claude-opus-5-5",
            {"input_tokens": 0, "cache_read_input_tokens": 100_000, "output_tokens": 0},
            # 100000×4×0.05/1e6 = 0.02
            "0.02",
            {"cache_read": "0.02"},
        ),
        id="cache-read-0.05-opus-5-5",
    ),
    pytest.param(
        Golden(
            "claude-fable-5-1",
            {"input_tokens": 0, "cache_read_input_tokens": 100_000, "output_tokens": 0},
            # 100000×10×0.025/1e6 = 0.025
            "0.025",
            {"cache_read": "0.025"},
        ),
        id="cache-read-0.025-fable-5-1",
    ),
    pytest.param(
        Golden(
            "claude-fable-5-2",
            {"input_tokens": 2000, "cache_read_input_tokens": 40000, "output_tokens": 100},
            # 2000×8/1e6 + 40000×8×0.025/1e6 + 100×40/1e6 = 0.016 + 0.008 + 0.004 (read mult. unconfirmed)
            "0.028",
            {"input": "0.016", "cache_read": "0.008", "output": "0.004"},
            confirmed=False,
        ),
        id="cache-read-0.025-fable-5-2-unconfirmed",
    ),
    # --- batch: ×0.5 on every category, stacks with cache and geo -------------------------------
    pytest.param(
        Golden(
            "claude-opus-5-5",
            {"input_tokens": 1000, "output_tokens": 500, "service_tier": "batch"},
            # (1000×4/1e6 + 500×20/1e6)×0.5 = 0.002 + 0.005
            "0.007",
            {"input": "0.002", "output": "0.005"},
            modifiers=("batch",),
        ),
        id="batch-half-price",
    ),
    pytest.param(
        Golden(
            "claude-sonnet-4-6",
            {
                "input_tokens": 1000,
                "cache_creation_input_tokens": 4000,
                "cache_creation": {"ephemeral_5m_input_tokens": 2000, "ephemeral_1h_input_tokens": 2000},
                "cache_read_input_tokens": 10000,
                "output_tokens": 1000,
                "service_tier": "batch",
            },
            # ×0.5 each: 1000×3/1e6=0.003→0.0015; 2000×3×1.25/1e6=0.0075→0.00375;
            # 2000×3×2/1e6=0.012→0.006; 10000×3×0.10/1e6=0.003→0.0015; 1000×15/1e6=0.015→0.0075
            "0.02025",
            {
                "input": "0.0015",
                "cache_write_5m": "0.00375",
                "cache_write_1h": "0.006",
                "cache_read": "0.0015",
                "output": "0.0075",
            },
            modifiers=("batch",),
        ),
        id="batch-x-cache-writes-and-reads",
    ),
    pytest.param(
        Golden(
            "claude-sonnet-4-6",
            {
                "input_tokens": 1000,
                "cache_creation_input_tokens": 4000,
                "cache_creation": {"ephemeral_5m_input_tokens": 2000, "ephemeral_1h_input_tokens": 2000},
                "cache_read_input_tokens": 10000,
                "output_tokens": 1000,
                "service_tier": "batch",
                "inference_geo": "us",
            },
            # ×0.5×1.1 = ×0.55 each: 0.003→0.00165; 0.0075→0.004125; 0.012→0.0066; 0.003→0.00165;
            # 0.015→0.00825; sum 0.0405×0.55 = 0.022275
            "0.022275",
            {
                "input": "0.00165",
                "cache_write_5m": "0.004125",
                "cache_write_1h": "0.0066",
                "cache_read": "0.00165",
                "output": "0.00825",
            },
            modifiers=("batch", "inference_geo:us"),
        ),
        id="batch-x-cache-x-geo-us",
    ),
    # --- data residency: inference_geo "us" ×1.1 on 4.6+ ----------------------------------------
    pytest.param(
        Golden(
            "claude-opus-4-6",
            {
                "input_tokens": 1000,
                "cache_creation_input_tokens": 1000,
                "cache_read_input_tokens": 10000,
                "output_tokens": 1000,
                "server_tool_use": {"web_search_requests": 2, "web_fetch_requests": 0},
                "inference_geo": "us",
            },
            # ×1.1 each: 1000×5/1e6=0.005→0.0055; 1000×5×1.25/1e6=0.00625→0.006875;
            # 10000×5×0.10/1e6=0.005→0.0055; 1000×25/1e6=0.025→0.0275; 2×0.01=0.02→0.022
            "0.067375",
            {
                "input": "0.0055",
                "cache_write_5m": "0.006875",
                "cache_read": "0.0055",
                "output": "0.0275",
                "web_search": "0.022",
            },
            modifiers=("inference_geo:us",),
        ),
        id="geo-us-4-6-1.1x-every-category",
    ),
    # --- fast mode: fast rates replace base rates, cache priced off the fast input rate ---------
    pytest.param(
        Golden(
            "claude-opus-5-5",
            {
                "input_tokens": 1000,
                "cache_creation_input_tokens": 1000,
                "output_tokens": 1000,
                "speed": "fast",
            },
            # 1000×8/1e6 + 1000×8×1.25/1e6 + 1000×40/1e6 = 0.008 + 0.01 + 0.04
            "0.058",
            {"input": "0.008", "cache_write_5m": "0.01", "output": "0.04"},
            modifiers=("speed:fast",),
        ),
        id="fast-opus-5-5-8-40-5m-write-off-fast-rate",
    ),
    pytest.param(
        Golden(
            "claude-opus-5",
            {
                "input_tokens": 2000,
                "cache_creation_input_tokens": 2000,
                "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 2000},
                "output_tokens": 100,
                "speed": "fast",
            },
            # 2000×10/1e6 + 2000×10×2/1e6 + 100×50/1e6 = 0.02 + 0.04 + 0.005
            "0.065",
            {"input": "0.02", "cache_write_1h": "0.04", "output": "0.005"},
            modifiers=("speed:fast",),
        ),
        id="fast-opus-5-10-50-1h-write-off-fast-rate",
    ),
    pytest.param(
        Golden(
            "claude-opus-4-8",
            {"input_tokens": 1000, "cache_read_input_tokens": 10000, "output_tokens": 1000, "speed": "fast"},
            # 1000×10/1e6 + 10000×10×0.10/1e6 + 1000×50/1e6 = 0.01 + 0.01 + 0.05
            "0.07",
            {"input": "0.01", "cache_read": "0.01", "output": "0.05"},
            modifiers=("speed:fast",),
        ),
        id="fast-opus-4-8-10-50-read-off-fast-rate",
    ),
    pytest.param(
        Golden(
            "claude-opus-5-5",
            {"input_tokens": 1000, "output_tokens": 1000, "speed": "fast", "inference_geo": "us"},
            # (1000×8/1e6)×1.1 + (1000×40/1e6)×1.1 = 0.0088 + 0.044
            "0.0528",
            {"input": "0.0088", "output": "0.044"},
            modifiers=("speed:fast", "inference_geo:us"),
        ),
        id="fast-x-geo-us",
    ),
    # --- Haiku 5.5 prompt bands (prompt = input + cache writes + cache reads) -------------------
    pytest.param(
        Golden(
            "claude-haiku-5-5",
            {"input_tokens": 100_000, "output_tokens": 1000},
            # prompt 100000 is not > 100K: 100000×0.10/1e6 + 1000×0.50/1e6 = 0.01 + 0.0005
            "0.0105",
            {"input": "0.01", "output": "0.0005"},
        ),
        id="haiku-5-5-prompt-exactly-100000-low-band",
    ),
    pytest.param(
        Golden(
            "claude-haiku-5-5",
            {"input_tokens": 100_001, "output_tokens": 1000},
            # high band on every token: 100001×0.50/1e6 + 1000×2.50/1e6 = 0.0500005 + 0.0025
            "0.0525005",
            {"input": "0.0500005", "output": "0.0025"},
            modifiers=("prompt_band:>100000",),
            confirmed=False,
        ),
        id="haiku-5-5-prompt-100001-high-band-output-included",
    ),
    pytest.param(
        Golden(
            "claude-haiku-5-5",
            {
                "input_tokens": 1000,
                "cache_creation_input_tokens": 50000,
                "cache_read_input_tokens": 50000,
                "output_tokens": 2000,
            },
            # prompt 1000+50000+50000 = 101000 > 100K → 0.50/2.50: 1000×0.5/1e6 + 50000×0.5×1.25/1e6
            # + 50000×0.5×0.10/1e6 + 2000×2.5/1e6 = 0.0005 + 0.03125 + 0.0025 + 0.005
            "0.03925",
            {"input": "0.0005", "cache_write_5m": "0.03125", "cache_read": "0.0025", "output": "0.005"},
            modifiers=("prompt_band:>100000",),
            confirmed=False,
        ),
        id="haiku-5-5-high-band-from-cache-tokens",
    ),
    pytest.param(
        Golden(
            "claude-haiku-5-5",
            {
                "input_tokens": 1000,
                "cache_creation_input_tokens": 49000,
                "cache_read_input_tokens": 50000,
                "output_tokens": 2000,
            },
            # prompt 1000+49000+50000 = 100000 → low band: 1000×0.1/1e6 + 49000×0.1×1.25/1e6
            # + 50000×0.1×0.10/1e6 + 2000×0.5/1e6 = 0.0001 + 0.006125 + 0.0005 + 0.001
            "0.007725",
            {"input": "0.0001", "cache_write_5m": "0.006125", "cache_read": "0.0005", "output": "0.001"},
        ),
        id="haiku-5-5-cache-tokens-exactly-100000-low-band",
    ),
    pytest.param(
        Golden(
            "claude-haiku-5-5",
            {"input_tokens": 100_001, "output_tokens": 1000, "service_tier": "batch"},
            # (100001×0.50/1e6)×0.5 + (1000×2.50/1e6)×0.5 = 0.02500025 + 0.00125
            "0.02625025",
            {"input": "0.02500025", "output": "0.00125"},
            modifiers=("prompt_band:>100000", "batch"),
            confirmed=False,
        ),
        id="haiku-5-5-high-band-x-batch",
    ),
    # --- long context: only Sonnet 4/4.5 bill 2× input / 1.5× output above 200K ---------------
    pytest.param(
        Golden(
            "claude-sonnet-4-5",
            {"input_tokens": 200_001, "output_tokens": 1000},
            # 200001×6/1e6 + 1000×22.5/1e6 = 1.200006 + 0.0225
            "1.222506",
            {"input": "1.200006", "output": "0.0225"},
            modifiers=("prompt_band:>200000",),
        ),
        id="sonnet-4-5-long-context-above-200000",
    ),
    pytest.param(
        Golden(
            "claude-sonnet-4-5",
            {"input_tokens": 200_000, "output_tokens": 1000},
            # exactly 200000 stays 3/15: 200000×3/1e6 + 1000×15/1e6 = 0.6 + 0.015
            "0.615",
            {"input": "0.6", "output": "0.015"},
        ),
        id="sonnet-4-5-exactly-200000-standard-rates",
    ),
    pytest.param(
        Golden(
            "claude-sonnet-4-5-20250929",
            {"input_tokens": 1000, "cache_read_input_tokens": 199_001, "output_tokens": 100},
            # prompt 1000+199001 = 200001 → 6/22.5: 1000×6/1e6 + 199001×6×0.10/1e6 + 100×22.5/1e6
            # = 0.006 + 0.1194006 + 0.00225
            "0.1276506",
            {"input": "0.006", "cache_read": "0.1194006", "output": "0.00225"},
            modifiers=("prompt_band:>200000",),
            canonical="claude-sonnet-4-5",
        ),
        id="sonnet-4-5-dated-id-long-context-from-cache-reads",
    ),
    pytest.param(
        Golden(
            "claude-sonnet-4-6",
            {"input_tokens": 500_000, "output_tokens": 1000},
            # 4.6 bills the full 1M window at standard rates: 500000×3/1e6 + 1000×15/1e6 = 1.5 + 0.015
            "1.515",
            {"input": "1.5", "output": "0.015"},
        ),
        id="sonnet-4-6-not-banded-above-200000",
    ),
    # --- Sonnet 5.5's dated read multiplier: 0.10 before 2026-10-07 UTC, 0.05 from it ---------
    pytest.param(
        Golden(
            "claude-sonnet-5-5",
            {"input_tokens": 1000, "cache_read_input_tokens": 100_000, "output_tokens": 100},
            # 1000×2/1e6 + 100000×2×0.10/1e6 + 100×10/1e6 = 0.002 + 0.02 + 0.001
            "0.023",
            {"input": "0.002", "cache_read": "0.02", "output": "0.001"},
            at=datetime(2026, 10, 6, 23, 59, 59, tzinfo=UTC),
            row_from="2026-02-05",
        ),
        id="sonnet-5-5-read-0.10-before-2026-10-07",
    ),
    pytest.param(
        Golden(
            "claude-sonnet-5-5",
            {"input_tokens": 1000, "cache_read_input_tokens": 100_000, "output_tokens": 100},
            # 1000×2/1e6 + 100000×2×0.05/1e6 + 100×10/1e6 = 0.002 + 0.01 + 0.001 (row unconfirmed)
            "0.013",
            {"input": "0.002", "cache_read": "0.01", "output": "0.001"},
            at=datetime(2026, 10, 7, 0, 0, tzinfo=UTC),
            confirmed=False,
            row_from="2026-10-07",
        ),
        id="sonnet-5-5-read-0.05-from-2026-10-07-utc-midnight",
    ),
    pytest.param(
        Golden(
            "claude-sonnet-5-5",
            {"input_tokens": 1000, "cache_read_input_tokens": 100_000, "output_tokens": 100},
            # 2026-10-06 20:00 at UTC-5 is 2026-10-07 01:00 UTC → 0.05: 0.002 + 0.01 + 0.001
            "0.013",
            {"input": "0.002", "cache_read": "0.01", "output": "0.001"},
            at=datetime(2026, 10, 6, 20, 0, tzinfo=timezone(timedelta(hours=-5))),
            confirmed=False,
            row_from="2026-10-07",
        ),
        id="sonnet-5-5-local-time-already-2026-10-07-in-utc",
    ),
    pytest.param(
        Golden(
            "claude-sonnet-5-5",
            {"input_tokens": 1000, "cache_read_input_tokens": 100_000, "output_tokens": 100},
            # 2026-10-07 01:00 at UTC+2 is 2026-10-06 23:00 UTC → still 0.10: 0.002 + 0.02 + 0.001
            "0.023",
            {"input": "0.002", "cache_read": "0.02", "output": "0.001"},
            at=datetime(2026, 10, 7, 1, 0, tzinfo=timezone(timedelta(hours=2))),
            row_from="2026-02-05",
        ),
        id="sonnet-5-5-local-time-still-2026-10-06-in-utc",
    ),
    # --- web search $0.01 each; web fetch is tokens only ------------------------------------------
    pytest.param(
        Golden(
            "claude-opus-5-5",
            {
                "input_tokens": 0,
                "output_tokens": 0,
                "server_tool_use": {"web_search_requests": 3, "web_fetch_requests": 0},
            },
            # 3×0.01 = 0.03
            "0.03",
            {"web_search": "0.03"},
        ),
        id="web-search-alone-0.01-each",
    ),
    pytest.param(
        Golden(
            "claude-sonnet-5",
            {
                "input_tokens": 1000,
                "output_tokens": 500,
                "server_tool_use": {"web_search_requests": 5, "web_fetch_requests": 4},
            },
            # 1000×2/1e6 + 500×10/1e6 + 5×0.01 (+ 4 fetches × 0) = 0.002 + 0.005 + 0.05
            "0.057",
            {"input": "0.002", "output": "0.005", "web_search": "0.05"},
        ),
        id="web-search-with-tokens-web-fetch-free",
    ),
    pytest.param(
        Golden(
            "claude-opus-5-5",
            {
                "input_tokens": 1000,
                "output_tokens": 500,
                "server_tool_use": {"web_search_requests": 3, "web_fetch_requests": 0},
                "service_tier": "batch",
            },
            # ×0.5 each: 0.004→0.002; 0.01→0.005; 3×0.01=0.03→0.015
            "0.022",
            {"input": "0.002", "output": "0.005", "web_search": "0.015"},
            modifiers=("batch",),
        ),
        id="web-search-x-batch",
    ),
    # --- service tier, zero usage, large counts, thinking tokens ---------------------------------
    pytest.param(
        Golden(
            "claude-opus-5-5",
            {"input_tokens": 1000, "output_tokens": 500, "service_tier": "priority"},
            # priority is billed at standard rates: 0.004 + 0.01
            "0.014",
            {"input": "0.004", "output": "0.01"},
        ),
        id="service-tier-priority-standard-rates",
    ),
    pytest.param(
        Golden(
            "claude-haiku-4-5",
            {"input_tokens": 0, "output_tokens": 0},
            # 0×1/1e6 + 0×5/1e6 = 0
            "0",
            {},
        ),
        id="zero-usage-known-model-is-0",
    ),
    pytest.param(
        Golden(
            "claude-opus-5-5",
            {"input_tokens": 987_654_321, "output_tokens": 123_456_789},
            # 987654321×4/1e6 + 123456789×20/1e6 = 3950.617284 + 2469.13578
            "6419.753064",
            {"input": "3950.617284", "output": "2469.13578"},
        ),
        id="large-counts-exact",
    ),
    pytest.param(
        Golden(
            "claude-haiku-3-5",
            {
                "input_tokens": 987_654_321,
                "cache_creation_input_tokens": 123_456_789,
                "cache_read_input_tokens": 987_654_321,
                "output_tokens": 1,
            },
            # 987654321×0.8/1e6 + 123456789×0.8×1.25/1e6 + 987654321×0.8×0.10/1e6 + 1×4/1e6
            # = 790.1234568 + 123.456789 + 79.01234568 + 0.000004
            "992.59259548",
            {
                "input": "790.1234568",
                "cache_write_5m": "123.456789",
                "cache_read": "79.01234568",
                "output": "0.000004",
            },
            at=HAIKU_3_5_ERA,
        ),
        id="large-counts-with-cache-exact",
    ),
    pytest.param(
        Golden(
            "claude-opus-5-5",
            {"input_tokens": 1000, "output_tokens": 5000, "output_tokens_details": {"thinking_tokens": 4000}},
            # thinking is inside output_tokens: 1000×4/1e6 + 5000×20/1e6 = 0.004 + 0.1
            "0.104",
            {"input": "0.004", "output": "0.1"},
        ),
        id="thinking-tokens-billed-via-output-tokens-only",
    ),
]


@pytest.mark.parametrize("case", GOLDEN)
def test_golden_cost(case: Golden) -> None:
    # Given a model, the usage object the Claude API returned and the time of the request
    # When it is priced
    cost = price_usage(case.model, case.usage, case.at)

    # Then the total is the hand-computed exact decimal, printed without exponent or trailing zeros
    assert format_usd(cost.total_usd) == case.total
    assert cost.total_usd == Decimal(case.total)
    # And every component matches; components the case does not name are exactly 0
    expected = {c: Decimal(case.components.get(c.value, "0")) for c in CostComponent}
    assert dict(cost.components) == expected
    assert sum(cost.components.values(), Decimal(0)) == cost.total_usd
    # And the modifiers, the confirmation flag and the canonical model are reported
    assert cost.modifiers == case.modifiers
    assert cost.confirmed is case.confirmed
    assert cost.model == (case.canonical or case.model)
    if case.row_from is not None:
        assert cost.price_version.endswith(f":{cost.model}@{case.row_from}")


def test_golden_has_one_case_per_rule() -> None:
    # Given the golden table, Then it holds at least 30 cases with unique ids
    ids = [p.id for p in GOLDEN]
    assert len(ids) >= 30
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize(
    ("model", "usage", "message"),
    [
        pytest.param(
            "claude-opus-4-5",
            {"input_tokens": 1000, "output_tokens": 500, "inference_geo": "us"},
            "inference_geo 'us'",
            id="geo-us-rejected-opus-4-5",
        ),
        pytest.param(
            "claude-opus-4-5-20251101",
            {"input_tokens": 1000, "output_tokens": 500, "inference_geo": "us"},
            "inference_geo 'us'",
            id="geo-us-rejected-opus-4-5-dated-id",
        ),
        pytest.param(
            "claude-haiku-4-5",
            {"input_tokens": 1000, "output_tokens": 500, "inference_geo": "us"},
            "inference_geo 'us'",
            id="geo-us-rejected-haiku-4-5",
        ),
        pytest.param(
            "claude-sonnet-4-5",
            {"input_tokens": 1000, "output_tokens": 500, "inference_geo": "us"},
            "inference_geo 'us'",
            id="geo-us-rejected-sonnet-4-5",
        ),
        pytest.param(
            "claude-opus-4-7",
            {"input_tokens": 1000, "output_tokens": 500, "speed": "fast"},
            "no fast-mode price",
            id="fast-rejected-opus-4-7-has-no-fast-rates",
        ),
        pytest.param(
            "claude-haiku-5-5",
            {"input_tokens": 1000, "output_tokens": 500, "speed": "fast"},
            "no fast-mode price",
            id="fast-rejected-haiku-5-5-has-no-fast-rates",
        ),
        pytest.param(
            "claude-opus-5-5",
            {"input_tokens": 1000, "output_tokens": 500, "speed": "fast", "service_tier": "batch"},
            "not available in batches",
            id="fast-x-batch-rejected-opus-5-5",
        ),
        pytest.param(
            "claude-opus-4-8",
            {"input_tokens": 1000, "output_tokens": 500, "speed": "fast", "service_tier": "batch"},
            "not available in batches",
            id="fast-x-batch-rejected-opus-4-8",
        ),
    ],
)
def test_unpriceable_usage_is_rejected_never_priced(model: str, usage: dict[str, Any], message: str) -> None:
    # Given usage that the reference gives no price for
    # When it is priced, Then PricingError is raised (never a 0 or a default price)
    with pytest.raises(PricingError, match=message):
        price_usage(model, usage, NOW)


def test_sdk_pydantic_usage_prices_like_the_dict() -> None:
    # Given the same usage as an anthropic SDK object and as the raw API dict
    sdk_usage = Usage(
        input_tokens=1000,
        output_tokens=500,
        cache_creation_input_tokens=3000,
        cache_read_input_tokens=20000,
        cache_creation=CacheCreation(ephemeral_5m_input_tokens=1000, ephemeral_1h_input_tokens=2000),
        server_tool_use=ServerToolUsage(web_search_requests=2, web_fetch_requests=1),
        service_tier="standard",
        inference_geo="us",
        speed="standard",
        output_tokens_details=OutputTokensDetails(thinking_tokens=300),
    )
    dict_usage = {
        "input_tokens": 1000,
        "output_tokens": 500,
        "cache_creation_input_tokens": 3000,
        "cache_read_input_tokens": 20000,
        "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 2000},
        "server_tool_use": {"web_search_requests": 2, "web_fetch_requests": 1},
        "service_tier": "standard",
        "inference_geo": "us",
        "speed": "standard",
        "output_tokens_details": {"thinking_tokens": 300},
    }

    # When both are priced on claude-opus-5-5
    from_sdk = price_usage("claude-opus-5-5", sdk_usage, NOW)
    from_dict = price_usage("claude-opus-5-5", dict_usage, NOW)

    # Then they are the same cost, and it is the hand-computed one:
    # ×1.1 each: 1000×4/1e6=0.004→0.0044; 1000×4×1.25/1e6=0.005→0.0055; 2000×4×2/1e6=0.016→0.0176;
    # 20000×4×0.05/1e6=0.004→0.0044; 500×20/1e6=0.01→0.011; 2×0.01=0.02→0.022; sum 0.059×1.1
    assert from_sdk == from_dict
    assert format_usd(from_sdk.total_usd) == "0.0649"
    assert from_sdk.components[CostComponent.CACHE_WRITE_1H] == Decimal("0.0176")
    assert from_sdk.components[CostComponent.WEB_SEARCH] == Decimal("0.022")
    assert from_sdk.modifiers == ("inference_geo:us",)


def test_sdk_usage_with_only_required_fields_prices_like_the_dict() -> None:
    # Given an SDK Usage whose optional fields are all None
    sdk_usage = Usage(input_tokens=1000, output_tokens=500)

    # When priced, Then None fields count as 0 / defaults: 1000×4/1e6 + 500×20/1e6 = 0.014
    cost = price_usage("claude-opus-5-5", sdk_usage, NOW)
    assert cost == price_usage("claude-opus-5-5", {"input_tokens": 1000, "output_tokens": 500}, NOW)
    assert format_usd(cost.total_usd) == "0.014"
