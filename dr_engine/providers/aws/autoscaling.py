"""Auto Scaling: describe a group and set its size."""

from __future__ import annotations

from typing import Any

from dr_engine.providers.aws.api import AwsApi


class AutoScaling(AwsApi):
    """EC2 Auto Scaling in one region."""

    service = "autoscaling"

    def group(self, name: str) -> dict[str, Any] | None:
        """The group description, or None when no such group exists."""
        found = self.call("describe_auto_scaling_groups", f"Auto Scaling group {name}",
                          AutoScalingGroupNames=[name])
        groups = found.get("AutoScalingGroups", [])
        return dict(groups[0]) if groups else None

    def resize(self, name: str, min_size: int, desired: int, max_size: int | None) -> None:
        """UpdateAutoScalingGroup with the new bounds and desired capacity."""
        kwargs: dict[str, Any] = {"AutoScalingGroupName": name, "MinSize": min_size, "DesiredCapacity": desired}
        if max_size is not None:
            kwargs["MaxSize"] = max_size
        self.call("update_auto_scaling_group", f"Auto Scaling group {name}", **kwargs)
