"""`costgate keys create|list|revoke`: the gateway keys in the table."""

import argparse
import json
import logging
import sys
from datetime import UTC, datetime
from decimal import Decimal

from costgate.dal.keys import DynamoKeyStore
from costgate.errors import InvalidRequestError
from costgate.gateway.keys import issue_key, list_keys, revoke_key
from costgate.money import format_usd
from costgate.observability import logger
from costgate_local.cli.env import bind_table
from costgate_local.cli.formatting import left_aligned


def register(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="keys_command", required=True)
    create = commands.add_parser("create", help="issue a key for a tenant; prints it once, as one JSON line")
    create.add_argument("--tenant", required=True, help="the tenant every request with this key is billed to")
    create.add_argument("--feature", help="the feature tag this key is bound to, for cost attribution")
    create.add_argument("--daily-budget-usd", help="spend limit per UTC day, exact decimal USD")
    create.add_argument("--monthly-budget-usd", help="spend limit per UTC calendar month, exact decimal USD")
    listing = commands.add_parser("list", help="every key (never a secret or a hash), by tenant")
    listing.add_argument("--json", action="store_true", help="one JSON line per key instead of a table")
    revoke = commands.add_parser("revoke", help="revoke a key; warm API containers drop it within 30 s")
    revoke.add_argument("key_id", help="the key's id: the 12 hex characters after 'cg_'")


def run(args: argparse.Namespace) -> int:
    logger.setLevel(logging.WARNING)  # the services' info lines go to stdout, which holds the JSON output
    bind_table()
    store = DynamoKeyStore()
    now = datetime.now(UTC)
    if args.keys_command == "create":
        api_key, key = issue_key(
            store,
            tenant=args.tenant,
            feature=args.feature,
            daily_budget_usd=_budget(args.daily_budget_usd, "--daily-budget-usd"),
            monthly_budget_usd=_budget(args.monthly_budget_usd, "--monthly-budget-usd"),
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
        found = list_keys(store)
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
            for line in left_aligned([columns, *rows]):
                print(line)
            if not rows:
                print("(no gateway keys)")
    else:
        print(json.dumps(revoke_key(store, args.key_id, now).as_json()))
    return 0


def _budget(raw: str | None, option: str) -> Decimal | None:
    if raw is None:
        return None
    try:
        return Decimal(raw)
    except ArithmeticError:
        raise InvalidRequestError(f"{option} must be a decimal amount in USD, such as 25 or 12.50") from None
