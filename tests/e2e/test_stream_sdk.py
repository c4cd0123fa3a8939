"""Real streaming through `costgate serve --stream-token-ms 40`, with the official SDK, in Korean and English.

The simulator answers 1,100 tokens (`--answer-tokens`), 40 ms each: a stream of about 44 s, longer than
the 29 s a buffered API Gateway integration allows. The long streams start together when the module
does (the machine is small; they mostly wait on the pace), and each test then looks at one of them.
The simulator notes when each event left it (GET /_simulator/streams/{request-id}), so "the client had
the first delta before Claude had sent the last one" is an ordering of two clocks on one machine.
"""

import json
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import anthropic
import httpx2 as httpx
import pytest

from tests.e2e.test_cli import costgate
from tests.e2e.test_gateway_sdk import TIMEOUT_S, ledger_receipt, report, serving
from tests.e2e.test_serve import Served

pytestmark = pytest.mark.slow

MODEL = "claude-haiku-5-5"
TOKEN_MS = 40
ANSWER_TOKENS = 1100  # 44 s at 40 ms a token
MAX_TOKENS = 1200  # room for the whole answer: it ends with end_turn, so the answer cache may keep it
STREAM_WAIT_S = 240.0  # per stream, far above its 44 s: the machine may be busy
HANGUP_FEATURE = "stream-hangup"
ASK = {
    "ko": "스트리밍이 무엇인지 자세히 설명해 주세요.",
    "en": "Explain in detail what streaming is.",
    "cache": "Tell me a long story about a lighthouse.",
}
RECEIPT = ": costgate-receipt "


@dataclass
class Streamed:
    """One SDK stream as the client lived it: when it asked, when each event came, what came."""

    asked_at: float
    headers: dict[str, str] = field(default_factory=dict)
    arrivals: list[tuple[str, float]] = field(default_factory=list)  # (event type, time.time())
    text: str = ""
    final: anthropic.types.Message | None = None

    @property
    def first_delta_at(self) -> float:
        return next(at for kind, at in self.arrivals if kind == "content_block_delta")

    @property
    def ended_at(self) -> float:
        return self.arrivals[-1][1]


def _stream(client: anthropic.Anthropic, question: str, **extra: Any) -> Streamed:
    seen = Streamed(asked_at=time.time())
    with client.messages.stream(
        model=MODEL, max_tokens=MAX_TOKENS, messages=[{"role": "user", "content": question}], **extra
    ) as stream:
        seen.headers = {k.lower(): v for k, v in stream.response.headers.items()}
        for event in stream:
            seen.arrivals.append((event.type, time.time()))
        seen.text = stream.get_final_text()
        seen.final = stream.get_final_message()
    return seen


def _hang_up_after_four_events(served: Served) -> str:
    """A raw client that reads four events, then closes the connection; the request id it was given."""
    body = {
        "model": MODEL,
        "max_tokens": MAX_TOKENS,
        "stream": True,
        "messages": [{"role": "user", "content": "Hang up on me, please."}],
    }
    headers = {
        "x-api-key": served.ready["api_key"],
        "anthropic-version": "2023-06-01",
        "x-costgate-feature": HANGUP_FEATURE,
        "x-costgate-cache": "off",
    }
    url = f"{served.ready['base_url']}/v1/messages"
    with httpx.stream("POST", url, json=body, headers=headers, timeout=TIMEOUT_S) as response:
        assert response.status_code == 200
        events = 0
        for line in response.iter_lines():
            events += line.startswith("event: ")
            if events == 4:
                break
        request_id: str = response.headers["x-costgate-request-id"]
    return request_id


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    flags = ("--stream-token-ms", str(TOKEN_MS), "--answer-tokens", str(ANSWER_TOKENS))
    with serving(*flags, log=tmp_path_factory.mktemp("stream-sdk") / "serve.log") as stack:
        yield stack


@pytest.fixture(scope="module")
def client(served: Served) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=served.ready["base_url"], api_key=served.ready["api_key"], timeout=STREAM_WAIT_S, max_retries=0
    )


@pytest.fixture(scope="module")
def long_streams(served: Served, client: anthropic.Anthropic) -> Iterator[dict[str, Future[Any]]]:
    """The module's long streams, started together; each test waits for the one it looks at."""
    with ThreadPoolExecutor(4) as pool:
        yield {
            "ko": pool.submit(_stream, client, ASK["ko"], extra_headers={"x-costgate-cache": "off"}),
            "en": pool.submit(_stream, client, ASK["en"], extra_headers={"x-costgate-cache": "off"}),
            "cache": pool.submit(_stream, client, ASK["cache"]),
            "hangup": pool.submit(_hang_up_after_four_events, served),
        }


