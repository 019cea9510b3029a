"""Operator controls on a run: ``dr cancel`` and ``dr skip`` (``dr resume`` is the engine's).

- **cancel** a *running* run: a request file is written into the run directory; the engine
  checks it before every step (:meth:`dr_engine.engine.operations.RunHooks.cancel_requested`), stops
  starting steps, lets running steps finish, and ends the run ``cancelled``. Cancelling a halted
  or failed run (or one whose process died) marks it ``cancelled`` at once. Either way the
  request is an ``operator.cancel`` audit event naming who and why.
- **skip** a step of a *halted* (or failed/cancelled) run: the step becomes ``skipped`` with the
  operator's reason (``operator.skip`` + ``step.skipped``: a deviation in reports); ``dr resume``
  then continues after it. Safety-critical steps (fences, lag gates) and gates (health, data
  and traffic verification) are refused unless ``force`` is given, which is recorded as an override.

Events appended to a finished run's log are followed by a new ``run.finished`` event with the
same status, so the audit chain stays sealed and ``dr audit verify`` passes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from dr_engine.clock import SystemClock, utc_iso
from dr_engine.errors import RunStateError
from dr_engine.evidence import audit as ev
from dr_engine.evidence.audit import AuditLog, default_actor, read_events, verify
from dr_engine.evidence.journal import apply_event, rebuild_record
from dr_engine.evidence.record import AUDIT_FILE, RunRecord, RunStatus, StepStatus, write_record
from dr_engine.evidence.statedir import StateDir

CANCEL_FILE = "cancel.request"
OPERATOR_CANCEL = "operator.cancel"
OPERATOR_SKIP = "operator.skip"
#: Capabilities of gate steps: skipping one needs ``force`` like a safety-critical action.
GATE_CAPABILITIES = frozenset({"data.check", "data.fence", "data.verify", "health.verify", "traffic.verify"})


def _load(state_dir: StateDir | Path, run_id: str) -> tuple[StateDir, str, RunRecord]:
    state = StateDir.of(state_dir)
    full = state.resolve_run_id(run_id)
    audit_path = state.audit_file(full)
    check = verify(audit_path)
    if not check.ok:
        raise RunStateError(f"run {full}: {check.describe(audit_path)}",
                            hint="the audit log was altered; keep it as evidence and start a new run")
    return state, full, rebuild_record(read_events(audit_path))


def holder_alive(record: RunRecord, state_dir: StateDir | Path) -> bool:
    """True when a live process holds the failover lock for this run (it is really running)."""
    from dr_engine.lock.base import FileLock

    lease = FileLock(StateDir.of(state_dir).locks_dir).inspect(record.application or record.runbook)
    if lease is None or lease.run_id != record.run_id:
        return _recent_activity(record)
    return not FileLock(StateDir.of(state_dir).locks_dir).is_stale(lease)


def _recent_activity(record: RunRecord) -> bool:
    # Other lock backends keep their leases elsewhere: fall back on "a step is running".
    return any(s.status is StepStatus.RUNNING for s in record.steps) or record.status is RunStatus.RUNNING


def append_events(state_dir: StateDir | Path, run_id: str, events: list[tuple[str, str, dict[str, Any]]]) -> RunRecord:
    """Append ``(type, actor, data)`` events to a stopped run and re-seal it with ``run.finished``.

    A ``run.finished`` among ``events`` only sets the status of the new seal. The events and the
    seal are written atomically (:meth:`dr_engine.evidence.audit.AuditLog.amend`).
    """
    state, full, record = _load(state_dir, run_id)
    run_dir = state.run_dir(full)
    log = AuditLog(run_dir / AUDIT_FILE, full)
    status: RunStatus = record.status if record.status is not RunStatus.RUNNING else RunStatus.FAILED
    for type_, _actor, data in events:
        if type_ == ev.RUN_FINISHED:
            status = RunStatus(str(data["status"]))
    facts: list[tuple[str, str | None, dict[str, Any]]] = [(t, a, d) for t, a, d in events if t != ev.RUN_FINISHED]
    at = utc_iso(SystemClock().now())
    for event in log.amend(facts, status=status.value, actor=events[0][1] if events else default_actor(), at=at):
        apply_event(record, event)
    write_record(run_dir, record)
    return record


# ---------------------------------------------------------------------- cancel
def request_cancel(state_dir: StateDir | Path, run_id: str, *, by: str | None = None,
                   reason: str = "") -> tuple[str, RunRecord]:
    """Cancel ``run_id``: ``("requested", record)`` for a live run, ``("cancelled", record)`` otherwise."""
    state, full, record = _load(state_dir, run_id)
    actor = by or default_actor()
    if record.status is RunStatus.SUCCEEDED:
        raise RunStateError(f"run {full} already succeeded; there is nothing to cancel")
    if record.status is RunStatus.CANCELLED:
        return "cancelled", record
    if record.status is RunStatus.RUNNING and holder_alive(record, state_dir):
        request = {"by": actor, "reason": reason, "requested_at": utc_iso(SystemClock().now())}
        path = state.run_dir(full) / CANCEL_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(request), encoding="utf-8")
        tmp.replace(path)
        return "requested", record
    data = {"reason": reason, "detail": f"run was {record.status.value}; marked cancelled"}
    if record.status is RunStatus.RUNNING:
        data["detail"] = "the run's process is gone; marked cancelled"
    done = append_events(state_dir, full, [(OPERATOR_CANCEL, actor, data),
                                           (ev.RUN_FINISHED, actor, {"status": RunStatus.CANCELLED.value})])
    return "cancelled", done


def take_cancel_request(run_dir: Path) -> dict[str, Any] | None:
    """The pending cancel request of a run, consumed (renamed) so a resumed run is not cancelled again."""
    path = run_dir / CANCEL_FILE
    taken = run_dir / f"{CANCEL_FILE}.taken-{os.getpid()}"
    try:
        path.rename(taken)
    except FileNotFoundError:
        return None
    try:
        data = json.loads(taken.read_text(encoding="utf-8"))
    except ValueError:
        data = {}
    return data if isinstance(data, dict) else {}


# ---------------------------------------------------------------------- skip
def skip_step(state_dir: StateDir | Path, run_id: str, step_id: str, *, reason: str, by: str | None = None,
              force: bool = False) -> RunRecord:
    """Mark ``step_id`` of a stopped run as skipped (audited); ``dr resume`` continues after it."""
    from dr_engine.actions.registry import lookup

    if not reason.strip():
        raise RunStateError("skipping a step needs a reason (--reason)", hint="say why; it goes into the audit log")
    _, full, record = _load(state_dir, run_id)
    if record.status is RunStatus.SUCCEEDED:
        raise RunStateError(f"run {full} already succeeded; nothing to skip")
    if record.status is RunStatus.RUNNING and holder_alive(record, state_dir):
        raise RunStateError(f"run {full} is running", hint=f"cancel it first (`dr cancel {full}`), then skip")
    try:
        step = record.step(step_id)
    except KeyError as exc:
        raise RunStateError(f"run {full} has no step {step_id!r}",
                            hint="steps: " + ", ".join(s.id for s in record.steps)) from exc
    if step.status in (StepStatus.SUCCEEDED, StepStatus.SKIPPED):
        raise RunStateError(f"step {step_id} already {step.status.value}; nothing to skip")
    action = lookup(step.action)
    # Gates count like safety-critical actions: skipping a health or data check lets traffic shift
    # (or a promotion happen) without the proof the runbook asked for.
    critical = (action is not None and action.safety_critical) or step.capability in GATE_CAPABILITIES
    actor = by or default_actor()
    if critical and not force:
        raise RunStateError(f"step {step_id} ({step.action}) is safety-critical: skipping it can cause split "
                            "brain, data loss or traffic sent to an unhealthy region",
                            hint="if you are sure, repeat with --force (recorded as an override)")
    events: list[tuple[str, str, dict[str, Any]]] = [
        (OPERATOR_SKIP, actor, {"step": step_id, "reason": reason, "forced": critical and force})]
    if critical:
        events.append((ev.OVERRIDE, actor, {"kind": "skip-safety-critical",
                                            "detail": f"skipped safety-critical step {step_id} ({step.action}): "
                                                      f"{reason}"}))
    events.append((ev.STEP_SKIPPED, actor, {"step": step_id, "reason": f"skipped by {actor}: {reason}",
                                            "operator": True}))
    return append_events(state_dir, full, events)


__all__ = ["CANCEL_FILE", "GATE_CAPABILITIES", "OPERATOR_CANCEL", "OPERATOR_SKIP", "append_events", "holder_alive",
           "request_cancel", "skip_step", "take_cancel_request"]
