"""In-memory fakes of costgate's ports for unit tests, and a builder for the ledger entries they hold."""

import threading
from collections.abc import Iterator, Mapping, Sequence
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
from costgate.cost import Cost, CostComponent, Strategy, price_usage
from costgate.errors import InvalidRequestError, UpstreamError
from costgate.features import FeatureConfig
from costgate.keys import GatewayKey
from costgate.ledger import LedgerEntry, RejectionCount, Rollup, utc_day, validate_tag
from costgate.prompt_cache import GapBucket, GapHistogram, PrefixStats, PrefixUse
from costgate.usage import TokenUsage
from costgate.vector_index import decode_vector, encode_vector

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)

type RollupKey = tuple[date, str, str, str]
type RejectionKey = tuple[date, str, str]


@dataclass
class ManualClock:
    """A Clock that stays where a test puts it (NOW by default)."""

    at: datetime = NOW

    def now(self) -> datetime:
        return self.at


class InMemoryLedgerStore:
    """LedgerStore in dicts: entries by request id, rollups by (UTC day, tenant, feature, model) and
    budget rejection counts by (UTC day, tenant, feature).

    Same contract as DynamoLedgerStore: a request id already stored changes nothing and returns
    False, whatever the second entry holds (its holds and prompt-cache use included); rollups and
    rejection counts come day by day, then in sort-key order.
    """

    def __init__(
        self, budgets: "InMemoryBudgetStore | None" = None, prompt_cache: "InMemoryPromptCacheStore | None" = None
    ) -> None:
        self.entries: dict[str, LedgerEntry] = {}
        self.rollup_items: dict[RollupKey, Rollup] = {}
        self.rejection_counts: dict[RejectionKey, int] = {}
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
        applied = entry.applied_strategies
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
            strategy_requests={
                **current.strategy_requests,
                **{strategy: current.strategy_requests.get(strategy, 0) + 1 for strategy in applied},
            },
            strategy_cost_usd={
                **current.strategy_cost_usd,
                **{
                    strategy: current.strategy_cost_usd.get(strategy, Decimal(0)) + entry.cost.total_usd
                    for strategy in applied
                },
            },
        )
        return True

    def rollups(self, first: date, last: date) -> Iterator[Rollup]:
        # '#' sorts before every character a tag may hold, so tuple order is the table's sort-key order.
        for key in sorted(self.rollup_items):
            if first <= key[0] <= last:
                yield self.rollup_items[key]

    def count_rejection(self, at: datetime, tenant: str, feature: str) -> None:
        key = (utc_day(at), validate_tag(tenant, "tenant"), validate_tag(feature, "feature"))
        self.rejection_counts[key] = self.rejection_counts.get(key, 0) + 1

    def rejections(self, first: date, last: date) -> Iterator[RejectionCount]:
        for key in sorted(self.rejection_counts):
            day, tenant, feature = key
            if first <= day <= last:
                yield RejectionCount(day=day, tenant=tenant, feature=feature, count=self.rejection_counts[key])


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
    savings: Mapping[Strategy, str] | None = None,
) -> LedgerEntry:
    """A ledger entry priced by the real cost engine, or with a literal `cost_usd` (all of it input).

    The baseline defaults to the same usage priced with no prompt caching (or to the literal cost);
    with `savings` (exact strings per strategy), to the cost plus those savings.
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
    by_strategy = {strategy: Decimal(amount) for strategy, amount in (savings or {}).items()}
    if by_strategy:
        baseline = cost.total_usd + sum(by_strategy.values(), Decimal(0))
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
        savings=by_strategy,
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


# --- batch summarisation ------------------------------------------------------------------------------------

import heapq  # noqa: E402 - the batch fakes' imports, kept beside them
import itertools  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import TYPE_CHECKING, Any  # noqa: E402

from costgate.batch_api import RemoteBatch  # noqa: E402
from costgate.batch_model import (  # noqa: E402
    OPEN_BATCH_STATES,
    BatchRecord,
    BatchState,
    Document,
    DocumentStatus,
    Unit,
    UnitState,
    UsageTotals,
)
from costgate.errors import (  # noqa: E402
    BatchRejectedError,
    BatchSubmitUncertainError,
    ConflictError,
    CostgateError,
    NotFoundError,
    RequestTooLargeError,
)
from costgate.ports import Clock  # noqa: E402

_BATCH_CHANGES = frozenset({"remote_id", "submit_started_at", "ended_at", "note"})


def _queue_time(at: datetime) -> str:
    """DynamoBatchStore's queue time: fixed-width UTC ISO with microseconds, so strings sort as times do."""
    if at.tzinfo is None:
        raise ValueError("queue times must be timezone-aware")
    return at.astimezone(UTC).isoformat(timespec="microseconds")


