"""`costgate serve`: the whole stack on one machine, in one process.

moto as AWS (the table and bucket built from template.yaml), the Claude API simulator (or the real
API), and the HTTP front that invokes the real ApiFunction handler. When everything listens it
prints exactly one JSON line to stdout and sends all later output to stderr, so a script can read
the line and go; SIGINT or SIGTERM stops every server (threads of this process: nothing outlives it).
"""

import json
import logging
import os
import secrets
import signal
import sys
import threading
from contextlib import ExitStack
from dataclasses import dataclass
from types import FrameType

from werkzeug.serving import make_server

from costgate_local.aws import LocalAws, create_bucket, create_table
from costgate_local.front import ApiFront, LocalFunction
from costgate_local.simulator import Simulator, SimulatorOptions
from costgate_local.template import load_template

TABLE = "costgate-local"
BUCKET = "costgate-local-documents"
ANTHROPIC_API_URL = "https://api.anthropic.com"


@dataclass(frozen=True)
class ServeOptions:
    port: int
    upstream: str  # "simulator" | "anthropic"
    simulator: SimulatorOptions


def serve(options: ServeOptions) -> int:
    """Run until SIGINT or SIGTERM; return the exit status."""
    if options.upstream == "anthropic" and not os.environ.get("ANTHROPIC_API_KEY"):
        print("costgate serve: --upstream anthropic needs ANTHROPIC_API_KEY in the environment", file=sys.stderr)
        return 2
    stop = threading.Event()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # per-request access lines from every server

    with ExitStack() as stack:
        aws = stack.enter_context(LocalAws())
        os.environ.update(aws.endpoints.environ())
        create_table(aws.endpoints, TABLE)
        create_bucket(aws.endpoints, BUCKET)

        if options.upstream == "simulator":
            upstream_url = stack.enter_context(Simulator(options.simulator)).base_url
        else:
            upstream_url = ANTHROPIC_API_URL

        function = LocalFunction.from_template(load_template(), "ApiFunction", refs={"Table": TABLE, "Bucket": BUCKET})
        os.environ.update(function.environment)
        server = make_server("127.0.0.1", options.port, ApiFront(function), threaded=True)
        stack.callback(server.server_close)
        thread = threading.Thread(target=server.serve_forever, name="api-front", daemon=True)
        thread.start()
        stack.callback(server.shutdown)

        ready = {
            "base_url": f"http://127.0.0.1:{server.server_port}",
            "api_key": f"cg-local-{secrets.token_urlsafe(24)}",
            "aws_endpoint_url": aws.endpoints.endpoint_url,
            "table": TABLE,
            "bucket": BUCKET,
            "upstream": options.upstream,
            "upstream_url": upstream_url,
        }
        _announce(ready)
        _stop_on_signals(stop)
        while not stop.wait(timeout=1.0):
            pass
    print("costgate serve: stopped", file=sys.stderr)
    return 0


def _announce(ready: dict[str, str]) -> None:
    """The one stdout line; afterwards fd 1 is stderr, so handler logs and EMF never mix into stdout."""
    sys.stdout.write(json.dumps(ready) + "\n")
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())


def _stop_on_signals(stop: threading.Event) -> None:
    def handle(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
