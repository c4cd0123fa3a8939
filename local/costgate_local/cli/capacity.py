"""`costgate capacity --rps N --tenants T [--json]`: the request path's DynamoDB load and AWS cost at N requests/s.

The DynamoDB calls are those the real ApiFunction makes for a short recorded workload through the
local stack (`tools.capacity_workload`); `tools.capacity` turns them into units per second per item
and partition key at the given rate, and into cost per million requests by service.
"""

import argparse
import json
import os
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, TextIO

from costgate.accounting.budgets import estimate_worst_case
from costgate_local.stack.template import load_template
from costgate_local.tools.capacity import (
    API_GATEWAY_ACCOUNT_BURST,
    API_GATEWAY_ACCOUNT_RPS,
    LAMBDA_DEFAULT_ACCOUNT_CONCURRENCY,
    PARTITION_RCU_PER_S,
    PARTITION_WCU_PER_S,
    SOURCES,
    TABLE_ON_DEMAND_UNITS_PER_S,
    USD_PER_MILLION_WRU,
    Deployment,
    RatedKey,
    ScenarioFigures,
    Spread,
    api_gateway_usd_per_million,
    family,
    lambda_figures,
    scenario_figures,
)
from costgate_local.tools.capacity_modelled import aggregator_figures, shards_for
from costgate_local.tools.capacity_workload import FUNCTION, SCENARIOS, record_scenarios

# The scenario the goals are about: a miss with budgets on key, tenant and feature.
GOAL_SCENARIO = "miss"
GOAL_DYNAMODB_USD_PER_MILLION = Decimal(10)
GOAL_ROUND_TRIPS_BEFORE_CLAUDE = 2
DEFAULT_SAMPLE = 8
# What the aggregator writes per busy tenant and stream batch on the miss path: its hour's rollup, its
# prompt-cache prefix and its day's gap histogram (a refusal writes a rejection counter instead).
MISS_AGGREGATOR_TARGETS = 3
# The sweep index's and the answer cache's spreads (costgate.dal.ledger, costgate.dal.answer_cache) and
# the rollups' day partitions (costgate.dal.rollups): fixed by the code.
SWEEP_PARTITIONS = 64
ANSWER_INDEX_PARTITIONS = 32
SEMANTIC_ANSWER_PARTITIONS = 256
ROLLUP_PARTITIONS = 16
# The warm-container caches of the request path: keys (costgate.gateway.keys.CACHE_TTL), feature configurations
# (dal.features.CONFIG_TTL) and budget definitions (dal.budgets.DEFINITIONS_TTL) 30 s, gap histograms 60 s.
DEFAULT_WARM_CACHE_TTL_S = Decimal(30)
_TOP = 12  # kinds of keys listed per level and kind in --json; the text report shows the first _SHOWN
_SHOWN = 5
# What tells two keys of one kind apart: the name after a ':' (a key id, a tenant) and the digits (dates, hashes).
_SHAPE_NAME = re.compile(r":[^#/ ]*(/[^# ]*)?")
_SHAPE_DIGITS = re.compile(r"[0-9a-f]{6,}|[0-9]+")
_LONG_HEX = re.compile(r"[0-9a-f]{16,}|req_[A-Za-z0-9]{12,}|costgate-[0-9a-f-]{36}")


