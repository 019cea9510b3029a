"""Drills put Auto Scaling groups back as they found them.

A drill runs ``autoscaling.scale`` for real: warming the recovery region's pilot light is part
of what a drill must prove (quota, launch template, health checks). Before the first resize of
a group, the drill records the group's size (min, desired, max) as a drill copy; cleanup
restores exactly that size, so the recovery region goes back to pilot light and does not keep
paying for a warm standby nobody asked for.
"""

from __future__ import annotations

from typing import Any

from dr_engine.actions.aws.autoscaling import ScaleParams
from dr_engine.actions.aws.base import connect, region_of
from dr_engine.actions.base import StepContext
from dr_engine.drill.session import DrillResource, DrillSession, drill_cleaner, drill_variant
from dr_engine.errors import PreconditionFailed
from dr_engine.providers.aws.autoscaling import AutoScaling

SIZE = "autoscaling-size"


@drill_variant("autoscaling.scale")
def remember_the_size(params: ScaleParams, ctx: StepContext, session: DrillSession) -> ScaleParams:
    """Record the group's size before the drill resizes it (once per group); params unchanged."""
    region = region_of(ctx, params.region)
    resource_id = f"{SIZE}:{region.name}:{params.group}"
    if session.active(resource_id) is None:
        group = connect(AutoScaling, region, ctx).group(params.group)
        if group is None:
            raise PreconditionFailed(f"Auto Scaling group {params.group} does not exist in {region.name}",
                                     hint="create it (the pilot light) or fix `group:`")
        size = {"min": int(group["MinSize"]), "desired": int(group["DesiredCapacity"]), "max": int(group["MaxSize"])}
        session.add_resource(DrillResource(
            kind=SIZE, id=resource_id, spec={"group": params.group, "region": params.region, **size},
            description=f"size of Auto Scaling group {params.group} in {region.name} "
                        f"(min {size['min']}, desired {size['desired']}, max {size['max']})"))
    return params


@drill_cleaner(SIZE)
def restore_the_size(spec: dict[str, Any], session: DrillSession, timeout: float) -> str:
    """Set the group back to the recorded min/desired/max."""
    ctx = session.cleanup_context(f"restore-{spec['group']}", timeout)
    region = region_of(ctx, spec.get("region", "target"))
    api = connect(AutoScaling, region, ctx)
    if api.group(str(spec["group"])) is None:
        return f"Auto Scaling group {spec['group']} in {region.name} no longer exists"
    api.resize(str(spec["group"]), int(spec["min"]), int(spec["desired"]), int(spec["max"]))
    return f"Auto Scaling group {spec['group']} in {region.name} back to min {spec['min']}, " \
           f"desired {spec['desired']}, max {spec['max']}"


__all__ = ["remember_the_size", "restore_the_size"]
