"""The Gateway service with in-memory stores and a scripted upstream: pass-through, receipt, ledger, budgets.

Expected costs are decimal literals computed by hand from shared/reference/anthropic-api.md (USD per
million tokens, so `N×rate/1e6`); the arithmetic is in the comment beside each. Claude Opus 5.5 is
4 / 20 per million with cache reads at 0.05× input and 5-minute cache writes at 1.25× input.
"""

import json
from decimal import Decimal
from typing import Any

import pytest

from costgate.accounting.budgets import Budget, BudgetPeriod, feature_scope, tenant_scope
from costgate.accounting.ledger import RequestState
from costgate.claude.transport import UpstreamResponse
from costgate.errors import (
    AuthenticationError,
    BudgetExceededError,
    ForbiddenError,
    InvalidRequestError,
    RequestTooLargeError,
    UnknownModelError,
    UpstreamError,
    UpstreamUnavailableError,
)
from costgate.gateway.admission import MAX_BODY_BYTES, GatewayRequest
from costgate.pricing.cost import Strategy, price_usage
from costgate.pricing.prices import default_price_book
from costgate.pricing.usage import normalise_usage
from tests.unit.gateway_world import (
    API_VERSION,
    BODY,
    DEADLINE,
    HAIKU_55,
    NOW,
    OPUS,
    PLAIN_COST,
    PLAIN_USAGE,
    ROUTE_REASON,
    World,
    error_reply,
    make_world,
    message_json,
    message_reply,
    receipt_of,
    reply,
    stream_reply,
    worst_case,
)

# --- pass-through ----------------------------------------------------------------------------------------


def test_the_body_reaches_the_upstream_byte_for_byte() -> None:
    # Given a body with an odd key order, odd spacing, fields the gateway does not know, and unicode escapes
    body = (
        b'{ "zz_future_field": {"b": 1, "a": [true, null, 1.50]},\n'
        b'  "messages": [{"role": "user", "content": "caf\\u00e9 \\ud83d\\ude00 \\"quoted\\" \\/"}],'
        b'"max_tokens":64 ,  "model":"claude-opus-5-5", "metadata": {"user_id": "u-1"}}  '
    )
    world = make_world()

    # When it goes through the gateway
    world.send(body)

    # Then the upstream got exactly those bytes, on the Messages path, with the client's deadline
    assert len(world.upstream.sent) == 1
    sent = world.upstream.sent[0]
    assert sent.path == "/v1/messages"
    assert sent.body == body
    assert sent.deadline == DEADLINE


def test_anthropic_version_and_beta_headers_reach_the_upstream_port() -> None:
    # Given a request with an API version and two betas
    world = make_world()
    beta = "prompt-caching-2024-07-31,token-efficient-tools-2025-02-19"

    # When it goes through the gateway
    world.send(anthropic_beta=beta)

    # Then the port receives both, value for value (the port decides what leaves for Claude)
    headers = world.upstream.sent[0].headers
    assert headers["anthropic-version"] == API_VERSION
    assert headers["anthropic-beta"] == beta


def test_the_response_comes_back_unchanged_apart_from_the_receipt() -> None:
    # Given an upstream answer
    answer = message_reply(request_id="req_011CVunchanged")
    world = make_world(answer)

    # When the gateway answers
    response = world.send()

    # Then status and body are Claude's, its headers are kept except hop-by-hop ones
    assert response.status == 200
    assert response.body == answer.body
    assert response.headers["request-id"] == "req_011CVunchanged"
    assert response.headers["content-type"] == "application/json"
    assert response.headers["anthropic-ratelimit-requests-remaining"] == "49"
    assert "connection" not in response.headers
    assert "content-length" not in response.headers
    # and the only headers added are costgate's own
    added = set(response.headers) - set(answer.headers)
    assert added
    assert all(name.startswith("x-costgate-") for name in added)


# --- the receipt -----------------------------------------------------------------------------------------


