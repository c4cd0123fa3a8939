"""POST /v1/messages and count_tokens through the real ApiFunction: events from events/api/, moto, the simulator.

Nothing is faked below the handler: keys, budgets and the ledger are in DynamoDB (moto), the Claude key is
read from Secrets Manager (moto) through Powertools, and Claude is the local simulator over HTTP.
"""

import copy
import json
import threading
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from costgate.accounting.budgets import Budget, BudgetPeriod, estimate_worst_case, key_scope
from costgate.accounting.ledger import Rollup
from costgate.dal.budgets import BudgetCounterItem, DynamoBudgetStore
from costgate.dal.keys import DynamoKeyStore
from costgate.dal.ledger import DynamoLedgerStore, LedgerItem
from costgate.gateway import keys as keys_module
from costgate.gateway.keys import issue_key, revoke_key
from costgate.gateway.model import GatewayKey
from costgate.pricing.cost import price_usage
from costgate.pricing.prices import default_price_book
from costgate_local.simulator import ManualClock, Simulator, SimulatorOptions
from costgate_local.stack.aws import LocalAwsEndpoints, create_secret, environment
from costgate_local.stack.runtime_api import invoke_in_memory
from functions.api.handler import gateway, lambda_handler, ledger_store, settings
from tests.conftest import FakeLambdaContext
from tests.events import load_event
from tests.integration.stream import aggregate_bound

SIM_START = datetime(2026, 11, 29, 6, 0, tzinfo=UTC)
CLAUDE_KEY = "sk-ant-test"
TENANT = "bookshop"
MODEL = "claude-sonnet-5-5"  # the events' model: 2 / 10 per million tokens
ROUTE_REASON = "explicit model"


@dataclass(frozen=True)
class ApiLambdaContext(FakeLambdaContext):
    """The shared fake context plus the clock the handler reads its upstream deadline from."""

    remaining_ms: int = 900_000  # the template's 15-minute timeout, just started

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@pytest.fixture
def api_context() -> ApiLambdaContext:
    return ApiLambdaContext()


@pytest.fixture(autouse=True)
def cold_container() -> Iterator[None]:
    """Each test is a fresh Lambda instance: no cached settings, stores, gateway or keys."""
    for cached in (settings, ledger_store, gateway):
        cached.cache_clear()
    keys_module._WARM_CACHE.clear()
    yield
    for cached in (settings, ledger_store, gateway):
        cached.cache_clear()
    keys_module._WARM_CACHE.clear()


@pytest.fixture
def simulator() -> Iterator[Simulator]:
    with Simulator(SimulatorOptions(port=0, clock=ManualClock(SIM_START))) as sim:
        yield sim


def _wire_upstream(local_aws: LocalAwsEndpoints, base_url: str) -> dict[str, str]:
    """The ApiFunction settings for an upstream at base_url, with the Claude key in a new secret."""
    secret = f"costgate/claude-api-key-{uuid.uuid4().hex[:8]}"  # a new name: Powertools caches by name
    create_secret(local_aws, secret, CLAUDE_KEY)
    return {"COSTGATE_UPSTREAM_URL": base_url, "COSTGATE_CLAUDE_KEY_SECRET": secret}


@pytest.fixture
def deployed(ledger_table: str, local_aws: LocalAwsEndpoints, simulator: Simulator) -> Iterator[Simulator]:
    """ApiFunction's environment pointing at the simulator; restored after the test."""
    with environment(_wire_upstream(local_aws, simulator.base_url)):
        yield simulator


@dataclass(frozen=True)
class Issued:
    api_key: str
    key: GatewayKey


def _issue(daily_budget_usd: Decimal | None = None) -> Issued:
    api_key, key = issue_key(DynamoKeyStore(), tenant=TENANT, daily_budget_usd=daily_budget_usd, now=datetime.now(UTC))
    return Issued(api_key, key)


@pytest.fixture
def issued(deployed: Simulator) -> Issued:
    return _issue()


# --- events and responses ----------------------------------------------------------------------------------


