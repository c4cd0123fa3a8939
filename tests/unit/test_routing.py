"""Model routing: one test per rule of costgate.routing, then the labelled set's accuracy and its hard invariant."""

import json
from pathlib import Path
from typing import Any

import pytest

from costgate.errors import ConfigurationError
from costgate.routing import RouteDecision, RoutePolicy, Tier, route

LABELLED = Path(__file__).resolve().parents[1] / "routing" / "labelled_requests.jsonl"
POLICY = RoutePolicy()
# A neutral prompt: no keyword, longer than the short-prompt rule, shorter than the first length step.
NEUTRAL_EN = "Write a short welcome message for new members of our customer community forum."
NEUTRAL_KO = "고객 커뮤니티 포럼에 새로 가입한 회원에게 보낼 환영 메시지를 써 주세요."
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="


def body(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "auto", "max_tokens": 512, "messages": [{"role": "user", "content": text}], **extra}


def tool(name: str) -> dict[str, Any]:
    return {"name": name, "description": name, "input_schema": {"type": "object"}}


def tier_of(request: dict[str, Any], policy: RoutePolicy = POLICY) -> Tier | None:
    return route(request, policy).tier


def test_neutral_prompt_is_medium_in_both_languages() -> None:
    assert tier_of(body(NEUTRAL_EN)) is Tier.MEDIUM
    assert tier_of(body(NEUTRAL_KO)) is Tier.MEDIUM


@pytest.mark.parametrize(
    "text",
    [
        "Translate this reply into French: thanks for your patience.",
        "Summarize the ticket below in one line please, the customer cannot log in.",
        "Define 'chargeback' for our glossary, one sentence only please.",
        "Fix the spelling in this sentence: 'recieve the pakage tommorow'.",
        "Rephrase this so it sounds less formal: 'Kindly remit payment.'",
        "What is a webhook and when would our customers need one?",
    ],
)
def test_english_simple_keywords_route_down(text: str) -> None:
    assert tier_of(body(text)) is Tier.SIMPLE


@pytest.mark.parametrize(
    "text",
    [
        "다음 안내문을 영어로 번역해 주세요: 배송이 하루 지연됩니다.",
        "아래 고객 문의 내용을 한 줄로 요약해 주세요. 로그인이 안 된다고 합니다.",
        "용어집에 넣을 '지불 거절'의 정의를 한 문장으로 써 주세요.",
        "맞춤법 확인 부탁드립니다: '내일 배송될 예정임니다.'",
        "'정산 주기'라는 말이 정확히 무슨 뜻인지 알려 주세요.",
    ],
)
def test_korean_simple_keywords_route_down(text: str) -> None:
    assert tier_of(body(text)) is Tier.SIMPLE


@pytest.mark.parametrize(
    "text",
    [
        "Analyze last quarter's refund reasons and tell me what changed.",
        "Design the data model for per-tenant budgets with monthly resets.",
        "Compare SQS and EventBridge for fanning out ledger events to consumers.",
        "Optimise this Lambda's cold start; it currently takes two seconds.",
        "Propose an architecture for multi-region failover of the gateway.",
        "Prove that the budget reservation can never go negative.",
        "What are the trade-offs of caching prices in memory per container?",
        "Draft a pricing strategy for our enterprise tier next year.",
    ],
)
def test_english_complex_keywords_route_up(text: str) -> None:
    assert tier_of(body(text)) is Tier.COMPLEX


@pytest.mark.parametrize(
    "text",
    [
        "지난 분기 환불 사유를 분석하고 무엇이 달라졌는지 알려 주세요.",
        "테넌트별 월간 예산의 데이터 모델을 설계해 주세요.",
        "원장 이벤트 전달에 SQS와 EventBridge를 비교해 주세요.",
        "이 람다 함수의 콜드 스타트를 최적화해 주세요. 지금 2초 걸립니다.",
        "게이트웨이의 멀티 리전 장애 조치 아키텍처를 제안해 주세요.",
        "예산 예약이 절대 음수가 되지 않는다는 것을 증명해 주세요.",
        "내년 엔터프라이즈 요금제의 가격 전략을 세워 주세요.",
    ],
)
def test_korean_complex_keywords_route_up(text: str) -> None:
    assert tier_of(body(text)) is Tier.COMPLEX


