"""The run record: ``<state-dir>/runs/<run-id>/run.json``, the machine-readable result of a run.

The record is rewritten atomically (temporary file, fsync, rename, fsync of the directory)
after every state change, so a crash loses nothing that was recorded. The audit log
(:mod:`dr_engine.evidence.audit`) is the source of truth; :func:`dr_engine.evidence.journal.rebuild_record`
derives the same record from it.

All timestamps are ISO 8601 UTC strings with a ``Z`` suffix (see :func:`dr_engine.clock.utc_iso`).
"""

from __future__ import annotations

import os
import tempfile
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from dr_engine.errors import RunStateError

#: File names inside a run directory.
RUN_FILE = "run.json"
AUDIT_FILE = "audit.jsonl"
#: Version of the run.json layout and of the fold that writes it; bumped when either changes.
#: 2: steps keep their attempt history, sessions how they ended, the RTO breakdown and whether
#: the incident start was declared; ``attempts`` and human wait count every session.
RECORD_VERSION = 2


#: What each version of the fold added to the record or counts differently, as (top-level
#: fields, fields of each step, fields of each session). A record is compared with a replay of
#: its log only on what its own version wrote (:func:`as_written_by`, :mod:`dr_engine.evidence.record_check`).
FOLD_CHANGES: dict[int, tuple[frozenset[str], frozenset[str], frozenset[str]]] = {
    2: (frozenset({"incident_start_declared", "rto_breakdown", "human_wait_seconds", "machine_seconds"}),
        frozenset({"history", "attempts"}),
        frozenset({"status", "halted_at_step", "error", "actor", "reason", "last_event_at", "human_wait_seconds"})),
}


def as_written_by(data: dict[str, Any], version: int) -> dict[str, Any]:
    """A dumped record (``model_dump(mode="json")``) without what folds newer than ``version`` changed.

    A ``run.json`` written by an older release lacks the fields a newer fold adds (and counts
    some differently): comparing it with a replay by today's fold must not call it altered.
    """
    top: set[str] = set()
    step: set[str] = set()
    session: set[str] = set()
    for newer, (fields, step_fields, session_fields) in FOLD_CHANGES.items():
        if newer > version:
            top |= fields
            step |= step_fields
            session |= session_fields
    if not top and not step and not session:
        return data
    out = {k: v for k, v in data.items() if k not in top}
    out["steps"] = [{k: v for k, v in item.items() if k not in step} for item in data.get("steps") or []]
    out["sessions"] = [{k: v for k, v in item.items() if k not in session} for item in data.get("sessions") or []]
    return out


class RunStatus(StrEnum):
    """Where a run stands. ``running`` is also what a killed run looks like until resumed."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    HALTED = "halted"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        """True once the run has ended (it may still be resumed when halted/failed/cancelled)."""
        return self is not RunStatus.RUNNING


class StepStatus(StrEnum):
    """Where a step stands."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    #: Given up while running (a second Ctrl-C, or the interrupt grace expired); ``dr resume`` re-runs it.
    ABANDONED = "abandoned"


class _Record(BaseModel):
    # Unknown keys are kept so that fields added by other components survive a rewrite.
    model_config = ConfigDict(extra="allow", validate_assignment=False)


class StepError(_Record):
    """Why a step failed: the taxonomy class name, the message and what to do next."""

    kind: str
    message: str
    hint: str | None = None


class RpoRecord(_Record):
    """What a data step measured at cutover (``StepResult.rpo``) and for which dataset."""

    dataset: str | None = None
    lag_bytes: int | None = None
    lag_seconds: float | None = None
    rows_lost: int | None = None


class Session(_Record):
    """One stretch of execution: the first start, or a resume, until the run stopped.

    A resume clears the run's ``error`` and ``halted_at_step``; the session keeps them, so the
    record still says where and why each session stopped.
    """

    started_at: str
    finished_at: str | None = None
    human_wait_seconds: float = 0.0
    #: How the session ended: the run status of its ``run.finished`` (``failed``, ``halted``,
    #: ``cancelled``, ``succeeded``), ``interrupted`` when its process stopped without recording an
    #: end (a crash or a kill, found by the next resume), None while it runs.
    status: str | None = None
    halted_at_step: str | None = None
    error: StepError | None = None
    #: Who started this session and why (``run.resumed``; the run's own fields for the first one).
    actor: str | None = None
    reason: str = ""
    #: Time of the last event of this session: where a session that crashed is known to have ended.
    last_event_at: str | None = None


class AttemptOutcome(StrEnum):
    """How one attempt of a step ended."""

    SUCCEEDED = "succeeded"
    #: The step failed with this attempt (and the run stopped).
    FAILED = "failed"
    #: This attempt failed and the step tried again in the same session (retry policy).
    RETRIED = "retried"
    #: The session ended while the attempt ran (the process died, or the run halted around it).
    INTERRUPTED = "interrupted"
    #: The run was cancelled while the attempt ran.
    CANCELLED = "cancelled"
    #: Given up while running (``step.abandoned``: a second Ctrl-C, or the interrupt grace expired).
    ABANDONED = "abandoned"


