"""A short workload through the local stack, with every DynamoDB call of every request recorded.

moto as AWS (the table from template.yaml), the Claude API simulator, and ApiFunction's real
handler loaded from the template, invoked with API Gateway REST events as the local front builds
them. Two tenants, each with a key that carries daily and monthly budgets and with daily and
monthly budgets of its own and on its feature: six budget windows per request, as a deployment
that uses every kind of budget has. The tenant and feature budgets spread each (key, feature) pair
over `shards` shard items, and every shard is given its allowance before recording (as a busy
deployment's shards have theirs): a recorded request takes its hold in one write, as in steady state.

Each scenario runs in execution environments of its own: a warm one (one unrecorded request per
tenant first), then one new environment per tenant for a recorded cold request (empty warm
caches), then `per_tenant` recorded requests per tenant, alternating, in the warm one. The
simulator's app is wrapped so the recorder learns when the Claude call of a request begins.
"""

import itertools
import json
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from costgate_local.simulator import Simulator, SimulatorOptions
from costgate_local.stack.aws import LocalAws, create_secret, create_table, environment
from costgate_local.stack.front import ACCOUNT_ID, Handler, LocalFunction, Route, rest_event
from costgate_local.stack.runtime_api import invoke_in_memory
from costgate_local.stack.template import load_template, table_create_args
from costgate_local.tools.capacity import Phase, RequestSample
from costgate_local.tools.capacity_recorder import DynamoRecorder, TableSchema

TABLE = "costgate-capacity"
FUNCTION = "ApiFunction"
TENANT_SUFFIXES = ("a", "b")
FEATURE = "chat"
# Far above what the workload spends: every budget applies, none refuses (but in `rejected`).
BUDGET_USD = Decimal(1_000_000)
CLAUDE_KEY_SECRET = "costgate/capacity-claude-key"  # noqa: S105 - a secret's name, not a secret
WORKLOAD = Path(__file__).resolve().parents[1] / "workload"
MESSAGES_PATH = "/v1/messages"


@dataclass(frozen=True)
class Scenario:
    """A kind of request: the headers it sends, its bodies (fresh ones, or the same one), what it must get."""

    name: str
    description: str
    cache_header: str  # x-costgate-cache: off | exact | semantic
    bodies: Callable[[str], Iterator[dict[str, Any]]]  # fresh request bodies, each carrying the tag
    status: int
    cache_result: str | None  # the x-costgate-cache answer every recorded request must carry
    exhausted: bool = False  # the key's daily budget is spent before the scenario: every request is refused


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _contract_reviews(tag: str) -> Iterator[dict[str, Any]]:
    """The shipped legal workload: a 26 KB system prompt (the prompt-cache policy caches it), distinct clauses."""
    system = (WORKLOAD / "contract_analysis" / "system.md").read_text(encoding="utf-8")
    questions = [line["question"] for line in _lines(WORKLOAD / "contract_analysis" / "requests.jsonl")]
    for number, question in zip(itertools.count(), itertools.cycle(questions), strict=False):
        yield {
            "model": "claude-sonnet-5-5",
            "max_tokens": 1024,
            "system": system,
            "messages": [{"role": "user", "content": f"{question}\n\n(matter {tag}-{number})"}],
        }


def _research_questions(_tag: str) -> Iterator[dict[str, Any]]:
    """Distinct questions (KO/EN) of one user turn each, eligible for the semantic cache: the shipped research
    questions, then the shop FAQ's originals (tenants of its own keep runs apart; the tag is not needed)."""
    research = [line["question"] for line in _lines(WORKLOAD / "auto_questions" / "requests.jsonl")]
    faq = [
        line["question"] for line in _lines(WORKLOAD / "customer_faq" / "requests.jsonl") if line["kind"] == "original"
    ]
    for question in research + faq:
        yield {
            "model": "claude-haiku-5-5",
            "max_tokens": 512,
            "messages": [{"role": "user", "content": question}],
        }


def _one_question(tag: str) -> Iterator[dict[str, Any]]:
    body = next(_research_questions(tag))
    body["messages"] = [{"role": "user", "content": f"{body['messages'][0]['content']} ({tag})"}]
    while True:
        yield body


SCENARIOS = (
    Scenario(
        "miss",
        "a cache miss: exact cache on, prompt caching managed, six budgets; Claude answers",
        "exact",
        _contract_reviews,
        200,
        "miss",
    ),
    Scenario(
        "semantic-miss",
        "a miss eligible for the semantic cache (one user text turn): the answer is stored semantically too",
        "semantic",
        _research_questions,
        200,
        "miss",
    ),
    Scenario("exact-hit", "the same question again: answered from the exact cache", "exact", _one_question, 200, None),
    Scenario(
        "rejected",
        "the key's daily budget is spent: refused with 429 before Claude",
        "exact",
        _contract_reviews,
        429,
        None,
        exhausted=True,
    ),
)


