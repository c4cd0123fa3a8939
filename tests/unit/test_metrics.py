"""The EMF metrics the gateway emits: names, dimension sets and values, against observability.DIMENSION_SETS."""

import json
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from costgate.accounting.ledger import SWEEP_AFTER, ReservedRequest, new_request_id
from costgate.accounting.sweeper import sweep
from costgate.cache.answers import AnswerCache
from costgate.claude.transport import UpstreamErrorType
from costgate.errors import BudgetExceededError
from costgate.gateway.service import Gateway
from costgate.observability import (
    BATCH_COUNTS,
    DIMENSION_SETS,
    RECONCILE_FIGURES,
    SPEND_GAUGES,
    SWEEPER_COUNTS,
    UPSTREAM_COUNTS,
    MetricDimension,
    MetricName,
    emit_count,
    emit_spend,
    emit_upstream_attempt,
)
from tests.fakes.accounting import InMemoryBudgetStore, InMemoryLedgerStore
from tests.fakes.cache import FakeEmbedder
from tests.fakes.clock import NOW
from tests.unit.gateway_world import (
    OPUS,
    FixedClock,
    RecordingSink,
    World,
    error_reply,
    make_world,
    message_reply,
    reply,
    stream_reply,
)

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
    metrics_on: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given requests that are routed and prompt-cached (Claude's answer timed), then answered from the answer
    # cache, refused by a budget, answered without usage, refused a semantic hit by a guard, and not storable
    timed = replace(message_reply({"input_tokens": 1000, "output_tokens": 200}, model=HAIKU), latency_s=0.4)
    world = make_world(timed)
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
    monkeypatch.setattr(failing.answers, "put_exact", _refuse)
    failing.send(question("What is Python?"))
    unsettled = make_world()
    unsettled.ledger.faults.fail("settle", -1)  # the row is left to the sweeper: an accounting error
    unsettled.send(SIMPLE_AUTO)
    # and a stream that Claude breaks off, whose client has gone after its first event
    start = {"type": "message", "model": OPUS, "usage": {"input_tokens": 10, "output_tokens": 1}}
    broken = stream_reply(
        {"type": "message_start", "message": start},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    )
    streamed = json.dumps(
        {"model": OPUS, "max_tokens": 64, "stream": True, "messages": [{"role": "user", "content": "Hi"}]}
    )
    make_world(broken).send_streamed(streamed.encode(), RecordingSink(hang_up_after=1))
    found = emitted(capsys.readouterr().out)

    # Then each declared (metric, dimension set) was printed at least once, but those the gateway does not
    # emit itself: BatchFunction's counts, HttpUpstream's per-attempt counts and SpendWatchFunction's
    # gauges (see the next tests, test_upstream and test_spend), ReconcileFunction's figures
    # (test_reconcile_service) and SweeperFunction's count (below)
    printed = {(name, dimensions) for name, dimensions in found if not name.endswith("=")}
    declared = {
        (name.value, frozenset(d.value for d in dims))
        for name, sets in DIMENSION_SETS.items()
        for dims in sets
        if name not in BATCH_COUNTS + UPSTREAM_COUNTS + SPEND_GAUGES + RECONCILE_FIGURES + SWEEPER_COUNTS
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


def test_the_sweepers_count_is_emitted_on_its_declared_dimension_set(
    metrics_on: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given two rows reserved long ago and never settled
    ledger, budgets = InMemoryLedgerStore(), InMemoryBudgetStore()
    for _ in range(2):
        ledger.reserve(ReservedRequest(new_request_id(), NOW, "acme", "chat", HAIKU, Decimal("0.1")))

    # When the sweeper runs past their deadline, and again
    sweep(ledger, budgets, NOW + SWEEP_AFTER + timedelta(seconds=1))
    sweep(ledger, budgets, NOW + SWEEP_AFTER + timedelta(minutes=1))
    found = emitted(capsys.readouterr().out)

    # Then the first run counts both, service-only; the second, with nothing to sweep, nothing
    assert found == {(MetricName.SWEPT_REQUESTS, frozenset()): [2]}
    assert all(DIMENSION_SETS[name] == {frozenset()} for name in SWEEPER_COUNTS)


def test_count_tokens_is_routed_but_not_counted_as_a_routing_decision(
    metrics_on: None, capsys: pytest.CaptureFixture[str]
) -> None:
    world = make_world(reply(b'{"input_tokens": 1000}'))

    response = world.gateway.count_tokens(world.request(SIMPLE_AUTO))

    assert response.headers["x-costgate-model"] == HAIKU
    assert (MetricName.ROUTED_REQUESTS, frozenset()) not in emitted(capsys.readouterr().out)


def test_upstream_attempts_and_spend_gauges_are_emitted_on_their_declared_dimension_sets(
    metrics_on: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an answered attempt, one failed attempt of each kind, and one spend observation
    emit_upstream_attempt(None)
    for error_type in UpstreamErrorType:
        emit_upstream_attempt(error_type)
    emit_spend(Decimal("12.5"), Decimal("37.5"))
    found = emitted(capsys.readouterr().out)

    # Then every attempt is a call, each failure one error in total and one under its ErrorType
    assert found[(MetricName.UPSTREAM_CALLS, frozenset())] == [1] * (1 + len(UpstreamErrorType))
    assert found[(MetricName.UPSTREAM_ERRORS, frozenset())] == [1] * len(UpstreamErrorType)
    assert found[(MetricName.UPSTREAM_ERRORS, frozenset({MetricDimension.ERROR_TYPE}))] == [1] * len(UpstreamErrorType)
    for error_type in UpstreamErrorType:
        assert found[("ErrorType=", frozenset({error_type.value}))] == [1]
    # and the gauges are the two amounts, service-only
    assert found[(MetricName.SPEND_TODAY_USD, frozenset())] == [12.5]
    assert found[(MetricName.PROJECTED_DAILY_SPEND_USD, frozenset())] == [37.5]
    # and that is exactly what observability declares for these metrics
    printed = {(name, dimensions) for name, dimensions in found if not name.endswith("=")}
    declared = {
        (name.value, frozenset(d.value for d in dims))
        for name in UPSTREAM_COUNTS + SPEND_GAUGES
        for dims in DIMENSION_SETS[name]
    }
    assert printed == declared


def _timed(world: World, timer: Callable[[], float]) -> Gateway:
    """The world's gateway over the same stores and upstream, with `timer` as its clock for durations."""
    return Gateway(
        keys=world.keys,
        budgets=world.budgets,
        ledger=world.ledger,
        features=world.features,
        prompt_cache=world.prompt_cache,
        answers=AnswerCache(world.answers, embedder=lambda: world.embedder),
        upstream=world.upstream,
        clock=FixedClock(),
        timer=timer,
    )


def _timer(*readings: float) -> Callable[[], float]:
    """A timer that reads these instants in turn, and fails a test that reads it more often."""
    values: Iterator[float] = iter(readings)
    return lambda: next(values)


def test_an_answer_emits_claudes_latency_per_model_and_the_gateways_overhead(
    metrics_on: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given Claude answering after 1.5 s to its headers, and a gateway whose timer reads: request in
    # at 10.0, upstream call from 10.5 to 12.5 (its body and any retries included), answer out at 12.75
    world = make_world(replace(message_reply(), latency_s=1.5))
    gateway = _timed(world, _timer(10.0, 10.5, 12.5, 12.75))

    # When a request goes through
    response = gateway.create_message(world.request())
    found = emitted(capsys.readouterr().out)

    # Then Claude's latency is its time to the headers, in total and for the model asked for
    assert response.status == 200
    assert found[(MetricName.UPSTREAM_LATENCY, frozenset())] == [1500]
    assert found[(MetricName.UPSTREAM_LATENCY, frozenset({MetricDimension.MODEL}))] == [1500]
    assert found[("Model=", frozenset({OPUS}))] == [1, 1]  # the latency blob and the recorded request's
    # and the overhead is the request's 2.75 s in the gateway less the 2 s of its upstream call
    assert found[(MetricName.GATEWAY_OVERHEAD, frozenset())] == [750]


def test_an_error_answer_emits_the_overhead_but_no_latency(
    metrics_on: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given Claude answering 529 (after retries) with a timed response
    world = make_world(replace(error_reply(529, "overloaded_error", "Overloaded"), latency_s=0.05))
    gateway = _timed(world, _timer(0.0, 0.25, 4.25, 4.5))

    # When a request goes through
    response = gateway.create_message(world.request())
    found = emitted(capsys.readouterr().out)

    # Then the error is passed on; its latency would skew the answers' percentiles, so only the overhead counts
    assert response.status == 529
    assert (MetricName.UPSTREAM_LATENCY, frozenset()) not in found
    assert found[(MetricName.GATEWAY_OVERHEAD, frozenset())] == [500]


def test_a_cached_answer_and_an_untimed_upstream_emit_no_latency(
    metrics_on: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an upstream that does not time its answers (latency_s None), asked the same question twice
    world = make_world(message_reply({"input_tokens": 10, "output_tokens": 5}, model=HAIKU))
    world.send(question("What is Python?"))
    world.send(question("What is Python?"))
    found = emitted(capsys.readouterr().out)

    # Then no latency is invented; the overhead is counted once, for the request that reached Claude
    assert (MetricName.UPSTREAM_LATENCY, frozenset()) not in found
    assert len(found[(MetricName.GATEWAY_OVERHEAD, frozenset())]) == 1
    assert found[("Result=", frozenset({"exact-hit"}))] == [1]
