"""The local HTTP front: the stand-in for `sam local start-api`, and for API Gateway itself.

It reads the routes (with their transfer mode and integration timeout), handler, timeout and
environment of a function from template.yaml, turns each HTTP request into an API Gateway REST proxy
(v1) event, calls the real handler in-process and maps its proxy response back to HTTP. Like API
Gateway it answers an unknown route with 403 "Missing Authentication Token", refuses a body over
10 MB, and gives up on a buffered invocation after the integration timeout with 504 while the
function runs on (so the ledger must still see a request whose client got a timeout). A route in
STREAM mode invokes the function through costgate's runtime loop and a local Runtime API, and relays
its response as it comes (costgate_local.stack.front_stream).
"""

import base64
import importlib.util
import os
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from werkzeug.datastructures import Headers
from werkzeug.wrappers import Request, Response

from costgate.runtime.loop import FunctionInfo
from costgate_local.stack.front_stream import gateway_error, streamed_response, too_large
from costgate_local.stack.runtime_api import PendingInvocation, ProcessEnvironment, ProcessSpec, RuntimeEnvironment
from costgate_local.stack.template import REPO_ROOT

# API Gateway REST's default integration timeout; the template can only raise it per route.
DEFAULT_INTEGRATION_TIMEOUT_S = 29.0
STAGE = "local"
ACCOUNT_ID = "123456789012"
# Concurrent execution environments of one function; more concurrent invocations wait for one.
MAX_CONTAINERS = 16
# Where Lambda unpacks a Python layer's packages, and where SharedLayer's sources are here.
LAYER_PYTHON = "/opt/python/"
SHARED_LAYER_SOURCE = REPO_ROOT / "shared"
EXEC_WRAPPER_VARIABLE = "AWS_LAMBDA_EXEC_WRAPPER"

# A proxy handler (event, context) -> response, or a streaming one (costgate.runtime.loop.streaming).
Handler = Callable[..., Any]
# A variable of a !Sub string: ${Name}, ${Resource.Attribute} or ${AWS::Pseudo} (${!Literal} is not one).
_SUB_VARIABLE = re.compile(r"\$\{(?P<name>[^}!][^}]*)\}")


@dataclass(frozen=True)
class Route:
    method: str
    resource: str  # the template's path, e.g. /v1/messages or /v1/items/{id}
    pattern: re.Pattern[str]
    streaming: bool = False  # the integration's response transfer mode is STREAM
    timeout_s: float = DEFAULT_INTEGRATION_TIMEOUT_S

    def match(self, method: str, path: str) -> dict[str, str] | None:
        if self.method not in (method, "ANY"):
            return None
        found = self.pattern.fullmatch(path)
        return found.groupdict() if found else None


def _route(
    method: str, resource: str, *, streaming: bool = False, timeout_s: float = DEFAULT_INTEGRATION_TIMEOUT_S
) -> Route:
    regex = re.sub(r"\\\{(\w+)\\\+\\\}", r"(?P<\1>.+)", re.escape(resource))
    regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", regex)
    return Route(method.upper(), resource, re.compile(regex), streaming=streaming, timeout_s=timeout_s)


def _template_route(properties: Mapping[str, Any]) -> Route:
    # SAM's Api event spells STREAM as RESPONSE_STREAM (and ignores anything else).
    return _route(
        properties["Method"],
        properties["Path"],
        streaming=properties.get("ResponseTransferMode") == "RESPONSE_STREAM",
        timeout_s=int(properties.get("TimeoutInMillis", DEFAULT_INTEGRATION_TIMEOUT_S * 1000)) / 1000,
    )


@dataclass
class LambdaContext:
    """What the Lambda runtime passes as `context`: the fields Powertools reads."""

    function_name: str
    memory_limit_in_mb: int
    timeout_s: float
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    started: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:{ACCOUNT_ID}:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return f"local/{self.aws_request_id}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_s - (time.monotonic() - self.started)) * 1000))


class _Containers:
    """A function's warm execution environments that are not running an invocation."""

    def __init__(self) -> None:
        self.free = threading.Condition()
        self.idle: list[Handler] = []
        self.started = 0
        self.runtimes: dict[int, RuntimeEnvironment] = {}  # by id(handler): the environment's runtime loop
        # Environments that are processes of their own (a function with an exec wrapper):
        self.processes: list[ProcessEnvironment] = []  # every one started and not yet closed
        self.idle_processes: list[ProcessEnvironment] = []
        self.closed = False


# Powertools' Logger keeps its keys (function_name, the request id) per process, for every Logger of one
# service: two functions' invocations in this process at once would stamp each other's log lines. Lambda
# never runs two invocations in one process, so the local stack's triggers take turns.
_IN_PROCESS = threading.Lock()


