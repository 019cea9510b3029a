"""The audit log: append-only, hash-chained JSON lines (``audit.jsonl``), fsync'd per event.

Each line is one event::

    {"seq": 1, "ts": "2026-11-28T23:15:00.000Z", "type": "run.started", "actor": "alice@host",
     "run_id": "...", "data": {...}, "prev": "<hash of event seq-1>", "hash": "<sha256>"}

``hash`` is the SHA-256 (hex) of the canonical JSON (sorted keys, no spaces, UTF-8) of the
event without its ``hash`` key; that JSON includes ``prev``, the hash of the previous event
(64 zeros for the first), so every event commits to the whole history before it.

:func:`verify` detects modification (hash mismatch), deletion/insertion/reordering (``seq``
gaps and ``prev`` links), and truncation of the tail: a run's last event is a sealed
``run.finished`` (whose data carries the event count), and ``run.json`` records the head hash
and event count after every append; a log shorter than what the record says was truncated.
Limit: someone able to rewrite both files consistently can forge a history; publish the head
hash (``dr show``) to an external system to anchor it.

Appends take an exclusive ``flock`` and re-read the tail, so another process (``dr approve``)
may append to a live run's log safely.

The seal holds by construction: once the last event is ``run.finished``, :meth:`AuditLog.append`
refuses every event (:class:`AuditSealed`) except ``run.resumed``, which opens the next session
of the run. Facts added to a stopped run (an operator's cancel or skip) go through
:meth:`AuditLog.amend`, which writes them and a new sealing ``run.finished`` under one lock, so
no reader ever sees an unsealed tail after a seal and no late writer (a step thread that
returned after the run was sealed) can slip an event behind it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from dr_engine.clock import SystemClock, utc_iso
from dr_engine.errors import RunStateError
from dr_engine.evidence.secrets_scrub import scrub_value

GENESIS = "0" * 64

# Event types. Other components may add their own (dotted, lowercase); these are the engine's.
RUN_STARTED = "run.started"
RUN_RESUMED = "run.resumed"
RUN_HALTED = "run.halted"
RUN_FINISHED = "run.finished"
STEP_STARTED = "step.started"
STEP_ATTEMPT = "step.attempt"
STEP_SUCCEEDED = "step.succeeded"
STEP_FAILED = "step.failed"
STEP_SKIPPED = "step.skipped"
#: A running step given up by the operator (a second Ctrl-C) or at the end of the interrupt grace.
STEP_ABANDONED = "step.abandoned"
#: A termination signal reached the run: no new step starts, running steps get a grace period.
RUN_INTERRUPTED = "run.interrupted"
APPROVAL_REQUESTED = "approval.requested"
APPROVAL_GRANTED = "approval.granted"
APPROVAL_REJECTED = "approval.rejected"
OVERRIDE = "override"
NOTE_ADDED = "note.added"
MILESTONE = "milestone"

EVENT_TYPES = (
    RUN_STARTED, RUN_RESUMED, RUN_HALTED, RUN_FINISHED, STEP_STARTED, STEP_ATTEMPT, STEP_SUCCEEDED,
    STEP_FAILED, STEP_SKIPPED, STEP_ABANDONED, RUN_INTERRUPTED, APPROVAL_REQUESTED, APPROVAL_GRANTED,
    APPROVAL_REJECTED, OVERRIDE, NOTE_ADDED, MILESTONE,
)


class AuditSealed(RunStateError):
    """An append to a log whose last event is the sealing ``run.finished`` (refused, nothing written)."""


def default_actor() -> str:
    """``user@host`` of the current process (who is acting), as the OS says.

    The effective uid's account name, never ``$USER``/``$LOGNAME`` (``getpass.getuser`` reads
    those first, and whoever starts a process sets them); see :mod:`dr_engine.evidence.identity`.
    """
    from dr_engine.evidence.identity import OsIdentity

    return str(OsIdentity.current())


def canonical(value: Any) -> bytes:
    """Canonical JSON bytes: sorted keys, no spaces, UTF-8, no NaN."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False, default=str).encode("utf-8")


def event_hash(event: dict[str, Any]) -> str:
    """The hash of an event: SHA-256 over its canonical JSON without the ``hash`` key."""
    body = {k: v for k, v in event.items() if k != "hash"}
    return hashlib.sha256(canonical(body)).hexdigest()


def _json_safe(value: Any) -> Any:
    """Round-trip through JSON so that what is hashed is exactly what is written and read back.

    Secret values the process resolved are masked here, before hashing (see
    :mod:`dr_engine.evidence.secrets_scrub`): the record, reports and evidence fold from these events.
    """
    return scrub_value(json.loads(json.dumps(value, default=str, allow_nan=False)))


def _last_line(handle: Any) -> bytes | None:
    """The last complete non-empty line of a binary file handle, or None for an empty file."""
    handle.seek(0, os.SEEK_END)
    size = handle.tell()
    if size == 0:
        return None
    block = 8192
    pos = size
    data = b""
    while pos > 0:
        step = min(block, pos)
        pos -= step
        handle.seek(pos)
        data = handle.read(step) + data
        stripped = data.rstrip(b"\n")
        if b"\n" in stripped:
            tail: bytes = stripped.rsplit(b"\n", 1)[1]
            return tail
    whole: bytes = data.rstrip(b"\n")
    return whole or None


