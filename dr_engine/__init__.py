"""dr-engine: disaster-recovery failover runbooks as code, executed by Prefect.

The public Python API: load a runbook, plan it, start or resume a run, read its record, and
the error taxonomy (drawn in :mod:`dr_engine.errors`). Everything else is reached through its
module and may move between releases::

    from pathlib import Path
    from dr_engine import RunOptions, build_plan, load_runbook, start_run

    plan = build_plan(load_runbook(Path("runbooks/sample-noop.yaml")))
    record = start_run(plan, RunOptions(state_dir=Path(".dr"), reason="game day"))
    print(record.status, record.rto_seconds)

Names are imported on first use (PEP 562), so ``import dr_engine`` stays instant and importing
any ``dr_engine.<module>`` does not load the engine, Prefect or an SDK with it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Public name -> the module that defines it. Kept next to ``__all__`` (a test checks they agree).
_EXPORTS: dict[str, str] = {
    # load and plan
    "LoadedRunbook": "dr_engine.config.loader",
    "load_runbook": "dr_engine.config.loader",
    "resolve_runbook": "dr_engine.config.runbooks",
    "ExecutionPlan": "dr_engine.planning.plan",
    "build_plan": "dr_engine.planning.plan",
    # run
    "RunMode": "dr_engine.model",
    "RunOptions": "dr_engine.engine.run",
    "start_run": "dr_engine.engine.run",
    "resume_run": "dr_engine.engine.run",
    "StateDir": "dr_engine.evidence.statedir",
    "Lock": "dr_engine.lock.base",
    "FileLock": "dr_engine.lock.base",
    "NullLock": "dr_engine.lock.base",
    # what happened
    "RunRecord": "dr_engine.evidence.record",
    "RunStatus": "dr_engine.evidence.record",
    "StepStatus": "dr_engine.evidence.record",
    "load_record": "dr_engine.evidence.record",
    # errors
    "DrError": "dr_engine.errors",
    "ConfigError": "dr_engine.errors",
    "UnknownAction": "dr_engine.errors",
    "PlanError": "dr_engine.errors",
    "StepFailed": "dr_engine.errors",
    "PreconditionFailed": "dr_engine.errors",
    "TransientError": "dr_engine.errors",
    "StepTimeout": "dr_engine.errors",
    "ProviderError": "dr_engine.errors",
    "FencingFailed": "dr_engine.errors",
    "VerificationFailed": "dr_engine.errors",
    "LockHeld": "dr_engine.errors",
    "RunStateError": "dr_engine.errors",
}

__all__ = [
    "ConfigError",
    "DrError",
    "ExecutionPlan",
    "FencingFailed",
    "FileLock",
    "LoadedRunbook",
    "Lock",
    "LockHeld",
    "NullLock",
    "PlanError",
    "PreconditionFailed",
    "ProviderError",
    "RunMode",
    "RunOptions",
    "RunRecord",
    "RunStateError",
    "RunStatus",
    "StateDir",
    "StepFailed",
    "StepStatus",
    "StepTimeout",
    "TransientError",
    "UnknownAction",
    "VerificationFailed",
    "build_plan",
    "load_record",
    "load_runbook",
    "resolve_runbook",
    "resume_run",
    "start_run",
]

if TYPE_CHECKING:  # what type checkers and IDEs see; at runtime __getattr__ imports on demand
    from dr_engine.config.loader import LoadedRunbook, load_runbook
    from dr_engine.config.runbooks import resolve_runbook
    from dr_engine.engine.run import RunOptions, resume_run, start_run
    from dr_engine.errors import (
        ConfigError,
        DrError,
        FencingFailed,
        LockHeld,
        PlanError,
        PreconditionFailed,
        ProviderError,
        RunStateError,
        StepFailed,
        StepTimeout,
        TransientError,
        UnknownAction,
        VerificationFailed,
    )
    from dr_engine.evidence.record import RunRecord, RunStatus, StepStatus, load_record
    from dr_engine.evidence.statedir import StateDir
    from dr_engine.lock.base import FileLock, Lock, NullLock
    from dr_engine.model import RunMode
    from dr_engine.planning.plan import ExecutionPlan, build_plan


def __getattr__(name: str) -> Any:
    """Import a public name on first use and keep it, so later lookups are plain attributes."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dr_engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The module's own names plus the public API (which is imported lazily)."""
    return sorted({*globals(), *__all__})
