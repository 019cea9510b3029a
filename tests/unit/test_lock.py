"""The failover lock: one run per runbook, holder named, stale leases taken over only on request."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from dr_engine.errors import LockHeld
from dr_engine.lock.base import FileLock, Lock, NullLock
from dr_engine.testing.clock import FakeClock


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_file_lock_implements_the_protocol() -> None:
    assert isinstance(FileLock(Path("/nonexistent")), Lock)
    assert isinstance(NullLock(), Lock)


def test_a_held_lock_names_its_holder_and_age(tmp_path: Path) -> None:
    clock = FakeClock()
    lock = FileLock(tmp_path, clock=clock)
    lease = lock.acquire("core-banking", "run-1")
    clock.advance(42)
    with pytest.raises(LockHeld) as info:
        lock.acquire("core-banking", "run-2")
    assert info.value.holder_run_id == "run-1"
    assert info.value.holder == lease.holder and "@" in lease.holder
    assert info.value.age_seconds == pytest.approx(42)
    assert "run-1" in str(info.value) and "42s ago" in str(info.value)
    # take_over never applies to a live lease
    with pytest.raises(LockHeld):
        lock.acquire("core-banking", "run-2", take_over=True)
    # other runbooks are independent
    assert lock.acquire("payments", "run-3").fencing_token == 1


def test_release_then_acquire_gets_a_higher_fencing_token(tmp_path: Path) -> None:
    lock = FileLock(tmp_path)
    first = lock.acquire("app", "run-1")
    lock.release(first)
    assert lock.inspect("app") is None
    second = lock.acquire("app", "run-2")
    assert second.fencing_token == first.fencing_token + 1
    data = json.loads((tmp_path / "app.lock").read_text())
    assert data["run_id"] == "run-2" and data["pid"] > 0 and data["acquired_at"].endswith("Z")


def test_a_dead_holder_is_stale_but_only_taken_over_explicitly(tmp_path: Path) -> None:
    lock = FileLock(tmp_path)
    lease = lock.acquire("app", "run-1")
    data = json.loads((tmp_path / "app.lock").read_text())
    data["pid"] = dead_pid()
    (tmp_path / "app.lock").write_text(json.dumps(data))
    with pytest.raises(LockHeld, match="stale") as info:
        lock.acquire("app", "run-2")
    assert "--take-over-lock" in (info.value.hint or "")
    taken = lock.acquire("app", "run-2", take_over=True)
    assert taken.fencing_token == lease.fencing_token + 1
    # The old holder can no longer renew: it has been fenced off.
    with pytest.raises(LockHeld, match="taken over"):
        lock.renew(lease)


def test_the_same_run_takes_its_stale_lease_back(tmp_path: Path) -> None:
    lock = FileLock(tmp_path)
    lock.acquire("app", "run-1")
    data = json.loads((tmp_path / "app.lock").read_text())
    data["pid"] = dead_pid()
    (tmp_path / "app.lock").write_text(json.dumps(data))
    assert lock.acquire("app", "run-1").run_id == "run-1"


def test_an_expired_lease_is_stale(tmp_path: Path) -> None:
    clock = FakeClock()
    lock = FileLock(tmp_path, clock=clock, ttl=timedelta(minutes=5))
    lease = lock.acquire("app", "run-1")
    clock.advance(60)
    renewed = lock.renew(lease)
    assert renewed.expires_at > lease.expires_at
    clock.advance(301)
    assert lock.is_stale(renewed)
    assert lock.acquire("app", "run-2", take_over=True).run_id == "run-2"


def test_a_corrupt_lease_file_does_not_block_a_failover(tmp_path: Path) -> None:
    (tmp_path / "app.lock").write_text("{not json")
    assert FileLock(tmp_path).acquire("app", "run-1").fencing_token == 1
