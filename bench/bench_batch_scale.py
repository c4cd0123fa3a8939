"""Batch scheduler at scale: N short documents through ingest, submission, collection and the manifest.

Everything runs in this process on the in-memory fakes (tests/fakes/), with FakeClaudeBatches ending
its batches only when told: register every document, tick until all are submitted, end every batch,
tick until every document is finished and the manifest written. Per phase: wall and CPU time, the
port calls each document costs (a counting proxy on every port, noting whether the call came from
the scheduler's thread pool) and, in a separate tracemalloc pass at a smaller N (tracing slows Python
about four times), the peak memory of the scheduler ticks. The baseline, measured in the same run,
is JSON-serialising N result lines: what any implementation must at least do.

The fakes hold in memory what DynamoDB, S3, Claude and the ledger hold in AWS, so the traced peak
above a tick's start includes their growth; the peak above the tick's end is a lower bound on the
scheduler's own working memory. Last, the measured calls are projected onto AWS latencies (stated
below, assumed, not measured) with the scheduler's PARALLEL constant, to tell how many 15-minute
ticks 100,000 documents need. No timing is asserted (STYLE.md).
"""

import argparse
import gc
import json
import logging
import math
import os
import sys
import tempfile
import threading
import time
import tracemalloc
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.fakes, when run as bench/<file>.py
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")  # EMF blobs are built (CPU counted), not printed

from costgate.batch.collect import CHUNK
from costgate.batch.ingest import IngestServices, register_object
from costgate.batch.manifests import write_manifest
from costgate.batch.model import DocumentStatus
from costgate.batch.scheduler import SchedulerServices, run_scheduler
from costgate.batch.tick import MAX_BATCH_REQUESTS, PARALLEL
from tests.fakes.accounting import InMemoryBudgetStore, InMemoryLedgerStore
from tests.fakes.batch import InMemoryBatchStore, InMemoryObjectStore
from tests.fakes.claude import FakeClaudeBatches, succeeded_answer
from tests.fakes.clock import NOW, ManualClock

JOB = "scale"
DEFAULT_DOCUMENTS = 100_000
SCALING_DOCUMENTS = 10_000  # the smaller untraced run the scaling is read from
MEMORY_DOCUMENTS = (1_000, 5_000)  # traced runs: memory per document from their difference
QUICK_DOCUMENTS = 300  # --quick: every phase once, at a size CI runs in seconds
MAX_TICKS = 200

# --- the AWS projection's assumptions ---------------------------------------------------------------------
LAMBDA_TIMEOUT_S = 900
STOP_MARGIN_S = 60  # functions/batch/handler.py: the tick stops starting work this long before the timeout
TICK_S = LAMBDA_TIMEOUT_S - STOP_MARGIN_S
DYNAMODB_S = 0.008  # one GetItem / UpdateItem / TransactWriteItems / BatchGetItem / Query page
S3_GET_S = 0.015
S3_PUT_S = 0.025
CLAUDE_S = 0.300  # one Message Batches API call (assumed: no figure was given)
BANDWIDTH_BPS = 100e6  # bytes/s for bodies, results and manifests beyond the per-call latency
QUERY_PAGE_BYTES = 1_000_000  # DynamoDB returns a Query page of at most 1 MB
UNIT_ITEM_BYTES = 400  # DynamoBatchStore items, estimated from their attributes
DOCUMENT_ITEM_BYTES = 700
BATCH_GET_KEYS = 100  # BatchGetItem takes at most 100 keys; pynamodb sends the chunks one after another
PUT_WORKERS = 8  # DynamoBatchStore.put_units' parallel PutItems (from 16 units on)


# --- counting every port call -------------------------------------------------------------------------------


@dataclass
class Calls:
    """Port calls and the AWS requests they stand for, by (port.method, made from a pool thread)."""

    count: Counter[tuple[str, bool]] = field(default_factory=Counter)
    requests: Counter[tuple[str, bool]] = field(default_factory=Counter)
    transfer: Counter[tuple[str, bool]] = field(default_factory=Counter)  # bytes moved beyond the request
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, name: str, requests: int, transfer: int = 0) -> None:
        key = (name, threading.current_thread() is not threading.main_thread())
        with self.lock:
            self.count[key] += 1
            self.requests[key] += requests
            self.transfer[key] += transfer

    def total(self) -> int:
        return sum(self.count.values())


