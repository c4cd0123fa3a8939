"""The cost engine: a model, a usage object and a time → the exact cost, per component.

    input          = input_tokens × in
    cache_write_5m = 5m writes × in × 1.25
    cache_write_1h = 1h writes × in × 2
    cache_read     = cache reads × in × the model's read multiplier
    output         = output_tokens × out
    web_search     = searches × $0.01
then every component × 0.5 for the batch tier and × the model's `inference_geo` multiplier (1.1 for
"us" on Claude 4.6+). `in`/`out` are the row's base rates, its fast rates when `speed` is "fast",
or a prompt band's rates when the whole prompt (input + cache writes + reads) is above the band.

All arithmetic runs in a context that traps inexact results: a cost is exact or it is an error.
"""

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Context, Decimal, Inexact, localcontext
from enum import StrEnum
from typing import Any

from costgate.errors import PricingError
from costgate.money import plain_decimal
from costgate.pricing.prices import MILLION, PriceBook, RateRow, default_price_book
from costgate.pricing.usage import TokenUsage, normalise_usage

_EXACT = Context(prec=60, traps=[Inexact])
# Values of `inference_geo` that carry no surcharge; any other must be priced by the model's row.
_NEUTRAL_GEOS = frozenset({None, "global", "not_available"})


class CostComponent(StrEnum):
    INPUT = "input"
    CACHE_WRITE_5M = "cache_write_5m"
    CACHE_WRITE_1H = "cache_write_1h"
    CACHE_READ = "cache_read"
    OUTPUT = "output"
    WEB_SEARCH = "web_search"


@dataclass(frozen=True)
class Cost:
    """An exact cost in USD: `total_usd` is the sum of `components`, nothing rounded."""

    model: str
    total_usd: Decimal
    components: Mapping[CostComponent, Decimal]
    price_version: str
    modifiers: tuple[str, ...]
    confirmed: bool


def price_usage(
    model: str, usage: TokenUsage | Mapping[str, Any] | Any, at: datetime, book: PriceBook | None = None
) -> Cost:
    """Price one response's usage. Raises UnknownModelError / PricingError / UsageError, never returns 0 by default."""
    book = book or default_price_book()
    tokens = usage if isinstance(usage, TokenUsage) else normalise_usage(usage)
    row = book.rates_at(model, at)
    in_rate, out_rate, modifiers, confirmed = _base_rates(row, tokens)

    tier = tokens.service_tier
    if tier not in book.service_tier_multipliers:
        raise PricingError(f"no price for service_tier {tier!r}")
    tier_multiplier = book.service_tier_multipliers[tier]
    geo_multiplier = Decimal(1)
    if tier == "batch":
        if tokens.speed == "fast":
            raise PricingError("fast mode is not available in batches; this usage cannot be priced")
        modifiers.append("batch")
    if tokens.inference_geo not in _NEUTRAL_GEOS:
        geo = row.inference_geo.get(tokens.inference_geo or "")
        if geo is None:
            raise PricingError(f"no price for inference_geo {tokens.inference_geo!r} on {row.model}")
        geo_multiplier = geo
        modifiers.append(f"inference_geo:{tokens.inference_geo}")

    with localcontext(_EXACT):
        per_in = in_rate / MILLION
        per_out = out_rate / MILLION
        multiplier = tier_multiplier * geo_multiplier
        raw = {
            CostComponent.INPUT: tokens.input_tokens * per_in,
            CostComponent.CACHE_WRITE_5M: tokens.cache_write_5m_tokens * per_in * book.cache_write_multipliers["5m"],
            CostComponent.CACHE_WRITE_1H: tokens.cache_write_1h_tokens * per_in * book.cache_write_multipliers["1h"],
            CostComponent.CACHE_READ: tokens.cache_read_tokens * per_in * row.cache_read_multiplier,
            CostComponent.OUTPUT: tokens.output_tokens * per_out,
            CostComponent.WEB_SEARCH: tokens.web_search_requests * book.web_search_usd_per_request,
        }
        components = {name: plain_decimal(value * multiplier) for name, value in raw.items()}
        total = plain_decimal(sum(components.values(), Decimal(0)))
    return Cost(
        model=row.model,
        total_usd=total,
        components=components,
        price_version=book.price_version(row),
        modifiers=tuple(modifiers),
        confirmed=confirmed,
    )


