"""Gateway keys with the in-memory store: format, hashing, headers, issue/authenticate/revoke and the 30 s cache."""

import hashlib
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from costgate.errors import AuthenticationError, InvalidRequestError, NotFoundError
from costgate.gateway import keys
from costgate.gateway.keys import KeyCache, authenticate, hash_key, issue_key, list_keys, presented_key, revoke_key
from costgate.gateway.model import GatewayKey
from tests.fakes.clock import NOW
from tests.fakes.gateway import InMemoryKeyStore

KEY_FORMAT = re.compile(r"cg_[0-9a-f]{12}_[A-Za-z0-9_-]{43}")


@pytest.fixture(autouse=True)
def cold_container() -> Iterator[None]:
    """Each test starts with an empty warm-container cache, as a fresh Lambda instance does."""
    keys._WARM_CACHE.clear()
    yield
    keys._WARM_CACHE.clear()


@pytest.fixture
def store() -> InMemoryKeyStore:
    return InMemoryKeyStore()


def _issue(store: InMemoryKeyStore, tenant: str = "acme", **kwargs: Any) -> tuple[str, GatewayKey]:
    return issue_key(store, tenant=tenant, now=NOW, **kwargs)


# --- format and hashing ---------------------------------------------------------------------------


def test_an_issued_key_has_the_documented_format_and_its_id_is_its_second_part(store: InMemoryKeyStore) -> None:
    # When a key is issued
    api_key, key = _issue(store)
    # Then it reads cg_<12 hex>_<43 url-safe characters> and its id is the 12 hex
    assert KEY_FORMAT.fullmatch(api_key)
    assert api_key.startswith(f"cg_{key.key_id}_")
    assert re.fullmatch(r"[0-9a-f]{12}", key.key_id)


def test_every_issued_key_is_different(store: InMemoryKeyStore) -> None:
    # When many keys are issued
    issued = [_issue(store) for _ in range(200)]
    # Then no two keys, and no two ids, are the same
    assert len({api_key for api_key, _ in issued}) == 200
    assert len({key.key_id for _, key in issued}) == 200


def test_the_store_receives_the_sha256_of_the_whole_key_and_never_the_key(store: InMemoryKeyStore) -> None:
    # When a key is issued
    api_key, key = _issue(store)
    # Then the store holds it under sha256(whole key) and nothing it holds contains the key or its secret
    expected = hashlib.sha256(api_key.encode()).hexdigest()
    assert hash_key(api_key) == expected
    assert list(store.keys) == [expected]
    assert store.hashes == {key.key_id: expected}
    secret = api_key.removeprefix(f"cg_{key.key_id}_")
    assert secret not in repr(store.keys) + repr(store.hashes)


def test_hash_key_is_64_lowercase_hex_and_distinguishes_one_character() -> None:
    assert re.fullmatch(r"[0-9a-f]{64}", hash_key("cg_0123456789ab_x"))
    assert hash_key("cg_0123456789ab_x") != hash_key("cg_0123456789ab_y")


# --- headers --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"x-api-key": "cg_k"}, "cg_k"),
        ({"authorization": "Bearer cg_k"}, "cg_k"),
        ({"authorization": "bearer cg_k"}, "cg_k"),
        ({"authorization": "BEARER cg_k"}, "cg_k"),
        ({"authorization": "  Bearer   cg_k  "}, "cg_k"),
        ({"x-api-key": "cg_from_header", "authorization": "Bearer cg_from_bearer"}, "cg_from_header"),
        ({"x-api-key": "", "authorization": "Bearer cg_from_bearer"}, "cg_from_bearer"),
        ({"x-api-key": "   ", "authorization": "Bearer cg_from_bearer"}, "cg_from_bearer"),
        ({}, None),
        ({"x-api-key": ""}, None),
        ({"authorization": ""}, None),
        ({"authorization": "Bearer"}, None),
        ({"authorization": "Bearer   "}, None),
        ({"authorization": "Basic Y2dfazp4"}, None),
        ({"authorization": "cg_k"}, None),
        ({"content-type": "application/json"}, None),
    ],
)
def test_presented_key_reads_x_api_key_first_then_a_bearer_token(headers: dict[str, str], expected: str | None) -> None:
    assert presented_key(headers) == expected


