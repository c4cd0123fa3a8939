"""Prompt-cache observations through DynamoLedgerStore against moto: per-prefix totals and gap histograms
written in the ledger's transaction and read back by DynamoPromptCacheStore; the ledger row's routing fields.
The port's contract, which the in-memory fake must pass too, is in tests/contract/test_prompt_cache_store.py."""

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Literal

import pytest

from costgate.accounting.budgets import Budget, BudgetPeriod, tenant_scope
from costgate.accounting.ledger import LedgerEntry
from costgate.accounting.services import reserve_budget
from costgate.dal.budgets import DynamoBudgetStore
from costgate.dal.ledger import DynamoLedgerStore, LedgerItem
from costgate.dal.prompt_cache import DynamoPromptCacheStore, GapHistogramItem, PrefixStatsItem, prompt_cache_updates
from costgate.routing.prompt_cache import GapBucket, GapHistogram, PrefixStats, PrefixUse, Ttl
from tests.fakes.accounting import InMemoryLedgerStore, make_entry
from tests.fakes.clock import ManualClock
from tests.integration import nullable

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
SYSTEM = "3f9a0c4d5e6b7a8190a1b2c3d4e5f607"
TOOLS = "b7c1d2e3f4a5968778695a4b3c2d1e0f"
SONNET = "claude-sonnet-5-5"


@pytest.fixture
def ledger(ledger_table: str) -> DynamoLedgerStore:
    return DynamoLedgerStore()


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


def stored_prefix(feature: str, prefix: str) -> PrefixStatsItem:
    """The prefix item, read by its documented key: PK PCACHE#<feature>, SK PREFIX#<prefix_key>."""
    return PrefixStatsItem.get(f"PCACHE#{feature}", f"PREFIX#{prefix}", consistent_read=True)


# --- per-prefix totals ------------------------------------------------------------------------------------


def test_a_prefixs_totals_add_up_exactly_over_several_requests(
    ledger: DynamoLedgerStore, observed: DynamoPromptCacheStore
) -> None:
    # Given one write of a 4,000-token system prompt, then three reads of it (amounts below a millionth of a dollar)
    uses = [
        use(write=4000, premium="0.003", gap=GapBucket.BEYOND_1H, ttl="1h"),
        use(read=4000, saved="0.0108", gap=GapBucket.WITHIN_5M, ttl="1h"),
        use(read=4000, write=13, saved="0.0108", premium="0.00000975", gap=GapBucket.WITHIN_5M, ttl="1h"),
        use(read=3999, saved="0.0107973", gap=GapBucket.WITHIN_1H, ttl="5m"),
    ]

    # When the four requests are recorded, a minute apart
    for n, prefix_use in enumerate(uses):
        assert ledger.record(entry(f"req-{n}", prefix_use, at=NOW + timedelta(minutes=n))) is True

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
    # And the item at its documented key keeps the TTL the last request used
    item = stored_prefix("chat", SYSTEM)
    assert item.ttl == "5m"
    assert item.first_seen == NOW
    assert isinstance(item.write_premium_usd, Decimal)


def test_first_seen_stays_while_last_seen_model_and_ttl_follow_the_latest_request(
    ledger: DynamoLedgerStore, observed: DynamoPromptCacheStore
) -> None:
    # Given a prefix first recorded at noon with a 1h TTL
    ledger.record(entry("first", use(write=2000, premium="0.0015", ttl="1h"), at=NOW))
    assert observed.last_seen("chat", SYSTEM) == NOW

    # When the client takes over its caching two hours later with no TTL and another model
    later = NOW + timedelta(hours=2)
    ledger.record(
        entry(
            "second", use(read=2000, saved="0.0054", ttl=None, managed_by="client", model="claude-opus-5-5"), at=later
        )
    )

    # Then first_seen is still noon, last_seen moved, and the TTL is gone rather than stale
    item = stored_prefix("chat", SYSTEM)
    assert (item.first_seen, item.last_seen) == (NOW, later)
    assert (item.model, item.managed_by, nullable(item.ttl)) == ("claude-opus-5-5", "client", None)
    assert observed.last_seen("chat", SYSTEM) == later


