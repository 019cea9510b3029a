"""Every step learns where its runbook lives (``runbook_path``, ``repo_root``), whatever the cwd."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dr_engine.actions.base import Action, ActionParams, PreflightCheck, StepContext, StepResult
from dr_engine.actions.registry import register, unregister
from dr_engine.capabilities import Capability
from dr_engine.config.loader import runbook_location
from dr_engine.engine.run import RunOptions, start_run
from dr_engine.evidence.record import RunStatus
from dr_engine.lock.base import NullLock
from dr_engine.model.location import RunbookLocation
from dr_engine.planning.preflight import run_preflight
from dr_engine.testing.clock import FakeClock
from dr_engine.testing.runbooks import plan_from_steps


class WhereParams(ActionParams):
    """No parameters."""


class Where(Action[WhereParams]):
    """Reports the runbook location it was given (test-local)."""

    name = "test.where"
    capability = Capability.HEALTH_VERIFY
    Params = WhereParams
    example = "id: where\naction: test.where\n"

    def run(self, params: WhereParams, ctx: StepContext) -> StepResult:
        """Echo the runbook location as outputs."""
        where = ctx.runbook_location
        return StepResult(summary="where", outputs={k: str(getattr(where, k)) for k in ("runbook_path", "repo_root")})

    def preflight(self, params: WhereParams, ctx: StepContext) -> list[PreflightCheck]:
        """Echo the runbook location as check details."""
        where = ctx.runbook_location
        return [PreflightCheck(k, True, str(getattr(where, k))) for k in ("runbook_path", "repo_root")]


@pytest.fixture
def where_action() -> Iterator[None]:
    register(Where)
    try:
        yield
    finally:
        unregister(Where.name)


@pytest.fixture
def elsewhere(tmp_path: Path) -> Iterator[Path]:
    """Run from a directory that is not the project's (as `dr` run from anywhere would)."""
    other = tmp_path / "elsewhere"
    other.mkdir()
    before = Path.cwd()
    os.chdir(other)
    try:
        yield other
    finally:
        os.chdir(before)


def test_runbook_location_is_the_folder_above_runbooks(tmp_path: Path) -> None:
    path = tmp_path / "project" / "runbooks" / "app.yaml"
    assert runbook_location(path) == RunbookLocation(runbook_path=path.resolve(),
                                                     repo_root=(tmp_path / "project").resolve())


@pytest.mark.usefixtures("where_action")
def test_every_step_and_preflight_gets_runbook_path_and_repo_root(tmp_path: Path, elsewhere: Path) -> None:
    project = tmp_path / "project"
    plan = plan_from_steps(project, "- id: where\n  action: test.where\n")
    record = start_run(plan, RunOptions(state_dir=tmp_path / "state", clock=FakeClock(), lock=NullLock()))
    assert record.status is RunStatus.SUCCEEDED, record.error
    outputs: dict[str, Any] = record.step("where").outputs
    assert outputs == {"runbook_path": str((project / "runbooks" / "test-app.yaml").resolve()),
                       "repo_root": str(project.resolve())}
    assert Path.cwd() == elsewhere  # resolved from the runbook, not from the current directory
    checks = {c.name: c.detail for c in run_preflight(plan)["where"]}
    assert checks == outputs


@pytest.mark.usefixtures("where_action")
def test_run_options_override_the_repo_root(tmp_path: Path) -> None:
    plan = plan_from_steps(tmp_path / "project", "- id: where\n  action: test.where\n")
    record = start_run(plan, RunOptions(state_dir=tmp_path / "state", clock=FakeClock(), lock=NullLock(),
                                        repo_root=Path("/srv/checkout")))
    assert record.step("where").outputs["repo_root"] == "/srv/checkout"
