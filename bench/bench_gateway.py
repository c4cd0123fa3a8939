"""ApiFunction: the gateway's own overhead per request and its cold start, each beside a baseline from the same run.

Overhead. The real handler, loaded from template.yaml as `costgate serve` loads it, answers REST proxy
(v1) events for POST /v1/messages in this process, against moto (local AWS) and the Claude API
simulator. Timing proxies on the objects the handler's `gateway()` holds (the Upstream port's `post`;
every KeyStore, BudgetStore and LedgerStore method) split each invocation into the upstream call, the
DynamoDB calls and the rest. The baseline is the same request sent straight to the simulator with the
`anthropic` SDK, interleaved with the handler's. The key has a daily budget, so every request reserves,
settles and reads what remains, as a budgeted key does in production. Outside Lambda Powertools turns
its Tracer off, so these figures carry no X-Ray work.

moto is not DynamoDB: a transaction takes tens of ms locally and more as the table grows (moto deep-copies
the table per transaction), against single-digit ms on AWS. So each round gets a fresh table, and the
overhead is also given without the DynamoDB calls: what remains is the gateway's own CPU.

Cold start. A fresh interpreter per run, set up as Lambda sets one up: the handler's directory, then the
shared layer, on PYTHONPATH; LAMBDA_TASK_ROOT and an X-Ray trace header in the environment, so Powertools'
Tracer is active as under the template's `Tracing: Active`. It times the import, the gateway's init, the
first response (by proxies on botocore, the clients it builds and its round trips to local AWS, which moto
serves far slower than DynamoDB: the "own" figure leaves them out) and a warm second one, three ways: as the
repository runs it; with every module from bytecode, as the layers ship (their Makefiles compile it, since
Lambda's file system is read-only and nothing compiled at run time is kept); and with no bytecode but the
interpreter's stdlib, what a layer built without it would cost. The floor is what any function that reaches
DynamoDB through botocore pays. `python -X importtime` shows where the import goes, beside `import
anthropic`'s, and the avoidable parts are timed on their own. Figures against the 400 ms target, never
asserted (STYLE.md).
"""

import argparse
import functools
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO

import anthropic
import botocore
from moto.moto_server.werkzeug_app import DomainDispatcherApplication
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from costgate.accounting.ports import BudgetStore, LedgerStore
from costgate.claude.messages import HttpUpstream
from costgate.claude.ports import Upstream
from costgate.dal.budgets import DynamoBudgetStore
from costgate.dal.keys import DynamoKeyStore
from costgate.dal.ledger import DynamoLedgerStore
from costgate.gateway.keys import issue_key
from costgate.gateway.ports import KeyStore
from costgate_local.simulator import Simulator
from costgate_local.stack.aws import LocalAws, LocalAwsEndpoints, create_secret, create_table
from costgate_local.stack.front import LocalFunction, Route, rest_event
from costgate_local.stack.runtime_api import invoke_in_memory
from costgate_local.stack.serve import CLAUDE_KEY_SECRET_NAME, DEV_TENANT, SIMULATOR_CLAUDE_KEY
from costgate_local.stack.template import REPO_ROOT, load_template

FUNCTION = "ApiFunction"


@dataclass(frozen=True)
class RunSize:
    rounds: int = 4  # 200 timed requests, a fresh table per round of 50
    per_round: int = 50
    warmup: int = 3
    cold_runs: int = 5


