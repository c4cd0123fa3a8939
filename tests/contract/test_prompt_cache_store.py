"""PromptCacheStore's contract, for InMemoryPromptCacheStore and DynamoPromptCacheStore, written through their
ledgers' `record`: exact per-prefix totals, last_seen, gap histograms per feature over the last 7 UTC days
(up to 60 s stale), and prefixes listed by feature then net saving."""

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Literal

from costgate.accounting.ledger import LedgerEntry
from costgate.routing.prompt_cache import GapBucket, GapHistogram, PrefixStats, PrefixUse, Ttl
from tests.contract.conftest import Accounting
from tests.fakes.accounting import make_entry

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
SYSTEM = "3f9a0c4d5e6b7a8190a1b2c3d4e5f607"
TOOLS = "b7c1d2e3f4a5968778695a4b3c2d1e0f"
SONNET = "claude-sonnet-5-5"


def use(
    prefix: str = SYSTEM,
    *,
    write: int = 0,
    read: int = 0,
    premium: str = "0",
    saved: str = "0",
    gap: GapBucket | None = None,
    ttl: Ttl | None = "5m",
    managed_by: Literal["costgate", "client"] = "costgate",
    model: str = SONNET,
) -> PrefixUse:
    return PrefixUse(
        prefix_key=prefix,
        model=model,
        managed_by=managed_by,
        ttl=ttl,
        gap=gap,
        write_tokens=write,
        read_tokens=read,
        write_premium_usd=Decimal(premium),
        read_saved_usd=Decimal(saved),
    )


def entry(request_id: str, prefix_use: PrefixUse | None, at: datetime = NOW, feature: str = "chat") -> LedgerEntry:
    return make_entry(request_id, at=at, feature=feature, model=SONNET, prompt_cache=prefix_use)


def test_a_prefixs_totals_add_up_exactly_over_several_requests(accounting: Accounting) -> None:
    # Given one write of a 4,000-token system prompt, then three reads of it (amounts below a millionth of a dollar)
    uses = [
        use(write=4000, premium="0.003", gap=GapBucket.BEYOND_1H, ttl="1h"),
        use(read=4000, saved="0.0108", gap=GapBucket.WITHIN_5M, ttl="1h"),
        use(read=4000, write=13, saved="0.0108", premium="0.00000975", gap=GapBucket.WITHIN_5M, ttl="1h"),
        use(read=3999, saved="0.0107973", gap=GapBucket.WITHIN_1H, ttl="5m", managed_by="client"),
    ]

    # When the four requests are recorded, a minute apart
    for n, prefix_use in enumerate(uses):
        assert accounting.ledger.record(entry(f"req-{n}", prefix_use, at=NOW + timedelta(minutes=n))) is True

    # Then the prefix's totals are the exact sums, first seen at the first request, last seen and managed as the last
    assert accounting.prompt_cache.prefixes("chat") == [
        PrefixStats(
            feature="chat",
            prefix_key=SYSTEM,
            model=SONNET,
            managed_by="client",
            first_seen=NOW,
            last_seen=NOW + timedelta(minutes=3),
            requests=4,
            write_tokens=4013,
            read_tokens=11_999,
            write_premium_usd=Decimal("0.00300975"),
            read_saved_usd=Decimal("0.0323973"),
        )
    ]


def test_last_seen_is_none_for_an_unknown_prefix_and_the_same_instant_otherwise(accounting: Accounting) -> None:
    assert accounting.prompt_cache.last_seen("chat", SYSTEM) is None
    # Given a request stamped in UTC+9
    seoul = datetime(2026, 11, 20, 21, 0, 30, 250_000, tzinfo=timezone(timedelta(hours=9)))
    accounting.ledger.record(entry("kst", use(write=1), at=seoul))
    # Then last_seen is the same instant, only for that feature and prefix
    assert accounting.prompt_cache.last_seen("chat", SYSTEM) == seoul
    assert accounting.prompt_cache.last_seen("search", SYSTEM) is None
    assert accounting.prompt_cache.last_seen("chat", TOOLS) is None


def test_last_seen_follows_each_recorded_request_at_once(accounting: Accounting) -> None:
    # Given a prefix seen at noon and read back
    accounting.ledger.record(entry("first", use(write=1), at=NOW))
    assert accounting.prompt_cache.last_seen("chat", SYSTEM) == NOW
    # When it is sent again five minutes later: last_seen is not cached, the next read has it
    accounting.ledger.record(entry("second", use(read=1), at=NOW + timedelta(minutes=5)))
    assert accounting.prompt_cache.last_seen("chat", SYSTEM) == NOW + timedelta(minutes=5)


