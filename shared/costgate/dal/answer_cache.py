"""The answer cache in DynamoDB: exact answers by key, semantic entries by scope and LSH bucket, a purge index.

One entry is one answer item, for a semantic entry one bucket item per LSH bucket it sits in, and one
index item under its tenant, all written in ONE TransactWrite: a reader never finds half an entry (an
entry past a transaction's limits is written in an order that keeps that promise: see `_write`).
Answers are stored zlib-compressed; every item carries the entry's expiry twice: `expires_at` (epoch
seconds, the table's TTL attribute, rounded up) for DynamoDB to delete it eventually, and `valid_until`
(exact UTC) that every read checks, since DynamoDB deletes expired items only eventually (moto never).

Purge reads the tenant's index partition page by page and deletes what each index item names; an
answer is deleted only if it still belongs to that tenant and feature (the same exact key written by
another feature later owns the answer; the stale index item just goes).
"""

import math
import time
import zlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from itertools import batched
from typing import Any, Final

from pynamodb.attributes import (
    BinaryAttribute,
    NumberAttribute,
    UnicodeAttribute,
    UnicodeSetAttribute,
    UTCDateTimeAttribute,
)
from pynamodb.exceptions import DoesNotExist
from pynamodb.transactions import TransactWrite

from costgate.accounting.ledger import validate_tag
from costgate.cache.model import SemanticCandidate, SemanticEntry, StoredAnswer
from costgate.cache.vector_index import decode_vector, encode_vector
from costgate.dal.table import (
    PARTITION_KEY,
    SORT_KEY,
    CostgateItem,
    DecimalAttribute,
    transact,
)
from costgate.errors import AnswerTooLargeError
from costgate.observability import logger

# DynamoDB refuses items over 400 KB (409,600 bytes); the margin covers our size estimate's rounding.
MAX_ITEM_BYTES: Final = 390_000
# TransactWriteItems: at most 100 items and 4 MB (4,194,304 bytes) in all.
MAX_TRANSACTION_ITEMS: Final = 100
MAX_TRANSACTION_BYTES: Final = 4_000_000
# A conflicting transaction is another writer of the same entry or a purge: worth a few retries (with
# the shared backoff), not the ledger's twelve: the answer is already with its client.
MAX_PUT_ATTEMPTS: Final = 3
# Index items handled per round of purge: one BatchGetItem (≤ 100 keys) plus BatchWriteItems of 25.
PURGE_CHUNK: Final = 50

_ANSWER_SK: Final = "ANSWER"
_ENTRY_SK: Final = "ENTRY#"
_EXACT: Final = "exact"
_SEMANTIC: Final = "semantic"


class _AnswerFields(CostgateItem):
    """What exact and semantic answer items share: the StoredAnswer, its owner, its exact expiry."""

    tenant = UnicodeAttribute()
    feature = UnicodeAttribute()
    body_z = BinaryAttribute(legacy_encoding=False)  # zlib of the body as Claude sent it
    content_type = UnicodeAttribute()
    model = UnicodeAttribute()
    cost_usd = DecimalAttribute()
    question = UnicodeAttribute()
    created_at = UTCDateTimeAttribute()
    valid_until = UTCDateTimeAttribute()


class ExactAnswerItem(_AnswerFields, discriminator="answer_exact"):
    """An exact-cache answer.  PK: ACX#<key>  SK: ANSWER

    The key is a SHA-256 over tenant, model and request (`answer_cache.exact_key`), so it already
    separates tenants; tenant and feature are kept for purge, which checks them before deleting.
    """


class SemanticAnswerItem(_AnswerFields, discriminator="answer_semantic"):
    """A semantic entry's answer, stored once.  PK: ACS#<scope>  SK: ENTRY#<entry_id>"""


class SemanticBucketItem(CostgateItem, discriminator="answer_bucket"):
    """A semantic entry's membership of one LSH bucket.  PK: ACB#<scope>#<bucket_key>  SK: <entry_id>

    What a lookup needs to rank and guard a candidate without reading its answer: the question, the
    vector as `vector_index.encode_vector` bytes (float16) and its dimension count.
    """

    question = UnicodeAttribute()
    vector = BinaryAttribute(legacy_encoding=False)
    dimensions = NumberAttribute()
    valid_until = UTCDateTimeAttribute()


class AnswerIndexItem(CostgateItem, discriminator="answer_index"):
    """Where a tenant's entries are, for purge.  PK: ACIDX#<tenant>  SK: <feature>#<kind>#<id>

    kind `exact`: id is the exact key (`ref`). kind `semantic`: id is `<scope>#<entry_id>` (`ref` is the
    scope) and `bucket_keys` names every bucket item of the entry. Expires with its entry.
    """

    feature = UnicodeAttribute()
    kind = UnicodeAttribute()
    ref = UnicodeAttribute()
    entry_id = UnicodeAttribute(null=True)
    bucket_keys = UnicodeSetAttribute(null=True)


