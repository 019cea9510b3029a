"""Injected time: the :class:`Clock` protocol, the system clock and step deadlines.

Time is injected so that unit tests can run a 15-minute failover in milliseconds with
:class:`dr_engine.testing.clock.FakeClock`, while integration tests use :class:`SystemClock`.
All wall-clock datetimes are timezone-aware UTC.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

from dr_engine.errors import StepTimeout


@runtime_checkable
class Clock(Protocol):
    """Source of monotonic time, UTC wall time, and sleeping."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin; never goes backwards."""
        ...

    def now(self) -> datetime:
        """The current time as an aware UTC datetime."""
        ...

    def sleep(self, seconds: float) -> None:
        """Block for ``seconds`` (a fake clock just advances)."""
        ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        """Return :func:`time.monotonic`."""
        return time.monotonic()

    def now(self) -> datetime:
        """Return the current UTC time."""
        return datetime.now(UTC)

    def sleep(self, seconds: float) -> None:
        """Sleep for real (non-negative)."""
        if seconds > 0:
            time.sleep(seconds)


def utc_iso(moment: datetime) -> str:
    """Format an aware datetime as ISO 8601 UTC with a ``Z`` suffix (millisecond precision)."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: dr-engine only handles timezone-aware UTC times")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_utc(text: str) -> datetime:
    """Parse an ISO 8601 time; a time without an offset is refused (ambiguous at 3 a.m.)."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError(f"'{text}' has no UTC offset; write it as e.g. 2026-01-31T02:15:00Z")
    return value.astimezone(UTC)


class Deadline:
    """A step deadline measured on a :class:`Clock`.

    Providers use :meth:`remaining` to bound every I/O call (socket timeouts, subprocess
    ``timeout=``, ``statement_timeout``) because a thread cannot be interrupted from outside.
    """

    def __init__(self, clock: Clock, seconds: float | None) -> None:
        self._clock = clock
        self.seconds = seconds
        self._end = None if seconds is None else clock.monotonic() + seconds

    @property
    def expired(self) -> bool:
        """True once the deadline has passed (never for an unbounded deadline)."""
        return self._end is not None and self._clock.monotonic() >= self._end

    def remaining(self, cap: float | None = None) -> float:
        """Seconds left (at least 0.001 so it can be passed as a timeout), optionally capped."""
        left = float("inf") if self._end is None else self._end - self._clock.monotonic()
        if cap is not None:
            left = min(left, cap)
        return max(left, 0.001)

    def check(self, what: str) -> None:
        """Raise :class:`StepTimeout` if the deadline has passed, naming ``what`` was running."""
        if self.expired:
            raise StepTimeout(
                f"deadline of {self.seconds:g}s reached while {what}",
                hint="raise the step's `timeout:` if the work is legitimately slow, "
                "or find out why the target is not answering",
            )
