"""The engine: executes an :class:`~dr_engine.planning.plan.ExecutionPlan` wave by wave.

No Prefect here: the flow (``dr_engine/flows/failover.py``) passes an executor that submits each step as
a Prefect task; tests pass an in-process executor and a fake clock.

Per step the engine binds ``${...}`` references (:mod:`dr_engine.config.bindings`), re-validates the
params, builds a :class:`StepContext` whose deadline is the step timeout, and calls the action,
retrying :class:`TransientError` only (:mod:`dr_engine.retry`). Every state change is an audit
event applied to the run record (:mod:`dr_engine.evidence.journal`), and the record is rewritten
atomically after each one, so a crash loses nothing.

On a step failure the run halts: no new step starts, steps already running finish, and the
record lists what changed. Status: ``halted`` when a safety gate refused (PreconditionFailed,
FencingFailed: the run stopped on purpose), ``failed`` for any other step error, ``cancelled``
when interrupted. Every one of them can be resumed (:func:`resume_run`).

The entry points: every run starts with :func:`start_run` and continues with :func:`resume_run`,
whoever asks (the CLI, the Prefect flow, scheduled and automatic runs). They take the failover
lock (or reuse the lease :func:`reserve` took earlier), mint the run id, check the runbook and
region digests and start or resume the run. Callers only adapt (Prefect tasks, live display).
"""

from __future__ import annotations

import contextvars
import logging
import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dr_engine.actions.base import ActionParams, RpoObservation, StepContext, StepResult
from dr_engine.actions.control import ApprovalGate
from dr_engine.capabilities import Capability
from dr_engine.clock import Clock, Deadline, SystemClock, utc_iso
from dr_engine.config.bindings import Bindings, bind_params, read_secret
from dr_engine.config.loader import load_runbook
from dr_engine.engine.executors import Executor, InlineExecutor, StepHandle, ThreadExecutor
from dr_engine.engine.interrupts import Interrupts, StepInterrupted, signal_name
from dr_engine.engine.notify import listeners_for
from dr_engine.engine.operations import RunHooks
from dr_engine.engine.options import RunOptions as RunOptions  # re-exported: the entry point's options
from dr_engine.engine.progress import Progress
from dr_engine.errors import ConfigError, DrError, FencingFailed, PreconditionFailed, RunStateError, StepFailed
from dr_engine.evidence import audit as ev
from dr_engine.evidence.audit import AuditLog, AuditSealed, default_actor, read_events, verify
from dr_engine.evidence.identity import OsIdentity
from dr_engine.evidence.journal import apply_event, rebuild_record
from dr_engine.evidence.record import (
    AUDIT_FILE,
    RUN_FILE,
    OsUser,
    RunRecord,
    RunStatus,
    StepError,
    StepRecord,
    StepStatus,
    atomic_write_text,
)
from dr_engine.evidence.recovery import INCIDENT_STARTED, RUN_STARTED
from dr_engine.evidence.statedir import StateDir
from dr_engine.lock.backends import hold_lock, lock_for
from dr_engine.lock.base import Lease, Lock
from dr_engine.lock.heartbeat import LeaseHeartbeat, start_heartbeat
from dr_engine.model import DrillBehaviour, RunMode
from dr_engine.model.location import RunbookLocation
from dr_engine.planning.plan import ExecutionPlan, PlannedStep, build_plan
from dr_engine.providers import children
from dr_engine.retry import RetryPolicy, call_with_retry

log = logging.getLogger("dr_engine.engine.run")

#: How far in the future ``--incident-start`` may be (clock skew): clamped to now and audited.
INCIDENT_SKEW_SECONDS = 5.0

#: Statuses that stop a run on purpose (safety gates) rather than on an error.
HALTING_ERRORS: tuple[type[StepFailed], ...] = (PreconditionFailed, FencingFailed)


@dataclass
class _Slot:
    """A step the engine started: what the interrupt handling needs to know about it."""

    planned: PlannedStep
    started: float
    #: Serialises the step's own events with its abandonment, so a step never ends twice.
    lock: threading.Lock = field(default_factory=threading.Lock)
    ended: bool = False
    abandoned: bool = False
    tries: int = 0


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


