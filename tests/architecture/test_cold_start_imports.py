"""What ApiFunction's cold start imports: only what a first POST /v1/messages runs (bench_gateway has the cost)."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Each loads on its first use elsewhere: the semantic path (numpy, the embedder, the guards and Kiwi's
# reader), Powertools' resolver for the other routes (its package imports AppSync's and asyncio), the cost
# report for GET /v1/costs, boto3 for Titan only.
LOADED_ON_FIRST_USE = (
    "numpy",
    "costgate.cache.embedding",
    "costgate.cache.guards",
    "costgate.cache.vector_index",
    "aws_lambda_powertools.event_handler",
    "costgate.accounting.report",
    "boto3",
)
PROBE = """\
import json, sys
import handler
from costgate.routing import router
print(json.dumps({"modules": sorted(sys.modules), "router_compiled": router._scanners.cache_info().currsize}))
"""


def test_importing_the_api_handler_loads_none_of_what_other_paths_need() -> None:
    # Given a fresh interpreter laid out as Lambda lays out ApiFunction: its code, then the shared layer
    environ = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    environ["PYTHONPATH"] = os.pathsep.join(str(path) for path in (ROOT / "functions" / "api", ROOT / "shared"))
    environ["LAMBDA_TASK_ROOT"] = str(ROOT / "functions" / "api")

    # When it imports the handler, as the runtime loop does at init
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=environ, capture_output=True, text=True, timeout=120, check=True
    )
    probe = json.loads(done.stdout.splitlines()[-1])
    loaded = set(probe["modules"])

    # Then the gateway is there, none of the modules other paths load on their first use, and the router has
    # compiled none of its keyword patterns (a request naming its model never reads them)
    assert {"costgate.gateway.service", "costgate.runtime.loop", "pynamodb.models"} <= loaded
    assert sorted(name for name in LOADED_ON_FIRST_USE if name in loaded) == []
    assert probe["router_compiled"] == 0
