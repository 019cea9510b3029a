"""The lease heartbeat: a live run's failover lease never expires, and a lost lease halts the run."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

import dr_engine.testing.actions as fakes
from dr_engine.clock import SystemClock, parse_utc
from dr_engine.engine.run import RunOptions, start_run
from dr_engine.errors import LockHeld
from dr_engine.evidence.audit import read_events
from dr_engine.evidence.record import RunRecord, RunStatus, StepStatus
from dr_engine.lock.backends import HeldLock
from dr_engine.lock.base import FileLock, NullLock
from dr_engine.lock.heartbeat import LeaseHeartbeat, heartbeat_interval, lease_ttl
from dr_engine.testing.clock import FakeClock
from dr_engine.testing.leases import expire
from dr_engine.testing.runbooks import plan_from_steps

assert fakes.CALLS is not None  # registers the fake.* actions


def test_interval_is_a_quarter_of_the_ttl_within_bounds() -> None:
    assert heartbeat_interval(timedelta(minutes=20)) == 300
    assert heartbeat_interval(timedelta(hours=2)) == 600  # bounded: a missed beat must not cost 30 min
    assert heartbeat_interval(timedelta(seconds=0)) == 0.05
    lease = NullLock().acquire("app", "run-1")
    assert lease_ttl(NullLock(), lease) is None  # leases that never expire need no heartbeat


def test_beats_keep_a_lease_alive_past_its_ttl(tmp_path: Path) -> None:
    clock = FakeClock()
    lock = FileLock(tmp_path, clock=clock, ttl=timedelta(minutes=8))
    lease = lock.acquire("app", "run-1")
    assert lease_ttl(HeldLock(lock, lease), lease) == timedelta(minutes=8)
    heartbeat = LeaseHeartbeat(lock, lease, interval=None)
    for _ in range(10):  # 20 minutes: far past the 8-minute TTL
        clock.advance(120)
        heartbeat.beat()
    assert not lock.is_stale(heartbeat.lease)
    with pytest.raises(LockHeld):
        lock.acquire("app", "run-2", take_over=True)
    assert heartbeat.lost is None


def test_a_lease_taken_over_is_reported_lost_and_never_renewed_again(tmp_path: Path) -> None:
    clock = FakeClock()
    lock = FileLock(tmp_path, clock=clock, ttl=timedelta(minutes=8))
    lease = lock.acquire("app", "run-1")
    lock._write(expire(lease))
    intruder = lock.acquire("app", "run-2", take_over=True)
    heartbeat = LeaseHeartbeat(lock, lease, interval=None)
    heartbeat.beat()
    assert heartbeat.lost is not None and heartbeat.lost.holder_run_id == "run-2"
    heartbeat.beat()
    current = lock.inspect("app")
    assert current is not None and current.fencing_token == intruder.fencing_token


HOOK_THEN_NEXT = """
- id: wait
  action: fake.hook
  with: {{reached: {reached}, release: {release}}}
- id: next
  action: fake.check_health
  after: [wait]
"""


def _start(tmp_path: Path, lock: FileLock) -> tuple[threading.Thread, list[RunRecord], Path, Path]:
    reached, release = tmp_path / "reached", tmp_path / "release"
    plan = plan_from_steps(tmp_path, HOOK_THEN_NEXT.format(reached=reached, release=release))
    options = RunOptions(state_dir=tmp_path / "state", clock=SystemClock(), concurrency=1, lock=lock, seed=1)
    records: list[RunRecord] = []
    thread = threading.Thread(target=lambda: records.append(start_run(plan, options)), daemon=True)
    thread.start()
    while not reached.exists():
        assert thread.is_alive(), "the run ended before its first step"
        time.sleep(0.02)
    return thread, records, release, reached


def test_a_wave_longer_than_the_ttl_keeps_the_lease(tmp_path: Path) -> None:
    ttl = timedelta(seconds=1.2)
    lock = FileLock(tmp_path / "locks", ttl=ttl)
    thread, records, release, _ = _start(tmp_path, lock)
    first = lock.inspect("test-app")
    assert first is not None
    # Wait until the lease as first taken would long have expired (real time: the lease is).
    while SystemClock().now() < parse_utc(first.expires_at) + ttl:
        time.sleep(0.05)
    with pytest.raises(LockHeld):
        lock.acquire("test-app", "intruder", take_over=True)
    release.touch()
    thread.join()
    assert records[0].status is RunStatus.SUCCEEDED
    assert lock.inspect("test-app") is None  # released at the end, heartbeat stopped


def test_a_run_whose_lease_was_taken_over_halts_before_its_next_step(tmp_path: Path) -> None:
    lock = FileLock(tmp_path / "locks", ttl=timedelta(hours=1))
    thread, records, release, _ = _start(tmp_path, lock)
    held = lock.inspect("test-app")
    assert held is not None
    lock._write(expire(held))  # e.g. its renewals could not reach the store for a whole TTL
    intruder = lock.acquire("test-app", "intruder", take_over=True)
    release.touch()
    thread.join()
    record = records[0]
    assert record.status is RunStatus.HALTED
    assert record.step("wait").status is StepStatus.SUCCEEDED
    assert record.step("next").status is StepStatus.PENDING
    assert record.error is not None and record.error.kind == "LockHeld"
    events = read_events(tmp_path / "state" / "runs" / record.run_id / "audit.jsonl")
    assert any(e["type"] == "note.added" and "lost" in e["data"]["text"] and
               e["data"]["holder_run_id"] == "intruder" for e in events)
    current = lock.inspect("test-app")  # the intruder's lease was not released by the halted run
    assert current is not None and current.fencing_token == intruder.fencing_token
