"""Model routing: one test per rule of the router, then the labelled set's accuracy and its hard invariant."""

import json
from pathlib import Path
from typing import Any

import pytest

from costgate.errors import ConfigurationError
from costgate.routing.router import RouteDecision, RoutePolicy, Tier, route

LABELLED = Path(__file__).resolve().parents[1] / "routing" / "labelled_requests.jsonl"
# Written blind to the rules, then used to generalise them.
DEVELOPMENT = Path(__file__).resolve().parents[1] / "routing" / "holdout_requests.jsonl"
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


def score_of(request: dict[str, Any]) -> int:
    reason = route(request, POLICY).reason
    return int(reason.split("(score ", 1)[1].split(";")[0].rstrip(")"))


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
        "How would I say 'your invoice is overdue' in German without sounding rude.",
        "What's the English word for the little plastic tip at the end of a shoelace, please.",
        "Give me the gist of this changelog for the team chat: faster search, new export button.",
        "Reply with exactly one word, yes or no: the parcel was delivered to the wrong address.",
        "Describe our refund policy in one sentence for the footer of the checkout page.",
        "Classify this ticket as billing, shipping or other: my parcel never arrived at all.",
        "Tag the sentiment of this review: the blender is loud but it crushes ice perfectly.",
        "Convert these dates to ISO 8601 format: March 3rd 2024, 4 July 2023, 2022/12/01.",
        "Turn this list into comma-separated values: red, green and blue, then cyan and magenta.",
        "Proofread the line for our menu board, please: 'Fresh bagles baked daly since 1998'.",
        "The invoice footer says 'net 30 EOM' and I wonder what does that actually mean for the due date.",
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
        "고객 안내문에 넣을 '잠시만 기다려 주세요'를 일본어로 바꿔 주세요.",
        "'납기일'은 영어로 뭐라고 해요, 메일에 써야 해서 여쭤봅니다.",
        "다음 공지의 요점만 알려 주세요: 내일 오전 9시부터 11시까지 서버 점검이 있습니다.",
        "아래 리뷰를 한 줄로 정리해 주세요: 배송은 느렸지만 품질은 아주 만족스럽습니다.",
        "이 문의를 배송, 환불, 기타 중 하나로 분류해 주세요: 상자가 찌그러져서 왔어요.",
        "아래 날짜들을 YYYY-MM-DD 형식으로 바꿔 주세요: 2024년 3월 5일, 24/4/7",
        "용어집에 넣을 '부분 환불'의 정의를 써 주세요. 상담원 교육 자료에 들어갑니다.",
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
        "Plan the migration of our customer database from MySQL to Postgres over the next quarter.",
        "Move the billing service to the new cluster with zero downtime for our customers.",
        "Find the root cause of the nightly export job failing at the same step every night.",
        "Either show this sorting routine is stable or give a counterexample with two equal keys.",
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
        "고객 데이터베이스를 MySQL에서 Postgres로 마이그레이션하는 작업 순서를 정해 주세요.",
        "정산 배치를 새 서버로 이관하는 작업 순서를 정리해 주세요.",
        "결제 서버를 무중단으로 새 클러스터에 옮기는 절차를 정리해 주세요.",
        "매일 밤 내보내기 작업이 같은 단계에서 멈추는 근본 원인을 찾아 주세요.",
        "이 정렬 함수가 안정 정렬이 아니라는 반례를 하나 들어 주세요.",
        "캐시를 컨테이너 메모리에 두는 방식의 트레이드오프를 정리해 주세요.",
    ],
)
def test_korean_complex_keywords_route_up(text: str) -> None:
    assert tier_of(body(text)) is Tier.COMPLEX


