"""FeatureStore's contract, for InMemoryFeatureStore and DynamoFeatureStore: round trips, listing by name,
replace and delete, invalid names refused, and reads up to 30 s stale."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

import pytest

from costgate.cache.model import AnswerCacheMode
from costgate.dal.features import DynamoFeatureStore
from costgate.errors import InvalidRequestError
from costgate.gateway.features import FeatureConfig, PromptCacheMode, PromptCacheTtl
from costgate.gateway.ports import FeatureStore
from costgate.routing.router import RoutePolicy, Tier
from tests.contract.conftest import FAKE
from tests.fakes.clock import NOW, ManualClock
from tests.fakes.gateway import InMemoryFeatureStore


@dataclass
class Features:
    """The store under test, and `container(clock)`: the store another container holds over the same data."""

    store: FeatureStore
    container: Callable[[ManualClock], FeatureStore]


@pytest.fixture
def features(table: str) -> Features:
    if table == FAKE:
        store = InMemoryFeatureStore()
        return Features(store, lambda clock: store)
    return Features(DynamoFeatureStore(), lambda clock: DynamoFeatureStore(clock=clock))


@pytest.fixture
def store(features: Features) -> FeatureStore:
    return features.store


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


def test_a_configuration_round_trips_every_field(store: FeatureStore) -> None:
    store.put(tuned())
    assert store.get("support-bot") == tuned()


def test_defaults_round_trip_and_a_feature_without_configuration_is_none(store: FeatureStore) -> None:
    store.put(FeatureConfig("chat"))
    assert store.get("chat") == FeatureConfig("chat")
    assert store.get("search") is None


@pytest.mark.parametrize("mode", list(AnswerCacheMode))
def test_every_answer_cache_mode_and_the_ttl_bounds_round_trip(store: FeatureStore, mode: AnswerCacheMode) -> None:
    # Given the shortest and the longest TTL, the threshold at its bounds
    shortest = FeatureConfig("chat", answer_cache=mode, answer_cache_ttl_s=60, semantic_threshold=Decimal("0.5"))
    longest = FeatureConfig(
        "search", answer_cache=mode, answer_cache_ttl_s=30 * 86_400, semantic_threshold=Decimal("0.999999")
    )
    # When they are stored and read back
    store.put(shortest)
    store.put(longest)
    # Then they are equal
    assert store.list_configs() == [shortest, longest]


def test_configurations_are_listed_by_name_replaced_and_deleted(store: FeatureStore) -> None:
    # Given three features, one stored twice
    store.put(FeatureConfig("search"))
    store.put(tuned("chat"))
    store.put(FeatureConfig("Billing", prompt_cache=PromptCacheMode.OFF))
    store.put(FeatureConfig("chat", prompt_cache_ttl=PromptCacheTtl.FIVE_MINUTES))

    # Then the list has the latest of each, by name (upper case sorts first)
    assert store.list_configs() == [
        FeatureConfig("Billing", prompt_cache=PromptCacheMode.OFF),
        FeatureConfig("chat", prompt_cache_ttl=PromptCacheTtl.FIVE_MINUTES),
        FeatureConfig("search"),
    ]

    # When one is deleted, twice
    assert store.delete("chat") is True
    assert store.delete("chat") is False

    # Then only the others remain
    assert [c.feature for c in store.list_configs()] == ["Billing", "search"]
    assert store.get("chat") is None


def test_an_invalid_feature_name_is_refused_before_any_read(store: FeatureStore) -> None:
    with pytest.raises(InvalidRequestError, match="feature 'chat#1' is invalid"):
        store.get("chat#1")
    with pytest.raises(InvalidRequestError, match="feature 'a b' is invalid"):
        store.delete("a b")


def test_the_fake_and_dynamo_agree_on_a_sequence(store: FeatureStore) -> None:
    store.put(FeatureConfig("search"))
    store.put(tuned("chat"))
    answers: list[object] = [store.get("chat"), store.get("nothing")]
    store.put(FeatureConfig("chat"))
    answers += [store.delete("search"), store.delete("search"), store.list_configs()]
    assert answers == [tuned("chat"), None, True, False, [FeatureConfig("chat")]]


def test_a_read_may_be_up_to_30_seconds_stale(features: Features) -> None:
    # Given a container that has read chat's configuration and found none for search
    clock = ManualClock()
    api = features.container(clock)
    features.store.put(FeatureConfig("chat"))
    assert api.get("chat") == FeatureConfig("chat")
    assert api.get("search") is None

    # When the operator (another store) replaces chat's and configures search
    features.store.put(tuned("chat"))
    features.store.put(tuned("search"))

    # Then before 30 s the container answers the old configuration or the new one; from 30 s on the new one
    clock.at = NOW + timedelta(seconds=29, microseconds=999_999)
    assert api.get("chat") in (FeatureConfig("chat"), tuned("chat"))
    assert api.get("search") in (None, tuned("search"))
    clock.at = NOW + timedelta(seconds=30)
    assert api.get("chat") == tuned("chat")
    assert api.get("search") == tuned("search")


def test_a_deleted_configuration_is_gone_within_30_seconds(features: Features) -> None:
    clock = ManualClock()
    api = features.container(clock)
    features.store.put(tuned("chat"))
    assert api.get("chat") == tuned("chat")
    assert features.store.delete("chat") is True
    clock.at = NOW + timedelta(seconds=30)
    assert api.get("chat") is None
