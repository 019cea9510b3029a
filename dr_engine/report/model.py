"""The report model: everything a per-run report says, built only from the run directory.

:func:`build_run_report` turns a :class:`~dr_engine.report.source.RunSource` (``run.json``,
``audit.jsonl`` and the remediation-notes log) into a :class:`RunReport`. Renderers
(JSON, Markdown, HTML, PDF) only format a ``RunReport``; none of them reads files. Because
the inputs are the run's own records, a report can be rebuilt at any time and must come out
the same (its :attr:`Integrity.content_sha256` does not depend on when it was generated).

Every string taken from the inputs passes through :func:`~dr_engine.evidence.redact.redact_value`.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field

from dr_engine.clock import utc_iso
from dr_engine.errors import RunStateError
from dr_engine.evidence.journal import rebuild_record
from dr_engine.evidence.record import RECORD_VERSION
from dr_engine.evidence.recovery import UNDECLARED_INCIDENT
from dr_engine.evidence.redact import redact_text, redact_value
from dr_engine.report.formatting import fmt_bytes, fmt_seconds, parse_ts
from dr_engine.report.notes import RemediationItem, fold_notes
from dr_engine.report.source import RunSource

REPORT_SCHEMA = "dr-engine/run-report/1"
#: Capabilities whose time is human wait rather than machine time.
HUMAN_CAPABILITIES = frozenset({"control.approve"})
#: Capabilities whose result is the data-integrity verdict.
INTEGRITY_CAPABILITIES = frozenset({"data.reconcile", "data.verify", "data.check"})


class Identification(BaseModel):
    """Which test or event this is (FIELD.md item 1 and 5)."""

    run_id: str
    mode: str
    mode_label: str
    status: str
    runbook: str
    runbook_file: str = ""
    runbook_sha256: str = ""
    git_commit: str | None = None
    source: str
    target: str
    reason: str = ""
    triggered_by: str = ""
    incident_started_at: str | None = None
    #: False when no incident start was declared: it defaulted to the run start (RTO a lower bound).
    incident_declared: bool = True
    #: What every format says about the incident start ("declared (--incident-start)" or why not).
    incident_note: str = ""
    started_at: str | None = None
    finished_at: str | None = None
    resumes: int = 0
    owner: str | None = None


class Objective(BaseModel):
    """One success criterion, its target, what was achieved and the verdict."""

    name: str
    target: str
    achieved: str
    met: bool | None = Field(description="True pass, False fail, None not measured")
    detail: str = ""


class StepRow(BaseModel):
    """One step: timing, attempts and outcome."""

    id: str
    action: str
    capability: str = ""
    wave: int = 0
    status: str
    started_at: str | None = None
    finished_at: str | None = None
    duration_seconds: float | None = None
    attempts: int = 0
    human: bool = False
    error: str = ""
    summary: str = ""
    facts: dict[str, Any] = Field(default_factory=dict)


class Attempt(BaseModel):
    """One attempt of a step, in any session of the run (``StepRecord.history``), for tables and the chart."""

    step_id: str
    attempt: int
    #: 1 for the first session, 2 after the first resume, ...
    session: int = 1
    started_at: str | None = None
    finished_at: str | None = None
    ok: bool = True
    #: succeeded | failed | retried | interrupted | cancelled | abandoned ("" for records without history).
    outcome: str = ""
    error: str = ""

    @property
    def duration_seconds(self) -> float | None:
        """How long the attempt ran, when both ends are known."""
        return _seconds_between(self.started_at, self.finished_at)


class SessionRow(BaseModel):
    """One session of the run (the first start, then each resume) and how it ended."""

    number: int
    started_at: str
    finished_at: str | None = None
    #: failed | halted | cancelled | succeeded, ``interrupted`` (its process died), ``running``.
    status: str
    halted_at_step: str | None = None
    error: str = ""
    actor: str = ""
    reason: str = ""
    #: Time halted between the end of this session and the next one (None for the last session).
    halted_after_seconds: float | None = None


class TimeSplit(BaseModel):
    """The RTO (or, when never healthy, the time to the run's end) in four parts that add up to it."""

    until: str = Field(description="healthy (the RTO) | run_finished (never healthy)")
    total_seconds: float
    before_run_seconds: float
    machine_seconds: float
    human_wait_seconds: float
    halted_seconds: float


class Recovery(BaseModel):
    """Achieved RTO and RPO against the objectives (FIELD.md item 4)."""

    rto_seconds: float | None = None
    rto_target_seconds: float
    rto_met: bool | None = None
    rto_stop: str | None = None
    human_wait_seconds: float = 0.0
    machine_seconds: float | None = None
    rpo_seconds: float | None = None
    rpo_lag_bytes: int | None = None
    rows_lost: int | None = None
    rpo_target_seconds: float
    rpo_met: bool | None = None
    allow_data_loss: bool = False
    breakdown: TimeSplit | None = None


class TimelineEntry(BaseModel):
    """One dated line of the UTC timeline."""

    at: str
    event: str
    detail: str = ""
    actor: str = ""
    severity: str = "info"


class Deviation(BaseModel):
    """Something that did not go to plan: retry, failure, skip, override, breach."""

    kind: str
    step_id: str | None = None
    detail: str
    reason: str = ""
    at: str | None = None
    actor: str = ""


class Approval(BaseModel):
    """Who approved (or rejected) what, when, and how long people waited.

    ``by`` is the name the person gave (a claim); ``identity`` is who the OS says answered, or
    why nothing proves it (the Prefect UI has no users in open-source Prefect).
    """

    step_id: str
    decision: str = Field(description="granted | rejected | refused (not accepted; the run kept waiting) | claimed")
    by: str = ""
    identity: str = ""
    authenticated: bool = False
    requested_at: str | None = None
    decided_at: str | None = None
    wait_seconds: float | None = None
    comment: str = ""


class DataIntegrity(BaseModel):
    """The post-failover reconciliation verdict (FIELD.md item 8)."""

    status: str = Field(description="verified | failed | not-checked")
    detail: str = ""
    checks: list[StepRow] = Field(default_factory=list)


class Integrity(BaseModel):
    """Digests of the raw records and the chain verification result (FIELD.md item 10)."""

    audit_sha256: str
    run_json_sha256: str
    chain_ok: bool
    chain_events: int
    chain_sealed: bool = False
    chain_head: str = ""
    chain_first_bad_line: int | None = None
    chain_reason: str = ""
    notes_chain_ok: bool | None = None
    notes_chain_reason: str = ""
    retained_at: str = ""
    content_sha256: str = ""


class RunReport(BaseModel):
    """A per-run report. ``generated_at`` is the only field that changes on a rebuild."""

    schema_: str = Field(default=REPORT_SCHEMA, alias="schema")
    generated_at: str
    title: str
    verdict: str = Field(description="PASSED | FAILED | IN PROGRESS | UNVERIFIED")
    verified: bool = Field(description="the audit chain verifies and run.json agrees with the audit log")
    verification: str = Field(description="why the run does not verify; empty when verified")
    identification: Identification
    objectives: list[Objective]
    recovery: Recovery
    steps: list[StepRow]
    attempts: list[Attempt]
    sessions: list[SessionRow] = Field(default_factory=list)
    timeline: list[TimelineEntry]
    deviations: list[Deviation]
    approvals: list[Approval]
    data_integrity: DataIntegrity
    remediation: list[RemediationItem]
    integrity: Integrity

    model_config = {"populate_by_name": True}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``schema`` key spelled as in the file)."""
        return self.model_dump(mode="json", by_alias=True)

    @property
    def open_remediation(self) -> list[RemediationItem]:
        """Remediation items not yet closed."""
        return [item for item in self.remediation if item.status == "open"]

    @property
    def failed_objectives(self) -> list[Objective]:
        """Objectives that were measured and missed."""
        return [o for o in self.objectives if o.met is False]


MODE_LABELS = {
    "failover": "Failover (real event)",
    "drill": "Drill (DR test)",
    "failback": "Failback",
}


def _data(event: dict[str, Any]) -> dict[str, Any]:
    data = event.get("data")
    return data if isinstance(data, dict) else {}


def _step_of(event: dict[str, Any]) -> str | None:
    data = _data(event)
    for key in ("step_id", "step"):
        value = data.get(key)
        if isinstance(value, str):
            return value
    return None


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        kind = error.get("kind") or ""
        message = error.get("message") or ""
        hint = error.get("hint")
        text = f"{kind}: {message}" if kind else str(message)
        return f"{text} (hint: {hint})" if hint else text
    return "" if error is None else str(error)


def _seconds_between(start: str | None, end: str | None) -> float | None:
    first, last = parse_ts(start), parse_ts(end)
    if first is None or last is None:
        return None
    return (last - first).total_seconds()


def _steps(record: dict[str, Any]) -> list[StepRow]:
    rows: list[StepRow] = []
    for step in record.get("steps") or []:
        capability = str(step.get("capability") or "")
        rows.append(StepRow(
            id=str(step.get("id")), action=str(step.get("action") or ""), capability=capability,
            wave=int(step.get("wave") or 0), status=str(step.get("status") or "pending"),
            started_at=step.get("started_at"), finished_at=step.get("finished_at"),
            duration_seconds=step.get("duration_seconds"), attempts=int(step.get("attempts") or 0),
            human=capability in HUMAN_CAPABILITIES, error=_error_text(step.get("error")),
            summary=str(step.get("summary") or ""),
            facts=dict(step.get("facts") or {}),
        ))
    return rows


def _at(event: dict[str, Any]) -> str:
    """When an event happened: the engine's ``data.at`` wins over the append time ``ts``."""
    at = _data(event).get("at")
    return str(at) if isinstance(at, str) else str(event.get("ts") or "")


