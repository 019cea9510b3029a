"""The failover flow: one Prefect flow run per dr-engine run, one Prefect task per step.

A thin adapter: the engine (:mod:`dr_engine.engine.run`) decides everything (the lock, the run id,
the runbook and region digests, the two-person rule); this module only passes the parameters to
:func:`dr_engine.engine.run.start_run` / :func:`dr_engine.engine.run.resume_run`, submits each step as a
Prefect task on a ``ThreadPoolTaskRunner`` (``max_workers`` = the run's concurrency), publishes
a table and a Markdown artifact, and marks the flow run Failed when the run did not succeed.
Prefect task retries stay 0: the engine retries within the step deadline.

Call :func:`launch` / :func:`resume_run` (the CLI and ``dr demo`` do). Configure Prefect with
:func:`dr_engine.flows.settings.configure` *before* importing this module.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State
from prefect.futures import PrefectFuture
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
from prefect.states import Completed, Failed
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from dr_engine.capabilities import Capability
from dr_engine.config.loader import load_runbook
from dr_engine.engine.executors import InlineExecutor, StepHandle
from dr_engine.engine.interrupts import Interrupts
from dr_engine.engine.progress import Progress
from dr_engine.engine.run import (
    ResumePoint,
    RunOptions,
    options_from_parameters,
    prepare_resume,
    reserve,
    resume_options,
    start_run,
)
from dr_engine.engine.run import resume_run as resume_engine_run
from dr_engine.errors import DrError, RunStateError
from dr_engine.evidence.record import RunRecord, RunStatus, StepStatus
from dr_engine.evidence.secrets_scrub import scrub_text
from dr_engine.evidence.statedir import StateDir
from dr_engine.evidence.summary import markdown_summary, step_rows
from dr_engine.flows.approval import PrefectApprovalGate, with_approval_gate
from dr_engine.flows.embedded_server import detach
from dr_engine.flows.settings import configure
from dr_engine.planning.plan import ExecutionPlan, PlannedStep, build_plan
from dr_engine.report.publish import artifact_key, artifact_markdown, run_report, write_default_reports


# The run name is a template formatted from the parameters: one task object serves every step
# (``with_options`` per submission rebuilt the task, source inspection included, in the flow thread).
@task(name="dr-step", task_run_name="{step_id}", retries=0, cache_policy=NO_CACHE, persist_result=False)
def step_task(step_id: str, call: Callable[[], None]) -> None:
    """Run one step through the engine (which records its outcome; it never raises for it)."""
    del step_id  # shown in the UI through the task run name and parameters
    call()


class _TaskHandle:
    """Waits for a ``dr-step`` task run without fetching its (always ``None``) result.

    ``PrefectFuture.result()`` resolves the final state's result through Prefect's event loop
    thread, a few milliseconds of flow-thread time per step; a completed step has nothing to
    return, so only a crashed task run goes that way (to re-raise its exception).
    """

    def __init__(self, future: PrefectFuture[None]) -> None:
        self._future = future

    def result(self) -> object:
        """Block until the task run ended; re-raise its exception when it crashed."""
        self._future.wait()
        if self._future.state.is_completed():
            return None
        return self._future.result()


class PrefectExecutor:
    """Submits each step as a ``dr-step`` Prefect task named after the step."""

    def submit(self, step: PlannedStep, fn: Callable[[], None]) -> StepHandle:
        """Submit to the flow's task runner (approvals run in the flow: Prefect pauses flows, not tasks)."""
        if step.capability is Capability.CONTROL_APPROVE:
            return InlineExecutor().submit(step, fn)
        return _TaskHandle(step_task.submit(step.id, fn))


@dataclass
class _Launch:
    """In-process objects a flow call cannot take as parameters (clock, lock, listeners, fakes)."""

    plan: ExecutionPlan | None = None
    options: RunOptions | None = None
    progress: Progress | None = None
    resume: ResumePoint | None = None
    force: bool = False
    error: BaseException | None = None


