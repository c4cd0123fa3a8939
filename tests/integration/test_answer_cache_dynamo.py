"""DynamoAnswerCacheStore against moto: exact and semantic round trips, read-time expiry, tenant isolation,
purge by tenant and feature (every item gone), item-size limits. The port's contract, which the in-memory
fake must pass too, is in tests/contract/test_answer_cache_store.py (it reuses this module's builders)."""

import json
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import numpy as np
import numpy.typing as npt
import pytest

from costgate.cache.answers import exact_key
from costgate.cache.model import SemanticEntry, StoredAnswer
from costgate.cache.ports import AnswerCacheStore
from costgate.cache.vector_index import decode_vector, encode_vector
from costgate.dal import answer_cache as answer_cache_dal
from costgate.dal.answer_cache import (
    AnswerIndexItem,
    DynamoAnswerCacheStore,
    ExactAnswerItem,
    SemanticAnswerItem,
    SemanticBucketItem,
)
from costgate.dal.table import CostgateItem
from costgate.errors import AnswerTooLargeError, InvalidRequestError

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
MODEL = "claude-sonnet-5-5"
DIMENSIONS = 384
ACME_SCOPE = "a" * 64
GLOBEX_SCOPE = "b" * 64
ANSWER_PREFIXES = ("ACX#", "ACS#", "ACB#", "ACIDX#")


@pytest.fixture
def store(ledger_table: str) -> DynamoAnswerCacheStore:
    return DynamoAnswerCacheStore()


def message(text: str, *, padding: int = 0) -> bytes:
    body = {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [{"type": "text", "text": text + " lorem ipsum" * padding}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 12, "output_tokens": 40},
    }
    return json.dumps(body, ensure_ascii=False).encode()


def answer(
    text: str = "Python is a programming language.",
    *,
    question: str = "What is Python",
    expires: datetime = NOW + DAY,
    cost: str = "0.000123456789",
    body: bytes | None = None,
) -> StoredAnswer:
    return StoredAnswer(
        body=message(text) if body is None else body,
        content_type="application/json",
        model=MODEL,
        cost_usd=Decimal(cost),
        question=question,
        created_at=NOW,
        expires_at=expires,
    )


def vector(seed: int) -> npt.NDArray[np.float32]:
    return np.random.default_rng(seed).standard_normal(DIMENSIONS).astype(np.float32)


def entry(
    entry_id: str,
    buckets: tuple[str, ...],
    *,
    scope: str = ACME_SCOPE,
    tenant: str = "acme",
    feature: str = "chat",
    seed: int = 1,
    stored: StoredAnswer | None = None,
) -> SemanticEntry:
    return SemanticEntry(
        scope=scope,
        entry_id=entry_id,
        tenant=tenant,
        feature=feature,
        vector=vector(seed),
        bucket_keys=buckets,
        answer=stored or answer(question=f"question {entry_id}"),
    )


def key_for(tenant: str, question: str = "What is Python?") -> str:
    return exact_key(tenant, MODEL, {"max_tokens": 256, "messages": [{"role": "user", "content": question}]})


def answer_items() -> Iterator[CostgateItem]:
    """Every answer-cache item in the table, by a Scan."""
    return (item for item in CostgateItem.scan(consistent_read=True) if item.pk.startswith(ANSWER_PREFIXES))


