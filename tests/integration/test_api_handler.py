"""ApiFunction end to end: the real handler on REST proxy events from events/api/, the ledger in moto."""

import copy
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from costgate.dal.ledger import DynamoLedgerStore
from costgate.pricing.usage import TokenUsage
from costgate_local.stack.runtime_api import invoke_in_memory
from functions.api.handler import gateway, lambda_handler, ledger_store, settings
from tests.conftest import FakeLambdaContext
from tests.events import load_event
from tests.fakes.accounting import make_entry
from tests.integration.stream import aggregate_bound


def _at(month: int, day: int) -> datetime:
    return datetime(2026, month, day, 15, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def fresh_ledger_store() -> Iterator[None]:
    """The handler caches its settings and stores per process; each test binds its own table."""
    for cached in (settings, ledger_store, gateway):
        cached.cache_clear()
    yield
    for cached in (settings, ledger_store, gateway):
        cached.cache_clear()


@pytest.fixture
def recorded(ledger_table: str) -> str:
    """Four requests in November 2026 (costs.json asks for Nov 1..29) and two just outside it."""
    store = DynamoLedgerStore()
    entries = [
        # 1000×4/1e6 + 500×20/1e6 = 0.014; no caching, so baseline = cost
        make_entry("r1", at=_at(11, 3), tenant="acme", feature="chat", usage=TokenUsage(1000, 500)),
        # 2000×4/1e6 + 100×20/1e6 = 0.01
        make_entry("r2", at=_at(11, 10), tenant="acme", feature="search", usage=TokenUsage(2000, 100)),
        # haiku 4.5: 1000×1/1e6 + 200×5/1e6 + 100000×1×0.1/1e6 = 0.012; baseline 101000×1/1e6 + 0.001 = 0.102
        make_entry(
            "r3",
            at=_at(11, 10),
            tenant="globex",
            feature="chat",
            model="claude-haiku-4-5",
            usage=TokenUsage(1000, 200, cache_read_tokens=100000),
        ),
        # 3000×1/1e6 + 600×5/1e6 = 0.006, on the range's last day
        make_entry(
            "r4", at=_at(11, 29), tenant="globex", feature="chat", model="claude-haiku-4-5", usage=TokenUsage(3000, 600)
        ),
        make_entry("outside-before", at=_at(10, 31), usage=TokenUsage(10**6, 10**6)),
        make_entry("outside-after", at=_at(11, 30), usage=TokenUsage(10**6, 10**6)),
    ]
    for entry in entries:
        assert store.record(entry)
    aggregate_bound()
    return ledger_table


def _costs_event(**query: str) -> dict[str, Any]:
    """events/api/costs.json with its query replaced, in both the single- and multi-value forms."""
    event = copy.deepcopy(load_event("api", "costs"))
    event["queryStringParameters"] = query
    event["multiValueQueryStringParameters"] = {name: [value] for name, value in query.items()}
    return event


def _invoke(event: dict[str, Any], context: FakeLambdaContext) -> tuple[int, dict[str, Any], str]:
    response = invoke_in_memory(lambda_handler, event, context)
    assert response["multiValueHeaders"]["Content-Type"] == ["application/json"]
    return response["statusCode"], json.loads(response["body"]), response["body"]


def _rows(body: dict[str, Any]) -> list[tuple[str, int, str, str]]:
    return [(row["key"], row["requests"], row["cost_usd"], row["baseline_cost_usd"]) for row in body["rows"]]


def _assert_anthropic_error(body: dict[str, Any], raw: str, error_type: str) -> str:
    assert set(body) == {"type", "error", "request_id"}  # the Claude API's error shape
    assert body["type"] == "error"
    assert set(body["error"]) == {"type", "message"}
    assert body["error"]["type"] == error_type
    assert "Traceback" not in raw
    assert 'File "' not in raw
    message: str = body["error"]["message"]
    return message


# --- health -------------------------------------------------------------------------------------------


def test_health_is_ok(lambda_context: FakeLambdaContext) -> None:
    # Given the health-check event
    event = load_event("api", "health")

    # When the handler receives it
    status, body, _ = _invoke(event, lambda_context)

    # Then it answers 200 {"status": "ok"}
    assert status == 200
    assert body == {"status": "ok"}


# --- GET /v1/costs --------------------------------------------------------------------------------------


def test_costs_by_model_sum_the_recorded_requests(recorded: str, lambda_context: FakeLambdaContext) -> None:
    # Given four requests recorded in November and two just outside it
    # When the costs.json event (Nov 1..29, group_by=model) arrives
    status, body, _ = _invoke(load_event("api", "costs"), lambda_context)

    # Then one row per model, largest cost first, with exactly the recorded sums as strings
    assert status == 200
    assert (body["from"], body["to"], body["group_by"], body["tenant"]) == ("2026-11-01", "2026-11-29", "model", None)
    assert _rows(body) == [
        ("claude-opus-5-5", 2, "0.024", "0.024"),
        ("claude-haiku-4-5", 2, "0.018", "0.108"),
    ]
    savings = {row["key"]: Decimal(row["savings_usd"]) for row in body["rows"]}
    assert savings == {"claude-opus-5-5": Decimal(0), "claude-haiku-4-5": Decimal("0.09")}
    total = body["total"]
    assert (total["requests"], total["cost_usd"], total["baseline_cost_usd"]) == (4, "0.042", "0.132")
    assert total["tokens"] == {
        "input_tokens": 7000,
        "output_tokens": 1400,
        "cache_write_5m_tokens": 0,
        "cache_write_1h_tokens": 0,
        "cache_read_tokens": 100000,
        "web_search_requests": 0,
    }


@pytest.mark.parametrize(
    ("group_by", "rows"),
    [
        pytest.param("tenant", [("acme", 2, "0.024", "0.024"), ("globex", 2, "0.018", "0.108")], id="tenant"),
        pytest.param("feature", [("chat", 3, "0.032", "0.122"), ("search", 1, "0.01", "0.01")], id="feature"),
        pytest.param(
            "day",
            [
                ("2026-11-03", 1, "0.014", "0.014"),
                ("2026-11-10", 2, "0.022", "0.112"),
                ("2026-11-29", 1, "0.006", "0.006"),
            ],
            id="day",
        ),
    ],
)
def test_costs_grouped_by_other_keys(
    recorded: str, lambda_context: FakeLambdaContext, group_by: str, rows: list[tuple[str, int, str, str]]
) -> None:
    # Given the recorded requests
    # When the costs event asks for another grouping
    status, body, _ = _invoke(
        _costs_event(**{"from": "2026-11-01", "to": "2026-11-29", "group_by": group_by}), lambda_context
    )

    # Then the rows follow that grouping and the total is unchanged
    assert status == 200
    assert body["group_by"] == group_by
    assert _rows(body) == rows
    assert body["total"]["cost_usd"] == "0.042"


def test_costs_for_one_tenant(recorded: str, lambda_context: FakeLambdaContext) -> None:
    # Given requests from acme and globex
    # When the costs event asks for globex only, by feature
    event = _costs_event(**{"from": "2026-11-01", "to": "2026-11-29", "group_by": "feature", "tenant": "globex"})
    status, body, _ = _invoke(event, lambda_context)

    # Then only globex's requests are reported
    assert status == 200
    assert body["tenant"] == "globex"
    assert _rows(body) == [("chat", 2, "0.018", "0.108")]
    assert body["total"]["requests"] == 2


# --- errors -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        pytest.param({"to": "2026-11-29"}, "'from'", id="missing-from"),
        pytest.param({"from": "2026-11-01", "to": "2026-02-30"}, "'to'", id="bad-date"),
        pytest.param({"from": "2026-11-29", "to": "2026-11-01"}, "'to'", id="to-before-from"),
        pytest.param({"from": "2026-11-01", "to": "2026-11-29", "group_by": "week"}, "'group_by'", id="group-by"),
        pytest.param({"from": "2026-11-01", "to": "2026-11-29", "tenant": "acme#eu"}, "tenant", id="tenant"),
    ],
)
def test_bad_query_is_a_400_in_anthropic_shape(
    ledger_table: str, lambda_context: FakeLambdaContext, query: dict[str, str], parameter: str
) -> None:
    # Given a costs request with a bad or missing query parameter
    # When the handler receives it
    status, body, raw = _invoke(_costs_event(**query), lambda_context)

    # Then it is a 400 invalid_request_error naming the parameter, with no stack trace
    assert status == 400
    message = _assert_anthropic_error(body, raw, "invalid_request_error")
    assert parameter in message


