"""The ledger service with the in-memory store: entry validation, exactly-once recording, EMF metrics."""

import json
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from costgate.accounting.ledger import LedgerEntry, RecordOutcome, RejectionCount, validate_tag
from costgate.accounting.services import record_request
from costgate.errors import InvalidRequestError
from costgate.observability import NAMESPACE, MetricName
from costgate.pricing.cost import Strategy
from costgate.pricing.usage import TokenUsage
from tests.fakes.accounting import InMemoryLedgerStore, make_entry
from tests.fakes.clock import NOW

SERVICE_NAME = "costgate"
# A tenant name that must not appear anywhere in a metric: tenant is never a dimension.
SECRET_TENANT = "tenant-zebra-7781"
USAGE = TokenUsage(
    input_tokens=1200,
    output_tokens=800,
    cache_write_5m_tokens=3000,
    cache_write_1h_tokens=500,
    cache_read_tokens=20000,
    web_search_requests=2,
)


def _emf_blobs(stdout: str) -> list[dict[str, Any]]:
    """The EMF documents among the JSON lines on stdout (log lines have no `_aws` key)."""
    blobs = []
    for line in stdout.splitlines():
        if line.startswith("{"):
            document = json.loads(line)
            if "_aws" in document:
                blobs.append(document)
    return blobs


def _dimension_set(blob: dict[str, Any]) -> frozenset[str]:
    (directive,) = blob["_aws"]["CloudWatchMetrics"]
    (dimensions,) = directive["Dimensions"]
    return frozenset(dimensions)


@pytest.fixture
def metrics_enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", SERVICE_NAME)
    monkeypatch.delenv("POWERTOOLS_DEV", raising=False)


# --- LedgerEntry validation ---------------------------------------------------------------------


def test_entry_with_naive_datetime_is_rejected() -> None:
    # Given a time with no timezone (the UTC day it belongs to is unknowable)
    naive = datetime(2026, 11, 20, 12, 0)
    valid = make_entry("req-1")

    # When / Then building an entry with it fails
    with pytest.raises(ValueError, match="timezone-aware"):
        replace(valid, at=naive)


def tagged(field: str, tag: str) -> LedgerEntry:
    return make_entry("req-1", tenant=tag) if field == "tenant" else make_entry("req-1", feature=tag)


@pytest.mark.parametrize(
    "tag",
    [
        pytest.param("", id="empty"),
        pytest.param("acme#eu", id="hash-is-the-key-separator"),
        pytest.param("#acme", id="leading-hash"),
        pytest.param("-acme", id="leading-dash"),
        pytest.param("acme corp", id="space"),
        pytest.param("acmé", id="non-ascii"),
        pytest.param("a" * 65, id="65-chars"),
    ],
)
@pytest.mark.parametrize("field", ["tenant", "feature"])
def test_entry_with_bad_tag_is_rejected(field: str, tag: str) -> None:
    # Given a tenant or feature tag that cannot be part of a key or a metric dimension
    # When building an entry with it
    with pytest.raises(InvalidRequestError) as raised:
        tagged(field, tag)

    # Then it is a 400 that names the field
    assert raised.value.status == 400
    assert raised.value.message.startswith(f"{field} ")


@pytest.mark.parametrize("field", ["tenant", "feature"])
def test_entry_with_trailing_newline_in_tag_is_rejected(field: str) -> None:
    # Given a tag that ends with a newline (it would end up inside a key and a metric dimension)
    # When / Then building an entry with it fails
    with pytest.raises(InvalidRequestError):
        tagged(field, "acme\n")


@pytest.mark.parametrize("tag", ["a", "a" * 64, "Team.A_b:c/d-9", "0day"])
def test_plain_tags_up_to_64_chars_are_accepted(tag: str) -> None:
    # Given a tag of letters, digits and . _ : / - starting with a letter or digit
    # When validating it
    # Then it comes back unchanged
    assert validate_tag(tag, "tenant") == tag


@pytest.mark.parametrize("request_id", ["", "r" * 257], ids=["empty", "257-chars"])
def test_entry_with_bad_request_id_is_rejected(request_id: str) -> None:
    # Given a request id that is empty or longer than 256 characters
    # When / Then building an entry with it fails as a 400 about the request id
    with pytest.raises(InvalidRequestError, match="request id"):
        make_entry(request_id)


def test_entry_day_is_the_utc_day() -> None:
    # Given a request at 23:59:59 in UTC−5, which is 04:59:59 the next day in UTC
    late_evening = datetime(2026, 11, 20, 23, 59, 59, tzinfo=timezone(timedelta(hours=-5)))

    # When building its entry
    entry = make_entry("req-1", at=late_evening)

    # Then it belongs to the next UTC day
    assert entry.day == date(2026, 11, 21)


# --- record_request with the in-memory store -----------------------------------------------------


