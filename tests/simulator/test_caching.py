"""Prompt caching through the official SDK: each test quotes the documented rule it checks."""

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import anthropic
import pytest
from anthropic.types import CacheControlEphemeralParam, MessageParam, TextBlockParam, ToolParam

from costgate_local.simulator import ManualClock, Simulator
from costgate_local.simulator.prompt import TAIL_TOKENS
from tests.simulator.conftest import error_body, prompt_total, prose, sdk

MODEL = "claude-opus-5-5"  # minimum cacheable prompt 512
EPHEMERAL_5M: CacheControlEphemeralParam = {"type": "ephemeral"}
EPHEMERAL_1H: CacheControlEphemeralParam = {"type": "ephemeral", "ttl": "1h"}
TOOL: ToolParam = {
    "name": "lookup_invoice",
    "description": "Look up an invoice by its number.",
    "input_schema": {"type": "object", "properties": {"number": {"type": "string"}}, "required": ["number"]},
}


def system_5k(cache_control: CacheControlEphemeralParam = EPHEMERAL_5M) -> list[TextBlockParam]:
    return [{"type": "text", "text": prose(280), "cache_control": cache_control}]


def ask(client: anthropic.Anthropic, **overrides: Any) -> Any:
    params: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 200,
        "messages": [{"role": "user", "content": "Summarise our spend."}],
        **overrides,
    }
    message = client.messages.create(**params)
    counted = client.messages.count_tokens(**{k: v for k, v in params.items() if k != "max_tokens"})
    # input + creation + read == count_tokens for the same body, on every call.
    assert prompt_total(message.usage) == counted.input_tokens
    return message.usage


def test_a_repeated_5000_token_system_prompt_is_written_then_read_then_written_again_after_it_expires(
    client: anthropic.Anthropic, clock: ManualClock
) -> None:
    """A 5-minute entry is written on the first call, read on the next, and gone 6 minutes later."""
    # Given a system prompt of more than 5,000 tokens marked with cache_control (ttl defaults to 5m)
    system = system_5k()
    assert client.messages.count_tokens(model=MODEL, system=system, messages=[{"role": "user", "content": "x"}])
    # When it is sent three times, the last after 6 simulated minutes
    first = ask(client, system=system)
    second = ask(client, system=system)
    clock.advance(timedelta(minutes=6))
    third = ask(client, system=system)
    # Then the first writes it (as a 5-minute write), the second reads it, the third writes it again
    assert first.cache_creation_input_tokens > 5_000
    assert first.cache_creation.ephemeral_5m_input_tokens == first.cache_creation_input_tokens
    assert first.cache_creation.ephemeral_1h_input_tokens == 0
    assert first.cache_read_input_tokens == 0
    assert second.cache_read_input_tokens == first.cache_creation_input_tokens
    assert second.cache_creation_input_tokens == 0
    assert second.input_tokens == first.input_tokens
    assert third.cache_creation_input_tokens == first.cache_creation_input_tokens
    assert third.cache_read_input_tokens == 0


def test_a_1h_entry_survives_30_minutes(client: anthropic.Anthropic, clock: ManualClock) -> None:
    """`ttl: "1h"` keeps the entry for an hour, and its write is reported as a 1-hour write."""
    # Given a 1-hour breakpoint written now
    first = ask(client, system=system_5k(EPHEMERAL_1H))
    # When the same prompt comes 30 minutes later
    clock.advance(timedelta(minutes=30))
    later = ask(client, system=system_5k(EPHEMERAL_1H))
    # Then it is read from the cache
    assert first.cache_creation.ephemeral_1h_input_tokens == first.cache_creation_input_tokens > 5_000
    assert first.cache_creation.ephemeral_5m_input_tokens == 0
    assert later.cache_read_input_tokens == first.cache_creation_input_tokens


