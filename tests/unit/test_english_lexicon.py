"""The guards' English lexicon (WordNet 3.0): synonyms and antonyms of a substituted word, and how it is built."""

import gzip
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources

import pytest

from costgate.cache.english_lexicon import ANTONYM, LEXICON_FILE, SYNONYM, parse, relation
from costgate.cache.guards import WordSimilarity, compare, material_difference
from costgate.errors import ConfigurationError
from costgate_local.tools.calibration_lexicon import lexicon_text


def words(*lemmas: str) -> frozenset[str]:
    return frozenset(lemmas)


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        ("fix", "repair", SYNONYM),
        ("use", "apply", SYNONYM),
        ("package", "parcel", SYNONYM),
        ("information", "data", SYNONYM),
        ("on", "off", ANTONYM),
        ("enable", "disable", ANTONYM),
        ("buy", "sell", ANTONYM),
        ("increase", "decrease", ANTONYM),
        ("dog", "cat", None),
        ("japan", "china", None),
        ("shirt", "pant", None),
    ],
)
def test_the_shipped_lexicon_knows_synonyms_and_antonyms(first: str, second: str, expected: str | None) -> None:
    assert relation(words(first), words(second)) == expected
    assert relation(words(second), words(first)) == expected


def test_any_lemma_of_a_word_counts() -> None:
    # "repairing" is not a WordNet lemma; its lemma "repair" is.
    assert relation(words("fixing", "fix"), words("repairing", "repair")) == SYNONYM
    assert relation(words("fixing"), words("repairing")) is None


def test_the_shipped_file_parses_into_synsets_and_antonym_pairs() -> None:
    text = gzip.decompress(resources.files("costgate.cache").joinpath(LEXICON_FILE).read_bytes()).decode()
    synsets, antonyms = parse(text)

    assert len(synsets) > 30_000
    assert len(antonyms) > 6_000  # both orders
    assert ("off", "on") in antonyms
    assert ("on", "off") in antonyms


def test_a_file_without_its_antonym_section_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="#antonyms"):
        parse("fix repair\n")


# --- the guards with the lexicon ---------------------------------------------------------------------


def similarity_of(value: float) -> WordSimilarity:
    """Every pair of words as similar as `value` to the embedder."""

    def similarity(pairs: Sequence[tuple[str, str]]) -> list[float]:
        return [value] * len(pairs)

    return similarity


def test_a_listed_synonym_passes_at_the_listed_threshold_an_unlisted_word_does_not() -> None:
    # Both substitutions score 0.88 to the embedder; only fix/repair is a WordNet synonym.
    listed = compare("How do I fix a flat tire?", "How do I repair a flat tire?", similarity_of(0.88))
    unlisted = compare("Recommend a good dog food", "Recommend a good cat food", similarity_of(0.88))

    assert listed.weakest_listed == pytest.approx(0.88)
    assert listed.weakest is None
    assert listed.at(0.93, listed_threshold=0.88) is None
    assert listed.at(0.93, listed_threshold=0.89) is not None
    assert listed.at(0.88) is None  # the word threshold alone lets it pass too
    assert unlisted.at(0.93, listed_threshold=0.80) == "content words differ: dog vs cat"


def test_antonyms_never_pass_and_listed_words_spelled_alike_do() -> None:
    # on/off and enable/disable are WordNet antonyms: never synonyms, however similar the embedder finds them.
    assert material_difference("How do I turn on Bluetooth?", "How do I turn off Bluetooth?", similarity_of(0.99), 0.9)
    assert material_difference("How do I enable alerts?", "How do I disable alerts?", similarity_of(0.99), 0.9)
    # package/parcel are spelled alike enough to pass for two names, but WordNet lists them as synonyms.
    parcel = material_difference("When will my package arrive?", "When will my parcel arrive?", similarity_of(0.9), 0.9)
    assert parcel is None
    # Korean words are never looked up (no Korean lexicon ships on PyPI).
    korean = compare("고장 난 폰을 고치다", "고장 난 폰을 수리하다", similarity_of(0.88))
    assert korean.weakest_listed is None


# --- building the table -------------------------------------------------------------------------------


@dataclass
class FakeLemma:
    text: str
    opposite: list["FakeLemma"] = field(default_factory=list)

    def name(self) -> str:
        return self.text

    def antonyms(self) -> list["FakeLemma"]:
        return self.opposite


@dataclass
class FakeSynset:
    members: list[FakeLemma]

    def lemmas(self) -> list[FakeLemma]:
        return self.members


class FakeWordNet:
    def __init__(self, synsets: list[FakeSynset]) -> None:
        self.synsets = synsets

    def all_synsets(self) -> list[FakeSynset]:
        return self.synsets


def test_the_table_keeps_synsets_of_two_single_words_and_antonym_pairs_sorted() -> None:
    on, off = FakeLemma("On"), FakeLemma("off")
    on.opposite, off.opposite = [off], [on]
    wordnet = FakeWordNet(
        [
            FakeSynset([FakeLemma("repair"), FakeLemma("fix"), FakeLemma("mend"), FakeLemma("bushel")]),
            FakeSynset([FakeLemma("set_up"), FakeLemma("install")]),  # one single word: no synonym to give
            FakeSynset([on]),
            FakeSynset([off]),
            FakeSynset([FakeLemma("fix"), FakeLemma("repair"), FakeLemma("bushel"), FakeLemma("mend")]),
            FakeSynset([FakeLemma("Cancel"), FakeLemma("call_off"), FakeLemma("scrub")]),
        ]
    )

    text = lexicon_text(wordnet)

    assert text == "bushel fix mend repair\ncancel scrub\n#antonyms\noff on\n"
    synsets, antonyms = parse(text)
    assert synsets["fix"] == synsets["mend"] == frozenset({0})
    assert antonyms == {("off", "on"), ("on", "off")}