class DynamoAnswerCacheStore:
    """AnswerCacheStore over the single table.

    Costs: `get_exact` and `get_semantic` are one eventually consistent GetItem; `semantic_candidates`
    one Query per bucket key; a put is one TransactWriteItems of 2 items (exact) or 2 + buckets
    (semantic); `purge` per 50 index items one Query page, one BatchGetItem and BatchWriteItems of 25.
    """

    def __init__(self, sleep: Callable[[float], None] = time.sleep) -> None:
        self._sleep = sleep

    # --- exact -------------------------------------------------------------------------------------------

    def get_exact(self, key: str, now: datetime) -> StoredAnswer | None:
        try:
            item = ExactAnswerItem.get(_exact_pk(key), _ANSWER_SK)
        except DoesNotExist:
            return None
        return _to_answer(item) if now < item.valid_until else None

    def put_exact(self, key: str, tenant: str, feature: str, answer: StoredAnswer) -> None:
        validate_tag(tenant, "tenant")
        validate_tag(feature, "feature")
        ttl = _ttl(answer.expires_at)
        item = _answer_item(ExactAnswerItem(_exact_pk(key), _ANSWER_SK), tenant, feature, answer)
        index = AnswerIndexItem(
            _index_pk(tenant), f"{feature}#{_EXACT}#{key}", feature=feature, kind=_EXACT, ref=key, expires_at=ttl
        )
        self._write(f"exact entry {key[:16]}", [item, index], [])

    # --- semantic ----------------------------------------------------------------------------------------

    def semantic_candidates(self, scope: str, bucket_keys: Sequence[str], now: datetime) -> list[SemanticCandidate]:
        found: dict[str, SemanticCandidate] = {}
        for bucket_key in dict.fromkeys(bucket_keys):
            for item in SemanticBucketItem.query(_bucket_pk(scope, bucket_key)):
                if item.sk in found or now >= item.valid_until:
                    continue
                vector = decode_vector(item.vector, int(item.dimensions))
                found[item.sk] = SemanticCandidate(entry_id=item.sk, question=item.question, vector=vector)
        return list(found.values())

    def get_semantic(self, scope: str, entry_id: str, now: datetime) -> StoredAnswer | None:
        try:
            item = SemanticAnswerItem.get(_semantic_pk(scope), f"{_ENTRY_SK}{entry_id}")
        except DoesNotExist:
            return None
        return _to_answer(item) if now < item.valid_until else None

    def put_semantic(self, entry: SemanticEntry) -> None:
        validate_tag(entry.tenant, "tenant")
        validate_tag(entry.feature, "feature")
        answer = entry.answer
        ttl = _ttl(answer.expires_at)
        bucket_keys = list(dict.fromkeys(entry.bucket_keys))
        item = _answer_item(
            SemanticAnswerItem(_semantic_pk(entry.scope), f"{_ENTRY_SK}{entry.entry_id}"),
            entry.tenant,
            entry.feature,
            answer,
        )
        index = AnswerIndexItem(
            _index_pk(entry.tenant),
            f"{entry.feature}#{_SEMANTIC}#{entry.scope}#{entry.entry_id}",
            feature=entry.feature,
            kind=_SEMANTIC,
            ref=entry.scope,
            entry_id=entry.entry_id,
            bucket_keys=set(bucket_keys),
            expires_at=ttl,
        )
        vector = encode_vector(entry.vector)
        buckets = [
            SemanticBucketItem(
                _bucket_pk(entry.scope, bucket_key),
                entry.entry_id,
                question=answer.question,
                vector=vector,
                dimensions=len(entry.vector),
                valid_until=answer.expires_at,
                expires_at=ttl,
            )
            for bucket_key in bucket_keys
        ]
        self._write(f"semantic entry {entry.entry_id}", [index, item], buckets)

    # --- purge -------------------------------------------------------------------------------------------

    def purge(self, tenant: str, feature: str | None = None) -> int:
        validate_tag(tenant, "tenant")
        condition = None
        if feature is not None:
            condition = AnswerIndexItem.sk.startswith(f"{validate_tag(feature, 'feature')}#")
        pages = AnswerIndexItem.query(_index_pk(tenant), condition, consistent_read=True, page_size=PURGE_CHUNK)
        # Deleting index items already read does not disturb the query's pagination (it resumes by key).
        return sum(self._purge_chunk(tenant, chunk) for chunk in batched(pages, PURGE_CHUNK, strict=False))

    def _purge_chunk(self, tenant: str, chunk: Sequence[AnswerIndexItem]) -> int:
        owners = _owners(ExactAnswerItem, {_answer_key(index) for index in chunk if index.kind == _EXACT})
        owners |= _owners(SemanticAnswerItem, {_answer_key(index) for index in chunk if index.kind == _SEMANTIC})
        deleted: set[tuple[str, str]] = set()
        with CostgateItem.batch_write() as batch:
            for index in chunk:
                answer_key = _answer_key(index)
                owner = owners.get(answer_key)
                owned = owner == (tenant, index.feature)
                if owned and answer_key not in deleted:
                    model = ExactAnswerItem if index.kind == _EXACT else SemanticAnswerItem
                    batch.delete(model(*answer_key))
                    deleted.add(answer_key)
                # Bucket items go with their answer, or once it is gone; never from under another owner.
                if index.kind == _SEMANTIC and (owned or owner is None) and index.entry_id is not None:
                    for bucket_key in index.bucket_keys or ():
                        batch.delete(SemanticBucketItem(_bucket_pk(index.ref, bucket_key), index.entry_id))
                batch.delete(index)
        return len(deleted)

    # --- writing ---------------------------------------------------------------------------------------------

    def _write(self, what: str, head: Sequence[CostgateItem], buckets: Sequence[CostgateItem]) -> None:
        """Write an entry's items, all or none in one TransactWrite when it can hold them.

        Beyond 100 items or 4 MB (more LSH tables than any hasher here uses, or a very long question in
        every bucket) the items go in order instead: `head` (index first, then the answer), then the
        buckets by BatchWrite. A bucket item, the only way a lookup finds an entry, then exists only once
        its answer does, and whatever a failure leaves behind is indexed, so purge and TTL remove it.
        """
        items = [*head, *buckets]
        sizes = [_item_size(item) for item in items]
        largest = max(sizes)
        if largest > MAX_ITEM_BYTES:
            raise AnswerTooLargeError(
                f"answer cache: {what} would be a {largest:,}-byte item (DynamoDB limit ~400 KB, costgate's"
                f" {MAX_ITEM_BYTES:,}) after compression; not stored"
            )
        if len(items) > MAX_TRANSACTION_ITEMS or sum(sizes) > MAX_TRANSACTION_BYTES:
            logger.info(
                "answer cache: entry too big for one transaction, written in order",
                extra={"items": len(items), "bytes": sum(sizes)},
            )
            for item in head:
                item.save()
            with CostgateItem.batch_write() as batch:
                for item in buckets:
                    batch.save(item)
            return

        def write(transaction: TransactWrite) -> None:
            for item in items:
                transaction.save(item)

        # No item carries a condition, so no codes come back: the entry is stored or this raised.
        transact(write, area="answer cache", what=f"store the {what}", sleep=self._sleep, attempts=MAX_PUT_ATTEMPTS)


