"""The Admin API client (costgate.reconcile.admin_api) against scripted answers: what it asks, how it pages,
sums and rounds, when it retries, and that the Admin key never shows in an error."""

import json
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import urllib3
from urllib3.exceptions import NewConnectionError

from costgate.errors import ConfigurationError, InvalidRequestError, UpstreamError
from costgate.reconcile.admin_api import BETA, COST_PATH, USAGE_PATH, AdminApiRecords
from costgate.reconcile.model import NO_MODEL, RowKey, Tokens

KEY = "sk-ant-admin01-secret-value-never-shown"
BASE = "https://api.example.test"
DAY = date(2026, 11, 30)
NOW = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)


class ScriptedPool:
    """Answers GETs from a script: per path, a list of (status, body, headers) or exceptions, in order."""

    def __init__(self, script: Mapping[str, list[Any]]) -> None:
        self.script = {path: list(answers) for path, answers in script.items()}
        self.calls: list[tuple[str, dict[str, list[str]], Mapping[str, str]]] = []

    def request(self, method: str, url: str, **kwargs: Any) -> urllib3.HTTPResponse:
        assert method == "GET"
        assert kwargs["redirect"] is False
        parts = urlsplit(url)
        self.calls.append((parts.path, parse_qs(parts.query), kwargs["headers"]))
        answer = self.script[parts.path].pop(0)
        if isinstance(answer, Exception):
            raise answer
        status, body, headers = answer
        return urllib3.HTTPResponse(
            body=json.dumps(body).encode(), status=status, headers=headers, preload_content=True
        )


def _page(
    rows: list[dict[str, Any]], *, more: str | None = None, refreshed: str | None = None
) -> tuple[int, Any, dict[str, str]]:
    body: dict[str, Any] = {"data": rows, "has_more": more is not None, "next_page": more}
    if refreshed:
        body["data_refreshed_at"] = refreshed
    return 200, body, {}


def _usage(day: str, model: str | None, tier: str | None, **usage: Any) -> dict[str, Any]:
    return {
        "starting_at": f"{day}T00:00:00Z",
        "ending_at": "2026-12-01T00:00:00Z",
        "group": {"model": model, "service_tier": tier, "api_key_id": None},
        "usage": {
            "uncached_input_tokens": usage.get("input", 0),
            "cache_creation": {"ephemeral_5m_input_tokens": usage.get("w5m", 0), "ephemeral_1h_input_tokens": 0},
            "cache_read_input_tokens": usage.get("read", 0),
            "output_tokens": usage.get("output", 0),
            "server_tool_use": {"web_search_requests": usage.get("searches", 0)},
            "total_tokens": 0,
            "requests": usage.get("requests"),
        },
    }


def _cost(day: str, model: str, tier: str, amount: str, token_type: str | None = "output_tokens") -> dict[str, Any]:
    return {
        "starting_at": f"{day}T00:00:00Z",
        "ending_at": "2026-12-01T00:00:00Z",
        "group": {"model": model, "service_tier": tier, "cost_type": "tokens", "token_type": token_type},
        "cost": {"amount": "0", "list_amount": amount, "currency": "USD", "requests": None},
    }


def _client(pool: ScriptedPool, **kwargs: Any) -> tuple[AdminApiRecords, list[float]]:
    slept: list[float] = []
    return AdminApiRecords(BASE, lambda: KEY, pool=pool, sleep=slept.append, **kwargs), slept  # type: ignore[arg-type]


