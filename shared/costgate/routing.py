"""Model routing: `model: "auto"` picks the cheapest tier that fits the request.

A pure function of the request body and a `RoutePolicy`: deterministic, no I/O, no clock.

Which requests are routed
    A request naming a model keeps it (`routed=False`, reason `explicit model`) unless the policy sets
    `override_explicit`; `model: "auto"` (or any model, under `override_explicit`) is classified.

How a request is classified
    The prompt is the text of the LAST user message (a string, or its `text` blocks joined). Keywords
    are matched case-insensitively in it: English as word stems at a word boundary, Korean as substrings
    (Korean attaches particles to the stem: 분석해, 요약하면).

    ======================  ===========================================================  =========
    signal                  rule                                                          score
    ======================  ===========================================================  =========
    complex keyword         분석 설계 비교 최적화 아키텍처 증명 전략; analyse/analyze,      +3 (one or
                            design, compare, optimise/optimize, architecture, prove/       more)
                            proof, trade-off, strategy (and their inflections)
    simple keyword          번역 요약 정의 맞춤법 뜻 교정 띄어쓰기; translate, summarise/    -3, only
                            summarize/summary, define/definition, spell, rephrase,         without a
                            paraphrase, proofread; a prompt opening "what is"/"what's";   complex one
                            "what does ... mean"
    prompt length           weighted characters (a Hangul syllable counts 2, as it         < 40: -1
                            carries about two English letters' worth of meaning)           >= 1,500: +1
                                                                                           >= 4,000: +2
                                                                                           >= 12,000: +3
    tools                   number of entries in `tools`                                   1-2: +1
                                                                                           >= 3: +2
    images / documents      any `image` block anywhere in `messages`: +1; any             +1 each
                            `document` block: +1
    conversation length     number of entries in `messages`                                >= 6: +1
                                                                                           >= 12: +2
    extended thinking       `thinking.type` is enabled or adaptive                         +1
    ======================  ===========================================================  =========

    Score <= -1 is SIMPLE, 0..2 MEDIUM, >= 3 COMPLEX (`SIMPLE_MAX_SCORE`, `COMPLEX_MIN_SCORE`).
    Then, in order: a complex keyword or `thinking` enabled raises the tier to at least MEDIUM (a
    complex-keyword request never lands on SIMPLE, whatever else lowers its score); the result is
    clamped to the policy's [floor, ceiling]. The ceiling is the operator's explicit limit and wins
    over every rule.

The reason
    `RouteDecision.reason` is ASCII so it can travel in `x-costgate-route-reason`; Korean keywords are
    named by their English concept with a `ko:` prefix, e.g.
    `auto: complex (score 5; keywords: ko:design, compare; 3 tools)`.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from types import MappingProxyType
from typing import Any

from costgate.errors import ConfigurationError, UnknownModelError
from costgate.pricing import default_price_book

AUTO_MODEL = "auto"


class Tier(IntEnum):
    SIMPLE = 1
    MEDIUM = 2
    COMPLEX = 3


DEFAULT_MODELS: Mapping[Tier, str] = MappingProxyType(
    {Tier.SIMPLE: "claude-haiku-5-5", Tier.MEDIUM: "claude-sonnet-5-5", Tier.COMPLEX: "claude-opus-5-5"}
)

SIMPLE_MAX_SCORE = -1
COMPLEX_MIN_SCORE = 3
COMPLEX_KEYWORD_SCORE = 3
SIMPLE_KEYWORD_SCORE = -3
SHORT_PROMPT_CHARS = 40
# (weighted characters, score): the highest threshold reached applies.
LENGTH_STEPS = ((12_000, 3), (4_000, 2), (1_500, 1))
TOOL_STEPS = ((3, 2), (1, 1))
TURN_STEPS = ((12, 2), (6, 1))
THINKING_SCORE = 1


@dataclass(frozen=True)
class RoutePolicy:
    """A feature's routing: the model for each tier, the allowed tier range, and whether named models are routed."""

    models: Mapping[Tier, str] = field(default_factory=lambda: DEFAULT_MODELS)
    floor: Tier = Tier.SIMPLE
    ceiling: Tier = Tier.COMPLEX
    override_explicit: bool = False

    def __post_init__(self) -> None:
        if self.floor > self.ceiling:
            raise ConfigurationError(
                f"route policy floor {self.floor.name.lower()} is above its ceiling {self.ceiling.name.lower()}"
            )
        missing = [tier.name.lower() for tier in Tier if tier not in self.models]
        if missing:
            raise ConfigurationError(f"route policy has no model for tier(s): {', '.join(missing)}")
        book = default_price_book()
        for tier in Tier:
            try:
                book.resolve(self.models[tier])
            except UnknownModelError as exc:
                raise ConfigurationError(
                    f"route policy maps tier {tier.name.lower()} to {self.models[tier]!r}, which has no price"
                ) from exc
        object.__setattr__(self, "models", MappingProxyType(dict(self.models)))