class _PhaseMarker:
    """WSGI middleware around the simulator: a Messages request reaching it moves the recorder to AFTER."""

    def __init__(self, app: Any, recorder: DynamoRecorder) -> None:
        self._app = app
        self._recorder = recorder

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == MESSAGES_PATH:
            self._recorder.phase = Phase.AFTER
        result: Iterable[bytes] = self._app(environ, start_response)
        return result


@dataclass
class _Stack:
    api: LocalFunction
    route: Route
    recorder: DynamoRecorder
    containers: Iterator[int]
    shards: int


def record_scenarios(
    per_tenant: int, scenarios: Iterable[Scenario] = SCENARIOS, log: TextIO | None = None, shards: int = 1
) -> dict[str, list[RequestSample]]:
    """Run each scenario through a fresh local stack; its recorded requests, cold ones first."""
    if per_tenant < 2:
        raise ValueError("record at least 2 requests per tenant: a share needs more than one request to judge")
    template = load_template()
    # A table and secret of their own per recording: moto's state is the process's, which may record twice.
    run = uuid.uuid4().hex[:8]
    table, secret = f"{TABLE}-{run}", f"{CLAUDE_KEY_SECRET}-{run}"
    create_args = table_create_args(template, table)
    recorded: dict[str, list[RequestSample]] = {}
    with ExitStack() as stack:
        aws = stack.enter_context(LocalAws())
        endpoints = aws.endpoints
        recorder = DynamoRecorder(_moto_reader(table, endpoints.region), TableSchema.from_create_args(create_args))
        simulator = Simulator(SimulatorOptions(port=0))
        simulator.app = _PhaseMarker(simulator.app, recorder)  # type: ignore[assignment]
        stack.enter_context(simulator)
        refs = {
            "AWS::StackName": "costgate-capacity",
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::Region": endpoints.region,
            "AWS::Partition": "aws",
            "Table": table,
            "ClaudeApiUrl": simulator.base_url,
            "ClaudeApiKeySecretName": secret,
        }
        api = LocalFunction.from_template(
            template, FUNCTION, refs=refs, in_process=True
        )  # its stores are recorded here
        settings = {
            **endpoints.environ(),
            **api.environment,
            # EMF and log lines are not what this measures.
            "POWERTOOLS_METRICS_DISABLED": "true",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
        }
        stack.enter_context(environment(settings))
        create_table(endpoints, table)
        create_secret(endpoints, secret, "sk-ant-capacity-simulator")
        _bind(table)
        route = next(r for r in api.routes if r.method == "POST" and r.resource == MESSAGES_PATH)
        state = _Stack(api, route, recorder, itertools.count(1000), shards)
        with recorder.recording():
            for scenario in scenarios:
                if log is not None:
                    log.write(f"costgate capacity: recording {scenario.name} ({2 + 2 * per_tenant} requests)\n")
                recorded[scenario.name] = _run(state, scenario, per_tenant)
    return recorded


def _run(stack: _Stack, scenario: Scenario, per_tenant: int) -> list[RequestSample]:
    # Tenants of its own: no answer, prompt-cache or budget state carries over from another scenario.
    tenants = tuple(f"{scenario.name}-{suffix}" for suffix in TENANT_SUFFIXES)
    _define_budgets(tenants, stack.shards)
    tag = uuid.uuid4().hex[:12]
    # Keys are cached per process (not per environment): a cold request needs a key no request has used.
    keys = {tenant: _issue_key(tenant, exhausted=scenario.exhausted, shards=stack.shards) for tenant in tenants}
    cold_keys = {tenant: _issue_key(tenant, exhausted=scenario.exhausted, shards=stack.shards) for tenant in tenants}
    bodies = {tenant: scenario.bodies(tag) for tenant in tenants}

    def invoke(handler: Any, tenant: str, *, cold: bool) -> RequestSample:
        body = next(bodies[tenant])
        api_key = cold_keys[tenant] if cold else keys[tenant]
        return _invoke(stack, handler, scenario=scenario, tenant=tenant, api_key=api_key, body=body, cold=cold)

    warm = stack.api.load(next(stack.containers))  # type: ignore[misc]
    for tenant in tenants:  # warms the environment; for exact-hit it also stores the answer
        invoke(warm, tenant, cold=False)
    samples = [invoke(stack.api.load(next(stack.containers)), tenant, cold=True) for tenant in tenants]  # type: ignore[misc]
    samples.extend(invoke(warm, tenant, cold=False) for _, tenant in itertools.product(range(per_tenant), tenants))
    return samples