# `--quick` (CI runs every bench once that way, so none can rot unseen): every path, few repetitions.
QUICK = RunSize(rounds=1, per_round=5, warmup=1, cold_runs=1)
RUN = RunSize()
TOP_IMPORTS = 10
CHILD_TIMEOUT_S = 120
COLD_START_TARGET_MS = 400.0
TARGET_LABEL = f"{COLD_START_TARGET_MS:.0f} ms target"
DAILY_BUDGET_USD = Decimal(1000)
MODEL = "claude-sonnet-5-5"
MAX_TOKENS = 256
MESSAGES = [{"role": "user", "content": "In one sentence: why does a cost gateway reserve a budget first?"}]
BODY = json.dumps({"model": MODEL, "max_tokens": MAX_TOKENS, "messages": MESSAGES}).encode()
ANTHROPIC_VERSION = "2023-06-01"
# A sampled trace, as Lambda sets per invocation under `Tracing: Active`; nothing listens for its UDP segments.
TRACE_HEADER = "Root=1-6929f3a0-4b1c2d3e4f5a6b7c8d9e0f1a;Parent=53995c3f42cd8ad8;Sampled=1"
SAM_BUILD = REPO_ROOT / ".aws-sam" / "build"
# As Lambda lays the function out: its CodeUri first on the path, then the shared layer's source.
TASK_ROOT = REPO_ROOT / "functions" / "api"
LAYERS = (REPO_ROOT / "shared",)
# Imported by the handler besides the candidates below (so each candidate is timed as the last thing in).
HANDLER_THIRD_PARTY = (
    "import urllib3, pynamodb.models, pynamodb.transactions\n"
    "import aws_lambda_powertools.logging, aws_lambda_powertools.metrics"
)
# DependenciesLayer's build trims botocore's endpoints.json to the services costgate calls; the venv's botocore
# has the whole file, so the child processes read a copy trimmed by the same script (AWS_DATA_PATH is searched
# before botocore's own data).
TRIM_BOTOCORE = REPO_ROOT / "layers" / "dependencies" / "trim_botocore.py"
LAYER_MAKEFILE = REPO_ROOT / "layers" / "dependencies" / "Makefile"


class Report:
    """Where `say` writes: the real stdout, once `claim_stdout` has moved the handler's output away."""

    stream: TextIO = sys.stdout


def say(line: str = "") -> None:
    print(line, file=Report.stream, flush=True)


def claim_stdout() -> TextIO:
    """Keep the real stdout for this report; fd 1 goes to /dev/null, and with it the log lines and EMF
    metrics the handler prints (Powertools still formats them, as in Lambda; only the bytes go nowhere)."""
    sys.stdout.flush()
    report = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return report


# --- Timing proxies ---------------------------------------------------------------------------------------


class Stopwatch:
    """Seconds spent inside the wrapped calls since the last `take`; a call made from inside another counts once."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0
        self._depth = 0

    def wrap[**P, R](self, method: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(method)
        def timed(*args: P.args, **kwargs: P.kwargs) -> R:
            if self._depth:
                return method(*args, **kwargs)
            self._depth += 1
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start
                self.calls += 1
                self._depth -= 1

        return timed

    def take(self) -> tuple[float, int]:
        taken = (self.seconds, self.calls)
        self.seconds, self.calls = 0.0, 0
        return taken


UPSTREAM, DYNAMODB, MOTO = Stopwatch(), Stopwatch(), Stopwatch()
# The adapters the gateway holds, the port whose methods are timed, and the stopwatch they add to.
TIMED_PORTS: tuple[tuple[type, type, Stopwatch], ...] = (
    (HttpUpstream, Upstream, UPSTREAM),
    (DynamoKeyStore, KeyStore, DYNAMODB),
    (DynamoBudgetStore, BudgetStore, DYNAMODB),
    (DynamoLedgerStore, LedgerStore, DYNAMODB),
)


def instrument(gateway: object) -> None:
    """Put timing proxies on every port method of the adapters this gateway instance holds."""
    found: set[type] = set()
    for member in vars(gateway).values():
        for adapter, port, watch in TIMED_PORTS:
            if isinstance(member, adapter):
                for name, value in vars(port).items():
                    if callable(value) and not name.startswith("_"):
                        setattr(member, name, watch.wrap(getattr(member, name)))
                found.add(adapter)
    missing = sorted(adapter.__name__ for adapter, _, _ in TIMED_PORTS if adapter not in found)
    if missing:
        raise SystemExit(
            f"bench_gateway: the handler's gateway() no longer holds {', '.join(missing)}; update TIMED_PORTS"
        )


# --- Overhead per request --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    handler: float
    upstream: float
    dynamodb: float
    moto: float
    dynamodb_calls: int  # port method calls (some answer from a 30 s cache)
    round_trips: int  # requests that reached moto
    sdk: float


def event(route: Route, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> dict[str, Any]:
    """The REST proxy event API Gateway would send, built by the local front's own conversion."""
    builder = EnvironBuilder(
        path=path, method=method, data=body, headers=list(headers.items()), base_url="https://127.0.0.1"
    )
    return rest_event(Request(builder.get_environ()), route, {})


def messages_event(function: LocalFunction, api_key: str) -> dict[str, Any]:
    # The same body every time, so the answer cache is off: this measures the path that calls Claude.
    headers = {
        "x-api-key": api_key,
        "anthropic-version": ANTHROPIC_VERSION,
        "content-type": "application/json",
        "x-costgate-cache": "off",
    }
    return event(find_route(function, "POST", "/v1/messages"), "POST", "/v1/messages", headers, BODY)


