"""Streaming: time to first byte, to the first and to the last text delta, through the gateway and direct.

The Claude API simulator streams one answer at a pace (`--token-ms` per output token, in deltas of 1–3
tokens). The same request goes, interleaved, straight to the simulator and through a streaming path:
the local API Gateway front in STREAM mode, which invokes the function through costgate's runtime loop
and a local Runtime API (the bytes the runtime writes on Lambda), then relays them chunked. A raw HTTP
client times each response: first body byte, first and last `text_delta` event, end. Every request sends
the same body, so every response is the same answer cut the same way.

Paths:
- `relay`: a minimal streaming function (urllib3 to the simulator, each upstream chunk written to the
  response stream as it arrives): the cost of the streaming machinery alone (front, runtime loop,
  Runtime API hop, prelude).
- `gateway`: `costgate serve --upstream-url SIMULATOR`, the real ApiFunction in an execution environment
  of its own (a process: exec wrapper, runtime loop, local Runtime API), with a budgeted key: auth, the
  budget hold, the relay with usage read on the fly, the receipt, the ledger write after the end. Its CPU
  is the environment process's; the local stand-ins of AWS (the front, moto) run in serve's own process
  and are shown apart.

Then the gateway's added time to first byte is split, from the same handler run in this process
(against serve's moto and the simulator) with timing proxies on its stores, as bench_gateway does:
Claude's time to its headers, the DynamoDB calls before the first byte (moto here: tens of ms a
transaction, single digits on AWS), and the rest, the gateway's own CPU.

Simulator, paths and client run in processes of their own: in one process the paths' threads would slow
the simulator's pacing through the GIL and charge the path for it. CPU is read from /proc (Linux).
Figures beside the baseline, never asserted (STYLE.md).
"""

import argparse
import functools
import http.client
import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path as FilePath
from typing import Any, TextIO
from urllib.parse import urlsplit

import urllib3
from werkzeug.serving import make_server
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from costgate.claude.messages import HttpUpstream
from costgate.dal.keys import DynamoKeyStore
from costgate.gateway.keys import issue_key
from costgate.runtime.loop import streaming
from costgate.runtime.prelude import HttpPrelude
from costgate.runtime.stream import ResponseStream
from costgate_local.stack.aws import LOCAL_CREDENTIALS
from costgate_local.stack.front import ApiFront, LocalFunction, _route, rest_event
from costgate_local.stack.serve import CLAUDE_KEY_SECRET_NAME, DEV_TENANT
from costgate_local.stack.template import load_template

MODEL = "claude-haiku-5-5"
API_KEY = "sk-bench"
COSTGATE = FilePath(sys.executable).parent / "costgate"
DAILY_BUDGET_USD = "1000"  # every gateway request holds and settles a budget, as a budgeted key does
BODY = json.dumps(
    {
        "model": MODEL,
        "max_tokens": 400,
        "stream": True,
        "messages": [{"role": "user", "content": "Explain what a cost gateway for the Claude API does."}],
    }
).encode()


@dataclass(frozen=True)
class Timing:
    first_byte: float
    first_delta: float
    last_delta: float
    end: float
    deltas: int


def relay_function(upstream_url: str) -> LocalFunction:
    """A STREAM route whose handler relays Claude's stream as it arrives (the phase-1 stand-in for the gateway)."""
    pool = urllib3.PoolManager()

    @streaming
    def handler(event: dict[str, Any], context: Any, *, response_stream: ResponseStream) -> None:
        headers = {"x-api-key": API_KEY, "anthropic-version": "2026-10-21", "content-type": "application/json"}
        upstream = pool.request(
            "POST", f"{upstream_url}/v1/messages", body=event["body"].encode(), headers=headers, preload_content=False
        )
        response_stream.start(HttpPrelude(upstream.status, {"content-type": upstream.headers["content-type"]}))
        for chunk in upstream.stream(64 * 1024):
            response_stream.write(chunk)
        upstream.release_conn()

    return LocalFunction(
        logical_id="ApiFunction",
        handler=handler,
        memory_mb=1024,
        timeout_s=900,
        environment={},
        routes=(_route("POST", "/v1/messages", streaming=True, timeout_s=900),),
    )