def test_a_duplicate_request_id_changes_no_prefix_total_and_no_gap(accounting: Accounting) -> None:
    # Given a recorded request that read the system prefix within 5 minutes
    assert accounting.ledger.record(entry("req-1", use(read=1000, saved="0.0027", gap=GapBucket.WITHIN_5M))) is True
    before = accounting.prompt_cache.prefixes()

    # When the same request id arrives again, later, with another use of the same prefix and of another one
    later = NOW + timedelta(hours=1)
    assert (
        accounting.ledger.record(entry("req-1", use(write=9000, premium="1", gap=GapBucket.BEYOND_1H), later)) is False
    )
    assert accounting.ledger.record(entry("req-1", use(TOOLS, write=500, gap=GapBucket.WITHIN_1H))) is False

    # Then nothing moved: the prefix totals, its last_seen, the histogram; the other prefix is unknown
    assert accounting.prompt_cache.prefixes() == before
    assert before[0].requests == 1
    assert accounting.prompt_cache.last_seen("chat", SYSTEM) == NOW
    assert accounting.another_prompt_cache().gap_histogram("chat") == GapHistogram(within_5m=1)
    assert accounting.prompt_cache.last_seen("chat", TOOLS) is None


def test_a_request_without_a_tracked_prefix_is_not_observed(accounting: Accounting) -> None:
    assert accounting.ledger.record(entry("plain", None)) is True
    assert accounting.prompt_cache.prefixes() == []
    assert accounting.prompt_cache.gap_histogram("chat") == GapHistogram()


def test_the_gap_histogram_counts_each_bucket_per_feature(accounting: Accounting) -> None:
    # Given chat's costgate-managed requests: 3 within 5 minutes, 1 within an hour, 2 beyond,
    # one client-managed request (no gap), and a search request within 5 minutes
    gaps = [GapBucket.BEYOND_1H, GapBucket.WITHIN_5M, GapBucket.WITHIN_5M, GapBucket.WITHIN_1H]
    gaps += [GapBucket.BEYOND_1H, GapBucket.WITHIN_5M]
    for n, gap in enumerate(gaps):
        accounting.ledger.record(entry(f"chat-{n}", use(read=10, saved="0.000027", gap=gap)))
    accounting.ledger.record(entry("client", use(TOOLS, write=10, managed_by="client", gap=None)))
    accounting.ledger.record(entry("search-0", use(write=10, gap=GapBucket.WITHIN_5M), feature="search"))

    # Then each feature has its own counts; the client-managed request counts for its prefix, not as a gap
    observed = accounting.prompt_cache
    assert observed.gap_histogram("chat") == GapHistogram(within_5m=3, within_1h=1, beyond_1h=2)
    assert observed.gap_histogram("search") == GapHistogram(within_5m=1)
    assert observed.gap_histogram("summaries") == GapHistogram()
    assert [s.requests for s in observed.prefixes("chat") if s.prefix_key == TOOLS] == [1]


def test_the_gap_histogram_sums_the_last_seven_utc_days_only(accounting: Accounting) -> None:
    # Given gaps recorded 7 days ago, 6 days ago (just after midnight UTC, in UTC−5 the day before) and today
    accounting.ledger.record(entry("old", use(gap=GapBucket.BEYOND_1H), at=NOW - timedelta(days=7)))
    edge = datetime(2026, 11, 13, 19, 30, tzinfo=timezone(timedelta(hours=-5)))  # Nov 14 00:30 UTC
    accounting.ledger.record(entry("edge", use(gap=GapBucket.WITHIN_1H), at=edge))
    accounting.ledger.record(entry("today", use(gap=GapBucket.WITHIN_5M), at=NOW))

    # Then the window is today and the six UTC days before it: the 7-day-old gap has left it
    assert accounting.prompt_cache.gap_histogram("chat") == GapHistogram(within_5m=1, within_1h=1)

    # And a week later, read by a container that has not cached it, only today's gap has left
    accounting.clock.at = NOW + timedelta(days=6)
    assert accounting.another_prompt_cache().gap_histogram("chat") == GapHistogram(within_5m=1)
    accounting.clock.at = NOW + timedelta(days=7)
    assert accounting.another_prompt_cache().gap_histogram("chat") == GapHistogram()


