"""AnswerCacheStore's contract, for InMemoryAnswerCacheStore and DynamoAnswerCacheStore: exact and semantic round
trips, read-time expiry, candidates bucket by bucket, tenant isolation, purge by tenant and feature, and
entries too large to hold refused."""

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import numpy as np
import pytest

from costgate.cache.model import StoredAnswer
from costgate.cache.ports import AnswerCacheStore
from costgate.cache.vector_index import decode_vector, encode_vector
from costgate.dal.answer_cache import DynamoAnswerCacheStore
from costgate.errors import AnswerTooLargeError, InvalidRequestError
from tests.contract.conftest import FAKE
from tests.fakes.cache import InMemoryAnswerCacheStore
from tests.integration.test_answer_cache_dynamo import (
    ACME_SCOPE,
    DAY,
    DIMENSIONS,
    GLOBEX_SCOPE,
    MODEL,
    NOW,
    answer,
    entry,
    fill,
    key_for,
    message,
    unit,
    vector,
)


@pytest.fixture
def store(table: str) -> AnswerCacheStore:
    return InMemoryAnswerCacheStore() if table == FAKE else DynamoAnswerCacheStore()


def text_of(found: StoredAnswer | None) -> str:
    assert found is not None
    return str(json.loads(found.body)["content"][0]["text"])


# --- exact -----------------------------------------------------------------------------------------------------


def test_an_exact_answer_round_trips_byte_for_byte_with_its_exact_cost(store: AnswerCacheStore) -> None:
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
    assert found.cost_usd == Decimal("0.00000075")
    assert found.expires_at == NOW + DAY + timedelta(microseconds=250_000)


def test_an_unknown_key_is_a_miss_and_a_put_replaces(store: AnswerCacheStore) -> None:
    key = key_for("acme")
    assert store.get_exact(key, NOW) is None
    store.put_exact(key, "acme", "chat", answer("first"))
    store.put_exact(key, "acme", "chat", answer("second"))
    assert text_of(store.get_exact(key, NOW)) == "second"


def test_an_expired_exact_answer_is_ignored_at_read_time(store: AnswerCacheStore) -> None:
    # Given an answer expiring at noon tomorrow
    key = key_for("acme")
    store.put_exact(key, "acme", "chat", answer(expires=NOW + DAY))
    # Then it is served up to the last microsecond before, and not from that instant on
    assert store.get_exact(key, NOW + DAY - timedelta(microseconds=1)) is not None
    assert store.get_exact(key, NOW + DAY) is None
    assert store.get_exact(key, NOW + 2 * DAY) is None


def test_tenants_never_read_each_others_exact_answers(store: AnswerCacheStore) -> None:
    # Given the same request from two tenants: the keys differ
    acme_key, globex_key = key_for("acme"), key_for("globex")
    assert acme_key != globex_key
    store.put_exact(acme_key, "acme", "chat", answer("for acme"))

    # Then globex finds nothing until it stores its own, and each then reads its own
    assert store.get_exact(globex_key, NOW) is None
    store.put_exact(globex_key, "globex", "chat", answer("for globex"))
    acme, globex = store.get_exact(acme_key, NOW), store.get_exact(globex_key, NOW)
    assert (text_of(acme), text_of(globex)) == ("for acme", "for globex")

    # When acme is purged, globex's answer stays
    assert store.purge("acme") == 1
    assert store.get_exact(acme_key, NOW) is None
    assert store.get_exact(globex_key, NOW) == globex


# --- semantic --------------------------------------------------------------------------------------------------


def test_candidates_from_several_buckets_come_once_each_with_their_vectors(store: AnswerCacheStore) -> None:
    # Given three entries of one scope in overlapping buckets, and one of another scope in the same buckets
    store.put_semantic(entry("e1", ("t00-001", "t01-002"), seed=1))
    store.put_semantic(entry("e2", ("t00-001", "t01-003"), seed=2))
    store.put_semantic(entry("e3", ("t01-002", "t02-004"), seed=3))
    store.put_semantic(entry("x1", ("t00-001", "t01-002"), scope=GLOBEX_SCOPE, tenant="globex", seed=4))

    # When a lookup reads four buckets, one of them empty, one of them twice
    found = store.semantic_candidates(ACME_SCOPE, ["t00-001", "t01-002", "t01-003", "t09-3ff", "t00-001"], NOW)

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


def test_candidates_within_a_bucket_come_by_entry_id(store: AnswerCacheStore) -> None:
    # Given entries put in another order than their ids, in one bucket, with ids that share prefixes
    for entry_id in ("e10", "E2", "e1", "e-2", "e2"):
        store.put_semantic(entry(entry_id, ("t00-001",)))
    # Then they come by id, as strings
    assert [c.entry_id for c in store.semantic_candidates(ACME_SCOPE, ["t00-001"], NOW)] == sorted(
        ["e10", "E2", "e1", "e-2", "e2"]
    )


