"""PromptCacheStore's contract, for InMemoryPromptCacheStore and DynamoPromptCacheStore, written through their
ledgers (`record`, the aggregator keeping prefix totals and gaps from the ended rows, docs/scale.md §4): exact
per-prefix totals, first and last seen, gap histograms per feature over the last 7 UTC days (up to 60 s stale),
and prefixes listed by feature then net saving. Each costgate-managed use's gap is measured from the prefix's
use before it (the first use of a prefix counts beyond an hour)."""

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Literal

from costgate.accounting.ledger import LedgerEntry
from costgate.routing.prompt_cache import GapHistogram, PrefixStats, PrefixUse, Ttl
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


def last_seen(accounting: Accounting, feature: str, prefix: str) -> datetime | None:
    found = [s.last_seen for s in accounting.prompt_cache.prefixes(feature) if s.prefix_key == prefix]
    return found[0] if found else None


def test_a_prefixs_totals_add_up_exactly_over_several_requests(accounting: Accounting) -> None:
    # Given one write of a 4,000-token system prompt, then three reads of it (amounts below a millionth of a dollar)
    uses = [
        use(write=4000, premium="0.003", ttl="1h"),
        use(read=4000, saved="0.0108", ttl="1h"),
        use(read=4000, write=13, saved="0.0108", premium="0.00000975", ttl="1h"),
        use(read=3999, saved="0.0107973", ttl="5m", managed_by="client"),
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
    # And the costgate-managed uses' gaps: the first beyond an hour (none before it), then a minute each
    assert accounting.prompt_cache.gap_histogram("chat") == GapHistogram(within_5m=2, beyond_1h=1)


def test_last_seen_is_the_same_instant_as_the_request_in_utc(accounting: Accounting) -> None:
    assert last_seen(accounting, "chat", SYSTEM) is None
    # Given a request stamped in UTC+9
    seoul = datetime(2026, 11, 20, 21, 0, 30, 250_000, tzinfo=timezone(timedelta(hours=9)))
    accounting.ledger.record(entry("kst", use(write=1), at=seoul))
    # Then last_seen is the same instant, only for that feature and prefix
    assert last_seen(accounting, "chat", SYSTEM) == seoul
    assert last_seen(accounting, "search", SYSTEM) is None
    assert last_seen(accounting, "chat", TOOLS) is None


def test_first_seen_stays_while_last_seen_model_and_ttl_follow_the_latest_request(accounting: Accounting) -> None:
    # Given a prefix seen at noon with a 1h TTL, and again five minutes later with another model and no TTL
    accounting.ledger.record(entry("first", use(write=1, ttl="1h"), at=NOW))
    assert last_seen(accounting, "chat", SYSTEM) == NOW
    later = NOW + timedelta(minutes=5)
    accounting.ledger.record(entry("second", use(read=1, ttl=None, model="claude-opus-5-5"), at=later))

    # Then the next read has the later use, first_seen stays
    (stats,) = accounting.prompt_cache.prefixes("chat")
    assert (stats.first_seen, stats.last_seen, stats.model, stats.requests) == (NOW, later, "claude-opus-5-5", 2)


def test_a_duplicate_request_id_changes_no_prefix_total_and_no_gap(accounting: Accounting) -> None:
    # Given a recorded request that read the system prefix within 5 minutes
    assert accounting.ledger.record(entry("req-1", use(read=1000, saved="0.0027"))) is True
    before = accounting.prompt_cache.prefixes()

    # When the same request id arrives again, later, with another use of the same prefix and of another one
    later = NOW + timedelta(hours=1)
    assert accounting.ledger.record(entry("req-1", use(write=9000, premium="1"), later)) is False
    assert accounting.ledger.record(entry("req-1", use(TOOLS, write=500))) is False

    # Then nothing moved: the prefix totals, its last_seen, the histogram; the other prefix is unknown
    assert accounting.prompt_cache.prefixes() == before
    assert before[0].requests == 1
    assert last_seen(accounting, "chat", SYSTEM) == NOW
    assert accounting.another_prompt_cache().gap_histogram("chat") == GapHistogram(beyond_1h=1)
    assert last_seen(accounting, "chat", TOOLS) is None


def test_a_request_without_a_tracked_prefix_is_not_observed(accounting: Accounting) -> None:
    assert accounting.ledger.record(entry("plain", None)) is True
    assert accounting.prompt_cache.prefixes() == []
    assert accounting.prompt_cache.gap_histogram("chat") == GapHistogram()


def test_the_gap_histogram_counts_each_bucket_per_feature(accounting: Accounting) -> None:
    # Given chat's costgate-managed uses of one prefix: first (beyond an hour), after 2 min, 3 min, 30 min, 2 h,
    # 1 min; a client-managed use of another prefix (no gap); and search's first use of the prefix
    minutes = [0, 2, 5, 35, 155, 156]
    for n, offset in enumerate(minutes):
        accounting.ledger.record(entry(f"chat-{n}", use(read=10, saved="0.000027"), at=NOW + timedelta(minutes=offset)))
    accounting.ledger.record(entry("client", use(TOOLS, write=10, managed_by="client")))
    accounting.ledger.record(entry("search-0", use(write=10), feature="search"))

    # Then each feature has its own counts; the client-managed request counts for its prefix, not as a gap
    observed = accounting.prompt_cache
    assert observed.gap_histogram("chat") == GapHistogram(within_5m=3, within_1h=1, beyond_1h=2)
    assert observed.gap_histogram("search") == GapHistogram(beyond_1h=1)
    assert observed.gap_histogram("summaries") == GapHistogram()
    assert [s.requests for s in observed.prefixes("chat") if s.prefix_key == TOOLS] == [1]


def test_the_gap_histogram_sums_the_last_seven_utc_days_only(accounting: Accounting) -> None:
    # Given a prefix's uses 7 days ago, 6 days ago (just after midnight UTC, in UTC−5 the day before), 30 minutes
    # later, and today: four gaps, of which the 6-days-ago pair's second is within an hour
    edge = datetime(2026, 11, 13, 19, 30, tzinfo=timezone(timedelta(hours=-5)))  # Nov 14 00:30 UTC
    accounting.ledger.record(entry("old", use(), at=NOW - timedelta(days=7)))
    accounting.ledger.record(entry("edge", use(), at=edge))
    accounting.ledger.record(entry("edge+30", use(), at=edge + timedelta(minutes=30)))
    accounting.ledger.record(entry("today", use(), at=NOW))

    # Then the window is today and the six UTC days before it: the 7-day-old gap has left it
    assert accounting.prompt_cache.gap_histogram("chat") == GapHistogram(within_1h=1, beyond_1h=2)

    # And a week later, read by a container that has not cached it, only today's gap has left
    accounting.clock.at = NOW + timedelta(days=6)
    assert accounting.another_prompt_cache().gap_histogram("chat") == GapHistogram(beyond_1h=1)
    accounting.clock.at = NOW + timedelta(days=7)
    assert accounting.another_prompt_cache().gap_histogram("chat") == GapHistogram()


def test_the_gap_histogram_may_be_up_to_60_seconds_stale(accounting: Accounting) -> None:
    # Given a container that has read chat's histogram (one use: one gap)
    accounting.ledger.record(entry("a", use()))
    api = accounting.another_prompt_cache()
    assert api.gap_histogram("chat") == GapHistogram(beyond_1h=1)

    # When two more uses are recorded for chat, 10 and 20 minutes later
    accounting.ledger.record(entry("b", use(), at=NOW + timedelta(minutes=10)))
    accounting.ledger.record(entry("c", use(), at=NOW + timedelta(minutes=20)))

    # Then before 60 s it answers the old histogram or the new one, and from 60 s on the new one
    new = GapHistogram(within_1h=2, beyond_1h=1)
    accounting.clock.at = NOW + timedelta(seconds=59)
    assert api.gap_histogram("chat") in (GapHistogram(beyond_1h=1), new)
    accounting.clock.at = NOW + timedelta(seconds=60)
    assert api.gap_histogram("chat") == new


def test_prefixes_are_listed_by_feature_then_net_saving_lowest_first(accounting: Accounting) -> None:
    # Given chat's system prefix that paid off, chat's tool prefix that only wrote (wasted), and search's
    # prefix that saved exactly what it cost
    ledger = accounting.ledger
    ledger.record(entry("c1", use(SYSTEM, write=1000, premium="0.00075")))
    ledger.record(entry("c2", use(SYSTEM, read=1000, saved="0.0027")))
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
        entry("a", use(write=3000, premium="0.00225", ttl="1h")),
        entry("b", use(read=3000, saved="0.0081"), at=NOW + timedelta(minutes=2)),
        entry("a", use(write=1, premium="9"), at=NOW + timedelta(hours=3)),
        entry("c", use(TOOLS, write=700, premium="0.000525", managed_by="client", ttl=None)),
        entry("d", use(read=50, saved="0.000135"), feature="search"),
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
    assert observed.gap_histogram("search") == GapHistogram(beyond_1h=1)
    assert observed.gap_histogram("none") == GapHistogram()
    assert [last_seen(accounting, "chat", p) for p in (SYSTEM, TOOLS)] == [NOW + timedelta(minutes=2), NOW]
    assert [last_seen(accounting, "search", p) for p in (SYSTEM, TOOLS)] == [NOW, None]
