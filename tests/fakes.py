"""In-memory fakes of costgate's ports for unit tests, and a builder for the ledger entries they hold."""

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from decimal import Decimal

from costgate.answer_cache import SemanticCandidate, SemanticEntry, StoredAnswer
from costgate.budgets import (
    Budget,
    BudgetExceededError,
    BudgetPeriod,
    Hold,
    feature_scope,
    remaining_in,
    reservation_ceiling,
    tenant_scope,
)
from costgate.cost import Cost, CostComponent, price_usage
from costgate.errors import InvalidRequestError, UpstreamError
from costgate.features import FeatureConfig
from costgate.keys import GatewayKey
from costgate.ledger import LedgerEntry, Rollup, validate_tag
from costgate.prompt_cache import GapBucket, GapHistogram, PrefixStats, PrefixUse
from costgate.usage import TokenUsage
from costgate.vector_index import decode_vector, encode_vector

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)

type RollupKey = tuple[date, str, str, str]


@dataclass
class ManualClock:
    """A Clock that stays where a test puts it (NOW by default)."""

    at: datetime = NOW

    def now(self) -> datetime:
        return self.at


class InMemoryLedgerStore:
    """LedgerStore in two dicts: entries by request id, rollups by (UTC day, tenant, feature, model).

    Same contract as DynamoLedgerStore: a request id already stored changes nothing and returns
    False, whatever the second entry holds (its holds and prompt-cache use included); rollups come day
    by day, then in sort-key order.
    """

    def __init__(
        self, budgets: "InMemoryBudgetStore | None" = None, prompt_cache: "InMemoryPromptCacheStore | None" = None
    ) -> None:
        self.entries: dict[str, LedgerEntry] = {}
        self.rollup_items: dict[RollupKey, Rollup] = {}
        self._budgets = budgets
        self._prompt_cache = prompt_cache

    def record(self, entry: LedgerEntry, holds: Sequence[Hold] = ()) -> bool:
        if entry.request_id in self.entries:
            return False
        if holds:
            if self._budgets is None:
                raise AssertionError("this fake ledger was built without the budget store its holds live in")
            self._budgets.settle(holds, entry.cost.total_usd)
        if entry.prompt_cache is not None:
            if self._prompt_cache is None:
                raise AssertionError("this fake ledger was built without the prompt-cache store its prefix use goes to")
            self._prompt_cache.observe(entry.feature, entry.at, entry.prompt_cache)
        self.entries[entry.request_id] = entry
        key = (entry.day, entry.tenant, entry.feature, entry.model)
        current = self.rollup_items.get(key) or _empty_rollup(key)
        usage = entry.usage
        self.rollup_items[key] = replace(
            current,
            requests=current.requests + 1,
            cost_usd=current.cost_usd + entry.cost.total_usd,
            baseline_cost_usd=current.baseline_cost_usd + entry.baseline_cost_usd,
            input_tokens=current.input_tokens + usage.input_tokens,
            output_tokens=current.output_tokens + usage.output_tokens,
            cache_write_5m_tokens=current.cache_write_5m_tokens + usage.cache_write_5m_tokens,
            cache_write_1h_tokens=current.cache_write_1h_tokens + usage.cache_write_1h_tokens,
            cache_read_tokens=current.cache_read_tokens + usage.cache_read_tokens,
            web_search_requests=current.web_search_requests + usage.web_search_requests,
            savings_usd={
                strategy: current.savings_usd.get(strategy, Decimal(0)) + entry.savings.get(strategy, Decimal(0))
                for strategy in {*current.savings_usd, *entry.savings}
            },
        )
        return True

    def rollups(self, first: date, last: date) -> Iterator[Rollup]:
        # '#' sorts before every character a tag may hold, so tuple order is the table's sort-key order.
        for key in sorted(self.rollup_items):
            if first <= key[0] <= last:
                yield self.rollup_items[key]


def _empty_rollup(key: RollupKey) -> Rollup:
    day, tenant, feature, model = key
    return Rollup(
        day=day,
        tenant=tenant,
        feature=feature,
        model=model,
        requests=0,
        cost_usd=Decimal(0),
        baseline_cost_usd=Decimal(0),
        input_tokens=0,
        output_tokens=0,
        cache_write_5m_tokens=0,
        cache_write_1h_tokens=0,
        cache_read_tokens=0,
        web_search_requests=0,
    )


