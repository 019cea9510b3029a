"""Operation-level retries (tenacity): only :class:`TransientError`, bounded by attempts AND deadline.

Waits are full-jitter exponential (``uniform(0, min(cap, base * 2**(n-1)))``) and slept on the
injected :class:`~dr_engine.clock.Clock`, so unit tests with a fake clock take no real time.
A retry that would sleep past the step deadline is not attempted: the step fails with
:class:`StepTimeout` chained to the last transient error. When the attempts run out, the last
:class:`TransientError` itself is raised. Every other exception propagates at once.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt
from tenacity.stop import stop_base

from dr_engine.clock import Clock, Deadline
from dr_engine.errors import StepTimeout, TransientError

T = TypeVar("T")

#: Longest single wait between attempts, whatever the backoff base says.
MAX_WAIT_SECONDS = 60.0


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry a step."""

    attempts: int = 1
    backoff: float = 1.0
    max_wait: float = MAX_WAIT_SECONDS


#: Called before sleeping: (failed attempt number, the transient error, seconds about to wait).
OnRetry = Callable[[int, TransientError, float], None]


class _FullJitter:
    def __init__(self, policy: RetryPolicy, deadline: Deadline, rng: random.Random) -> None:
        self.policy, self.deadline, self.rng = policy, deadline, rng

    def __call__(self, state: RetryCallState) -> float:
        ceiling = min(self.policy.max_wait, self.policy.backoff * 2 ** (state.attempt_number - 1))
        return self.rng.uniform(0.0, ceiling)


class _DeadlineStop(stop_base):
    """Stop when the coming wait would not leave time for another attempt."""

    def __init__(self, deadline: Deadline) -> None:
        self.deadline = deadline
        self.hit = False

    def __call__(self, state: RetryCallState) -> bool:
        if self.deadline.seconds is None:
            return False
        if self.deadline.expired or self.deadline.remaining() <= (state.upcoming_sleep or 0.0):
            self.hit = True
            return True
        return False


def call_with_retry(
    fn: Callable[[int], T],
    *,
    policy: RetryPolicy,
    deadline: Deadline,
    clock: Clock,
    on_retry: OnRetry | None = None,
    rng: random.Random | None = None,
) -> tuple[T, int]:
    """Call ``fn(attempt)`` until it succeeds; return ``(result, attempts used)``.

    Raises the last TransientError when attempts run out, StepTimeout (from it) when the
    deadline cuts retries short, and any other exception immediately.
    """
    attempts = 0
    deadline_stop = _DeadlineStop(deadline)

    def attempt() -> T:
        nonlocal attempts
        attempts += 1
        deadline.check(f"starting attempt {attempts}")
        return fn(attempts)

    def before_sleep(state: RetryCallState) -> None:
        if on_retry is not None and state.outcome is not None:
            exc = state.outcome.exception()
            if isinstance(exc, TransientError):
                on_retry(state.attempt_number, exc, state.upcoming_sleep or 0.0)

    def give_up(state: RetryCallState) -> T:
        exc = state.outcome.exception() if state.outcome is not None else None
        assert isinstance(exc, TransientError)
        if deadline_stop.hit:
            raise StepTimeout(
                f"deadline of {deadline.seconds:g}s reached after {attempts} attempt(s); last error: {exc.message}",
                hint="raise the step's `timeout:` or find out why the transient errors persist",
            ) from exc
        raise exc

    retrying = Retrying(
        sleep=clock.sleep,
        stop=stop_after_attempt(max(1, policy.attempts)) | deadline_stop,
        wait=_FullJitter(policy, deadline, rng or random.Random()),
        retry=retry_if_exception_type(TransientError),
        before_sleep=before_sleep,
        retry_error_callback=give_up,
        reraise=True,
    )
    result = retrying(attempt)
    return result, attempts


__all__ = ["MAX_WAIT_SECONDS", "OnRetry", "RetryPolicy", "call_with_retry"]