@dataclass(frozen=True)
class RouteDecision:
    model: str
    tier: Tier | None
    reason: str
    routed: bool


# English: (kind, concept, pattern), each pattern anchored at a word start by the one `\b` in front of
# the alternation, so the scan rejects mid-word positions at once (unanchored, routing took ~3x as long).
_ENGLISH: tuple[tuple[str, str, str], ...] = (
    ("complex", "analyse", r"analy[sz]\w*"),
    ("complex", "design", r"design\w*"),
    ("complex", "compare", r"compar(?:e|es|ed|ing|ison|isons)\b"),
    ("complex", "optimise", r"optimi[sz]\w*"),
    ("complex", "architecture", r"architect\w*"),
    ("complex", "prove", r"prov(?:e|es|ing)\b|proofs?\b"),
    ("complex", "trade-off", r"trade-?offs?\b"),
    ("complex", "strategy", r"strateg\w*"),
    ("simple", "translate", r"translat\w*"),
    ("simple", "summarise", r"summar(?:ise|ize|ised|ized|ising|izing|y)\b|tl;?dr\b"),
    ("simple", "define", r"defin(?:e|ition|itions)\b"),
    ("simple", "spell", r"spell(?:ing|ed)?\b"),
    ("simple", "rephrase", r"(?:re|para)phras\w*"),
    ("simple", "proofread", r"proofread\w*"),
    ("simple", "what-is", r"what\s+does\b.{0,60}\bmean\b"),
)
# A definitional question opens the prompt; "what's going wrong" later in a bug report is not one.
_WHAT_IS_RE = re.compile(r"\s*what(?:\s+is|'s)\b")
# Korean: (kind, concept, substrings), matched anywhere because particles attach to the stem.
_KOREAN: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("complex", "ko:analyse", ("분석",)),
    ("complex", "ko:design", ("설계",)),
    ("complex", "ko:compare", ("비교",)),
    ("complex", "ko:optimise", ("최적화",)),
    ("complex", "ko:architecture", ("아키텍처",)),
    ("complex", "ko:prove", ("증명",)),
    ("complex", "ko:strategy", ("전략",)),
    ("simple", "ko:translate", ("번역",)),
    ("simple", "ko:summarise", ("요약",)),
    ("simple", "ko:define", ("정의",)),
    ("simple", "ko:spell", ("맞춤법", "띄어쓰기", "교정")),
    ("simple", "ko:meaning", ("뜻",)),
)
_GROUPS = {f"k{i}": (kind, concept) for i, (kind, concept, _) in enumerate(_ENGLISH)}
_ENGLISH_RE = re.compile(
    r"\b(?:" + "|".join(f"(?P<k{i}>{pattern})" for i, (_, _, pattern) in enumerate(_ENGLISH)) + ")"
)


