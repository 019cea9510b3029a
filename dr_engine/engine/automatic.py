"""Runs started by a schedule rather than a person (scheduled drills, automation).

:func:`prepare_automatic_run` loads and plans the runbook, builds the run options and refuses
(:class:`~dr_engine.errors.LockHeld`) when the last run of the runbook began less than the
minimum interval ago (``min_interval`` argument, else ``DR_MIN_RUN_INTERVAL`` or the target
region's ``min_run_interval``; see :mod:`dr_engine.lock.backends`). A person can always start a
run by hand; the interval only throttles automation, e.g. a schedule firing again while a
previous drill was just retried.

The run itself starts like every other: through :func:`dr_engine.engine.run.start_run` (in-process) or
:func:`dr_engine.flows.failover.launch` (Prefect), which reuse the lock built here.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from dr_engine.config.loader import load_runbook
from dr_engine.config.runbooks import resolve_runbook
from dr_engine.engine.run import RunOptions, failover_lock
from dr_engine.evidence.statedir import StateDir
from dr_engine.lock.backends import LockSettings, check_min_interval
from dr_engine.model import RunMode, parse_duration
from dr_engine.planning.plan import ExecutionPlan, build_plan


def prepare_automatic_run(runbook: str, *, mode: RunMode, state_dir: StateDir | Path,
                          regions_dir: Path | None = None,
                          min_interval: str | None = None, triggered_by: str = "schedule",
                          reason: str = "") -> tuple[ExecutionPlan, RunOptions]:
    """The plan and options of an automatic run; LockHeld when it comes too soon after the last."""
    plan = build_plan(load_runbook(resolve_runbook(runbook), regions_dir))
    settings = LockSettings.of(plan.loaded.target)
    interval = parse_duration(min_interval) if min_interval else settings.min_interval
    options = RunOptions(mode=mode, state_dir=state_dir, triggered_by=triggered_by,
                         reason=reason or f"automatic {mode.value}")
    # The run's own lock (the engine builds it once), asked about the last run before this one starts.
    options.lock = failover_lock(plan, options)
    if interval > timedelta(0):
        check_min_interval(options.lock, plan.loaded.runbook.lock_key, interval)
    return plan, options


__all__ = ["prepare_automatic_run"]
