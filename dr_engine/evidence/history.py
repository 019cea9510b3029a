"""What happened before: every attempt of every step and how each session ended, folded from the log.

A resume re-runs failed and interrupted steps, and a step's own fields (status, start, end,
duration, error) then describe its latest attempt only; the run's ``error`` and
``halted_at_step`` are cleared. This fold keeps the rest, so that no report, chart or table
can lose a failed attempt, a halt or a cancellation:

- ``StepRecord.history``: one :class:`~dr_engine.evidence.record.StepAttempt` per attempt, across
  sessions: a try that failed and was retried (``step.attempt``), the try that ended the step
  (``step.succeeded`` / ``step.failed`` / ``step.abandoned``), and a try the session ended
  around (``interrupted`` when the process died or the run stopped, ``cancelled`` when the run
  was cancelled). ``StepRecord.attempts`` counts them all.
- ``Session``: how each session ended (status, step and error of its halt), who resumed the
  run and why, and its last event, which is where a session that crashed is known to have ended.

:func:`dr_engine.evidence.journal.apply_event` calls :func:`apply_history` for every event after folding
it into the run state (and :func:`end_session` on ``run.finished``), so the engine's record and
one rebuilt from the log agree.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from dr_engine.clock import parse_utc, utc_iso
from dr_engine.evidence import audit as ev
from dr_engine.evidence.record import AttemptOutcome, RunRecord, RunStatus, Session, StepAttempt, StepError, StepRecord


def _error(value: Any) -> StepError | None:
    return StepError.model_validate(value) if isinstance(value, dict) else None


def _later(first: str | None, second: str) -> str:
    # ISO UTC strings of one format sort like the times they name; parse only when they differ in shape.
    if first is None:
        return second
    if len(first) == len(second):
        return max(first, second)
    return first if parse_utc(first) >= parse_utc(second) else second


def _open(step: StepRecord) -> StepAttempt | None:
    """The attempt of ``step`` still running, if any."""
    if step.history and step.history[-1].outcome is None:
        return step.history[-1]
    return None


def _begin(step: StepRecord, session: int, at: str | None) -> StepAttempt:
    attempt = StepAttempt(session=session, attempt=len(step.history) + 1, started_at=at)
    step.history.append(attempt)
    step.attempts = len(step.history)
    return attempt


def _end(step: StepRecord, session: int, at: str, outcome: AttemptOutcome, error: StepError | None) -> None:
    """Close the running attempt of ``step`` (or record one, when the log has no start for it)."""
    current = _open(step)
    if current is None:
        current = _begin(step, session, step.started_at)
    current.finished_at, current.outcome, current.error = at, outcome, error
    step.attempts = len(step.history)


def _interrupt_running(record: RunRecord, at: str | None, outcome: AttemptOutcome) -> None:
    """Attempts that were running when their session ended end with it."""
    for step in record.steps:
        current = _open(step)
        if current is not None:
            current.finished_at, current.outcome = at, outcome


def _on_resumed(record: RunRecord, data: dict[str, Any], actor: str) -> None:
    if len(record.sessions) >= 2:
        previous = record.sessions[-2]
        if previous.status is None:
            # No run.finished: the process died (crash, kill -9). It is known to have lived until
            # its last recorded event, and what was running then ended with it.
            previous.status = "interrupted"
        _interrupt_running(record, previous.last_event_at, AttemptOutcome.INTERRUPTED)
    session = record.sessions[-1]
    session.actor = actor or None
    session.reason = str(data.get("reason") or "")
    # The state fold reset the re-run steps to pending (attempts 0): their history still counts.
    for step in record.steps:
        step.attempts = len(step.history) if step.history else step.attempts


def apply_history(record: RunRecord, event: dict[str, Any], at: str) -> None:
    """Fold one audit event into the attempt and session history of ``record`` (in place)."""
    kind = str(event["type"])
    data: dict[str, Any] = event.get("data") or {}
    number = max(len(record.sessions), 1)
    session: Session | None = record.sessions[-1] if record.sessions else None
    step_id = data.get("step")
    step = None
    if isinstance(step_id, str) and kind.startswith("step."):
        step = next((s for s in record.steps if s.id == step_id), None)
    if kind == ev.RUN_STARTED and session is not None:
        session.actor, session.reason = record.triggered_by, record.reason
        if record.incident_start_declared is None:
            # A record written before the field: a declared incident start differs from the run start.
            record.incident_start_declared = record.incident_started_at != record.started_at
    elif kind == ev.STEP_STARTED and step is not None:
        _interrupt_running_step(step, at)
        _begin(step, number, at)
    elif kind == ev.STEP_ATTEMPT and step is not None:
        error = _error(data.get("error"))
        if error is not None:  # a try that failed and is retried (an event without error only marks a start)
            _end(step, number, at, AttemptOutcome.RETRIED, error)
            wait = data.get("wait_seconds")
            waited = float(wait) if isinstance(wait, int | float) else None
            step.history[-1].wait_seconds = waited
            _begin(step, number, utc_iso(parse_utc(at) + timedelta(seconds=waited or 0.0)))
    elif kind == ev.STEP_SUCCEEDED and step is not None:
        _end(step, number, at, AttemptOutcome.SUCCEEDED, None)
    elif kind == ev.STEP_FAILED and step is not None:
        _end(step, number, at, AttemptOutcome.FAILED, _error(data.get("error")) or step.error)
    elif kind == ev.STEP_ABANDONED and step is not None:
        reason = str(data.get("reason") or "abandoned while running")
        _end(step, number, at, AttemptOutcome.ABANDONED, step.error or StepError(kind="Abandoned", message=reason))
    elif kind == ev.RUN_HALTED and session is not None:
        halted = data.get("step")
        session.halted_at_step = str(halted) if isinstance(halted, str) else None
        session.error = _error(data.get("error"))
    elif kind == ev.RUN_RESUMED and session is not None:
        _on_resumed(record, data, str(event.get("actor") or ""))
    elif kind == ev.NOTE_ADDED and "incident_start_given" in data:
        # A declared incident start a few seconds in the future, clamped to the run start.
        record.incident_start_declared = True
    if session is not None:
        session.last_event_at = _later(session.last_event_at, at)


def end_session(record: RunRecord, status: RunStatus, at: str) -> None:
    """``run.finished``: the session ends with ``status``, and so do the attempts still running in it.

    :func:`dr_engine.evidence.journal.apply_event` calls this before measuring the run, so that the wait
    of an approval cancelled while people were still deciding counts as human wait.
    """
    # The first run.finished of a session says how it ended; a later one re-seals the same
    # session after an operator's amendment (`dr cancel`, `dr skip`), which changes the run's
    # status but not how the session stopped.
    if record.sessions and record.sessions[-1].status is None:
        record.sessions[-1].status = status.value
    _interrupt_running(record, at, AttemptOutcome.CANCELLED if status is RunStatus.CANCELLED
                       else AttemptOutcome.INTERRUPTED)


def _interrupt_running_step(step: StepRecord, at: str) -> None:
    # A start while an attempt is still open: the log lost that attempt's end.
    current = _open(step)
    if current is not None:
        current.finished_at, current.outcome = at, AttemptOutcome.INTERRUPTED


__all__ = ["apply_history", "end_session"]
