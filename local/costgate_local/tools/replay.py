"""Replay a recorded request log under another policy: what the same traffic would have cost.

Pure: log lines in, exact Decimal bills out; no I/O, no clock.

The log
    One JSON object per line: `{"at": ISO time with offset, "tenant", "feature", "request": {the Messages
    API body the client sent, "model" possibly "auto"}, "model": the model that answered (response.model),
    "usage": {the response's usage object}}`. Blank lines are skipped; any other malformed line raises an
    InvalidRequestError naming its line number. Usage is read only by `normalise_usage` and priced only by
    `price_usage`: an unknown model is an error, never a cost of 0.

A policy
    Comma-separated `name=value` settings; a setting not given keeps what the log recorded ("as logged").
    Each request is re-priced from its logged token counts, in time order (ties keep log order), in the
    order the gateway applies them: routing → answer cache → prompt cache → batch tier → price date.

    routing=off        a request that asked for `model: "auto"` is priced on the medium-tier default
                       (`DEFAULT_MODELS[Tier.MEDIUM]`), the model a deployment without routing would use
    routing=on         an auto request is routed by `route(body, RoutePolicy())`
    routing=S/M/C      an auto request is routed with these simple/medium/complex models (each must have a price)
    routing=all        every request is routed with the default tiers, named models too: adopting `"auto"`
        Every variant re-prices the SAME token counts on the new model, as `measure_savings` does for
        routing: what another model would really have produced is unknowable. A named model keeps the
        model that answered it, except under `all`.
    answer-cache=exact[:<seconds>]
                       a request whose exact-cache key (`answer_cache.exact_key`: tenant, the model after
                       routing, and the whole body but `model` and `metadata`, its last turn's whitespace
                       and trailing punctuation normalised) equals that of a request answered less than the
                       TTL before (default 86,400 s) costs 0. A hit does not refresh the entry, and is not a
                       use of the prompt cache: it never reaches Claude. The log does not say whether an
                       answer was complete, so every answered request is taken as stored.
    answer-cache=off   as logged (the log holds no hits)
    prompt-cache=off   cache writes and reads priced as plain input (`TokenUsage.without_cache`)
    prompt-cache=5m|1h costgate's prompt-cache policy simulated on every request, whatever the client asked
                       for (its own logged cache usage is dropped first): the stable prefix is tools +
                       system. With no prefix, or one whose size is below the model's minimum
                       (`PriceBook.cache_minimum_tokens`), nothing is cached. Otherwise the first use of
                       the prefix (`prefix_key`: the model after routing, tools, system) and any use more
                       than the TTL after its previous use writes it; a use within the TTL (gap <= TTL)
                       reads it, and a read refreshes the TTL as the API does. min(prefix size, the
                       request's prompt tokens) move from input to the write or read category. The prefix
                       size is what Claude reported as cached (written or read) for the same prefix in the
                       log, the latest such request's; for a prefix never cached in the log it is an
                       ESTIMATE (`estimate_prefix_tokens`, which errs high), not a token count. Only the
                       prefix is simulated: the conversation breakpoint is not.
    batch=F1+F2        those features' requests priced at `service_tier: batch` (at standard speed: fast
                       mode does not exist in batches); other requests keep their logged tier
    batch=all | off    every request at batch tier | none (a request logged at batch tier goes standard)
    price-date=D       every request priced with the rates in effect on D (UTC) instead of at its own time;
                       a model without a price on D is an error naming it

`compare_policies` also splits each policy's change by setting: each setting's delta is the bill with that
setting ALONE applied on top of the log, minus the as-logged bill. Settings interact (a cheaper model makes
the batch discount smaller in dollars), so these need not add up to the whole change; the rest is reported
as the interaction.
"""

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Context, Decimal, Inexact, localcontext
from typing import Any, Literal

from costgate.cache.answers import exact_key
from costgate.errors import CostgateError, InvalidRequestError, UnknownModelError
from costgate.pricing.cost import price_usage
from costgate.pricing.prices import PriceBook, default_price_book
from costgate.pricing.usage import TokenUsage, normalise_usage
from costgate.routing.prompt_cache import estimate_prefix_tokens, prefix_key
from costgate.routing.router import AUTO_MODEL, DEFAULT_MODELS, RoutePolicy, Tier, route

