"""Streaming: time to first byte, to the first and to the last text delta, through a streaming path and direct.

The Claude API simulator streams one answer at a pace (`--token-ms` per output token, in deltas of 1–3
tokens). The same request goes, interleaved, straight to the simulator and through a streaming path:
the local API Gateway front in STREAM mode, which invokes the function through costgate's runtime loop
and a local Runtime API (the bytes the runtime writes on Lambda), then relays them chunked. A raw HTTP
client times each response: first body byte, first and last `text_delta` event, end. Every request sends
the same body, so every response is the same answer cut the same way.

Path `relay` (phase 1): the function is a minimal streaming relay (urllib3 to the simulator, each
upstream chunk written to the response stream as it arrives), so its figures are the cost of the
streaming machinery alone: front, runtime loop, Runtime API hop, prelude. The gateway path (auth,
budgets, the ledger, usage read on the fly) is added when ApiFunction's handler streams.

Simulator, path and client each run in a process of their own: in one process the path's threads
would slow the simulator's pacing through the GIL and charge the path for it. The path's CPU per
request is read from its process (/proc, Linux), and given per delta. Figures beside the baseline,
never asserted (STYLE.md).
"""

import argparse
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import urllib3
from werkzeug.serving import make_server

from costgate.runtime.loop import streaming
from costgate.runtime.prelude import HttpPrelude
from costgate.runtime.stream import ResponseStream
from costgate_local.stack.front import ApiFront, LocalFunction, _route

MODEL = "claude-haiku-5-5"
API_KEY = "sk-bench"
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


def timed_stream(base_url: str) -> Timing:
    """One streamed request, timed by a raw HTTP client from the moment the request is sent."""
    url = urlsplit(base_url)
    connection = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=900)
    headers = {"x-api-key": API_KEY, "anthropic-version": "2026-10-21", "content-type": "application/json"}
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
    pid: int | None  # the process that serves it, whose CPU is the path's (None: the baseline)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (Linux /proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(rounds: int, paths: dict[str, Path]) -> dict[str, tuple[list[Timing], float]]:
    """Each path's timings and CPU seconds of its own process, the paths interleaved round by round."""
    results: dict[str, tuple[list[Timing], float]] = {name: ([], 0.0) for name in paths}
    for _ in range(rounds):
        for name, path in paths.items():
            cpu = cpu_seconds(path.pid) if path.pid else 0.0
            timing = timed_stream(path.base_url)
            timings, spent = results[name]
            timings.append(timing)
            results[name] = (timings, spent + (cpu_seconds(path.pid) - cpu if path.pid else 0.0))
    return results


def report(results: dict[str, tuple[list[Timing], float]], token_ms: float) -> None:
    direct_timings, _ = results["direct"]
    deltas = direct_timings[0].deltas
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"{len(direct_timings)} rounds, one answer of {deltas} text deltas at {token_ms:g} ms per token")
    print(f"load average {load} on {os.cpu_count()} CPUs: the spread of the direct times is this machine's noise")
    print(f"{'path':<8} {'first byte':>12} {'first delta':>12} {'last delta':>12} {'end':>12} {'path CPU':>12}")
    spread = [t.last_delta * 1000 for t in direct_timings]
    medians: dict[str, dict[str, float]] = {}
    for name, (timings, cpu) in results.items():
        row = {field: statistics.median(getattr(t, field) for t in timings) * 1000 for field in _FIELDS}
        medians[name] = row
        cells = " ".join(f"{row[field]:>9.1f} ms" for field in _FIELDS)
        cpu_cell = f"{cpu / len(timings) * 1000:>9.1f} ms" if name != "direct" else f"{'-':>12}"
        print(f"{name:<8} {cells} {cpu_cell}")
    print(f"direct, last delta: {min(spread):.1f}-{max(spread):.1f} ms over the rounds")
    for name, (timings, cpu) in results.items():
        if name == "direct":
            continue
        added = {field: medians[name][field] - medians["direct"][field] for field in _FIELDS}
        pace = (medians[name]["last_delta"] / medians["direct"]["last_delta"] - 1) * 100
        added_cpu_ms = cpu / len(timings) * 1000
        print(
            f"{name}: adds {added['first_byte']:.1f} ms to the first byte, {added['first_delta']:.1f} ms to the first "
            f"delta, {added['last_delta']:.1f} ms to the last ({pace:+.2f}% of the direct time to the last delta); "
            f"CPU {added_cpu_ms:.1f} ms per request, {added_cpu_ms / max(deltas, 1) * 1000:.0f} µs per delta"
        )


_FIELDS = ("first_byte", "first_delta", "last_delta", "end")


@contextmanager
def child(*argv: str) -> Iterator[tuple[str, int]]:
    """A server process that prints a JSON line with its base_url when ready; stopped with SIGTERM."""
    process = subprocess.Popen([sys.executable, *argv], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        ready = json.loads(process.stdout.readline())
        yield ready["base_url"], process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def serve_relay(upstream_url: str) -> int:
    """`--serve-relay URL`: the relay path in this process, until SIGTERM."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    with served(relay_function(upstream_url)) as base_url:
        print(json.dumps({"base_url": base_url}), flush=True)
        while not stop.wait(0.5):
            pass
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5, help="requests per path, interleaved (default 5)")
    parser.add_argument("--token-ms", type=float, default=10.0, help="simulator pace, ms per output token (default 10)")
    parser.add_argument("--serve-relay", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_relay:
        return serve_relay(args.serve_relay)
    with ExitStack() as stack:
        simulator_url, _ = stack.enter_context(
            child("-m", "costgate_local.simulator", "--stream-token-ms", str(args.token_ms))
        )
        relay_url, relay_pid = stack.enter_context(child(__file__, "--serve-relay", simulator_url))
        paths = {"direct": Path(simulator_url, None), "relay": Path(relay_url, relay_pid)}
        timed_stream(relay_url)  # the runtime environment's cold start is not a streaming cost
        report(measure(args.rounds, paths), args.token_ms)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
