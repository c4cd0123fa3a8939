"""The models the simulator serves: exactly those costgate's price book knows, with their caching facts.

Minimum cacheable prompt: the price book's `cache_minimum_tokens` (costgate/pricing/prices.json, the one
source of that fact), which follows the reference (shared/reference/anthropic-api.md):
"512 tokens (Opus 5/5.5, Sonnet 5.5, Haiku 5.5, Fable 5/5.1, Mythos 5/5.1); 1,024 (Opus 4.8,
Sonnet 5, Sonnet 4.x); 2,048 (Opus 4.7); 4,096 (Opus 4.5/4.6, Haiku 4.5). Below the minimum
nothing is cached and no error is returned."
The reference does not list Fable 5.2 (released 2026-11-09) or the retired Opus 4/4.1 and Haiku 3.5:
the price book gives Fable 5.2 its family's 512, Opus 4/4.1 1,024 and Haiku 3.5 2,048 (Anthropic's
published values while those models were served).

"Claude 4.7+ models use a newer tokenizer (about 30% more tokens for the same text)."
"""

from dataclasses import dataclass

from costgate.errors import UnknownModelError
from costgate.pricing.model_limits import limits_for
from costgate.pricing.prices import default_price_book
from costgate_local.simulator.errors import ApiError, not_found
from costgate_local.simulator.tokens import Tokenizer


@dataclass(frozen=True)
class ModelProfile:
    canonical: str
    min_cacheable_tokens: int
    tokenizer: Tokenizer
    fast_mode: bool
    inference_geos: frozenset[str]
    max_output_tokens: int  # from costgate/pricing/model_limits.json


_NEW = Tokenizer.CLAUDE_47
_OLD = Tokenizer.BASE

# canonical id → tokenizer; the minimum cacheable prompt comes from the price book
MODEL_TOKENIZERS: dict[str, Tokenizer] = {
    "claude-fable-5-2": _NEW,
    "claude-fable-5-1": _NEW,
    "claude-mythos-5-1": _NEW,
    "claude-fable-5": _NEW,
    "claude-mythos-5": _NEW,
    "claude-opus-5-5": _NEW,
    "claude-opus-5": _NEW,
    "claude-sonnet-5-5": _NEW,
    "claude-haiku-5-5": _NEW,
    "claude-opus-4-8": _NEW,
    "claude-sonnet-5": _NEW,
    "claude-opus-4-7": _NEW,
    "claude-sonnet-4-6": _OLD,
    "claude-sonnet-4-5": _OLD,
    "claude-sonnet-4": _OLD,
    "claude-opus-4-6": _OLD,
    "claude-opus-4-5": _OLD,
    "claude-haiku-4-5": _OLD,
    "claude-opus-4-1": _OLD,
    "claude-opus-4": _OLD,
    "claude-haiku-3-5": _OLD,
}


def resolve_model(model: str) -> ModelProfile:
    """The profile for a model id, dated id or alias the price book knows; a 404 like the API's otherwise.

    Fast mode and data residency follow the price book: a model with fast rates serves `speed: "fast"`,
    and one with an `inference_geo` rate serves that geography.
    """
    book = default_price_book()
    try:
        canonical = book.resolve(model)
    except UnknownModelError:
        raise not_found(f"model: {model}") from None
    tokenizer = MODEL_TOKENIZERS.get(canonical)
    if tokenizer is None:
        # The price book gained a model this table lacks: fail loudly rather than guess its tokenizer.
        raise ApiError(500, "api_error", f"the simulator has no tokenizer for {canonical}; add it to MODEL_TOKENIZERS")
    latest = book.rows[canonical][-1]
    try:
        max_output_tokens = limits_for(canonical).max_output_tokens
    except LookupError as error:
        raise ApiError(500, "api_error", f"the simulator has no output limit for {canonical}: {error}") from None
    return ModelProfile(
        canonical=canonical,
        min_cacheable_tokens=book.cache_minimum_tokens(canonical),
        tokenizer=tokenizer,
        fast_mode=latest.fast is not None,
        inference_geos=frozenset({"global", *latest.inference_geo}),
        max_output_tokens=max_output_tokens,
    )