def _shift(stamp: str | None, seconds: float) -> str | None:
    moment = parse_ts(stamp)
    return None if moment is None else utc_iso(moment + timedelta(seconds=seconds))


def _history(record: dict[str, Any], steps: list[StepRow], events: list[dict[str, Any]]) -> list[Attempt]:
    """Every attempt of every step in every session (``StepRecord.history``), in plan order.

    A step without history (a record whose history could not be folded) falls back to the
    spans found in its ``step.attempt`` events (:func:`_attempts`).
    """
    spans: list[Attempt] = []
    known = {str(step.get("id")): step.get("history") or [] for step in record.get("steps") or []}
    missing = [row for row in steps if not known.get(row.id)]
    for row in steps:
        for item in known.get(row.id) or []:
            outcome = str(item.get("outcome") or "running")
            spans.append(Attempt(step_id=row.id, attempt=int(item.get("attempt") or len(spans) + 1),
                                 session=int(item.get("session") or 1), started_at=item.get("started_at"),
                                 finished_at=item.get("finished_at"), ok=outcome in ("succeeded", "running"),
                                 outcome=outcome, error=_error_text(item.get("error"))))
    if missing:
        fallback = _attempts(missing, events)
        order = {row.id: index for index, row in enumerate(steps)}
        spans = sorted(spans + fallback, key=lambda a: (order.get(a.step_id, 0), a.attempt))
    return spans