type PromptCacheSetting = Literal["off", "5m", "1h"]
type CacheEvent = Literal["write", "read"]

DEFAULT_ANSWER_CACHE_TTL = timedelta(hours=24)
SETTING_NAMES = ("prompt-cache", "routing", "batch", "answer-cache", "price-date")
DEFAULT_WHAT_IFS = ("prompt-cache=off,routing=off,batch=off", "prompt-cache=5m", "routing=all")

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_EXACT = Context(prec=60, traps=[Inexact])
_TTLS: Mapping[PromptCacheSetting, timedelta] = {"5m": timedelta(minutes=5), "1h": timedelta(hours=1)}
_DEFAULT_TIERS = (DEFAULT_MODELS[Tier.SIMPLE], DEFAULT_MODELS[Tier.MEDIUM], DEFAULT_MODELS[Tier.COMPLEX])


@dataclass(frozen=True)
class LoggedRequest:
    """One line of a request log, validated; `usage` already normalised."""

    line: int
    at: datetime
    tenant: str
    feature: str
    request: Mapping[str, Any]
    model: str  # the model that answered (response.model)
    usage: TokenUsage

    @property
    def requested_model(self) -> str:
        model = self.request.get("model")
        return model if isinstance(model, str) else ""


def parse_log(lines: Iterable[str]) -> tuple[LoggedRequest, ...]:
    """Every non-blank line as a LoggedRequest; InvalidRequestError `line N: …` on the first bad one."""
    records = []
    for number, line in enumerate(lines, start=1):
        if line.strip():
            records.append(parse_log_line(line, number))
    return tuple(records)


def parse_log_line(line: str, number: int) -> LoggedRequest:
    try:
        return _parse_line(line, number)
    except CostgateError as error:
        raise InvalidRequestError(f"line {number}: {error.message}") from error


