"""Guards: a cached question may serve a new one only when no material difference separates them."""

import pytest

from costgate.cache.guards import material_difference

SAME_QUESTION = [
    # The paraphrase: particles and question endings are not content.
    ("파이썬이란?", "파이썬이 뭔가요?"),
    ("환불은 어떻게 하나요?", "환불 절차 알려주세요"),
    ("비밀번호 재설정 방법", "비밀번호를 재설정하려면 어떻게 해야 하나요?"),
    ("파이썬 설치 방법", "파이썬을 설치하는 법"),
    ("로그인이 안돼요", "로그인 안 돼요"),
    ("결제가 되지 않아요", "결제가 안 돼요"),
    ("How do I reset my password?", "how can I reset my password"),
    ("How do I install Python 3.11?", "how to install python 3.11"),
    ("A man is playing a guitar.", "A man plays the guitar."),
    ("What are the opening hours?", "what are the opening hours"),
    ("price of 48,213 won", "price of 48213 won"),
    ("3만 원", "30000원"),
    ("twenty-five apples", "25 apples"),
    ("meeting on 2024-05-01", "meeting on May 1st, 2024"),
    ("2024년 5월 1일 회의", "2024-05-01 회의"),
    ("meeting at 3pm", "meeting at 15:00"),
    ("오후 3시 회의", "회의 15:00"),
    ("SKU-4411A price", "sku4411a price"),
    ("한 남자가 춤을 추고 있다.", "남자가 춤을 추고 있다."),
    ("One man is dancing", "A man is dancing"),
    ("What is 2+2?", "what's 2 + 2"),
    # Obligation said two ways; -어야 alone is a condition, not an obligation.
    ("Must I book in advance?", "Do I have to book in advance?"),
    ("꼭 예약해야 하나요?", "꼭 예약해야 돼요?"),
    ("회원가입을 해야 구매할 수 있나요?", "회원가입 해야 구매 가능한가요?"),
]


@pytest.mark.parametrize(("question", "candidate"), SAME_QUESTION)
def test_paraphrases_have_no_material_difference(question: str, candidate: str) -> None:
    # Given two wordings of one question
    # When the guards compare them, either way round
    # Then they find nothing
    assert material_difference(question, candidate) is None
    assert material_difference(candidate, question) is None


