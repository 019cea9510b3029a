"""route53.shift / route53.verify over HTTP against moto."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from dr_engine.actions.aws.route53 import RecordParams, Shift, Verify
from dr_engine.actions.base import StepContext
from dr_engine.errors import PreconditionFailed, ProviderError, TransientError, VerificationFailed
from dr_engine.world.aws_seed import AwsWorld
from dr_engine.world.faults import FaultControl

pytestmark = pytest.mark.integration
Ctx = Callable[..., StepContext]


def _records(boto: Callable[..., Any], world: AwsWorld) -> dict[str, tuple[str, str]]:
    r53 = boto("route53", "us-east-1")
    zone = r53.list_hosted_zones_by_name(DNSName=world.zone + ".")["HostedZones"][0]["Id"]
    found = r53.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
    return {r["SetIdentifier"]: (r["Failover"], r["ResourceRecords"][0]["Value"])
            for r in found if r.get("SetIdentifier")}


def _params(world: AwsWorld, **extra: Any) -> RecordParams:
    values = {"zone": world.zone, "record": world.record, "policy": "failover", "value": world.target_addr,
              "poll_interval": "10ms", **extra}
    return RecordParams.model_validate(values)


def test_failover_shift_swaps_primary_and_secondary(world: AwsWorld, aws_context: Ctx, boto: Any) -> None:
    result = Shift().run(_params(world), aws_context())
    assert result.changed
    assert result.outputs["previous"] == world.source_addr
    assert result.outputs["change_id"]
    assert _records(boto, world) == {"primary": ("PRIMARY", world.target_addr),
                                     "secondary": ("SECONDARY", world.source_addr)}
    assert not Verify().run(_params(world), aws_context()).changed


def test_shift_is_idempotent(world: AwsWorld, aws_context: Ctx, boto: Any) -> None:
    Shift().run(_params(world), aws_context())
    again = Shift().run(_params(world), aws_context())
    assert not again.changed
    assert "already in place" in again.summary
    assert _records(boto, world)["primary"] == ("PRIMARY", world.target_addr)


def test_verify_fails_before_the_shift(world: AwsWorld, aws_context: Ctx) -> None:
    with pytest.raises(VerificationFailed, match=r"does not point at 127\.0\.2\.1 yet \(answers 127\.0\.1\.1"):
        Verify().run(_params(world), aws_context())


def test_simple_record_is_created_then_left_alone(world: AwsWorld, aws_context: Ctx, boto: Any) -> None:
    params = _params(world, record="api.bank.example", policy="simple", value="127.0.2.9")
    assert Shift().run(params, aws_context()).changed
    assert not Shift().run(params, aws_context()).changed
    Verify().run(params, aws_context())


def test_weighted_shift_moves_all_weight_to_the_target(world: AwsWorld, aws_context: Ctx, boto: Any) -> None:
    r53 = boto("route53", "us-east-1")
    zone = r53.list_hosted_zones_by_name(DNSName=world.zone + ".")["HostedZones"][0]["Id"]
    r53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [
        {"Action": "UPSERT", "ResourceRecordSet": {"Name": "w.bank.example.", "Type": "A", "TTL": 60,
                                                   "SetIdentifier": sid, "Weight": weight,
                                                   "ResourceRecords": [{"Value": addr}]}}
        for sid, weight, addr in (("east", 100, "127.0.1.1"), ("west", 0, "127.0.2.1"))]})
    params = _params(world, record="w.bank.example", policy="weighted", set_id="west")
    assert Shift().run(params, aws_context()).changed
    weights = {r["SetIdentifier"]: r["Weight"] for r in
               r53.list_resource_record_sets(HostedZoneId=zone, StartRecordName="w.bank.example.",
                                             StartRecordType="A")["ResourceRecordSets"] if "Weight" in r}
    assert weights == {"east": 0, "west": 100}
    Verify().run(params, aws_context())


def test_unknown_zone_is_a_clear_permanent_error(world: AwsWorld, aws_context: Ctx) -> None:
    with pytest.raises(ProviderError, match=r"no Route 53 hosted zone named nope.example.") as caught:
        Shift().run(_params(world, zone="nope.example"), aws_context())
    assert caught.value.hint


def test_verify_of_a_missing_record(world: AwsWorld, aws_context: Ctx) -> None:
    with pytest.raises(PreconditionFailed, match=r"no A record named missing.bank.example."):
        Verify().run(_params(world, record="missing.bank.example"), aws_context())


def test_throttled_change_recovers_by_retry(world: AwsWorld, aws_context: Ctx, faults: FaultControl,
                                            boto: Any) -> None:
    faults.add("route53", "ChangeResourceRecordSets", "throttle", times=2)
    assert Shift().run(_params(world), aws_context()).changed
    assert faults.hits("route53", "ChangeResourceRecordSets") == 2
    assert _records(boto, world)["primary"][1] == world.target_addr


def test_throttling_beyond_the_retry_budget_is_transient(world: AwsWorld, aws_context: Ctx,
                                                         faults: FaultControl, boto: Any) -> None:
    faults.add("route53", "ChangeResourceRecordSets", "throttle", times=-1)
    expected = r"route53:ChangeResourceRecordSets on app\.bank\.example\. A .*Throttling"
    with pytest.raises(TransientError, match=expected):
        Shift().run(_params(world), aws_context())
    assert faults.hits("route53", "ChangeResourceRecordSets") == 3  # botocore total_max_attempts
    assert _records(boto, world)["primary"][1] == world.source_addr  # nothing changed


def test_preflight_reads_zone_and_records(world: AwsWorld, aws_context: Ctx) -> None:
    checks = Shift().preflight(_params(world), aws_context())
    assert all(c.ok for c in checks), checks
    assert any("2 A record set(s)" in c.detail for c in checks)
