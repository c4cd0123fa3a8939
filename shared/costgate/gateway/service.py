"""The gateway: one Claude request through key, budget, upstream, pricing and the ledger.

The request body goes upstream as the client sent it (bytes, never re-serialised) unless routing
chose its model or the prompt-cache policy added breakpoints; then the changed request is encoded
anew. The response comes back unchanged apart from costgate's `x-costgate-*` receipt headers. Once a request has
reached Claude it is priced from the response's own usage and recorded exactly once, with its
budget reservation settled in the same transaction; nothing the client does afterwards (hanging up,
a gateway timeout) can stop that, because the invocation runs to its end.
"""

import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from costgate.accounting.budgets import Budget, Reservation, estimate_worst_case, key_budgets
from costgate.accounting.ledger import LedgerEntry, RecordOutcome, validate_tag
from costgate.accounting.ports import BudgetStore, LedgerStore
from costgate.accounting.services import record_request, release_reservation, remaining_after, reserve_budget
from costgate.cache.answers import CACHE_HEADER, AnswerCache, Lookup, effective_mode, storable
from costgate.cache.model import CacheResult, StoredAnswer
from costgate.claude.ports import Upstream
from costgate.claude.transport import UpstreamResponse
from costgate.clock import Clock
from costgate.errors import (
    BudgetExceededError,
    CostgateError,
    ForbiddenError,
    InvalidRequestError,
    PricingError,
    RequestTooLargeError,
    UpstreamError,
)
from costgate.gateway.features import FeatureConfig, PromptCacheMode, PromptCacheTtl
from costgate.gateway.keys import authenticate
from costgate.gateway.model import GatewayKey
from costgate.gateway.ports import FeatureStore, KeyStore
from costgate.money import format_usd
from costgate.observability import (
    MetricDimension,
    MetricName,
    emit_count,
    emit_gateway_overhead,
    emit_upstream_latency,
    logger,
)
from costgate.pricing.cost import Cost, Savings, Strategy, measure_savings, price_usage, split_prompt_cache
from costgate.pricing.prices import PriceBook, default_price_book
from costgate.pricing.usage import TokenUsage, normalise_usage
from costgate.routing.ports import PromptCacheStore
from costgate.routing.prompt_cache import (
    CacheDecision,
    CachePlan,
    GapBucket,
    PrefixUse,
    TtlChoice,
    choose_ttl,
    gap_bucket,
    plan_prompt_cache,
)
from costgate.routing.router import AUTO_MODEL, RouteDecision, route

# The Claude API's own limit for a Messages request (API Gateway REST stops at 10 MB before this).
MAX_BODY_BYTES = 32 * 1024 * 1024
DEFAULT_FEATURE = "default"
# Far deeper than any real request (tool schemas included); bounds the recursion of everything after.
MAX_JSON_DEPTH = 64
# Prefixes whose gaps the policy observes: those it caches and those it judged not worth caching yet.
_COSTGATE_MANAGED = frozenset({CacheDecision.ADDED, CacheDecision.NOT_WORTH_IT})
_SAVINGS_HEADERS = {
    Strategy.ROUTING: "x-costgate-savings-routing-usd",
    Strategy.PROMPT_CACHE: "x-costgate-savings-prompt-cache-usd",
}
# Headers that describe one hop, not the message: never copied from the upstream response.
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "te", "trailer", "upgrade", "date", "server"}
)


@dataclass(frozen=True)
class GatewayRequest:
    body: bytes
    headers: Mapping[str, str]  # lower-case names
    deadline: float  # time.monotonic() instant after which no upstream attempt may start


@dataclass(frozen=True)
class GatewayResponse:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class _Admitted:
    key: GatewayKey
    body: dict[str, Any]
    requested_model: str  # as the client sent it: a model id or "auto"
    feature: str
    at: datetime