DIFFERENT_QUESTION = [
    # The examples.
    ("파이썬 설치 방법", "파이썬 삭제 방법", "content words differ: 설치 vs 삭제"),
    ("Where is my order 48213?", "Where is my order 48231?", "numbers differ: 48213 vs 48231"),
    (
        "What is the capital of Australia?",
        "What is the capital of Austria?",
        "content words differ: australia vs austria",
    ),
    # Numbers: digits, Korean units and native numerals, English number words, decimals as written.
    ("두 명 예약", "세 명 예약", "numbers differ: 2 vs 3"),
    ("네 명 예약", "다섯 명 예약", "numbers differ: 4 vs 5"),
    ("3만 원짜리", "5만 원짜리", "numbers differ: 30000 vs 50000"),
    ("2억5천만 원", "2억 원", "numbers differ: 250000000 vs 200000000"),
    ("two tickets", "three tickets", "numbers differ: 2 vs 3"),
    ("a fee of 3.5 percent", "a fee of 3.50 percent", "numbers differ: 3.5 vs 3.50"),
    ("tickets for 2 people", "tickets for people", "numbers differ: 2 vs (none)"),
    ("5kg bag", "10kg bag", "numbers differ: 5 vs 10"),
    # Dates and times.
    ("Is the store open tomorrow?", "Is the store open today?", "dates differ: tomorrow vs today"),
    ("내일 날씨 어때요?", "오늘 날씨 어때요?", "dates differ: tomorrow vs today"),
    ("meeting on 2024-05-01", "meeting on 2024-05-02", "dates differ: d1 vs d2"),
    ("5월 1일 예약", "6월 1일 예약", "dates differ: m5 vs m6"),
    ("meeting at 3pm", "meeting at 4pm", "dates differ: 15:00 vs 16:00"),
    ("오전 9시 회의", "오후 9시 회의", "dates differ: 9:00 vs 21:00"),
    ("다음 주 일정", "지난 주 일정", "dates differ: next-week vs last-week"),
    ("flights in june", "flights in july", "dates differ: m6 vs m7"),
    ("Is it open on Monday?", "Is it open on Tuesday?", "dates differ: mon vs tue"),
    ("월요일에 문 열어요?", "화요일에 문 열어요?", "dates differ: mon vs tue"),
    # Codes and identifiers.
    ("How do I install Python 3.11?", "How do I install Python 3.12?", "codes differ: v3.11 vs v3.12"),
    ("python 3.10 release notes", "python 3.1 release notes", "codes differ: v3.10 vs v3.1"),
    ("upgrade to 1.2.3", "upgrade to 1.2.4", "codes differ: v1.2.3 vs v1.2.4"),
    ("is SKU-4411A in stock", "is SKU-4411B in stock", "codes differ: sku4411a vs sku4411b"),
    ("email ana@example.com", "email bo@example.com", "codes differ: ana@example.com vs bo@example.com"),
    (
        "summarise https://a.example/x",
        "summarise https://a.example/y",
        "codes differ: https://a.example/x vs https://a.example/y",
    ),
    # Negation.
    ("I can't log in", "I can log in", "negation differs"),
    ("coffee without sugar", "coffee with sugar", "negation differs"),
    ("why is it never cached", "why is it cached", "negation differs"),
    ("로그인이 안 돼요", "로그인이 돼요", "negation differs"),
    ("환불이 안돼요", "환불이 돼요", "negation differs"),
    ("카드 결제가 되지 않아요", "카드 결제가 돼요", "negation differs"),
    ("재고가 없어요", "재고가 있어요", "negation differs"),
    ("로그인을 못 해요", "로그인을 해요", "negation differs"),
    ("이건 버그가 아니에요", "이건 버그예요", "negation differs"),
    ("커피 말고 차", "커피 차", "negation differs"),
    # Obligation against permission, and whether the obligation is the negated part.
    ("반품해야 하나요?", "반품해도 되나요?", "obligation differs: must vs (none)"),
    ("가야 돼?", "가도 돼?", "obligation differs: must vs (none)"),
    ("Do I have to tip the driver?", "Can I tip the driver?", "obligation differs: must vs (none)"),
    (
        "If you haven't, you should.",
        "You should, but you don't have to.",
        "obligation differs: should vs not-must, should",
    ),
    (
        "You can return it, but you don't have to.",
        "You can't return it, but you have to.",
        "obligation differs: not-must vs must",
    ),
    ("Can I take it after meals?", "Should I take it after meals?", "obligation differs: (none) vs should"),
    # Content words, substituted or added.
    ("주식 사는 법", "주식 파는 법", "content words differ: 사다 vs 파다"),
    ("How to turn on wifi", "How to turn off wifi", "content words differ: on vs off"),
    ("How do I install Python?", "How do I install Python on Windows?", "content words differ: (none) vs on, window"),
    ("A man is dancing", "A man and a woman are dancing", "content words differ: (none) vs woman"),
    ("Who wrote Hamlet?", "When was Hamlet written?", "content words differ: who vs when"),
    # Nothing to compare: the guards cannot vouch for a question without content words.
    ("What is it?", "What's that?", "no content words to compare"),
]


@pytest.mark.parametrize(("question", "candidate", "reason"), DIFFERENT_QUESTION)
def test_material_differences_are_found_both_ways(question: str, candidate: str, reason: str) -> None:
    # Given two questions that need different answers
    # When the guards compare them
    found = material_difference(question, candidate)
    swapped = material_difference(candidate, question)

    # Then they name the difference, and the same kind of difference with the sides swapped
    assert found == reason
    assert swapped is not None
    assert swapped.split(":")[0] == reason.split(":", maxsplit=1)[0]


def test_the_reason_starts_with_an_ascii_kind() -> None:
    # Given a Korean substitution
    reason = material_difference("파이썬 설치 방법", "파이썬 삭제 방법")

    # Then the kind before the colon is ASCII (a metric dimension); the words after it are quoted as found
    assert reason is not None
    kind, words = reason.split(":", 1)
    assert kind.isascii()
    assert kind == "content words differ"
    assert "설치" in words


def test_a_long_list_of_differences_is_cut_short() -> None:
    reason = material_difference("1 2 3 4 5 apples", "apples")
    assert reason == "numbers differ: 1, 2, 3, ... vs (none)"


def test_identical_questions_pass_and_swapped_roles_do_not() -> None:
    # The guards see who does what: the subject and the object of one verb changing places is material.
    assert material_difference("dog chases cat", "dog chases cat") is None
    assert material_difference("dog chases cat", "cat chases dog") == "word order differs: dog, cat around chase"
