"""Capacity of the target region for a whole evacuation, read before anything changes.

One application's pre-flight checks that *its* Auto Scaling group can take the size it asks
for. An evacuation adds what only the sum shows: every group the plan scales, with the
applications that scale it (two applications resizing one group would undo each other: a
problem), its size now and the size wanted against its maximum, the instances the evacuation
adds in each region, and the account's EC2 On-Demand vCPU quota where the Service Quotas API
answers (the local AWS endpoint does not: it says so rather than guess).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dr_engine.actions.aws.autoscaling import ScaleParams
from dr_engine.clock import Deadline, SystemClock
from dr_engine.errors import DrError
from dr_engine.model import Region
from dr_engine.planning.evacuation import EvacuationPlan

#: Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances, in vCPUs.
EC2_VCPU_QUOTA = ("ec2", "L-1216C47A")
#: Seconds for the reads of one region.
READ_SECONDS = 10.0


@dataclass
class GroupDemand:
    """One Auto Scaling group the evacuation scales, and what it finds there."""

    region: str
    group: str
    applications: list[str] = field(default_factory=list)
    wanted: int = 0
    max_param: int | None = None
    current_desired: int | None = None
    current_max: int | None = None
    error: str | None = None

    @property
    def problem(self) -> str | None:
        """Why this group cannot take the evacuation (None when it can)."""
        if len(self.applications) > 1:
            return f"scaled by {', '.join(self.applications)}: each would undo the other's size"
        if self.error is not None:
            return self.error
        maximum = self.max_param if self.max_param is not None else self.current_max
        if maximum is not None and self.wanted > maximum:
            return f"wants {self.wanted} instances, the group's maximum is {maximum}"
        return None

    @property
    def added(self) -> int:
        """Instances the evacuation adds (0 when unknown or scaling in)."""
        return max(0, self.wanted - (self.current_desired or 0)) if self.current_desired is not None else 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"region": self.region, "group": self.group, "applications": self.applications,
                "wanted": self.wanted, "max_param": self.max_param, "current_desired": self.current_desired,
                "current_max": self.current_max, "added": self.added, "problem": self.problem}


@dataclass
class CapacityReport:
    """Every group's demand, and the EC2 vCPU quota per region ("not answered: ..." when unknown)."""

    groups: list[GroupDemand] = field(default_factory=list)
    quotas: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no group has a problem."""
        return all(g.problem is None for g in self.groups)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"ok": self.ok, "groups": [g.to_dict() for g in self.groups], "ec2_vcpu_quota": self.quotas}


def demands(plan: EvacuationPlan) -> tuple[list[GroupDemand], dict[str, Region]]:
    """The groups the plan's ``autoscaling.scale`` steps resize (params known at plan time)."""
    found: dict[tuple[str, str], GroupDemand] = {}
    regions: dict[str, Region] = {}
    for app in plan.applications:
        loaded = plan.plans[app.name].loaded
        for step in plan.plans[app.name].steps:
            params = loaded.params.get(step.id)
            if step.action != "autoscaling.scale" or not isinstance(params, ScaleParams):
                continue
            region = loaded.target if params.region == "target" else loaded.source
            regions[region.name] = region
            demand = found.setdefault((region.name, params.group), GroupDemand(region.name, params.group))
            if app.name not in demand.applications:
                demand.applications.append(app.name)
            demand.wanted = max(demand.wanted, params.min_size if params.desired is None else params.desired)
            if params.max_size is not None:
                demand.max_param = max(demand.max_param or 0, params.max_size)
    return list(found.values()), regions


def check_capacity(plan: EvacuationPlan) -> CapacityReport:
    """Read each group and each region's vCPU quota (read-only AWS calls, bounded by a deadline)."""
    from dr_engine.providers.aws.autoscaling import AutoScaling
    from dr_engine.providers.aws.quotas import ServiceQuotas
    from dr_engine.providers.aws.session import AwsTarget

    groups, regions = demands(plan)
    report = CapacityReport(groups=groups)
    for name, region in regions.items():
        if region.aws is None:
            continue
        deadline = Deadline(SystemClock(), READ_SECONDS)
        target = AwsTarget.of(region)
        for demand in (g for g in groups if g.region == name):
            try:
                found = AutoScaling(target, deadline).group(demand.group)
            except DrError as exc:
                demand.error = f"cannot read the group: {exc.message}"
                continue
            if found is None:
                demand.error = f"no Auto Scaling group {demand.group} in {name}"
                continue
            demand.current_desired, demand.current_max = int(found["DesiredCapacity"]), int(found["MaxSize"])
        try:
            value = ServiceQuotas(target, deadline).value(*EC2_VCPU_QUOTA)
            report.quotas[name] = f"{value:g} vCPUs"
        except DrError as exc:
            report.quotas[name] = f"not answered: {exc.message}"
    return report


__all__ = ["EC2_VCPU_QUOTA", "CapacityReport", "GroupDemand", "check_capacity", "demands"]