class AuditLog:
    """An append-only hash-chained log for one run.

    ``append`` is thread-safe (steps of a wave run in threads) and process-safe (flock).
    """

    def __init__(self, path: Path, run_id: str = "", *,
                 now: Callable[[], datetime] | None = None) -> None:
        self.path = Path(path)
        self.run_id = run_id
        self._now = now or SystemClock().now
        self._lock = threading.Lock()

    def append(self, type: str, *, actor: str | None = None, **data: Any) -> dict[str, Any]:
        """Append one event of ``type`` with ``data``; fsync before returning it.

        Raises :class:`AuditSealed` (writing nothing) when the log is sealed and ``type`` is not
        ``run.resumed``.
        """
        return self._append_batch([(type, actor, data)], after_seal=type == RUN_RESUMED)[0]

    def amend(self, events: list[tuple[str, str | None, dict[str, Any]]], *, status: str,
              actor: str | None = None, **seal: Any) -> list[dict[str, Any]]:
        """Add ``(type, actor, data)`` facts to a stopped run and re-seal it, atomically.

        The events and a closing ``run.finished`` (``status``, ``resealed: true``, ``seal``) are
        written under one lock: the log never ends unsealed after its first seal.
        """
        batch: list[tuple[str, str | None, dict[str, Any]]] = [e for e in events if e[0] != RUN_FINISHED]
        batch.append((RUN_FINISHED, actor, {**seal, "status": status, "resealed": True}))
        return self._append_batch(batch, after_seal=True)

    def _append_batch(self, batch: list[tuple[str, str | None, dict[str, Any]]], *,
                      after_seal: bool) -> list[dict[str, Any]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        written: list[dict[str, Any]] = []
        with self.path.open("a+b") as handle:
            with self._lock:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
                try:
                    last = _last_line(handle)
                    previous = json.loads(last) if last is not None else None
                    if previous is not None and previous.get("type") == RUN_FINISHED and not after_seal:
                        raise AuditSealed(
                            f"{self.path}: the run is sealed (its log ends with run.finished); "
                            f"{batch[0][0]} was not recorded",
                            hint="a finished run changes only through `dr resume`, `dr cancel` or `dr skip`")
                    for type_, actor, data in batch:
                        previous = self._write_next(handle, previous, type_, actor, data)
                        written.append(previous)
                finally:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            # fsync outside the locks: appenders running at the same time share one disk flush.
            os.fsync(handle.fileno())
        return written

    def _write_next(self, handle: Any, previous: dict[str, Any] | None, type: str, actor: str | None,
                    data: dict[str, Any]) -> dict[str, Any]:
        if previous is None:
            seq, prev = 1, GENESIS
        else:
            seq, prev = int(previous["seq"]) + 1, str(previous["hash"])
        if type == RUN_FINISHED:
            # The seal: a truncated tail can no longer end on a matching run.finished.
            data = {**data, "events": seq}
        event: dict[str, Any] = {
            "seq": seq, "ts": utc_iso(self._now()), "type": type,
            "actor": actor or default_actor(), "run_id": self.run_id,
            "data": _json_safe(data), "prev": prev,
        }
        event["hash"] = event_hash(event)
        handle.seek(0, os.SEEK_END)
        handle.write(canonical(event) + b"\n")
        handle.flush()
        return event

    def head(self) -> tuple[int, str]:
        """``(count, head hash)`` of the log as it is on disk now."""
        if not self.path.exists():
            return 0, GENESIS
        with self.path.open("rb") as handle:
            last = _last_line(handle)
        if last is None:
            return 0, GENESIS
        event = json.loads(last)
        return int(event["seq"]), str(event["hash"])


def read_events(path: Path) -> list[dict[str, Any]]:
    """Every event of a log, in file order (no verification; see :func:`verify`)."""
    events: list[dict[str, Any]] = []
    with Path(path).open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                events.append(json.loads(line))
    return events


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of :func:`verify`. ``first_bad_line`` is 1-based (None when ok)."""

    ok: bool
    count: int
    first_bad_line: int | None = None
    reason: str = ""
    head: str = GENESIS
    sealed: bool = False

    def describe(self, path: Path | str) -> str:
        """One line for people."""
        if self.ok:
            seal = "sealed by run.finished" if self.sealed else "not sealed (run in progress or interrupted)"
            return f"{path}: OK, {self.count} events, chain intact, {seal}; head {self.head[:16]}"
        where = f"line {self.first_bad_line}" if self.first_bad_line else "end of log"
        return f"{path}: BROKEN at {where}: {self.reason}"


_REQUIRED = ("seq", "ts", "type", "actor", "run_id", "data", "prev", "hash")


def verify(path: Path, *, expected_count: int | None = None, expected_head: str | None = None,
           expect_sealed: bool = False) -> VerifyResult:
    """Check a log's chain; also check it against what ``run.json`` recorded.

    With ``expected_count``/``expected_head`` unset, they are read from ``run.json`` beside
    the log when present (``audit_count``/``audit_head``; a terminal status implies the log
    must end with ``run.finished``).
    """
    path = Path(path)
    if expected_count is None and expected_head is None:
        expected_count, expected_head, expect_sealed = _expectations(path, expect_sealed)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return VerifyResult(False, 0, None, f"no audit log at {path}")
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    elif lines:
        return VerifyResult(False, len(lines) - 1, len(lines), "last line is incomplete (torn or truncated write)")
    prev = GENESIS
    run_id: str | None = None
    last: dict[str, Any] | None = None
    heads: dict[int, str] = {}
    seal = _SealTracker()
    for number, line in enumerate(lines, start=1):
        bad = _check_line(line, number, prev, run_id)
        if isinstance(bad, str):
            return VerifyResult(False, number - 1, number, bad, prev)
        event = bad
        run_id = str(event["run_id"])
        prev = str(event["hash"])
        heads[number] = prev
        last = event
        seal.see(number, event)
    count = len(lines)
    sealed = last is not None and last["type"] == RUN_FINISHED and last["data"].get("events") == count
    if count == 0:
        return VerifyResult(False, 0, None, "the log is empty")
    if expected_count is not None and count < expected_count:
        return VerifyResult(False, count, None,
                            f"truncated: run.json recorded {expected_count} events, the log has {count}", prev)
    if expected_count is not None and expected_head is not None and expected_count > 0 \
            and heads.get(expected_count) != expected_head:
        return VerifyResult(False, count, expected_count,
                            f"event {expected_count} does not match the head hash recorded in run.json", prev)
    late = seal.event_after_seal(count)
    if late is not None:
        return VerifyResult(False, count, late[0], late[1], prev)
    if expect_sealed and not sealed:
        return VerifyResult(False, count, None,
                            "truncated: the run ended but the log does not end with its sealing run.finished event",
                            prev)
    return VerifyResult(True, count, None, "", prev, sealed)


class _SealTracker:
    """Where the log was last sealed, and what came right after it.

    After a sealing ``run.finished`` (``data.events`` equal to its ``seq``) a writer may only
    open a new session (``run.resumed``) or amend the stopped run, which ends on a new seal.
    A tail after the last seal that does neither was appended after the run ended: that is
    not truncation, and :func:`verify` names it as what it is.
    """

    def __init__(self) -> None:
        self.line = 0
        self.next_type: str | None = None

    def see(self, number: int, event: dict[str, Any]) -> None:
        """Feed events in order."""
        data = event.get("data")
        if event["type"] == RUN_FINISHED and isinstance(data, dict) and data.get("events") == number:
            self.line, self.next_type = number, None
        elif self.line and self.next_type is None:
            self.next_type = str(event["type"])

    def event_after_seal(self, count: int) -> tuple[int, str] | None:
        """``(line, reason)`` when the tail after the last seal was appended to a finished run."""
        if not self.line or self.line == count or self.next_type == RUN_RESUMED:
            return None
        return (self.line + 1, f"event after the seal: {self.next_type} at line {self.line + 1} follows the "
                f"run.finished that sealed the log at line {self.line} (a finished run takes no more events "
                "except through `dr resume`, `dr cancel` or `dr skip`, which re-seal it)")


def _check_line(line: bytes, number: int, prev: str, run_id: str | None) -> dict[str, Any] | str:
    try:
        event = json.loads(line)
    except ValueError:
        return "not valid JSON"
    if not isinstance(event, dict) or any(k not in event for k in _REQUIRED):
        return f"not an audit event (needs keys {', '.join(_REQUIRED)})"
    if event["seq"] != number:
        return (f"sequence number {event['seq']} where {number} was expected "
                "(an event was deleted, inserted or moved)")
    if event["prev"] != prev:
        return "previous-hash link broken (an event before it was deleted, inserted, moved or changed)"
    if event_hash(event) != event["hash"]:
        return "content does not match its hash (the event was modified)"
    if run_id is not None and event["run_id"] != run_id:
        return f"event belongs to run {event['run_id']!r}, not {run_id!r}"
    return dict(event)


def _expectations(path: Path, expect_sealed: bool) -> tuple[int | None, str | None, bool]:
    record = path.parent / "run.json"
    if not record.is_file():
        return None, None, expect_sealed
    try:
        data = json.loads(record.read_text(encoding="utf-8"))
    except ValueError:
        return None, None, expect_sealed
    count = data.get("audit_count")
    head = data.get("audit_head")
    status = data.get("status")
    sealed = expect_sealed or (status not in (None, "running"))
    return (int(count) if isinstance(count, int) else None, head if isinstance(head, str) else None, sealed)


__all__ = [
    "EVENT_TYPES",
    "GENESIS",
    "AuditLog",
    "AuditSealed",
    "VerifyResult",
    "canonical",
    "default_actor",
    "event_hash",
    "read_events",
    "verify",
]
