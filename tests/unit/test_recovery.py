"""RTO/RPO arithmetic and retry policy in isolation."""

from __future__ import annotations

import random

import pytest

from dr_engine.clock import Deadline
from dr_engine.errors import ProviderError, StepTimeout, TransientError
from dr_engine.record import RpoRecord, StepRecord, StepStatus
from dr_engine.recovery import RpoReading, aggregate_rpo, human_wait_seconds
from dr_engine.retry import RetryPolicy, call_with_retry
from dr_engine.statedir import RUN_ID_PATTERN, StateDir
from dr_engine.testing.clock import FakeClock


@pytest.mark.parametrize(
    ("reading", "target", "met", "seconds"),
    [
        (RpoReading(), 0, None, None),
        (RpoReading(lag_bytes=0), 0, True, 0.0),
        (RpoReading(lag_bytes=1), 0, False, None),
        (RpoReading(lag_bytes=1), 30, None, None),
        (RpoReading(lag_bytes=1, lag_seconds=2.0), 30, True, 2.0),
        (RpoReading(lag_seconds=31.0), 30, False, 31.0),
        (RpoReading(rows_lost=0), 0, True, 0.0),
        (RpoReading(lag_bytes=0, rows_lost=1), 30, False, 0.0),
    ],
)
def test_rpo_rules(reading: RpoReading, target: float, met: bool | None, seconds: float | None) -> None:
    assert reading.met(target) is met
    assert reading.rpo_seconds == seconds


def step(step_id: str, finished: str, **rpo: object) -> StepRecord:
    return StepRecord(id=step_id, action="x.y", capability="data.promote", status=StepStatus.SUCCEEDED,
                      finished_at=finished, rpo=RpoRecord(**rpo))  # type: ignore[arg-type]


def test_latest_reading_per_dataset_worst_across_datasets() -> None:
    steps = [
        step("check-orders", "2026-01-01T00:00:01.000Z", dataset="orders", lag_bytes=9000, lag_seconds=4.0),
        step("promote-orders", "2026-01-01T00:00:05.000Z", dataset="orders", lag_bytes=0, lag_seconds=0.5),
        step("promote-users", "2026-01-01T00:00:03.000Z", dataset="users", lag_bytes=100, lag_seconds=1.5),
        step("reconcile-users", "2026-01-01T00:00:09.000Z", dataset="users", rows_lost=2),
        step("reconcile-orders", "2026-01-01T00:00:09.000Z", dataset="orders", rows_lost=1),
    ]
    reading = aggregate_rpo(steps)
    assert reading == RpoReading(lag_bytes=100, lag_seconds=1.5, rows_lost=3)


def test_human_wait_prefers_what_the_gate_reports() -> None:
    approve = StepRecord(id="a", action="control.approve", capability="control.approve",
                         status=StepStatus.SUCCEEDED, duration_seconds=100, facts={"waited_seconds": 90})
    other = StepRecord(id="b", action="control.approve", capability="control.approve",
                       status=StepStatus.FAILED, duration_seconds=30)
    work = StepRecord(id="c", action="x.y", capability="exec.run", status=StepStatus.SUCCEEDED, duration_seconds=7)
    assert human_wait_seconds([approve, other, work]) == 120


def test_retry_gives_up_with_the_last_transient_error() -> None:
    clock = FakeClock()
    calls: list[int] = []

    def fn(attempt: int) -> str:
        calls.append(attempt)
        raise TransientError(f"throttled {attempt}")

    with pytest.raises(TransientError, match="throttled 4"):
        call_with_retry(fn, policy=RetryPolicy(attempts=4, backoff=0.5), deadline=Deadline(clock, 600),
                        clock=clock, rng=random.Random(1))
    assert calls == [1, 2, 3, 4]
    assert all(0 <= wait <= 0.5 * 2**i for i, wait in enumerate(clock.sleeps))


def test_retry_never_sleeps_past_the_deadline() -> None:
    clock = FakeClock()
    retries: list[tuple[int, float]] = []

    def fn(attempt: int) -> str:
        clock.advance(3)
        raise TransientError("5xx")

    with pytest.raises(StepTimeout) as info:
        call_with_retry(fn, policy=RetryPolicy(attempts=50, backoff=2), deadline=Deadline(clock, 10), clock=clock,
                        on_retry=lambda n, exc, wait: retries.append((n, clock.monotonic() + wait)),
                        rng=random.Random(3))
    assert isinstance(info.value.__cause__, TransientError)
    assert retries and all(wake_up < 1000 + 10 for _, wake_up in retries)
    assert [n for n, _ in retries] == list(range(1, len(retries) + 1))


def test_retry_passes_permanent_errors_through_at_once() -> None:
    clock = FakeClock()

    def fn(attempt: int) -> str:
        raise ProviderError("AccessDenied")

    with pytest.raises(ProviderError):
        call_with_retry(fn, policy=RetryPolicy(attempts=5), deadline=Deadline(clock, 60), clock=clock)
    assert clock.sleeps == []


def test_retry_returns_the_result_and_attempts() -> None:
    clock = FakeClock()
    result = call_with_retry(lambda n: "ok" if n == 2 else (_ for _ in ()).throw(TransientError("x")),
                             policy=RetryPolicy(attempts=3, backoff=0.01), deadline=Deadline(clock, 60), clock=clock)
    assert result == ("ok", 2)


def test_run_ids_sort_by_time() -> None:
    clock = FakeClock()
    first = StateDir.new_run_id(clock)
    clock.advance(1)
    second = StateDir.new_run_id(clock)
    assert RUN_ID_PATTERN.match(first) and first.startswith("20260131T020000Z-")
    assert sorted([second, first]) == [first, second]