def test_a_hit_refreshes_the_ttl_for_free(client: anthropic.Anthropic, clock: ManualClock) -> None:
    """ "A hit refreshes the TTL for free": an entry read every 4 minutes outlives its 5 minutes."""
    # Given a 5-minute entry written at t0 and read at t0+4m
    written = ask(client, system=system_5k())
    clock.advance(timedelta(minutes=4))
    ask(client, system=system_5k())
    # When it is asked for at t0+8m (3 minutes after it would have expired unrefreshed)
    clock.advance(timedelta(minutes=4))
    refreshed = ask(client, system=system_5k())
    # Then it is still a hit, billed as a read only (no write), and expires 5 minutes after that last hit
    assert refreshed.cache_read_input_tokens == written.cache_creation_input_tokens
    assert refreshed.cache_creation_input_tokens == 0
    clock.advance(timedelta(minutes=5, seconds=1))
    expired = ask(client, system=system_5k())
    assert expired.cache_read_input_tokens == 0
    assert expired.cache_creation_input_tokens == written.cache_creation_input_tokens


def test_automatic_caching_puts_the_breakpoint_on_the_last_cacheable_block_and_moves_it_forward(
    client: anthropic.Anthropic,
) -> None:
    """ "Automatic caching: a top-level cache_control on the request puts the breakpoint on the last
    cacheable block and uses one of the 4 slots"."""
    # Given a conversation with a top-level cache_control and no block-level ones
    turn_1 = [{"role": "user", "content": prose(60)}]
    first = ask(client, messages=turn_1, cache_control=EPHEMERAL_5M)
    # When the conversation grows by a turn
    turn_2 = [*turn_1, {"role": "assistant", "content": "Noted."}, {"role": "user", "content": "And today?"}]
    second = ask(client, messages=turn_2, cache_control=EPHEMERAL_5M)
    # Then the first call cached everything but the tail, and the second read that and cached the new turn
    assert first.cache_creation_input_tokens == prompt_total(first) - TAIL_TOKENS
    assert first.input_tokens == TAIL_TOKENS
    assert second.cache_read_input_tokens == first.cache_creation_input_tokens
    assert second.cache_creation_input_tokens > 0
    assert second.input_tokens == TAIL_TOKENS


def test_automatic_caching_uses_one_of_the_4_slots(client: anthropic.Anthropic) -> None:
    """The top-level breakpoint counts: 3 block breakpoints + automatic is fine, 4 + automatic is not."""
    # Given four cacheable blocks in one user message
    blocks: list[TextBlockParam] = [{"type": "text", "text": f"Part {i}. " + prose(10)} for i in range(4)]
    three: list[TextBlockParam] = [{**b, "cache_control": EPHEMERAL_5M} if i < 3 else b for i, b in enumerate(blocks)]
    four: list[TextBlockParam] = [{**b, "cache_control": EPHEMERAL_5M} for b in blocks[:3]]
    four += [
        {"type": "text", "text": "Part 3 again.", "cache_control": EPHEMERAL_5M},
        {"type": "text", "text": "The question."},
    ]
    # When each is sent with a top-level cache_control
    ok = ask(client, messages=[{"role": "user", "content": three}], cache_control=EPHEMERAL_5M)
    # Then 3 + automatic is accepted and 4 + automatic is a 400
    assert ok.output_tokens > 0
    with pytest.raises(anthropic.BadRequestError, match="maximum of 4 blocks with cache_control"):
        client.messages.create(
            model=MODEL, max_tokens=50, messages=[{"role": "user", "content": four}], cache_control=EPHEMERAL_5M
        )


def test_more_than_4_breakpoints_is_a_400(client: anthropic.Anthropic) -> None:
    """ "At most 4 breakpoints per request"."""
    # Given five blocks that each carry cache_control
    content: list[TextBlockParam] = [
        {"type": "text", "text": f"Block {i}.", "cache_control": EPHEMERAL_5M} for i in range(5)
    ]
    # When it is sent
    with pytest.raises(anthropic.BadRequestError) as raised:
        client.messages.create(model=MODEL, max_tokens=50, messages=[{"role": "user", "content": content}])
    # Then it is rejected as an invalid request naming the limit
    assert raised.value.status_code == 400
    assert error_body(raised.value)["error"]["type"] == "invalid_request_error"
    assert "A maximum of 4 blocks with cache_control may be provided. Found 5." in str(raised.value)