def register(capacity: argparse.ArgumentParser) -> None:
    capacity.description = (
        "Records a short workload through the local stack (moto, the Claude simulator, the real"
        " ApiFunction) and extrapolates it to N requests/s spread evenly over T tenants: the hottest item and"
        " partition key in read and write units/s against DynamoDB's per-partition limits, Lambda concurrency,"
        " API Gateway's account limit, and AWS cost per million requests by service."
    )
    capacity.add_argument("--rps", type=_positive_int, required=True, help="requests per second to size for")
    capacity.add_argument("--tenants", type=_positive_int, required=True, help="tenants the requests spread over")
    capacity.add_argument("--json", action="store_true", help="one JSON object instead of a report")
    capacity.add_argument(
        "--claude-latency-s", type=_positive_decimal, default=Decimal(5), help="Claude's answer time (default 5)"
    )
    capacity.add_argument(
        "--dynamodb-ms",
        type=_positive_decimal,
        default=Decimal(10),
        help="one DynamoDB round trip as Lambda sees it, in ms (default 10)",
    )
    capacity.add_argument(
        "--sample",
        type=_positive_int,
        default=DEFAULT_SAMPLE,
        help=f"recorded requests per tenant and scenario (default {DEFAULT_SAMPLE}; at least 2)",
    )


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    if args.tenants > args.rps:
        err.write("costgate capacity: --tenants must not exceed --rps (every tenant sends at least 1 request/s)\n")
        return 2
    if args.sample < 2:
        err.write("costgate capacity: --sample must be at least 2\n")
        return 2
    memory_mb, architecture = _function_size(load_template(), FUNCTION)
    deployment = Deployment(
        rps=args.rps,
        tenants=args.tenants,
        claude_latency_s=args.claude_latency_s,
        dynamodb_round_trip_s=args.dynamodb_ms / 1000,
        memory_mb=memory_mb,
        architecture=architecture,
        warm_cache_ttl_s=DEFAULT_WARM_CACHE_TTL_S,
    )
    # One key and feature per tenant in the workload: a pair takes all of its tenant's requests.
    shards = shards_for(Decimal(args.rps) / args.tenants)
    with _stdout_to(err):  # the handler's logs and EMF lines must not mix with the report
        recorded = record_scenarios(args.sample, log=err, shards=shards)
    spreads = declared_spreads(shards)
    figures = {name: scenario_figures(name, samples, deployment, spreads) for name, samples in recorded.items()}
    report = capacity_report(figures, deployment, sample=args.sample, shards=shards, worst_case_usd=_worst_case())
    if args.json:
        out.write(json.dumps(report, ensure_ascii=False) + "\n")
    else:
        out.write(render_capacity(report))
    return 0


def declared_spreads(shards: int) -> dict[str, int]:
    """The key families the code spreads over a known number of keys, by partition prefix."""
    return {
        "BGT#": shards,
        "Queue:sweep#": SWEEP_PARTITIONS,
        "ACIDX#": ANSWER_INDEX_PARTITIONS,
        "ACS#": SEMANTIC_ANSWER_PARTITIONS,
    }


def _worst_case() -> Decimal:
    """The recorded miss path's worst case (the hold a request takes): its first contract review."""
    body = next(next(s for s in SCENARIOS if s.name == GOAL_SCENARIO).bodies("worst-case"))
    return estimate_worst_case(body["model"], body, datetime.now(UTC))