def make_entry(
    request_id: str,
    *,
    at: datetime = NOW,
    tenant: str = "acme",
    feature: str = "chat",
    model: str = "claude-opus-5-5",
    usage: TokenUsage | None = None,
    cost_usd: str | None = None,
    baseline_usd: str | None = None,
    requested_model: str | None = None,
    route_tier: str | None = None,
    route_reason: str | None = None,
    prompt_cache: PrefixUse | None = None,
) -> LedgerEntry:
    """A ledger entry priced by the real cost engine, or with a literal `cost_usd` (all of it input).

    The baseline defaults to the same usage priced with no prompt caching (or to the literal cost).
    """
    usage = usage or TokenUsage(input_tokens=1000, output_tokens=500)
    if cost_usd is None:
        cost = price_usage(model, usage, at)
        baseline = price_usage(model, usage.without_cache(), at).total_usd
    else:
        total = Decimal(cost_usd)
        components = dict.fromkeys(CostComponent, Decimal(0)) | {CostComponent.INPUT: total}
        cost = Cost(
            model=model,
            total_usd=total,
            components=components,
            price_version="test-literal",
            modifiers=(),
            confirmed=True,
        )
        baseline = total
    if baseline_usd is not None:
        baseline = Decimal(baseline_usd)
    return LedgerEntry(
        request_id=request_id,
        at=at,
        tenant=tenant,
        feature=feature,
        usage=usage,
        cost=cost,
        baseline_cost_usd=baseline,
        requested_model=requested_model,
        route_tier=route_tier,
        route_reason=route_reason,
        prompt_cache=prompt_cache,
    )


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


type CounterKey = tuple[str, BudgetPeriod, str]


class InMemoryBudgetStore:
    """BudgetStore in dicts: definitions by (scope, period), counters by (scope, period, window).

    Same contract as DynamoBudgetStore: a reservation holds on every budget or on none and names the
    first that did not fit; releasing a hold never reserved fails. `settle` does what the ledger's
    transaction does with `settle_updates`. Thread-safe. `calls` lists every port method called.
    """

    def __init__(self, budgets: Sequence[Budget] = ()) -> None:
        self.budgets: dict[tuple[str, BudgetPeriod], Budget] = {(b.scope, b.period): b for b in budgets}
        self.committed: dict[CounterKey, Decimal] = {}
        self.spent: dict[CounterKey, Decimal] = {}
        self.requests: dict[CounterKey, int] = {}
        self.calls: list[str] = []
        self._lock = threading.Lock()

    def definitions(self, tenant: str, feature: str) -> list[Budget]:
        self.calls.append("definitions")
        scopes = {tenant_scope(tenant)} | ({feature_scope(tenant, feature)} if "/" not in tenant else set())
        return [b for b in self._sorted() if b.scope in scopes]

    def put_definition(self, budget: Budget) -> None:
        self.calls.append("put_definition")
        if budget.tenant is None:
            raise InvalidRequestError("key budgets are set on the key (costgate keys create --daily-budget-usd …)")
        self.budgets[(budget.scope, budget.period)] = budget

    def delete_definition(self, scope: str, period: BudgetPeriod) -> bool:
        self.calls.append("delete_definition")
        if Budget(scope, period, Decimal(0)).tenant is None:
            raise InvalidRequestError("key budgets are set on the key (costgate keys create --daily-budget-usd …)")
        return self.budgets.pop((scope, period), None) is not None

    def list_definitions(self) -> list[Budget]:
        self.calls.append("list_definitions")
        return self._sorted()

    def reserve(self, holds: Sequence[Hold]) -> None:
        self.calls.append("reserve")
        with self._lock:
            for hold in holds:
                committed = self.committed.get(_counter(hold), Decimal(0))
                if committed > reservation_ceiling(hold):
                    raise BudgetExceededError(hold.budget, remaining_in(hold.budget, committed), hold.amount_usd)
            for hold in holds:
                key = _counter(hold)
                self.committed[key] = self.committed.get(key, Decimal(0)) + hold.amount_usd

    def release(self, holds: Sequence[Hold]) -> None:
        self.calls.append("release")
        with self._lock:
            for hold in holds:
                if _counter(hold) not in self.committed:
                    raise UpstreamError(
                        f"budgets: cannot release a hold on {hold.budget.label} ({hold.window}) that was never reserved"
                    )
            for hold in holds:
                self.committed[_counter(hold)] -= hold.amount_usd

    def remaining(self, holds: Sequence[Hold]) -> Decimal | None:
        self.calls.append("remaining")
        if not holds:
            return None
        with self._lock:
            return min(remaining_in(h.budget, self.committed.get(_counter(h), Decimal(0))) for h in holds)

    def settle(self, holds: Sequence[Hold], actual_usd: Decimal) -> None:
        """What the ledger's transaction does with settle_updates: committed += actual − held, spent += actual."""
        with self._lock:
            for hold in holds:
                key = _counter(hold)
                self.committed[key] = self.committed.get(key, Decimal(0)) + actual_usd - hold.amount_usd
                self.spent[key] = self.spent.get(key, Decimal(0)) + actual_usd
                self.requests[key] = self.requests.get(key, 0) + 1

    def _sorted(self) -> list[Budget]:
        return sorted(self.budgets.values(), key=lambda b: (b.tenant or "", b.scope, b.period.value))