def test_the_receipt_of_a_plain_message() -> None:
    # Given an answer of 1000 input and 500 output tokens
    world = make_world(message_reply(PLAIN_USAGE))

    # When the gateway answers
    headers = world.send().headers

    # Then the cost is 1000×4/1e6 + 500×20/1e6 = 0.014, exactly what the cost engine says
    assert headers["x-costgate-cost-usd"] == "0.014"
    assert Decimal(headers["x-costgate-cost-usd"]) == price_usage(OPUS, PLAIN_USAGE, NOW).total_usd
    # and nothing was optimised, so the baseline is the cost
    assert headers["x-costgate-baseline-cost-usd"] == "0.014"
    assert headers["x-costgate-model"] == OPUS
    assert headers["x-costgate-route-reason"] == ROUTE_REASON
    assert headers["x-costgate-cache"] == "miss"
    book = default_price_book()
    assert headers["x-costgate-price-version"] == book.price_version(book.rates_at(OPUS, NOW))
    # and with no budget there is no remaining-budget header
    assert "x-costgate-budget-remaining-usd" not in headers


def test_the_receipt_of_a_prompt_cached_message() -> None:
    # Given an answer that read 2000 cached tokens and wrote 400 (5 min)
    usage = {
        "input_tokens": 100,
        "cache_creation_input_tokens": 400,
        "cache_read_input_tokens": 2000,
        "cache_creation": {"ephemeral_5m_input_tokens": 400, "ephemeral_1h_input_tokens": 0},
        "output_tokens": 300,
        "service_tier": "standard",
    }
    world = make_world(message_reply(usage))

    # When the gateway answers
    headers = world.send().headers

    # Then cost = 100×4/1e6 + 400×4×1.25/1e6 + 2000×4×0.05/1e6 + 300×20/1e6
    #           = 0.0004 + 0.002 + 0.0004 + 0.006 = 0.0088
    assert headers["x-costgate-cost-usd"] == "0.0088"
    assert Decimal(headers["x-costgate-cost-usd"]) == price_usage(OPUS, usage, NOW).total_usd
    # and the baseline bills all 2500 prompt tokens as input: 2500×4/1e6 + 0.006 = 0.016
    assert headers["x-costgate-baseline-cost-usd"] == "0.016"
    # and the ledger keeps the prompt-cache saving, 0.016 − 0.0088
    (entry,) = world.ledger.entries.values()
    assert entry.savings[Strategy.PROMPT_CACHE] == Decimal("0.0072")
    assert entry.savings[Strategy.BATCH] == 0
    assert entry.baseline_cost_usd == Decimal("0.016")