def health_event(function: LocalFunction) -> dict[str, Any]:
    return event(find_route(function, "GET", "/v1/health"), "GET", "/v1/health", {"accept": "*/*"})


def find_route(function: LocalFunction, method: str, path: str) -> Route:
    for route in function.routes:
        if route.match(method, path) is not None:
            return route
    raise SystemExit(f"bench_gateway: template.yaml gives {FUNCTION} no route for {method} {path}")


def fresh_table(endpoints: LocalAwsEndpoints) -> str:
    name = f"costgate-bench-{uuid.uuid4().hex[:8]}"
    create_table(endpoints, name)
    return name


def budgeted_key(table: str) -> str:
    """A dev key with a daily budget, stored in `table` (bound by the caller)."""
    api_key, _ = issue_key(
        DynamoKeyStore(), tenant=DEV_TENANT, daily_budget_usd=DAILY_BUDGET_USD, now=datetime.now(UTC)
    )
    return api_key


def use_table(handler: ModuleType, table: str) -> None:
    """Point the handler at `table`, as a new container would see it: its cached settings and stores are dropped."""
    os.environ["COSTGATE_TABLE"] = table
    for cached in (handler.settings, handler.ledger_store, handler.gateway):
        cached.cache_clear()
    handler.settings()  # binds every entity to the table


def invoke(function: LocalFunction, request: dict[str, Any]) -> float:
    context = function.context()
    start = time.perf_counter()
    response = invoke_in_memory(function.handler, request, context)
    elapsed = time.perf_counter() - start
    if response.get("statusCode") != 200:
        raise SystemExit(f"bench_gateway: the handler answered {response.get('statusCode')}: {response.get('body')}")
    return elapsed


def sdk_call(client: anthropic.Anthropic) -> float:
    start = time.perf_counter()
    message = client.messages.create(model=MODEL, max_tokens=MAX_TOKENS, messages=MESSAGES)  # type: ignore[arg-type]
    elapsed = time.perf_counter() - start
    if message.usage.output_tokens <= 0:
        raise SystemExit("bench_gateway: the simulator's answer has no output tokens")
    return elapsed


def measure_overhead(aws: LocalAws, function: LocalFunction, handler: ModuleType, sim: Simulator) -> list[Sample]:
    samples: list[Sample] = []
    with anthropic.Anthropic(base_url=sim.base_url, api_key=SIMULATOR_CLAUDE_KEY, max_retries=0) as client:
        for _ in range(RUN.rounds):
            table = fresh_table(aws.endpoints)
            use_table(handler, table)
            api_key = budgeted_key(table)
            instrument(handler.gateway())
            for i in range(RUN.warmup + RUN.per_round):
                request = messages_event(function, api_key)
                for watch in (UPSTREAM, DYNAMODB, MOTO):
                    watch.take()
                handler_s = invoke(function, request)
                upstream_s, upstream_calls = UPSTREAM.take()
                dynamodb_s, dynamodb_calls = DYNAMODB.take()
                moto_s, round_trips = MOTO.take()
                if upstream_calls != 1 or dynamodb_calls == 0:
                    raise SystemExit(
                        f"bench_gateway: the proxies saw {upstream_calls} upstream and {dynamodb_calls} DynamoDB calls"
                    )
                sdk_s = sdk_call(client)
                if i >= RUN.warmup:
                    samples.append(
                        Sample(handler_s, upstream_s, dynamodb_s, moto_s, dynamodb_calls, round_trips, sdk_s)
                    )
    return samples


def median_p99(values: Sequence[float]) -> tuple[float, float]:
    return statistics.median(values), statistics.quantiles(values, n=100, method="inclusive")[98]


