"""What the answer cache stores and says: its modes, its result, a stored answer and a semantic entry."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import IntEnum, StrEnum
from typing import TYPE_CHECKING

from costgate.errors import InvalidRequestError

if TYPE_CHECKING:  # numpy loads with the semantic path (costgate.cache.answers), not with these types
    import numpy as np
    import numpy.typing as npt


class AnswerCacheMode(IntEnum):
    OFF = 0
    EXACT = 1
    SEMANTIC = 2

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, value: str, what: str) -> AnswerCacheMode:
        try:
            return cls[value.strip().upper()]
        except KeyError:
            raise InvalidRequestError(f"{what} must be one of off|exact|semantic, got {value!r}") from None


class CacheResult(StrEnum):
    """What `x-costgate-cache` says on the answer."""

    EXACT_HIT = "exact-hit"
    SEMANTIC_HIT = "semantic-hit"
    MISS = "miss"
    BYPASS = "bypass"  # the cache did not apply: off, or nothing it may look up


@dataclass(frozen=True)
class StoredAnswer:
    body: bytes
    content_type: str
    model: str
    cost_usd: Decimal  # what the request that produced it cost: the saving of every hit
    question: str
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class SemanticCandidate:
    entry_id: str
    question: str
    vector: npt.NDArray[np.float32]


@dataclass(frozen=True)
class SemanticEntry:
    """A stored semantic entry: its answer once, its vector and question in each of its LSH buckets."""

    scope: str
    entry_id: str
    tenant: str
    feature: str
    vector: npt.NDArray[np.float32]
    bucket_keys: tuple[str, ...]
    answer: StoredAnswer