def test_the_receipt_prices_at_the_rates_of_the_model_that_answered() -> None:
    # Given a request for Haiku 5.5, answered by Haiku 5.5
    body = json.dumps({"model": HAIKU_55, "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}).encode()
    world = make_world(message_reply({"input_tokens": 1000, "output_tokens": 1000}, model=HAIKU_55))

    # When the gateway answers
    headers = world.send(body).headers

    # Then it is priced at Haiku 5.5's rates: 1000×0.10/1e6 + 1000×0.50/1e6 = 0.0006
    assert headers["x-costgate-model"] == HAIKU_55
    assert headers["x-costgate-cost-usd"] == "0.0006"


# --- the ledger ------------------------------------------------------------------------------------------


def test_the_ledger_entry_matches_the_receipt() -> None:
    # Given a key of tenant acme and a request tagged "chat"
    world = make_world(message_reply(PLAIN_USAGE, request_id="req_011CVledger"))

    # When the gateway answers
    headers = world.send(x_costgate_feature="chat").headers

    # Then one entry, under costgate's request id (the receipt's), with Claude's id beside it, the key's
    # tenant and id and the header's feature
    request_id = headers["x-costgate-request-id"]
    assert request_id.startswith("cg_")
    assert list(world.ledger.entries) == [request_id]
    assert world.ledger.state(request_id) is RequestState.SETTLED
    entry = world.ledger.entries[request_id]
    assert entry.upstream_request_id == headers["request-id"] == "req_011CVledger"
    assert (entry.tenant, entry.feature, entry.key_id) == ("acme", "chat", world.key.key_id)
    assert entry.at == NOW
    assert entry.usage == normalise_usage(PLAIN_USAGE)
    assert entry.model == OPUS
    # and its cost, baseline and price version are the receipt's
    assert entry.cost.total_usd == Decimal(headers["x-costgate-cost-usd"]) == PLAIN_COST
    assert entry.baseline_cost_usd == Decimal(headers["x-costgate-baseline-cost-usd"])
    assert entry.cost.price_version == headers["x-costgate-price-version"]
    # and the hour's rollup counts it once
    (rollup,) = world.ledger.rollups(NOW.date(), NOW.date())
    assert (rollup.tenant, rollup.feature, rollup.model, rollup.hour, rollup.requests) == ("acme", "chat", OPUS, 12, 1)
    assert rollup.cost_usd == PLAIN_COST


@pytest.mark.parametrize(
    ("header", "key_feature", "expected"),
    [
        pytest.param("search", None, "search", id="header-when-the-key-has-none"),
        pytest.param("support", "support", "support", id="header-agreeing-with-the-key"),
        pytest.param(None, "support", "support", id="key-feature"),
        pytest.param("", "support", "support", id="empty-header-is-absent"),
        pytest.param(None, None, "default", id="default"),
    ],
)
def test_the_feature_comes_from_the_header_else_the_key_else_default(
    header: str | None, key_feature: str | None, expected: str
) -> None:
    # Given a key with or without a feature, and a request with or without x-costgate-feature
    world = make_world(key_feature=key_feature)
    headers = {} if header is None else {"x_costgate_feature": header}

    # When the gateway answers
    world.send(BODY, **headers)

    # Then the entry's feature is the header's, else the key's, else "default"
    (entry,) = world.ledger.entries.values()
    assert entry.feature == expected


def test_a_key_bound_to_a_feature_cannot_be_relabelled() -> None:
    # Given a key bound to "support" (whose budget that feature may carry)
    world = make_world(key_feature="support")
    # When a request asks to be counted as another feature, Then it is refused before any spend
    with pytest.raises(ForbiddenError, match="bound to feature 'support'"):
        world.send(BODY, x_costgate_feature="search")
    assert world.upstream.sent == []


def test_an_answer_without_a_request_id_is_still_recorded_under_costgates_own() -> None:
    # Given an upstream answer without a request-id header
    answer = message_reply()
    world = make_world(UpstreamResponse(200, {"content-type": "application/json"}, answer.body))

    # When the gateway answers twice
    world.send()
    world.send()

    # Then both are recorded, each under its own costgate id, with no Claude id
    assert len(world.ledger.entries) == 2
    assert all(request_id.startswith("cg_") for request_id in world.ledger.entries)
    assert [entry.upstream_request_id for entry in world.ledger.entries.values()] == [None, None]


# --- streams ---------------------------------------------------------------------------------------------


def _stream_events(final_output: int = 500) -> list[dict[str, Any]]:
    start_usage = {"input_tokens": 1000, "output_tokens": 1, "cache_read_input_tokens": 0, "service_tier": "standard"}
    message = {
        "id": "msg_s1",
        "type": "message",
        "role": "assistant",
        "model": OPUS,
        "content": [],
        "usage": start_usage,
    }
    return [
        {"type": "message_start", "message": message},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}},
        {"type": "content_block_stop", "index": 0},
        # cumulative usage: each delta restates the total so far
        {"type": "message_delta", "delta": {"stop_reason": None}, "usage": {"output_tokens": 200}},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": final_output}},
        {"type": "message_stop"},
    ]


def test_a_stream_is_priced_from_its_final_cumulative_usage() -> None:
    # Given a stream whose usage goes 1 → 200 → 500 output tokens (cumulative, never to be added)
    answer = stream_reply(*_stream_events(final_output=500))
    world = make_world(answer)
    body = {"model": OPUS, "max_tokens": 512, "stream": True, "messages": [{"role": "user", "content": "hi"}]}

    # When the gateway answers
    response = world.send(json.dumps(body).encode())

    # Then the stream comes back as sent, its receipt after it
    assert response.status == 200
    assert response.body.startswith(answer.body)
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    receipt = receipt_of(response.body)
    # and costs 1000×4/1e6 + 500×20/1e6 = 0.014, not the 701 output tokens a sum of deltas would give
    assert receipt["cost_usd"] == "0.014"
    final = {"input_tokens": 1000, "output_tokens": 500, "cache_read_input_tokens": 0, "service_tier": "standard"}
    assert Decimal(receipt["cost_usd"]) == price_usage(OPUS, final, NOW).total_usd
    assert world.ledger.entries[response.headers["x-costgate-request-id"]].usage.output_tokens == 500


# --- budgets ---------------------------------------------------------------------------------------------


