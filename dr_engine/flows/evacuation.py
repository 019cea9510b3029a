"""The evacuation as Prefect sees it: one parent flow run, one child flow run per application.

:func:`launch_evacuation` runs :func:`evacuation_flow`; the flow hands the evacuation engine
(:mod:`dr_engine.engine.evacuation`) a runner that starts each application as a ``dr-failover``
flow run *inside* the parent's context, so Prefect shows every application as a child of the
evacuation. Every decision (order, policies, locks, records) is the engine's.

Set ``configure(...)`` (:mod:`dr_engine.flows.settings`) before importing this module, as for
:mod:`dr_engine.flows.failover`.
"""

from __future__ import annotations

import contextvars
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.client.schemas.objects import State
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
from prefect.states import Completed, Failed

from dr_engine.engine.evacuation import EvacuationOptions, resume_evacuation, start_evacuation
from dr_engine.engine.options import RunOptions
from dr_engine.errors import DrError
from dr_engine.evidence.evacuation_record import EvacuationRecord
from dr_engine.evidence.record import RunRecord
from dr_engine.evidence.secrets_scrub import scrub_text
from dr_engine.evidence.statedir import StateDir
from dr_engine.flows.embedded_server import detach
from dr_engine.flows.failover import launch
from dr_engine.flows.failover import resume_run as resume_app_run
from dr_engine.flows.settings import configure
from dr_engine.planning.evacuation import EvacuationPlan
from dr_engine.planning.plan import ExecutionPlan


@dataclass
class _Job:
    plan: EvacuationPlan
    options: EvacuationOptions
    resume_id: str | None = None
    force: bool = False
    record: EvacuationRecord | None = None
    error: DrError | None = None


_JOBS: dict[str, _Job] = {}
_JOBS_LOCK = threading.Lock()


def _child_runner(parent: contextvars.Context) -> Any:
    """Run each application as a flow run in (a copy of) the parent flow run's context."""

    def run(plan: ExecutionPlan, options: RunOptions) -> RunRecord:
        return parent.copy().run(launch, plan, options)

    return run


def _child_resumer(parent: contextvars.Context) -> Any:
    def resume(state: StateDir, run_id: str, options: RunOptions) -> RunRecord:
        return parent.copy().run(resume_app_run, state, run_id, triggered_by=options.triggered_by,
                                 reason=options.reason, interrupts=options.interrupts)

    return resume


@flow(name="dr-evacuation", persist_result=False, log_prints=False, validate_parameters=False)
def evacuation_flow(job: str, plan: str = "", mode: str = "failover") -> State[Any]:
    """Evacuate (or continue evacuating) a region; each application is a child flow run."""
    del plan, mode  # shown in the UI as the run's parameters; the job holds the objects
    with _JOBS_LOCK:
        current = _JOBS[job]
    parent = contextvars.copy_context()
    current.options.runner = _child_runner(parent)
    current.options.resumer = _child_resumer(parent)
    try:
        if current.resume_id is not None:
            record = resume_evacuation(current.plan, current.resume_id, current.options, force=current.force)
        else:
            record = start_evacuation(current.plan, current.options)
    except DrError as exc:
        current.error = exc
        return Failed(message=scrub_text(str(exc)))
    current.record = record
    data = {"evacuation_id": record.evacuation_id, "status": record.status}
    if record.status == "succeeded":
        return Completed(message=f"evacuation {record.evacuation_id} succeeded", data=data)
    return Failed(message=f"evacuation {record.evacuation_id} {record.status}", data=data)


def launch_evacuation(plan: EvacuationPlan, options: EvacuationOptions, *, resume_id: str | None = None,
                      force: bool = False) -> EvacuationRecord:
    """Run the evacuation as a Prefect flow run; return its record (DrError raised before it starts)."""
    configure(options.state)
    detach()
    key = resume_id or f"new-{id(options)}"
    job = _Job(plan=plan, options=options, resume_id=resume_id, force=force)
    with _JOBS_LOCK:
        _JOBS[key] = job
    try:
        name = f"{plan.name}-{resume_id}-resume" if resume_id else plan.name
        with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            evacuation_flow.with_options(flow_run_name=name)(job=key, plan=str(Path(plan.loaded.file)),
                                                            mode=options.mode.value, return_state=True)
    finally:
        with _JOBS_LOCK:
            _JOBS.pop(key, None)
    if job.error is not None:
        raise job.error
    if job.record is None:
        raise DrError("the evacuation flow ended without a record", hint="see the Prefect flow run's logs")
    return job.record


__all__ = ["evacuation_flow", "launch_evacuation"]