def _pages(items: int, item_bytes: int) -> int:
    return max(1, math.ceil(items * item_bytes / QUERY_PAGE_BYTES))


def _batch_gets(keys: int) -> int:
    return math.ceil(keys / BATCH_GET_KEYS)


def _size(value: Any) -> int:
    return len(value) if hasattr(value, "__len__") else 0


# AWS requests per port call (an iterator's are counted when it is exhausted), from its arguments and result.
type RequestModel = Callable[[tuple[Any, ...], Any], tuple[int, int]]
REQUEST_MODELS: dict[str, RequestModel] = {
    "store.put_units": lambda args, _: (len(args[0]), 0),
    "store.pending_units": lambda _, result: (8 + _pages(len(result), UNIT_ITEM_BYTES), 0),  # 8 shard queries
    "store.documents": lambda args, _: (_batch_gets(len(args[1])), 0),
    "store.units": lambda args, _: (_batch_gets(len(args[1])), 0),
    "store.open_batches": lambda _, result: (1 + _batch_gets(len(result)), 0),
    "store.documents_to_check": lambda _, result: (1 + _batch_gets(len(result)), 0),
    "store.jobs_to_manifest": lambda _, result: (1 + _batch_gets(len(result)), 0),
    "store.job_documents": lambda _, items: (_pages(items, DOCUMENT_ITEM_BYTES), 0),
    # A query of the job's whole partition, documents and units: estimated as two items per document.
    "store.packed_units": lambda _, items: (_pages(2 * items, DOCUMENT_ITEM_BYTES), 0),
    "objects.read": lambda _, result: (1, _size(result)),
    "objects.lines": lambda _, items: (1, 0),
    "objects.put": lambda args, _: (1, len(args[1])),
    "objects.put_file": lambda args, _: (1, args[1].stat().st_size),
    "claude.create": lambda args, _: (1, args[0].stat().st_size),
    "claude.results": lambda _, items: (1, 600 * items),
}
ITERATORS = frozenset({"job_documents", "packed_units", "lines", "results", "created_since"})


def one_request(args: tuple[Any, ...], result: Any) -> tuple[int, int]:
    return 1, 0


class CountingPort:
    """Forwards every public call to the port it wraps and counts it in `calls`."""

    def __init__(self, target: Any, name: str, calls: Calls) -> None:
        self._target = target
        self._name = name
        self._calls = calls

    def __getattr__(self, attr: str) -> Any:
        value = getattr(self._target, attr)
        if attr.startswith("_") or not callable(value):
            return value
        name = f"{self._name}.{attr}"
        model = REQUEST_MODELS.get(name, one_request)
        calls = self._calls

        def call(*args: Any, **kwargs: Any) -> Any:
            if attr in ITERATORS:
                return counted(iter(value(*args, **kwargs)), args)
            try:
                result = value(*args, **kwargs)
            except Exception:
                calls.add(name, 1)  # a refusal (NotFoundError, BudgetExceededError, …) is a request too
                raise
            calls.add(name, *model(args, result))
            return result

        def counted(items: Iterator[Any], args: tuple[Any, ...]) -> Iterator[Any]:
            seen = 0
            try:
                for item in items:
                    seen += 1
                    yield item
            finally:
                calls.add(name, *model(args, seen))

        return call


# --- one run -----------------------------------------------------------------------------------------------


@dataclass
class Tick:
    wall_s: float
    cpu_s: float
    peak_bytes: int = 0  # traced peak above the tick's start (0 when not traced)
    retained_bytes: int = 0  # traced memory at the tick's end above its start


@dataclass
class Phase:
    name: str
    wall_s: float = 0.0
    cpu_s: float = 0.0
    ticks: list[Tick] = field(default_factory=list)
    calls: Calls = field(default_factory=Calls)