def route(body: Mapping[str, Any], policy: RoutePolicy) -> RouteDecision:
    """The model a request goes to, and why; the request itself is never changed."""
    requested = body.get("model")
    if requested != AUTO_MODEL and not policy.override_explicit:
        return RouteDecision(model=str(requested), tier=None, reason="explicit model", routed=False)

    score, at_least_medium, signals = _classify(body)
    tier = Tier.SIMPLE if score <= SIMPLE_MAX_SCORE else Tier.COMPLEX if score >= COMPLEX_MIN_SCORE else Tier.MEDIUM
    if at_least_medium:
        tier = max(tier, Tier.MEDIUM)
    clamped = min(max(tier, policy.floor), policy.ceiling)
    if clamped > tier:
        signals.append(f"floor {clamped.name.lower()}")
    elif clamped < tier:
        signals.append(f"ceiling {clamped.name.lower()}")

    prefix = "auto" if requested == AUTO_MODEL else "override"
    reason = f"{prefix}: {clamped.name.lower()} (score {score}" + "".join(f"; {s}" for s in signals) + ")"
    return RouteDecision(model=policy.models[clamped], tier=clamped, reason=reason, routed=True)


def _classify(body: Mapping[str, Any]) -> tuple[int, bool, list[str]]:
    """(score, whether the tier must be at least MEDIUM, the ASCII signals behind the score)."""
    messages = body.get("messages")
    messages = messages if isinstance(messages, list) else []
    prompt = _last_user_text(messages)
    complex_hits, simple_hits = _keywords(prompt)

    score = 0
    signals: list[str] = []
    if complex_hits:
        score += COMPLEX_KEYWORD_SCORE
        signals.append("keywords: " + ", ".join(complex_hits))
    elif simple_hits:
        score += SIMPLE_KEYWORD_SCORE
        signals.append("simple: " + ", ".join(simple_hits))

    length = len(prompt) + sum(1 for ch in prompt if "\uac00" <= ch <= "\ud7a3")
    if length < SHORT_PROMPT_CHARS:
        score -= 1
        signals.append("short prompt")
    elif length_score := _step(length, LENGTH_STEPS):
        score += length_score
        signals.append(f"{length} chars")

    tools = body.get("tools")
    if tool_count := len(tools) if isinstance(tools, list) else 0:
        score += _step(tool_count, TOOL_STEPS)
        signals.append(f"{tool_count} tool" + ("s" if tool_count > 1 else ""))

    block_types = _block_types(messages)
    for kind in ("image", "document"):
        if kind in block_types:
            score += 1
            signals.append(f"{kind}s")

    if turn_score := _step(len(messages), TURN_STEPS):
        score += turn_score
        signals.append(f"{len(messages)} turns")

    thinking = body.get("thinking")
    thinking_on = isinstance(thinking, Mapping) and thinking.get("type") in ("enabled", "adaptive")
    if thinking_on:
        score += THINKING_SCORE
        signals.append("thinking")
    return score, bool(complex_hits) or thinking_on, signals


def _keywords(prompt: str) -> tuple[list[str], list[str]]:
    """The complex and the simple keyword concepts in the prompt, each once, in order of appearance."""
    text = prompt.casefold()
    found: list[tuple[int, str, str]] = [
        (match.start(), *_GROUPS[match.lastgroup or ""]) for match in _ENGLISH_RE.finditer(text)
    ]
    if _WHAT_IS_RE.match(text):
        found.append((0, "simple", "what-is"))
    for kind, concept, needles in _KOREAN:
        positions = [pos for needle in needles if (pos := text.find(needle)) >= 0]
        if positions:
            found.append((min(positions), kind, concept))
    hits: dict[str, list[str]] = {"complex": [], "simple": []}
    for _, kind, concept in sorted(found):
        if concept not in hits[kind]:
            hits[kind].append(concept)
    return hits["complex"], hits["simple"]


def _last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, Mapping) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return "\n".join(
                    block["text"]
                    for block in content
                    if isinstance(block, Mapping) and block.get("type") == "text" and isinstance(block.get("text"), str)
                )
            return ""
    return ""


def _block_types(messages: list[Any]) -> set[str]:
    types: set[str] = set()
    for message in messages:
        content = message.get("content") if isinstance(message, Mapping) else None
        if isinstance(content, list):
            types.update(str(block.get("type")) for block in content if isinstance(block, Mapping))
    return types


def _step(value: int, steps: tuple[tuple[int, int], ...]) -> int:
    return next((score for threshold, score in steps if value >= threshold), 0)
