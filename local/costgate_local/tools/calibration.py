"""Calibrating the semantic cache: labelled sentence pairs → a similarity threshold per embedder.

Reading of the labels (the cache's question): a pair scored ≥ 4.0 (of 5) is the same question and
should be served from the cache; ≤ 2.5 is a different question and must not be; pairs in between
are left out. A pair is *served* at threshold t when its cosine is ≥ t and, with guards, when
`guards.material_difference` finds nothing. Precision = served same pairs / served pairs; recall =
served same pairs / same pairs.

Picking a threshold (`pick_threshold`), on thresholds of three decimals: the lowest t such that at t
and at every higher threshold (where anything is served)
  - precision is ≥ the target, and
  - with guards, the similarity alone is right at least `min_similarity_precision` of the time.
The second condition exists because the guards see words, not structure ("a dog chases a cat" vs "a
cat chases a dog" has no lexical difference): on KorSTS dev the guards alone reach 100% precision at
any threshold, so the first condition would let the threshold fall to 0; the similarity must carry
most of the weight and the guards catch what it cannot see (설치 vs 삭제, 48213 vs 48231).

The shipped defaults live in `costgate/cache/semantic_thresholds.json`, written from `costgate cache calibrate`
over ../shared/data (KorSTS dev to pick; KorSTS test, STS-B test, KLUE dev and a Korean→English set
to report). `default_threshold(embedder_id)` reads them; an uncalibrated embedder is an error.
"""

import csv
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from costgate.cache.embedding import Embedder
from costgate.cache.guards import material_difference
from costgate.errors import ConfigurationError

SAME_AT_LEAST = 4.0
DIFFERENT_AT_MOST = 2.5
PICK_SET = "korsts-dev"
DEFAULT_TARGET_PRECISION = 0.99
DEFAULT_MIN_SIMILARITY_PRECISION = 0.90
_STEP = Decimal("0.001")
_BATCH = 64


@dataclass(frozen=True)
class LabelledPair:
    first: str
    second: str
    score: float

    @property
    def same(self) -> bool | None:
        """True: the same question; False: a different one; None: in between, left out."""
        if self.score >= SAME_AT_LEAST:
            return True
        if self.score <= DIFFERENT_AT_MOST:
            return False
        return None


@dataclass(frozen=True)
class PairSet:
    name: str
    pairs: tuple[LabelledPair, ...]
    # sha256 of the data file(s) the pairs were read from: the key of the embedding cache.
    digest: str


# --- loaders ------------------------------------------------------------------------------------------


def load_korsts(path: Path, name: str) -> PairSet:
    """KorSTS TSV: a header, then genre, filename, year, id, score, sentence1, sentence2 (quotes are text)."""
    text = _read_text(path)
    rows = list(csv.reader(text.splitlines(), delimiter="\t", quoting=csv.QUOTE_NONE))
    if not rows or rows[0][4:7] != ["score", "sentence1", "sentence2"]:
        raise ConfigurationError(f"{path}: not a KorSTS file (expected a header with score, sentence1, sentence2)")
    pairs = [_pair(path, number, row[5], row[6], row[4]) for number, row in enumerate(rows[1:], start=2) if row]
    return PairSet(name, tuple(pairs), _digest(text))


def load_stsb(path: Path, name: str) -> PairSet:
    """stsb-multi-mt CSV without a header: sentence1, sentence2, score."""
    text = _read_text(path)
    pairs = [
        _pair(path, number, row[0], row[1], row[2])
        for number, row in enumerate(csv.reader(text.splitlines()), start=1)
        if row
    ]
    return PairSet(name, tuple(pairs), _digest(text))


def load_klue(path: Path, name: str) -> PairSet:
    """KLUE-STS JSON: a list of {"sentence1", "sentence2", "labels": {"label": 0–5}}."""
    text = _read_text(path)
    try:
        items = json.loads(text)
        pairs = [
            _pair(path, n, item["sentence1"], item["sentence2"], item["labels"]["label"])
            for n, item in enumerate(items, start=1)
        ]
    except (ValueError, KeyError, TypeError) as error:
        raise ConfigurationError(f"{path}: not a KLUE-STS file ({type(error).__name__}: {error})") from None
    return PairSet(name, tuple(pairs), _digest(text))


def cross_lingual(korean: PairSet, english: PairSet, name: str) -> PairSet:
    """Row i of two translations of one set: the Korean first sentence against the English second one."""
    if len(korean.pairs) != len(english.pairs):
        raise ConfigurationError(f"{korean.name} and {english.name} differ in length: they are not one set")
    pairs = tuple(
        LabelledPair(ko.first, en.second, ko.score) for ko, en in zip(korean.pairs, english.pairs, strict=True)
    )
    return PairSet(name, pairs, _digest(f"{name}:{korean.digest}:{english.digest}"))


