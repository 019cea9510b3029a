"""The record of an evacuation, folded from its own audit log (never written any other way).

An evacuation keeps ``<state-dir>/evacuations/<id>/``: ``audit.jsonl`` (hash-chained and sealed
like a run's) and ``evacuation.json``, the fold of that log by :func:`fold`. Each application's
failover is a run of its own, with its own lock, record and audit log; the evacuation's events
name the run id of each, so the evidence links both ways.

Events (``data`` keys):

- ``evacuation.started``: plan, file, sha256, source, target, mode, objective, applications
  (name, runbook, tier, wave, after), incident start, predicted RTO;
- ``evacuation.application_started``: application, run_id (minted before the run starts);
- ``evacuation.application_finished``: application, run_id, status, rto/rpo seconds and met;
- ``evacuation.application_skipped``: application, because (the failed dependency), reason;
- ``evacuation.dependency_failed``: application, dependency, status (``on_failure: continue``);
- ``run.resumed`` / ``run.finished``: a new session / the seal (status, rto).
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from dr_engine.clock import parse_utc
from dr_engine.errors import RunStateError
from dr_engine.evidence.audit import RUN_FINISHED, RUN_RESUMED, read_events, verify
from dr_engine.evidence.record import atomic_write_text

EVACUATION_STARTED = "evacuation.started"
APPLICATION_STARTED = "evacuation.application_started"
APPLICATION_FINISHED = "evacuation.application_finished"
APPLICATION_SKIPPED = "evacuation.application_skipped"
DEPENDENCY_FAILED = "evacuation.dependency_failed"

RECORD_FILE = "evacuation.json"
AUDIT_FILE = "audit.jsonl"


class AppStatus(StrEnum):
    """Where one application of an evacuation stands."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    HALTED = "halted"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"

    @property
    def done(self) -> bool:
        """True when the application will not change again in this session."""
        return self not in (AppStatus.PENDING, AppStatus.RUNNING)


class AppEntry(BaseModel):
    """One application as the evacuation saw it."""

    model_config = ConfigDict(extra="forbid")

    name: str
    runbook: str
    tier: int
    wave: int
    after: list[dict[str, Any]] = Field(default_factory=list)
    business_function: str | None = None
    status: AppStatus = AppStatus.PENDING
    run_id: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    rto_seconds: float | None = None
    rto_target_seconds: float | None = None
    rto_met: bool | None = None
    rpo_seconds: float | None = None
    rpo_target_seconds: float | None = None
    rpo_met: bool | None = None
    recovered_at: str | None = None
    skipped_because: str | None = None
    #: Dependencies that failed while this application ran anyway (``on_failure: continue``).
    continued_despite: list[str] = Field(default_factory=list)
    predicted_p50_seconds: float | None = None
    predicted_p95_seconds: float | None = None


class EvacuationRecord(BaseModel):
    """What an evacuation did, application by application, and its measured RTO."""

    model_config = ConfigDict(extra="forbid")

    evacuation_id: str
    plan: str
    plan_file: str
    #: The plan's absolute path when the evacuation started (``dr resume`` reloads it from there).
    plan_path: str | None = None
    plan_sha256: str
    source: str
    target: str
    mode: str
    status: str = "running"
    started_at: str
    finished_at: str | None = None
    incident_started_at: str
    triggered_by: str = ""
    reason: str = ""
    #: The Prefect work pool whose workers ran the applications (None: in the evacuating process).
    work_pool: str | None = None
    rto_target_seconds: float
    rto_seconds: float | None = None
    rto_met: bool | None = None
    predicted: dict[str, Any] = Field(default_factory=dict)
    critical_path: list[str] = Field(default_factory=list)
    applications: list[AppEntry] = Field(default_factory=list)
    resumes: int = 0
    audit_count: int = 0
    audit_head: str | None = None

    def app(self, name: str) -> AppEntry:
        """The entry of application ``name`` (KeyError if absent)."""
        for entry in self.applications:
            if entry.name == name:
                return entry
        raise KeyError(name)

    def to_json(self) -> str:
        """Pretty JSON for ``evacuation.json``."""
        return self.model_dump_json(indent=2) + "\n"