def report_overhead(samples: list[Sample]) -> tuple[float, float, float]:
    def row(label: str, values: Sequence[float]) -> float:
        median, p99 = median_p99(values)
        say(f"  {label:<58} {median * 1e3:8.2f} ms {p99 * 1e3:8.2f} ms")
        return median

    calls = statistics.median(s.dynamodb_calls for s in samples)
    trips = statistics.median(s.round_trips for s in samples)
    say(f"Overhead per request: {len(samples)} POST /v1/messages through the real handler ({RUN.rounds} rounds")
    say(f"of {RUN.per_round}, a fresh table each, after {RUN.warmup} warm-up requests), a key with a daily budget")
    say(f"  {'':<58} {'median':>11} {'p99':>11}")
    row("handler, total", [s.handler for s in samples])
    row("  upstream call (HttpUpstream.post to the simulator)", [s.upstream for s in samples])
    overhead = row("  gateway overhead = handler - upstream", [s.handler - s.upstream for s in samples])
    row(f"    in DynamoDB store calls ({calls:.0f}, {trips:.0f} round trips to moto)", [s.dynamodb for s in samples])
    row("      of which moto's own work (server side)", [s.moto for s in samples])
    row("      the rest: pynamodb, botocore, HTTP at both ends", [s.dynamodb - s.moto for s in samples])
    own = row("overhead excluding local DynamoDB emulation", [s.handler - s.upstream - s.dynamodb for s in samples])
    sdk = row("direct SDK call to the simulator (baseline)", [s.sdk for s in samples])
    say(f"=> overhead / direct SDK call: {overhead / sdk:.2f}x; excluding local DynamoDB emulation: {own / sdk:.2f}x")
    say("   moto dominates the local overhead and is not DynamoDB: a transaction is tens of ms here, growing")
    say("   with the table (moto deep-copies it per transaction), against single-digit ms on AWS. Excluding")
    say(f"   the DynamoDB calls leaves the gateway's own CPU; on AWS add {trips:.0f} DynamoDB round trips to it")
    say("   (keys and budget definitions are cached for 30 s, so most requests skip reading them).")
    say("   (Tracer is off outside Lambda, so no X-Ray work is in these figures.)")
    return overhead, own, sdk


# --- Cold start --------------------------------------------------------------------------------------------

# Run by a fresh interpreter; writes its figures as JSON to argv[1]. It imports only what Lambda would.
COLD_START_CHILD = """\
import time
wall_start = time.time()
import json, sys
result_path, mode, event_path = sys.argv[1:4]
start = time.perf_counter()
# What Lambda's exec wrapper starts: costgate's runtime loop, which imports the handler.
from costgate.runtime.stream import ResponseStream
import handler
imported = time.perf_counter()
if mode == "messages":
    handler.gateway()  # what the first POST /v1/messages builds: settings, stores, connections, the HTTP pool
initialised = time.perf_counter()
with open(event_path, encoding="utf-8") as file:
    event = json.load(file)

# Timing proxies on botocore (imported by the handler already), each keeping (start, end) spans: client
# creation (the first calls build clients) and every HTTP request it sends (to moto here: DynamoDB, Secrets
# Manager). The gateway sends some requests at once (the ledger row and the budget take), so the time waited
# on them is the union of their spans.
import botocore.endpoint
import botocore.session


def timed(owner, name, spans):
    original = getattr(owner, name)

    def proxy(*args, **kwargs):
        began = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spans.append((began, time.perf_counter()))

    setattr(owner, name, proxy)


clients, sends = [], []
timed(botocore.session.Session, "create_client", clients)
timed(botocore.endpoint.Endpoint, "_send", sends)


def waited(until):
    total, reached = 0.0, 0.0
    for began, ended in sorted(span for span in sends if span[0] < until):
        ended = min(ended, until)
        total += max(0.0, ended - max(began, reached))
        reached = max(reached, ended)
    return total


class Context:
    function_name = "costgate-ApiFunction-bench"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:costgate-ApiFunction-bench"
    aws_request_id = "5d2c8a1e-0f3b-4c6d-9e7a-1b2c3d4e5f60"

    def get_remaining_time_in_millis(self):
        return 900_000


# The runtime's response connection, in memory: the time of the first byte (the prelude) is kept.
class Sink:
    def __init__(self):
        self.data = bytearray()
        self.first_byte = None

    def write(self, data):
        if self.first_byte is None:
            self.first_byte = time.perf_counter()
        self.data += data

    def finish(self, trailers=None):
        pass

    def abort(self):
        pass


def call():
    sink = Sink()
    stream = ResponseStream(lambda: sink)
    handler.lambda_handler(event, Context(), response_stream=stream)
    stream.end()
    prelude, _, body = bytes(sink.data).partition(b"\\0" * 8)
    return {"statusCode": json.loads(prelude)["statusCode"], "body": body.decode()}, sink.first_byte


asked = time.perf_counter()
first, first_byte = call()
answered = time.perf_counter()
aws_s, aws_calls = waited(first_byte), sum(1 for began, _ in sends if began < first_byte)
second, _ = call()
answered_again = time.perf_counter()
with open(result_path, "w", encoding="utf-8") as file:
    json.dump(
        {
            "wall_start": wall_start,
            "import_s": imported - start,
            "init_s": initialised - imported,
            "first_response_s": first_byte - asked,
            "clients_s": sum(ended - began for began, ended in clients),
            "clients": len(clients),
            "aws_s": aws_s,
            "aws_calls": aws_calls,
            "second_response_s": answered_again - answered,
            "statuses": [first.get("statusCode"), second.get("statusCode")],
            "body": first.get("body"),
        },
        file,
    )
"""

