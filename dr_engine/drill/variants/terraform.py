"""Drill copies of Terraform stacks: the drill workspace, destroyed when the drill ends.

In a drill every ``terraform.*`` step works in the stack's ``drill_workspace`` (default
``dr-drill``) of the target region's state, never in its real workspace, so
``terraform.apply`` builds a real, separate copy of the stack. The first terraform step of a
drill records that workspace as a drill copy *before* terraform creates it; cleanup runs
``terraform destroy`` in it with the same variables (secrets looked up again, never recorded)
and deletes the workspace. A drill leaves no infrastructure running and the next drill
starts from nothing, which is also what a real failover's apply faces.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dr_engine.actions.base import StepContext
from dr_engine.actions.terraform import StackParams, destroy_drill_workspace, resolve_stack_dir
from dr_engine.drill.session import DrillResource, DrillSession, drill_cleaner, drill_variant

WORKSPACE = "terraform-workspace"


#: Whose variables destroy uses when several steps share a workspace: apply's, else plan's.
_PREFERENCE = {"terraform.apply": 2, "terraform.plan": 1, "terraform.check_state": 0}


def _action_of(session: DrillSession, step_id: str) -> str:
    return str(session.plan.get(step_id).step.action)


def _record_workspace(params: StackParams, ctx: StepContext, session: DrillSession) -> StackParams:
    stack_dir = resolve_stack_dir(params, ctx)
    backend = params.backend
    parts = (WORKSPACE, ctx.target.name, stack_dir.name, backend.bucket, backend.key, params.drill_workspace)
    resource_id = ":".join(part for part in parts if part)
    recorded = session.active(resource_id)
    mine = _PREFERENCE.get(_action_of(session, ctx.step_id), 0)
    if recorded is None or mine > _PREFERENCE.get(_action_of(session, str(recorded.spec["step"])), 0):
        # Recorded again by the step that applies: destroy needs the variables apply used.
        # What destroy needs, as run: absolute stack path, variables and backend; secret *names* only.
        spec_params = params.model_dump(mode="json", include={"workspace", "drill_workspace", "backend", "vars",
                                                               "secret_vars", "var_files", "terraform_bin"})
        spec_params["stack"] = str(stack_dir)
        session.add_resource(DrillResource(
            kind=WORKSPACE, id=resource_id, spec={"step": ctx.step_id, "params": spec_params},
            description=f"terraform workspace {params.drill_workspace} of {params.stack} in {ctx.target.name}"))
    return params


for _action in ("terraform.check_state", "terraform.plan", "terraform.apply"):
    drill_variant(_action)(_record_workspace)


@drill_cleaner(WORKSPACE)
def destroy_workspace(spec: dict[str, Any], session: DrillSession, timeout: float) -> str:
    """``terraform destroy`` in the drill workspace, then delete the workspace."""
    params = StackParams.model_validate(spec["params"])
    if not Path(params.stack).is_dir():
        raise RuntimeError(f"stack {params.stack} is gone: destroy the drill workspace "
                           f"{params.drill_workspace} by hand")
    return destroy_drill_workspace(params, session.cleanup_context(str(spec["step"]), timeout))


__all__ = ["WORKSPACE", "destroy_workspace"]
