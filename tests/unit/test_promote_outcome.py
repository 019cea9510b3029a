"""A promotion done by an earlier attempt (retry or resumed step) is still reported as a change."""

from __future__ import annotations

from pathlib import Path

import dr_engine.testing.actions as fakes
from dr_engine.actions.postgres import promotion_outcome
from dr_engine.engine.run import RunOptions, resume_run, start_run
from dr_engine.evidence.record import RunStatus
from dr_engine.lock.base import NullLock
from dr_engine.testing.clock import FakeClock
from dr_engine.testing.runbooks import plan_from_steps

assert fakes.CALLS is not None  # registers the fake.* actions


def test_a_standby_promoted_now_is_a_change() -> None:
    assert promotion_outcome(True, attempt=1, started_before=False) == (True, "promoted")


def test_a_primary_found_on_the_first_attempt_of_a_fresh_step_is_no_change() -> None:
    assert promotion_outcome(False, attempt=1, started_before=False) == (False, "already a primary")


def test_a_primary_found_on_a_retry_was_promoted_by_the_earlier_attempt() -> None:
    changed, summary = promotion_outcome(False, attempt=2, started_before=False)
    assert changed and "earlier attempt" in summary


def test_a_primary_found_on_a_resumed_step_was_promoted_before_the_crash() -> None:
    changed, summary = promotion_outcome(False, attempt=1, started_before=True)
    assert changed and "earlier attempt" in summary


STEPS = """
- id: boom
  action: fake.fail
  with: {kind: ProviderError, times: 1}
- id: final
  action: fake.check_health
  after: [boom]
"""


def test_the_engine_tells_a_resumed_step_it_was_started_before(tmp_path: Path) -> None:
    clock = FakeClock()
    state = tmp_path / "state"
    plan = plan_from_steps(tmp_path, STEPS)
    first = start_run(plan, RunOptions(state_dir=state, clock=clock, concurrency=1, lock=NullLock(), seed=1))
    assert first.status is RunStatus.FAILED
    again = resume_run(state, first.run_id, lock=NullLock(), clock=clock)
    assert again.status is RunStatus.SUCCEEDED
    assert again.step("boom").facts["started_before"] is True


def test_a_step_of_a_fresh_run_was_not_started_before(tmp_path: Path) -> None:
    plan = plan_from_steps(tmp_path, STEPS.replace("times: 1", "times: 0"))
    record = start_run(plan, RunOptions(state_dir=tmp_path / "state", clock=FakeClock(), concurrency=1,
                                        lock=NullLock(), seed=1))
    assert record.status is RunStatus.SUCCEEDED
    assert record.step("boom").facts["started_before"] is False
