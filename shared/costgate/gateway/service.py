"""The gateway: one Claude request through key, budget, upstream, pricing and the ledger.

The request body goes upstream as the client sent it (bytes, never re-serialised) unless routing
chose its model or the prompt-cache policy added breakpoints; then the changed request is encoded
anew. The response comes back unchanged apart from costgate's `x-costgate-*` receipt headers. Before a
request is sent its ledger row is reserved with its budget hold (`costgate.accounting.requests`);
once Claude has answered it is priced from the response's own usage and its row settled exactly once;
nothing the client does afterwards (hanging up, a gateway timeout) can stop that, because the
invocation runs to its end, and a settle that never lands is the sweeper's (counted at the hold).
"""

import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from costgate.accounting.budgets import Budget, estimate_worst_case, key_budgets, make_hold
from costgate.accounting.holds import remaining_figure, tells_remaining
from costgate.accounting.ledger import LedgerEntry, ReservedRequest, new_request_id
from costgate.accounting.ports import BudgetStore, LedgerStore
from costgate.accounting.requests import (
    RequestHandle,
    abandon_request,
    budget_left_before,
    reserve_request,
    settle_request,
)
from costgate.accounting.services import record_request
from costgate.cache.answers import CACHE_HEADER, AnswerCache, Lookup, effective_mode, storable
from costgate.cache.model import CacheResult, StoredAnswer
from costgate.claude.ports import LiveStream, Upstream
from costgate.claude.transport import UpstreamResponse
from costgate.claude.usage import FinalUsage
from costgate.clock import Clock
from costgate.errors import (
    BudgetExceededError,
    CostgateError,
    NotFoundError,
    PricingError,
)
from costgate.gateway.admission import Admitted, GatewayRequest, GatewayResponse, admit
from costgate.gateway.features import FeatureConfig, PromptCacheMode, PromptCacheTtl
from costgate.gateway.keys import authenticate
from costgate.gateway.model import GatewayKey
from costgate.gateway.ports import FeatureStore, KeyStore, ResponseSink
from costgate.gateway.receipts import (
    REQUEST_ID_HEADER,
    input_cost_receipt,
    receipt_comment,
    receipt_document,
    receipt_headers,
)
from costgate.gateway.streaming import StreamedAnswer, StreamOutcome, error_event, relay_live
from costgate.gateway.wire import HOP_BY_HOP, checked, counted_tokens, encode, passthrough
from costgate.money import format_usd
from costgate.observability import (
    MetricDimension,
    MetricName,
    emit_count,
    emit_gateway_overhead,
    emit_upstream_latency,
    logger,
)
from costgate.pricing.cost import Cost, Strategy, measure_savings, price_usage, split_prompt_cache
from costgate.pricing.prices import PriceBook, default_price_book
from costgate.pricing.usage import TokenUsage, normalise_usage
from costgate.routing.ports import PromptCacheStore
from costgate.routing.prompt_cache import (
    CacheDecision,
    CachePlan,
    PrefixUse,
    TtlChoice,
    choose_ttl,
    plan_prompt_cache,
)
from costgate.routing.router import AUTO_MODEL, RouteDecision, route

# The ledger's own bound on a request id (costgate.accounting.ledger.LedgerEntry).
MAX_REQUEST_ID_CHARS = 256
# Prefixes whose gaps the policy observes: those it caches and those it judged not worth caching yet.
_COSTGATE_MANAGED = frozenset({CacheDecision.ADDED, CacheDecision.NOT_WORTH_IT})


@dataclass(frozen=True)
class _Planned:
    """What goes upstream: the model routing chose, the prompt-cache policy's plan, the bytes to send."""

    route: RouteDecision
    baseline_model: str | None  # the model a routed request is measured against; None when not routed
    lookup: Lookup  # what the answer cache found: nothing, or the request would not be planned
    cache: CachePlan
    body: dict[str, Any]
    raw: bytes

    @property
    def model(self) -> str:
        return self.route.model