def test_the_worst_case_is_held_during_the_call_and_settled_to_the_exact_cost_after() -> None:
    # Given a key with a daily budget and a tenant with a monthly one
    tenant_monthly = Budget(tenant_scope("acme"), BudgetPeriod.MONTH, Decimal("5"))
    world = make_world(message_reply(PLAIN_USAGE), daily_budget_usd="1", budgets=(tenant_monthly,))
    during: list[tuple[tuple[Decimal, Decimal], tuple[Decimal, Decimal]]] = []
    world.upstream.during_call = lambda: during.append(
        (world.counter(world.key_scope), world.counter(tenant_monthly.scope, BudgetPeriod.MONTH))
    )
    held = worst_case()
    assert held > PLAIN_COST

    # When a request goes through
    response = world.send()

    # Then while Claude was answering, the worst case was held on both budgets and nothing was spent
    assert during == [((held, Decimal(0)), (held, Decimal(0)))]
    # and after it, both hold exactly the cost: committed == spent == 0.014
    assert world.counter(world.key_scope) == (PLAIN_COST, PLAIN_COST)
    assert world.counter(tenant_monthly.scope, BudgetPeriod.MONTH) == (PLAIN_COST, PLAIN_COST)
    # and the receipt shows the least that remains: the key's 1 − 0.014
    assert response.headers["x-costgate-budget-remaining-usd"] == "0.986"


def test_a_feature_budget_applies_to_the_feature_the_request_is_attributed_to() -> None:
    # Given a daily budget on acme's "chat" feature only
    chat = Budget(feature_scope("acme", "chat"), BudgetPeriod.DAY, Decimal("2"))
    world = make_world(message_reply(request_id="req_search"), message_reply(request_id="req_chat"), budgets=(chat,))

    # When one request is tagged "search" and one "chat"
    # (the answer cache is off: the same body twice must reach Claude twice)
    search_headers = world.send(x_costgate_feature="search", x_costgate_cache="off").headers
    chat_headers = world.send(x_costgate_feature="chat", x_costgate_cache="off").headers

    # Then only the chat request is settled against it: 2 − 0.014 remains
    assert "x-costgate-budget-remaining-usd" not in search_headers
    assert chat_headers["x-costgate-budget-remaining-usd"] == "1.986"
    assert world.counter(chat.scope) == (PLAIN_COST, PLAIN_COST)


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(error_reply(400, "invalid_request_error", "messages: Field required"), id="upstream-400"),
        pytest.param(error_reply(429, "rate_limit_error", "Number of requests has exceeded"), id="upstream-429"),
        pytest.param(error_reply(529, "overloaded_error", "Overloaded"), id="upstream-529"),
        pytest.param(error_reply(500, "api_error", "Internal server error"), id="upstream-500"),
    ],
)
def test_an_upstream_error_is_passed_through_and_its_hold_released(failure: UpstreamResponse) -> None:
    # Given a budgeted key and an upstream that answers with an error
    world = make_world(failure, daily_budget_usd="1")

    # When a request goes through
    response = world.send()

    # Then the client gets Claude's error as sent, with a zero-cost receipt
    assert (response.status, response.body) == (failure.status, failure.body)
    assert response.headers["x-costgate-cost-usd"] == "0"
    assert response.headers["x-costgate-model"] == OPUS
    assert response.headers["x-costgate-cache"] == "miss"
    # and the row is abandoned (nothing spent), nothing stays held
    assert world.ledger.entries == {}
    assert world.ledger.state(response.headers["x-costgate-request-id"]) is RequestState.ABANDONED
    assert world.counter(world.key_scope) == (Decimal(0), Decimal(0))
    assert world.budgets.calls.count("give_back") == 1


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(UpstreamUnavailableError("ConnectTimeoutError after 3 attempt(s)"), id="unavailable"),
        pytest.param(RuntimeError("a bug in a transport"), id="unexpected"),
        pytest.param(KeyboardInterrupt(), id="interrupted"),
    ],
)
def test_an_exception_in_the_upstream_call_releases_the_hold(error: BaseException) -> None:
    # Given a budgeted key and an upstream call that raises
    world = make_world(error, daily_budget_usd="1")

    # When a request goes through, the exception reaches the caller
    with pytest.raises(type(error)):
        world.send()

    # Then the row is abandoned, nothing is spent and nothing stays held
    assert world.ledger.entries == {}
    (row,) = world.ledger.rows.values()
    assert row.state is RequestState.ABANDONED
    assert world.counter(world.key_scope) == (Decimal(0), Decimal(0))


