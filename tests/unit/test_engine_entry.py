"""The one engine entry point: digests checked, the lock taken once (early when reserved), options typed."""

from __future__ import annotations

from pathlib import Path

import pytest

import dr_engine.testing.actions as fakes
from dr_engine.engine.run import RunOptions, options_from_parameters, reserve, start_run
from dr_engine.errors import LockHeld, RunStateError
from dr_engine.evidence.record import RunStatus
from dr_engine.lock.base import FileLock
from dr_engine.model import RunMode
from dr_engine.testing.runbooks import plan_from_steps

assert fakes.CALLS is not None  # registers the fake.* actions

STEPS = "- id: healthy\n  action: fake.check_health\n"


def test_a_runbook_changed_after_it_was_confirmed_is_refused_before_the_lock(tmp_path: Path) -> None:
    plan = plan_from_steps(tmp_path, STEPS, name="digest-app")
    lock = FileLock(tmp_path / "locks")
    with pytest.raises(RunStateError, match="changed after it was confirmed"):
        start_run(plan, RunOptions(state_dir=tmp_path / "state", lock=lock), expected_sha256="0" * 64)
    assert lock.inspect(plan.loaded.runbook.lock_key) is None
    assert not (tmp_path / "state" / "runs").exists()  # nothing started


def test_a_region_file_changed_after_it_was_confirmed_is_refused(tmp_path: Path) -> None:
    plan = plan_from_steps(tmp_path, STEPS, name="region-digest-app")
    region = next(iter(plan.loaded.region_sha256))
    with pytest.raises(RunStateError, match=f"region file\\(s\\) {region} changed"):
        start_run(plan, RunOptions(state_dir=tmp_path / "state"), expected_sha256=plan.loaded.sha256,
                  expected_region_sha256={region: "0" * 64})


def test_matching_digests_run(tmp_path: Path) -> None:
    plan = plan_from_steps(tmp_path, STEPS, name="digest-ok-app")
    record = start_run(plan, RunOptions(state_dir=tmp_path / "state"), expected_sha256=plan.loaded.sha256,
                       expected_region_sha256=dict(plan.loaded.region_sha256))
    assert record.status is RunStatus.SUCCEEDED


def test_reserve_takes_the_lease_early_and_the_run_reuses_it(tmp_path: Path) -> None:
    plan = plan_from_steps(tmp_path, STEPS, name="reserved-app")
    state = tmp_path / "state"
    options = RunOptions(state_dir=state)
    with reserve(plan, options) as held:
        assert held.run_id is not None  # minted by the engine
        # A second run fails at once, before anything starts.
        with pytest.raises(LockHeld), reserve(plan, RunOptions(state_dir=state)):
            pass
        record = start_run(plan, held)
    assert record.status is RunStatus.SUCCEEDED
    assert record.run_id == held.run_id
    with reserve(plan, RunOptions(state_dir=state)):  # released: the next run may start
        pass


def test_runs_from_plain_parameters_keep_the_two_person_rule() -> None:
    options = options_from_parameters(mode="drill", allow_data_loss=True, reason="region lost",
                                      incident_start="2026-01-31T02:15:00Z")
    assert (options.mode, options.require_data_loss_approval) == (RunMode.DRILL, True)
    assert options.incident_start is not None and options.incident_start.tzinfo is not None
    assert options_from_parameters().require_data_loss_approval is False
