"""The prompt-cache policy: one test per rule of costgate.routing.prompt_cache, then properties over random bodies.

Costs in the TTL tests are computed by hand with the reference's multipliers: read 0.10 (most models),
5m write 1.25, 1h write 2, per request, in units of the prefix's uncached input.
"""

import copy
import hashlib
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from costgate.pricing.prices import default_price_book
from costgate.routing.prompt_cache import (
    MIN_GAP_OBSERVATIONS,
    CacheDecision,
    CachePlan,
    GapBucket,
    GapHistogram,
    Ttl,
    TtlChoice,
    choose_ttl,
    estimate_prefix_tokens,
    gap_bucket,
    has_cache_control,
    plan_prompt_cache,
    prefix_key,
)

MODEL = "claude-opus-5-5"
READ = Decimal("0.10")
WRITES = {"5m": Decimal("1.25"), "1h": Decimal(2)}
ONE_HOUR_CC = {"type": "ephemeral", "ttl": "1h"}
FIVE_MIN_CC = {"type": "ephemeral", "ttl": "5m"}
LONG_SYSTEM = "You are the support assistant for Acme. " * 60  # 2,400 ASCII characters: ~600 tokens
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def tool(name: str) -> dict[str, Any]:
    return {"name": name, "description": f"{name} tool", "input_schema": {"type": "object"}}


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def assistant(content: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": content}


def request(**parts: Any) -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": 256, "messages": [user("Hi")], **parts}


def choose(ttl: Ttl | None, reason: str = "test") -> Any:
    """A ttl_for that records its calls."""
    calls: list[int] = []

    def ttl_for() -> TtlChoice:
        calls.append(1)
        return TtlChoice(ttl, reason)

    ttl_for.calls = calls  # type: ignore[attr-defined]
    return ttl_for


def never_called() -> TtlChoice:
    raise AssertionError("ttl_for must not be called for this request")


def plan(body: dict[str, Any], ttl_for: Any = None, *, enabled: bool = True, minimum: int = 512) -> CachePlan:
    """Plan, checking on the way that the input body is never changed."""
    before = copy.deepcopy(body)
    result = plan_prompt_cache(
        body, model=MODEL, enabled=enabled, minimum_tokens=minimum, ttl_for=ttl_for or choose("1h")
    )
    assert body == before, "plan_prompt_cache changed its input"
    return result


# --- has_cache_control ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(request(cache_control={"type": "ephemeral"}), id="top-level-automatic"),
        pytest.param(request(tools=[tool("a"), {**tool("b"), "cache_control": ONE_HOUR_CC}]), id="tool"),
        pytest.param(
            request(system=[{"type": "text", "text": "x"}, {"type": "text", "text": "y", "cache_control": {}}]),
            id="system-block",
        ),
        pytest.param(
            request(messages=[user([{"type": "text", "text": "Hi", "cache_control": FIVE_MIN_CC}])]),
            id="message-block",
        ),
        pytest.param(
            request(
                messages=[
                    user("Hi"),
                    assistant([{"type": "tool_use", "id": "t1", "name": "a", "input": {}}]),
                    user(
                        [
                            {
                                "type": "tool_result",
                                "tool_use_id": "t1",
                                "content": [{"type": "text", "text": "42", "cache_control": FIVE_MIN_CC}],
                            }
                        ]
                    ),
                ]
            ),
            id="tool-result-content",
        ),
        pytest.param(request(cache_control=None), id="key-present-with-null-value"),
    ],
)
def test_cache_control_is_found_wherever_the_api_reads_it(body: dict[str, Any]) -> None:
    assert has_cache_control(body) is True


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(request(system="cache_control", tools=[tool("cache_control")]), id="only-as-text"),
        pytest.param(
            request(tools=[{**tool("a"), "input_schema": {"properties": {"cache_control": {"type": "object"}}}}]),
            id="inside-a-tool-schema",
        ),
        pytest.param(
            request(messages=[user([{"type": "tool_use", "id": "t", "name": "a", "input": {"cache_control": 1}}])]),
            id="inside-tool-input",
        ),
        pytest.param({"model": MODEL}, id="bare"),
    ],
)
def test_cache_control_elsewhere_is_not_the_clients_caching(body: dict[str, Any]) -> None:
    assert has_cache_control(body) is False


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"tools": "x", "system": 3, "messages": "hi"}, id="scalars"),
        pytest.param({"tools": [None, 1, "a"], "system": [None, []], "messages": [1, "a", None]}, id="non-dicts"),
        pytest.param({"messages": [{"content": 5}, {"content": [None, 2]}]}, id="bad-content"),
        pytest.param({"messages": [user([{"type": "tool_result", "content": "plain"}])]}, id="string-tool-result"),
        pytest.param({"messages": [user([{"type": "tool_result", "content": [None, 3]}])]}, id="bad-tool-result"),
    ],
)
def test_malformed_shapes_do_not_raise_and_hold_no_cache_control(body: dict[str, Any]) -> None:
    assert has_cache_control(body) is False


