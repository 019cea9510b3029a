"""Build a :class:`~dr_engine.actions.base.StepContext` to run one action outside the engine.

Used by integration tests of actions against real servers (and handy for trying an action
from a Python prompt). The engine builds its own contexts.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pydantic import SecretStr

from dr_engine.actions.base import AuditEmit, StepContext
from dr_engine.clock import Clock, Deadline, SystemClock
from dr_engine.evidence.statedir import StateDir
from dr_engine.model import Objectives, Region, RunMode
from dr_engine.model.location import RunbookLocation


def step_context(
    *,
    state_dir: StateDir | Path,
    rto: str = "5m",
    rpo: str = "0s",
    timeout: float = 30.0,
    allow_data_loss: bool = False,
    source: Region | None = None,
    target: Region | None = None,
    clock: Clock | None = None,
    step_id: str = "step",
    secrets: dict[str, str] | None = None,
    emit: AuditEmit | None = None,
    started_before: bool = False,
    repo_root: Path | None = None,
    preflight: bool = False,
) -> StepContext:
    """A context with a real clock and a ``timeout``-second deadline.

    ``emit`` stands in for the run's audit log (e.g. ``list.append``); ``repo_root`` is where
    repository files (stacks, templates) are looked up; ``preflight`` makes it a ``dr plan`` context.
    """
    clock = clock or SystemClock()
    known = dict(secrets or {})

    def resolve(region: Region, name: str) -> SecretStr:
        return SecretStr(known[f"{region.name}.{name}"])

    return StepContext(
        run_id="test-run",
        step_id=step_id,
        mode=RunMode.FAILOVER,
        source=source or Region(name="source-region"),
        target=target or Region(name="target-region"),
        objectives=Objectives.model_validate({"rto": rto, "rpo": rpo}),
        deadline=Deadline(clock, timeout),
        clock=clock,
        log=logging.getLogger(f"dr_engine.step.{step_id}"),
        state_dir=StateDir.of(state_dir),
        allow_data_loss=allow_data_loss,
        secret_resolver=resolve,
        emit=emit,
        started_before=started_before,
        runbook_location=RunbookLocation(repo_root=repo_root),
        preflight=preflight,
    )
