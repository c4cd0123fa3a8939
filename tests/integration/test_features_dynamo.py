"""DynamoFeatureStore against moto: the item's fields, the 30 s warm cache, invalid stored data. The port's
contract, which the in-memory fake must pass too, is in tests/contract/test_feature_store.py."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from costgate.cache.model import AnswerCacheMode
from costgate.dal.features import DynamoFeatureStore, FeatureConfigItem
from costgate.errors import ConfigurationError
from costgate.gateway.features import FeatureConfig, PromptCacheMode, PromptCacheTtl
from costgate.routing.router import DEFAULT_MODELS, RoutePolicy, Tier
from tests.fakes.clock import ManualClock

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(ledger_table: str) -> DynamoFeatureStore:
    return DynamoFeatureStore()


def tuned(feature: str = "support-bot", ceiling: Tier = Tier.MEDIUM) -> FeatureConfig:
    """A configuration with every field away from its default."""
    return FeatureConfig(
        feature,
        route=RoutePolicy(
            models={
                Tier.SIMPLE: "claude-haiku-4-5",
                Tier.MEDIUM: "claude-haiku-5-5",
                Tier.COMPLEX: "claude-sonnet-5-5",
            },
            floor=Tier.MEDIUM,
            ceiling=ceiling,
            override_explicit=True,
        ),
        default_model="claude-opus-5-5",
        prompt_cache=PromptCacheMode.OFF,
        prompt_cache_ttl=PromptCacheTtl.ONE_HOUR,
        answer_cache=AnswerCacheMode.EXACT,
        answer_cache_ttl_s=3600,
        semantic_threshold=Decimal("0.935"),
    )


def raw_item(feature: str, **overrides: Any) -> FeatureConfigItem:
    """An item as an older deployment (before the answer cache) might have stored it; valid unless overridden."""
    fields: dict[str, Any] = {
        "feature": feature,
        "default_model": None,
        "simple_model": DEFAULT_MODELS[Tier.SIMPLE],
        "medium_model": DEFAULT_MODELS[Tier.MEDIUM],
        "complex_model": DEFAULT_MODELS[Tier.COMPLEX],
        "floor": "simple",
        "ceiling": "complex",
        "override_explicit": False,
        "prompt_cache": "auto",
        "prompt_cache_ttl": "auto",
    } | overrides
    return FeatureConfigItem("FEATURECFG", feature, **fields)


# --- round trips ------------------------------------------------------------------------------------------


def test_a_configuration_round_trips_every_field(store: DynamoFeatureStore) -> None:
    # Given a configuration with every field set away from its default
    config = tuned()

    # When it is stored and read back
    store.put(config)

    # Then it is equal, field for field, and the item sits at its documented key with tiers by name
    assert store.get("support-bot") == config
    item = FeatureConfigItem.get("FEATURECFG", "support-bot")
    assert (item.simple_model, item.medium_model, item.complex_model) == (
        "claude-haiku-4-5",
        "claude-haiku-5-5",
        "claude-sonnet-5-5",
    )
    assert (item.floor, item.ceiling, item.override_explicit) == ("medium", "medium", True)
    assert (item.default_model, item.prompt_cache, item.prompt_cache_ttl) == ("claude-opus-5-5", "off", "1h")
    assert (item.answer_cache, item.answer_cache_ttl_s, item.semantic_threshold) == ("exact", 3600, Decimal("0.935"))
    assert isinstance(item.semantic_threshold, Decimal)


def test_defaults_round_trip_and_a_feature_without_configuration_is_none(store: DynamoFeatureStore) -> None:
    store.put(FeatureConfig("chat"))
    assert store.get("chat") == FeatureConfig("chat")
    # No default model; the answer cache's defaults stored as values, the threshold absent: the calibrated one
    item = FeatureConfigItem.get("FEATURECFG", "chat")
    assert (item.answer_cache, item.answer_cache_ttl_s) == ("semantic", 86_400)
    assert item.attribute_values.keys().isdisjoint({"default_model", "semantic_threshold"})
    assert store.get("search") is None


@pytest.mark.parametrize("mode", list(AnswerCacheMode))
def test_every_answer_cache_mode_and_the_ttl_bounds_round_trip(
    store: DynamoFeatureStore, mode: AnswerCacheMode
) -> None:
    # Given the shortest and the longest TTL, the threshold at its bounds
    shortest = FeatureConfig("chat", answer_cache=mode, answer_cache_ttl_s=60, semantic_threshold=Decimal("0.5"))
    longest = FeatureConfig(
        "search", answer_cache=mode, answer_cache_ttl_s=30 * 86_400, semantic_threshold=Decimal("0.999999")
    )

    # When they are stored and read back
    store.put(shortest)
    store.put(longest)

    # Then they are equal, the mode stored by its name
    assert store.list_configs() == [shortest, longest]
    assert FeatureConfigItem.get("FEATURECFG", "chat").answer_cache == mode.label


def test_an_item_from_before_the_answer_cache_gets_its_defaults(store: DynamoFeatureStore) -> None:
    # Given an item stored before the answer-cache fields existed
    raw_item("legacy", prompt_cache="off").save()
    stored = FeatureConfigItem.get("FEATURECFG", "legacy").attribute_values
    assert stored.keys().isdisjoint({"answer_cache", "answer_cache_ttl_s", "semantic_threshold"})

    # Then it reads as FeatureConfig's defaults: the semantic cache, 24 h, the calibrated threshold
    config = store.get("legacy")
    assert config == FeatureConfig("legacy", prompt_cache=PromptCacheMode.OFF)
    assert config is not None
    assert (config.answer_cache, config.answer_cache_ttl_s, config.semantic_threshold) == (
        AnswerCacheMode.SEMANTIC,
        86_400,
        None,
    )


# --- the warm cache ---------------------------------------------------------------------------------------


def test_get_is_cached_for_30_seconds_in_a_warm_container(ledger_table: str) -> None:
    # Given a warm API container that has read chat's configuration, and an operator's CLI (another store)
    clock = ManualClock()
    api = DynamoFeatureStore(clock=clock)
    operator = DynamoFeatureStore()
    operator.put(FeatureConfig("chat"))
    assert api.get("chat") == FeatureConfig("chat")

    # When the operator replaces it
    operator.put(tuned("chat"))

    # Then the container keeps the old one for up to 30 s, then reads the new one
    clock.at = NOW + timedelta(seconds=29)
    assert api.get("chat") == FeatureConfig("chat")
    clock.at = NOW + timedelta(seconds=30)
    assert api.get("chat") == tuned("chat")


def test_a_missing_configuration_is_cached_too(ledger_table: str) -> None:
    # Given a container that found no configuration for search
    clock = ManualClock()
    api = DynamoFeatureStore(clock=clock)
    assert api.get("search") is None

    # When the operator configures it
    DynamoFeatureStore().put(tuned("search"))

    # Then the container still answers None (no read per request) until 30 s have passed
    clock.at = NOW + timedelta(seconds=29, microseconds=999_999)
    assert api.get("search") is None
    clock.at = NOW + timedelta(seconds=30)
    assert api.get("search") == tuned("search")


def test_put_and_delete_invalidate_the_stores_own_cache(ledger_table: str) -> None:
    # Given a store (clock never moving) that has cached chat as unconfigured
    store = DynamoFeatureStore(clock=ManualClock())
    assert store.get("chat") is None

    # When that same store writes and deletes, it reads its own writes at once
    store.put(tuned("chat"))
    assert store.get("chat") == tuned("chat")
    assert store.delete("chat") is True
    assert store.get("chat") is None


# --- stored data that no longer validates -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"complex_model": "claude-gone-1"}, "maps tier complex to 'claude-gone-1', which has no price"),
        ({"default_model": "claude-gone-1"}, "default model 'claude-gone-1' has no price"),
        ({"floor": "huge"}, "'huge' is not a tier"),
        ({"floor": "complex", "ceiling": "simple"}, "floor complex is above its ceiling simple"),
        ({"prompt_cache": "always"}, "'always' is not a valid PromptCacheMode"),
        ({"prompt_cache_ttl": "24h"}, "'24h' is not a valid PromptCacheTtl"),
        ({"answer_cache": "always"}, "answer_cache must be one of off|exact|semantic, got 'always'"),
        ({"answer_cache_ttl_s": 59}, "answer cache TTL must be 60-2592000 s, got 59"),
        ({"answer_cache_ttl_s": 3600.5}, "answer cache TTL 3600.5 is not a whole number of seconds"),
        ({"semantic_threshold": Decimal("1")}, "semantic threshold must be a cosine in [0.5, 1), got 1"),
        ({"semantic_threshold": Decimal("0.25")}, "semantic threshold must be a cosine in [0.5, 1), got 0.25"),
    ],
)
def test_a_stored_configuration_that_no_longer_validates_raises_naming_the_feature(
    store: DynamoFeatureStore, overrides: dict[str, object], reason: str
) -> None:
    # Given a configuration stored before its model left the price book (or written by hand, wrongly)
    raw_item("legacy", **overrides).save()

    # When the gateway or the operator reads it
    # Then it is a configuration error naming the feature and the reason, never a silent default
    for read in (lambda: store.get("legacy"), store.list_configs):
        with pytest.raises(ConfigurationError) as caught:
            read()
        assert caught.value.message.startswith("feature 'legacy': its stored configuration is invalid (")
        assert reason in caught.value.message
        assert caught.value.message.count("feature 'legacy'") == 1


def test_an_invalid_configuration_is_not_cached_and_can_be_replaced_or_deleted(ledger_table: str) -> None:
    # Given an invalid stored configuration, read by a warm container whose clock does not move
    raw_item("legacy", simple_model="claude-gone-1").save()
    api = DynamoFeatureStore(clock=ManualClock())
    with pytest.raises(ConfigurationError):
        api.get("legacy")

    # When the operator replaces it
    operator = DynamoFeatureStore()
    operator.put(FeatureConfig("legacy"))

    # Then the container reads the fixed one at once: the error was not cached
    assert api.get("legacy") == FeatureConfig("legacy")

    # And an invalid one can be deleted without being read
    raw_item("legacy", simple_model="claude-gone-1").save()
    assert operator.delete("legacy") is True
    assert operator.list_configs() == []