def test_complex_keyword_wins_over_simple_keyword() -> None:
    decision = route(body("Summarise both proposals and compare their costs over three years."), POLICY)
    assert decision.tier is Tier.COMPLEX
    assert "compare" in decision.reason


def test_complex_keyword_never_lands_on_simple_even_when_short() -> None:
    assert tier_of(body("Compare A and B.")) is Tier.MEDIUM
    assert tier_of(body("비교해 줘")) is Tier.MEDIUM


def test_english_keywords_match_at_word_boundaries_only() -> None:
    # "redesigned" must not count as "design"; "comparator" is not "compare".
    assert tier_of(body("The redesigned comparator widget ships today; write the release note for it.")) is Tier.MEDIUM


def test_short_prompt_routes_down() -> None:
    assert tier_of(body("Thanks, that fixed it!")) is Tier.SIMPLE
    assert tier_of(body("고마워요, 해결됐어요!")) is Tier.SIMPLE


def test_length_steps_raise_the_tier() -> None:
    paragraph = "The customer reports intermittent failures when exporting invoices to CSV from the dashboard. "
    assert tier_of(body(paragraph * 17)) is Tier.MEDIUM  # ~1,600 chars: +1
    assert tier_of(body(paragraph * 140)) is Tier.COMPLEX  # ~13,000 chars: +3


def test_hangul_counts_double_for_length() -> None:
    text = "가" * 800  # 800 characters, 1,600 weighted
    assert "1600 chars" in route(body(text), POLICY).reason


def test_tools_raise_the_tier() -> None:
    long_neutral = NEUTRAL_EN * 20  # ~1,600 chars: +1
    assert tier_of(body(long_neutral, tools=[tool("a"), tool("b")])) is Tier.MEDIUM  # 1-2 tools: +1
    decision = route(body(long_neutral, tools=[tool(n) for n in "abc"]), POLICY)
    assert decision.tier is Tier.COMPLEX  # 3 tools: +2
    assert "3 tools" in decision.reason


def test_images_and_documents_raise_the_tier() -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    document = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "x"}}
    content = [image, document, {"type": "text", "text": NEUTRAL_EN}]
    request = {"model": "auto", "max_tokens": 512, "messages": [{"role": "user", "content": content}]}
    decision = route(request, POLICY)
    assert decision.tier is Tier.MEDIUM  # +2
    assert "images" in decision.reason
    assert "documents" in decision.reason
    request["tools"] = [tool("ocr")]
    assert tier_of(request) is Tier.COMPLEX  # +3


def test_long_conversations_raise_the_tier() -> None:
    turns = [{"role": "user" if i % 2 == 0 else "assistant", "content": "ok"} for i in range(11)]
    turns.append({"role": "user", "content": NEUTRAL_EN})
    decision = route({"model": "auto", "messages": turns, "tools": [tool("a")]}, POLICY)
    assert decision.tier is Tier.COMPLEX  # 12 turns +2, 1 tool +1
    assert "12 turns" in decision.reason


def test_last_user_message_is_classified_not_earlier_ones() -> None:
    messages = [
        {"role": "user", "content": "Design a distributed ledger for us."},
        {"role": "assistant", "content": "Here is a design ..."},
        {"role": "user", "content": [{"type": "text", "text": "Now translate the intro into German, please."}]},
    ]
    assert tier_of({"model": "auto", "messages": messages}) is Tier.SIMPLE


def test_thinking_is_at_least_medium() -> None:
    decision = route(body("Translate 'hello' to Korean.", thinking={"type": "enabled", "budget_tokens": 2048}), POLICY)
    assert decision.tier is Tier.MEDIUM
    assert "thinking" in decision.reason
    assert tier_of(body("Translate 'hello' to Korean.", thinking={"type": "disabled"})) is Tier.SIMPLE


def test_floor_raises_simple_requests() -> None:
    decision = route(body("Translate 'hello' to Korean."), RoutePolicy(floor=Tier.MEDIUM))
    assert (decision.tier, decision.model) == (Tier.MEDIUM, "claude-sonnet-5-5")
    assert "floor medium" in decision.reason