def _counter(hold: Hold) -> CounterKey:
    return hold.budget.scope, hold.budget.period, hold.window


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


class InMemoryPromptCacheStore:
    """PromptCacheStore in two dicts: prefix totals by (feature, prefix_key), gap histograms by feature.

    Written through `observe`, which does what the ledger's transaction does with prompt_cache_updates
    (InMemoryLedgerStore calls it only for a new request id). Never stale; thread-safe. Seed `gaps`
    directly to test a TTL choice.
    """

    def __init__(self) -> None:
        self.stats: dict[tuple[str, str], PrefixStats] = {}
        self.ttls: dict[tuple[str, str], str | None] = {}
        self.gaps: dict[str, GapHistogram] = {}
        self._lock = threading.Lock()

    def observe(self, feature: str, at: datetime, use: PrefixUse) -> None:
        at = at.astimezone(UTC)
        key = (feature, use.prefix_key)
        with self._lock:
            current = self.stats.get(key)
            self.stats[key] = PrefixStats(
                feature=feature,
                prefix_key=use.prefix_key,
                model=use.model,
                managed_by=use.managed_by,
                first_seen=current.first_seen if current else at,
                last_seen=at,
                requests=(current.requests if current else 0) + 1,
                write_tokens=(current.write_tokens if current else 0) + use.write_tokens,
                read_tokens=(current.read_tokens if current else 0) + use.read_tokens,
                write_premium_usd=(current.write_premium_usd if current else Decimal(0)) + use.write_premium_usd,
                read_saved_usd=(current.read_saved_usd if current else Decimal(0)) + use.read_saved_usd,
            )
            self.ttls[key] = use.ttl
            if use.gap is not None:
                histogram = self.gaps.get(feature, GapHistogram())
                field_name = GapBucket(use.gap).value
                self.gaps[feature] = replace(histogram, **{field_name: getattr(histogram, field_name) + 1})

    def last_seen(self, feature: str, prefix_key: str) -> datetime | None:
        with self._lock:
            stats = self.stats.get((feature, prefix_key))
        return stats.last_seen if stats else None

    def gap_histogram(self, feature: str) -> GapHistogram:
        with self._lock:
            return self.gaps.get(feature, GapHistogram())

    def prefixes(self, feature: str | None = None) -> list[PrefixStats]:
        with self._lock:
            found = [s for s in self.stats.values() if feature is None or s.feature == feature]
        return sorted(found, key=lambda s: (s.feature, s.net_saved_usd, s.prefix_key))


