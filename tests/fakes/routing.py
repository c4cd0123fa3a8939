"""An in-memory prompt-cache statistics store."""

import threading
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from costgate.clock import Clock
from costgate.dal.prompt_cache import GAP_WINDOW_DAYS
from costgate.routing.prompt_cache import GapBucket, GapHistogram, PrefixStats, PrefixUse


class InMemoryPromptCacheStore:
    """PromptCacheStore in two dicts: prefix totals by (feature, prefix_key), gap histograms by (feature, UTC day).

    Written through `observe`, which does what the ledger's transaction does with prompt_cache_updates
    (InMemoryLedgerStore calls it only for a new request id). Like DynamoPromptCacheStore, `gap_histogram`
    sums the last GAP_WINDOW_DAYS UTC days as of `clock.now()`; unlike it, it is never stale. Thread-safe.
    Seed `gaps` directly to test a TTL choice (at `clock.now()`'s UTC day to count it).
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.stats: dict[tuple[str, str], PrefixStats] = {}
        self.ttls: dict[tuple[str, str], str | None] = {}
        self.gaps: dict[tuple[str, date], GapHistogram] = {}
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
                day = (feature, at.date())
                histogram = self.gaps.get(day, GapHistogram())
                field_name = GapBucket(use.gap).value
                self.gaps[day] = replace(histogram, **{field_name: getattr(histogram, field_name) + 1})

    def last_seen(self, feature: str, prefix_key: str) -> datetime | None:
        with self._lock:
            stats = self.stats.get((feature, prefix_key))
        return stats.last_seen if stats else None

    def gap_histogram(self, feature: str) -> GapHistogram:
        today = self.clock.now().astimezone(UTC).date()
        first = today - timedelta(days=GAP_WINDOW_DAYS - 1)
        counts = dict.fromkeys((bucket.value for bucket in GapBucket), 0)
        with self._lock:
            for (of_feature, day), histogram in self.gaps.items():
                if of_feature == feature and first <= day <= today:
                    for name in counts:
                        counts[name] += getattr(histogram, name)
        return GapHistogram(**counts)

    def prefixes(self, feature: str | None = None) -> list[PrefixStats]:
        with self._lock:
            found = [s for s in self.stats.values() if feature is None or s.feature == feature]
        return sorted(found, key=lambda s: (s.feature, s.net_saved_usd, s.prefix_key))
