"""Evacuating a region: every application of a plan, in dependency order, each a run of its own.

:func:`start_evacuation` records the evacuation (``<state-dir>/evacuations/<id>/``), then starts
each application once everything it waits for is done, up to the plan's ``concurrency`` at once.
Every application runs through the engine's single entry point (:func:`~dr_engine.engine.run.start_run`
by default, or a runner the caller gives, e.g. a Prefect child flow run), so it takes its own
failover lock and keeps its own run record; its run id is minted and recorded in the evacuation
log before it starts. When an application does not succeed, the applications that wait for it
with ``on_failure: halt`` are skipped (naming it), those with ``on_failure: continue`` start
anyway and the report lists the deviation; nothing else stops.

:func:`resume_evacuation` continues only what did not succeed: an application whose run exists
is resumed (``dr resume`` of that run), one never started or skipped is decided again.

Stop signals: the first one starts no new application and passes the signal on to every running
one (each lets its running steps finish, as a single failover does); a second one abandons them.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from dr_engine.clock import Clock, SystemClock, parse_utc, utc_iso
from dr_engine.engine.interrupts import Interrupts
from dr_engine.engine.options import RunOptions
from dr_engine.engine.run import prepare_resume, resume_options, resume_run, start_run
from dr_engine.errors import DrError, RunStateError
from dr_engine.evidence.audit import RUN_FINISHED, RUN_RESUMED, AuditLog, read_events
from dr_engine.evidence.evacuation_record import (
    APPLICATION_FINISHED,
    APPLICATION_SKIPPED,
    APPLICATION_STARTED,
    AUDIT_FILE,
    DEPENDENCY_FAILED,
    EVACUATION_STARTED,
    AppStatus,
    EvacuationRecord,
    apply_event,
    fold,
    load_evacuation_record,
    measured_rto,
    write_record,
)
from dr_engine.evidence.record import RunRecord, RunStatus
from dr_engine.evidence.recovery import HEALTHY
from dr_engine.evidence.statedir import StateDir
from dr_engine.lock.base import FileLock
from dr_engine.model import RunMode
from dr_engine.model.evacuation import FailurePolicy
from dr_engine.planning.evacuation import EvacuationPlan
from dr_engine.planning.plan import ExecutionPlan
from dr_engine.planning.prediction import history_by_runbook

log = logging.getLogger("dr_engine.engine.evacuation")

#: The session lock's lease: liveness is by process, so only a very long evacuation would need more.
SESSION_TTL = timedelta(days=7)

#: Runs one application: the engine's entry point by default (a Prefect child flow run in flows/).
AppRunner = Callable[[ExecutionPlan, RunOptions], RunRecord]
#: Continues one application's run by id (``resume_run`` by default).
AppResumer = Callable[[StateDir, str, RunOptions], RunRecord]

_RUN_TO_APP = {RunStatus.SUCCEEDED: AppStatus.SUCCEEDED, RunStatus.FAILED: AppStatus.FAILED,
               RunStatus.HALTED: AppStatus.HALTED, RunStatus.CANCELLED: AppStatus.CANCELLED}


def _default_resumer(state: StateDir, run_id: str, options: RunOptions) -> RunRecord:
    point = prepare_resume(state, run_id)
    resumed = resume_options(point.record, state, clock=options.clock, triggered_by=options.triggered_by,
                             reason=options.reason)
    resumed.interrupts = options.interrupts
    return resume_run(state, run_id, point=point, options=resumed)


@dataclass
class EvacuationOptions:
    """How to run an evacuation (each application gets :class:`RunOptions` built from these)."""

    mode: RunMode = RunMode.FAILOVER
    state_dir: StateDir | Path = field(default_factory=StateDir)
    incident_start: datetime | None = None
    triggered_by: str | None = None
    reason: str = ""
    #: Applications at the same time; None: the plan's ``concurrency``.
    concurrency: int | None = None
    clock: Clock = field(default_factory=SystemClock)
    #: The process's stop signals (the CLI installs it); None: the evacuation makes and installs one.
    interrupts: Interrupts | None = None
    runner: AppRunner = start_run
    resumer: AppResumer = _default_resumer
    #: Called with the record after every event (the CLI prints progress from it).
    on_change: Callable[[EvacuationRecord], None] | None = None
    #: The Prefect work pool whose workers run the applications (recorded; ``dr resume`` reuses it).
    work_pool: str | None = None

    def __post_init__(self) -> None:
        self.state_dir = StateDir.of(self.state_dir)

    @property
    def state(self) -> StateDir:
        """The state directory."""
        return StateDir.of(self.state_dir)


class _Evacuation:
    """One session of an evacuation: the scheduler, its log and its record."""

    def __init__(self, plan: EvacuationPlan, options: EvacuationOptions, directory: Path, audit: AuditLog,
                 record: EvacuationRecord) -> None:
        self.plan, self.options, self.directory, self.audit, self.record = plan, options, directory, audit, record
        self.state = options.state
        self._lock = threading.Lock()
        self._children: dict[str, Interrupts] = {}
        self.interrupts = options.interrupts or Interrupts()
        self.interrupts.describe = lambda: (sorted(self._children), self.interrupts.grace_cap)

    # ------------------------------------------------------------------ the log

    def emit(self, type_: str, **data: Any) -> None:
        with self._lock:
            event = self.audit.append(type_, **data)
            # The record is only ever the fold of the log: each event applied as it is appended.
            record = self.record.model_copy(deep=True)
            apply_event(record, event)
            write_record(self.directory, record)
            self.record = record
        if self.options.on_change is not None:
            try:
                self.options.on_change(record)
            except Exception:  # a display problem must never break an evacuation
                log.exception("evacuation progress listener failed")

    # ------------------------------------------------------------------ deciding

    def _blocker(self, name: str) -> tuple[str | None, list[str]]:
        """(the failed dependency that halts ``name`` or None, the failed ones it continues past)."""
        continued: list[str] = []
        for edge in self.plan.waits_for(name):
            status = self.record.app(edge.waits_for).status
            if status is AppStatus.SUCCEEDED:
                continue
            if not status.done:
                return "", continued  # still waiting
            if edge.policy is FailurePolicy.HALT:
                return edge.waits_for, continued
            continued.append(edge.waits_for)
        return None, continued

    def _ready(self) -> list[tuple[str, list[str]]]:
        """Applications that may start now, each with the failed dependencies it continues past.

        Records the skip of every application a failed dependency halts (``on_failure: halt``).
        """
        ready: list[tuple[str, list[str]]] = []
        for wave in self.plan.waves:
            for name in wave:
                entry = self.record.app(name)
                if entry.status is not AppStatus.PENDING:
                    continue
                blocker, continued = self._blocker(name)
                if blocker == "":
                    continue
                if blocker is not None:
                    status = self.record.app(blocker).status.value
                    self.emit(APPLICATION_SKIPPED, application=name, because=blocker,
                              reason=f"'{blocker}' {status} and '{name}' waits for it with on_failure: halt")
                    continue
                ready.append((name, continued))
        return ready

    # ------------------------------------------------------------------ running

    def _child_interrupts(self, name: str) -> Interrupts:
        child = Interrupts(grace_cap=self.interrupts.grace_cap, write=lambda text: None)
        with self._lock:
            self._children[name] = child
            if self.interrupts.stop.is_set():
                _forward(self.interrupts, child)
        return child

    def _run_one(self, name: str, run_id: str | None, resume: bool) -> RunRecord:
        app_plan = self.plan.plans[name]
        options = RunOptions(mode=self.options.mode, run_id=run_id, state_dir=self.state,
                             incident_start=parse_utc(self.record.incident_started_at),
                             triggered_by=self.options.triggered_by,
                             reason=self.options.reason or f"evacuation {self.record.evacuation_id}",
                             clock=self.options.clock, interrupts=self._child_interrupts(name))
        try:
            if resume and run_id is not None and self.state.exists(run_id):
                existing = self.state.load(run_id)
                if existing.status is RunStatus.SUCCEEDED:
                    return existing  # it finished after the last session recorded it
                return self.options.resumer(self.state, run_id, options)
            return self.options.runner(app_plan, options)
        finally:
            with self._lock:
                self._children.pop(name, None)

    def _finish_app(self, name: str, run_id: str, future: Future[RunRecord]) -> None:
        try:
            run = future.result()
        except DrError as exc:  # refused before it started (lock held, digests): a failure, recorded
            self.emit(APPLICATION_FINISHED, application=name, run_id=run_id, status=AppStatus.FAILED.value,
                      error=f"{type(exc).__name__}: {exc.message}", hint=exc.hint)
            return
        except Exception as exc:
            log.exception("application %s crashed", name)
            self.emit(APPLICATION_FINISHED, application=name, run_id=run_id, status=AppStatus.FAILED.value,
                      error=f"{type(exc).__name__}: {exc}")
            return
        status = _RUN_TO_APP.get(run.status, AppStatus.FAILED)
        self.emit(APPLICATION_FINISHED, application=name, run_id=run.run_id, status=status.value,
                  rto_seconds=run.rto_seconds, rto_target_seconds=run.rto_target_seconds, rto_met=run.rto_met,
                  rpo_seconds=run.rpo_seconds, rpo_target_seconds=run.rpo_target_seconds, rpo_met=run.rpo_met,
                  recovered_at=run.milestones.get(HEALTHY) if status is AppStatus.SUCCEEDED else None)

    def run(self) -> EvacuationRecord:
        concurrency = self.options.concurrency or self.plan.loaded.plan.concurrency
        running: dict[Future[RunRecord], tuple[str, str]] = {}
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="dr-evacuation") as pool:
            while True:
                if self.interrupts.stop.is_set():
                    with self._lock:
                        for child in self._children.values():
                            _forward(self.interrupts, child)
                elif len(running) < concurrency:
                    for name, continued in self._ready()[: concurrency - len(running)]:
                        for dependency in continued:  # recorded once, as the application starts
                            self.emit(DEPENDENCY_FAILED, application=name, dependency=dependency,
                                      status=self.record.app(dependency).status.value)
                        # An application an earlier session started keeps its run (it is resumed).
                        earlier = self.record.app(name).run_id
                        run_id = earlier or StateDir.new_run_id(self.options.clock)
                        self.emit(APPLICATION_STARTED, application=name, run_id=run_id, resumed=earlier is not None)
                        running[pool.submit(self._run_one, name, run_id, earlier is not None)] = (name, run_id)
                if not running:
                    break
                done, _ = wait(running, timeout=0.2, return_when=FIRST_COMPLETED)
                for future in done:
                    name, run_id = running.pop(future)
                    self._finish_app(name, run_id, future)
        return self._seal()

    def _seal(self) -> EvacuationRecord:
        record = self.record
        statuses = [a.status for a in record.applications]
        if self.interrupts.stop.is_set() and any(s is not AppStatus.SUCCEEDED for s in statuses):
            status = "cancelled"
        elif all(s is AppStatus.SUCCEEDED for s in statuses):
            status = "succeeded"
        else:
            status = "failed"
        seconds, met = measured_rto(record)
        pending = [a.name for a in record.applications if a.status is AppStatus.PENDING]
        self.emit(RUN_FINISHED, status=status, rto_seconds=seconds, rto_met=met, not_started=pending,
                  interrupted_by=self.interrupts.first_signal)
        return self.record


def _forward(master: Interrupts, child: Interrupts) -> None:
    # The child engine reads the signal's name from its own list; a second signal abandons.
    if master.signals and not child.signals:
        child.signals.append(master.signals[0])
    child.stop.set()
    if master.abandon.is_set():
        if len(child.signals) < 2:
            child.signals.append(master.signals[-1] if master.signals else signal.SIGINT)
        child.abandon.set()


def _installed(interrupts: Interrupts | None) -> tuple[Interrupts, bool]:
    if interrupts is not None:
        return interrupts, False
    made = Interrupts()
    return made, made.install()


def start_evacuation(plan: EvacuationPlan, options: EvacuationOptions) -> EvacuationRecord:
    """Evacuate every application of ``plan``; return the sealed evacuation record."""
    state = options.state
    clock = options.clock
    evacuation_id = StateDir.new_run_id(clock)
    directory = state.create_evacuation_dir(evacuation_id)
    now = clock.now()
    incident = options.incident_start or now
    history = history_by_runbook(state)
    predicted = plan.predicted(history)
    applications = []
    for app in plan.applications:
        prediction = predicted["applications"][app.name]
        applications.append({
            "name": app.name, "runbook": plan.plans[app.name].loaded.runbook.runbook, "tier": app.tier,
            "wave": plan.wave_of(app.name), "business_function": app.business_function,
            "after": [{"application": e.waits_for, "on_failure": e.policy.value, "implicit": e.implicit}
                      for e in plan.waits_for(app.name)],
            "predicted_p50_seconds": prediction["p50_seconds"], "predicted_p95_seconds": prediction["p95_seconds"]})
    audit = AuditLog(directory / AUDIT_FILE, evacuation_id, now=clock.now)
    loaded = plan.loaded
    audit.append(EVACUATION_STARTED, plan=loaded.plan.evacuation, file=loaded.file, sha256=loaded.sha256,
                 path=str(loaded.path.resolve()),
                 source=loaded.plan.source, target=loaded.plan.target, mode=options.mode.value,
                 rto_target_seconds=loaded.plan.objectives.rto.total_seconds(), incident_started_at=utc_iso(incident),
                 triggered_by=options.triggered_by or "", reason=options.reason, applications=applications,
                 work_pool=options.work_pool,
                 waves=plan.waves, critical_path=plan.critical_path, predicted=predicted)
    with _session_lock(state, evacuation_id, options):
        record = fold(read_events(directory / AUDIT_FILE))
        write_record(directory, record)
        return _run_session(plan, options, directory, audit, record)


def _run_session(plan: EvacuationPlan, options: EvacuationOptions, directory: Path, audit: AuditLog,
                 record: EvacuationRecord) -> EvacuationRecord:
    interrupts, installed = _installed(options.interrupts)
    options.interrupts = interrupts
    try:
        session = _Evacuation(plan, options, directory, audit, record)
        interrupts.phase = "running"
        return session.run()
    finally:
        interrupts.phase = "sealed"
        if installed:
            interrupts.restore()


@contextmanager
def _session_lock(state: StateDir, evacuation_id: str, options: EvacuationOptions) -> Iterator[None]:
    """One session of an evacuation at a time: a resume while it still runs is refused (LockHeld).

    Held by process: a session whose process is gone leaves a stale lease that the next
    ``dr resume`` of the same evacuation takes back. The applications keep their own locks.
    """
    lock = FileLock(state.locks_dir, clock=options.clock, ttl=SESSION_TTL)
    lease = lock.acquire(f"evacuation-{evacuation_id}", evacuation_id)
    try:
        yield
    finally:
        lock.release(lease)


def resume_evacuation(plan: EvacuationPlan, evacuation_id: str, options: EvacuationOptions, *,
                      force: bool = False) -> EvacuationRecord:
    """Continue ``evacuation_id``: resume the applications that did not succeed, decide the rest again."""
    state = options.state
    evacuation_id = state.resolve_evacuation_id(evacuation_id)
    directory = state.evacuation_dir(evacuation_id)
    with _session_lock(state, evacuation_id, options):  # before anything: the last session may still run
        record = load_evacuation_record(directory)
        if record.status == "succeeded":
            raise RunStateError(f"evacuation {evacuation_id} already succeeded; there is nothing to resume",
                                hint="start a new one with `dr evacuate`")
        if record.plan_sha256 != plan.loaded.sha256 and not force:
            raise RunStateError(f"the plan {plan.loaded.file} changed since evacuation {evacuation_id} started",
                                hint="restore it, or resume with --force to use the new version (audited)")
        if sorted(a.name for a in record.applications) != sorted(a.name for a in plan.applications):
            raise RunStateError("the plan's applications changed; an evacuation cannot continue with others",
                                hint="start a new evacuation")
        audit = AuditLog(directory / AUDIT_FILE, evacuation_id, now=options.clock.now)
        if record.status == "running":  # its process is gone (we hold the lock): seal that session first
            audit.append(RUN_FINISHED, status="crashed", rto_seconds=None, rto_met=False, not_started=[])
        audit.append(RUN_RESUMED, force=force, plan_sha256=plan.loaded.sha256,
                     triggered_by=options.triggered_by or "", reason=options.reason)
        record = fold(read_events(directory / AUDIT_FILE))
        write_record(directory, record)
        return _run_session(plan, options, directory, audit, record)


__all__ = ["AppResumer", "AppRunner", "EvacuationOptions", "resume_evacuation", "start_evacuation"]