class InMemoryAnswerCacheStore:
    """AnswerCacheStore in three dicts: exact answers by key (with their tenant and feature), semantic
    entries by (scope, entry_id), and bucket members (entry ids) by (scope, bucket_key).

    Same contract as DynamoAnswerCacheStore: reads skip an entry once `now` reaches its expires_at;
    candidates come bucket by bucket in the order asked, by entry id within a bucket, each once, their
    vectors through the table's float16 encoding; purge deletes and counts stored entries (expired ones
    included), and leaves an exact answer that a later put from another feature now owns. Thread-safe.
    """

    def __init__(self) -> None:
        self.exact: dict[str, tuple[str, str, StoredAnswer]] = {}
        self.semantic: dict[tuple[str, str], SemanticEntry] = {}
        self.buckets: dict[tuple[str, str], set[str]] = {}
        self._lock = threading.Lock()

    def get_exact(self, key: str, now: datetime) -> StoredAnswer | None:
        with self._lock:
            found = self.exact.get(key)
        return found[2] if found is not None and now < found[2].expires_at else None

    def put_exact(self, key: str, tenant: str, feature: str, answer: StoredAnswer) -> None:
        validate_tag(tenant, "tenant")
        validate_tag(feature, "feature")
        with self._lock:
            self.exact[key] = (tenant, feature, answer)

    def semantic_candidates(self, scope: str, bucket_keys: Sequence[str], now: datetime) -> list[SemanticCandidate]:
        found: dict[str, SemanticCandidate] = {}
        with self._lock:
            for bucket_key in dict.fromkeys(bucket_keys):
                for entry_id in sorted(self.buckets.get((scope, bucket_key), ())):
                    entry = self.semantic.get((scope, entry_id))
                    if entry_id in found or entry is None or now >= entry.answer.expires_at:
                        continue
                    vector = decode_vector(encode_vector(entry.vector), len(entry.vector))
                    found[entry_id] = SemanticCandidate(entry_id, entry.answer.question, vector)
        return list(found.values())

    def get_semantic(self, scope: str, entry_id: str, now: datetime) -> StoredAnswer | None:
        with self._lock:
            entry = self.semantic.get((scope, entry_id))
        return entry.answer if entry is not None and now < entry.answer.expires_at else None

    def put_semantic(self, entry: SemanticEntry) -> None:
        validate_tag(entry.tenant, "tenant")
        validate_tag(entry.feature, "feature")
        with self._lock:
            self.semantic[(entry.scope, entry.entry_id)] = entry
            for bucket_key in entry.bucket_keys:
                self.buckets.setdefault((entry.scope, bucket_key), set()).add(entry.entry_id)

    def purge(self, tenant: str, feature: str | None = None) -> int:
        validate_tag(tenant, "tenant")
        if feature is not None:
            validate_tag(feature, "feature")

        def purged(owner: str, of_feature: str) -> bool:
            return owner == tenant and feature in (None, of_feature)

        with self._lock:
            exact = [key for key, (owner, of_feature, _) in self.exact.items() if purged(owner, of_feature)]
            semantic = [key for key, entry in self.semantic.items() if purged(entry.tenant, entry.feature)]
            for key in exact:
                del self.exact[key]
            for scope, entry_id in semantic:
                for bucket_key in self.semantic.pop((scope, entry_id)).bucket_keys:
                    members = self.buckets[(scope, bucket_key)]
                    members.discard(entry_id)
                    if not members:
                        del self.buckets[(scope, bucket_key)]
        return len(exact) + len(semantic)


import hashlib  # noqa: E402 - FakeEmbedder's imports, kept beside it
import re  # noqa: E402
from collections.abc import Mapping  # noqa: E402

import numpy as np  # noqa: E402
import numpy.typing as npt  # noqa: E402


class FakeEmbedder:
    """Embedder for plumbing tests only: deterministic, instant, meaningless.

    Each lower-cased word is a fixed pseudo-random unit vector (from its SHA-256) and a text is the
    normalised sum of its words, so the same words (in any order, case or punctuation) score 1.0 and
    texts sharing words score higher than texts sharing none. `vectors` pins the vector of given texts
    (normalised); `calls` records every batch `embed` was given.
    """

    def __init__(self, dimensions: int = 64, vectors: Mapping[str, Sequence[float]] | None = None) -> None:
        self.dimensions = dimensions
        self.embedder_id = f"fake-bag-of-words-{dimensions}"
        self.pinned = {text: _unit(np.asarray(vector, dtype=np.float64)) for text, vector in (vectors or {}).items()}
        self.calls: list[list[str]] = []

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        self.calls.append(list(texts))
        out = np.empty((len(texts), self.dimensions), dtype=np.float32)
        for row, text in enumerate(texts):
            out[row] = self.pinned[text] if text in self.pinned else self._bag_of_words(text)
        return out

    def _bag_of_words(self, text: str) -> npt.NDArray[np.float64]:
        total = np.zeros(self.dimensions)
        for word in re.findall(r"\w+", text.lower()) or [""]:
            seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:8], "big")
            total += np.random.default_rng(seed).standard_normal(self.dimensions)
        return _unit(total)


def _unit(vector: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    norm = float(np.linalg.norm(vector))
    if norm == 0:
        raise ValueError("a zero vector has no direction")
    return vector / norm
