"""Per-feature configuration in DynamoDB: one partition, one item per feature, cached 30 s per container.

The API reads a feature's configuration on every request, so `get` answers from a per-store cache
(one store per warm container) for up to 30 s, a missing configuration included. A stored
configuration that no longer validates (a model since removed from the price book, say) raises
ConfigurationError naming the feature: the gateway must not quietly route that feature elsewhere.
"""

import threading
from datetime import datetime, timedelta

from pynamodb.attributes import BooleanAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import DeleteError, DoesNotExist

from costgate.accounting.ledger import validate_tag
from costgate.cache.model import AnswerCacheMode
from costgate.clock import Clock, SystemClock
from costgate.dal.table import CostgateItem, DecimalAttribute
from costgate.errors import ConfigurationError, CostgateError
from costgate.gateway.features import FeatureConfig, PromptCacheMode, PromptCacheTtl
from costgate.routing.router import RoutePolicy, Tier

CONFIG_TTL = timedelta(seconds=30)
_CONFIG_PK = "FEATURECFG"


class FeatureConfigItem(CostgateItem, discriminator="feature_config"):
    """A feature's routing, prompt-cache and answer-cache configuration.  PK: FEATURECFG  SK: <feature>

    One partition for every feature: listing them is one Query, sorted by feature name. Tiers are
    stored by name (simple|medium|complex); default_model is absent when the baseline is the medium tier.
    answer_cache is off|exact|semantic; semantic_threshold is absent for the embedder's calibrated one.
    Items written before the answer cache existed have no answer_cache* fields: FeatureConfig's defaults.
    """

    feature = UnicodeAttribute()
    default_model = UnicodeAttribute(null=True)
    simple_model = UnicodeAttribute()
    medium_model = UnicodeAttribute()
    complex_model = UnicodeAttribute()
    floor = UnicodeAttribute()
    ceiling = UnicodeAttribute()
    override_explicit = BooleanAttribute()
    prompt_cache = UnicodeAttribute()
    prompt_cache_ttl = UnicodeAttribute()
    answer_cache = UnicodeAttribute(null=True)
    answer_cache_ttl_s = NumberAttribute(null=True)
    semantic_threshold = DecimalAttribute(null=True)


class DynamoFeatureStore:
    """FeatureStore over the single table. `get` is cached per store (one per warm container) for 30 s."""

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()
        self._cache: dict[str, tuple[datetime, FeatureConfig | None]] = {}
        self._cache_lock = threading.Lock()

    def get(self, feature: str) -> FeatureConfig | None:
        now = self._clock.now()
        with self._cache_lock:
            cached = self._cache.get(feature)
        if cached is not None and cached[0] <= now < cached[0] + CONFIG_TTL:
            return cached[1]
        try:
            item = FeatureConfigItem.get(_CONFIG_PK, validate_tag(feature, "feature"))
        except DoesNotExist:
            config = None
        else:
            config = _to_config(item)  # an invalid configuration raises, and is not cached
        with self._cache_lock:
            self._cache[feature] = (now, config)
        return config

    def put(self, config: FeatureConfig) -> None:
        route = config.route
        FeatureConfigItem(
            _CONFIG_PK,
            config.feature,
            feature=config.feature,
            default_model=config.default_model,
            simple_model=route.models[Tier.SIMPLE],
            medium_model=route.models[Tier.MEDIUM],
            complex_model=route.models[Tier.COMPLEX],
            floor=route.floor.name.lower(),
            ceiling=route.ceiling.name.lower(),
            override_explicit=route.override_explicit,
            prompt_cache=config.prompt_cache.value,
            prompt_cache_ttl=config.prompt_cache_ttl.value,
            answer_cache=config.answer_cache.label,
            answer_cache_ttl_s=config.answer_cache_ttl_s,
            semantic_threshold=config.semantic_threshold,
        ).save()
        self._forget(config.feature)

    def delete(self, feature: str) -> bool:
        item = FeatureConfigItem(_CONFIG_PK, validate_tag(feature, "feature"))
        try:
            item.delete(condition=FeatureConfigItem.pk.exists())
        except DeleteError as error:
            if error.cause_response_code != "ConditionalCheckFailedException":
                raise
            return False
        finally:
            self._forget(feature)
        return True

    def list_configs(self) -> list[FeatureConfig]:
        # Feature names are ASCII, so the sort key's byte order is their order as strings.
        return [_to_config(item) for item in FeatureConfigItem.query(_CONFIG_PK, consistent_read=True)]

    def _forget(self, feature: str) -> None:
        with self._cache_lock:
            self._cache.pop(feature, None)


def _to_config(item: FeatureConfigItem) -> FeatureConfig:
    feature = item.sk
    try:
        route = RoutePolicy(
            models={
                Tier.SIMPLE: item.simple_model,
                Tier.MEDIUM: item.medium_model,
                Tier.COMPLEX: item.complex_model,
            },
            floor=_tier(item.floor),
            ceiling=_tier(item.ceiling),
            override_explicit=item.override_explicit,
        )
        return FeatureConfig(
            feature,
            route=route,
            default_model=item.default_model,
            prompt_cache=PromptCacheMode(item.prompt_cache),
            prompt_cache_ttl=PromptCacheTtl(item.prompt_cache_ttl),
            # Absent (an item from before the answer cache): FeatureConfig's defaults, its class attributes.
            answer_cache=FeatureConfig.answer_cache
            if item.answer_cache is None
            else AnswerCacheMode.parse(item.answer_cache, "answer_cache"),
            answer_cache_ttl_s=_seconds(item.answer_cache_ttl_s),
            semantic_threshold=item.semantic_threshold,
        )
    except (CostgateError, ValueError) as error:
        reason = error.message if isinstance(error, CostgateError) else str(error)
        reason = reason.removeprefix(f"feature {feature!r}: ")
        raise ConfigurationError(
            f"feature {feature!r}: its stored configuration is invalid ({reason}); "
            f"replace it with `costgate features set {feature} …` or delete it"
        ) from error


def _seconds(stored: float | None) -> int:
    if stored is None:
        return FeatureConfig.answer_cache_ttl_s
    if not isinstance(stored, int):
        raise ValueError(f"answer cache TTL {stored!r} is not a whole number of seconds")
    return stored


def _tier(name: str) -> Tier:
    try:
        return Tier[name.upper()]
    except KeyError:
        raise ValueError(f"{name!r} is not a tier (simple, medium or complex)") from None
