"""The simulator's Usage and Cost Analytics endpoints, read with the official SDK's own client for them:
what it billed (messages, streams, batch requests; never count_tokens or an error), by its clock, paged
as the API pages, to its Admin key only, priced at list price."""

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import httpx2 as httpx
import pytest

from costgate.pricing.cost import CostComponent, price_usage
from costgate.pricing.prices import default_price_book, load_price_book
from costgate.pricing.usage import normalise_usage
from costgate_local.simulator import ManualClock, Simulator, SimulatorOptions
from costgate_local.simulator.admin import BETA, COMPONENTS, api_key_id
from tests.simulator.conftest import API_KEY, BATCH_DELAY, START, prose, sdk

MODEL = "claude-haiku-5-5"
DAY_START = START.replace(hour=0)


def _ask(client: anthropic.Anthropic, text: str = "How do I reset my password?", **extra: Any) -> Any:
    return client.messages.create(model=MODEL, max_tokens=256, messages=[{"role": "user", "content": text}], **extra)


def _admin(sim: Simulator) -> anthropic.Anthropic:
    return sdk(sim, api_key=sim.options.admin_key)


def _usage(sim: Simulator, **params: Any) -> list[Any]:
    """Every usage row of the query, all pages followed by the SDK."""
    query: dict[str, Any] = {"starting_at": DAY_START, "ending_at": DAY_START + timedelta(days=1), **params}
    return list(_admin(sim).beta.organization.analytics.usage.list(**query))


def _cost(sim: Simulator, **params: Any) -> list[Any]:
    query: dict[str, Any] = {"starting_at": DAY_START, "ending_at": DAY_START + timedelta(days=1), **params}
    return list(_admin(sim).beta.organization.analytics.cost.list(**query))


def _total(rows: list[Any], field: str) -> int:
    return sum(int(getattr(row.usage, field)) for row in rows)


def _raw(sim: Simulator, path: str, headers: dict[str, str], **params: Any) -> httpx.Response:
    query = {"starting_at": "2026-11-20T00:00:00Z", **params}
    return httpx.get(f"{sim.base_url}{path}", params=query, headers=headers, timeout=10)


ADMIN_HEADERS = {"anthropic-version": "2023-06-01", "anthropic-beta": BETA}


def test_messages_and_streams_are_billed_once_and_count_tokens_never(
    sim: Simulator, client: anthropic.Anthropic
) -> None:
    # Given one message, one streamed message, two count_tokens calls and one refused request
    plain = _ask(client)
    with client.messages.stream(
        model=MODEL, max_tokens=256, messages=[{"role": "user", "content": "Stream a short answer."}]
    ) as stream:
        streamed = stream.get_final_message()
    for _ in range(2):
        client.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": prose(400)}])
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(model=MODEL, max_tokens=0, messages=[{"role": "user", "content": "x"}])

    # When the day's usage is read with the Admin key
    rows = _usage(sim, time_bucket_width="1d", group_by=["model", "service_tier"])

    # Then it is exactly the two answers, at the standard tier, as two requests
    (row,) = rows
    assert (row.group.model, row.group.service_tier) == (MODEL, "standard")
    assert row.usage.uncached_input_tokens == plain.usage.input_tokens + streamed.usage.input_tokens
    assert row.usage.output_tokens == plain.usage.output_tokens + streamed.usage.output_tokens
    assert row.usage.requests == 2
    assert (row.starting_at, row.ending_at) == (DAY_START, DAY_START + timedelta(days=1))


def test_batch_requests_are_billed_at_the_batch_tier_when_processed(
    sim: Simulator, client: anthropic.Anthropic, clock: ManualClock
) -> None:
    # Given a batch of two good requests and one whose params fail, processed over BATCH_DELAY
    params: Any = {
        "model": MODEL,
        "max_tokens": 128,
        "messages": [{"role": "user", "content": "Summarise: costs fell."}],
    }
    bad: Any = {**params, "max_tokens": 0}
    batch = client.messages.batches.create(
        requests=[
            {"custom_id": "a", "params": params},
            {"custom_id": "b", "params": bad},
            {"custom_id": "c", "params": params},
        ]
    )
    clock.advance(BATCH_DELAY)
    results = {r.custom_id: r.result for r in client.messages.batches.results(batch.id)}
    assert results["b"].type == "errored"

    # When usage is read per minute
    rows = _usage(sim, time_bucket_width="1m", group_by=["service_tier"])

    # Then the two that succeeded are billed at the batch tier, in the minutes they were processed
    assert {row.group.service_tier for row in rows} == {"batch"}
    succeeded = [results[i].message.usage for i in ("a", "c")]  # type: ignore[union-attr]
    assert _total(rows, "output_tokens") == sum(u.output_tokens for u in succeeded)
    assert sum(row.usage.requests for row in rows) == 2
    assert all(START <= row.starting_at <= START + BATCH_DELAY for row in rows)


