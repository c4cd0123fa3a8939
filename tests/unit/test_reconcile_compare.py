"""The reconciliation rules (costgate.reconcile.compare): exact tokens, cost within the report's rounding,
tiers kept apart, answer-cache hits, requests in flight at midnight, pending days and provisional drift."""

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from costgate.pricing.prices import default_price_book
from costgate.reconcile.compare import compare
from costgate.reconcile.model import (
    UNRECORDED_TIER,
    AnthropicRow,
    DayComparison,
    DayStatus,
    LedgerRow,
    Reconciliation,
    RowStatus,
    Tokens,
)
from tests.unit.reconcile_world import (
    DAY,
    HAIKU,
    LATER,
    NEXT,
    OPUS,
    QUANTUM,
    SETTLE,
    ours,
    records,
    theirs,
    tokens,
)

USED = tokens(1200, 300, cache_write_5m_tokens=2048, cache_read_tokens=4096, web_search_requests=2)


def _one_day(
    anthropic_rows: list[AnthropicRow],
    ledger_rows: list[LedgerRow],
    *,
    now: datetime = LATER,
    through: datetime | None = None,
) -> Reconciliation:
    anthropic = records(DAY - timedelta(days=1), NEXT, anthropic_rows, through=through)
    return compare(DAY, DAY, anthropic, ledger_rows, now=now, settle=SETTLE, book=default_price_book())


def test_identical_rows_on_a_settled_day_match() -> None:
    # Given the same tokens and cost on both sides, two days after the day ended
    result = _one_day(
        [theirs(DAY, HAIKU, "standard", USED, "0.0123", amounts=4)], [ours(DAY, HAIKU, "standard", USED, "0.0123")]
    )

    # Then the day is settled and matches, with no drift
    (day,) = result.days
    assert (day.status, day.settled, result.ok) == (DayStatus.MATCH, True, True)
    (row,) = day.rows
    assert row.status is RowStatus.MATCH
    assert (result.drift_tokens, result.drift_usd) == (0, Decimal(0))


def test_a_request_around_the_gateway_is_exactly_its_tokens_and_cost_of_drift() -> None:
    # Given Anthropic billed one request more than the ledger recorded
    extra = tokens(57, 19)
    result = _one_day(
        [theirs(DAY, HAIKU, "standard", USED + extra, "0.012557", amounts=2)],
        [ours(DAY, HAIKU, "standard", USED, "0.0123")],
    )

    # Then the row drifts by exactly those tokens and that cost, and the day is a drift
    (day,) = result.days
    (row,) = day.rows
    assert (day.status, row.status) == (DayStatus.DRIFT, RowStatus.DRIFT)
    assert row.token_difference == extra
    assert result.drift_tokens == 57 + 19
    assert result.drift_usd == Decimal("0.000257")
    assert "Anthropic billed more input_tokens, output_tokens" in row.reason
    assert not result.ok


def test_equal_tokens_at_another_price_drift_in_cost_only_beyond_the_reports_rounding() -> None:
    # Given equal tokens and a cost 0.0003 USD apart, from 2 amounts rounded to 0.0001 USD
    result = _one_day(
        [theirs(DAY, OPUS, "standard", USED, "0.1003", amounts=2)], [ours(DAY, OPUS, "standard", USED, "0.1")]
    )

    # Then it is a cost drift with zero token drift, blamed on the price
    (row,) = result.days[0].rows
    assert row.status is RowStatus.DRIFT
    assert row.tolerance_usd == 2 * QUANTUM / 2
    assert (result.drift_tokens, result.drift_usd) == (0, Decimal("0.0003"))
    assert "a price in prices.json is not Anthropic's" in row.reason