class Strategy(StrEnum):
    """The ways costgate lowers a bill; the ledger keeps what each one saved."""

    PROMPT_CACHE = "prompt_cache"
    BATCH = "batch"
    ROUTING = "routing"
    ANSWER_CACHE = "answer_cache"


@dataclass(frozen=True)
class Savings:
    """What a request would have cost with no optimisation, and how much each strategy took off."""

    baseline_usd: Decimal
    by_strategy: Mapping[Strategy, Decimal]


def measure_savings(
    model: str,
    usage: TokenUsage,
    cost: Cost,
    at: datetime,
    book: PriceBook | None = None,
    *,
    baseline_model: str | None = None,
) -> Savings:
    """Savings of each strategy, peeled off one at a time: prompt caching, the batch discount, routing.

        cost → the same tokens with no caching (PROMPT_CACHE) → at the standard tier (BATCH)
             → on `baseline_model`, the model a deployment without routing would have used (ROUTING)

    Each step re-prices the same token counts: what the baseline model would really have produced is
    unknowable, so routing is measured on the tokens this request actually used. A cache write costs
    more than input, so a request that only wrote to the cache has a negative prompt-cache saving, and
    a request routed above its baseline a negative routing saving: both show up as such.
    """
    uncached = usage.without_cache()
    uncached_usd = price_usage(model, uncached, at, book).total_usd
    by_strategy = {Strategy.PROMPT_CACHE: uncached_usd - cost.total_usd, Strategy.BATCH: Decimal(0)}
    unbatched, unbatched_usd = uncached, uncached_usd
    if usage.service_tier == "batch":
        unbatched = replace(uncached, service_tier="standard")
        unbatched_usd = price_usage(model, unbatched, at, book).total_usd
        by_strategy[Strategy.BATCH] = unbatched_usd - uncached_usd
    if baseline_model is not None:
        by_strategy[Strategy.ROUTING] = price_usage(baseline_model, unbatched, at, book).total_usd - unbatched_usd
    return Savings(baseline_usd=cost.total_usd + sum(by_strategy.values(), Decimal(0)), by_strategy=by_strategy)


def split_prompt_cache(
    model: str, usage: TokenUsage, cost: Cost, at: datetime, book: PriceBook | None = None
) -> tuple[Decimal, Decimal]:
    """(what the cache writes cost above plain input, what the cache reads cost below it).

    Each is measured by moving only those tokens to input, so the prompt size, and with it any prompt
    band, stays the same; their difference is the request's prompt-cache saving.
    """
    writes_as_input = replace(
        usage,
        input_tokens=usage.input_tokens + usage.cache_write_tokens,
        cache_write_5m_tokens=0,
        cache_write_1h_tokens=0,
    )
    reads_as_input = replace(usage, input_tokens=usage.input_tokens + usage.cache_read_tokens, cache_read_tokens=0)
    write_premium = cost.total_usd - price_usage(model, writes_as_input, at, book).total_usd
    read_saved = price_usage(model, reads_as_input, at, book).total_usd - cost.total_usd
    return write_premium, read_saved


def _base_rates(row: RateRow, tokens: TokenUsage) -> tuple[Decimal, Decimal, list[str], bool]:
    """(input rate, output rate, modifiers, confirmed) before tier and geo multipliers."""
    modifiers: list[str] = []
    in_rate, out_rate, confirmed = row.input, row.output, row.confirmed
    bands = [b for b in row.prompt_bands if tokens.prompt_tokens > b.above_prompt_tokens]
    if bands:
        band = bands[-1]
        in_rate, out_rate, confirmed = band.input, band.output, confirmed and band.confirmed
        modifiers.append(f"prompt_band:>{band.above_prompt_tokens}")
    if tokens.speed == "fast":
        if row.fast is None:
            raise PricingError(f"{row.model} has no fast-mode price; this usage cannot be priced")
        if bands:
            raise PricingError(
                f"{row.model} has no fast-mode price above {bands[-1].above_prompt_tokens} prompt tokens"
            )
        in_rate, out_rate = row.fast
        modifiers.append("speed:fast")
    return in_rate, out_rate, modifiers, confirmed