def test_expired_candidates_are_skipped(store: AnswerCacheStore) -> None:
    # Given two entries in the same bucket, one expiring in an hour
    store.put_semantic(entry("old", ("t00-001",), stored=answer(question="old", expires=NOW + timedelta(hours=1))))
    store.put_semantic(entry("new", ("t00-001", "t01-001"), stored=answer(question="new")))

    # Then both are candidates now, and only the live one once the hour has passed
    assert [c.entry_id for c in store.semantic_candidates(ACME_SCOPE, ["t00-001"], NOW)] == ["new", "old"]
    later = NOW + timedelta(hours=1)
    assert [c.entry_id for c in store.semantic_candidates(ACME_SCOPE, ["t00-001", "t01-001"], later)] == ["new"]
    assert store.get_semantic(ACME_SCOPE, "old", later) is None
    assert store.get_semantic(ACME_SCOPE, "old", later - timedelta(microseconds=1)) is not None


def test_get_semantic_reads_the_answer_of_one_entry_of_one_scope(store: AnswerCacheStore) -> None:
    # Given an entry with a streamed answer
    stream = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    stored = StoredAnswer(stream, "text/event-stream; charset=utf-8", MODEL, Decimal("0.0042"), "q", NOW, NOW + DAY)
    store.put_semantic(entry("e1", ("t00-001",), stored=stored))

    # Then it reads back exactly, only under its scope and id
    assert store.get_semantic(ACME_SCOPE, "e1", NOW) == stored
    assert store.get_semantic(GLOBEX_SCOPE, "e1", NOW) is None
    assert store.get_semantic(ACME_SCOPE, "e2", NOW) is None


# --- purge -----------------------------------------------------------------------------------------------------


def test_purging_one_feature_of_a_tenant_deletes_exactly_its_entries(store: AnswerCacheStore) -> None:
    # Given entries of two features of acme, and globex's
    fill(store)

    # When acme's chat entries are purged
    deleted = store.purge("acme", "chat")

    # Then its 2 exact and 2 semantic entries went, and acme's search entries and globex's are still served
    assert deleted == 4
    assert store.get_exact(key_for("acme", "q1"), NOW) is None
    assert store.get_exact(key_for("acme", "q3"), NOW) is not None
    assert store.get_exact(key_for("globex", "q1"), NOW) is not None
    assert [c.entry_id for c in store.semantic_candidates(ACME_SCOPE, ["t00-001", "t01-001", "t01-002"], NOW)] == ["s1"]
    assert store.get_semantic(ACME_SCOPE, "c1", NOW) is None
    assert [c.entry_id for c in store.semantic_candidates(GLOBEX_SCOPE, ["t00-001"], NOW)] == ["g1"]
    assert store.purge("acme", "chat") == 0


def test_purging_a_tenant_counts_its_expired_entries_too(store: AnswerCacheStore) -> None:
    # Given both tenants' entries, one of acme's already expired
    fill(store)
    store.put_exact(key_for("acme", "old"), "acme", "chat", answer(expires=NOW - DAY))

    # When acme is purged
    # Then every entry of acme went, the expired one included, and globex's are still served
    assert store.purge("acme") == 4 + 3
    assert store.semantic_candidates(ACME_SCOPE, ["t00-001", "t01-001", "t01-002"], NOW) == []
    assert store.get_exact(key_for("acme", "q3"), NOW) is None
    assert store.get_exact(key_for("globex", "q1"), NOW) is not None
    assert [c.entry_id for c in store.semantic_candidates(GLOBEX_SCOPE, ["t00-001"], NOW)] == ["g1"]
    assert store.purge("acme") == 0


def test_an_exact_key_written_again_by_another_feature_belongs_to_it(store: AnswerCacheStore) -> None:
    # Given the same request answered for chat, then (the same key) for search
    key = key_for("acme")
    store.put_exact(key, "acme", "chat", answer("chat's"))
    store.put_exact(key, "acme", "search", answer("search's"))

    # When chat is purged, the answer stays: search owns it now
    assert store.purge("acme", "chat") == 0
    assert text_of(store.get_exact(key, NOW)) == "search's"

    # When search is purged, it goes, counted once
    assert store.purge("acme", "search") == 1
    assert store.get_exact(key, NOW) is None
    assert store.purge("acme") == 0


