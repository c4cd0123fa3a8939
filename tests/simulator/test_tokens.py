"""The token approximation and the usage invariant, in-process (no HTTP)."""

from datetime import timedelta
from typing import Any

import anthropic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from costgate_local.simulator.caching import PromptCache
from costgate_local.simulator.prompt import build_prompt
from costgate_local.simulator.tokens import Tokenizer, count_text
from costgate_local.simulator.validation import validate_messages_request
from tests.simulator.conftest import START, prose

KOREAN = "지난달 고객 지원 챗봇의 비용이 예산을 얼마나 넘었는지 팀별로 정리해 주세요."
ENGLISH = "Please break down by team how far last month's customer support chatbot costs went over budget."


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("Hello, world.", 4),  # Hello | , | world | .
        ("international", 3),  # 13 Latin letters: ceil(13 / 5)
        ("안녕하세요", 5),  # Hangul: one per syllable
        ("ㅋㅋㅋ", 3),  # jamo: one each
        ("日本語", 3),  # CJK ideographs: one each
        ("Привет", 2),  # other letters: ceil(6 / 3)
        ("2026-11-29", 6),  # 2026 (ceil(4 / 3)) | - | 11 | - | 29
        ("😀", 2),  # beyond the BMP: two each
        ("a\n\nb", 3),  # a | newline run | b
        ("one two", 2),  # a single space is free
    ],
)
def test_the_documented_formula(text: str, tokens: int) -> None:
    # Given a text / Then its count follows the module docstring's table
    assert count_text(text) == tokens


def test_a_korean_sentence_and_its_english_translation_land_within_2x(client: anthropic.Anthropic) -> None:
    # Given a Korean request and its English translation
    def count(text: str) -> int:
        return client.messages.count_tokens(
            model="claude-sonnet-4-6", messages=[{"role": "user", "content": text}]
        ).input_tokens

    # When both are counted (twice)
    korean, english = count(KOREAN), count(ENGLISH)
    # Then they are within 2× of each other, and stable
    assert 0.5 <= korean / english <= 2.0
    assert (count(KOREAN), count(ENGLISH)) == (korean, english)
    assert korean > english


def test_claude_4_7_and_later_count_about_30_percent_more(client: anthropic.Anthropic) -> None:
    """ "Claude 4.7+ models use a newer tokenizer (about 30% more tokens for the same text)"."""
    messages: Any = [{"role": "user", "content": prose(100)}]
    # Given the same long prompt / When counted on Opus 4.6 and on Opus 4.7
    old = client.messages.count_tokens(model="claude-opus-4-6", messages=messages).input_tokens
    new = client.messages.count_tokens(model="claude-opus-4-7", messages=messages).input_tokens
    # Then the newer tokenizer yields about 30% more
    assert 1.25 < new / old < 1.32


@given(
    st.text(min_size=1, max_size=40).filter(lambda t: not t[-1].isspace()),
    st.text(min_size=1, max_size=40).filter(lambda t: not t[0].isspace()),
)
@settings(max_examples=200, deadline=None)
def test_counts_add_up_across_a_single_space(left: str, right: str) -> None:
    # Given two texts that neither end nor start with whitespace / Then a space between them is free
    assert count_text(f"{left} {right}") == count_text(left) + count_text(right)
    assert Tokenizer.CLAUDE_47.scale(count_text(left)) >= count_text(left)


_TEXTS = st.sampled_from(["Short note.", prose(3), prose(40), "요약해 주세요.", "Why?"])


@st.composite
def _calls(draw: st.DrawFn) -> list[tuple[dict[str, Any], int]]:
    """1–4 requests, seconds apart, each a prefix (1–30 blocks) of one conversation, with up to 4
    breakpoints (1h ones first) and, for all or none, a 1-hour cached system prompt: prefixes recur."""
    model = draw(st.sampled_from(["claude-opus-5-5", "claude-sonnet-4-6"]))
    with_system = draw(st.booleans())
    texts = draw(st.lists(_TEXTS, min_size=1, max_size=30))
    calls = []
    for _ in range(draw(st.integers(1, 4))):
        blocks: list[dict[str, Any]] = [{"type": "text", "text": t} for t in texts[: draw(st.integers(1, len(texts)))]]
        marked = sorted(draw(st.sets(st.integers(0, len(blocks) - 1), max_size=3 if with_system else 4)))
        long_ones = draw(st.integers(0, len(marked)))
        for rank, index in enumerate(marked):
            blocks[index]["cache_control"] = {"type": "ephemeral", "ttl": "1h" if rank < long_ones else "5m"}
        body: dict[str, Any] = {"model": model, "max_tokens": 50, "messages": [{"role": "user", "content": blocks}]}
        if with_system:
            body["system"] = [{"type": "text", "text": prose(40), "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
        calls.append((body, draw(st.integers(0, 400))))
    return calls


@given(_calls())
@settings(max_examples=60, deadline=None)
def test_input_plus_creation_plus_read_is_always_the_whole_prompt(calls: list[tuple[dict[str, Any], int]]) -> None:
    """ "Total prompt = input_tokens + cache_creation_input_tokens + cache_read_input_tokens", in any cache state."""
    cache = PromptCache()
    now = START
    for body, wait_seconds in calls:
        # Given any sequence of requests against one cache, some time apart
        now += timedelta(seconds=wait_seconds)
        request = validate_messages_request(body, "2026-10-21")
        prompt = build_prompt(request)
        # When the cache is applied
        usage = cache.apply(
            prompt,
            workspace="sk-prop",
            model=request.profile.canonical,
            min_tokens=request.profile.min_cacheable_tokens,
            now=now,
        )
        # Then the parts are non-negative and add up to count_tokens
        parts = (usage.input_tokens, usage.cache_creation_input_tokens, usage.cache_read_input_tokens)
        assert min(parts) >= 0
        assert sum(parts) == prompt.total_tokens
        assert usage.input_tokens >= prompt.tail_tokens