@pytest.mark.parametrize(
    ("cost", "status"), [("0.10009", RowStatus.MATCH), ("0.1001", RowStatus.MATCH), ("0.10011", RowStatus.DRIFT)]
)
def test_cost_within_the_reports_own_rounding_is_a_match(cost: str, status: RowStatus) -> None:
    # Given Anthropic's cost summed from 2 amounts, each rounded to 0.0001 USD (± 0.00005 each)
    result = _one_day(
        [theirs(DAY, OPUS, "standard", USED, cost, amounts=2)], [ours(DAY, OPUS, "standard", USED, "0.1")]
    )

    # Then a difference up to 0.0001 is the report's rounding, beyond it a drift
    assert result.days[0].rows[0].status is status


def test_one_token_apart_is_a_drift_however_small_its_cost() -> None:
    result = _one_day(
        [theirs(DAY, HAIKU, "standard", tokens(1000, 11), "0.0001", amounts=1)],
        [ours(DAY, HAIKU, "standard", tokens(1000, 10), "0.0001")],
    )
    (row,) = result.days[0].rows
    assert row.status is RowStatus.DRIFT
    assert result.drift_tokens == 1


def test_service_tiers_are_compared_apart() -> None:
    # Given batch traffic the ledger recorded at the batch tier, and Anthropic at the standard tier
    result = _one_day(
        [theirs(DAY, HAIKU, "standard", USED, "0.005", amounts=1)], [ours(DAY, HAIKU, "batch", USED, "0.005")]
    )

    # Then each tier's row drifts: one has it all, the other nothing
    rows = {row.key.service_tier: row for row in result.days[0].rows}
    assert {tier: row.status for tier, row in rows.items()} == {"standard": RowStatus.DRIFT, "batch": RowStatus.DRIFT}
    assert rows["standard"].token_difference == USED
    assert rows["batch"].token_difference == Tokens() - USED
    assert result.drift_usd == 0  # +0.005 and -0.005
    assert result.drift_tokens == 2 * USED.magnitude


def test_batch_traffic_at_the_batch_tier_on_both_sides_matches() -> None:
    result = _one_day(
        [
            theirs(DAY, HAIKU, "batch", USED, "0.0025", amounts=3),
            theirs(DAY, HAIKU, "standard", USED, "0.005", amounts=3),
        ],
        [ours(DAY, HAIKU, "batch", USED, "0.0025"), ours(DAY, HAIKU, "standard", USED, "0.005")],
    )
    assert [row.status for row in result.days[0].rows] == [RowStatus.MATCH, RowStatus.MATCH]


def test_answer_cache_hits_reach_no_claude_and_make_no_difference() -> None:
    # Given 5 ledger entries of which 3 were answered from the answer cache ($0, no tokens)
    result = _one_day(
        [theirs(DAY, HAIKU, "standard", USED, "0.0123", amounts=4, requests=2)],
        [ours(DAY, HAIKU, "standard", USED, "0.0123", requests=5, hits=3)],
    )

    # Then the row matches, and says Claude saw 2 requests on both sides
    (row,) = result.days[0].rows
    assert row.status is RowStatus.MATCH
    assert (row.anthropic_requests, row.ledger_requests, row.answer_cache_hits) == (2, 2, 3)


def test_a_day_of_answer_cache_hits_only_matches_anthropics_silence() -> None:
    result = _one_day([], [ours(DAY, HAIKU, "standard", Tokens(), "0", requests=4, hits=4)])
    (row,) = result.days[0].rows
    assert row.status is RowStatus.MATCH
    assert result.days[0].status is DayStatus.MATCH