def _sessions(record: dict[str, Any]) -> list[SessionRow]:
    rows: list[SessionRow] = []
    sessions = [s for s in record.get("sessions") or [] if isinstance(s, dict)]
    for number, session in enumerate(sessions, start=1):
        following = sessions[number] if number < len(sessions) else None
        stopped = session.get("finished_at") or session.get("last_event_at")
        gap = _seconds_between(stopped, following.get("started_at")) if following is not None else None
        rows.append(SessionRow(
            number=number, started_at=str(session.get("started_at") or ""), finished_at=session.get("finished_at"),
            status=str(session.get("status") or "running"), halted_at_step=session.get("halted_at_step"),
            error=_error_text(session.get("error")), actor=str(session.get("actor") or ""),
            reason=str(session.get("reason") or ""), halted_after_seconds=None if gap is None else max(0.0, gap)))
    return rows


def _attempts(steps: list[StepRow], events: list[dict[str, Any]]) -> list[Attempt]:
    """Per-attempt spans of steps, derived from their events (records without attempt history).

    ``step.attempt`` events mark a failed attempt (``error``, ``wait_seconds`` of backoff
    before the next one) at their time; an attempt runs from the step start (or the end of
    the previous attempt's backoff) to that time, and the last attempt ends with the step.
    """
    by_step: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        step = _step_of(event)
        if step is not None and event.get("type") == "step.attempt":
            by_step.setdefault(step, []).append(event)
        elif step is not None and event.get("type") == "step.started":
            by_step[step] = []  # a resumed step starts over; earlier attempts belong to an old session
    spans: list[Attempt] = []
    for row in steps:
        if row.started_at is None:
            continue
        cursor: str | None = row.started_at
        number = 0
        for event in by_step.get(row.id, []):
            data = _data(event)
            error = _error_text(data.get("error"))
            number = int(data.get("attempt") or number + 1)
            if not error:
                cursor = _at(event)  # an attempt-start marker
                continue
            spans.append(Attempt(step_id=row.id, attempt=number, started_at=cursor, finished_at=_at(event),
                                 ok=False, error=error))
            wait = data.get("wait_seconds")
            cursor = _shift(_at(event), float(wait)) if isinstance(wait, int | float) else _at(event)
        end = row.finished_at
        end_moment, cursor_moment = parse_ts(end), parse_ts(cursor)
        if end_moment is not None and cursor_moment is not None and end_moment > cursor_moment:
            spans.append(Attempt(step_id=row.id, attempt=max(number + 1, row.attempts), started_at=cursor,
                                 finished_at=end, ok=row.status != "failed", error=row.error))
    return spans


