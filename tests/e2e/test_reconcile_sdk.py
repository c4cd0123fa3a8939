"""Reconciliation as a user meets it: traffic through `costgate serve` with the official SDK, then
`costgate reconcile` and ReconcileFunction against the simulator's usage and cost reports.

Gateway traffic (plain, streamed, prompt-cache writes and reads, answer-cache hits, a batch job) reconciles
to zero drift; one request sent straight to the simulator with its Claude key is exactly its tokens and cost
of drift, `costgate reconcile` exits 1 and ReconcileFunction emits the drift; a stack whose simulator bills
from an altered copy of prices.json shows cost drift with zero token drift.

The day in progress is compared through the simulator's last complete minute, so each check first waits for
the minute its traffic ended in to close.
"""

import io
import json
import os
import time
from collections.abc import Iterator
from contextlib import redirect_stdout
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import boto3
import pytest

from costgate.pricing.cost import price_usage
from costgate.pricing.usage import normalise_usage
from costgate_local.stack.front import LocalFunction
from costgate_local.stack.serve import PSEUDO_PARAMETERS
from costgate_local.stack.template import load_template
from tests.e2e.test_cli import costgate
from tests.e2e.test_gateway_sdk import serving
from tests.e2e.test_serve import Served

MODEL = "claude-haiku-5-5"
NO_ANSWER_CACHE = {"x-costgate-cache": "off"}
SYSTEM = "You answer questions about the costgate handbook. " + "Budgets hold the worst case. " * 120
PRICES = Path(__file__).parents[2] / "shared/costgate/pricing/prices.json"

pytestmark = pytest.mark.slow


def _env(served: Served) -> dict[str, str]:
    return {
        **served.env(),
        "ANTHROPIC_ADMIN_API_KEY": served.ready["admin_api_key"],
        "COSTGATE_ADMIN_API_URL": served.ready["upstream_url"],
    }


def _reconcile(served: Served, first: date) -> tuple[int, dict[str, Any]]:
    """`costgate reconcile --from first --to today --json` once the minute under way has closed."""
    _wait_for_the_next_minute()
    today = datetime.now(UTC).date()
    result = costgate("reconcile", "--from", first.isoformat(), "--to", today.isoformat(), "--json", env=_env(served))
    assert result.returncode in (0, 1), result.stderr
    parsed: dict[str, Any] = json.loads(result.stdout)
    return result.returncode, parsed


def _wait_for_the_next_minute() -> None:
    now = datetime.now(UTC)
    boundary = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    time.sleep((boundary - now).total_seconds() + 0.5)


