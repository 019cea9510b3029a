"""What every AWS action shares: the region selector, provider construction, polling, pre-flight.

Actions never import boto3: they build providers from :mod:`dr_engine.providers.aws` and decide.
Waiting is done here by polling on the injected clock, bounded by the step deadline (a real AWS
waiter would block a thread past it). moto never takes time, so against moto every wait ends on
the first probe.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Literal, TypeVar

from pydantic import Field

from dr_engine.actions.base import Action, ActionParams, P, PreflightCheck, StepContext
from dr_engine.errors import DrError
from dr_engine.model import Region
from dr_engine.model.units import Duration
from dr_engine.providers.aws.api import AwsApi
from dr_engine.providers.aws.sts import Sts

A = TypeVar("A", bound=AwsApi)
T = TypeVar("T")

RegionRole = Literal["source", "target"]


class AwsParams(ActionParams):
    """Fields shared by AWS actions."""

    region: RegionRole = Field(default="target", description="Act in the runbook's source or target region")


class PollingParams(AwsParams):
    """AWS actions that wait for a resource to settle."""

    poll_interval: Duration = Field(default=timedelta(seconds=5), description="Delay between status probes")


def region_of(ctx: StepContext, role: RegionRole) -> Region:
    """The dr-engine region the step acts in."""
    return ctx.target if role == "target" else ctx.source


def connect(api: type[A], region: Region, ctx: StepContext) -> A:
    """A provider for ``region`` whose socket timeouts are capped by the step deadline."""
    provider = api.of(region, ctx.deadline)
    assert isinstance(provider, api)
    return provider


def poll(ctx: StepContext, what: str, probe: Callable[[], T | None], interval: timedelta) -> T:
    """Call ``probe`` until it returns a value; sleep ``interval`` between probes; StepTimeout at the deadline."""
    while True:
        ctx.deadline.check(what)
        result = probe()
        if result is not None:
            return result
        ctx.deadline.check(what)
        ctx.clock.sleep(min(interval.total_seconds(), ctx.deadline.remaining()))


def checked(name: str, probe: Callable[[], str]) -> PreflightCheck:
    """Run one read-only probe; a DrError becomes a failed check (``probe`` returns the detail)."""
    try:
        return PreflightCheck(name, True, probe())
    except DrError as exc:
        return PreflightCheck(name, False, exc.message)


def identity_check(region: Region, ctx: StepContext) -> PreflightCheck:
    """STS GetCallerIdentity in ``region`` (cached per region for one pre-flight pass)."""
    cache = ctx.identity_checks
    if region.name not in cache:

        def probe() -> str:
            found = connect(Sts, region, ctx).identity()
            return f"account {found['Account']} as {found['Arn']}"

        cache[region.name] = checked(f"AWS credentials for {region.name} (sts:GetCallerIdentity)", probe)
    result: PreflightCheck = cache[region.name]
    return result


class AwsAction(Action[P]):
    """Base of AWS actions (not registered itself)."""

    def region(self, params: P, ctx: StepContext) -> Region:
        """The region a step acts in (``region:`` param, default target)."""
        role: RegionRole = getattr(params, "region", "target")
        return region_of(ctx, role)