def _simulator_log(served: Served, request_id: str) -> list[tuple[str, float]]:
    response = httpx.get(f"{served.ready['upstream_url']}/_simulator/streams/{request_id}", timeout=TIMEOUT_S)
    assert response.status_code == 200, response.text
    return [(event["event"], event["at"]) for event in response.json()["events"]]


def _usage(message: anthropic.types.Message) -> dict[str, Any]:
    return message.usage.model_dump(mode="json", exclude_none=True)


@pytest.mark.parametrize("language", ["ko", "en"])
def test_the_first_delta_arrives_while_claude_is_still_writing_and_the_long_stream_completes(
    served: Served, long_streams: dict[str, Future[Any]], language: str
) -> None:
    # Given a 1,100-token answer paced at 40 ms a token, read with messages.stream
    seen: Streamed = long_streams[language].result(STREAM_WAIT_S)
    sent = _simulator_log(served, seen.headers["request-id"])
    last_delta_sent = max(at for name, at in sent if name == "content_block_delta")

    # Then the client had its first text delta before the simulator had sent its last one
    assert seen.first_delta_at < last_delta_sent
    # and within the first 30% of the stream as the client lived it
    duration = seen.ended_at - seen.asked_at
    assert seen.first_delta_at - seen.asked_at <= 0.30 * duration
    # and the stream lasted over 40 s and still ended whole (no gateway timeout cut it)
    assert duration > 40
    assert seen.arrivals[-1][0] == "message_stop"
    assert seen.final is not None
    assert seen.final.stop_reason == "end_turn"
    assert seen.final.usage.output_tokens == ANSWER_TOKENS
    assert seen.text.startswith("[simulated]")
    if language == "ko":
        assert any("\uac00" <= ch <= "\ud7a3" for ch in seen.text)


@pytest.mark.parametrize("language", ["ko", "en"])
def test_the_ledger_cost_of_a_stream_is_what_costgate_price_says_of_its_final_usage(
    served: Served, long_streams: dict[str, Future[Any]], language: str
) -> None:
    seen: Streamed = long_streams[language].result(STREAM_WAIT_S)
    assert seen.final is not None
    # Given the ledger's row of the stream, by the request id its headers gave
    row = ledger_receipt(served, seen.headers["x-costgate-request-id"])
    # When `costgate price` prices the usage the SDK assembled from the stream
    priced = costgate("price", stdin=json.dumps({"model": seen.final.model, "usage": _usage(seen.final)}) + "\n")
    assert priced.returncode == 0, priced.stderr
    quoted = json.loads(priced.stdout)
    # Then the ledger holds exactly that cost and those tokens
    assert (row["cost_usd"], row["price_version"]) == (quoted["cost_usd"], quoted["price_version"])
    assert row["tokens"]["output"] == seen.final.usage.output_tokens == ANSWER_TOKENS
    assert row["tokens"]["input"] == seen.final.usage.input_tokens


def test_a_client_that_hangs_up_after_four_events_is_billed_once_for_the_whole_answer(
    served: Served, long_streams: dict[str, Future[Any]]
) -> None:
    # Given a client that read four events of a 44 s stream and went away
    request_id: str = long_streams["hangup"].result(STREAM_WAIT_S)

    # When the gateway has read Claude to the end (the row appears once the stream is over)
    row = ledger_receipt(served, request_id, wait_s=STREAM_WAIT_S)

    # Then the whole answer is billed, once
    assert row["tokens"]["output"] == ANSWER_TOKENS
    assert row["feature"] == HANGUP_FEATURE
    feature = next(r for r in report(served, "--group-by", "feature")["rows"] if r["key"] == HANGUP_FEATURE)
    assert feature["requests"] == 1
    assert Decimal(feature["cost_usd"]) == Decimal(row["cost_usd"])
    # and the gateway saw the client go (a write to it failed) and counted it
    assert served.log is not None
    assert '"ClientDisconnects"' in served.log.read_text(encoding="utf-8")


