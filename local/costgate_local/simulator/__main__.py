"""`python -m costgate_local.simulator --port N [flags]`: serve until SIGINT/SIGTERM.

Prints one JSON line when ready, `{"base_url": "http://127.0.0.1:N"}`, then serves.
"""

import argparse
import json
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from costgate_local.simulator.options import add_simulator_arguments, simulator_options_from_args
from costgate_local.simulator.server import Simulator


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m costgate_local.simulator",
        description="A Claude API simulator on 127.0.0.1 for costgate's local stack and tests.",
    )
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    add_simulator_arguments(parser)
    args = parser.parse_args(argv)
    try:
        options = simulator_options_from_args(args, port=args.port)
    except ValueError as error:
        parser.error(str(error))

    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    with Simulator(options) as simulator:
        sys.stdout.write(json.dumps({"base_url": simulator.base_url}) + "\n")
        sys.stdout.flush()
        # Wake twice a second so a signal is handled promptly on every platform.
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
