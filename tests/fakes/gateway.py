"""In-memory gateway key and feature configuration stores."""

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from costgate.accounting.ledger import validate_tag
from costgate.errors import InvalidRequestError
from costgate.gateway.features import FeatureConfig
from costgate.gateway.model import GatewayKey


class InMemoryKeyStore:
    """KeyStore in two dicts: keys by hash, hashes by key_id.

    Same contract as DynamoKeyStore: a hash or key_id already stored is refused, storing nothing;
    revoking keeps the first revocation time. `lookups` records every hash `find` was asked for.
    """

    def __init__(self) -> None:
        self.keys: dict[str, GatewayKey] = {}
        self.hashes: dict[str, str] = {}
        self.lookups: list[str] = []

    def create(self, key: GatewayKey, key_hash: str) -> None:
        if key_hash in self.keys or key.key_id in self.hashes:
            raise InvalidRequestError(f"a gateway key with id {key.key_id} or the same hash already exists")
        self.keys[key_hash] = key
        self.hashes[key.key_id] = key_hash

    def find(self, key_hash: str) -> GatewayKey | None:
        self.lookups.append(key_hash)
        return self.keys.get(key_hash)

    def list_keys(self) -> list[GatewayKey]:
        return list(self.keys.values())

    def revoke(self, key_id: str, at: datetime) -> GatewayKey | None:
        key_hash = self.hashes.get(key_id)
        if key_hash is None:
            return None
        key = self.keys[key_hash]
        if key.revoked_at is None:
            key = self.keys[key_hash] = replace(key, revoked_at=at)
        return key


class InMemoryFeatureStore:
    """FeatureStore in a dict by feature name, never stale. `calls` lists every port method called."""

    def __init__(self, configs: Sequence[FeatureConfig] = ()) -> None:
        self.configs: dict[str, FeatureConfig] = {c.feature: c for c in configs}
        self.calls: list[str] = []

    def get(self, feature: str) -> FeatureConfig | None:
        self.calls.append("get")
        return self.configs.get(validate_tag(feature, "feature"))

    def put(self, config: FeatureConfig) -> None:
        self.calls.append("put")
        self.configs[config.feature] = config

    def delete(self, feature: str) -> bool:
        self.calls.append("delete")
        return self.configs.pop(validate_tag(feature, "feature"), None) is not None

    def list_configs(self) -> list[FeatureConfig]:
        self.calls.append("list_configs")
        return [self.configs[name] for name in sorted(self.configs)]
