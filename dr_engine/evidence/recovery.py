"""Measured recovery: milestones, RTO, RPO, human vs machine time.

Milestones (name -> ISO UTC time, kept in ``run.json``):

- ``incident_started``: ``--incident-start`` (default: the run start; the record then says the
  start was not declared, and the RTO is a lower bound: see :data:`UNDECLARED_INCIDENT`);
- ``run_started``: the run began (resumes add ``resumed_N``);
- ``fenced`` / ``promoted``: the last data fence / promote step completed;
- ``traffic_shifted``: the last ``traffic.shift`` step completed;
- ``healthy``: the plan's RTO stop point (the final health verification) completed;
- ``run_finished``: the run stopped (again, after a resume).

Definitions:

- **RTO** = ``healthy - incident_started``, in seconds, wall-clock, including any time the run
  spent halted before being resumed. ``rto_met`` is ``rto_seconds <= objective``; a run that
  ended without reaching ``healthy`` has ``rto_seconds = null`` and ``rto_met = false``.
- **Human wait** = time spent in ``control.approve`` steps, every attempt of them (a rejected
  or cancelled approval before a resume counts too; ``facts.waited_seconds`` when the gate
  reports it, else the attempt's duration). **Machine time** = the sum of the execution
  sessions' wall time minus human wait.
- **RTO breakdown** (:func:`rto_breakdown`): incident start -> ``healthy`` (or, for a run never
  healthy, the end of its last session) split into four parts that add up to the total: before
  the run started (incident start -> run start; 0 when the incident start was not declared),
  machine time and waiting for people within the sessions, and time halted between sessions
  (from the end of a session, or its last event if it crashed, to the resume).
- **RPO** comes from what data steps report (``StepResult.rpo``). Per dataset the latest
  observation counts (a lag check before fencing is superseded by the promote's reading at
  cutover); across datasets the worst lag counts and lost rows add up.
  ``rpo_seconds`` is the lag in seconds, or 0 when the only readings say "0 bytes behind" or
  "0 rows lost". ``rpo_met`` is false when rows were lost, when the lag in seconds exceeds the
  objective, or when the objective is 0 and any bytes were still unreplicated at cutover; it is
  null when no data step reported anything (nothing measured) or when only a byte lag was
  measured against a non-zero objective (bytes cannot be compared with seconds).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from dr_engine.capabilities import Capability
from dr_engine.clock import parse_utc
from dr_engine.evidence.record import RpoRecord, RtoBreakdown, RunRecord, StepRecord, StepStatus

INCIDENT_STARTED = "incident_started"
RUN_STARTED = "run_started"
FENCED = "fenced"
PROMOTED = "promoted"
TRAFFIC_SHIFTED = "traffic_shifted"
HEALTHY = "healthy"
RUN_FINISHED = "run_finished"

#: What every view says when no incident start was declared (``--incident-start``).
UNDECLARED_INCIDENT = "not declared: RTO measured from run start (a lower bound)"

#: Step capability -> milestone marked when such a step completes.
CAPABILITY_MILESTONES = {
    Capability.DATA_FENCE.value: FENCED,
    Capability.DATA_PROMOTE.value: PROMOTED,
    Capability.TRAFFIC_SHIFT.value: TRAFFIC_SHIFTED,
}


def seconds_between(start: str, end: str) -> float:
    """Seconds from one ISO UTC time to another."""
    return (parse_utc(end) - parse_utc(start)).total_seconds()


@dataclass(frozen=True)
class RpoReading:
    """The aggregate of every data step's RPO observation."""

    lag_bytes: int | None = None
    lag_seconds: float | None = None
    rows_lost: int | None = None

    @property
    def measured(self) -> bool:
        """True when at least one data step reported something."""
        return not (self.lag_bytes is None and self.lag_seconds is None and self.rows_lost is None)

    @property
    def rpo_seconds(self) -> float | None:
        """Lag in seconds, 0 when the readings show no loss, None when unknown."""
        if self.lag_seconds is not None:
            return self.lag_seconds
        if self.lag_bytes == 0 or (self.lag_bytes is None and self.rows_lost == 0):
            return 0.0
        return None

    def met(self, target_seconds: float) -> bool | None:
        """Whether the objective was met (see the module docstring for the rules)."""
        if not self.measured:
            return None
        if self.rows_lost is not None and self.rows_lost > 0:
            return False
        if self.lag_seconds is not None and self.lag_seconds > target_seconds:
            return False
        if target_seconds == 0 and self.lag_bytes is not None and self.lag_bytes > 0:
            return False
        if self.lag_seconds is None and self.lag_bytes is not None and self.lag_bytes > 0:
            return None
        return True


