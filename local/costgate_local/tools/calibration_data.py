"""The labelled sentence pairs calibration reads: KorSTS, STS-B and KLUE-STS from ../shared/data, and the
hand-written adversarial pairs in tests/data/adversarial.

A pair scored >= SAME_AT_LEAST (of 5) is the same question, <= DIFFERENT_AT_MOST a different one; in between
it is left out.
"""

import csv
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from costgate.errors import ConfigurationError

SAME_AT_LEAST = 4.0
DIFFERENT_AT_MOST = 2.5
# Per language, the set the thresholds are picked on (../shared/data has no English dev set: STS-B test is halved).
PICK_SETS = {"ko": "korsts-dev", "en": "stsb-en-dev"}


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
    language: str = "ko"
    # The digest of the file the pairs come from, when they are part of it (`halves`): its embeddings are reused.
    file_digest: str | None = None


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


def halves(pair_set: PairSet, dev_name: str, test_name: str) -> tuple[PairSet, PairSet]:
    """Rows 0, 2, 4... to pick on and rows 1, 3, 5... to report: one labelled file as a dev and a test set."""
    source = pair_set.file_digest or pair_set.digest
    dev = PairSet(dev_name, pair_set.pairs[0::2], _digest(f"{dev_name}:{source}"), pair_set.language, source)
    test = PairSet(test_name, pair_set.pairs[1::2], _digest(f"{test_name}:{source}"), pair_set.language, source)
    return dev, test


def load_shared_data(directory: Path) -> dict[str, PairSet]:
    """The labelled sets of ../shared/data (see its README), by name, each language's pick set first."""
    english = load_stsb(directory / "stsb-en" / "stsb-en-test.csv", "stsb-en")
    english = PairSet(english.name, english.pairs, english.digest, "en")
    english_dev, english_test = halves(english, "stsb-en-dev", "stsb-en-test")
    sets = [
        load_korsts(directory / "korsts" / "sts-dev.tsv", PICK_SETS["ko"]),
        load_korsts(directory / "korsts" / "sts-test.tsv", "korsts-test"),
        load_klue(directory / "klue-sts" / "klue-sts-v1.1_dev.json", "klue-sts-dev"),
        english_dev,
        english_test,
    ]
    return {pair_set.name: pair_set for pair_set in sets}


def load_adversarial(directory: Path) -> dict[str, PairSet]:
    """tests/data/adversarial: dev.jsonl (a strict pick set) and pairs.jsonl (the test), split by language.

    A line: {"lang": "ko"|"en", "same": bool, "kind": ..., "first": ..., "second": ...}; a same pair
    scores 5, a different one 0.
    """
    sets: dict[str, PairSet] = {}
    for file, prefix in (("dev.jsonl", "adversarial-dev"), ("pairs.jsonl", "adversarial")):
        text = _read_text(directory / file)
        try:
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
            by_language: dict[str, list[LabelledPair]] = {}
            for row in rows:
                pair = LabelledPair(str(row["first"]), str(row["second"]), 5.0 if row["same"] else 0.0)
                by_language.setdefault(str(row["lang"]), []).append(pair)
        except (ValueError, KeyError, TypeError) as error:
            raise ConfigurationError(f"{directory / file}: not an adversarial pair file ({error})") from None
        for language, pairs in sorted(by_language.items()):
            name = f"{prefix}-{language}"
            sets[name] = PairSet(name, tuple(pairs), _digest(f"{name}:{text}"), language)
    return sets


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