@contextmanager
def served(function: LocalFunction) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, ApiFront(function), threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        function.close()


def timed_stream(base_url: str, api_key: str = API_KEY) -> Timing:
    """One streamed request, timed by a raw HTTP client from the moment the request is sent."""
    url = urlsplit(base_url)
    connection = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=900)
    headers = {
        "x-api-key": api_key,
        "anthropic-version": "2026-10-21",
        "content-type": "application/json",
        "x-costgate-cache": "off",  # the same body every time: it must reach Claude every time
    }
    start = time.perf_counter()
    connection.request("POST", "/v1/messages", body=BODY, headers=headers)
    response = connection.getresponse()
    if response.status != 200:
        raise RuntimeError(f"{base_url}: {response.status} {response.read()[:300]!r}")
    first_byte = first_delta = last_delta = 0.0
    deltas = 0
    pending = b""
    while chunk := response.read1(64 * 1024):
        now = time.perf_counter() - start
        first_byte = first_byte or now
        pending += chunk
        *events, pending = pending.split(b"\n\n")
        for event in events:
            if b'"type":"text_delta"' in event:
                deltas += 1
                first_delta = first_delta or now
                last_delta = now
    end = time.perf_counter() - start
    connection.close()
    return Timing(first_byte, first_delta, last_delta, end, deltas)


@dataclass(frozen=True)
class Path:
    base_url: str
    pid: int | None  # the process whose CPU is the path's own (None: the baseline)
    api_key: str = API_KEY
    descendants: bool = False  # the path's CPU is that of the pid's child processes (serve's environments)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (Linux /proc/<pid>/stat); 0 for one that has gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    """Every descendant of a process (Linux /proc/<pid>/task/*/children)."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as listed:
                direct = [int(child) for child in listed.read().split()]
        except FileNotFoundError:
            continue
        for child in direct:
            found += [child, *children(child)]
    return found


def path_cpu(path: Path) -> float:
    if path.pid is None:
        return 0.0
    if path.descendants:
        return sum(cpu_seconds(child) for child in children(path.pid))
    return cpu_seconds(path.pid)


@dataclass
class Measured:
    timings: list[Timing]
    cpu_s: float = 0.0  # the path's own process(es)
    host_cpu_s: float = 0.0  # for the gateway: serve's own process (the front, moto, the loops)


def measure(rounds: int, paths: dict[str, Path]) -> dict[str, Measured]:
    """Each path's timings and CPU seconds of its own process(es), the paths interleaved round by round."""
    results = {name: Measured([]) for name in paths}
    for _ in range(rounds):
        for name, path in paths.items():
            cpu = path_cpu(path)
            host = cpu_seconds(path.pid) if path.descendants and path.pid else 0.0
            timing = timed_stream(path.base_url, path.api_key)
            result = results[name]
            result.timings.append(timing)
            result.cpu_s += path_cpu(path) - cpu
            if path.descendants and path.pid:
                result.host_cpu_s += cpu_seconds(path.pid) - host
    return results


