"""``cloudwatch.verify_alarms`` (health.verify): the named alarms are OK in the region."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from dr_engine.actions.aws.base import AwsAction, PollingParams, checked, connect, identity_check
from dr_engine.actions.base import PreflightCheck, StepContext, StepResult
from dr_engine.actions.registry import register
from dr_engine.capabilities import Capability
from dr_engine.errors import PreconditionFailed, VerificationFailed
from dr_engine.providers.aws.cloudwatch import CloudWatch


class AlarmsParams(PollingParams):
    """Parameters of ``cloudwatch.verify_alarms``."""

    alarms: Annotated[list[str], Field(min_length=1, description="Alarm names that must all be OK")]
    allow_insufficient_data: bool = Field(default=False, description="Count INSUFFICIENT_DATA as healthy")


def _states(api: CloudWatch, names: list[str]) -> dict[str, str]:
    found = api.alarms(names)
    missing = [n for n in names if n not in found]
    if missing:
        raise PreconditionFailed(f"alarm(s) {', '.join(missing)} do not exist in {api.region_name}",
                                 hint="check the names, or create the alarms (they define 'healthy')")
    return {n: str(found[n]["StateValue"]) for n in names}


@register
class VerifyAlarms(AwsAction[AlarmsParams]):
    """Healthy once every named CloudWatch alarm is OK; polls until then or the step deadline.

    moto changes alarm states only through SetAlarmState (it evaluates no metrics).
    """

    name = "cloudwatch.verify_alarms"
    capability = Capability.HEALTH_VERIFY
    Params = AlarmsParams
    permissions = ("cloudwatch:DescribeAlarms",)
    example = "id: alarms-ok\naction: cloudwatch.verify_alarms\nwith: {alarms: [ledger-app-5xx], poll_interval: 1s}\n"

    def run(self, params: AlarmsParams, ctx: StepContext) -> StepResult:
        """Poll alarm states; VerificationFailed when not all OK by the deadline."""
        api = connect(CloudWatch, self.region(params, ctx), ctx)
        healthy = {"OK", "INSUFFICIENT_DATA"} if params.allow_insufficient_data else {"OK"}
        probes = 0
        ctx.deadline.check(f"starting to check alarms {', '.join(params.alarms)}")
        while True:
            probes += 1
            states = _states(api, params.alarms)
            bad = {n: s for n, s in states.items() if s not in healthy}
            if not bad:
                return StepResult(summary=f"{len(states)} alarm(s) OK in {api.region_name}", changed=False,
                                  facts={"alarms": states, "probes": probes})
            # Not healthy by the deadline is a verification failure, not a timeout.
            if ctx.deadline.expired or ctx.deadline.remaining() <= params.poll_interval.total_seconds():
                shown = ", ".join(f"{n}={s}" for n, s in sorted(bad.items()))
                raise VerificationFailed(f"alarms not OK in {api.region_name} after {probes} probe(s): {shown}",
                                         hint="investigate the alarming service before shifting traffic")
            ctx.log.info("waiting for alarms: %s", ", ".join(f"{n}={s}" for n, s in sorted(bad.items())))
            ctx.clock.sleep(params.poll_interval.total_seconds())

    def preflight(self, params: AlarmsParams, ctx: StepContext) -> list[PreflightCheck]:
        """Credentials, the alarms exist, their current states."""
        region = self.region(params, ctx)

        def probe() -> str:
            states: dict[str, Any] = _states(connect(CloudWatch, region, ctx), params.alarms)
            return ", ".join(f"{n}={s}" for n, s in states.items())

        return [identity_check(region, ctx), checked(f"alarms in {region.name}", probe)]

    def describe(self, params: AlarmsParams) -> str:
        """Alarm names."""
        return ", ".join(params.alarms)[:80]