def test_last_seen_is_none_for_an_unknown_prefix_and_comes_back_in_utc(
    ledger: DynamoLedgerStore, observed: DynamoPromptCacheStore
) -> None:
    assert observed.last_seen("chat", SYSTEM) is None
    # Given a request stamped in UTC+9
    seoul = datetime(2026, 11, 20, 21, 0, 30, 250_000, tzinfo=timezone(timedelta(hours=9)))
    ledger.record(entry("kst", use(write=1), at=seoul))
    # Then last_seen is the same instant, in UTC, and only for that feature and prefix
    seen = observed.last_seen("chat", SYSTEM)
    assert seen == seoul
    assert seen is not None
    assert seen.utcoffset() == timedelta(0)
    assert observed.last_seen("search", SYSTEM) is None
    assert observed.last_seen("chat", TOOLS) is None


def test_a_duplicate_request_id_changes_no_prefix_total_and_no_gap(
    ledger: DynamoLedgerStore, observed: DynamoPromptCacheStore
) -> None:
    # Given a recorded request that read the system prefix within 5 minutes
    original = entry("req-1", use(read=1000, saved="0.0027", gap=GapBucket.WITHIN_5M))
    assert ledger.record(original) is True
    before = observed.prefixes()

    # When the same request id arrives again, later, with another use of the same prefix and of another one
    assert (
        ledger.record(
            entry("req-1", use(write=9000, premium="1", gap=GapBucket.BEYOND_1H), at=NOW + timedelta(hours=1))
        )
        is False
    )
    assert ledger.record(entry("req-1", use(TOOLS, write=500, premium="0.1", gap=GapBucket.WITHIN_1H))) is False

    # Then nothing moved: the prefix totals, its last_seen, the histogram; no item for the other prefix
    assert observed.prefixes() == before
    assert before[0].requests == 1
    assert observed.last_seen("chat", SYSTEM) == NOW
    assert DynamoPromptCacheStore(ManualClock()).gap_histogram("chat") == GapHistogram(within_5m=1)
    assert observed.last_seen("chat", TOOLS) is None


def test_a_request_without_a_tracked_prefix_writes_no_prompt_cache_item(
    ledger: DynamoLedgerStore, observed: DynamoPromptCacheStore
) -> None:
    assert prompt_cache_updates(entry("plain", None)) == []
    assert ledger.record(entry("plain", None)) is True
    assert observed.prefixes() == []
    assert observed.gap_histogram("chat") == GapHistogram()


def test_prefix_use_and_budget_settlement_share_the_ledgers_transaction(ledger_table: str) -> None:
    # Given $1 held on the tenant's daily budget
    budgets = DynamoBudgetStore()
    budget = Budget(tenant_scope("acme"), BudgetPeriod.DAY, Decimal(10))
    reservation = reserve_budget(budgets, [budget], Decimal(1), NOW)
    recorded = entry("req-both", use(write=100, premium="0.000075", gap=GapBucket.BEYOND_1H))

    # When the request is recorded with its hold and its prefix use, then replayed
    assert DynamoLedgerStore().record(recorded, reservation.holds) is True
    assert DynamoLedgerStore().record(recorded, reservation.holds) is False

    # Then the budget is settled once, and the prefix and the gap are counted once
    assert budgets.remaining(reservation.holds) == Decimal(10) - recorded.cost.total_usd
    (stats,) = DynamoPromptCacheStore(ManualClock()).prefixes("chat")
    assert (stats.requests, stats.write_premium_usd) == (1, Decimal("0.000075"))
    assert DynamoPromptCacheStore(ManualClock()).gap_histogram("chat") == GapHistogram(beyond_1h=1)