def test_two_answers_with_the_same_claude_request_id_are_two_requests() -> None:
    # Given an upstream that answers twice with the same request id
    world = make_world(message_reply(PLAIN_USAGE, request_id="req_011CVsame"), daily_budget_usd="1")

    # When two requests go through (not answered from the answer cache)
    first = world.send(x_costgate_cache="off")
    second = world.send(x_costgate_cache="off")

    # Then each is a request of its own, under costgate's ids: the ledger and the budget count both
    assert first.status == second.status == 200
    assert first.headers["x-costgate-request-id"] != second.headers["x-costgate-request-id"]
    assert sorted(world.ledger.entries) == sorted(h.headers["x-costgate-request-id"] for h in (first, second))
    (rollup,) = world.ledger.rollups(NOW.date(), NOW.date())
    assert rollup.requests == 2
    assert world.counter(world.key_scope) == (2 * PLAIN_COST, 2 * PLAIN_COST)
    assert second.headers["x-costgate-budget-remaining-usd"] == "0.972"


def test_a_request_larger_than_the_whole_budget_is_a_429_and_never_reaches_claude() -> None:
    # Given a key whose daily budget is below the request's worst case
    world = make_world(daily_budget_usd="0.001")
    assert worst_case() > Decimal("0.001")

    # When a request arrives
    with pytest.raises(BudgetExceededError) as caught:
        world.send()

    # Then it is a 429 rate_limit_error naming the budget
    error = caught.value
    assert (error.status, error.error_type) == (429, "rate_limit_error")
    assert f"key {world.key.key_id}'s daily budget of $0.001" in error.message
    assert error.needed == worst_case()
    # and Claude was never called, nothing was held; the row says it was refused
    assert world.upstream.sent == []
    assert "take" not in world.budgets.calls
    assert world.ledger.entries == {}
    assert [row.state for row in world.ledger.rows.values()] == [RequestState.REFUSED]


def test_a_request_that_does_not_fit_what_remains_is_a_429_naming_what_remains() -> None:
    # Given a daily budget of 0.03 of which a first request spent 0.014, leaving 0.016
    world = make_world(daily_budget_usd="0.03")
    held = worst_case()
    assert Decimal("0.016") < held <= Decimal("0.03")
    world.send(x_costgate_cache="off")

    # When a second request, whose worst case exceeds 0.016, arrives (not answered from the cache)
    with pytest.raises(BudgetExceededError) as caught:
        world.send(x_costgate_cache="off")

    # Then the 429 names the budget, its limit and what remains
    message = caught.value.message
    assert f"key {world.key.key_id}'s daily budget is exhausted" in message
    assert "limit $0.03" in message
    assert "$0.016 remaining" in message
    assert caught.value.remaining == Decimal("0.016")
    # and only the first request reached Claude; the budget still holds just its cost
    assert len(world.upstream.sent) == 1
    assert world.counter(world.key_scope) == (PLAIN_COST, PLAIN_COST)


def test_a_budget_rejection_is_counted_in_the_ledger_by_day_tenant_and_feature() -> None:
    # Given a key whose daily budget is below every request's worst case
    world = make_world(daily_budget_usd="0.001", tenant="globex")

    # When two requests for "search" and one for the default feature are refused
    for headers in ({"x_costgate_feature": "search"}, {"x_costgate_feature": "search"}, {}):
        with pytest.raises(BudgetExceededError):
            world.send(BODY, **headers)

    # Then the ledger counts them on the UTC day and hour of the request, per tenant and feature, and records
    # no request
    assert [(r.day, r.hour, r.tenant, r.feature, r.count) for r in world.ledger.rejections(NOW.date(), NOW.date())] == [
        (NOW.date(), 12, "globex", "default", 1),
        (NOW.date(), 12, "globex", "search", 2),
    ]
    assert world.ledger.entries == {}


def test_a_request_that_fits_its_budget_counts_no_rejection() -> None:
    # Given a budget with room
    world = make_world(daily_budget_usd="1")

    # When a request is served
    world.send()

    # Then no rejection is counted
    assert list(world.ledger.rejections(NOW.date(), NOW.date())) == []


