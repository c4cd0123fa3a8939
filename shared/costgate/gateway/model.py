"""A gateway key as stored: the tenant it bills, its optional feature binding and budgets (never its secret)."""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from costgate.accounting.ledger import validate_tag
from costgate.errors import InvalidRequestError
from costgate.money import format_usd

_MAX_BUDGET_DIGITS = 38


@dataclass(frozen=True)
class GatewayKey:
    """A gateway key as stored, without its secret: who it belongs to and what it may spend."""

    key_id: str
    tenant: str
    feature: str | None
    daily_budget_usd: Decimal | None
    monthly_budget_usd: Decimal | None
    created_at: datetime
    revoked_at: datetime | None = None

    def __post_init__(self) -> None:
        if self.created_at.tzinfo is None or (self.revoked_at is not None and self.revoked_at.tzinfo is None):
            raise ValueError("GatewayKey times must be timezone-aware")
        validate_tag(self.tenant, "tenant")
        if self.feature is not None:
            validate_tag(self.feature, "feature")
        _validate_budget(self.daily_budget_usd, "daily budget")
        _validate_budget(self.monthly_budget_usd, "monthly budget")

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def as_json(self) -> dict[str, Any]:
        """For listings: no hash and no secret; money as exact decimal strings, times in ISO 8601."""
        return {
            "key_id": self.key_id,
            "tenant": self.tenant,
            "feature": self.feature,
            "daily_budget_usd": _usd(self.daily_budget_usd),
            "monthly_budget_usd": _usd(self.monthly_budget_usd),
            "created_at": self.created_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


def _usd(value: Decimal | None) -> str | None:
    return None if value is None else format_usd(value)


def _validate_budget(value: object, what: str) -> None:
    if value is None:
        return
    if not isinstance(value, Decimal) or not value.is_finite() or value <= 0:
        raise InvalidRequestError(f"{what} must be a positive amount in USD")
    if len("".join(map(str, value.as_tuple().digits)).rstrip("0")) > _MAX_BUDGET_DIGITS:
        raise InvalidRequestError(f"{what} has more than {_MAX_BUDGET_DIGITS} significant digits")