@dataclass(frozen=True)
class LocalFunction:
    """One AWS::Serverless::Function from the template.

    Lambda runs one invocation at a time per execution environment and starts another environment
    for a concurrent one; nothing in one environment is seen by another. A function started through an
    exec wrapper (`process` set: ApiFunction, whose every route streams) runs each environment as Lambda
    does, as a process of its own running costgate's runtime loop (ProcessEnvironment), so two concurrent
    invocations cannot see each other's globals (Powertools keeps the current event on its resolver's
    CLASS, which every module copy of one process shares).

    Without `process`, the handler runs in this process: `invoke` for the functions the local stack
    triggers itself (one in-process invocation at a time, whichever the function), and `invoke_stream`
    through the runtime loop in a thread, for tests and benches that instrument the handler's stores
    in-process. Concurrent in-process streams get a handler module of their own, loaded afresh by `load`
    (up to MAX_CONTAINERS); that does not isolate class attributes, so only the process mode is the local
    stack's API.
    """

    logical_id: str
    handler: Handler
    memory_mb: int
    timeout_s: float
    environment: Mapping[str, str]
    routes: tuple[Route, ...]
    load: Callable[[int], Handler] | None = None  # the handler of a new environment, numbered from 1
    process: ProcessSpec | None = None  # set: STREAM invocations run in environments that are processes
    _containers: _Containers = field(default_factory=_Containers, compare=False, repr=False)

    def invoke(self, event: dict[str, Any]) -> Any:
        """Run one invocation in a free environment, starting one if all are busy; one in-process invocation
        at a time (_IN_PROCESS)."""
        handler = self._take()
        try:
            with _IN_PROCESS:
                return handler(event, self.context())
        finally:
            self._release(handler)

    def invoke_stream(self, event: dict[str, Any]) -> PendingInvocation:
        """Invoke as InvokeWithResponseStream does: through an environment's runtime loop and Runtime API.

        The environment is busy until its runtime asks for the next event, which may be after the
        response has ended (work done after the client has its answer).
        """
        if self.process is not None:
            return self._invoke_process(event)
        handler = self._take()
        containers = self._containers
        with containers.free:
            runtime = containers.runtimes.get(id(handler))
            if runtime is None:
                number = len(containers.runtimes) + 1
                runtime = RuntimeEnvironment(
                    handler,
                    self._info(number),
                    timeout_s=self.timeout_s,
                    function_arn=self.context().invoked_function_arn,
                )
                containers.runtimes[id(handler)] = runtime
        pending = runtime.invoke(event)
        pending.add_done_callback(lambda: self._release(handler))
        return pending

    def start_environment(self) -> None:
        """Start one process environment now (it initialises while nothing waits for it), as provisioned
        concurrency keeps one warm; later ones start on demand."""
        containers = self._containers
        with containers.free:
            if self.process is None or containers.processes:
                return
            containers.idle_processes.append(self._new_process(1))

    def _invoke_process(self, event: dict[str, Any]) -> PendingInvocation:
        containers = self._containers
        with containers.free:
            while True:  # bounded: an environment frees up, or one is started below MAX_CONTAINERS
                if containers.closed:
                    raise RuntimeError(f"{self.logical_id} is closed")
                while containers.idle_processes and not containers.idle_processes[-1].alive:
                    dead = containers.idle_processes.pop()
                    containers.processes.remove(dead)
                    threading.Thread(target=dead.close, daemon=True).start()
                if containers.idle_processes:
                    environment = containers.idle_processes.pop()
                    break
                if len(containers.processes) < MAX_CONTAINERS:
                    environment = self._new_process(len(containers.processes) + 1)
                    break
                containers.free.wait()
        pending = environment.invoke(event)
        pending.add_done_callback(lambda: self._release_process(environment))
        return pending

    def _new_process(self, number: int) -> ProcessEnvironment:
        """Start an environment process (call with the containers' lock held)."""
        assert self.process is not None
        environment = ProcessEnvironment(
            replace(self.process, environ={**os.environ, **self.process.environ}),
            self._info(number),
            timeout_s=self.timeout_s,
            function_arn=self.context().invoked_function_arn,
        )
        self._containers.processes.append(environment)
        return environment

    def _release_process(self, environment: ProcessEnvironment) -> None:
        with self._containers.free:
            if not self._containers.closed:
                self._containers.idle_processes.append(environment)
            self._containers.free.notify()

    def _info(self, number: int) -> FunctionInfo:
        return FunctionInfo(
            self.logical_id, "$LATEST", self.memory_mb, f"/aws/lambda/{self.logical_id}", f"local/{number}"
        )

    def close(self) -> None:
        """Stop the runtime loops of streaming invocations, and every environment process."""
        with self._containers.free:
            runtimes = list(self._containers.runtimes.values())
            self._containers.runtimes.clear()
            processes = list(self._containers.processes)
            self._containers.processes.clear()
            self._containers.idle_processes.clear()
            self._containers.closed = True
            self._containers.free.notify_all()
        for runtime in runtimes:
            runtime.close()
        for process in processes:
            process.close()

    def _release(self, handler: Handler) -> None:
        with self._containers.free:
            self._containers.idle.append(handler)
            self._containers.free.notify()

    def _take(self) -> Handler:
        containers, load = self._containers, self.load
        with containers.free:
            if containers.started == 0:
                containers.started = 1
                return self.handler
            if not containers.idle and (load is None or containers.started >= MAX_CONTAINERS):
                containers.free.wait_for(lambda: bool(containers.idle))
            if containers.idle or load is None:
                return containers.idle.pop()
            containers.started += 1
            number = containers.started - 1
        return load(number)

    @classmethod
    def from_template(
        cls, template: dict[str, Any], logical_id: str, refs: Mapping[str, str], *, in_process: bool = False
    ) -> "LocalFunction":
        """Load the function's handler from CodeUri/Handler; resolve `!Ref`s in its environment with `refs`.

        A parameter not in `refs` takes its template default, as a deployment that does not override it.
        A function with an exec wrapper runs its environments as processes, unless `in_process` (for a
        test or bench that instruments its stores in this process).
        """
        resource = template["Resources"][logical_id]
        if resource.get("Type") != "AWS::Serverless::Function":
            raise ValueError(f"{logical_id} is not an AWS::Serverless::Function")
        properties = resource["Properties"]
        globals_ = template.get("Globals", {}).get("Function", {})
        module_name, function_name = properties["Handler"].rsplit(".", 1)
        path = REPO_ROOT / properties["CodeUri"] / f"{module_name}.py"
        module = _load_module(path, f"lambda_{logical_id}")

        def load(number: int) -> Handler:
            handler: Handler = getattr(_load_module(path, f"lambda_{logical_id}_{number}"), function_name)
            return handler

        variables = {
            **globals_.get("Environment", {}).get("Variables", {}),
            **properties.get("Environment", {}).get("Variables", {}),
        }
        defaults = {
            name: str(parameter["Default"])
            for name, parameter in template.get("Parameters", {}).items()
            if "Default" in parameter
        }
        routes = tuple(
            _template_route(event["Properties"])
            for event in properties.get("Events", {}).values()
            if event.get("Type") == "Api"
        )
        environment = {
            name: resolve(value, defaults | dict(refs), f"{logical_id}.{name}") for name, value in variables.items()
        }
        wrapper = environment.get(EXEC_WRAPPER_VARIABLE)
        process = None
        if wrapper is not None and not in_process:
            process = ProcessSpec(
                wrapper=str(_local_layer_path(wrapper)),
                handler=properties["Handler"],
                task_root=str(REPO_ROOT / properties["CodeUri"]),
                environ=environment,
            )
        return cls(
            logical_id=logical_id,
            handler=getattr(module, function_name),
            memory_mb=int(properties.get("MemorySize", globals_.get("MemorySize", 128))),
            timeout_s=float(properties.get("Timeout", globals_.get("Timeout", 3))),
            environment=environment,
            routes=routes,
            load=load,
            process=process,
        )

    def context(self) -> LambdaContext:
        return LambdaContext(function_name=self.logical_id, memory_limit_in_mb=self.memory_mb, timeout_s=self.timeout_s)


