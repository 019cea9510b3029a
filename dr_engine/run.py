"""The engine: executes an :class:`~dr_engine.plan.ExecutionPlan` wave by wave.

No Prefect here: the flow (``flows/failover.py``) passes an executor that submits each step as
a Prefect task; tests pass an in-process executor and a fake clock.

Per step the engine binds ``${...}`` references (:mod:`dr_engine.bindings`), re-validates the
params, builds a :class:`StepContext` whose deadline is the step timeout, and calls the action,
retrying :class:`TransientError` only (:mod:`dr_engine.retry`). Every state change is an audit
event applied to the run record (:mod:`dr_engine.journal`), and the record is rewritten
atomically after each one, so a crash loses nothing.

On a step failure the run halts: no new step starts, steps already running finish, and the
record lists what changed. Status: ``halted`` when a safety gate refused (PreconditionFailed,
FencingFailed: the run stopped on purpose), ``failed`` for any other step error, ``cancelled``
when interrupted. Every one of them can be resumed (:func:`resume_run`).
"""

from __future__ import annotations

import logging
import os
import random
import signal
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from dr_engine import audit as ev
from dr_engine.actions.base import STEP_STARTED_BEFORE, ActionParams, RpoObservation, StepContext, StepResult
from dr_engine.audit import AuditLog, default_actor, read_events, verify
from dr_engine.bindings import Bindings, bind_params, read_secret
from dr_engine.clock import Clock, Deadline, SystemClock, utc_iso
from dr_engine.errors import ConfigError, DrError, FencingFailed, PreconditionFailed, RunStateError, StepFailed
from dr_engine.executors import Executor, InlineExecutor, StepHandle, ThreadExecutor
from dr_engine.journal import apply_event, rebuild_record
from dr_engine.lease_heartbeat import LeaseHeartbeat, start_heartbeat
from dr_engine.loader import load_runbook, runbook_location
from dr_engine.lock import Lease, Lock
from dr_engine.lock_backends import lock_for
from dr_engine.model import DrillBehaviour, RunMode
from dr_engine.notify import listeners_for
from dr_engine.operations import REQUIRE_DATA_LOSS_APPROVAL, RunHooks
from dr_engine.plan import ExecutionPlan, PlannedStep, build_plan
from dr_engine.progress import Progress
from dr_engine.record import (
    AUDIT_FILE,
    RUN_FILE,
    RunRecord,
    RunStatus,
    StepError,
    StepRecord,
    StepStatus,
    atomic_write_text,
)
from dr_engine.recovery import INCIDENT_STARTED, RUN_STARTED
from dr_engine.retry import RetryPolicy, call_with_retry
from dr_engine.statedir import StateDir, default_state_dir

log = logging.getLogger("dr_engine.run")

#: How far in the future ``--incident-start`` may be (clock skew): clamped to now and audited.
INCIDENT_SKEW_SECONDS = 5.0

#: Statuses that stop a run on purpose (safety gates) rather than on an error.
HALTING_ERRORS: tuple[type[StepFailed], ...] = (PreconditionFailed, FencingFailed)


@dataclass
class RunOptions:
    """How to run a plan. Only ``mode`` and ``state_dir`` matter for most callers."""

    mode: RunMode = RunMode.FAILOVER
    run_id: str | None = None
    state_dir: Path = field(default_factory=default_state_dir)
    incident_start: datetime | None = None
    allow_data_loss: bool = False
    triggered_by: str | None = None
    reason: str = ""
    concurrency: int = 4
    clock: Clock = field(default_factory=SystemClock)
    #: Passed to every StepContext (e.g. ``approval_gate``); the engine adds ``emit`` and ``run_dir``.
    extras: dict[str, Any] = field(default_factory=dict)
    #: The failover lock; None means a FileLock under ``<state-dir>/locks``.
    lock: Lock | None = None
    take_over_lock: bool = False
    #: Seed for retry jitter (tests); None = random.
    seed: int | None = None


