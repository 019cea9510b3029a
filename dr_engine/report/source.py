"""Reading what a report is built from: one run directory (``run.json`` + ``audit.jsonl``).

This is the only module of :mod:`dr_engine.report` that reads engine files; it goes through
:mod:`dr_engine.evidence.record` and :mod:`dr_engine.evidence.audit` so that the report package follows the
engine's formats instead of re-implementing them.

Remediation notes live in their own hash-chained log, ``<run-dir>/notes/audit.jsonl``
(written with :class:`dr_engine.evidence.audit.AuditLog`): the run's own ``audit.jsonl`` is sealed
by its ``run.finished`` event, and appending to it after the run would make a sealed log
indistinguishable from a tampered one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dr_engine.evidence.audit import VerifyResult, read_events, verify
from dr_engine.evidence.record import AUDIT_FILE, RUN_FILE, load_record
from dr_engine.evidence.record_check import RunCheck, check_record

NOTES_DIR = "notes"
NOTES_FILE = "audit.jsonl"


@dataclass(frozen=True)
class ChainCheck:
    """Result of verifying one hash-chained log."""

    ok: bool
    count: int
    first_bad_line: int | None = None
    reason: str = ""
    head: str = ""
    sealed: bool = False


@dataclass(frozen=True)
class RunSource:
    """Everything read from one run directory, as plain JSON-like data."""

    run_dir: Path
    record: dict[str, Any]
    events: list[dict[str, Any]]
    chain: ChainCheck
    audit_sha256: str
    record_sha256: str
    notes: list[dict[str, Any]] = field(default_factory=list)
    notes_chain: ChainCheck | None = None
    #: The run's verification (audit chain + ``run.json`` against the log), computed once here
    #: so that every view built from this source says the same thing.
    check: RunCheck | None = None

    @property
    def verified(self) -> bool:
        """True when the run's records verify (see :mod:`dr_engine.evidence.record_check`)."""
        return self.check.verified if self.check is not None else self.chain.ok

    @property
    def verification(self) -> str:
        """Why the run does not verify ("" when it does)."""
        if self.check is not None:
            return self.check.verification
        return "" if self.chain.ok else self.chain.reason


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes (streamed)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def notes_path(run_dir: Path) -> Path:
    """Where a run's remediation notes are logged."""
    return Path(run_dir) / NOTES_DIR / NOTES_FILE


def check_chain(path: Path, *, standalone: bool = False) -> ChainCheck:
    """Verify a log with :func:`dr_engine.evidence.audit.verify`.

    ``standalone`` logs (remediation notes) are checked for their chain only: they have no
    ``run.json`` of their own and are never sealed.
    """
    return _chain_check(verify(path, expected_count=0) if standalone else verify(path))


def _chain_check(result: VerifyResult) -> ChainCheck:
    return ChainCheck(ok=result.ok, count=result.count, first_bad_line=result.first_bad_line,
                      reason=result.reason, head=result.head, sealed=result.sealed)


def _safe_events(path: Path) -> list[dict[str, Any]]:
    # A broken log still yields whatever lines parse, so the report can show what is there
    # next to the verification failure (instead of refusing to render evidence of tampering).
    events: list[dict[str, Any]] = []
    try:
        return read_events(path)
    except FileNotFoundError:
        return []
    except ValueError:
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if isinstance(item, dict):
                events.append(item)
        return events


def load_run(run_dir: Path) -> RunSource:
    """Read a run directory (RunStateError when it has no readable run record)."""
    run_dir = Path(run_dir)
    loaded = load_record(run_dir)
    record = loaded.model_dump(mode="json")
    audit = run_dir / AUDIT_FILE
    events = _safe_events(audit)
    check = check_record(loaded, audit, verify(audit))
    chain = _chain_check(check.chain)
    notes_log = notes_path(run_dir)
    notes = _safe_events(notes_log) if notes_log.is_file() else []
    notes_chain = check_chain(notes_log, standalone=True) if notes_log.is_file() else None
    return RunSource(
        run_dir=run_dir,
        record=record,
        events=events,
        chain=chain,
        audit_sha256=sha256_file(audit) if audit.is_file() else "",
        record_sha256=sha256_file(run_dir / RUN_FILE),
        notes=notes,
        notes_chain=notes_chain,
        check=check,
    )


__all__ = ["NOTES_DIR", "NOTES_FILE", "ChainCheck", "RunSource", "check_chain", "load_run", "notes_path",
           "sha256_file"]