# Runs a setup (argv[2]), then times code (argv[3]); writes the seconds to argv[1].
TIMED_CHILD = """\
import sys, time
exec(sys.argv[2])
start = time.perf_counter()
exec(sys.argv[3])
elapsed = time.perf_counter() - start
with open(sys.argv[1], "w", encoding="utf-8") as file:
    file.write(repr(elapsed))
"""


@dataclass(frozen=True)
class Layout:
    """Where a fresh interpreter finds the code, and which bytecode it may read or write."""

    label: str
    pycache_prefix: Path | None = None  # None: the usual __pycache__ directories
    write_bytecode: bool = False  # False: what is not compiled already compiles at every import, as on Lambda


@dataclass(frozen=True)
class ColdStart:
    interpreter_s: float
    import_s: float
    init_s: float
    first_response_s: float
    clients_s: float  # of the first response: building botocore clients
    clients: int
    aws_s: float  # of the first response: waiting on HTTP round trips to local AWS (moto), overlaps once
    aws_calls: int
    second_response_s: float  # the same request again, warm

    @property
    def function_s(self) -> float:
        return self.import_s + self.init_s + self.first_response_s

    @property
    def own_s(self) -> float:
        """The cold start without its round trips to local AWS, which moto serves at its own (slow) pace."""
        return self.function_s - self.aws_s


@functools.cache
def layer_botocore_data(scratch: Path) -> Path:
    """A botocore data directory holding endpoints.json as DependenciesLayer ships it."""
    data = scratch / "botocore-data"
    data.mkdir(exist_ok=True)
    shutil.copy(Path(botocore.__file__).parent / "data" / "endpoints.json", data / "endpoints.json")
    services = next(
        line.split("=", 1)[1].split()
        for line in LAYER_MAKEFILE.read_text(encoding="utf-8").splitlines()
        if line.startswith("BOTOCORE_SERVICES =")
    )
    subprocess.run([sys.executable, str(TRIM_BOTOCORE), str(data), *services], check=True, timeout=CHILD_TIMEOUT_S)
    return data


def lambda_environment(layout: Layout, table: str, scratch: Path) -> dict[str, str]:
    """This process's environment (local AWS endpoints, the function's variables) as Lambda would extend it."""
    environ = {name: value for name, value in os.environ.items() if name not in ("PYTHONPYCACHEPREFIX", "PYTHONPATH")}
    environ.update(
        {
            "AWS_DATA_PATH": str(layer_botocore_data(scratch)),
            "COSTGATE_TABLE": table,
            "LAMBDA_TASK_ROOT": str(TASK_ROOT),
            "PYTHONPATH": os.pathsep.join(str(path) for path in (TASK_ROOT, *LAYERS)),
            "AWS_LAMBDA_FUNCTION_NAME": "costgate-ApiFunction-bench",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
            "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
            "_HANDLER": "handler.lambda_handler",
            "_X_AMZN_TRACE_ID": TRACE_HEADER,
        }
    )
    if layout.pycache_prefix is not None:
        environ["PYTHONPYCACHEPREFIX"] = str(layout.pycache_prefix)
    if layout.write_bytecode:
        environ.pop("PYTHONDONTWRITEBYTECODE", None)
    else:
        environ["PYTHONDONTWRITEBYTECODE"] = "1"
    return environ