class StepAttempt(_Record):
    """One attempt of a step, in one session of the run (``StepRecord.history``)."""

    #: 1 for the first session, 2 after the first resume, ...
    session: int = 1
    #: 1-based, counted across sessions.
    attempt: int = 1
    started_at: str | None = None
    finished_at: str | None = None
    #: None while the attempt runs.
    outcome: AttemptOutcome | None = None
    error: StepError | None = None
    #: Backoff before the next attempt (``retried`` only).
    wait_seconds: float | None = None


class RtoBreakdown(_Record):
    """Where the time from incident start to ``until`` went; the four parts add up to ``total_seconds``.

    ``until`` is ``healthy`` (then ``total_seconds`` is the RTO) or, for a run that never got
    healthy, ``run_finished`` (the end of its last session).
    """

    until: str
    total_seconds: float
    #: Incident start to run start (0 when the incident start was not declared).
    before_run_seconds: float
    #: The engine's execution time within the sessions, minus the human wait.
    machine_seconds: float
    #: Waiting for people: approval steps, every attempt of them.
    human_wait_seconds: float
    #: Between sessions: from the end of one (its last event, if it crashed) to the next resume.
    halted_seconds: float


class StepRecord(_Record):
    """One step of a run."""

    id: str
    action: str
    capability: str
    #: 1 for the first wave, as ``dr plan`` shows it (see ``RunRecord.waves_from``).
    wave: int = 1
    status: StepStatus = StepStatus.PENDING
    started_at: str | None = None
    finished_at: str | None = None
    duration_seconds: float | None = None
    attempts: int = 0
    error: StepError | None = None
    summary: str = ""
    changed: bool | None = None
    facts: dict[str, Any] = Field(default_factory=dict)
    outputs: dict[str, str] = Field(default_factory=dict)
    rpo: RpoRecord | None = None
    #: Every attempt of the step across sessions; the fields above describe the latest one, and
    #: ``attempts`` counts them all (records written before the history: empty).
    history: list[StepAttempt] = Field(default_factory=list)


class OsUser(_Record):
    """An identity the operating system proved (see :mod:`dr_engine.evidence.identity`): account, uid, host."""

    user: str
    uid: int
    host: str


class Override(_Record):
    """A safety rule knowingly relaxed for this run (audited).

    An approval of ``--allow-data-loss`` carries the claimed ``approver`` name and the OS
    ``identity`` of who approved (None when nothing proved it: such an approval does not count).
    """

    kind: str
    detail: str
    actor: str | None = None
    at: str | None = None
    approver: str | None = None
    identity: OsUser | None = None


class ApprovalRecord(_Record):
    """One answer to an approval request: the name given, and who the OS says gave it.

    ``decision``: ``granted``, ``rejected``, ``refused`` (an answer the run did not accept, e.g.
    a self-approval under the two-person rule) or ``claimed`` (``--approved-by NAME``: a name
    typed by the initiator, recorded but not an approval by itself).
    """

    step: str
    decision: str
    approver: str = Field(default="", description="The name given (--as, --approved-by, the Prefect form): a claim")
    identity: OsUser | None = Field(default=None, description="Who answered, as the OS proves it; None: unproven")
    via: str = Field(default="", description="dr approve, prefect-ui, --approved-by or timeout")
    note: str = Field(default="", description="What the identity rests on, e.g. an unauthenticated Prefect UI")
    comment: str = ""
    reason: str = Field(default="", description="Why a refused answer was not accepted")
    at: str | None = None


