"""Execution environments of the local front: a process each, as on Lambda, so concurrent invocations
cannot see each other's events; in-process environments (for tests and benches) can, and this shows it."""

import importlib.util
import json
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from costgate.runtime.prelude import PreludeReader
from costgate_local.stack.front import ApiFront, LocalFunction, _route, rest_event
from costgate_local.stack.runtime_api import FunctionError, PendingInvocation, ProcessSpec, ResponseChunk

REPO = Path(__file__).resolve().parents[2]
WRAPPER = REPO / "shared" / "costgate" / "runtime" / "exec-wrapper"
WAIT_S = 60.0
CONCURRENT = 4
ROUTE = _route("GET", "/echo", streaming=True, timeout_s=WAIT_S)

# A Powertools resolver that reads the current event twice, half a second apart: long enough for a
# concurrent invocation in the same process to replace the event Powertools keeps on its router class.
ECHO = """
import time
from aws_lambda_powertools.event_handler import APIGatewayRestResolver

app = APIGatewayRestResolver()


@app.get("/echo")
def echo():
    asked = app.current_event.headers["x-tag"]
    time.sleep(0.5)
    return {"asked": asked, "seen": app.current_event.headers["x-tag"]}


def handler(event, context):
    return app.resolve(event, context)
"""

CRASH = """
import os


def handler(event, context):
    os._exit(3)
"""


@pytest.fixture
def task_root(tmp_path: Path) -> Path:
    (tmp_path / "echo.py").write_text(ECHO, encoding="utf-8")
    (tmp_path / "crash.py").write_text(CRASH, encoding="utf-8")
    return tmp_path


def _function(task_root: Path, module: str, *, in_process: bool) -> LocalFunction:
    process = ProcessSpec(wrapper=str(WRAPPER), handler=f"{module}.handler", task_root=str(task_root), environ={})
    loaded = [_load(task_root / f"{module}.py", f"env_test_{module}_{n}") for n in range(CONCURRENT + 1)]
    return LocalFunction(
        logical_id="EchoFunction",
        handler=loaded[0].handler,
        memory_mb=128,
        timeout_s=WAIT_S,
        environment={},
        routes=(ROUTE,),
        load=lambda number: loaded[number].handler,
        process=None if in_process else process,
    )


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _event(tag: str) -> dict[str, Any]:
    request = Request(EnvironBuilder(path="/echo", method="GET", headers=[("x-tag", tag)]).get_environ())
    return rest_event(request, ROUTE, {})


def _answer(pending: PendingInvocation) -> tuple[int, bytes] | FunctionError:
    reader, body = PreludeReader(), b""
    while True:
        item = pending.get(WAIT_S)
        if isinstance(item, FunctionError):
            return item
        if not isinstance(item, ResponseChunk):
            assert reader.prelude is not None
            return reader.prelude.status_code, body
        body += reader.feed(item.data)


def _concurrently(function: LocalFunction) -> list[dict[str, str]]:
    with ThreadPoolExecutor(CONCURRENT) as pool:
        pendings = [function.invoke_stream(_event(str(n))) for n in range(CONCURRENT)]
        answers = list(pool.map(_answer, pendings))
    bodies = []
    for answer in answers:
        assert not isinstance(answer, FunctionError), answer
        status, body = answer
        assert status == 200
        bodies.append(json.loads(body))
    return bodies


@pytest.fixture
def functions() -> Iterator[list[LocalFunction]]:
    made: list[LocalFunction] = []
    yield made
    for function in made:
        function.close()


def test_concurrent_invocations_in_process_environments_each_see_their_own_event(
    task_root: Path, functions: list[LocalFunction]
) -> None:
    # Given a function whose environments are processes, as the local stack runs ApiFunction
    function = _function(task_root, "echo", in_process=False)
    functions.append(function)

    # When four requests with different tags run at once
    bodies = _concurrently(function)

    # Then each invocation saw its own event from start to end, in an environment of its own
    assert [(body["asked"], body["seen"]) for body in bodies] == [(str(n), str(n)) for n in range(CONCURRENT)]


def test_in_process_environments_share_powertools_current_event(
    task_root: Path, functions: list[LocalFunction]
) -> None:
    # Given the same function with its environments as module copies in this process (tests and benches only)
    function = _function(task_root, "echo", in_process=True)
    functions.append(function)

    # When four requests with different tags run at once
    bodies = _concurrently(function)

    # Then some saw another request's event: why the local stack runs each environment as a process
    assert any(body["asked"] != body["seen"] for body in bodies)


def test_an_environment_whose_process_dies_fails_its_invocation_and_the_front_answers_502(
    task_root: Path, functions: list[LocalFunction]
) -> None:
    # Given a function whose handler kills its own process
    function = _function(task_root, "crash", in_process=False)
    functions.append(function)

    # When it is invoked through the front
    started: list[str] = []
    environ = EnvironBuilder(path="/echo", headers=[("x-tag", "1")]).get_environ()
    response = ApiFront(function)(environ, lambda status, headers: started.append(status))

    # Then the front answers as API Gateway does for a function error before the response: 502
    assert started == ["502 BAD GATEWAY"]
    assert json.loads(b"".join(response)) == {"message": "Internal server error"}
