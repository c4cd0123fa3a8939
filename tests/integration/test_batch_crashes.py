"""Failure injection: the batch scheduler is killed after each call it makes, then runs again.

A clean run of a small job (short English and Korean texts, a text split into parts and combined,
a .jsonl of ready requests with one Claude rejects, a file that is not a document, and one request
that comes back expired) is recorded call by call; then the same job is replayed with the process
dying right after one call (its write done, nothing after it), once per step. Every replay must end
like the clean run: one result or error file per input, each request in exactly one batch (the
expired one in two), each succeeded result charged once at its batch price, no budget hold left.

The steps are the calls that change something (a store write, an upload, the ledger, Claude's
create): a crash after a read leaves the same stored state as a crash after the write before it.
Of a run of the same write (ten units packed, ten results recorded) the first and the last are
replayed; the ones between leave the same kind of state.
"""

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from costgate.batch import input as batch_input
from costgate.batch.ingest import IngestOutcome
from costgate_local.simulator import ManualClock, Simulator, SimulatorOptions
from costgate_local.stack.aws import LocalAwsEndpoints, environment
from tests.integration.batch_world import JOB, START, Crasher, World, check_world

WRITES = frozenset(
    {
        "store.create_batch",
        "store.pack_unit",
        "store.reserve_batch",
        "store.set_batch_state",
        "store.finish_unit",
        "store.add_unit",
        "store.clear_check",
        "store.finish_document",
        "store.manifest_written",
        "objects.put",
        "objects.put_file",
        "ledger.record",
        "claude.create",
    }
)
PART_BYTES = 3_000  # small parts, so the long text needs four requests and a combining one


@pytest.fixture(autouse=True)
def aws_environment(local_aws: LocalAwsEndpoints) -> Iterator[None]:
    with environment(
        {**local_aws.environ(), "POWERTOOLS_METRICS_DISABLED": "true", "POWERTOOLS_SERVICE_NAME": "costgate"}
    ):
        yield


@pytest.fixture
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batch_input, "MAX_PART_BYTES", PART_BYTES)


@pytest.fixture
def sim_clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def sim(sim_clock: ManualClock) -> Iterator[Simulator]:
    with Simulator(SimulatorOptions(clock=sim_clock, seed=7)) as simulator:
        yield simulator


def new_world(local_aws: LocalAwsEndpoints, sim: Simulator, clock: ManualClock, tmp_path: Path) -> World:
    work = tmp_path / f"work-{len(list(tmp_path.iterdir()))}"
    work.mkdir()
    world = World(local_aws, sim, clock, work)
    paragraph = "The quarterly review covered revenue, hiring and the data centre move. " * 12
    requests = [
        {
            "custom_id": "ok-1",
            "params": {
                "model": "claude-haiku-5-5",
                "max_tokens": 64,
                "messages": [{"role": "user", "content": "Name three prime numbers."}],
            },
        },
        {
            "custom_id": "bad-temperature",
            "params": {
                "model": "claude-haiku-5-5",
                "max_tokens": 64,
                "temperature": 3.0,
                "messages": [{"role": "user", "content": "Hello"}],
            },
        },
    ]
    uploads = [
        ("notes.txt", b"Team notes: ship the billing export on Friday; Mina owns the migration.", ".summary.md"),
        ("회의록.md", "# 주간 회의\n\n결제 내보내기는 금요일에 배포합니다. 담당: 민아.".encode(), ".summary.md"),
        ("long.txt", "\n\n".join([paragraph] * 10).encode(), ".summary.md"),
        ("requests.jsonl", "\n".join(json.dumps(r) for r in requests).encode(), ".results.jsonl"),
        ("scan.pdf", b"%PDF-1.7 not a text", ".error.json"),
    ]
    for name, body, suffix in uploads:
        outcome = world.upload(name, body, f"results/{JOB}/{name}{suffix}")
        assert outcome is (IngestOutcome.REJECTED if suffix == ".error.json" else IngestOutcome.REGISTERED)
    return world


def test_clean_run_settles_with_every_invariant(
    local_aws: LocalAwsEndpoints, sim: Simulator, sim_clock: ManualClock, tmp_path: Path, small_parts: None
) -> None:
    world = new_world(local_aws, sim, sim_clock, tmp_path)

    ticks = world.run_to_end()

    check_world(world)
    long_units = [u for d in world.store.job_documents(JOB) if d.name == "long.txt" for u in world.store.units_of(d)]
    assert [u.kind.value for u in long_units] == ["part"] * 4 + ["combine"]
    assert ticks <= 12


def test_a_crash_after_any_call_loses_nothing_and_charges_nothing_twice(
    local_aws: LocalAwsEndpoints, sim: Simulator, sim_clock: ManualClock, tmp_path: Path, small_parts: None
) -> None:
    counted = Crasher()
    clean = new_world(local_aws, sim, sim_clock, tmp_path)
    for _ in range(30):
        clean.tick(counted)
        if clean.settled():
            break
    calls = list(counted.calls)
    assert set(calls) >= WRITES  # the job really goes through every step
    steps = [
        at
        for at, call in enumerate(calls, start=1)
        if call in WRITES and (at in (1, len(calls)) or call not in (calls[at - 2], calls[at]))
    ]

    failures: list[str] = []
    for at in steps:
        world = new_world(local_aws, sim, sim_clock, tmp_path)
        crasher = Crasher(at)
        for _ in range(30):
            if not world.tick(crasher):
                break
        try:
            world.run_to_end()
            check_world(world)
        except AssertionError as error:
            failures.append(f"crash after call {at} ({crasher.calls[-1] if crasher.calls else '?'}): {error}")
    assert not failures, "\n".join(failures[:10])
