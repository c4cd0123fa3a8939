"""The simulator's HTTP face: a werkzeug WSGI app on a threaded server bound to 127.0.0.1.

Every request is handled in this order: route → auth (x-api-key or Authorization: Bearer; the key
is the workspace) → body size → injected fault and latency (messages, count_tokens, batch create) →
JSON → validation → work. State (prompt cache, batches, fault RNG, what was billed) changes under one
lock, and batches progress by the clock before every request. Every response has a `request-id` header.

What it bills (messages, streams, processed batch requests; never count_tokens or an error) goes to
`admin.BillingLog`, which the Usage and Cost Analytics endpoints report to the simulator's Admin key;
an Admin key cannot call the Claude endpoints, as with Anthropic.
"""

import json
import logging
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from types import TracebackType
from typing import IO, Any, Self

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from costgate.clock import Clock
from costgate.pricing.prices import default_price_book
from costgate_local.simulator.admin import BillingLog, check_admin
from costgate_local.simulator.batches import DEFAULT_PAGE, BatchStore
from costgate_local.simulator.clock import ManualClock
from costgate_local.simulator.engine import Engine, new_id, start_usage, stream_events
from costgate_local.simulator.errors import ApiError, invalid_request
from costgate_local.simulator.faults import FaultInjector
from costgate_local.simulator.options import SimulatorOptions
from costgate_local.simulator.validation import api_version, validate_messages_request

HOST = "127.0.0.1"
STREAM_LOG_SIZE = 1000  # streams whose event times are kept
MESSAGES_MAX_BYTES = 32 * 1024 * 1024
BATCH_MAX_BYTES = 256 * 1024 * 1024
_DRAIN_CHUNK = 1024 * 1024
logger = logging.getLogger(__name__)
_sleep = time.sleep  # the pace of streams (a test records it instead)

type Handler = Callable[..., Response]