_EVENT_TEXT = {
    "run.started": "Run started",
    "run.resumed": "Run resumed",
    "run.halted": "Run halted",
    "run.finished": "Run finished",
    "step.started": "Step started",
    "step.succeeded": "Step succeeded",
    "step.failed": "Step failed",
    "step.skipped": "Step skipped",
    "approval.requested": "Approval requested",
    "approval.granted": "Approval granted",
    "approval.rejected": "Approval rejected",
    "override": "Safety override",
    "note.added": "Note",
}
_MILESTONE_TEXT = {
    "incident_started": "Incident started (declared)",
    "fenced": "Milestone: old primary fenced",
    "promoted": "Milestone: target data promoted",
    "traffic_shifted": "Milestone: traffic shifted to target",
    "healthy": "Milestone: healthy in target (RTO stop)",
}
_SEVERITY = {"step.failed": "bad", "run.halted": "bad", "approval.rejected": "bad", "override": "warn",
             "step.skipped": "warn", "approval.requested": "human", "approval.granted": "human"}


def _timeline(record: dict[str, Any], events: list[dict[str, Any]], *, declared: bool = True,
              sessions: list[SessionRow] | None = None) -> list[TimelineEntry]:
    entries: list[TimelineEntry] = []
    incident = record.get("incident_started_at")
    evented = {str(_data(e).get("name")) for e in events if e.get("type") == "milestone"}
    if incident and "incident_started" not in evented:
        entries.append(TimelineEntry(at=str(incident), event=_MILESTONE_TEXT["incident_started"],
                                     detail="RTO is measured from this moment", severity="bad"))
    for name, at in (record.get("milestones") or {}).items():
        if name in _MILESTONE_TEXT and name not in evented:
            entries.append(TimelineEntry(at=str(at), event=_MILESTONE_TEXT[name],
                                         severity="good" if name in ("healthy", "traffic_shifted") else "info"))
    for event in events:
        kind = str(event.get("type") or "")
        data = _data(event)
        step = _step_of(event)
        detail = ""
        severity = _SEVERITY.get(kind, "info")
        if kind == "step.attempt":
            ok = data.get("ok")
            error = _error_text(data.get("error"))
            if ok is True or (ok is None and not error):
                continue  # a successful attempt is already the step.succeeded line
            label = f"Attempt {data.get('attempt', '?')} failed"
            detail = error
            severity = "warn"
        elif kind == "milestone":
            name = str(data.get("name") or data.get("milestone") or "milestone")
            label = _MILESTONE_TEXT.get(name, "Milestone: " + name.replace("_", " "))
            severity = "good" if name in ("healthy", "recovered", "traffic_shifted") else "info"
            if name == "incident_started":
                detail, severity = "RTO is measured from this moment", "bad"
        else:
            label = _EVENT_TEXT.get(kind, kind)
            detail = _event_detail(kind, data)
        if kind == "run.finished":
            status = str(data.get("status") or record.get("status") or "")
            severity = "good" if status == "succeeded" else "bad"
            detail = detail or status
        if step:
            label = f"{label}: {step}"
        entries.append(TimelineEntry(at=_at(event), event=label, detail=detail,
                                     actor=str(event.get("actor") or ""), severity=severity))
    _annotate_timeline(entries, declared, sessions or [])
    # Stable sort by time; the incident start comes first when it coincides with the run start.
    entries.sort(key=lambda e: (parse_ts(e.at) or datetime.min.replace(tzinfo=UTC),
                                e.event not in (_MILESTONE_TEXT["incident_started"], UNDECLARED_INCIDENT_EVENT)))
    return entries


#: The timeline's first line when nobody declared when the incident started.
UNDECLARED_INCIDENT_EVENT = f"Incident start {UNDECLARED_INCIDENT}"


def _annotate_timeline(entries: list[TimelineEntry], declared: bool, sessions: list[SessionRow]) -> None:
    """Say when the incident start was not declared, and how long the run was halted before each resume."""
    resumed_after = {s.started_at: sessions[s.number - 2].halted_after_seconds for s in sessions if s.number > 1}
    for entry in entries:
        if entry.event == _MILESTONE_TEXT["incident_started"] and not declared:
            entry.event = UNDECLARED_INCIDENT_EVENT
            entry.detail = "no --incident-start was given: the run start stands in for it"
        elif entry.event == _EVENT_TEXT["run.resumed"] and resumed_after.get(entry.at) is not None:
            halted = f"after {fmt_seconds(resumed_after[entry.at])} halted between sessions"
            entry.detail = f"{halted} - {entry.detail}" if entry.detail else halted


