"""The official SDK, unmodified, pointed at `costgate serve`: messages, streams, tools, count_tokens,
errors, budgets, and receipts that agree with `costgate price` and with the ledger to the last digit.

Every Messages request this module makes that reaches Claude leaves its receipt in `receipts`; the
last tests price each one with `costgate price` and compare their sum with `costgate report`.
"""

import json
import re
import signal
import subprocess
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import httpx2 as httpx
import pytest

from tests.e2e.test_cli import COSTGATE, costgate
from tests.e2e.test_serve import READY_TIMEOUT_S, Served, _read_line

MODEL = "claude-haiku-5-5"
RECEIPT_HEADERS = (
    "x-costgate-cost-usd",
    "x-costgate-baseline-cost-usd",
    "x-costgate-model",
    "x-costgate-route-reason",
    "x-costgate-cache",
    "x-costgate-price-version",
)
CACHE_VALUES = {"miss", "exact-hit", "semantic-hit", "bypass"}
# Identical bodies sent on purpose (prompt caching, stream vs. not) must both reach Claude.
NO_ANSWER_CACHE = {"x-costgate-cache": "off"}
TIMEOUT_S = 30.0


ROLLUP_WAIT_S = 60


@contextmanager
def serving(*flags: str, log: Path) -> Iterator[Served]:
    """`costgate serve --port 0 [flags]` as a user runs it; its stderr goes to `log`; SIGTERM at the end."""
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [str(COSTGATE), "serve", "--port", "0", *flags], stdout=subprocess.PIPE, stderr=stderr, text=True
        )
        try:
            yield Served(process, json.loads(_read_line(process.stdout, READY_TIMEOUT_S)), log)
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=30)


def report(served: Served, *args: str) -> dict[str, Any]:
    """`costgate report --json` over yesterday..tomorrow (UTC), so a run across midnight still sees everything,
    once the rollups count every ended ledger row (they come from the table's stream: about a second behind)."""
    today = datetime.now(UTC).date()
    first, last = (today - timedelta(days=1)).isoformat(), (today + timedelta(days=1)).isoformat()
    wait = ("--wait-for-rollups", str(ROLLUP_WAIT_S))
    result = costgate("report", "--json", "--from", first, "--to", last, *wait, *args, env=served.env())
    assert result.returncode == 0, result.stderr
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def create_key(served: Served, *args: str) -> dict[str, Any]:
    result = costgate("keys", "create", *args, env=served.env())
    assert result.returncode == 0, result.stderr
    created: dict[str, Any] = json.loads(result.stdout)
    return created


@dataclass(frozen=True)
class Receipt:
    """What a response says it cost, and the usage it was priced from."""

    model: str  # the model Claude answered with (message.model)
    usage: dict[str, Any]  # the response's usage object, as JSON
    headers: Mapping[str, str]

    @property
    def cost_usd(self) -> Decimal:
        return Decimal(self.headers["x-costgate-cost-usd"])

    @property
    def baseline_usd(self) -> Decimal:
        return Decimal(self.headers["x-costgate-baseline-cost-usd"])


def ledger_receipt(served: Served, request_id: str, api_key: str | None = None, wait_s: float = 30.0) -> dict[str, Any]:
    """GET /v1/requests/{request_id} with the key (the stack's own by default), waiting for the row: a stream is
    recorded just after its last byte."""
    key = api_key or served.ready["api_key"]
    url = f"{served.ready['base_url']}/v1/requests/{request_id}"
    deadline = time.monotonic() + wait_s
    while True:  # bounded by wait_s
        response = httpx.get(url, headers={"x-api-key": key}, timeout=TIMEOUT_S)
        if response.status_code != 404 or time.monotonic() > deadline:
            assert response.status_code == 200, response.text
            found: dict[str, Any] = response.json()
            return found
        time.sleep(0.2)


