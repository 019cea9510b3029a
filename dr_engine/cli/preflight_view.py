"""How ``dr plan`` runs and shows pre-flight checks (kept out of config_cmds to keep it small)."""

from __future__ import annotations

from typing import Any

from dr_engine.actions.base import PreflightCheck
from dr_engine.cli.common import out
from dr_engine.planning.plan import ExecutionPlan
from dr_engine.planning.preflight import failed, has_preflight, run_preflight, to_json

Results = dict[str, list[PreflightCheck]]


def preflight_for(plan: ExecutionPlan, wanted: bool | None) -> Results | None:
    """Run the checks when asked to, or by default when any step defines checks; None when not run."""
    if wanted is None:
        wanted = any(has_preflight(plan.loaded.actions[s.id]) for s in plan.steps)
    return run_preflight(plan) if wanted else None


def as_json(results: Results | None) -> dict[str, Any]:
    """The ``preflight`` member of ``dr plan --output json`` (absent when not run)."""
    return {} if results is None else {"preflight": to_json(results)}


def render_preflight(results: Results) -> None:
    """Print the checks per step for people."""
    console = out()
    console.print("Pre-flight (read-only):", markup=False)
    if not results:
        console.print("  no step defines pre-flight checks", markup=False)
    for step_id, checks in results.items():
        console.print(f"  {step_id}", markup=False)
        for check in checks:
            mark = "ok  " if check.ok else "FAIL"
            console.print(f"    [{mark}] {check.name}{' - ' + check.detail if check.detail else ''}", markup=False)
    bad = failed(results)
    console.print(f"  {bad} check(s) failed" if bad else "  all checks passed", markup=False)