def test_the_gap_histogram_may_be_up_to_60_seconds_stale(accounting: Accounting) -> None:
    # Given a container that has read chat's histogram (one gap)
    accounting.ledger.record(entry("a", use(gap=GapBucket.WITHIN_5M)))
    api = accounting.another_prompt_cache()
    assert api.gap_histogram("chat") == GapHistogram(within_5m=1)

    # When two more gaps are recorded for chat
    accounting.ledger.record(entry("b", use(gap=GapBucket.WITHIN_1H)))
    accounting.ledger.record(entry("c", use(gap=GapBucket.WITHIN_1H)))

    # Then before 60 s it answers the old histogram or the new one, and from 60 s on the new one
    new = GapHistogram(within_5m=1, within_1h=2)
    accounting.clock.at = NOW + timedelta(seconds=59)
    assert api.gap_histogram("chat") in (GapHistogram(within_5m=1), new)
    accounting.clock.at = NOW + timedelta(seconds=60)
    assert api.gap_histogram("chat") == new


def test_prefixes_are_listed_by_feature_then_net_saving_lowest_first(accounting: Accounting) -> None:
    # Given chat's system prefix that paid off, chat's tool prefix that only wrote (wasted), and search's
    # prefix that saved exactly what it cost
    ledger = accounting.ledger
    ledger.record(entry("c1", use(SYSTEM, write=1000, premium="0.00075")))
    ledger.record(entry("c2", use(SYSTEM, read=1000, saved="0.0027", gap=GapBucket.WITHIN_5M)))
    ledger.record(entry("c3", use(TOOLS, write=2000, premium="0.0015")))
    ledger.record(entry("s1", use(SYSTEM, write=100, premium="0.00027"), feature="search"))
    ledger.record(entry("s2", use(SYSTEM, read=100, saved="0.00027"), feature="search"))

    # When every prefix is listed, and one feature's
    everything = accounting.prompt_cache.prefixes()
    chat = accounting.prompt_cache.prefixes("chat")

    # Then they come by feature, the least saving first, with net saving and the wasted flag exact
    assert [(s.feature, s.prefix_key, s.net_saved_usd, s.wasted) for s in everything] == [
        ("chat", TOOLS, Decimal("-0.0015"), True),
        ("chat", SYSTEM, Decimal("0.00195"), False),
        ("search", SYSTEM, Decimal("0"), False),
    ]
    assert chat == everything[:2]
    assert accounting.prompt_cache.prefixes("summaries") == []


def test_the_fake_and_dynamo_agree_on_a_sequence(accounting: Accounting) -> None:
    # Given a sequence with a replayed id, a second prefix and a second feature (moved from the DynamoDB
    # suite, where it compared the two stores)
    sequence = [
        entry("a", use(write=3000, premium="0.00225", gap=GapBucket.BEYOND_1H, ttl="1h")),
        entry("b", use(read=3000, saved="0.0081", gap=GapBucket.WITHIN_5M), at=NOW + timedelta(minutes=2)),
        entry("a", use(write=1, premium="9", gap=GapBucket.WITHIN_1H), at=NOW + timedelta(hours=3)),
        entry("c", use(TOOLS, write=700, premium="0.000525", managed_by="client", ttl=None)),
        entry("d", use(read=50, saved="0.000135", gap=GapBucket.WITHIN_1H), feature="search"),
        entry("e", None),
    ]

    # When it is recorded
    answers = [accounting.ledger.record(e) for e in sequence]

    # Then the replay is refused and the observations are those of the others
    assert answers == [True, True, False, True, True, True]
    observed = accounting.prompt_cache
    assert [(s.feature, s.prefix_key, s.requests, s.net_saved_usd) for s in observed.prefixes()] == [
        ("chat", TOOLS, 1, Decimal("-0.000525")),
        ("chat", SYSTEM, 2, Decimal("0.00585")),
        ("search", SYSTEM, 1, Decimal("0.000135")),
    ]
    assert observed.prefixes("search") == observed.prefixes()[2:]
    assert observed.gap_histogram("chat") == GapHistogram(within_5m=1, beyond_1h=1)
    assert observed.gap_histogram("search") == GapHistogram(within_1h=1)
    assert observed.gap_histogram("none") == GapHistogram()
    assert [observed.last_seen("chat", p) for p in (SYSTEM, TOOLS)] == [NOW + timedelta(minutes=2), NOW]
    assert [observed.last_seen("search", p) for p in (SYSTEM, TOOLS)] == [NOW, None]