class Receipts(list[Receipt]):
    def __init__(self, served: Served) -> None:
        super().__init__()
        self._served = served

    def keep(self, headers: Mapping[str, str], model: str, usage: dict[str, Any]) -> Receipt:
        receipt = Receipt(model=model, usage=usage, headers={k.lower(): v for k, v in headers.items()})
        self.append(receipt)
        return receipt

    def keep_stream(self, headers: Mapping[str, str], model: str, usage: dict[str, Any]) -> Receipt:
        """A stream's receipt: its cost is known at its end, in the stream and in the ledger, not in its headers."""
        lowered = {k.lower(): v for k, v in headers.items()}
        assert "x-costgate-cost-usd" not in lowered
        row = ledger_receipt(self._served, lowered["x-costgate-request-id"])
        lowered |= {"x-costgate-cost-usd": row["cost_usd"], "x-costgate-baseline-cost-usd": row["baseline_cost_usd"]}
        return self.keep(lowered, model, usage)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serving(log=tmp_path_factory.mktemp("gateway-sdk") / "serve.log") as stack:
        yield stack


@pytest.fixture(scope="module")
def receipts(served: Served) -> Receipts:
    """Every receipt of every Messages request of this module that reached Claude, whatever its key."""
    return Receipts(served)


@pytest.fixture(scope="module")
def client(served: Served) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=served.ready["base_url"], api_key=served.ready["api_key"])


def _ask(text: str) -> list[anthropic.types.MessageParam]:
    return [{"role": "user", "content": text}]


def _text(message: anthropic.types.Message) -> str:
    block = message.content[0]
    assert block.type == "text", block
    return block.text


def _usage(message: anthropic.types.Message) -> dict[str, Any]:
    return message.usage.model_dump(mode="json", exclude_none=True)


# --- messages ------------------------------------------------------------------------------------------


def test_plain_message(client: anthropic.Anthropic, receipts: Receipts) -> None:
    # When the SDK sends a plain message through the gateway
    raw = client.messages.with_raw_response.create(
        model=MODEL, max_tokens=64, messages=_ask("What does a cost gateway do?")
    )
    message = raw.parse()
    receipt = receipts.keep(raw.headers, message.model, _usage(message))
    # Then it gets Claude's answer, typed as the SDK expects, with a receipt
    assert raw.status_code == 200
    assert message.type == "message"
    assert message.role == "assistant"
    assert message.model == MODEL
    assert _text(message)
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert message.usage.input_tokens > 0
    assert 0 < message.usage.output_tokens <= 64
    assert receipt.cost_usd > 0


def test_receipt_headers_are_all_there(client: anthropic.Anthropic, receipts: Receipts) -> None:
    # When a message is answered
    raw = client.messages.with_raw_response.create(model=MODEL, max_tokens=32, messages=_ask("Name a colour."))
    message = raw.parse()
    receipt = receipts.keep(raw.headers, message.model, _usage(message))
    # Then every receipt header is present and says something plausible
    assert {name: name in receipt.headers for name in RECEIPT_HEADERS} == dict.fromkeys(RECEIPT_HEADERS, True)
    assert receipt.cost_usd > 0
    assert receipt.baseline_usd >= receipt.cost_usd
    assert receipt.headers["x-costgate-model"] == MODEL
    assert receipt.headers["x-costgate-route-reason"].strip()
    assert receipt.headers["x-costgate-cache"] in CACHE_VALUES
    assert MODEL in receipt.headers["x-costgate-price-version"]
    # and Claude's own headers came through untouched
    assert raw.headers["request-id"]
    assert raw.headers["content-type"].startswith("application/json")


def test_stream_helper_gives_the_final_message(client: anthropic.Anthropic, receipts: Receipts) -> None:
    # When the SDK's stream helper reads an answer
    with client.messages.stream(model=MODEL, max_tokens=80, messages=_ask("Tell me about streams.")) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
        headers = stream.response.headers
    receipt = receipts.keep_stream(headers, final.model, _usage(final))
    # Then it is a valid SSE stream with a whole final message, its cost priced from the final usage
    assert headers["content-type"].startswith("text/event-stream")
    assert "".join(texts) == _text(final)
    assert final.stop_reason in ("end_turn", "max_tokens")
    assert final.usage.input_tokens > 0
    assert final.usage.output_tokens > 0
    assert receipt.cost_usd > 0


