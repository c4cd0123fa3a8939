"""Deterministic answers: the same request body (streamed or not, in a batch or not) gets the same answer.

Everything is drawn from a RNG seeded with the hash of the body (without `stream`):
- language: Korean when the last user message is mostly Hangul, else English; text starts "[simulated]";
- length: 20–249 output tokens (or the simulator's `--answer-tokens`), capped by `max_tokens` (then
  `stop_reason: "max_tokens"`);
- tool use: with custom tools and `tool_choice` any/tool, or auto when the last user text names a tool or
  asks to use one, a `tool_use` block (`toolu_…`, input built from the schema's required properties)
  and `stop_reason: "tool_use"`;
- thinking (enabled/adaptive/between_tools): a `thinking` block of 40–199 tokens (capped by
  `budget_tokens`, or half of `max_tokens` for adaptive), counted in `output_tokens`;
- server tools: 1–3 web searches when a `web_search*` tool is given (at most its `max_uses`),
  1–2 fetches for a `web_fetch*` tool.
The text is sized with the base token counter, so `output_tokens` is exactly its count (a budget
below the marker's 4 tokens still shows the marker; `output_tokens` then says the budget).
"""

import base64
import hashlib
import json
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from costgate_local.simulator.prompt import canonical_json
from costgate_local.simulator.tokens import count_text, hangul_share
from costgate_local.simulator.validation import MessagesRequest, is_custom_tool

MARKER = "[simulated]"
_ENGLISH = (
    "this",
    "is",
    "a",
    "simulated",
    "answer",
    "from",
    "the",
    "costgate",
    "test",
    "double",
    "for",
    "claude",
    "every",
    "token",
    "count",
    "here",
    "follows",
    "documented",
    "rules",
    "no",
    "model",
    "wrote",
    "it",
    "the",
    "request",
    "body",
    "hash",
    "decides",
    "its",
    "words",
    "length",
    "and",
    "language",
)
_KOREAN = (
    "이것은",
    "시뮬레이션",
    "응답입니다",
    "토큰",
    "수는",
    "문서화된",
    "규칙을",
    "따릅니다",
    "요청",
    "본문의",
    "해시가",
    "단어와",
    "길이를",
    "정합니다",
    "실제",
    "모델이",
    "쓴",
    "글이",
    "아닙니다",
    "비용",
    "게이트웨이",
    "시험용",
)
_FILLER = {"en": "so", "ko": "네"}  # one token each: always fits the last token of a budget
_ASKS_FOR_TOOL = re.compile(r"\b(use|call|invoke)\b.{0,40}\btool\b|도구", re.IGNORECASE | re.DOTALL)
_TOOL_USE_OVERHEAD = 10
_MAX_SCHEMA_DEPTH = 8


@dataclass(frozen=True)
class Answer:
    content: tuple[dict[str, Any], ...]
    output_tokens: int
    thinking_tokens: int | None  # None when thinking is off
    stop_reason: str
    web_search_requests: int
    web_fetch_requests: int
    server_tools: bool


def body_digest(body: Mapping[str, Any]) -> bytes:
    """The hash an answer is drawn from: the body without `stream`, so streaming answers the same."""
    return hashlib.sha256(canonical_json({k: v for k, v in body.items() if k != "stream"}).encode()).digest()


def answer(request: MessagesRequest, text_tokens: int | None = None) -> Answer:
    """The answer to `request`; `text_tokens`, when given, is the length of a text answer (before
    `max_tokens` caps it) instead of the drawn 20–249."""
    digest = body_digest(request.body)
    rng = random.Random(int.from_bytes(digest[:8], "big"))  # noqa: S311 - determinism is the point
    user_text = _last_user_text(request)
    hangul, latin = hangul_share(user_text)
    language = "ko" if hangul > 0 and 3 * hangul >= latin else "en"

    content: list[dict[str, Any]] = []
    thinking_tokens: int | None = None
    if request.thinking_on:
        block, thinking_tokens = _thinking(request, rng, language, digest)
        content.append(block)
    budget = request.max_tokens - (thinking_tokens or 0)

    natural_length = 20 + rng.randrange(230)
    if text_tokens is not None:
        natural_length = text_tokens
    tool = _chosen_tool(request, user_text, rng)
    stop_reason = "end_turn"
    spent = 0
    used_tool = False
    if tool is not None:
        tool_input = _example(tool.get("input_schema", {}), str(tool["name"]), 0)
        tool_cost = count_text(str(tool["name"])) + count_text(json.dumps(tool_input)) + _TOOL_USE_OVERHEAD
        forced = request.tool_choice is not None and request.tool_choice.get("type") in ("any", "tool")
        preface = "" if forced else _preface(language, str(tool["name"]))
        if count_text(preface) + tool_cost <= budget:
            if preface:
                content.append({"type": "text", "text": preface})
            tool_id = "toolu_" + base64.b32encode(hashlib.sha256(digest + b"tool").digest()).decode()[:24].lower()
            content.append({"type": "tool_use", "id": tool_id, "name": tool["name"], "input": tool_input})
            spent = count_text(preface) + tool_cost
            stop_reason = "tool_use"
            used_tool = True
    if not used_tool:
        length = min(natural_length, budget)
        if natural_length > budget:
            stop_reason = "max_tokens"
        content.append({"type": "text", "text": _text(rng, language, length)})
        spent = length

    searches, fetches, server_tools = _server_tool_use(request, rng)
    return Answer(
        content=tuple(content),
        output_tokens=spent + (thinking_tokens or 0),
        thinking_tokens=thinking_tokens,
        stop_reason=stop_reason,
        web_search_requests=searches,
        web_fetch_requests=fetches,
        server_tools=server_tools,
    )


