"""The answer cache in DynamoDB: exact answers by key, semantic entries by scope and LSH bucket, a purge index.

One entry is one answer item, for a semantic entry one bucket item per LSH bucket it sits in, and one
index item under its tenant, written in order with plain puts, no transaction (docs/scale.md §6): the
index item first, then the answer, then the buckets (by BatchWriteItem). A bucket, the only way a
lookup finds a semantic entry, exists only once its answer does, and whatever a failure leaves behind
is indexed, so purge and TTL remove it. Nothing here is hot at 10,000 stores a second: the purge index
spreads a tenant over INDEX_PARTITIONS partitions, a scope's semantic answers over 256.
Answers are stored zlib-compressed; every item carries the entry's expiry twice: `expires_at` (epoch
seconds, the table's TTL attribute, rounded up) for DynamoDB to delete it eventually, and `valid_until`
(exact UTC) that every read checks, since DynamoDB deletes expired items only eventually (moto never).

Purge reads the tenant's index partition page by page and deletes what each index item names; an
answer is deleted only if it still belongs to that tenant and feature (the same exact key written by
another feature later owns the answer; the stale index item just goes).
"""

import hashlib
import math
import zlib
from collections.abc import Sequence
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

from costgate.accounting.ledger import validate_tag
from costgate.cache.model import SemanticCandidate, SemanticEntry, StoredAnswer
from costgate.dal.table import (
    PARTITION_KEY,
    SORT_KEY,
    CostgateItem,
    DecimalAttribute,
)
from costgate.errors import AnswerTooLargeError