def run_child(
    script: str, args: Sequence[str], environ: dict[str, str], scratch: Path, flags: Sequence[str] = ()
) -> tuple[Any, float, str]:
    """Run `script` in a fresh interpreter: (the JSON it wrote to argv[1], when it was spawned, its stderr)."""
    result = scratch / f"{uuid.uuid4().hex}.json"
    spawned = time.time()
    done = subprocess.run(
        [sys.executable, *flags, "-c", script, str(result), *args],
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0 or not result.exists():
        raise SystemExit(f"bench_gateway: a child interpreter failed ({done.returncode}):\n{done.stderr[-3000:]}")
    figures = json.loads(result.read_text(encoding="utf-8"))
    result.unlink()
    return figures, spawned, done.stderr


def cold_start(layout: Layout, mode: str, event_file: Path, table: str, scratch: Path) -> ColdStart:
    environ = lambda_environment(layout, table, scratch)
    figures, spawned, _ = run_child(COLD_START_CHILD, [mode, str(event_file)], environ, scratch)
    if figures["statuses"] != [200, 200]:
        raise SystemExit(f"bench_gateway: cold {mode} requests got {figures['statuses']}: {figures['body']}")
    return ColdStart(
        interpreter_s=figures["wall_start"] - spawned,
        import_s=figures["import_s"],
        init_s=figures["init_s"],
        first_response_s=figures["first_response_s"],
        clients_s=figures["clients_s"],
        clients=figures["clients"],
        aws_s=figures["aws_s"],
        aws_calls=figures["aws_calls"],
        second_response_s=figures["second_response_s"],
    )


def bytecode_layouts(scratch: Path, table: str, event_file: Path) -> tuple[Layout, Layout]:
    """(every module from bytecode, no bytecode but the runtime's): one priming run fills a pycache tree, then
    a copy of it loses the venv's and the repository's subtrees, so only the interpreter's stdlib stays compiled."""
    everything = scratch / "pyc-all"
    cached = Layout("every module from .pyc (as the layers ship)", everything, write_bytecode=True)
    cold_start(cached, "messages", event_file, table, scratch)  # fills the cache; not counted
    stdlib_only = scratch / "pyc-stdlib"
    shutil.copytree(everything, stdlib_only)
    for tree in {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], str(REPO_ROOT)}:
        shutil.rmtree(stdlib_only / Path(tree).relative_to(Path(tree).anchor), ignore_errors=True)
    return cached, Layout("no .pyc but the stdlib's (layers uncompiled)", stdlib_only)


def measure_cold_starts(
    aws: LocalAws, function: LocalFunction, handler: ModuleType, scratch: Path
) -> list[tuple[str, Layout, list[ColdStart]]]:
    table = fresh_table(aws.endpoints)
    use_table(handler, table)
    api_key = budgeted_key(table)
    events = {"health": health_event(function), "messages": messages_event(function, api_key)}
    files = {}
    for mode, request in events.items():
        files[mode] = scratch / f"{mode}.json"
        files[mode].write_text(json.dumps(request), encoding="utf-8")
    dev = Layout("repo tree: venv .pyc, costgate compiled")
    cached, bare = bytecode_layouts(scratch, table, files["messages"])
    cases = [
        ("GET /v1/health", dev, "health"),
        ("POST /v1/messages", dev, "messages"),
        ("POST /v1/messages", cached, "messages"),
        ("POST /v1/messages", bare, "messages"),
    ]
    runs: list[list[ColdStart]] = [[] for _ in cases]
    for _ in range(RUN.cold_runs):  # interleaved, so a change in the machine's load touches every case alike
        for case, (_, layout, mode) in zip(runs, cases, strict=True):
            case.append(cold_start(layout, mode, files[mode], table, scratch))
    return [(request, layout, case) for (request, layout, _), case in zip(cases, runs, strict=True)]