def fold(events: list[dict[str, Any]]) -> EvacuationRecord:
    """The record the events say (the first must be ``evacuation.started``)."""
    if not events or events[0]["type"] != EVACUATION_STARTED:
        raise RunStateError("not an evacuation log: it does not begin with evacuation.started",
                            hint="give an evacuation id (`dr evacuations` lists them)")
    first = events[0]["data"]
    record = EvacuationRecord(
        evacuation_id=events[0]["run_id"], plan=first["plan"], plan_file=first["file"], plan_path=first.get("path"),
        plan_sha256=first["sha256"],
        source=first["source"], target=first["target"], mode=first["mode"], started_at=events[0]["ts"],
        incident_started_at=first["incident_started_at"], triggered_by=first.get("triggered_by", ""),
        reason=first.get("reason", ""), work_pool=first.get("work_pool"),
        rto_target_seconds=first["rto_target_seconds"],
        predicted=first.get("predicted", {}), critical_path=first.get("critical_path", []),
        applications=[AppEntry(**app) for app in first["applications"]])
    record.audit_count, record.audit_head = 1, events[0]["hash"]
    for event in events[1:]:
        apply_event(record, event)
    return record


def apply_event(record: EvacuationRecord, event: dict[str, Any]) -> None:
    """Apply one event after ``evacuation.started`` to ``record`` (in place)."""
    record.audit_count, record.audit_head = int(event["seq"]), event["hash"]
    kind, data = event["type"], event["data"]
    if kind == APPLICATION_STARTED:
        entry = record.app(data["application"])
        entry.status, entry.run_id, entry.started_at = AppStatus.RUNNING, data["run_id"], event["ts"]
        entry.finished_at = None
        entry.skipped_because = None
    elif kind == APPLICATION_FINISHED:
        entry = record.app(data["application"])
        entry.status = AppStatus(data["status"])
        entry.finished_at = event["ts"]
        for key in ("rto_seconds", "rto_target_seconds", "rto_met", "rpo_seconds", "rpo_target_seconds",
                    "rpo_met", "recovered_at"):
            setattr(entry, key, data.get(key))
    elif kind == APPLICATION_SKIPPED:
        entry = record.app(data["application"])
        entry.status, entry.skipped_because, entry.finished_at = AppStatus.SKIPPED, data["because"], event["ts"]
    elif kind == DEPENDENCY_FAILED:
        entry = record.app(data["application"])
        if data["dependency"] not in entry.continued_despite:
            entry.continued_despite.append(data["dependency"])
    elif kind == RUN_RESUMED:
        record.resumes += 1
        record.status, record.finished_at = "running", None
        for entry in record.applications:
            # A new session re-decides whatever did not succeed.
            if entry.status is not AppStatus.SUCCEEDED:
                entry.status, entry.skipped_because = AppStatus.PENDING, None
    elif kind == RUN_FINISHED:
        record.status, record.finished_at = data["status"], event["ts"]
        record.rto_seconds, record.rto_met = data.get("rto_seconds"), data.get("rto_met")


def measured_rto(record: EvacuationRecord) -> tuple[float | None, bool]:
    """Incident start -> the last application's recovery; None (not met) unless every one recovered."""
    if not record.applications or any(a.recovered_at is None for a in record.applications):
        return None, False
    start = parse_utc(record.incident_started_at)
    last = max(parse_utc(a.recovered_at or "") for a in record.applications)
    seconds = round((last - start).total_seconds(), 3)
    return seconds, seconds <= record.rto_target_seconds


def write_record(directory: Path, record: EvacuationRecord) -> None:
    """Write ``evacuation.json`` atomically (readers see the old or the new one)."""
    atomic_write_text(directory / RECORD_FILE, record.to_json())


def load_evacuation_record(directory: Path) -> EvacuationRecord:
    """The record folded from the directory's audit log, which must verify."""
    audit = directory / AUDIT_FILE
    if not audit.is_file():
        raise RunStateError(f"no evacuation log in {directory}", hint="`dr evacuations` lists them")
    check = verify(audit)
    if not check.ok:
        raise RunStateError(f"the evacuation log does not verify: {check.describe(audit)}",
                            hint="keep it as evidence; start a new evacuation")
    return fold(read_events(audit))


__all__ = [
    "APPLICATION_FINISHED",
    "APPLICATION_SKIPPED",
    "APPLICATION_STARTED",
    "AUDIT_FILE",
    "DEPENDENCY_FAILED",
    "EVACUATION_STARTED",
    "RECORD_FILE",
    "AppEntry",
    "AppStatus",
    "EvacuationRecord",
    "fold",
    "load_evacuation_record",
    "measured_rto",
    "write_record",
]