# --- prefix_key ----------------------------------------------------------------------------------


def test_prefix_key_is_32_hex_of_sha256_over_canonical_json() -> None:
    # Given a body with tools and a string system
    body = request(tools=[tool("a")], system="Be brief.")
    # Then the key is the first 32 hex of SHA-256 over sorted, compact JSON, the system as one text block
    canonical = {
        "model": MODEL,
        "system": [{"text": "Be brief.", "type": "text"}],
        "tools": [{"description": "a tool", "input_schema": {"type": "object"}, "name": "a"}],
    }
    expected = hashlib.sha256(json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert prefix_key(MODEL, body) == expected[:32]


def test_string_system_and_the_same_text_block_share_a_key() -> None:
    as_string = request(system="Be brief.")
    as_block = request(system=[{"type": "text", "text": "Be brief."}])
    assert prefix_key(MODEL, as_string) == prefix_key(MODEL, as_block)


def test_prefix_key_ignores_messages_and_key_order_but_not_model_tools_or_system() -> None:
    # Given a body and variations of it
    base = request(tools=[tool("a")], system="Be brief.")
    key = prefix_key(MODEL, base)
    reordered = {"system": "Be brief.", "tools": [dict(reversed(tool("a").items()))]}
    # Then messages and key order do not change the key; model, tools and system each do
    assert prefix_key(MODEL, {**base, "messages": [user("Something else")]}) == key
    assert prefix_key(MODEL, reordered) == key
    others = {
        prefix_key("claude-sonnet-5-5", base),
        prefix_key(MODEL, {**base, "tools": [tool("b")]}),
        prefix_key(MODEL, {**base, "system": "Be terse."}),
        prefix_key(MODEL, {**base, "tools": None}),
    }
    assert key not in others
    assert len(others) == 4


# --- estimate_prefix_tokens ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # '[{"name":"a"}]' is 14 ASCII characters, "hello" 5: ceil(19 / 4) = 5
        pytest.param({"tools": [{"name": "a"}], "system": "hello"}, 5, id="tools-json-plus-system"),
        # 'abcd' + 'efgh' = 8 ASCII: 2; the block's type and other keys are not counted
        pytest.param(
            {"system": [{"type": "text", "text": "abcd"}, {"type": "text", "text": "efgh"}]}, 2, id="system-blocks"
        ),
        # "héllo": 4 ASCII → ceil(4 / 4) = 1, plus 1 for "é"
        pytest.param({"system": "héllo"}, 2, id="non-ascii-system"),
        # '[{"name":"é"}]' unescaped: 13 ASCII → 4, plus 1
        pytest.param({"tools": [{"name": "é"}]}, 5, id="non-ascii-tools-not-escaped"),
        pytest.param({"system": "日本語"}, 3, id="cjk"),
        pytest.param({"system": "a"}, 1, id="rounds-up"),
        pytest.param({"messages": [user("long " * 1000)]}, 0, id="messages-not-counted"),
        pytest.param({"tools": [], "system": ""}, 0, id="empty"),
        pytest.param({"system": [{"type": "text"}, None, "x"]}, 0, id="malformed-system"),
    ],
)
def test_estimate_counts_a_quarter_per_ascii_character_and_one_per_other(body: dict[str, Any], expected: int) -> None:
    assert estimate_prefix_tokens(body) == expected