def _ask(client: anthropic.Anthropic, question: str, **kwargs: Any) -> Any:
    return client.messages.create(
        model=MODEL, max_tokens=256, messages=[{"role": "user", "content": question}], **kwargs
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    log = tmp_path_factory.mktemp("reconcile-sdk") / "serve.log"
    with serving("--batch-delay", "1", "--batch-interval", "0.5", log=log) as stack:
        yield stack


@pytest.fixture(scope="module")
def traffic(served: Served, tmp_path_factory: pytest.TempPathFactory) -> date:
    """Gateway traffic of every kind reconciliation must handle; the UTC day it began on."""
    began = datetime.now(UTC).date()
    client = anthropic.Anthropic(base_url=served.ready["base_url"], api_key=served.ready["api_key"])
    _ask(client, "What does costgate do?", extra_headers=NO_ANSWER_CACHE)
    with client.messages.stream(
        model=MODEL, max_tokens=256, messages=[{"role": "user", "content": "Stream a short answer."}]
    ) as stream:
        stream.get_final_message()
    system: Any = [{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}]
    written = _ask(client, "Summarise the handbook.", system=system, extra_headers=NO_ANSWER_CACHE)
    read = _ask(client, "And in one word?", system=system, extra_headers=NO_ANSWER_CACHE)
    assert written.usage.cache_creation_input_tokens
    assert read.usage.cache_read_input_tokens
    first = client.messages.with_raw_response.create(
        model=MODEL, max_tokens=256, messages=[{"role": "user", "content": "How do I change my address?"}]
    )
    again = client.messages.with_raw_response.create(
        model=MODEL, max_tokens=256, messages=[{"role": "user", "content": "How do I change my address?"}]
    )
    assert (first.headers["x-costgate-cache"], again.headers["x-costgate-cache"]) == ("miss", "exact-hit")
    folder = tmp_path_factory.mktemp("reconcile-docs") / "weekly"
    folder.mkdir()
    (folder / "notes.txt").write_text("We shipped the batch gateway. Costs fell by half.", encoding="utf-8")
    (folder / "plan.md").write_text("# Plan\n\nWrite the docs, then the demo.", encoding="utf-8")
    assert costgate("batch", "submit", str(folder), env=served.env()).returncode == 0
    watched = costgate("batch", "status", "weekly", "--watch", env=served.env(), timeout=120)
    assert watched.returncode == 0, watched.stderr
    return began


def test_gateway_traffic_reconciles_to_zero_drift(served: Served, traffic: date) -> None:
    # When the day is reconciled, through the minute the traffic ended in
    code, result = _reconcile(served, traffic)

    # Then nothing drifts: both tiers match to the token and the fraction of a cent
    assert code == 0, json.dumps(result, indent=1)
    assert (result["ok"], result["drift_tokens"], result["drift_usd"]) == (True, 0, "0")
    rows = {row["service_tier"]: row for row in result["rows"] if row["model"] == MODEL}
    assert {tier: row["status"] for tier, row in rows.items()} == {"standard": "match", "batch": "match"}
    standard = rows["standard"]
    assert standard["anthropic"]["cache_write_5m_tokens"] + standard["anthropic"]["cache_write_1h_tokens"] > 0
    assert standard["anthropic"]["cache_read_tokens"] > 0
    assert standard["answer_cache_hits"] >= 1  # recorded at $0: no Claude call to match
    assert standard["ledger_requests"] == standard["anthropic_requests"]
    assert rows["batch"]["anthropic_requests"] == 2


def test_a_request_around_the_gateway_is_exactly_its_drift_and_the_function_emits_it(
    served: Served, traffic: date, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given one request sent straight to the simulator with its Claude key, as a careless client would
    direct = anthropic.Anthropic(base_url=served.ready["upstream_url"], api_key=served.ready["upstream_api_key"])
    around = _ask(direct, "Skip the gateway?")
    usage = normalise_usage(around.usage.model_dump())
    cost = price_usage(MODEL, usage, datetime.now(UTC)).total_usd

    # When the day is reconciled
    code, result = _reconcile(served, traffic)

    # Then `costgate reconcile` exits 1 and the drift is exactly that request's tokens and cost
    assert code == 1
    assert result["ok"] is False
    assert result["drift_tokens"] == usage.input_tokens + usage.output_tokens
    assert Decimal(result["drift_usd"]) == cost
    (drifting,) = [row for row in result["rows"] if row["status"] == "drift"]
    assert (drifting["model"], drifting["service_tier"]) == (MODEL, "standard")
    assert drifting["difference"]["output_tokens"] == usage.output_tokens

    # And ReconcileFunction, asked about the day, emits the drift the alarm watches
    emitted = _run_reconcile_function(served, traffic, monkeypatch)
    assert emitted["ReconcileDriftDays"] == 1
    assert emitted["ReconcileDriftTokens"] == result["drift_tokens"]
    assert Decimal(str(emitted["ReconcileDriftUsd"])) == Decimal(str(float(cost)))


def test_a_price_anthropic_changed_shows_as_cost_drift_with_zero_token_drift(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # Given a stack whose simulator bills Haiku 5.5 output at 0.60 instead of costgate's 0.50 per MTok
    data = json.loads(PRICES.read_text(encoding="utf-8"))
    (haiku,) = (model for model in data["models"] if model["id"] == MODEL)
    assert Decimal(haiku["rates"][-1]["output"]) == Decimal("0.5")
    haiku["rates"][-1]["output"] = "0.6"
    altered = tmp_path_factory.mktemp("prices") / "prices.json"
    altered.write_text(json.dumps(data), encoding="utf-8")
    log = tmp_path_factory.mktemp("reconcile-prices") / "serve.log"
    with serving("--prices", str(altered), log=log) as stack:
        began = datetime.now(UTC).date()
        client = anthropic.Anthropic(base_url=stack.ready["base_url"], api_key=stack.ready["api_key"])
        answer = _ask(client, "What changed?", extra_headers=NO_ANSWER_CACHE)

        # When the day is reconciled
        code, result = _reconcile(stack, began)

    # Then no token drifts, and the cost drifts by exactly the output tokens times the 0.10 difference
    assert code == 1
    assert result["drift_tokens"] == 0
    assert Decimal(result["drift_usd"]) == answer.usage.output_tokens * Decimal("0.1") / 1_000_000
    (drifting,) = [row for row in result["rows"] if row["status"] == "drift"]
    assert "a price in prices.json is not Anthropic's" in drifting["reason"]


def _run_reconcile_function(served: Served, day: date, monkeypatch: pytest.MonkeyPatch) -> dict[str, float]:
    """The real ReconcileFunction, its environment from the template, on the stack's moto and simulator,
    invoked as an operator would (`{"from", "to"}`); the Reconcile* metrics it printed."""
    aws = {k: v for k, v in served.env().items() if k.startswith("AWS_")}
    refs = {**PSEUDO_PARAMETERS, "Table": served.ready["table"], "AnthropicAdminApiUrl": served.ready["upstream_url"]}
    function = LocalFunction.from_template(load_template(), "ReconcileFunction", refs=refs)
    for name, value in {**aws, **function.environment}.items():
        monkeypatch.setenv(name, value)
    # The operator's step before the first run: the Admin key in the secret the template names.
    secret = function.environment["COSTGATE_ADMIN_KEY_SECRET"]
    boto3.client("secretsmanager").create_secret(Name=secret, SecretString=served.ready["admin_api_key"])
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    printed = io.StringIO()
    today = datetime.now(UTC).date().isoformat()
    with redirect_stdout(printed):
        function.invoke({"from": day.isoformat(), "to": today})
    found: dict[str, float] = {}
    for line in printed.getvalue().splitlines():
        if '"_aws"' in line and "ReconcileDriftDays" in line:
            blob = json.loads(line)
            # Powertools prints each metric's values as a list: one run, one value each.
            found = {
                name: blob[name][0] for name in ("ReconcileDriftDays", "ReconcileDriftTokens", "ReconcileDriftUsd")
            }
    assert found, "ReconcileFunction printed no Reconcile* metrics"
    assert os.environ["COSTGATE_CLAUDE_KEY_IDS"] == "organization"
    return found
