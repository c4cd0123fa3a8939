"""`costgate reconcile` without AWS: its table and verdict, and the refusals that exit 2 before any call."""

import argparse
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from costgate.observability import logger
from costgate.reconcile.compare import compare
from costgate_local.cli import reconcile as reconcile_cli
from costgate_local.cli.reconcile import render_reconciliation
from tests.unit.reconcile_world import DAY, HAIKU, NEXT, SETTLE, ours, records, theirs, tokens

USED = tokens(1200, 300, cache_read_tokens=4096)


@pytest.fixture(autouse=True)
def logger_level_kept() -> Iterator[None]:
    """The command quiets costgate's logger for the process it runs in; the tests after this one log at INFO."""
    level = logger.log_level
    yield
    logger.setLevel(level)


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    reconcile_cli.register(parser)
    return parser.parse_args(list(argv))


def test_the_table_shows_each_differing_row_by_category_and_the_verdict() -> None:
    # Given a drift of one request on a settled day, and a day still pending
    result = compare(
        DAY,
        NEXT,
        records(
            DAY - timedelta(days=1),
            NEXT,
            [
                theirs(DAY, HAIKU, "standard", USED + tokens(57, 19), "0.0125", amounts=3),
                theirs(NEXT, HAIKU, "standard", USED, "0.0123", amounts=3),
            ],
        ),
        [ours(DAY, HAIKU, "standard", USED, "0.0123"), ours(NEXT, HAIKU, "standard", USED + tokens(3), "0.0124")],
        now=datetime(2026, 12, 2, 3, tzinfo=UTC),
        settle=SETTLE,
    )

    # When it is rendered
    text = render_reconciliation(result)

    # Then each day has its status, the rows that differ their categories, and the verdict is DRIFT
    assert "2026-11-30  drift    the whole day" in text
    assert "2026-12-01  pending  the whole day (provisional: not settled yet)" in text
    assert "+57" in text
    assert "+19" in text
    assert "+0.000200" in text
    assert "cache read" in text
    assert "Verdict: DRIFT - 76 tokens and 0.0002 USD (Anthropic - ledger) differ" in text


def test_a_clean_range_says_so_and_counts_the_pending_days() -> None:
    result = compare(
        DAY,
        DAY,
        records(DAY - timedelta(days=1), DAY, [theirs(DAY, HAIKU, "standard", USED, "0.0123", amounts=3)]),
        [ours(DAY, HAIKU, "standard", USED + tokens(1), "0.0123")],
        now=datetime(2026, 11, 30, 15, tzinfo=UTC),
        settle=SETTLE,
    )
    text = render_reconciliation(result)
    assert text.endswith("Verdict: the ledger matches Anthropic's records; 1 day(s) pending, to be checked again.")


def test_without_an_admin_key_it_exits_2_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COSTGATE_TABLE", "costgate-test")
    monkeypatch.delenv("ANTHROPIC_ADMIN_API_KEY", raising=False)
    out, err = io.StringIO(), io.StringIO()
    code = reconcile_cli.run(_parse("--from", "2026-11-30", "--to", "2026-11-30"), out, err)
    assert code == 2
    assert "ANTHROPIC_ADMIN_API_KEY" in err.getvalue()
    assert out.getvalue() == ""


def test_a_range_past_today_exits_2_before_any_call(monkeypatch: pytest.MonkeyPatch) -> None:
    key = "sk-ant-admin01-never-printed"
    monkeypatch.setenv("COSTGATE_TABLE", "costgate-test")
    monkeypatch.setenv("ANTHROPIC_ADMIN_API_KEY", key)
    out, err = io.StringIO(), io.StringIO()
    args = _parse("--from", "2026-11-30", "--to", "2026-12-09", "--admin-api-url", "http://127.0.0.1:9")
    code = reconcile_cli.run(args, out, err, now=datetime(2026, 12, 5, tzinfo=UTC))
    assert code == 2
    assert "after today" in err.getvalue()
    assert key not in err.getvalue() + out.getvalue()


def test_days_are_given_as_yyyy_mm_dd() -> None:
    with pytest.raises(SystemExit):
        _parse("--from", "20261130", "--to", "2026-11-30")
