"""The ledger: one row per request, written before the Claude call and ended once; the rollups of the ended rows.

A request's row is `reserved` (with the hold its budgets took) before anything is sent to Claude, then
ends in exactly one of: `settled` (its exact cost), `refused` (a budget said no: the 429), `abandoned`
(it failed before a byte reached Claude: nothing spent) or `swept` (no settle came within SWEEP_AFTER:
counted at what it held, flagged). An answer-cache hit and a batch request are written `settled` at
once. Rollups are not written with the row: the aggregator (`costgate.accounting.aggregator`) sums the
ended rows from the table's stream into hourly items.
"""

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING

from costgate.errors import InvalidRequestError
from costgate.pricing.cost import Cost, Strategy
from costgate.pricing.usage import TokenUsage

if TYPE_CHECKING:
    from costgate.routing.prompt_cache import PrefixUse

# Tags become parts of DynamoDB keys (joined with '#') and metric dimensions: keep them plain and bounded.
_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}")
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
REQUEST_ID_PREFIX = "cg_"
# ApiFunction's timeout (900 s) plus a minute: no invocation outlives it, so no settle can come after.
SWEEP_AFTER = timedelta(minutes=16)


def validate_tag(value: str, what: str) -> str:
    if not _TAG.fullmatch(value):
        raise InvalidRequestError(
            f"{what} {value!r} is invalid: use 1-64 letters, digits or . _ : / - (starting with a letter or digit)"
        )
    return value


@dataclass(frozen=True)
class LedgerEntry:
    """One request as billed: who, what for, which model, its usage and its exact cost."""

    request_id: str
    at: datetime
    tenant: str
    feature: str
    usage: TokenUsage
    cost: Cost
    baseline_cost_usd: Decimal
    savings: Mapping[Strategy, Decimal] = field(default_factory=dict)
    key_id: str | None = None
    # The model field as the client sent it ("auto" or a model id); routed when route_tier is set.
    requested_model: str | None = None
    route_tier: str | None = None  # "simple" | "medium" | "complex" for a routed request
    route_reason: str | None = None
    prompt_cache: "PrefixUse | None" = None
    upstream_request_id: str | None = None  # Claude's request-id header, when the request reached Claude

    def __post_init__(self) -> None:
        if self.at.tzinfo is None:
            raise ValueError("LedgerEntry.at must be timezone-aware")
        if self.savings and self.baseline_cost_usd != self.cost.total_usd + sum(self.savings.values(), Decimal(0)):
            raise ValueError("LedgerEntry: baseline must equal cost plus the savings of every strategy")
        validate_tag(self.tenant, "tenant")
        validate_tag(self.feature, "feature")
        if not self.request_id or len(self.request_id) > 256:
            raise InvalidRequestError("request id must be 1-256 characters")

    @property
    def day(self) -> date:
        return utc_day(self.at)

    @property
    def model(self) -> str:
        return self.cost.model

    @property
    def applied_strategies(self) -> tuple[Strategy, ...]:
        """The strategies that changed this request's cost: a non-zero saving, negative ones included."""
        return tuple(strategy for strategy in Strategy if self.savings.get(strategy, 0) != 0)


class RequestState(StrEnum):
    RESERVED = "reserved"
    SETTLED = "settled"
    REFUSED = "refused"
    ABANDONED = "abandoned"
    SWEPT = "swept"


ENDED = frozenset({RequestState.SETTLED, RequestState.REFUSED, RequestState.ABANDONED, RequestState.SWEPT})


def new_request_id() -> str:
    """costgate's id of a request: "cg_" and 22 base62 characters (a random UUID's 122 bits)."""
    number = uuid.uuid4().int
    digits = []
    for _ in range(22):
        number, digit = divmod(number, 62)
        digits.append(_BASE62[digit])
    return REQUEST_ID_PREFIX + "".join(reversed(digits))


@dataclass(frozen=True)
class ReservedRequest:
    """A request's row before Claude is called: who, what for, and what its budgets hold for it.

    `held_usd` is the worst case held on every budget that applies (0 when none applies); `hold_shard`
    names the budget shard item it was taken from, for the record. A row still reserved SWEEP_AFTER
    after `at` is swept: counted at `held_usd`, flagged.
    """

    request_id: str
    at: datetime
    tenant: str
    feature: str
    model: str  # what the request is sent to (routing's choice)
    held_usd: Decimal
    key_id: str | None = None
    requested_model: str | None = None
    route_tier: str | None = None
    route_reason: str | None = None
    hold_shard: str | None = None

    def __post_init__(self) -> None:
        if self.at.tzinfo is None:
            raise ValueError("ReservedRequest.at must be timezone-aware")
        validate_tag(self.tenant, "tenant")
        validate_tag(self.feature, "feature")
        if not self.request_id or len(self.request_id) > 256:
            raise InvalidRequestError("request id must be 1-256 characters")
        if not self.held_usd.is_finite() or self.held_usd < 0:
            raise ValueError(f"a hold is a finite amount of 0 or more, not {self.held_usd}")

    @property
    def day(self) -> date:
        return utc_day(self.at)


@dataclass(frozen=True)
class Rollup:
    """Totals for one UTC day (and hour, as the aggregator keeps them) × tenant × feature × model (the DynamoDB
    store keeps them per service tier too, for reconciliation: several rollups may share these fields, and add up).

    Per strategy: `savings_usd` what it saved, `strategy_requests` how many requests it changed (see
    `LedgerEntry.applied_strategies`) and `strategy_cost_usd` what those requests cost. A strategy that
    changed no request is absent from the last two.
    """

    day: date
    tenant: str
    feature: str
    model: str
    requests: int
    cost_usd: Decimal
    baseline_cost_usd: Decimal
    input_tokens: int
    output_tokens: int
    cache_write_5m_tokens: int
    cache_write_1h_tokens: int
    cache_read_tokens: int
    web_search_requests: int
    savings_usd: Mapping[Strategy, Decimal] = field(default_factory=dict)
    strategy_requests: Mapping[Strategy, int] = field(default_factory=dict)
    strategy_cost_usd: Mapping[Strategy, Decimal] = field(default_factory=dict)
    hour: int | None = None  # the UTC hour; None for a whole day
    # Of `requests` and `cost_usd`: the rows the sweeper ended, counted at what they held.
    swept_requests: int = 0
    swept_usd: Decimal = Decimal(0)


@dataclass(frozen=True)
class RejectionCount:
    """Requests refused for want of budget (429) on one UTC day (and hour), by tenant and feature."""

    day: date
    tenant: str
    feature: str
    count: int
    hour: int | None = None


def utc_day(at: datetime) -> date:
    """The UTC day an instant belongs to; the ledger's days are UTC days."""
    if at.tzinfo is None:
        raise ValueError("a ledger time must be timezone-aware")
    return at.astimezone(UTC).date()


class RecordOutcome(StrEnum):
    RECORDED = "recorded"
    DUPLICATE = "duplicate"