@dataclass
class Run:
    documents: int
    traced: bool
    phases: list[Phase]
    manifest_peak_bytes: int = 0  # traced: write_manifest alone over the finished job

    def phase(self, name: str) -> Phase:
        return next(phase for phase in self.phases if phase.name == name)


class World:
    def __init__(self, work_dir: Path) -> None:
        self.clock = ManualClock(NOW)
        self.budgets = InMemoryBudgetStore()
        self.store = InMemoryBatchStore(self.budgets, self.clock)
        self.objects = InMemoryObjectStore()
        self.claude = FakeClaudeBatches(self.clock, instant=False)
        self.ledger = InMemoryLedgerStore(self.budgets)
        self.work_dir = work_dir

    def ingest(self, calls: Calls) -> IngestServices:
        return IngestServices(
            store=CountingPort(self.store, "store", calls),
            objects=CountingPort(self.objects, "objects", calls),
            clock=self.clock,
            default_tenant="acme",
        )

    def scheduler(self, calls: Calls) -> SchedulerServices:
        return SchedulerServices(
            store=CountingPort(self.store, "store", calls),
            objects=CountingPort(self.objects, "objects", calls),
            claude=CountingPort(self.claude, "claude", calls),
            ledger=CountingPort(self.ledger, "ledger", calls),
            budgets=CountingPort(self.budgets, "budgets", calls),
            clock=self.clock,
            work_dir=self.work_dir,
        )

    def all_submitted(self) -> bool:
        return not self.store.pending_units(1)

    def all_finished(self) -> bool:
        return all(
            doc.status is not DocumentStatus.PENDING for doc in self.store.job_documents(JOB)
        ) and not self.store.jobs_to_manifest(1)


def run(documents: int, *, traced: bool) -> Run:
    gc.collect()
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as work:
        world = World(Path(work))
        ingest = Phase("ingest")
        started, cpu = time.perf_counter(), time.process_time()
        services = world.ingest(ingest.calls)
        for n in range(documents):
            key = f"incoming/{JOB}/{n:07d}.txt"
            body = f"Document {n}: the quarterly figures rose by {n % 97} percent.".encode()
            version = world.objects.upload(key, body)
            register_object(services, bucket=world.objects.bucket, key=key, version_id=version, size=len(body))
        ingest.wall_s, ingest.cpu_s = time.perf_counter() - started, time.process_time() - cpu

        submit = ticks_until(world, Phase("submit"), world.all_submitted, traced=traced)
        world.claude.end_all(world.clock.now())
        collect = ticks_until(world, Phase("collect"), world.all_finished, traced=traced)
        finished = Run(documents, traced, [ingest, submit, collect])
        if traced:
            gc.collect()
            tracemalloc.start()
            write_manifest(Path(work) / "manifest.json", JOB, world.store.job_documents(JOB), world.clock.now())
            finished.manifest_peak_bytes = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        return finished


def ticks_until(world: World, phase: Phase, done: Callable[[], bool], *, traced: bool) -> Phase:
    services = world.scheduler(phase.calls)
    for _ in range(MAX_TICKS):
        if traced:
            tracemalloc.start()
        gc.collect()
        before = tracemalloc.get_traced_memory()[0] if traced else 0
        started, cpu = time.perf_counter(), time.process_time()
        run_scheduler(services, deadline=math.inf)
        tick = Tick(time.perf_counter() - started, time.process_time() - cpu)
        if traced:
            current, peak = tracemalloc.get_traced_memory()
            tick.peak_bytes, tick.retained_bytes = peak - before, current - before
            tracemalloc.stop()
        phase.ticks.append(tick)
        phase.wall_s += tick.wall_s
        phase.cpu_s += tick.cpu_s
        world.clock.at += timedelta(minutes=2)
        if done():
            return phase
    raise RuntimeError(f"{phase.name}: not done after {MAX_TICKS} ticks")


# --- the baseline --------------------------------------------------------------------------------------------


@dataclass
class Baseline:
    wall_s: float
    cpu_s: float
    peak_bytes: int