def test_closed_days_are_read_in_day_buckets_all_pages_summed_per_row() -> None:
    # Given usage over two pages and cost amounts with two decimals of a cent
    pool = ScriptedPool(
        {
            USAGE_PATH: [
                _page([_usage("2026-11-30", "claude-haiku-5-5", "standard", input=100, output=20)], more="p2"),
                _page(
                    [
                        _usage(
                            "2026-11-30", "claude-haiku-5-5", "batch", input=7, w5m=3, read=5, searches=2, requests=1
                        ),
                        _usage("2026-12-01", "claude-haiku-5-5", "standard", input=1, output=1),
                    ],
                    refreshed="2026-12-02T09:25:00Z",
                ),
            ],
            COST_PATH: [
                _page(
                    [
                        _cost("2026-11-30", "claude-haiku-5-5", "standard", "1.25"),
                        _cost("2026-11-30", "claude-haiku-5-5", "standard", "0.5", "uncached_input_tokens"),
                        _cost("2026-11-30", "claude-haiku-5-5", "batch", "0.03"),
                    ]
                )
            ],
        }
    )
    client, _ = _client(pool, api_key_ids=("apikey_01abc",))

    # When Nov 30 .. Dec 1 is read on Dec 2
    records = client.read(DAY, DAY + timedelta(days=1), NOW)

    # Then it asked for day buckets over the range, grouped by model and tier (cost also by type), for the key
    paths = [path for path, _, _ in pool.calls]
    assert paths == [USAGE_PATH, USAGE_PATH, COST_PATH]
    _, usage_query, headers = pool.calls[0]
    assert usage_query == {
        "starting_at": ["2026-11-30T00:00:00Z"],
        "ending_at": ["2026-12-02T00:00:00Z"],
        "time_bucket_width": ["1d"],
        "limit": ["1000"],
        "api_key_ids[]": ["apikey_01abc"],
        "group_by[]": ["model", "service_tier"],
    }
    assert pool.calls[1][1]["page"] == ["p2"]
    assert pool.calls[2][1]["group_by[]"] == ["model", "service_tier", "cost_type", "token_type"]
    assert headers["x-api-key"] == KEY
    assert (headers["anthropic-beta"], headers["anthropic-version"]) == (BETA, "2023-06-01")
    # and summed each row: tokens, list-price cost in USD, how many amounts, requests where given
    standard = records.rows[RowKey(DAY, "claude-haiku-5-5", "standard")]
    assert standard.tokens == Tokens(input_tokens=100, output_tokens=20)
    assert (standard.cost_usd, standard.cost_amounts, standard.requests) == (Decimal("0.0175"), 2, None)
    batch = records.rows[RowKey(DAY, "claude-haiku-5-5", "batch")]
    assert batch.tokens == Tokens(input_tokens=7, cache_write_5m_tokens=3, cache_read_tokens=5, web_search_requests=2)
    assert (batch.cost_usd, batch.requests) == (Decimal("0.0003"), 1)
    # and the rounding unit is read from the amounts (2 decimals of a cent), the freshness from the page
    assert records.cost_quantum_usd == Decimal("0.0001")
    assert records.complete_through == datetime(2026, 12, 2, 9, 25, tzinfo=UTC)


def test_the_day_in_progress_is_read_in_minutes_up_to_the_last_complete_one() -> None:
    pool = ScriptedPool({USAGE_PATH: [_page([])], COST_PATH: [_page([_cost("2026-12-02", "m", "standard", "7")])]})
    client, _ = _client(pool)
    now = datetime(2026, 12, 2, 14, 32, 40, tzinfo=UTC)

    records = client.read(date(2026, 12, 2), date(2026, 12, 2), now)

    _, query, _ = pool.calls[0]
    assert (query["starting_at"], query["ending_at"], query["time_bucket_width"]) == (
        ["2026-12-02T00:00:00Z"],
        ["2026-12-02T14:32:00Z"],
        ["1m"],
    )
    assert "api_key_ids[]" not in query  # no key named: the whole organization
    assert records.complete_through == datetime(2026, 12, 2, 14, 32, tzinfo=UTC)
    assert records.cost_quantum_usd == Decimal("0.01")  # whole cents


def test_a_range_longer_than_31_days_is_read_in_windows_of_31() -> None:
    pool = ScriptedPool({USAGE_PATH: [_page([]), _page([])], COST_PATH: [_page([]), _page([])]})
    client, _ = _client(pool)
    client.read(date(2026, 10, 1), date(2026, 11, 9), NOW)
    windows = [(q["starting_at"][0], q["ending_at"][0]) for path, q, _ in pool.calls if path == USAGE_PATH]
    assert windows == [
        ("2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z"),
        ("2026-11-01T00:00:00Z", "2026-11-10T00:00:00Z"),
    ]


def test_a_row_without_a_model_is_kept_under_its_own_name() -> None:
    pool = ScriptedPool({USAGE_PATH: [_page([_usage("2026-11-30", None, None, input=5)])], COST_PATH: [_page([])]})
    client, _ = _client(pool)
    records = client.read(DAY, DAY, NOW)
    assert RowKey(DAY, NO_MODEL, "(no tier)") in records.rows


