"""Which extra bytes in a Messages stream the official SDK ignores: decided by running it, not by reading it.

costgate must hand the exact cost of a stream to its client in the stream itself, known only at the end.
A stub server sends a real Messages stream (the simulator's encoder) with one extra block in it; the
anthropic SDK (2.14, sync and async) reads it through `messages.create(stream=True)` and
`messages.stream`. An SSE comment is ignored by every path, wherever it sits; so is a `ping` event with
extra fields. An event under a name of our own is not: `create(stream=True)` hands it to the caller.
"""

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from costgate_local.simulator.engine import stream_events

RECEIPT = {"request_id": "req_costgate_1", "cost_usd": "0.0001875", "price_version": "2026-11-29+abc:haiku@x"}
MESSAGE: dict[str, Any] = {
    "id": "msg_01stub",
    "type": "message",
    "role": "assistant",
    "model": "claude-haiku-5-5",
    "content": [{"type": "text", "text": "[simulated] A short answer, streamed in a few deltas."}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 12,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        "output_tokens": 14,
        "service_tier": "standard",
        "inference_geo": "global",
        "speed": "standard",
    },
}
COMMENT = f": costgate-receipt {json.dumps(RECEIPT)}\n\n".encode()


def _events() -> list[bytes]:
    return list(stream_events(MESSAGE))


def _stream(variant: str) -> bytes:
    events = _events()
    if variant == "plain":
        return b"".join(events)
    if variant == "comment_after_stop":
        return b"".join(events) + COMMENT
    if variant == "comment_before_start":
        return COMMENT + b"".join(events)
    if variant == "comment_between_deltas":
        return b"".join(events[:4]) + COMMENT + b"".join(events[4:])
    if variant == "ping_with_receipt":
        ping = f"event: ping\ndata: {json.dumps({'type': 'ping', 'costgate': RECEIPT})}\n\n".encode()
        return b"".join(events) + ping
    if variant == "own_event_name":
        own = f"event: costgate_receipt\ndata: {json.dumps({'type': 'costgate_receipt', **RECEIPT})}\n\n".encode()
        return b"".join(events) + own
    raise ValueError(variant)


IGNORED = ["comment_after_stop", "comment_before_start", "comment_between_deltas", "ping_with_receipt"]


@pytest.fixture
def stub() -> Iterator[dict[str, str]]:
    """A Messages endpoint on 127.0.0.1 that streams `state["variant"]`."""
    state = {"variant": "plain"}

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        Request(environ).get_data()
        body = _stream(state["variant"])
        return Response(body, mimetype="text/event-stream", headers={"request-id": "req_stub"})(environ, start_response)

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state["base_url"] = f"http://127.0.0.1:{server.server_port}"
    yield state
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


PARAMS: dict[str, Any] = {"model": "claude-haiku-5-5", "max_tokens": 64, "messages": [{"role": "user", "content": "?"}]}


def _read_sync(base_url: str) -> tuple[list[dict[str, Any]], list[str], dict[str, Any], list[str]]:
    with anthropic.Anthropic(base_url=base_url, api_key="k", max_retries=0) as client:
        raw = [event.model_dump() for event in client.messages.create(stream=True, **PARAMS)]
        with client.messages.stream(**PARAMS) as stream:
            kinds: list[str] = [event.type for event in stream]
            final = stream.get_final_message().model_dump()
        with client.messages.stream(**PARAMS) as stream:
            text = list(stream.text_stream)
    return raw, kinds, final, text


def _read_async(base_url: str) -> tuple[list[dict[str, Any]], list[str], dict[str, Any], list[str]]:
    async def read() -> tuple[list[dict[str, Any]], list[str], dict[str, Any], list[str]]:
        async with anthropic.AsyncAnthropic(base_url=base_url, api_key="k", max_retries=0) as client:
            raw = [event.model_dump() async for event in await client.messages.create(stream=True, **PARAMS)]
            async with client.messages.stream(**PARAMS) as stream:
                kinds: list[str] = [event.type async for event in stream]
                final = (await stream.get_final_message()).model_dump()
            async with client.messages.stream(**PARAMS) as stream:
                text = [chunk async for chunk in stream.text_stream]
        return raw, kinds, final, text

    return asyncio.run(read())


@pytest.mark.parametrize("read", [_read_sync, _read_async], ids=["sync", "async"])
@pytest.mark.parametrize("variant", IGNORED)
def test_the_sdk_ignores_comments_and_ping_fields(stub: dict[str, str], variant: str, read: Any) -> None:
    # Given what the SDK makes of the plain stream
    baseline = read(stub["base_url"])
    assert baseline[2]["usage"]["output_tokens"] == 14
    # When the same stream carries the receipt in the variant's form
    stub["variant"] = variant
    # Then every path yields exactly the same events, final message and text
    assert read(stub["base_url"]) == baseline


def test_an_event_name_of_our_own_reaches_the_caller(stub: dict[str, str]) -> None:
    plain_raw, _, plain_final, _ = _read_sync(stub["base_url"])
    stub["variant"] = "own_event_name"
    raw, _, final, _ = _read_sync(stub["base_url"])
    # create(stream=True) yields one more event, of a type no Claude client expects
    assert len(raw) == len(plain_raw) + 1
    assert raw[-1]["type"] == "costgate_receipt"
    assert final == plain_final