def _test_interrupt_point(step_id: str, when: str, interrupts: Interrupts) -> None:
    """Interrupt tests: ``DR_TEST_INTERRUPT_AT=<step>:<before|during|after>[:twice]``.

    Sends SIGINT to this process's group, as a terminal's Ctrl-C does (``twice``: a second one once
    the first was handled, which abandons the running steps). Inert unless the variable is set.
    """
    wanted = os.environ.get("DR_TEST_INTERRUPT_AT", "").split(":")
    if wanted[:2] != [step_id, when]:
        return
    os.killpg(os.getpgrp(), signal.SIGINT)
    if wanted[2:3] == ["twice"]:
        # Two signals sent before the handler runs would arrive as one.
        end = time.monotonic() + 10
        while not interrupts.signals and time.monotonic() < end:
            time.sleep(0.01)
        os.killpg(os.getpgrp(), signal.SIGINT)


def _error_of(exc: BaseException, planned: PlannedStep) -> StepError:
    if isinstance(exc, StepFailed | DrError):
        return StepError(kind=type(exc).__name__, message=exc.message, hint=exc.hint)
    return StepError(kind=type(exc).__name__, message=str(exc) or type(exc).__name__,
                     hint=f"unexpected error in action {planned.action}; re-run with --debug and report it")


def _rpo_data(dataset: str | None, rpo: RpoObservation) -> dict[str, Any]:
    """The ``rpo`` data of a step event (see :mod:`dr_engine.evidence.journal`)."""
    return {"dataset": dataset, "lag_bytes": rpo.lag_bytes, "lag_seconds": rpo.lag_seconds,
            "rows_lost": rpo.rows_lost}


