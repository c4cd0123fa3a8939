"""The answer cache through the Gateway: exact and semantic hits, guards, scopes, modes, the ledger.

The fake embedder pins chosen questions to chosen vectors, so every similarity here is set by hand
(threshold 0.9 in this world); Haiku 5.5 is 0.10 / 0.50 per million tokens.
"""

import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pytest

from costgate.cache.answers import AnswerCache
from costgate.cache.model import AnswerCacheMode, CacheResult, StoredAnswer
from costgate.cache.semantic_policy import SemanticPolicy
from costgate.cache.vector_index import LshHasher
from costgate.errors import InvalidRequestError
from costgate.gateway.features import FeatureConfig
from costgate.gateway.keys import issue_key
from costgate.pricing.cost import Strategy
from tests.fakes.cache import FakeEmbedder
from tests.unit.gateway_world import NOW, World, make_world, message_json, reply

HAIKU = "claude-haiku-5-5"
# 1000×0.1e-6 + 200×0.5e-6 = 0.0001 + 0.0001
USAGE = {"input_tokens": 1000, "output_tokens": 200}
COST = "0.0002"


def ask(question: str, **extra: Any) -> bytes:
    body = {"model": HAIKU, "max_tokens": 256, "messages": [{"role": "user", "content": question}], **extra}
    return json.dumps(body, ensure_ascii=False).encode()


def answer(text: str = "Python is a programming language.", stop_reason: str = "end_turn") -> Any:
    message = json.loads(message_json(USAGE, HAIKU, text))
    message["stop_reason"] = stop_reason
    return reply(json.dumps(message).encode())


def at_angle(cosine: float, dimensions: int = 64) -> tuple[list[float], list[float]]:
    """Two unit vectors with exactly this cosine."""
    first = np.zeros(dimensions)
    first[0] = 1.0
    second = np.zeros(dimensions)
    second[0], second[1] = cosine, float(np.sqrt(1 - cosine**2))
    return first.tolist(), second.tolist()


def world_with(pairs: dict[str, list[float]], *replies: Any, **options: Any) -> World:
    return make_world(*(replies or (answer(),)), embedder=FakeEmbedder(vectors=pairs), **options)


def test_a_repeated_question_is_an_exact_hit_that_costs_nothing_and_saves_the_first_cost() -> None:
    world = make_world(answer())

    first = world.send(ask("How do I reset my password?"))
    second = world.send(ask("How do I reset my password"))

    assert len(world.upstream.sent) == 1
    assert first.headers["x-costgate-cache"] == "miss"
    assert second.headers["x-costgate-cache"] == "exact-hit"
    assert second.body == first.body
    assert second.headers["x-costgate-cost-usd"] == "0"
    assert second.headers["x-costgate-baseline-cost-usd"] == COST
    assert second.headers["x-costgate-savings-answer-cache-usd"] == COST
    hit = world.ledger.entries[second.headers["request-id"]]
    assert hit.cost.total_usd == 0
    assert hit.savings == {Strategy.ANSWER_CACHE: Decimal(COST)}
    assert hit.usage.input_tokens == hit.usage.output_tokens == 0


def test_a_close_paraphrase_is_a_semantic_hit() -> None:
    near, far = at_angle(0.95)
    world = world_with({"파이썬이 뭔가요": near, "파이썬이란": far})

    world.send(ask("파이썬이 뭔가요?"))
    hit = world.send(ask("파이썬이란?"))

    assert len(world.upstream.sent) == 1
    assert hit.headers["x-costgate-cache"] == "semantic-hit"
    assert hit.headers["x-costgate-savings-answer-cache-usd"] == COST


def test_below_the_threshold_is_a_miss() -> None:
    one, two = at_angle(0.89)
    world = world_with({"What is Python": one, "What is Rust": two})

    world.send(ask("What is Python?"))
    second = world.send(ask("What is Rust?"))

    assert len(world.upstream.sent) == 2
    assert second.headers["x-costgate-cache"] == "miss"


