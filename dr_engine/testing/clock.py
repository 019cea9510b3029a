"""A fake :class:`~dr_engine.clock.Clock` for unit tests: time only moves when told to.

``sleep`` advances time instantly, so a 15-minute failover runs in milliseconds. It is
thread-safe; concurrent sleepers each advance the shared time (tests that need realistic
parallel timing use the system clock).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

DEFAULT_START = datetime(2026, 1, 31, 2, 0, 0, tzinfo=UTC)


class FakeClock:
    """Manually driven time. ``sleeps`` lists every requested sleep, in order."""

    def __init__(self, start: datetime = DEFAULT_START) -> None:
        if start.tzinfo is None:
            raise ValueError("FakeClock needs an aware UTC start time")
        self._lock = threading.Lock()
        self._now = start.astimezone(UTC)
        self._mono = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        """Fake monotonic seconds."""
        with self._lock:
            return self._mono

    def now(self) -> datetime:
        """Fake UTC now."""
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``."""
        if seconds < 0:
            raise ValueError("time does not go backwards")
        with self._lock:
            self._mono += seconds
            self._now += timedelta(seconds=seconds)

    def sleep(self, seconds: float) -> None:
        """Record the sleep and advance time by it."""
        with self._lock:
            self.sleeps.append(seconds)
        self.advance(max(0.0, seconds))


__all__ = ["DEFAULT_START", "FakeClock"]
