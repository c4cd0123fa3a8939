"""The runtime as Lambda starts it: the exec wrapper, a process of its own, the handler named by _HANDLER."""

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from costgate_local.stack.runtime_api import LocalRuntimeApi, ResponseEnd
from tests.runtime.conftest import WAIT_S, read_all

REPO = Path(__file__).resolve().parents[2]
WRAPPER = REPO / "shared" / "costgate" / "runtime" / "exec-wrapper"

HANDLER = """
import os
import time
from costgate.runtime.loop import streaming
from costgate.runtime.prelude import HttpPrelude

STARTED = time.time()

@streaming
def handler(event, context, *, response_stream):
    response_stream.start(HttpPrelude(200, {"content-type": "text/plain"}))
    response_stream.write(os.environ.get("_X_AMZN_TRACE_ID", "-").encode())
    response_stream.write(b"|" + event["word"].encode())
"""


def _start(api: LocalRuntimeApi, task_root: Path, **extra: str) -> subprocess.Popen[bytes]:
    environ = {
        "PATH": os.environ.get("PATH", ""),
        "AWS_LAMBDA_RUNTIME_API": api.address,
        "_HANDLER": "app.handler",
        "LAMBDA_TASK_ROOT": str(task_root),
        "PYTHONPATH": str(REPO / "shared"),  # the SharedLayer's /opt/python, locally
        "AWS_LAMBDA_FUNCTION_NAME": "ApiFunction",
        **extra,
    }
    # As Lambda calls a wrapper: the interpreter, then the managed runtime's own arguments (ignored).
    return subprocess.Popen([str(WRAPPER), sys.executable, "/var/runtime/bootstrap.py"], env=environ, cwd=task_root)


@pytest.fixture
def task_root(tmp_path: Path) -> Path:
    (tmp_path / "app.py").write_text(HANDLER, encoding="utf-8")
    return tmp_path


@pytest.fixture
def api() -> Iterator[LocalRuntimeApi]:
    with LocalRuntimeApi() as local:
        yield local


def _stop(process: subprocess.Popen[bytes], api: LocalRuntimeApi) -> int:
    api.close()  # the loop's next /next fails and the runtime exits
    try:
        return process.wait(timeout=WAIT_S)
    finally:
        if process.poll() is None:
            process.kill()


def test_the_wrapper_runs_the_streaming_handler_the_function_names(api: LocalRuntimeApi, task_root: Path) -> None:
    process = _start(api, task_root)
    reader, body, _end = read_all(api.invoke({"word": "안녕"}, trace_id="Root=1-a;Sampled=1"))
    assert reader.prelude is not None
    assert reader.prelude.headers == {"content-type": "text/plain"}
    assert body.decode() == "Root=1-a;Sampled=1|안녕"
    # the second invocation runs in the same process (a warm start) without the first one's trace header
    assert read_all(api.invoke({"word": "again"}))[1] == b"-|again"
    assert _stop(process, api) == 0


def test_an_import_error_is_an_init_error(api: LocalRuntimeApi, task_root: Path) -> None:
    (task_root / "app.py").write_text("raise ImportError('no numpy for this architecture')\n", encoding="utf-8")
    process = _start(api, task_root)
    assert process.wait(timeout=WAIT_S) == 1
    assert api.init_error is not None
    error_type, body = api.init_error
    assert error_type == "Runtime.ImportModuleError"
    assert "no numpy for this architecture" in body["errorMessage"]


def test_a_missing_handler_is_an_init_error(api: LocalRuntimeApi, task_root: Path) -> None:
    process = _start(api, task_root, _HANDLER="app.no_such_function")
    assert process.wait(timeout=WAIT_S) == 1
    assert api.init_error is not None
    assert api.init_error[0] == "Runtime.HandlerNotFound"


def test_snapstart_restores_before_the_first_invocation(task_root: Path) -> None:
    with LocalRuntimeApi(snap_start=True) as api:
        process = _start(api, task_root, AWS_LAMBDA_INITIALIZATION_TYPE="snap-start")
        assert api.restored.wait(WAIT_S)
        assert read_all(api.invoke({"word": "restored"}))[1] == b"-|restored"
        assert _stop(process, api) == 0


def test_a_handler_error_is_reported_and_the_process_lives_on(api: LocalRuntimeApi, task_root: Path) -> None:
    process = _start(api, task_root)
    # event["word"] fails after the prelude and one chunk: the KeyError goes into the trailers
    _, body, end = read_all(api.invoke({"no": "word"}))
    assert body == b"-"
    assert isinstance(end, ResponseEnd)
    assert end.trailers["lambda-runtime-function-error-type"] == "KeyError"
    assert read_all(api.invoke({"word": "next"}))[1] == b"-|next"
    assert _stop(process, api) == 0