@dataclass
class _JobBook:
    """A job's manifest bookkeeping, as DynamoBatchStore's JobItem keeps it."""

    created_at: datetime
    changes: int = 0
    manifest_changes: int | None = None
    queue_at: str | None = None  # set while the manifest is dirty (on the MANIFEST queue)


class _LazyQueue:
    """A queue ordered by `queue_at` strings, read without scanning: a heap whose stale entries are dropped
    when they surface. An item is on the queue exactly while `at[key]` holds the entry's queue_at."""

    def __init__(self) -> None:
        self.at: dict[Any, str] = {}
        self._heap: list[tuple[str, Any]] = []

    def put(self, key: Any, queue_at: str) -> None:
        if self.at.get(key) != queue_at:
            self.at[key] = queue_at
            heapq.heappush(self._heap, (queue_at, key))

    def remove(self, key: Any) -> None:
        self.at.pop(key, None)

    def oldest(self, limit: int) -> list[Any]:
        """Up to `limit` keys, oldest queue_at first (ties by key), left on the queue."""
        taken: list[tuple[str, Any]] = []
        seen: set[Any] = set()
        while self._heap and len(taken) < limit:
            entry = heapq.heappop(self._heap)
            if self.at.get(entry[1]) == entry[0] and entry[1] not in seen:
                taken.append(entry)
                seen.add(entry[1])
        for entry in taken:
            heapq.heappush(self._heap, entry)
        return [key for _, key in taken]


