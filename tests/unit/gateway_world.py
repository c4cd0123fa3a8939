"""The gateway test world: in-memory stores, a scripted upstream and reply builders for the gateway unit tests."""

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from costgate.accounting.budgets import Budget, BudgetPeriod, estimate_worst_case
from costgate.cache.answers import AnswerCache
from costgate.cache.semantic_policy import SemanticPolicy
from costgate.cache.vector_index import LshHasher
from costgate.claude.transport import UpstreamResponse
from costgate.errors import UpstreamStreamError
from costgate.gateway.admission import GatewayRequest, GatewayResponse
from costgate.gateway.features import FeatureConfig
from costgate.gateway.keys import issue_key
from costgate.gateway.model import GatewayKey
from costgate.gateway.receipts import RECEIPT_COMMENT
from costgate.gateway.service import Gateway
from tests.fakes.accounting import InMemoryBudgetStore, InMemoryLedgerStore
from tests.fakes.cache import FakeEmbedder, InMemoryAnswerCacheStore
from tests.fakes.gateway import InMemoryFeatureStore, InMemoryKeyStore
from tests.fakes.routing import InMemoryPromptCacheStore

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
DAY = "2026-11-20"
MONTH = "2026-11"
DEADLINE = 5_000.0  # a time.monotonic() instant; the gateway only hands it on
OPUS = "claude-opus-5-5"
HAIKU_55 = "claude-haiku-5-5"  # 0.10 / 0.50 per million; 0.50 / 2.50 when the prompt is above 100K tokens
API_VERSION = "2026-10-21"
ROUTE_REASON = "explicit model"
BODY = json.dumps(
    {"model": OPUS, "max_tokens": 512, "messages": [{"role": "user", "content": "Say hello."}]},
    separators=(",", ":"),
).encode()
# 1000×4/1e6 + 500×20/1e6 = 0.004 + 0.01
PLAIN_USAGE = {"input_tokens": 1000, "output_tokens": 500, "service_tier": "standard"}
PLAIN_COST = Decimal("0.014")
# The fake embedder's words are random vectors: the same words score 1, different ones far less.
SEMANTIC_THRESHOLD = Decimal("0.9")


# --- a scripted upstream ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    path: str
    body: bytes
    headers: dict[str, str]
    deadline: float


@dataclass
class LiveScript:
    """A live stream's script: its headers and the chunks it sends, then optionally a broken connection.

    `on_chunk(i)` runs before chunk i is handed over (tests look at the client's side mid-stream);
    `closed` says whether the gateway gave the connection back.
    """

    headers: dict[str, str]
    chunks: list[bytes]
    break_after: int | None = None  # raise UpstreamStreamError after this many chunks
    on_chunk: Callable[[int], None] | None = None
    status: int = 200
    latency_s: float | None = None
    attempts: int = 1
    closed: bool = False
    handed: int = 0  # chunks handed over so far

    def chunks_iter(self) -> Iterator[bytes]:
        for i, chunk in enumerate(self.chunks):
            if self.break_after is not None and i == self.break_after:
                raise UpstreamStreamError("ProtocolError: Connection broken (scripted)")
            if self.on_chunk is not None:
                self.on_chunk(i)
            self.handed += 1
            yield chunk
        if self.break_after is not None and self.break_after >= len(self.chunks):
            raise UpstreamStreamError("ProtocolError: Connection broken (scripted)")


class ScriptedLive:
    """The LiveStream port over a LiveScript."""

    def __init__(self, script: LiveScript) -> None:
        self._script = script
        self.status = script.status
        self.headers = script.headers
        self.latency_s = script.latency_s
        self.attempts = script.attempts

    def chunks(self) -> Iterator[bytes]:
        return self._script.chunks_iter()

    def close(self) -> None:
        self._script.closed = True


def live_script(reply: UpstreamResponse, **options: Any) -> LiveScript:
    """A scripted live stream of an SSE reply's events, one chunk per event."""
    events = [part + b"\n\n" for part in reply.body.split(b"\n\n") if part]
    headers = {k: v for k, v in reply.headers.items() if k != "content-length"}
    return LiveScript(headers=headers, chunks=events, **options)


