"""Lease logic shared by the remote lock backends, backend selection, the minimum run interval."""

from __future__ import annotations

import socket
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from dr_engine.errors import ConfigError, LockHeld
from dr_engine.lock.backends import (
    HeldLock,
    LeaseLock,
    LockSettings,
    check_min_interval,
    hold_lock,
    last_lease,
    lock_for,
)
from dr_engine.lock.base import FileLock, Lease, Lock, NullLock, may_take
from dr_engine.model import Region
from dr_engine.testing.clock import FakeClock
from dr_engine.testing.leases import MemoryLeaseStore, check_lock_contract


def region(**params: str) -> Region:
    return Region.model_validate({"name": "us-west-2", "aws": {"region": "us-west-2"}, "params": params})


def test_lease_lock_meets_the_contract() -> None:
    store = MemoryLeaseStore()
    lock = LeaseLock(store)
    assert isinstance(lock, Lock)
    check_lock_contract(lock, lambda lease: store.leases.__setitem__(lease.key, lease))


def test_file_lock_meets_the_contract(tmp_path: Path) -> None:
    lock = FileLock(tmp_path)
    check_lock_contract(lock, lock._write)


def test_a_lost_race_names_the_winner() -> None:
    store = MemoryLeaseStore()
    lock = LeaseLock(store)
    rival = LeaseLock(store)

    def competing_write(_: Lease) -> None:
        rival.acquire("app", "run-fast")

    store.before_put = competing_write
    with pytest.raises(LockHeld) as info:
        lock.acquire("app", "run-slow")
    assert info.value.holder_run_id == "run-fast"
    lease = store.read("app")
    assert lease is not None and lease.run_id == "run-fast" and lease.fencing_token == 1


def test_taking_back_the_own_lease_from_another_host_needs_take_over() -> None:
    store = MemoryLeaseStore()
    lock = LeaseLock(store)
    lease = lock.acquire("app", "run-1")
    elsewhere = replace(lease, host="crashed-machine", pid=1)
    store.leases["app"] = elsewhere
    with pytest.raises(LockHeld):
        lock.acquire("app", "run-1")
    taken = lock.acquire("app", "run-1", take_over=True)
    assert taken.host == socket.gethostname() and taken.fencing_token == 2
    assert taken.taken_over_from is not None and "crashed-machine" in taken.taken_over_from
    # Another run's live lease on another host is never taken, not even with take_over.
    assert not may_take(replace(elsewhere, run_id="run-0"), "run-1", stale=False, take_over=True)


def test_held_lock_hands_the_engine_its_own_lease(tmp_path: Path) -> None:
    lock = FileLock(tmp_path)
    with hold_lock(lock, "app", "run-1") as held:
        assert isinstance(held, Lock)
        again = held.acquire("app", "run-1")
        assert again.fencing_token == 1
        with pytest.raises(LockHeld):
            lock.acquire("app", "run-2")
    # Released on exit even though no engine ran.
    assert lock.inspect("app") is None
    assert lock.acquire("app", "run-2").fencing_token == 2


def test_settings_come_from_env_then_the_target_region(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DR_LOCK_BACKEND", "DR_LOCK_TABLE", "DR_LOCK_TTL", "DR_MIN_RUN_INTERVAL", "DR_LOCK_DSN"):
        monkeypatch.delenv(name, raising=False)
    assert LockSettings.of(None) == LockSettings()
    settings = LockSettings.of(region(lock_backend="dynamodb", lock_table="locks", lock_ttl="30m",
                                      min_run_interval="1h"))
    assert (settings.backend, settings.table) == ("dynamodb", "locks")
    assert settings.ttl == timedelta(minutes=30) and settings.min_interval == timedelta(hours=1)
    monkeypatch.setenv("DR_LOCK_BACKEND", "FILE")
    assert LockSettings.of(region(lock_backend="dynamodb")).backend == "file"
    monkeypatch.setenv("DR_LOCK_BACKEND", "zookeeper")
    with pytest.raises(ConfigError, match="zookeeper"):
        LockSettings.of(None)
    monkeypatch.setenv("DR_LOCK_BACKEND", "file")
    monkeypatch.setenv("DR_LOCK_TTL", "soon")
    with pytest.raises(ConfigError, match="lock TTL"):
        LockSettings.of(None)


def test_lock_for_picks_the_backend(tmp_path: Path) -> None:
    assert isinstance(lock_for(None, tmp_path), FileLock)
    assert isinstance(lock_for(region(), tmp_path, settings=LockSettings(backend="none")), NullLock)
    dynamo = lock_for(region(), tmp_path, settings=LockSettings(backend="dynamodb"))
    assert isinstance(dynamo, LeaseLock)
    with pytest.raises(ConfigError, match="DSN"):
        lock_for(region(), tmp_path, settings=LockSettings(backend="postgres"))


def test_min_interval_refuses_an_automatic_run_that_comes_too_soon(tmp_path: Path) -> None:
    clock = FakeClock()
    lock = FileLock(tmp_path, clock=clock)
    check_min_interval(lock, "app", timedelta(hours=1), clock=clock)  # never ran: fine
    lease = lock.acquire("app", "run-1")
    lock.release(lease)
    assert last_lease(HeldLock(lock, lease), "app") is not None
    clock.advance(600)
    with pytest.raises(LockHeld, match="at least 3600s apart") as info:
        check_min_interval(lock, "app", timedelta(hours=1), clock=clock)
    assert info.value.holder_run_id == "run-1" and "3000s" in (info.value.hint or "")
    check_min_interval(lock, "app", timedelta(0), clock=clock)  # disabled
    clock.advance(3001)
    check_min_interval(lock, "app", timedelta(hours=1), clock=clock)
    assert last_lease(NullLock(), "app") is None
