"""Does a run's record hold up? Its audit chain verifies and ``run.json`` says what the log says.

Every view of a run (``dr show``, ``dr runs``, the per-run and period reports, evidence packs)
asks :func:`check_run` once and shows its answer: a run that does not verify reads
**UNVERIFIED**, never PASSED or FAILED, because what its files claim is not established.

Two checks, both on the run directory's own files:

1. the hash chain of ``audit.jsonl`` (:func:`dr_engine.evidence.audit.verify`, which also holds the
   log to the event count, head hash and sealed state that ``run.json`` recorded);
2. for a finished run (the log is sealed by ``run.finished``), ``run.json`` must equal the
   record rebuilt from the log (:func:`dr_engine.evidence.journal.rebuild_record`): the report reads
   its status, RTO/RPO and step facts from ``run.json``, so an edited record with an intact
   log would otherwise be rendered as fact.

The second check is skipped while the log is not sealed (a run in progress or interrupted):
the engine rewrites ``run.json`` after each event in a group commit, so mid-run it may lag the
log, and a crash can leave it behind; a run that claims to have ended without a sealed log
already fails the first check.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dr_engine.errors import RunStateError
from dr_engine.evidence.audit import VerifyResult, read_events, verify
from dr_engine.evidence.journal import rebuild_record
from dr_engine.evidence.record import AUDIT_FILE, RunRecord, as_written_by, load_record
from dr_engine.evidence.recovery import FENCED, PROMOTED, TRAFFIC_SHIFTED

#: Milestones whose time depends on the order in which the engine applied the events of
#: parallel steps (a later mark wins), which may differ from the log's order: not compared.
ORDER_DEPENDENT_MILESTONES = frozenset({FENCED, PROMOTED, TRAFFIC_SHIFTED})


@dataclass(frozen=True)
class RunCheck:
    """The verification result of one run. ``verification`` says why when not ``verified``."""

    verified: bool
    verification: str
    chain: VerifyResult
    #: Top-level ``run.json`` fields that disagree with the record rebuilt from the log.
    record_differs: tuple[str, ...] = ()


def chain_reason(result: VerifyResult) -> str:
    """Why a chain does not verify, with its line when known (``line 7: content does not ...``)."""
    if result.ok:
        return ""
    return f"line {result.first_bad_line}: {result.reason}" if result.first_bad_line else result.reason


def _comparable(record: RunRecord, version: int) -> dict[str, Any]:
    # Only what the fold of the record's own version wrote: older records lack newer fields.
    data = as_written_by(record.model_dump(mode="json"), version)
    # Parallel steps finish in any order; the engine may apply their events in a different order
    # than they were appended, so only these fields can legitimately differ from a replay.
    data["changed_steps"] = sorted(data.get("changed_steps") or [])
    data["milestones"] = {k: v for k, v in (data.get("milestones") or {}).items()
                          if k not in ORDER_DEPENDENT_MILESTONES}
    return data


def record_differences(record: RunRecord, rebuilt: RunRecord) -> list[str]:
    """Top-level fields of ``record`` whose value differs from ``rebuilt`` (sorted)."""
    mine, truth = _comparable(record, record.record_version), _comparable(rebuilt, record.record_version)
    return sorted(key for key in set(mine) | set(truth) if mine.get(key) != truth.get(key))


def check_record(record: RunRecord, audit: Path, chain: VerifyResult) -> RunCheck:
    """Check ``record`` against its log ``audit`` whose chain check is ``chain``."""
    if not chain.ok:
        return RunCheck(False, chain_reason(chain), chain)
    if not chain.sealed:
        return RunCheck(True, "", chain)
    try:
        rebuilt = rebuild_record(read_events(audit))
    except (RunStateError, ValueError, KeyError, TypeError) as exc:
        return RunCheck(False, f"the audit log cannot be replayed into a run record: {exc}", chain)
    differs = record_differences(record, rebuilt)
    if differs:
        return RunCheck(False, f"run.json disagrees with the audit log on {', '.join(differs)} (the log is the "
                        f"source of truth: compare with `dr show {record.run_id} --rebuild`)", chain, tuple(differs))
    return RunCheck(True, "", chain)


def check_run(run_dir: Path, record: RunRecord | None = None) -> RunCheck:
    """Verify the run in ``run_dir`` (``record``: its already loaded ``run.json``, if at hand).

    Raises :class:`RunStateError` only when ``run.json`` itself is missing or unreadable.
    """
    run_dir = Path(run_dir)
    record = record if record is not None else load_record(run_dir)
    audit = run_dir / AUDIT_FILE
    return check_record(record, audit, verify(audit))


__all__ = ["ORDER_DEPENDENT_MILESTONES", "RunCheck", "chain_reason", "check_record", "check_run",
           "record_differences"]
