"""Routing and the prompt-cache policy, seen by the official SDK through `costgate serve`.

`model: "auto"` must land where `costgate.routing.router.route` says (and on the label's tier for these
unambiguous requests); a long system prompt without `cache_control` must be written once and read
the second time, the second receipt cheaper; a request that manages its own caching keeps it; and the
savings reach `costgate report` and `costgate prompt-cache`.
"""

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import pytest

from costgate.routing.router import DEFAULT_MODELS, RoutePolicy, Tier, route
from tests.e2e.test_cli import costgate
from tests.e2e.test_gateway_sdk import report, serving
from tests.e2e.test_serve import Served

LABELLED = Path(__file__).parents[1] / "routing" / "labelled_requests.jsonl"
# One Korean and one English request per label, from the labelled routing set.
PICKED = ("simple-en-01", "simple-ko-01", "medium-en-01", "medium-ko-01", "complex-en-01", "complex-ko-01")
TIER_OF_LABEL = {"simple": Tier.SIMPLE, "medium": Tier.MEDIUM, "complex": Tier.COMPLEX}
# Identical bodies are sent on purpose: the answer cache must not answer them.
NO_ANSWER_CACHE = {"x-costgate-cache": "off"}
# A contract-review system prompt of about 5,000 tokens (measured with count_tokens below).
CLAUSE = (
    "제{n}조 (비밀유지) 수령 당사자는 공개 당사자의 사전 서면 동의 없이 비밀정보를 제3자에게 누설하여서는 아니 된다. "
    "Clause {n} (Confidentiality): the receiving party shall not disclose Confidential Information to any third "
    "party without the prior written consent of the disclosing party, and shall protect it with reasonable care. "
)
SYSTEM = "You review contracts for a Korean law firm. Answer briefly.\n" + "".join(
    CLAUSE.format(n=n) for n in range(1, 43)
)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serving(log=tmp_path_factory.mktemp("policies-sdk") / "serve.log") as stack:
        yield stack


@pytest.fixture(scope="module")
def client(served: Served) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=served.ready["base_url"], api_key=served.ready["api_key"])


def labelled() -> dict[str, dict[str, Any]]:
    items = (json.loads(line) for line in LABELLED.read_text(encoding="utf-8").splitlines() if line.strip())
    return {item["id"]: item for item in items}


@pytest.mark.parametrize("item_id", PICKED)
def test_auto_lands_on_the_tier_the_rules_say(client: anthropic.Anthropic, item_id: str) -> None:
    item = labelled()[item_id]
    expected = route(item["body"], RoutePolicy())

    raw = client.messages.with_raw_response.create(**{**item["body"], "max_tokens": 64}, extra_headers=NO_ANSWER_CACHE)
    message = raw.parse()

    assert expected.model == DEFAULT_MODELS[TIER_OF_LABEL[item["label"]]]
    assert message.model == expected.model
    assert raw.headers["x-costgate-model"] == expected.model
    assert raw.headers["x-costgate-route-reason"] == expected.reason
    # Measured against Sonnet 5.5, the baseline of an unconfigured feature's "auto" requests
    cost, baseline = Decimal(raw.headers["x-costgate-cost-usd"]), Decimal(raw.headers["x-costgate-baseline-cost-usd"])
    assert Decimal(raw.headers["x-costgate-savings-routing-usd"]) == baseline - cost - Decimal(
        raw.headers["x-costgate-savings-prompt-cache-usd"]
    )


