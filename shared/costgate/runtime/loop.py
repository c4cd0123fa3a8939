"""The runtime loop: next event → handler → streamed response, over Lambda's Runtime API.

Lambda's managed Python runtime has no streaming handler, so ApiFunction runs this loop instead of it:
its exec wrapper (`exec-wrapper`, set as AWS_LAMBDA_EXEC_WRAPPER) starts `python -m costgate.runtime`
with the managed runtime's own interpreter. A streaming handler is called as
`handler(event, context, response_stream=stream)` (a keyword: Powertools' Tracer decorator forwards
keyword arguments only) and writes its response to the stream; a plain handler returning a Lambda
proxy response also works, its response sent as one prelude and one body chunk, because every
invocation through a STREAM integration must answer with a prelude.

What the managed runtime does and this loop does too: `_X_AMZN_TRACE_ID` set from the invocation's
trace header (X-Ray and Powertools read it), a context object with the deadline from
`Lambda-Runtime-Deadline-Ms`, init errors to /runtime/init/error, handler errors before the first
byte to /error, and SnapStart's /runtime/restore/next after init when the function is a snapshot.
"""

import importlib
import json
import logging
import os
import time
import traceback
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

from costgate.errors import InitError, PreludeError, RuntimeApiError, UnmarshalError
from costgate.runtime.api import ErrorReport, Invocation, RuntimeApiClient
from costgate.runtime.prelude import CONTENT_TYPE, from_proxy_response
from costgate.runtime.stream import ResponseStream

log = logging.getLogger(__name__)

TRACE_ENV = "_X_AMZN_TRACE_ID"
_STREAMING_MARK = "__costgate_streaming__"

type Handler = Callable[..., Any]


def streaming[F: Callable[..., Any]](handler: F) -> F:
    """Mark `handler` as a streaming handler: called with `response_stream=`, it writes its own response."""
    setattr(handler, _STREAMING_MARK, True)
    return handler


def is_streaming(handler: Handler) -> bool:
    # functools.wraps copies __dict__, so the mark survives Powertools' decorators in either order.
    return bool(getattr(handler, _STREAMING_MARK, False))


@dataclass(frozen=True)
class FunctionInfo:
    """The function's configuration, which Lambda passes to the runtime in environment variables."""

    name: str
    version: str
    memory_mb: int
    log_group: str
    log_stream: str

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> "FunctionInfo":
        return cls(
            name=environ.get("AWS_LAMBDA_FUNCTION_NAME", ""),
            version=environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
            memory_mb=int(environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "0")),
            log_group=environ.get("AWS_LAMBDA_LOG_GROUP_NAME", ""),
            log_stream=environ.get("AWS_LAMBDA_LOG_STREAM_NAME", ""),
        )


@dataclass(frozen=True)
class LambdaContext:
    """The context object of the managed Python runtime: the attributes handlers and Powertools read."""

    function_name: str
    function_version: str
    memory_limit_in_mb: int
    log_group_name: str
    log_stream_name: str
    invoked_function_arn: str
    aws_request_id: str
    deadline_ms: int
    client_context: Any = None
    identity: Any = None

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self.deadline_ms - int(time.time() * 1000))


def load_handler(spec: str) -> Handler:
    """The function named by `_HANDLER` (`module.function`); InitError as the managed runtime reports it."""
    module_name, _, function_name = spec.rpartition(".")
    if not module_name or not function_name:
        raise InitError("Runtime.MalformedHandlerName", f"Bad handler '{spec}': expected module.function")
    try:
        module = importlib.import_module(module_name.replace("/", "."))
    except Exception as error:  # any failure to import is the function's init error
        message = f"Unable to import module '{module_name}': {error}"
        report = _report(error, message, "Runtime.ImportModuleError")
        raise InitError(report.error_type, report.message, report.stack_trace) from error
    handler: Handler | None = getattr(module, function_name, None)
    if handler is None or not callable(handler):
        raise InitError("Runtime.HandlerNotFound", f"Handler '{function_name}' missing on '{module_name}'")
    return handler


