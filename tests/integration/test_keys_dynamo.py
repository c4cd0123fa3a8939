"""DynamoKeyStore against moto: the items at their keys, no plaintext stored, listed by one Query, revoked keys
refused. The port's contract, which the in-memory fake must pass too, is in tests/contract/test_key_store.py."""

import json
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from typing import Any

import boto3
import pytest
from pynamodb.connection.base import Connection

from costgate.dal.keys import DynamoKeyStore, KeyIndexItem, KeyItem
from costgate.dal.ledger import DynamoLedgerStore
from costgate.errors import AuthenticationError
from costgate.gateway.keys import KeyCache, authenticate, hash_key, issue_key, list_keys, revoke_key
from tests.fakes.accounting import make_entry
from tests.fakes.clock import NOW


@pytest.fixture
def store(ledger_table: str) -> DynamoKeyStore:
    return DynamoKeyStore()


def _raw_items(table: str) -> list[dict[str, Any]]:
    """Every item in the table as DynamoDB returns it, read with plain boto3 (test-only Scan)."""
    client = boto3.client("dynamodb")
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    while True:
        page = client.scan(**kwargs)
        items.extend(page["Items"])
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def test_the_items_follow_the_documented_key_patterns(store: DynamoKeyStore) -> None:
    # When a key is issued
    api_key, key = issue_key(store, tenant="acme", now=NOW)
    key_hash = hash_key(api_key)
    # Then the key sits at PK KEY#<sha256> / SK KEY and the index at PK KEYS / SK <key_id>
    item = KeyItem.get(f"KEY#{key_hash}", "KEY")
    assert (item.key_id, item.tenant) == (key.key_id, "acme")
    assert not {"feature", "revoked_at", "daily_budget_usd", "monthly_budget_usd"} & set(item.serialize())
    index = KeyIndexItem.get("KEYS", key.key_id)
    assert (index.key_hash, index.tenant, index.created_at) == (key_hash, "acme", NOW)


def test_no_item_in_the_table_contains_the_plaintext_key_or_its_secret(
    store: DynamoKeyStore, ledger_table: str
) -> None:
    # Given two keys issued, one of them revoked
    api_key, key = issue_key(store, tenant="acme", daily_budget_usd=Decimal(5), now=NOW)
    other_key, _ = issue_key(store, tenant="globex", feature="chat", now=NOW)
    revoke_key(store, key.key_id, NOW + timedelta(minutes=1))
    # When the raw table is read with boto3
    raw = json.dumps(_raw_items(ledger_table))
    # Then neither key, nor any secret part of one, appears anywhere; only their hashes do
    for plaintext in (api_key, other_key):
        secret = plaintext.split("_", 2)[2]
        assert plaintext not in raw
        assert secret not in raw
        assert secret[:16] not in raw
        assert hash_key(plaintext) in raw


def test_list_reads_every_key_through_the_index(store: DynamoKeyStore) -> None:
    # Given keys for two tenants created out of order
    _, globex = issue_key(store, tenant="globex", now=NOW)
    _, acme_late = issue_key(store, tenant="acme", monthly_budget_usd=Decimal("99.99"), now=NOW + timedelta(hours=1))
    _, acme_early = issue_key(store, tenant="acme", now=NOW)
    # When they are listed
    listed = list_keys(store)
    # Then all three come back complete, by tenant then creation time
    assert listed == [acme_early, acme_late, globex]


def test_list_is_one_query_of_the_index_partition_never_a_scan(
    store: DynamoKeyStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given two keys
    issue_key(store, tenant="acme", now=NOW)
    issue_key(store, tenant="globex", now=NOW)
    # When they are listed while every DynamoDB operation is recorded
    operations: list[str] = []
    original = Connection.dispatch

    def recording(self: Connection, operation_name: str, operation_kwargs: dict[str, Any]) -> Any:
        operations.append(operation_name)
        return original(self, operation_name, operation_kwargs)

    monkeypatch.setattr(Connection, "dispatch", recording)
    assert len(store.list_keys()) == 2
    # Then it was one Query and one BatchGetItem, and no Scan
    assert operations == ["Query", "BatchGetItem"]


def test_a_ledger_row_in_the_same_table_does_not_show_up_as_a_key(store: DynamoKeyStore) -> None:
    # Given a ledger row beside a key
    DynamoLedgerStore().record(make_entry("req-1"))
    _, key = issue_key(store, tenant="acme", now=NOW)
    # Then only the key is listed
    assert store.list_keys() == [key]


def test_revoke_stamps_the_stored_key_and_authentication_refuses_it(store: DynamoKeyStore) -> None:
    # Given a key that authenticates
    api_key, key = issue_key(store, tenant="acme", now=NOW)
    assert authenticate(store, {"x-api-key": api_key}, NOW, cache=KeyCache()) == key
    # When it is revoked
    at = NOW + timedelta(minutes=5)
    revoked = revoke_key(store, key.key_id, at)
    # Then the stored key carries the revocation time and a cold container refuses it
    assert revoked == replace(key, revoked_at=at)
    assert store.find(hash_key(api_key)) == revoked
    with pytest.raises(AuthenticationError, match="revoked"):
        authenticate(store, {"x-api-key": api_key}, at, cache=KeyCache())
    # And it still lists, as revoked
    assert store.list_keys() == [revoked]


def test_revoking_an_unknown_key_id_returns_none_and_writes_nothing(store: DynamoKeyStore, ledger_table: str) -> None:
    assert store.revoke("0123456789ab", NOW) is None
    assert _raw_items(ledger_table) == []