class RunRecord(_Record):
    """The machine-readable result of one run (``run.json``)."""

    record_version: int = RECORD_VERSION
    run_id: str
    runbook: str
    #: The failover lock key (runbook ``application:``, default the runbook name); None in old records.
    application: str | None = None
    runbook_file: str = Field(description="Path of the runbook file as given when the run started")
    runbook_sha256: str
    region_sha256: dict[str, str] = Field(default_factory=dict,
                                          description="sha256 of the source and target region files")
    regions_dir: str | None = None
    git_commit: str | None = None
    mode: str
    source: str
    target: str
    status: RunStatus = RunStatus.RUNNING
    started_at: str
    finished_at: str | None = None
    triggered_by: str
    initiator: OsUser | None = Field(
        default=None, description="OS user and host of the process that started the run (the two-person rule "
                                  "compares approvers with it); None in records written before it was kept")
    reason: str = ""
    incident_started_at: str
    incident_start_declared: bool | None = Field(
        default=None, description="True: --incident-start was given; False: it defaulted to the run start, so the "
        "RTO is measured from the run start (a lower bound). None: a record written before this field "
        "(see incident_declared)")
    concurrency: int = 4
    rto_stop: str | None = None
    rto_seconds: float | None = None
    rto_target_seconds: float
    rto_met: bool | None = None
    rpo_seconds: float | None = None
    rpo_lag_bytes: int | None = None
    rows_lost: int | None = None
    rpo_target_seconds: float
    rpo_met: bool | None = None
    human_wait_seconds: float = 0.0
    machine_seconds: float | None = None
    rto_breakdown: RtoBreakdown | None = None
    milestones: dict[str, str] = Field(default_factory=dict)
    overrides: list[Override] = Field(default_factory=list)
    approvals: list[ApprovalRecord] = Field(default_factory=list,
                                            description="Every answer to an approval request, in order")
    allow_data_loss: bool = False
    data_loss_approval_required: bool | None = Field(
        default=None, description="--allow-data-loss needs a second person's approval, on resume too "
        "(None: a record written before this field; treated as required when allow_data_loss)")
    halted_at_step: str | None = None
    error: StepError | None = None
    #: The signals that interrupted the run's sessions (``SIGINT``, ``SIGTERM``, ``SIGHUP``), in order.
    interrupted_by: list[str] = Field(default_factory=list)
    changed_steps: list[str] = Field(default_factory=list,
                                     description="Steps that reported a change, in completion order")
    resumes: int = 0
    sessions: list[Session] = Field(default_factory=list)
    steps: list[StepRecord] = Field(default_factory=list)
    audit_count: int = 0
    audit_head: str | None = None
    artifacts: dict[str, str] = Field(default_factory=dict,
                                      description="Files of this run, relative to the state dir")
    waves_from: int = Field(default=1, description="steps[].wave counts from this number, as `dr plan` does "
                            "(records written before this field counted from 0; they are renumbered when read)")

    @model_validator(mode="before")
    @classmethod
    def _renumber_waves_from_0(cls, data: Any) -> Any:
        # A record read back from JSON always carries record_version; one without waves_from was
        # written when waves counted from 0. Records built in code pass neither and are current.
        if not isinstance(data, dict) or "record_version" not in data or "waves_from" in data:
            return data
        steps = [{**step, "wave": int(step.get("wave") or 0) + 1} if isinstance(step, dict) else step
                 for step in data.get("steps") or []]
        return {**data, "steps": steps, "waves_from": 1}

    @property
    def incident_declared(self) -> bool:
        """Whether the incident start was declared (``--incident-start``), not defaulted to the run start."""
        if self.incident_start_declared is not None:
            return self.incident_start_declared
        # A record written before the field: a declared start differs from the run start.
        return self.incident_started_at != self.started_at

    def step(self, step_id: str) -> StepRecord:
        """The step record with ``step_id`` (KeyError when absent)."""
        for item in self.steps:
            if item.id == step_id:
                return item
        raise KeyError(step_id)

    def to_json(self) -> str:
        """Stable, human-diffable JSON text."""
        # pydantic's serializer is ~10x faster than json.dumps(indent=...) on big records.
        return self.model_dump_json(indent=2) + "\n"


def load_record(run_dir: Path) -> RunRecord:
    """Read ``run_dir/run.json``; raise :class:`RunStateError` when missing or unreadable."""
    path = Path(run_dir) / RUN_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise RunStateError(f"no run record at {path}", hint="list runs with `dr runs`") from exc
    try:
        return RunRecord.model_validate_json(text)
    except ValueError as exc:
        raise RunStateError(f"run record {path} is not valid: {exc}",
                            hint="rebuild it from the audit log (`dr show RUN_ID --rebuild`)") from exc


def atomic_write_text(path: Path, text: str, *, durable: bool = True) -> None:
    """Write ``text`` to ``path`` so that readers see the old or the new content, never a mix.

    With ``durable`` (the default) the file is fsync'd before the rename and the directory
    after it, so the new content also survives a power loss.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if not durable:
        return
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_record(run_dir: Path, record: RunRecord, *, durable: bool = True) -> Path:
    """Atomically write ``run_dir/run.json`` (temporary file, fsync, rename); return its path.

    The engine passes ``durable=False`` for the rewrite after each event (still atomic: readers
    never see a torn file) and ``True`` at the end of a run: the audit log, fsync'd per event,
    is the durable source of truth, so after a power loss ``run.json`` can only lag the log,
    and ``dr resume`` / ``dr show --rebuild`` rebuild it from the log.
    """
    path = Path(run_dir) / RUN_FILE
    atomic_write_text(path, record.to_json(), durable=durable)
    return path


__all__ = [
    "AUDIT_FILE",
    "FOLD_CHANGES",
    "RUN_FILE",
    "ApprovalRecord",
    "AttemptOutcome",
    "OsUser",
    "Override",
    "RpoRecord",
    "RtoBreakdown",
    "RunRecord",
    "RunStatus",
    "Session",
    "StepAttempt",
    "StepError",
    "StepRecord",
    "StepStatus",
    "as_written_by",
    "atomic_write_text",
    "load_record",
    "write_record",
]