# --- gap histograms ---------------------------------------------------------------------------------------


def test_the_gap_histogram_counts_each_bucket_per_feature(ledger: DynamoLedgerStore) -> None:
    # Given chat's costgate-managed requests: 3 within 5 minutes, 1 within an hour, 2 beyond,
    # one client-managed request (no gap), and a search request within 5 minutes
    gaps = [GapBucket.BEYOND_1H, GapBucket.WITHIN_5M, GapBucket.WITHIN_5M, GapBucket.WITHIN_1H]
    gaps += [GapBucket.BEYOND_1H, GapBucket.WITHIN_5M]
    for n, gap in enumerate(gaps):
        ledger.record(entry(f"chat-{n}", use(read=10, saved="0.000027", gap=gap)))
    ledger.record(entry("client", use(TOOLS, write=10, managed_by="client", gap=None)))
    ledger.record(entry("search-0", use(write=10, gap=GapBucket.WITHIN_5M), feature="search"))

    # When the histograms are read
    observed = DynamoPromptCacheStore(ManualClock())

    # Then each feature has its own counts; the client-managed request counts for its prefix, not as a gap
    assert observed.gap_histogram("chat") == GapHistogram(within_5m=3, within_1h=1, beyond_1h=2)
    assert observed.gap_histogram("chat").total == 6
    assert observed.gap_histogram("search") == GapHistogram(within_5m=1)
    assert observed.gap_histogram("summaries") == GapHistogram()
    assert [s.requests for s in observed.prefixes("chat") if s.prefix_key == TOOLS] == [1]
    item = GapHistogramItem.get("PCACHE#chat", "GAPS#2026-11-20", consistent_read=True)
    assert (item.within_5m, item.within_1h, item.beyond_1h) == (3, 1, 2)
    # 2026-11-20 + 8 days, 00:00 UTC: after the day has left every 7-day window
    assert item.expires_at == int(datetime(2026, 11, 28, tzinfo=UTC).timestamp())


def test_the_gap_histogram_sums_the_last_seven_utc_days_only(ledger: DynamoLedgerStore) -> None:
    # Given gaps recorded 7 days ago, 6 days ago and today
    ledger.record(entry("old", use(gap=GapBucket.BEYOND_1H), at=NOW - timedelta(days=7)))
    ledger.record(entry("edge", use(gap=GapBucket.WITHIN_1H), at=NOW - timedelta(days=6)))
    ledger.record(entry("today", use(gap=GapBucket.WITHIN_5M), at=NOW))

    # Then the window is today and the six days before it: the 7-day-old gap has left it
    assert DynamoPromptCacheStore(ManualClock()).gap_histogram("chat") == GapHistogram(within_5m=1, within_1h=1)
    # and a prefix is kept 90 days after it was last sent
    item = PrefixStatsItem.get("PCACHE#chat", f"PREFIX#{SYSTEM}", consistent_read=True)
    assert item.expires_at == int((NOW + timedelta(days=90)).timestamp())


def test_the_gap_histogram_is_cached_for_60_seconds_per_feature(ledger: DynamoLedgerStore) -> None:
    # Given a warm container that has read chat's histogram (one gap)
    clock = ManualClock()
    api = DynamoPromptCacheStore(clock=clock)
    ledger.record(entry("a", use(gap=GapBucket.WITHIN_5M)))
    assert api.gap_histogram("chat") == GapHistogram(within_5m=1)

    # When two more gaps are recorded for chat and one for search
    ledger.record(entry("b", use(gap=GapBucket.WITHIN_1H)))
    ledger.record(entry("c", use(gap=GapBucket.WITHIN_1H)))
    ledger.record(entry("d", use(gap=GapBucket.BEYOND_1H), feature="search"))

    # Then chat's stays as read for 60 s, while search (never read) is read fresh
    clock.at = NOW + timedelta(seconds=59)
    assert api.gap_histogram("chat") == GapHistogram(within_5m=1)
    assert api.gap_histogram("search") == GapHistogram(beyond_1h=1)
    clock.at = NOW + timedelta(seconds=60)
    assert api.gap_histogram("chat") == GapHistogram(within_5m=1, within_1h=2)
    # And last_seen is never cached: it is read on every call
    ledger.record(entry("e", use(), at=NOW + timedelta(minutes=5)))
    assert api.last_seen("chat", SYSTEM) == NOW + timedelta(minutes=5)