class InMemoryBatchStore:
    """BatchStore in dicts, with DynamoBatchStore's exact semantics and no index lag.

    Every conditional write refuses (False, ConflictError, BudgetExceededError or UpstreamError) where
    the adapter's condition or transaction would, changing nothing. reserve_batch, abort_batch and
    finish_unit move `budgets`' counters as the adapter's transactions move the counter items
    (committed += / −= amount); the ledger's settlement stays with InMemoryLedgerStore. Queues keep
    the adapter's order keys (`<queued_at>#<doc_id>#<seq:06d>`, `<first flagged at>#<job>#<doc_id>`, …),
    and clear_check keeps a document flagged again since documents_to_check read it. The clock dates
    those flags. Thread-safe (the scheduler finishes units from a thread pool).
    """

    def __init__(self, budgets: InMemoryBudgetStore, clock: Clock | None = None) -> None:
        self.budgets = budgets
        self.clock = clock or ManualClock()
        self.jobs: dict[str, _JobBook] = {}
        self.docs: dict[tuple[str, str], Document] = {}
        self.units_by_doc: dict[tuple[str, str], dict[int, Unit]] = {}
        self.batches: dict[str, BatchRecord] = {}
        self.remotes: dict[str, str] = {}  # Claude's batch id -> batch_id
        self.flags: dict[tuple[str, str], int] = {}  # finish_unit's flag count per document
        self._docs_of_job: dict[str, set[str]] = {}
        self._unit_docs_of_job: dict[str, set[str]] = {}
        self._pending = _LazyQueue()  # (job, doc_id, seq)
        self._check = _LazyQueue()  # (job, doc_id)
        self._read_flags: dict[tuple[str, str], int] = {}  # flags as documents_to_check read them
        self._lock = threading.RLock()

    # --- ingest -----------------------------------------------------------------------------------------

    def document(self, job: str, doc_id: str) -> Document | None:
        with self._lock:
            return self.docs.get((job, doc_id))

    def put_units(self, units: Sequence[Unit]) -> None:
        with self._lock:
            for unit in units:
                if self._unit(unit.job, unit.doc_id, unit.seq) is None:
                    self._store_unit(unit)

    def register_document(self, document: Document) -> bool:
        with self._lock:
            key = (document.job, document.doc_id)
            self._job_changed(document, document.registered_at)  # a duplicate re-marks, as the Dynamo store does
            if key in self.docs:
                return False
            self.docs[key] = document
            self._docs_of_job.setdefault(document.job, set()).add(document.doc_id)
            return True

    # --- packing ----------------------------------------------------------------------------------------

    def pending_units(self, limit: int) -> list[Unit]:
        if limit <= 0:
            return []
        with self._lock:
            return [self.units_by_doc[(job, doc_id)][seq] for job, doc_id, seq in self._pending.oldest(limit)]

    def documents(self, job: str, doc_ids: Sequence[str]) -> dict[str, Document]:
        with self._lock:
            return {doc_id: doc for doc_id in doc_ids if (doc := self.docs.get((job, doc_id))) is not None}

    def create_batch(self, batch: BatchRecord) -> None:
        with self._lock:
            if batch.batch_id in self.batches:
                raise ConflictError(f"batch {batch.batch_id} already exists")
            self.batches[batch.batch_id] = batch

    def pack_unit(self, unit: Unit, batch_id: str, reserved_usd: Decimal) -> bool:
        with self._lock:
            stored = self._unit(unit.job, unit.doc_id, unit.seq)
            if stored is None or stored.state is not UnitState.PENDING:
                return False
            self._store_unit(replace(stored, state=UnitState.PACKED, batch_id=batch_id, reserved_usd=reserved_usd))
            return True

    def reserve_batch(self, batch: BatchRecord, holds: Sequence[Hold]) -> BatchRecord:
        holds = tuple(holds)
        for hold in holds:
            if hold.amount_usd != batch.reserved_usd:
                raise ValueError(
                    f"batch {batch.batch_id}: a hold of {hold.amount_usd} is not the batch's reservation"
                    f" ({batch.reserved_usd}); each hold holds the whole batch"
                )
            if hold.amount_usd > hold.budget.limit_usd:
                raise BudgetExceededError(hold.budget, remaining=None, needed=hold.amount_usd)
        with self._lock, self.budgets._lock:
            stored = self.batches.get(batch.batch_id)
            if stored is None or stored.state is not BatchState.PACKING:
                raise ConflictError(f"batch {batch.batch_id} is no longer {BatchState.PACKING.value}")
            committed = self.budgets.committed
            for hold in holds:
                # A window without a counter takes any hold (the limit was checked above).
                if (now := committed.get(_counter(hold))) is not None and now > reservation_ceiling(hold):
                    raise BudgetExceededError(hold.budget, remaining_in(hold.budget, now), hold.amount_usd)
            for hold in holds:
                committed[_counter(hold)] = committed.get(_counter(hold), Decimal(0)) + hold.amount_usd
            self.batches[batch.batch_id] = replace(
                stored, state=BatchState.RESERVED, holds=holds, reserved_usd=batch.reserved_usd
            )
        return replace(batch, state=BatchState.RESERVED, holds=holds)

    def set_batch_state(self, batch: BatchRecord, new_state: BatchState, **changes: Any) -> BatchRecord:
        unknown = sorted(set(changes) - _BATCH_CHANGES)
        if unknown:
            raise TypeError(f"set_batch_state() cannot change {', '.join(unknown)}")
        remote_id = changes.get("remote_id")
        with self._lock:
            stored = self.batches.get(batch.batch_id)
            if stored is None or stored.state is not batch.state:
                raise ConflictError(f"batch {batch.batch_id} is no longer {batch.state.value}")
            if new_state is BatchState.SUBMITTED and remote_id is not None:
                if remote_id in self.remotes:
                    raise ConflictError(f"Claude batch {remote_id} is already recorded for another batch")
                self.remotes[remote_id] = batch.batch_id
            self.batches[batch.batch_id] = replace(stored, state=new_state, **changes)
        return replace(batch, state=new_state, **changes)

    def abort_batch(self, batch: BatchRecord, note: str) -> None:
        releases = batch.holds if batch.state in (BatchState.RESERVED, BatchState.SUBMITTING) else ()
        with self._lock, self.budgets._lock:
            stored = self.batches.get(batch.batch_id)
            if stored is None or stored.state is not batch.state:
                raise ConflictError(f"batch {batch.batch_id} is no longer {batch.state.value}")
            if any(_counter(hold) not in self.budgets.committed for hold in releases):
                raise UpstreamError(
                    f"batches: batch {batch.batch_id} holds a budget that was never reserved; not aborted"
                )
            self._release(releases)
            self.batches[batch.batch_id] = replace(stored, state=BatchState.ABORTED, note=note)

    def batch_for_remote(self, remote_id: str) -> BatchRecord | None:
        with self._lock:
            batch_id = self.remotes.get(remote_id)
            return None if batch_id is None else self.batches.get(batch_id)

    def open_batches(self) -> list[BatchRecord]:
        with self._lock:
            found = [batch for batch in self.batches.values() if batch.state in OPEN_BATCH_STATES]
        return sorted(found, key=lambda batch: f"{_queue_time(batch.created_at)}#{batch.batch_id}")

    def packed_units(self, batch: BatchRecord) -> Iterator[Unit]:
        with self._lock:
            found = [
                unit
                for doc_id in sorted(self._unit_docs_of_job.get(batch.job, ()))
                for _, unit in sorted(self.units_by_doc.get((batch.job, doc_id), {}).items())
                if unit.state is UnitState.PACKED and unit.batch_id == batch.batch_id
            ]
        yield from found

    def unpack_unit(self, unit: Unit, batch_id: str) -> bool:
        with self._lock:
            stored = self._unit(unit.job, unit.doc_id, unit.seq)
            if stored is None or stored.state is not UnitState.PACKED or stored.batch_id != batch_id:
                return False
            # Requeued where it was: at the queued_at of the unit it was given (as the adapter does).
            self._store_unit(
                replace(stored, state=UnitState.PENDING, batch_id=None, reserved_usd=None), queued_at=unit.queued_at
            )
            return True

    # --- collecting -------------------------------------------------------------------------------------

    def units(self, job: str, custom_ids: Sequence[str]) -> dict[str, Unit]:
        found: dict[str, Unit] = {}
        with self._lock:
            for custom_id in custom_ids:
                parsed = _parse_custom_id(custom_id)
                if parsed is not None and (unit := self._unit(job, *parsed)) is not None:
                    found[unit.custom_id] = unit
        return found

    def fail_pending_unit(self, unit: Unit, error: str) -> bool:
        with self._lock:
            stored = self._unit(unit.job, unit.doc_id, unit.seq)
            if stored is None or stored.state is not UnitState.PENDING:
                return False
            doc_key = (unit.job, unit.doc_id)
            if doc_key not in self.docs:
                raise ConflictError(f"unit {unit.custom_id}'s document is not registered in job {unit.job}")
            self._store_unit(replace(stored, state=UnitState.FAILED, error=error))
            self.flags[doc_key] = self.flags.get(doc_key, 0) + 1
            if doc_key not in self._check.at:
                self._check.put(doc_key, f"{_queue_time(self.clock.now())}#{unit.job}#{unit.doc_id}")
            return True

    def finish_unit(
        self,
        unit: Unit,
        batch: BatchRecord,
        state: UnitState,
        *,
        release: Sequence[Hold] = (),
        totals: UsageTotals | None = None,
        model: str | None = None,
        output_key: str | None = None,
        error: str | None = None,
        queued_at: datetime | None = None,
    ) -> bool:
        if state not in (UnitState.PENDING, UnitState.DONE, UnitState.FAILED):
            raise ValueError(f"a unit finishes as {UnitState.PENDING}, {UnitState.DONE} or {UnitState.FAILED}")
        with self._lock, self.budgets._lock:
            stored = self._unit(unit.job, unit.doc_id, unit.seq)
            if stored is None or stored.state is not UnitState.PACKED or stored.batch_id != batch.batch_id:
                return False
            doc_key = (unit.job, unit.doc_id)
            if doc_key not in self.docs:
                raise ConflictError(f"unit {unit.custom_id}'s document is not registered in job {unit.job}")
            if any(_counter(hold) not in self.budgets.committed for hold in release):
                raise UpstreamError(f"batches: unit {unit.custom_id} releases a budget hold that was never reserved")
            if state is UnitState.PENDING:
                when = queued_at or unit.queued_at
                finished = replace(
                    stored,
                    state=state,
                    attempts=stored.attempts + 1,
                    batch_id=None,
                    reserved_usd=None,
                    queued_at=when,
                )
                self._store_unit(finished)
            elif state is UnitState.DONE:
                finished = replace(stored, state=state, model=model, output_key=output_key)
                self._store_unit(finished if totals is None else replace(finished, totals=totals))
            else:
                self._store_unit(replace(stored, state=state, error=error))
            self._release(release)
            self.flags[doc_key] = self.flags.get(doc_key, 0) + 1
            if doc_key not in self._check.at:
                self._check.put(doc_key, f"{_queue_time(self.clock.now())}#{unit.job}#{unit.doc_id}")
            return True

    # --- finishing documents ----------------------------------------------------------------------------

    def documents_to_check(self, limit: int) -> list[Document]:
        if limit <= 0:
            return []
        with self._lock:
            keys = self._check.oldest(limit)
            for key in keys:
                self._read_flags[key] = self.flags.get(key, 0)
            return [self.docs[key] for key in keys]

    def units_of(self, document: Document) -> list[Unit]:
        with self._lock:
            return [unit for _, unit in sorted(self.units_by_doc.get((document.job, document.doc_id), {}).items())]

    def add_unit(self, unit: Unit) -> bool:
        with self._lock:
            if self._unit(unit.job, unit.doc_id, unit.seq) is not None:
                return False
            self._store_unit(unit)
            return True

    def clear_check(self, document: Document) -> None:
        key = (document.job, document.doc_id)
        with self._lock:
            read = self._read_flags.pop(key, None)
            if key not in self.docs or (read is not None and self.flags.get(key, 0) != read):
                return  # flagged again since it was read: it stays on the check list
            self._check.remove(key)

    def finish_document(
        self,
        document: Document,
        status: DocumentStatus,
        *,
        result_key: str,
        totals: UsageTotals,
        finished_at: datetime,
        model: str | None = None,
        error: str | None = None,
    ) -> bool:
        if status is DocumentStatus.PENDING:
            raise ValueError(f"a document finishes as {DocumentStatus.DONE} or {DocumentStatus.FAILED}")
        key = (document.job, document.doc_id)
        with self._lock:
            self._read_flags.pop(key, None)
            stored = self.docs.get(key)
            if stored is None or stored.status is not DocumentStatus.PENDING:
                return False
            changes: dict[str, Any] = {"model": model} if model is not None else {}
            if error is not None:
                changes["error"] = error
            self.docs[key] = replace(
                stored, status=status, result_key=result_key, totals=totals, finished_at=finished_at, **changes
            )
            self._check.remove(key)
            self._job_changed(document, finished_at)
            return True

    # --- manifests --------------------------------------------------------------------------------------

    def jobs_to_manifest(self, limit: int) -> list[tuple[str, int]]:
        if limit <= 0:
            return []
        with self._lock:
            dirty = sorted((book.queue_at, job) for job, book in self.jobs.items() if book.queue_at is not None)
            return [(job, self.jobs[job].changes) for _, job in dirty[:limit]]

    def job_documents(self, job: str) -> Iterator[Document]:
        with self._lock:
            found = [self.docs[(job, doc_id)] for doc_id in sorted(self._docs_of_job.get(job, ()))]
        yield from found

    def manifest_written(self, job: str, changes: int) -> None:
        with self._lock:
            book = self.jobs.get(job)
            if book is not None and book.changes == changes:
                book.manifest_changes = changes
                book.queue_at = None

    # --- inside -----------------------------------------------------------------------------------------

    def _unit(self, job: str, doc_id: str, seq: int) -> Unit | None:
        return self.units_by_doc.get((job, doc_id), {}).get(seq)

    def _store_unit(self, unit: Unit, queued_at: datetime | None = None) -> None:
        """Store the unit; on its PENDING queue exactly while PENDING (at `queued_at`, default its own)."""
        self.units_by_doc.setdefault((unit.job, unit.doc_id), {})[unit.seq] = unit
        self._unit_docs_of_job.setdefault(unit.job, set()).add(unit.doc_id)
        key = (unit.job, unit.doc_id, unit.seq)
        if unit.state is UnitState.PENDING:
            self._pending.put(key, f"{_queue_time(queued_at or unit.queued_at)}#{unit.doc_id}#{unit.seq:06d}")
        else:
            self._pending.remove(key)

    def _release(self, holds: Sequence[Hold]) -> None:
        """committed −= amount per hold; the caller holds the budget store's lock and checked the counters."""
        for hold in holds:
            self.budgets.committed[_counter(hold)] -= hold.amount_usd

    def _job_changed(self, document: Document, at: datetime) -> None:
        book = self.jobs.setdefault(document.job, _JobBook(created_at=document.registered_at))
        book.changes += 1
        if book.queue_at is None:
            book.queue_at = f"{_queue_time(at)}#{document.job}"


