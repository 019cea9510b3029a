"""cloudwatch.verify_alarms over HTTP against moto."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from dr_engine.actions.aws.cloudwatch import AlarmsParams, VerifyAlarms
from dr_engine.actions.base import StepContext
from dr_engine.errors import PreconditionFailed, StepTimeout, TransientError, VerificationFailed
from dr_engine.world.aws_seed import AwsWorld
from dr_engine.world.faults import FaultControl

pytestmark = pytest.mark.integration
Ctx = Callable[..., StepContext]


def _params(world: AwsWorld, **extra: Any) -> AlarmsParams:
    return AlarmsParams.model_validate({"alarms": list(world.alarms), "poll_interval": "50ms", **extra})


def test_all_alarms_ok(world: AwsWorld, aws_context: Ctx) -> None:
    result = VerifyAlarms().run(_params(world), aws_context())
    assert result.facts["alarms"] == {a: "OK" for a in world.alarms}
    assert not result.changed


def test_an_alarm_in_alarm_fails_verification_by_the_deadline(world: AwsWorld, aws_context: Ctx,
                                                              boto: Any) -> None:
    boto("cloudwatch").set_alarm_state(AlarmName=world.alarms[0], StateValue="ALARM", StateReason="test")
    with pytest.raises(VerificationFailed, match=f"{world.alarms[0]}=ALARM"):
        VerifyAlarms().run(_params(world), aws_context(timeout=1.0))


def test_alarm_recovering_while_polling_passes(world: AwsWorld, aws_context: Ctx, boto: Any) -> None:
    cloudwatch = boto("cloudwatch")
    cloudwatch.set_alarm_state(AlarmName=world.alarms[0], StateValue="ALARM", StateReason="test")
    recovered = threading.Event()

    def recover() -> None:
        recovered.wait(0.3)
        cloudwatch.set_alarm_state(AlarmName=world.alarms[0], StateValue="OK", StateReason="recovered")

    helper = threading.Thread(target=recover)
    helper.start()
    try:
        result = VerifyAlarms().run(_params(world), aws_context(timeout=20.0))
    finally:
        helper.join()
    assert result.facts["probes"] > 1


def test_insufficient_data_counts_only_when_allowed(world: AwsWorld, aws_context: Ctx, boto: Any) -> None:
    boto("cloudwatch").set_alarm_state(AlarmName=world.alarms[1], StateValue="INSUFFICIENT_DATA", StateReason="t")
    with pytest.raises(VerificationFailed, match="INSUFFICIENT_DATA"):
        VerifyAlarms().run(_params(world), aws_context(timeout=0.5))
    VerifyAlarms().run(_params(world, allow_insufficient_data=True), aws_context())


def test_missing_alarm_is_a_precondition(world: AwsWorld, aws_context: Ctx) -> None:
    with pytest.raises(PreconditionFailed, match="alarm\\(s\\) nope do not exist in us-west-2"):
        VerifyAlarms().run(_params(world, alarms=["nope", world.alarms[0]]), aws_context())


def test_throttled_describe_recovers(world: AwsWorld, aws_context: Ctx, faults: FaultControl) -> None:
    faults.add("cloudwatch", "DescribeAlarms", "throttle", times=2)
    VerifyAlarms().run(_params(world), aws_context())
    assert faults.hits("cloudwatch", "DescribeAlarms") == 2


def test_throttled_beyond_budget_is_transient(world: AwsWorld, aws_context: Ctx, faults: FaultControl) -> None:
    faults.add("cloudwatch", "DescribeAlarms", "throttle", times=-1)
    with pytest.raises(TransientError, match=r"cloudwatch:DescribeAlarms on alarms .*ThrottlingException"):
        VerifyAlarms().run(_params(world), aws_context())


def test_slow_endpoint_times_out_within_the_step_deadline(world: AwsWorld, aws_context: Ctx,
                                                          faults: FaultControl) -> None:
    # The read timeout is capped by the deadline, so a hung endpoint cannot hold the step.
    faults.add("cloudwatch", "DescribeAlarms", "delay", times=-1, delay=3.0)
    with pytest.raises((TransientError, StepTimeout)) as caught:
        VerifyAlarms().run(_params(world), aws_context(timeout=0.5))
    assert "timed out" in str(caught.value) or "deadline" in str(caught.value)