# DynamoDB refuses items over 400 KB (409,600 bytes); the margin covers our size estimate's rounding.
MAX_ITEM_BYTES: Final = 390_000
# A tenant's purge index spreads over this many partitions (312 index writes/s each at 10,000 stores/s).
INDEX_PARTITIONS: Final = 32
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
    """A semantic entry's answer, stored once.  PK: ACS#<scope>#<entry_id[:2]>  SK: ENTRY#<entry_id>

    (Entries written before the answers spread over 256 partitions sit under ACS#<scope>: lookups no
    longer find them, they expire, and purge still deletes them.)
    """


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
    """Where a tenant's entries are, for purge.  PK: ACIDX#<tenant>#<n>  SK: <feature>#<kind>#<id>

    n = a hash of the entry's key or id mod INDEX_PARTITIONS (before: ACIDX#<tenant>, still purged).

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
    one Query per bucket key; a put is 2 PutItems (exact) or 2 PutItems and BatchWriteItems of 25 for
    the buckets (semantic); `purge` reads INDEX_PARTITIONS + 1 partitions, per 50 index items one Query
    page, one BatchGetItem and BatchWriteItems of 25.
    """

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
            index_partition(tenant, key),
            f"{feature}#{_EXACT}#{key}",
            feature=feature,
            kind=_EXACT,
            ref=key,
            expires_at=ttl,
        )
        self._write(f"exact entry {key[:16]}", [index, item], [])

    # --- semantic ----------------------------------------------------------------------------------------

    def semantic_candidates(self, scope: str, bucket_keys: Sequence[str], now: datetime) -> list[SemanticCandidate]:
        # numpy and the vector index load with the semantic path (costgate.cache.answers), not with this module.
        from costgate.cache.vector_index import decode_vector  # noqa: PLC0415

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
            item = SemanticAnswerItem.get(semantic_partition(scope, entry_id), f"{_ENTRY_SK}{entry_id}")
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
            SemanticAnswerItem(semantic_partition(entry.scope, entry.entry_id), f"{_ENTRY_SK}{entry.entry_id}"),
            entry.tenant,
            entry.feature,
            answer,
        )
        index = AnswerIndexItem(
            index_partition(entry.tenant, entry.entry_id),
            f"{entry.feature}#{_SEMANTIC}#{entry.scope}#{entry.entry_id}",
            feature=entry.feature,
            kind=_SEMANTIC,
            ref=entry.scope,
            entry_id=entry.entry_id,
            bucket_keys=set(bucket_keys),
            expires_at=ttl,
        )
        from costgate.cache.vector_index import encode_vector  # noqa: PLC0415 - as in semantic_candidates

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
        deleted = 0
        legacy = f"ACIDX#{tenant}"
        for partition in [legacy, *(f"{legacy}#{n}" for n in range(INDEX_PARTITIONS))]:
            pages = AnswerIndexItem.query(partition, condition, consistent_read=True, page_size=PURGE_CHUNK)
            # Deleting index items already read does not disturb the query's pagination (it resumes by key).
            for chunk in batched(pages, PURGE_CHUNK, strict=False):
                deleted += self._purge_chunk(tenant, chunk, legacy=partition == legacy)
        return deleted

    def _purge_chunk(self, tenant: str, chunk: Sequence[AnswerIndexItem], *, legacy: bool) -> int:
        def answer_key(index: AnswerIndexItem) -> tuple[str, str]:
            return _answer_key(index, legacy=legacy)

        owners = _owners(ExactAnswerItem, {answer_key(index) for index in chunk if index.kind == _EXACT})
        owners |= _owners(SemanticAnswerItem, {answer_key(index) for index in chunk if index.kind == _SEMANTIC})
        deleted: set[tuple[str, str]] = set()
        with CostgateItem.batch_write() as batch:
            for index in chunk:
                key = answer_key(index)
                owner = owners.get(key)
                owned = owner == (tenant, index.feature)
                if owned and key not in deleted:
                    model = ExactAnswerItem if index.kind == _EXACT else SemanticAnswerItem
                    batch.delete(model(*key))
                    deleted.add(key)
                # Bucket items go with their answer, or once it is gone; never from under another owner.
                if index.kind == _SEMANTIC and (owned or owner is None) and index.entry_id is not None:
                    for bucket_key in index.bucket_keys or ():
                        batch.delete(SemanticBucketItem(_bucket_pk(index.ref, bucket_key), index.entry_id))
                batch.delete(index)
        return len(deleted)

    # --- writing ---------------------------------------------------------------------------------------------

    def _write(self, what: str, head: Sequence[CostgateItem], buckets: Sequence[CostgateItem]) -> None:
        """Write an entry's items in order: `head` (the index item, then the answer) by PutItem, then the buckets.

        No transaction: a transaction would cost twice the units and hold every item (a hot bucket's
        conflicts). The order keeps the promise a reader needs, and the index the one purge needs.
        """
        largest = max(_item_size(item) for item in [*head, *buckets])
        if largest > MAX_ITEM_BYTES:
            raise AnswerTooLargeError(
                f"answer cache: {what} would be a {largest:,}-byte item (DynamoDB limit ~400 KB, costgate's"
                f" {MAX_ITEM_BYTES:,}) after compression; not stored"
            )
        for item in head:
            item.save()
        if buckets:
            with CostgateItem.batch_write() as batch:
                for item in buckets:
                    batch.save(item)


def _exact_pk(key: str) -> str:
    return f"ACX#{key}"


def semantic_partition(scope: str, entry_id: str) -> str:
    return f"ACS#{scope}#{entry_id[:2]}"


def _bucket_pk(scope: str, bucket_key: str) -> str:
    return f"ACB#{scope}#{bucket_key}"


def index_partition(tenant: str, key: str) -> str:
    digest = hashlib.sha256(key.encode()).digest()
    return f"ACIDX#{tenant}#{int.from_bytes(digest[:4], 'big') % INDEX_PARTITIONS}"


def _answer_key(index: AnswerIndexItem, *, legacy: bool) -> tuple[str, str]:
    if index.kind == _EXACT:
        return _exact_pk(index.ref), _ANSWER_SK
    entry_id = index.entry_id or ""
    pk = f"ACS#{index.ref}" if legacy else semantic_partition(index.ref, entry_id)
    return pk, f"{_ENTRY_SK}{entry_id}"


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
