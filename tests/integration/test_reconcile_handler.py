"""ReconcileFunction end to end: the real handler on events/reconcile/*.json, the ledger and the verdicts in
DynamoDB (moto), the Admin key in Secrets Manager (moto), Anthropic's records from the simulator."""

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import anthropic
import pytest

from costgate.accounting.services import record_request
from costgate.dal.ledger import DynamoLedgerStore
from costgate.dal.reconcile import DynamoReconcileStore
from costgate.errors import ConfigurationError, InvalidRequestError
from costgate.observability import MetricName
from costgate.pricing.cost import price_usage
from costgate.pricing.usage import normalise_usage
from costgate.reconcile.model import DayStatus
from costgate_local.simulator import ManualClock, Simulator, SimulatorOptions
from costgate_local.stack.aws import LocalAwsEndpoints, create_secret
from functions.reconcile import handler
from tests.conftest import FakeLambdaContext
from tests.events import load_event
from tests.fakes.accounting import make_entry
from tests.fakes.clock import ManualClock as FixedClock
from tests.unit.test_metrics import SERVICE, emitted

DAY = date(2026, 11, 30)
TRAFFIC_AT = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
# The scheduled run of Dec 2, 07:00: Nov 29 and 30 are settled, Dec 1 is final but Dec 2 is open.
RUN = datetime(2026, 12, 2, 7, 0, tzinfo=UTC)
MODEL = "claude-haiku-5-5"
CONTEXT = FakeLambdaContext(
    function_name="costgate-ReconcileFunction-test",
    invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:costgate-ReconcileFunction-test",
)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(TRAFFIC_AT)


@pytest.fixture
def sim(clock: ManualClock) -> Iterator[Simulator]:
    with Simulator(SimulatorOptions(clock=clock)) as simulator:
        yield simulator