def report_cold_starts(
    results: list[tuple[str, Layout, list[ColdStart]]],
) -> tuple[dict[str, float], dict[str, float]]:
    """Print the medians; return the median 'function' and 'own' ms of each first POST /v1/messages, by layout."""
    repeats = RUN.cold_runs
    say(f"Cold start: a fresh interpreter per run, set up as Lambda would (Tracer active); median of {repeats} runs")
    header = ("python", "import", "init", "1st byte", "clients", "local AWS", "2nd resp", "function", "own")
    say(f"  {'first request':<18} {'code layout':<44}" + "".join(f"{name:>10}" for name in header))
    functions: dict[str, float] = {}
    owns: dict[str, float] = {}
    for request, layout, runs in results:
        python, imports, init, first, clients_ms, aws_ms, second, function, own = (
            statistics.median(getattr(run, field) for run in runs) * 1e3
            for field in (
                "interpreter_s",
                "import_s",
                "init_s",
                "first_response_s",
                "clients_s",
                "aws_s",
                "second_response_s",
                "function_s",
                "own_s",
            )
        )
        if request.startswith("POST"):
            functions[layout.label] = function
            owns[layout.label] = own
        clients = statistics.median(run.clients for run in runs)
        calls = statistics.median(run.aws_calls for run in runs)
        figures = (
            f"{python:8.0f}ms{imports:8.0f}ms{init:8.0f}ms{first:8.0f}ms"
            f"{clients_ms:5.0f}ms/{clients:.0f}{aws_ms:6.0f}ms/{calls:<2.0f}{second:8.0f}ms{function:8.0f}ms{own:8.0f}ms"
        )
        say(f"  {request:<18} {layout.label:<44}{figures} = {own / COLD_START_TARGET_MS:.1f}x the target")
    say("  function = import + init + 1st byte: the cold start to the first byte, round trips to moto included.")
    say("  local AWS = of the 1st byte, waiting on HTTP round trips to moto (DynamoDB, Secrets Manager) / how many.")
    say(f"  own      = function - local AWS, against the {TARGET_LABEL}: on Lambda add those round trips at")
    say("             DynamoDB's and Secrets Manager's pace (single-digit ms each, some sent at once).")
    say("  python   = the interpreter's start, spawn to the script's first line (the runtime's part on Lambda).")
    say("  clients  = of the 1st response, time building botocore clients / how many were built.")
    say("  2nd resp = the same request again in the same process, warm. Both responses include their DynamoDB")
    say("             calls against moto (see the overhead above), which Lambda would not pay at moto's price.")
    if SAM_BUILD.is_dir():
        compiled = sum(1 for _ in SAM_BUILD.rglob("*.pyc"))
        sources = sum(1 for _ in SAM_BUILD.rglob("*.py"))
        say(f"  ({SAM_BUILD.relative_to(REPO_ROOT)} here holds {sources} .py and {compiled} .pyc files.)")
    return functions, owns


# --- Where the import goes ---------------------------------------------------------------------------------


def import_times(stderr: str) -> list[tuple[int, int, str]]:
    """(cumulative µs, self µs, indented module name) for every line of `-X importtime` output."""
    rows = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "[us]" in line:
            continue
        own, cumulative, name = line.removeprefix("import time:").split("|", 2)
        rows.append((int(cumulative), int(own), name.removeprefix(" ").rstrip()))
    return rows


def report_import_tree(title: str, module: str, environ: dict[str, str], scratch: Path) -> float:
    """Print the top imports of `module` by cumulative time; return its own cumulative ms."""
    script = f"import {module}\nopen(__import__('sys').argv[1], 'w').write('null')"
    _, _, stderr = run_child(script, [], environ, scratch, flags=["-X", "importtime"])
    rows = import_times(stderr)
    say(f"{title} (python -X importtime, one fresh interpreter; top {TOP_IMPORTS} by cumulative time):")
    say(f"  {'cumulative':>10} {'self':>9}  module (indented by nesting)")
    for cumulative, own, name in sorted(rows, reverse=True)[:TOP_IMPORTS]:
        say(f"  {cumulative / 1e3:7.1f} ms {own / 1e3:6.1f} ms  {name}")
    return next(cumulative for cumulative, _, name in rows if name == module) / 1e3


@dataclass(frozen=True)
class Candidate:
    """An avoidable part of the cold start: (setup, timed) code as the handler does it today, and instead."""

    label: str
    remedy: str
    today: tuple[str, str]
    instead: tuple[str, str] | None = None  # None: the part is dropped altogether


def candidates() -> tuple[Candidate, ...]:
    # Done already (2026-12-05, streaming phase 2): the Claude key is read through the botocore session
    # pynamodb has (costgate.dal.secrets), so Powertools' parameters (boto3, s3transfer) are not imported
    # and no second session is built; the figures before were 52 ms and 173 ms on a loaded machine.
    return (
        Candidate(
            "Powertools Tracer on Lambda (aws_xray_sdk, botocore patched)",
            "no Tracer (Lambda still traces the invocation)",
            (HANDLER_THIRD_PARTY + "\nfrom aws_lambda_powertools import Tracer", 'Tracer(patch_modules=["botocore"])'),
        ),
    )


def timed_ms(setup_and_timed: tuple[str, str], environ: dict[str, str], scratch: Path) -> float:
    setup, timed = setup_and_timed
    seconds, _, _ = run_child(TIMED_CHILD, [setup, timed], environ, scratch)
    return float(seconds) * 1e3


# What any function that keeps its books in DynamoDB through botocore (pynamodb) pays before its first byte,
# whatever its own code: botocore and urllib3 imported, the two clients a first request builds.
FLOOR = (
    "",
    "import urllib3, botocore.session\n"
    "session = botocore.session.get_session()\n"
    "for service in ('dynamodb', 'secretsmanager'):\n"
    "    session.create_client(service, region_name='us-east-1')",
)