def _event_detail(kind: str, data: dict[str, Any]) -> str:
    if kind in ("run.started", "run.resumed"):
        nested = data.get("record")
        source = nested if isinstance(nested, dict) else data
        parts = [str(source[k]) for k in ("mode", "reason") if source.get(k)]
        if kind == "run.resumed" and data.get("previous_status"):
            parts.insert(0, f"was {data['previous_status']}")
        return " - ".join(parts)
    if kind == "note.added":
        return str(data.get("text") or data.get("action") or "")
    if kind == "step.failed":
        return _error_text(data.get("error")) or str(data.get("message") or "")
    if kind == "step.skipped":
        return str(data.get("reason") or "")
    if kind == "step.succeeded":
        summary = str(data.get("summary") or "")
        duration = data.get("duration_seconds")
        took = f" ({fmt_seconds(float(duration))})" if isinstance(duration, int | float) else ""
        return f"{summary}{took}".strip()
    if kind.startswith("approval."):
        bits = [str(data[k]) for k in ("comment", "reason", "message") if data.get(k)]
        return "; ".join(bits)
    if kind == "override":
        return " - ".join(str(data[k]) for k in ("kind", "detail", "reason") if data.get(k))
    if kind == "run.halted":
        return _error_text(data.get("error")) or str(data.get("reason") or "")
    return ""


#: Answer events and the decision each shows (see dr_engine.evidence.approval_record).
_ANSWERS = {"approval.granted": "granted", "approval.rejected": "rejected", "approval.refused": "refused",
            "approval.claimed": "claimed"}


def _identity_text(data: dict[str, Any]) -> tuple[str, bool]:
    """Who the OS says answered (``user@host, uid N``), or what the answer rests on; and whether it is proven."""
    identity = data.get("identity")
    if isinstance(identity, dict) and identity.get("user"):
        return f"{identity['user']}@{identity.get('host') or '?'} (uid {identity.get('uid')})", True
    if data.get("timed_out") or data.get("via") == "timeout":
        return "nobody (timed out)", False
    if data.get("note"):
        return str(data["note"]), False
    # Records written before identities were kept have no identity key at all.
    return ("not authenticated" if "identity" in data else "not recorded (written before identities were)"), False


def _approvals(steps: list[StepRow], events: list[dict[str, Any]]) -> list[Approval]:
    requested: dict[str, str] = {}
    approvals: list[Approval] = []
    for event in events:
        kind = event.get("type")
        step = _step_of(event) or ""
        data = _data(event)
        if kind == "approval.requested":
            requested[step] = _at(event)
        elif kind in _ANSWERS:
            asked = requested.get(step)
            decided = _at(event)
            waited = data.get("waited_seconds", data.get("wait_seconds"))
            identity, proven = _identity_text(data)
            approvals.append(Approval(
                step_id=step, decision=_ANSWERS[str(kind)],
                by=str(data.get("approver") or data.get("by") or event.get("actor") or ""),
                identity=identity, authenticated=proven, requested_at=asked, decided_at=decided,
                wait_seconds=float(waited) if isinstance(waited, int | float) else _seconds_between(asked, decided),
                comment=str(data.get("comment") or data.get("reason") or "")
                + (f" (not accepted: {data['reason']})" if kind == "approval.refused" and data.get("comment")
                   and data.get("reason") else ""),
            ))
    # Approval steps record who decided in their facts even when the gate wrote no events.
    seen = {a.step_id for a in approvals}
    for row in steps:
        if row.human and row.id not in seen and row.status in ("succeeded", "failed"):
            waited = row.facts.get("waited_seconds")
            identity, proven = _identity_text(row.facts)
            approvals.append(Approval(
                step_id=row.id, decision="granted" if row.status == "succeeded" else "rejected",
                by=str(row.facts.get("approver") or ""), identity=identity, authenticated=proven,
                requested_at=row.started_at, decided_at=row.finished_at,
                wait_seconds=float(waited) if isinstance(waited, int | float) else row.duration_seconds,
                comment=str(row.facts.get("comment") or (row.error if row.status == "failed" else ""))))
    return approvals


#: Attempt outcome -> (deviation kind, what happened). Every attempt that did not succeed is one.
_ATTEMPT_DEVIATIONS = {
    "retried": ("retry", "failed and was retried"),
    "failed": ("failure", "failed"),
    "interrupted": ("interrupted", "interrupted: its session ended while it ran"),
    "cancelled": ("cancelled", "cancelled with the run while it ran"),
    "abandoned": ("abandoned", "abandoned while running"),
}
#: Session status -> deviation kind: how a session other than a success ended.
_SESSION_DEVIATIONS = {"failed": "halt", "halted": "halt", "cancelled": "cancellation",
                       "interrupted": "interruption"}