@pytest.mark.parametrize(
    ("text", "concept"),
    [
        ("List the main risks of moving our support team to a four-day week.", "risk"),
        ("Help me decide on keeping the free plan for students next year.", "decide"),
        ("Draft the new holiday rota for the warehouse and state your assumptions.", "justify"),
        ("Rank these five onboarding emails by how clearly they explain billing.", "prioritise"),
        ("Write a 6-month plan for growing our newsletter from 2k to 10k readers.", "plan"),
        ("Build a seating chart for the gala under these constraints from the venue.", "constraints"),
        ("Help me negotiate a longer payment term with our packaging supplier.", "negotiate"),
        ("Assess the onboarding checklist below for a new warehouse picker.", "evaluate"),
        ("Help me debug an intermittent failure in the nightly invoice export job.", "hard-bug"),
        ("Explain how the ledger keeps writes idempotent across retried requests.", "concurrency"),
        ("Give me the pros and cons of paying our contractors weekly instead of monthly.", "pros-cons"),
        ("사무실을 판교로 옮길 때의 위험 요소를 정리해 주세요. 직원 출퇴근도 고려해 주세요.", "ko:risk"),
        ("학생 무료 요금제를 유지할지 말지 결론을 내려 주세요. 내년 예산안에 들어갑니다.", "ko:decide"),
        ("창고 야간 근무 순번표를 새로 짜 주시고 그렇게 짠 근거도 같이 적어 주세요.", "ko:justify"),
        ("다음 분기 고객 지원 업무의 우선순위를 정리해 주세요. 인원은 네 명입니다.", "ko:prioritise"),
        ("뉴스레터 구독자를 늘리기 위한 6개월 실행 계획을 세워 주세요. 지금은 2천 명입니다.", "ko:plan"),
        ("행사장 측 제약을 반영해서 좌석 배치표를 만들어 주세요. 총 80석입니다.", "ko:constraints"),
        ("포장재 공급업체와 결제 기간 연장을 협상할 때 쓸 메일 초안을 써 주세요.", "ko:negotiate"),
        ("신입 물류 직원용 교육 자료를 검토하고 부족한 부분을 알려 주세요.", "ko:evaluate"),
        ("야간 송장 내보내기 작업이 간헐적으로 실패하는데 디버깅을 도와주세요.", "ko:hard-bug"),
        ("재시도 요청에서도 원장 기록의 멱등성이 어떻게 지켜지는지 설명해 주세요.", "ko:concurrency"),
        ("외주 인력에게 주급과 월급으로 지급할 때의 장단점을 정리해 주세요.", "ko:pros-cons"),
    ],
)
def test_each_hint_adds_one(text: str, concept: str) -> None:
    decision = route(body(text), POLICY)
    assert f"hints: {concept}" in decision.reason
    assert (score_of(body(text)), decision.tier) == (1, Tier.MEDIUM)


@pytest.mark.parametrize(
    "text",
    [
        "Should we bring payroll in-house? Weigh the risks, rank the options and justify the recommendation.",
        "급여 업무를 내부로 가져올지 위험 요소와 우선순위를 따져 보고, 근거와 함께 결론을 내려 주세요.",
    ],
)
def test_hints_add_up_to_complex(text: str) -> None:
    assert tier_of(body(text)) is Tier.COMPLEX


def test_a_hint_does_not_keep_a_simple_request_off_the_simple_tier() -> None:
    # Unlike a complex keyword, a hint only adds to the score: a spelling check stays SIMPLE.
    decision = route(body("맞춤법 검토 부탁드립니다: '내일 오전에 뵙겠읍니다. 자료는 미리 보내 드릴께요.'"), POLICY)
    assert decision.tier is Tier.SIMPLE
    assert "hints: ko:evaluate" in decision.reason
    assert tier_of(body("Define 'idempotency key' in one line for our API glossary.")) is Tier.SIMPLE


def test_simple_keywords_in_the_system_prompt_route_down() -> None:
    ticket = "My parcel never arrived and the tracking page has not changed since Monday."
    assert tier_of(body(ticket)) is Tier.MEDIUM
    system = "Classify the customer's message as billing, shipping or other. Reply with exactly one word."
    decision = route(body(ticket, system=system), POLICY)
    assert decision.tier is Tier.SIMPLE
    assert "simple: classify, one-line" in decision.reason
    korean = "택배가 월요일 이후로 조회가 안 되고 아직 도착하지 않았습니다. 확인 부탁드립니다."
    assert tier_of(body(korean)) is Tier.MEDIUM
    blocks = [{"type": "text", "text": "고객 문의를 배송, 환불, 기타 중 하나로 분류하세요."}]
    assert tier_of(body(korean, system=blocks)) is Tier.SIMPLE


