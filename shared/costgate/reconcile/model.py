"""What reconciliation compares and what it concludes.

A row is one UTC day × model × service tier. Anthropic's side (`AnthropicRow`) and the ledger's
(`LedgerRow`) each give the row's tokens per category and its cost; `RowComparison` is their
difference and its verdict, `DayComparison` a day's rows, `Reconciliation` a range of days.

Money is exact: costs are Decimals, as strings in JSON. Token differences are Anthropic − ledger.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, Self

from costgate.money import format_usd

# The ledger's names for the categories (the rollups' fields, costgate.accounting.report.TOKEN_FIELDS).
TOKEN_CATEGORIES = (
    "input_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "cache_read_tokens",
    "output_tokens",
    "web_search_requests",
)
# A rollup written before rollups kept the service tier: compared as a tier of its own, so it shows.
UNRECORDED_TIER = "unrecorded"
# What Anthropic reports without a model or a tier (code execution, for one): kept, never dropped.
NO_MODEL = "(no model)"
NO_TIER = "(no tier)"


@dataclass(frozen=True)
class Tokens:
    """Counts per billing category; also used for differences, which may be negative."""

    input_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    cache_read_tokens: int = 0
    output_tokens: int = 0
    web_search_requests: int = 0

    def values(self) -> tuple[int, ...]:
        return tuple(getattr(self, name) for name in TOKEN_CATEGORIES)

    def __add__(self, other: "Tokens") -> "Tokens":
        return Tokens(*(a + b for a, b in zip(self.values(), other.values(), strict=True)))

    def __sub__(self, other: "Tokens") -> "Tokens":
        return Tokens(*(a - b for a, b in zip(self.values(), other.values(), strict=True)))

    @property
    def is_zero(self) -> bool:
        return not any(self.values())

    @property
    def magnitude(self) -> int:
        """The sum over categories of |count|: a difference's drift in tokens (web searches included)."""
        return sum(abs(value) for value in self.values())

    def all_at_most_zero(self) -> bool:
        return all(value <= 0 for value in self.values())

    def as_json(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in TOKEN_CATEGORIES}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(**{name: int(data[name]) for name in TOKEN_CATEGORIES})


@dataclass(frozen=True, order=True)
class RowKey:
    day: date
    model: str
    service_tier: str

    def as_json(self) -> dict[str, str]:
        return {"day": self.day.isoformat(), "model": self.model, "service_tier": self.service_tier}


@dataclass(frozen=True)
class LedgerRow:
    """The ledger's totals for a row: every request it recorded, answer-cache hits (no Claude call) included."""

    key: RowKey
    tokens: Tokens
    cost_usd: Decimal
    requests: int
    answer_cache_hits: int = 0

    @property
    def claude_requests(self) -> int:
        """Requests that reached Claude: an answer-cache hit is recorded at $0 and never called it."""
        return self.requests - self.answer_cache_hits

    def __add__(self, other: "LedgerRow") -> "LedgerRow":
        if other.key != self.key:
            raise ValueError(f"cannot add ledger rows of {self.key} and {other.key}")
        return LedgerRow(
            key=self.key,
            tokens=self.tokens + other.tokens,
            cost_usd=self.cost_usd + other.cost_usd,
            requests=self.requests + other.requests,
            answer_cache_hits=self.answer_cache_hits + other.answer_cache_hits,
        )


@dataclass(frozen=True)
class AnthropicRow:
    """Anthropic's figures for a row. `cost_usd` is the list price (before any discount), summed from
    `cost_amounts` amounts of its cost report, each rounded by Anthropic; `requests` when it reports them."""

    key: RowKey
    tokens: Tokens = field(default_factory=Tokens)
    cost_usd: Decimal = Decimal(0)
    cost_amounts: int = 0
    requests: int | None = None

    def __add__(self, other: "AnthropicRow") -> "AnthropicRow":
        if other.key != self.key:
            raise ValueError(f"cannot add Anthropic rows of {self.key} and {other.key}")
        requests = (
            None if self.requests is None and other.requests is None else ((self.requests or 0) + (other.requests or 0))
        )
        return AnthropicRow(
            key=self.key,
            tokens=self.tokens + other.tokens,
            cost_usd=self.cost_usd + other.cost_usd,
            cost_amounts=self.cost_amounts + other.cost_amounts,
            requests=requests,
        )


@dataclass(frozen=True)
class AnthropicRecords:
    """What Anthropic reported for the UTC days `first`..`last`, one row per key.

    `complete_through`: its figures include everything before this instant (the end of its last
    complete bucket, or how fresh it says its data is, whichever is earlier). `cost_quantum_usd`: the
    unit its cost amounts are rounded to, read from the amounts themselves.
    """

    first: date
    last: date
    rows: Mapping[RowKey, AnthropicRow]
    complete_through: datetime
    cost_quantum_usd: Decimal

    def __post_init__(self) -> None:
        if self.complete_through.utcoffset() is None:
            raise ValueError("complete_through must be timezone-aware")
        for key, row in self.rows.items():
            if row.key != key or not self.first <= key.day <= self.last:
                raise ValueError(f"row {row.key} filed under {key} or outside {self.first}..{self.last}")


class RowStatus(StrEnum):
    MATCH = "match"
    # The same tokens on both sides of a midnight, counted on one day by the ledger and on the other by
    # Anthropic: a request in flight at midnight. Not a drift.
    IN_FLIGHT_AT_MIDNIGHT = "in_flight_at_midnight"
    # The ledger is ahead of Anthropic on a day that is not settled: its data may still come.
    PENDING = "pending"
    DRIFT = "drift"


class DayStatus(StrEnum):
    MATCH = "match"
    PENDING = "pending"
    DRIFT = "drift"


