"""What the prompt-cache policy has observed, in DynamoDB: per-prefix totals and a gap histogram per feature.

Written only by the aggregator (`costgate.dal.rollups`, from the settled ledger rows on the table's
stream), so a request's use of a prefix is counted exactly once; every counter changes by atomic ADDs.
Read by the gateway (`gap_histogram`, cached) and by the operator (`prefixes`).
"""

import hashlib
import threading
from datetime import UTC, date, datetime, timedelta
from typing import Final

from pynamodb.attributes import NumberAttribute, UnicodeAttribute, UTCDateTimeAttribute

from costgate.clock import Clock, SystemClock
from costgate.dal.table import CostgateItem, DecimalAttribute
from costgate.routing.prompt_cache import GapBucket, GapHistogram, PrefixStats

GAPS_TTL = timedelta(seconds=60)
# The TTL choice follows recent traffic: gaps are counted per UTC day and the last GAP_WINDOW_DAYS summed.
GAP_WINDOW_DAYS = 7
# A day's histogram expires once it has left every window (plus a day of slack for clock skew).
GAP_RETENTION_DAYS = GAP_WINDOW_DAYS + 1
# A prefix not sent for this long is forgotten (DynamoDB TTL): per-user system prompts must not pile up.
PREFIX_RETENTION = timedelta(days=90)
# A feature's prefixes spread over this many partitions: each takes a write per prefix per aggregator batch.
PREFIX_PARTITIONS: Final = 16
_GAPS_SK = "GAPS#"
_PREFIX_SK = "PREFIX#"


class PrefixStatsItem(CostgateItem, discriminator="prompt_cache_prefix"):
    """One prefix's totals.  PK: PCACHE#<feature>#<m>  SK: PREFIX#<key>

    m = hash(prefix) mod 16 (items written before the aggregator: PK PCACHE#<feature>, still read).

    model, managed_by, ttl (of the last use aggregated: 5m|1h, absent when it set none) and last_seen
    are SET with each aggregated batch; first_seen only by the first (if_not_exists); the counters only
    by ADD. last_seen is the `at` of the use aggregated last.
    """

    feature = UnicodeAttribute()
    prefix_key = UnicodeAttribute()
    model = UnicodeAttribute()
    managed_by = UnicodeAttribute()
    ttl = UnicodeAttribute(null=True)
    first_seen = UTCDateTimeAttribute()
    last_seen = UTCDateTimeAttribute()
    requests = NumberAttribute()
    write_tokens = NumberAttribute()
    read_tokens = NumberAttribute()
    write_premium_usd = DecimalAttribute()
    read_saved_usd = DecimalAttribute()


class GapHistogramItem(CostgateItem, discriminator="prompt_cache_gaps"):
    """A feature's gaps between consecutive requests with the same prefix, on one UTC day.

    PK: PCACHE#<feature>  SK: GAPS#<yyyy-mm-dd>. One counter per GapBucket, each changed only by ADD
    (a bucket never hit is absent: 0). Expires once it has left the GAP_WINDOW_DAYS window.
    """

    feature = UnicodeAttribute()
    within_5m = NumberAttribute(null=True)
    within_1h = NumberAttribute(null=True)
    beyond_1h = NumberAttribute(null=True)


def prompt_cache_partition(feature: str) -> str:
    return f"PCACHE#{feature}"


def prefix_partition(feature: str, prefix_key: str) -> str:
    digest = hashlib.sha256(prefix_key.encode()).digest()
    return f"PCACHE#{feature}#{digest[0] % PREFIX_PARTITIONS}"


def gap_sk(day: date) -> str:
    return f"{_GAPS_SK}{day.isoformat()}"


class DynamoPromptCacheStore:
    """PromptCacheStore over the single table. Gap histograms are cached per store (per warm container) for 60 s."""

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()
        self._gaps: dict[str, tuple[datetime, GapHistogram]] = {}
        self._gaps_lock = threading.Lock()

    def gap_histogram(self, feature: str) -> GapHistogram:
        now = self._clock.now()
        with self._gaps_lock:
            cached = self._gaps.get(feature)
        if cached is not None and cached[0] <= now < cached[0] + GAPS_TTL:
            return cached[1]
        today = now.astimezone(UTC).date()
        first = today - timedelta(days=GAP_WINDOW_DAYS - 1)
        counts = dict.fromkeys((bucket.value for bucket in GapBucket), 0)
        for item in GapHistogramItem.query(
            prompt_cache_partition(feature), GapHistogramItem.sk.between(gap_sk(first), gap_sk(today))
        ):
            for name in counts:
                counts[name] += int(getattr(item, name) or 0)
        histogram = GapHistogram(**counts)
        with self._gaps_lock:
            self._gaps[feature] = (now, histogram)
        return histogram

    def prefixes(self, feature: str | None = None) -> list[PrefixStats]:
        """One feature's prefixes: a Query per partition. Every feature's: a Scan of the whole table (ledger
        rows included), filtered to prefix items; an operator command, never for a request's hot path."""
        if feature is None:
            items = list(PrefixStatsItem.scan())
        else:
            partitions = [prompt_cache_partition(feature)] + [
                f"{prompt_cache_partition(feature)}#{m}" for m in range(PREFIX_PARTITIONS)
            ]
            items = [
                item
                for partition in partitions
                for item in PrefixStatsItem.query(
                    partition, PrefixStatsItem.sk.startswith(_PREFIX_SK), consistent_read=True
                )
            ]
        found = [_to_stats(item) for item in items]
        return sorted(found, key=lambda s: (s.feature, s.net_saved_usd, s.prefix_key))


def _to_stats(item: PrefixStatsItem) -> PrefixStats:
    return PrefixStats(
        feature=item.feature,
        prefix_key=item.prefix_key,
        model=item.model,
        managed_by=item.managed_by,
        first_seen=item.first_seen,
        last_seen=item.last_seen,
        requests=int(item.requests),
        write_tokens=int(item.write_tokens),
        read_tokens=int(item.read_tokens),
        write_premium_usd=item.write_premium_usd,
        read_saved_usd=item.read_saved_usd,
    )
