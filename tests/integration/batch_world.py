"""A whole batch deployment in one process: moto (table and bucket from template.yaml), the Claude API
simulator on a manual clock, and the real stores, for the batch flow's integration tests.

`Crasher` wraps every port the scheduler uses and kills the process (raises `SimulatedCrash`, which
no production `except` catches) after its n-th call; every later call dies too, like a process that
is gone. `check_world` asserts what must hold once the flow has finished, whatever crashed on the way.
"""

import json
import threading
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3

from costgate.accounting.budgets import Budget, BudgetPeriod, Hold, tenant_scope
from costgate.batch.ingest import IngestOutcome, IngestServices, register_object
from costgate.batch.model import DocumentStatus
from costgate.batch.scheduler import SchedulerServices, run_scheduler
from costgate.claude.batches import HttpClaudeBatches
from costgate.dal.batch.store import DynamoBatchStore
from costgate.dal.budgets import DynamoBudgetStore
from costgate.dal.ledger import DynamoLedgerStore
from costgate.dal.objects import S3ObjectStore
from costgate.dal.table import bind_table
from costgate.pricing.cost import price_usage
from costgate.pricing.usage import normalise_usage
from costgate_local.simulator import ManualClock, Simulator
from costgate_local.stack.aws import LocalAwsEndpoints, create_bucket, create_table

START = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
TENANT = "acme"
JOB = "weekly"
BUDGET_USD = Decimal(5)


class SimulatedCrash(BaseException):
    """The scheduler's process died here."""


class Crasher:
    """Counts calls across every wrapped port; the call numbered `at` runs, then the process dies."""

    def __init__(self, at: int | None = None) -> None:
        self.at = at
        self.calls: list[str] = []
        self.dead = False
        self._lock = threading.Lock()

    def wrap(self, target: Any, name: str) -> Any:
        return _Proxy(target, name, self)

    def called(self, name: str) -> None:
        with self._lock:
            if self.dead:
                raise SimulatedCrash(f"call after the crash: {name}")
            self.calls.append(name)
            if self.at is not None and len(self.calls) >= self.at:
                self.dead = True


class _Proxy:
    def __init__(self, target: Any, name: str, crasher: Crasher) -> None:
        self._target = target
        self._name = name
        self._crasher = crasher

    def __getattr__(self, attr: str) -> Any:
        value = getattr(self._target, attr)
        if attr.startswith("_") or not callable(value):
            return value

        def call(*args: Any, **kwargs: Any) -> Any:
            name = f"{self._name}.{attr}"
            self._crasher.called(name)
            result = value(*args, **kwargs)
            if self._crasher.dead:
                raise SimulatedCrash(f"crashed after {name}")
            return result

        return call


class ExpireOnce:
    """Claude's results, except that the first succeeded line of the first batch read comes back
    `expired` (every time that batch is read), as when Claude could not finish a request in 24 h."""

    def __init__(self, claude: HttpClaudeBatches) -> None:
        self._claude = claude
        self.target: tuple[str, str] | None = None  # (remote id, custom id)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._claude, attr)

    def results(self, remote_id: str) -> Iterator[Mapping[str, Any]]:
        for line in self._claude.results(remote_id):
            if self.target is None and line["result"]["type"] == "succeeded":
                self.target = (remote_id, str(line["custom_id"]))
            if self.target == (remote_id, line["custom_id"]):
                yield {"custom_id": line["custom_id"], "result": {"type": "expired"}}
            else:
                yield line