def _parse_custom_id(custom_id: str) -> tuple[str, int] | None:
    """(doc_id, seq) of `<doc_id>-<seq>`; None for anything a unit could not have sent."""
    doc_id, dash, seq = custom_id.rpartition("-")
    if not dash or not doc_id or "-" in doc_id or not (seq.isascii() and seq.isdigit()) or str(int(seq)) != seq:
        return None
    return doc_id, int(seq)


class InMemoryObjectStore:
    """ObjectStore as a versioned bucket in memory: key -> [(version_id, bytes), …], oldest first.

    Like S3ObjectStore: a version id of None or "null" reads the newest version; a missing key or
    version raises NotFoundError, an object above max_bytes RequestTooLargeError; `lines` splits on
    \\n, \\r\\n and \\r and fetches nothing until its first next(). `upload` is what a user's PUT does
    (it returns the new version id); `put` and `put_file` record their content type. Thread-safe.
    """

    def __init__(self, bucket: str = "costgate-docs") -> None:
        self.bucket = bucket
        self.objects: dict[str, list[tuple[str, bytes]]] = {}
        self.content_types: dict[str, str] = {}
        self._versions = itertools.count(1)
        self._lock = threading.Lock()

    def upload(self, key: str, body: bytes) -> str:
        with self._lock:
            version_id = f"v{next(self._versions)}"
            self.objects.setdefault(key, []).append((version_id, body))
        return version_id

    def delete(self, key: str) -> None:
        """Every version of the key, gone (as a user emptying it from a versioned bucket)."""
        with self._lock:
            self.objects.pop(key, None)

    def latest(self, key: str) -> bytes:
        return self.read(key, max_bytes=1 << 62)

    def keys(self, prefix: str = "") -> set[str]:
        with self._lock:
            return {key for key in self.objects if key.startswith(prefix)}

    def read(self, key: str, version_id: str | None = None, *, max_bytes: int) -> bytes:
        body = self._get(key, version_id)
        if len(body) > max_bytes:
            raise RequestTooLargeError(
                f"s3://{self.bucket}/{key} is {len(body):,} bytes, over the {max_bytes:,} allowed"
            )
        return body

    def lines(self, key: str, version_id: str | None = None) -> Iterator[bytes]:
        yield from self._get(key, version_id).splitlines()

    def put(self, key: str, body: bytes, content_type: str) -> None:
        self.upload(key, body)
        with self._lock:
            self.content_types[key] = content_type

    def put_file(self, key: str, path: Path, content_type: str) -> None:
        self.put(key, path.read_bytes(), content_type)

    def _get(self, key: str, version_id: str | None) -> bytes:
        with self._lock:
            versions = self.objects.get(key, [])
            if version_id is None or version_id == "null":
                found = versions[-1:]
            else:
                found = [entry for entry in versions if entry[0] == version_id]
        if not found:
            version = f" version {version_id}" if version_id else ""
            raise NotFoundError(f"s3://{self.bucket}/{key}{version} does not exist")
        return found[0][1]