def report(results: dict[str, Measured], token_ms: float) -> None:
    direct_timings = results["direct"].timings
    deltas = direct_timings[0].deltas
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    say(f"{len(direct_timings)} rounds, one answer of {deltas} text deltas at {token_ms:g} ms per token")
    say(f"load average {load} on {os.cpu_count()} CPUs: the spread of the direct times is this machine's noise")
    say(f"{'path':<8} {'first byte':>12} {'first delta':>12} {'last delta':>12} {'end':>12} {'path CPU':>12}")
    spread = [t.last_delta * 1000 for t in direct_timings]
    medians: dict[str, dict[str, float]] = {}
    for name, result in results.items():
        row = {field: statistics.median(getattr(t, field) for t in result.timings) * 1000 for field in _FIELDS}
        medians[name] = row
        cells = " ".join(f"{row[field]:>9.1f} ms" for field in _FIELDS)
        cpu_cell = f"{result.cpu_s / len(result.timings) * 1000:>9.1f} ms" if name != "direct" else f"{'-':>12}"
        say(f"{name:<8} {cells} {cpu_cell}")
    say(f"direct, last delta: {min(spread):.1f}-{max(spread):.1f} ms over the rounds")
    for name, result in results.items():
        if name == "direct":
            continue
        added = {field: medians[name][field] - medians["direct"][field] for field in _FIELDS}
        pace = (medians[name]["last_delta"] / medians["direct"]["last_delta"] - 1) * 100
        span = statistics.median((t.last_delta - t.first_delta) * 1000 for t in result.timings)
        direct_span = statistics.median((t.last_delta - t.first_delta) * 1000 for t in direct_timings)
        added_cpu_ms = result.cpu_s / len(result.timings) * 1000
        say(
            f"{name}: adds {added['first_byte']:.1f} ms to the first byte, {added['first_delta']:.1f} ms to the first "
            f"delta, {added['last_delta']:.1f} ms to the last ({pace:+.2f}% of the direct time to the last delta); "
            f"CPU {added_cpu_ms:.1f} ms per request, {added_cpu_ms / max(deltas, 1) * 1000:.0f} µs per delta"
        )
        say(
            f"{'':<{len(name)}}  pace: first to last delta {span:.1f} ms against {direct_span:.1f} ms direct "
            f"({(span / direct_span - 1) * 100:+.2f}%): the deltas keep Claude's pace once they flow"
        )
        if result.host_cpu_s:
            host_ms = result.host_cpu_s / len(result.timings) * 1000
            say(
                f"{'':<{len(name)}}  (+ {host_ms:.1f} ms per request in serve's own process: "
                "the local front, moto, its schedule loops)"
            )


_FIELDS = ("first_byte", "first_delta", "last_delta", "end")


