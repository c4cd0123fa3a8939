"""Ports: the small interfaces domain services use to reach the outside world.

Production adapters live in `costgate.dal`; unit tests use in-memory fakes.
"""

from collections.abc import Iterator, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from costgate.answer_cache import SemanticCandidate, SemanticEntry, StoredAnswer
    from costgate.budgets import Budget, BudgetPeriod, Hold
    from costgate.features import FeatureConfig
    from costgate.keys import GatewayKey
    from costgate.ledger import LedgerEntry, Rollup
    from costgate.prompt_cache import GapHistogram, PrefixStats
    from costgate.upstream import UpstreamResponse


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware."""
        ...


class LedgerStore(Protocol):
    def record(self, entry: "LedgerEntry", holds: "Sequence[Hold]" = ()) -> bool:
        """Store the entry, add it to its daily rollup and settle its budget holds, atomically.

        An entry with `prompt_cache` also adds that use to its prefix's totals and, when it carries a
        gap, one count to its feature's gap histogram, in the same transaction.

        Settling turns each hold into the entry's exact cost. Returns False, changing nothing (the
        holds stay held: the caller releases them), when the request id is already stored.
        """
        ...

    def rollups(self, first: date, last: date) -> Iterator["Rollup"]:
        """Every rollup for the UTC days first..last, both included."""
        ...


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


class Upstream(Protocol):
    def post(self, path: str, body: bytes, headers: Mapping[str, str], deadline: float) -> "UpstreamResponse":
        """POST `body` (bytes, forwarded untouched) to the Claude API at `path` (e.g. "/v1/messages?beta=true").

        Of `headers` (the client's; names in any case) only `anthropic-version` and `anthropic-beta` are
        forwarded; costgate's own Claude key authenticates. Retryable failures are retried with backoff;
        `deadline` is a `time.monotonic()` instant after which no attempt may start. Returns the last
        HTTP response as received, error statuses included; raises `UpstreamUnavailableError` when no
        attempt got an HTTP response.
        """
        ...


class BudgetStore(Protocol):
    """Budget definitions and, per budget window, a counter of what is committed (spent + held)."""

    def definitions(self, tenant: str, feature: str) -> list["Budget"]:
        """The tenant's budgets and this feature's (key budgets come from the key). May be up to 30 s stale."""
        ...

    def put_definition(self, budget: "Budget") -> None:
        """Create or replace a tenant or feature budget (InvalidRequestError for a key budget)."""
        ...

    def delete_definition(self, scope: str, period: "BudgetPeriod") -> bool:
        """Delete a tenant or feature budget; False, changing nothing, if there is none."""
        ...

    def list_definitions(self) -> list["Budget"]:
        """Every tenant and feature budget, by tenant, then scope, then period."""
        ...

    def reserve(self, holds: Sequence["Hold"]) -> None:
        """Add every hold to its window's committed amount, all or none, atomically.

        A hold fits when committed + amount <= the budget's limit at the moment it is written, so
        concurrent reservations never take a window past its limit. Raises BudgetExceededError,
        holding nothing anywhere, naming the first budget that did not fit and what it has left.
        """
        ...

    def release(self, holds: Sequence["Hold"]) -> None:
        """Give back every hold's amount: the request never reached Claude or was a duplicate."""
        ...

    def remaining(self, holds: Sequence["Hold"]) -> Decimal | None:
        """The least limit − committed (never below 0) among the holds' windows; None for no holds."""
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


class PromptCacheStore(Protocol):
    """What the prompt-cache policy has observed: per prefix, and the gap histogram per feature.

    Written only through `LedgerStore.record` (with the request's ledger row); read here.
    """

    def last_seen(self, feature: str, prefix_key: str) -> "datetime | None":
        """When this feature last sent this prefix (any request recorded with it); None if never."""
        ...

    def gap_histogram(self, feature: str) -> "GapHistogram":
        """The feature's observed gaps between requests with the same prefix. May be up to 60 s stale."""
        ...

    def prefixes(self, feature: str | None = None) -> list["PrefixStats"]:
        """Every tracked prefix (of one feature, or all), by feature, then net saving, lowest first."""
        ...


class AnswerCacheStore(Protocol):
    """Stored answers: exact entries by key, semantic entries by scope and LSH bucket.

    Every read ignores entries whose `expires_at` has passed (DynamoDB's TTL deletes them later).
    """

    def get_exact(self, key: str, now: datetime) -> "StoredAnswer | None": ...

    def put_exact(self, key: str, tenant: str, feature: str, answer: "StoredAnswer") -> None:
        """Store (or replace) the answer under the key, indexed for `purge` by tenant and feature."""
        ...

    def semantic_candidates(self, scope: str, bucket_keys: Sequence[str], now: datetime) -> list["SemanticCandidate"]:
        """Every live entry of the scope in any of the buckets, each once: one Query per bucket."""
        ...

    def get_semantic(self, scope: str, entry_id: str, now: datetime) -> "StoredAnswer | None": ...

    def put_semantic(self, entry: "SemanticEntry") -> None:
        """Store the entry (its answer once, its vector and question in every bucket), indexed for `purge`."""
        ...

    def purge(self, tenant: str, feature: str | None = None) -> int:
        """Delete every entry of the tenant (or of one feature of it), exact and semantic; the count deleted."""
        ...