def test_record_then_record_again_is_recorded_then_duplicate() -> None:
    # Given an empty store and one entry
    store = InMemoryLedgerStore()
    entry = make_entry("req-1", usage=USAGE)

    # When the same request is recorded twice
    first = record_request(store, entry)
    second = record_request(store, entry)

    # Then the first is recorded and the second is a duplicate
    assert first is RecordOutcome.RECORDED
    assert second is RecordOutcome.DUPLICATE
    assert list(store.entries) == ["req-1"]


def test_duplicate_request_id_changes_no_rollup() -> None:
    # Given a recorded request
    store = InMemoryLedgerStore()
    original = make_entry("req-1", usage=USAGE)
    record_request(store, original)
    before = list(store.rollups(NOW.date(), NOW.date()))

    # When another entry with the same request id but a different cost and usage arrives
    retry = make_entry("req-1", usage=replace(USAGE, input_tokens=99_999), cost_usd="7.5")
    outcome = record_request(store, retry)

    # Then it is a duplicate, the stored entry is the original and the rollup is unchanged
    assert outcome is RecordOutcome.DUPLICATE
    assert store.entries["req-1"] is original
    assert list(store.rollups(NOW.date(), NOW.date())) == before
    (rollup,) = before
    assert rollup.requests == 1
    assert rollup.cost_usd == original.cost.total_usd
    assert rollup.input_tokens == 1200


def test_entries_for_the_same_day_tenant_feature_model_share_one_rollup() -> None:
    # Given two requests on the same UTC day for the same tenant, feature and model, and one for another model
    store = InMemoryLedgerStore()
    record_request(store, make_entry("req-1", cost_usd="0.1", baseline_usd="0.25"))
    record_request(store, make_entry("req-2", cost_usd="0.2", baseline_usd="0.5"))
    record_request(store, make_entry("req-3", model="claude-haiku-4-5", cost_usd="0.05"))

    # When reading the day's rollups
    rollups = {r.model: r for r in store.rollups(NOW.date(), NOW.date())}

    # Then the shared rollup holds the exact sums and counts
    assert set(rollups) == {"claude-opus-5-5", "claude-haiku-4-5"}
    shared = rollups["claude-opus-5-5"]
    assert shared.requests == 2
    assert str(shared.cost_usd) == "0.3"
    assert str(shared.baseline_cost_usd) == "0.75"
    assert shared.input_tokens == 2000
    assert rollups["claude-haiku-4-5"].requests == 1


# --- strategies -----------------------------------------------------------------------------------


def test_applied_strategies_are_those_with_a_non_zero_saving() -> None:
    # Given savings that are positive, negative and exactly zero
    entry = make_entry(
        "req-1",
        cost_usd="0.1",
        savings={Strategy.PROMPT_CACHE: "-0.01", Strategy.BATCH: "0", Strategy.ROUTING: "0.2"},
    )

    # When / Then the request counts for the strategies that changed its cost, in Strategy order
    assert entry.applied_strategies == (Strategy.PROMPT_CACHE, Strategy.ROUTING)
    assert make_entry("req-2").applied_strategies == ()


def test_rollup_counts_each_strategys_requests_and_their_cost() -> None:
    # Given three requests in one rollup: routed and cached, routed only, and untouched by any strategy
    store = InMemoryLedgerStore()
    record_request(
        store, make_entry("both", cost_usd="0.1", savings={Strategy.ROUTING: "0.3", Strategy.PROMPT_CACHE: "0.05"})
    )
    record_request(store, make_entry("routed", cost_usd="0.2", savings={Strategy.ROUTING: "0.4", Strategy.BATCH: "0"}))
    record_request(store, make_entry("plain", cost_usd="0.7"))

    # When reading it
    (rollup,) = store.rollups(NOW.date(), NOW.date())

    # Then each strategy counts the requests it changed and sums their cost; a zero saving counts nowhere
    assert rollup.requests == 3
    assert rollup.strategy_requests == {Strategy.ROUTING: 2, Strategy.PROMPT_CACHE: 1}
    assert rollup.strategy_cost_usd == {Strategy.ROUTING: Decimal("0.3"), Strategy.PROMPT_CACHE: Decimal("0.1")}
    assert rollup.savings_usd[Strategy.ROUTING] == Decimal("0.7")


# --- budget rejections -----------------------------------------------------------------------------


def test_rejections_are_counted_per_utc_day_tenant_and_feature() -> None:
    # Given rejections for two tenants and features, one at 23:30 in UTC−5 (the next UTC day)
    store = InMemoryLedgerStore()
    store.count_rejection(NOW, "acme", "chat")
    store.count_rejection(NOW, "acme", "chat")
    store.count_rejection(NOW, "acme", "search")
    store.count_rejection(NOW, "globex", "chat")
    store.count_rejection(datetime(2026, 11, 20, 23, 30, tzinfo=timezone(timedelta(hours=-5))), "acme", "chat")

    # When reading Nov 20 and 21
    counts = list(store.rejections(date(2026, 11, 20), date(2026, 11, 21)))

    # Then there is one counter per day × tenant × feature, day by day, then by tenant and feature
    assert counts == [
        RejectionCount(date(2026, 11, 20), "acme", "chat", 2),
        RejectionCount(date(2026, 11, 20), "acme", "search", 1),
        RejectionCount(date(2026, 11, 20), "globex", "chat", 1),
        RejectionCount(date(2026, 11, 21), "acme", "chat", 1),
    ]
    assert list(store.rejections(date(2026, 11, 21), date(2026, 11, 21))) == counts[-1:]


