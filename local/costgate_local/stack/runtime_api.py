"""A stand-in for Lambda's Runtime API, on 127.0.0.1: the side of Lambda a runtime talks to.

One `LocalRuntimeApi` is one execution environment's Runtime API (version 2018-06-01): `invoke` queues
an event for the runtime's next `GET /runtime/invocation/next` and returns a `PendingInvocation`, which
yields the response as the runtime writes it: body chunks of a streamed (or buffered) response, then
its end with any trailers, or the error the runtime posted. h11 parses the runtime's requests, because
a streamed response is a chunked body that may end with trailers (werkzeug's server drops them).

`RuntimeEnvironment` pairs one with costgate's runtime loop in a thread, as Lambda pairs an
environment with its runtime process: the local API Gateway front invokes functions through it, so the
bytes it relays are the ones the runtime writes on Lambda.
"""

import contextlib
import json
import queue
import socket
import socketserver
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import h11

from costgate.errors import PreludeError
from costgate.runtime.api import RESPONSE_MODE_HEADER, RuntimeApiClient
from costgate.runtime.loop import FunctionInfo, Handler, as_streaming, run
from costgate.runtime.prelude import PreludeReader
from costgate.runtime.stream import ResponseStream

HOST = "127.0.0.1"
PREFIX = "/2018-06-01/runtime"
_READ = 64 * 1024
_POLL_S = 0.05


@dataclass(frozen=True)
class ResponseChunk:
    data: bytes


@dataclass(frozen=True)
class ResponseEnd:
    """The response is complete; `trailers` (lower-case names) report an error after the first byte."""

    trailers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FunctionError:
    """The runtime posted to /error instead of answering (before the first byte of a response)."""

    error_type: str
    body: Any


type ResponseEvent = ResponseChunk | ResponseEnd | FunctionError


class PendingInvocation:
    """An invocation handed to the runtime; `get` returns its response events in order."""

    def __init__(self, event: bytes, deadline_ms: int, trace_id: str | None) -> None:
        self.request_id = str(uuid.uuid4())
        self.event = event
        self.deadline_ms = deadline_ms
        self.trace_id = trace_id
        self.response_mode: str | None = None  # "streaming" or "buffered" once the response starts
        self.content_type: str | None = None
        self.answered = threading.Event()  # a response or an error has started
        self.finished = threading.Event()  # the runtime asked for its next event: the invocation is over
        self._events: queue.Queue[ResponseEvent] = queue.Queue()
        self._abandoned = False
        self._callbacks: list[Callable[[], None]] = []
        self._on_abandon: Callable[[], None] | None = None
        self._lock = threading.Lock()

    def get(self, timeout_s: float) -> ResponseEvent:
        """The next response event; TimeoutError if none comes within `timeout_s`."""
        try:
            return self._events.get(timeout=timeout_s)
        except queue.Empty:
            raise TimeoutError(f"no response event within {timeout_s} s") from None

    def add_done_callback(self, callback: Callable[[], None]) -> None:
        """Call `callback` once the invocation is over (at once if it already is)."""
        with self._lock:
            if not self.finished.is_set():
                self._callbacks.append(callback)
                return
        callback()

    def _finish(self) -> None:
        with self._lock:
            self.finished.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    def abandon(self) -> None:
        """The caller stopped reading (its client went away): later chunks are dropped, and the runtime's
        response connection is closed, so its writes fail as they do once Lambda's caller has gone."""
        with self._lock:
            self._abandoned = True
            on_abandon, self._on_abandon = self._on_abandon, None
        if on_abandon is not None:
            on_abandon()

    def _while_streaming(self, on_abandon: Callable[[], None] | None) -> None:
        """Register what closes the runtime's response connection (None once the response has ended)."""
        with self._lock:
            if on_abandon is not None and self._abandoned:
                call_now = True
            else:
                call_now, self._on_abandon = False, on_abandon
        if call_now and on_abandon is not None:
            on_abandon()

    def _fail(self, error: "FunctionError") -> None:
        if not self.answered.is_set():
            self.answered.set()
            self._events.put(error)
        elif not self.finished.is_set():
            self._events.put(ResponseEnd({"lambda-runtime-function-error-type": error.error_type}))
        self._finish()

    def _put(self, item: ResponseEvent) -> None:
        if not self._abandoned or not isinstance(item, ResponseChunk):
            self._events.put(item)