@pytest.fixture
def deployed(
    ledger_table: str, local_aws: LocalAwsEndpoints, sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """The environment the template gives ReconcileFunction, EMF printed, and a cold container."""
    secret = f"costgate/anthropic-admin-key-{uuid.uuid4().hex[:8]}"
    create_secret(local_aws, secret, sim.options.admin_key)
    for name, value in {
        "COSTGATE_ADMIN_API_URL": sim.base_url,
        "COSTGATE_ADMIN_KEY_SECRET": secret,
        "COSTGATE_CLAUDE_KEY_IDS": "organization",
        "COSTGATE_RECONCILE_SETTLE_HOURS": "6",
        "COSTGATE_RECONCILE_LOOKBACK_DAYS": "3",
        "POWERTOOLS_SERVICE_NAME": SERVICE,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    handler.settings.cache_clear()
    handler.sources.cache_clear()
    yield
    handler.settings.cache_clear()
    handler.sources.cache_clear()


def _traffic(sim: Simulator) -> tuple[Any, Any]:
    """Two requests on Nov 30: the first through the gateway (in the ledger), the second around it."""
    client = anthropic.Anthropic(base_url=sim.base_url, api_key="sk-ant-local-simulator", max_retries=0)
    usages = [
        client.messages.create(model=MODEL, max_tokens=128, messages=[{"role": "user", "content": text}]).usage
        for text in ("Through the gateway?", "Around the gateway?")
    ]
    entry = make_entry("req-through", at=TRAFFIC_AT, model=MODEL, usage=normalise_usage(usages[0].model_dump()))
    record_request(DynamoLedgerStore(), entry)
    return usages[0], usages[1]


def test_the_daily_run_keeps_each_days_verdict_and_emits_the_drift(
    deployed: None, sim: Simulator, clock: ManualClock, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a request the ledger has and one it lacks on Nov 30
    _, around = _traffic(sim)
    capsys.readouterr()

    # When the daily run of Dec 2, 07:00 checks the 3 days before
    clock.set(RUN)
    result = handler.lambda_handler(load_event("reconcile", "scheduled"), CONTEXT, clock=FixedClock(RUN))
    found = emitted(capsys.readouterr().out)

    # Then Nov 29 matched, Nov 30 drifts by exactly the request around the gateway, Dec 1 waits on Dec 2
    kept = DynamoReconcileStore().results(DAY - timedelta(days=1), DAY + timedelta(days=1))
    assert {day: verdict.status for day, verdict in kept.items()} == {
        DAY - timedelta(days=1): DayStatus.MATCH,
        DAY: DayStatus.DRIFT,
        DAY + timedelta(days=1): DayStatus.PENDING,
    }
    missing = normalise_usage(around.model_dump())
    cost = price_usage(MODEL, missing, TRAFFIC_AT).total_usd
    assert kept[DAY].drift_tokens == missing.input_tokens + missing.output_tokens
    assert kept[DAY].drift_usd == cost
    assert (result["drift_days"], result["pending_days"], result["drift_tokens"]) == (1, 1, kept[DAY].drift_tokens)
    assert Decimal(result["drift_usd"]) == cost
    # and emitted it for the drift alarm, on the service-only dimension set
    assert found[(MetricName.RECONCILE_DRIFT_DAYS, frozenset())] == [1]
    assert found[(MetricName.RECONCILE_DRIFT_TOKENS, frozenset())] == [kept[DAY].drift_tokens]
    assert found[(MetricName.RECONCILE_DRIFT_USD, frozenset())] == [float(cost)]
    assert sim.options.admin_key not in json.dumps(result)


def test_the_next_run_rechecks_only_what_was_pending(
    deployed: None, sim: Simulator, clock: ManualClock, capsys: pytest.CaptureFixture[str]
) -> None:
    _traffic(sim)
    clock.set(RUN)
    handler.lambda_handler(load_event("reconcile", "scheduled"), CONTEXT, clock=FixedClock(RUN))

    # When the run of Dec 3 comes
    later = RUN + timedelta(days=1)
    clock.set(later)
    result = handler.lambda_handler(load_event("reconcile", "scheduled"), CONTEXT, clock=FixedClock(later))

    # Then it checked Dec 1 (pending, now settled) and Dec 2 (yesterday); Nov 30's drift stands as kept
    assert [day["day"] for day in result["checked"]] == ["2026-12-01", "2026-12-02"]
    kept = DynamoReconcileStore().results(DAY, DAY + timedelta(days=2))
    assert [kept[d].status for d in sorted(kept)] == [DayStatus.DRIFT, DayStatus.MATCH, DayStatus.PENDING]


def test_an_invocation_naming_days_rechecks_them_as_of_now(
    deployed: None, sim: Simulator, clock: ManualClock, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the traffic, checked on Nov 30 itself, in the afternoon
    _traffic(sim)
    afternoon = TRAFFIC_AT + timedelta(hours=5)
    clock.set(afternoon)
    capsys.readouterr()

    # When an operator invokes the function with events/reconcile/recheck.json (Nov 30 .. Dec 1)
    event = load_event("reconcile", "recheck")
    with pytest.raises(InvalidRequestError, match="after today"):
        handler.lambda_handler(event, CONTEXT, clock=FixedClock(afternoon))
    result = handler.lambda_handler({**event, "to": "2026-11-30"}, CONTEXT, clock=FixedClock(afternoon))

    # Then the day in progress drifts as of now (counted for the alarm), and is kept as pending
    assert result["drift_days"] == 1
    assert emitted(capsys.readouterr().out)[(MetricName.RECONCILE_DRIFT_DAYS, frozenset())] == [1]
    assert DynamoReconcileStore().results(DAY, DAY)[DAY].status is DayStatus.PENDING


def test_a_key_that_is_not_an_admin_key_fails_the_run_without_showing_it(
    deployed: None, sim: Simulator, local_aws: LocalAwsEndpoints, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = f"costgate/wrong-key-{uuid.uuid4().hex[:8]}"
    create_secret(local_aws, secret, "sk-ant-api03-a-claude-key-not-an-admin-key")
    monkeypatch.setenv("COSTGATE_ADMIN_KEY_SECRET", secret)
    handler.settings.cache_clear()
    handler.sources.cache_clear()
    with pytest.raises(ConfigurationError) as raised:
        handler.lambda_handler(load_event("reconcile", "scheduled"), CONTEXT, clock=FixedClock(RUN))
    assert "a-claude-key" not in str(raised.value)


def test_bad_settings_fail_at_the_edge(deployed: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COSTGATE_CLAUDE_KEY_IDS", "sk-ant-api03-oops")
    with pytest.raises(ConfigurationError, match="COSTGATE_CLAUDE_KEY_IDS"):
        handler.settings()