def test_create_stream_true_is_the_same_answer_as_without(client: anthropic.Anthropic, receipts: Receipts) -> None:
    # Given a request body answered once without streaming
    kwargs: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 60,
        "messages": _ask("Explain SSE in one paragraph."),
        "extra_headers": NO_ANSWER_CACHE,
    }
    raw = client.messages.with_raw_response.create(**kwargs)
    plain = raw.parse()
    plain_receipt = receipts.keep(raw.headers, plain.model, _usage(plain))
    # When the same body is sent with stream=True and its events are iterated
    stream = client.messages.create(**kwargs, stream=True)
    events = list(stream)
    types = [event.type for event in events]
    start = next(e for e in events if e.type == "message_start")
    delta = next(e for e in events if e.type == "message_delta")
    usage = start.message.usage.model_dump(mode="json", exclude_none=True)
    usage.update(delta.usage.model_dump(mode="json", exclude_none=True))  # message_delta's usage is cumulative
    streamed_receipt = receipts.keep_stream(stream.response.headers, start.message.model, usage)
    text = "".join(e.delta.text for e in events if e.type == "content_block_delta" and e.delta.type == "text_delta")
    # Then the events are in the API's order and carry the same answer, usage and cost
    assert types[0] == "message_start"
    assert types[-1] == "message_stop"
    assert types.count("message_delta") == 1
    assert text == _text(plain)
    assert delta.delta.stop_reason == plain.stop_reason
    assert usage["output_tokens"] == plain.usage.output_tokens
    assert streamed_receipt.cost_usd == plain_receipt.cost_usd


def test_forced_tool_gives_a_tool_use_block(client: anthropic.Anthropic, receipts: Receipts) -> None:
    # Given a tool and tool_choice forcing it
    tool: anthropic.types.ToolParam = {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
    # When the SDK sends them
    raw = client.messages.with_raw_response.create(
        model=MODEL,
        max_tokens=200,
        tools=[tool],
        tool_choice={"type": "tool", "name": "get_weather"},
        messages=_ask("Is it raining in Lisbon?"),
    )
    message = raw.parse()
    receipt = receipts.keep(raw.headers, message.model, _usage(message))
    # Then the answer is a tool_use block for that tool, with the schema's required input
    uses = [block for block in message.content if block.type == "tool_use"]
    assert message.stop_reason == "tool_use"
    assert [use.name for use in uses] == ["get_weather"]
    assert isinstance(uses[0].input, dict)
    assert "city" in uses[0].input
    assert uses[0].id.startswith("toolu_")
    assert receipt.cost_usd > 0


def test_count_tokens_passes_through_with_an_estimated_cost(client: anthropic.Anthropic) -> None:
    # When the SDK counts a prompt's tokens
    raw = client.messages.with_raw_response.count_tokens(model=MODEL, messages=_ask("How many tokens is this?"))
    counted = raw.parse()
    # Then it gets the count, and costgate adds what that input costs, exactly as `costgate price` says
    assert counted.input_tokens > 0
    line = json.dumps({"model": MODEL, "usage": {"input_tokens": counted.input_tokens, "output_tokens": 0}})
    priced = costgate("price", stdin=line + "\n")
    assert priced.returncode == 0, priced.stderr
    assert raw.headers["x-costgate-estimated-input-cost-usd"] == json.loads(priced.stdout)["cost_usd"]
    assert raw.headers["x-costgate-price-version"] == json.loads(priced.stdout)["price_version"]


def test_repeated_cached_system_prompt_is_read_from_cache_and_cheaper(
    client: anthropic.Anthropic, receipts: Receipts
) -> None:
    # Given a long system prompt (~5,000 tokens) marked for prompt caching
    system: list[anthropic.types.TextBlockParam] = [
        {
            "type": "text",
            "text": "You answer questions about the costgate handbook. " + "Budgets hold the worst case. " * 550,
            "cache_control": {"type": "ephemeral"},
        }
    ]
    kwargs: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 32,
        "system": system,
        "messages": _ask("Summarise the handbook."),
        "extra_headers": NO_ANSWER_CACHE,
    }
    # When it is sent twice
    first_raw = client.messages.with_raw_response.create(**kwargs)
    first = first_raw.parse()
    first_receipt = receipts.keep(first_raw.headers, first.model, _usage(first))
    second_raw = client.messages.with_raw_response.create(**kwargs)
    second = second_raw.parse()
    second_receipt = receipts.keep(second_raw.headers, second.model, _usage(second))
    # Then the first writes the cache, the second reads all of it, and the second costs less
    written = first.usage.cache_creation_input_tokens or 0
    assert written >= 5_000
    assert (first.usage.cache_read_input_tokens or 0) == 0
    assert (second.usage.cache_creation_input_tokens or 0) == 0
    assert second.usage.cache_read_input_tokens == written
    assert second_receipt.cost_usd < first_receipt.cost_usd
    # and the receipt shows what prompt caching saved on the read
    assert second_receipt.baseline_usd > second_receipt.cost_usd