def test_costs_with_no_query_at_all_is_a_400(ledger_table: str, lambda_context: FakeLambdaContext) -> None:
    # Given a costs request with no query string (API Gateway sends null)
    event = _costs_event()
    event["queryStringParameters"] = None
    event["multiValueQueryStringParameters"] = None

    # When the handler receives it
    status, body, raw = _invoke(event, lambda_context)

    # Then it is a 400 about the missing 'from'
    assert status == 400
    assert "'from'" in _assert_anthropic_error(body, raw, "invalid_request_error")


def test_unknown_path_is_a_404_in_anthropic_shape(lambda_context: FakeLambdaContext) -> None:
    # Given a request for a path the API does not serve
    event = copy.deepcopy(load_event("api", "health"))
    event["path"] = "/v1/budgets"
    event["resource"] = "/{proxy+}"
    event["requestContext"]["resourcePath"] = "/{proxy+}"
    event["requestContext"]["path"] = "/live/v1/budgets"

    # When the handler receives it
    status, body, raw = _invoke(event, lambda_context)

    # Then it is a 404 not_found_error that names the route
    assert status == 404
    assert _assert_anthropic_error(body, raw, "not_found_error") == "no route for GET /v1/budgets"


def test_missing_table_setting_is_an_anthropic_shaped_500(
    monkeypatch: pytest.MonkeyPatch, lambda_context: FakeLambdaContext
) -> None:
    # Given a deployment without COSTGATE_TABLE
    monkeypatch.delenv("COSTGATE_TABLE", raising=False)

    # When a costs request arrives (the handler must not raise)
    status, body, raw = _invoke(load_event("api", "costs"), lambda_context)

    # Then it is a 500 api_error in Anthropic's shape that names the missing setting
    assert status == 500
    assert "COSTGATE_TABLE" in _assert_anthropic_error(body, raw, "api_error")