# --- issue ----------------------------------------------------------------------------------------


def test_issue_stores_the_tenant_feature_exact_budgets_and_utc_creation_time(store: InMemoryKeyStore) -> None:
    # Given a creation time in another zone
    now = datetime(2026, 11, 20, 14, 30, tzinfo=timezone(timedelta(hours=2)))
    # When a key with budgets is issued
    api_key, key = issue_key(
        store,
        tenant="acme",
        feature="support-bot",
        daily_budget_usd=Decimal("12.345678901"),
        monthly_budget_usd=Decimal("300"),
        now=now,
    )
    # Then the stored key is exactly what was asked, created at the same instant in UTC
    assert store.find(hash_key(api_key)) == key
    assert key == GatewayKey(
        key_id=key.key_id,
        tenant="acme",
        feature="support-bot",
        daily_budget_usd=Decimal("12.345678901"),
        monthly_budget_usd=Decimal("300"),
        created_at=datetime(2026, 11, 20, 12, 30, tzinfo=UTC),
    )
    assert key.created_at.tzinfo is UTC


def test_as_json_has_exact_money_strings_and_no_key_material(store: InMemoryKeyStore) -> None:
    # Given an issued key
    api_key, key = _issue(store, feature="chat", daily_budget_usd=Decimal("0.50"), monthly_budget_usd=Decimal("1E+3"))
    # When it is listed as JSON
    listed = key.as_json()
    # Then money is an exact plain decimal string, and neither the key nor its hash appears
    assert listed == {
        "key_id": key.key_id,
        "tenant": "acme",
        "feature": "chat",
        "daily_budget_usd": "0.5",
        "monthly_budget_usd": "1000",
        "created_at": "2026-11-20T12:00:00+00:00",
        "revoked_at": None,
    }
    assert api_key not in repr(listed)
    assert hash_key(api_key) not in repr(listed)


def test_issue_without_budgets_or_feature_stores_none(store: InMemoryKeyStore) -> None:
    _, key = _issue(store)
    assert (key.feature, key.daily_budget_usd, key.monthly_budget_usd) == (None, None, None)
    assert key.as_json()["daily_budget_usd"] is None


@pytest.mark.parametrize("tenant", ["", "has space", "a#b", "-leading", "x" * 65])
def test_issue_refuses_a_tenant_that_is_not_a_tag(store: InMemoryKeyStore, tenant: str) -> None:
    with pytest.raises(InvalidRequestError, match="tenant"):
        _issue(store, tenant=tenant)
    assert store.keys == {}


def test_issue_refuses_a_feature_that_is_not_a_tag(store: InMemoryKeyStore) -> None:
    with pytest.raises(InvalidRequestError, match="feature"):
        _issue(store, feature="a#b")
    assert store.keys == {}


@pytest.mark.parametrize(
    "budget",
    [
        Decimal(0),
        Decimal("-1"),
        Decimal("-0.01"),
        Decimal("NaN"),
        Decimal("Infinity"),
        5.0,
        5,
        "5",
        Decimal("1." + "1" * 40),
    ],
)
@pytest.mark.parametrize("field", ["daily_budget_usd", "monthly_budget_usd"])
def test_issue_refuses_a_budget_that_is_not_a_positive_decimal(
    store: InMemoryKeyStore, field: str, budget: Any
) -> None:
    with pytest.raises(InvalidRequestError, match="budget"):
        _issue(store, **{field: budget})
    assert store.keys == {}


def test_issue_refuses_a_naive_time(store: InMemoryKeyStore) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        issue_key(store, tenant="acme", now=datetime(2026, 11, 20, 12, 0))


# --- authenticate ---------------------------------------------------------------------------------


def test_a_valid_key_authenticates_as_its_tenant_by_either_header(store: InMemoryKeyStore) -> None:
    # Given an issued key
    api_key, key = _issue(store, tenant="globex")
    # When it is presented as x-api-key, or as a Bearer token
    by_header = authenticate(store, {"x-api-key": api_key}, NOW)
    by_bearer = authenticate(store, {"authorization": f"Bearer {api_key}"}, NOW, cache=KeyCache())
    # Then both resolve to the key, bound to its tenant
    assert by_header == by_bearer == key
    assert by_header.tenant == "globex"