# --- errors --------------------------------------------------------------------------------------------


def _error_of(error: anthropic.APIStatusError) -> dict[str, Any]:
    body = error.response.json()
    assert body["type"] == "error"
    assert set(body["error"]) >= {"type", "message"}
    shape: dict[str, Any] = body["error"]
    return shape


def test_bad_key_is_an_authentication_error(served: Served) -> None:
    # Given a client with a key costgate never issued
    stranger = anthropic.Anthropic(
        base_url=served.ready["base_url"], api_key="cg_000000000000_not-a-real-key", max_retries=0
    )
    # When it sends a message, Then the SDK raises AuthenticationError with Anthropic's shape
    with pytest.raises(anthropic.AuthenticationError) as raised:
        stranger.messages.create(model=MODEL, max_tokens=16, messages=_ask("Hello?"))
    assert raised.value.status_code == 401
    assert _error_of(raised.value)["type"] == "authentication_error"


def test_unknown_model_is_a_bad_request(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as raised:
        client.messages.create(model="claude-nonexistent-9", max_tokens=16, messages=_ask("Hello?"))
    assert raised.value.status_code == 400
    shape = _error_of(raised.value)
    assert shape["type"] == "invalid_request_error"
    assert "claude-nonexistent-9" in shape["message"]


def test_missing_max_tokens_is_a_bad_request(client: anthropic.Anthropic) -> None:
    # When the SDK is made to leave max_tokens out (omit; an explicit timeout skips its own max_tokens maths)
    with pytest.raises(anthropic.BadRequestError) as raised:
        client.messages.create(  # type: ignore[call-overload]  # max_tokens left out on purpose
            model=MODEL, max_tokens=anthropic.omit, messages=_ask("Hello?"), timeout=TIMEOUT_S
        )
    # Then the body really lacked it, and the gateway says so
    assert b"max_tokens" not in raised.value.request.content
    assert raised.value.status_code == 400
    shape = _error_of(raised.value)
    assert shape["type"] == "invalid_request_error"
    assert "max_tokens" in shape["message"]


def test_malformed_json_is_a_bad_request(served: Served) -> None:
    response = httpx.post(
        f"{served.ready['base_url']}/v1/messages",
        content=b'{"model": "claude-haiku-5-5", "max_tokens": 16, "messages": [',
        headers={"x-api-key": served.ready["api_key"], "content-type": "application/json"},
        timeout=TIMEOUT_S,
    )
    assert response.status_code == 400
    body = response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert "JSON" in body["error"]["message"]


@pytest.mark.slow
def test_key_budget_refuses_the_first_request_that_does_not_fit(served: Served, receipts: Receipts) -> None:
    # Given a key of its own tenant with a daily budget of $0.001 (a worst case here is ~$0.0003)
    limit = Decimal("0.001")
    created = create_key(served, "--tenant", "sdk-budget", "--daily-budget-usd", str(limit))
    budgeted = anthropic.Anthropic(base_url=served.ready["base_url"], api_key=created["api_key"], max_retries=0)
    spent = Decimal(0)
    refused: anthropic.RateLimitError | None = None
    # When it sends requests one after another until one is refused (bounded)
    for number in range(40):
        try:
            raw = budgeted.messages.with_raw_response.create(
                model=MODEL, max_tokens=200, messages=_ask(f"Question number {number}: what is a budget?")
            )
        except anthropic.RateLimitError as error:
            refused = error
            break
        message = raw.parse()
        receipt = receipts.keep(raw.headers, message.model, _usage(message))
        spent += receipt.cost_usd
        # every accepted answer says what is left, exactly
        assert Decimal(raw.headers["x-costgate-budget-remaining-usd"]) == limit - spent
    # Then some were accepted, and the first that did not fit got 429 rate_limit_error naming the budget
    assert refused is not None, "40 requests fitted in a $0.001 budget"
    assert spent > 0
    assert refused.status_code == 429
    shape = _error_of(refused)
    assert shape["type"] == "rate_limit_error"
    message = shape["message"]
    assert f"key {created['key_id']}'s daily budget" in message
    assert "$0.001" in message
    remaining = re.search(r"\$(\d+(?:\.\d+)?) remaining", message)
    needed = re.search(r"may cost up to \$(\d+(?:\.\d+)?)", message)
    assert remaining is not None, message
    assert needed is not None, message
    assert Decimal(remaining.group(1)) == limit - spent
    assert Decimal(needed.group(1)) > limit - spent


# --- receipts against `costgate price` and the ledger (keep these last: they check the whole module) --


def test_every_receipt_is_what_costgate_price_says(client: anthropic.Anthropic, receipts: Receipts) -> None:
    # Given one more request, so this holds even when run alone, and every receipt so far
    raw = client.messages.with_raw_response.create(model=MODEL, max_tokens=24, messages=_ask("One more, please."))
    message = raw.parse()
    receipts.keep(raw.headers, message.model, _usage(message))
    # When `costgate price` prices each response's usage
    lines = "".join(json.dumps({"model": r.model, "usage": r.usage}) + "\n" for r in receipts)
    result = costgate("price", stdin=lines)
    assert result.returncode == 0, result.stderr
    priced = [json.loads(line) for line in result.stdout.splitlines()]
    # Then each receipt's cost and price version are exactly its answer
    assert [p["cost_usd"] for p in priced] == [r.headers["x-costgate-cost-usd"] for r in receipts]
    assert [p["price_version"] for p in priced] == [r.headers["x-costgate-price-version"] for r in receipts]
    assert [p["model"] for p in priced] == [r.headers["x-costgate-model"] for r in receipts]


@pytest.mark.slow
def test_the_ledger_holds_every_request_once_at_its_receipt_cost(
    served: Served, client: anthropic.Anthropic, receipts: Receipts
) -> None:
    # Given one more request, so this holds even when run alone, and every receipt of this module
    raw = client.messages.with_raw_response.create(model=MODEL, max_tokens=24, messages=_ask("And the last one."))
    message = raw.parse()
    receipts.keep(raw.headers, message.model, _usage(message))
    by_model: dict[str, list[Receipt]] = defaultdict(list)
    for receipt in receipts:
        by_model[receipt.headers["x-costgate-model"]].append(receipt)
    # When the ledger is reported by model, across every tenant
    ledger = report(served, "--group-by", "model")
    # Then it holds each request that reached Claude exactly once, at exactly its receipt's cost
    total = ledger["total"]
    assert total["requests"] == len(receipts)
    assert Decimal(total["cost_usd"]) == sum((r.cost_usd for r in receipts), Decimal(0))
    assert Decimal(total["baseline_cost_usd"]) == sum((r.baseline_usd for r in receipts), Decimal(0))
    rows = {row["key"]: row for row in ledger["rows"]}
    assert set(rows) == set(by_model)
    for model, kept in by_model.items():
        assert rows[model]["requests"] == len(kept)
        assert Decimal(rows[model]["cost_usd"]) == sum((r.cost_usd for r in kept), Decimal(0))