def test_counting_a_rejection_for_a_bad_tag_or_a_naive_time_fails() -> None:
    # Given a store
    store = InMemoryLedgerStore()

    # When / Then a tag that cannot be part of a key, or a time with no UTC day, is refused
    with pytest.raises(InvalidRequestError):
        store.count_rejection(NOW, "acme#eu", "chat")
    with pytest.raises(ValueError, match="timezone-aware"):
        store.count_rejection(datetime(2026, 11, 20, 12, 0), "acme", "chat")
    assert store.rejection_counts == {}


# --- EMF metrics -----------------------------------------------------------------------------------


def _recorded_blobs(capsys: pytest.CaptureFixture[str], entry: LedgerEntry) -> list[dict[str, Any]]:
    capsys.readouterr()  # drop anything printed before
    assert record_request(InMemoryLedgerStore(), entry) is RecordOutcome.RECORDED
    return _emf_blobs(capsys.readouterr().out)


def test_recorded_request_emits_three_emf_blobs_by_service_model_and_feature(
    metrics_enabled: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given metrics enabled and a priced request
    entry = make_entry("req-1", tenant=SECRET_TENANT, feature="support-bot", usage=USAGE)

    # When it is recorded
    blobs = _recorded_blobs(capsys, entry)

    # Then three EMF documents are printed, one per dimension set
    assert [_dimension_set(b) for b in blobs] == [
        {"service"},
        {"service", "Model"},
        {"service", "Feature"},
    ]
    totals, by_model, by_feature = blobs
    for blob in blobs:
        assert blob["_aws"]["CloudWatchMetrics"][0]["Namespace"] == NAMESPACE
        assert blob["service"] == SERVICE_NAME
        assert blob[MetricName.COST_USD] == [float(entry.cost.total_usd)]
        assert blob[MetricName.REQUESTS] == [1]
    assert by_model["Model"] == "claude-opus-5-5"
    assert by_feature["Feature"] == "support-bot"
    assert totals[MetricName.BASELINE_COST_USD] == [float(entry.baseline_cost_usd)]
    assert totals[MetricName.CACHE_READ_TOKENS] == [20000]
    assert by_model[MetricName.WEB_SEARCH_REQUESTS] == [2]


def test_emf_cost_is_the_exact_cost_as_a_number(metrics_enabled: None, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a request whose cost has many decimal places
    entry = make_entry("req-1", cost_usd="0.0000123")

    # When it is recorded
    blobs = _recorded_blobs(capsys, entry)

    # Then each blob carries that cost
    assert [b[MetricName.COST_USD] for b in blobs] == [[0.0000123]] * 3


def test_tenant_is_never_a_metric_dimension(metrics_enabled: None, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a request for a distinctively named tenant
    entry = make_entry("req-1", tenant=SECRET_TENANT, usage=USAGE)

    # When it is recorded
    capsys.readouterr()
    record_request(InMemoryLedgerStore(), entry)
    out = capsys.readouterr().out

    # Then no metric has a tenant dimension and the tenant's name appears nowhere in the output
    blobs = _emf_blobs(out)
    assert len(blobs) == 3
    for blob in blobs:
        assert all("tenant" not in name.lower() for name in _dimension_set(blob))
        assert all("tenant" not in key.lower() for key in blob)
    assert SECRET_TENANT not in out


def test_duplicate_emits_no_metrics(metrics_enabled: None, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a recorded request
    store = InMemoryLedgerStore()
    entry = make_entry("req-1")
    record_request(store, entry)
    capsys.readouterr()

    # When it is recorded again
    outcome = record_request(store, entry)

    # Then nothing is counted twice in CloudWatch
    assert outcome is RecordOutcome.DUPLICATE
    assert _emf_blobs(capsys.readouterr().out) == []


def test_no_emf_when_metrics_are_disabled(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # Given metrics disabled, as in local runs and tests
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    capsys.readouterr()

    # When a request is recorded
    outcome = record_request(InMemoryLedgerStore(), make_entry("req-1"))

    # Then it is stored and nothing is printed as EMF
    assert outcome is RecordOutcome.RECORDED
    assert _emf_blobs(capsys.readouterr().out) == []


def test_entry_at_midnight_utc_belongs_to_that_day() -> None:
    # Given an entry at 00:00:00 UTC exactly
    entry = make_entry("req-1", at=datetime(2026, 11, 21, 0, 0, tzinfo=UTC))

    # When / Then it belongs to the day that starts then, not the one that ends
    assert entry.day == date(2026, 11, 21)