def git_commit(path: Path) -> str | None:
    """The commit of the git checkout holding ``path`` (None outside a repository)."""
    try:
        done = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def _test_crash_point(step_id: str, when: str) -> None:
    """Crash-resume tests: SIGKILL this process at ``DR_TEST_CRASH_AT=<step>:<before|during|after>``.

    Inert unless that variable is set. ``before``: the step not yet recorded; ``during``: recorded
    as running, the action about to be called; ``after``: the action returned, its result not yet
    recorded (side effects done, journal unaware: the hardest case for idempotency).
    """
    if os.environ.get("DR_TEST_CRASH_AT") == f"{step_id}:{when}":
        os.kill(os.getpid(), signal.SIGKILL)


def _error_of(exc: BaseException, planned: PlannedStep) -> StepError:
    if isinstance(exc, StepFailed | DrError):
        return StepError(kind=type(exc).__name__, message=exc.message, hint=exc.hint)
    return StepError(kind=type(exc).__name__, message=str(exc) or type(exc).__name__,
                     hint=f"unexpected error in action {planned.action}; re-run with --debug and report it")


def _rpo_data(dataset: str | None, rpo: RpoObservation) -> dict[str, Any]:
    """The ``rpo`` data of a step event (see :mod:`dr_engine.journal`)."""
    return {"dataset": dataset, "lag_bytes": rpo.lag_bytes, "lag_seconds": rpo.lag_seconds,
            "rows_lost": rpo.rows_lost}


def _skips_in_drill(planned: PlannedStep, default: DrillBehaviour) -> bool:
    wanted = planned.step.drill
    if wanted is DrillBehaviour.DEFAULT:
        wanted = default
    return wanted is DrillBehaviour.SKIP