def _thinking(request: MessagesRequest, rng: random.Random, language: str, digest: bytes) -> tuple[dict[str, Any], int]:
    """The thinking block and its tokens: 40–199, capped by budget_tokens (enabled) or half of max_tokens."""
    thinking = request.thinking or {}
    cap = thinking["budget_tokens"] if thinking.get("type") == "enabled" else request.max_tokens // 2
    tokens = min(40 + rng.randrange(160), cap)
    text = "" if thinking.get("display") == "omitted" else _text(rng, language, tokens)
    signature = base64.b64encode(hashlib.sha256(digest + b"signature").digest()).decode()
    return {"type": "thinking", "thinking": text, "signature": signature}, tokens


def _server_tool_use(request: MessagesRequest, rng: random.Random) -> tuple[int, int, bool]:
    """(web searches, web fetches, whether any server tool was given)."""
    searches = fetches = 0
    server_tools = False
    for definition in request.tools:
        kind = str(definition.get("type") or "")
        if kind.startswith("web_search"):
            server_tools = True
            searches += 1 + rng.randrange(3)
            max_uses = definition.get("max_uses")
            if isinstance(max_uses, int) and not isinstance(max_uses, bool):
                searches = min(searches, max_uses)
        elif kind.startswith("web_fetch"):
            server_tools = True
            fetches += 1 + rng.randrange(2)
    return searches, fetches, server_tools


def _last_user_text(request: MessagesRequest) -> str:
    for message in reversed(request.messages):
        if message.role != "user":
            continue
        parts: list[str] = []
        for block in message.blocks:
            if block.get("type") == "text":
                parts.append(str(block.get("text", "")))
            elif block.get("type") == "tool_result":
                inner = block.get("content")
                if isinstance(inner, str):
                    parts.append(inner)
                elif isinstance(inner, list):
                    parts.extend(str(b.get("text", "")) for b in inner if isinstance(b, Mapping))
        return "\n".join(parts)
    return ""


def _chosen_tool(request: MessagesRequest, user_text: str, rng: random.Random) -> Mapping[str, Any] | None:
    custom = [t for t in request.tools if is_custom_tool(t)]
    choice = (request.tool_choice or {}).get("type", "auto")
    if not custom or choice == "none":
        return None
    if choice == "tool":
        named = [t for t in custom if t.get("name") == (request.tool_choice or {}).get("name")]
        return named[0] if named else None
    if choice == "any":
        return custom[rng.randrange(len(custom))]
    lowered = user_text.lower()
    for tool in custom:
        if str(tool["name"]).lower() in lowered:
            return tool
    return custom[0] if _ASKS_FOR_TOOL.search(user_text) else None


def _preface(language: str, tool_name: str) -> str:
    return f"{MARKER} 도구 {tool_name} 호출합니다." if language == "ko" else f"{MARKER} Calling {tool_name}."


def _text(rng: random.Random, language: str, tokens: int) -> str:
    """'[simulated]' then words, exactly `tokens` tokens long by the base counter (just the marker if shorter)."""
    pieces = [MARKER]
    used = count_text(MARKER)
    vocabulary = _KOREAN if language == "ko" else _ENGLISH
    sentence_left = rng.randint(5, 12)
    opens_sentence = True
    for _ in range(tokens):  # every step adds at least one token, so this bound is never the limit
        if used >= tokens:
            break
        if sentence_left == 0:
            pieces[-1] += "."
            used += 1
            sentence_left = rng.randint(5, 12)
            opens_sentence = True
            continue
        word = rng.choice(vocabulary)
        if used + count_text(word) > tokens:
            word = _FILLER[language]
        if opens_sentence:
            word = word.capitalize()  # same letters, same token count
            opens_sentence = False
        pieces.append(word)
        used += count_text(word)
        sentence_left -= 1
    return " ".join(pieces)


def _example(schema: Any, name: str, depth: int) -> Any:
    """A value that satisfies the schema's basics: required properties only, first enum, minimums."""
    if not isinstance(schema, Mapping) or depth > _MAX_SCHEMA_DEPTH:
        return None
    for key in ("const", "default"):
        if key in schema:
            return schema[key]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            return _example(schema[key][0], name, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or (kind is None and "properties" in schema):
        properties = schema.get("properties")
        properties = properties if isinstance(properties, Mapping) else {}
        required = schema.get("required")
        required = required if isinstance(required, list) else []
        return {str(p): _example(properties.get(p, {}), str(p), depth + 1) for p in required}
    if kind == "array":
        count = schema.get("minItems", 0)
        count = count if isinstance(count, int) and 0 <= count <= 16 else 0
        return [_example(schema.get("items", {}), name, depth + 1) for _ in range(count)]
    if kind in ("integer", "number"):
        minimum = schema.get("minimum")
        value = minimum if isinstance(minimum, int | float) and not isinstance(minimum, bool) else 1
        return int(value) if kind == "integer" else float(value)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return f"simulated {name}"