def test_complex_keywords_in_the_system_prompt_do_not_count() -> None:
    system = "You are a solutions architect who designs data strategy for retailers."
    assert route(body(NEUTRAL_EN, system=system), POLICY).reason == "auto: medium (score 0)"


def test_only_the_opening_of_the_system_prompt_is_scanned() -> None:
    # Past its first 1,000 characters a system prompt is reference material, not the deployment's task.
    preamble = "You help the staff of our garden centre with their daily questions. " * 15  # 1,020 chars
    assert tier_of(body(NEUTRAL_EN, system=preamble + "Translate every message into English.")) is Tier.MEDIUM
    assert tier_of(body(NEUTRAL_EN, system="Translate every message into English. " + preamble)) is Tier.SIMPLE


def test_a_short_single_question_is_a_lookup() -> None:
    question = "Which terminal does the 7:40 flight to Osaka leave from at Incheon airport?"
    decision = route(body(question), POLICY)
    assert (decision.tier, decision.reason) == (Tier.SIMPLE, "auto: simple (score -1; short question)")
    assert tier_of(body("이번 달 마지막 날이 무슨 요일인지 알려 주실 수 있나요?")) is Tier.SIMPLE
    assert (
        tier_of(body("이번 달 마지막 날이 무슨 요일인지 알려 주실 수 있나요\uff1f")) is Tier.SIMPLE
    )  # a full-width "?"
    # Two questions, or a long one, are not a lookup.
    assert tier_of(body(question + " And is there a lounge near gate 12?")) is Tier.MEDIUM
    assert tier_of(body(NEUTRAL_EN + " Could you also keep it under a hundred words?")) is Tier.MEDIUM


def test_a_short_question_with_a_complex_keyword_is_not_a_lookup() -> None:
    assert tier_of(body("What are the trade-offs of caching prices in memory per container?")) is Tier.COMPLEX


@pytest.mark.parametrize(
    "text",
    [
        "Can you write a cover letter for a barista job at a small cafe?",
        "Could you draft a thank-you note to the volunteers from Saturday's beach cleanup?",
        "카페 바리스타 지원용 자기소개서를 써 줄 수 있나요?",
        "주말 봉사자들에게 보낼 감사 문자를 작성해 주실 수 있나요?",
    ],
)
def test_a_short_question_asking_for_something_written_is_not_a_lookup(text: str) -> None:
    assert route(body(text), POLICY).reason == "auto: medium (score 0)"


def test_a_format_is_simple_only_when_given_data_is_converted() -> None:
    assert tier_of(body("Change these prices to US currency format: 1234.5, 99, 0.5 and 12000.")) is Tier.SIMPLE
    assert tier_of(body("Write a short report in markdown format about our support queue this week.")) is Tier.MEDIUM


@pytest.mark.parametrize(
    "text",
    [
        "Explain what a CDN does, how it caches pages and why it makes sites faster for far-away users.",
        "CDN이 무엇이고, 페이지를 어떻게 캐시하며, 왜 멀리 있는 사용자에게 더 빠른지 설명해 주세요.",
    ],
)
def test_several_question_words_add_one(text: str) -> None:
    decision = route(body(text), POLICY)
    assert "3 question words" in decision.reason
    assert score_of(body(text)) == 1


def test_two_question_words_add_nothing() -> None:
    assert score_of(body("Explain what a CDN does and how it caches pages for our marketing team.")) == 0


@pytest.mark.parametrize(
    "items",
    [
        ["- Alice works Mondays", "- Bob works Tuesdays", "* Carol is off", "\u2022 Dan opens", "- Eve closes"],
        ["1. Alice works Mondays", "2. Bob works Tuesdays", "3) Carol is off", "4. Dan opens", "5. Eve closes"],
        ["8.1 Fees are annual", "8.2 Fees are net 30", "9.1 Either party", "a) the buyer", "(b) the seller"],
        ["제1조(목적) 계약", "제2조(범위) 매장", "제3조(기간) 1년", "제4조(대금) 월말", "제5조(해지) 30일"],
    ],
    ids=["bullets", "numbers", "clauses-and-letters", "korean-articles"],
)
def test_a_list_of_five_requirements_adds_one(items: list[str]) -> None:
    intro = "Draw up the weekly rota for our shop from these notes, one row per person:"
    decision = route(body(intro + "\n" + "\n".join(items)), POLICY)
    assert "5 list items" in decision.reason
    assert route(body(intro + "\n" + "\n".join(items[:4])), POLICY).reason == "auto: medium (score 0)"