@dataclass(frozen=True)
class _Planned:
    """What goes upstream: the model routing chose, the prompt-cache policy's plan, the bytes to send."""

    route: RouteDecision
    baseline_model: str | None  # the model a routed request is measured against; None when not routed
    lookup: Lookup  # what the answer cache found: nothing, or the request would not be planned
    cache: CachePlan
    gap: GapBucket | None
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
    ) -> None:
        """`timer` (seconds, monotonic) times the upstream call and the gateway's own overhead around it."""
        self._timer = timer
        self._keys = keys
        self._budgets = budgets
        self._ledger = ledger
        self._features = features
        self._prompt_cache = prompt_cache
        self._answers = answers
        self._upstream = upstream
        self._clock = clock
        self._book = book or default_price_book()

    def create_message(self, request: GatewayRequest) -> GatewayResponse:
        """POST /v1/messages: route, plan caching, reserve the worst case, call Claude, record, settle."""
        started = self._timer()
        admitted = self._admit(request)
        config = self._feature_config(admitted.feature)
        decision = route(admitted.body, config.route)
        if decision.routed:
            emit_count(MetricName.ROUTED_REQUESTS, dimension=(MetricDimension.ROUTE_TIER, _tier_name(decision)))
        lookup = self._look_up_answer(admitted, config, decision, request.headers)
        if lookup.answer is not None:
            return self._serve_cached(admitted, decision, lookup, lookup.answer)
        planned = self._plan(admitted, config, decision, lookup, request.body)
        budgets = self._applicable_budgets(admitted.key, admitted.feature)
        worst = estimate_worst_case(planned.model, planned.body, admitted.at, self._book)
        try:
            reservation = reserve_budget(self._budgets, budgets, worst, admitted.at)
        except BudgetExceededError:
            emit_count(MetricName.BUDGET_REJECTIONS)
            try:
                self._ledger.count_rejection(admitted.at, admitted.key.tenant, admitted.feature)
            except Exception:  # noqa: BLE001 - the client's 429 must not become a 500; a lost count is made loud here
                logger.exception("ledger: could not count a budget rejection", extra={"feature": admitted.feature})
            raise
        sent_at = self._timer()
        try:
            upstream = _checked(self._upstream.post("/v1/messages", planned.raw, request.headers, request.deadline))
        except BaseException:
            release_reservation(self._budgets, reservation)
            raise
        upstream_s = self._timer() - sent_at  # every attempt and retry wait: upstream time, not overhead
        if upstream.status != 200:
            release_reservation(self._budgets, reservation)
            response = _passthrough(upstream, _receipt_without_cost(planned))
        else:
            if upstream.latency_s is not None:  # an Upstream that does not time its answers (a fake) has none
                emit_upstream_latency(planned.model, upstream.latency_s)
            response = self._settle(admitted, config, planned, upstream, reservation)
        emit_gateway_overhead(self._timer() - started - upstream_s)
        return response

    def count_tokens(self, request: GatewayRequest) -> GatewayResponse:
        """POST /v1/messages/count_tokens: as the Claude API (for the model routing picks), plus the input cost."""
        admitted = self._admit(request)
        config = self._feature_config(admitted.feature)
        decision = route(admitted.body, config.route)  # counted in RoutedRequests only for messages
        raw = request.body if decision.model == admitted.requested_model else _encode(_with_model(admitted, decision))
        upstream = _checked(self._upstream.post("/v1/messages/count_tokens", raw, request.headers, request.deadline))
        receipt = {"x-costgate-model": decision.model, "x-costgate-route-reason": decision.reason}
        tokens = _counted_tokens(upstream) if upstream.status == 200 else None
        if tokens is not None:
            # Priced as the request would bill its prompt: bands, fast mode and geo included.
            usage: dict[str, Any] = {
                "input_tokens": tokens,
                **{k: admitted.body[k] for k in ("speed", "inference_geo") if k in admitted.body},
            }
            try:
                estimate = price_usage(decision.model, usage, admitted.at, self._book)
            except CostgateError as error:
                logger.info("count_tokens: no estimate", extra={"reason": str(error)})
            else:
                receipt["x-costgate-estimated-input-cost-usd"] = format_usd(estimate.total_usd)
                receipt["x-costgate-price-version"] = estimate.price_version
        return _passthrough(upstream, receipt)

    def _look_up_answer(
        self, admitted: _Admitted, config: FeatureConfig, decision: RouteDecision, headers: Mapping[str, str]
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
        self, admitted: _Admitted, decision: RouteDecision, lookup: Lookup, answer: StoredAnswer
    ) -> GatewayResponse:
        """A stored answer: $0 upstream, recorded with the original answer's cost as this request's saving."""
        request_id = f"costgate-{uuid.uuid4()}"
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
        }
        headers = {"content-type": answer.content_type, "request-id": request_id, **receipt}
        return GatewayResponse(status=200, headers=headers, body=answer.body)

    def _remember_answer(
        self, admitted: _Admitted, config: FeatureConfig, planned: _Planned, upstream: UpstreamResponse, cost: Cost
    ) -> None:
        """Store a fresh, complete answer for later hits; a failure here must not fail the answered request."""
        lookup = planned.lookup
        content_type = upstream.headers.get("content-type", "application/json")
        if lookup.result is not CacheResult.MISS or not storable(upstream.status, content_type, upstream.body):
            return
        answer = StoredAnswer(
            body=upstream.body,
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
        self, admitted: _Admitted, config: FeatureConfig, decision: RouteDecision, lookup: Lookup, raw: bytes
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
        gap = None
        if cache.decision in _COSTGATE_MANAGED and cache.prefix_key is not None:
            gap = gap_bucket(self._prompt_cache.last_seen(admitted.feature, cache.prefix_key), admitted.at)
        final = cache.body if cache.body is not None else body
        return _Planned(
            route=decision,
            baseline_model=baseline_model,
            lookup=lookup,
            cache=cache,
            gap=gap,
            body=final,
            raw=raw if final is admitted.body else _encode(final),
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

    def _admit(self, request: GatewayRequest) -> _Admitted:
        if len(request.body) > MAX_BODY_BYTES:
            raise RequestTooLargeError(f"request body is {len(request.body):,} bytes; the limit is {MAX_BODY_BYTES:,}")
        now = self._clock.now()
        key = authenticate(self._keys, request.headers, now)
        body = _parse_body(request.body)
        _check_forwarded_headers(request.headers)
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise InvalidRequestError('model: field required (a Claude model id such as claude-sonnet-5-5, or "auto")')
        if model != AUTO_MODEL:
            self._book.resolve(model)  # an unknown model is an error before anything is spent
        asked = request.headers.get("x-costgate-feature") or None
        if key.feature is not None and asked is not None and asked != key.feature:
            # A key bound to a feature must not slip out of that feature's budget by relabelling.
            raise ForbiddenError(
                f"this API key is bound to feature {key.feature!r}; x-costgate-feature cannot change it"
            )
        feature = asked or key.feature or DEFAULT_FEATURE
        return _Admitted(
            key=key, body=body, requested_model=model, feature=validate_tag(feature, "x-costgate-feature"), at=now
        )

    def _applicable_budgets(self, key: GatewayKey, feature: str) -> list[Budget]:
        own = key_budgets(key.key_id, key.daily_budget_usd, key.monthly_budget_usd)
        return own + self._budgets.definitions(key.tenant, feature)

    def _settle(
        self,
        admitted: _Admitted,
        config: FeatureConfig,
        planned: _Planned,
        upstream: UpstreamResponse,
        reservation: Reservation,
    ) -> GatewayResponse:
        found = upstream.final_usage()
        request_id = upstream.headers.get("request-id") or f"costgate-{uuid.uuid4()}"
        try:
            if found is None:
                raise PricingError("the response carries no readable usage")
            if not found.complete:
                # Claude bills what it generated before the stream broke off: the last usage it sent.
                logger.warning("stream ended early; billed on its last usage", extra={"request_id": request_id})
            model = found.model or planned.model
            usage = normalise_usage(found.usage)
            cost = price_usage(model, usage, admitted.at, self._book)
            savings = measure_savings(
                model, usage, cost, admitted.at, self._book, baseline_model=planned.baseline_model
            )
        except CostgateError as error:
            # The client has its answer; failing it now would waste what was spent. Keep the
            # reservation held (budgets stay conservative) and make the gap loud instead.
            # The usage goes into the log so the request can still be reconciled by hand.
            logger.error(
                "response could not be priced",
                extra={"request_id": request_id, "reason": str(error), "usage": found.usage if found else None},
            )
            emit_count(MetricName.UNPRICED_RESPONSES)
            unpriced = {"x-costgate-cost-usd": "unpriced", "x-costgate-baseline-cost-usd": "unpriced"}
            return _passthrough(upstream, {**_receipt_without_cost(planned), **unpriced})

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
        )
        if record_request(self._ledger, entry, reservation.holds) is RecordOutcome.DUPLICATE:
            release_reservation(self._budgets, reservation)
        else:
            self._remember_answer(admitted, config, planned, upstream, cost)
        receipt = _receipt(planned, cost, savings)
        if reservation.holds:
            remaining = remaining_after(self._budgets, reservation)
            if remaining is not None:
                receipt["x-costgate-budget-remaining-usd"] = format_usd(remaining)
        return _passthrough(upstream, receipt)

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
            gap=planned.gap,
            write_tokens=usage.cache_write_tokens,
            read_tokens=usage.cache_read_tokens,
            write_premium_usd=write_premium,
            read_saved_usd=read_saved,
        )


