"""Provider-free control actions: ``control.wait`` and ``control.approve``."""

from __future__ import annotations

from pydantic import Field

from dr_engine.actions.base import Action, ActionParams, StepContext, StepResult
from dr_engine.actions.base import ApprovalGate as ApprovalGate  # re-exported: where gates look for it
from dr_engine.actions.base import ApproveParams as ApproveParams  # re-exported: the action's Params
from dr_engine.actions.registry import register
from dr_engine.capabilities import Capability
from dr_engine.errors import PreconditionFailed
from dr_engine.evidence.identity import as_answer
from dr_engine.model import DrillBehaviour
from dr_engine.model.units import Duration


class WaitParams(ActionParams):
    """Parameters of ``control.wait``."""

    duration: Duration = Field(description="How long to wait, e.g. 30s (lets caches/TTLs expire)")
    reason: str = ""


@register
class Wait(Action[WaitParams]):
    """Wait a fixed time, e.g. for a DNS TTL to expire before verifying."""

    name = "control.wait"
    capability = Capability.CONTROL_WAIT
    Params = WaitParams
    example = "id: let-ttl-expire\naction: control.wait\nwith: {duration: 2s, reason: DNS TTL}\n"

    def run(self, params: WaitParams, ctx: StepContext) -> StepResult:
        """Sleep on the injected clock, never past the step deadline."""
        wanted = params.duration.total_seconds()
        ctx.deadline.check("starting to wait")
        ctx.clock.sleep(min(wanted, ctx.deadline.remaining()))
        ctx.deadline.check(f"waiting {wanted:g}s")
        return StepResult(summary=f"waited {wanted:g}s", changed=False)


@register
class Approve(Action[ApproveParams]):
    """Pause the run until a named person approves (``dr approve RUN_ID --as NAME``)."""

    name = "control.approve"
    capability = Capability.CONTROL_APPROVE
    Params = ApproveParams
    example = (
        "id: approve-cutover\naction: control.approve\n"
        'with: {prompt: "Shift customer traffic to the target region?", timeout: 15m}\n'
    )
    drill_default = DrillBehaviour.RUN

    def run(self, params: ApproveParams, ctx: StepContext) -> StepResult:
        """Ask the approval gate; a rejection or timeout halts the run."""
        gate = ctx.approval_gate
        if not isinstance(gate, ApprovalGate):
            raise PreconditionFailed(
                "this run has no way to ask for approval",
                hint="run it through `dr failover` (which pauses the Prefect flow) or remove the step",
            )
        answer = as_answer(gate.request(ctx, params))
        approved, approver, comment = answer.approved, answer.approver, answer.comment
        if params.approvers and approver not in params.approvers:
            raise PreconditionFailed(
                f"{approver!r} is not among the allowed approvers {params.approvers}",
                hint="ask one of the listed approvers to approve",
            )
        if not approved:
            raise PreconditionFailed(
                f"approval refused by {approver}: {comment or 'no comment'}",
                hint="resolve the concern, then `dr resume RUN_ID` to ask again",
            )
        # The name given is a claim; the identity is what the OS proved (None: nothing did).
        identity = answer.identity.as_dict() if answer.identity else None
        return StepResult(
            summary=f"approved by {approver}" + (f" (OS user {answer.identity})" if answer.identity else
                                                 " (not authenticated)"),
            changed=False,
            facts={"approver": approver, "comment": comment, "identity": identity, "via": answer.via},
        )