def capacity_report(
    figures: Mapping[str, ScenarioFigures],
    deployment: Deployment,
    *,
    sample: int,
    shards: int = 1,
    worst_case_usd: Decimal = Decimal(0),
) -> dict[str, Any]:
    """The figures as one JSON object; the top-level fields are the miss path's (GOAL_SCENARIO), the aggregator's
    writes included (modelled, per `tools.capacity_modelled.aggregator_figures`)."""
    goal = figures[GOAL_SCENARIO]
    aggregator = aggregator_figures(
        deployment, goal.wru_per_request * deployment.rps, MISS_AGGREGATOR_TARGETS, ROLLUP_PARTITIONS
    )
    goal_usd = goal.dynamodb_usd_per_million + aggregator.wru_per_request * USD_PER_MILLION_WRU
    lambda_ = lambda_figures(goal, deployment)
    first_tier, blended = api_gateway_usd_per_million(deployment.rps)
    hottest = {
        "item_write": goal.hottest("item", "write"),
        "item_read": goal.hottest("item", "read"),
        "partition_write": goal.hottest("partition", "write"),
        "partition_read": goal.hottest("partition", "read"),
    }
    table_wru = (goal.wru_per_request + aggregator.wru_per_request) * deployment.rps
    table_rru = (goal.rru_per_request + goal.cached_rru_per_request) * deployment.rps
    over = [
        rated
        for level in ("item", "partition")
        for kind in ("write", "read")
        for rated in (goal.items if level == "item" else goal.partitions)[kind]
        if rated.units_per_s > rated.limit
    ]
    aggregator_over = aggregator.hottest_partition_wcu_per_s > PARTITION_WCU_PER_S
    hottest_item_w = max(goal.hottest_units("item", "write"), aggregator.hottest_item_wcu_per_s)
    hottest_partition_w = max(goal.hottest_units("partition", "write"), aggregator.hottest_partition_wcu_per_s)
    return {
        "rps": deployment.rps,
        "tenants": deployment.tenants,
        "assumptions": {
            "claude_latency_s": str(deployment.claude_latency_s),
            "dynamodb_round_trip_ms": str(deployment.dynamodb_round_trip_s * 1000),
            "function_memory_mb": deployment.memory_mb,
            "function_architecture": deployment.architecture,
            "warm_cache_ttl_s": str(deployment.warm_cache_ttl_s),
            "recorded_requests_per_tenant_and_scenario": sample,
        },
        "scenario": GOAL_SCENARIO,
        "hottest_item_wcu_per_s": _number(hottest_item_w),
        "hottest_item_rcu_per_s": _number(goal.hottest_units("item", "read")),
        "hottest_partition_wcu_per_s": _number(hottest_partition_w),
        "hottest_partition_rcu_per_s": _number(goal.hottest_units("partition", "read")),
        "hottest": {name: _rated_json(rated) for name, rated in hottest.items() if rated is not None},
        "over_partition_limits": len(over) + aggregator_over,
        "dynamodb_usd_per_million_requests": _usd(goal_usd),
        "dynamodb_usd_per_million_requests_request_path": _usd(goal.dynamodb_usd_per_million),
        "semantic_miss_dynamodb_usd_per_million_requests": _usd(
            figures["semantic-miss"].dynamodb_usd_per_million + aggregator.wru_per_request * USD_PER_MILLION_WRU
        )
        if "semantic-miss" in figures
        else None,
        "budget_shards_per_key_and_feature": shards,
        "stranded_budget": {
            "worst_case_per_request_usd": _usd_exact(worst_case_usd),
            "bound_usd": _usd_exact(worst_case_usd * shards),
            "explanation": "a full budget can refuse a request while each of the pair's shards still holds less"
            " than one worst case: below shards × the largest worst case, until the sweeper gathers it (every"
            " minute); more pairs (keys × features) on one budget add one shard's crumbs each",
        },
        "aggregator": {
            "stream_shards": aggregator.stream_shards,
            "targets_per_tenant_per_batch": aggregator.targets_per_tenant,
            "target_writes_per_s": _number(aggregator.target_writes_per_s),
            "target_wru": _number(aggregator.target_wru),
            "hottest_item_wcu_per_s": _number(aggregator.hottest_item_wcu_per_s),
            "hottest_partition_wcu_per_s": _number(aggregator.hottest_partition_wcu_per_s),
            "wru_per_request": _number(aggregator.wru_per_request),
            "typical_lag_s": str(aggregator.lag_s),
        },
        "lambda_usd_per_million_requests": _usd(lambda_.usd_per_million),
        "api_gateway_usd_per_million_requests": _usd(first_tier),
        "api_gateway_usd_per_million_requests_blended": _usd(blended),
        "round_trips_before_claude": goal.round_trips_before_claude,
        "round_trips_before_claude_cold": goal.round_trips_before_claude_cold,
        "lambda": {
            "concurrency": _number(lambda_.concurrency),
            "duration_s": str(goal.lambda_duration_s),
            "default_account_concurrency": LAMBDA_DEFAULT_ACCOUNT_CONCURRENCY,
            "above_default_account_concurrency": lambda_.above_default_account_concurrency,
            "seconds_to_scale_from_zero": _number(lambda_.seconds_to_scale_from_zero),
        },
        "api_gateway": {
            "account_rps": API_GATEWAY_ACCOUNT_RPS,
            "account_burst": API_GATEWAY_ACCOUNT_BURST,
            "within_account_rps": deployment.rps <= API_GATEWAY_ACCOUNT_RPS,
        },
        "table": {
            "wru_per_s": _number(table_wru),
            "rru_per_s": _number(table_rru),
            "on_demand_table_quota_units_per_s": _number(TABLE_ON_DEMAND_UNITS_PER_S),
            "within_table_quota": table_wru <= TABLE_ON_DEMAND_UNITS_PER_S and table_rru <= TABLE_ON_DEMAND_UNITS_PER_S,
        },
        "goals": {
            "no_item_or_partition_over_limits": not over and not aggregator_over,
            "dynamodb_at_most_10_usd_per_million": goal_usd <= GOAL_DYNAMODB_USD_PER_MILLION,
            "at_most_2_round_trips_before_claude": goal.round_trips_before_claude <= GOAL_ROUND_TRIPS_BEFORE_CLAUDE,
        },
        "scenarios": {name: _scenario_json(found, deployment) for name, found in figures.items()},
        "limits": {
            "partition_wcu_per_s": _number(PARTITION_WCU_PER_S),
            "partition_rcu_per_s": _number(PARTITION_RCU_PER_S),
        },
        "sources": SOURCES,
    }