# --- gap_bucket ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gap", "expected"),
    [
        pytest.param(timedelta(0), GapBucket.WITHIN_5M, id="same-instant"),
        pytest.param(timedelta(minutes=5), GapBucket.WITHIN_5M, id="exactly-5m"),
        pytest.param(timedelta(minutes=5, microseconds=1), GapBucket.WITHIN_1H, id="just-over-5m"),
        pytest.param(timedelta(hours=1), GapBucket.WITHIN_1H, id="exactly-1h"),
        pytest.param(timedelta(hours=1, microseconds=1), GapBucket.BEYOND_1H, id="just-over-1h"),
        pytest.param(timedelta(days=3), GapBucket.BEYOND_1H, id="days"),
        pytest.param(timedelta(seconds=-30), GapBucket.WITHIN_5M, id="clock-skew"),
    ],
)
def test_gap_bucket_boundaries(gap: timedelta, expected: GapBucket) -> None:
    assert gap_bucket(NOW - gap, NOW) is expected


def test_a_prefix_never_seen_is_beyond_1h() -> None:
    assert gap_bucket(None, NOW) is GapBucket.BEYOND_1H


# --- choose_ttl ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gaps", "read", "expected"),
    [
        pytest.param(
            # 5m: (10×0.1 + 24×1.25) / 34 = 31/34 = 0.91; 1h: (30×0.1 + 4×2) / 34 = 11/34 = 0.32
            GapHistogram(within_5m=10, within_1h=20, beyond_1h=4),
            READ,
            TtlChoice("1h", "1h: 34 gaps; per request 1h 0.32, 5m 0.91, none 1"),
            id="1h-wins",
        ),
        pytest.param(
            # exactly MIN_GAP_OBSERVATIONS: 5m: (15×0.1 + 5×1.25) / 20 = 7.75/20 = 0.3875;
            # 1h: (15×0.1 + 5×2) / 20 = 11.5/20 = 0.575
            GapHistogram(within_5m=15, within_1h=0, beyond_1h=5),
            READ,
            TtlChoice("5m", "5m: 20 gaps; per request 5m 0.39, 1h 0.58, none 1"),
            id="5m-wins",
        ),
        pytest.param(
            # 5m: (2×0.1 + 23×1.25) / 25 = 28.95/25 = 1.158; 1h: (5×0.1 + 20×2) / 25 = 40.5/25 = 1.62
            GapHistogram(within_5m=2, within_1h=3, beyond_1h=20),
            READ,
            TtlChoice(None, "none: 25 gaps; per request none 1, 5m 1.16, 1h 1.62"),
            id="none-wins",
        ),
        pytest.param(
            # every gap reads: 5m 0.1, 1h 0.1 → tie, 5m first
            GapHistogram(within_5m=40),
            READ,
            TtlChoice("5m", "5m: 40 gaps; per request 5m 0.1, 1h 0.1, none 1"),
            id="all-hits-tie-5m",
        ),
    ],
)
def test_choose_ttl_picks_the_cheapest_per_request(gaps: GapHistogram, read: Decimal, expected: TtlChoice) -> None:
    assert choose_ttl(gaps, read, WRITES) == expected


