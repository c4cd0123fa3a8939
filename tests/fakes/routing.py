"""An in-memory prompt-cache statistics store."""

import threading
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from costgate.routing.prompt_cache import GapHistogram, PrefixStats

if TYPE_CHECKING:
    from costgate.accounting.aggregator import GapTarget, PrefixTarget, TargetDelta


class InMemoryPromptCacheStore:
    """PromptCacheStore in two dicts: prefix totals by (feature, prefix_key), gap histograms by feature.

    Written through `apply`, which the in-memory rollup store calls with the aggregator's prefix and gap
    deltas (what the Dynamo rollup store writes to the PCACHE items). Never stale; thread-safe. Seed
    `gaps` directly to test a TTL choice.
    """

    def __init__(self) -> None:
        self.stats: dict[tuple[str, str], PrefixStats] = {}
        self.ttls: dict[tuple[str, str], str | None] = {}
        self.gaps: dict[str, GapHistogram] = {}
        self._lock = threading.Lock()

    def apply(self, target: "PrefixTarget | GapTarget", delta: "TargetDelta") -> None:
        from costgate.accounting.aggregator import PrefixTarget  # noqa: PLC0415 - the fakes import each other

        with self._lock:
            if isinstance(target, PrefixTarget):
                self._apply_prefix(target, delta)
                return
            histogram = self.gaps.get(target.feature, GapHistogram())
            self.gaps[target.feature] = replace(
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
        with self._lock:
            return self.gaps.get(feature, GapHistogram())

    def prefixes(self, feature: str | None = None) -> list[PrefixStats]:
        with self._lock:
            found = [s for s in self.stats.values() if feature is None or s.feature == feature]
        return sorted(found, key=lambda s: (s.feature, s.net_saved_usd, s.prefix_key))