def test_a_rejection_that_cannot_be_recorded_is_still_a_429(caplog: pytest.LogCaptureFixture) -> None:
    # Given a budget too small for the request, and a ledger that fails to end a row refused
    world = make_world(daily_budget_usd="0.001")
    world.ledger.faults.fail("end:refused")

    # When the request arrives
    with pytest.raises(BudgetExceededError) as caught:
        world.send()

    # Then the client still gets the budget's 429, not a 500, and the lost record is logged with its stack
    assert (caught.value.status, caught.value.error_type) == (429, "rate_limit_error")
    assert f"key {world.key.key_id}'s daily budget" in caught.value.message
    (failure,) = [r for r in caplog.records if r.getMessage() == "ledger: could not end a row"]
    assert failure.levelname == "ERROR"
    assert failure.exc_info is not None
    assert "injected: end:refused failed" in str(failure.exc_info[1])
    assert world.upstream.sent == []


# --- costgate's own Claude key rejected --------------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
def test_claude_rejecting_costgates_key_is_a_500_not_a_401_to_the_client(status: int) -> None:
    # Given an upstream that refuses costgate's Claude key
    error_type = "authentication_error" if status == 401 else "permission_error"
    world = make_world(error_reply(status, error_type, "invalid x-api-key"), daily_budget_usd="1")

    # When a request with a valid gateway key arrives
    with pytest.raises(UpstreamError) as caught:
        world.send()

    # Then it is costgate's fault: a 500 api_error, and the hold is given back
    assert (caught.value.status, caught.value.error_type) == (500, "api_error")
    assert "rejected its API key" in caught.value.message
    assert world.counter(world.key_scope) == (Decimal(0), Decimal(0))
    assert world.ledger.entries == {}


# --- answers that cannot be priced ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(reply(b'{"type":"message","id":"msg_1","content":[]}'), id="no-usage"),
        pytest.param(reply(b"<html>gateway hiccup</html>"), id="not-json"),
        pytest.param(reply(message_json({"input_tokens": -5, "output_tokens": 10})), id="negative-count"),
        pytest.param(reply(message_json({"input_tokens": 5, "output_tokens": 1, "speed": "warp"})), id="unknown-speed"),
        pytest.param(reply(message_json(PLAIN_USAGE, model="claude-unknown-9")), id="unpriced-model"),
        pytest.param(reply(b"data: {}\n\n", content_type="text/event-stream"), id="stream-without-usage"),
    ],
)
def test_a_200_without_readable_usage_passes_through_unpriced_and_keeps_its_hold(answer: UpstreamResponse) -> None:
    # Given a budgeted key and an upstream 200 whose usage cannot be read or priced
    world = make_world(answer, daily_budget_usd="1")

    # When a request goes through
    response = world.send()

    # Then the client still gets the answer, marked unpriced
    assert (response.status, response.body) == (200, answer.body)
    assert response.headers["x-costgate-cost-usd"] == "unpriced"
    assert response.headers["x-costgate-baseline-cost-usd"] == "unpriced"
    assert response.headers["x-costgate-model"] == OPUS
    # and the worst case stays held (budgets stay conservative); the row stays reserved for the sweeper,
    # which counts it at that worst case
    assert world.counter(world.key_scope) == (worst_case(), Decimal(0))
    assert world.ledger.entries == {}
    (row,) = world.ledger.rows.values()
    assert row.state is RequestState.RESERVED
    assert row.reserved is not None
    assert row.reserved.held_usd == worst_case()


# --- rejected before any spend ---------------------------------------------------------------------------


def _rejected_before_spend(world: World, expected: type[Exception], body: bytes = BODY, **headers: str) -> Exception:
    """The error the request raised; it must be `expected`, and nothing may have reached Claude or a store.

    Caught by hand rather than by pytest.raises: a RecursionError's thousand frames would take pytest
    most of a minute to render, where its type name says all that matters.
    """
    raised: BaseException | None = None
    try:
        world.send(body, **headers)
    except Exception as error:  # noqa: BLE001 - the test asserts on its type just below
        raised = error.with_traceback(None)
    assert isinstance(raised, expected), f"expected {expected.__name__}, got {type(raised).__name__}: {raised}"
    assert world.upstream.sent == []
    assert "reserve" not in world.budgets.calls
    assert world.ledger.entries == {}
    return raised


def test_an_unknown_model_is_a_400_before_any_spend() -> None:
    # Given a request for a model costgate has no price for
    world = make_world(daily_budget_usd="1")
    body = json.dumps({"model": "claude-opus-9", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]})

    # When it arrives, Then it is a 400 naming the model, and nothing reached Claude or the budget
    error = _rejected_before_spend(world, UnknownModelError, body.encode())
    assert isinstance(error, InvalidRequestError)
    assert error.status == 400
    assert "'claude-opus-9'" in str(error)