def _invoke(
    stack: _Stack,
    handler: Handler,
    *,
    scenario: Scenario,
    tenant: str,
    api_key: str,
    body: Mapping[str, Any],
    cold: bool,
) -> RequestSample:
    headers = {
        "content-type": "application/json",
        "anthropic-version": "2023-06-01",
        "x-api-key": api_key,
        "x-costgate-feature": FEATURE,
        "x-costgate-cache": scenario.cache_header,
    }
    builder = EnvironBuilder(path=MESSAGES_PATH, method="POST", headers=list(headers.items()), data=json.dumps(body))
    event = rest_event(Request(builder.get_environ()), stack.route, {})
    stack.recorder.take()  # nothing outside the invocation counts
    stack.recorder.phase = Phase.BEFORE
    response = invoke_in_memory(handler, event, stack.api.context())
    calls = stack.recorder.take()
    status = int(response["statusCode"])
    headers_out = {name.lower(): values[-1] for name, values in (response.get("multiValueHeaders") or {}).items()}
    if status != scenario.status:
        raise RuntimeError(f"capacity: {scenario.name} expected {scenario.status}, got {status}: {response['body']}")
    result = headers_out.get("x-costgate-cache")
    if scenario.cache_result is not None and result != scenario.cache_result:
        raise RuntimeError(f"capacity: {scenario.name} expected x-costgate-cache {scenario.cache_result}, got {result}")
    return RequestSample(
        tenant=tenant,
        cold=cold,
        status=status,
        called_claude=stack.recorder.phase is Phase.AFTER,
        calls=calls,
    )


def _moto_reader(table_name: str, region: str) -> Callable[[dict[str, Any]], dict[str, Any] | None]:
    """Reads an item straight from the in-process moto backend: sizes without another HTTP round trip each."""
    from moto.core.models import DEFAULT_ACCOUNT_ID  # noqa: PLC0415 - moto is the local stack's, loaded with it
    from moto.dynamodb.models import dynamodb_backends  # noqa: PLC0415
    from moto.dynamodb.models.dynamo_type import DynamoType  # noqa: PLC0415

    def read(key: dict[str, Any]) -> dict[str, Any] | None:
        table = dynamodb_backends[DEFAULT_ACCOUNT_ID][region].get_table(table_name)
        hash_value = DynamoType(key[table.hash_key_attr])
        range_value = DynamoType(key[table.range_key_attr]) if table.range_key_attr else None
        found = table.get_item(hash_value, range_value)
        return None if found is None else dict(found.to_json()["Attributes"])

    return read


# --- setup through the real stores ------------------------------------------------------------------------------


def _bind(table: str) -> None:
    from costgate.dal.table import bind_table  # noqa: PLC0415 - the CLI loads the data layer only for this command

    bind_table(table)


def _define_budgets(tenants: Iterable[str], shards: int) -> None:
    from costgate.accounting.budgets import Budget, BudgetPeriod, feature_scope, tenant_scope  # noqa: PLC0415
    from costgate.dal.budgets import DynamoBudgetStore  # noqa: PLC0415

    store = DynamoBudgetStore()
    for tenant in tenants:
        for scope in (tenant_scope(tenant), feature_scope(tenant, FEATURE)):
            for period in BudgetPeriod:
                store.put_definition(Budget(scope, period, BUDGET_USD, shards=shards))


def _issue_key(tenant: str, *, exhausted: bool, shards: int) -> str:
    """A new key of the tenant's, with daily and monthly budgets (the daily one already spent when `exhausted`),
    its shards holding their allowances (or, spent, flagged dry) as a busy deployment's do."""
    from costgate.accounting.budgets import Budget, BudgetPeriod, Hold, key_scope  # noqa: PLC0415
    from costgate.dal.budgets import reserve_update  # noqa: PLC0415
    from costgate.dal.keys import DynamoKeyStore  # noqa: PLC0415
    from costgate.gateway.keys import issue_key  # noqa: PLC0415

    now = datetime.now(UTC)
    daily = Decimal(1) if exhausted else BUDGET_USD
    api_key, key = issue_key(
        DynamoKeyStore(), tenant=tenant, daily_budget_usd=daily, monthly_budget_usd=BUDGET_USD, now=now
    )
    if exhausted:
        # Hand the whole daily budget out up front: every draw then finds its root empty, as at the limit.
        budget = Budget(key_scope(key.key_id), BudgetPeriod.DAY, daily)
        item, actions, condition = reserve_update(Hold(budget, budget.window(now), daily))
        item.update(actions=actions, condition=condition)
    _warm_shards(key.key_id, shards, daily, now)
    return api_key


def _warm_shards(key_id: str, shards: int, daily: Decimal, now: datetime) -> None:
    """Every shard of the (key, feature) pair holding an allowance for today, as a busy deployment's shards do
    (written directly, in batches: drawing 64 shards through the roots one by one is not what is measured);
    with the key's daily budget spent, its slot is flagged dry instead, as at the limit."""
    from costgate.dal.budgets import BudgetShardItem  # noqa: PLC0415

    day = now.date()
    allowance = BUDGET_USD / (2 * shards)
    with BudgetShardItem.batch_write() as batch:
        for index in range(shards):
            item = BudgetShardItem(f"BGT#{key_id}#{FEATURE}#{index}", f"{day.year:04d}-{day.month:02d}")
            item.day = day.isoformat()
            for kind in ("key", "tenant", "feature"):
                for period in ("day", "month"):
                    setattr(item, f"h_{kind}_{period}", allowance)
            if daily < BUDGET_USD:  # the spent daily budget: nothing left in the shard, its root dry
                item.h_key_day = Decimal(0)
                item.dry_key_day = day.isoformat()
                item.left_key_day = Decimal(0)
            batch.save(item)