def test_minute_buckets_are_paged_as_the_api_pages_them(
    sim: Simulator, client: anthropic.Anthropic, clock: ManualClock
) -> None:
    # Given one request a minute for 7 minutes
    answers = []
    for _ in range(7):
        answers.append(_ask(client))
        clock.advance(timedelta(minutes=1))

    # When read 2 rows a page, by the SDK (which follows next_page) and by hand
    rows = _usage(sim, time_bucket_width="1m", limit=2)
    first = _raw(
        sim,
        "/v1/organizations/analytics/usage",
        {"x-api-key": sim.options.admin_key, **ADMIN_HEADERS},
        ending_at="2026-11-21T00:00:00Z",
        time_bucket_width="1m",
        limit=2,
    ).json()

    # Then every minute is there once, in time order, with its own request
    assert [row.starting_at for row in rows] == [START + timedelta(minutes=n) for n in range(7)]
    assert [row.usage.output_tokens for row in rows] == [a.usage.output_tokens for a in answers]
    assert (len(first["data"]), first["has_more"]) == (2, True)
    assert first["next_page"].startswith("page_")
    assert first["data_refreshed_at"] == "2026-11-20T12:07:00Z"  # the simulator's records are final at once
    # and a page token does not fit another query
    other = _raw(
        sim,
        "/v1/organizations/analytics/usage",
        {"x-api-key": sim.options.admin_key, **ADMIN_HEADERS},
        ending_at="2026-11-21T00:00:00Z",
        time_bucket_width="1h",
        page=first["next_page"],
    )
    assert other.status_code == 400


def test_cost_rows_are_list_prices_in_exact_fractional_cents_per_token_type(
    sim: Simulator, client: anthropic.Anthropic
) -> None:
    # Given one request with web searches
    tools: Any = [{"type": "web_search_20260318", "name": "web_search"}]
    answer = _ask(client, "What changed in the news today?", tools=tools)
    assert answer.usage.server_tool_use.web_search_requests >= 1

    # When the cost is read per token type and cost type
    rows = _cost(sim, time_bucket_width="1d", group_by=["model", "service_tier", "cost_type", "token_type"])

    # Then each component of costgate's own price is one row, in cents, exact, at list price
    expected = price_usage(MODEL, normalise_usage(answer.usage.model_dump()), START).components
    got = {(row.group.cost_type, row.group.token_type): Decimal(row.cost.amount) for row in rows}
    assert got == {COMPONENTS[c]: amount * 100 for c, amount in expected.items() if amount}
    assert got[("web_search", None)] == expected[CostComponent.WEB_SEARCH] * 100
    assert all(row.cost.amount == row.cost.list_amount and row.cost.currency == "USD" for row in rows)


def test_cost_without_fan_out_is_one_total_per_group(sim: Simulator, client: anthropic.Anthropic) -> None:
    answer = _ask(client)
    (row,) = _cost(sim, group_by=["model"])
    assert (
        Decimal(row.cost.amount)
        == price_usage(MODEL, normalise_usage(answer.usage.model_dump()), START).total_usd * 100
    )
    assert (row.group.cost_type, row.group.token_type, row.cost.requests) == (None, None, 1)


def test_usage_is_per_api_key_and_can_be_limited_to_keys(sim: Simulator, client: anthropic.Anthropic) -> None:
    # Given requests with two Claude keys
    _ask(client)
    _ask(sdk(sim, api_key="sk-other-app"))
    _ask(sdk(sim, api_key="sk-other-app"))

    # When grouped by key, and limited to ours
    by_key = {row.group.api_key_id: row.usage.requests for row in _usage(sim, group_by=["api_key_id"])}
    ours = _usage(sim, api_key_ids=[api_key_id(API_KEY)])

    # Then each key has its requests, and the filter keeps ours only (ids, never the keys themselves)
    assert by_key == {api_key_id(API_KEY): 1, api_key_id("sk-other-app"): 2}
    assert [row.usage.requests for row in ours] == [1]
    assert API_KEY not in json.dumps([row.model_dump(mode="json") for row in ours])