class Engine:
    """Runs (or resumes) one plan. Create one Engine per run."""

    def __init__(self, plan: ExecutionPlan, options: RunOptions, *, executor: Executor | None = None,
                 progress: Progress | None = None) -> None:
        self.plan = plan
        self.options = options
        self.clock = options.clock
        self.state = StateDir(options.state_dir)
        self.progress = progress or Progress()
        # Webhook notifications (runbook `notify:` / DR_NOTIFY_WEBHOOKS) listen like the live display.
        self._listeners: list[Progress] = [self.progress, *listeners_for(plan.loaded.runbook, plan.loaded.path.parent)]
        self._executor = executor
        # The configured backend (lock file by default; see dr_engine.lock_backends).
        self._lock_backend: Lock = options.lock or lock_for(plan.loaded.target, self.state.root, clock=self.clock)
        self._lease: Lease | None = None
        # Renews the lease while the run holds it, so a long wave cannot outlive the lease TTL.
        self._heartbeat: LeaseHeartbeat | None = None
        self._lock_loss_recorded = False
        # Steps an earlier segment of the run started (resume): their effect may already be done.
        self._started_before: frozenset[str] = frozenset()
        self._state_lock = threading.RLock()
        # run.json group commit (see _write_record): events applied / covered by the last write.
        self._write_lock = threading.Lock()
        self._applied = 0
        self._written = 0
        self._halt = threading.Event()
        self._failure: tuple[str, StepError] | None = None
        self._halting_kind = False
        self._cancelled = False
        self._rng = random.Random(options.seed)
        self._ops = RunHooks(self)  # drills, approvals, operator controls (dr_engine.operations)
        self.record: RunRecord | None = None
        self.run_dir: Path | None = None
        self._audit: AuditLog | None = None

    # ----------------------------------------------------------------- state changes

    def emit(self, type: str, *, actor: str | None = None, **data: Any) -> dict[str, Any]:
        """Append an audit event, apply it to the record and rewrite ``run.json``."""
        assert self._audit is not None and self.record is not None and self.run_dir is not None
        # The append (ordered and fsync'd by the audit log) happens outside the state lock so that
        # parallel steps share disk flushes; events of one step come from one thread, in order.
        event = self._audit.append(type, actor=actor or self.record.triggered_by, **data)
        with self._state_lock:
            apply_event(self.record, event)
            self._applied += 1
        self._write_record(durable=type == ev.RUN_FINISHED)
        return event

    def _write_record(self, *, durable: bool) -> None:
        """Bring ``run.json`` up to date with every event applied so far (group commit).

        The record is serialised under the state lock (a consistent snapshot) but written
        outside it, so steps applying events never wait for file I/O. Writers queue on
        ``_write_lock``, which keeps snapshots landing in order; one whose events a later
        snapshot already covered returns without writing. Either way ``run.json`` holds this
        thread's event when ``emit`` returns.
        """
        assert self.record is not None and self.run_dir is not None
        with self._write_lock:
            with self._state_lock:
                if self._written >= self._applied and not durable:
                    return
                version, text = self._applied, self.record.to_json()
            atomic_write_text(self.run_dir / RUN_FILE, text, durable=durable)
            self._written = version

    def _notify(self, name: str, *args: Any) -> None:
        for listener in self._listeners:
            try:
                getattr(listener, name)(self.record, *args)
            except Exception:  # a display or notification problem must never break a failover
                log.exception("progress listener %s failed", name)

    # ----------------------------------------------------------------- entry points

    def run(self) -> RunRecord:
        """Start a new run of the plan and execute it; return the final record."""
        loaded = self.plan.loaded
        rb = loaded.runbook
        now = self.clock.now()
        incident = self.options.incident_start or now
        # An incident start after the run start would make the RTO negative (and "met"): refuse
        # it, except a few seconds of clock skew between machines, which are clamped and audited.
        skew = (incident - now).total_seconds()
        if skew > INCIDENT_SKEW_SECONDS:
            raise ConfigError(f"--incident-start {utc_iso(incident)} is in the future ({skew:.0f}s after now)",
                              hint="give the time the outage began, in UTC (e.g. 2026-01-31T02:15:00Z)")
        clamped_from = utc_iso(incident) if skew > 0 else None
        if clamped_from is not None:
            incident = now
        run_id = self.options.run_id or StateDir.new_run_id(self.clock)
        self._lease = self._lock_backend.acquire(rb.lock_key, run_id, take_over=self.options.take_over_lock)
        self._heartbeat = start_heartbeat(self._lock_backend, self._lease)
        try:
            self.run_dir = self.state.create_run_dir(run_id)
            self._audit = AuditLog(self.run_dir / AUDIT_FILE, run_id, now=self.clock.now)
            started = utc_iso(now)
            self.record = self._initial_record(run_id, started, utc_iso(incident))
            initial = self.record.model_dump(mode="json")
            self.emit(ev.RUN_STARTED, at=started, record=initial)
            self.emit(ev.MILESTONE, name=INCIDENT_STARTED, at=utc_iso(incident))
            if clamped_from is not None:
                self.emit(ev.NOTE_ADDED, text=f"--incident-start {clamped_from} was {skew:.1f}s in the future "
                          f"(clock skew): clamped to the run start {utc_iso(incident)}",
                          incident_start_given=clamped_from)
            if self._lease.fencing_token:
                self.emit(ev.NOTE_ADDED, text=f"failover lock '{rb.lock_key}' taken, fencing token "
                          f"{self._lease.fencing_token}", lock=self._lease.key, token=self._lease.fencing_token)
            self._audit_lock_take_over()
            for override in self.plan.overrides:
                self.emit(ev.OVERRIDE, kind="fencing", detail=override)
            if self.options.allow_data_loss:
                self.emit(ev.OVERRIDE, kind="allow-data-loss",
                          detail=f"started with --allow-data-loss: {self.options.reason or 'no reason given'}")
        except BaseException:
            self._release()
            raise
        return self._drive()

    def resume(self, record: RunRecord, *, force: bool = False, runbook_changed: bool = False) -> RunRecord:
        """Continue ``record`` (rebuilt from its audit log): skip succeeded steps, re-run the rest.

        ``record`` was read before the lock was taken: another ``dr resume`` may have moved the run
        on since. It is read again from the audit log (and checked again) once the lock is held.
        """
        self.record = record
        self.run_dir = self.state.run_dir(record.run_id)
        # The lock is the application's (runbook `application:`), shared by its failover and failback.
        self._lease = self._lock_backend.acquire(self.plan.loaded.runbook.lock_key, record.run_id,
                                                 take_over=self.options.take_over_lock)
        self._heartbeat = start_heartbeat(self._lock_backend, self._lease)
        try:
            fresh = prepare_resume(self.state.root, record.run_id, force=force)
            record = self.record = fresh.record
            runbook_changed = runbook_changed or fresh.runbook_changed
            self._audit = AuditLog(self.run_dir / AUDIT_FILE, record.run_id, now=self.clock.now)
            reset = [s.id for s in record.steps if s.status in (StepStatus.RUNNING, StepStatus.FAILED,
                                                                  StepStatus.ABANDONED)]
            self._started_before = frozenset(reset)
            self.emit(ev.RUN_RESUMED, actor=self.options.triggered_by or default_actor(),
                      previous_status=record.status.value, reset_steps=reset, force=force,
                      runbook_sha256=self.plan.loaded.sha256, region_sha256=dict(self.plan.loaded.region_sha256),
                      reason=self.options.reason)
            self._audit_lock_take_over()
            if runbook_changed:
                self.emit(ev.OVERRIDE, kind="runbook-changed",
                          detail=f"resumed with --force although the runbook changed (now sha256 "
                                 f"{self.plan.loaded.sha256[:12]})")
            if fresh.regions_changed:
                self.emit(ev.OVERRIDE, kind="regions-changed",
                          detail=f"resumed with --force although region file(s) changed: "
                                 f"{', '.join(fresh.regions_changed)}")
        except BaseException:
            self._release()
            raise
        return self._drive()

    # ----------------------------------------------------------------- execution

    def _initial_record(self, run_id: str, started: str, incident: str) -> RunRecord:
        loaded = self.plan.loaded
        rb = loaded.runbook
        assert self.run_dir is not None
        steps = [StepRecord(id=s.id, action=s.action, capability=s.capability.value, wave=s.wave)
                 for s in self.plan.steps]
        return RunRecord(
            run_id=run_id, runbook=rb.runbook, application=rb.lock_key, runbook_file=str(loaded.path.resolve()),
            runbook_sha256=loaded.sha256, region_sha256=dict(loaded.region_sha256),
            regions_dir=str(loaded.regions_dir.resolve()) if loaded.regions_dir else None,
            git_commit=git_commit(loaded.path.resolve().parent), mode=self.options.mode.value,
            source=rb.source, target=rb.target, started_at=started,
            triggered_by=self.options.triggered_by or default_actor(), reason=self.options.reason,
            incident_started_at=incident, concurrency=self.options.concurrency, rto_stop=self.plan.rto_stop,
            rto_target_seconds=rb.objectives.rto.total_seconds(),
            rpo_target_seconds=rb.objectives.rpo.total_seconds(),
            milestones={RUN_STARTED: started}, allow_data_loss=self.options.allow_data_loss, steps=steps,
            data_loss_approval_required=bool(self.options.allow_data_loss and
                                             self.options.extras.get(REQUIRE_DATA_LOSS_APPROVAL)),
            artifacts={"run": self.state.relative(self.run_dir / RUN_FILE),
                       "audit": self.state.relative(self.run_dir / AUDIT_FILE)},
        )

    def _drive(self) -> RunRecord:
        assert self.record is not None
        self._notify("run_started")
        owned = self._executor is None
        executor: Executor = self._executor or (
            InlineExecutor() if self.options.concurrency <= 1 else ThreadExecutor(self.options.concurrency))
        try:
            refused = self._ops.before_steps()
            if refused is not None:
                self._failure, self._halting_kind = ("allow-data-loss", refused), True
                self._halt.set()
            for wave in self.plan.waves:
                if self._halt.is_set() or self._cancel_requested():
                    break
                todo = [s for s in wave
                        if self.record.step(s.id).status not in (StepStatus.SUCCEEDED, StepStatus.SKIPPED)]
                if not todo:
                    continue
                self._renew_lease()
                if self._lock_lost():
                    break
                handles: list[StepHandle] = [executor.submit(s, self._step_runner(s)) for s in todo]
                self._wait(handles)
        except KeyboardInterrupt:
            self._cancelled = True
            self._halt.set()
        except BaseException as exc:
            if isinstance(exc, Exception) or not hasattr(exc, "signal"):
                raise
            # A termination signal raised as an exception carrying the signal (Prefect turns SIGTERM
            # into one): record the end (drill cleanup included) before letting it through.
            self._cancelled = True
            self._halt.set()
            self._finish()
            raise
        finally:
            if owned and isinstance(executor, ThreadExecutor):
                executor.shutdown()
        return self._finish()

    def _wait(self, handles: list[StepHandle]) -> None:
        for handle in handles:
            try:
                handle.result()
            except KeyboardInterrupt:
                raise
            except Exception:  # the step runner records failures itself; this is a crash of the runner
                log.exception("step runner crashed")
                self._halt.set()

    def _renew_lease(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.beat()
            self._lease = self._heartbeat.lease
        elif self._lease is not None:
            self._lease = self._lock_backend.renew(self._lease)

    def _lock_lost(self) -> bool:
        """True (and the run halting, audited once) when another run took the failover lock over."""
        lost = self._heartbeat.lost if self._heartbeat is not None else None
        if lost is None:
            return False
        with self._state_lock:
            first, self._lock_loss_recorded = not self._lock_loss_recorded, True
            self._halt.set()
            if self._failure is None:
                self._failure = ("failover-lock", StepError(kind="LockHeld", message=lost.message, hint=lost.hint))
                self._halting_kind = True
        if first:
            key = self._lease.key if self._lease is not None else self.plan.loaded.runbook.lock_key
            self.emit(ev.NOTE_ADDED, text=f"failover lock '{key}' lost while the run held it: {lost.message}; "
                      "no further step starts", lock=key, holder_run_id=lost.holder_run_id, holder=lost.holder)
        return True

    def _audit_lock_take_over(self) -> None:
        # Replacing an unreleased lease is a deviation an auditor must see (who was displaced).
        if self._lease is None or not self._lease.taken_over_from:
            return
        detail = f"failover lock '{self._lease.key}' taken over from {self._lease.taken_over_from}"
        if self.options.take_over_lock:
            self.emit(ev.OVERRIDE, kind="lock-take-over", detail=detail + " (--take-over-lock)")
        else:
            self.emit(ev.NOTE_ADDED, text=detail + " (its process is gone)", lock=self._lease.key)

    def _cancel_requested(self) -> bool:
        # `dr cancel` from another process: no new step starts (dr_engine.controls).
        if not self._cancelled and self.run_dir is not None and self._ops.cancel_requested():
            self._cancelled = True
            self._halt.set()
        return self._cancelled

    def _release(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.stop()  # before the release, so no beat renews a released lease
            if self._lease is not None:
                self._lease = self._heartbeat.lease
            self._heartbeat = None
        if self._lease is not None:
            try:
                self._lock_backend.release(self._lease)
            finally:
                self._lease = None

    def _step_runner(self, planned: PlannedStep) -> Callable[[], None]:
        def run() -> None:
            self.run_step(planned)

        return run

    def _outputs(self) -> dict[str, dict[str, str]]:
        assert self.record is not None
        with self._state_lock:
            return {s.id: dict(s.outputs) for s in self.record.steps if s.status is StepStatus.SUCCEEDED}

    def run_step(self, planned: PlannedStep) -> None:
        """Execute one step and record the outcome; never raises for a step failure."""
        assert self.record is not None
        if self._halt.is_set() or self._cancel_requested() or self._lock_lost():
            return  # halting: steps that have not started stay pending
        action_cls = self.plan.loaded.actions[planned.id]
        if self.options.mode is RunMode.DRILL and self._ops.skips_in_drill(planned, action_cls):
            self.emit(ev.STEP_SKIPPED, step=planned.id, reason="skipped in drill mode")
            self._notify("step_finished", self.record.step(planned.id))
            return
        _test_crash_point(planned.id, "before")
        self.emit(ev.STEP_STARTED, step=planned.id, action=planned.action,
                  timeout_seconds=planned.timeout.total_seconds())
        self._notify("step_started", self.record.step(planned.id))
        started = self.clock.monotonic()
        tries = 0
        params: ActionParams | None = None
        try:
            loaded = self.plan.loaded
            bindings = Bindings(loaded.source, loaded.target, loaded.runbook.runbook, self.record.run_id,
                                self.options.mode, self._outputs())
            params = bind_params(action_cls.Params, planned.step.with_, bindings, planned.id)
            deadline = Deadline(self.clock, planned.timeout.total_seconds())
            action = action_cls()
            retry = planned.step.retry
            policy = RetryPolicy(attempts=retry.attempts if retry else 1,
                                 backoff=retry.backoff.total_seconds() if retry else 1.0)
            bound: ActionParams = params

            def attempt(number: int) -> StepResult:
                nonlocal tries
                tries = number
                ctx = self._context(planned, deadline, number, bindings.outputs)
                _test_crash_point(planned.id, "during")
                return action.run(self._ops.params_for(planned, action_cls, bound, ctx), ctx)

            result, tries = call_with_retry(attempt, policy=policy, deadline=deadline, clock=self.clock,
                                            on_retry=lambda n, exc, wait: self._on_retry(planned, n, exc, wait),
                                            rng=self._rng)
        except Exception as exc:  # every failure is recorded; the run halts
            failed_rpo = None
            if isinstance(exc, StepFailed):
                exc.step_id, exc.action, exc.attempts = planned.id, planned.action, tries
                if exc.rpo is not None:  # data loss measured by a failing step still counts in the RPO
                    dataset = action_cls().dataset(params) if params is not None else None
                    failed_rpo = _rpo_data(dataset, exc.rpo)
            self._step_failed(planned, exc, tries, self.clock.monotonic() - started, rpo=failed_rpo)
            return
        _test_crash_point(planned.id, "after")
        duration = round(self.clock.monotonic() - started, 3)
        rpo = None
        if result.rpo is not None:
            rpo = _rpo_data(action.dataset(bound), result.rpo)
        self.emit(ev.STEP_SUCCEEDED, step=planned.id, duration_seconds=duration, attempts=tries,
                  summary=result.summary, changed=result.changed, facts=result.facts,
                  outputs=dict(result.outputs), rpo=rpo)
        self._notify("step_finished", self.record.step(planned.id))

    def _context(self, planned: PlannedStep, deadline: Deadline, attempt: int,
                 outputs: Any) -> StepContext:
        assert self.record is not None and self.run_dir is not None
        loaded = self.plan.loaded
        # Where the runbook lives (stacks/templates resolve against it); options may override.
        extras = {**runbook_location(loaded.path), **self.options.extras, "emit": self.emit, "run_dir": self.run_dir,
                  STEP_STARTED_BEFORE: planned.id in self._started_before}
        return StepContext(
            run_id=self.record.run_id, step_id=planned.id, mode=self.options.mode, source=loaded.source,
            target=loaded.target, objectives=loaded.runbook.objectives, deadline=deadline, clock=self.clock,
            log=logging.getLogger(f"dr_engine.step.{planned.id}"), state_dir=self.state.root,
            allow_data_loss=self.options.allow_data_loss, attempt=attempt, outputs=outputs,
            secret_resolver=read_secret, extras=extras,
        )

    def _on_retry(self, planned: PlannedStep, attempt: int, exc: StepFailed, wait: float) -> None:
        error = StepError(kind=exc.kind, message=exc.message, hint=exc.hint)
        self.emit(ev.STEP_ATTEMPT, step=planned.id, attempt=attempt, error=error.model_dump(),
                  wait_seconds=round(wait, 3))
        assert self.record is not None
        self._notify("step_retrying", self.record.step(planned.id), attempt, error, wait)

    def _step_failed(self, planned: PlannedStep, exc: Exception, tries: int, duration: float, *,
                     rpo: dict[str, Any] | None = None) -> None:
        assert self.record is not None
        error = _error_of(exc, planned)
        if not isinstance(exc, DrError):
            log.error("step %s crashed", planned.id, exc_info=exc)
        with self._state_lock:
            self._halt.set()
            if self._failure is None:
                self._failure = (planned.id, error)
                self._halting_kind = isinstance(exc, HALTING_ERRORS)
        extra: dict[str, Any] = {"rpo": rpo} if rpo is not None else {}
        self.emit(ev.STEP_FAILED, step=planned.id, duration_seconds=round(duration, 3), attempts=tries,
                  error=error.model_dump(), **extra)
        self._notify("step_finished", self.record.step(planned.id))

    def _final_status(self) -> RunStatus:
        assert self.record is not None
        if self._cancelled:
            return RunStatus.CANCELLED
        if self._failure is not None:
            return RunStatus.HALTED if self._halting_kind else RunStatus.FAILED
        if all(s.status in (StepStatus.SUCCEEDED, StepStatus.SKIPPED) for s in self.record.steps):
            return RunStatus.SUCCEEDED
        return RunStatus.FAILED

    def _finish(self) -> RunRecord:
        assert self.record is not None
        try:
            self._ops.before_finish()  # drill cleanup: always, before the run is sealed
            status = self._final_status()
            if status is not RunStatus.SUCCEEDED:
                failed_step, error = self._failure or (None, StepError(kind="Cancelled", message="run interrupted"))
                self.emit(ev.RUN_HALTED, step=failed_step, error=error.model_dump(),
                          changed_steps=[{"step": s.id, "summary": s.summary} for s in self.record.steps
                                         if s.id in self.record.changed_steps],
                          pending_steps=[s.id for s in self.record.steps if s.status is StepStatus.PENDING])
            at = utc_iso(self.clock.now())
            preview = self.record.model_copy(deep=True)
            apply_event(preview, {"type": ev.RUN_FINISHED, "ts": at, "seq": preview.audit_count,
                                  "hash": preview.audit_head or "", "data": {"status": status.value, "at": at}})
            self.emit(ev.RUN_FINISHED, at=at, status=status.value, rto_seconds=preview.rto_seconds,
                      rto_met=preview.rto_met, rpo_seconds=preview.rpo_seconds, rpo_met=preview.rpo_met,
                      rpo_lag_bytes=preview.rpo_lag_bytes, rows_lost=preview.rows_lost,
                      human_wait_seconds=preview.human_wait_seconds, machine_seconds=preview.machine_seconds,
                      changed_steps=list(self.record.changed_steps))
        finally:
            self._release()
        self._notify("run_finished")
        return self.record


# --------------------------------------------------------------------------- public API


def start_run(plan: ExecutionPlan, options: RunOptions, *, executor: Executor | None = None,
              progress: Progress | None = None) -> RunRecord:
    """Run ``plan`` from the start; return the final record (never raises for step failures)."""
    return Engine(plan, options, executor=executor, progress=progress).run()


@dataclass
class ResumePoint:
    """What :func:`prepare_resume` found: the plan to continue and the record rebuilt from the log."""

    plan: ExecutionPlan
    record: RunRecord
    runbook_changed: bool
    #: Regions whose file changed since the run started (resumable only with ``force``).
    regions_changed: list[str] = field(default_factory=list)


def prepare_resume(state_dir: Path, run_id: str, *, force: bool = False) -> ResumePoint:
    """Check that ``run_id`` can be resumed and rebuild its state from the audit log.

    Refuses (RunStateError) when the run succeeded, its audit chain is broken, or its runbook or
    its source/target region files changed since the run started (unless ``force``; the
    override is audited). The step list
    must be the same either way.
    """
    state = StateDir(state_dir)
    run_id = state.resolve_run_id(run_id)
    run_dir = state.run_dir(run_id)
    audit_path = run_dir / AUDIT_FILE
    check = verify(audit_path)
    if not check.ok:
        raise RunStateError(f"cannot resume {run_id}: {check.describe(audit_path)}",
                            hint="the audit log was altered; start a new run and keep this one as evidence")
    record = rebuild_record(read_events(audit_path))
    if record.status is RunStatus.SUCCEEDED:
        raise RunStateError(f"run {run_id} already succeeded; there is nothing to resume",
                            hint="start a new run with `dr failover` if you need to run it again")
    path = Path(record.runbook_file)
    if not path.is_file():
        raise RunStateError(f"the runbook of run {run_id} is gone: {path}",
                            hint="restore the file (same content) and resume again")
    regions = Path(record.regions_dir) if record.regions_dir else None
    plan = build_plan(load_runbook(path, regions_dir=regions))
    changed = plan.loaded.sha256 != record.runbook_sha256
    if changed and not force:
        raise RunStateError(f"runbook {path} changed since run {run_id} started (sha256 "
                            f"{record.runbook_sha256[:12]} -> {plan.loaded.sha256[:12]})",
                            hint="restore the original, or resume with --force to run the new version "
                                 "(audited)")
    # The regions say where the steps act (addresses, accounts, DSNs): a change matters as much
    # as a runbook change. Records from before region hashes were kept have none to compare.
    regions_changed = sorted(name for name, sha in record.region_sha256.items()
                             if plan.loaded.region_sha256.get(name) != sha)
    if regions_changed and not force:
        raise RunStateError(f"region file(s) of run {run_id} changed since it started: "
                            f"{', '.join(regions_changed)}",
                            hint="restore the original region files, or resume with --force to use the new "
                                 "ones (audited)")
    planned_ids = [s.id for s in plan.steps]
    recorded_ids = [s.id for s in record.steps]
    if sorted(planned_ids) != sorted(recorded_ids):
        added = sorted(set(planned_ids) - set(recorded_ids))
        removed = sorted(set(recorded_ids) - set(planned_ids))
        raise RunStateError(f"the steps of runbook {path} changed (added: {added or '-'}, removed: "
                            f"{removed or '-'}); a run cannot continue with different steps",
                            hint="start a new run with `dr failover`")
    return ResumePoint(plan=plan, record=record, runbook_changed=changed, regions_changed=regions_changed)


def resume_options(record: RunRecord, state_dir: Path, *, clock: Clock | None = None,
                   triggered_by: str | None = None, reason: str = "", concurrency: int | None = None,
                   lock: Lock | None = None, take_over_lock: bool = False,
                   extras: dict[str, Any] | None = None) -> RunOptions:
    """RunOptions that continue ``record`` as it was started.

    A run started with ``--allow-data-loss`` under the two-person rule keeps that rule on resume:
    the approval is asked again unless the audit log already holds it (records written before
    the rule was recorded count as requiring it).
    """
    from dr_engine.clock import parse_utc

    carried = dict(extras or {})
    if record.allow_data_loss and record.data_loss_approval_required is not False:
        carried[REQUIRE_DATA_LOSS_APPROVAL] = True
    return RunOptions(mode=RunMode(record.mode), run_id=record.run_id, state_dir=state_dir,
                      incident_start=parse_utc(record.incident_started_at),
                      allow_data_loss=record.allow_data_loss, triggered_by=triggered_by, reason=reason,
                      concurrency=concurrency or record.concurrency, clock=clock or SystemClock(), lock=lock,
                      take_over_lock=take_over_lock, extras=carried)


def resume_run(state_dir: Path, run_id: str, *, force: bool = False, executor: Executor | None = None,
               progress: Progress | None = None, **option_overrides: Any) -> RunRecord:
    """Resume ``run_id`` in-process (the CLI uses ``flows.failover.resume_run`` for Prefect)."""
    point = prepare_resume(state_dir, run_id, force=force)
    options = resume_options(point.record, state_dir, **option_overrides)
    engine = Engine(point.plan, options, executor=executor, progress=progress)
    return engine.resume(point.record, force=force, runbook_changed=point.runbook_changed)


__all__ = [
    "Engine",
    "ResumePoint",
    "RunOptions",
    "git_commit",
    "prepare_resume",
    "resume_options",
    "resume_run",
    "start_run",
]