def aggregate_rpo(steps: Iterable[StepRecord]) -> RpoReading:
    """Latest reading per dataset, then worst lag / total rows lost across datasets."""
    latest: dict[str, dict[str, float | int]] = {}
    done = sorted((s for s in steps if s.rpo is not None and s.finished_at), key=lambda s: s.finished_at or "")
    for step in done:
        rpo: RpoRecord = step.rpo  # type: ignore[assignment]  # filtered above
        slot = latest.setdefault(rpo.dataset or "", {})
        for name in ("lag_bytes", "lag_seconds", "rows_lost"):
            value = getattr(rpo, name)
            if value is not None:
                slot[name] = value
    if not latest:
        return RpoReading()
    lag_bytes = [int(v["lag_bytes"]) for v in latest.values() if "lag_bytes" in v]
    lag_seconds = [float(v["lag_seconds"]) for v in latest.values() if "lag_seconds" in v]
    rows = [int(v["rows_lost"]) for v in latest.values() if "rows_lost" in v]
    return RpoReading(max(lag_bytes) if lag_bytes else None, max(lag_seconds) if lag_seconds else None,
                      sum(rows) if rows else None)


def _approval_wait(step: StepRecord, until: datetime | None) -> float:
    """Human wait of one approval step: each of its attempts, up to ``until`` when given."""
    waited = step.facts.get("waited_seconds")
    if not step.history:  # a record written before the attempt history: the latest attempt only
        if step.status is StepStatus.PENDING:
            return 0.0
        if isinstance(waited, int | float):
            return float(waited)
        return step.duration_seconds or 0.0
    total = 0.0
    last = len(step.history) - 1
    for index, attempt in enumerate(step.history):
        if attempt.started_at is None or attempt.finished_at is None:
            continue
        end = parse_utc(attempt.finished_at)
        if until is not None and end > until:
            continue
        # The step's own fields describe its latest attempt: the gate's own count wins there.
        latest = index == last and step.status in (StepStatus.SUCCEEDED, StepStatus.FAILED)
        if latest and isinstance(waited, int | float):
            total += float(waited)
        else:
            total += max(0.0, (end - parse_utc(attempt.started_at)).total_seconds())
    return total


def human_wait_seconds(steps: Iterable[StepRecord], *, until: str | None = None) -> float:
    """Time spent waiting for people (approval steps, every attempt), up to ``until`` when given."""
    limit = parse_utc(until) if until is not None else None
    return sum((_approval_wait(step, limit) for step in steps
                if step.capability == Capability.CONTROL_APPROVE.value), 0.0)


