"""Run record <- audit log: every state change is an event, and the record is their fold.

The engine applies each event it appends with :func:`apply_event`, and :func:`rebuild_record`
replays a whole log with the same function, so a record rebuilt from the audit log equals the
one the engine wrote (``dr show RUN_ID --rebuild``; ``dr resume`` starts from it).

Event data written by the engine (every event may carry ``at``, which wins over ``ts``):

- ``run.started``: ``record`` (the initial run record, every step pending);
- ``run.resumed``: ``previous_status``, ``reset_steps``, ``force``, ``runbook_sha256``,
  ``region_sha256``;
- ``step.started``: ``step``; ``step.attempt``: ``step``, ``attempt``, ``error``, ``wait_seconds``;
- ``step.succeeded``: ``step``, ``duration_seconds``, ``attempts``, ``summary``, ``changed``,
  ``facts``, ``outputs``, ``rpo``;
- ``step.failed``: ``step``, ``duration_seconds``, ``attempts``, ``error``, optional ``rpo``;
- ``step.skipped``: ``step``, ``reason``;
- ``override``: ``kind``, ``detail``; ``milestone``: ``name``;
- ``run.halted``: ``step``, ``error``, ``changed_steps``, ``pending_steps``;
- ``run.finished``: ``status`` (+ the measured RTO/RPO, informational; recomputed on replay).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from dr_engine.errors import RunStateError
from dr_engine.evidence import audit as ev
from dr_engine.evidence.approval_record import ANSWER_EVENTS, apply_approval_event, os_user
from dr_engine.evidence.history import apply_history, end_session
from dr_engine.evidence.operations_record import PREFIXES as OPERATIONS_PREFIXES
from dr_engine.evidence.operations_record import apply_operations_event
from dr_engine.evidence.record import (
    Override,
    RpoRecord,
    RunRecord,
    RunStatus,
    Session,
    StepError,
    StepRecord,
    StepStatus,
)
from dr_engine.evidence.recovery import RUN_FINISHED, RUN_STARTED, RecoveryClock, seconds_between


def _at(event: dict[str, Any]) -> str:
    data = event.get("data") or {}
    at = data.get("at")
    return str(at) if isinstance(at, str) else str(event["ts"])


def _step(record: RunRecord, data: dict[str, Any]) -> StepRecord:
    step_id = str(data.get("step"))
    try:
        return record.step(step_id)
    except KeyError as exc:
        raise RunStateError(f"audit event names unknown step {step_id!r}") from exc


def _finish_step(step: StepRecord, at: str, data: dict[str, Any]) -> None:
    step.finished_at = at
    duration = data.get("duration_seconds")
    if isinstance(duration, int | float):
        step.duration_seconds = float(duration)
    elif step.started_at is not None:
        step.duration_seconds = round(seconds_between(step.started_at, at), 3)
    attempts = data.get("attempts")
    if isinstance(attempts, int):
        step.attempts = attempts


def apply_event(record: RunRecord, event: dict[str, Any]) -> RunRecord:
    """Apply one audit event to ``record`` (in place) and return it."""
    kind = str(event["type"])
    data: dict[str, Any] = dict(event.get("data") or {})
    at = _at(event)
    recovery = RecoveryClock(record)
    if kind == ev.RUN_STARTED:
        record.status = RunStatus.RUNNING
        if not record.sessions:
            record.sessions.append(Session(started_at=at))
        record.milestones.setdefault(RUN_STARTED, at)
    elif kind == ev.STEP_STARTED:
        step = _step(record, data)
        step.status, step.started_at, step.finished_at = StepStatus.RUNNING, at, None
        step.duration_seconds, step.error, step.attempts = None, None, 0
    elif kind == ev.STEP_ATTEMPT:
        step = _step(record, data)
        step.attempts = max(step.attempts, int(data.get("attempt", 0)))
    elif kind == ev.STEP_SUCCEEDED:
        step = _step(record, data)
        step.status = StepStatus.SUCCEEDED
        _finish_step(step, at, data)
        step.summary = str(data.get("summary", ""))
        step.changed = bool(data.get("changed", False))
        step.facts = dict(data.get("facts") or {})
        step.outputs = {str(k): str(v) for k, v in (data.get("outputs") or {}).items()}
        rpo = data.get("rpo")
        step.rpo = RpoRecord.model_validate(rpo) if isinstance(rpo, dict) else None
        if step.changed and step.id not in record.changed_steps:
            record.changed_steps.append(step.id)
        recovery.on_step_finished(step)
    elif kind == ev.STEP_FAILED:
        step = _step(record, data)
        step.status = StepStatus.FAILED
        _finish_step(step, at, data)
        error = data.get("error")
        step.error = StepError.model_validate(error) if isinstance(error, dict) else None
        step.facts = dict(data.get("facts") or step.facts)
        rpo = data.get("rpo")
        if isinstance(rpo, dict):  # data loss measured before the step failed (e.g. rows missing)
            step.rpo = RpoRecord.model_validate(rpo)
    elif kind == ev.STEP_ABANDONED:
        step = _step(record, data)
        step.status = StepStatus.ABANDONED
        _finish_step(step, at, data)
        step.error = StepError(kind="Abandoned", message=str(data.get("reason", "abandoned while running")),
                               hint="`dr resume` runs the step again (actions are idempotent)")
    elif kind == ev.RUN_INTERRUPTED:
        record.interrupted_by.append(str(data.get("signal", "signal")))
    elif kind == ev.STEP_SKIPPED:
        step = _step(record, data)
        step.status, step.finished_at = StepStatus.SKIPPED, at
        step.summary = str(data.get("reason", ""))
    elif kind == ev.OVERRIDE:
        record.overrides.append(Override(kind=str(data.get("kind", "")), detail=str(data.get("detail", "")),
                                         actor=str(event.get("actor", "")), at=at,
                                         approver=data.get("approver") if isinstance(data.get("approver"), str)
                                         else None, identity=os_user(data.get("identity"))))
    elif kind == ev.MILESTONE:
        recovery.mark(str(data.get("name")), at)
    elif kind == ev.RUN_HALTED:
        record.halted_at_step = data.get("step")
        error = data.get("error")
        record.error = StepError.model_validate(error) if isinstance(error, dict) else None
    elif kind == ev.RUN_RESUMED:
        _resumed(record, data, at)
    elif kind == ev.RUN_FINISHED:
        _finished(record, data, at)
    elif kind.startswith(OPERATIONS_PREFIXES):
        apply_operations_event(record, event, at)
    elif kind in ANSWER_EVENTS:
        apply_approval_event(record, event, at)
    apply_history(record, event, at)  # every attempt and session, which a resume must not erase
    # Events of parallel steps may be applied slightly out of order; the head only moves forward.
    if int(event["seq"]) >= record.audit_count:
        record.audit_count = int(event["seq"])
        record.audit_head = str(event["hash"])
    return record


def _resumed(record: RunRecord, data: dict[str, Any], at: str) -> None:
    record.status = RunStatus.RUNNING
    record.finished_at = None
    record.resumes += 1
    record.halted_at_step = None
    record.error = None
    record.sessions.append(Session(started_at=at))
    record.milestones[f"resumed_{record.resumes}"] = at
    sha = data.get("runbook_sha256")
    if isinstance(sha, str):
        record.runbook_sha256 = sha
    regions = data.get("region_sha256")
    if isinstance(regions, dict):
        record.region_sha256 = {str(k): str(v) for k, v in regions.items()}
    for step_id in data.get("reset_steps") or []:
        step = record.step(str(step_id))
        step.status, step.error, step.started_at, step.finished_at = StepStatus.PENDING, None, None, None
        step.duration_seconds, step.attempts = None, 0
    for new in data.get("new_steps") or []:
        record.steps.append(StepRecord.model_validate(new))


def _finished(record: RunRecord, data: dict[str, Any], at: str) -> None:
    record.status = RunStatus(str(data.get("status", RunStatus.FAILED.value)))
    record.finished_at = at
    record.milestones[RUN_FINISHED] = at
    if record.sessions and record.sessions[-1].finished_at is None:
        record.sessions[-1].finished_at = at
    end_session(record, record.status, at)
    outcome = RecoveryClock(record).outcome()
    record.rto_seconds, record.rto_met = outcome.rto_seconds, outcome.rto_met
    record.rpo_seconds, record.rpo_met = outcome.rpo.rpo_seconds, outcome.rpo_met
    record.rpo_lag_bytes, record.rows_lost = outcome.rpo.lag_bytes, outcome.rpo.rows_lost
    record.human_wait_seconds, record.machine_seconds = outcome.human_wait_seconds, outcome.machine_seconds
    record.rto_breakdown = outcome.breakdown
    if record.sessions:
        record.sessions[-1].human_wait_seconds = outcome.human_wait_seconds


def record_from_started(event: dict[str, Any]) -> RunRecord:
    """The initial record carried by a ``run.started`` event."""
    if event.get("type") != ev.RUN_STARTED:
        raise RunStateError("an audit log must begin with run.started",
                            hint="the log is not a dr-engine run log, or its head was removed")
    data = event.get("data") or {}
    record = RunRecord.model_validate(data.get("record") or {})
    return apply_event(record, event)


def rebuild_record(events: Iterable[dict[str, Any]]) -> RunRecord:
    """Replay a (verified) audit log into the run record it describes."""
    iterator = iter(events)
    first = next(iterator, None)
    if first is None:
        raise RunStateError("the audit log is empty")
    record = record_from_started(first)
    for event in iterator:
        apply_event(record, event)
    return record


__all__ = ["apply_event", "rebuild_record", "record_from_started"]
