"""Model routing: `model: "auto"` picks the cheapest tier that fits the request.

A pure function of the request body and a `RoutePolicy`: deterministic, no I/O, no clock.

Which requests are routed
    A request naming a model keeps it (`routed=False`, reason `explicit model`) unless the policy sets
    `override_explicit`; `model: "auto"` (or any model, under `override_explicit`) is classified.

How a request is classified
    The prompt is the text of the LAST user message (a string, or its `text` blocks joined). Keywords
    are matched case-insensitively in it: English as word stems at a word boundary, Korean as substrings
    (Korean attaches particles to the stem: 분석해, 요약하면). Simple keywords are also matched in the
    first 1,000 characters of `system`, where a deployment states its task ("classify the message;
    reply with one word"); what follows is reference material. Complex keywords and hints are not: a
    persona ("a financial analysis agent") describes the deployment, not this turn.

    Keywords name the task, not the topic: "design a schema" is hard, "what is a schema" is not, and
    "a data analyst" analyses nothing. A complex keyword is a task hard in itself; a hint is a weaker
    cue that adds up with other hints and with the prompt's shape (length, questions, listed
    requirements).

    ======================  ===========================================================  ============
    signal                  rule                                                         score
    ======================  ===========================================================  ============
    complex keyword         분석(not 분석가) 설계 비교 최적화 아키텍처 증명 반례 전략    +3 (one or
                            트레이드오프 마이그레이션 이관 무중단 근본 원인 근본적;      more)
                            analyse/analyze/analysis (not analyst), design(s/ed/ing)
                            (not designer), compare, optimise/optimize, architecture,
                            prove/proof/counterexample, trade-off, strategy,
                            migrate/migration, zero downtime, root cause
    hint                    risk: risk(s/y), failure mode, vulnerab-, attack(er),        +1 per
                            exploit, threat, abuse, expose/exposure; 리스크 위험 취약    concept
                            부작용 악용 장애(not 장애인)
                            decide: should we/I, is it worth, recommend-, decide;
                            결론 할지 말지 어느 쪽 의사결정
                            justify: justify/justification, rationale, reasoning,
                            assumption(s); 근거 타당성
                            prioritise: prioritise/prioritize/priorities, rank(s/ed/
                            ing), in what/which order; 우선순위
                            plan: an N-week/month/quarter/year plan, a phased/rollout/
                            execution/implementation/contingency plan; 단계별/실행/
                            이행/전환/이관/이전/개월/분기/대응/비상 계획
                            constraints: constraint(s), feasib-, satisfy/satisfiable;
                            제약 요건 조건 충족 만족하/만족해/만족시
                            negotiate: negotiate, leverage, push back, fallback,
                            counter-offer, redline; 협상 양보
                            evaluate: evaluate, assess, critique, audit; 평가 검토 검증
                            hard-bug: intermittent, flaky, race condition, deadlock,
                            memory leak; 간헐 경쟁 상태 교착 데드락 메모리 누수
                            concurrency: concurrency, consensus, idempotent/-cy,
                            partition(s/ed), linearizable, serializable, two-phase
                            commit, exactly-once, split brain; 동시성 정합성 멱등
                            분산 트랜잭션/락/시스템
                            pros-cons: pros and cons, pros/cons; 장단점
    simple keyword          translate: translate, how do/would/can I say, how to say,    -3, only
                            what's the (English) word/term for; 번역, 영어로/한국어로/   without a
                            일본어로/... 바꿔/옮겨, 뭐라고 해/말/불러                    complex one
                            summarise: summarise/summarize/summary, tl;dr, gist, in a
                            nutshell; 요약 요점 핵심만 간추려
                            define: define/definition; 정의
                            spell: spell(ing); rephrase/paraphrase; proofread; 맞춤법
                            띄어쓰기 교정
                            what-is: a prompt opening "what is"/"what's"; "what does
                            ... mean"; 뜻
                            one-line: in/on/to/into/as/with (exactly/just/only) one or
                            a single word/line/sentence; 한 줄로/줄만 한 문장으로/
                            문장만 한 단어로/단어만 한마디로 단답
                            classify: classify/classification, categorise/categorize,
                            sentiment; 분류
                            format: convert/change/turn/put ... to/into/in ... format,
                            reformat, comma/tab-separated, separated by commas;
                            형식으로/포맷으로/양식으로 바꿔/통일/변환/맞춰
    prompt length           weighted characters (a Hangul syllable counts 2, as it       < 40: -1
                            carries about two English letters' worth of meaning)         >= 500: +1
                                                                                         >= 4,000: +2
                                                                                         >= 12,000: +3
    short question          under 120 weighted characters with exactly one "?" (a        -1
                            lookup), unless it has a complex keyword or asks for
                            something to be written or built (write, draft, compose,
                            create, generate, build, implement; 작성 만들어 만들 수
                            구현 써 줘/주/줄 짜 줘/주/줄)
    several questions       question words in the prompt, each counted: how what which   >= 3: +1
                            whether why; 어떻게 어떤 어느 무엇 뭐 왜 얼마나 언제 어디
    listed requirements     lines opening with a bullet (- * •), a number (1. 2) 8.1),   >= 5: +1
                            a letter (a) (b)) or an article (제7조)
    tools                   number of entries in `tools` (one tool is a lookup; more     2: +1
                            make the request an agent's task)                            >= 3: +2
    images / documents      any `image` block anywhere in `messages`: +1; any            +1 each
                            `document` block: +1
    conversation length     number of entries in `messages`                              >= 6: +1
                                                                                         >= 12: +2
    extended thinking       `thinking.type` is enabled or adaptive                       +1
    ======================  ===========================================================  ============

    Score <= -1 is SIMPLE, 0..2 MEDIUM, >= 3 COMPLEX (`SIMPLE_MAX_SCORE`, `COMPLEX_MIN_SCORE`).
    Then, in order: a complex keyword or `thinking` enabled raises the tier to at least MEDIUM (a
    complex-keyword request never lands on SIMPLE, whatever else lowers its score; a hint only adds
    to the score); the result is clamped to the policy's [floor, ceiling]. The ceiling is the
    operator's explicit limit and wins over every rule.

The reason
    `RouteDecision.reason` is ASCII so it can travel in `x-costgate-route-reason`; Korean keywords are
    named by their English concept with a `ko:` prefix; the signals that scored are named, then any
    floor or ceiling applied, e.g.
    `auto: complex (score 7; keywords: ko:design, compare; hints: ko:risk; 700 chars; 3 tools)`.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from functools import cache
from types import MappingProxyType
from typing import Any

from costgate.errors import ConfigurationError, UnknownModelError
from costgate.pricing.prices import default_price_book

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
HINT_SCORE = 1
SIMPLE_KEYWORD_SCORE = -3
SYSTEM_SCAN_CHARS = 1_000
SHORT_PROMPT_CHARS = 40
SHORT_QUESTION_CHARS = 120
# (weighted characters, score): the highest threshold reached applies.
LENGTH_STEPS = ((12_000, 3), (4_000, 2), (500, 1))
MANY_QUESTION_WORDS = 3
MANY_LIST_ITEMS = 5
TOOL_STEPS = ((3, 2), (2, 1))
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


COMPLEX, HINT, SIMPLE, PRODUCE, QUESTION = "complex", "hint", "simple", "produce", "question"
# (kind, concept, alternatives): each alternative a regex of its own that opens with a literal letter or
# syllable (or `\d`), matched on casefolded text.
_ENGLISH: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    # The verb or the act, not the role: "a data analyst", "our designer" are topics.
    (COMPLEX, "analyse", (r"analy[sz](?:e|es|ed|ing|is)\b",)),
    (COMPLEX, "design", (r"design(?:s|ed|ing)?\b",)),
    (COMPLEX, "compare", (r"compar(?:e|es|ed|ing|ison|isons)\b",)),
    (COMPLEX, "optimise", (r"optimi[sz]\w*",)),
    (COMPLEX, "architecture", (r"architect\w*",)),
    (COMPLEX, "prove", (r"prov(?:e|es|ing)\b", r"proofs?\b", r"counter-?examples?\b")),
    (COMPLEX, "trade-off", (r"trade-?offs?\b",)),
    (COMPLEX, "strategy", (r"strateg\w*",)),
    (COMPLEX, "migrate", (r"migrat(?:e|es|ed|ing|ion|ions)\b", r"zero[- ]downtime\b")),
    (COMPLEX, "root-cause", (r"root[- ]caus(?:e|es)\b",)),
    # A symptom is a cue, not the task: "write the customer a reply about an intermittent error" is not hard.
    (
        HINT,
        "hard-bug",
        (r"intermittent\w*", r"flaky\b", r"race conditions?\b", r"deadlock\w*", r"memory leaks?\b"),
    ),
    (
        HINT,
        "risk",
        (
            r"risk(?:s|y)?\b",
            r"failure modes?\b",
            r"vulnerab\w*",
            r"attack(?:s|er|ers)?\b",
            r"exploit\w*",
            r"threats?\b",
            r"abus(?:e|ed)\b",
            r"expos(?:e|es|ed|ure)\b",
        ),
    ),
    (HINT, "decide", (r"should (?:we|i)\b", r"is it worth\b", r"recommend\w*", r"decid(?:e|es|ing)\b")),
    (HINT, "justify", (r"justif(?:y|ied|ication)\b", r"rationale\b", r"reasoning\b", r"assumptions?\b")),
    (HINT, "prioritise", (r"prioriti[sz]\w*", r"priorities\b", r"rank(?:s|ed|ing)?\b", r"in (?:what|which) order\b")),
    (
        HINT,
        "plan",
        (
            r"\d+[- ](?:week|month|quarter|year) plans?\b",
            *(
                rf"{kind} plans?\b"
                for kind in ("phased", "rollout", "roll-out", "execution", "implementation", "contingency")
            ),
        ),
    ),
    (HINT, "constraints", (r"constraints?\b", r"feasib\w*", r"satisf(?:y|ies|ied|ying|iable)\b")),
    (
        HINT,
        "negotiate",
        (r"negotiat\w*", r"leverage\b", r"push(?:ing)? back\b", r"fallbacks?\b", r"counter-?offers?\b", r"redlin\w*"),
    ),
    (HINT, "evaluate", (r"evaluat\w*", r"assess\w*", r"critiqu\w*", r"audit(?:s|ed|ing)?\b")),
    (
        HINT,
        "concurrency",
        (
            r"concurren\w*",
            r"consensus\b",
            r"idempoten\w*",
            r"partition(?:s|ed)?\b",
            r"linearizab\w*",
            r"serializab\w*",
            r"two-phase commit\b",
            r"exactly-once\b",
            r"split[- ]brain\b",
        ),
    ),
    (HINT, "pros-cons", (r"pros (?:and|&) cons\b", r"pros/cons\b")),
    (
        SIMPLE,
        "translate",
        (
            r"translat\w*",
            r"how (?:do|would|could|can|should) (?:i|you|we) say\b",
            r"how to say\b",
            r"what(?:'s| is) the (?:\w+ )?(?:word|term|phrase) for\b",
        ),
    ),
    (SIMPLE, "summarise", (r"summar(?:ise|ize|ised|ized|ising|izing|y)\b", r"tl;?dr\b", r"gist\b", r"in a nutshell\b")),
    (SIMPLE, "define", (r"defin(?:e|ition|itions)\b",)),
    (SIMPLE, "spell", (r"spell(?:ing|ed)?\b",)),
    (SIMPLE, "rephrase", (r"rephras\w*", r"paraphras\w*")),
    (SIMPLE, "proofread", (r"proofread\w*",)),
    (SIMPLE, "what-is", (r"what\s+does\b.{0,60}\bmean\b",)),
    (
        SIMPLE,
        "one-line",
        tuple(
            rf"{preposition} (?:exactly |just |only )?(?:one|a single) (?:word|line|sentence)s?\b"
            for preposition in ("in", "on", "to", "into", "as", "with")
        ),
    ),
    (SIMPLE, "classify", (r"classif(?:y|ies|ied|ication)\b", r"categori[sz](?:e|es|ed)\b", r"sentiment\b")),
    (
        SIMPLE,
        "format",
        (
            # A conversion of given data, not "write a report in markdown format".
            *(
                rf"{verb} (?:\S+ ){{0,3}}(?:in|into|to) (?:\S+ ){{0,3}}format\b"
                for verb in ("convert", "change", "turn", "put")
            ),
            r"reformat\w*",
            r"(?:comma|tab|semicolon)[- ]separated\b",
            r"separated by (?:commas|tabs|semicolons)\b",
        ),
    ),
    # A request to write or build something: a short question asking for one is not a lookup.
    (
        PRODUCE,
        "produce",
        (r"writ(?:e|ing)\b", r"draft\b", r"compose\b", r"create\b", r"generate\b", r"build\b", r"implement\b"),
    ),
    (QUESTION, "question", (r"how\b", r"what\b", r"which\b", r"whether\b", r"why\b")),
)
# A definitional question opens the prompt; "what's going wrong" later in a bug report is not one.
_WHAT_IS_RE = re.compile(r"\s*what(?:\s+is|'s)\b")
# Korean: matched anywhere, because particles attach to the stem.
_TARGET_LANGUAGES = ("영", "한국", "일본", "중국", "스페인", "프랑스", "독일", "베트남", "태국", "러시아", "이탈리아")
_KOREAN: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (COMPLEX, "ko:analyse", ("분석(?!가)",)),
    (COMPLEX, "ko:design", ("설계",)),
    (COMPLEX, "ko:compare", ("비교",)),
    (COMPLEX, "ko:optimise", ("최적화",)),
    (COMPLEX, "ko:architecture", ("아키텍처",)),
    (COMPLEX, "ko:prove", ("증명", "반례")),
    (COMPLEX, "ko:strategy", ("전략",)),
    (COMPLEX, "ko:trade-off", ("트레이드 ?오프",)),
    (COMPLEX, "ko:migrate", ("마이그레이션", "이관", "무중단")),
    (COMPLEX, "ko:root-cause", ("근본 ?원인", "근본적")),
    (HINT, "ko:hard-bug", ("간헐", "경쟁 ?상태", "교착", "데드락", "메모리 ?누수")),
    (HINT, "ko:risk", ("리스크", "위험", "취약", "부작용", "악용", "장애(?!인)")),
    (HINT, "ko:decide", ("결론", "할지 말지", "어느 쪽", "의사 ?결정")),
    (HINT, "ko:justify", ("근거", "타당성")),
    (HINT, "ko:prioritise", ("우선 ?순위",)),
    (
        HINT,
        "ko:plan",
        tuple(
            f"{kind} ?계획"
            for kind in ("단계별", "실행", "이행", "전환", "이관", "이전", "개월", "분기", "대응", "비상")
        ),
    ),
    (HINT, "ko:constraints", ("제약", "요건", "조건", "충족", "만족(?:하|해|시)")),
    (HINT, "ko:negotiate", ("협상", "양보")),
    (HINT, "ko:evaluate", ("평가", "검토", "검증")),
    (HINT, "ko:concurrency", ("동시성", "정합성", "멱등", "분산 ?(?:트랜잭션|락|시스템)")),
    (HINT, "ko:pros-cons", ("장단점",)),
    (
        SIMPLE,
        "ko:translate",
        (
            "번역",
            *(f"{language}어로 ?(?:바꾸|바꿔|옮기|옮겨)" for language in _TARGET_LANGUAGES),
            "뭐라고 ?(?:해|하|말|부르|불러)",
        ),
    ),
    (SIMPLE, "ko:summarise", ("요약", "요점", "핵심만", "간추")),
    (SIMPLE, "ko:define", ("정의",)),
    (SIMPLE, "ko:spell", ("맞춤법", "띄어쓰기", "교정")),
    (SIMPLE, "ko:meaning", ("뜻",)),
    (SIMPLE, "ko:one-line", ("한 ?(?:줄로|줄만|문장으로|문장만|단어로|단어만)", "한마디로", "단답")),
    (SIMPLE, "ko:classify", ("분류",)),
    (SIMPLE, "ko:format", tuple(f"{noun}으로 ?(?:바꾸|바꿔|통일|변환|맞춰|맞추)" for noun in ("형식", "포맷", "양식"))),
    (PRODUCE, "produce", ("작성", "만들어", "만들 수", "구현", "써 ?(?:주|줘|줄)", "짜 ?(?:주|줘|줄)")),
    (QUESTION, "question", ("어떻게", "어떤", "어느", "무엇", "뭐", "왜", "얼마나", "언제", "어디")),
)


def _scanner(table: tuple[tuple[str, str, tuple[str, ...]], ...], boundary: str) -> re.Pattern[str]:
    """One regex for a whole table, its alternatives grouped under their first character, so that at each
    position the engine tries only the few opening with the character there (flat, or with a named group
    per concept, the scan took two to four times as long)."""
    groups: dict[str, list[str]] = {}
    for _, _, alternatives in table:
        for alternative in alternatives:
            first = _first(alternative)
            groups.setdefault(first, []).append(alternative[len(first) :])
    parts = [f"{first}(?:{'|'.join(rests)})" if first else "|".join(rests) for first, rests in groups.items()]
    return re.compile(boundary + "(?:" + "|".join(parts) + ")")


def _first(alternative: str) -> str:
    """The literal first character of an alternative, or "" for one opening with a class ("a 6-month plan")."""
    return alternative[0] if alternative[0].isalnum() else ""


def _by_first_character(
    *tables: tuple[tuple[str, str, tuple[str, ...]], ...],
) -> dict[str, list[tuple[str, str, re.Pattern[str]]]]:
    index: dict[str, list[tuple[str, str, re.Pattern[str]]]] = {}
    for table in tables:
        for kind, concept, alternatives in table:
            for alternative in alternatives:
                index.setdefault(_first(alternative), []).append((kind, concept, re.compile(alternative)))
    return index


@dataclass(frozen=True)
class _Scanners:
    english: re.Pattern[str]
    korean: re.Pattern[str]
    # A matched text's concept is that of the first alternative, in table order, matching all of it; only the
    # alternatives opening with the text's first character are tried.
    alternatives: dict[str, list[tuple[str, str, re.Pattern[str]]]]


@cache
def _scanners() -> _Scanners:
    # Compiled on the first routed request, not at import: ~220 patterns cost ~50 ms of every cold start, and
    # a request that names its model (and no policy overrides it) never reads them.
    return _Scanners(_scanner(_ENGLISH, r"\b"), _scanner(_KOREAN, ""), _by_first_character(_ENGLISH, _KOREAN))


_HANGUL_RE = re.compile("[\uac00-\ud7a3]")
# After a newline (the text is scanned with one in front): a bullet, a number ("3.", "2)", "8.1"),
# a letter ("a)", "(b)") or a Korean article ("제7조"), then a space or an opening parenthesis.
_LIST_ITEM_RE = re.compile(
    r"\n[ \t]*(?:[-*\u2022]|\d{1,2}(?:\.\d{1,2})*[.)]|\d{1,2}(?:\.\d{1,2})+|\(?[a-z]\)|\(\d{1,2}\)|제 ?\d{1,3} ?조)"
    r"[ \t(]"
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
    hangul = len(_HANGUL_RE.findall(prompt))
    text = prompt.casefold()
    hits, asked = _keywords(text, korean=hangul > 0)
    if _WHAT_IS_RE.match(text) and "what-is" not in hits[SIMPLE]:
        hits[SIMPLE].insert(0, "what-is")
    if system := _text(body.get("system"))[:SYSTEM_SCAN_CHARS].casefold():
        system_hits, _ = _keywords(system, korean=_HANGUL_RE.search(system) is not None)
        hits[SIMPLE] += [concept for concept in system_hits[SIMPLE] if concept not in hits[SIMPLE]]

    thinking = body.get("thinking")
    thinking_on = isinstance(thinking, Mapping) and thinking.get("type") in ("enabled", "adaptive")
    scored = [
        *_keyword_signals(hits),
        *_prompt_signals(prompt, len(prompt) + hangul, asked, lookup=not (hits[COMPLEX] or hits[PRODUCE])),
        *_request_signals(body, messages),
    ]
    if thinking_on:
        scored.append((THINKING_SCORE, "thinking"))
    return sum(points for points, _ in scored), bool(hits[COMPLEX]) or thinking_on, [signal for _, signal in scored]


def _keyword_signals(hits: Mapping[str, list[str]]) -> list[tuple[int, str]]:
    scored: list[tuple[int, str]] = []
    if hits[COMPLEX]:
        scored.append((COMPLEX_KEYWORD_SCORE, "keywords: " + ", ".join(hits[COMPLEX])))
    elif hits[SIMPLE]:
        scored.append((SIMPLE_KEYWORD_SCORE, "simple: " + ", ".join(hits[SIMPLE])))
    if hits[HINT]:
        scored.append((HINT_SCORE * len(hits[HINT]), "hints: " + ", ".join(hits[HINT])))
    return scored


def _prompt_signals(prompt: str, length: int, asked: int, *, lookup: bool) -> list[tuple[int, str]]:
    """Length, the number of questions and of list items; `length` is weighted (Hangul counts 2), and a
    short single question counts as a lookup only if `lookup` (it asks for nothing to be written or built,
    and no complex keyword says otherwise)."""
    scored: list[tuple[int, str]] = []
    if length < SHORT_PROMPT_CHARS:
        scored.append((-1, "short prompt"))
    elif lookup and length < SHORT_QUESTION_CHARS and prompt.count("?") + prompt.count("\uff1f") == 1:
        scored.append((-1, "short question"))
    elif length_score := _step(length, LENGTH_STEPS):
        scored.append((length_score, f"{length} chars"))
    if asked >= MANY_QUESTION_WORDS:
        scored.append((1, f"{asked} question words"))
    if (items := len(_LIST_ITEM_RE.findall("\n" + prompt))) >= MANY_LIST_ITEMS:
        scored.append((1, f"{items} list items"))
    return scored


def _request_signals(body: Mapping[str, Any], messages: list[Any]) -> list[tuple[int, str]]:
    """Tools, images and documents, and the length of the conversation."""
    scored: list[tuple[int, str]] = []
    tools = body.get("tools")
    tool_count = len(tools) if isinstance(tools, list) else 0
    if tool_score := _step(tool_count, TOOL_STEPS):
        scored.append((tool_score, f"{tool_count} tools"))
    block_types = _block_types(messages)
    scored += [(1, f"{kind}s") for kind in ("image", "document") if kind in block_types]
    if turn_score := _step(len(messages), TURN_STEPS):
        scored.append((turn_score, f"{len(messages)} turns"))
    return scored


def _keywords(text: str, *, korean: bool) -> tuple[dict[str, list[str]], int]:
    """The keyword concepts of each kind in casefolded text, each once in order of appearance; and the
    number of question words."""
    scanners = _scanners()
    matches = list(scanners.english.finditer(text))
    if korean:
        matches += scanners.korean.finditer(text)
    hits: dict[str, list[str]] = {COMPLEX: [], HINT: [], SIMPLE: [], PRODUCE: []}
    asked = 0
    for _, kind, concept in sorted(
        (match.start(), *_concept(scanners.alternatives, match.group())) for match in matches
    ):
        if kind == QUESTION:
            asked += 1
        elif concept not in hits[kind]:
            hits[kind].append(concept)
    return hits, asked


def _concept(alternatives: dict[str, list[tuple[str, str, re.Pattern[str]]]], matched: str) -> tuple[str, str]:
    candidates = (*alternatives.get(matched[0], ()), *alternatives.get("", ()))
    return next((kind, concept) for kind, concept, pattern in candidates if pattern.fullmatch(matched))


def _last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, Mapping) and message.get("role") == "user":
            return _text(message.get("content"))
    return ""


def _text(content: Any) -> str:
    """A string, or the `text` blocks of a content list joined by newlines."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            block["text"]
            for block in content
            if isinstance(block, Mapping) and block.get("type") == "text" and isinstance(block.get("text"), str)
        )
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
