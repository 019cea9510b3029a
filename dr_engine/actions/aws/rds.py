"""RDS actions: ``rds.promote_replica`` (data.promote) and ``rds.check_replica`` (data.check).

A cross-region read replica in the target region is promoted to a standalone, writable instance.
The planner pairs the promote with a fence of the same dataset (the DB instance identifier).
Replica lag comes from the ``AWS/RDS ReplicaLag`` CloudWatch metric (seconds).

moto models the promotion's surface only: the instance is ``available`` at once and keeps
listing its replica source afterwards, and no lag metric exists unless a test puts one.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import Field, field_validator

from dr_engine.actions.aws.base import AwsAction, AwsParams, PollingParams, checked, connect, identity_check, poll
from dr_engine.actions.base import PreflightCheck, RpoObservation, StepContext, StepResult
from dr_engine.actions.registry import register
from dr_engine.capabilities import Capability
from dr_engine.capabilities.data import rpo_gate
from dr_engine.errors import PreconditionFailed, ProviderError
from dr_engine.model import DrillBehaviour
from dr_engine.model.units import Duration
from dr_engine.providers.aws.cloudwatch import CloudWatch
from dr_engine.providers.aws.rds import Rds

#: How far back to look for the latest ReplicaLag datapoint.
LAG_WINDOW = timedelta(minutes=5)
#: Why ``require_lag`` is refused: it used to default to letting unknown lag through.
REQUIRE_LAG_REMOVED = ("require_lag is no longer accepted: unknown replica lag (no ReplicaLag datapoint) now "
                       "always fails closed, counting as over the RPO, unless the run is started with "
                       "--allow-data-loss (audited); remove the key")


class PromoteParams(PollingParams):
    """Parameters of ``rds.promote_replica``."""

    db_instance: str = Field(description="Identifier of the read replica in the region")
    backup_retention_days: int | None = Field(default=None, ge=0, le=35,
                                              description="Backup retention to set on the promoted instance")


class CheckReplicaParams(AwsParams):
    """Parameters of ``rds.check_replica``."""

    db_instance: str = Field(description="Identifier of the read replica in the region")
    max_lag: Duration | None = Field(default=None, description="Largest acceptable lag (default: the runbook RPO)")
    require_lag: bool | None = Field(
        default=None, description="Removed (refused when given): unknown lag always fails closed unless the run "
        "allows data loss")

    @field_validator("require_lag")
    @classmethod
    def _require_lag_removed(cls, value: bool | None) -> bool | None:
        # Refused whatever its value: `true` is now the only behaviour, and `false` (the old
        # default) would silently mean something else than it used to.
        raise ValueError(REQUIRE_LAG_REMOVED)


def _source(instance: dict[str, Any]) -> str | None:
    value = instance.get("ReadReplicaSourceDBInstanceIdentifier")
    return str(value) if value else None


def _describe(api: Rds, db: str) -> dict[str, Any]:
    found = api.describe(db)
    if found is None:
        raise ProviderError(f"DB instance {db} does not exist in {api.region_name}",
                            hint="check `db_instance:` and the step's region")
    return found


@register
class PromoteReplica(AwsAction[PromoteParams]):
    """Promote a cross-region RDS read replica; wait until it is available and standalone.

    Observes first: an instance that is no longer a replica is reported as already promoted.
    Real RDS reboots the instance (minutes); moto completes at once.
    """

    name = "rds.promote_replica"
    capability = Capability.DATA_PROMOTE
    Params = PromoteParams
    permissions = ("rds:DescribeDBInstances", "rds:PromoteReadReplica")
    example = "id: promote-db\naction: rds.promote_replica\nwith: {db_instance: ledger-db-usw2}\n"
    drill_default = DrillBehaviour.SKIP

    def dataset(self, params: PromoteParams) -> str | None:
        """The DB instance identifier (fences of the same dataset must precede the promote)."""
        return params.db_instance

    def run(self, params: PromoteParams, ctx: StepContext) -> StepResult:
        """Observe, promote when still a replica, wait for ``available``."""
        api = connect(Rds, self.region(params, ctx), ctx)
        instance = _describe(api, params.db_instance)
        source = _source(instance)
        if source is None:
            ctx.log.info("not promoting %s: it is not a read replica (already promoted)", params.db_instance)
            return StepResult(summary=f"{params.db_instance} already standalone ({instance['DBInstanceStatus']})",
                              changed=False, outputs=self._outputs(instance), facts={"already_promoted": True})
        ctx.log.info("promoting %s (replica of %s) in %s", params.db_instance, source, api.region_name)
        try:
            answered = api.promote(params.db_instance, params.backup_retention_days)
        except ProviderError as exc:
            # A promotion started by a crashed earlier attempt: the API refuses a second one.
            if "InvalidDBInstanceState" not in exc.message:
                raise
            ctx.log.info("promotion already under way for %s: %s", params.db_instance, exc.message)
            answered = {}
        detach_visible = answered.get("DBInstanceStatus") != "available"

        def probe() -> dict[str, Any] | None:
            now = _describe(api, params.db_instance)
            ready = now["DBInstanceStatus"] == "available" and (_source(now) is None or not detach_visible)
            return now if ready else None

        final = poll(ctx, f"waiting for {params.db_instance} to be available after promotion", probe,
                     params.poll_interval)
        return StepResult(summary=f"promoted {params.db_instance} (was replica of {source})",
                          outputs=self._outputs(final), facts={"previous_source": source,
                                                               "status": final["DBInstanceStatus"]})

    @staticmethod
    def _outputs(instance: dict[str, Any]) -> dict[str, str]:
        endpoint = instance.get("Endpoint") or {}
        return {"endpoint": str(endpoint.get("Address", "")), "port": str(endpoint.get("Port", "")),
                "arn": str(instance.get("DBInstanceArn", ""))}

    def preflight(self, params: PromoteParams, ctx: StepContext) -> list[PreflightCheck]:
        """Credentials and the replica's existence and state."""
        region = self.region(params, ctx)

        def replica() -> str:
            found = _describe(connect(Rds, region, ctx), params.db_instance)
            source = _source(found)
            return f"{found['DBInstanceStatus']}, " + (f"replica of {source}" if source else "not a replica")

        return [identity_check(region, ctx), checked(f"DB instance {params.db_instance}", replica)]