def test_a_request_in_flight_at_midnight_is_explained_not_drift() -> None:
    # Given a request the ledger dated DAY (admitted 23:59:59) and Anthropic dated NEXT
    request = tokens(800, 200)
    result = compare(
        DAY,
        NEXT,
        records(
            DAY - timedelta(days=1),
            NEXT + timedelta(days=1),
            [
                theirs(DAY, HAIKU, "standard", USED, "0.0123", amounts=4),
                theirs(NEXT, HAIKU, "standard", USED + request, "0.0141", amounts=4),
            ],
        ),
        [
            ours(DAY, HAIKU, "standard", USED + request, "0.0141"),
            ours(NEXT, HAIKU, "standard", USED, "0.0123"),
        ],
        now=datetime(2026, 12, 3, 12, tzinfo=UTC),
        settle=SETTLE,
    )

    # Then both rows are that request, in flight at midnight, and neither day drifts
    assert [(d.day, d.status) for d in result.days] == [(DAY, DayStatus.MATCH), (NEXT, DayStatus.MATCH)]
    assert [d.rows[0].status for d in result.days] == [RowStatus.IN_FLIGHT_AT_MIDNIGHT] * 2
    assert result.ok
    assert NEXT.isoformat() in result.days[0].rows[0].reason


def test_a_midnight_shift_of_another_size_is_not_explained() -> None:
    result = compare(
        DAY,
        NEXT,
        records(
            DAY - timedelta(days=1),
            NEXT + timedelta(days=1),
            [
                theirs(DAY, HAIKU, "standard", USED, "0.0123", amounts=4),
                theirs(NEXT, HAIKU, "standard", USED + tokens(800, 201), "0.0141", amounts=4),
            ],
        ),
        [
            ours(DAY, HAIKU, "standard", USED + tokens(800, 200), "0.0141"),
            ours(NEXT, HAIKU, "standard", USED, "0.0123"),
        ],
        now=datetime(2026, 12, 3, 12, tzinfo=UTC),
        settle=SETTLE,
    )
    assert [d.status for d in result.days] == [DayStatus.DRIFT, DayStatus.DRIFT]


def test_the_ledger_ahead_on_a_day_not_settled_is_pending_and_on_a_settled_day_drift() -> None:
    # Given the ledger has a request Anthropic does not report
    anthropic_rows = [theirs(DAY, HAIKU, "standard", USED, "0.0123", amounts=4)]
    ledger_rows = [ours(DAY, HAIKU, "standard", USED + tokens(10, 5), "0.0124")]

    # When checked 1 hour after the day ended (not final under a 6 h settle), and again 2 days later
    early = _one_day(anthropic_rows, ledger_rows, now=datetime(2026, 12, 1, 1, tzinfo=UTC))
    late = _one_day(anthropic_rows, ledger_rows)

    # Then it first waits as pending (Anthropic's figures may lag), then is a drift
    assert (early.days[0].status, early.days[0].settled, early.ok) == (DayStatus.PENDING, False, True)
    assert early.drift_tokens == 0
    assert "ahead of Anthropic's figures" in early.days[0].rows[0].reason
    assert (late.days[0].status, late.days[0].settled) == (DayStatus.DRIFT, True)
    assert "the ledger recorded more input_tokens, output_tokens" in late.days[0].rows[0].reason


def test_a_final_day_whose_next_day_is_still_open_is_not_settled() -> None:
    # Given DAY final (6 h after its end) but NEXT still in progress
    now = datetime(2026, 12, 1, 7, tzinfo=UTC)
    result = _one_day(
        [theirs(DAY, HAIKU, "standard", USED, "0.0123", amounts=4)],
        [ours(DAY, HAIKU, "standard", USED + tokens(9), "0.0124")],
        now=now,
    )

    # Then the ledger being ahead may be a request Anthropic counted on NEXT: pending, not drift
    assert (result.days[0].status, result.days[0].settled) == (DayStatus.PENDING, False)


