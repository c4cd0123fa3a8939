"""The real clock; tests inject their own (see `costgate.ports.Clock`)."""

from datetime import UTC, datetime


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)