class LocalRuntimeApi:
    """One execution environment's Runtime API on 127.0.0.1; `address` is its AWS_LAMBDA_RUNTIME_API."""

    def __init__(
        self,
        *,
        function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:local",
        timeout_s: float = 900.0,
        snap_start: bool = False,
        keep_alive: bool = True,
    ) -> None:
        self.function_arn = function_arn
        self.timeout_s = timeout_s
        self.snap_start = snap_start
        # False: drop every connection after its answer, unannounced, as an idle one may be while frozen.
        self.keep_alive = keep_alive
        self.init_error: tuple[str, Any] | None = None
        self.init_failed = threading.Event()
        self.restored = threading.Event()
        self._queue: queue.Queue[PendingInvocation] = queue.Queue()
        self._by_id: dict[str, PendingInvocation] = {}
        self._current: PendingInvocation | None = None
        self._failure: FunctionError | None = None
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._server = _Server((HOST, 0), _Connection, self)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(_POLL_S,), daemon=True)

    @property
    def address(self) -> str:
        return f"{HOST}:{self._server.server_address[1]}"

    def start(self) -> Self:
        self._thread.start()
        return self

    def close(self) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def invoke(self, event: Mapping[str, Any] | bytes, *, trace_id: str | None = None) -> PendingInvocation:
        body = event if isinstance(event, bytes) else json.dumps(event).encode("utf-8")
        pending = PendingInvocation(body, int((time.time() + self.timeout_s) * 1000), trace_id)
        with self._lock:
            self._by_id[pending.request_id] = pending
            failure = self._failure
        if failure is not None:
            pending._fail(failure)
            return pending
        self._queue.put(pending)
        return pending

    def fail_all(self, error: FunctionError) -> None:
        """The environment is gone (its init failed, its runtime exited): every invocation it holds fails
        with `error`, as Lambda answers an invocation whose runtime died, and so does every later one."""
        with self._lock:
            self._failure = error
            current, self._current = self._current, None
        waiting = [current] if current is not None else []
        while True:
            try:
                waiting.append(self._queue.get_nowait())
            except queue.Empty:
                break
        for pending in waiting:
            pending._fail(error)

    # --- the runtime's side -------------------------------------------------------------------

    def _next(self) -> PendingInvocation | None:
        with self._lock:
            previous, self._current = self._current, None
        if previous is not None:
            previous._finish()
        while not self._closing.is_set():
            try:
                pending = self._queue.get(timeout=_POLL_S)
            except queue.Empty:
                continue
            with self._lock:
                self._current = pending
            return pending
        return None

    def _lookup(self, request_id: str) -> PendingInvocation | None:
        with self._lock:
            return self._by_id.get(request_id)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type[socketserver.BaseRequestHandler], api: LocalRuntimeApi):
        self.api = api
        super().__init__(address, handler)