@pytest.mark.parametrize(
    ("stored", "asked"),
    [
        ("파이썬 삭제 방법", "파이썬 설치 방법"),
        ("Where is order 48213", "Where is order 48231"),
        ("What is the capital of Austria", "What is the capital of Australia"),
    ],
)
def test_guards_refuse_a_similar_question_that_differs_materially(stored: str, asked: str) -> None:
    # Given two questions the embedder puts almost on top of each other
    one, two = at_angle(0.99)
    world = world_with({stored: one, asked: two})

    world.send(ask(stored))
    second = world.send(ask(asked))

    # Then the second still goes to Claude
    assert len(world.upstream.sent) == 2
    assert second.headers["x-costgate-cache"] == "miss"


def test_nothing_is_served_across_tenants() -> None:
    # Given acme's answer stored, and a key of another tenant on the same gateway
    same, _ = at_angle(0.99)
    world = world_with({"What is Python": same})
    world.send(ask("What is Python?"))
    globex_key, _ = issue_key(world.keys, tenant="globex", feature=None, daily_budget_usd=None, now=NOW)

    # When globex asks the very same question
    response = world.gateway.create_message(world.request(ask("What is Python?"), x_api_key=globex_key))

    # Then neither the exact nor the semantic entry is served to it
    assert response.headers["x-costgate-cache"] == "miss"
    assert len(world.upstream.sent) == 2


def test_other_parameters_are_another_scope() -> None:
    same, _ = at_angle(0.99)
    world = world_with({"What is Python": same})
    world.send(ask("What is Python?"))

    second = world.send(ask("What is Python?", system="Answer like a pirate."))

    assert second.headers["x-costgate-cache"] == "miss"
    assert len(world.upstream.sent) == 2


def test_a_conversation_is_only_answered_exactly() -> None:
    body = {
        "model": HAIKU,
        "max_tokens": 64,
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "What is Python?"},
        ],
    }
    world = make_world(answer())
    world.send(json.dumps(body).encode())
    world.send(ask("What is Python?"))  # same question, but not the same request

    assert len(world.upstream.sent) == 2
    assert world.embedder.calls == [["What is Python"]]  # the conversation was never embedded


@pytest.mark.parametrize(("header", "expected"), [("off", "bypass"), ("exact", "miss")])
def test_the_header_lowers_the_mode(header: str, expected: str) -> None:
    near, far = at_angle(0.99)
    world = world_with({"What is Python": near, "Tell me about Python": far})
    world.send(ask("What is Python?"))

    second = world.send(ask("Tell me about Python?"), x_costgate_cache=header)

    assert second.headers["x-costgate-cache"] == expected
    assert len(world.upstream.sent) == 2


def test_a_feature_with_the_cache_off_never_stores_or_serves() -> None:
    config = FeatureConfig("raw", answer_cache=AnswerCacheMode.OFF)
    world = make_world(answer(), features=(config,))

    world.send(ask("What is Python?"), x_costgate_feature="raw")
    second = world.send(ask("What is Python?"), x_costgate_feature="raw")

    assert second.headers["x-costgate-cache"] == "bypass"
    assert len(world.upstream.sent) == 2
    assert world.answers.exact == {}


def test_an_unknown_cache_header_is_a_400_before_anything_is_spent() -> None:
    world = make_world(answer())
    with pytest.raises(InvalidRequestError):
        world.send(ask("What is Python?"), x_costgate_cache="maybe")
    assert world.upstream.sent == []


def test_an_answer_cut_at_max_tokens_is_stored_for_the_same_max_tokens_only() -> None:
    # max_tokens is part of the key: Claude would cut the same request at the same point again.
    world = make_world(answer(stop_reason="max_tokens"))

    world.send(ask("Write a long story"))
    second = world.send(ask("Write a long story"))
    longer = world.send(ask("Write a long story", max_tokens=1024))

    assert second.headers["x-costgate-cache"] == "exact-hit"
    assert longer.headers["x-costgate-cache"] == "miss"
    assert len(world.upstream.sent) == 2


def test_a_purged_entry_is_never_served_from_a_warm_container() -> None:
    near, far = at_angle(0.95)
    world = world_with({"What is Python": near, "Tell me about Python": far})
    world.send(ask("What is Python?"))

    # When the tenant's cache is purged (by the CLI, in the table) while this container stays warm
    assert world.answers.purge("acme") == 2  # the exact entry and the semantic one
    second = world.send(ask("Tell me about Python?"))

    assert second.headers["x-costgate-cache"] == "miss"
    assert len(world.upstream.sent) == 2


