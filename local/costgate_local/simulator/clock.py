"""Clocks: the simulator reads time only through one of these (costgate's `Clock` port)."""

import threading
from datetime import UTC, datetime, timedelta


class SystemClock:
    """Wall-clock time in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """Time that moves only when told to: `advance(delta)` or `set(t)`. Thread-safe."""

    def __init__(self, start: datetime) -> None:
        self._now = _aware(start)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, delta: timedelta) -> datetime:
        """Move forward by `delta` (never backward) and return the new time."""
        if delta < timedelta(0):
            raise ValueError(f"a ManualClock only moves forward; got {delta}")
        with self._lock:
            self._now += delta
            return self._now

    def set(self, t: datetime) -> None:
        """Jump to the aware time `t` (tests may move to any moment, earlier ones included)."""
        aware = _aware(t)
        with self._lock:
            self._now = aware


def _aware(t: datetime) -> datetime:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"a ManualClock needs a timezone-aware time, got {t!r}")
    return t