def _attempt_deviations(row: StepRow, mine: list[Attempt]) -> list[Deviation]:
    found: list[Deviation] = []
    if not any(a.outcome for a in mine):  # no history: what the step's own fields and events say
        if row.attempts > 1:
            errors = [a.error for a in mine if not a.ok and a.error]
            found.append(Deviation(kind="retry", step_id=row.id, detail=f"{row.attempts} attempts",
                                   reason="; ".join(dict.fromkeys(errors)), at=row.started_at))
        if row.status == "failed":
            found.append(Deviation(kind="failure", step_id=row.id, detail=f"{row.action} failed",
                                   reason=row.error, at=row.finished_at))
        return found
    for attempt in mine:
        if attempt.outcome not in _ATTEMPT_DEVIATIONS:
            continue
        kind, what = _ATTEMPT_DEVIATIONS[attempt.outcome]
        found.append(Deviation(kind=kind, step_id=row.id,
                               detail=f"{row.action} attempt {attempt.attempt} (session {attempt.session}) {what}",
                               reason=attempt.error, at=attempt.finished_at or attempt.started_at))
    return found


def _interruption_deviations(events: list[dict[str, Any]]) -> list[Deviation]:
    """Each stop signal that reached the run (``run.interrupted``) and what it did to running steps."""
    found: list[Deviation] = []
    for event in events:
        if event.get("type") != "run.interrupted":
            continue
        data = _data(event)
        running = [str(s) for s in data.get("running_steps") or []]
        reason = "no new step started" + (
            f"; running {', '.join(running)} given up to {fmt_seconds(data.get('grace_seconds'))} to finish"
            if running else "")
        found.append(Deviation(kind="stop-signal", detail=f"run interrupted by {data.get('signal') or 'a signal'}",
                               reason=reason, at=event.get("ts"), actor=str(event.get("actor") or "")))
    return found


def _session_deviations(sessions: list[SessionRow]) -> list[Deviation]:
    found: list[Deviation] = []
    for session in sessions:
        kind = _SESSION_DEVIATIONS.get(session.status)
        if kind is None:
            continue
        detail = f"session {session.number} ended {session.status}"
        if session.halted_at_step:
            detail += f" at step {session.halted_at_step}"
        if session.halted_after_seconds is not None and session.number < len(sessions):
            resumed = sessions[session.number]
            detail += f"; halted {fmt_seconds(session.halted_after_seconds)} until resumed"
            detail += f" by {resumed.actor}" if resumed.actor else ""
            detail += f" ({resumed.reason})" if resumed.reason else ""
        found.append(Deviation(kind=kind, step_id=session.halted_at_step, detail=detail,
                               reason=session.error, at=session.finished_at or session.started_at))
    return found


def _deviations(record: dict[str, Any], steps: list[StepRow], attempts: list[Attempt],
                events: list[dict[str, Any]], sessions: list[SessionRow] | None = None) -> list[Deviation]:
    found: list[Deviation] = []
    skip_reasons = {(_step_of(e) or ""): str(_data(e).get("reason") or "") for e in events
                    if e.get("type") == "step.skipped"}
    for row in steps:
        mine = [a for a in attempts if a.step_id == row.id]
        found += _attempt_deviations(row, mine)
        if row.status == "skipped":
            found.append(Deviation(kind="skip", step_id=row.id, detail=f"{row.action} skipped",
                                   reason=skip_reasons.get(row.id, ""), at=row.finished_at or row.started_at))
        elif (row.status == "pending" or (row.status == "running" and not mine)) \
                and record.get("status") not in (None, "running", "succeeded"):
            halted = record.get("halted_at_step")
            found.append(Deviation(kind="not-run", step_id=row.id, detail=f"{row.action} did not run",
                                   reason=f"run {record.get('status')}" + (f" at step {halted}" if halted else "")))
    found += _session_deviations(sessions or [])
    found += _interruption_deviations(events)
    for override in record.get("overrides") or []:
        found.append(Deviation(kind="override", detail=str(override.get("kind") or "override"),
                               reason=str(override.get("detail") or ""), at=override.get("at"),
                               actor=str(override.get("actor") or "")))
    if record.get("rto_met") is False:
        rto = record.get("rto_seconds")
        achieved = f"achieved {fmt_seconds(rto)}" if rto is not None else "recovery was not reached"
        target = fmt_seconds(record.get("rto_target_seconds"))
        found.append(Deviation(kind="objective-breach", detail="RTO objective missed",
                               reason=f"{achieved} against a target of {target}"))
    if record.get("rpo_met") is False:
        found.append(Deviation(kind="objective-breach", detail="RPO objective missed",
                               reason=_rpo_achieved(record) + f" against a target of "
                               f"{fmt_seconds(record.get('rpo_target_seconds'))}"))
    return found