@dataclass(frozen=True)
class RowComparison:
    key: RowKey
    anthropic: Tokens
    ledger: Tokens
    anthropic_cost_usd: Decimal
    ledger_cost_usd: Decimal
    tolerance_usd: Decimal  # the cost report's own rounding, over the amounts summed into this row
    anthropic_requests: int | None
    ledger_requests: int  # requests that reached Claude (answer-cache hits excluded)
    answer_cache_hits: int
    status: RowStatus
    reason: str

    @property
    def token_difference(self) -> Tokens:
        return self.anthropic - self.ledger

    @property
    def cost_difference_usd(self) -> Decimal:
        return self.anthropic_cost_usd - self.ledger_cost_usd

    @property
    def drift_tokens(self) -> int:
        return self.token_difference.magnitude if self.status is RowStatus.DRIFT else 0

    @property
    def drift_usd(self) -> Decimal:
        return self.cost_difference_usd if self.status is RowStatus.DRIFT else Decimal(0)

    def as_json(self) -> dict[str, Any]:
        return {
            **self.key.as_json(),
            "status": self.status.value,
            "reason": self.reason,
            "anthropic": self.anthropic.as_json(),
            "ledger": self.ledger.as_json(),
            "difference": self.token_difference.as_json(),
            "anthropic_cost_usd": format_usd(self.anthropic_cost_usd),
            "ledger_cost_usd": format_usd(self.ledger_cost_usd),
            "cost_difference_usd": format_usd(self.cost_difference_usd),
            "tolerance_usd": format_usd(self.tolerance_usd),
            "anthropic_requests": self.anthropic_requests,
            "ledger_requests": self.ledger_requests,
            "answer_cache_hits": self.answer_cache_hits,
            "drift_tokens": self.drift_tokens,
            "drift_usd": format_usd(self.drift_usd),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        requests = data["anthropic_requests"]
        return cls(
            key=RowKey(date.fromisoformat(data["day"]), str(data["model"]), str(data["service_tier"])),
            anthropic=Tokens.from_json(data["anthropic"]),
            ledger=Tokens.from_json(data["ledger"]),
            anthropic_cost_usd=Decimal(data["anthropic_cost_usd"]),
            ledger_cost_usd=Decimal(data["ledger_cost_usd"]),
            tolerance_usd=Decimal(data["tolerance_usd"]),
            anthropic_requests=None if requests is None else int(requests),
            ledger_requests=int(data["ledger_requests"]),
            answer_cache_hits=int(data["answer_cache_hits"]),
            status=RowStatus(data["status"]),
            reason=str(data["reason"]),
        )


@dataclass(frozen=True)
class DayComparison:
    """One UTC day's rows and verdict.

    `status` is the verdict as of `checked_at`, on Anthropic's figures through `through` (the day's
    end once they cover it). `settled`: Anthropic's data and the ledger are final for this day and the
    next (a request in flight at this day's end is on one of them), so the verdict stands; until then
    the scheduled check records the day as pending (`recorded`).
    """

    day: date
    status: DayStatus
    settled: bool
    through: datetime
    checked_at: datetime
    rows: tuple[RowComparison, ...]

    @property
    def drift_tokens(self) -> int:
        return sum(row.drift_tokens for row in self.rows)

    @property
    def drift_usd(self) -> Decimal:
        return sum((row.drift_usd for row in self.rows), Decimal(0))

    @property
    def complete(self) -> bool:
        """Anthropic's figures cover the whole day."""
        return self.through >= day_end(self.day)

    def recorded(self) -> "DayComparison":
        """What the scheduled check keeps: the verdict if it stands, else pending."""
        return self if self.settled else replace(self, status=DayStatus.PENDING)

    def as_json(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(),
            "status": self.status.value,
            "settled": self.settled,
            "through": _instant(self.through),
            "checked_at": _instant(self.checked_at),
            "drift_tokens": self.drift_tokens,
            "drift_usd": format_usd(self.drift_usd),
            "rows": [row.as_json() for row in self.rows],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            day=date.fromisoformat(data["day"]),
            status=DayStatus(data["status"]),
            settled=bool(data["settled"]),
            through=_parse_instant(data["through"]),
            checked_at=_parse_instant(data["checked_at"]),
            rows=tuple(RowComparison.from_json(row) for row in data["rows"]),
        )


@dataclass(frozen=True)
class Reconciliation:
    first: date
    last: date
    days: tuple[DayComparison, ...]

    @property
    def ok(self) -> bool:
        """No day drifts (pending days are not drift)."""
        return all(day.status is not DayStatus.DRIFT for day in self.days)

    @property
    def drift_tokens(self) -> int:
        """The sum over drifting rows and categories of |Anthropic − ledger|."""
        return sum(day.drift_tokens for day in self.days)

    @property
    def drift_usd(self) -> Decimal:
        """Anthropic − ledger over the drifting rows, exact."""
        return sum((day.drift_usd for day in self.days), Decimal(0))

    def as_json(self) -> dict[str, Any]:
        return {
            "from": self.first.isoformat(),
            "to": self.last.isoformat(),
            "ok": self.ok,
            "drift_tokens": self.drift_tokens,
            "drift_usd": format_usd(self.drift_usd),
            "days": [{k: v for k, v in day.as_json().items() if k != "rows"} for day in self.days],
            "rows": [row.as_json() for day in self.days for row in day.rows],
        }


def day_start(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def day_end(day: date) -> datetime:
    return day_start(day) + timedelta(days=1)


def _instant(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse_instant(text: str) -> datetime:
    parsed = datetime.fromisoformat(text)
    if parsed.utcoffset() is None:
        raise ValueError(f"{text!r} is not a timezone-aware time")
    return parsed.astimezone(UTC)
