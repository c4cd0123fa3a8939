"""Gateway keys and per-feature configuration, as the gateway reads them."""

from datetime import datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from costgate.gateway.features import FeatureConfig
    from costgate.gateway.model import GatewayKey


class KeyStore(Protocol):
    """Gateway keys by the sha256 of the whole key; the store never sees the key itself."""

    def create(self, key: "GatewayKey", key_hash: str) -> None:
        """Store the key under its hash, atomically with whatever lists it by key_id.

        Raises InvalidRequestError, storing nothing, when that hash or that key_id already exists.
        """
        ...

    def find(self, key_hash: str) -> "GatewayKey | None":
        """The key stored under this hash, revoked or not (strongly consistent); None if there is none."""
        ...

    def list_keys(self) -> list["GatewayKey"]:
        """Every key, revoked ones included, in no particular order."""
        ...

    def revoke(self, key_id: str, at: datetime) -> "GatewayKey | None":
        """Mark the key revoked at `at` and return it as stored; None if no key has this key_id.

        Revoking a revoked key changes nothing and returns it with its first revocation time.
        """
        ...


class FeatureStore(Protocol):
    """Per-feature configuration (routing and prompt caching)."""

    def get(self, feature: str) -> "FeatureConfig | None":
        """The feature's stored configuration; None if it has none. May be up to 30 s stale."""
        ...

    def put(self, config: "FeatureConfig") -> None:
        """Create or replace the feature's configuration."""
        ...

    def delete(self, feature: str) -> bool:
        """Delete the feature's configuration; False, changing nothing, if there is none."""
        ...

    def list_configs(self) -> list["FeatureConfig"]:
        """Every stored configuration, by feature name."""
        ...


class ResponseSink(Protocol):
    """Where a streamed answer's body goes: the function's response stream (`costgate.runtime.stream`).

    Writes go out at once. A client that has gone away is not an error: writes are dropped from then
    on and `client_gone` says so, so the gateway can still read Claude to the end and record the usage.
    """

    client_gone: bool

    def write(self, data: bytes) -> None: ...

    def end(self) -> None:
        """Complete the response; the client has all of it (later writes are a bug)."""
        ...