def test_ceiling_caps_complex_requests() -> None:
    decision = route(body("Design a sharding strategy for the ledger."), RoutePolicy(ceiling=Tier.MEDIUM))
    assert (decision.tier, decision.model) == (Tier.MEDIUM, "claude-sonnet-5-5")
    assert "ceiling medium" in decision.reason


def test_tiers_map_to_the_policy_models() -> None:
    policy = RoutePolicy(
        models={Tier.SIMPLE: "claude-haiku-4-5", Tier.MEDIUM: "claude-sonnet-4-6", Tier.COMPLEX: "claude-opus-4-6"}
    )
    assert route(body("Translate 'hello' to Korean."), policy).model == "claude-haiku-4-5"
    assert route(body("Design a sharding strategy for the ledger."), POLICY).model == "claude-opus-5-5"


def test_explicit_model_is_kept() -> None:
    request = body("Design a sharding strategy for the ledger.", model="claude-haiku-4-5")
    assert route(request, POLICY) == RouteDecision(
        model="claude-haiku-4-5", tier=None, reason="explicit model", routed=False
    )


def test_override_explicit_routes_named_models() -> None:
    request = body("Translate 'hello' to Korean.", model="claude-opus-4-6")
    decision = route(request, RoutePolicy(override_explicit=True))
    assert (decision.model, decision.tier, decision.routed) == ("claude-haiku-5-5", Tier.SIMPLE, True)
    assert decision.reason.startswith("override: simple")


def test_reason_is_ascii_and_names_korean_keywords_by_concept() -> None:
    decision = route(body("결제 모듈 아키텍처를 설계하고 compare it with the current one.", tools=[tool("a")]), POLICY)
    assert decision.reason.isascii()
    assert "keywords: ko:architecture, ko:design, compare" in decision.reason


def test_route_is_deterministic_and_does_not_change_the_body() -> None:
    request = body("Compare the two refund policies.", tools=[tool("a")])
    snapshot = json.dumps(request, sort_keys=True)
    assert route(request, POLICY) == route(request, POLICY)
    assert json.dumps(request, sort_keys=True) == snapshot


@pytest.mark.parametrize(
    "kwargs",
    [
        {"floor": Tier.COMPLEX, "ceiling": Tier.MEDIUM},
        {"models": {Tier.SIMPLE: "claude-haiku-5-5", Tier.MEDIUM: "claude-sonnet-5-5"}},
        {"models": {Tier.SIMPLE: "gpt-4o", Tier.MEDIUM: "claude-sonnet-5-5", Tier.COMPLEX: "claude-opus-5-5"}},
    ],
    ids=["floor-above-ceiling", "missing-tier", "unpriced-model"],
)
def test_invalid_policy_is_a_configuration_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        RoutePolicy(**kwargs)


def load_labelled() -> list[dict[str, Any]]:
    return [json.loads(line) for line in LABELLED.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_labelled_set_is_large_balanced_and_bilingual() -> None:
    items = load_labelled()
    assert len(items) >= 60
    assert len({item["id"] for item in items}) == len(items)
    for label in ("simple", "medium", "complex"):
        assert sum(item["label"] == label for item in items) >= 18
    korean = sum(item["lang"] == "ko" for item in items)
    assert abs(korean - (len(items) - korean)) <= len(items) // 10
    assert all(item["body"]["model"] == "auto" for item in items)


def test_no_complex_request_is_routed_to_simple() -> None:
    wrong = [
        item["id"] for item in load_labelled() if item["label"] == "complex" and tier_of(item["body"]) is Tier.SIMPLE
    ]
    assert wrong == []


def test_labelled_accuracy_is_at_least_80_percent() -> None:
    items = load_labelled()
    misses = [
        (item["id"], tier.name.lower())
        for item in items
        if (tier := tier_of(item["body"])) is not None and tier.name.lower() != item["label"]
    ]
    accuracy = 1 - len(misses) / len(items)
    assert accuracy >= 0.8, f"routing accuracy {accuracy:.3f} < 0.8; misses: {misses}"