@dataclass
class ScriptedUpstream:
    """The Upstream port: answers each post with the next scripted reply (the last one repeats), or raises it.

    `during_call` runs inside every post, before it answers: tests use it to look at the stores mid-call.
    `post_stream` answers a LiveScript as a live stream, a 200 SSE reply as a live stream of one chunk per
    event, and anything else as `post` does.
    """

    replies: list[UpstreamResponse | LiveScript | BaseException]
    during_call: Callable[[], None] | None = None
    sent: list[Sent] = field(default_factory=list)

    def post(self, path: str, body: bytes, headers: Any, deadline: float) -> UpstreamResponse:
        reply = self._next(path, body, headers, deadline)
        if isinstance(reply, LiveScript):
            raise AssertionError("a live stream was scripted for a request that does not stream")
        return reply

    def post_stream(self, path: str, body: bytes, headers: Any, deadline: float) -> UpstreamResponse | ScriptedLive:
        reply = self._next(path, body, headers, deadline)
        if isinstance(reply, LiveScript):
            return ScriptedLive(reply)
        if reply.status == 200 and reply.headers.get("content-type", "").startswith("text/event-stream"):
            return ScriptedLive(live_script(reply))
        return reply

    def _next(self, path: str, body: bytes, headers: Any, deadline: float) -> UpstreamResponse | LiveScript:
        self.sent.append(Sent(path, body, dict(headers), deadline))
        if self.during_call is not None:
            self.during_call()
        reply = self.replies[min(len(self.sent), len(self.replies)) - 1]
        if isinstance(reply, BaseException):
            raise reply
        return reply


@dataclass
class RecordingSink:
    """The ResponseSink port: keeps what was written; the client hangs up after `hang_up_after` writes."""

    hang_up_after: int | None = None
    on_end: Callable[[], None] | None = None
    writes: list[bytes] = field(default_factory=list)
    dropped: int = 0  # writes after the client had gone
    ended: bool = False
    client_gone: bool = False

    def write(self, data: bytes) -> None:
        assert not self.ended, "a write after the end of the response"
        if self.hang_up_after is not None and len(self.writes) >= self.hang_up_after:
            self.client_gone = True
        if self.client_gone:
            self.dropped += 1
            return
        self.writes.append(data)

    def end(self) -> None:
        assert not self.ended, "the response was ended twice"
        self.ended = True
        if self.on_end is not None:
            self.on_end()

    @property
    def body(self) -> bytes:
        return b"".join(self.writes)


def receipt_of(body: bytes) -> dict[str, Any]:
    """The `: costgate-receipt {json}` comment of a streamed body (exactly one, at its end)."""
    lines = [line for line in body.split(b"\n") if line.startswith(RECEIPT_COMMENT)]
    assert len(lines) == 1, f"{len(lines)} receipts in the stream"
    assert body.endswith(lines[0] + b"\n\n")
    document: dict[str, Any] = json.loads(lines[0].removeprefix(RECEIPT_COMMENT))
    return document


class FixedClock:
    def now(self) -> datetime:
        return NOW


def message_json(usage: dict[str, Any], model: str = OPUS, text: str = "Hello!") -> bytes:
    message = {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": usage,
    }
    return json.dumps(message).encode()


def reply(
    body: bytes, *, status: int = 200, request_id: str = "req_011CV1", content_type: str = "application/json"
) -> UpstreamResponse:
    return UpstreamResponse(
        status=status,
        headers={
            "content-type": content_type,
            "request-id": request_id,
            "anthropic-ratelimit-requests-remaining": "49",
            # hop-by-hop: describes the upstream connection, never the client's
            "connection": "keep-alive",
            "content-length": str(len(body)),
        },
        body=body,
    )


def message_reply(usage: dict[str, Any] | None = None, *, model: str = OPUS, request_id: str = "req_011CV1") -> Any:
    return reply(message_json(usage or PLAIN_USAGE, model), request_id=request_id)


def error_reply(status: int, error_type: str, message: str) -> UpstreamResponse:
    body = {"type": "error", "error": {"type": error_type, "message": message}, "request_id": "req_err"}
    return reply(json.dumps(body).encode(), status=status, request_id="req_err")


def sse(*events: dict[str, Any]) -> bytes:
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)


def stream_reply(*events: dict[str, Any], request_id: str = "req_stream1") -> UpstreamResponse:
    return reply(sse(*events), request_id=request_id, content_type="text/event-stream; charset=utf-8")


# --- the world a test runs in ----------------------------------------------------------------------------