def _scenario_json(figures: ScenarioFigures, deployment: Deployment) -> dict[str, Any]:
    lambda_ = lambda_figures(figures, deployment)
    return {
        "recorded_warm_requests": figures.requests,
        "called_claude": figures.called_claude,
        "wru_per_request": _number(figures.wru_per_request),
        "rru_per_request": _number(figures.rru_per_request),
        "cached_rru_per_request": _number(figures.cached_rru_per_request),
        "dynamodb_usd_per_million_requests": _usd(figures.dynamodb_usd_per_million),
        "lambda_usd_per_million_requests": _usd(lambda_.usd_per_million),
        "round_trips_before_claude": figures.round_trips_before_claude,
        "round_trips_before_claude_cold": figures.round_trips_before_claude_cold,
        "round_trips": figures.round_trips,
        "hottest_item_wcu_per_s": _number(figures.hottest_units("item", "write")),
        "hottest_item_rcu_per_s": _number(figures.hottest_units("item", "read")),
        "hottest_partition_wcu_per_s": _number(figures.hottest_units("partition", "write")),
        "hottest_partition_rcu_per_s": _number(figures.hottest_units("partition", "read")),
        "top": {
            f"{level}_{kind}": [_rated_json(rated) for rated in _distinct(ranked[kind])]
            for level, ranked in (("item", figures.items), ("partition", figures.partitions))
            for kind in ("write", "read")
        },
    }


def _distinct(rated: list[RatedKey]) -> list[RatedKey]:
    """The hottest key of each kind of key (a budget counter of every scope, a day's rollups, ...), hottest first."""
    seen: set[str] = set()
    found = []
    for entry in rated:
        text = _key_text(entry)
        if entry.load.tenant is not None:
            text = text.replace(entry.load.tenant, "<tenant>")
        if entry.load.spread in (Spread.PER_REQUEST, Spread.HASHED):  # one of many siblings: one line for all
            text = " / ".join(family(part) or "" for part in text.split(" / "))
        shape = _SHAPE_DIGITS.sub("0", _SHAPE_NAME.sub("", text))
        if shape not in seen:
            seen.add(shape)
            found.append(entry)
        if len(found) == _TOP:
            break
    return found


def _key_text(rated: RatedKey) -> str:
    key = rated.load.key
    return key if isinstance(key, str) else " / ".join(str(part) for part in key)  # type: ignore[attr-defined]


def _rated_json(rated: RatedKey) -> dict[str, Any]:
    load = rated.load
    key = _key_text(rated)
    return {
        "key": _shorten(key),
        "units_per_s": _number(rated.units_per_s),
        "limit": _number(rated.limit),
        "over_limit": rated.units_per_s > rated.limit,
        "spread": load.spread.value,
        "tenant_bound": load.tenant_bound,
        "share": _number(load.share),
        "units_per_touch": _number(load.units_per_touch),
        "sample": f"{load.touched_by} of {load.population} requests",
    }


# --- the text report -----------------------------------------------------------------------------------------