@pytest.mark.parametrize(
    ("gaps", "read", "expected"),
    [
        pytest.param(
            # read 0.5: 5m (20×0.5 + 10×1.25) / 30 = 22.5/30; 1h (25×0.5 + 5×2) / 30 = 22.5/30: 5m before 1h
            GapHistogram(within_5m=20, within_1h=5, beyond_1h=5),
            Decimal("0.5"),
            TtlChoice("5m", "5m: 30 gaps; per request 5m 0.75, 1h 0.75, none 1"),
            id="5m-ties-1h",
        ),
        pytest.param(
            # 5m (5×0.1 + 18×1.25) / 23 = 23/23 = 1 = none; 1h (0.5 + 36) / 23 = 1.587: 5m before none
            GapHistogram(within_5m=5, within_1h=0, beyond_1h=18),
            READ,
            TtlChoice("5m", "5m: 23 gaps; per request 5m 1, none 1, 1h 1.59"),
            id="5m-ties-none",
        ),
        pytest.param(
            # 1h (20×0.1 + 18×2) / 38 = 38/38 = 1 = none; 5m 38×1.25 / 38 = 1.25: 1h before none
            GapHistogram(within_5m=0, within_1h=20, beyond_1h=18),
            READ,
            TtlChoice("1h", "1h: 38 gaps; per request 1h 1, none 1, 5m 1.25"),
            id="1h-ties-none",
        ),
    ],
)
def test_on_an_exact_tie_the_earlier_of_5m_1h_none_wins(gaps: GapHistogram, read: Decimal, expected: TtlChoice) -> None:
    assert choose_ttl(gaps, read, WRITES) == expected


@pytest.mark.parametrize(
    "gaps",
    [
        pytest.param(GapHistogram(), id="none-observed"),
        pytest.param(GapHistogram(beyond_1h=19), id="19-all-misses"),
    ],
)
def test_fewer_than_the_minimum_gaps_picks_5m(gaps: GapHistogram) -> None:
    # Given fewer gaps than MIN_GAP_OBSERVATIONS (19 misses would make "none" cheapest with enough data)
    assert MIN_GAP_OBSERVATIONS == 20
    # Then 5m, the API's default, saying how few were seen
    assert choose_ttl(gaps, READ, WRITES) == TtlChoice("5m", f"5m: only {gaps.total} gaps observed")


def test_choose_ttl_takes_the_price_books_multipliers() -> None:
    # Given the shipped book's write multipliers and Opus 5.5's 0.05 read multiplier
    book = default_price_book()
    read = book.rates_at(MODEL, NOW).cache_read_multiplier
    # When 20 gaps split 15 within 5m and 5 within the hour
    choice = choose_ttl(GapHistogram(within_5m=15, within_1h=5), read, book.cache_write_multipliers)
    # Then 1h: (20×0.05) / 20 = 0.05 against 5m (15×0.05 + 5×1.25) / 20 = 7/20 = 0.35
    assert choice == TtlChoice("1h", "1h: 20 gaps; per request 1h 0.05, 5m 0.35, none 1")


# --- plan_prompt_cache: the decisions before adding --------------------------------------------


def test_off_wins_even_over_a_client_managed_request() -> None:
    # Given a feature with the prompt cache off and a request that manages its own caching
    body = request(system=[{"type": "text", "text": LONG_SYSTEM, "cache_control": ONE_HOUR_CC}])
    # Then the plan is off and computes nothing
    assert plan(body, never_called, enabled=False) == CachePlan(CacheDecision.OFF, None, None, None, 0, "off")


def test_a_client_managed_request_is_left_alone_but_keyed() -> None:
    body = request(system=LONG_SYSTEM, messages=[user([{"type": "text", "text": "Hi", "cache_control": {}}])])
    assert plan(body, never_called) == CachePlan(CacheDecision.CLIENT, None, None, prefix_key(MODEL, body), 0, "client")


@pytest.mark.parametrize(
    "parts",
    [
        pytest.param({}, id="neither"),
        pytest.param({"tools": [], "system": ""}, id="both-empty"),
        pytest.param({"system": []}, id="empty-system-list"),
        pytest.param({"tools": None, "system": None}, id="nulls"),
        pytest.param({"tools": "x", "system": 7}, id="malformed"),
    ],
)
def test_no_tools_and_no_system_is_no_prefix(parts: dict[str, Any]) -> None:
    assert plan(request(**parts), never_called) == CachePlan(CacheDecision.NO_PREFIX, None, None, None, 0, "no-prefix")


def test_a_prefix_below_the_models_minimum_is_not_cached() -> None:
    # Given a 1,196-character system: ceil(1196 / 4) = 299 estimated tokens, minimum 512
    body = request(system="x" * 1196)
    # Then below-minimum, with the estimate
    assert plan(body, never_called, minimum=512) == CachePlan(
        CacheDecision.BELOW_MINIMUM, None, None, None, 299, "below-minimum: ~299 of 512 tokens"
    )


