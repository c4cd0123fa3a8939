"""`costgate serve`: the whole stack on one machine, in one process.

moto as AWS (the table and bucket built from template.yaml), the Claude API simulator (or the real
API), and the HTTP front that invokes the real ApiFunction handler. When everything listens it
prints exactly one JSON line to stdout and sends all later output to stderr, so a script can read
the line and go; SIGINT or SIGTERM stops every server (threads of this process: nothing outlives it).
"""

import json
import logging
import os
import signal
import sys
import threading
from contextlib import ExitStack
from dataclasses import dataclass
from types import FrameType
from typing import TextIO

from werkzeug.serving import make_server

from costgate.clock import SystemClock
from costgate.dal.keys import DynamoKeyStore
from costgate.dal.table import bind_table
from costgate.keys import issue_key
from costgate_local.aws import LocalAws, create_bucket, create_secret, create_table
from costgate_local.front import ApiFront, LocalFunction
from costgate_local.simulator import Simulator, SimulatorOptions
from costgate_local.template import load_template

TABLE = "costgate-local"
BUCKET = "costgate-local-documents"
ANTHROPIC_API_URL = "https://api.anthropic.com"
CLAUDE_KEY_SECRET_NAME = "costgate/claude-api-key"  # noqa: S105 - a secret's name, not a secret
# The simulator takes any key; each key is its own workspace (prompt caches and batches).
SIMULATOR_CLAUDE_KEY = "sk-ant-local-simulator"
DEV_TENANT = "local-dev"


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
    ready_line = _claim_stdout()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # per-request access lines from every server

    with ExitStack() as stack:
        aws = stack.enter_context(LocalAws())
        os.environ.update(aws.endpoints.environ())
        create_table(aws.endpoints, TABLE)
        create_bucket(aws.endpoints, BUCKET)

        if options.upstream == "simulator":
            upstream_url = stack.enter_context(Simulator(options.simulator)).base_url
            claude_key = SIMULATOR_CLAUDE_KEY
        else:
            upstream_url = ANTHROPIC_API_URL
            claude_key = os.environ["ANTHROPIC_API_KEY"]
        create_secret(aws.endpoints, CLAUDE_KEY_SECRET_NAME, claude_key)

        refs = {
            "Table": TABLE,
            "Bucket": BUCKET,
            "ClaudeApiUrl": upstream_url,
            "ClaudeApiKeySecretName": CLAUDE_KEY_SECRET_NAME,
        }
        function = LocalFunction.from_template(load_template(), "ApiFunction", refs=refs)
        os.environ.update(function.environment)
        bind_table(TABLE)
        api_key, _ = issue_key(DynamoKeyStore(), tenant=DEV_TENANT, feature=None, now=SystemClock().now())
        server = make_server("127.0.0.1", options.port, ApiFront(function), threaded=True)
        stack.callback(server.server_close)
        thread = threading.Thread(target=server.serve_forever, name="api-front", daemon=True)
        thread.start()
        stack.callback(server.shutdown)

        ready = {
            "base_url": f"http://127.0.0.1:{server.server_port}",
            "api_key": api_key,
            "aws_endpoint_url": aws.endpoints.endpoint_url,
            "table": TABLE,
            "bucket": BUCKET,
            "upstream": options.upstream,
            "upstream_url": upstream_url,
        }
        ready_line.write(json.dumps(ready) + "\n")
        ready_line.close()
        _stop_on_signals(stop)
        while not stop.wait(timeout=1.0):
            pass
    print("costgate serve: stopped", file=sys.stderr)
    return 0


def _claim_stdout() -> TextIO:
    """Keep the real stdout for the ready line alone; from now on fd 1 is stderr, so every log
    line and EMF blob (Powertools prints to stdout) goes there, and stdout ends after the line."""
    sys.stdout.flush()
    ready_line = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    return ready_line


def _stop_on_signals(stop: threading.Event) -> None:
    def handle(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