def _rpo_achieved(record: dict[str, Any]) -> str:
    parts = []
    if record.get("rpo_seconds") is not None:
        parts.append(f"{fmt_seconds(record['rpo_seconds'])} replication lag")
    if record.get("rpo_lag_bytes") is not None:
        parts.append(f"{fmt_bytes(record['rpo_lag_bytes'])} behind")
    if record.get("rows_lost") is not None:
        parts.append(f"{record['rows_lost']} rows lost")
    return ", ".join(parts) if parts else "not measured"


def _objectives(record: dict[str, Any]) -> list[Objective]:
    status = str(record.get("status") or "")
    rto = record.get("rto_seconds")
    objectives = [
        Objective(name="Recovery completed", target="every step succeeded and the target is healthy",
                  achieved=status, met=None if status == "running" else status == "succeeded",
                  detail="" if status == "succeeded" else
                  (f"halted at step {record['halted_at_step']}" if record.get("halted_at_step") else "")),
        Objective(name="RTO (recovery time)", target=f"<= {fmt_seconds(record.get('rto_target_seconds'))}",
                  achieved=fmt_seconds(rto) if rto is not None else "not reached",
                  met=record.get("rto_met"),
                  detail="measured from incident start to healthy in the target region" if _incident_declared(record)
                  else f"measured from run start to healthy in the target region (incident start "
                  f"{UNDECLARED_INCIDENT})"),
        Objective(name="RPO (data loss)", target=f"<= {fmt_seconds(record.get('rpo_target_seconds'))}",
                  achieved=_rpo_achieved(record), met=record.get("rpo_met"),
                  detail="replication lag at cutover and rows lost by reconciliation"),
    ]
    return objectives


def _data_integrity(steps: list[StepRow]) -> DataIntegrity:
    checks = [row for row in steps if row.capability in INTEGRITY_CAPABILITIES]
    reconcile = [row for row in checks if row.capability in ("data.reconcile", "data.verify")] or checks
    if not reconcile:
        return DataIntegrity(status="not-checked", detail="the runbook has no data check or reconciliation step")
    if any(row.status == "failed" for row in reconcile):
        return DataIntegrity(status="failed", detail="a data check or reconciliation failed", checks=reconcile)
    if all(row.status == "succeeded" for row in reconcile):
        summary = "; ".join(row.summary for row in reconcile if row.summary)
        return DataIntegrity(status="verified", detail=summary or "all data checks passed", checks=reconcile)
    return DataIntegrity(status="not-checked", detail="data checks did not run to completion", checks=reconcile)


#: The verdict of a run whose records do not verify: what they claim is not established.
UNVERIFIED = "UNVERIFIED"


def _verdict(record: dict[str, Any], *, verified: bool = True) -> str:
    if not verified:
        return UNVERIFIED
    status = record.get("status")
    if status == "running":
        return "IN PROGRESS"
    met = [record.get("rto_met"), record.get("rpo_met")]
    if status == "succeeded" and all(m is not False for m in met):
        return "PASSED"
    return "FAILED"


def content_digest(report: RunReport) -> str:
    """SHA-256 of the report's canonical JSON without ``generated_at`` and the digest itself."""
    data = report.to_dict()
    data.pop("generated_at", None)
    data.get("integrity", {}).pop("content_sha256", None)
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _incident_declared(record: dict[str, Any]) -> bool:
    declared = record.get("incident_start_declared")
    if isinstance(declared, bool):
        return declared
    # A record written before the field: a declared start differs from the run start.
    return record.get("incident_started_at") != record.get("started_at")


def _with_history(record: dict[str, Any], events: list[dict[str, Any]]) -> dict[str, Any]:
    """A record written before the attempt history (version 1), completed from its audit log.

    The log holds every attempt and session, so the report of an old run shows them too; when
    the log cannot be replayed the record is used as it is.
    """
    if int(record.get("record_version") or 1) >= RECORD_VERSION or not events:
        return record
    try:
        rebuilt = rebuild_record(events).model_dump(mode="json")
    except (RunStateError, ValueError, KeyError, TypeError):
        return record
    folded = {str(step.get("id")): step for step in rebuilt.get("steps") or []}
    merged = dict(record)
    merged["steps"] = [{**step, "history": folded.get(str(step.get("id")), {}).get("history") or [],
                        "attempts": folded.get(str(step.get("id")), {}).get("attempts", step.get("attempts"))}
                       for step in record.get("steps") or []]
    for key in ("sessions", "rto_breakdown", "incident_start_declared"):
        merged[key] = rebuilt.get(key)
    return merged