def _checked(upstream: UpstreamResponse) -> UpstreamResponse:
    """Claude refusing costgate's own key is costgate's fault, not the client's: never a 401 to them."""
    if upstream.status in (401, 403):
        logger.error("the Claude API rejected costgate's key", extra={"status": upstream.status})
        raise UpstreamError(f"costgate is misconfigured: the Claude API rejected its API key ({upstream.status})")
    return upstream


def _parse_body(raw: bytes) -> dict[str, Any]:
    """The request as a JSON object of valid UTF-8 text, nested no deeper than MAX_JSON_DEPTH."""
    try:
        # Decoded explicitly: json.loads(bytes) would also accept UTF-16 and UTF-32.
        text = raw.decode("utf-8")
        body = json.loads(text)
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise InvalidRequestError(f"request body is not valid JSON (UTF-8): {str(error)[:200]}") from None
    if not isinstance(body, dict):
        raise InvalidRequestError("request body must be a JSON object")
    _check_depth(body)
    # Valid UTF-8 holds no surrogates; only a \uD800-\uDFFF escape can bring one in, so the costly
    # re-encoding check runs only for bodies that contain such an escape.
    if "\\ud" in text.lower():
        try:
            json.dumps(body, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidRequestError("request body holds an unpaired surrogate escape (such as \\ud800)") from None
    return body


def _check_depth(value: Any) -> None:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise InvalidRequestError(f"request body is nested more than {MAX_JSON_DEPTH} levels deep")
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))


