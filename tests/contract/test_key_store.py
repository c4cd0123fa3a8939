"""KeyStore's contract, for InMemoryKeyStore and DynamoKeyStore: keys found by hash, listed (revoked ones
included), revoked once, and never issued twice under one hash or one key_id."""

from dataclasses import replace
from datetime import timedelta, timezone
from decimal import Decimal

import pytest

from costgate.dal.keys import DynamoKeyStore
from costgate.errors import InvalidRequestError
from costgate.gateway.keys import hash_key, issue_key
from costgate.gateway.model import GatewayKey
from costgate.gateway.ports import KeyStore
from tests.contract.conftest import FAKE
from tests.fakes.clock import NOW
from tests.fakes.gateway import InMemoryKeyStore


@pytest.fixture
def store(table: str) -> KeyStore:
    return InMemoryKeyStore() if table == FAKE else DynamoKeyStore()


def by_id(keys: list[GatewayKey]) -> list[GatewayKey]:
    return sorted(keys, key=lambda key: key.key_id)


def test_a_created_key_is_found_by_its_hash_with_exact_budgets(store: KeyStore) -> None:
    # Given a key issued with budgets that need more digits than a float holds
    api_key, key = issue_key(
        store,
        tenant="acme",
        feature="support-bot",
        daily_budget_usd=Decimal("12.3456789012345678901"),
        monthly_budget_usd=Decimal("0.0000001"),
        now=NOW,
    )
    # When it is looked up by the hash of the presented key
    found = store.find(hash_key(api_key))
    # Then it comes back exactly as issued
    assert found == key
    assert found is not None
    assert found.daily_budget_usd == Decimal("12.3456789012345678901")
    # And a hash nobody issued finds nothing
    assert store.find(hash_key(api_key + "x")) is None


def test_every_key_is_listed_revoked_ones_included(store: KeyStore) -> None:
    # Given keys for two tenants, one revoked
    _, globex = issue_key(store, tenant="globex", now=NOW)
    _, acme_late = issue_key(store, tenant="acme", monthly_budget_usd=Decimal("99.99"), now=NOW + timedelta(hours=1))
    _, acme_early = issue_key(store, tenant="acme", now=NOW)
    revoked = store.revoke(globex.key_id, NOW + timedelta(hours=2))

    # When they are listed (in no particular order)
    listed = store.list_keys()

    # Then all three come back complete
    assert by_id(listed) == by_id([acme_early, acme_late, replace(globex, revoked_at=NOW + timedelta(hours=2))])
    assert revoked in listed


def test_list_of_an_empty_store_is_empty(store: KeyStore) -> None:
    assert store.list_keys() == []


def test_revoke_stamps_the_stored_key_and_returns_it(store: KeyStore) -> None:
    # Given a key
    api_key, key = issue_key(store, tenant="acme", now=NOW)
    # When it is revoked at a time given in UTC+2
    at = (NOW + timedelta(minutes=5)).astimezone(timezone(timedelta(hours=2)))
    revoked = store.revoke(key.key_id, at)
    # Then the key is returned as stored, with the same instant, and found so by its hash
    assert revoked == replace(key, revoked_at=at)
    assert store.find(hash_key(api_key)) == revoked


def test_revoking_twice_keeps_the_first_revocation_time(store: KeyStore) -> None:
    _, key = issue_key(store, tenant="acme", now=NOW)
    first = store.revoke(key.key_id, NOW + timedelta(hours=1))
    second = store.revoke(key.key_id, NOW + timedelta(hours=2))
    assert first is not None
    assert second is not None
    assert first.revoked_at == second.revoked_at == NOW + timedelta(hours=1)
    assert second == first


def test_a_key_created_revoked_stays_revoked_at_its_time(store: KeyStore) -> None:
    # Given a key stored with a revocation time already (an import of a revoked key)
    key = GatewayKey("00aa11bb22cc", "acme", None, None, None, created_at=NOW, revoked_at=NOW + timedelta(minutes=1))
    store.create(key, hash_key("cg_00aa11bb22cc_secret"))
    # When it is revoked again, later
    # Then it keeps its own time
    assert store.revoke(key.key_id, NOW + timedelta(hours=1)) == key


def test_revoking_an_unknown_key_id_returns_none_and_changes_nothing(store: KeyStore) -> None:
    assert store.revoke("0123456789ab", NOW) is None
    assert store.list_keys() == []


def test_the_same_key_id_cannot_be_created_twice_even_with_another_hash(store: KeyStore) -> None:
    # Given a stored key
    api_key, key = issue_key(store, tenant="acme", now=NOW)
    # When a second key with the same id but another hash is created
    impostor = replace(key, tenant="globex")
    with pytest.raises(InvalidRequestError, match="already exists"):
        store.create(impostor, hash_key(api_key + "other"))
    # Then nothing of it was stored
    assert store.find(hash_key(api_key + "other")) is None
    assert store.list_keys() == [key]


def test_the_same_hash_cannot_be_created_twice_even_with_another_id(store: KeyStore) -> None:
    # Given a stored key
    api_key, key = issue_key(store, tenant="acme", now=NOW)
    # When another key id is created under the same hash
    impostor = GatewayKey("fedcba987654", "globex", None, None, None, created_at=NOW)
    with pytest.raises(InvalidRequestError, match="already exists"):
        store.create(impostor, hash_key(api_key))
    # Then the original key is untouched and the impostor's id is unknown
    assert store.find(hash_key(api_key)) == key
    assert store.list_keys() == [key]
    assert store.revoke("fedcba987654", NOW) is None