@dataclass
class World:
    endpoints: LocalAwsEndpoints
    sim: Simulator
    clock: ManualClock
    work_dir: Path
    table: str = field(default_factory=lambda: f"costgate-batch-{uuid.uuid4().hex[:10]}")
    bucket: str = field(default_factory=lambda: f"costgate-docs-{uuid.uuid4().hex[:10]}")
    api_key: str = field(default_factory=lambda: f"sk-ws-{uuid.uuid4().hex[:10]}")
    budget: Budget = field(default_factory=lambda: Budget(tenant_scope(TENANT), BudgetPeriod.DAY, BUDGET_USD))
    inputs: dict[str, str] = field(default_factory=dict)  # name -> expected result key

    def __post_init__(self) -> None:
        create_table(self.endpoints, self.table)
        bind_table(self.table)
        create_bucket(self.endpoints, self.bucket)
        self.store = DynamoBatchStore()
        self.objects = S3ObjectStore(self.bucket)
        self.claude = ExpireOnce(HttpClaudeBatches(self.sim.base_url, lambda: self.api_key))
        self.ledger = DynamoLedgerStore()
        self.budgets = DynamoBudgetStore(clock=self.clock)
        self.budgets.put_definition(self.budget)
        self.s3 = boto3.client("s3", endpoint_url=self.endpoints.endpoint_url)
        self.started = self.clock.now()

    def upload(self, name: str, body: bytes, expected_result: str | None) -> IngestOutcome:
        key = f"incoming/{JOB}/{name}"
        put = self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)
        if expected_result is not None:
            self.inputs[name] = expected_result
        services = IngestServices(self.store, self.objects, self.clock, default_tenant=TENANT)
        return register_object(services, bucket=self.bucket, key=key, version_id=put["VersionId"], size=len(body))

    def services(self, crasher: Crasher | None = None) -> SchedulerServices:
        def port(target: Any, name: str) -> Any:
            return crasher.wrap(target, name) if crasher else target

        return SchedulerServices(
            store=port(self.store, "store"),
            objects=port(self.objects, "objects"),
            claude=port(self.claude, "claude"),
            ledger=port(self.ledger, "ledger"),
            budgets=port(self.budgets, "budgets"),
            clock=self.clock,
            work_dir=self.work_dir,
        )

    def tick(self, crasher: Crasher | None = None) -> bool:
        """One scheduler tick; False if it crashed."""
        try:
            run_scheduler(self.services(crasher), deadline=float("inf"))
        except SimulatedCrash:
            return False
        finally:
            self.clock.advance(timedelta(seconds=5))
        return True

    def settled(self) -> bool:
        documents = list(self.store.job_documents(JOB))
        return (
            all(document.status is not DocumentStatus.PENDING for document in documents)
            and not self.store.open_batches()
            and not self.store.jobs_to_manifest(10)
        )

    def run_to_end(self, max_ticks: int = 30) -> int:
        for ticks in range(1, max_ticks + 1):
            self.tick()
            if self.settled():
                return ticks
        raise AssertionError(f"the flow did not settle in {max_ticks} ticks")

    def result_keys(self) -> set[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=f"results/{JOB}/")
        return {item["Key"] for page in pages for item in page.get("Contents", [])}

    def read_json(self, key: str) -> Any:
        return json.loads(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def claude_results(self) -> Iterator[tuple[str, datetime, Mapping[str, Any]]]:
        """Every result line of every batch this workspace created: (remote id, ended_at, line)."""
        for remote in self.claude.created_since(START - timedelta(days=1)):
            if remote.ended and remote.ended_at is not None:
                for line in self.claude.results(remote.id):
                    yield remote.id, remote.ended_at, line


def check_world(world: World) -> None:
    """What must hold when the flow has settled, however often it crashed on the way."""
    # One result or error file per input, and the manifest; nothing else.
    assert world.result_keys() == set(world.inputs.values()) | {f"results/{JOB}/_manifest.json"}
    manifest = world.read_json(f"results/{JOB}/_manifest.json")
    assert {row["file"]: row["result"] for row in manifest["files"]} == world.inputs
    assert manifest["status"]["pending"] == 0

    # Claude saw each request in exactly one batch, except the one that came back expired (twice).
    seen = Counter(str(line["custom_id"]) for _, _, line in world.claude_results())
    assert world.claude.target is not None
    expired = world.claude.target[1]
    assert {custom_id: n for custom_id, n in seen.items() if n != 1} == {expired: 2}

    # The ledger charged each succeeded result once, at the batch price of its own usage.
    billed = [
        (ended_at, line["result"]["message"])
        for remote_id, ended_at, line in world.claude_results()
        if line["result"]["type"] == "succeeded" and (remote_id, line["custom_id"]) != world.claude.target
    ]
    expected = sum((price_usage(m["model"], normalise_usage(m["usage"]), at).total_usd for at, m in billed), Decimal(0))
    day = world.started.date()
    rollups = list(world.ledger.rollups(day - timedelta(days=1), day + timedelta(days=2)))
    assert sum(r.requests for r in rollups) == len(billed)
    assert sum((r.cost_usd for r in rollups), Decimal(0)) == expected
    assert Decimal(manifest["totals"]["cost_usd"]) == expected

    # No budget hold is left behind: what is committed is exactly what was spent.
    window = world.budget.window(world.started)
    remaining = world.budgets.remaining([Hold(world.budget, window, Decimal(0))])
    assert remaining == BUDGET_USD - expected