def failover_lock(plan: ExecutionPlan, options: RunOptions) -> Lock:
    """The lock a run of ``plan`` takes: ``options.lock``, else the target region's configured backend."""
    return options.lock or lock_for(plan.loaded.target, options.state, clock=options.clock)


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
        self.state = options.state
        self.progress = progress or Progress()
        # Webhook notifications (runbook `notify:` / DR_NOTIFY_WEBHOOKS) listen like the live display.
        self._listeners: list[Progress] = [self.progress, *listeners_for(plan.loaded.runbook, plan.loaded.path.parent)]
        self._executor = executor
        # The configured backend (lock file by default; see dr_engine.lock.backends).
        self._lock_backend: Lock = failover_lock(plan, options)
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
        self.interrupts = options.interrupts or Interrupts(grace_cap=options.grace_cap)
        self._owns_interrupts = options.interrupts is None
        # Steps started in this session, by id, and the ones whose runner has returned.
        self._slots: dict[str, _Slot] = {}
        self._slots_changed = threading.Condition()
        self._runner_done: set[str] = set()
        self._abandoned: list[str] = []
        self._interrupt_noted = False
        self._grace_deadline: float | None = None
        self._ops = RunHooks(self)  # drills, approvals, operator controls (dr_engine.engine.operations)
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
        self._begin_interrupts()
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
            self._end_interrupts()
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
        self._begin_interrupts()
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
            self._end_interrupts()
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
            # Who started the run as the OS says (triggered_by may be a label such as "schedule").
            initiator=OsUser(**OsIdentity.current().as_dict()),
            incident_started_at=incident, incident_start_declared=self.options.incident_start is not None,
            concurrency=self.options.concurrency, rto_stop=self.plan.rto_stop,
            rto_target_seconds=rb.objectives.rto.total_seconds(),
            rpo_target_seconds=rb.objectives.rpo.total_seconds(),
            milestones={RUN_STARTED: started}, allow_data_loss=self.options.allow_data_loss, steps=steps,
            data_loss_approval_required=self.options.allow_data_loss and self.options.require_data_loss_approval,
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
                if self._stopping():
                    break
                todo = [s for s in wave
                        if self.record.step(s.id).status not in (StepStatus.SUCCEEDED, StepStatus.SKIPPED)]
                if not todo:
                    continue
                self._renew_lease()
                if self._lock_lost():
                    break
                self._wait([(s, executor.submit(s, self._step_runner(s))) for s in todo])
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
                # Abandoned steps may still be blocked in I/O: their pool threads are free already
                # (the steps run on daemon threads), so this does not wait for them.
                executor.shutdown()
        return self._finish()

    def _stopping(self) -> bool:
        """True when no new step may start (a failure, ``dr cancel``, or a stop signal)."""
        self._note_interrupt()
        return self._halt.is_set() or self._cancel_requested()

    def _wait(self, submitted: list[tuple[PlannedStep, StepHandle]]) -> None:
        """Wait for the submitted steps; on a stop signal give them their grace, then abandon them."""
        while True:
            self._note_interrupt()
            with self._slots_changed:
                waiting = [p.id for p, _ in submitted if p.id not in self._runner_done]
                if not waiting:
                    break
                if not self._abandon_due():
                    self._slots_changed.wait(0.1)
                    continue
            self._abandon_running()
            return  # runners still out are abandoned, or will find the run halted and not start
        for planned, handle in submitted:
            try:
                handle.result()
            except KeyboardInterrupt:
                raise
            except Exception:  # the step runner records failures itself; this is a crash of the runner
                log.exception("step runner for %s crashed", planned.id)
                self._halt.set()

    # ----------------------------------------------------------------- stop signals

    def _begin_interrupts(self) -> None:
        self.interrupts.describe = self._describe_running
        self.interrupts.install()  # again: Prefect's flow engine installs its own SIGTERM bridge
        self.interrupts.phase = "running"

    def _end_interrupts(self) -> None:
        self.interrupts.phase = "sealed"
        if self._owns_interrupts:
            self.interrupts.restore()

    def _running_slots(self) -> list[_Slot]:
        return [slot for slot in list(self._slots.values()) if not slot.ended]

    def _grace_for(self, slots: list[_Slot]) -> float:
        # The rest of the running steps' timeouts, capped; a person's approval has nothing to finish.
        now = self.clock.monotonic()
        rest = [max(0.0, slot.started + slot.planned.timeout.total_seconds() - now) for slot in slots
                if slot.planned.capability is not Capability.CONTROL_APPROVE]
        return round(min(self.interrupts.grace_cap, max(rest, default=0.0)), 1)

    def _describe_running(self) -> tuple[list[str], float]:
        # Called from the signal handler: no locks, only reads.
        slots = self._running_slots()
        return [slot.planned.id for slot in slots], self._grace_for(slots)

    def _note_interrupt(self) -> None:
        """Record the first stop signal (once, from the engine's thread, never from the handler)."""
        if self._interrupt_noted or not self.interrupts.stop.is_set():
            return
        self._interrupt_noted = True
        with self._state_lock:
            self._cancelled = True
            self._halt.set()
        slots = self._running_slots()
        grace = self._grace_for(slots)
        self._grace_deadline = self.clock.monotonic() + grace
        self.emit(ev.RUN_INTERRUPTED, signal=self.interrupts.first_signal or "signal",
                  running_steps=[slot.planned.id for slot in slots], grace_seconds=grace,
                  grace_cap_seconds=self.interrupts.grace_cap)
        self._notify("run_interrupted")

    def _abandon_due(self) -> bool:
        if not self._interrupt_noted:
            return False
        if self.interrupts.abandon.is_set():
            return True
        return self._grace_deadline is not None and self.clock.monotonic() >= self._grace_deadline

    def _abandon_running(self) -> None:
        """Give up every step still running: ``step.abandoned`` for each; the run then seals."""
        if self.interrupts.abandon.is_set():
            why = f"abandoned by the operator ({signal_name(self.interrupts.signals[-1])} after " \
                  f"{self.interrupts.first_signal})"
        else:
            why = "abandoned: still running when the interrupt grace period ended"
        slots = self._running_slots()
        for slot in slots:
            self._abandon(slot, why)
        if slots:
            # Their commands (own sessions, so the terminal's Ctrl-C spared them) stop now: SIGINT
            # lets terraform release its state lock. Not waited for: the run's end is recorded.
            stopped = children.interrupt_all()
            if stopped:
                log.warning("sent SIGINT to the commands of abandoned steps (pids %s)", stopped)

    def _abandon(self, slot: _Slot, reason: str) -> None:
        with slot.lock:
            if slot.ended:
                return
            slot.ended = slot.abandoned = True
            self._abandoned.append(slot.planned.id)
            self.emit(ev.STEP_ABANDONED, step=slot.planned.id, reason=reason, attempts=slot.tries,
                      duration_seconds=round(self.clock.monotonic() - slot.started, 3))
        assert self.record is not None
        self._notify("step_finished", self.record.step(slot.planned.id))

    def _end_step(self, slot: _Slot, type: str, **data: Any) -> bool:
        """Record the end of a step unless it was abandoned meanwhile (then nothing is written)."""
        with slot.lock:
            if slot.ended:
                log.warning("step %s returned after it was abandoned; its result (%s) is not recorded "
                            "(`dr resume` runs it again)", slot.planned.id, type)
                return False
            slot.ended = True
            self.emit(type, **data)
        return True

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
        # `dr cancel` from another process: no new step starts (dr_engine.engine.controls).
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
        """The function an executor runs for ``planned``.

        Off the main thread the step runs on a daemon thread of its own and the executor's thread
        waits for it, or for its abandonment: a step blocked in I/O (a frozen server) can then be
        given up without blocking the executor's shutdown or the process's exit. On the main
        thread (approvals under Prefect, inline executors) it runs right there, and a stop signal
        interrupts it (:class:`~dr_engine.engine.interrupts.StepInterrupted`).
        """

        def run() -> None:
            if threading.current_thread() is threading.main_thread():
                try:
                    self.run_step(planned)
                finally:
                    self._runner_finished(planned.id)
                return
            self._run_detached(planned)

        return run

    def _runner_finished(self, step_id: str) -> None:
        with self._slots_changed:
            self._runner_done.add(step_id)
            self._slots_changed.notify_all()

    def _run_detached(self, planned: PlannedStep) -> None:
        done = threading.Event()
        crash: list[BaseException] = []

        def body() -> None:
            try:
                self.run_step(planned)
            except AuditSealed as exc:  # ended after the run was sealed: the log refused it, as it must
                log.warning("step %s ended after the run was sealed; not recorded: %s", planned.id, exc.message)
            except BaseException as exc:  # handed to the executor's thread, which re-raises it
                crash.append(exc)
            finally:
                done.set()
                self._runner_finished(planned.id)

        context = contextvars.copy_context()  # Prefect's task context, for logs and artifacts
        thread = threading.Thread(target=context.run, args=(body,), name=f"dr-step-{planned.id}", daemon=True)
        thread.start()
        while not done.wait(0.25):
            slot = self._slots.get(planned.id)
            if slot is not None and slot.abandoned:
                return  # given up: the thread ends on its own; the sealed log refuses its result
        if crash:
            raise crash[0]

    def _outputs(self) -> dict[str, dict[str, str]]:
        assert self.record is not None
        with self._state_lock:
            return {s.id: dict(s.outputs) for s in self.record.steps if s.status is StepStatus.SUCCEEDED}

    def _start_slot(self, planned: PlannedStep) -> _Slot | None:
        """Register ``planned`` as running, unless the run is stopping (then None: it stays pending)."""
        with self._slots_changed:
            if self._halt.is_set() or self.interrupts.stop.is_set():
                return None
            slot = self._slots[planned.id] = _Slot(planned, self.clock.monotonic())
        # The lock is taken before the event is written: an abandonment waits for step.started.
        slot.lock.acquire()
        return slot

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
        _test_interrupt_point(planned.id, "before", self.interrupts)
        slot = self._start_slot(planned)
        if slot is None:
            return
        try:
            self.emit(ev.STEP_STARTED, step=planned.id, action=planned.action,
                      timeout_seconds=planned.timeout.total_seconds())
        finally:
            slot.lock.release()
        self._notify("step_started", self.record.step(planned.id))
        started = self.clock.monotonic()
        tries = 0
        params: ActionParams | None = None
        waits_for_person = planned.capability is Capability.CONTROL_APPROVE
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
                tries = slot.tries = number
                ctx = self._context(planned, deadline, number, bindings.outputs)
                _test_crash_point(planned.id, "during")
                _test_interrupt_point(planned.id, "during", self.interrupts)
                with self.interrupts.inline(planned.id, waits_for_person=waits_for_person):
                    return action.run(self._ops.params_for(planned, action_cls, bound, ctx), ctx)

            result, tries = call_with_retry(attempt, policy=policy, deadline=deadline, clock=self.clock,
                                            on_retry=lambda n, exc, wait: self._on_retry(slot, n, exc, wait),
                                            rng=self._rng)
        except StepInterrupted as stop:
            # The main thread ran this step itself (an approval wait, an inline executor): give it up.
            slot.tries = tries
            self._abandon(slot, f"abandoned by the operator ({stop.signal_name})"
                          + (" while waiting for a person" if waits_for_person else ""))
            return
        except Exception as exc:  # every failure is recorded; the run halts
            failed_rpo = None
            if isinstance(exc, StepFailed):
                exc.step_id, exc.action, exc.attempts = planned.id, planned.action, tries
                if exc.rpo is not None:  # data loss measured by a failing step still counts in the RPO
                    dataset = action_cls().dataset(params) if params is not None else None
                    failed_rpo = _rpo_data(dataset, exc.rpo)
            self._step_failed(slot, exc, tries, self.clock.monotonic() - started, rpo=failed_rpo)
            return
        _test_crash_point(planned.id, "after")
        _test_interrupt_point(planned.id, "after", self.interrupts)
        duration = round(self.clock.monotonic() - started, 3)
        rpo = None
        if result.rpo is not None:
            rpo = _rpo_data(action.dataset(bound), result.rpo)
        if self._end_step(slot, ev.STEP_SUCCEEDED, step=planned.id, duration_seconds=duration, attempts=tries,
                          summary=result.summary, changed=result.changed, facts=result.facts,
                          outputs=dict(result.outputs), rpo=rpo):
            self._notify("step_finished", self.record.step(planned.id))

    def _context(self, planned: PlannedStep, deadline: Deadline, attempt: int,
                 outputs: Any) -> StepContext:
        assert self.record is not None and self.run_dir is not None
        loaded = self.plan.loaded
        return StepContext(
            run_id=self.record.run_id, step_id=planned.id, mode=self.options.mode, source=loaded.source,
            target=loaded.target, objectives=loaded.runbook.objectives, deadline=deadline, clock=self.clock,
            log=logging.getLogger(f"dr_engine.step.{planned.id}"), state_dir=self.state,
            allow_data_loss=self.options.allow_data_loss, attempt=attempt, outputs=outputs,
            secret_resolver=read_secret, emit=self.emit, run_dir=self.run_dir,
            started_before=planned.id in self._started_before,
            # Where the runbook lives (stacks/templates resolve against it); options may move the root.
            runbook_location=RunbookLocation.of(loaded.path, repo_root=self.options.repo_root),
            approval_gate=self.options.approval_gate,
        )

    def _on_retry(self, slot: _Slot, attempt: int, exc: StepFailed, wait: float) -> None:
        planned = slot.planned
        error = StepError(kind=exc.kind, message=exc.message, hint=exc.hint)
        with slot.lock:
            if slot.ended:
                return
            self.emit(ev.STEP_ATTEMPT, step=planned.id, attempt=attempt, error=error.model_dump(),
                      wait_seconds=round(wait, 3))
        assert self.record is not None
        self._notify("step_retrying", self.record.step(planned.id), attempt, error, wait)

    def _step_failed(self, slot: _Slot, exc: Exception, tries: int, duration: float, *,
                     rpo: dict[str, Any] | None = None) -> None:
        assert self.record is not None
        planned = slot.planned
        error = _error_of(exc, planned)
        if not isinstance(exc, DrError):
            log.error("step %s crashed", planned.id, exc_info=exc)
        if slot.abandoned:  # it failed after it was given up: the abandonment is its record
            log.warning("step %s failed after it was abandoned: %s", planned.id, error.message)
            return
        with self._state_lock:
            self._halt.set()
            if self._failure is None:
                self._failure = (planned.id, error)
                self._halting_kind = isinstance(exc, HALTING_ERRORS)
        extra: dict[str, Any] = {"rpo": rpo} if rpo is not None else {}
        if self._end_step(slot, ev.STEP_FAILED, step=planned.id, duration_seconds=round(duration, 3),
                          attempts=tries, error=error.model_dump(), **extra):
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
                failed_step, error = self._failure or (None, self._stop_error())
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
            self._end_interrupts()
            self._release()
        self._notify("run_finished")
        return self.record

    def _stop_error(self) -> StepError:
        """Why a run without a failed step stopped: a stop signal, or a cancel."""
        name = self.interrupts.first_signal
        if name is None:
            return StepError(kind="Cancelled", message="run interrupted")
        abandoned = f"; abandoned: {', '.join(self._abandoned)}" if self._abandoned else ""
        return StepError(kind="Interrupted", message=f"interrupted by {name}: no new step was started{abandoned}",
                         hint="`dr resume` continues the run (abandoned steps run again)")


