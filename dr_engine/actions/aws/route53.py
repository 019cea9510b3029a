"""Route 53 actions: ``route53.shift`` (traffic.shift) and ``route53.verify`` (traffic.verify).

Both compute the same *desired* record sets from the step's params and the records that exist
now; ``shift`` UPSERTs whatever differs in one atomic change batch, ``verify`` fails when anything
differs. Policies:

- ``simple``: the record (no set identifier) answers ``value``;
- ``failover``: the PRIMARY record (``primary_id``) answers ``value``; the SECONDARY record
  (``secondary_id``) answers ``secondary_value``, by default the old PRIMARY value (a swap).
  Health checks follow the endpoint they were checking;
- ``weighted``: the record ``set_id`` answers ``value`` with ``weight``; every other weighted
  record of the same name and type keeps its value with weight 0.

Route 53's control plane lives in us-east-1: a shift during an outage of us-east-1 may fail.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from dr_engine.actions.aws.base import AwsAction, PollingParams, checked, connect, identity_check, poll
from dr_engine.actions.base import PreflightCheck, StepContext, StepResult
from dr_engine.actions.registry import register
from dr_engine.capabilities import Capability
from dr_engine.errors import PreconditionFailed, VerificationFailed
from dr_engine.model import DrillBehaviour
from dr_engine.providers.aws.route53 import Route53, fqdn

Record = dict[str, Any]


class RecordParams(PollingParams):
    """Which record sets to point at the target, shared by shift and verify."""

    zone: str = Field(description="Hosted zone name (bank.example) or id (Z0123...)")
    record: str = Field(description="Record name, e.g. app.bank.example")
    type: Literal["A", "AAAA", "CNAME"] = "A"
    value: str = Field(description="What the record must answer: an address/name, or the alias DNS name")
    alias_zone_id: str | None = Field(default=None, description="Set for an alias record: the alias target's zone")
    evaluate_target_health: bool = False
    policy: Literal["simple", "failover", "weighted"] = "simple"
    ttl: Annotated[int, Field(ge=0, le=172800)] = 60
    primary_id: str = Field(default="primary", description="failover: SetIdentifier of the PRIMARY record")
    secondary_id: str = Field(default="secondary", description="failover: SetIdentifier of the SECONDARY record")
    secondary_value: str | None = Field(default=None, description="failover: SECONDARY's value (default: old primary)")
    set_id: str | None = Field(default=None, description="weighted: SetIdentifier of the target's record")
    weight: Annotated[int, Field(ge=1, le=255)] = 100

    @model_validator(mode="after")
    def _policy_fields(self) -> RecordParams:
        if self.policy == "weighted" and not self.set_id:
            raise ValueError("policy weighted needs `set_id` (the target record's SetIdentifier)")
        return self


def value_of(record: Record) -> str:
    """What a record set answers, comparable across reads (alias name or sorted values)."""
    alias = record.get("AliasTarget")
    if alias:
        return fqdn(str(alias["DNSName"]))
    return ",".join(sorted(str(r["Value"]) for r in record.get("ResourceRecords", [])))


def _wanted_value(params: RecordParams, value: str) -> str:
    return fqdn(value) if params.alias_zone_id else value


def _build(params: RecordParams, value: str, **extra: Any) -> Record:
    record: Record = {"Name": fqdn(params.record), "Type": params.type, **extra}
    if params.alias_zone_id:
        record["AliasTarget"] = {"HostedZoneId": params.alias_zone_id, "DNSName": value,
                                 "EvaluateTargetHealth": params.evaluate_target_health}
    else:
        record["TTL"] = params.ttl
        record["ResourceRecords"] = [{"Value": v} for v in value.split(",")]
    return record


def _carry(value: str, health: dict[str, str]) -> dict[str, Any]:
    """Keep a health check with the endpoint it checks."""
    return {"HealthCheckId": health[value]} if value in health else {}


def desired_changes(params: RecordParams, existing: list[Record]) -> tuple[list[Record], str | None]:
    """Record sets to UPSERT so the record points at the target, and the value it answered before."""
    target = _wanted_value(params, params.value)
    if params.policy == "simple":
        plain = next((r for r in existing if "SetIdentifier" not in r), None)
        previous = value_of(plain) if plain else None
        return ([] if previous == target else [_build(params, params.value)]), previous
    by_id = {str(r.get("SetIdentifier")): r for r in existing if "SetIdentifier" in r}
    if params.policy == "failover":
        primary, secondary = by_id.get(params.primary_id), by_id.get(params.secondary_id)
        previous = value_of(primary) if primary else None
        health = {value_of(r): str(r["HealthCheckId"]) for r in existing if r.get("HealthCheckId")}
        changes: list[Record] = []
        if previous != target:
            changes.append(_build(params, params.value, SetIdentifier=params.primary_id, Failover="PRIMARY",
                                  **_carry(target, health)))
        second = params.secondary_value or (previous if previous and previous != target else None)
        if second is not None and (secondary is None or value_of(secondary) != _wanted_value(params, second)):
            changes.append(_build(params, second, SetIdentifier=params.secondary_id, Failover="SECONDARY",
                                  **_carry(_wanted_value(params, second), health)))
        return changes, previous
    mine = by_id.get(params.set_id or "")
    previous = ",".join(f"{k}={r.get('Weight')}" for k, r in sorted(by_id.items()))
    changes = []
    if mine is None or value_of(mine) != target or int(mine.get("Weight", 0)) != params.weight:
        changes.append(_build(params, params.value, SetIdentifier=params.set_id, Weight=params.weight))
    for set_id, record in sorted(by_id.items()):
        if set_id != params.set_id and int(record.get("Weight", 0)) != 0:
            changes.append({**record, "Weight": 0})
    return changes, previous


def _describe(params: RecordParams) -> str:
    return f"{fqdn(params.record)} {params.type} ({params.policy}) -> {params.value}"


def _preflight(params: RecordParams, ctx: StepContext, region_name: str) -> list[PreflightCheck]:
    region = ctx.target if region_name == "target" else ctx.source
    checks = [identity_check(region, ctx)]

    def zone() -> str:
        api = connect(Route53, region, ctx)
        zone_id = api.zone_id(params.zone)
        found = api.records(zone_id, params.record, params.type)
        return f"zone {zone_id}: {len(found)} {params.type} record set(s) named {fqdn(params.record)}"

    checks.append(checked(f"hosted zone {params.zone} and record {params.record}", zone))
    return checks


@register
class Shift(AwsAction[RecordParams]):
    """Point a Route 53 record (simple, failover or weighted) at the target; wait until INSYNC.

    Observes the record sets first: when they already point at the target nothing is changed.
    moto answers INSYNC at once; real Route 53 takes seconds to a minute to propagate.
    """

    name = "route53.shift"
    capability = Capability.TRAFFIC_SHIFT
    Params = RecordParams
    permissions = ("route53:ListHostedZonesByName", "route53:ListResourceRecordSets",
                   "route53:ChangeResourceRecordSets", "route53:GetChange")
    # A drill must never move customer traffic.
    drill_default = DrillBehaviour.SKIP
    example = (
        "id: shift-dns\naction: route53.shift\n"
        "with: {zone: bank.example, record: app.bank.example, policy: failover, value: 127.0.2.1}\n"
    )

    def run(self, params: RecordParams, ctx: StepContext) -> StepResult:
        """Observe, UPSERT what differs, wait for INSYNC."""
        api = connect(Route53, self.region(params, ctx), ctx)
        zone_id = api.zone_id(params.zone)
        changes, previous = desired_changes(params, api.records(zone_id, params.record, params.type))
        facts: dict[str, Any] = {"zone_id": zone_id, "record": fqdn(params.record), "policy": params.policy,
                                 "previous": previous, "value": params.value}
        if not changes:
            ctx.log.info("not shifting %s: it already points at %s", fqdn(params.record), params.value)
            return StepResult(summary=f"{_describe(params)} already in place", changed=False,
                              outputs={"value": params.value, "previous": previous or ""}, facts=facts)
        ctx.log.info("shifting %s from %s to %s (%d record set(s))", fqdn(params.record), previous,
                     params.value, len(changes))
        change_id = api.upsert(zone_id, changes, f"dr-engine run {ctx.run_id} step {ctx.step_id}")
        poll(ctx, f"waiting for Route 53 change {change_id} to be INSYNC",
             lambda: True if api.change_status(change_id) == "INSYNC" else None, params.poll_interval)
        return StepResult(summary=f"{_describe(params)} (was {previous}); change {change_id} INSYNC",
                          outputs={"value": params.value, "previous": previous or "", "change_id": change_id},
                          facts={**facts, "change_id": change_id, "record_sets": len(changes)})

    def preflight(self, params: RecordParams, ctx: StepContext) -> list[PreflightCheck]:
        """Credentials, the zone and the current record sets (read-only)."""
        return _preflight(params, ctx, params.region)

    def describe(self, params: RecordParams) -> str:
        """Record and destination."""
        return _describe(params)


@register
class Verify(AwsAction[RecordParams]):
    """Check that a Route 53 record points at the target (same params as ``route53.shift``)."""

    name = "route53.verify"
    capability = Capability.TRAFFIC_VERIFY
    Params = RecordParams
    permissions = ("route53:ListHostedZonesByName", "route53:ListResourceRecordSets")
    # Pairs with route53.shift, which a drill skips.
    drill_default = DrillBehaviour.SKIP
    example = (
        "id: verify-dns\naction: route53.verify\n"
        "with: {zone: bank.example, record: app.bank.example, policy: failover, value: 127.0.2.1}\n"
    )

    def run(self, params: RecordParams, ctx: StepContext) -> StepResult:
        """Read the record sets; VerificationFailed when any differs from the target state."""
        api = connect(Route53, self.region(params, ctx), ctx)
        zone_id = api.zone_id(params.zone)
        existing = api.records(zone_id, params.record, params.type)
        if not existing:
            raise PreconditionFailed(f"no {params.type} record named {fqdn(params.record)} in zone {zone_id}",
                                     hint="check `record:`/`type:`, or run route53.shift first")
        changes, current = desired_changes(params, existing)
        if changes:
            raise VerificationFailed(
                f"{fqdn(params.record)} does not point at {params.value} yet (answers {current}; "
                f"{len(changes)} record set(s) differ)",
                hint="run route53.shift for this record, or check who changed it since")
        return StepResult(summary=f"{_describe(params)} verified", changed=False,
                          outputs={"value": params.value}, facts={"zone_id": zone_id, "value": params.value})

    def preflight(self, params: RecordParams, ctx: StepContext) -> list[PreflightCheck]:
        """Credentials and the zone (read-only)."""
        return _preflight(params, ctx, params.region)

    def describe(self, params: RecordParams) -> str:
        """Record and expected destination."""
        return _describe(params)
