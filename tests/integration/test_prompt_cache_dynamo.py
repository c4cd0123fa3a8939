"""Prompt-cache observations against moto: settled ledger rows, the table's stream and the real AggregatorFunction
write per-prefix totals and gap histograms that DynamoPromptCacheStore reads back; the ledger row's routing fields.
The port's contract, which the in-memory fake must pass too, is in tests/contract/test_prompt_cache_store.py."""

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Literal

import pytest

from costgate.accounting.ledger import LedgerEntry
from costgate.dal.ledger import DynamoLedgerStore, LedgerItem
from costgate.dal.prompt_cache import DynamoPromptCacheStore, GapHistogramItem, PrefixStatsItem, prefix_partition
from costgate.routing.prompt_cache import GapHistogram, PrefixStats, PrefixUse, Ttl
from costgate_local.stack.aws import LocalAwsEndpoints
from tests.fakes.accounting import make_entry
from tests.fakes.clock import ManualClock
from tests.integration import nullable
from tests.integration.stream import aggregate

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
SYSTEM = "3f9a0c4d5e6b7a8190a1b2c3d4e5f607"
TOOLS = "b7c1d2e3f4a5968778695a4b3c2d1e0f"
SONNET = "claude-sonnet-5-5"


class Recorder:
    """Records settled rows, then lets AggregatorFunction take them from the stream (as the deployed table does)."""

    def __init__(self, local_aws: LocalAwsEndpoints, table: str) -> None:
        self.ledger = DynamoLedgerStore()
        self._aws, self._table = local_aws, table

    def record(self, *entries: LedgerEntry) -> list[bool]:
        answers = [self.ledger.record(e) for e in entries]
        aggregate(self._aws, self._table)
        return answers


@pytest.fixture
def recorder(ledger_table: str, local_aws: LocalAwsEndpoints) -> Recorder:
    return Recorder(local_aws, ledger_table)


@pytest.fixture
def observed(ledger_table: str) -> DynamoPromptCacheStore:
    return DynamoPromptCacheStore(ManualClock())


def use(
    prefix: str = SYSTEM,
    *,
    write: int = 0,
    read: int = 0,
    premium: str = "0",
    saved: str = "0",
    ttl: Ttl | None = "5m",
    managed_by: Literal["costgate", "client"] = "costgate",
    model: str = SONNET,
) -> PrefixUse:
    return PrefixUse(
        prefix_key=prefix,
        model=model,
        managed_by=managed_by,
        ttl=ttl,
        write_tokens=write,
        read_tokens=read,
        write_premium_usd=Decimal(premium),
        read_saved_usd=Decimal(saved),
    )


def entry(request_id: str, prefix_use: PrefixUse | None, at: datetime = NOW, feature: str = "chat") -> LedgerEntry:
    return make_entry(request_id, at=at, feature=feature, model=SONNET, prompt_cache=prefix_use)


def stored_prefix(feature: str, prefix: str) -> PrefixStatsItem:
    """The prefix item, read by its documented key: PK PCACHE#<feature>#<m>, SK PREFIX#<prefix_key>."""
    return PrefixStatsItem.get(prefix_partition(feature, prefix), f"PREFIX#{prefix}", consistent_read=True)


# --- per-prefix totals ------------------------------------------------------------------------------------


def test_a_prefixs_totals_add_up_exactly_over_several_requests(
    recorder: Recorder, observed: DynamoPromptCacheStore
) -> None:
    # Given one write of a 4,000-token system prompt, then three reads of it (amounts below a millionth of a dollar)
    uses = [
        use(write=4000, premium="0.003", ttl="1h"),
        use(read=4000, saved="0.0108", ttl="1h"),
        use(read=4000, write=13, saved="0.0108", premium="0.00000975", ttl="1h"),
        use(read=3999, saved="0.0107973", ttl="5m"),
    ]

    # When the four requests are recorded, a minute apart
    answers = recorder.record(*(entry(f"req-{n}", u, at=NOW + timedelta(minutes=n)) for n, u in enumerate(uses)))
    assert answers == [True] * 4

    # Then the prefix's totals are the exact sums, first seen at the first request and last seen at the last
    assert observed.prefixes("chat") == [
        PrefixStats(
            feature="chat",
            prefix_key=SYSTEM,
            model=SONNET,
            managed_by="costgate",
            first_seen=NOW,
            last_seen=NOW + timedelta(minutes=3),
            requests=4,
            write_tokens=4013,
            read_tokens=11_999,
            write_premium_usd=Decimal("0.00300975"),
            read_saved_usd=Decimal("0.0323973"),
        )
    ]
    # And the item at its documented key keeps the TTL the last request used, and expires 90 days after it
    item = stored_prefix("chat", SYSTEM)
    assert item.ttl == "5m"
    assert item.first_seen == NOW
    assert isinstance(item.write_premium_usd, Decimal)
    assert item.expires_at == int((NOW + timedelta(minutes=3, days=90)).timestamp())
    # and the gaps between them: the first use had none before it, the others a minute
    assert observed.gap_histogram("chat") == GapHistogram(within_5m=3, beyond_1h=1)


def test_first_seen_stays_while_last_seen_model_and_ttl_follow_the_latest_request(recorder: Recorder) -> None:
    # Given a prefix first recorded at noon with a 1h TTL
    recorder.record(entry("first", use(write=2000, premium="0.0015", ttl="1h"), at=NOW))

    # When the client takes over its caching two hours later with no TTL and another model
    later = NOW + timedelta(hours=2)
    client = use(read=2000, saved="0.0054", ttl=None, managed_by="client", model="claude-opus-5-5")
    recorder.record(entry("second", client, at=later))

    # Then first_seen is still noon, last_seen moved, and the TTL is gone rather than stale
    item = stored_prefix("chat", SYSTEM)
    assert (item.first_seen, item.last_seen) == (NOW, later)
    assert (item.model, item.managed_by, nullable(item.ttl)) == ("claude-opus-5-5", "client", None)