def as_streaming(handler: Handler) -> Handler:
    """A streaming handler as it is; a proxy-response handler adapted to write its response to the stream."""
    if is_streaming(handler):
        return handler

    def buffered(event: Any, context: Any, *, response_stream: ResponseStream) -> None:
        prelude, body = from_proxy_response(handler(event, context))
        response_stream.start(prelude)
        response_stream.write(body)

    return buffered


def invoke(
    api: RuntimeApiClient,
    handler: Handler,
    invocation: Invocation,
    info: FunctionInfo,
    environ: MutableMapping[str, str] | None = None,
) -> None:
    """Run one invocation to its end: the response streamed, or the error reported where it belongs."""
    if environ is not None:
        if invocation.trace_id:
            environ[TRACE_ENV] = invocation.trace_id
        else:
            environ.pop(TRACE_ENV, None)
    stream = ResponseStream(lambda: api.open_response_stream(invocation.request_id, CONTENT_TYPE))
    try:
        event = _event(invocation)
        context = _context(invocation, info)
        handler(event, context, response_stream=stream)
        if not stream.started:
            raise PreludeError("the handler returned without starting its response")
    except Exception as error:  # noqa: BLE001 - every handler failure is reported to Lambda, never raised
        report = _report(error, str(error), getattr(error, "error_type", type(error).__name__))
        log.error("invocation %s failed: %s", invocation.request_id, "".join(report.stack_trace) or report.message)
        if stream.started:
            stream.fail(report)
        else:
            api.post_invocation_error(invocation.request_id, report)
        return
    stream.end()


def run(
    api: RuntimeApiClient,
    handler: Handler,
    info: FunctionInfo,
    *,
    environ: MutableMapping[str, str] | None = None,
    max_invocations: int | None = None,
) -> int:
    """Serve invocations until the Runtime API goes away (or `max_invocations`); how many were served."""
    served = 0
    while max_invocations is None or served < max_invocations:
        try:
            invocation = api.next_invocation()
        except RuntimeApiError as error:
            log.info("the runtime API ended the loop: %s", error)
            return served
        try:
            invoke(api, handler, invocation, info, environ)
        except RuntimeApiError as error:
            # A refused response or error report concerns this invocation only; the next one may go well.
            log.error("invocation %s: %s", invocation.request_id, error)
        served += 1
    return served


def main(environ: MutableMapping[str, str] = os.environ) -> int:
    """The runtime's entry point (`python -m costgate.runtime`, started by the exec wrapper)."""
    api = RuntimeApiClient(environ["AWS_LAMBDA_RUNTIME_API"])
    try:
        handler = as_streaming(load_handler(environ["_HANDLER"]))
    except InitError as error:
        log.error("init failed: %s", error.message)
        api.post_init_error(ErrorReport(error.error_type, error.message, error.stack_trace))
        return 1
    if environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") == "snap-start":
        # The snapshot is taken while this call waits; it returns in each environment restored from it.
        api.restore_next()
    run(api, handler, FunctionInfo.from_environ(environ), environ=environ)
    return 0


def _event(invocation: Invocation) -> Any:
    try:
        return json.loads(invocation.body)
    except ValueError as error:
        raise UnmarshalError(f"the event is not JSON: {error}") from None


def _context(invocation: Invocation, info: FunctionInfo) -> LambdaContext:
    return LambdaContext(
        function_name=info.name,
        function_version=info.version,
        memory_limit_in_mb=info.memory_mb,
        log_group_name=info.log_group,
        log_stream_name=info.log_stream,
        invoked_function_arn=invocation.function_arn,
        aws_request_id=invocation.request_id,
        deadline_ms=invocation.deadline_ms,
        client_context=_json_header(invocation.client_context),
        identity=_json_header(invocation.cognito_identity),
    )


def _json_header(value: str | None) -> Any:
    return json.loads(value) if value else None


def _report(error: BaseException, message: str, error_type: str) -> ErrorReport:
    return ErrorReport(error_type, message, tuple(traceback.format_exception(error)))
