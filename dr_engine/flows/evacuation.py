"""The evacuation as Prefect sees it: one parent flow run, one child flow run per application.

:func:`launch_evacuation` runs :func:`evacuation_flow`; the flow hands the evacuation engine
(:mod:`dr_engine.engine.evacuation`) a runner that starts each application as a ``dr-failover``
flow run *inside* the parent's context, so Prefect shows every application as a child of the
evacuation. Every decision (order, policies, locks, records) is the engine's.

Where the children run:

- **in this process** (default, embedded or against a server): each child flow run executes
  here, in a thread of the evacuation;
- **on Prefect workers** (``work_pool``, a Prefect server): the children are deployment runs of
  the ``dr-failover/evacuation-child`` deployment (created or updated on the pool, code loaded
  from where this package is installed), dispatched with ``run_deployment`` and executed by
  whichever worker of the pool picks them up. Workers need the same runbooks, regions and state
  dir at the same paths (one machine, or a shared file system): each child takes its own lock
  and writes its own record there, which the evacuation then reads.

Set ``configure(...)`` (:mod:`dr_engine.flows.settings`) before importing this module, as for
:mod:`dr_engine.flows.failover`.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import Flow, flow
from prefect.client.schemas.objects import State
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
from prefect.states import Completed, Failed

from dr_engine.clock import utc_iso
from dr_engine.engine.evacuation import EvacuationOptions, resume_evacuation, start_evacuation
from dr_engine.engine.options import RunOptions
from dr_engine.errors import ConfigError, DrError, Problem
from dr_engine.evidence.evacuation_record import EvacuationRecord
from dr_engine.evidence.record import RunRecord
from dr_engine.evidence.secrets_scrub import scrub_text
from dr_engine.evidence.statedir import StateDir
from dr_engine.flows.embedded_server import detach
from dr_engine.flows.failover import failover_flow, launch
from dr_engine.flows.failover import resume_run as resume_app_run
from dr_engine.flows.settings import configure, server_mode
from dr_engine.planning.evacuation import EvacuationPlan
from dr_engine.planning.plan import ExecutionPlan


@dataclass
class _Job:
    plan: EvacuationPlan
    options: EvacuationOptions
    resume_id: str | None = None
    force: bool = False
    deployment: str | None = None
    record: EvacuationRecord | None = None
    error: DrError | None = None


_JOBS: dict[str, _Job] = {}
_JOBS_LOCK = threading.Lock()


def _child_runner(parent: contextvars.Context) -> Any:
    """Run each application as a flow run in (a copy of) the parent flow run's context."""

    def run(plan: ExecutionPlan, options: RunOptions) -> RunRecord:
        return parent.copy().run(launch, plan, options)

    return run


#: The deployment workers run one application from.
CHILD_DEPLOYMENT = "evacuation-child"


def ensure_child_deployment(work_pool: str) -> str:
    """Create (or update) the deployment of ``dr-failover`` on ``work_pool``; return its full name."""
    import dr_engine

    root = Path(dr_engine.__file__).resolve().parent.parent  # the folder holding dr_engine/
    remote = failover_flow.from_source(source=str(root), entrypoint="dr_engine/flows/failover.py:failover_flow")
    if not isinstance(remote, Flow):  # a coroutine only when called from async code
        raise TypeError("from_source returned a coroutine in sync code")
    # deploy() prints a table of what it applied; the operator's terminal shows the evacuation.
    with contextlib.redirect_stdout(io.StringIO()):
        remote.deploy(name=CHILD_DEPLOYMENT, work_pool_name=work_pool, build=False, push=False,
                      print_next_steps=False, ignore_warnings=True,
                      description="One application of an evacuation (started by `dr evacuate --work-pool`)")
    return f"{failover_flow.name}/{CHILD_DEPLOYMENT}"


def _deployment_params(plan: ExecutionPlan, options: RunOptions) -> dict[str, Any]:
    # Plain, absolute values: the worker's process starts elsewhere and rebuilds everything.
    loaded = plan.loaded
    return {"runbook": str(loaded.path.resolve()), "state_dir": str(options.state.root.resolve()),
            "run_id": options.run_id, "mode": options.mode.value, "expected_sha256": loaded.sha256,
            "expected_region_sha256": dict(loaded.region_sha256),
            "regions_dir": str(loaded.regions_dir.resolve()) if loaded.regions_dir else None,
            "incident_start": utc_iso(options.incident_start) if options.incident_start else None,
            "triggered_by": options.triggered_by, "reason": options.reason}


def _from_worker(state: StateDir, run_id: str, flow_run: Any) -> RunRecord:
    if not state.exists(run_id):
        raise DrError(f"the worker's flow run {flow_run.name} ended {flow_run.state_name} without a run record",
                      hint="see the worker's log; the state dir must be the same path on the workers")
    return state.load(run_id)


def _worker_runner(parent: contextvars.Context, deployment: str) -> Any:
    def run(plan: ExecutionPlan, options: RunOptions) -> RunRecord:
        assert options.run_id is not None  # minted by the evacuation before the run starts
        flow_run = parent.copy().run(
            run_deployment, deployment, parameters=_deployment_params(plan, options), as_subflow=True,
            timeout=None, poll_interval=1, flow_run_name=f"{plan.loaded.runbook.runbook}-{options.run_id}")
        return _from_worker(options.state, options.run_id, flow_run)

    return run


def _worker_resumer(parent: contextvars.Context, deployment: str) -> Any:
    def resume(state: StateDir, run_id: str, options: RunOptions) -> RunRecord:
        record = state.load(run_id)
        params = {"runbook": record.runbook_file, "state_dir": str(state.root.resolve()), "run_id": run_id,
                  "resume": True, "triggered_by": options.triggered_by, "reason": options.reason}
        flow_run = parent.copy().run(run_deployment, deployment, parameters=params, as_subflow=True, timeout=None,
                                     poll_interval=1, flow_run_name=f"{record.runbook}-{run_id}-resume")
        return _from_worker(state, run_id, flow_run)

    return resume


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
    if current.deployment is not None:
        current.options.runner = _worker_runner(parent, current.deployment)
        current.options.resumer = _worker_resumer(parent, current.deployment)
    else:
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
                      force: bool = False, work_pool: str | None = None) -> EvacuationRecord:
    """Run the evacuation as a Prefect flow run; return its record (DrError raised before it starts).

    With ``work_pool`` (a Prefect server is needed: ``PREFECT_API_URL``), each application is a
    deployment run executed by the pool's workers.
    """
    configure(options.state)
    detach()
    deployment = None
    if work_pool is not None:
        if not server_mode():
            raise ConfigError(Problem("--work-pool", None, "", "workers need a Prefect server",
                                      "set PREFECT_API_URL to the server the workers poll"))
        deployment = ensure_child_deployment(work_pool)
    key = resume_id or f"new-{id(options)}"
    job = _Job(plan=plan, options=options, resume_id=resume_id, force=force, deployment=deployment)
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
