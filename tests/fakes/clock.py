"""A clock that stays where a test puts it."""

from dataclasses import dataclass
from datetime import UTC, datetime

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@dataclass
class ManualClock:
    """A Clock that stays where a test puts it (NOW by default)."""

    at: datetime = NOW

    def now(self) -> datetime:
        return self.at
