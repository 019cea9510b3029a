"""Drill copies of CloudFormation stacks: ``<stack>-drill``, deleted when the drill ends.

In a drill, ``cloudformation.apply`` creates (or updates) ``<stack>-drill`` from the same
template and parameters, tagged with the drill's run id, in the same region; the stack itself
is never touched. ``cloudformation.check`` of a stack this drill copied checks the copy, so its
outputs feed later steps exactly as a real run's would. The copy is recorded before it is
created; cleanup deletes it and waits until CloudFormation reports it gone.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from dr_engine.actions.aws.base import connect, poll, region_of
from dr_engine.actions.aws.cloudformation import ApplyParams, CheckParams
from dr_engine.actions.base import StepContext
from dr_engine.drill.session import DrillResource, DrillSession, drill_cleaner, drill_variant
from dr_engine.providers.aws.cloudformation import CloudFormation

STACK = "cloudformation-stack"
SUFFIX = "-drill"
#: The tag that marks a drill copy with the run that made it.
RUN_TAG = "dr-engine:drill-run"


def drill_stack_name(stack: str) -> str:
    """``ledger-app`` -> ``ledger-app-drill`` (within CloudFormation's 128 characters)."""
    return stack[: 128 - len(SUFFIX)] + SUFFIX


def _resource_id(region: str, stack: str) -> str:
    return f"{STACK}:{region}:{stack}"


@drill_variant("cloudformation.apply")
def apply_a_drill_copy(params: ApplyParams, ctx: StepContext, session: DrillSession) -> ApplyParams:
    """Return params that apply ``<stack>-drill`` (recorded for cleanup first)."""
    region = region_of(ctx, params.region)
    name = drill_stack_name(params.stack)
    resource_id = _resource_id(region.name, name)
    if session.active(resource_id) is None:
        session.add_resource(DrillResource(kind=STACK, id=resource_id, spec={"stack": name, "region": params.region},
                                           description=f"CloudFormation stack {name} in {region.name}"))
    return params.model_copy(update={"stack": name, "tags": {**params.tags, RUN_TAG: ctx.run_id}})


@drill_variant("cloudformation.check")
def check_the_drill_copy(params: CheckParams, ctx: StepContext, session: DrillSession) -> CheckParams:
    """Check the drill copy when this drill made one; else the real stack (read-only)."""
    name = drill_stack_name(params.stack)
    if session.active(_resource_id(region_of(ctx, params.region).name, name)) is None:
        return params
    return params.model_copy(update={"stack": name})


@drill_cleaner(STACK)
def delete_drill_stack(spec: dict[str, Any], session: DrillSession, timeout: float) -> str:
    """Delete the drill copy and wait until it is gone."""
    name = str(spec["stack"])
    ctx = session.cleanup_context(f"delete-{name}", timeout)
    region = region_of(ctx, spec.get("region", "target"))
    api = connect(CloudFormation, region, ctx)
    if api.describe(name) is None:
        return f"stack {name} in {region.name} did not exist"
    api.delete(name)

    def gone() -> bool | None:
        found = api.describe(name)
        if found is not None and found.get("StackStatus") == "DELETE_FAILED":
            raise RuntimeError(f"deleting stack {name} failed: {found.get('StackStatusReason', '')}")
        return True if found is None else None

    poll(ctx, f"deletion of stack {name}", gone, timedelta(seconds=1))
    return f"deleted stack {name} in {region.name}"


__all__ = ["RUN_TAG", "apply_a_drill_copy", "check_the_drill_copy", "delete_drill_stack", "drill_stack_name"]