def _check_forwarded_headers(headers: Mapping[str, str]) -> None:
    for name in ("anthropic-version", "anthropic-beta"):
        value = headers.get(name)
        if value is not None and not value.isascii():
            raise InvalidRequestError(f"{name} header must be ASCII")


def _counted_tokens(upstream: UpstreamResponse) -> int | None:
    try:
        answer = json.loads(upstream.body)
    except (ValueError, RecursionError):
        return None
    tokens = answer.get("input_tokens") if isinstance(answer, dict) else None
    return tokens if isinstance(tokens, int) and not isinstance(tokens, bool) and tokens >= 0 else None


def _receipt(planned: _Planned, cost: Cost, savings: Savings) -> dict[str, str]:
    receipt = {
        **_receipt_without_cost(planned),
        "x-costgate-model": cost.model,
        "x-costgate-cost-usd": format_usd(cost.total_usd),
        "x-costgate-baseline-cost-usd": format_usd(savings.baseline_usd),
        "x-costgate-price-version": cost.price_version,
    }
    for strategy in (Strategy.ROUTING, Strategy.PROMPT_CACHE):
        if strategy in savings.by_strategy:
            receipt[_SAVINGS_HEADERS[strategy]] = format_usd(savings.by_strategy[strategy])
    return receipt


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


def _with_model(admitted: _Admitted, decision: RouteDecision) -> dict[str, Any]:
    """The request with the model routing chose (the same object when it is the one the client sent)."""
    if decision.model == admitted.requested_model:
        return admitted.body
    return {**admitted.body, "model": decision.model}


def _encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _passthrough(upstream: UpstreamResponse, receipt: Mapping[str, str]) -> GatewayResponse:
    headers = {name: value for name, value in upstream.headers.items() if name not in _HOP_BY_HOP}
    return GatewayResponse(status=upstream.status, headers={**headers, **receipt}, body=upstream.body)
