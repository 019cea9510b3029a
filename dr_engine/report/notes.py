"""Remediation items: action, owner and due date, open until closed (FIELD.md item 7).

Notes are audited events (``note.added`` / ``note.closed``) in their own hash-chained log,
``<run-dir>/notes/audit.jsonl``, written through :class:`dr_engine.evidence.audit.AuditLog`. They are
kept apart from the run's ``audit.jsonl`` because that log is sealed by ``run.finished``: a
later append would look exactly like tampering. A report shows every note of its run; open
ones stay visible in period reports until closed.
"""

from __future__ import annotations

import secrets
from datetime import date
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from dr_engine.errors import RunStateError
from dr_engine.evidence.audit import NOTE_ADDED, AuditLog, read_events
from dr_engine.evidence.record import load_record
from dr_engine.report.source import notes_path

NOTE_CLOSED = "note.closed"


class RemediationItem(BaseModel):
    """One remediation action item."""

    note_id: str
    action: str
    owner: str
    due: str
    status: str = "open"
    added_at: str = ""
    added_by: str = ""
    closed_at: str | None = None
    closed_by: str | None = None
    resolution: str = ""

    def overdue(self, today: date) -> bool:
        """True when still open after its due date."""
        try:
            return self.status == "open" and date.fromisoformat(self.due) < today
        except ValueError:
            return False


def fold_notes(events: list[dict[str, Any]]) -> list[RemediationItem]:
    """Replay ``note.added``/``note.closed`` events into the current list of items."""
    items: dict[str, RemediationItem] = {}
    for event in events:
        raw = event.get("data")
        data: dict[str, Any] = raw if isinstance(raw, dict) else {}
        note_id = str(data.get("note_id") or "")
        if event.get("type") == NOTE_ADDED and note_id:
            items[note_id] = RemediationItem(
                note_id=note_id, action=str(data.get("action") or ""), owner=str(data.get("owner") or ""),
                due=str(data.get("due") or ""), added_at=str(event.get("ts") or ""),
                added_by=str(event.get("actor") or ""))
        elif event.get("type") == NOTE_CLOSED and note_id in items:
            item = items[note_id]
            item.status = "closed"
            item.closed_at = str(event.get("ts") or "")
            item.closed_by = str(event.get("actor") or "")
            item.resolution = str(data.get("resolution") or "")
    return list(items.values())


def _log(run_dir: Path) -> AuditLog:
    record = load_record(run_dir)  # refuses a directory that is not a run
    return AuditLog(notes_path(run_dir), run_id=record.run_id)


def add_note(run_dir: Path, *, action: str, owner: str, due: date, actor: str | None = None) -> RemediationItem:
    """Record a new remediation item for the run in ``run_dir``; return it."""
    if not action.strip() or not owner.strip():
        raise RunStateError("a remediation note needs an action and an owner",
                            hint="dr note RUN_ID --action 'what to fix' --owner TEAM --due YYYY-MM-DD")
    note_id = "N-" + secrets.token_hex(3)
    event = _log(run_dir).append(NOTE_ADDED, actor=actor, note_id=note_id, action=action.strip(),
                                 owner=owner.strip(), due=due.isoformat())
    return fold_notes([event])[0]


def close_note(run_dir: Path, note_id: str, *, resolution: str = "", actor: str | None = None) -> RemediationItem:
    """Close an open remediation item; RunStateError when unknown or already closed."""
    items = {item.note_id: item for item in list_notes(run_dir)}
    item = items.get(note_id)
    if item is None:
        known = ", ".join(items) or "none"
        raise RunStateError(f"no remediation note {note_id!r} on this run", hint=f"notes of this run: {known}")
    if item.status == "closed":
        raise RunStateError(f"note {note_id} was already closed at {item.closed_at} by {item.closed_by}")
    event = _log(run_dir).append(NOTE_CLOSED, actor=actor, note_id=note_id, resolution=resolution)
    item.status = "closed"
    item.closed_at = str(event["ts"])
    item.closed_by = str(event["actor"])
    item.resolution = resolution
    return item


def list_notes(run_dir: Path) -> list[RemediationItem]:
    """Every remediation item of a run, open and closed."""
    path = notes_path(run_dir)
    return fold_notes(read_events(path)) if path.is_file() else []


__all__ = ["NOTE_CLOSED", "RemediationItem", "add_note", "close_note", "fold_notes", "list_notes"]