class SimulatorApp:
    """The WSGI application. Use `Simulator` to serve it."""

    def __init__(self, options: SimulatorOptions) -> None:
        self.clock: Clock = options.clock
        self._latency = options.faults.latency_ms / 1000
        self._token_s = options.stream_token_ms / 1000
        self._lock = threading.Lock()
        self._engine = Engine(options.answer_tokens)
        # When each event of the latest streams left the simulator, by request id (GET /_simulator/streams/ID).
        self._stream_log: OrderedDict[str, list[tuple[str, float]]] = OrderedDict()
        self._faults = FaultInjector(options.faults, options.seed)
        self._admin_key = options.admin_key
        self._billing = BillingLog(options.prices or default_price_book())
        self._batches = BatchStore(self._process_batch_request, options.batch_delay, options.seed)
        rules = [
            Rule("/v1/messages", methods=["POST"], endpoint="messages"),
            Rule("/v1/messages/count_tokens", methods=["POST"], endpoint="count_tokens"),
            Rule("/v1/messages/batches", methods=["POST"], endpoint="create_batch"),
            Rule("/v1/messages/batches", methods=["GET"], endpoint="list_batches"),
            Rule("/v1/messages/batches/<batch_id>", methods=["GET"], endpoint="retrieve_batch"),
            Rule("/v1/messages/batches/<batch_id>", methods=["DELETE"], endpoint="delete_batch"),
            Rule("/v1/messages/batches/<batch_id>/cancel", methods=["POST"], endpoint="cancel_batch"),
            Rule("/v1/messages/batches/<batch_id>/results", methods=["GET"], endpoint="batch_results"),
            Rule("/_simulator/streams/<request_id>", methods=["GET"], endpoint="stream_log"),
            Rule("/v1/organizations/analytics/usage", methods=["GET"], endpoint="analytics_usage"),
            Rule("/v1/organizations/analytics/cost", methods=["GET"], endpoint="analytics_cost"),
        ]
        if isinstance(self.clock, ManualClock):
            rules.append(Rule("/_simulator/clock", methods=["GET", "POST"], endpoint="clock"))
        self._routes = Map(rules)
        self._handlers: dict[str, Handler] = {
            "messages": self._messages,
            "count_tokens": self._count_tokens,
            "create_batch": self._create_batch,
            "list_batches": self._list_batches,
            "retrieve_batch": self._retrieve_batch,
            "delete_batch": self._delete_batch,
            "cancel_batch": self._cancel_batch,
            "batch_results": self._batch_results,
            "analytics_usage": self._analytics_usage,
            "analytics_cost": self._analytics_cost,
            "clock": self._clock,
            "stream_log": self._stream_log_of,
        }

    @property
    def injected_faults(self) -> Counter[int]:
        with self._lock:
            return Counter(self._faults.injected)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        response = self._dispatch(request)
        return response(environ, start_response)

    def _dispatch(self, request: Request) -> Response:
        request_id = new_id("req_")
        try:
            endpoint, arguments = self._routes.bind_to_environ(request.environ).match()
            response = self._handlers[str(endpoint)](request, **{**arguments, **_with_id(endpoint, request_id)})
        except ApiError as error:
            response = _json(error.status, error.body(request_id), error.headers)
        except NotFound:
            response = _json(404, ApiError(404, "not_found_error", "Not found").body(request_id))
        except MethodNotAllowed:
            message = f"Method {request.method} not allowed for {request.path}"
            response = _json(405, ApiError(405, "invalid_request_error", message).body(request_id))
        except HTTPException as exc:
            status = exc.code or 400
            response = _json(status, ApiError(status, "invalid_request_error", str(exc)).body(request_id))
        except Exception:
            logger.exception("simulator error on %s %s", request.method, request.path)
            response = _json(500, ApiError(500, "api_error", "Internal server error").body(request_id))
        response.headers["request-id"] = request_id
        return response

    # --- Messages ---------------------------------------------------------------------------------

    def _messages(self, request: Request, request_id: str) -> Response:
        workspace = _workspace(request)
        version = api_version(request.headers.get("anthropic-version"))
        raw = _read_body(request, MESSAGES_MAX_BYTES)
        self._fault()
        body = _parse_json(raw)
        parsed = validate_messages_request(body, version)
        with self._lock:
            now = self._advance()
            message = self._engine.create_message(parsed, workspace=workspace, now=now)
            break_after = self._faults.draw_stream_error() if parsed.stream else None
            # Billed when created: a stream's usage is decided before its first event (a stream that breaks
            # off is billed what it reported before its error event: message_start's usage).
            billed = message["usage"] if break_after is None else start_usage(message["usage"])
            self._billing.bill(at=now, api_key=workspace, model=message["model"], usage=billed)
        if parsed.stream:
            events = stream_events(message, self._pace if self._token_s > 0 else None)
            return Response(
                self._logged(request_id, _broken_off(events, break_after)),
                status=200,
                mimetype="text/event-stream",
                headers={"cache-control": "no-cache"},
                direct_passthrough=True,
            )
        return _json(200, message)

    def _logged(self, request_id: str, events: Iterator[bytes]) -> Iterator[bytes]:
        """The stream as it is sent, each event's departure noted (its time taken before it is written)."""
        with self._lock:
            log = self._stream_log[request_id] = []
            while len(self._stream_log) > STREAM_LOG_SIZE:
                self._stream_log.popitem(last=False)
        for event in events:
            name = event.partition(b"\n")[0].removeprefix(b"event: ").decode()
            with self._lock:
                log.append((name, time.time()))
            yield event

    def _stream_log_of(self, request: Request, request_id: str) -> Response:
        with self._lock:
            log = self._stream_log.get(request_id)
            events = [{"event": name, "at": at} for name, at in log] if log is not None else None
        if events is None:
            raise ApiError(404, "not_found_error", f"no stream logged for request {request_id}")
        return _json(200, {"request_id": request_id, "events": events})

    def _count_tokens(self, request: Request) -> Response:
        _workspace(request)
        version = api_version(request.headers.get("anthropic-version"))
        raw = _read_body(request, MESSAGES_MAX_BYTES)
        self._fault()
        return _json(200, {"input_tokens": self._engine.count_tokens(_parse_json(raw), version)})

    # --- Message Batches ---------------------------------------------------------------------------

    def _create_batch(self, request: Request) -> Response:
        workspace = _workspace(request)
        version = api_version(request.headers.get("anthropic-version"))
        raw = _read_body(request, BATCH_MAX_BYTES)
        self._fault()
        body = _parse_json(raw)
        with self._lock:
            now = self._advance()
            batch = self._batches.create(
                body, batch_id=new_id("msgbatch_"), workspace=workspace, version=version, now=now
            )
            return _json(200, batch.to_json(_base_url(request)))

    def _retrieve_batch(self, request: Request, batch_id: str) -> Response:
        workspace = _workspace(request)
        with self._lock:
            self._advance()
            return _json(200, self._batches.get(batch_id, workspace).to_json(_base_url(request)))

    def _list_batches(self, request: Request) -> Response:
        workspace = _workspace(request)
        limit_text = request.args.get("limit", str(DEFAULT_PAGE))
        try:
            limit = int(limit_text)
        except ValueError:
            raise invalid_request("limit: Input should be a valid integer") from None
        with self._lock:
            self._advance()
            page, has_more = self._batches.page(
                workspace, limit=limit, after_id=request.args.get("after_id"), before_id=request.args.get("before_id")
            )
            base_url = _base_url(request)
            return _json(
                200,
                {
                    "data": [batch.to_json(base_url) for batch in page],
                    "has_more": has_more,
                    "first_id": page[0].id if page else None,
                    "last_id": page[-1].id if page else None,
                },
            )

    def _cancel_batch(self, request: Request, batch_id: str) -> Response:
        workspace = _workspace(request)
        with self._lock:
            now = self._advance()
            return _json(200, self._batches.cancel(batch_id, workspace, now).to_json(_base_url(request)))

    def _delete_batch(self, request: Request, batch_id: str) -> Response:
        workspace = _workspace(request)
        with self._lock:
            self._advance()
            self._batches.delete(batch_id, workspace)
        return _json(200, {"id": batch_id, "type": "message_batch_deleted"})

    def _batch_results(self, request: Request, batch_id: str) -> Response:
        workspace = _workspace(request)
        with self._lock:
            self._advance()
            lines = self._batches.results(batch_id, workspace)
        payload = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines).encode()
        return Response(payload, status=200, mimetype="application/x-jsonl")

    def _process_batch_request(self, params: Any, workspace: str, version: str, now: datetime) -> dict[str, Any]:
        """One batch request, processed and, when it succeeded, billed at the time it was processed."""
        result = self._engine.batch_result(params, workspace=workspace, version=version, now=now)
        if result["type"] == "succeeded":
            message = result["message"]
            self._billing.bill(at=now, api_key=workspace, model=message["model"], usage=message["usage"])
        return result

    # --- Usage and Cost Analytics (the Admin key only) ---------------------------------------------

    def _analytics_usage(self, request: Request) -> Response:
        check_admin(_presented_key(request), request.headers.get("anthropic-beta", ""), self._admin_key)
        with self._lock:
            return _json(200, self._billing.usage_report(request.args.to_dict(flat=False), self._advance()))

    def _analytics_cost(self, request: Request) -> Response:
        check_admin(_presented_key(request), request.headers.get("anthropic-beta", ""), self._admin_key)
        with self._lock:
            return _json(200, self._billing.cost_report(request.args.to_dict(flat=False), self._advance()))

    # --- The clock (ManualClock only) --------------------------------------------------------------

    def _clock(self, request: Request) -> Response:
        clock = self.clock
        if not isinstance(clock, ManualClock):  # the route exists only for a ManualClock
            raise ApiError(404, "not_found_error", "Not found")
        if request.method == "POST":
            body = _parse_json(_read_body(request, 64 * 1024))
            seconds = body.get("advance_seconds") if isinstance(body, Mapping) else None
            if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
                raise invalid_request("advance_seconds: a non-negative number of seconds is required")
            clock.advance(timedelta(seconds=seconds))
        return _json(200, {"now": clock.now().isoformat()})

    # --- Shared steps ------------------------------------------------------------------------------

    def _pace(self, tokens: int) -> None:
        # Outside the lock: a paced stream must not hold up other requests.
        _sleep(tokens * self._token_s)

    def _advance(self) -> datetime:
        """The clock's time, with batches brought up to it. Call under the lock."""
        now = self.clock.now()
        self._batches.advance(now)
        return now

    def _fault(self) -> None:
        with self._lock:
            error = self._faults.draw()
        if self._latency > 0:
            time.sleep(self._latency)
        if error is not None:
            raise error


