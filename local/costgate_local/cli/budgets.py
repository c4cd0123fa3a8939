"""`costgate budgets set|list|delete`: tenant and feature spend limits in the table (a key's budgets are
on the key: `costgate keys create`)."""

import argparse
import json
import sys
from datetime import UTC, datetime
from decimal import Decimal

from costgate.accounting.budgets import Budget, BudgetPeriod, Hold, feature_scope, tenant_scope
from costgate.dal.budgets import DynamoBudgetStore
from costgate.errors import InvalidRequestError
from costgate.money import format_usd
from costgate_local.cli.env import bind_table
from costgate_local.cli.formatting import left_aligned


def register(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="budgets_command", required=True)
    set_budget = commands.add_parser("set", help="create or replace a daily or monthly budget")
    listing = commands.add_parser("list", help="every budget, its limit and what remains this window")
    listing.add_argument("--json", action="store_true", help="one JSON line per budget instead of a table")
    delete = commands.add_parser("delete", help="delete a budget (its spend stays in the ledger)")
    for budget_parser in (set_budget, delete):
        budget_parser.add_argument("--tenant", required=True, help="the tenant the budget limits")
        budget_parser.add_argument("--feature", help="one feature of the tenant (default: the whole tenant)")
        budget_parser.add_argument("--period", required=True, choices=["day", "month"], help="UTC day or UTC month")
    set_budget.add_argument("--limit-usd", required=True, help="the limit, exact decimal USD (0 blocks all spend)")


def run(args: argparse.Namespace) -> int:
    bind_table()
    store = DynamoBudgetStore()
    if args.budgets_command == "list":
        return _list(store, as_json=args.json)
    scope = feature_scope(args.tenant, args.feature) if args.feature else tenant_scope(args.tenant)
    period = BudgetPeriod(args.period)
    if args.budgets_command == "set":
        try:
            limit = Decimal(args.limit_usd)
        except ArithmeticError:
            raise InvalidRequestError("--limit-usd must be a decimal amount in USD, such as 25 or 12.50") from None
        budget = Budget(scope, period, limit)
        store.put_definition(budget)
        print(json.dumps(_as_json(budget)))
        return 0
    if not store.delete_definition(scope, period):
        print(f"costgate: there is no {period.value} budget for {scope}", file=sys.stderr)
        return 1
    print(json.dumps({"deleted": {"scope": scope, "period": period.value}}))
    return 0


def _list(store: DynamoBudgetStore, *, as_json: bool) -> int:
    now = datetime.now(UTC)
    rows = []
    for budget in store.list_definitions():
        window = budget.window(now)
        remaining = store.remaining([Hold(budget, window, Decimal(0))]) or Decimal(0)
        rows.append(_as_json(budget) | {"window": window, "remaining_usd": format_usd(remaining)})
    if as_json:
        for row in rows:
            print(json.dumps(row))
        return 0
    columns = ["scope", "period", "limit USD", "window", "remaining USD"]
    keys = ["scope", "period", "limit_usd", "window", "remaining_usd"]
    for line in left_aligned([columns, *([str(row[key]) for key in keys] for row in rows)]):
        print(line)
    if not rows:
        print("(no budgets)")
    return 0


def _as_json(budget: Budget) -> dict[str, str | None]:
    return {
        "scope": budget.scope,
        "tenant": budget.tenant,
        "feature": budget.feature,
        "period": budget.period.value,
        "limit_usd": format_usd(budget.limit_usd),
    }