def load_shared_data(directory: Path) -> dict[str, PairSet]:
    """The labelled sets of ../shared/data (see its README), by name; the pick set comes first."""
    korsts_test = load_korsts(directory / "korsts" / "sts-test.tsv", "korsts-test")
    stsb_test = load_stsb(directory / "stsb-en" / "stsb-en-test.csv", "stsb-en-test")
    sets = [
        load_korsts(directory / "korsts" / "sts-dev.tsv", PICK_SET),
        korsts_test,
        stsb_test,
        load_klue(directory / "klue-sts" / "klue-sts-v1.1_dev.json", "klue-sts-dev"),
        cross_lingual(korsts_test, stsb_test, "ko-en-test"),
    ]
    return {pair_set.name: pair_set for pair_set in sets}


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigurationError(f"cannot read {path}: {error.strerror or error}") from None


def _pair(path: Path, number: int, first: Any, second: Any, score: Any) -> LabelledPair:
    try:
        value = float(score)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{path}: row {number}: score {score!r} is not a number") from None
    if not 0 <= value <= 5 or not isinstance(first, str) or not isinstance(second, str):
        raise ConfigurationError(f"{path}: row {number}: expected two sentences and a score from 0 to 5")
    return LabelledPair(first, second, value)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --- similarities and guard verdicts ------------------------------------------------------------------


def default_cache_dir() -> Path:
    return Path(tempfile.gettempdir()) / "costgate-calibration"


@dataclass
class EmbeddingCache:
    """Vectors by text for one embedder: in memory for a run, on disk per pair set (embedder id + data digest)."""

    embedder: Embedder
    directory: Path | None = field(default_factory=default_cache_dir)
    vectors: dict[str, npt.NDArray[np.float32]] = field(default_factory=dict)

    def similarities(self, pair_set: PairSet) -> npt.NDArray[np.float64]:
        """The cosine of each pair, embedding each distinct sentence once (and never again for this file)."""
        texts = list(dict.fromkeys(t for pair in pair_set.pairs for t in (pair.first, pair.second)))
        path = self._path(pair_set)
        if path is not None and path.exists():
            self._load(path, texts)
        missing = [t for t in texts if t not in self.vectors]
        for start in range(0, len(missing), _BATCH):
            batch = missing[start : start + _BATCH]
            self.vectors.update(zip(batch, self.embedder.embed(batch), strict=True))
        if path is not None and (missing or not path.exists()):
            self._save(path, texts)
        first = np.stack([self.vectors[p.first] for p in pair_set.pairs]) if pair_set.pairs else np.empty((0, 1))
        second = np.stack([self.vectors[p.second] for p in pair_set.pairs]) if pair_set.pairs else np.empty((0, 1))
        similarity: npt.NDArray[np.float64] = np.einsum("ij,ij->i", first.astype(np.float64), second.astype(np.float64))
        return similarity

    def _path(self, pair_set: PairSet) -> Path | None:
        if self.directory is None:
            return None
        safe_id = re.sub(r"[^A-Za-z0-9.-]+", "_", self.embedder.embedder_id)
        return self.directory / f"{safe_id}-{pair_set.digest[:20]}.npz"

    def _load(self, path: Path, texts: list[str]) -> None:
        try:
            with np.load(path, allow_pickle=False) as stored:
                if stored["texts"].tolist() == texts and stored["vectors"].shape == (
                    len(texts),
                    self.embedder.dimensions,
                ):
                    self.vectors.update(zip(texts, stored["vectors"].astype(np.float32), strict=True))
        except (OSError, ValueError, KeyError):
            pass  # a damaged or foreign cache file is recomputed and overwritten

    def _save(self, path: Path, texts: list[str]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".npz")
        os.close(handle)
        vectors = np.stack([self.vectors[t] for t in texts]) if texts else np.empty((0, self.embedder.dimensions))
        np.savez(temporary, texts=np.array(texts, dtype=str), vectors=vectors.astype(np.float32))
        os.replace(temporary, path)


@dataclass(frozen=True)
class ScoredSet:
    """The labelled pairs of one set (in-between pairs left out) with their cosine and guard verdict."""

    name: str
    similarity: npt.NDArray[np.float64]
    passes_guards: npt.NDArray[np.bool_]
    same: npt.NDArray[np.bool_]

    @classmethod
    def build(
        cls,
        pair_set: PairSet,
        similarity: npt.NDArray[np.float64],
        guard: Callable[[str, str], str | None] = material_difference,
    ) -> "ScoredSet":
        labelled = [(i, pair) for i, pair in enumerate(pair_set.pairs) if pair.same is not None]
        return cls(
            name=pair_set.name,
            similarity=np.array([similarity[i] for i, _ in labelled], dtype=np.float64),
            passes_guards=np.array([guard(p.first, p.second) is None for _, p in labelled], dtype=np.bool_),
            same=np.array([bool(p.same) for _, p in labelled], dtype=np.bool_),
        )

    @classmethod
    def of(
        cls, name: str, similarity: Sequence[float], same: Sequence[bool], passes_guards: Sequence[bool]
    ) -> "ScoredSet":
        return cls(
            name, np.asarray(similarity, np.float64), np.asarray(passes_guards, np.bool_), np.asarray(same, np.bool_)
        )