def unit(v: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    return v / np.linalg.norm(v)


# --- exact ----------------------------------------------------------------------------------------------------


def test_an_exact_answer_round_trips_byte_for_byte_with_its_exact_cost(store: DynamoAnswerCacheStore) -> None:
    # Given an answer with non-ASCII text, a cost below a millionth of a dollar, stamped in UTC+9
    seoul = timezone(timedelta(hours=9))
    stored = StoredAnswer(
        body=message("파이썬은 프로그래밍 언어입니다."),
        content_type="application/json",
        model=MODEL,
        cost_usd=Decimal("0.00000075"),
        question="파이썬이 뭔가요",
        created_at=NOW.astimezone(seoul),
        expires_at=(NOW + DAY + timedelta(microseconds=250_000)).astimezone(seoul),
    )
    key = key_for("acme")

    # When it is stored and read back
    store.put_exact(key, "acme", "chat", stored)
    found = store.get_exact(key, NOW)

    # Then it is the same answer: identical bytes, exact Decimal, the same instants
    assert found == stored
    assert found is not None
    assert found.body == stored.body
    assert isinstance(found.cost_usd, Decimal)
    assert str(found.cost_usd) == "7.5E-7"
    assert found.expires_at == NOW + DAY + timedelta(microseconds=250_000)
    # And it sits at its documented key, compressed, owned, with the TTL rounded up to the next second
    item = ExactAnswerItem.get(f"ACX#{key}", "ANSWER", consistent_read=True)
    assert zlib.decompress(item.body_z) == stored.body
    assert (item.tenant, item.feature, item.question) == ("acme", "chat", "파이썬이 뭔가요")
    assert item.expires_at == int((NOW + DAY).timestamp()) + 1
    index = AnswerIndexItem.get("ACIDX#acme", f"chat#exact#{key}", consistent_read=True)
    assert (index.kind, index.ref, index.expires_at) == ("exact", key, item.expires_at)


def test_an_expired_exact_answer_is_ignored_at_read_time(store: DynamoAnswerCacheStore) -> None:
    # Given an answer expiring at noon tomorrow, still in the table (TTL deletes only eventually)
    key = key_for("acme")
    store.put_exact(key, "acme", "chat", answer(expires=NOW + DAY))

    # Then it is served up to the last microsecond before, and not from that instant on
    assert store.get_exact(key, NOW + DAY - timedelta(microseconds=1)) is not None
    assert store.get_exact(key, NOW + DAY) is None
    assert store.get_exact(key, NOW + 2 * DAY) is None
    assert ExactAnswerItem.count(f"ACX#{key}") == 1


# --- semantic -----------------------------------------------------------------------------------------------


def test_candidates_from_several_buckets_come_once_each_with_their_vectors(store: DynamoAnswerCacheStore) -> None:
    # Given three entries of one scope in overlapping buckets, and one of another scope in the same buckets
    store.put_semantic(entry("e1", ("t00-001", "t01-002"), seed=1))
    store.put_semantic(entry("e2", ("t00-001", "t01-003"), seed=2))
    store.put_semantic(entry("e3", ("t01-002", "t02-004"), seed=3))
    store.put_semantic(entry("x1", ("t00-001", "t01-002"), scope=GLOBEX_SCOPE, tenant="globex", seed=4))

    # When a lookup reads four buckets, one of them empty
    found = store.semantic_candidates(ACME_SCOPE, ["t00-001", "t01-002", "t01-003", "t09-3ff"], NOW)

    # Then each entry of the scope comes once (bucket by bucket, by id within a bucket), no other scope's
    assert [c.entry_id for c in found] == ["e1", "e2", "e3"]
    assert [c.question for c in found] == ["question e1", "question e2", "question e3"]
    # And each vector is its float16 encoding decoded: a unit vector within 1e-3 of the original
    for candidate, seed in zip(found, (1, 2, 3), strict=True):
        assert candidate.vector.dtype == np.float32
        assert np.array_equal(candidate.vector, decode_vector(encode_vector(vector(seed)), DIMENSIONS))
        assert float(candidate.vector @ unit(vector(seed))) > 0.999
    assert store.semantic_candidates(ACME_SCOPE, [], NOW) == []
    assert store.semantic_candidates("c" * 64, ["t00-001"], NOW) == []
    # And the bucket items sit at their documented keys with the dimension count
    bucket = SemanticBucketItem.get(f"ACB#{ACME_SCOPE}#t01-002", "e3", consistent_read=True)
    assert (bucket.question, int(bucket.dimensions), len(bucket.vector)) == ("question e3", DIMENSIONS, 768)


def test_get_semantic_reads_the_answer_of_one_entry_of_one_scope(store: DynamoAnswerCacheStore) -> None:
    # Given an entry with a streamed answer
    stream = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    stored = StoredAnswer(stream, "text/event-stream; charset=utf-8", MODEL, Decimal("0.0042"), "q", NOW, NOW + DAY)
    store.put_semantic(entry("e1", ("t00-001",), stored=stored))

    # Then it reads back exactly, only under its scope and id
    assert store.get_semantic(ACME_SCOPE, "e1", NOW) == stored
    assert store.get_semantic(GLOBEX_SCOPE, "e1", NOW) is None
    assert store.get_semantic(ACME_SCOPE, "e2", NOW) is None
    item = SemanticAnswerItem.get(f"ACS#{ACME_SCOPE}", "ENTRY#e1", consistent_read=True)
    assert (item.tenant, item.feature, item.content_type) == ("acme", "chat", "text/event-stream; charset=utf-8")
    index = AnswerIndexItem.get("ACIDX#acme", f"chat#semantic#{ACME_SCOPE}#e1", consistent_read=True)
    assert (index.ref, index.entry_id, index.bucket_keys) == (ACME_SCOPE, "e1", {"t00-001"})


# --- purge --------------------------------------------------------------------------------------------------


def fill(store: AnswerCacheStore) -> None:
    """acme: 2 exact + 2 semantic in chat, 1 exact + 1 semantic in search; globex: 1 exact + 1 semantic in chat."""
    store.put_exact(key_for("acme", "q1"), "acme", "chat", answer())
    store.put_exact(key_for("acme", "q2"), "acme", "chat", answer())
    store.put_exact(key_for("acme", "q3"), "acme", "search", answer())
    store.put_exact(key_for("globex", "q1"), "globex", "chat", answer())
    store.put_semantic(entry("c1", ("t00-001", "t01-001"), seed=1))
    store.put_semantic(entry("c2", ("t00-001", "t01-002"), seed=2))
    store.put_semantic(entry("s1", ("t00-001",), feature="search", seed=3))
    store.put_semantic(entry("g1", ("t00-001", "t01-001"), scope=GLOBEX_SCOPE, tenant="globex", seed=4))


def acme_items() -> list[str]:
    """The answer-cache items of acme: its index partition, its exact answers, everything of its scope."""
    return sorted(
        f"{item.pk} {item.sk}"
        for item in answer_items()
        if item.pk == "ACIDX#acme"
        or ACME_SCOPE in item.pk
        or (isinstance(item, ExactAnswerItem) and item.tenant == "acme")
    )


def all_items() -> list[str]:
    return sorted(f"{item.pk} {item.sk}" for item in answer_items())


def test_purging_one_feature_of_a_tenant_deletes_exactly_its_entries(store: DynamoAnswerCacheStore) -> None:
    # Given entries of two features of acme, and globex's
    fill(store)
    before = len(list(answer_items()))

    # When acme's chat entries are purged
    deleted = store.purge("acme", "chat")

    # Then 4 entries went: 2 answers + 2 index items (exact), 2 answers + 4 bucket items + 2 index items
    assert deleted == 4
    assert before - len(list(answer_items())) == 2 * 2 + 2 * 2 + 4
    # And acme's search entries and globex's are still served
    assert store.get_exact(key_for("acme", "q1"), NOW) is None
    assert store.get_exact(key_for("acme", "q3"), NOW) is not None
    assert store.get_exact(key_for("globex", "q1"), NOW) is not None
    assert [c.entry_id for c in store.semantic_candidates(ACME_SCOPE, ["t00-001", "t01-001", "t01-002"], NOW)] == ["s1"]
    assert store.get_semantic(ACME_SCOPE, "c1", NOW) is None
    assert [c.entry_id for c in store.semantic_candidates(GLOBEX_SCOPE, ["t00-001"], NOW)] == ["g1"]
    assert store.purge("acme", "chat") == 0


def test_purging_a_tenant_leaves_no_item_of_it_and_every_item_of_the_others(store: DynamoAnswerCacheStore) -> None:
    # Given both tenants' entries, one of acme's already expired but not yet deleted by the table's TTL
    fill(store)
    store.put_exact(key_for("acme", "old"), "acme", "chat", answer(expires=NOW - DAY))
    acme_before = acme_items()
    globex_before = [item for item in all_items() if item not in acme_before]
    # 4 exact answers, 3 semantic ones, 5 bucket items, 7 index items
    assert len(acme_before) == 4 + 3 + 5 + 7

    # When acme is purged
    deleted = store.purge("acme")

    # Then every entry of acme went, the expired one included, and a Scan finds none of its items
    assert deleted == 4 + 3
    assert acme_items() == []
    assert not [i for i in answer_items() if getattr(i, "tenant", None) == "acme"]
    # And globex's items are all still there: its 2 entries' answers, buckets and index items
    assert all_items() == globex_before
    assert len(globex_before) == 1 + 1 + 2 + 2
    assert store.purge("acme") == 0


def test_purge_pages_through_more_entries_than_one_round(
    store: DynamoAnswerCacheStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given rounds (and Query pages) of 4 index items, and 6 exact + 5 semantic entries: 3 rounds, both kinds mixed
    monkeypatch.setattr(answer_cache_dal, "PURGE_CHUNK", 4)
    for n in range(6):
        store.put_exact(key_for("acme", f"question {n}"), "acme", "chat", answer())
    for n in range(5):
        store.put_semantic(entry(f"e{n:03d}", ("t00-001", f"t01-{n:03x}"), seed=n))

    # When the tenant is purged, every entry is counted once and nothing of it is left
    assert store.purge("acme") == 11
    assert all_items() == []


def test_an_exact_key_written_again_by_another_feature_belongs_to_it(store: DynamoAnswerCacheStore) -> None:
    # Given the same request answered for chat, then (the same key) for search
    key = key_for("acme")
    store.put_exact(key, "acme", "chat", answer("chat's"))
    store.put_exact(key, "acme", "search", answer("search's"))

    # When chat is purged, the answer stays: search owns it now; chat's stale index item goes
    assert store.purge("acme", "chat") == 0
    assert store.get_exact(key, NOW) is not None
    assert [i.sk for i in AnswerIndexItem.query("ACIDX#acme", consistent_read=True)] == [f"search#exact#{key}"]

    # When search is purged, it goes, counted once
    assert store.purge("acme", "search") == 1
    assert list(answer_items()) == []


# --- sizes --------------------------------------------------------------------------------------------------


def test_a_large_compressible_body_round_trips(store: DynamoAnswerCacheStore) -> None:
    # Given a 349 KB JSON answer (the most the domain stores is 350,000 bytes)
    body = message("A long answer.", padding=29_000)
    assert 340_000 < len(body) <= 350_000
    key = key_for("acme")

    # When it is stored exactly and semantically
    store.put_exact(key, "acme", "chat", answer(body=body))
    store.put_semantic(entry("big", ("t00-001",), stored=answer(body=body)))

    # Then both read back byte for byte, from items a fraction of its size
    exact, semantic = store.get_exact(key, NOW), store.get_semantic(ACME_SCOPE, "big", NOW)
    assert exact is not None
    assert semantic is not None
    assert exact.body == semantic.body == body
    assert len(ExactAnswerItem.get(f"ACX#{key}", "ANSWER").body_z) < len(body) // 20


def test_an_entry_dynamodb_cannot_hold_is_refused_and_nothing_is_stored(store: DynamoAnswerCacheStore) -> None:
    # Given a 350,000-byte body that does not compress, and a long question beside it
    noise = np.random.default_rng(7).integers(0, 256, 350_000, dtype=np.uint8).tobytes()
    too_big = answer(body=noise, question="why " * 12_000)
    key = key_for("acme")

    # Then the exact put and the semantic put raise a clear error, storing nothing
    with pytest.raises(AnswerTooLargeError, match=r"exact entry [0-9a-f]{16} would be a [\d,]+-byte item"):
        store.put_exact(key, "acme", "chat", too_big)
    with pytest.raises(AnswerTooLargeError, match="semantic entry e1 would be"):
        store.put_semantic(entry("e1", ("t00-001",), stored=too_big))
    assert list(answer_items()) == []

    # And the same body with a short question fits
    store.put_exact(key, "acme", "chat", answer(body=noise))
    found = store.get_exact(key, NOW)
    assert found is not None
    assert found.body == noise


def test_an_entry_in_more_buckets_than_one_transaction_holds_is_written_in_order(
    store: DynamoAnswerCacheStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an entry in 99 buckets: with its answer and index item, 101 items (a transaction holds 100)
    buckets = tuple(f"t{n:02d}-001" for n in range(99))

    def no_transaction(write: object, *, what: str, **options: object) -> None:
        raise AssertionError(f"{what}: 101 items sent to one transaction")

    # When it is stored (not by a transaction)
    monkeypatch.setattr(answer_cache_dal, "transact", no_transaction)
    store.put_semantic(entry("wide", buckets))

    # Then it is found from any of its buckets and read back
    assert [c.entry_id for c in store.semantic_candidates(ACME_SCOPE, ["t98-001"], NOW)] == ["wide"]
    assert store.get_semantic(ACME_SCOPE, "wide", NOW) is not None
    assert sum(1 for item in answer_items() if item.pk.startswith("ACB#")) == 99

    # And purge deletes all 101 items
    assert store.purge("acme", "chat") == 1
    assert list(answer_items()) == []


def test_puts_refuse_invalid_tags(store: DynamoAnswerCacheStore) -> None:
    with pytest.raises(InvalidRequestError, match="feature 'a#b' is invalid"):
        store.put_exact(key_for("acme"), "acme", "a#b", answer())
    with pytest.raises(InvalidRequestError, match="tenant '' is invalid"):
        store.put_semantic(entry("e1", ("t00-001",), tenant=""))
    assert list(answer_items()) == []
