"""An in-memory answer-cache store and a deterministic bag-of-words embedder."""

import hashlib
import re
import threading
import zlib
from collections.abc import Mapping, Sequence
from datetime import datetime

import numpy as np
import numpy.typing as npt

from costgate.accounting.ledger import validate_tag
from costgate.cache.model import SemanticCandidate, SemanticEntry, StoredAnswer
from costgate.cache.vector_index import decode_vector, encode_vector
from costgate.dal.answer_cache import MAX_ITEM_BYTES
from costgate.errors import AnswerTooLargeError


class InMemoryAnswerCacheStore:
    """AnswerCacheStore in three dicts: exact answers by key (with their tenant and feature), semantic
    entries by (scope, entry_id), and bucket members (entry ids) by (scope, bucket_key).

    Same contract as DynamoAnswerCacheStore: reads skip an entry once `now` reaches its expires_at;
    candidates come bucket by bucket in the order asked, by entry id within a bucket, each once, their
    vectors through the table's float16 encoding; purge deletes and counts stored entries (expired ones
    included), and leaves an exact answer that a later put from another feature now owns. A put whose
    compressed body and question exceed the table's MAX_ITEM_BYTES raises AnswerTooLargeError, storing
    nothing (the table's count also has attribute names and the other fields: a few hundred bytes more).
    Thread-safe.
    """

    def __init__(self) -> None:
        self.exact: dict[str, tuple[str, str, StoredAnswer]] = {}
        self.semantic: dict[tuple[str, str], SemanticEntry] = {}
        self.buckets: dict[tuple[str, str], set[str]] = {}
        self._lock = threading.Lock()

    def get_exact(self, key: str, now: datetime) -> StoredAnswer | None:
        with self._lock:
            found = self.exact.get(key)
        return found[2] if found is not None and now < found[2].expires_at else None

    def put_exact(self, key: str, tenant: str, feature: str, answer: StoredAnswer) -> None:
        validate_tag(tenant, "tenant")
        validate_tag(feature, "feature")
        _check_size(f"exact entry {key[:16]}", answer)
        with self._lock:
            self.exact[key] = (tenant, feature, answer)

    def semantic_candidates(self, scope: str, bucket_keys: Sequence[str], now: datetime) -> list[SemanticCandidate]:
        found: dict[str, SemanticCandidate] = {}
        with self._lock:
            for bucket_key in dict.fromkeys(bucket_keys):
                for entry_id in sorted(self.buckets.get((scope, bucket_key), ())):
                    entry = self.semantic.get((scope, entry_id))
                    if entry_id in found or entry is None or now >= entry.answer.expires_at:
                        continue
                    vector = decode_vector(encode_vector(entry.vector), len(entry.vector))
                    found[entry_id] = SemanticCandidate(entry_id, entry.answer.question, vector)
        return list(found.values())

    def get_semantic(self, scope: str, entry_id: str, now: datetime) -> StoredAnswer | None:
        with self._lock:
            entry = self.semantic.get((scope, entry_id))
        return entry.answer if entry is not None and now < entry.answer.expires_at else None

    def put_semantic(self, entry: SemanticEntry) -> None:
        validate_tag(entry.tenant, "tenant")
        validate_tag(entry.feature, "feature")
        _check_size(f"semantic entry {entry.entry_id}", entry.answer)
        with self._lock:
            self.semantic[(entry.scope, entry.entry_id)] = entry
            for bucket_key in entry.bucket_keys:
                self.buckets.setdefault((entry.scope, bucket_key), set()).add(entry.entry_id)

    def purge(self, tenant: str, feature: str | None = None) -> int:
        validate_tag(tenant, "tenant")
        if feature is not None:
            validate_tag(feature, "feature")

        def purged(owner: str, of_feature: str) -> bool:
            return owner == tenant and feature in (None, of_feature)

        with self._lock:
            exact = [key for key, (owner, of_feature, _) in self.exact.items() if purged(owner, of_feature)]
            semantic = [key for key, entry in self.semantic.items() if purged(entry.tenant, entry.feature)]
            for key in exact:
                del self.exact[key]
            for scope, entry_id in semantic:
                for bucket_key in self.semantic.pop((scope, entry_id)).bucket_keys:
                    members = self.buckets[(scope, bucket_key)]
                    members.discard(entry_id)
                    if not members:
                        del self.buckets[(scope, bucket_key)]
        return len(exact) + len(semantic)


def _check_size(what: str, answer: StoredAnswer) -> None:
    size = len(zlib.compress(answer.body)) + len(answer.question.encode())
    if size > MAX_ITEM_BYTES:
        raise AnswerTooLargeError(f"answer cache: {what} would be a {size:,}-byte item (fake's estimate); not stored")


class FakeEmbedder:
    """Embedder for plumbing tests only: deterministic, instant, meaningless.

    Each lower-cased word is a fixed pseudo-random unit vector (from its SHA-256) and a text is the
    normalised sum of its words, so the same words (in any order, case or punctuation) score 1.0 and
    texts sharing words score higher than texts sharing none. `vectors` pins the vector of given texts
    (normalised); `calls` records every batch `embed` was given.
    """

    def __init__(self, dimensions: int = 64, vectors: Mapping[str, Sequence[float]] | None = None) -> None:
        self.dimensions = dimensions
        self.embedder_id = f"fake-bag-of-words-{dimensions}"
        self.pinned = {text: _unit(np.asarray(vector, dtype=np.float64)) for text, vector in (vectors or {}).items()}
        self.calls: list[list[str]] = []

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        self.calls.append(list(texts))
        out = np.empty((len(texts), self.dimensions), dtype=np.float32)
        for row, text in enumerate(texts):
            out[row] = self.pinned[text] if text in self.pinned else self._bag_of_words(text)
        return out

    def _bag_of_words(self, text: str) -> npt.NDArray[np.float64]:
        total = np.zeros(self.dimensions)
        for word in re.findall(r"\w+", text.lower()) or [""]:
            seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:8], "big")
            total += np.random.default_rng(seed).standard_normal(self.dimensions)
        return _unit(total)


def _unit(vector: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    norm = float(np.linalg.norm(vector))
    if norm == 0:
        raise ValueError("a zero vector has no direction")
    return vector / norm