def test_an_answer_cache_hit_replays_as_a_stream_with_its_receipt(
    served: Served, client: anthropic.Anthropic, long_streams: dict[str, Future[Any]]
) -> None:
    # Given a long stream that ended with end_turn (so the answer cache kept it)
    first: Streamed = long_streams["cache"].result(STREAM_WAIT_S)
    assert first.final is not None
    assert first.headers["x-costgate-cache"] == "miss"
    first_row = ledger_receipt(served, first.headers["x-costgate-request-id"])

    # When the same question is streamed again, read raw so the receipt comment can be seen too
    body = {
        "model": MODEL,
        "max_tokens": MAX_TOKENS,
        "stream": True,
        "messages": [{"role": "user", "content": ASK["cache"]}],
    }
    headers = {"x-api-key": served.ready["api_key"], "anthropic-version": "2023-06-01"}
    started = time.monotonic()
    raw = httpx.post(f"{served.ready['base_url']}/v1/messages", json=body, headers=headers, timeout=TIMEOUT_S)
    replay_s = time.monotonic() - started
    # and once more through the SDK's stream helper
    second = _stream(client, ASK["cache"])

    # Then it is a hit, replayed as a valid SSE stream with the same text, at once (not at 40 ms a token)
    assert raw.status_code == 200
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert raw.headers["x-costgate-cache"] == "exact-hit"
    assert replay_s < ANSWER_TOKENS * TOKEN_MS / 1000 / 2
    assert second.headers["x-costgate-cache"] == "exact-hit"
    assert second.text == first.text
    assert second.arrivals[-1][0] == "message_stop"
    # and its receipt (after message_stop, and from the ledger) records nothing spent and the first stream's
    # cost saved
    comments = [line for line in raw.text.split("\n") if line.startswith(RECEIPT)]
    assert len(comments) == 1
    receipt = json.loads(comments[0].removeprefix(RECEIPT))
    assert raw.text.index('"type":"message_stop"') < raw.text.index(RECEIPT)
    assert receipt["cost_usd"] == "0"
    assert receipt["savings_usd"] == {"answer_cache": first_row["cost_usd"]}
    assert receipt["request_id"] == raw.headers["x-costgate-request-id"]
    row = ledger_receipt(served, raw.headers["x-costgate-request-id"])
    assert row == {name: value for name, value in receipt.items() if name != "complete"}


# --- an error in the middle of a stream ---------------------------------------------------------------------


@pytest.fixture(scope="module", params=[6, 0], ids=["after-6-events", "first-event"])
def faulty(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, int]]:
    """A stack whose every stream breaks off with an overloaded_error event: after 6 events (start, block
    start, ping, three text deltas: the usage so far is message_start's), or as its first event."""
    after = str(request.param)
    flags = ("--fault-stream-error", "1", "--fault-stream-error-after", after, "--stream-token-ms", "5")
    with serving(*flags, log=tmp_path_factory.mktemp(f"stream-fault-{after}") / "serve.log") as stack:
        yield stack, request.param


def _budget_remaining(served: Served, feature: str) -> Decimal:
    result = costgate("budgets", "list", "--json", env=served.env())
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    (row,) = [r for r in rows if r["feature"] == feature]
    return Decimal(row["remaining_usd"])


def _wait_for_remaining(served: Served, feature: str, expected: Decimal) -> Decimal:
    """The feature budget's remaining amount once it is `expected` (the books settle just after the stream
    ends), or whatever it is after 30 s."""
    deadline = time.monotonic() + 30
    while True:  # bounded by the deadline
        remaining = _budget_remaining(served, feature)
        if remaining == expected or time.monotonic() > deadline:
            return remaining
        time.sleep(0.3)


def _read_to_the_end(client: anthropic.Anthropic, feature: str, request_ids: list[str]) -> None:
    with client.messages.stream(
        model=MODEL,
        max_tokens=300,
        messages=[{"role": "user", "content": "Tell me about lighthouses."}],
        extra_headers={"x-costgate-feature": feature},
    ) as stream:
        request_ids.append(stream.response.headers["x-costgate-request-id"])
        for _ in stream:
            pass


def test_an_error_mid_stream_arrives_as_an_sse_error_and_the_hold_is_settled_or_released(
    faulty: tuple[Served, int],
) -> None:
    # Given a feature with a 1 USD daily budget, on a stack whose streams break off after `after` events
    stack, after = faulty
    feature = "stream-fault"
    limit = ("--period", "day", "--limit-usd", "1")
    made = costgate("budgets", "set", "--tenant", "local-dev", "--feature", feature, *limit, env=stack.env())
    assert made.returncode == 0, made.stderr
    client = anthropic.Anthropic(base_url=stack.ready["base_url"], api_key=stack.ready["api_key"], max_retries=0)

    # When a stream breaks off with Claude's overloaded_error
    request_ids: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as raised:
        _read_to_the_end(client, feature, request_ids)
    (request_id,) = request_ids

    # Then the SDK raised it as the error event Claude sends
    assert "overloaded_error" in json.dumps(raised.value.body)
    if after:
        # and, usage having been reported, the hold was settled to what it costs (not kept at the worst case)
        row = ledger_receipt(stack, request_id)
        assert row["tokens"]["output"] == 1  # message_start's count: no message_delta came
        expected = Decimal(1) - Decimal(row["cost_usd"])
        assert _wait_for_remaining(stack, feature, expected) == expected
    else:
        # or, nothing having been reported, nothing is billed: the hold went back whole and no row exists
        assert _wait_for_remaining(stack, feature, Decimal(1)) == Decimal(1)
        missing = httpx.get(
            f"{stack.ready['base_url']}/v1/requests/{request_id}",
            headers={"x-api-key": stack.ready["api_key"]},
            timeout=TIMEOUT_S,
        )
        assert missing.status_code == 404