def test_unexpected_failure_is_a_500_that_hides_the_cause(
    ledger_table: str, monkeypatch: pytest.MonkeyPatch, lambda_context: FakeLambdaContext
) -> None:
    # Given a table setting that points at no table (the store's query will fail inside pynamodb)
    monkeypatch.setenv("COSTGATE_TABLE", "costgate-no-such-table")

    # When a costs request arrives
    status, body, raw = _invoke(load_event("api", "costs"), lambda_context)

    # Then it is a generic 500 api_error, without the internal cause
    assert status == 500
    message = _assert_anthropic_error(body, raw, "api_error")
    assert "no-such-table" not in message
    assert "ResourceNotFound" not in raw


def test_unexpected_failure_message_points_at_a_request_id_header(
    ledger_table: str, monkeypatch: pytest.MonkeyPatch, lambda_context: FakeLambdaContext
) -> None:
    # Given a failure the handler did not expect
    monkeypatch.setenv("COSTGATE_TABLE", "costgate-no-such-table")
    event = load_event("api", "costs")
    request_ids = {event["requestContext"]["requestId"], lambda_context.aws_request_id}

    # When the handler answers it
    response = invoke_in_memory(lambda_handler, event, lambda_context)

    # Then, as its message says, the request id is in the request-id header, and in the body as the Claude API puts it
    body = json.loads(response["body"])
    assert "request-id header" in body["error"]["message"]
    assert response["multiValueHeaders"]["request-id"] == [event["requestContext"]["requestId"]]
    assert body["request_id"] == event["requestContext"]["requestId"]
    assert body["request_id"] in request_ids