@register
class CheckReplica(AwsAction[CheckReplicaParams]):
    """Gate: the RDS replica exists, is available, still replicates, and lags less than allowed.

    Lag over ``max_lag`` (default: the RPO) refuses unless the run allows data loss (audited).
    So does unknown lag (no ``ReplicaLag`` datapoint in the last 5 minutes): it counts as over.
    The decision is the shared RPO gate (:func:`dr_engine.capabilities.data.rpo_gate`).
    """

    name = "rds.check_replica"
    capability = Capability.DATA_CHECK
    Params = CheckReplicaParams
    permissions = ("rds:DescribeDBInstances", "cloudwatch:GetMetricStatistics")
    example = "id: check-db\naction: rds.check_replica\nwith: {db_instance: ledger-db-usw2, max_lag: 30s}\n"
    safety_critical = True

    def dataset(self, params: CheckReplicaParams) -> str | None:
        """The DB instance identifier."""
        return params.db_instance

    def _observe(self, params: CheckReplicaParams, ctx: StepContext) -> tuple[dict[str, Any], float | None]:
        region = self.region(params, ctx)
        instance = _describe(connect(Rds, region, ctx), params.db_instance)
        if instance["DBInstanceStatus"] != "available":
            raise PreconditionFailed(f"replica {params.db_instance} is {instance['DBInstanceStatus']}, not available",
                                     hint="wait for it or investigate in the RDS console")
        if _source(instance) is None:
            raise PreconditionFailed(f"{params.db_instance} is not a read replica (already promoted?)",
                                     hint="if a previous run promoted it, skip this gate with `dr resume`")
        lag = connect(CloudWatch, region, ctx).latest(
            "AWS/RDS", "ReplicaLag", {"DBInstanceIdentifier": params.db_instance}, ctx.clock.now(), LAG_WINDOW)
        return instance, lag

    def run(self, params: CheckReplicaParams, ctx: StepContext) -> StepResult:
        """Check state and lag; the RPO gate refuses over the limit or unknown (unless data loss is allowed)."""
        instance, lag = self._observe(params, ctx)
        limit = params.max_lag or ctx.objectives.rpo
        observed = RpoObservation(lag_seconds=lag)
        if lag is None:
            ctx.log.info("replica lag of %s unknown: no ReplicaLag datapoint in the last %gs", params.db_instance,
                         LAG_WINDOW.total_seconds())
        verdict = rpo_gate(observed, limit, ctx, subject=f"replica {params.db_instance}",
                           where="CloudWatch AWS/RDS ReplicaLag" if lag is not None else
                           f"no ReplicaLag datapoint in the last {LAG_WINDOW.total_seconds():g}s",
                           limit_name="max_lag" if params.max_lag is not None else "the RPO")
        facts: dict[str, Any] = {"source": _source(instance), "lag_seconds": lag,
                                 "max_lag_seconds": limit.total_seconds(), **verdict.facts()}
        shown = "unknown" if lag is None else f"{lag:g}s"
        return StepResult(summary=f"{params.db_instance} replicating from {_source(instance)}, lag {shown}"
                                  + (" (proceeding: allow-data-loss)" if verdict.overridden else ""),
                          changed=False, facts=facts, rpo=observed,
                          outputs={"lag_seconds": "" if lag is None else f"{lag:g}"})

    def preflight(self, params: CheckReplicaParams, ctx: StepContext) -> list[PreflightCheck]:
        """Credentials, state and current lag (read-only)."""

        def probe() -> str:
            _, lag = self._observe(params, ctx)
            return f"available, lag {'unknown' if lag is None else f'{lag:g}s'}"

        return [identity_check(self.region(params, ctx), ctx), checked(f"replica {params.db_instance}", probe)]