def _exact_pk(key: str) -> str:
    return f"ACX#{key}"


def _semantic_pk(scope: str) -> str:
    return f"ACS#{scope}"


def _bucket_pk(scope: str, bucket_key: str) -> str:
    return f"ACB#{scope}#{bucket_key}"


def _index_pk(tenant: str) -> str:
    return f"ACIDX#{tenant}"


def _answer_key(index: AnswerIndexItem) -> tuple[str, str]:
    if index.kind == _EXACT:
        return _exact_pk(index.ref), _ANSWER_SK
    return _semantic_pk(index.ref), f"{_ENTRY_SK}{index.entry_id}"


def _owners(model: type[_AnswerFields], keys: set[tuple[str, str]]) -> dict[tuple[str, str], tuple[str, str]]:
    """(tenant, feature) of each answer that still exists, by key: one BatchGetItem per 100 keys."""
    if not keys:
        return {}
    found = model.batch_get(
        keys, consistent_read=True, attributes_to_get=[PARTITION_KEY, SORT_KEY, "tenant", "feature"]
    )
    return {(item.pk, item.sk): (item.tenant, item.feature) for item in found}


def _ttl(expires_at: datetime) -> int:
    """Epoch seconds for DynamoDB's TTL, rounded up: the table never deletes an entry before it expires."""
    return math.ceil(expires_at.timestamp())


def _answer_item[T: _AnswerFields](item: T, tenant: str, feature: str, answer: StoredAnswer) -> T:
    item.tenant = tenant
    item.feature = feature
    item.body_z = zlib.compress(answer.body)
    item.content_type = answer.content_type
    item.model = answer.model
    item.cost_usd = answer.cost_usd
    item.question = answer.question
    item.created_at = answer.created_at.astimezone(UTC)
    item.valid_until = answer.expires_at.astimezone(UTC)
    item.expires_at = _ttl(answer.expires_at)
    return item


def _to_answer(item: _AnswerFields) -> StoredAnswer:
    return StoredAnswer(
        body=zlib.decompress(item.body_z),
        content_type=item.content_type,
        model=item.model,
        cost_usd=item.cost_usd,
        question=item.question,
        created_at=item.created_at,
        expires_at=item.valid_until,
    )


def _item_size(item: CostgateItem) -> int:
    """DynamoDB's size of the item, rounded up: attribute names plus values (numbers counted as text)."""
    return sum(len(name.encode()) + _value_size(value) for name, value in item.serialize().items())


def _value_size(value: dict[str, Any]) -> int:
    ((kind, data),) = value.items()
    if kind == "S":
        return len(str(data).encode())
    if kind in ("B", "N"):
        return len(data)
    if kind == "L":
        return 3 + sum(1 + _value_size(element) for element in data)
    if kind == "M":
        return 3 + sum(1 + len(name.encode()) + _value_size(element) for name, element in data.items())
    if kind in ("SS", "NS", "BS"):
        return sum(len(element.encode() if isinstance(element, str) else element) for element in data)
    return 1  # BOOL, NULL