_LAUNCHES: dict[str, _Launch] = {}
_LAUNCHES_LOCK = threading.Lock()


def publish_artifacts(record: RunRecord) -> None:
    """A table of step timings and a Markdown summary, keyed per runbook (lowercase, dashes)."""
    key = record.runbook.lower().replace("_", "-")
    create_table_artifact(key=f"dr-steps-{key}", table=step_rows(record),
                          description=f"Step timings of run {record.run_id} ({record.status.value})")
    create_markdown_artifact(key=f"dr-summary-{key}", markdown=markdown_summary(record),
                             description=f"{record.mode} of {record.runbook}: {record.status.value}")


def publish_reports(record: RunRecord, state_dir: StateDir | Path) -> list[Path]:
    """Write the run's HTML + JSON compliance report and publish its summary as an artifact.

    A report that cannot be rendered never changes the run's outcome (the audit log is the
    source of truth and `dr report` can rebuild it at any time); the failure is logged.
    """
    run_dir = StateDir.of(state_dir).run_dir(record.run_id)
    try:
        paths = write_default_reports(run_dir)
        report = run_report(run_dir)
        html = next((p for p in paths if p.suffix == ".html"), None)
        create_markdown_artifact(key=artifact_key(record.run_id), markdown=artifact_markdown(report, html),
                                 description=f"Compliance report of run {record.run_id}")
    except Exception as exc:  # reporting must never turn a recovery into a failure
        get_run_logger().warning("could not write the report of run %s: %s (rebuild it with `dr report %s`)",
                                 record.run_id, exc, record.run_id)
        return []
    return paths


def _final_state(record: RunRecord) -> State[Any]:
    data = {"run_id": record.run_id, "status": record.status.value}
    if record.status is RunStatus.SUCCEEDED:
        return Completed(message=f"run {record.run_id} succeeded", data=data)
    where = f" at step {record.halted_at_step}" if record.halted_at_step else ""
    return Failed(message=f"run {record.run_id} {record.status.value}{where}", data=data)


def _gated(options: RunOptions | None) -> RunOptions | None:
    return with_approval_gate(options) if options is not None else None


@flow(name="dr-failover", persist_result=False, log_prints=False, validate_parameters=False)
def failover_flow(
    runbook: str,
    state_dir: str = ".dr",
    run_id: str | None = None,
    mode: str = "failover",
    expected_sha256: str | None = None,
    incident_start: str | None = None,
    allow_data_loss: bool = False,
    triggered_by: str | None = None,
    reason: str = "",
    concurrency: int = 4,
    regions_dir: str | None = None,
    resume: bool = False,
    force: bool = False,
    take_over_lock: bool = False,
    expected_region_sha256: dict[str, str] | None = None,
) -> State[Any]:
    """Run (or, with ``resume``, continue) a runbook; deployable with plain parameters.

    Every decision is the engine's: this passes the parameters (or the in-process objects of a
    :func:`launch`) through and runs the steps as Prefect tasks.
    """
    launch_ctx = _LAUNCHES.get(run_id or "") or _Launch()
    try:
        if resume:
            if run_id is None:
                raise RunStateError("resume needs a run id")
            record = resume_engine_run(Path(state_dir), run_id, force=force, point=launch_ctx.resume,
                                       options=_gated(launch_ctx.options), executor=PrefectExecutor(),
                                       progress=launch_ctx.progress, approval_gate=PrefectApprovalGate(),
                                       triggered_by=triggered_by, reason=reason, concurrency=concurrency,
                                       take_over_lock=take_over_lock)
        else:
            plan = launch_ctx.plan or build_plan(load_runbook(Path(runbook),
                                                              Path(regions_dir) if regions_dir else None))
            options = launch_ctx.options or options_from_parameters(
                mode=mode, state_dir=state_dir, run_id=run_id, incident_start=incident_start,
                allow_data_loss=allow_data_loss, triggered_by=triggered_by, reason=reason,
                concurrency=concurrency, take_over_lock=take_over_lock)
            record = start_run(plan, with_approval_gate(options), executor=PrefectExecutor(),
                               progress=launch_ctx.progress, expected_sha256=expected_sha256,
                               expected_region_sha256=expected_region_sha256)
    except DrError as exc:
        launch_ctx.error = exc
        return Failed(message=scrub_text(str(exc)))  # state messages are stored in Prefect's database
    if record.interrupted_by and any(s.status is StepStatus.ABANDONED for s in record.steps):
        # The operator asked to stop now: nothing after the seal may hold the exit (`dr report` rebuilds).
        get_run_logger().warning("run %s abandoned by the operator: reports not written (rebuild them with "
                                 "`dr report %s`)", record.run_id, record.run_id)
        return _final_state(record)
    publish_artifacts(record)
    publish_reports(record, Path(state_dir))
    return _final_state(record)


