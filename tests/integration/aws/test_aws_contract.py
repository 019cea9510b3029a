"""route53.shift holds the action contract against the moto server (dr_engine.testing.contracts)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from dr_engine.actions.aws.route53 import Shift
from dr_engine.actions.base import StepContext
from dr_engine.testing.contracts import ActionContract
from dr_engine.world.aws_seed import AwsWorld

pytestmark = pytest.mark.integration


def test_route53_shift_keeps_the_action_contract(world: AwsWorld, aws_context: Callable[..., StepContext],
                                                 boto: Callable[..., Any]) -> None:
    r53 = boto("route53", "us-east-1")
    zone = r53.list_hosted_zones_by_name(DNSName=world.zone + ".")["HostedZones"][0]["Id"]

    def records() -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = r53.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
        return found

    params = {"zone": world.zone, "record": world.record, "policy": "failover", "value": world.target_addr,
              "poll_interval": "10ms"}
    contract = ActionContract(Shift, params, context=aws_context, observe=records)
    contract.check_params_refuse_unknown_keys()
    checks = contract.check_preflight_has_no_side_effects()
    assert checks and all(c.ok for c in checks), checks
    before = records()
    first, again = contract.check_rerun_changes_nothing()
    assert first.changed is True and records() != before
    assert "already in place" in again.summary