def test_a_feature_threshold_overrides_the_calibrated_one() -> None:
    near, far = at_angle(0.93)
    config = FeatureConfig("strict", semantic_threshold=Decimal("0.95"))
    world = world_with({"What is Python": near, "Tell me about Python": far}, features=(config,))

    world.send(ask("What is Python?"), x_costgate_feature="strict")
    second = world.send(ask("Tell me about Python?"), x_costgate_feature="strict")

    assert second.headers["x-costgate-cache"] == "miss"


def test_a_cold_container_finds_a_stored_entry_through_its_lsh_buckets() -> None:
    # Given an entry stored by one container
    near, far = at_angle(0.97)
    world = world_with({"What is Python": near, "Tell me about Python": far})
    world.send(ask("What is Python?"))

    # When another container, with nothing in memory, gets a paraphrase
    cold = AnswerCache(
        world.answers,
        embedder=lambda: world.embedder,
        hasher_for=lambda e: LshHasher(e.dimensions, tables=4, bits=8, seed=7),
        policy_for=lambda e: SemanticPolicy.fixed(e, Decimal("0.9")),
    )
    found = cold.lookup(
        tenant="acme",
        model=HAIKU,
        body=json.loads(ask("Tell me about Python?")),
        mode=AnswerCacheMode.SEMANTIC,
        threshold=None,
        now=NOW,
    )

    # Then it reads the entry's buckets from the store and serves it
    assert found.result is CacheResult.SEMANTIC_HIT
    assert found.answer is not None
    assert found.answer.question == "What is Python"


def test_a_warm_container_whose_near_questions_are_all_turned_away_still_finds_another_containers_answer() -> None:
    # Given three questions: the one asked, a different one (another order number) the embedder puts nearest to
    # it, and a true paraphrase of it a little further away
    asked = [1.0, 0.0, 0.0] + [0.0] * 61
    different = [0.995, float(np.sqrt(1 - 0.995**2)), 0.0] + [0.0] * 61
    paraphrase = [0.98, 0.0, float(np.sqrt(1 - 0.98**2))] + [0.0] * 61
    world = world_with(
        {"Where is the order 48213": asked, "Where is order 48231": different, "Where is order 48213": paraphrase}
    )

    def container() -> AnswerCache:
        return AnswerCache(
            world.answers,
            embedder=lambda: world.embedder,
            hasher_for=lambda e: LshHasher(e.dimensions, tables=4, bits=8, seed=7),
            policy_for=lambda e: SemanticPolicy.fixed(e, Decimal("0.9")),
        )

    def look_up(cache: AnswerCache, question: str) -> Any:
        body = json.loads(ask(question))
        return cache.lookup(
            tenant="acme", model=HAIKU, body=body, mode=AnswerCacheMode.SEMANTIC, threshold=None, now=NOW
        )

    # and a warm container that answered the different question (so it holds it in memory), then another
    # container that stored the paraphrase's answer after that
    warm, other = container(), container()
    first = look_up(warm, "Where is order 48231?")
    warm.remember(first, tenant="acme", feature="default", answer=stored_answer("Where is order 48231"))
    second = look_up(other, "Where is order 48213?")
    assert second.result is CacheResult.MISS  # the guards turn the other order number away
    other.remember(second, tenant="acme", feature="default", answer=stored_answer("Where is order 48213"))

    # When the warm container is asked, its nearest in memory is turned away by the guards
    found = look_up(warm, "Where is the order 48213?")

    # Then it reads the table's candidates before a miss, and serves the paraphrase's answer
    assert found.result is CacheResult.SEMANTIC_HIT, found.detail
    assert found.answer is not None
    assert found.answer.question == "Where is order 48213"


def stored_answer(question: str) -> StoredAnswer:
    return StoredAnswer(b"{}", "application/json", HAIKU, Decimal(COST), question, NOW, NOW + timedelta(days=1))
