"""The local stack's schedules: EventBridge rate expressions read from template.yaml, and
SpendWatchFunction loaded from it and run by a schedule loop, as `costgate serve` does."""

import copy
import threading
import time
from typing import Any

import pytest

from costgate_local.simulator import SimulatorOptions
from costgate_local.stack.front import LocalFunction
from costgate_local.stack.serve import (
    PSEUDO_PARAMETERS,
    ScheduleLoop,
    ServeOptions,
    rate_interval_s,
    schedule_interval_s,
    serve,
)
from costgate_local.stack.template import load_template
from tests.events import load_event

DEADLINE_S = 10.0


@pytest.mark.parametrize(
    ("expression", "seconds"),
    [
        ("rate(1 minute)", 60),
        ("rate(5 minutes)", 300),
        ("rate(1 hour)", 3_600),
        ("rate(12 hours)", 43_200),
        ("rate(1 day)", 86_400),
        ("rate(7 days)", 604_800),
    ],
)
def test_a_rate_expression_is_its_interval_in_seconds(expression: str, seconds: float) -> None:
    assert rate_interval_s(expression) == seconds


@pytest.mark.parametrize(
    "expression",
    [
        "rate(5 minute)",  # EventBridge wants the plural past 1
        "rate(1 minutes)",  # and the singular for 1
        "rate(0 minutes)",
        "rate(-5 minutes)",
        "rate(05 minutes)",
        "rate(1.5 hours)",
        "rate(5 seconds)",
        "rate(5 weeks)",
        "rate(5  minutes)",
        "rate(5 minutes) ",
        "5 minutes",
        "",
    ],
)
def test_anything_else_is_refused_naming_the_expression(expression: str) -> None:
    with pytest.raises(ValueError, match="is not an EventBridge rate expression"):
        rate_interval_s(expression)


def test_a_cron_schedule_is_refused_locally_with_a_clear_message() -> None:
    with pytest.raises(ValueError, match=r"cannot run the cron schedule 'cron\(0/5 \* \* \* \? \*\)', only rate"):
        rate_interval_s("cron(0/5 * * * ? *)")


def test_spend_watch_runs_every_300_s_as_the_template_schedules_it() -> None:
    template = load_template()
    assert schedule_interval_s(template, "SpendWatchFunction") == 300
    # and a schedule given by !Ref takes the parameter's default, as BatchFunction's does
    assert schedule_interval_s(template, "BatchFunction") == 120


def test_a_function_without_exactly_one_schedule_is_named() -> None:
    with pytest.raises(ValueError, match="ApiFunction has 0 Schedule events"):
        schedule_interval_s(load_template(), "ApiFunction")


def _with_spend_schedule(schedule: str) -> dict[str, Any]:
    template = copy.deepcopy(load_template())
    (event,) = template["Resources"]["SpendWatchFunction"]["Properties"]["Events"].values()
    event["Properties"]["Schedule"] = schedule
    return template


def test_serve_refuses_a_cron_spend_schedule_before_starting_anything(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a template whose SpendWatchFunction runs on a cron schedule
    monkeypatch.setattr("costgate_local.stack.serve.load_template", lambda: _with_spend_schedule("cron(0/5 * * * ? *)"))
    # When the stack is served without --spend-interval
    status = serve(ServeOptions(port=0, upstream="simulator", simulator=SimulatorOptions()))
    # Then it exits 2 at once, saying which schedule and what to do; stdout stays empty (no ready line)
    out, err = capsys.readouterr()
    assert status == 2
    assert out == ""
    assert "costgate serve: SpendWatchFunction: the local stack cannot run the cron schedule" in err
    assert "--spend-interval" in err


def test_the_local_stack_loads_spend_watch_and_runs_it_on_a_schedule_loop() -> None:
    # Given SpendWatchFunction loaded from the template as `costgate serve` loads it
    spend = LocalFunction.from_template(load_template(), "SpendWatchFunction", refs={**PSEUDO_PARAMETERS, "Table": "t"})
    assert spend.handler.__module__ == "lambda_SpendWatchFunction"
    assert spend.environment["COSTGATE_TABLE"] == "t"
    assert (spend.timeout_s, spend.memory_mb) == (60, 256)
    # When its handler is replaced by a recorder and a loop runs it every 50 ms for two runs
    events: list[dict[str, Any]] = []

    def record(event: dict[str, Any], context: Any) -> dict[str, Any]:
        events.append(event)
        return {}

    recorder = LocalFunction(
        logical_id=spend.logical_id,
        handler=record,
        memory_mb=spend.memory_mb,
        timeout_s=spend.timeout_s,
        environment=spend.environment,
        routes=(),
    )
    stop = threading.Event()
    thread = threading.Thread(target=ScheduleLoop(recorder, 0.05, stop).run)
    thread.start()
    deadline = time.monotonic() + DEADLINE_S
    while len(events) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    thread.join(DEADLINE_S)
    # Then it got scheduled events from a rule of its own, shaped as its fixture
    assert not thread.is_alive()
    assert len(events) >= 2
    fixture = load_event("spend_watch", "scheduled")
    assert set(events[0]) == set(fixture)
    assert events[0]["resources"] == [
        "arn:aws:events:us-east-1:123456789012:rule/costgate-local-SpendWatchFunctionSchedule"
    ]
