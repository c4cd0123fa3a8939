"""An in-memory prompt-cache statistics store."""

import threading
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from costgate.clock import Clock
from costgate.dal.prompt_cache import GAP_WINDOW_DAYS
from costgate.routing.prompt_cache import GapBucket, GapHistogram, PrefixStats

if TYPE_CHECKING:
    from costgate.accounting.targets import GapTarget, PrefixTarget, TargetDelta


class InMemoryPromptCacheStore:
    """PromptCacheStore in two dicts: prefix totals by (feature, prefix_key), gap histograms by (feature, UTC day).

    Written through `apply`, which the in-memory rollup store calls with the aggregator's prefix and gap
    deltas (what the Dynamo rollup store writes to the PCACHE items). Like DynamoPromptCacheStore,
    `gap_histogram` sums the last GAP_WINDOW_DAYS UTC days as of `clock.now()`; unlike it, it is never
    stale. Thread-safe. Seed `gaps` directly to test a TTL choice (at `clock.now()`'s UTC day to count it).
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.stats: dict[tuple[str, str], PrefixStats] = {}
        self.ttls: dict[tuple[str, str], str | None] = {}
        self.gaps: dict[tuple[str, date], GapHistogram] = {}
        self._lock = threading.Lock()

    def apply(self, target: "PrefixTarget | GapTarget", delta: "TargetDelta") -> None:
        from costgate.accounting.targets import PrefixTarget  # noqa: PLC0415 - the fakes import each other

        with self._lock:
            if isinstance(target, PrefixTarget):
                self._apply_prefix(target, delta)
                return
            day = (target.feature, target.day)
            histogram = self.gaps.get(day, GapHistogram())
            self.gaps[day] = replace(
                histogram, **{name: getattr(histogram, name) + int(count) for name, count in delta.adds.items()}
            )

    def _apply_prefix(self, target: "PrefixTarget", delta: "TargetDelta") -> None:
        if delta.seen is None:
            raise ValueError("a prefix delta says when its uses were seen")
        key = (target.feature, target.prefix_key)
        current = self.stats.get(key)
        adds = delta.adds
        premium = current.write_premium_usd if current else Decimal(0)
        saved = current.read_saved_usd if current else Decimal(0)
        self.stats[key] = PrefixStats(
            feature=target.feature,
            prefix_key=target.prefix_key,
            model=str(delta.sets["model"]),
            managed_by=str(delta.sets["managed_by"]),
            first_seen=min(current.first_seen, delta.seen[0]) if current else delta.seen[0],
            last_seen=delta.seen[1],
            requests=(current.requests if current else 0) + int(adds["requests"]),
            write_tokens=(current.write_tokens if current else 0) + int(adds["write_tokens"]),
            read_tokens=(current.read_tokens if current else 0) + int(adds["read_tokens"]),
            write_premium_usd=premium + Decimal(adds["write_premium_usd"]),
            read_saved_usd=saved + Decimal(adds["read_saved_usd"]),
        )
        self.ttls[key] = delta.sets.get("ttl")

    def last_seen_of(self, feature: str, prefix_key: str) -> datetime | None:
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
