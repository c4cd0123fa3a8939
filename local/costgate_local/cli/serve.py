"""`costgate serve`: the local stack (moto as AWS, the Claude API simulator, the API on 127.0.0.1)."""

import argparse

from costgate_local.simulator import add_simulator_arguments, simulator_options_from_args
from costgate_local.stack.serve import ServeOptions, serve


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=8090, help="port of the costgate API (0: any free port)")
    parser.add_argument(
        "--upstream",
        choices=["simulator", "anthropic"],
        default="simulator",
        help="where Claude requests go: the local simulator, or the real API (needs ANTHROPIC_API_KEY)",
    )
    parser.add_argument(
        "--upstream-url",
        metavar="URL",
        help="send Claude requests to this Claude API-compatible server instead (a simulator of your own, a "
        "proxy); its key is ANTHROPIC_API_KEY when set, else the simulator's placeholder",
    )
    parser.add_argument(
        "--batch-interval", type=_positive_seconds, default=2.0, metavar="S",
        help="seconds between two runs of the batch scheduler (BatchFunction's schedule; default 2)",
    )  # fmt: skip
    parser.add_argument(
        "--spend-interval", type=_positive_seconds, metavar="S",
        help="seconds between two runs of SpendWatchFunction (default: its template schedule, rate(5 minutes): 300)",
    )  # fmt: skip
    parser.add_argument(
        "--sweep-interval", type=_positive_seconds, metavar="S",
        help="seconds between two runs of SweeperFunction (default: its template schedule, rate(1 minute): 60)",
    )  # fmt: skip
    add_simulator_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return serve(
        ServeOptions(
            port=args.port,
            upstream="url" if args.upstream_url else args.upstream,
            upstream_url=args.upstream_url,
            simulator=simulator_options_from_args(args, port=0),
            batch_interval_s=args.batch_interval,
            spend_interval_s=args.spend_interval,
            sweep_interval_s=args.sweep_interval,
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