def test_purge_refuses_an_invalid_tag_before_touching_anything(store: AnswerCacheStore) -> None:
    store.put_exact(key_for("acme"), "acme", "chat", answer())
    with pytest.raises(InvalidRequestError, match="feature 'chat#exact' is invalid"):
        store.purge("acme", "chat#exact")
    with pytest.raises(InvalidRequestError, match="tenant 'ac me' is invalid"):
        store.purge("ac me")
    assert store.get_exact(key_for("acme"), NOW) is not None


def test_puts_refuse_invalid_tags_and_store_nothing(store: AnswerCacheStore) -> None:
    with pytest.raises(InvalidRequestError, match="feature 'a#b' is invalid"):
        store.put_exact(key_for("acme"), "acme", "a#b", answer())
    with pytest.raises(InvalidRequestError, match="tenant '' is invalid"):
        store.put_semantic(entry("e1", ("t00-001",), tenant=""))
    assert store.get_exact(key_for("acme"), NOW) is None
    assert store.semantic_candidates(ACME_SCOPE, ["t00-001"], NOW) == []


# --- sizes -----------------------------------------------------------------------------------------------------


def test_a_large_compressible_body_round_trips(store: AnswerCacheStore) -> None:
    # Given a 349 KB JSON answer (the most the domain stores is 350,000 bytes)
    body = message("A long answer.", padding=29_000)
    assert 340_000 < len(body) <= 350_000
    key = key_for("acme")
    # When it is stored exactly and semantically
    store.put_exact(key, "acme", "chat", answer(body=body))
    store.put_semantic(entry("big", ("t00-001",), stored=answer(body=body)))
    # Then both read back byte for byte
    exact, semantic = store.get_exact(key, NOW), store.get_semantic(ACME_SCOPE, "big", NOW)
    assert exact is not None
    assert semantic is not None
    assert exact.body == semantic.body == body


def test_an_entry_the_store_cannot_hold_is_refused_and_nothing_is_stored(store: AnswerCacheStore) -> None:
    # Given a 350,000-byte body that does not compress, and a long question beside it
    noise = np.random.default_rng(7).integers(0, 256, 350_000, dtype=np.uint8).tobytes()
    too_big = answer(body=noise, question="why " * 12_000)
    key = key_for("acme")

    # Then the exact put and the semantic put raise, storing nothing
    with pytest.raises(AnswerTooLargeError, match="exact entry"):
        store.put_exact(key, "acme", "chat", too_big)
    with pytest.raises(AnswerTooLargeError, match="semantic entry e1"):
        store.put_semantic(entry("e1", ("t00-001",), stored=too_big))
    assert store.get_exact(key, NOW) is None
    assert store.semantic_candidates(ACME_SCOPE, ["t00-001"], NOW) == []
    assert store.purge("acme") == 0

    # And the same body with a short question fits
    store.put_exact(key, "acme", "chat", answer(body=noise))
    found = store.get_exact(key, NOW)
    assert found is not None
    assert found.body == noise


# --- a sequence --------------------------------------------------------------------------------------------------


def test_the_fake_and_dynamo_agree_on_a_sequence(store: AnswerCacheStore) -> None:
    # Moved from the DynamoDB suite, where it compared the two stores' answers.
    later = NOW + timedelta(hours=2)

    def candidates(at: datetime) -> list[tuple[str, str]]:
        found = store.semantic_candidates(ACME_SCOPE, ["t01-001", "t00-001", "t01-002"], at)
        return [(c.entry_id, c.question) for c in found]

    fill(store)
    store.put_semantic(entry("short", ("t01-002",), stored=answer(question="short", expires=NOW + timedelta(hours=1))))
    store.put_exact(key_for("acme", "q1"), "acme", "search", answer("moved"))
    answers: list[object] = [
        store.get_exact(key_for("acme", "q1"), NOW),
        store.get_exact(key_for("acme", "nothing"), NOW),
        candidates(NOW),
        candidates(later),
        store.get_semantic(ACME_SCOPE, "short", later),
        store.get_semantic(ACME_SCOPE, "c2", later),
        store.purge("acme", "chat"),
        candidates(NOW),
        store.purge("globex"),
        store.get_exact(key_for("globex", "q1"), NOW),
        store.purge("acme"),
        store.purge("acme"),
    ]

    assert answers[0] == answer("moved")
    assert answers[1] is None
    assert answers[2] == [("c1", "question c1"), ("c2", "question c2"), ("s1", "question s1"), ("short", "short")]
    assert answers[3] == [("c1", "question c1"), ("c2", "question c2"), ("s1", "question s1")]
    assert (answers[4], answers[5]) == (None, answer(question="question c2"))
    # chat's purge: exact q2 (q1 is search's now) and c1, c2 and the expired "short"
    assert answers[6:] == [4, [("s1", "question s1")], 2, None, 3, 0]