def test_a_longer_ttl_after_a_shorter_one_is_a_400(client: anthropic.Anthropic) -> None:
    """ "Longer TTLs must come before shorter ones" (in the order tools → system → messages)."""
    # Given a 5-minute breakpoint on the system prompt and a 1-hour one on a later message block
    message: list[MessageParam] = [
        {"role": "user", "content": [{"type": "text", "text": "Hello.", "cache_control": EPHEMERAL_1H}]}
    ]
    # When it is sent
    with pytest.raises(anthropic.BadRequestError, match="ttl='1h' cache_control block must not come after"):
        client.messages.create(model=MODEL, max_tokens=50, system=system_5k(EPHEMERAL_5M), messages=message)
    # Then the other order is accepted, and each segment is billed at the TTL of the breakpoint closing it
    message_5m: list[MessageParam] = [
        {"role": "user", "content": [{"type": "text", "text": prose(40), "cache_control": EPHEMERAL_5M}]}
    ]
    usage = ask(client, system=system_5k(EPHEMERAL_1H), messages=message_5m)
    assert usage.cache_creation.ephemeral_1h_input_tokens > 5_000
    assert usage.cache_creation.ephemeral_5m_input_tokens > 700
    assert usage.input_tokens == TAIL_TOKENS


def _words(client: anthropic.Anthropic, model: str, minimum: int) -> tuple[int, int]:
    """Word counts whose breakpoint prefix is the largest below `minimum` and the smallest at or above it."""

    def prefix(words: int) -> int:
        body: list[MessageParam] = [
            {"role": "user", "content": [{"type": "text", "text": "alpha " * words, "cache_control": EPHEMERAL_5M}]}
        ]
        return client.messages.count_tokens(model=model, messages=body).input_tokens - TAIL_TOKENS

    low, high = 1, 2 * minimum  # prefix(low) < minimum <= prefix(high); 12 halvings at most
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if prefix(middle) < minimum else (low, middle)
    assert prefix(low) < minimum <= prefix(high)
    return low, high


@pytest.mark.parametrize(
    ("model", "minimum"),
    [("claude-opus-5-5", 512), ("claude-opus-4-8", 1024), ("claude-opus-4-7", 2048), ("claude-haiku-4-5", 4096)],
)
def test_a_prefix_below_the_models_minimum_is_not_cached_and_not_an_error(
    client: anthropic.Anthropic, model: str, minimum: int
) -> None:
    """ "Below the minimum nothing is cached and no error is returned" (512 / 1,024 / 2,048 / 4,096 by model)."""
    # Given a breakpoint whose prefix is one step below the model's minimum, and one at or above it
    below, at = _words(client, model, minimum)

    def send(words: int) -> Any:
        content: list[TextBlockParam] = [{"type": "text", "text": "alpha " * words, "cache_control": EPHEMERAL_5M}]
        return client.messages.create(model=model, max_tokens=20, messages=[{"role": "user", "content": content}]).usage

    # When each is sent twice
    short = [send(below), send(below)]
    long = [send(at), send(at)]
    # Then the short one is plain input both times; the long one is written, then read
    assert all(u.cache_creation_input_tokens == 0 and u.cache_read_input_tokens == 0 for u in short)
    assert long[0].cache_creation_input_tokens >= minimum
    assert long[1].cache_read_input_tokens == long[0].cache_creation_input_tokens


def test_changing_tools_invalidates_everything(client: anthropic.Anthropic) -> None:
    """ "Changing tools invalidates everything": the system prompt after them is written again."""
    # Given tools and a cached system prompt
    first = ask(client, tools=[TOOL], system=system_5k())
    # When a tool's description changes
    changed = {**TOOL, "description": "Look up an invoice by number or by customer."}
    second = ask(client, tools=[changed], system=system_5k())
    # Then nothing is read and the whole prefix is written again
    assert first.cache_creation_input_tokens > 5_000
    assert second.cache_read_input_tokens == 0
    assert second.cache_creation_input_tokens > 5_000