def _event(scenario: str, api_key: str | None = None, **headers: str) -> dict[str, Any]:
    """events/api/<scenario>.json with the given key and headers set in both header maps."""
    event = copy.deepcopy(load_event("api", scenario))
    if api_key is not None:
        headers["x-api-key"] = api_key
    for name, value in headers.items():
        event["headers"][name] = value
        event["multiValueHeaders"][name] = [value]
    return event


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]  # lower-case names, one value each
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


def _invoke(event: dict[str, Any], context: ApiLambdaContext) -> Answer:
    response = invoke_in_memory(lambda_handler, event, context)
    assert response["isBase64Encoded"] is False
    headers: dict[str, str] = {}
    for name, values in response["multiValueHeaders"].items():
        assert len(values) == 1, f"{name} sent {len(values)} times"
        headers[name.lower()] = values[0]
    return Answer(response["statusCode"], headers, response["body"])


def _assert_anthropic_error(answer: Answer, status: int, error_type: str) -> str:
    assert answer.status == status
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert set(body) == {"type", "error", "request_id"}
    assert body["type"] == "error"
    # `details` only where the Claude API has it: its spend-limit 429
    assert set(body["error"]) == ({"type", "message", "details"} if status == 429 else {"type", "message"})
    assert body["error"]["type"] == error_type
    assert "Traceback" not in answer.text
    assert 'File "' not in answer.text
    message: str = body["error"]["message"]
    return message


def _ledger_row(request_id: str) -> LedgerItem:
    return LedgerItem.get(f"REQ#{request_id}", "REQ", consistent_read=True)


def _rollups(day: date) -> list[Rollup]:
    """The day's rollups once AggregatorFunction has taken everything the table's stream holds."""
    aggregate_bound()
    return list(DynamoLedgerStore().rollups(day, day))