# --------------------------------------------------------------------------- entry points


def check_digests(plan: ExecutionPlan, *, expected_sha256: str | None = None,
                  expected_region_sha256: Mapping[str, str] | None = None) -> None:
    """Refuse (RunStateError) when the runbook or a region file is not the version that was confirmed.

    A run started from plain parameters (a Prefect flow run) loads the files again: what someone
    reviewed and confirmed must be what runs. None: nothing was confirmed, nothing to compare.
    """
    loaded = plan.loaded
    if expected_sha256 and loaded.sha256 != expected_sha256:
        raise RunStateError(f"runbook {loaded.path} changed after it was confirmed",
                            hint="review the new version and start the failover again")
    changed = sorted(name for name, sha in (expected_region_sha256 or {}).items()
                     if loaded.region_sha256.get(name) != sha)
    if changed:
        raise RunStateError(f"region file(s) {', '.join(changed)} changed after the run was confirmed",
                            hint="review the new version and start the failover again")


@contextmanager
def reserve(plan: ExecutionPlan, options: RunOptions) -> Iterator[RunOptions]:
    """Take the failover lock for a run of ``plan`` now, before anything slow starts (a Prefect server).

    Mints the run id when ``options`` has none. The yielded options carry a lock that hands the
    held lease to :func:`start_run` / :func:`resume_run`, which reuse it instead of competing with
    themselves, so a second run fails in a second. The lease is released on exit (a no-op when
    the run released it), so a run that never started leaves no lease behind.
    """
    if options.run_id is None:
        options.run_id = StateDir.new_run_id(options.clock)
    lock = failover_lock(plan, options)
    with hold_lock(lock, plan.loaded.runbook.lock_key, options.run_id, take_over=options.take_over_lock) as held:
        options.lock = held
        yield options


