"""The cost report: daily rollups for a date range, grouped by day, tenant, feature or model.

Each row also says, per strategy, how many requests it changed, what they cost and what they would
have cost without it; the report counts the requests refused for want of budget.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Any

from costgate.accounting.ledger import Rollup, validate_tag
from costgate.accounting.ports import LedgerStore
from costgate.errors import InvalidRequestError
from costgate.money import format_usd
from costgate.pricing.cost import Strategy

MAX_REPORT_DAYS = 366
# date.fromisoformat also takes 20261101 and 2026-W45-1; the API documents YYYY-MM-DD only.
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
TOKEN_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "cache_read_tokens",
    "web_search_requests",
)


class GroupBy(StrEnum):
    DAY = "day"
    TENANT = "tenant"
    FEATURE = "feature"
    MODEL = "model"


@dataclass(frozen=True)
class CostReportRequest:
    first: date
    last: date
    group_by: GroupBy
    tenant: str | None = None

    def __post_init__(self) -> None:
        if self.last < self.first:
            raise InvalidRequestError(f"'to' ({self.last}) is before 'from' ({self.first})")
        span = (self.last - self.first).days + 1
        if span > MAX_REPORT_DAYS:
            raise InvalidRequestError(
                f"'from' {self.first} to 'to' {self.last} spans {span} days; "
                f"a report covers at most {MAX_REPORT_DAYS} days"
            )
        if self.tenant is not None:
            validate_tag(self.tenant, "tenant")

    @classmethod
    def from_query(cls, params: Mapping[str, str | None]) -> "CostReportRequest":
        """Parse `from`, `to`, `group_by` and optional `tenant` query parameters."""
        return cls(
            first=_parse_day(params, "from"),
            last=_parse_day(params, "to"),
            group_by=_parse_group(params.get("group_by") or GroupBy.DAY.value),
            tenant=params.get("tenant") or None,
        )


@dataclass
class StrategyTotals:
    """The requests one strategy changed: how many, what they cost, and what it saved on them.

    A request changed by several strategies counts under each: totals of different strategies overlap.
    """

    requests: int = 0
    cost_usd: Decimal = Decimal(0)
    savings_usd: Decimal = Decimal(0)

    @property
    def baseline_cost_usd(self) -> Decimal:
        """What those requests would have cost without this strategy (the others still applied)."""
        return self.cost_usd + self.savings_usd

    @property
    def saving_fraction(self) -> Decimal | None:
        """Savings over baseline (negative when the strategy cost more); None for a zero baseline."""
        baseline = self.baseline_cost_usd
        return self.savings_usd / baseline if baseline else None

    def as_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "cost_usd": format_usd(self.cost_usd),
            "baseline_cost_usd": format_usd(self.baseline_cost_usd),
            "savings_usd": format_usd(self.savings_usd),
        }


@dataclass
class ReportRow:
    key: str
    requests: int = 0
    cost_usd: Decimal = Decimal(0)
    baseline_cost_usd: Decimal = Decimal(0)
    tokens: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TOKEN_FIELDS, 0))
    strategies: dict[Strategy, StrategyTotals] = field(default_factory=lambda: {s: StrategyTotals() for s in Strategy})

    @property
    def savings_usd(self) -> Decimal:
        return self.baseline_cost_usd - self.cost_usd

    @property
    def savings_by_strategy(self) -> dict[Strategy, Decimal]:
        return {strategy: totals.savings_usd for strategy, totals in self.strategies.items()}

    @property
    def overall(self) -> StrategyTotals:
        """Every request of the row, as the strategies' rows show theirs: the baseline is the row's own."""
        return StrategyTotals(requests=self.requests, cost_usd=self.cost_usd, savings_usd=self.savings_usd)

    def add(self, rollup: Rollup) -> None:
        self.requests += rollup.requests
        self.cost_usd += rollup.cost_usd
        self.baseline_cost_usd += rollup.baseline_cost_usd
        for name in TOKEN_FIELDS:
            self.tokens[name] += getattr(rollup, name)
        for strategy, totals in self.strategies.items():
            totals.requests += rollup.strategy_requests.get(strategy, 0)
            totals.cost_usd += rollup.strategy_cost_usd.get(strategy, Decimal(0))
            totals.savings_usd += rollup.savings_usd.get(strategy, Decimal(0))

    def as_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "requests": self.requests,
            "cost_usd": format_usd(self.cost_usd),
            "baseline_cost_usd": format_usd(self.baseline_cost_usd),
            "savings_usd": format_usd(self.savings_usd),
            "savings_by_strategy": {s.value: format_usd(amount) for s, amount in self.savings_by_strategy.items()},
            "strategies": {s.value: totals.as_json() for s, totals in self.strategies.items()},
            "tokens": dict(self.tokens),
        }


@dataclass(frozen=True)
class CostReport:
    request: CostReportRequest
    rows: list[ReportRow]
    total: ReportRow
    budget_rejections: int = 0  # requests refused for want of budget (429) in the range, of the tenant if one

    def as_json(self) -> dict[str, Any]:
        return {
            "from": self.request.first.isoformat(),
            "to": self.request.last.isoformat(),
            "group_by": self.request.group_by.value,
            "tenant": self.request.tenant,
            "rows": [row.as_json() for row in self.rows],
            "total": self.total.as_json(),
            "budget_rejections": self.budget_rejections,
        }


def build_report(store: LedgerStore, request: CostReportRequest) -> CostReport:
    """Sum the rollups in the range (exact Decimals): one row per group, by day or largest cost first.

    Budget rejections are counted over the whole range (of the request's tenant, if it names one).
    """
    groups: dict[str, ReportRow] = {}
    total = ReportRow(key="total")
    for rollup in store.rollups(request.first, request.last):
        if request.tenant is not None and rollup.tenant != request.tenant:
            continue
        key = rollup.day.isoformat() if request.group_by is GroupBy.DAY else getattr(rollup, request.group_by.value)
        groups.setdefault(key, ReportRow(key=key)).add(rollup)
        total.add(rollup)
    if request.group_by is GroupBy.DAY:
        rows = sorted(groups.values(), key=lambda row: row.key)
    else:
        rows = sorted(groups.values(), key=lambda row: (-row.cost_usd, row.key))
    rejections = sum(
        counter.count
        for counter in store.rejections(request.first, request.last)
        if request.tenant is None or counter.tenant == request.tenant
    )
    return CostReport(request=request, rows=rows, total=total, budget_rejections=rejections)


def _parse_day(params: Mapping[str, str | None], name: str) -> date:
    raw = params.get(name)
    if not raw:
        raise InvalidRequestError(f"query parameter '{name}' is required (YYYY-MM-DD)")
    try:
        if not _DAY.fullmatch(raw):
            raise ValueError(raw)
        return date.fromisoformat(raw)
    except ValueError:
        raise InvalidRequestError(f"query parameter '{name}' must be a date as YYYY-MM-DD, got {raw!r}") from None


def _parse_group(raw: str) -> GroupBy:
    try:
        return GroupBy(raw)
    except ValueError:
        allowed = "|".join(g.value for g in GroupBy)
        raise InvalidRequestError(f"query parameter 'group_by' must be one of {allowed}, got {raw!r}") from None