def test_lines_of_numbers_are_not_list_items() -> None:
    phones_and_dates = ["010.5555.1234", "010 9876 5432", "+82 10-2222-3333", "2024-03-05 10:00", "1,234,567"]
    decimals = ["3.14159", "2.71828", "1.41421", "1.73205", "0.57721"]
    for lines in (phones_and_dates, decimals):
        text = "Tidy up these values for the spreadsheet:\n" + "\n".join(lines)
        assert "list items" not in route(body(text), POLICY).reason


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


def test_a_role_is_a_topic_not_a_complex_task() -> None:
    # "analyst", "designer" and "분석가" name people, not the analysing or designing the request asks for.
    assert tier_of(body("Write a job ad for a data analyst and a graphic designer at our agency, friendly tone.")) is (
        Tier.MEDIUM
    )
    assert tier_of(body("데이터 분석가 채용 공고를 친근한 말투로 써 주세요. 신입도 지원 가능합니다.")) is Tier.MEDIUM
    assert tier_of(body("Analyse our refund data and design a new dashboard for the support team.")) is Tier.COMPLEX


def test_short_prompt_routes_down() -> None:
    assert tier_of(body("Thanks, that fixed it!")) is Tier.SIMPLE
    assert tier_of(body("고마워요, 해결됐어요!")) is Tier.SIMPLE


def test_length_steps_raise_the_tier() -> None:
    paragraph = "The customer reports repeated failures when exporting invoices to CSV from the dashboard. "
    assert route(body(paragraph * 5), POLICY).reason == "auto: medium (score 0)"  # 450 chars
    assert route(body(paragraph * 6), POLICY).reason == "auto: medium (score 1; 540 chars)"  # +1
    assert tier_of(body(paragraph * 17)) is Tier.MEDIUM  # 1,530 chars: +1
    assert score_of(body(paragraph * 50)) == 2  # 4,500 chars
    assert tier_of(body(paragraph * 140)) is Tier.COMPLEX  # 12,600 chars: +3


def test_hangul_counts_double_for_length() -> None:
    text = "가" * 800  # 800 characters, 1,600 weighted
    assert "1600 chars" in route(body(text), POLICY).reason


def test_tools_raise_the_tier() -> None:
    long_neutral = NEUTRAL_EN * 20  # 1,560 chars: +1; one tool is a lookup and adds nothing
    assert route(body(long_neutral, tools=[tool("a")]), POLICY).reason == "auto: medium (score 1; 1560 chars)"
    assert tier_of(body(long_neutral, tools=[tool("a"), tool("b")])) is Tier.MEDIUM  # 2 tools: +1
    assert score_of(body(long_neutral, tools=[tool("a"), tool("b")])) == 2
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
    request["tools"] = [tool("ocr"), tool("crop")]
    assert tier_of(request) is Tier.COMPLEX  # +3


def test_long_conversations_raise_the_tier() -> None:
    turns = [{"role": "user" if i % 2 == 0 else "assistant", "content": "ok"} for i in range(11)]
    turns.append({"role": "user", "content": NEUTRAL_EN})
    decision = route({"model": "auto", "messages": turns, "tools": [tool("a"), tool("b")]}, POLICY)
    assert decision.tier is Tier.COMPLEX  # 12 turns +2, 2 tools +1
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
    decision = route(body("장애 시 위험을 줄이는 방안과 그 근거를 써 주세요. 우선순위도 매겨 주세요."), POLICY)
    assert decision.reason.isascii()
    assert "hints: ko:risk, ko:justify, ko:prioritise" in decision.reason


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


@pytest.mark.parametrize("path", [LABELLED, DEVELOPMENT], ids=["labelled", "development"])
def test_no_complex_request_is_routed_to_simple(path: Path) -> None:
    items = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    wrong = [item["id"] for item in items if item["label"] == "complex" and tier_of(item["body"]) is Tier.SIMPLE]
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