@dataclass
class World:
    gateway: Gateway
    upstream: ScriptedUpstream
    keys: InMemoryKeyStore
    budgets: InMemoryBudgetStore
    ledger: InMemoryLedgerStore
    api_key: str
    key: GatewayKey
    features: InMemoryFeatureStore
    prompt_cache: InMemoryPromptCacheStore
    answers: InMemoryAnswerCacheStore
    embedder: FakeEmbedder
    sink: "RecordingSink | None" = None  # where the last streamed answer went

    def request(self, body: bytes = BODY, **headers: str) -> GatewayRequest:
        """A request with this world's key; keyword headers use '_' for '-' (x_costgate_feature=…)."""
        sent = {"x-api-key": self.api_key, "anthropic-version": API_VERSION, "content-type": "application/json"}
        sent |= {name.replace("_", "-"): value for name, value in headers.items()}
        return GatewayRequest(body=body, headers=sent, deadline=DEADLINE)

    def send(self, body: bytes = BODY, **headers: str) -> GatewayResponse:
        """The gateway's answer; a streamed one is relayed to a new RecordingSink, its body all that reached
        the client."""
        return self.send_streamed(body, RecordingSink(), **headers)

    def send_streamed(self, body: bytes, sink: "RecordingSink", **headers: str) -> GatewayResponse:
        """As `send`, a streamed answer relayed to `sink`."""
        answer = self.gateway.create_message(self.request(body, **headers))
        if isinstance(answer, GatewayResponse):
            return answer
        self.sink = sink
        answer.relay(self.sink)
        assert self.sink.ended
        return GatewayResponse(status=answer.status, headers=answer.headers, body=self.sink.body)

    def counter(self, scope: str, period: BudgetPeriod = BudgetPeriod.DAY) -> tuple[Decimal, Decimal]:
        """(committed, spent) of the budget window NOW falls in: committed is spent plus holds in flight
        (what the root handed out less what the shards still hold); spent is the ledger's, in that scope."""
        window = DAY if period is BudgetPeriod.DAY else MONTH
        spent = sum(
            (
                entry.cost.total_usd
                for entry in self.ledger.entries.values()
                if _in_scope(scope, entry.key_id, entry.tenant, entry.feature)
            ),
            Decimal(0),
        )
        return self.budgets.in_use(scope, period, window), spent

    @property
    def key_scope(self) -> str:
        return f"key:{self.key.key_id}"


def _in_scope(scope: str, key_id: str | None, tenant: str, feature: str) -> bool:
    kind, _, name = scope.partition(":")
    if kind == "key":
        return key_id == name
    if kind == "tenant":
        return tenant == name
    return name == f"{tenant}/{feature}"


def make_world(
    *replies: UpstreamResponse | LiveScript | BaseException,
    daily_budget_usd: str | None = None,
    budgets: tuple[Budget, ...] = (),
    key_feature: str | None = None,
    tenant: str = "acme",
    features: tuple[FeatureConfig, ...] = (),
    embedder: FakeEmbedder | None = None,
) -> World:
    key_store = InMemoryKeyStore()
    budget_store = InMemoryBudgetStore(budgets)
    clock = FixedClock()
    prompt_cache = InMemoryPromptCacheStore(clock)
    feature_store = InMemoryFeatureStore(features)
    answer_store = InMemoryAnswerCacheStore()
    fake_embedder = embedder or FakeEmbedder()
    ledger = InMemoryLedgerStore(budgets=budget_store, prompt_cache=prompt_cache)
    upstream = ScriptedUpstream(list(replies) or [message_reply()])
    api_key, key = issue_key(
        key_store,
        tenant=tenant,
        feature=key_feature,
        daily_budget_usd=Decimal(daily_budget_usd) if daily_budget_usd else None,
        now=NOW,
    )
    gateway = Gateway(
        keys=key_store,
        budgets=budget_store,
        ledger=ledger,
        features=feature_store,
        prompt_cache=prompt_cache,
        answers=AnswerCache(
            answer_store,
            embedder=lambda: fake_embedder,
            hasher_for=lambda e: LshHasher(e.dimensions, tables=4, bits=8, seed=7),
            policy_for=lambda e: SemanticPolicy.fixed(e, SEMANTIC_THRESHOLD),
        ),
        upstream=upstream,
        clock=clock,
        monotonic=lambda: 0.0,  # DEADLINE is far ahead: only a test that says so runs out of time
    )
    return World(
        gateway,
        upstream,
        key_store,
        budget_store,
        ledger,
        api_key,
        key,
        feature_store,
        prompt_cache,
        answer_store,
        fake_embedder,
    )


def worst_case(body: bytes = BODY) -> Decimal:
    parsed = json.loads(body)
    return estimate_worst_case(parsed["model"], parsed, NOW)
