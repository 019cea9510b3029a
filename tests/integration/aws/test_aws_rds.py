"""rds.check_replica / rds.promote_replica over HTTP against moto."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from dr_engine.actions.aws.rds import CheckReplica, CheckReplicaParams, PromoteParams, PromoteReplica
from dr_engine.actions.base import StepContext
from dr_engine.errors import PreconditionFailed, ProviderError, TransientError
from dr_engine.evidence.audit import AuditLog, read_events, verify
from dr_engine.retry import RetryPolicy, call_with_retry
from dr_engine.world.aws_seed import AwsWorld
from dr_engine.world.faults import FaultControl

pytestmark = pytest.mark.integration
Ctx = Callable[..., StepContext]


def _lag(boto: Any, world: AwsWorld, seconds: float) -> None:
    boto("cloudwatch").put_metric_data(Namespace="AWS/RDS", MetricData=[{
        "MetricName": "ReplicaLag", "Value": seconds, "Unit": "Seconds", "Timestamp": datetime.now(UTC),
        "Dimensions": [{"Name": "DBInstanceIdentifier", "Value": world.replica}]}])


def test_check_replica_reports_lag_within_the_rpo(world: AwsWorld, aws_context: Ctx, boto: Any) -> None:
    _lag(boto, world, 3.0)
    result = CheckReplica().run(CheckReplicaParams(db_instance=world.replica), aws_context(rpo="30s"))
    assert result.rpo is not None and result.rpo.lag_seconds == 3.0
    assert "replicating from" in result.summary


def test_lag_over_the_rpo_refuses_unless_data_loss_is_allowed(world: AwsWorld, aws_context: Ctx,
                                                             boto: Any, tmp_path: Path) -> None:
    _lag(boto, world, 120.0)
    params = CheckReplicaParams(db_instance=world.replica)
    with pytest.raises(PreconditionFailed, match=r"replica ledger-db-usw2 is behind \(120.000 s; .*over the RPO of 30s"
                       ) as caught:
        CheckReplica().run(params, aws_context(rpo="30s"))
    assert "--allow-data-loss" in (caught.value.hint or "")
    log = AuditLog(tmp_path / "audit.jsonl", "test-run")
    allowed = CheckReplica().run(params, aws_context(rpo="30s", allow_data_loss=True, emit=log.append))
    assert allowed.facts["override"] == "allow-data-loss" and allowed.facts["rpo_gate"] == "over"
    assert [e["data"]["kind"] for e in read_events(log.path)] == ["rpo-exceeded"]


def test_unknown_lag_refuses_unless_data_loss_is_allowed_and_then_the_override_is_audited(
        world: AwsWorld, aws_context: Ctx, tmp_path: Path) -> None:
    # No ReplicaLag datapoint: the lag is unknown, which counts as over the RPO (fail closed).
    params = CheckReplicaParams(db_instance=world.replica, max_lag="30s")  # type: ignore[arg-type]
    with pytest.raises(PreconditionFailed, match="lag of replica ledger-db-usw2 is unknown") as refused:
        CheckReplica().run(params, aws_context(rpo="30s"))
    assert "--allow-data-loss" in (refused.value.hint or "")

    # Allowed: it proceeds, and the run's audit log gets an override event saying why.
    log = AuditLog(tmp_path / "audit.jsonl", "test-run")
    allowed = CheckReplica().run(params, aws_context(rpo="30s", allow_data_loss=True, step_id="check-db",
                                                     emit=log.append))
    assert allowed.facts["rpo_gate"] == "unknown" and allowed.facts["override"] == "allow-data-loss"
    assert allowed.rpo is not None and allowed.rpo.lag_seconds is None
    events = read_events(log.path)
    assert [(e["type"], e["data"]["kind"], e["data"]["step"]) for e in events] == [
        ("override", "rpo-unknown-lag", "check-db")]
    assert "passed on unknown lag because the run allows data loss" in events[0]["data"]["detail"]
    assert verify(log.path).ok


def test_require_lag_is_refused_with_what_to_do(world: AwsWorld) -> None:
    # The option used to let unknown lag through by default; unknown lag now always fails closed.
    with pytest.raises(ValidationError, match="require_lag is no longer accepted"):
        CheckReplicaParams.model_validate({"db_instance": world.replica, "require_lag": False})


def test_promote_then_rerun(world: AwsWorld, aws_context: Ctx, boto: Any) -> None:
    params = PromoteParams(db_instance=world.replica, poll_interval="10ms")  # type: ignore[arg-type]
    first = PromoteReplica().run(params, aws_context())
    assert first.changed
    assert first.facts["previous_source"].endswith(f":db:{world.db}")
    # moto keeps listing the replica source after promotion, so the re-run promotes again
    # (harmless there); against RDS the observation finds a standalone instance and returns early.
    again = PromoteReplica().run(params, aws_context())
    assert again.outputs["arn"] == first.outputs["arn"]
    assert boto("rds").describe_db_instances(DBInstanceIdentifier=world.replica)["DBInstances"][0][
        "DBInstanceStatus"] == "available"


def test_promote_of_a_standalone_instance_changes_nothing(world: AwsWorld, aws_context: Ctx) -> None:
    result = PromoteReplica().run(PromoteParams(db_instance=world.db, region="source"), aws_context())
    assert not result.changed
    assert result.facts == {"already_promoted": True}
    assert PromoteReplica().dataset(PromoteParams(db_instance=world.db)) == world.db


def test_missing_instance_is_a_clear_error(world: AwsWorld, aws_context: Ctx) -> None:
    with pytest.raises(ProviderError, match="DB instance nope does not exist in us-west-2"):
        PromoteReplica().run(PromoteParams(db_instance="nope"), aws_context())


def test_transient_promote_failure_is_retried_by_the_engine_policy(world: AwsWorld, aws_context: Ctx,
                                                                   faults: FaultControl) -> None:
    # Four throttles: botocore's three tries fail the first attempt, the operation-level retry succeeds.
    faults.add("rds", "PromoteReadReplica", "throttle", times=4)
    ctx = aws_context()
    params = PromoteParams(db_instance=world.replica, poll_interval="10ms")  # type: ignore[arg-type]
    result, attempts = call_with_retry(lambda attempt: PromoteReplica().run(params, ctx),
                                       policy=RetryPolicy(attempts=3, backoff=0.01), deadline=ctx.deadline,
                                       clock=ctx.clock)
    assert attempts == 2
    assert result.changed
    assert faults.hits("rds", "PromoteReadReplica") == 4


def test_retries_exhausted_raise_the_last_transient_error(world: AwsWorld, aws_context: Ctx,
                                                          faults: FaultControl) -> None:
    faults.add("rds", "DescribeDBInstances", "throttle", times=-1)
    ctx = aws_context()
    with pytest.raises(TransientError, match="rds:DescribeDBInstances on DB instance ledger-db-usw2"):
        call_with_retry(lambda attempt: PromoteReplica().run(PromoteParams(db_instance=world.replica), ctx),
                        policy=RetryPolicy(attempts=2, backoff=0.01), deadline=ctx.deadline, clock=ctx.clock)
    assert faults.hits("rds", "DescribeDBInstances") == 6  # 2 operation attempts x 3 wire tries


def test_preflight_describes_the_replica(world: AwsWorld, aws_context: Ctx) -> None:
    checks = CheckReplica().preflight(CheckReplicaParams(db_instance=world.replica), aws_context())
    assert all(c.ok for c in checks), checks
    assert "lag unknown" in checks[1].detail