def _split(record: dict[str, Any]) -> TimeSplit | None:
    split = record.get("rto_breakdown")
    return TimeSplit.model_validate(split) if isinstance(split, dict) else None


def build_run_report(source: RunSource, *, now: datetime | None = None) -> RunReport:
    """Build the report model of one run from its records (redacted, digest filled in)."""
    record: dict[str, Any] = redact_value(_with_history(source.record, source.events))
    events: list[dict[str, Any]] = redact_value(source.events)
    steps = _steps(record)
    attempts = _history(record, steps, events)
    sessions = _sessions(record)
    declared = _incident_declared(record)
    mode = str(record.get("mode") or "failover")
    ident = Identification(
        run_id=str(record.get("run_id")), mode=mode, mode_label=MODE_LABELS.get(mode, mode),
        status=str(record.get("status") or ""), runbook=str(record.get("runbook") or ""),
        runbook_file=str(record.get("runbook_file") or ""), runbook_sha256=str(record.get("runbook_sha256") or ""),
        git_commit=record.get("git_commit"), source=str(record.get("source") or ""),
        target=str(record.get("target") or ""), reason=str(record.get("reason") or ""),
        triggered_by=str(record.get("triggered_by") or ""), incident_started_at=record.get("incident_started_at"),
        incident_declared=declared, incident_note="declared (--incident-start)" if declared else UNDECLARED_INCIDENT,
        started_at=record.get("started_at"), finished_at=record.get("finished_at"),
        resumes=int(record.get("resumes") or 0), owner=record.get("owner"),
    )
    recovery = Recovery(
        rto_seconds=record.get("rto_seconds"), rto_target_seconds=float(record.get("rto_target_seconds") or 0),
        rto_met=record.get("rto_met"), rto_stop=record.get("rto_stop"),
        human_wait_seconds=float(record.get("human_wait_seconds") or 0.0),
        machine_seconds=record.get("machine_seconds"), rpo_seconds=record.get("rpo_seconds"),
        rpo_lag_bytes=record.get("rpo_lag_bytes"), rows_lost=record.get("rows_lost"),
        rpo_target_seconds=float(record.get("rpo_target_seconds") or 0), rpo_met=record.get("rpo_met"),
        allow_data_loss=bool(record.get("allow_data_loss")), breakdown=_split(record),
    )
    chain = source.chain
    integrity = Integrity(
        audit_sha256=source.audit_sha256, run_json_sha256=source.record_sha256, chain_ok=chain.ok,
        chain_events=chain.count, chain_sealed=chain.sealed, chain_head=chain.head,
        chain_first_bad_line=chain.first_bad_line, chain_reason=chain.reason,
        notes_chain_ok=None if source.notes_chain is None else source.notes_chain.ok,
        notes_chain_reason="" if source.notes_chain is None else source.notes_chain.reason,
        retained_at=str(source.run_dir.resolve()),
    )
    verdict = _verdict(record, verified=source.verified)
    title = f"{MODE_LABELS.get(mode, mode)} report - {ident.runbook}"
    report = RunReport(
        generated_at=utc_iso(now or datetime.now(UTC)), title=title, verdict=verdict, verified=source.verified,
        verification=redact_text(source.verification), identification=ident,
        objectives=_objectives(record), recovery=recovery, steps=steps, attempts=attempts, sessions=sessions,
        timeline=_timeline(record, events, declared=declared, sessions=sessions),
        deviations=_deviations(record, steps, attempts, events, sessions),
        approvals=_approvals(steps, events), data_integrity=_data_integrity(steps),
        remediation=fold_notes(redact_value(source.notes)), integrity=integrity,
    )
    report.integrity.content_sha256 = content_digest(report)
    return report


__all__ = [
    "REPORT_SCHEMA",
    "UNDECLARED_INCIDENT_EVENT",
    "UNVERIFIED",
    "Approval",
    "Attempt",
    "DataIntegrity",
    "Deviation",
    "Identification",
    "Integrity",
    "Objective",
    "Recovery",
    "RunReport",
    "SessionRow",
    "StepRow",
    "TimeSplit",
    "TimelineEntry",
    "build_run_report",
    "content_digest",
]