@contextmanager
def child(argv: list[str], *, quiet: bool = False) -> Iterator[tuple[dict[str, Any], int]]:
    """A server process that prints a JSON line (its base_url, ...) when ready; stopped with SIGTERM."""
    stderr = subprocess.DEVNULL if quiet else None
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr, text=True)
    try:
        assert process.stdout is not None
        ready: dict[str, Any] = json.loads(process.stdout.readline())
        yield ready, process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def serve_relay(upstream_url: str) -> int:
    """`--serve-relay URL`: the relay path in this process, until SIGTERM."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    with served(relay_function(upstream_url)) as base_url:
        sys.stdout.write(json.dumps({"base_url": base_url}) + "\n")
        sys.stdout.flush()
        while not stop.wait(0.5):
            pass
    return 0


def budget_every_request(ready: Mapping[str, Any]) -> None:
    """A daily budget on serve's own tenant: every gateway request then holds, settles and reads one."""
    environ = {
        **os.environ,
        "AWS_ENDPOINT_URL": ready["aws_endpoint_url"],
        "COSTGATE_TABLE": ready["table"],
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    command = [str(COSTGATE), "budgets", "set", "--tenant", DEV_TENANT, "--period", "day"]
    subprocess.run([*command, "--limit-usd", DAILY_BUDGET_USD], env=environ, check=True, capture_output=True)


# --- the gateway's added time to first byte, split (in this process, with timing proxies) -------------------


class Stopwatch:
    """Wall time during which at least one wrapped call was in flight on the request's path, and how many
    calls: the request's own thread and the accounting pool it waits on (the row's put and the budget take
    run there side by side, so their time is counted once), not the read the gateway runs beside Claude's
    answer (`costgate-beside-claude`). A call from inside another counts once."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0
        self._nested = threading.local()
        self._lock = threading.Lock()
        self._in_flight = 0
        self._since = 0.0

    def wrap[**P, R](self, method: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(method)
        def timed(*args: P.args, **kwargs: P.kwargs) -> R:
            beside = threading.current_thread().name.startswith("costgate-beside-claude")
            depth: int = getattr(self._nested, "depth", 0)
            if beside or depth:
                return method(*args, **kwargs)
            self._nested.depth = 1
            with self._lock:
                if self._in_flight == 0:
                    self._since = time.perf_counter()
                self._in_flight += 1
                self.calls += 1
            try:
                return method(*args, **kwargs)
            finally:
                with self._lock:
                    self._in_flight -= 1
                    if self._in_flight == 0:
                        self.seconds += time.perf_counter() - self._since
                self._nested.depth = 0

        return timed


def wrap_public(instance: object, watch: Stopwatch) -> None:
    for name in dir(type(instance)):
        if not name.startswith("_") and callable(getattr(instance, name)):
            setattr(instance, name, watch.wrap(getattr(instance, name)))


@dataclass(frozen=True)
class Split:
    first_byte: float  # from the handler's call to its first byte (the prelude)
    upstream: float  # Claude's time to its response headers
    dynamodb: float  # store calls before the first byte
    calls: int


class FirstByteSink:
    """A response connection in memory that notes, at its first byte, how far the stopwatches had got."""

    def __init__(self, start: float, watches: tuple[Stopwatch, Stopwatch]) -> None:
        self.start = start
        self.watches = watches
        self.at_first_byte: tuple[float, float, float, int] | None = None

    def write(self, data: bytes) -> None:
        if self.at_first_byte is None:
            upstream, dynamodb = self.watches
            now = time.perf_counter() - self.start
            self.at_first_byte = (now, upstream.seconds, dynamodb.seconds, dynamodb.calls)

    def finish(self, trailers: Mapping[str, str] | None = None) -> None:
        return

    def abort(self) -> None:
        return


def split_first_byte(ready: Mapping[str, Any], requests: int) -> list[Split]:
    """The real handler in this process against serve's moto and the simulator, its stores and its upstream
    behind stopwatches; `requests` streams after one to warm it, with a key that has a daily budget."""
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": ready["aws_endpoint_url"],
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            **LOCAL_CREDENTIALS,
        }
    )
    refs = {
        "Table": ready["table"],
        "Bucket": ready["bucket"],
        "ClaudeApiUrl": ready["upstream_url"],
        "ClaudeApiKeySecretName": CLAUDE_KEY_SECRET_NAME,
    }
    function = LocalFunction.from_template(load_template(), "ApiFunction", refs=refs, in_process=True)
    os.environ.update(function.environment)
    handler = sys.modules[function.handler.__module__]
    handler.settings()  # binds the table
    api_key, _ = issue_key(
        DynamoKeyStore(), tenant=DEV_TENANT, daily_budget_usd=Decimal(DAILY_BUDGET_USD), now=datetime.now(UTC)
    )
    gateway = handler.gateway()
    upstream, dynamodb = Stopwatch(), Stopwatch()
    for member in vars(gateway).values():
        if type(member).__module__.startswith("costgate.dal."):
            wrap_public(member, dynamodb)
        elif isinstance(member, HttpUpstream):
            member.post_stream = upstream.wrap(member.post_stream)  # type: ignore[method-assign]
        elif hasattr(member, "_store") and type(member._store).__module__.startswith("costgate.dal."):
            wrap_public(member._store, dynamodb)  # the answer cache's store
    route = _route("POST", "/v1/messages", streaming=True)
    headers = [
        ("x-api-key", api_key),
        ("anthropic-version", "2026-10-21"),
        ("content-type", "application/json"),
        ("x-costgate-cache", "off"),
    ]
    splits: list[Split] = []
    for i in range(requests + 1):
        builder = EnvironBuilder(path="/v1/messages", method="POST", data=BODY, headers=headers)
        event = rest_event(Request(builder.get_environ()), route, {})
        for watch in (upstream, dynamodb):
            watch.seconds, watch.calls = 0.0, 0
        start = time.perf_counter()
        sink = FirstByteSink(start, (upstream, dynamodb))
        stream = ResponseStream(functools.partial(_same, sink))
        handler.lambda_handler(event, function.context(), response_stream=stream)
        stream.end()
        if sink.at_first_byte is None:
            raise SystemExit("bench_stream: the handler wrote nothing")
        first_byte, upstream_s, dynamodb_s, calls = sink.at_first_byte
        if i:  # the first request warms the handler (keys, budgets, connections)
            splits.append(Split(first_byte, upstream_s, dynamodb_s, calls))
    return splits


def _same(sink: FirstByteSink) -> FirstByteSink:
    return sink


def report_split(splits: list[Split]) -> None:
    def median(values: list[float]) -> float:
        return statistics.median(values) * 1000

    first = median([s.first_byte for s in splits])
    upstream = median([s.upstream for s in splits])
    dynamodb = median([s.dynamodb for s in splits])
    own = median([s.first_byte - s.upstream - s.dynamodb for s in splits])
    calls = statistics.median(s.calls for s in splits)
    say(f"The gateway's time to its first byte, split ({len(splits)} warm streams, in-process, timing proxies):")
    say(f"  handler call to the first byte (the prelude): {first:8.1f} ms")
    say(f"    Claude's time to its response headers:      {upstream:8.1f} ms")
    say(f"    DynamoDB before the first byte ({calls:.0f} calls):    {dynamodb:8.1f} ms  (moto; single digits on AWS)")
    say(f"    the rest, the gateway's own CPU:            {own:8.1f} ms")


class Report:
    """Where `say` writes: the real stdout, once `claim_stdout` has moved the in-process handler's output away."""

    stream: TextIO = sys.stdout


def say(line: str = "") -> None:
    Report.stream.write(line + "\n")
    Report.stream.flush()


def claim_stdout() -> TextIO:
    """This report's own stdout; fd 1 goes to /dev/null, and with it the log lines and EMF metrics the
    in-process handler prints (Powertools formats them as on Lambda; only the bytes go nowhere)."""
    sys.stdout.flush()
    report = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8", buffering=1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="every figure once, few rounds, a fast pace")
    parser.add_argument("--rounds", type=int, default=7, help="requests per path, interleaved (default 7)")
    parser.add_argument("--token-ms", type=float, default=40.0, help="simulator pace, ms per output token (default 40)")
    parser.add_argument("--serve-relay", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_relay:
        return serve_relay(args.serve_relay)
    rounds, token_ms, splits = (1, 2.0, 2) if args.quick else (args.rounds, args.token_ms, 5)
    Report.stream = claim_stdout()
    with ExitStack() as stack:
        simulator, _ = stack.enter_context(
            child([sys.executable, "-m", "costgate_local.simulator", "--stream-token-ms", str(token_ms)])
        )
        simulator_url = simulator["base_url"]
        relay, relay_pid = stack.enter_context(child([sys.executable, __file__, "--serve-relay", simulator_url]))
        gateway, serve_pid = stack.enter_context(
            child([str(COSTGATE), "serve", "--port", "0", "--upstream-url", simulator_url], quiet=True)
        )
        budget_every_request(gateway)
        paths = {
            "direct": Path(simulator_url, None),
            "relay": Path(relay["base_url"], relay_pid),
            "gateway": Path(gateway["base_url"], serve_pid, gateway["api_key"], descendants=True),
        }
        # Cold starts (an environment's runtime, the gateway's first clients) are not streaming costs.
        timed_stream(paths["relay"].base_url)
        timed_stream(paths["gateway"].base_url, gateway["api_key"])
        report(measure(rounds, paths), token_ms)
        say()
        report_split(split_first_byte(gateway, splits))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
