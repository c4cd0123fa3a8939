"""The ledger: every request that reached Claude, priced once, and its daily rollups."""

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
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


@dataclass(frozen=True)
class Rollup:
    """Totals for one UTC day × tenant × feature × model (the DynamoDB store keeps them per service tier
    too, for reconciliation: several rollups may share these fields, and add up).

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


@dataclass(frozen=True)
class RejectionCount:
    """Requests refused for want of budget (429) on one UTC day, by tenant and feature."""

    day: date
    tenant: str
    feature: str
    count: int


def utc_day(at: datetime) -> date:
    """The UTC day an instant belongs to; the ledger's days are UTC days."""
    if at.tzinfo is None:
        raise ValueError("a ledger time must be timezone-aware")
    return at.astimezone(UTC).date()


class RecordOutcome(StrEnum):
    RECORDED = "recorded"
    DUPLICATE = "duplicate"