@pytest.mark.parametrize(
    ("headers", "named"),
    [
        pytest.param({"x_costgate_feature": "chat#eu"}, "x-costgate-feature", id="feature-hash"),
        pytest.param({"x_costgate_feature": " chat"}, "x-costgate-feature", id="feature-space"),
        pytest.param({"x_costgate_feature": "x" * 65}, "x-costgate-feature", id="feature-too-long"),
        pytest.param({"x_costgate_cache": "sometimes"}, "x-costgate-cache", id="cache-mode"),
    ],
)
def test_invalid_costgate_headers_are_a_400_before_any_spend(headers: dict[str, str], named: str) -> None:
    # Given a request with a bad x-costgate-* header
    world = make_world(daily_budget_usd="1")

    # When it arrives, Then it is a 400 naming the header
    error = _rejected_before_spend(world, InvalidRequestError, BODY, **headers)
    assert named in str(error)


@pytest.mark.parametrize(
    ("mode", "result"), [("off", "bypass"), ("exact", "miss"), ("semantic", "miss"), (" OFF ", "bypass")]
)
def test_every_documented_cache_mode_is_accepted(mode: str, result: str) -> None:
    # Given a request with a valid x-costgate-cache mode
    world = make_world()

    # When it arrives
    response = world.send(x_costgate_cache=mode)

    # Then it is answered, and the receipt says whether the cache was looked at
    assert response.status == 200
    assert response.headers["x-costgate-cache"] == result


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(b"{not json", "not valid JSON", id="bad-json"),
        pytest.param(b"\xff\xfe\x00garbage", "not valid JSON", id="not-utf8"),
        pytest.param(b"[1, 2]", "must be a JSON object", id="array"),
        pytest.param(b'{"max_tokens": 10, "messages": []}', "model", id="no-model"),
        pytest.param(b'{"model": 7, "max_tokens": 10, "messages": []}', "model", id="model-not-a-string"),
        pytest.param(b'{"model": "claude-opus-5-5", "messages": []}', "max_tokens", id="no-max-tokens"),
        pytest.param(b'{"model": "claude-opus-5-5", "max_tokens": "9", "messages": []}', "max_tokens", id="str-max"),
        pytest.param(b'{"model": "claude-opus-5-5", "max_tokens": 0, "messages": []}', "max_tokens", id="zero-max"),
    ],
)
def test_malformed_bodies_are_a_400_before_any_spend(body: bytes, message: str) -> None:
    # Given a budgeted key and a malformed body
    world = make_world(daily_budget_usd="1")

    # When it arrives, Then it is a 400 that says what is wrong
    error = _rejected_before_spend(world, InvalidRequestError, body)
    assert message in str(error)


def test_a_request_without_a_key_is_a_401_before_anything_else() -> None:
    # Given a request with a malformed body and no gateway key
    world = make_world()
    request = GatewayRequest(body=b"{not json", headers={"anthropic-version": API_VERSION}, deadline=DEADLINE)

    # When it arrives, Then authentication fails first
    with pytest.raises(AuthenticationError):
        world.gateway.create_message(request)
    assert world.upstream.sent == []


def test_a_body_above_the_claude_api_limit_is_a_413() -> None:
    # Given a body one byte over 32 MB
    world = make_world()

    # When it arrives, Then it is a 413 request_too_large, before Claude
    error = _rejected_before_spend(world, RequestTooLargeError, b" " * (MAX_BODY_BYTES + 1))
    assert error.status == 413  # type: ignore[attr-defined]


# --- count_tokens ----------------------------------------------------------------------------------------


def test_count_tokens_passes_through_and_adds_the_estimated_input_cost() -> None:
    # Given an upstream that counts 1234 input tokens
    body = b'{"model":"claude-opus-5-5","messages":[{"role":"user","content":"caf\\u00e9"}],"zz_new":1}'
    answer = reply(b'{"input_tokens": 1234}', request_id="req_count1")
    world = make_world(answer, daily_budget_usd="1")

    # When the gateway counts
    response = world.gateway.count_tokens(world.request(body, anthropic_beta="token-counting-2024-11-01"))

    # Then the body went upstream untouched, with the API headers, to count_tokens
    (sent,) = world.upstream.sent
    assert (sent.path, sent.body) == ("/v1/messages/count_tokens", body)
    assert sent.headers["anthropic-beta"] == "token-counting-2024-11-01"
    # and Claude's answer comes back with the estimate: 1234×4/1e6 = 0.004936
    assert (response.status, response.body) == (200, answer.body)
    assert response.headers["request-id"] == "req_count1"
    assert response.headers["x-costgate-estimated-input-cost-usd"] == "0.004936"
    book = default_price_book()
    assert response.headers["x-costgate-price-version"] == book.price_version(book.rates_at(OPUS, NOW))
    # and counting is free: no budget touched, nothing recorded
    assert "reserve" not in world.budgets.calls
    assert world.ledger.entries == {}


