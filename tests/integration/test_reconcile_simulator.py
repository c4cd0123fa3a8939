"""The Admin API client against the simulator's Usage and Cost Analytics endpoints, and the whole comparison
over what the simulator billed: traffic the ledger holds matches to the token and the fraction of a cent;
a request it lacks is exactly its tokens and its cost of drift."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import anthropic
import pytest

from costgate.pricing.cost import price_usage
from costgate.pricing.usage import normalise_usage
from costgate.reconcile.admin_api import AdminApiRecords
from costgate.reconcile.model import DayStatus, LedgerRow, RowKey, RowStatus, Tokens
from costgate.reconcile.service import ReconcileSources, reconcile
from costgate_local.simulator import ManualClock, Simulator, SimulatorOptions
from costgate_local.simulator.admin import api_key_id
from tests.unit.reconcile_world import FakeLedger

START = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
DAY = START.date()
MODEL = "claude-haiku-5-5"
KEY = "sk-ant-local-simulator"
SETTLE = timedelta(hours=6)
SYSTEM = "You answer questions about the costgate gateway. " * 120  # above Haiku 5.5's 512-token cache minimum


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def sim(clock: ManualClock) -> Iterator[Simulator]:
    with Simulator(SimulatorOptions(clock=clock, batch_delay=timedelta(seconds=30))) as simulator:
        yield simulator


def _traffic(sim: Simulator, clock: ManualClock) -> list[Any]:
    """Plain, streamed, a prompt-cache write and read, a web search and a batch of two; what each was billed."""
    client = anthropic.Anthropic(base_url=sim.base_url, api_key=KEY, max_retries=0)
    ask: dict[str, Any] = {"model": MODEL, "max_tokens": 200}
    billed = [client.messages.create(**ask, messages=[{"role": "user", "content": "Hello?"}]).usage]
    with client.messages.stream(**ask, messages=[{"role": "user", "content": "Stream it."}]) as stream:
        billed.append(stream.get_final_message().usage)
    cached: Any = [{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}]
    for question in ("First?", "Second?"):
        billed.append(
            client.messages.create(**ask, system=cached, messages=[{"role": "user", "content": question}]).usage
        )
    assert billed[2].cache_creation_input_tokens > 0
    assert billed[3].cache_read_input_tokens > 0
    tools: Any = [{"type": "web_search_20260318", "name": "web_search"}]
    billed.append(client.messages.create(**ask, tools=tools, messages=[{"role": "user", "content": "News?"}]).usage)
    client.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "Not billed."}])
    params: Any = {**ask, "messages": [{"role": "user", "content": "Summarise: costs fell."}]}
    batch = client.messages.batches.create(requests=[{"custom_id": f"d{n}", "params": params} for n in range(2)])
    clock.advance(timedelta(seconds=31))
    billed += [r.result.message.usage for r in client.messages.batches.results(batch.id)]  # type: ignore[union-attr]
    return billed


def _ledger(usages: list[Any]) -> list[LedgerRow]:
    """The ledger's rows for those responses, as the gateway and the batch flow record them."""
    rows: dict[RowKey, LedgerRow] = {}
    for usage in usages:
        tokens = normalise_usage(usage.model_dump())
        key = RowKey(DAY, MODEL, tokens.service_tier)
        row = LedgerRow(
            key=key,
            tokens=Tokens(
                input_tokens=tokens.input_tokens,
                cache_write_5m_tokens=tokens.cache_write_5m_tokens,
                cache_write_1h_tokens=tokens.cache_write_1h_tokens,
                cache_read_tokens=tokens.cache_read_tokens,
                output_tokens=tokens.output_tokens,
                web_search_requests=tokens.web_search_requests,
            ),
            cost_usd=price_usage(MODEL, tokens, START).total_usd,
            requests=1,
        )
        rows[key] = rows[key] + row if key in rows else row
    return list(rows.values())


def _sources(sim: Simulator, usages: list[Any], key_ids: tuple[str, ...] = ()) -> ReconcileSources:
    admin = sim.options.admin_key
    return ReconcileSources(
        anthropic=AdminApiRecords(sim.base_url, lambda: admin, api_key_ids=key_ids), ledger=FakeLedger(_ledger(usages))
    )


def test_the_day_in_progress_matches_through_its_last_complete_minute(sim: Simulator, clock: ManualClock) -> None:
    # Given the traffic, and the minute it ended in over
    usages = _traffic(sim, clock)
    clock.advance(timedelta(minutes=1))

    # When today is reconciled as of now, limited to the gateway's key
    result = reconcile(DAY, DAY, _sources(sim, usages, (api_key_id(KEY),)), now=clock.now(), settle=SETTLE)

    # Then both tiers match exactly, through the last complete minute, provisionally (the day is open)
    (day,) = result.days
    assert {row.key.service_tier: row.status for row in day.rows} == {
        "standard": RowStatus.MATCH,
        "batch": RowStatus.MATCH,
    }
    assert (day.status, day.settled, result.ok) == (DayStatus.MATCH, False, True)
    assert day.through == clock.now().replace(second=0)
    assert {row.key.service_tier: row.anthropic_requests for row in day.rows} == {"standard": 5, "batch": 2}


def test_a_request_the_ledger_lacks_is_exactly_its_tokens_and_cost_of_drift(sim: Simulator, clock: ManualClock) -> None:
    # Given the traffic, of which the ledger lacks the streamed request (sent around the gateway)
    usages = _traffic(sim, clock)
    clock.advance(timedelta(minutes=1))
    missing = usages.pop(1)

    # When today is reconciled
    result = reconcile(DAY, DAY, _sources(sim, usages), now=clock.now(), settle=SETTLE)

    # Then the drift is that request: its tokens in every category, its exact cost
    expected = normalise_usage(missing.model_dump())
    assert result.drift_tokens == expected.input_tokens + expected.output_tokens
    assert result.drift_usd == price_usage(MODEL, expected, START).total_usd
    assert not result.ok
    (drifting,) = [row for row in result.days[0].rows if row.status is RowStatus.DRIFT]
    assert drifting.token_difference == Tokens(input_tokens=expected.input_tokens, output_tokens=expected.output_tokens)


def test_a_closed_day_is_read_in_day_buckets_and_settles(sim: Simulator, clock: ManualClock) -> None:
    # Given the traffic, and two days later by the simulator's clock
    usages = _traffic(sim, clock)
    clock.set(datetime(2026, 11, 22, 7, tzinfo=UTC))

    # When that day is reconciled
    result = reconcile(DAY, DAY, _sources(sim, usages), now=clock.now(), settle=SETTLE)

    # Then it is complete, settled and matches: the verdict the scheduled check keeps
    (day,) = result.days
    assert (day.status, day.settled, day.complete) == (DayStatus.MATCH, True, True)
    assert day.recorded().status is DayStatus.MATCH
