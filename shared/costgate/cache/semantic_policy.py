"""When the semantic cache may serve a stored answer: the calibrated thresholds per embedder and language.

A question is served another's answer when its cosine with it reaches the language's `threshold` and
the guards (`costgate.cache.guards`) find no material difference, assuming synonyms only for word pairs whose
similarity (the embedder's, on the two words alone) reaches the language's `word_threshold` (or, for
two words WordNet lists as synonyms, its `listed_word_threshold`); from the
`lexical_threshold` on, differing content words are excused (never numbers, dates, codes, negation,
roles or word order).

The shipped values live in `semantic_thresholds.json`, one entry per embedder id, written by
`costgate cache calibrate --defaults-file` (Korean picked on KorSTS dev, English on half of STS-B test;
see `costgate_local` calibration and the README). `default_policy(embedder)` reads them; an embedder
without an entry is an error, never a guessed threshold. A language without an entry of its own (not
Korean, not English) gets the strictest sentence threshold and no synonyms.
"""

import json
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from importlib import resources
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from costgate.cache.embedding import Embedder
from costgate.cache.guards import material_difference
from costgate.errors import ConfigurationError

__all__ = ["LanguagePolicy", "SemanticPolicy", "WordVectors", "default_policy", "shipped_policies"]

LANGUAGES: Final = ("ko", "en")
_THRESHOLD: Final = re.compile(r"0\.\d{3}|1\.000")
_MAX_WORD_VECTORS: Final = 4096


@dataclass(frozen=True)
class LanguagePolicy:
    threshold: Decimal  # the least cosine a semantic hit needs
    word_threshold: Decimal | None  # the least word similarity a synonym needs; None: no synonyms
    # From this cosine on, content words that differ are not material (numbers, dates, codes,
    # negation and roles still are); None: never.
    lexical_threshold: Decimal | None = None
    # The least word similarity of a synonym the lexicon lists (English: WordNet); None: the word
    # threshold for those too.
    listed_threshold: Decimal | None = None


class WordVectors:
    """The embedder's vector of single words (the guards' synonym judgement), kept for reuse.

    Thread-safe; keeps the most recent `max_words` words. `similarity(pairs)` is the cosine of each pair.
    """

    def __init__(self, embedder: Embedder, max_words: int = _MAX_WORD_VECTORS) -> None:
        self._embedder = embedder
        self._max_words = max_words
        self._vectors: OrderedDict[str, npt.NDArray[np.float32]] = OrderedDict()
        self._lock = threading.Lock()

    def similarity(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        words = list(dict.fromkeys(w for pair in pairs for w in pair))
        with self._lock:
            missing = [w for w in words if w not in self._vectors]
        found = dict(zip(missing, self._embedder.embed(missing), strict=True)) if missing else {}
        with self._lock:
            for word in words:
                vector = found.get(word)
                if vector is None:
                    vector = self._vectors[word]
                    self._vectors.move_to_end(word)
                found[word] = vector
                self._vectors[word] = vector
            while len(self._vectors) > self._max_words:
                self._vectors.popitem(last=False)
        return [float(np.dot(found[a], found[b])) for a, b in pairs]


class SemanticPolicy:
    """One embedder's thresholds by language, and the guards that go with them."""

    def __init__(self, embedder: Embedder, languages: Mapping[str, LanguagePolicy]) -> None:
        if not languages:
            raise ConfigurationError(f"no semantic-cache thresholds for embedder {embedder.embedder_id!r}")
        self._languages = dict(languages)
        self._strictest = LanguagePolicy(max(p.threshold for p in languages.values()), None)
        self._words = WordVectors(embedder)

    @classmethod
    def fixed(cls, embedder: Embedder, threshold: Decimal, word_threshold: Decimal | None = None) -> "SemanticPolicy":
        """The same thresholds for every language (tests, and deployments that set their own)."""
        return cls(embedder, {language: LanguagePolicy(threshold, word_threshold) for language in LANGUAGES})

    def for_language(self, language: str) -> LanguagePolicy:
        return self._languages.get(language, self._strictest)

    def threshold(self, language: str) -> Decimal:
        """The least cosine for a hit."""
        return self.for_language(language).threshold

    def difference(self, question: str, candidate: str, language: str, similarity: float) -> str | None:
        """None when the guards let `candidate`'s answer serve `question` (at this cosine), else the difference."""
        policy = self.for_language(language)
        word_threshold = policy.word_threshold
        listed = policy.listed_threshold
        lexical = policy.lexical_threshold
        return material_difference(
            question,
            candidate,
            word_similarity=self._words.similarity if word_threshold is not None or listed is not None else None,
            word_threshold=float(word_threshold) if word_threshold is not None else None,
            tolerate_words=lexical is not None and similarity >= float(lexical),
            listed_threshold=float(listed) if listed is not None else None,
        )


def default_policy(embedder: Embedder) -> SemanticPolicy:
    """The calibrated policy shipped for this embedder; ConfigurationError for any other embedder."""
    languages = shipped_policies().get(embedder.embedder_id)
    if languages is None:
        raise ConfigurationError(
            f"no calibrated semantic-cache threshold for embedder {embedder.embedder_id!r}: run `costgate cache "
            "calibrate` with it and configure the threshold, or use one of: " + ", ".join(sorted(shipped_policies()))
        )
    return SemanticPolicy(embedder, languages)


@cache
def shipped_policies() -> dict[str, dict[str, LanguagePolicy]]:
    """semantic_thresholds.json: per embedder id, per language, the two thresholds."""
    raw = json.loads(resources.files("costgate.cache").joinpath("semantic_thresholds.json").read_bytes())
    policies: dict[str, dict[str, LanguagePolicy]] = {}
    for embedder_id, entry in raw.items():
        languages = entry.get("languages") if isinstance(entry, dict) else None
        if not isinstance(languages, dict) or not languages:
            raise ConfigurationError(f"semantic_thresholds.json: {embedder_id}: no per-language thresholds")
        policies[embedder_id] = {
            language: LanguagePolicy(
                _required(embedder_id, language, values),
                _threshold(embedder_id, language, values, "word_threshold", optional=True),
                _threshold(embedder_id, language, values, "lexical_threshold", optional=True),
                _threshold(embedder_id, language, values, "listed_word_threshold", optional=True),
            )
            for language, values in languages.items()
        }
    return policies


def _required(embedder_id: str, language: str, values: Any) -> Decimal:
    threshold = _threshold(embedder_id, language, values, "threshold")
    if threshold is None:  # pragma: no cover - _threshold raises for a missing required value
        raise ConfigurationError(f"semantic_thresholds.json: {embedder_id}: {language}: no threshold")
    return threshold


def _threshold(embedder_id: str, language: str, values: Any, name: str, optional: bool = False) -> Decimal | None:
    value = values.get(name) if isinstance(values, dict) else None
    if value is None and optional:
        return None
    if not isinstance(value, str) or not _THRESHOLD.fullmatch(value):
        raise ConfigurationError(
            f'semantic_thresholds.json: {embedder_id}: {language}: {name} must be a string such as "0.960"'
        )
    return Decimal(value)