def test_count_tokens_error_is_passed_through_without_an_estimate() -> None:
    # Given an upstream that rejects the count
    failure = error_reply(400, "invalid_request_error", "messages: Field required")
    world = make_world(failure)

    # When the gateway counts
    response = world.gateway.count_tokens(world.request(b'{"model":"claude-opus-5-5"}'))

    # Then the error comes back as sent, without an estimate
    assert (response.status, response.body) == (400, failure.body)
    assert "x-costgate-estimated-input-cost-usd" not in response.headers


def test_count_tokens_rejects_an_unknown_model_and_a_missing_key_before_claude() -> None:
    world = make_world(reply(b'{"input_tokens": 3}'))
    unknown = b'{"model":"claude-opus-9","messages":[]}'

    with pytest.raises(UnknownModelError):
        world.gateway.count_tokens(world.request(unknown))
    with pytest.raises(AuthenticationError):
        world.gateway.count_tokens(GatewayRequest(body=BODY, headers={}, deadline=DEADLINE))
    assert world.upstream.sent == []


@pytest.mark.parametrize("status", [401, 403])
def test_count_tokens_with_costgates_key_rejected_is_a_500(status: int) -> None:
    world = make_world(error_reply(status, "authentication_error", "invalid x-api-key"))

    with pytest.raises(UpstreamError):
        world.gateway.count_tokens(world.request(BODY))


def test_count_tokens_estimate_uses_the_prompt_band_the_count_falls_in() -> None:
    # Given Haiku 5.5 and a count of 200,000 tokens, above its 100K band
    body = json.dumps({"model": HAIKU_55, "messages": [{"role": "user", "content": "long"}]}).encode()
    world = make_world(reply(b'{"input_tokens": 200000}'))

    # When the gateway counts
    response = world.gateway.count_tokens(world.request(body))

    # Then the estimate is at the high band: 200000×0.50/1e6 = 0.1 (the base rate would say 0.02)
    assert response.headers["x-costgate-estimated-input-cost-usd"] == "0.1"


@pytest.mark.parametrize("body", [b"<html>proxy page</html>", b"[]"], ids=["not-json", "array"])
def test_count_tokens_passes_an_unreadable_200_through_without_an_estimate(body: bytes) -> None:
    # Given an upstream 200 whose body is not a count
    world = make_world(reply(body))

    # When the gateway counts
    response = world.gateway.count_tokens(world.request(BODY))

    # Then the answer comes back as sent, without an estimate
    assert (response.status, response.body) == (200, body)
    assert "x-costgate-estimated-input-cost-usd" not in response.headers


# --- request bodies the estimator cannot handle ------------------------------------------------------------


def test_a_lone_surrogate_escape_is_a_400_not_an_unexpected_error() -> None:
    # Given a body whose text holds a lone surrogate escape (valid JSON, not valid Unicode)
    world = make_world(daily_budget_usd="1")
    body = b'{"model":"claude-opus-5-5","max_tokens":64,"messages":[{"role":"user","content":"\\ud800"}]}'

    # When it arrives, Then it is an Anthropic-shaped 400, before any spend
    _rejected_before_spend(world, InvalidRequestError, body)


@pytest.mark.parametrize("depth", [3_000, 100_000], ids=["parses-then-estimate-fails", "parse-fails"])
def test_deeply_nested_json_is_a_400_not_an_unexpected_error(depth: int) -> None:
    # Given a body with an unknown field nested `depth` arrays deep
    world = make_world(daily_budget_usd="1")
    nested = "[" * depth + "]" * depth
    body = f'{{"model":"claude-opus-5-5","max_tokens":64,"messages":[],"x":{nested}}}'.encode()

    # When it arrives, Then it is an Anthropic-shaped 400, before any spend
    _rejected_before_spend(world, InvalidRequestError, body)
