"""Approvals: what happens around a human decision (the waiting itself is the gate's job).

The approval gate (``ctx.extras['approval_gate']``, see :class:`dr_engine.actions.control.ApprovalGate`)
is supplied by the flow: :class:`flows.approval.PrefectApprovalGate` pauses the Prefect flow
run until ``dr approve RUN_ID --as NAME`` (or the Prefect UI) answers. This module holds the
parts that do not depend on Prefect:

- :func:`recheck_gates`: after an approval, the safety gates the approval step depends on
  (``data.check`` / ``stack.check`` steps, e.g. the replication-lag gate) run again, because
  the world may have changed while people deliberated. A gate that now refuses halts the run.
- :func:`data_loss_refusal`: a run started with ``--allow-data-loss`` from the CLI must be
  approved by a person before any step runs (and must carry a reason); the decision is audited.
- :func:`pending_approval`: what ``dr approve`` answers (read from the audit log).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from dr_engine import audit as ev
from dr_engine.actions.base import Capability, StepContext
from dr_engine.audit import read_events
from dr_engine.clock import Deadline
from dr_engine.errors import DrError, PreconditionFailed, RunStateError
from dr_engine.record import RUN_FILE, StepError, StepStatus, load_record
from dr_engine.statedir import StateDir

log = logging.getLogger("dr_engine.approval")

#: Capabilities re-checked after an approval.
GATE_CAPABILITIES = frozenset({Capability.DATA_CHECK, Capability.STACK_CHECK})
#: Budget of re-running one gate after an approval.
RECHECK_SECONDS = 30.0
#: Pseudo step id of the approval that ``--allow-data-loss`` needs.
DATA_LOSS_STEP = "allow-data-loss"


def recheck_gates(ctx: StepContext) -> list[str]:
    """Re-run the succeeded gate steps the approval step ``ctx.step_id`` depends on; return summaries.

    Raises :class:`PreconditionFailed` when one of them now refuses.
    """
    from dr_engine.bindings import Bindings, bind_params, read_secret
    from dr_engine.loader import load_runbook
    from dr_engine.plan import build_plan

    run_dir = ctx.extras.get("run_dir")
    if not isinstance(run_dir, Path) or not (run_dir / RUN_FILE).is_file():
        return []
    record = load_record(run_dir)
    plan = build_plan(load_runbook(Path(record.runbook_file),
                                   Path(record.regions_dir) if record.regions_dir else None))
    try:
        me = plan.get(ctx.step_id)
    except StopIteration:
        return []
    emit = ctx.extras.get("emit")
    done: list[str] = []
    for planned in plan.steps:
        if planned.id not in me.ancestors or planned.capability not in GATE_CAPABILITIES:
            continue
        if record.step(planned.id).status is not StepStatus.SUCCEEDED:
            continue
        action_cls = plan.loaded.actions[planned.id]
        bindings = Bindings(ctx.source, ctx.target, plan.loaded.runbook.runbook, ctx.run_id, ctx.mode, ctx.outputs)
        params = bind_params(action_cls.Params, planned.step.with_, bindings, planned.id)
        check_ctx = StepContext(run_id=ctx.run_id, step_id=planned.id, mode=ctx.mode, source=ctx.source,
                                target=ctx.target, objectives=ctx.objectives,
                                deadline=Deadline(ctx.clock, RECHECK_SECONDS), clock=ctx.clock, log=ctx.log,
                                state_dir=ctx.state_dir, allow_data_loss=ctx.allow_data_loss, outputs=ctx.outputs,
                                secret_resolver=read_secret, extras=ctx.extras)
        try:
            result = action_cls().run(params, check_ctx)
        except DrError as exc:
            if callable(emit):
                emit(ev.NOTE_ADDED, text=f"after approval, gate {planned.id} refused: {exc.message}",
                     step=ctx.step_id, rechecked=planned.id, ok=False)
            raise PreconditionFailed(f"approved, but gate {planned.id} no longer passes: {exc.message}",
                                     hint=exc.hint or "resolve it, then `dr resume RUN_ID` to ask again") from exc
        done.append(f"{planned.id}: {result.summary}")
        if callable(emit):
            emit(ev.NOTE_ADDED, text=f"after approval, gate {planned.id} re-checked: {result.summary}",
                 step=ctx.step_id, rechecked=planned.id, ok=True)
    return done


def data_loss_refusal(ctx: StepContext, gate: Any, *, reason: str, already_approved: bool) -> StepError | None:
    """Ask ``gate`` to approve running with ``--allow-data-loss``; the StepError that halts the run if not."""
    from dr_engine.actions.control import ApproveParams

    if not reason.strip():
        return StepError(kind="PreconditionFailed", message="--allow-data-loss needs a reason (--reason TEXT)",
                         hint="start the run again with --reason saying why accepting data loss is right")
    if already_approved:
        return None
    if gate is None:
        return StepError(kind="PreconditionFailed", message="--allow-data-loss needs an approval, and this run "
                         "has no way to ask for one", hint="run it through `dr failover` (Prefect pauses for "
                                                           "`dr approve`)")
    params = ApproveParams(prompt=f"Accept DATA LOSS for this run? Reason given: {reason}",
                           on_timeout="reject")
    try:
        approved, approver, comment = gate.request(ctx, params)
    except DrError as exc:
        return StepError(kind=type(exc).__name__, message=exc.message, hint=exc.hint)
    if not approved:
        return StepError(kind="PreconditionFailed",
                         message=f"--allow-data-loss was not approved ({approver}: {comment or 'no comment'})",
                         hint="resume the run to ask again, or start one without --allow-data-loss")
    emit = ctx.extras.get("emit")
    if callable(emit):
        emit(ev.OVERRIDE, actor=approver, kind="allow-data-loss-approved",
             detail=f"data loss accepted by {approver}: {comment or reason}")
    return None


def pending_approval(state_dir: Path, run_id: str) -> dict[str, Any]:
    """The open ``approval.requested`` event data of a run (RunStateError when none is open)."""
    state = StateDir(state_dir)
    full = state.resolve_run_id(run_id)
    open_requests: dict[str, dict[str, Any]] = {}
    for event in read_events(state.audit_file(full)):
        data = dict(event.get("data") or {})
        step = str(data.get("step", ""))
        if event["type"] == ev.APPROVAL_REQUESTED:
            open_requests[step] = {**data, "run_id": full, "requested_at": event["ts"]}
        elif event["type"] in (ev.APPROVAL_GRANTED, ev.APPROVAL_REJECTED, ev.RUN_FINISHED):
            if event["type"] == ev.RUN_FINISHED:
                open_requests.clear()
            open_requests.pop(step, None)
    if not open_requests:
        raise RunStateError(f"run {full} is not waiting for an approval",
                            hint=f"see `dr show {full}` for where it stands")
    return list(open_requests.values())[-1]


__all__ = ["DATA_LOSS_STEP", "GATE_CAPABILITIES", "data_loss_refusal", "pending_approval",
           "recheck_gates"]