def test_no_key_is_an_authentication_error_that_says_how_to_send_one(store: InMemoryKeyStore) -> None:
    with pytest.raises(AuthenticationError) as raised:
        authenticate(store, {"authorization": "Basic abc"}, NOW)
    assert raised.value.message == "missing API key: send it as x-api-key or Authorization: Bearer"
    assert raised.value.status == 401
    assert store.lookups == []


@pytest.mark.parametrize(
    "presented",
    [
        "cg_0123456789ab_" + "A" * 43,  # well formed, never issued
        "sk-ant-api03-" + "Z" * 40,  # a Claude key sent by mistake
        "cg_0123456789AB_" + "A" * 43,  # upper-case id
        "cg_0123456789ab_" + "A" * 42,  # secret too short
        "cg_0123456789ab_" + "A" * 43 + "x",  # too long
        "cg_0123456789ab_" + "A" * 42 + "!",  # a character token_urlsafe never yields
        "hello",
    ],
)
def test_an_unknown_or_malformed_key_is_invalid_and_never_echoed(store: InMemoryKeyStore, presented: str) -> None:
    # Given a store with a real key in it
    _issue(store)
    # When another key is presented
    with pytest.raises(AuthenticationError) as raised:
        authenticate(store, {"x-api-key": presented}, NOW)
    # Then the error says only that the key is invalid: no part of it is echoed
    assert raised.value.message == "invalid API key"
    assert presented not in str(raised.value)
    assert presented[-10:] not in str(raised.value)


def test_a_malformed_key_is_refused_without_a_store_lookup(store: InMemoryKeyStore) -> None:
    with pytest.raises(AuthenticationError):
        authenticate(store, {"x-api-key": "not-a-costgate-key"}, NOW)
    assert store.lookups == []


def test_a_key_with_one_character_changed_is_invalid(store: InMemoryKeyStore) -> None:
    # Given an issued key and the same key with its last character changed
    api_key, _ = _issue(store)
    tampered = api_key[:-1] + ("A" if api_key[-1] != "A" else "B")
    # Then the tampered key does not authenticate
    with pytest.raises(AuthenticationError, match=r"^invalid API key$"):
        authenticate(store, {"x-api-key": tampered}, NOW)


def test_a_revoked_key_is_refused_with_a_message_that_says_so(store: InMemoryKeyStore) -> None:
    # Given a key revoked before it was ever used
    api_key, key = _issue(store)
    revoke_key(store, key.key_id, NOW)
    # When it is presented
    with pytest.raises(AuthenticationError) as raised:
        authenticate(store, {"authorization": f"Bearer {api_key}"}, NOW + timedelta(seconds=1))
    # Then it is a 401 that says the key was revoked, without echoing it
    assert raised.value.status == 401
    assert "revoked" in raised.value.message
    assert api_key not in raised.value.message
    assert key.key_id not in raised.value.message


# --- the warm-container cache ---------------------------------------------------------------------


def test_a_found_key_is_served_from_the_cache_for_30_seconds_then_looked_up_again(store: InMemoryKeyStore) -> None:
    # Given a key authenticated once
    api_key, _ = _issue(store)
    headers = {"x-api-key": api_key}
    authenticate(store, headers, NOW)
    assert len(store.lookups) == 1
    # When it is presented again within 30 s
    authenticate(store, headers, NOW + timedelta(seconds=29, microseconds=999_999))
    # Then the store is not asked again
    assert len(store.lookups) == 1
    # And at 30 s the cached entry has expired: the store is asked again
    authenticate(store, headers, NOW + timedelta(seconds=30))
    assert len(store.lookups) == 2


def test_a_revocation_takes_effect_within_30_seconds_in_a_warm_container(store: InMemoryKeyStore) -> None:
    # Given a key in use in a warm container
    api_key, key = _issue(store)
    headers = {"x-api-key": api_key}
    authenticate(store, headers, NOW)
    # When it is revoked
    revoke_key(store, key.key_id, NOW + timedelta(seconds=1))
    # Then the container may still accept it from its cache until 30 s after the lookup
    assert authenticate(store, headers, NOW + timedelta(seconds=29)) == key
    # But not after
    with pytest.raises(AuthenticationError, match="revoked"):
        authenticate(store, headers, NOW + timedelta(seconds=30))