def test_a_prefix_exactly_at_the_minimum_is_cached() -> None:
    # Given 2,048 characters: exactly 512 estimated tokens
    result = plan(request(system="x" * 2048), choose("5m"), minimum=512)
    assert (result.decision, result.estimated_prefix_tokens) == (CacheDecision.ADDED, 512)


def test_when_caching_does_not_pay_nothing_is_added_and_the_choice_says_why() -> None:
    # Given gaps for which no TTL pays
    reason = "none: 25 gaps; per request none 1, 5m 1.16, 1h 1.62"
    ttl_for = choose(None, reason)
    # When planned
    result = plan(request(system=LONG_SYSTEM), ttl_for)
    # Then not-worth-it, with the choice's reason and the estimate (2,400 ASCII characters: 600), keyed
    # so that the prefix's gaps are still recorded
    body = request(system=LONG_SYSTEM)
    key = prefix_key(body["model"], body)
    assert result == CachePlan(CacheDecision.NOT_WORTH_IT, None, None, key, 600, f"not-worth-it: {reason}")
    assert ttl_for.calls == [1]


# --- plan_prompt_cache: where breakpoints go ---------------------------------------------------


def test_a_string_system_becomes_one_block_with_the_chosen_ttl() -> None:
    body = request(system=LONG_SYSTEM, tools=[tool("a")])
    ttl_for = choose("1h")
    result = plan(body, ttl_for)
    assert result == CachePlan(
        CacheDecision.ADDED,
        {
            "model": MODEL,
            "max_tokens": 256,
            "messages": [user("Hi")],
            "tools": [tool("a")],
            "system": [{"type": "text", "text": LONG_SYSTEM, "cache_control": ONE_HOUR_CC}],
        },
        "1h",
        prefix_key(MODEL, body),
        # '[{"name":"a","description":"a tool","input_schema":{"type":"object"}}]' is 69 characters
        (69 + 2400 + 3) // 4,
        "added 1h: system",
    )
    assert ttl_for.calls == [1]


def test_the_last_system_block_takes_the_breakpoint() -> None:
    first = {"type": "text", "text": "Rules."}
    body = request(system=[first, {"type": "text", "text": LONG_SYSTEM}])
    result = plan(body, choose("1h"))
    assert result.body is not None
    assert result.body["system"] == [first, {"type": "text", "text": LONG_SYSTEM, "cache_control": ONE_HOUR_CC}]
    assert result.reason == "added 1h: system"


def test_without_a_system_the_last_tool_takes_the_breakpoint_and_5m_is_stated() -> None:
    big = {**tool("search"), "description": LONG_SYSTEM}
    body = request(tools=[tool("a"), big], system="")
    result = plan(body, choose("5m"))
    assert result.body == {**body, "tools": [tool("a"), {**big, "cache_control": FIVE_MIN_CC}]}
    assert (result.ttl, result.reason) == ("5m", "added 5m: tools")


def test_a_conversation_gets_a_5m_breakpoint_on_its_last_block() -> None:
    # Given a second turn: user, assistant, user (a string)
    messages = [user("Hi"), assistant("Hello! How can I help?"), user("Refund order 42")]
    body = request(system=LONG_SYSTEM, messages=messages)
    # When planned with a 1h prefix
    result = plan(body, choose("1h"))
    # Then 1h on the system and 5m on the last message's (now one) block, in that order
    assert result.body == {
        **body,
        "system": [{"type": "text", "text": LONG_SYSTEM, "cache_control": ONE_HOUR_CC}],
        "messages": [
            messages[0],
            messages[1],
            user([{"type": "text", "text": "Refund order 42", "cache_control": FIVE_MIN_CC}]),
        ],
    }
    assert result.reason == "added 1h: system, conversation"