class _QuietHandler(WSGIRequestHandler):
    """No access log; an idle keep-alive connection is dropped after a minute so its thread ends."""

    timeout = 60

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return


class Simulator:
    """A Claude API simulator on 127.0.0.1; `with Simulator(options) as sim:` serves at `sim.base_url`."""

    def __init__(self, options: SimulatorOptions | None = None) -> None:
        self.options = options or SimulatorOptions()
        self.app = SimulatorApp(self.options)
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def clock(self) -> Clock:
        return self.options.clock

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the simulator is not started")
        return f"http://{HOST}:{self._server.server_port}"

    @property
    def injected_faults(self) -> Counter[int]:
        """How many faults of each status were injected so far."""
        return self.app.injected_faults

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError("the simulator is already started")
        self._server = make_server(HOST, self.options.port, self.app, threaded=True, request_handler=_QuietHandler)
        # A short poll interval lets close() return promptly (shutdown waits for the loop to notice).
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="claude-simulator", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _with_id(endpoint: Any, request_id: str) -> dict[str, str]:
    """The request id for the endpoints that need it (messages: it names the stream's log)."""
    return {"request_id": request_id} if endpoint == "messages" else {}


def _broken_off(events: Iterator[bytes], after: int | None) -> Iterator[bytes]:
    """The stream, or its first `after` events and then an overloaded_error event, the end of it."""
    if after is None:
        yield from events
        return
    for sent, event in enumerate(events):
        if sent == after:
            break
        yield event
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded (simulated fault)"}}
    yield f"event: error\ndata: {json.dumps(error)}\n\n".encode()