def baseline(documents: int, *, traced: bool) -> Baseline:
    """JSON-serialise N result lines as Claude sends them (kept in memory, as a results file would hold them)."""
    params = {"model": "claude-haiku-5-5", "max_tokens": 1024, "messages": [{"role": "user", "content": "x" * 60}]}
    gc.collect()
    if traced:
        tracemalloc.start()
    started, cpu = time.perf_counter(), time.process_time()
    lines = [
        json.dumps({"custom_id": f"{n:024x}-0", "result": succeeded_answer(f"{n:024x}-0", params)})
        for n in range(documents)
    ]
    result = Baseline(time.perf_counter() - started, time.process_time() - cpu, 0)
    if traced:
        result.peak_bytes = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    del lines
    return result


# --- the projection ------------------------------------------------------------------------------------------


def service_latency(name: str) -> float:
    if name.startswith("objects."):
        return S3_PUT_S if name.startswith("objects.put") else S3_GET_S
    if name.startswith("claude."):
        return CLAUDE_S
    return DYNAMODB_S


@dataclass
class Projection:
    sequential_s: float  # main-thread requests, one after another
    pooled_s: float  # pool-thread requests, PARALLEL at a time
    cpu_s: float  # as measured here (fakes included)
    hot_item_s: float  # ledger transactions: at most one in flight on the job's one rollup item
    parts: defaultdict[str, float]  # wall seconds by port method

    @property
    def wall_s(self) -> float:
        return self.sequential_s + self.pooled_s + self.cpu_s

    @property
    def wall_hot_s(self) -> float:
        return self.sequential_s + max(self.pooled_s, self.hot_item_s) + self.cpu_s

    def biggest(self, count: int = 3) -> str:
        return ", ".join(
            f"{name}{' (pool)' if in_pool else ''} {seconds:.0f}s" for (name, in_pool), seconds in self._top(count)
        )

    def _top(self, count: int) -> list[tuple[tuple[str, bool], float]]:
        ranked = sorted(self.parts.items(), key=lambda item: -item[1])[:count]
        return [((name.removesuffix("@pool"), name.endswith("@pool")), seconds) for name, seconds in ranked]


def project(phase: Phase, scale: float = 1.0) -> Projection:
    sequential = pooled = hot = 0.0
    parts: defaultdict[str, float] = defaultdict(float)
    for (name, in_pool), requests in phase.calls.requests.items():
        seconds = requests * service_latency(name) + phase.calls.transfer[(name, in_pool)] / BANDWIDTH_BPS
        if name == "store.put_units" and requests >= 16 * phase.calls.count[(name, in_pool)]:
            seconds /= PUT_WORKERS
        if in_pool:
            pooled += seconds / PARALLEL
            parts[f"{name}@pool"] += seconds / PARALLEL * scale
        else:
            sequential += seconds
            parts[name] += seconds * scale
        if name == "ledger.record":
            hot += requests * DYNAMODB_S
    return Projection(sequential * scale, pooled * scale, phase.cpu_s * scale, hot * scale, parts)


# --- reporting -----------------------------------------------------------------------------------------------


def mb(value: float) -> str:
    return f"{value / 1e6:8.1f} MB"


def print_run(timed: Run, base: Baseline) -> None:
    n = timed.documents
    print(f"\n== {n:,} documents, untraced: time and port calls")
    base_us = base.cpu_s / n * 1e6
    print(f"baseline: JSON-serialising {n:,} result lines  {base.wall_s:7.2f} s wall  {base_us:7.1f} µs CPU/doc")
    header = f"{'phase':8} {'ticks':>5} {'wall':>9} {'CPU/doc':>10} {'× base':>7} {'calls/doc':>9}"
    print(f"{header}  biggest callers (per doc)")
    for phase in timed.phases:
        per_doc = phase.cpu_s / n
        top = Counter[str]()
        for (name, _), count in phase.calls.count.items():
            top[name] += count
        callers = ", ".join(f"{name} {count / n:.2f}" for name, count in top.most_common(5))
        ticks = len(phase.ticks) or "-"
        print(
            f"{phase.name:8} {ticks:>5} {phase.wall_s:8.2f}s {per_doc * 1e6:8.0f}µs {per_doc * n / base.cpu_s:6.1f}×"
            f" {phase.calls.total() / n:9.2f}  {callers}"
        )
    slowest = max((tick for phase in timed.phases for tick in phase.ticks), key=lambda tick: tick.wall_s)
    print(f"longest single tick: {slowest.wall_s:.2f} s wall, {slowest.cpu_s:.2f} s CPU")


