"""One failover lock per application: a failover and a failback of one application never overlap."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

import dr_engine.testing.actions as fakes
from dr_engine.clock import SystemClock
from dr_engine.config.loader import load_runbook
from dr_engine.engine.run import RunOptions, start_run
from dr_engine.errors import LockHeld
from dr_engine.evidence.record import RunRecord, RunStatus
from dr_engine.lock.base import FileLock
from dr_engine.planning.plan import ExecutionPlan, build_plan
from dr_engine.testing.runbooks import write_runbook

assert fakes.CALLS is not None  # registers the fake.* actions

REPO = Path(__file__).resolve().parents[2]

STEPS = """
- id: wait
  action: fake.hook
  with: {{reached: {reached}, release: {release}}}
- id: verify
  action: fake.check_health
  after: [wait]
"""


def plan(folder: Path, name: str, extra: str = "") -> ExecutionPlan:
    steps = STEPS.format(reached=folder / f"{name}.reached", release=folder / "release")
    path = write_runbook(folder, steps, name=name, extra=extra)
    return build_plan(load_runbook(path, regions_dir=folder / "regions"))


def test_the_lock_key_is_the_application_or_else_the_runbook_name(tmp_path: Path) -> None:
    assert plan(tmp_path, "shop-failover", "application: shop\n").loaded.runbook.lock_key == "shop"
    assert plan(tmp_path, "payments").loaded.runbook.lock_key == "payments"


def test_shipped_core_banking_runbooks_share_one_lock() -> None:
    names = ["core-banking", "core-banking-failback", "core-banking-aws"]
    keys = {load_runbook(REPO / "runbooks" / f"{name}.yaml").runbook.lock_key for name in names}
    assert keys == {"core-banking"}


def test_a_second_runbook_of_the_same_application_is_refused(tmp_path: Path) -> None:
    lock = FileLock(tmp_path / "locks")
    failover = plan(tmp_path, "shop-failover", "application: shop\n")
    failback = plan(tmp_path, "shop-failback", "application: shop\n")
    state = tmp_path / "state"
    records: list[RunRecord] = []
    first = threading.Thread(target=lambda: records.append(start_run(failover, RunOptions(
        state_dir=state, clock=SystemClock(), concurrency=1, lock=lock, seed=1))), daemon=True)
    first.start()
    while not (tmp_path / "shop-failover.reached").exists():
        assert first.is_alive(), "the first run ended before its first step"
        time.sleep(0.02)
    try:
        with pytest.raises(LockHeld) as info:
            start_run(failback, RunOptions(state_dir=state, clock=SystemClock(), concurrency=1, lock=lock, seed=2,
                                           take_over_lock=True))
        held = lock.inspect("shop")
        assert held is not None and info.value.holder_run_id == held.run_id
    finally:
        (tmp_path / "release").touch()
        first.join()
    assert records[0].status is RunStatus.SUCCEEDED and records[0].application == "shop"
    assert not (tmp_path / "shop-failback.reached").exists()  # the failback never started a step
    # Once the failover ended, the failback may run.
    assert start_run(failback, RunOptions(state_dir=state, clock=SystemClock(), concurrency=1, lock=lock,
                                          seed=3)).status is RunStatus.SUCCEEDED