def rto_breakdown(record: RunRecord) -> RtoBreakdown | None:
    """Split incident start -> healthy (or -> the last session's end) into parts that add up.

    See the module docstring. None before the run has a session with a known end.
    """
    if not record.sessions:
        return None
    healthy = record.milestones.get(HEALTHY)
    last = record.sessions[-1]
    end_text = healthy or last.finished_at or last.last_event_at
    if end_text is None:
        return None
    end = parse_utc(end_text)
    incident = parse_utc(record.incident_started_at)
    total = max(0.0, (end - incident).total_seconds())
    first = parse_utc(record.sessions[0].started_at)
    before = min(max(0.0, (first - incident).total_seconds()), total)
    in_sessions = halted = 0.0
    previous_end: datetime | None = None
    for session in record.sessions:
        start = parse_utc(session.started_at)
        if previous_end is not None and start > previous_end:
            halted += (min(start, end) - previous_end).total_seconds()
        if start >= end:
            break
        # A session that crashed is known to have run until its last recorded event.
        stop_text = session.finished_at or session.last_event_at
        stop = min(parse_utc(stop_text), end) if stop_text is not None else end
        in_sessions += max(0.0, (stop - start).total_seconds())
        previous_end = stop
    human = min(human_wait_seconds(record.steps, until=end_text), in_sessions)
    parts = [round(value, 3) for value in (total, before, halted, human)]
    total, before, halted, human = parts
    # Machine time is the remainder, so that the parts add up to the total exactly.
    machine = round(max(0.0, total - before - halted - human), 3)
    return RtoBreakdown(until=HEALTHY if healthy else RUN_FINISHED, total_seconds=total,
                        before_run_seconds=before, machine_seconds=machine, human_wait_seconds=human,
                        halted_seconds=halted)


@dataclass(frozen=True)
class RecoveryOutcome:
    """RTO/RPO and time split of a run, compared with its objectives."""

    rto_seconds: float | None
    rto_met: bool | None
    rpo: RpoReading
    rpo_met: bool | None
    human_wait_seconds: float
    machine_seconds: float | None
    breakdown: RtoBreakdown | None = None


class RecoveryClock:
    """Marks milestones on a run record and derives RTO/RPO from them.

    The engine calls :meth:`on_step_finished` for every completed step and :meth:`outcome`
    when the run stops; :mod:`dr_engine.evidence.journal` calls the same methods while rebuilding a
    record from the audit log, so both paths agree.
    """

    def __init__(self, record: RunRecord) -> None:
        self.record = record

    def mark(self, name: str, at: str) -> None:
        """Record milestone ``name`` at ISO time ``at`` (a later mark of the same name wins)."""
        self.record.milestones[name] = at

    def on_step_finished(self, step: StepRecord) -> None:
        """Mark the milestones a completed step stands for."""
        if step.status is not StepStatus.SUCCEEDED or step.finished_at is None:
            return
        milestone = CAPABILITY_MILESTONES.get(step.capability)
        if milestone is not None:
            self.mark(milestone, step.finished_at)
        if step.id == self.record.rto_stop:
            self.mark(HEALTHY, step.finished_at)

    def rto_seconds(self) -> float | None:
        """``healthy - incident_started`` or None when not healthy (yet)."""
        healthy = self.record.milestones.get(HEALTHY)
        if healthy is None:
            return None
        return round(seconds_between(self.record.incident_started_at, healthy), 3)

    def outcome(self) -> RecoveryOutcome:
        """Everything measured so far, compared with the objectives."""
        record = self.record
        rto = self.rto_seconds()
        rto_met = (rto <= record.rto_target_seconds) if rto is not None else False
        reading = aggregate_rpo(record.steps)
        human = round(human_wait_seconds(record.steps), 3)
        wall = 0.0
        complete = True
        for session in record.sessions:
            if session.finished_at is None:
                complete = False
                continue
            wall += seconds_between(session.started_at, session.finished_at)
        machine = round(max(0.0, wall - human), 3) if record.sessions and complete else None
        return RecoveryOutcome(rto, rto_met, reading, reading.met(record.rpo_target_seconds), human, machine,
                               rto_breakdown(record))


__all__ = [
    "CAPABILITY_MILESTONES",
    "FENCED",
    "HEALTHY",
    "INCIDENT_STARTED",
    "PROMOTED",
    "RUN_FINISHED",
    "RUN_STARTED",
    "TRAFFIC_SHIFTED",
    "UNDECLARED_INCIDENT",
    "RecoveryClock",
    "RecoveryOutcome",
    "RpoReading",
    "aggregate_rpo",
    "human_wait_seconds",
    "rto_breakdown",
    "seconds_between",
]