_FAILURE_MESSAGES: dict[type[CostgateError], str] = {
    BatchRejectedError: "Claude rejected the batch after 1 attempt(s): HTTP 400 invalid_request_error: refused (fake)",
    BatchSubmitUncertainError: "batch create attempt 1 got no answer (TimeoutError): the batch may or may not exist",
}

type BatchAnswer = Callable[[str, Mapping[str, Any]], dict[str, Any]]


def succeeded_answer(custom_id: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """A `succeeded` result for any request: the text "Summary of <custom_id>.", deterministic batch-tier
    usage (input tokens: the characters of its system and message text / 4, at least 1; output tokens:
    min(max_tokens, 50)) and the model it asked for."""
    return {
        "type": "succeeded",
        "message": {
            "id": f"msg_{custom_id}",
            "type": "message",
            "role": "assistant",
            "model": params["model"],
            "content": [{"type": "text", "text": f"Summary of {custom_id}."}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {
                "input_tokens": max(1, _prompt_chars(params) // 4),
                "output_tokens": min(int(params["max_tokens"]), 50),
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "service_tier": "batch",
            },
        },
    }


def errored_answer(custom_id: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """An `errored` result, as Claude reports a request whose params it refused when the batch ran."""
    return {
        "type": "errored",
        "error": {
            "type": "error",
            "error": {"type": "invalid_request_error", "message": f"{custom_id}: max_tokens is too large"},
        },
    }


def _prompt_chars(params: Mapping[str, Any]) -> int:
    def text(content: Any) -> int:
        if isinstance(content, str):
            return len(content)
        if isinstance(content, list):
            return sum(len(block.get("text", "")) for block in content if isinstance(block, Mapping))
        return 0

    messages = params.get("messages") or []
    return text(params.get("system")) + sum(text(m.get("content")) for m in messages if isinstance(m, Mapping))


@dataclass
class FakeBatch:
    """One batch the fake Claude created: its requests as sent and, once ended, their results."""

    id: str
    created_at: datetime
    requests: list[tuple[str, dict[str, Any]]]
    ended_at: datetime | None = None
    results: list[dict[str, Any]] | None = None

    def remote(self) -> RemoteBatch:
        counts = dict.fromkeys(("processing", "succeeded", "errored", "canceled", "expired"), 0)
        if self.results is None:
            counts["processing"] = len(self.requests)
        else:
            for line in self.results:
                counts[line["result"]["type"]] += 1
        return RemoteBatch(
            id=self.id,
            processing_status="in_progress" if self.ended_at is None else "ended",
            created_at=self.created_at,
            ended_at=self.ended_at,
            request_counts=counts,
            results_url=None if self.ended_at is None else f"https://api.anthropic.test/v1/messages/batches/{self.id}",
        )


class FakeClaudeBatches:
    """ClaudeBatches in memory: `create` reads the body file and keeps each batch's requests (`batches`,
    in creation order; `requests()` flattens them); results come from `answer(custom_id, params)`.

    A batch ends at `end_all(at)` (results are answered then), or at once when `instant`. Results come
    in request order, or shuffled by `shuffle_seed` ("in any order", as Claude says). `reject_next_create`
    and `lose_next_create_answer` make the next create raise BatchRejectedError (nothing created) or
    BatchSubmitUncertainError (created or not, as asked). Thread-safe.
    """

    def __init__(
        self,
        clock: Clock,
        *,
        answer: BatchAnswer = succeeded_answer,
        instant: bool = False,
        shuffle_seed: int | None = None,
    ) -> None:
        self.clock = clock
        self.answer = answer
        self.instant = instant
        self.batches: dict[str, FakeBatch] = {}
        self._shuffle = random.Random(shuffle_seed) if shuffle_seed is not None else None
        self._next_failure: tuple[type[BatchRejectedError | BatchSubmitUncertainError], bool] | None = None
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def reject_next_create(self) -> None:
        self._next_failure = (BatchRejectedError, False)

    def lose_next_create_answer(self, *, created: bool) -> None:
        self._next_failure = (BatchSubmitUncertainError, created)

    def requests(self) -> list[tuple[str, dict[str, Any]]]:
        """Every request of every batch, in creation order: (custom_id, params)."""
        with self._lock:
            return [request for batch in self.batches.values() for request in batch.requests]

    def create(self, body_path: Path) -> RemoteBatch:
        with body_path.open("rb") as body:
            sent = json.load(body)["requests"]
        with self._lock:
            failure, self._next_failure = self._next_failure, None
            if failure is not None and not failure[1]:
                raise failure[0](_FAILURE_MESSAGES[failure[0]])
            batch = FakeBatch(
                id=f"msgbatch_{next(self._ids):06d}",
                created_at=self.clock.now(),
                requests=[(str(line["custom_id"]), line["params"]) for line in sent],
            )
            self.batches[batch.id] = batch
            if self.instant:
                self._end(batch, batch.created_at)
            if failure is not None:
                raise failure[0](_FAILURE_MESSAGES[failure[0]])
            return batch.remote()

    def end_all(self, at: datetime) -> list[str]:
        """End every batch still in progress at `at`, answering its requests; their ids."""
        with self._lock:
            ending = [batch for batch in self.batches.values() if batch.ended_at is None]
            for batch in ending:
                self._end(batch, at)
        return [batch.id for batch in ending]

    def retrieve(self, remote_id: str) -> RemoteBatch:
        with self._lock:
            batch = self.batches.get(remote_id)
            if batch is None:
                raise NotFoundError(f"GET /v1/messages/batches/{remote_id}: HTTP 404 not_found_error")
            return batch.remote()

    def created_since(self, since: datetime) -> Iterator[RemoteBatch]:
        if since.utcoffset() is None:
            raise ValueError(f"since must be timezone-aware, got {since!r}")
        with self._lock:
            found = [batch.remote() for batch in reversed(self.batches.values()) if batch.created_at >= since]
        yield from found

    def results(self, remote_id: str) -> Iterator[Mapping[str, Any]]:
        remote = self.retrieve(remote_id)
        if not remote.ended:
            raise UpstreamError(f"message batch {remote_id} is {remote.processing_status}: it has no results yet")
        return iter(list(self.batches[remote_id].results or []))

    def _end(self, batch: FakeBatch, at: datetime) -> None:
        lines = [
            {"custom_id": custom_id, "result": self.answer(custom_id, params)} for custom_id, params in batch.requests
        ]
        if self._shuffle is not None:
            self._shuffle.shuffle(lines)
        batch.results, batch.ended_at = lines, at


if TYPE_CHECKING:
    from costgate.ports import BatchStore, ClaudeBatches, ObjectStore

    _batch_store: type[BatchStore] = InMemoryBatchStore
    _object_store: type[ObjectStore] = InMemoryObjectStore
    _claude_batches: type[ClaudeBatches] = FakeClaudeBatches