def _parse_line(line: str, number: int) -> LoggedRequest:
    try:
        item = json.loads(line)
    except json.JSONDecodeError as error:
        raise InvalidRequestError(f"not valid JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(item, dict):
        raise InvalidRequestError('must be a JSON object {"at", "tenant", "feature", "request", "model", "usage"}')
    for name in ("at", "tenant", "feature", "model"):
        if not isinstance(item.get(name), str) or not item[name]:
            raise InvalidRequestError(f"'{name}' is required and must be a non-empty string")
    try:
        at = datetime.fromisoformat(item["at"])
    except ValueError:
        raise InvalidRequestError(f"'at' is not an ISO 8601 time: {item['at']!r}") from None
    if at.tzinfo is None:
        raise InvalidRequestError(f"'at' must carry a UTC offset (e.g. {item['at']}Z): prices change at UTC midnight")
    request = item.get("request")
    if not isinstance(request, dict):
        raise InvalidRequestError("'request' is required and must be the Messages API body (an object)")
    if not isinstance(request.get("model"), str) or not request["model"]:
        raise InvalidRequestError("'request.model' is required and must be a string (a model id or \"auto\")")
    if "usage" not in item:
        raise InvalidRequestError("'usage' is required")
    return LoggedRequest(
        line=number,
        at=at,
        tenant=item["tenant"],
        feature=item["feature"],
        request=request,
        model=item["model"],
        usage=normalise_usage(item["usage"]),
    )


@dataclass(frozen=True)
class RoutingSetting:
    """`off`: auto → the medium default; `auto`: auto requests routed with `models`; `all`: every request."""

    mode: Literal["off", "auto", "all"]
    models: tuple[str, str, str] = _DEFAULT_TIERS  # simple, medium, complex

    @property
    def label(self) -> str:
        if self.mode == "auto":
            return "on" if self.models == _DEFAULT_TIERS else "/".join(self.models)
        return self.mode


@dataclass(frozen=True)
class BatchSetting:
    """`features`: those features at batch tier, the rest as logged; `all`: everything; `off`: nothing."""

    mode: Literal["off", "features", "all"]
    features: frozenset[str] = frozenset()

    @property
    def label(self) -> str:
        return "+".join(sorted(self.features)) if self.mode == "features" else self.mode


@dataclass(frozen=True)
class Policy:
    """A what-if: each setting None keeps what the log recorded. `Policy()` is the log as it was billed."""

    prompt_cache: PromptCacheSetting | None = None
    routing: RoutingSetting | None = None
    batch: BatchSetting | None = None
    answer_cache_ttl: timedelta | None = None
    price_date: date | None = None

    @property
    def label(self) -> str:
        """The canonical spec, settings in SETTING_NAMES order: `prompt-cache=5m,routing=all`."""
        return ",".join(label for label, _ in self.settings()) or "as logged"

    def settings(self) -> tuple[tuple[str, "Policy"], ...]:
        """Each setting this policy changes, as (`name=value`, the policy with only that setting)."""
        found: list[tuple[str, Policy]] = []
        if self.prompt_cache is not None:
            found.append((f"prompt-cache={self.prompt_cache}", Policy(prompt_cache=self.prompt_cache)))
        if self.routing is not None:
            found.append((f"routing={self.routing.label}", Policy(routing=self.routing)))
        if self.batch is not None:
            found.append((f"batch={self.batch.label}", Policy(batch=self.batch)))
        if self.answer_cache_ttl is not None:
            seconds = int(self.answer_cache_ttl.total_seconds())
            value = "exact" if self.answer_cache_ttl == DEFAULT_ANSWER_CACHE_TTL else f"exact:{seconds}"
            found.append((f"answer-cache={value}", Policy(answer_cache_ttl=self.answer_cache_ttl)))
        if self.price_date is not None:
            found.append((f"price-date={self.price_date.isoformat()}", Policy(price_date=self.price_date)))
        return tuple(found)


def parse_policy(spec: str, book: PriceBook | None = None) -> Policy:
    """`name=value[,name=value…]` → a Policy; InvalidRequestError naming the bad setting otherwise."""
    book = book or default_price_book()
    values: dict[str, Any] = {}
    seen: set[str] = set()
    parts = [part.strip() for part in spec.split(",")]
    if not any(parts):
        raise InvalidRequestError(f"policy {spec!r} is empty: give name=value settings, e.g. prompt-cache=5m")
    for part in parts:
        name, equals, value = part.partition("=")
        name, value = name.strip(), value.strip()
        if not equals or not name:
            raise InvalidRequestError(f"policy setting {part!r} is not name=value (in policy {spec!r})")
        if name not in SETTING_NAMES:
            raise InvalidRequestError(f"unknown policy setting {name!r}: use one of {', '.join(SETTING_NAMES)}")
        if name in seen:
            raise InvalidRequestError(f"policy {spec!r} sets {name} twice")
        seen.add(name)
        if name == "prompt-cache":
            values["prompt_cache"] = _prompt_cache(value)
        elif name == "routing":
            values["routing"] = _routing(value, book)
        elif name == "batch":
            values["batch"] = _batch(value)
        elif name == "answer-cache":
            values["answer_cache_ttl"] = _answer_cache(value)
        else:
            values["price_date"] = _price_date(value)
    return Policy(**values)


def _prompt_cache(value: str) -> PromptCacheSetting:
    if value == "off":
        return "off"
    if value == "5m":
        return "5m"
    if value == "1h":
        return "1h"
    raise InvalidRequestError(f"prompt-cache must be off, 5m or 1h, not {value!r}")


def _routing(value: str, book: PriceBook) -> RoutingSetting:
    if value == "off":
        return RoutingSetting("off")
    if value == "on":
        return RoutingSetting("auto")
    if value == "all":
        return RoutingSetting("all")
    models = value.split("/")
    if len(models) != 3 or not all(models):
        raise InvalidRequestError(
            f"routing must be off, on, all or <simple model>/<medium model>/<complex model>, not {value!r}"
        )
    for tier, model in zip(Tier, models, strict=True):
        try:
            book.resolve(model)
        except UnknownModelError:
            raise InvalidRequestError(
                f"routing={value}: the {tier.name.lower()} model {model!r} has no price in the price book"
            ) from None
    return RoutingSetting("auto", (models[0], models[1], models[2]))


def _batch(value: str) -> BatchSetting:
    if value == "off":
        return BatchSetting("off")
    if value == "all":
        return BatchSetting("all")
    features = value.split("+")
    if not all(feature and not any(char.isspace() for char in feature) for feature in features):
        raise InvalidRequestError(f"batch must be off, all or <feature>[+<feature>…], not {value!r}")
    return BatchSetting("features", frozenset(features))


def _answer_cache(value: str) -> timedelta | None:
    if value == "off":
        return None
    if value == "exact":
        return DEFAULT_ANSWER_CACHE_TTL
    mode, colon, seconds = value.partition(":")
    if mode == "exact" and colon and seconds.isascii() and seconds.isdigit() and int(seconds) > 0:
        return timedelta(seconds=int(seconds))
    raise InvalidRequestError(f"answer-cache must be off, exact or exact:<seconds> (a whole number > 0), not {value!r}")


def _price_date(value: str) -> date:
    try:
        if _DATE.fullmatch(value):
            return date.fromisoformat(value)
    except ValueError:
        pass
    raise InvalidRequestError(f"price-date must be a date YYYY-MM-DD, not {value!r}")


@dataclass(frozen=True)
class ReplayedRequest:
    """One logged request as this policy would have billed it; `usage` is None for an answer-cache hit."""

    line: int
    at: datetime
    tenant: str
    feature: str
    model: str
    usage: TokenUsage | None
    cost_usd: Decimal
    prompt_cache: CacheEvent | None = None

    @property
    def answer_cache_hit(self) -> bool:
        return self.usage is None


@dataclass(frozen=True)
class ReplayResult:
    policy: Policy
    requests: tuple[ReplayedRequest, ...]  # in replay (time) order
    total_usd: Decimal

    @property
    def answer_cache_hits(self) -> int:
        return sum(1 for r in self.requests if r.answer_cache_hit)

    @property
    def prompt_cache_writes(self) -> int:
        return sum(1 for r in self.requests if r.prompt_cache == "write")

    @property
    def prompt_cache_reads(self) -> int:
        return sum(1 for r in self.requests if r.prompt_cache == "read")

    @property
    def batched(self) -> int:
        return sum(1 for r in self.requests if r.usage is not None and r.usage.service_tier == "batch")


def replay(records: Sequence[LoggedRequest], policy: Policy, book: PriceBook | None = None) -> ReplayResult:
    """Re-price every record under `policy` (see the module docstring); the total is an exact sum.

    Raises InvalidRequestError `line N: …` when a request cannot be priced under the policy (a model with
    no price, or none on `price_date`).
    """
    replayer = _Replayer(policy, book or default_price_book())
    replayed = []
    for record in sorted(records, key=lambda r: r.at):
        try:
            replayed.append(replayer.replay(record))
        except CostgateError as error:
            raise InvalidRequestError(f"line {record.line}: {error.message}") from error
    with localcontext(_EXACT):
        total = sum((r.cost_usd for r in replayed), Decimal(0))
    return ReplayResult(policy=policy, requests=tuple(replayed), total_usd=total)


class _Replayer:
    """One pass over a log in time order: the answer cache and the prompt cache remember what came before."""

    def __init__(self, policy: Policy, book: PriceBook) -> None:
        self._policy = policy
        self._book = book
        self._route_policy: RoutePolicy | None = None
        if policy.routing is not None and policy.routing.mode != "off":
            models = dict(zip(Tier, policy.routing.models, strict=True))
            self._route_policy = RoutePolicy(models=models, override_explicit=policy.routing.mode == "all")
        self._answered: dict[str, datetime] = {}  # exact-cache key → when Claude answered it
        self._prefix_used: dict[str, datetime] = {}  # prefix key → its last write or read
        self._prefix_size: dict[str, int] = {}  # prefix key → the cached tokens a logged request reported

    def replay(self, record: LoggedRequest) -> ReplayedRequest:
        policy = self._policy
        model = self._model_for(record)
        if policy.answer_cache_ttl is not None:
            key = exact_key(record.tenant, model, record.request)
            stored = self._answered.get(key)
            if stored is not None and record.at < stored + policy.answer_cache_ttl:
                return ReplayedRequest(record.line, record.at, record.tenant, record.feature, model, None, Decimal(0))
            self._answered[key] = record.at

        usage, event = record.usage, None
        if policy.prompt_cache == "off":
            usage = usage.without_cache()
        elif policy.prompt_cache is not None:
            usage, event = self._prompt_cache(record, model, usage.without_cache(), policy.prompt_cache)
        if policy.batch is not None:
            usage = _with_tier(usage, record.feature, policy.batch)

        at = record.at if policy.price_date is None else datetime.combine(policy.price_date, time(), UTC)
        cost = price_usage(model, usage, at, self._book)
        return ReplayedRequest(
            record.line, record.at, record.tenant, record.feature, model, usage, cost.total_usd, event
        )

    def _model_for(self, record: LoggedRequest) -> str:
        routing = self._policy.routing
        if routing is None:
            return record.model
        if self._route_policy is not None and (routing.mode == "all" or record.requested_model == AUTO_MODEL):
            return route(record.request, self._route_policy).model
        if routing.mode == "off" and record.requested_model == AUTO_MODEL:
            return DEFAULT_MODELS[Tier.MEDIUM]
        return record.model

    def _prompt_cache(
        self, record: LoggedRequest, model: str, uncached: TokenUsage, ttl: Literal["5m", "1h"]
    ) -> tuple[TokenUsage, CacheEvent | None]:
        body = record.request
        if not body.get("tools") and not body.get("system"):
            return uncached, None
        key = prefix_key(model, body)
        logged = record.usage.cache_write_tokens + record.usage.cache_read_tokens
        if logged:
            self._prefix_size[key] = logged
        size = self._prefix_size.get(key) or estimate_prefix_tokens(body)
        if size < self._book.cache_minimum_tokens(model):
            return uncached, None
        previous = self._prefix_used.get(key)
        self._prefix_used[key] = record.at  # a write starts the TTL, a read refreshes it
        moved = min(size, uncached.input_tokens)
        rest = uncached.input_tokens - moved
        if previous is not None and record.at - previous <= _TTLS[ttl]:
            return replace(uncached, input_tokens=rest, cache_read_tokens=moved), "read"
        if ttl == "5m":
            return replace(uncached, input_tokens=rest, cache_write_5m_tokens=moved), "write"
        return replace(uncached, input_tokens=rest, cache_write_1h_tokens=moved), "write"


def _with_tier(usage: TokenUsage, feature: str, batch: BatchSetting) -> TokenUsage:
    if batch.mode == "all" or (batch.mode == "features" and feature in batch.features):
        return replace(usage, service_tier="batch", speed="standard")  # no fast mode in batches
    if batch.mode == "off" and usage.service_tier == "batch":
        return replace(usage, service_tier="standard")
    return usage


@dataclass(frozen=True)
class WhatIf:
    """One policy's bill against the log's, and what each of its settings moved alone."""

    result: ReplayResult
    vs_as_logged_usd: Decimal
    by_setting: tuple[tuple[str, Decimal], ...]  # (`name=value`, that setting alone minus as logged)
    interaction_usd: Decimal  # the change the settings make only together: the whole change minus by_setting

    @property
    def policy(self) -> Policy:
        return self.result.policy


@dataclass(frozen=True)
class Comparison:
    as_logged: ReplayResult
    what_ifs: tuple[WhatIf, ...]

    def change_ratio(self, what_if: WhatIf) -> Decimal | None:
        """The change as a fraction of the as-logged bill (not exact: for display); None on a zero bill."""
        if not self.as_logged.total_usd:
            return None
        return what_if.vs_as_logged_usd / self.as_logged.total_usd


def compare_policies(
    records: Sequence[LoggedRequest], policies: Sequence[Policy], book: PriceBook | None = None
) -> Comparison:
    """The as-logged bill, then each policy's with its change split by setting (see the module docstring)."""
    book = book or default_price_book()
    results: dict[Policy, ReplayResult] = {}

    def replayed(policy: Policy) -> ReplayResult:
        if policy not in results:
            results[policy] = replay(records, policy, book)
        return results[policy]

    as_logged = replayed(Policy())
    what_ifs = []
    with localcontext(_EXACT):
        for policy in policies:
            result = replayed(policy)
            delta = result.total_usd - as_logged.total_usd
            by_setting = tuple(
                (label, replayed(alone).total_usd - as_logged.total_usd) for label, alone in policy.settings()
            )
            interaction = delta - sum((d for _, d in by_setting), Decimal(0))
            what_ifs.append(WhatIf(result, delta, by_setting, interaction))
    return Comparison(as_logged, tuple(what_ifs))