def report_floor(environ: dict[str, str], scratch: Path, own: dict[str, float]) -> None:
    runs = [timed_ms(FLOOR, environ, scratch) for _ in range(RUN.cold_runs)]
    floor = statistics.median(runs)
    say(f"Floor (median of {RUN.cold_runs}): importing botocore and urllib3 and building the DynamoDB and Secrets")
    ratio = floor / COLD_START_TARGET_MS
    say(f"  Manager clients, nothing else, in a fresh interpreter: {floor:.0f} ms = {ratio:.1f}x the target")
    for label, own_ms in own.items():
        say(f"  {label}: own cold start {own_ms - floor:.0f} ms above the floor")


def report_candidates(environ: dict[str, str], scratch: Path) -> None:
    say(f"Avoidable parts, each timed last in a fresh interpreter (median of {RUN.cold_runs}):")
    say(f"  {'':<60}{'today':>9}{'instead':>9}{'saves':>9}")
    for candidate in candidates():
        today: list[float] = []
        instead: list[float] = []
        for _ in range(RUN.cold_runs):  # interleaved, as the cold starts
            today.append(timed_ms(candidate.today, environ, scratch))
            instead.append(0.0 if candidate.instead is None else timed_ms(candidate.instead, environ, scratch))
        now, then = statistics.median(today), statistics.median(instead)
        say(f"  {candidate.label:<60}{now:7.0f}ms{then:7.0f}ms{now - then:7.0f}ms  instead: {candidate.remedy}")


# --- Main ------------------------------------------------------------------------------------------------


def main() -> None:
    global RUN  # noqa: PLW0603 - the run's size, chosen once from the command line
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every measurement once, with few repetitions")
    if parser.parse_args().quick:
        RUN = QUICK
    Report.stream = claim_stdout()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # the local servers' access lines
    say(f"bench_gateway: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the start")
    DomainDispatcherApplication.__call__ = MOTO.wrap(DomainDispatcherApplication.__call__)  # type: ignore[method-assign]
    with LocalAws() as aws, Simulator() as sim, tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp:
        scratch = Path(tmp)
        os.environ.update(aws.endpoints.environ())
        create_secret(aws.endpoints, CLAUDE_KEY_SECRET_NAME, SIMULATOR_CLAUDE_KEY)
        refs = {
            "Table": "unused-until-a-round-creates-one",
            "Bucket": "unused",
            "ClaudeApiUrl": sim.base_url,
            "ClaudeApiKeySecretName": CLAUDE_KEY_SECRET_NAME,
        }
        function = LocalFunction.from_template(load_template(), FUNCTION, refs=refs, in_process=True)
        os.environ.update(function.environment)
        handler = sys.modules[function.handler.__module__]

        say()
        overhead, own, sdk = report_overhead(measure_overhead(aws, function, handler, sim))
        say()
        results = measure_cold_starts(aws, function, handler, scratch)
        cold, cold_own = report_cold_starts(results)
        say()
        environ = lambda_environment(Layout("repo tree"), os.environ["COSTGATE_TABLE"], scratch)
        report_floor(environ, scratch, cold_own)
        say()
        handler_import = report_import_tree("Where the handler's import goes", "handler", environ, scratch)
        say()
        sdk_import = report_import_tree("For comparison, the anthropic SDK", "anthropic", environ, scratch)
        say(f"=> import anthropic: {sdk_import:.0f} ms, {sdk_import / handler_import:.1f}x the handler's whole import")
        say()
        report_candidates(environ, scratch)
    say()
    say(f"=> gateway overhead per request: {overhead * 1e3:.1f} ms median ({overhead / sdk:.1f}x a direct SDK call);")
    say(f"   excluding local DynamoDB emulation: {own * 1e3:.1f} ms ({own / sdk:.2f}x)")
    for label, function_ms in cold.items():
        own_ms = cold_own[label]
        say(
            f"=> cold start to a first POST /v1/messages, {label}: {function_ms:.0f} ms, "
            f"{own_ms:.0f} ms without local AWS = {own_ms / COLD_START_TARGET_MS:.1f}x the {TARGET_LABEL}"
        )
    say(f"   (load average at the end: {os.getloadavg()[0]:.2f}; on a busy machine read the ratios, not the ms)")


if __name__ == "__main__":
    main()
