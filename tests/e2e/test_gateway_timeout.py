"""A request that outlives the gateway's timeout is still recorded in the ledger.

API Gateway gives up on an invocation that has sent no prelude within its integration timeout and answers
504, while the Lambda runs on. Here the local front's timeout (0.5 s) is shorter than the simulated Claude's
latency (1.5 s) for a request that does not stream (its prelude comes with the whole answer): the client gets
the 504, and the invocation, in its environment process, still prices the answer and records it, once.
"""

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import httpx2 as httpx
import pytest
from werkzeug.serving import make_server

from costgate.accounting.ledger import Rollup
from costgate.dal.keys import DynamoKeyStore
from costgate.dal.ledger import DynamoLedgerStore
from costgate.dal.table import CostgateItem, bind_table
from costgate.gateway.keys import issue_key
from costgate.pricing.cost import price_usage
from costgate.pricing.usage import normalise_usage
from costgate_local.simulator import FaultConfig, Simulator, SimulatorOptions
from costgate_local.stack.aws import LocalAwsEndpoints, create_bucket, create_secret, create_table, environment
from costgate_local.stack.front import ApiFront, LocalFunction
from costgate_local.stack.template import load_template
from tests.integration.stream import aggregate_bound

INTEGRATION_TIMEOUT_S = 0.5
UPSTREAM_LATENCY_MS = 1_500
LEDGER_WAIT_S = 10.0
CLIENT_TIMEOUT_S = 10.0
TENANT = "slow-answers"
MODEL = "claude-haiku-5-5"
BODY = {"model": MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": "Take your time."}]}


@dataclass(frozen=True)
class SlowStack:
    base_url: str
    api_key: str
    upstream_url: str


@pytest.fixture
def slow_stack(local_aws: LocalAwsEndpoints) -> Iterator[SlowStack]:
    """ApiFunction behind a front with a 0.5 s integration timeout, over a simulator that takes 1.5 s."""
    suffix = uuid.uuid4().hex[:12]
    table, bucket, secret = f"costgate-timeout-{suffix}", f"costgate-timeout-{suffix}", f"costgate/timeout-{suffix}"
    create_table(local_aws, table)
    create_bucket(local_aws, bucket)
    create_secret(local_aws, secret, "sk-ant-local-simulator")
    with ExitStack() as stack:
        options = SimulatorOptions(faults=FaultConfig(latency_ms=UPSTREAM_LATENCY_MS))
        simulator = stack.enter_context(Simulator(options))
        refs = {"Table": table, "Bucket": bucket, "ClaudeApiUrl": simulator.base_url, "ClaudeApiKeySecretName": secret}
        # Its execution environments are processes of their own, as in `costgate serve`.
        function = LocalFunction.from_template(load_template(), "ApiFunction", refs=refs)
        env = {**local_aws.environ(), **function.environment, "POWERTOOLS_METRICS_DISABLED": "true"}
        stack.enter_context(environment(env))
        stack.callback(bind_table, CostgateItem.Meta.table_name)
        bind_table(table)
        api_key, _ = issue_key(DynamoKeyStore(), tenant=TENANT, feature=None, now=datetime.now(UTC))
        front = ApiFront(function, integration_timeout_s=INTEGRATION_TIMEOUT_S)
        server = make_server("127.0.0.1", 0, front, threaded=True)
        stack.callback(server.server_close)
        threading.Thread(target=server.serve_forever, name="timeout-front", daemon=True).start()
        stack.callback(server.shutdown)
        # Last in, first out: the environments stop while the simulator and moto still serve.
        stack.callback(function.close)
        yield SlowStack(f"http://127.0.0.1:{server.server_port}", api_key, simulator.base_url)


def _tenant_rollups(ledger: DynamoLedgerStore, around: date) -> list[Rollup]:
    aggregate_bound()  # what AggregatorFunction would have taken from the table's stream by now
    days = (around - timedelta(days=1), around + timedelta(days=1))
    return [rollup for rollup in ledger.rollups(*days) if rollup.tenant == TENANT]


@pytest.mark.slow
def test_request_that_outlives_the_gateway_timeout_is_still_recorded(slow_stack: SlowStack) -> None:
    # Given a gateway whose integration timeout (0.5 s) is shorter than Claude's answer (1.5 s)
    ledger = DynamoLedgerStore()
    at = datetime.now(UTC)
    assert _tenant_rollups(ledger, at.date()) == []
    # When a client sends a message
    started = time.monotonic()
    response = httpx.post(
        f"{slow_stack.base_url}/v1/messages",
        json=BODY,
        headers={"x-api-key": slow_stack.api_key, "anthropic-version": "2023-06-01"},
        timeout=CLIENT_TIMEOUT_S,
    )
    waited = time.monotonic() - started
    # Then it gets API Gateway's 504 at the timeout, before Claude has answered
    assert response.status_code == 504
    assert response.json() == {"message": "Endpoint request timed out"}
    assert waited < UPSTREAM_LATENCY_MS / 1000
    assert _tenant_rollups(ledger, at.date()) == []

    # And within a bounded wait the request reaches the ledger: the invocation ran on
    deadline = time.monotonic() + LEDGER_WAIT_S
    recorded = _tenant_rollups(ledger, at.date())
    while not recorded and time.monotonic() < deadline:
        time.sleep(0.1)
        recorded = _tenant_rollups(ledger, at.date())
    assert recorded, f"the request was not in the ledger {LEDGER_WAIT_S} s after its 504"

    # And it is there exactly once, at what Claude's usage costs
    recorded = _tenant_rollups(ledger, at.date())
    assert [(r.model, r.requests) for r in recorded] == [(MODEL, 1)]
    # the simulator answers the same body the same way: its usage is what the timed-out request used
    direct = httpx.post(
        f"{slow_stack.upstream_url}/v1/messages",
        json=BODY,
        headers={"x-api-key": "sk-ant-local-simulator", "anthropic-version": "2023-06-01"},
        timeout=CLIENT_TIMEOUT_S,
    )
    assert direct.status_code == 200
    usage = normalise_usage(direct.json()["usage"])
    assert (recorded[0].input_tokens, recorded[0].output_tokens) == (usage.input_tokens, usage.output_tokens)
    assert recorded[0].cost_usd == price_usage(MODEL, usage, at).total_usd
    assert recorded[0].cost_usd > Decimal(0)