# --- measuring and picking ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Measurement:
    set_name: str
    threshold: Decimal
    guards: bool
    served: int
    served_same: int
    same: int
    different: int

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
            "guards": self.guards,
            "precision": _rounded(self.precision),
            "recall": _rounded(self.recall),
            "served": self.served,
            "served_same": self.served_same,
            "same": self.same,
            "different": self.different,
        }


def measure(scored: ScoredSet, threshold: Decimal, guards: bool) -> Measurement:
    served = scored.similarity >= float(threshold)
    if guards:
        served &= scored.passes_guards
    return Measurement(
        set_name=scored.name,
        threshold=threshold,
        guards=guards,
        served=int(served.sum()),
        served_same=int((served & scored.same).sum()),
        same=int(scored.same.sum()),
        different=int((~scored.same).sum()),
    )


def pick_threshold(
    scored: ScoredSet,
    target_precision: float,
    guards: bool,
    min_similarity_precision: float = DEFAULT_MIN_SIMILARITY_PRECISION,
) -> Decimal | None:
    """The lowest three-decimal threshold from which every threshold up to 1 meets the target (see the module).

    None when even 1.000 serves a different pair. Precision where nothing is served does not count.
    """
    picked: Decimal | None = None
    for step in range(1000, -1, -1):
        threshold = _STEP * step
        if not _meets(measure(scored, threshold, guards).precision, target_precision):
            break
        if guards and not _meets(measure(scored, threshold, False).precision, min_similarity_precision):
            break
        picked = threshold
    return picked


def _meets(precision: float | None, target: float) -> bool:
    return precision is None or precision >= target - 1e-12


@dataclass(frozen=True)
class Calibration:
    embedder_id: str
    pick_set: str
    target_precision: float
    min_similarity_precision: float
    threshold_with_guards: Decimal | None
    threshold_without_guards: Decimal | None
    # Per set: with guards at their threshold, similarity alone at that same threshold, and similarity
    # alone at its own threshold (what the guards add, both ways).
    with_guards: dict[str, Measurement]
    same_threshold_without_guards: dict[str, Measurement]
    without_guards: dict[str, Measurement]

    def as_json(self) -> dict[str, Any]:
        return {
            "embedder_id": self.embedder_id,
            "pick_set": self.pick_set,
            "target_precision": self.target_precision,
            "min_similarity_precision": self.min_similarity_precision,
            "with_guards": {
                "threshold": _text(self.threshold_with_guards),
                "sets": {name: m.as_json() for name, m in self.with_guards.items()},
            },
            "without_guards_same_threshold": {
                "threshold": _text(self.threshold_with_guards),
                "sets": {name: m.as_json() for name, m in self.same_threshold_without_guards.items()},
            },
            "without_guards": {
                "threshold": _text(self.threshold_without_guards),
                "sets": {name: m.as_json() for name, m in self.without_guards.items()},
            },
        }


def calibrate(
    scored_sets: Mapping[str, ScoredSet],
    embedder_id: str,
    pick_set: str = PICK_SET,
    target_precision: float = DEFAULT_TARGET_PRECISION,
    min_similarity_precision: float = DEFAULT_MIN_SIMILARITY_PRECISION,
) -> Calibration:
    """Pick both thresholds on `pick_set`, then measure every set at them."""
    if pick_set not in scored_sets:
        raise ConfigurationError(f"no pair set named {pick_set!r} to pick the threshold on")
    if not 0 < target_precision <= 1 or not 0 <= min_similarity_precision <= 1:
        raise ConfigurationError("precisions are fractions: 0 < target ≤ 1, 0 ≤ min similarity precision ≤ 1")
    picking = scored_sets[pick_set]
    guarded = pick_threshold(picking, target_precision, True, min_similarity_precision)
    unguarded = pick_threshold(picking, target_precision, False)

    def at(threshold: Decimal | None, guards: bool) -> dict[str, Measurement]:
        if threshold is None:
            return {}
        return {name: measure(scored, threshold, guards) for name, scored in scored_sets.items()}

    return Calibration(
        embedder_id=embedder_id,
        pick_set=pick_set,
        target_precision=target_precision,
        min_similarity_precision=min_similarity_precision,
        threshold_with_guards=guarded,
        threshold_without_guards=unguarded,
        with_guards=at(guarded, True),
        same_threshold_without_guards=at(guarded, False),
        without_guards=at(unguarded, False),
    )


def score_sets(
    pair_sets: Mapping[str, PairSet], embedder: Embedder, cache_dir: Path | None = None
) -> dict[str, ScoredSet]:
    """Embed (through the cache) and run the guards over every labelled pair of every set."""
    embeddings = EmbeddingCache(embedder, cache_dir)
    return {name: ScoredSet.build(pair_set, embeddings.similarities(pair_set)) for name, pair_set in pair_sets.items()}


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)