def print_scaling(small: Run, large: Run) -> None:
    print(
        f"\n== scaling, {small.documents:,} -> {large.documents:,} documents (×{large.documents / small.documents:.0f})"
    )
    for name in ("ingest", "submit", "collect"):
        a, b = small.phase(name), large.phase(name)
        per_a, per_b = a.cpu_s / small.documents, b.cpu_s / large.documents
        calls_a, calls_b = a.calls.total() / small.documents, b.calls.total() / large.documents
        print(
            f"{name:8} CPU/doc {per_a * 1e6:7.0f} -> {per_b * 1e6:7.0f} µs ({per_b / per_a:4.2f}×)   "
            f"calls/doc {calls_a:6.2f} -> {calls_b:6.2f}"
        )


def print_memory(runs: list[Run], bases: list[Baseline], target: int) -> None:
    print("\n== memory (tracemalloc, per scheduler tick; traced runs are ~4× slower, so at smaller N)")
    print(
        "peak: above the tick's start, the fakes' growth included (in AWS that is DynamoDB's, S3's and Claude's);"
        " kept: still held after the tick (that growth);\ntransient ≥ peak − kept: a lower bound on the"
        " scheduler's own working memory"
    )
    for traced, base in zip(runs, bases, strict=True):
        n = traced.documents
        print(f"-- {n:,} documents; baseline (N result lines held as JSON strings): {mb(base.peak_bytes)}")
        for phase in traced.phases[1:]:
            largest = max(phase.ticks, key=lambda tick: tick.peak_bytes)
            transient = max(tick.peak_bytes - max(tick.retained_bytes, 0) for tick in phase.ticks)
            ratio = largest.peak_bytes / base.peak_bytes
            print(
                f"{phase.name:8} largest tick: peak {mb(largest.peak_bytes)} ({ratio:4.1f}× base)"
                f"  kept {mb(largest.retained_bytes)}  transient ≥ {mb(transient)}"
            )
        print(f"write_manifest alone over the {n:,} finished documents: peak {mb(traced.manifest_peak_bytes)}")
    small, large = runs[0], runs[-1]
    if large.documents > small.documents:
        print(f"-- growth per document, {small.documents:,} -> {large.documents:,}, extrapolated to {target:,}:")
        for name in ("submit", "collect"):
            peaks = [max(tick.peak_bytes for tick in run.phase(name).ticks) for run in (small, large)]
            slope = (peaks[1] - peaks[0]) / (large.documents - small.documents)
            note = "; the scheduler's own part is bounded by one batch" if name == "submit" else ""
            print(
                f"{name:8} largest tick peak {slope:6.0f} B/doc -> {mb(peaks[1] + slope * (target - large.documents))}"
                f" (the fakes' growth included{note})"
            )
    per_doc = large.manifest_peak_bytes / large.documents
    print(f"manifest {per_doc:6.0f} B/doc, all rows held while it is written -> {mb(per_doc * target)} at {target:,}")