def test_only_the_admin_key_reads_the_reports_and_it_cannot_call_claude(sim: Simulator) -> None:
    path = "/v1/organizations/analytics/usage"
    assert _raw(sim, path, ADMIN_HEADERS).status_code == 401
    assert _raw(sim, path, {"x-api-key": API_KEY, **ADMIN_HEADERS}).status_code == 401
    assert _raw(sim, path, {"x-api-key": "sk-ant-admin01-guess", **ADMIN_HEADERS}).status_code == 401
    no_beta = _raw(sim, path, {"x-api-key": sim.options.admin_key, "anthropic-version": "2023-06-01"})
    assert no_beta.status_code == 400
    assert BETA in no_beta.json()["error"]["message"]
    bearer = _raw(sim, path, {"authorization": f"Bearer {sim.options.admin_key}", **ADMIN_HEADERS})
    assert bearer.status_code == 200
    with pytest.raises(anthropic.AuthenticationError):
        _ask(sdk(sim, api_key=sim.options.admin_key))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"group_by[]": "workspace_id"}, "does not implement grouping by 'workspace_id'"),
        ({"order_by": "time"}, "does not implement this parameter"),
        ({"time_bucket_width": "1m", "ending_at": "2026-11-22T00:00:00Z"}, "at most 24 hours"),
        ({"ending_at": "2026-12-31T00:00:00Z"}, "at most 31 days"),
        ({"time_bucket_width": "1d"}, "ending_at: Field required"),
        ({"starting_at": "2025-12-31T00:00:00Z"}, "no earlier than 2026-01-01"),
        ({"starting_at": "2026-11-20"}, "time zone"),
        ({"limit": "1001"}, "between 1 and 1000"),
        ({"page": "page_bm9wZQ=="}, "page:"),
    ],
)
def test_a_query_the_simulator_cannot_answer_exactly_is_a_400(
    sim: Simulator, params: dict[str, str], message: str
) -> None:
    response = _raw(
        sim, "/v1/organizations/analytics/usage", {"x-api-key": sim.options.admin_key, **ADMIN_HEADERS}, **params
    )
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]


def test_cost_bills_with_the_price_file_it_was_given(tmp_path: Path) -> None:
    # Given a copy of prices.json whose Haiku 5.5 output rate is 2.50 instead of 0.50 per MTok
    data = json.loads((Path(__file__).parents[2] / "shared/costgate/pricing/prices.json").read_text(encoding="utf-8"))
    (haiku,) = (m for m in data["models"] if m["id"] == MODEL)
    haiku["rates"][-1]["output"] = "2.5"
    altered = load_price_book(json.dumps(data).encode())
    clock = ManualClock(START)

    with Simulator(SimulatorOptions(clock=clock, prices=altered)) as sim:
        answer = _ask(sdk(sim))
        rows = _cost(sim, group_by=["token_type"])

    # Then its output tokens cost 5 times what costgate's own book says
    output = {row.group.token_type: Decimal(row.cost.amount) for row in rows}["output_tokens"]
    shipped = price_usage(MODEL, normalise_usage(answer.usage.model_dump()), START, default_price_book())
    assert output == shipped.components[CostComponent.OUTPUT] * 100 * 5


def test_what_it_billed_is_by_its_clock(sim: Simulator, client: anthropic.Anthropic, clock: ManualClock) -> None:
    # Given a request just before midnight and one just after, by the simulator's clock
    clock.set(datetime(2026, 11, 20, 23, 59, 59, tzinfo=UTC))
    _ask(client)
    clock.advance(timedelta(seconds=2))
    _ask(client)

    # When read per day
    rows = _usage(sim, time_bucket_width="1d", ending_at=datetime(2026, 11, 22, tzinfo=UTC))

    # Then each is on its own day
    assert [(row.starting_at.day, row.usage.requests) for row in rows] == [(20, 1), (21, 1)]
