"""What the prompt-cache policy has observed, in DynamoDB: per-prefix totals and a gap histogram per feature.

Written only inside the ledger's transaction (`prompt_cache_updates`), so a request's use of a prefix
is counted exactly when, and only once when, its ledger row is written; every counter changes by
atomic ADDs. Read by the gateway (`last_seen`, `gap_histogram`) and by the operator (`prefixes`).
"""

import threading
from datetime import UTC, date, datetime, timedelta

from pynamodb.attributes import NumberAttribute, UnicodeAttribute, UTCDateTimeAttribute
from pynamodb.exceptions import DoesNotExist
from pynamodb.expressions.update import Action

from costgate.accounting.ledger import LedgerEntry
from costgate.clock import Clock, SystemClock
from costgate.dal.table import CostgateItem, DecimalAttribute
from costgate.routing.prompt_cache import GapBucket, GapHistogram, PrefixStats

GAPS_TTL = timedelta(seconds=60)
# The TTL choice follows recent traffic: gaps are counted per UTC day and the last GAP_WINDOW_DAYS summed.
GAP_WINDOW_DAYS = 7
# A prefix not sent for this long is forgotten (DynamoDB TTL): per-user system prompts must not pile up.
PREFIX_RETENTION = timedelta(days=90)
_GAPS_SK = "GAPS#"
_PREFIX_SK = "PREFIX#"


class PrefixStatsItem(CostgateItem, discriminator="prompt_cache_prefix"):
    """One prefix's totals.  PK: PCACHE#<feature>  SK: PREFIX#<prefix_key>

    model, managed_by, ttl (of the last request: 5m|1h, absent when it set none) and last_seen are
    SET by each request; first_seen only by the first (if_not_exists); the counters only by ADD.
    last_seen is the `at` of the request recorded last, which is the latest one unless records arrive
    out of order.
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


def _partition(feature: str) -> str:
    return f"PCACHE#{feature}"


def prompt_cache_updates(entry: LedgerEntry) -> list[tuple[CostgateItem, list[Action]]]:
    """The prefix-total and gap-histogram updates of one request, for the ledger's TransactWrite.

    Unconditional ADDs: put them in the same transaction as the ledger row's does-not-exist condition,
    so a duplicate request id adds nothing. Empty when the request used no tracked prefix.
    """
    use = entry.prompt_cache
    if use is None:
        return []
    at = entry.at.astimezone(UTC)
    prefix_actions: list[Action] = [
        PrefixStatsItem.entity.set(PrefixStatsItem),
        PrefixStatsItem.feature.set(entry.feature),
        PrefixStatsItem.prefix_key.set(use.prefix_key),
        PrefixStatsItem.model.set(use.model),
        PrefixStatsItem.managed_by.set(use.managed_by),
        PrefixStatsItem.ttl.set(use.ttl) if use.ttl is not None else PrefixStatsItem.ttl.remove(),
        PrefixStatsItem.first_seen.set(PrefixStatsItem.first_seen | at),
        PrefixStatsItem.last_seen.set(at),
        PrefixStatsItem.requests.add(1),
        PrefixStatsItem.write_tokens.add(use.write_tokens),
        PrefixStatsItem.read_tokens.add(use.read_tokens),
        PrefixStatsItem.write_premium_usd.add(use.write_premium_usd),
        PrefixStatsItem.read_saved_usd.add(use.read_saved_usd),
        PrefixStatsItem.expires_at.set(int((at + PREFIX_RETENTION).timestamp())),
    ]
    updates: list[tuple[CostgateItem, list[Action]]] = [
        (PrefixStatsItem(_partition(entry.feature), f"{_PREFIX_SK}{use.prefix_key}"), prefix_actions)
    ]
    if use.gap is not None:
        gap_actions: list[Action] = [
            GapHistogramItem.entity.set(GapHistogramItem),
            GapHistogramItem.feature.set(entry.feature),
            getattr(GapHistogramItem, use.gap.value).add(1),
            GapHistogramItem.expires_at.set(_gap_day_expiry(at.date())),
        ]
        updates.append((GapHistogramItem(_partition(entry.feature), _gap_sk(at.date())), gap_actions))
    return updates


class DynamoPromptCacheStore:
    """PromptCacheStore over the single table. Gap histograms are cached per store (per warm container) for 60 s."""

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()
        self._gaps: dict[str, tuple[datetime, GapHistogram]] = {}
        self._gaps_lock = threading.Lock()

    def last_seen(self, feature: str, prefix_key: str) -> datetime | None:
        # Eventually consistent: a gap misjudged by a write under a second old changes a TTL guess, nothing more.
        try:
            item = PrefixStatsItem.get(_partition(feature), f"{_PREFIX_SK}{prefix_key}")
        except DoesNotExist:
            return None
        return item.last_seen

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
            _partition(feature), GapHistogramItem.sk.between(_gap_sk(first), _gap_sk(today))
        ):
            for name in counts:
                counts[name] += int(getattr(item, name) or 0)
        histogram = GapHistogram(**counts)
        with self._gaps_lock:
            self._gaps[feature] = (now, histogram)
        return histogram

    def prefixes(self, feature: str | None = None) -> list[PrefixStats]:
        """One feature's prefixes: one Query. Every feature's: a Scan of the whole table (ledger rows
        included), filtered to prefix items; an operator command, never for a request's hot path."""
        if feature is None:
            items = PrefixStatsItem.scan()
        else:
            items = PrefixStatsItem.query(
                _partition(feature), PrefixStatsItem.sk.startswith(_PREFIX_SK), consistent_read=True
            )
        found = [_to_stats(item) for item in items]
        return sorted(found, key=lambda s: (s.feature, s.net_saved_usd, s.prefix_key))


def _gap_sk(day: date) -> str:
    return f"{_GAPS_SK}{day.isoformat()}"


def _gap_day_expiry(day: date) -> int:
    """The epoch second after the day has left every window (plus a day of slack for clock skew)."""
    end = datetime.combine(day + timedelta(days=GAP_WINDOW_DAYS + 1), datetime.min.time(), tzinfo=UTC)
    return int(end.timestamp())


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