class _Connection(socketserver.BaseRequestHandler):
    """One connection from the runtime: HTTP/1.1 requests parsed by h11, answered in turn."""

    server: _Server

    def handle(self) -> None:
        self.connection = h11.Connection(h11.SERVER)
        sock: socket.socket = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            try:
                event = self._receive()
                if not isinstance(event, h11.Request):
                    return
                self._route(event)
            except (OSError, h11.ProtocolError):  # ConnectionError is an OSError: a dropped connection ends here
                return
            if not self.server.api.keep_alive:
                return
            if self.connection.our_state is h11.MUST_CLOSE or self.connection.their_state is h11.MUST_CLOSE:
                return
            try:
                self.connection.start_next_cycle()
            except h11.LocalProtocolError:
                return

    def _receive(self) -> Any:
        while True:
            event = self.connection.next_event()
            if event is not h11.NEED_DATA:
                return event
            data = self.request.recv(_READ)
            self.connection.receive_data(data)
            if not data and self.connection.their_state is not h11.DONE:
                return h11.ConnectionClosed()

    def _body(self, on_data: Callable[[bytes], None] | None = None) -> tuple[bytes, dict[str, str]]:
        """Read the request body; each piece goes to `on_data` as it arrives. Returns (body, trailers)."""
        parts: list[bytes] = []
        while True:
            event = self._receive()
            if isinstance(event, h11.Data):
                if on_data is not None:
                    on_data(bytes(event.data))
                else:
                    parts.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return b"".join(parts), {k.decode().lower(): v.decode("latin-1") for k, v in event.headers}
            else:
                raise ConnectionError("the runtime closed the connection in the middle of a request")

    def _route(self, request: h11.Request) -> None:
        api = self.server.api
        method, path = request.method.decode(), request.target.decode()
        headers = {k.decode().lower(): v.decode("latin-1") for k, v in request.headers}
        if method == "GET":
            self._body()  # none, but h11 must see its end before the next request
        if method == "GET" and path == f"{PREFIX}/invocation/next":
            pending = api._next()
            if pending is None:
                self._answer(503, {"errorMessage": "the environment is shutting down"})
                return
            extra = {
                "Lambda-Runtime-Aws-Request-Id": pending.request_id,
                "Lambda-Runtime-Deadline-Ms": str(pending.deadline_ms),
                "Lambda-Runtime-Invoked-Function-Arn": api.function_arn,
                **({"Lambda-Runtime-Trace-Id": pending.trace_id} if pending.trace_id else {}),
            }
            self._send(200, pending.event, "application/json", extra)
        elif method == "POST" and path.startswith(f"{PREFIX}/invocation/"):
            request_id, _, action = path.removeprefix(f"{PREFIX}/invocation/").partition("/")
            pending = api._lookup(request_id)
            if pending is None or action not in ("response", "error"):
                self._body()
                self._answer(404 if pending is None else 400, {"errorMessage": f"no such invocation: {path}"})
            elif pending.answered.is_set():
                self._body()
                self._answer(400, {"errorMessage": f"invocation {request_id} was already answered"})
            elif action == "error":
                pending.answered.set()
                body, _ = self._body()
                pending._put(FunctionError(headers.get("lambda-runtime-function-error-type", ""), _json(body)))
                self._answer(202, {"status": "OK"})
            else:
                self._response(pending, headers)
        elif method == "POST" and path == f"{PREFIX}/init/error":
            body, _ = self._body()
            api.init_error = (headers.get("lambda-runtime-function-error-type", ""), _json(body))
            api.init_failed.set()
            self._answer(202, {"status": "OK"})
            api.fail_all(FunctionError(api.init_error[0], api.init_error[1]))
        elif method == "GET" and path == f"{PREFIX}/restore/next" and api.snap_start:
            api.restored.set()
            self._answer(200, {})
        else:
            if method != "GET":
                self._body()
            self._answer(404, {"errorMessage": f"unknown Runtime API call {method} {path}"})

    def _response(self, pending: PendingInvocation, headers: Mapping[str, str]) -> None:
        pending.answered.set()
        pending.content_type = headers.get("content-type")
        streaming = headers.get(RESPONSE_MODE_HEADER.lower()) == "streaming"
        pending.response_mode = "streaming" if streaming else "buffered"
        if streaming:
            pending._while_streaming(self._drop_connection)
            try:
                _, trailers = self._body(lambda data: pending._put(ResponseChunk(data)))
            except ConnectionError:
                pending._put(ResponseEnd({"lambda-runtime-function-error-type": "Runtime.ResponseStreamClosed"}))
                raise
            finally:
                pending._while_streaming(None)
        else:
            body, trailers = self._body()
            pending._put(ResponseChunk(body))
        pending._put(ResponseEnd(trailers))
        self._answer(202, {"status": "OK"})

    def _drop_connection(self) -> None:
        with contextlib.suppress(OSError):  # the runtime may have closed it already
            self.request.shutdown(socket.SHUT_RDWR)

    def _answer(self, status: int, document: Any) -> None:
        self._send(status, json.dumps(document).encode(), "application/json", {})

    def _send(self, status: int, body: bytes, content_type: str, extra: Mapping[str, str]) -> None:
        headers = [("Content-Type", content_type), ("Content-Length", str(len(body))), *extra.items()]
        out = self.connection.send(h11.Response(status_code=status, headers=headers))
        out += self.connection.send(h11.Data(data=body)) + self.connection.send(h11.EndOfMessage())
        self.request.sendall(out)


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")


class RuntimeEnvironment:
    """An execution environment: a local Runtime API and costgate's runtime loop serving `handler` in a thread."""

    def __init__(self, handler: Handler, info: FunctionInfo, *, timeout_s: float, function_arn: str) -> None:
        self.api = LocalRuntimeApi(function_arn=function_arn, timeout_s=timeout_s).start()
        client = RuntimeApiClient(self.api.address)
        # environ=None: threads share one process environment, so the trace header is not set per invocation.
        self._thread = threading.Thread(
            target=run, args=(client, as_streaming(handler), info), name=f"runtime-{info.name}", daemon=True
        )
        self._thread.start()

    def invoke(self, event: Mapping[str, Any]) -> PendingInvocation:
        return self.api.invoke(event)

    def close(self) -> None:
        self.api.close()
        self._thread.join(timeout=10)


