"""`costgate demo` (what `make run` does): the sample workload through the local stack, the savings per
strategy and the HTML report. The story is `costgate_local.tools.demo`'s."""

import argparse
from pathlib import Path

from costgate_local.tools.demo import run_demo


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=Path, default=Path("out"), help="where the HTML report and logs go (default: out)"
    )


def run(args: argparse.Namespace) -> int:
    return run_demo(args.out)
