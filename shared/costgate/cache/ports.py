"""The answer cache's store."""

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from costgate.cache.model import SemanticCandidate, SemanticEntry, StoredAnswer


class AnswerCacheStore(Protocol):
    """Stored answers: exact entries by key, semantic entries by scope and LSH bucket.

    Every read ignores entries whose `expires_at` has passed (DynamoDB's TTL deletes them later).
    A put raises AnswerTooLargeError, storing nothing, for an entry the store cannot hold (DynamoDB's
    400 KB item: about 390,000 bytes of compressed body and question).
    """

    def get_exact(self, key: str, now: datetime) -> "StoredAnswer | None": ...

    def put_exact(self, key: str, tenant: str, feature: str, answer: "StoredAnswer") -> None:
        """Store (or replace) the answer under the key, indexed for `purge` by tenant and feature."""
        ...

    def semantic_candidates(self, scope: str, bucket_keys: Sequence[str], now: datetime) -> list["SemanticCandidate"]:
        """Every live entry of the scope in any of the buckets, each once: one Query per bucket."""
        ...

    def get_semantic(self, scope: str, entry_id: str, now: datetime) -> "StoredAnswer | None": ...

    def put_semantic(self, entry: "SemanticEntry") -> None:
        """Store the entry (its answer once, its vector and question in every bucket), indexed for `purge`."""
        ...

    def purge(self, tenant: str, feature: str | None = None) -> int:
        """Delete every entry of the tenant (or of one feature of it), exact and semantic; the count deleted."""
        ...