def test_a_tool_result_ending_a_conversation_takes_the_breakpoint() -> None:
    result_block = {"type": "tool_result", "tool_use_id": "t1", "content": "42"}
    messages = [
        user("What is 6×7?"),
        assistant([{"type": "tool_use", "id": "t1", "name": "calc", "input": {"q": "6*7"}}]),
        user([result_block]),
    ]
    result = plan(request(tools=[{**tool("calc"), "description": LONG_SYSTEM}], messages=messages), choose("5m"))
    assert result.body is not None
    assert result.body["messages"][-1] == user([{**result_block, "cache_control": FIVE_MIN_CC}])
    assert result.reason == "added 5m: tools, conversation"


@pytest.mark.parametrize(
    "messages",
    [
        pytest.param([user("Hi")], id="first-turn"),
        pytest.param([user("Hi"), assistant("The answer is")], id="prefill-after-the-only-user-turn"),
        pytest.param([assistant("Hi"), assistant("again")], id="no-user-turn"),
        pytest.param("not a list", id="malformed-messages"),
    ],
)
def test_no_assistant_before_the_last_user_turn_is_no_conversation(messages: Any) -> None:
    body = request(system=LONG_SYSTEM, messages=messages)
    result = plan(body, choose("1h"))
    assert result.body is not None
    assert result.body["messages"] is messages
    assert result.reason == "added 1h: system"


def test_a_prefill_after_a_conversation_takes_the_breakpoint() -> None:
    # Given user, assistant, user, then an assistant prefill: the last message is the prefill
    messages = [user("Hi"), assistant("Hello"), user("List three"), assistant([{"type": "text", "text": "1."}])]
    result = plan(request(system=LONG_SYSTEM, messages=messages), choose("1h"))
    assert result.body is not None
    assert result.body["messages"][-1] == assistant([{"type": "text", "text": "1.", "cache_control": FIVE_MIN_CC}])


@pytest.mark.parametrize(
    "last",
    [
        pytest.param(assistant([{"type": "thinking", "thinking": "hm", "signature": "s"}]), id="thinking"),
        pytest.param(assistant([{"type": "redacted_thinking", "data": "abc"}]), id="redacted-thinking"),
        pytest.param(user([{"type": "text", "text": ""}]), id="empty-text"),
        pytest.param(user(""), id="empty-string"),
        pytest.param(user([]), id="no-blocks"),
        pytest.param(user(None), id="null-content"),
        pytest.param(user([{"type": "text", "text": "x"}, "oops"]), id="last-not-a-dict"),
    ],
)
def test_no_conversation_breakpoint_where_the_api_refuses_one(last: dict[str, Any]) -> None:
    # Given a conversation whose last block cannot carry cache_control
    messages = [user("Hi"), assistant("Hello"), user("Go on"), last]
    body = request(system=LONG_SYSTEM, messages=messages)
    # Then only the prefix breakpoint is added and the messages are passed through
    result = plan(body, choose("1h"))
    assert result.body is not None
    assert result.body["messages"] is messages
    assert result.reason == "added 1h: system"


def test_the_new_body_shares_no_edited_block_with_the_input() -> None:
    # Given a body whose edited blocks hold nested values
    system_block = {"type": "text", "text": LONG_SYSTEM, "citations": [{"n": 1}]}
    last_block = {"type": "text", "text": "Next", "meta": {"k": [1]}}
    body = request(system=[system_block], messages=[user("Hi"), assistant("Yes"), user([last_block])])
    before = copy.deepcopy(body)
    # When planned and the plan's body is then changed in place
    result = plan(body, choose("1h"))
    assert result.body is not None
    result.body["system"][0]["citations"][0]["n"] = 2
    result.body["messages"][-1]["content"][0]["meta"]["k"].append(2)
    result.body["max_tokens"] = 1
    # Then the input is untouched
    assert body == before


# --- properties over random bodies ---------------------------------------------------------------