def _presented_key(request: Request) -> str:
    """The key from x-api-key (older clients) or Authorization: Bearer (SDK 2.x); empty if none."""
    key = request.headers.get("x-api-key", "").strip()
    if not key:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            key = token.strip()
    return key


def _workspace(request: Request) -> str:
    """The API key, which names the workspace."""
    key = _presented_key(request)
    if not key:
        raise ApiError(
            401, "authentication_error", "an API key is required: send x-api-key or Authorization: Bearer <key>"
        )
    if key.startswith("sk-ant-admin"):
        raise ApiError(401, "authentication_error", "an Admin API key cannot call this endpoint; use an API key")
    return key


def _read_body(request: Request, limit: int) -> bytes:
    """The body, or 413 request_too_large above `limit` (the body is drained first so the client reads the answer)."""
    too_large = ApiError(413, "request_too_large", f"Request exceeds the maximum allowed number of bytes ({limit:,})")
    stream: IO[bytes] = request.stream
    if request.content_length is not None and request.content_length > limit:
        _drain(stream, 2 * limit)
        raise too_large
    data = stream.read(limit + 1)
    if len(data) > limit:
        _drain(stream, limit)
        raise too_large
    return data


def _drain(stream: IO[bytes], cap: int) -> None:
    read = 0
    while read < cap:
        chunk = stream.read(_DRAIN_CHUNK)
        if not chunk:
            return
        read += len(chunk)


def _parse_json(raw: bytes) -> Any:
    try:
        body = json.loads(raw.decode("utf-8"))  # the API takes UTF-8 only, not json's UTF-16/32 detection
        json.dumps(body, ensure_ascii=False).encode("utf-8")  # a lone surrogate escape is not text
    except (ValueError, RecursionError) as exc:  # UnicodeError is a ValueError
        raise invalid_request(f"There was an error parsing the body of your request: {str(exc)[:200]}") from None
    return body


def _base_url(request: Request) -> str:
    return request.host_url.rstrip("/")


def _json(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body, ensure_ascii=False), status=status, mimetype="application/json", headers=dict(headers or {})
    )