def options_from_parameters(*, mode: str = "failover", state_dir: StateDir | str | Path = ".dr",
                            run_id: str | None = None,
                            incident_start: str | None = None, allow_data_loss: bool = False,
                            triggered_by: str | None = None, reason: str = "", concurrency: int = 4,
                            take_over_lock: bool = False) -> RunOptions:
    """RunOptions of a run started from plain parameters (a deployed flow run, an API call).

    Nobody confirmed such a run at a terminal, so ``allow_data_loss`` is subject to the
    two-person rule, as it is from the CLI.
    """
    from dr_engine.clock import parse_utc

    return RunOptions(mode=RunMode(mode), run_id=run_id, state_dir=StateDir.of(state_dir),
                      incident_start=parse_utc(incident_start) if incident_start else None,
                      allow_data_loss=allow_data_loss, triggered_by=triggered_by, reason=reason,
                      concurrency=concurrency, take_over_lock=take_over_lock,
                      require_data_loss_approval=allow_data_loss)


def start_run(plan: ExecutionPlan, options: RunOptions, *, executor: Executor | None = None,
              progress: Progress | None = None, expected_sha256: str | None = None,
              expected_region_sha256: Mapping[str, str] | None = None) -> RunRecord:
    """Run ``plan`` from the start; return the final record (never raises for step failures).

    The one way a run starts: checks the digests (:func:`check_digests`), takes the failover
    lock (or the lease :func:`reserve` holds), mints the run id and runs the plan on
    ``executor`` (None: threads in this process; the Prefect flow passes one submitting tasks).
    """
    check_digests(plan, expected_sha256=expected_sha256, expected_region_sha256=expected_region_sha256)
    return Engine(plan, options, executor=executor, progress=progress).run()


