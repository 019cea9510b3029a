"""Data loss measured by a step that then fails still counts in the run's RPO."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import dr_engine.testing.actions  # noqa: F401  (registers the fake.* actions)
from dr_engine.actions.base import Action, ActionParams, RpoObservation, StepContext, StepResult
from dr_engine.actions.registry import register, unregister
from dr_engine.capabilities import Capability
from dr_engine.engine.run import RunOptions, start_run
from dr_engine.errors import VerificationFailed
from dr_engine.evidence.audit import read_events
from dr_engine.evidence.journal import rebuild_record
from dr_engine.evidence.record import StepStatus
from dr_engine.evidence.statedir import StateDir
from dr_engine.lock.base import NullLock
from dr_engine.testing.runbooks import plan_from_steps


class LossParams(ActionParams):
    """Params of the test-local failing reconciliation."""

    dataset: str = "main"
    rows_lost: int = 3


class FailingReconcile(Action[LossParams]):
    """Counts missing rows, then fails (like ``postgres.reconcile`` with ``fail_on_loss``)."""

    name = "test.failing_reconcile"
    capability = Capability.DATA_RECONCILE
    Params = LossParams
    example = "id: reconcile\naction: test.failing_reconcile\n"

    def dataset(self, params: LossParams) -> str | None:
        """The dataset name."""
        return params.dataset

    def run(self, params: LossParams, ctx: StepContext) -> StepResult:
        """Always fails, carrying the loss it measured."""
        raise VerificationFailed(f"{params.rows_lost} acknowledged row(s) missing",
                                 rpo=RpoObservation(rows_lost=params.rows_lost))


@pytest.fixture
def failing_reconcile() -> Iterator[None]:
    register(FailingReconcile)
    try:
        yield
    finally:
        unregister(FailingReconcile.name)


STEPS = """
- id: fence
  action: fake.fence_data
  with: {dataset: main}
- id: promote
  action: fake.promote_data
  with: {dataset: main, lag_bytes: 0}
  after: [fence]
- id: healthy
  action: fake.check_health
  after: [promote]
- id: reconcile
  action: test.failing_reconcile
  after: [healthy]
"""


def test_rows_lost_by_a_failed_reconcile_break_the_rpo(tmp_path: Path, failing_reconcile: None) -> None:
    plan = plan_from_steps(tmp_path, STEPS, name="loss")
    state = tmp_path / "state"
    record = start_run(plan, RunOptions(state_dir=state, concurrency=1, lock=NullLock()))
    assert record.step("reconcile").status is StepStatus.FAILED
    assert record.rows_lost == 3
    assert record.rpo_met is False
    step_rpo = record.step("reconcile").rpo
    assert step_rpo is not None and step_rpo.rows_lost == 3 and step_rpo.dataset == "main"
    rebuilt = rebuild_record(read_events(StateDir(state).audit_file(record.run_id)))
    assert rebuilt.rows_lost == 3 and rebuilt.rpo_met is False