@dataclass(frozen=True)
class ProcessSpec:
    """How Lambda starts a function's runtime process: its exec wrapper, handler, task root and environment."""

    wrapper: str  # the exec wrapper (AWS_LAMBDA_EXEC_WRAPPER), as a local path
    handler: str  # _HANDLER: module.function, relative to the task root
    task_root: str  # LAMBDA_TASK_ROOT: the function's code
    environ: Mapping[str, str]  # the function's environment (its template variables and the local AWS)


# Arguments Lambda passes a wrapper after the interpreter: the managed runtime's own, which ours ignores.
_MANAGED_RUNTIME_ARGS = ("/var/runtime/bootstrap.py",)
_STOP_WAIT_S = 10.0


class ProcessEnvironment:
    """An execution environment as Lambda runs one: a process of its own, started through the function's
    exec wrapper with this interpreter, running costgate's runtime loop against a local Runtime API.

    Nothing is shared with another environment but the machine: module globals (Powertools' resolver keeps
    the current event on its class), caches and connection pools are the process's own. If the process
    exits, its invocations fail as Lambda fails them (`Runtime.ExitError`); the environment is then dead.
    """

    def __init__(self, spec: ProcessSpec, info: FunctionInfo, *, timeout_s: float, function_arn: str) -> None:
        self.api = LocalRuntimeApi(function_arn=function_arn, timeout_s=timeout_s).start()
        environ = {
            **spec.environ,
            "AWS_LAMBDA_RUNTIME_API": self.api.address,
            "_HANDLER": spec.handler,
            "LAMBDA_TASK_ROOT": spec.task_root,
            "AWS_LAMBDA_FUNCTION_NAME": info.name,
            "AWS_LAMBDA_FUNCTION_VERSION": info.version,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(info.memory_mb),
            "AWS_LAMBDA_LOG_GROUP_NAME": info.log_group,
            "AWS_LAMBDA_LOG_STREAM_NAME": info.log_stream,
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        }
        self._stopping = threading.Event()
        self.process = subprocess.Popen(  # noqa: S603 - our own wrapper and interpreter
            [spec.wrapper, sys.executable, *_MANAGED_RUNTIME_ARGS],
            env=environ,
            cwd=spec.task_root,
            stdin=subprocess.DEVNULL,
        )
        self._watcher = threading.Thread(target=self._watch, name=f"environment-{info.log_stream}", daemon=True)
        self._watcher.start()

    @property
    def alive(self) -> bool:
        return self.process.poll() is None and not self.api.init_failed.is_set()

    def invoke(self, event: Mapping[str, Any]) -> PendingInvocation:
        return self.api.invoke(event)

    def close(self) -> None:
        """Stop the runtime (its next /next fails and the loop returns), then the process, by its own pid."""
        self._stopping.set()
        self.api.close()
        try:
            self.process.wait(timeout=_STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            self.process.terminate()
            try:
                self.process.wait(timeout=_STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=_STOP_WAIT_S)
        self._watcher.join(timeout=_STOP_WAIT_S)

    def _watch(self) -> None:
        status = self.process.wait()
        if not self._stopping.is_set():
            self.api.fail_all(
                FunctionError("Runtime.ExitError", {"errorMessage": f"Runtime exited with status {status}"})
            )


class MemorySink:
    """A response stream's transport kept in memory (for callers that want the whole response at once)."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.trailers: Mapping[str, str] | None = None

    def write(self, data: bytes) -> None:
        self.data += data

    def finish(self, trailers: Mapping[str, str] | None = None) -> None:
        self.trailers = trailers

    def abort(self) -> None:
        return


def invoke_in_memory(handler: Handler, event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """Call a (streaming) handler in this process and return its whole response as a proxy response:
    `statusCode`, `multiValueHeaders` (as API Gateway sends them), `body` (text), `isBase64Encoded`.

    For tests and benches that instrument the handler's stores in-process; the local front runs every
    environment as a process of its own (ProcessEnvironment). The prelude is written and read by the
    same code as on Lambda; an exception from the handler propagates.
    """
    sink = MemorySink()
    stream = ResponseStream(lambda: sink)
    as_streaming(handler)(event, context, response_stream=stream)
    stream.end()
    reader = PreludeReader()
    body = reader.feed(bytes(sink.data))
    if reader.prelude is None:
        raise PreludeError("the handler returned without a complete prelude")
    headers: dict[str, list[str]] = {}
    for name, value in reader.prelude.header_list():
        headers.setdefault(name, []).append(value)
    return {
        "statusCode": reader.prelude.status_code,
        "multiValueHeaders": headers,
        "body": body.decode("utf-8"),
        "isBase64Encoded": False,
    }