def print_projection(timed: Run, target: int) -> None:
    scale = target / timed.documents
    print(f"\n== AWS projection for {target:,} documents (from the calls of the {timed.documents:,}-document run)")
    print(
        f"assumed: DynamoDB {DYNAMODB_S * 1e3:.0f} ms per request (a Query page of ≤1 MB, a BatchGet of ≤100 keys),"
        f" S3 GET {S3_GET_S * 1e3:.0f} ms, S3 PUT {S3_PUT_S * 1e3:.0f} ms, Claude API {CLAUDE_S * 1e3:.0f} ms,"
        f" {BANDWIDTH_BPS / 1e6:.0f} MB/s for bodies;\n         pool calls {PARALLEL} at a time (PARALLEL),"
        f" put_units {PUT_WORKERS} at a time; CPU as measured here; a tick has {TICK_S} s"
        f" ({LAMBDA_TIMEOUT_S} s − {STOP_MARGIN_S} s margin)"
    )
    print(
        f"{'phase':8} {'sequential':>11} {'pooled':>9} {'CPU':>8} {'wall':>9} {'ticks':>6}"
        f"   {'wall, one ledger txn at a time':>31} {'ticks':>6}"
    )
    total = total_hot = 0.0
    biggest = []
    for phase in timed.phases:
        p = project(phase, scale)
        biggest.append(f"{phase.name:8} {p.biggest()}")
        if phase.name == "ingest":
            print(
                f"{'ingest':8} {p.sequential_s:10.0f}s {p.pooled_s:8.0f}s {p.cpu_s:7.0f}s {p.wall_s:8.0f}s"
                "      -   (IngestFunction, one invocation per object: the sum of their durations)"
            )
            continue
        total += p.wall_s
        total_hot += p.wall_hot_s
        print(
            f"{phase.name:8} {p.sequential_s:10.0f}s {p.pooled_s:8.0f}s {p.cpu_s:7.0f}s {p.wall_s:8.0f}s"
            f" {p.wall_s / TICK_S:6.2f}   {p.wall_hot_s:30.0f}s {p.wall_hot_s / TICK_S:6.2f}"
        )
    print("where the time goes (projected wall seconds by port call):", *biggest, sep="\n  ")
    registrations = timed.phase("ingest").calls.count[("store.register_document", False)] * scale
    print(
        f"ingest: every registration also updates the job's one JobItem (a plain update, not a transaction:"
        f" DynamoDB takes ~1,000 writes/s on one item), so {registrations:,.0f} registrations take"
        f" ≥ {registrations / 1000:.0f} s however many IngestFunctions run at once"
    )
    print(
        f"scheduler total: {total:.0f} s = {math.ceil(total / TICK_S)} ticks of {TICK_S} s"
        f" ({math.ceil(total_hot / TICK_S)} if every ledger transaction waits for the one rollup item),"
        " plus Claude's own processing time between submission and collection"
    )
    per_batch = project(timed.phase("submit"), MAX_BATCH_REQUESTS / timed.documents)
    print(
        f"one {MAX_BATCH_REQUESTS:,}-request batch is planned, packed and sent without a deadline check:"
        f" ~{per_batch.wall_s:.0f} s, against the {STOP_MARGIN_S} s stop margin"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--documents", type=int, default=DEFAULT_DOCUMENTS)
    parser.add_argument("--memory-documents", type=int, nargs="*", default=list(MEMORY_DOCUMENTS))
    parser.add_argument("--quick", action="store_true", help="a short run: every figure once, few repetitions")
    args = parser.parse_args()
    if args.quick:
        args.documents, args.memory_documents = QUICK_DOCUMENTS, [QUICK_DOCUMENTS]
    logging.disable(logging.INFO)  # the scheduler logs every batch and document at info
    started = time.perf_counter()
    print(f"PARALLEL={PARALLEL}, MAX_BATCH_REQUESTS={MAX_BATCH_REQUESTS:,}, CHUNK={CHUNK}; {os.cpu_count()} CPUs")

    small = run(min(SCALING_DOCUMENTS, args.documents), traced=False) if args.documents > SCALING_DOCUMENTS else None
    timed = run(args.documents, traced=False)
    print_run(timed, baseline(args.documents, traced=False))
    if small is not None:
        print_scaling(small, timed)

    sizes = sorted({min(size, args.documents) for size in args.memory_documents})
    if sizes:
        traced = [run(size, traced=True) for size in sizes]
        print_memory(traced, [baseline(size, traced=True) for size in sizes], args.documents)

    print_projection(timed, DEFAULT_DOCUMENTS)
    print(f"\n(bench ran {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