def render_capacity(report: Mapping[str, Any]) -> str:
    a = report["assumptions"]
    lines = [
        f"costgate capacity: {report['rps']:,} requests/s over {report['tenants']:,} tenant(s)"
        f" (Claude answers in {a['claude_latency_s']} s; a DynamoDB round trip {a['dynamodb_round_trip_ms']} ms;"
        f" ApiFunction {a['function_memory_mb']} MB {a['function_architecture']})",
        f"from the DynamoDB calls ApiFunction made for {a['recorded_requests_per_tenant_and_scenario']} requests per"
        " tenant (2 tenants) and scenario through the local stack, plus one cold request per tenant",
        "",
        f"{'scenario':<14}{'WRU/req':>9}{'RRU/req':>9}{'DynamoDB $/M':>14}{'trips before Claude':>21}"
        f"{'hottest item W / R':>24}{'hottest partition W / R':>28}",
    ]
    for name, s in report["scenarios"].items():
        trips = f"{s['round_trips_before_claude']} warm, {s['round_trips_before_claude_cold']} cold"
        if not s["called_claude"]:
            trips = f"no call ({s['round_trips']})"
        lines.append(
            f"{name:<14}{s['wru_per_request']:>9.1f}{s['rru_per_request']:>9.1f}{s['dynamodb_usd_per_million_requests']:>14}"
            f"{trips:>21}{_pair(s['hottest_item_wcu_per_s'], s['hottest_item_rcu_per_s']):>24}"
            f"{_pair(s['hottest_partition_wcu_per_s'], s['hottest_partition_rcu_per_s']):>28}"
        )
    goal = report["scenarios"][report["scenario"]]
    lines += [
        "",
        f"Hottest on the {report['scenario']} path (a partition takes {report['limits']['partition_wcu_per_s']:,.0f}"
        f" WCU/s and {report['limits']['partition_rcu_per_s']:,.0f} RCU/s):",
    ]
    for slot, label in (
        ("partition_write", "partition, writes"),
        ("item_write", "item, writes"),
        ("partition_read", "partition, reads"),
        ("item_read", "item, reads"),
    ):
        for rated in goal["top"][slot][:_SHOWN]:
            flag = "OVER" if rated["over_limit"] else "ok"
            lines.append(
                f"  {label:<18} {rated['units_per_s']:>12,.1f}/s  {flag:<4}  {rated['key']}  ({rated['spread']},"
                f" {rated['sample']})"
            )
    lam, api, table = report["lambda"], report["api_gateway"], report["table"]
    agg, stranded = report["aggregator"], report["stranded_budget"]
    dynamodb, lambda_usd = report["dynamodb_usd_per_million_requests"], report["lambda_usd_per_million_requests"]
    gateway = report["api_gateway_usd_per_million_requests"]
    blended = report["api_gateway_usd_per_million_requests_blended"]
    lines += [
        "",
        f"AWS per million requests ({report['scenario']} path): DynamoDB ${dynamodb}, Lambda ${lambda_usd}"
        f" ({a['function_memory_mb']} MB for {lam['duration_s']} s), API Gateway ${gateway} (first 333M a month;"
        f" ${blended} blended at this rate)",
        f"Lambda: {lam['concurrency']:,.0f} concurrent executions (account default"
        f" {lam['default_account_concurrency']:,}; +1,000 per 10 s per function:"
        f" {lam['seconds_to_scale_from_zero']:,.0f} s from zero)",
        f"API Gateway: the account's default throttle is {api['account_rps']:,} requests/s"
        f" (burst {api['account_burst']:,})" + ("" if api["within_account_rps"] else "; above it: ask for more"),
        f"DynamoDB table: {table['wru_per_s']:,.0f} WRU/s and {table['rru_per_s']:,.0f} RRU/s (on-demand table quota"
        f" {table['on_demand_table_quota_units_per_s']:,.0f} each by default)",
        f"Aggregator (modelled): {agg['stream_shards']:,} stream shards; a busy tenant's rollup item takes"
        f" {agg['target_writes_per_s']:,.0f} writes/s of {agg['target_wru']:,.0f} WRU ="
        f" {agg['hottest_item_wcu_per_s']:,.0f} WCU/s (its partition {agg['hottest_partition_wcu_per_s']:,.0f});"
        f" {agg['wru_per_request']:.3f} WRU per request; rollups lag the ledger by about {agg['typical_lag_s']} s",
        f"Budgets: {report['budget_shards_per_key_and_feature']} shard(s) per key and feature; a full budget strands"
        f" less than ${stranded['bound_usd']} ({report['budget_shards_per_key_and_feature']} ×"
        f" ${stranded['worst_case_per_request_usd']}, the recorded worst case) until the sweeper gathers it",
        f"Semantic-cache misses, shown apart: DynamoDB ${report['semantic_miss_dynamodb_usd_per_million_requests']}"
        " per million",
        "",
        "Goals (issue 16, the miss path): "
        + "; ".join(f"{name.replace('_', ' ')}: {'yes' if ok else 'NO'}" for name, ok in report["goals"].items()),
        "",
    ]
    return "\n".join(lines)


def _pair(write: float, read: float) -> str:
    return f"{write:,.0f} / {read:,.0f}"


# --- helpers -----------------------------------------------------------------------------------------------------


def _function_size(template: Mapping[str, Any], logical_id: str) -> tuple[int, str]:
    """The function's memory and architecture, from its properties or the template's Globals."""
    globals_ = template.get("Globals", {}).get("Function", {})
    properties = template["Resources"][logical_id]["Properties"]
    memory = int(properties.get("MemorySize", globals_.get("MemorySize", 128)))
    architectures = properties.get("Architectures", globals_.get("Architectures", ["x86_64"]))
    return memory, str(architectures[0])


@contextmanager
def _stdout_to(stream: TextIO) -> Iterator[None]:
    """Point file descriptor 1 at `stream` for the block: loggers that hold sys.stdout write there too."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        target = stream.fileno()
    except (OSError, ValueError):  # a stream without a file (io.StringIO): the lines go nowhere
        target = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(target, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _shorten(key: str) -> str:
    return _LONG_HEX.sub(lambda found: found.group(0)[:8] + "…", key)


def _number(value: Decimal) -> float:
    return float(value.quantize(Decimal("0.001"), rounding=ROUND_HALF_EVEN))


def _usd(value: Decimal) -> str:
    return str(value.quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN))


def _usd_exact(value: Decimal) -> str:
    return format(value.normalize(), "f")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _positive_decimal(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except ArithmeticError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value.is_finite() or value <= 0:
        raise argparse.ArgumentTypeError("must be a positive number")
    return value
