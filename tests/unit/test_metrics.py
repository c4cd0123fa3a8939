"""The EMF metrics the gateway emits: names, dimension sets and values, against observability.DIMENSION_SETS."""

import json
from collections import defaultdict
from typing import Any

import pytest

from costgate.budgets import BudgetExceededError
from costgate.observability import BATCH_COUNTS, DIMENSION_SETS, MetricDimension, MetricName, emit_count
from tests.fakes import FakeEmbedder
from tests.unit.gateway_world import make_world, message_reply, reply

SERVICE = "costgate-test"
HAIKU = "claude-haiku-5-5"
SIMPLE_AUTO = json.dumps(
    {
        "model": "auto",
        "max_tokens": 64,
        "system": "You answer support questions for a payments company. " * 60,
        "messages": [{"role": "user", "content": "Translate 'refund' into Korean."}],
    }
).encode()


def question(text: str) -> bytes:
    return json.dumps({"model": HAIKU, "max_tokens": 64, "messages": [{"role": "user", "content": text}]}).encode()


def _refuse(*_: object) -> None:
    raise RuntimeError("the table is unavailable")


type Emitted = dict[tuple[str, frozenset[str]], list[float]]


@pytest.fixture
def metrics_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", SERVICE)


def emitted(stdout: str) -> Emitted:
    """(metric name, dimension names but service) → the values of every EMF blob printed; and for each
    dimension value seen, ("<Dimension>=", {value}) → one 1 per blob."""
    found: Emitted = defaultdict(list)
    for line in stdout.splitlines():
        if '"_aws"' not in line:
            continue
        blob: dict[str, Any] = json.loads(line)
        (directive,) = blob["_aws"]["CloudWatchMetrics"]
        (dimensions,) = directive["Dimensions"]
        assert blob["service"] == SERVICE
        for metric in directive["Metrics"]:
            key = (metric["Name"], frozenset(d for d in dimensions if d != "service"))
            values = blob[metric["Name"]]
            found[key].extend(values if isinstance(values, list) else [values])
        for name in dimensions:
            if name != "service":
                found[(f"{name}=", frozenset({str(blob[name])}))].append(1)
    return found


def test_a_routed_cached_request_emits_its_tier_decision_and_savings(
    metrics_on: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given Haiku answering 1000 in / 200 out
    world = make_world(message_reply({"input_tokens": 1000, "output_tokens": 200}, model=HAIKU))

    # When an "auto" simple request with a long system prompt goes through
    world.send(SIMPLE_AUTO)
    found = emitted(capsys.readouterr().out)

    # Then the routing decision is counted per tier and in total
    assert found[(MetricName.ROUTED_REQUESTS, frozenset())] == [1]
    assert found[(MetricName.ROUTED_REQUESTS, frozenset({MetricDimension.ROUTE_TIER}))] == [1]
    assert found[("RouteTier=", frozenset({"simple"}))] == [1]
    # and the prompt-cache decision
    assert found[(MetricName.PROMPT_CACHE_DECISIONS, frozenset({MetricDimension.DECISION}))] == [1]
    assert found[("Decision=", frozenset({"added"}))] == [1]
    # and the routing saving per strategy: Sonnet 0.002 + 0.002 − Haiku (0.0001 + 0.0001) = 0.0038
    assert found[(MetricName.SAVINGS_USD, frozenset({MetricDimension.STRATEGY}))] == [0.0038]
    assert found[("Strategy=", frozenset({"routing"}))] == [1]
    # and every metric comes with a dimension set observability declares
    for name, dimensions in (k for k in found if not k[0].endswith("=")):
        assert frozenset(MetricDimension(d) for d in dimensions) in DIMENSION_SETS[MetricName(name)], name


def test_every_declared_dimension_set_is_emitted_by_some_request(
    metrics_on: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given requests that are routed and prompt-cached, then answered from the answer cache, refused by
    # a budget, answered without usage, refused a semantic hit by a guard, and not storable
    world = make_world(message_reply({"input_tokens": 1000, "output_tokens": 200}, model=HAIKU))
    world.send(SIMPLE_AUTO)
    world.send(SIMPLE_AUTO)
    tight = make_world(daily_budget_usd="0.000001")
    with pytest.raises(BudgetExceededError):
        tight.send(SIMPLE_AUTO)
    make_world(reply(b'{"type": "message"}')).send(SIMPLE_AUTO)
    same = [1.0] + [0.0] * 63
    guarded = make_world(embedder=FakeEmbedder(vectors={"Where is order 48213": same, "Where is order 48231": same}))
    guarded.send(question("Where is order 48213?"))
    guarded.send(question("Where is order 48231?"))
    failing = make_world()
    failing.answers.put_exact = _refuse  # type: ignore[method-assign]
    failing.send(question("What is Python?"))
    found = emitted(capsys.readouterr().out)

    # Then each declared (metric, dimension set) was printed at least once, but BatchFunction's counts
    # (emitted by its handler after a scheduler tick, see the next test)
    printed = {(name, dimensions) for name, dimensions in found if not name.endswith("=")}
    declared = {
        (name.value, frozenset(d.value for d in dims))
        for name, sets in DIMENSION_SETS.items()
        for dims in sets
        if name not in BATCH_COUNTS
    }
    assert declared == printed


def test_batch_counts_are_emitted_on_their_declared_dimension_sets(
    metrics_on: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given what BatchFunction counts after a tick
    # When each is counted, zero included (an alarm's Sum needs the data point, not a gap)
    for value, name in enumerate(BATCH_COUNTS):
        emit_count(name, value)
    found = emitted(capsys.readouterr().out)

    # Then each is one blob on exactly the dimension sets observability declares for it
    for value, name in enumerate(BATCH_COUNTS):
        assert found[(name.value, frozenset())] == [value]
        assert DIMENSION_SETS[name] == {frozenset()}
    assert len(found) == len(BATCH_COUNTS)


def test_count_tokens_is_routed_but_not_counted_as_a_routing_decision(
    metrics_on: None, capsys: pytest.CaptureFixture[str]
) -> None:
    world = make_world(reply(b'{"input_tokens": 1000}'))

    response = world.gateway.count_tokens(world.request(SIMPLE_AUTO))

    assert response.headers["x-costgate-model"] == HAIKU
    assert (MetricName.ROUTED_REQUESTS, frozenset()) not in emitted(capsys.readouterr().out)