_text = st.text(max_size=12)
_text_block = st.fixed_dictionaries({"type": st.just("text"), "text": _text})
_blocks = st.one_of(
    _text_block,
    st.fixed_dictionaries({"type": st.just("thinking"), "thinking": _text, "signature": _text}),
    st.fixed_dictionaries({"type": st.just("redacted_thinking"), "data": _text}),
    st.fixed_dictionaries(
        {
            "type": st.just("tool_result"),
            "tool_use_id": _text,
            "content": st.one_of(_text, st.lists(_text_block, max_size=2)),
        }
    ),
    st.fixed_dictionaries({"type": st.just("image"), "source": st.just({"type": "url", "url": "https://x/i.png"})}),
)
_message = st.fixed_dictionaries(
    {
        "role": st.sampled_from(["user", "assistant"]),
        "content": st.one_of(_text, st.lists(_blocks, max_size=4)),
    }
)
_tool = st.fixed_dictionaries({"name": _text, "input_schema": st.just({"type": "object"})})
_bodies = st.fixed_dictionaries(
    {"model": st.just(MODEL), "messages": st.lists(_message, max_size=6)},
    optional={
        "tools": st.lists(_tool, max_size=3),
        "system": st.one_of(_text, st.lists(_text_block, max_size=3)),
    },
)
_KEYS = ["tools", "system", "messages", "content", "role", "type", "text", "cache_control", "name"]
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(_KEYS), inner, max_size=4),
    max_leaves=25,
)


def _breakpoint_ttls(body: dict[str, Any]) -> list[str]:
    """Every cache_control's TTL in prefix order (tools, system, messages), as the API reads them."""
    blocks: list[dict[str, Any]] = [*body.get("tools", [])]
    if isinstance(body.get("system"), list):
        blocks += body["system"]
    for message in body["messages"]:
        if isinstance(message["content"], list):
            for block in message["content"]:
                blocks.append(block)
                if block.get("type") == "tool_result" and isinstance(block["content"], list):
                    blocks += block["content"]
    return [block["cache_control"]["ttl"] for block in blocks if "cache_control" in block]


def _without_breakpoints(body: dict[str, Any]) -> dict[str, Any]:
    """The body with cache_control removed and string system/content as text blocks."""
    stripped = copy.deepcopy(body)

    def blocks(value: Any) -> Any:
        if isinstance(value, str):
            return [{"type": "text", "text": value}]
        return [{k: v for k, v in block.items() if k != "cache_control"} for block in value]

    if "system" in stripped:
        stripped["system"] = blocks(stripped["system"])
    if "tools" in stripped:
        stripped["tools"] = blocks(stripped["tools"])
    for message in stripped["messages"]:
        message["content"] = blocks(message["content"])
    return stripped


@settings(max_examples=300, deadline=None)
@given(body=_bodies, ttl=st.sampled_from(["5m", "1h"]))
def test_added_breakpoints_are_at_most_2_longest_first_and_change_nothing_else(body: dict[str, Any], ttl: Ttl) -> None:
    # Given any well-formed body without client caching, When planned with the minimum reached
    result = plan(body, choose(ttl), minimum=0)

    if result.decision is CacheDecision.NO_PREFIX:
        assert not body.get("tools")
        assert not body.get("system")
        return
    # Then breakpoints were added: at most 2, the chosen TTL first, never 1h after 5m
    assert result.decision is CacheDecision.ADDED
    assert result.body is not None
    ttls = _breakpoint_ttls(result.body)
    assert 1 <= len(ttls) <= 2
    assert ttls[0] == ttl
    assert ttls == sorted(ttls, key=["1h", "5m"].index)
    assert "cache_control" not in result.body
    assert has_cache_control(result.body)
    # And apart from the breakpoints, the request is the one the client sent
    assert _without_breakpoints(result.body) == _without_breakpoints(body)
    assert result.prefix_key == prefix_key(MODEL, body)


@settings(max_examples=300, deadline=None)
@given(body=st.dictionaries(st.sampled_from(_KEYS), _json, max_size=5), enabled=st.booleans())
def test_malformed_bodies_never_raise(body: dict[str, Any], enabled: bool) -> None:
    # Given any JSON object at all, When inspected and planned, Then nothing raises
    has_cache_control(body)
    estimate_prefix_tokens(body)
    prefix_key(MODEL, body)
    result = plan(body, choose("1h"), enabled=enabled, minimum=0)
    assert result.decision in set(CacheDecision)