def _conversation(text: str = "Which invoices are overdue?") -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": [{"type": "text", "text": prose(40) + " " + text, "cache_control": EPHEMERAL_5M}]}
    ]


@pytest.mark.parametrize(
    ("before", "after"),
    [
        pytest.param({"tool_choice": {"type": "auto"}}, {"tool_choice": {"type": "any"}}, id="tool_choice"),
        pytest.param({}, {"thinking": {"type": "enabled", "budget_tokens": 1024}}, id="thinking"),
    ],
)
def test_tool_choice_or_thinking_changes_keep_the_system_cache_but_not_the_message_blocks(
    client: anthropic.Anthropic, before: dict[str, Any], after: dict[str, Any]
) -> None:
    """ "tool_choice/images/thinking changes invalidate messages" — tools and system stay cached."""
    # Given tools, a 1-hour system breakpoint and a 5-minute breakpoint on the user message
    common = {"tools": [TOOL], "system": system_5k(EPHEMERAL_1H), "messages": _conversation(), "max_tokens": 2000}
    first = ask(client, **common, **before)
    # When only tool_choice (or thinking) changes
    second = ask(client, **common, **after)
    # Then tools+system are read and the message segment is written again
    assert second.cache_read_input_tokens == first.cache_creation.ephemeral_1h_input_tokens
    assert second.cache_creation_input_tokens == first.cache_creation.ephemeral_5m_input_tokens > 0
    assert second.cache_creation.ephemeral_5m_input_tokens == second.cache_creation_input_tokens


def test_adding_an_image_anywhere_invalidates_the_message_blocks(client: anthropic.Anthropic) -> None:
    """ "images … changes invalidate messages": an image added in a later turn misses the earlier message entry."""
    # Given a cached system prompt (1h) and a cached first user message (5m)
    first = ask(client, system=system_5k(EPHEMERAL_1H), messages=_conversation())
    # When the next request adds a turn with an image
    image = {"type": "image", "source": {"type": "url", "url": "https://example.com/invoice.png"}}
    grown = [
        *_conversation(),
        {"role": "assistant", "content": "Three are overdue."},
        {"role": "user", "content": [image, {"type": "text", "text": "And this one?"}]},
    ]
    second = ask(client, system=system_5k(EPHEMERAL_1H), messages=grown)
    # Then only the system prefix is read; the first message's entry does not match any more
    assert second.cache_read_input_tokens == first.cache_creation.ephemeral_1h_input_tokens
    assert second.cache_creation.ephemeral_5m_input_tokens == first.cache_creation.ephemeral_5m_input_tokens


def _blocks(extra: int) -> list[dict[str, Any]]:
    """A long first block, then `extra` short blocks; the breakpoint is on the last block."""
    blocks: list[dict[str, Any]] = [{"type": "text", "text": prose(40)}]
    blocks += [{"type": "text", "text": f"Note {i}."} for i in range(1, extra + 1)]
    blocks[-1] = {**blocks[-1], "cache_control": EPHEMERAL_5M}
    return [{"role": "user", "content": blocks}]


@pytest.mark.parametrize(("extra_blocks", "hit"), [(20, True), (21, False)])
def test_lookup_walks_back_at_most_20_blocks(sim: Simulator, extra_blocks: int, hit: bool) -> None:
    """ "Lookup walks back at most 20 blocks": a breakpoint 20 blocks after a cached one hits, 21+ misses."""
    with sdk(sim, api_key=f"sk-lookback-{extra_blocks}") as client:
        # Given the first block cached on its own
        cached = ask(client, messages=_blocks(0))
        # When the breakpoint moves to a block 20 (or 21) blocks further on
        later = ask(client, messages=_blocks(extra_blocks))
    # Then the walk back finds the cached boundary only within 20 blocks
    if hit:
        assert later.cache_read_input_tokens == cached.cache_creation_input_tokens
        assert (
            later.cache_creation_input_tokens == prompt_total(later) - cached.cache_creation_input_tokens - TAIL_TOKENS
        )
    else:
        assert later.cache_read_input_tokens == 0
        assert later.cache_creation_input_tokens == prompt_total(later) - TAIL_TOKENS