def test_last_seen_comes_back_in_utc(recorder: Recorder) -> None:
    seoul = datetime(2026, 11, 20, 21, 0, 30, 250_000, tzinfo=timezone(timedelta(hours=9)))
    recorder.record(entry("kst", use(write=1), at=seoul))
    seen = stored_prefix("chat", SYSTEM).last_seen
    assert seen == seoul
    assert seen.utcoffset() == timedelta(0)


# --- gap histograms ---------------------------------------------------------------------------------------


def test_the_gap_histogram_counts_each_bucket_per_feature(recorder: Recorder) -> None:
    # Given chat's costgate-managed uses of one prefix at 12:00, 12:01, 12:03, 12:40, 14:00, 14:02; one
    # client-managed use of another (no gap), and a search use
    minutes = [0, 1, 3, 40, 120, 122]
    recorder.record(
        *(
            entry(f"chat-{n}", use(read=10, saved="0.000027"), at=NOW + timedelta(minutes=m))
            for n, m in enumerate(minutes)
        ),
        entry("client", use(TOOLS, write=10, managed_by="client")),
        entry("search-0", use(write=10), feature="search"),
    )

    # When the histograms are read
    observed = DynamoPromptCacheStore(ManualClock())

    # Then the gaps are: none before the first (beyond 1h), 1 and 2 minutes, 37 minutes, 80 minutes, 2 minutes
    assert observed.gap_histogram("chat") == GapHistogram(within_5m=3, within_1h=1, beyond_1h=2)
    assert observed.gap_histogram("search") == GapHistogram(beyond_1h=1)
    assert observed.gap_histogram("summaries") == GapHistogram()
    assert [s.requests for s in observed.prefixes("chat") if s.prefix_key == TOOLS] == [1]
    item = GapHistogramItem.get("PCACHE#chat", "GAPS#2026-11-20", consistent_read=True)
    assert (item.within_5m, item.within_1h, item.beyond_1h) == (3, 1, 2)
    # 2026-11-20 + 8 days, 00:00 UTC: after the day has left every 7-day window
    assert item.expires_at == int(datetime(2026, 11, 28, tzinfo=UTC).timestamp())


def test_the_gap_histogram_is_cached_for_60_seconds_per_feature(recorder: Recorder) -> None:
    # Given a warm container that has read chat's histogram (one gap)
    clock = ManualClock()
    api = DynamoPromptCacheStore(clock=clock)
    recorder.record(entry("a", use()))
    assert api.gap_histogram("chat") == GapHistogram(beyond_1h=1)

    # When two more uses are recorded for chat and one for search
    recorder.record(
        entry("b", use(), at=NOW + timedelta(minutes=10)), entry("c", use(), at=NOW + timedelta(minutes=20))
    )
    recorder.record(entry("d", use(), feature="search"))

    # Then chat's stays as read for 60 s, while search (never read) is read fresh
    clock.at = NOW + timedelta(seconds=59)
    assert api.gap_histogram("chat") == GapHistogram(beyond_1h=1)
    assert api.gap_histogram("search") == GapHistogram(beyond_1h=1)
    clock.at = NOW + timedelta(seconds=60)
    assert api.gap_histogram("chat") == GapHistogram(within_1h=2, beyond_1h=1)


# --- legacy items -----------------------------------------------------------------------------------------


def test_prefixes_written_before_the_aggregator_are_still_listed(observed: DynamoPromptCacheStore) -> None:
    # Given a prefix item in the layout before its partitions were spread (PK PCACHE#<feature>)
    PrefixStatsItem(
        "PCACHE#chat",
        f"PREFIX#{TOOLS}",
        feature="chat",
        prefix_key=TOOLS,
        model=SONNET,
        managed_by="costgate",
        first_seen=NOW,
        last_seen=NOW,
        requests=2,
        write_tokens=10,
        read_tokens=10,
        write_premium_usd=Decimal("0.1"),
        read_saved_usd=Decimal("0.2"),
    ).save()

    assert [(s.prefix_key, s.requests) for s in observed.prefixes("chat")] == [(TOOLS, 2)]


# --- the ledger row's routing fields -------------------------------------------------------------------------


def test_the_ledger_row_keeps_what_was_requested_and_why_it_was_routed(recorder: Recorder) -> None:
    routed = make_entry(
        "routed",
        model="claude-haiku-5-5",
        requested_model="auto",
        route_tier="simple",
        route_reason="auto: simple (score -4; simple: translate; short prompt)",
    )
    explicit = make_entry("explicit", requested_model="claude-opus-5-5", route_reason="explicit model")

    recorder.record(routed, explicit, make_entry("legacy"))

    item = LedgerItem.get("REQ#routed", "REQ")
    assert (item.model, item.requested_model, item.route_tier, item.route_reason) == (
        "claude-haiku-5-5",
        "auto",
        "simple",
        "auto: simple (score -4; simple: translate; short prompt)",
    )
    item = LedgerItem.get("REQ#explicit", "REQ")
    fields = (item.requested_model, nullable(item.route_tier), item.route_reason)
    assert fields == ("claude-opus-5-5", None, "explicit model")
    item = LedgerItem.get("REQ#legacy", "REQ")
    legacy = (nullable(item.requested_model), nullable(item.route_tier), nullable(item.route_reason))
    assert legacy == (None, None, None)