class Gateway:
    def __init__(
        self,
        *,
        keys: KeyStore,
        budgets: BudgetStore,
        ledger: LedgerStore,
        features: FeatureStore,
        prompt_cache: PromptCacheStore,
        answers: AnswerCache,
        upstream: Upstream,
        clock: Clock,
        book: PriceBook | None = None,
        timer: Callable[[], float] = time.perf_counter,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """`timer` (seconds, monotonic) times the upstream call and the gateway's own overhead around it;
        `monotonic` is the clock of `GatewayRequest.deadline` (how long a stream may be read)."""
        self._timer = timer
        self._monotonic = monotonic
        self._keys = keys
        self._budgets = budgets
        self._ledger = ledger
        self._features = features
        self._prompt_cache = prompt_cache
        self._answers = answers
        self._upstream = upstream
        self._clock = clock
        self._book = book or default_price_book()
        # One thread for reads that can run while Claude is busy (a stream's budget header): off the path
        # to the first byte. Started on first use; Lambda runs one invocation at a time per environment.
        self._beside_claude = ThreadPoolExecutor(max_workers=1, thread_name_prefix="costgate-beside-claude")

    def create_message(self, request: GatewayRequest) -> "GatewayResponse | StreamedAnswer":
        """POST /v1/messages: route, plan caching, reserve the worst case, call Claude, record, settle.

        A request with `"stream": true` that Claude answers with a stream comes back as a StreamedAnswer:
        its headers now, its body relayed as Claude sends it, and the request settled at its end.
        """
        started = self._timer()
        admitted = admit(request, self._keys, self._clock, self._book)
        config = self._feature_config(admitted.feature)
        decision = route(admitted.body, config.route)
        if decision.routed:
            emit_count(MetricName.ROUTED_REQUESTS, dimension=(MetricDimension.ROUTE_TIER, _tier_name(decision)))
        lookup = self._look_up_answer(admitted, config, decision, request.headers)
        if lookup.answer is not None:
            return self._serve_cached(admitted, decision, lookup, lookup.answer)
        planned = self._plan(admitted, config, decision, lookup, request.body)
        handle = self._reserve(admitted, planned)
        streaming = admitted.body.get("stream") is True
        # A stream's headers say what budget was left before it: read while Claude prepares its answer.
        budget_left = self._beside_claude.submit(budget_left_before, self._budgets, handle) if streaming else None
        sent_at = self._timer()
        try:
            post = self._upstream.post_stream if streaming else self._upstream.post
            upstream = checked(post("/v1/messages", planned.raw, request.headers, request.deadline))
        except BaseException:
            abandon_request(self._ledger, self._budgets, handle)
            raise
        upstream_s = self._timer() - sent_at  # every attempt and retry wait: upstream time, not overhead
        if upstream.status == 200 and upstream.latency_s is not None:  # a fake Upstream may not time its answers
            emit_upstream_latency(planned.model, upstream.latency_s)
        if not isinstance(upstream, UpstreamResponse):
            assert budget_left is not None  # a live stream answers only a streaming request
            try:
                answer = self._stream(
                    request=request,
                    admitted=admitted,
                    config=config,
                    planned=planned,
                    live=upstream,
                    handle=handle,
                    budget_left=budget_left.result(),
                )
            except BaseException:
                upstream.close()
                abandon_request(self._ledger, self._budgets, handle)
                raise
            emit_gateway_overhead(self._timer() - started - upstream_s)  # to the first byte
            return answer
        if upstream.status != 200:
            abandon_request(self._ledger, self._budgets, handle)  # Claude bills no error
            response = passthrough(upstream, _receipt_without_cost(planned))
        else:
            response = self._settle(admitted, config, planned, upstream, handle)
        response.headers[REQUEST_ID_HEADER] = handle.request_id
        emit_gateway_overhead(self._timer() - started - upstream_s)
        return response

    def find_request(self, headers: Mapping[str, str], request_id: str) -> LedgerEntry:
        """GET /v1/requests/{request_id}: the ledger entry of one of the caller's tenant's requests.

        Another tenant's request is a 404 like a missing one: a key learns nothing of ids it does not own."""
        key = authenticate(self._keys, headers, self._clock.now())
        entry = self._ledger.find(request_id) if 0 < len(request_id) <= MAX_REQUEST_ID_CHARS else None
        if entry is None or entry.tenant != key.tenant:
            raise NotFoundError(f"no request {request_id!r} for this API key's tenant")
        return entry

    def count_tokens(self, request: GatewayRequest) -> GatewayResponse:
        """POST /v1/messages/count_tokens: as the Claude API (for the model routing picks), plus the input cost."""
        admitted = admit(request, self._keys, self._clock, self._book)
        config = self._feature_config(admitted.feature)
        decision = route(admitted.body, config.route)  # counted in RoutedRequests only for messages
        raw = request.body if decision.model == admitted.requested_model else encode(_with_model(admitted, decision))
        upstream = checked(self._upstream.post("/v1/messages/count_tokens", raw, request.headers, request.deadline))
        receipt = {"x-costgate-model": decision.model, "x-costgate-route-reason": decision.reason}
        tokens = counted_tokens(upstream) if upstream.status == 200 else None
        if tokens is not None:
            receipt.update(input_cost_receipt(decision.model, tokens, admitted.body, admitted.at, self._book))
        return passthrough(upstream, receipt)

    # --- the books: the request's row and its hold are reserved, settled and abandoned through
    # costgate.accounting.requests (one seam) ---

    def _reserve(self, admitted: Admitted, planned: _Planned) -> RequestHandle:
        """The request's row, reserved with its worst case held on every budget that applies (429, counted, if
        one cannot)."""
        budgets = self._applicable_budgets(admitted.key, admitted.feature)
        worst = estimate_worst_case(planned.model, planned.body, admitted.at, self._book)
        row = ReservedRequest(
            request_id=new_request_id(),
            at=admitted.at,
            tenant=admitted.key.tenant,
            feature=admitted.feature,
            model=planned.model,
            held_usd=worst,
            key_id=admitted.key.key_id,
            requested_model=admitted.requested_model,
            route_tier=_tier_name(planned.route) if planned.route.routed else None,
            route_reason=planned.route.reason if planned.route.routed else None,
        )
        hold = make_hold(admitted.key.key_id, admitted.feature, budgets, worst, admitted.at) if budgets else None
        if hold is not None:
            row = replace(row, hold_shard=hold.shard.label)
        try:
            return reserve_request(self._ledger, self._budgets, row, hold)
        except BudgetExceededError:
            emit_count(MetricName.BUDGET_REJECTIONS)
            raise

    def _settle_books(self, handle: RequestHandle, entry: LedgerEntry) -> tuple[bool, Decimal | None]:
        """Settle the row at the entry's exact cost; whether it landed, and the budget left after it when
        that can be told without reading a sharded budget's roots (costgate.accounting.holds)."""
        hold = handle.hold
        settlement = settle_request(self._ledger, self._budgets, handle, entry, read_roots=tells_remaining(hold))
        if hold is None or not settlement.recorded:
            return settlement.recorded, None
        return True, remaining_figure(hold, settlement.headroom, settlement.roots)

    # --- streams ---

    def _stream(
        self,
        *,
        request: GatewayRequest,
        admitted: Admitted,
        config: FeatureConfig,
        planned: _Planned,
        live: LiveStream,
        handle: RequestHandle,
        budget_left: Decimal | None,
    ) -> StreamedAnswer:
        """Claude's stream relayed live; priced at message_stop, the receipt sent, the stream ended, then settled."""
        request_id = handle.request_id
        headers = {name: value for name, value in live.headers.items() if name not in HOP_BY_HOP}
        headers.update(_receipt_without_cost(planned))
        del headers["x-costgate-cost-usd"], headers["x-costgate-baseline-cost-usd"]  # known only at the end
        headers[REQUEST_ID_HEADER] = request_id
        headers["x-costgate-price-version"] = self._book.price_version(self._book.rates_at(planned.model, admitted.at))
        if budget_left is not None:
            headers["x-costgate-budget-remaining-before-usd"] = format_usd(budget_left)

        content_type = live.headers.get("content-type", "text/event-stream")

        def produce(sink: ResponseSink) -> None:
            keep = planned.lookup.result is CacheResult.MISS
            outcome = relay_live(live, sink, deadline=request.deadline, keep_body=keep, monotonic=self._monotonic)
            self._finish_stream(
                admitted=admitted,
                config=config,
                planned=planned,
                handle=handle,
                upstream_request_id=live.headers.get("request-id"),
                outcome=outcome,
                sink=sink,
                content_type=content_type,
            )

        return StreamedAnswer(headers, produce)

    def _finish_stream(
        self,
        *,
        admitted: Admitted,
        config: FeatureConfig,
        planned: _Planned,
        handle: RequestHandle,
        upstream_request_id: str | None,
        outcome: StreamOutcome,
        sink: ResponseSink,
        content_type: str,
    ) -> None:
        """After the relay: an error event if the stream broke, the receipt, the end, then the books, once."""
        request_id = handle.request_id
        if outcome.failure is not None:
            emit_count(MetricName.STREAM_ERRORS)
            if not outcome.relayed_error:
                sink.write(
                    error_event("api_error", "the stream from the Claude API broke off; what it generated is billed")
                )
        if sink.client_gone:
            emit_count(MetricName.CLIENT_DISCONNECTS)
            logger.info("the client went away; the stream was read to its end", extra={"request_id": request_id})
        if outcome.usage is None and outcome.failure is not None and not outcome.unreadable:
            # Claude reported no usage before the stream failed (an error before message_start): nothing
            # is billed, so the hold goes back.
            sink.end()
            abandon_request(self._ledger, self._budgets, handle)
            return
        try:
            entry, cost = self._price(admitted, planned, request_id, outcome.usage, upstream_request_id)
        except CostgateError as error:
            sink.end()
            self._unpriced(request_id, error, outcome.usage)
            return
        document = receipt_document(entry)
        document["complete"] = outcome.complete
        sink.write(receipt_comment(document))
        sink.end()
        self._settle_books(handle, entry)
        if outcome.body is not None:
            self._remember_answer(admitted, config, planned, content_type=content_type, body=outcome.body, cost=cost)

    def _look_up_answer(
        self, admitted: Admitted, config: FeatureConfig, decision: RouteDecision, headers: Mapping[str, str]
    ) -> Lookup:
        mode = effective_mode(headers.get(CACHE_HEADER), config.answer_cache)
        lookup = self._answers.lookup(
            tenant=admitted.key.tenant,
            model=decision.model,
            body=admitted.body,
            mode=mode,
            threshold=config.semantic_threshold,
            now=admitted.at,
        )
        emit_count(MetricName.ANSWER_CACHE_LOOKUPS, dimension=(MetricDimension.RESULT, lookup.result.value))
        if lookup.guard_rejection is not None:
            emit_count(MetricName.ANSWER_CACHE_GUARD_REJECTIONS)
        if lookup.error is not None:
            logger.error("answer cache: semantic lookup unavailable", extra={"reason": lookup.error})
            emit_count(MetricName.ANSWER_CACHE_ERRORS)
        logger.debug("answer cache", extra={"result": lookup.result.value, "detail": lookup.detail})
        return lookup

    def _serve_cached(
        self, admitted: Admitted, decision: RouteDecision, lookup: Lookup, answer: StoredAnswer
    ) -> "GatewayResponse | StreamedAnswer":
        """A stored answer: $0 upstream, recorded with the original answer's cost as this request's saving.

        A stored stream (only a streaming request can hit one: `stream` is part of the key) is replayed
        as the stream it was, its receipt after it as after any stream."""
        request_id = new_request_id()
        cost = price_usage(answer.model, TokenUsage(), admitted.at, self._book)
        entry = LedgerEntry(
            request_id=request_id,
            at=admitted.at,
            tenant=admitted.key.tenant,
            feature=admitted.feature,
            usage=TokenUsage(),
            cost=cost,
            baseline_cost_usd=answer.cost_usd,
            savings={Strategy.ANSWER_CACHE: answer.cost_usd},
            key_id=admitted.key.key_id,
            requested_model=admitted.requested_model,
            route_tier=_tier_name(decision) if decision.routed else None,
            route_reason=decision.reason if decision.routed else None,
        )
        record_request(self._ledger, entry)
        receipt = {
            "x-costgate-cost-usd": format_usd(cost.total_usd),
            "x-costgate-baseline-cost-usd": format_usd(answer.cost_usd),
            "x-costgate-savings-answer-cache-usd": format_usd(answer.cost_usd),
            "x-costgate-model": answer.model,
            "x-costgate-route-reason": decision.reason,
            "x-costgate-prompt-cache": "not-sent: answered from the answer cache",
            "x-costgate-cache": lookup.result.value,
            "x-costgate-price-version": cost.price_version,
            REQUEST_ID_HEADER: request_id,
        }
        headers = {"content-type": answer.content_type, "request-id": request_id, **receipt}
        if not answer.content_type.startswith("text/event-stream"):
            return GatewayResponse(status=200, headers=headers, body=answer.body)

        def replay(sink: ResponseSink) -> None:
            sink.write(answer.body)
            sink.write(receipt_comment({**receipt_document(entry), "complete": True}))
            sink.end()

        return StreamedAnswer(headers, replay)

    def _remember_answer(
        self,
        admitted: Admitted,
        config: FeatureConfig,
        planned: _Planned,
        *,
        content_type: str,
        body: bytes,
        cost: Cost,
    ) -> None:
        """Store a fresh, complete answer for later hits; a failure here must not fail the answered request."""
        lookup = planned.lookup
        if lookup.result is not CacheResult.MISS or not storable(200, content_type, body):
            return
        answer = StoredAnswer(
            body=body,
            content_type=content_type,
            model=cost.model,
            cost_usd=cost.total_usd,
            question=lookup.semantic.question if lookup.semantic is not None else "",
            created_at=admitted.at,
            expires_at=admitted.at + timedelta(seconds=config.answer_cache_ttl_s),
        )
        try:
            self._answers.remember(lookup, tenant=admitted.key.tenant, feature=admitted.feature, answer=answer)
        except Exception:  # noqa: BLE001 - the client has its answer; storing it is best effort, made loud here
            logger.exception("answer cache: could not store the answer")
            emit_count(MetricName.ANSWER_CACHE_ERRORS)

    def _plan(
        self, admitted: Admitted, config: FeatureConfig, decision: RouteDecision, lookup: Lookup, raw: bytes
    ) -> _Planned:
        baseline_model: str | None = None
        if decision.routed:
            baseline_model = (
                config.baseline_model if admitted.requested_model == AUTO_MODEL else admitted.requested_model
            )
            # The baseline must be priceable for this request (speed, geography) before anything is spent.
            # Only speed and geography decide that; no second worst-case estimate of the whole body.
            speed = "fast" if admitted.body.get("speed") == "fast" else "standard"
            geo = admitted.body.get("inference_geo")
            no_tokens = TokenUsage(speed=speed, inference_geo=geo if isinstance(geo, str) else None)
            price_usage(baseline_model, no_tokens, admitted.at, self._book)
        body = _with_model(admitted, decision)
        cache = plan_prompt_cache(
            body,
            model=decision.model,
            enabled=config.prompt_cache is PromptCacheMode.AUTO,
            minimum_tokens=self._book.cache_minimum_tokens(decision.model),
            ttl_for=lambda: self._choose_ttl(config, decision.model, admitted.at),
        )
        emit_count(MetricName.PROMPT_CACHE_DECISIONS, dimension=(MetricDimension.DECISION, cache.decision.value))
        final = cache.body if cache.body is not None else body
        return _Planned(
            route=decision,
            baseline_model=baseline_model,
            lookup=lookup,
            cache=cache,
            body=final,
            raw=raw if final is admitted.body else encode(final),
        )

    def _feature_config(self, feature: str) -> FeatureConfig:
        return self._features.get(feature) or FeatureConfig(feature)

    def _choose_ttl(self, config: FeatureConfig, model: str, at: datetime) -> TtlChoice:
        if config.prompt_cache_ttl is PromptCacheTtl.FIVE_MINUTES:
            return TtlChoice(ttl="5m", reason="5m: configured")
        if config.prompt_cache_ttl is PromptCacheTtl.ONE_HOUR:
            return TtlChoice(ttl="1h", reason="1h: configured")
        return choose_ttl(
            self._prompt_cache.gap_histogram(config.feature),
            self._book.rates_at(model, at).cache_read_multiplier,
            self._book.cache_write_multipliers,
        )

    def _applicable_budgets(self, key: GatewayKey, feature: str) -> list[Budget]:
        own = key_budgets(key.key_id, key.daily_budget_usd, key.monthly_budget_usd)
        return own + self._budgets.definitions(key.tenant, feature)

    def _settle(
        self,
        admitted: Admitted,
        config: FeatureConfig,
        planned: _Planned,
        upstream: UpstreamResponse,
        handle: RequestHandle,
    ) -> GatewayResponse:
        found = upstream.final_usage()
        request_id = handle.request_id
        try:
            entry, cost = self._price(admitted, planned, request_id, found, upstream.headers.get("request-id"))
        except CostgateError as error:
            self._unpriced(request_id, error, found)
            unpriced = {"x-costgate-cost-usd": "unpriced", "x-costgate-baseline-cost-usd": "unpriced"}
            return passthrough(upstream, {**_receipt_without_cost(planned), **unpriced})
        _, remaining = self._settle_books(handle, entry)
        content_type = upstream.headers.get("content-type", "application/json")
        self._remember_answer(admitted, config, planned, content_type=content_type, body=upstream.body, cost=cost)
        receipt = _receipt(planned, entry)
        if remaining is not None:
            receipt["x-costgate-budget-remaining-usd"] = format_usd(remaining)
        return passthrough(upstream, receipt)

    def _price(
        self,
        admitted: Admitted,
        planned: _Planned,
        request_id: str,
        found: FinalUsage | None,
        upstream_request_id: str | None,
    ) -> tuple[LedgerEntry, Cost]:
        """The ledger entry of an answered request, priced from the usage Claude reported (CostgateError if it
        cannot be priced). No I/O: nothing is recorded here."""
        if found is None:
            raise PricingError("the response carries no readable usage")
        if not found.complete:
            # Claude bills what it generated before the stream broke off: the last usage it sent.
            logger.warning("stream ended early; billed on its last usage", extra={"request_id": request_id})
        model = found.model or planned.model
        usage = normalise_usage(found.usage)
        cost = price_usage(model, usage, admitted.at, self._book)
        savings = measure_savings(model, usage, cost, admitted.at, self._book, baseline_model=planned.baseline_model)
        entry = LedgerEntry(
            request_id=request_id,
            at=admitted.at,
            tenant=admitted.key.tenant,
            feature=admitted.feature,
            usage=usage,
            cost=cost,
            baseline_cost_usd=savings.baseline_usd,
            savings=savings.by_strategy,
            key_id=admitted.key.key_id,
            requested_model=admitted.requested_model,
            route_tier=_tier_name(planned.route) if planned.route.routed else None,
            route_reason=planned.route.reason if planned.route.routed else None,
            prompt_cache=self._prefix_use(planned, model, usage, cost, admitted.at),
            upstream_request_id=upstream_request_id,
        )
        return entry, cost

    def _unpriced(self, request_id: str, error: CostgateError, found: FinalUsage | None) -> None:
        """The client has its answer; failing it now would waste what was spent. The row stays reserved with
        its hold (budgets stay conservative) until the sweeper counts it at the hold, flagged; the gap is made
        loud, the usage logged to reconcile by hand."""
        logger.error(
            "response could not be priced",
            extra={"request_id": request_id, "reason": str(error), "usage": found.usage if found else None},
        )
        emit_count(MetricName.UNPRICED_RESPONSES)

    def _prefix_use(
        self, planned: _Planned, model: str, usage: TokenUsage, cost: Cost, at: datetime
    ) -> PrefixUse | None:
        """The request's use of its cached prefix, when costgate or the client cached one."""
        cache = planned.cache
        if cache.prefix_key is None:
            return None
        write_premium, read_saved = split_prompt_cache(model, usage, cost, at, self._book)
        return PrefixUse(
            prefix_key=cache.prefix_key,
            model=model,
            managed_by="costgate" if cache.decision in _COSTGATE_MANAGED else "client",
            ttl=cache.ttl,
            write_tokens=usage.cache_write_tokens,
            read_tokens=usage.cache_read_tokens,
            write_premium_usd=write_premium,
            read_saved_usd=read_saved,
        )


def _receipt(planned: _Planned, entry: LedgerEntry) -> dict[str, str]:
    return {**_receipt_without_cost(planned), **receipt_headers(entry)}


def _receipt_without_cost(planned: _Planned) -> dict[str, str]:
    """What every answer says, priced or not."""
    return {
        "x-costgate-cost-usd": "0",
        "x-costgate-baseline-cost-usd": "0",
        "x-costgate-model": planned.model,
        "x-costgate-route-reason": planned.route.reason,
        "x-costgate-prompt-cache": planned.cache.reason,
        "x-costgate-cache": planned.lookup.result.value,
    }


def _tier_name(decision: RouteDecision) -> str:
    return decision.tier.name.lower() if decision.tier is not None else "none"


def _with_model(admitted: Admitted, decision: RouteDecision) -> dict[str, Any]:
    """The request with the model routing chose (the same object when it is the one the client sent)."""
    if decision.model == admitted.requested_model:
        return admitted.body
    return {**admitted.body, "model": decision.model}