def test_misses_are_not_cached_so_a_new_key_works_at_once(store: InMemoryKeyStore) -> None:
    # Given a well-formed key that is not (yet) in the store, presented twice
    api_key = "cg_0123456789ab_" + "A" * 43
    for _ in range(2):
        with pytest.raises(AuthenticationError, match=r"^invalid API key$"):
            authenticate(store, {"x-api-key": api_key}, NOW)
    # Then the store was asked both times
    assert store.lookups == [hash_key(api_key)] * 2
    # And once the key exists, it authenticates at the same instant
    key = GatewayKey("0123456789ab", "acme", None, None, None, created_at=NOW)
    store.create(key, hash_key(api_key))
    assert authenticate(store, {"x-api-key": api_key}, NOW) == key


def test_a_clock_that_goes_back_does_not_extend_the_cache(store: InMemoryKeyStore) -> None:
    api_key, _ = _issue(store)
    authenticate(store, {"x-api-key": api_key}, NOW)
    authenticate(store, {"x-api-key": api_key}, NOW - timedelta(seconds=1))
    assert len(store.lookups) == 2


def test_the_cache_stays_bounded_and_drops_the_oldest_lookup_first() -> None:
    # Given a cache of two entries, full
    cache = KeyCache(max_entries=2)
    first, second, third = (GatewayKey(f"{n:012x}", "acme", None, None, None, created_at=NOW) for n in range(3))
    cache.put("h1", first, NOW)
    cache.put("h2", second, NOW + timedelta(seconds=1))
    # When a third key is cached
    cache.put("h3", third, NOW + timedelta(seconds=2))
    # Then the oldest lookup is gone and the others remain
    at = NOW + timedelta(seconds=3)
    assert [cache.get(h, at) for h in ("h1", "h2", "h3")] == [None, second, third]


# --- revoke and list ------------------------------------------------------------------------------


def test_revoke_stamps_the_key_and_a_second_revoke_keeps_the_first_time(store: InMemoryKeyStore) -> None:
    # Given an issued key
    _, key = _issue(store)
    # When it is revoked twice
    first = revoke_key(store, key.key_id, NOW + timedelta(hours=1))
    second = revoke_key(store, key.key_id, NOW + timedelta(hours=2))
    # Then both calls succeed and report the first revocation time
    assert first.revoked_at == second.revoked_at == NOW + timedelta(hours=1)
    assert first.revoked
    assert first.as_json()["revoked_at"] == "2026-11-20T13:00:00+00:00"


def test_revoking_an_unknown_key_is_not_found(store: InMemoryKeyStore) -> None:
    with pytest.raises(NotFoundError, match="0123456789ab"):
        revoke_key(store, "0123456789ab", NOW)


def test_revoke_refuses_a_whole_api_key_without_echoing_it(store: InMemoryKeyStore) -> None:
    # Given an operator who pastes the whole key instead of its id
    api_key, key = _issue(store)
    # Then revoke refuses, says what a key id is, and does not print the key
    with pytest.raises(InvalidRequestError) as raised:
        revoke_key(store, api_key, NOW)
    assert api_key not in raised.value.message
    assert store.find(hash_key(api_key)) == key  # not revoked


def test_list_keys_sorts_by_tenant_then_creation_and_includes_revoked_keys(store: InMemoryKeyStore) -> None:
    # Given keys created out of order across tenants, one of them revoked
    _, globex = issue_key(store, tenant="globex", now=NOW)
    _, acme_late = issue_key(store, tenant="acme", now=NOW + timedelta(days=1))
    _, acme_early = issue_key(store, tenant="acme", now=NOW - timedelta(days=1))
    revoked = revoke_key(store, acme_late.key_id, NOW + timedelta(days=2))
    # Then they list by tenant, then creation time, revoked included
    assert list_keys(store) == [acme_early, revoked, globex]


def test_issue_accepts_a_budget_of_38_significant_digits_the_most_dynamodb_stores(store: InMemoryKeyStore) -> None:
    budget = Decimal("1." + "1" * 37 + "000")
    _, key = _issue(store, daily_budget_usd=budget)
    assert key.daily_budget_usd == budget
