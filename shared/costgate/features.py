"""Per-feature configuration: how a feature's requests are routed and prompt-cached.

A feature with no stored configuration gets `FeatureConfig(feature)`: routing only for `model: "auto"`
across the default tiers, the prompt-cache policy on with its TTL chosen from observed gaps. One
configuration per feature name, shared by every tenant (features are the operator's product features;
budgets are where tenants differ).
"""

from dataclasses import dataclass, field
from enum import StrEnum

from costgate.errors import ConfigurationError, UnknownModelError
from costgate.ledger import validate_tag
from costgate.pricing import default_price_book
from costgate.routing import RoutePolicy, Tier


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

    def __post_init__(self) -> None:
        validate_tag(self.feature, "feature")
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
