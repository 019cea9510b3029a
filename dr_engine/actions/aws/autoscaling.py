"""``autoscaling.scale`` (capacity.scale): pilot light -> warm standby for an Auto Scaling group."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, model_validator

from dr_engine.actions.aws.base import AwsAction, PollingParams, checked, connect, identity_check, poll
from dr_engine.actions.base import PreflightCheck, StepContext, StepResult
from dr_engine.actions.registry import register
from dr_engine.capabilities import Capability
from dr_engine.errors import PreconditionFailed, ProviderError
from dr_engine.providers.aws.autoscaling import AutoScaling

Size = Annotated[int, Field(ge=0, le=10_000)]


class ScaleParams(PollingParams):
    """Parameters of ``autoscaling.scale``."""

    group: str = Field(description="Auto Scaling group name")
    min_size: Size
    desired: Size | None = Field(default=None, description="Desired capacity (default: min_size)")
    max_size: Size | None = Field(default=None, description="New maximum (default: keep the group's)")
    wait_in_service: bool = Field(default=True, description="Wait until `desired` instances are InService")
    allow_scale_in: bool = Field(default=False, description="Allow lowering min/desired (failback to pilot light)")

    @model_validator(mode="after")
    def _bounds(self) -> ScaleParams:
        desired = self.min_size if self.desired is None else self.desired
        if desired < self.min_size:
            raise ValueError(f"desired ({desired}) is below min_size ({self.min_size})")
        if self.max_size is not None and desired > self.max_size:
            raise ValueError(f"desired ({desired}) is above max_size ({self.max_size})")
        return self


def in_service(group: dict[str, Any]) -> int:
    """Instances that are InService and Healthy."""
    return sum(1 for i in group.get("Instances", [])
               if i.get("LifecycleState") == "InService" and i.get("HealthStatus", "Healthy") == "Healthy")


@register
class Scale(AwsAction[ScaleParams]):
    """Set an Auto Scaling group's min/desired (within max) and wait for InService instances.

    Never scales in unless ``allow_scale_in`` is set: a failover only adds capacity. moto launches
    instances InService at once; real EC2 takes minutes (launch + health check grace period).
    """

    name = "autoscaling.scale"
    capability = Capability.CAPACITY_SCALE
    Params = ScaleParams
    permissions = ("autoscaling:DescribeAutoScalingGroups", "autoscaling:UpdateAutoScalingGroup")
    example = "id: scale-app\naction: autoscaling.scale\nwith: {group: ledger-app-usw2, min_size: 2, desired: 2}\n"

    def run(self, params: ScaleParams, ctx: StepContext) -> StepResult:
        """Observe, resize when needed, wait for capacity."""
        api = connect(AutoScaling, self.region(params, ctx), ctx)
        group = self._group(api, params.group)
        current = (int(group["MinSize"]), int(group["DesiredCapacity"]), int(group["MaxSize"]))
        minimum = params.min_size
        desired = params.min_size if params.desired is None else params.desired
        if not params.allow_scale_in:
            minimum, desired = max(minimum, current[0]), max(desired, current[1])
        maximum = current[2] if params.max_size is None else params.max_size
        if desired > maximum:
            raise PreconditionFailed(f"group {params.group} would need desired {desired} above its max {maximum}",
                                     hint="set `max_size:` in the step or raise the group's maximum")
        changed = (minimum, desired) != current[:2] or maximum != current[2]
        if changed:
            ctx.log.info("scaling %s from min/desired/max %s to %s", params.group, "/".join(map(str, current)),
                         f"{minimum}/{desired}/{maximum}")
            api.resize(params.group, minimum, desired, None if params.max_size is None else maximum)
        else:
            ctx.log.info("not resizing %s: already min %d desired %d", params.group, minimum, desired)
        ready = in_service(group)
        if params.wait_in_service:
            final = poll(ctx, f"waiting for {desired} InService instances in {params.group}",
                         lambda: found if in_service(found := self._group(api, params.group)) >= desired else None,
                         params.poll_interval)
            ready = in_service(final)
        return StepResult(summary=f"{params.group}: min {minimum}, desired {desired}, {ready} InService",
                          changed=changed, outputs={"desired": str(desired), "in_service": str(ready)},
                          facts={"group": params.group, "before": list(current),
                                 "after": [minimum, desired, maximum], "in_service": ready})

    @staticmethod
    def _group(api: AutoScaling, name: str) -> dict[str, Any]:
        group = api.group(name)
        if group is None:
            raise ProviderError(f"Auto Scaling group {name} does not exist in {api.region_name}",
                                hint="check `group:` and the step's region")
        return group

    def preflight(self, params: ScaleParams, ctx: StepContext) -> list[PreflightCheck]:
        """Credentials, the group's existence and whether the wanted size fits its maximum."""
        region = self.region(params, ctx)

        def group() -> str:
            found = self._group(connect(AutoScaling, region, ctx), params.group)
            desired = params.min_size if params.desired is None else params.desired
            maximum = params.max_size if params.max_size is not None else int(found["MaxSize"])
            if desired > maximum:
                raise PreconditionFailed(f"desired {desired} exceeds the group's max {maximum}")
            return (f"min {found['MinSize']} desired {found['DesiredCapacity']} max {found['MaxSize']}, "
                    f"{in_service(found)} InService")

        return [identity_check(region, ctx), checked(f"Auto Scaling group {params.group}", group)]

    def describe(self, params: ScaleParams) -> str:
        """Group and wanted size."""
        return f"{params.group} -> min {params.min_size}, desired {params.desired or params.min_size}"
