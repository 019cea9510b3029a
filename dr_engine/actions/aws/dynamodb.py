"""``dynamodb.verify_replica`` (data.verify): the table's replica in the target region is usable.

Checks that the table is ACTIVE in the target, that the source lists the target as an ACTIVE
replica (global tables, when the source reports replicas), that a marker item is present, and
optionally that item counts match. Counting scans the tables (fine for small tables; the
``ItemCount`` statistic is only refreshed about every six hours). moto does not replicate global
tables: tests write to both regions themselves.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from dr_engine.actions.aws.base import AwsAction, checked, connect, identity_check
from dr_engine.actions.base import ActionParams, PreflightCheck, RpoObservation, StepContext, StepResult
from dr_engine.actions.registry import register
from dr_engine.capabilities import Capability
from dr_engine.errors import PreconditionFailed, VerificationFailed
from dr_engine.model import Region
from dr_engine.providers.aws.dynamodb import DynamoDb, KeyValue


class ReplicaParams(ActionParams):
    """Parameters of ``dynamodb.verify_replica``."""

    table: str = Field(description="Table name (the same in both regions for global tables)")
    marker_key: dict[str, KeyValue] | None = Field(default=None, description="Primary key of an item that must exist")
    compare_counts: bool = Field(default=False, description="Scan both tables and compare item counts")
    max_missing: int = Field(default=0, ge=0, description="Items the target may lack when comparing counts")


def _table(api: DynamoDb, name: str) -> dict[str, Any]:
    found = api.table(name)
    if found is None:
        raise PreconditionFailed(f"table {name} does not exist in {api.region_name}",
                                 hint="create the replica (global table) in the target region")
    return found


@register
class VerifyReplica(AwsAction[ReplicaParams]):
    """The DynamoDB table is ACTIVE in the target, replicated, holds the marker and enough items."""

    name = "dynamodb.verify_replica"
    capability = Capability.DATA_VERIFY
    Params = ReplicaParams
    permissions = ("dynamodb:DescribeTable", "dynamodb:GetItem", "dynamodb:Scan")
    example = ("id: verify-sessions\naction: dynamodb.verify_replica\n"
               "with: {table: ledger-sessions, marker_key: {pk: dr-marker}}\n")

    def run(self, params: ReplicaParams, ctx: StepContext) -> StepResult:
        """Describe, probe the marker, compare counts; VerificationFailed on any gap."""
        target = connect(DynamoDb, ctx.target, ctx)
        table = _table(target, params.table)
        if table.get("TableStatus") != "ACTIVE":
            raise VerificationFailed(f"table {params.table} is {table.get('TableStatus')} in {target.region_name}",
                                     hint="wait for it to become ACTIVE")
        source = connect(DynamoDb, ctx.source, ctx)
        facts: dict[str, Any] = {"table": params.table, "status": "ACTIVE"}
        replicas = {str(r.get("RegionName")): str(r.get("ReplicaStatus")) for r in
                    (source.table(params.table) or {}).get("Replicas", [])}
        if replicas:
            facts["replicas"] = replicas
            if replicas.get(target.region_name) != "ACTIVE":
                raise VerificationFailed(f"source table {params.table} does not list {target.region_name} as an "
                                         f"ACTIVE replica ({replicas})", hint="add or repair the replica")
        if params.marker_key is not None and not target.has_item(params.table, params.marker_key):
            raise VerificationFailed(f"marker item {params.marker_key} not found in {params.table} "
                                     f"({target.region_name})", hint="replication is behind or broken")
        rpo = None
        if params.compare_counts:
            have, want = target.count(params.table), source.count(params.table)
            facts.update(target_items=have, source_items=want)
            rpo = RpoObservation(rows_lost=max(want - have, 0))
            if want - have > params.max_missing:
                raise VerificationFailed(f"table {params.table} has {have} items in {target.region_name} but {want} "
                                         f"in {source.region_name}", hint="replication is behind; wait or investigate")
        return StepResult(summary=f"table {params.table} verified in {target.region_name}", changed=False,
                          facts=facts, rpo=rpo)

    def preflight(self, params: ReplicaParams, ctx: StepContext) -> list[PreflightCheck]:
        """Credentials and the table in both regions."""
        checks = [identity_check(ctx.source, ctx), identity_check(ctx.target, ctx)]
        for region in (ctx.source, ctx.target):

            def probe(region: Region = region) -> str:
                return str(_table(connect(DynamoDb, region, ctx), params.table).get("TableStatus"))

            checks.append(checked(f"table {params.table} ({region.name})", probe))
        return checks
