"""Per-feature configuration: how a feature's requests are routed, prompt-cached and answer-cached.

A feature with no stored configuration gets `FeatureConfig(feature)`: routing only for `model: "auto"`
across the default tiers, the prompt-cache policy on with its TTL chosen from observed gaps, the
semantic answer cache on (for the requests it is safe for) with a 24 h TTL and the calibrated
threshold of the deployment's embedder. One
configuration per feature name, shared by every tenant (features are the operator's product features;
budgets are where tenants differ).
"""

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from costgate.accounting.ledger import validate_tag
from costgate.cache.model import AnswerCacheMode
from costgate.errors import ConfigurationError, UnknownModelError
from costgate.pricing.prices import default_price_book
from costgate.routing.router import RoutePolicy, Tier

DEFAULT_ANSWER_TTL_S = 24 * 3600
MIN_ANSWER_TTL_S = 60
MAX_ANSWER_TTL_S = 30 * 24 * 3600


class PromptCacheMode(StrEnum):
    AUTO = "auto"  # add breakpoints to requests that set no cache_control
    OFF = "off"  # never touch a request's caching


class PromptCacheTtl(StrEnum):
    AUTO = "auto"  # chosen from the feature's observed request gaps (prompt_cache.choose_ttl)
    FIVE_MINUTES = "5m"
    ONE_HOUR = "1h"


@dataclass(frozen=True)
class FeatureConfig:
    feature: str
    route: RoutePolicy = field(default_factory=RoutePolicy)
    # The model a deployment without routing would send this feature's `auto` requests to: the
    # baseline a routed request's saving is measured against. None means the policy's medium tier.
    default_model: str | None = None
    prompt_cache: PromptCacheMode = PromptCacheMode.AUTO
    prompt_cache_ttl: PromptCacheTtl = PromptCacheTtl.AUTO
    answer_cache: AnswerCacheMode = AnswerCacheMode.SEMANTIC
    answer_cache_ttl_s: int = DEFAULT_ANSWER_TTL_S
    # None: the threshold calibrated for the deployment's embedder (cache/semantic_thresholds.json).
    semantic_threshold: Decimal | None = None

    def __post_init__(self) -> None:
        validate_tag(self.feature, "feature")
        if not MIN_ANSWER_TTL_S <= self.answer_cache_ttl_s <= MAX_ANSWER_TTL_S:
            raise ConfigurationError(
                f"feature {self.feature!r}: answer cache TTL must be {MIN_ANSWER_TTL_S}-{MAX_ANSWER_TTL_S} s,"
                f" got {self.answer_cache_ttl_s}"
            )
        if self.semantic_threshold is not None and not Decimal("0.5") <= self.semantic_threshold < 1:
            raise ConfigurationError(
                f"feature {self.feature!r}: semantic threshold must be a cosine in [0.5, 1),"
                f" got {self.semantic_threshold}"
            )
        if self.default_model is not None:
            try:
                default_price_book().resolve(self.default_model)
            except UnknownModelError as exc:
                raise ConfigurationError(
                    f"feature {self.feature!r}: default model {self.default_model!r} has no price"
                ) from exc

    @property
    def baseline_model(self) -> str:
        """The model an `auto` request of this feature is measured against."""
        return self.default_model or self.route.models[Tier.MEDIUM]
