"""Gateway keys in DynamoDB: the key by its hash, and an index of every key by key_id.

Authentication reads one item by its hash. Listing reads the index partition (one Query, never a
Scan: the table also holds every ledger row) and then the keys themselves with BatchGetItem.
The plaintext key is never written; the hash is the only link from a presented key to its item.
"""

from datetime import datetime

from pynamodb.attributes import UnicodeAttribute, UTCDateTimeAttribute
from pynamodb.exceptions import DoesNotExist, TransactWriteError
from pynamodb.transactions import TransactWrite

from costgate.dal.table import CostgateItem, DecimalAttribute, transaction_connection
from costgate.errors import InvalidRequestError
from costgate.gateway.model import GatewayKey
from costgate.observability import logger

_INDEX_PK = "KEYS"
_KEY_SK = "KEY"


class KeyItem(CostgateItem, discriminator="key"):
    """One gateway key, found by the hash of the presented key.  PK: KEY#<sha256 hex>  SK: KEY"""

    key_id = UnicodeAttribute()
    tenant = UnicodeAttribute()
    feature = UnicodeAttribute(null=True)
    daily_budget_usd = DecimalAttribute(null=True)
    monthly_budget_usd = DecimalAttribute(null=True)
    created_at = UTCDateTimeAttribute()
    revoked_at = UTCDateTimeAttribute(null=True)


class KeyIndexItem(CostgateItem, discriminator="key_index"):
    """Every key by its id, for listing and revoking.  PK: KEYS  SK: <key_id>

    Written in the same transaction as its KeyItem, each on condition that it does not exist yet,
    so neither a key_id nor a hash can be issued twice. One partition for all keys: keys are few
    (thousands, not millions) and written rarely.
    """

    key_hash = UnicodeAttribute()
    tenant = UnicodeAttribute()
    created_at = UTCDateTimeAttribute()


def _key_pk(key_hash: str) -> str:
    return f"KEY#{key_hash}"


class DynamoKeyStore:
    """KeyStore over the single table."""

    def create(self, key: GatewayKey, key_hash: str) -> None:
        item = KeyItem(
            _key_pk(key_hash),
            _KEY_SK,
            key_id=key.key_id,
            tenant=key.tenant,
            feature=key.feature,
            daily_budget_usd=key.daily_budget_usd,
            monthly_budget_usd=key.monthly_budget_usd,
            created_at=key.created_at,
            revoked_at=key.revoked_at,
        )
        index = KeyIndexItem(_INDEX_PK, key.key_id, key_hash=key_hash, tenant=key.tenant, created_at=key.created_at)
        try:
            with TransactWrite(connection=transaction_connection()) as transaction:
                transaction.save(item, condition=KeyItem.pk.does_not_exist())
                transaction.save(index, condition=KeyIndexItem.pk.does_not_exist())
        except TransactWriteError as error:
            if "ConditionalCheckFailed" in _reasons(error):
                raise InvalidRequestError(
                    f"a gateway key with id {key.key_id} or the same hash already exists"
                ) from None
            raise

    def find(self, key_hash: str) -> GatewayKey | None:
        try:
            item = KeyItem.get(_key_pk(key_hash), _KEY_SK, consistent_read=True)
        except DoesNotExist:
            return None
        return _to_key(item)

    def list_keys(self) -> list[GatewayKey]:
        hashes = [index.key_hash for index in KeyIndexItem.query(_INDEX_PK)]
        keys = [
            _to_key(item) for item in KeyItem.batch_get([(_key_pk(h), _KEY_SK) for h in hashes], consistent_read=True)
        ]
        if len(keys) != len(hashes):
            # Cannot happen through this store (both items are written in one transaction): say so if it does.
            logger.warning("keys: index entries without their key item", extra={"missing": len(hashes) - len(keys)})
        return keys

    def revoke(self, key_id: str, at: datetime) -> GatewayKey | None:
        try:
            index = KeyIndexItem.get(_INDEX_PK, key_id, consistent_read=True)
        except DoesNotExist:
            return None
        pk = _key_pk(index.key_hash)
        try:
            with TransactWrite(connection=transaction_connection()) as transaction:
                # The index entry must still point at this hash when the key item changes.
                transaction.condition_check(
                    KeyIndexItem, _INDEX_PK, key_id, condition=KeyIndexItem.key_hash == index.key_hash
                )
                transaction.update(
                    KeyItem(pk, _KEY_SK),
                    actions=[KeyItem.revoked_at.set(at)],
                    condition=KeyItem.pk.exists() & KeyItem.revoked_at.does_not_exist(),
                )
        except TransactWriteError as error:
            # Already revoked (the first revocation time stays), or the index changed under us.
            if "ConditionalCheckFailed" not in _reasons(error):
                raise
        return self.find(index.key_hash)


def _reasons(error: TransactWriteError) -> list[str | None]:
    return [reason.code if reason else None for reason in error.cancellation_reasons]


def _to_key(item: KeyItem) -> GatewayKey:
    return GatewayKey(
        key_id=item.key_id,
        tenant=item.tenant,
        feature=item.feature,
        daily_budget_usd=item.daily_budget_usd,
        monthly_budget_usd=item.monthly_budget_usd,
        created_at=item.created_at,
        revoked_at=item.revoked_at,
    )