def test_rate_limits_and_server_errors_are_retried_after_their_wait() -> None:
    # Given a 429 with retry-after 2, a 529 without, a lost connection, then the answer
    pool = ScriptedPool(
        {
            USAGE_PATH: [
                (
                    429,
                    {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}},
                    {"retry-after": "2"},
                ),
                (529, {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}, {}),
                NewConnectionError(None, "refused"),  # type: ignore[arg-type]
                _page([]),
            ],
            COST_PATH: [_page([])],
        }
    )
    client, slept = _client(pool)

    client.read(DAY, DAY, NOW)

    # Then it waited as told, else 1 s doubling
    assert slept == [2.0, 2.0, 4.0]


def test_retries_are_bounded_and_the_error_names_the_status_not_the_key() -> None:
    pool = ScriptedPool(
        {USAGE_PATH: [(500, {"type": "error", "error": {"type": "api_error", "message": "boom"}}, {})] * 4}
    )
    client, slept = _client(pool, max_retries=3)
    with pytest.raises(UpstreamError) as raised:
        client.read(DAY, DAY, NOW)
    assert len(slept) == 3
    assert "500" in raised.value.message
    assert "api_error: boom" in raised.value.message
    assert KEY not in raised.value.message


def test_a_refused_key_is_a_configuration_error_that_never_shows_the_key() -> None:
    body = {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}
    pool = ScriptedPool({USAGE_PATH: [(401, body, {})]})
    client, slept = _client(pool)
    with pytest.raises(ConfigurationError) as raised:
        client.read(DAY, DAY, NOW)
    assert slept == []
    assert "401" in raised.value.message
    assert KEY not in raised.value.message
    assert KEY not in repr(raised.value)


def test_a_key_that_is_not_an_admin_key_is_refused_before_any_call() -> None:
    pool = ScriptedPool({})
    client = AdminApiRecords(BASE, lambda: "sk-ant-api03-not-admin", pool=pool)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="Admin API key"):
        client.read(DAY, DAY, NOW)
    assert pool.calls == []


@pytest.mark.parametrize(
    ("page", "message"),
    [
        ((200, {"data": [], "has_more": True, "next_page": None}, {}), "has_more without a next_page"),
        ((200, {"data": "nope"}, {}), "without a data list"),
        ((200, [1, 2], {}), "not a JSON object"),
        (_page([_usage("2026-11-30", "m", "standard", input=-1)]), "not a count"),
        (_page([{**_usage("2026-11-30", "m", "standard"), "starting_at": "yesterday"}]), "RFC 3339"),
    ],
)
def test_a_malformed_answer_is_an_upstream_error_never_a_partial_figure(page: Any, message: str) -> None:
    client, _ = _client(ScriptedPool({USAGE_PATH: [page]}))
    with pytest.raises(UpstreamError, match=message):
        client.read(DAY, DAY, NOW)


def test_a_cost_in_another_currency_or_without_a_list_amount_is_refused() -> None:
    euro = _cost("2026-11-30", "m", "standard", "1")
    euro["cost"]["currency"] = "EUR"
    client, _ = _client(ScriptedPool({USAGE_PATH: [_page([])], COST_PATH: [_page([euro])]}))
    with pytest.raises(UpstreamError, match="EUR"):
        client.read(DAY, DAY, NOW)


def test_pages_are_bounded() -> None:
    pool = ScriptedPool({USAGE_PATH: [_page([], more=f"p{n}") for n in range(3)]})
    client, _ = _client(pool, max_pages=3)
    with pytest.raises(UpstreamError, match="more than 3 pages"):
        client.read(DAY, DAY, NOW)


def test_days_anthropic_does_not_keep_are_refused_and_the_range_is_clamped_to_what_it_keeps() -> None:
    client, _ = _client(ScriptedPool({USAGE_PATH: [_page([])], COST_PATH: [_page([])]}))
    with pytest.raises(InvalidRequestError, match="from 2026-01-01"):
        client.read(date(2025, 12, 1), date(2025, 12, 31), NOW)
    records = client.read(date(2025, 12, 31), date(2026, 1, 1), NOW)
    assert records.first == date(2026, 1, 1)