def _call_flow(run_id: str, ctx: _Launch, concurrency: int, flow_run_name: str, **params: Any) -> None:
    with _LAUNCHES_LOCK:
        _LAUNCHES[run_id] = ctx
    try:
        # TaskRunner is invariant in its future type; a thread-pool runner is what with_options wants.
        runner = cast("TaskRunner[PrefectFuture[Any]]", ThreadPoolTaskRunner(max_workers=max(1, concurrency)))
        configured = failover_flow.with_options(task_runner=runner, flow_run_name=flow_run_name)
        # The heartbeat adds ~1 s per flow run and only matters for deployments (crash detection).
        with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            configured(run_id=run_id, concurrency=concurrency, return_state=True, **params)
    finally:
        with _LAUNCHES_LOCK:
            _LAUNCHES.pop(run_id, None)
    if ctx.error is not None:
        raise ctx.error


def launch(plan: ExecutionPlan, options: RunOptions, progress: Progress | None = None) -> RunRecord:
    """Run ``plan`` as a Prefect flow run; return the final record (raises DrError before it starts)."""
    configure(options.state)
    detach()
    loaded = plan.loaded
    # The engine takes the failover lock before Prefect starts: a second run fails in a second, not
    # after a server boot; the flow's run reuses the lease.
    with reserve(plan, options) as held:
        run_id = str(held.run_id)
        _call_flow(run_id, _Launch(plan=plan, options=held, progress=progress), held.concurrency,
                   f"{loaded.runbook.runbook}-{run_id}", runbook=str(loaded.path), state_dir=str(held.state),
                   mode=held.mode.value, expected_sha256=loaded.sha256,
                   expected_region_sha256=dict(loaded.region_sha256), reason=held.reason,
                   allow_data_loss=held.allow_data_loss, triggered_by=held.triggered_by)
    return options.state.load(run_id)


def resume_run(state_dir: StateDir | Path, run_id: str, *, force: bool = False, progress: Progress | None = None,
               concurrency: int | None = None, triggered_by: str | None = None, reason: str = "",
               take_over_lock: bool = False, interrupts: Interrupts | None = None,
               **option_overrides: Any) -> RunRecord:
    """Resume ``run_id`` as a new Prefect flow run of the same dr-engine run; return the final record."""
    state = StateDir.of(state_dir)
    configure(state)
    detach()
    point = prepare_resume(state, run_id, force=force)
    options = resume_options(point.record, state, triggered_by=triggered_by, reason=reason,
                             concurrency=concurrency, take_over_lock=take_over_lock, **option_overrides)
    options.interrupts = interrupts
    record = point.record
    with reserve(point.plan, options) as held:
        _call_flow(record.run_id, _Launch(resume=point, options=held, progress=progress, force=force),
                   held.concurrency, f"{record.runbook}-{record.run_id}-resume{record.resumes + 1}",
                   runbook=record.runbook_file, state_dir=str(state), resume=True, force=force)
    return state.load(record.run_id)


__all__ = ["PrefectExecutor", "failover_flow", "launch", "publish_artifacts", "resume_run", "step_task"]