def test_a_long_system_prompt_is_written_once_then_read_and_the_second_answer_is_cheaper(
    client: anthropic.Anthropic, served: Served
) -> None:
    model = "claude-haiku-5-5"
    ask: list[anthropic.types.MessageParam] = [{"role": "user", "content": "Which clause covers confidentiality?"}]
    counted = client.messages.count_tokens(model=model, system=SYSTEM, messages=ask).input_tokens
    assert 5_000 <= counted <= 6_000

    first = client.messages.with_raw_response.create(
        model=model, max_tokens=64, system=SYSTEM, messages=ask, extra_headers=NO_ANSWER_CACHE
    )
    second = client.messages.with_raw_response.create(
        model=model, max_tokens=64, system=SYSTEM, messages=ask, extra_headers=NO_ANSWER_CACHE
    )

    one, two = first.parse().usage, second.parse().usage
    assert (one.cache_creation_input_tokens or 0) > 4_900
    assert not one.cache_read_input_tokens
    assert two.cache_read_input_tokens == one.cache_creation_input_tokens
    assert not two.cache_creation_input_tokens
    assert first.headers["x-costgate-prompt-cache"] == "added 5m: system"
    assert Decimal(second.headers["x-costgate-cost-usd"]) < Decimal(first.headers["x-costgate-cost-usd"])
    assert Decimal(first.headers["x-costgate-savings-prompt-cache-usd"]) < 0  # the write's premium
    assert Decimal(second.headers["x-costgate-savings-prompt-cache-usd"]) > 0

    # `costgate prompt-cache` shows the prefix: two requests, one write, one read, net positive
    listed = costgate("prompt-cache", "--json", env=served.env())
    assert listed.returncode == 0, listed.stderr
    prefixes = [json.loads(line) for line in listed.stdout.splitlines()]
    (prefix,) = [p for p in prefixes if p["model"] == model and p["managed_by"] == "costgate"]
    assert prefix["requests"] == 2
    assert prefix["write_tokens"] == prefix["read_tokens"] == one.cache_creation_input_tokens
    assert Decimal(prefix["net_saved_usd"]) > 0


def test_a_request_that_sets_its_own_cache_control_keeps_it(client: anthropic.Anthropic) -> None:
    # Given a client asking for a 1h write, which the policy (5m with no gaps observed) would not choose
    system: list[anthropic.types.TextBlockParam] = [
        {"type": "text", "text": "Client-managed. " + SYSTEM, "cache_control": {"type": "ephemeral", "ttl": "1h"}}
    ]
    raw = client.messages.with_raw_response.create(
        model="claude-haiku-5-5",
        max_tokens=64,
        system=system,
        messages=[{"role": "user", "content": "Hello"}],
        extra_headers=NO_ANSWER_CACHE,
    )
    usage = raw.parse().usage
    assert raw.headers["x-costgate-prompt-cache"] == "client"
    assert usage.cache_creation is not None
    assert usage.cache_creation_input_tokens is not None
    assert usage.cache_creation.ephemeral_1h_input_tokens == usage.cache_creation_input_tokens > 0
    assert usage.cache_creation.ephemeral_5m_input_tokens == 0


def test_the_report_shows_both_savings(served: Served) -> None:
    total = report(served)["total"]
    by_strategy = {name: Decimal(value) for name, value in total["savings_by_strategy"].items()}
    assert by_strategy["routing"] != 0
    assert by_strategy["prompt_cache"] != 0
    assert Decimal(total["baseline_cost_usd"]) - Decimal(total["cost_usd"]) == sum(by_strategy.values())


def test_the_report_table_lists_savings_by_strategy(served: Served) -> None:
    as_json = report(served)
    table = costgate("report", "--from", as_json["from"], "--to", as_json["to"], env=served.env())
    assert table.returncode == 0, table.stderr

    by_strategy = _strategy_rows(table.stdout)
    # the table rounds to 6 decimals for display; columns: strategy, requests, baseline, actual, saving, %
    routing = as_json["total"]["strategies"]["routing"]
    assert int(by_strategy["routing"][1]) == routing["requests"]
    expected = Decimal(routing["savings_usd"]).quantize(Decimal("0.000001"))
    assert Decimal(by_strategy["routing"][4].replace(",", "")) == expected
    assert "prompt_cache" in by_strategy
    empty = costgate("report", "--from", "2000-01-01", "--to", "2000-01-01", env=served.env())
    assert "prompt_cache" not in _strategy_rows(empty.stdout)


def _strategy_rows(stdout: str) -> dict[str, list[str]]:
    """The per-strategy table's rows (after its `strategy requests ...` header), by strategy."""
    lines = stdout.splitlines()
    header = next((i for i, line in enumerate(lines) if line.split()[:2] == ["strategy", "requests"]), len(lines))
    return {cells[0]: cells for line in lines[header + 1 :] if (cells := line.split())}
