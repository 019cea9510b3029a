"""``dr drill-cleanup RUN_ID``: remove drill copies left behind (e.g. the drill process was killed).

Copies are recorded in the audit log before they are created, so the list is complete even
after a SIGKILL. The removals are appended to the run's audit log (and the run re-sealed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dr_engine.config.loader import load_runbook
from dr_engine.drill.session import DrillSession
from dr_engine.engine.controls import append_events, holder_alive
from dr_engine.errors import RunStateError
from dr_engine.evidence.audit import default_actor, read_events
from dr_engine.evidence.journal import rebuild_record
from dr_engine.evidence.record import RunStatus
from dr_engine.evidence.statedir import StateDir
from dr_engine.planning.plan import build_plan


def cleanup_run(state_dir: StateDir | Path, run_id: str) -> list[dict[str, Any]]:
    """Remove every drill copy of ``run_id`` not yet removed; return one result per copy."""
    state = StateDir.of(state_dir)
    full = state.resolve_run_id(run_id)
    record = rebuild_record(read_events(state.audit_file(full)))
    if record.mode != "drill":
        raise RunStateError(f"run {full} is a {record.mode}, not a drill")
    if record.status is RunStatus.RUNNING and holder_alive(record, state_dir):
        raise RunStateError(f"drill {full} is still running; it cleans up when it ends",
                            hint=f"stop it with `dr cancel {full}`")
    plan = build_plan(load_runbook(Path(record.runbook_file),
                                   Path(record.regions_dir) if record.regions_dir else None))
    events: list[tuple[str, str, dict[str, Any]]] = []

    def emit(type_: str, *, actor: str | None = None, **data: Any) -> dict[str, Any]:
        events.append((type_, actor or default_actor(), data))
        return {}

    session = DrillSession.for_run(plan, full, state.run_dir(full), emit)
    if not session.pending_cleanup():
        return []
    results = session.cleanup(wait_for_steps=0)
    append_events(state_dir, full, events)
    return results


__all__ = ["cleanup_run"]
