"""Approvals through Prefect: a ``control.approve`` step pauses the flow run until someone answers.

:class:`PrefectApprovalGate` is the approval gate of runs executed by ``flows.failover``. It
records ``approval.requested`` (with the flow run id and the API URL to answer on), then calls
``pause_flow_run(wait_for_input=ApprovalInput, timeout=...)``. The answer comes from
``dr approve RUN_ID --as NAME [--reject]`` (:func:`answer`, which calls ``resume_flow_run`` with a
typed input) or from the Prefect UI's resume form. On timeout the step's ``on_timeout`` outcome
applies and the flow run is set running again. After an approval the gates the step depends
on are re-checked (:func:`dr_engine.approval.recheck_gates`).

``pause_flow_run`` cannot be called from inside a task, so the flow's executor runs approval
steps in the flow itself (``flows.failover.PrefectExecutor``).
"""

from __future__ import annotations

import os
import uuid
from typing import Any, Literal

from prefect.context import FlowRunContext, TaskRunContext
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run, resume_flow_run
from prefect.input import RunInput

from dr_engine import audit as ev
from dr_engine.actions.base import StepContext
from dr_engine.actions.control import ApproveParams
from dr_engine.approval import recheck_gates
from dr_engine.errors import PreconditionFailed, RunStateError
from dr_engine.run import RunOptions

#: Seconds between checks of a paused flow run (Prefect's default is 10).
POLL_SECONDS = 1


class ApprovalInput(RunInput):
    """What an approver answers (also the form the Prefect UI shows on resume)."""

    approver: str
    decision: Literal["approve", "reject"] = "approve"
    comment: str = ""


def _api_url() -> str | None:
    configured = os.environ.get("PREFECT_API_URL")
    if configured:
        return configured
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    return server.api_url if server.running else None


def _running_again(flow_run_id: uuid.UUID) -> None:
    # After a pause timeout the run is still Paused: tasks could not start. Take it back.
    from prefect.client.orchestration import get_client
    from prefect.states import Running

    with get_client(sync_client=True) as client:
        client.set_flow_run_state(flow_run_id, Running(message="approval timed out; on_timeout applied"),
                                  force=True)


class PrefectApprovalGate:
    """Pause the flow run until ``dr approve`` or the Prefect UI answers (see the module docstring)."""

    def __init__(self, poll_seconds: int = POLL_SECONDS) -> None:
        self.poll_seconds = poll_seconds

    def request(self, ctx: StepContext, params: ApproveParams) -> tuple[bool, str, str]:
        """Block until decided or timed out; return (approved, approver, comment)."""
        flow_ctx = FlowRunContext.get()
        if flow_ctx is None or flow_ctx.flow_run is None:
            raise PreconditionFailed("an approval can only wait inside a Prefect flow run",
                                     hint="run it with `dr failover`/`dr drill`/`dr failback`")
        if TaskRunContext.get() is not None:
            raise PreconditionFailed("an approval cannot wait inside a Prefect task",
                                     hint="the flow's executor must run approval steps in the flow itself")
        emit: Any = ctx.extras.get("emit") or (lambda *a, **k: None)
        flow_run_id = flow_ctx.flow_run.id
        timeout = max(1, int(min(params.timeout.total_seconds(), ctx.deadline.remaining())))
        emit(ev.APPROVAL_REQUESTED, step=ctx.step_id, prompt=params.prompt, approvers=list(params.approvers),
             timeout_seconds=timeout, on_timeout=params.on_timeout, flow_run_id=str(flow_run_id),
             api_url=_api_url())
        ctx.log.warning("waiting up to %ds for approval: %s (dr approve %s --as NAME)", timeout, params.prompt,
                        ctx.run_id)
        started = ctx.clock.monotonic()
        try:
            answer = pause_flow_run(wait_for_input=ApprovalInput, timeout=timeout, poll_interval=self.poll_seconds,
                                    key=f"approve-{ctx.step_id}-{uuid.uuid4().hex[:8]}")
        except FlowPauseTimeout:
            _running_again(flow_run_id)
            waited = round(ctx.clock.monotonic() - started, 3)
            approved = params.on_timeout == "approve"
            comment = f"no decision within {timeout}s; on_timeout: {params.on_timeout}"
            emit(ev.APPROVAL_GRANTED if approved else ev.APPROVAL_REJECTED, actor="timeout", step=ctx.step_id,
                 approver="(timeout)", timed_out=True, comment=comment, waited_seconds=waited)
            if approved:
                recheck_gates(ctx)
            return approved, "(timeout)", comment
        waited = round(ctx.clock.monotonic() - started, 3)
        approver = answer.approver.strip()
        allowed = not params.approvers or approver in params.approvers
        approved = answer.decision == "approve" and allowed
        extra = {} if allowed else {"refused": f"{approver!r} is not among the allowed approvers"}
        emit(ev.APPROVAL_GRANTED if approved else ev.APPROVAL_REJECTED, actor=approver or None, step=ctx.step_id,
             approver=approver, decision=answer.decision, comment=answer.comment, waited_seconds=waited, **extra)
        if approved:
            recheck_gates(ctx)
        return approved, approver, answer.comment


def with_approval_gate(options: RunOptions) -> RunOptions:
    """``options`` with the Prefect approval gate unless the caller supplied a gate."""
    options.extras.setdefault("approval_gate", PrefectApprovalGate())
    return options


def answer(flow_run_id: str, *, approver: str, approve: bool, comment: str = "") -> None:
    """Resume a flow run paused for approval with the typed answer (the ``dr approve`` side)."""
    try:
        resume_flow_run(uuid.UUID(flow_run_id), run_input={"approver": approver,
                                                            "decision": "approve" if approve else "reject",
                                                            "comment": comment})
    except Exception as exc:  # Prefect raises plain errors (not paused, unknown id, bad input)
        raise RunStateError(f"could not answer flow run {flow_run_id}: {type(exc).__name__}: {exc}",
                            hint="the approval may have timed out or been answered already; see `dr show`") from exc


__all__ = ["ApprovalInput", "PrefectApprovalGate", "answer", "with_approval_gate"]