# --- listing ------------------------------------------------------------------------------------------------


def test_prefixes_are_listed_by_feature_then_net_saving_lowest_first(
    ledger: DynamoLedgerStore, observed: DynamoPromptCacheStore
) -> None:
    # Given chat's system prefix that paid off, chat's tool prefix that only wrote (wasted), and search's
    # prefix that saved exactly what it cost; plus ledger rows and rollups in the same table
    ledger.record(entry("c1", use(SYSTEM, write=1000, premium="0.00075")))
    ledger.record(entry("c2", use(SYSTEM, read=1000, saved="0.0027", gap=GapBucket.WITHIN_5M)))
    ledger.record(entry("c3", use(TOOLS, write=2000, premium="0.0015")))
    ledger.record(entry("s1", use(SYSTEM, write=100, premium="0.00027"), feature="search"))
    ledger.record(entry("s2", use(SYSTEM, read=100, saved="0.00027"), feature="search"))

    # When every prefix is listed (a Scan), and one feature's (a Query)
    everything = observed.prefixes()
    chat = observed.prefixes("chat")

    # Then they come by feature, the least saving first, with net saving and the wasted flag exact
    assert [(s.feature, s.prefix_key, s.net_saved_usd, s.wasted) for s in everything] == [
        ("chat", TOOLS, Decimal("-0.0015"), True),
        ("chat", SYSTEM, Decimal("0.00195"), False),
        ("search", SYSTEM, Decimal("0"), False),
    ]
    assert chat == everything[:2]
    assert observed.prefixes("summaries") == []
    # And the ledger rows the scan passed over are still there
    assert LedgerItem.get("REQ#c1", "REQ").feature == "chat"


# --- the fake --------------------------------------------------------------------------------------------


def test_the_fake_ledger_refuses_a_prefix_use_it_has_no_store_for() -> None:
    with pytest.raises(AssertionError, match="without the prompt-cache store"):
        InMemoryLedgerStore().record(entry("a", use(write=1)))


# --- the ledger row's routing fields -------------------------------------------------------------------------


def test_the_ledger_row_keeps_what_was_requested_and_why_it_was_routed(ledger: DynamoLedgerStore) -> None:
    # Given a routed request and one that named its model
    routed = make_entry(
        "routed",
        model="claude-haiku-5-5",
        requested_model="auto",
        route_tier="simple",
        route_reason="auto: simple (score -4; simple: translate; short prompt)",
    )
    explicit = make_entry("explicit", requested_model="claude-opus-5-5", route_reason="explicit model")

    # When both are recorded
    ledger.record(routed)
    ledger.record(explicit)

    # Then each row keeps the requested model, the tier (routed only) and the reason
    item = LedgerItem.get("REQ#routed", "REQ")
    assert (item.model, item.requested_model, item.route_tier, item.route_reason) == (
        "claude-haiku-5-5",
        "auto",
        "simple",
        "auto: simple (score -4; simple: translate; short prompt)",
    )
    item = LedgerItem.get("REQ#explicit", "REQ")
    assert (item.requested_model, nullable(item.route_tier), item.route_reason) == (
        "claude-opus-5-5",
        None,
        "explicit model",
    )
    # And a row written without them (an older caller) has none
    ledger.record(make_entry("legacy"))
    item = LedgerItem.get("REQ#legacy", "REQ")
    assert tuple(map(nullable, (item.requested_model, item.route_tier, item.route_reason))) == (None, None, None)