@dataclass
class ResumePoint:
    """What :func:`prepare_resume` found: the plan to continue and the record rebuilt from the log."""

    plan: ExecutionPlan
    record: RunRecord
    runbook_changed: bool
    #: Regions whose file changed since the run started (resumable only with ``force``).
    regions_changed: list[str] = field(default_factory=list)


def prepare_resume(state_dir: StateDir | Path, run_id: str, *, force: bool = False) -> ResumePoint:
    """Check that ``run_id`` can be resumed and rebuild its state from the audit log.

    Refuses (RunStateError) when the run succeeded, its audit chain is broken, or its runbook or
    its source/target region files changed since the run started (unless ``force``; the
    override is audited). The step list
    must be the same either way.
    """
    state = StateDir.of(state_dir)
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


def resume_options(record: RunRecord, state_dir: StateDir | Path, *, clock: Clock | None = None,
                   triggered_by: str | None = None, reason: str = "", concurrency: int | None = None,
                   lock: Lock | None = None, take_over_lock: bool = False,
                   approval_gate: ApprovalGate | None = None, repo_root: Path | None = None) -> RunOptions:
    """RunOptions that continue ``record`` as it was started.

    A run started with ``--allow-data-loss`` under the two-person rule keeps that rule on resume:
    the approval is asked again unless the audit log already holds it (records written before
    the rule was recorded count as requiring it).
    """
    from dr_engine.clock import parse_utc

    required = record.allow_data_loss and record.data_loss_approval_required is not False
    return RunOptions(mode=RunMode(record.mode), run_id=record.run_id, state_dir=StateDir.of(state_dir),
                      incident_start=parse_utc(record.incident_started_at),
                      allow_data_loss=record.allow_data_loss, triggered_by=triggered_by, reason=reason,
                      concurrency=concurrency or record.concurrency, clock=clock or SystemClock(), lock=lock,
                      take_over_lock=take_over_lock, require_data_loss_approval=required,
                      approval_gate=approval_gate, repo_root=repo_root)


def resume_run(state_dir: StateDir | Path, run_id: str, *, force: bool = False, executor: Executor | None = None,
               progress: Progress | None = None, point: ResumePoint | None = None,
               options: RunOptions | None = None, **option_overrides: Any) -> RunRecord:
    """Resume ``run_id``; return the final record (the one way a run continues).

    ``point`` and ``options`` are what :func:`prepare_resume` and :func:`resume_options` return
    (computed here when not given; ``option_overrides`` go to :func:`resume_options`). The run
    takes the failover lock (or the lease :func:`reserve` holds), then checks the audit chain
    and the runbook and region digests again under it before anything runs.
    """
    state = StateDir.of(state_dir)  # a path is accepted at this entry point, checked once here
    point = point or prepare_resume(state, run_id, force=force)
    options = options or resume_options(point.record, state, **option_overrides)
    engine = Engine(point.plan, options, executor=executor, progress=progress)
    return engine.resume(point.record, force=force, runbook_changed=point.runbook_changed)


__all__ = [
    "Engine",
    "ResumePoint",
    "RunOptions",
    "check_digests",
    "failover_lock",
    "git_commit",
    "options_from_parameters",
    "prepare_resume",
    "reserve",
    "resume_options",
    "resume_run",
    "start_run",
]
