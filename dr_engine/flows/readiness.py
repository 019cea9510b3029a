"""The readiness flow: the read-only pre-flight of every runbook, on a schedule (default 30 min).

An adapter over :mod:`dr_engine.engine.readiness`: one Prefect task per runbook, results stored under
the state dir (``dr readiness`` shows them), a table artifact, and a notification when a
runbook would not succeed. The flow run fails when a runbook is not ready, so the Prefect UI
and its automations see it too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State
from prefect.states import Completed, Failed

from dr_engine.engine.readiness import run_readiness, runbook_paths


@task(name="dr-readiness-check", retries=0, cache_policy=NO_CACHE, persist_result=False)
def check_runbook_task(path: str, state_dir: str, regions_dir: str | None = None) -> dict[str, Any]:
    """Check one runbook; store and notify; return its JSON result."""
    (result,) = run_readiness(Path(state_dir), only=path, regions_dir=Path(regions_dir) if regions_dir else None)
    return result.to_json()


@flow(name="dr-readiness", persist_result=False, log_prints=False, validate_parameters=False)
def readiness_flow(state_dir: str = ".dr", runbooks_dir: str = "runbooks", runbook: str | None = None,
                   regions_dir: str | None = None) -> State[Any]:
    """Check every runbook in ``runbooks_dir`` (or one); fail when any would not succeed."""
    paths = runbook_paths(Path(runbooks_dir), runbook)
    results = [check_runbook_task.with_options(task_run_name=f"readiness-{p.stem}")(str(p), state_dir, regions_dir)
               for p in paths]
    create_table_artifact(key="dr-readiness", description="Would each runbook succeed now?", table=[
        {"runbook": r["runbook"], "ready": r["ready"], "failed": r["failed"], "checked_at": r["checked_at"],
         "first_failure": next((f"{c['step']}: {c['name']}: {c['detail']}" for c in r["checks"] if not c["ok"]), "")}
        for r in results])
    not_ready = [r["runbook"] for r in results if not r["ready"]]
    data = {"checked": len(results), "not_ready": not_ready}
    if not_ready:
        return Failed(message=f"not ready: {', '.join(not_ready)}", data=data)
    return Completed(message=f"{len(results)} runbook(s) ready", data=data)


__all__ = ["check_runbook_task", "readiness_flow"]
