"""The cost report: daily rollups for a date range, grouped by day, tenant, feature or model."""

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Any

from costgate.cost import Strategy, format_usd
from costgate.errors import InvalidRequestError
from costgate.ledger import Rollup, validate_tag
from costgate.ports import LedgerStore

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
class ReportRow:
    key: str
    requests: int = 0
    cost_usd: Decimal = Decimal(0)
    baseline_cost_usd: Decimal = Decimal(0)
    tokens: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TOKEN_FIELDS, 0))
    savings_by_strategy: dict[Strategy, Decimal] = field(default_factory=lambda: dict.fromkeys(Strategy, Decimal(0)))

    @property
    def savings_usd(self) -> Decimal:
        return self.baseline_cost_usd - self.cost_usd

    def add(self, rollup: Rollup) -> None:
        self.requests += rollup.requests
        self.cost_usd += rollup.cost_usd
        self.baseline_cost_usd += rollup.baseline_cost_usd
        for name in TOKEN_FIELDS:
            self.tokens[name] += getattr(rollup, name)
        for strategy, amount in rollup.savings_usd.items():
            self.savings_by_strategy[strategy] += amount

    def as_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "requests": self.requests,
            "cost_usd": format_usd(self.cost_usd),
            "baseline_cost_usd": format_usd(self.baseline_cost_usd),
            "savings_usd": format_usd(self.savings_usd),
            "savings_by_strategy": {s.value: format_usd(amount) for s, amount in self.savings_by_strategy.items()},
            "tokens": dict(self.tokens),
        }


@dataclass(frozen=True)
class CostReport:
    request: CostReportRequest
    rows: list[ReportRow]
    total: ReportRow

    def as_json(self) -> dict[str, Any]:
        return {
            "from": self.request.first.isoformat(),
            "to": self.request.last.isoformat(),
            "group_by": self.request.group_by.value,
            "tenant": self.request.tenant,
            "rows": [row.as_json() for row in self.rows],
            "total": self.total.as_json(),
        }


def build_report(store: LedgerStore, request: CostReportRequest) -> CostReport:
    """Sum the rollups in the range (exact Decimals): one row per group, by day or largest cost first."""
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
    return CostReport(request=request, rows=rows, total=total)


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
