"""Pre-flight: run every step's read-only checks before anything changes (``dr plan``).

Each step whose action defines :meth:`~dr_engine.actions.base.Action.preflight` gets its own
:class:`~dr_engine.actions.base.StepContext` with a short deadline (:data:`PREFLIGHT_SECONDS`) on
the system clock. Steps are checked concurrently. A check that raises is reported as a failed
check, never as a crash of ``dr plan``. Parameters that use ``${steps...}`` outputs still hold the
reference text here (outputs exist only at run time), which the report says when such a step fails.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from dr_engine.actions.base import Action, ActionParams, PreflightCheck, StepContext
from dr_engine.clock import Deadline, SystemClock
from dr_engine.config.bindings import Bindings, bind_params
from dr_engine.config.loader import runbook_location
from dr_engine.errors import DrError
from dr_engine.evidence.statedir import StateDir
from dr_engine.model import RunMode
from dr_engine.model.substitution import find_references, parse_reference
from dr_engine.planning.plan import ExecutionPlan, PlannedStep

#: Deadline of one step's pre-flight checks (bounds every socket timeout they use).
PREFLIGHT_SECONDS = 10.0
MAX_PARALLEL = 8


def has_preflight(action: type[Action[Any]]) -> bool:
    """True when the action overrides the default (empty) pre-flight."""
    return action.preflight is not Action.preflight


def _uses_outputs(step: PlannedStep) -> bool:
    refs = (parse_reference(text) for _, text in find_references(step.step.with_))
    return any(ref is not None and ref.scope == "step" for ref in refs)


def _bound_params(plan: ExecutionPlan, step: PlannedStep) -> ActionParams:
    """The step's params as a run binds them (region values, real secrets); ``${steps...}`` stay as text.

    The loader's params hold placeholders for secrets, which checks that use a secret (a TSIG
    key, a password) cannot work with.
    """
    loaded = plan.loaded
    pending: dict[str, dict[str, str]] = {}
    for _, text in find_references(step.step.with_):
        ref = parse_reference(text)
        if ref is not None and ref.scope == "step":
            pending.setdefault(ref.step or "", {})[ref.key or ""] = "${" + text + "}"
    bindings = Bindings(source=loaded.source, target=loaded.target, runbook=loaded.runbook.runbook,
                        run_id="preflight", mode=RunMode.FAILOVER, outputs=pending)
    return bind_params(loaded.actions[step.id].Params, step.step.with_, bindings, step.id)


def _check_step(plan: ExecutionPlan, step: PlannedStep, shared: dict[str, PreflightCheck]) -> list[PreflightCheck]:
    loaded = plan.loaded
    action = loaded.actions[step.id]
    if loaded.params.get(step.id) is None:
        return [PreflightCheck("parameters", True, "depend on outputs of earlier steps; checked at run time")]
    try:
        params = _bound_params(plan, step)
    except DrError as exc:  # e.g. a secret file that cannot be read
        return [PreflightCheck("parameters", False, exc.message)]
    clock = SystemClock()
    ctx = StepContext(
        run_id="preflight", step_id=step.id, mode=RunMode.FAILOVER, source=loaded.source, target=loaded.target,
        objectives=loaded.runbook.objectives, deadline=Deadline(clock, PREFLIGHT_SECONDS), clock=clock,
        log=logging.getLogger(f"dr_engine.planning.preflight.{step.id}"), state_dir=StateDir(loaded.path.parent),
        preflight=True, runbook_location=runbook_location(loaded.path), identity_checks=shared,
    )
    try:
        checks = list(action().preflight(params, ctx))
    except DrError as exc:
        checks = [PreflightCheck(f"pre-flight of {step.action}", False, exc.message)]
    except Exception as exc:  # a broken check must not hide the others
        checks = [PreflightCheck(f"pre-flight of {step.action}", False, f"{type(exc).__name__}: {exc}")]
    if _uses_outputs(step):
        note = " (this step uses outputs of earlier steps, which exist only at run time)"
        checks = [c if c.ok else PreflightCheck(c.name, c.ok, c.detail + note) for c in checks]
    return checks


def run_preflight(plan: ExecutionPlan) -> dict[str, list[PreflightCheck]]:
    """Read-only checks per step id (plan order), for steps whose action defines any."""
    steps = [s for s in plan.steps if has_preflight(plan.loaded.actions[s.id])]
    # Shared across steps: e.g. one STS identity check per region instead of one per step.
    shared: dict[str, PreflightCheck] = {}
    with ThreadPoolExecutor(max_workers=MAX_PARALLEL, thread_name_prefix="preflight") as pool:
        futures = {s.id: pool.submit(_check_step, plan, s, shared) for s in steps}
        return {step_id: future.result() for step_id, future in futures.items()}


def failed(results: dict[str, list[PreflightCheck]]) -> int:
    """How many checks failed."""
    return sum(1 for checks in results.values() for c in checks if not c.ok)


def to_json(results: dict[str, list[PreflightCheck]]) -> dict[str, Any]:
    """JSON-ready form for ``dr plan --output json``."""
    return {"ok": failed(results) == 0, "failed": failed(results),
            "steps": {sid: [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in checks]
                      for sid, checks in results.items()}}