def test_caches_are_isolated_per_workspace(sim: Simulator) -> None:
    """ "Caches are isolated per workspace" (the simulator's workspace is the API key)."""
    with sdk(sim, api_key="sk-team-a") as team_a, sdk(sim, api_key="sk-team-b") as team_b:
        # Given team A cached a system prompt
        a_first = ask(team_a, system=system_5k())
        # When team B sends the same request, then team A again
        b_first = ask(team_b, system=system_5k())
        a_again = ask(team_a, system=system_5k())
    # Then B writes its own entry and A still reads its own
    assert b_first.cache_read_input_tokens == 0
    assert b_first.cache_creation_input_tokens == a_first.cache_creation_input_tokens
    assert a_again.cache_read_input_tokens == a_first.cache_creation_input_tokens


def test_another_model_is_another_cache_and_an_alias_is_the_same_model(client: anthropic.Anthropic) -> None:
    """ "Another model is another cache"; a dated id names the same model as its alias."""
    # Given a prompt cached on Haiku 4.5 through its alias
    system = [{"type": "text", "text": prose(240), "cache_control": EPHEMERAL_5M}]
    first = ask(client, model="claude-haiku-4-5", system=system)
    # When the same prompt goes to its dated id, then to Sonnet 4.6
    dated = ask(client, model="claude-haiku-4-5-20251001", system=system)
    other = ask(client, model="claude-sonnet-4-6", system=system)
    # Then the dated id reads Haiku's entry, and Sonnet writes its own
    assert first.cache_creation_input_tokens > 4096
    assert dated.cache_read_input_tokens == first.cache_creation_input_tokens
    assert other.cache_read_input_tokens == 0
    assert other.cache_creation_input_tokens == first.cache_creation_input_tokens


def test_every_breakpoint_past_the_hit_is_written_and_the_rest_is_input(client: anthropic.Anthropic) -> None:
    """cache_read = the longest cached prefix; cache_creation = from there to the last breakpoint;
    input = the rest; and input + creation + read == count_tokens."""
    # Given a cached 1-hour system prompt
    first = ask(client, system=system_5k(EPHEMERAL_1H), messages=[{"role": "user", "content": "Hi."}])
    # When a request adds two message breakpoints after it and a question after them
    messages: list[MessageParam] = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": prose(20), "cache_control": EPHEMERAL_5M},
                {"type": "text", "text": prose(20), "cache_control": EPHEMERAL_5M},
                {"type": "text", "text": "What changed this week?"},
            ],
        }
    ]
    usage = ask(client, system=system_5k(EPHEMERAL_1H), messages=messages)
    counted = client.messages.count_tokens(model=MODEL, system=system_5k(EPHEMERAL_1H), messages=messages)
    # Then the system is read, both message segments are written as 5-minute writes, the question is input
    assert usage.cache_read_input_tokens == first.cache_creation_input_tokens
    assert usage.cache_creation.ephemeral_5m_input_tokens == usage.cache_creation_input_tokens > 2 * 360
    assert usage.input_tokens > TAIL_TOKENS
    assert prompt_total(usage) == counted.input_tokens


def test_concurrent_identical_requests_write_once_and_read_after(sim: Simulator) -> None:
    """ "A cache entry is usable only after the first response begins": the simulator serialises requests,
    so of 12 concurrent identical requests exactly one writes and the others read."""
    # Given 12 identical cached requests sent at once from 4 threads
    with sdk(sim, api_key="sk-concurrent") as client, ThreadPoolExecutor(max_workers=4) as pool:
        usages = list(pool.map(lambda _: ask(client, system=system_5k()), range(12)))
    # Then one wrote the prefix and every other one read it
    writes = [u for u in usages if u.cache_creation_input_tokens > 0]
    reads = [u for u in usages if u.cache_read_input_tokens > 0]
    assert len(writes) == 1
    assert len(reads) == 11
    assert {u.cache_read_input_tokens for u in reads} == {writes[0].cache_creation_input_tokens}