def _local_layer_path(path: str) -> Path:
    """A path inside a layer as Lambda sees it (/opt/python/...) as the layer's source here."""
    if not path.startswith(LAYER_PYTHON):
        raise ValueError(f"the local stack finds layer files under {LAYER_PYTHON} only, not {path!r}")
    local = SHARED_LAYER_SOURCE / path.removeprefix(LAYER_PYTHON)
    if not local.is_file():
        raise ValueError(f"{path} is not in SharedLayer's sources ({local})")
    return local


def _load_module(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load a handler from {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def resolve(value: Any, refs: Mapping[str, str], where: str) -> str:
    """A template value as CloudFormation would give it: `!Ref X` and `!Sub "...${X}..."` from `refs`
    (parameters, resources' names and pseudo parameters such as AWS::StackName), scalars as strings."""
    if isinstance(value, dict) and set(value) == {"Ref"}:
        if value["Ref"] not in refs:
            raise ValueError(f"{where}: the local stack has no value for !Ref {value['Ref']}")
        return refs[value["Ref"]]
    if isinstance(value, dict) and set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):

        def substitute(match: re.Match[str]) -> str:
            if match.group("name") not in refs:
                raise ValueError(f"{where}: the local stack has no value for ${{{match.group('name')}}} in !Sub")
            return refs[match.group("name")]

        return _SUB_VARIABLE.sub(substitute, value["Fn::Sub"])
    if isinstance(value, str | int | float | bool):
        return str(value).lower() if isinstance(value, bool) else str(value)
    raise ValueError(f"{where}: the local stack cannot resolve {value!r}")


class ApiFront:
    """WSGI app: HTTP → REST proxy event → the function → HTTP, with API Gateway's limits, timeouts and 403.

    `integration_timeout_s`, when given, replaces every route's own timeout from the template.
    """

    def __init__(self, function: LocalFunction, integration_timeout_s: float | None = None) -> None:
        self._function = function
        self._timeout_s = integration_timeout_s

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        response = self._dispatch(request)
        return response(environ, start_response)

    def _dispatch(self, request: Request) -> Response:
        refused = too_large(request)
        if refused is not None:
            return refused
        for route in self._function.routes:
            params = route.match(request.method, request.path)
            if params is not None:
                event = rest_event(request, route, params)
                timeout_s = route.timeout_s if self._timeout_s is None else self._timeout_s
                if route.streaming:
                    return streamed_response(self._function.invoke_stream(event), timeout_s, request.environ)
                return self._invoke(event, timeout_s)
        return _gateway_error(403, "Missing Authentication Token")

    def _invoke(self, event: dict[str, Any], timeout_s: float) -> Response:
        outcome: dict[str, Any] = {}

        def run() -> None:
            try:
                outcome["response"] = self._function.invoke(event)
            except Exception as error:  # noqa: BLE001 - an unhandled error in a Lambda is a 502 at the gateway
                outcome["error"] = error

        # Not a daemon: like Lambda, the invocation runs to its end after the gateway gives up.
        worker = threading.Thread(target=run, name=f"invoke-{self._function.logical_id}")
        worker.start()
        worker.join(timeout_s)
        if worker.is_alive():
            return _gateway_error(504, "Endpoint request timed out")
        if "error" in outcome:
            return _gateway_error(502, "Internal server error")
        return proxy_response(outcome["response"])


def rest_event(request: Request, route: Route, path_params: dict[str, str]) -> dict[str, Any]:
    """An API Gateway REST proxy (v1) event for the request, as the Lambda integration sends it."""
    body = request.get_data()
    try:
        text, encoded = body.decode("utf-8"), False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(body).decode("ascii"), True
    multi_headers: dict[str, list[str]] = {}
    for name, value in request.headers.items():
        multi_headers.setdefault(name, []).append(value)
    multi_query = {name: request.args.getlist(name) for name in request.args}
    now = datetime.now(UTC)
    return {
        "resource": route.resource,
        "path": request.path,
        "httpMethod": request.method,
        "headers": {name: values[-1] for name, values in multi_headers.items()} or None,
        "multiValueHeaders": multi_headers or None,
        "queryStringParameters": {name: values[-1] for name, values in multi_query.items()} or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": path_params or None,
        "stageVariables": None,
        "requestContext": {
            "resourceId": "local",
            "resourcePath": route.resource,
            "httpMethod": request.method,
            "extendedRequestId": str(uuid.uuid4()),
            "requestTime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "path": f"/{STAGE}{request.path}",
            "accountId": ACCOUNT_ID,
            "protocol": request.environ.get("SERVER_PROTOCOL", "HTTP/1.1"),
            "stage": STAGE,
            "domainPrefix": "localhost",
            "requestTimeEpoch": int(now.timestamp() * 1000),
            "requestId": str(uuid.uuid4()),
            "identity": {"sourceIp": request.remote_addr or "127.0.0.1", "userAgent": request.user_agent.string},
            "domainName": request.host,
            "apiId": "local",
        },
        "body": text if body else None,
        "isBase64Encoded": encoded,
    }


def proxy_response(result: dict[str, Any]) -> Response:
    """Map a Lambda proxy response to HTTP; a malformed one is API Gateway's 502."""
    if not isinstance(result, dict) or not isinstance(result.get("statusCode"), int):
        return _gateway_error(502, "Internal server error")
    headers = Headers()
    for name, value in (result.get("headers") or {}).items():
        headers[name] = str(value)
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers.setlist(name, [str(v) for v in values])
    body = result.get("body") or ""
    data = base64.b64decode(body) if result.get("isBase64Encoded") else body.encode("utf-8")
    return Response(data, status=result["statusCode"], headers=headers)


_gateway_error = gateway_error
