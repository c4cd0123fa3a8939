"""`costgate prompt-cache`: per cached prompt prefix, the tokens written and read, what the writes cost
and what the reads saved."""

import argparse
import json

from costgate.accounting.ledger import validate_tag
from costgate.dal.prompt_cache import DynamoPromptCacheStore
from costgate.money import format_usd
from costgate_local.cli.env import bind_table
from costgate_local.cli.formatting import left_aligned


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--feature", help="only this feature's prefixes (default: all, which scans the table)")
    parser.add_argument("--json", action="store_true", help="one JSON line per prefix instead of a table")


def run(args: argparse.Namespace) -> int:
    feature = validate_tag(args.feature, "feature") if args.feature else None
    bind_table()
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
    rows = [
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
    for line in left_aligned([columns, *rows]):
        print(line)
    if not found:
        print("(no prompt-cache prefixes recorded)")
    return 0
