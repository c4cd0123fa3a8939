"""Concurrent requests never overshoot a budget: 60 at once against a daily budget that fits ~10.

Each request's prompt is emoji, which the simulator counts as 2.6 tokens per 4 UTF-8 bytes, so the
gateway's byte-count worst case is within ~2× of the real cost. A budget of ~10 worst cases then holds
at most ~19 real answers: far below the 60 sent, so an admission race would show as overspend. Once
with a key's budget on one shard, once with a tenant's budget spread over four (draws from the root,
dry flags and the refusals of shards that hold crumbs all happen under the race).
"""

import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import anthropic
import pytest

from costgate_local.stack.front import MAX_CONTAINERS
from tests.e2e.test_cli import costgate
from tests.e2e.test_gateway_sdk import MODEL, create_key, report, serving
from tests.e2e.test_serve import Served

REQUESTS = 60
LIMIT_USD = Decimal("0.015")
TENANT = "burst"
# ~3,000 emoji: a worst case of ~$0.0014 against a real cost of ~$0.0008 on claude-haiku-5-5.
PROMPT = "\N{GRINNING FACE}" * 3_000
# The simulator holds every answer this long, so the requests really are in flight together.
LATENCY_MS = 300
REQUEST_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Outcome:
    status: int
    cost_usd: Decimal | None = None  # the receipt of a 200
    message: str = ""  # the error message of anything else


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A stack of its own, every execution environment warmed by a request on another tenant's budgeted key.

    The local front runs each environment as a process (up to MAX_CONTAINERS), and a new one is a cold
    start (imports, then the handler's clients built on first use): 60 requests on cold environments would
    spend their timeout starting processes on this small machine. Lambda keeps warm containers between
    bursts, so warming every environment first, with as many requests at once, is the faithful setup.
    """
    log = tmp_path_factory.mktemp("budget-concurrency") / "serve.log"
    with serving("--latency-ms", str(LATENCY_MS), log=log) as stack:
        warm_key = create_key(stack, "--tenant", "warm-up", "--daily-budget-usd", "1")["api_key"]
        warm = anthropic.Anthropic(base_url=stack.ready["base_url"], api_key=warm_key, max_retries=0)
        with ThreadPoolExecutor(max_workers=MAX_CONTAINERS) as pool:
            list(pool.map(lambda _: _warm_up(warm), range(MAX_CONTAINERS)))
        yield stack


def _warm_up(client: anthropic.Anthropic) -> None:
    client.messages.create(model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "Warm up."}])


def _send(client: anthropic.Anthropic, number: int) -> Outcome:
    try:
        raw = client.messages.with_raw_response.create(
            model=MODEL,
            max_tokens=16,
            messages=[{"role": "user", "content": f"Request {number}: {PROMPT}"}],
            extra_headers={"x-costgate-cache": "off"},
        )
    except anthropic.APIStatusError as error:
        body: Any = error.body
        message = body.get("error", {}).get("message", "") if isinstance(body, dict) else str(body)
        return Outcome(status=error.status_code, message=message)
    return Outcome(status=raw.status_code, cost_usd=Decimal(raw.headers["x-costgate-cost-usd"]))


@pytest.mark.slow
@pytest.mark.parametrize("shards", [1, 4])
def test_sixty_concurrent_requests_never_overshoot_the_budget(served: Served, shards: int) -> None:
    # Given a daily budget that fits only some of the requests' worst cases: the key's (one shard), or
    # its tenant's spread over four shards
    tenant = f"{TENANT}-{shards}"
    if shards == 1:
        created = create_key(served, "--tenant", tenant, "--daily-budget-usd", str(LIMIT_USD))
    else:
        budget = ["--tenant", tenant, "--period", "day", "--limit-usd", str(LIMIT_USD), "--shards", str(shards)]
        result = costgate("budgets", "set", *budget, env=served.env())
        assert result.returncode == 0, result.stderr
        created = create_key(served, "--tenant", tenant)
    client = anthropic.Anthropic(
        base_url=served.ready["base_url"], api_key=created["api_key"], max_retries=0, timeout=REQUEST_TIMEOUT_S
    )
    # When 60 requests are sent at once
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=REQUESTS) as pool:
        outcomes = list(pool.map(lambda number: _send(client, number), range(REQUESTS)))
    elapsed = time.monotonic() - started
    accepted = [o for o in outcomes if o.status == 200]
    refused = [o for o in outcomes if o.status == 429]
    costs = [o.cost_usd for o in accepted if o.cost_usd is not None]
    receipts_usd = sum(costs, Decimal(0))
    ledger = report(served, "--tenant", tenant)["total"]
    spent = Decimal(ledger["cost_usd"])
    worst = max(
        (Decimal(m.group(1)) for o in refused if (m := re.search(r"may cost up to \$([\d.]+)", o.message))),
        default=None,
    )
    print(  # noqa: T201 - the figures, for `pytest -s`
        f"\nbudget concurrency ({shards} shard(s)): {REQUESTS} concurrent requests in {elapsed:.1f} s; "
        f"accepted {len(accepted)}, refused {len(refused)}; spent ${spent} of a ${LIMIT_USD} limit "
        f"(overshoot ${max(spent - LIMIT_USD, Decimal(0))}); worst case per request ${worst}, "
        f"real cost per request ${min(costs, default=None)}-${max(costs, default=None)}"
    )
    # Then every request was either answered or refused for the budget, never failed
    assert [o for o in outcomes if o.status not in (200, 429)] == []
    assert all("daily budget" in o.message for o in refused), {o.message for o in refused}
    # and some were accepted, some refused — and all of them would not have fitted
    assert accepted
    assert refused
    assert REQUESTS * min(costs) > LIMIT_USD
    # and the ledger holds exactly the accepted requests, at exactly their receipts, within the budget
    assert ledger["requests"] == len(accepted)
    assert spent == receipts_usd
    assert spent <= LIMIT_USD
