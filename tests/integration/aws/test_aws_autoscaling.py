"""autoscaling.scale over HTTP against moto."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from dr_engine.actions.aws.autoscaling import Scale, ScaleParams
from dr_engine.actions.base import StepContext
from dr_engine.errors import PreconditionFailed, ProviderError, TransientError
from dr_engine.world.aws_seed import AwsWorld
from dr_engine.world.faults import FaultControl

pytestmark = pytest.mark.integration
Ctx = Callable[..., StepContext]


def _params(world: AwsWorld, **extra: Any) -> ScaleParams:
    return ScaleParams.model_validate({"group": world.group, "min_size": 2, "desired": 2, "poll_interval": "10ms",
                                       **extra})


def _group(boto: Any, world: AwsWorld) -> dict[str, Any]:
    found: dict[str, Any] = boto("autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=[world.group])["AutoScalingGroups"][0]
    return found


def test_pilot_light_becomes_warm(world: AwsWorld, aws_context: Ctx, boto: Any) -> None:
    result = Scale().run(_params(world), aws_context())
    assert result.changed
    assert result.outputs == {"desired": "2", "in_service": "2"}
    group = _group(boto, world)
    assert (group["MinSize"], group["DesiredCapacity"]) == (2, 2)
    assert sum(i["LifecycleState"] == "InService" for i in group["Instances"]) == 2


def test_scale_is_idempotent_and_never_scales_in(world: AwsWorld, aws_context: Ctx, boto: Any) -> None:
    Scale().run(_params(world, min_size=3, desired=3), aws_context())
    again = Scale().run(_params(world), aws_context())  # asks for less: keeps the larger size
    assert not again.changed
    assert _group(boto, world)["DesiredCapacity"] == 3


def test_scale_in_only_when_allowed(world: AwsWorld, aws_context: Ctx, boto: Any) -> None:
    Scale().run(_params(world), aws_context())
    Scale().run(_params(world, min_size=0, desired=0, allow_scale_in=True), aws_context())
    assert _group(boto, world)["DesiredCapacity"] == 0


def test_desired_above_max_is_refused(world: AwsWorld, aws_context: Ctx, boto: Any) -> None:
    with pytest.raises(PreconditionFailed, match="would need desired 9 above its max 4"):
        Scale().run(_params(world, min_size=9, desired=9), aws_context())
    assert _group(boto, world)["DesiredCapacity"] == 0
    assert Scale().run(_params(world, min_size=9, desired=9, max_size=9), aws_context()).changed


def test_params_reject_desired_below_min() -> None:
    with pytest.raises(ValueError, match="below min_size"):
        ScaleParams(group="g", min_size=3, desired=1)


def test_unknown_group_is_a_clear_error(world: AwsWorld, aws_context: Ctx) -> None:
    with pytest.raises(ProviderError, match="Auto Scaling group nope does not exist in us-west-2"):
        Scale().run(_params(world, group="nope"), aws_context())


def test_throttled_update_recovers(world: AwsWorld, aws_context: Ctx, faults: FaultControl) -> None:
    faults.add("autoscaling", "UpdateAutoScalingGroup", "throttle", times=2)
    assert Scale().run(_params(world), aws_context()).outputs["in_service"] == "2"
    assert faults.hits("autoscaling", "UpdateAutoScalingGroup") == 2


def test_unavailable_beyond_budget_is_transient(world: AwsWorld, aws_context: Ctx, faults: FaultControl) -> None:
    faults.add("autoscaling", "DescribeAutoScalingGroups", "unavailable", times=-1)
    with pytest.raises(TransientError, match=r"autoscaling:DescribeAutoScalingGroups .*ServiceUnavailable"):
        Scale().run(_params(world), aws_context())
    assert faults.hits("autoscaling", "DescribeAutoScalingGroups") == 3


def test_preflight_reports_current_size(world: AwsWorld, aws_context: Ctx) -> None:
    checks = Scale().preflight(_params(world), aws_context())
    assert [c.ok for c in checks] == [True, True]
    assert "min 0 desired 0 max 4" in checks[1].detail
