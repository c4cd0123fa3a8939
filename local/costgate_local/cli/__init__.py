"""`costgate`: the operator's command line. Works against local (moto) or real AWS resources.

costgate price    JSON lines {"model", "usage", "at"?} on stdin → one cost line each on stdout
costgate report   the ledger's rollups for a date range and savings per strategy: a table, JSON, or HTML
costgate keys / budgets / features   gateway keys, spend limits, per-feature routing and prompt caching
costgate prompt-cache   what each cached prompt prefix wrote, read and saved
costgate cache calibrate / purge   the semantic cache's similarity threshold; a tenant's stored answers
costgate batch submit / status   upload a folder as a batch summarisation job, follow its progress
costgate replay  a recorded request log re-priced under other policies and price dates (what-if)
costgate reconcile  the ledger against Anthropic's own usage and cost records (Admin API); exit 1 on drift
costgate serve    the local stack: moto as AWS, the Claude API simulator, the API on 127.0.0.1
costgate demo     the sample workload through the local stack, the savings per strategy, the HTML report

Each command is one module of this package with two functions: `register(parser)` adds the command's
arguments (and subcommands) to its parser, `run(args)` does the work and returns the exit status. The
module is imported only when its command runs, so `costgate price` never waits for boto3, pynamodb,
Powertools or numpy, which other commands need. A command's one-line help sits in `COMMANDS` rather than
in its module, so that `costgate --help` lists every command without importing any of them.
"""

import argparse
import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, cast

from costgate.errors import CostgateError


@dataclass(frozen=True)
class Command:
    name: str
    module: str
    help: str


class CommandModule(Protocol):
    def register(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


# A new command: its module in this package, and one line here (`costgate --help` lists them in this order).
COMMANDS = (
    Command("price", "price", "price Claude usage objects read as JSON lines on stdin"),
    Command("report", "report", "the cost report from the ledger (COSTGATE_TABLE)"),
    Command("demo", "demo", "the sample workload through the local stack, savings per strategy (what `make run` does)"),
    Command("serve", "serve", "the local stack: moto as AWS, the Claude API simulator, the API on 127.0.0.1; prints one JSON ready line"),  # noqa: E501
    Command("keys", "keys", "gateway keys in the table (COSTGATE_TABLE): create, list, revoke"),
    Command("budgets", "budgets", "tenant and feature spend limits in the table (COSTGATE_TABLE); key budgets are on the key"),  # noqa: E501
    Command("features", "features", "per-feature model routing and prompt caching in the table (COSTGATE_TABLE)"),
    Command("prompt-cache", "prompt_cache", "per cached prefix: tokens written and read, what the writes cost and the reads saved"),  # noqa: E501
    Command("cache", "cache", "the answer cache: calibrate the semantic cache"),
    Command("batch", "batch", "batch summarisation: upload a folder as a job, follow its progress"),
    Command("replay", "replay", "re-price a recorded request log (JSON lines) under other policies and price dates"),
    Command("reconcile", "reconcile", "the ledger against Anthropic's usage and cost records; exit 1 on drift"),
)  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(
        prog="costgate", description="Exact Claude API costs, per feature, tenant and day."
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    # costgate has no option of its own but --help, so the first word that is not an option is the
    # command argparse will pick: only that command's module is imported and fills in its parser.
    named = next((word for word in words if not word.startswith("-")), None)
    loaded: dict[str, CommandModule] = {}
    for command in COMMANDS:
        subparser = subparsers.add_parser(command.name, help=command.help)
        if command.name == named:
            loaded[command.name] = load(command)
            loaded[command.name].register(subparser)
    args = parser.parse_args(words)
    try:
        return loaded[args.command].run(args)
    except CostgateError as error:
        print(f"costgate: {error.message}", file=sys.stderr)
        return 2


def load(command: Command) -> CommandModule:
    return cast(CommandModule, importlib.import_module(f"{__name__}.{command.module}"))