def _body_of(scenario: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(load_event("api", scenario)["body"])
    return body


def _sse(text: str) -> list[dict[str, Any]]:
    """The data of every event of a text/event-stream body, each checked against its event name
    (the receipt comment at its end is not an event)."""
    events: list[dict[str, Any]] = []
    for block in text.strip().split("\n\n"):
        if block.startswith(": costgate-receipt "):
            continue
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        data = json.loads(fields["data"])
        assert data["type"] == fields["event"]
        events.append(data)
    return events


# --- POST /v1/messages ---------------------------------------------------------------------------------------


def test_a_message_is_answered_with_a_receipt_that_matches_the_ledger(
    issued: Issued, api_context: ApiLambdaContext
) -> None:
    # Given a key of tenant bookshop and the messages event (tagged x-costgate-feature: bookshop-chat)
    event = _event("messages", issued.api_key)

    # When ApiFunction receives it
    answer = _invoke(event, api_context)

    # Then the body is the simulator's message, untouched
    assert answer.status == 200
    assert answer.headers["content-type"] == "application/json"
    message = answer.json()
    assert (message["type"], message["role"], message["model"]) == ("message", "assistant", MODEL)
    assert message["content"][0]["text"].startswith("[simulated]")
    assert answer.headers["request-id"].startswith("req_")  # Claude's id, passed through
    request_id = answer.headers["x-costgate-request-id"]
    assert request_id.startswith("cg_")

    # and the receipt prices the message's own usage exactly
    row = _ledger_row(request_id)
    assert (row.status, row.upstream_request_id) == ("settled", answer.headers["request-id"])
    cost = price_usage(MODEL, message["usage"], row.at)
    receipt = answer.headers
    assert receipt["x-costgate-cost-usd"] != "unpriced"
    assert Decimal(receipt["x-costgate-cost-usd"]) == cost.total_usd
    assert receipt["x-costgate-baseline-cost-usd"] == receipt["x-costgate-cost-usd"]  # nothing was cached
    assert receipt["x-costgate-model"] == MODEL
    assert receipt["x-costgate-route-reason"] == ROUTE_REASON
    assert receipt["x-costgate-cache"] == "miss"
    book = default_price_book()
    assert receipt["x-costgate-price-version"] == book.price_version(book.rates_at(MODEL, row.at))
    assert "x-costgate-budget-remaining-usd" not in receipt  # this key has no budget

    # and the ledger row says the same, attributed to the key's tenant and the event's feature
    assert row.cost_usd == Decimal(receipt["x-costgate-cost-usd"])
    assert row.baseline_cost_usd == Decimal(receipt["x-costgate-baseline-cost-usd"])
    assert row.price_version == receipt["x-costgate-price-version"]
    assert (row.tenant, row.feature, row.model, row.key_id) == (TENANT, "bookshop-chat", MODEL, issued.key.key_id)
    usage = message["usage"]
    assert (row.input_tokens, row.output_tokens) == (usage["input_tokens"], usage["output_tokens"])

    # and so does the day's rollup
    (rollup,) = _rollups(date.fromisoformat(row.day))
    assert (rollup.tenant, rollup.feature, rollup.model, rollup.requests) == (TENANT, "bookshop-chat", MODEL, 1)
    assert rollup.cost_usd == row.cost_usd
    assert rollup.baseline_cost_usd == row.baseline_cost_usd


def test_a_message_costs_what_its_tokens_cost_by_hand(issued: Issued, api_context: ApiLambdaContext) -> None:
    # Given the messages event
    # When ApiFunction answers it
    answer = _invoke(_event("messages", issued.api_key), api_context)

    # Then its cost is input × 2/1e6 + output × 10/1e6 (Sonnet 5.5's rates, no cache used)
    usage = answer.json()["usage"]
    assert usage["cache_read_input_tokens"] == usage["cache_creation_input_tokens"] == 0
    by_hand = (Decimal(usage["input_tokens"]) * 2 + Decimal(usage["output_tokens"]) * 10) / 10**6
    assert Decimal(answer.headers["x-costgate-cost-usd"]) == by_hand


def test_a_stream_is_valid_sse_and_costs_its_final_usage(issued: Issued, api_context: ApiLambdaContext) -> None:
    # Given the streaming event
    event = _event("messages_stream", issued.api_key)

    # When ApiFunction receives it
    answer = _invoke(event, api_context)

    # Then it is a complete event stream, message_start to message_stop
    assert answer.status == 200
    assert answer.headers["content-type"].startswith("text/event-stream")
    events = _sse(answer.text)
    assert events[0]["type"] == "message_start"
    assert events[-1]["type"] == "message_stop"
    text = "".join(e["delta"].get("text", "") for e in events if e["type"] == "content_block_delta")
    assert text.startswith("[simulated]")

    # and its cost is the final usage priced: message_start's, updated by the last message_delta (cumulative)
    final = dict(events[0]["message"]["usage"])
    deltas = [e for e in events if e["type"] == "message_delta"]
    final.update(deltas[-1]["usage"])
    assert final["output_tokens"] > events[0]["message"]["usage"]["output_tokens"]
    receipt = _receipt(answer.text)
    row = _ledger_row(answer.headers["x-costgate-request-id"])
    assert Decimal(receipt["cost_usd"]) == price_usage(MODEL, final, row.at).total_usd
    assert row.cost_usd == Decimal(receipt["cost_usd"])
    assert row.output_tokens == final["output_tokens"] == receipt["tokens"]["output"]

    # and GET /v1/requests/{id} with the same key answers the same receipt; another tenant's key gets a 404
    found = _invoke(_request_event(row.request_id, issued.api_key), api_context)
    assert found.status == 200
    assert found.json() == {name: value for name, value in receipt.items() if name != "complete"}
    stranger = issue_key(DynamoKeyStore(), tenant="another-shop", now=datetime.now(UTC))[0]
    _assert_anthropic_error(_invoke(_request_event(row.request_id, stranger), api_context), 404, "not_found_error")
    _assert_anthropic_error(_invoke(_request_event("req_nope", issued.api_key), api_context), 404, "not_found_error")
    _assert_anthropic_error(_invoke(_request_event(row.request_id, None), api_context), 401, "authentication_error")


def _receipt(text: str) -> dict[str, Any]:
    comments = [line for line in text.split("\n") if line.startswith(": costgate-receipt ")]
    assert len(comments) == 1
    assert text.endswith(comments[0] + "\n\n")
    document: dict[str, Any] = json.loads(comments[0].removeprefix(": costgate-receipt "))
    return document


def _request_event(request_id: str, api_key: str | None) -> dict[str, Any]:
    event = copy.deepcopy(load_event("api", "request"))
    event["path"] = f"/v1/requests/{request_id}"
    event["pathParameters"] = {"request_id": request_id}
    for headers in (event["headers"], event["multiValueHeaders"]):
        headers.pop("x-api-key")
        if api_key is not None:
            headers["x-api-key"] = api_key if headers is event["headers"] else [api_key]
    return event


def test_n_requests_are_n_ledger_rows_and_one_rollup_that_adds_them_up(
    issued: Issued, api_context: ApiLambdaContext
) -> None:
    # Given three requests from the same key and feature
    answers = [_invoke(_event("messages", issued.api_key), api_context) for _ in range(3)]

    # Then each is its own ledger row, under its own request id
    request_ids = {answer.headers["x-costgate-request-id"] for answer in answers}
    assert len(request_ids) == 3
    rows = [_ledger_row(request_id) for request_id in request_ids]
    # and the rollup holds the three receipts' sum, exactly
    (rollup,) = _rollups(date.fromisoformat(rows[0].day))
    assert rollup.requests == 3
    assert rollup.cost_usd == sum((Decimal(a.headers["x-costgate-cost-usd"]) for a in answers), Decimal(0))
    assert rollup.cost_usd == sum((row.cost_usd for row in rows), Decimal(0))


# --- count_tokens ---------------------------------------------------------------------------------------


def test_count_tokens_passes_the_count_through_and_adds_the_estimated_cost(
    issued: Issued, api_context: ApiLambdaContext
) -> None:
    # Given the count_tokens event
    event = _event("count_tokens", issued.api_key)

    # When ApiFunction receives it
    answer = _invoke(event, api_context)

    # Then the body is the simulator's count, as sent
    assert answer.status == 200
    body = answer.json()
    assert set(body) == {"input_tokens"}
    tokens = body["input_tokens"]
    assert isinstance(tokens, int)
    assert tokens > 0
    # and the estimate is that count at Sonnet 5.5's input rate: tokens × 2/1e6
    assert Decimal(answer.headers["x-costgate-estimated-input-cost-usd"]) == Decimal(tokens) * 2 / 10**6
    # and counting is free: nothing is recorded
    assert _rollups(datetime.now(UTC).date()) == []


# --- errors ---------------------------------------------------------------------------------------------


def test_malformed_json_is_a_400_in_anthropic_shape(issued: Issued, api_context: ApiLambdaContext) -> None:
    # Given the bad-JSON event (a trailing comma) with a valid key
    event = _event("messages_bad_json", issued.api_key)

    # When ApiFunction receives it
    answer = _invoke(event, api_context)

    # Then it is a 400 invalid_request_error that says the body is not JSON, with no stack trace
    message = _assert_anthropic_error(answer, 400, "invalid_request_error")
    assert "not valid JSON" in message
    assert answer.json()["request_id"] == event["requestContext"]["requestId"]


def test_no_key_is_a_401(deployed: Simulator, api_context: ApiLambdaContext) -> None:
    # Given the event without a gateway key
    event = _event("messages_no_key")
    assert "x-api-key" not in event["headers"]

    # When ApiFunction receives it
    answer = _invoke(event, api_context)

    # Then it is a 401 authentication_error that says how to send a key
    message = _assert_anthropic_error(answer, 401, "authentication_error")
    assert "x-api-key" in message


def test_the_placeholder_key_of_the_event_files_is_a_401(deployed: Simulator, api_context: ApiLambdaContext) -> None:
    # Given the messages event as committed (its key is a well-formed placeholder that was never issued)
    # When ApiFunction receives it, Then it is a 401 that does not echo the key
    answer = _invoke(load_event("api", "messages"), api_context)
    assert _assert_anthropic_error(answer, 401, "authentication_error") == "invalid API key"
    assert "replace_me" not in answer.text


def test_a_bearer_key_is_accepted_as_the_sdk_sends_it(issued: Issued, api_context: ApiLambdaContext) -> None:
    # Given the no-key event with the key as Authorization: Bearer (the anthropic SDK 2.x's way)
    event = _event("messages_no_key", authorization=f"Bearer {issued.api_key}")

    # When ApiFunction receives it, Then it is answered and priced
    answer = _invoke(event, api_context)
    assert answer.status == 200
    assert Decimal(answer.headers["x-costgate-cost-usd"]) > 0


def test_a_revoked_key_is_a_401(deployed: Simulator, api_context: ApiLambdaContext) -> None:
    # Given a key that was revoked
    issued = _issue()
    revoke_key(DynamoKeyStore(), issued.key.key_id, datetime.now(UTC))

    # When a request presents it
    answer = _invoke(_event("messages", issued.api_key), api_context)

    # Then it is a 401 that says so, and nothing is recorded
    assert _assert_anthropic_error(answer, 401, "authentication_error") == "API key has been revoked"
    assert _rollups(datetime.now(UTC).date()) == []


def test_an_unknown_model_is_a_400_from_costgate(issued: Issued, api_context: ApiLambdaContext) -> None:
    # Given the messages event asking for a model costgate has no price for
    event = _event("messages", issued.api_key)
    event["body"] = json.dumps({**_body_of("messages"), "model": "claude-sonnet-9"})

    # When ApiFunction receives it, Then it is a 400 naming the model
    message = _assert_anthropic_error(_invoke(event, api_context), 400, "invalid_request_error")
    assert "claude-sonnet-9" in message


def test_an_upstream_400_is_passed_through_with_a_zero_receipt(issued: Issued, api_context: ApiLambdaContext) -> None:
    # Given a request the Claude API rejects (API version 2026-10-21 removed temperature)
    event = _event("messages", issued.api_key)
    event["body"] = json.dumps({**_body_of("messages"), "temperature": 0.2})

    # When ApiFunction receives it
    answer = _invoke(event, api_context)

    # Then the client gets Claude's own 400, with a zero-cost receipt, and nothing is recorded
    assert "temperature" in _assert_anthropic_error(answer, 400, "invalid_request_error")
    assert answer.headers["x-costgate-cost-usd"] == "0"
    assert _rollups(datetime.now(UTC).date()) == []


# --- budgets ---------------------------------------------------------------------------------------------


def _in_use(api_key_id: str) -> Decimal:
    """Spent plus held on the key's daily budget: what its root handed out less what its shards hold."""
    window = datetime.now(UTC).date().isoformat()
    budget = Budget(key_scope(api_key_id), BudgetPeriod.DAY, Decimal(0))
    root = BudgetCounterItem.get(f"BUDGET#{budget.scope}", f"day#{window}", consistent_read=True)
    return root.committed_usd - DynamoBudgetStore().held_in_shards(budget, window)


def test_a_tiny_daily_budget_answers_once_then_429s_naming_the_budget_and_what_remains(
    deployed: Simulator, api_context: ApiLambdaContext
) -> None:
    # Given a key whose daily budget fits one request's worst case but not two
    body = _body_of("messages")
    worst = estimate_worst_case(MODEL, body, datetime.now(UTC))
    limit = worst + Decimal("0.0001")
    issued = _issue(daily_budget_usd=limit)

    # When the first request arrives, Then it is answered and settled to its exact cost
    first = _invoke(_event("messages", issued.api_key), api_context)
    assert first.status == 200
    cost = Decimal(first.headers["x-costgate-cost-usd"])
    remaining = Decimal(first.headers["x-costgate-budget-remaining-usd"])
    assert remaining == limit - cost
    assert remaining < worst
    assert _in_use(issued.key.key_id) == cost

    # When the second arrives, Then it is a 429 rate_limit_error naming the daily budget and what remains
    # (the same body again, not answered from the answer cache)
    second = _invoke(_event("messages", issued.api_key, **{"x-costgate-cache": "off"}), api_context)
    message = _assert_anthropic_error(second, 429, "rate_limit_error")
    # shaped like Claude's own spend-limit refusal, which SDKs must not retry
    assert second.json()["error"]["details"] == {"error_code": "enforced_spend_limit_reached"}
    assert second.headers["x-should-retry"] == "false"
    assert "retry-after" not in second.headers
    assert f"key {issued.key.key_id}'s daily budget is exhausted" in message
    assert f"${first.headers['x-costgate-budget-remaining-usd']} remaining" in message
    # and it never reached Claude: the budget and the ledger still hold just the first request, and the
    # refusal is counted
    assert _in_use(issued.key.key_id) == cost
    (rollup,) = _rollups(datetime.now(UTC).date())
    assert rollup.requests == 1
    (rejection,) = DynamoLedgerStore().rejections(datetime.now(UTC).date(), datetime.now(UTC).date())
    assert (rejection.tenant, rejection.count) == (TENANT, 1)


# --- one request id, recorded once ------------------------------------------------------------------------


class _Quiet(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return


@dataclass
class RepeatingUpstream:
    """An HTTP Claude stand-in that answers every message with the same body and the same request-id."""

    request_id: str = "req_011CVrepeated0000000000"
    seen: list[dict[str, str]] = field(default_factory=list)
    usage: dict[str, int] = field(default_factory=lambda: {"input_tokens": 1000, "output_tokens": 500})

    def __post_init__(self) -> None:
        self._server: BaseWSGIServer = make_server("127.0.0.1", 0, self._app, threaded=True, request_handler=_Quiet)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def _app(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        self.seen.append({name.lower(): value for name, value in request.headers.items()})
        message = {
            "id": "msg_repeated",
            "type": "message",
            "role": "assistant",
            "model": MODEL,
            "content": [{"type": "text", "text": "Around the World in Eighty Days."}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": self.usage,
        }
        response = Response(json.dumps(message), status=200, mimetype="application/json")
        response.headers["request-id"] = self.request_id
        return response(environ, start_response)

    def __enter__(self) -> "RepeatingUpstream":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def test_the_same_upstream_request_id_twice_is_two_requests_each_settled_once(
    ledger_table: str, local_aws: LocalAwsEndpoints, api_context: ApiLambdaContext
) -> None:
    # Given an upstream that repeats its request id, and a key with a daily budget
    with RepeatingUpstream() as upstream, environment(_wire_upstream(local_aws, upstream.base_url)):
        issued = _issue(daily_budget_usd=Decimal("1"))

        # When two requests go through ApiFunction
        off = {"x-costgate-cache": "off"}  # both must reach Claude, not the answer cache
        answers = [_invoke(_event("messages", issued.api_key, **off), api_context) for _ in range(2)]

    # Then both clients are answered with the same receipt: 1000×2/1e6 + 500×10/1e6 = 0.007
    assert [a.status for a in answers] == [200, 200]
    assert [a.headers["x-costgate-cost-usd"] for a in answers] == ["0.007", "0.007"]
    # and the ledger has two rows under costgate's ids (Claude's beside them), and a rollup of both
    rows = [_ledger_row(a.headers["x-costgate-request-id"]) for a in answers]
    assert [(row.cost_usd, row.upstream_request_id) for row in rows] == [(Decimal("0.007"), upstream.request_id)] * 2
    (rollup,) = _rollups(date.fromisoformat(rows[0].day))
    assert (rollup.requests, rollup.cost_usd) == (2, Decimal("0.014"))
    # and the budget counts each once, exactly
    assert _in_use(issued.key.key_id) == Decimal("0.014")
    assert [a.headers["x-costgate-budget-remaining-usd"] for a in answers] == ["0.993", "0.986"]
    # and Claude saw costgate's key from Secrets Manager, never the gateway key
    assert [seen["x-api-key"] for seen in upstream.seen] == [CLAUDE_KEY, CLAUDE_KEY]
    assert all(issued.api_key not in json.dumps(seen) for seen in upstream.seen)
    assert all(seen["anthropic-version"] == "2026-10-21" for seen in upstream.seen)