def test_anthropic_ahead_on_the_day_in_progress_is_a_provisional_drift_kept_as_pending() -> None:
    # Given the day in progress, Anthropic's figures complete through 14:32, and one request the ledger lacks
    now = datetime(2026, 11, 30, 14, 32, 40, tzinfo=UTC)
    through = datetime(2026, 11, 30, 14, 32, tzinfo=UTC)
    anthropic = records(
        DAY - timedelta(days=1),
        DAY,
        [theirs(DAY, HAIKU, "standard", USED + tokens(57, 19), "0.01", amounts=4)],
        through=through,
    )
    result = compare(DAY, DAY, anthropic, [ours(DAY, HAIKU, "standard", USED, "0.0099")], now=now, settle=SETTLE)

    # Then as of now it drifts (Claude billed what the ledger lacks), through 14:32, provisionally
    (day,) = result.days
    assert (day.status, day.settled, day.through, day.complete) == (DayStatus.DRIFT, False, through, False)
    assert day.rows[0].reason.endswith("(provisional: the day is not settled)")
    assert result.drift_tokens == 76
    # and the scheduled check would keep it as pending until it settles
    assert day.recorded().status is DayStatus.PENDING


def test_rollups_from_before_the_tier_was_kept_show_as_their_own_tier() -> None:
    result = _one_day(
        [theirs(DAY, HAIKU, "standard", USED, "0.0123", amounts=4)], [ours(DAY, HAIKU, UNRECORDED_TIER, USED, "0.0123")]
    )
    assert {row.key.service_tier: row.status for row in result.days[0].rows} == {
        "standard": RowStatus.DRIFT,
        UNRECORDED_TIER: RowStatus.DRIFT,
    }


def test_anthropics_dated_model_ids_are_read_as_the_ledgers_canonical_ids() -> None:
    result = _one_day(
        [theirs(DAY, "claude-sonnet-4-5-20250929", "standard", USED, "0.03", amounts=4)],
        [ours(DAY, "claude-sonnet-4-5", "standard", USED, "0.03")],
    )
    (row,) = result.days[0].rows
    assert (row.key.model, row.status) == ("claude-sonnet-4-5", RowStatus.MATCH)


def test_a_model_costgate_cannot_price_is_compared_as_named_and_shows() -> None:
    result = _one_day([theirs(DAY, "claude-unknown-9", "standard", USED, "1", amounts=1)], [])
    (row,) = result.days[0].rows
    assert (row.key.model, row.status) == ("claude-unknown-9", RowStatus.DRIFT)


def test_drifts_of_both_signs_sum_to_the_signed_usd_and_the_absolute_tokens() -> None:
    result = _one_day(
        [
            theirs(DAY, HAIKU, "standard", USED + tokens(10), "0.02", amounts=1),
            theirs(DAY, OPUS, "standard", USED, "0.5", amounts=1),
        ],
        [ours(DAY, HAIKU, "standard", USED, "0.01"), ours(DAY, OPUS, "standard", USED + tokens(4), "0.52")],
    )
    assert result.drift_tokens == 14
    assert result.drift_usd == Decimal("0.01") + Decimal("-0.02")


def test_the_json_has_ok_drift_tokens_exact_drift_usd_and_rows() -> None:
    result = _one_day(
        [theirs(DAY, HAIKU, "standard", USED + tokens(57, 19), "0.0000001", amounts=1)],
        [ours(DAY, HAIKU, "standard", USED, "0")],
    )
    parsed = json.loads(json.dumps(result.as_json()))
    assert parsed["ok"] is False
    assert parsed["drift_tokens"] == 76
    assert parsed["drift_usd"] == "0.0000001"
    assert parsed["rows"][0]["difference"]["output_tokens"] == 19
    assert parsed["days"][0]["status"] == "drift"


def test_a_day_comparison_survives_its_json() -> None:
    result = _one_day(
        [theirs(DAY, HAIKU, "standard", USED + tokens(57, 19), "0.0123", amounts=1, requests=3)],
        [ours(DAY, HAIKU, "standard", USED, "0.01", requests=4, hits=2)],
    )
    (day,) = result.days
    assert DayComparison.from_json(json.loads(json.dumps(day.as_json()))) == day


def test_records_must_cover_the_range() -> None:
    with pytest.raises(ValueError, match="do not cover"):
        compare(DAY, NEXT, records(DAY, DAY, []), [], now=LATER, settle=SETTLE)
