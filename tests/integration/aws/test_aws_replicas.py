"""dynamodb.verify_replica and secretsmanager.verify_replica over HTTP against moto."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from dr_engine.actions.aws.dynamodb import ReplicaParams, VerifyReplica
from dr_engine.actions.aws.secretsmanager import SecretParams, VerifySecretReplica
from dr_engine.actions.base import StepContext
from dr_engine.errors import PreconditionFailed, TransientError, VerificationFailed
from dr_engine.world.aws_seed import AwsWorld
from dr_engine.world.faults import FaultControl

pytestmark = pytest.mark.integration
Ctx = Callable[..., StepContext]


def test_table_replica_with_marker(world: AwsWorld, aws_context: Ctx) -> None:
    result = VerifyReplica().run(ReplicaParams(table=world.table, marker_key={"pk": "dr-marker"}), aws_context())
    assert result.facts["status"] == "ACTIVE"
    # Same result on a re-run: verification changes nothing.
    assert not VerifyReplica().run(ReplicaParams(table=world.table), aws_context()).changed


def test_missing_marker_fails_verification(world: AwsWorld, aws_context: Ctx, boto: Any) -> None:
    boto("dynamodb").delete_item(TableName=world.table, Key={"pk": {"S": "dr-marker"}})
    with pytest.raises(VerificationFailed, match="marker item \\{'pk': 'dr-marker'\\} not found"):
        VerifyReplica().run(ReplicaParams(table=world.table, marker_key={"pk": "dr-marker"}), aws_context())


def test_item_counts_are_compared(world: AwsWorld, aws_context: Ctx, boto: Any) -> None:
    source = boto("dynamodb", "us-east-1")
    for n in range(3):
        source.put_item(TableName=world.table, Item={"pk": {"S": f"session-{n}"}})
    params = ReplicaParams(table=world.table, compare_counts=True)
    with pytest.raises(VerificationFailed, match="has 1 items in us-west-2 but 4 in us-east-1"):
        VerifyReplica().run(params, aws_context())
    tolerant = VerifyReplica().run(ReplicaParams(table=world.table, compare_counts=True, max_missing=3),
                                   aws_context())
    assert tolerant.rpo is not None and tolerant.rpo.rows_lost == 3


def test_missing_table_is_a_precondition(moto: Any, aws_context: Ctx) -> None:
    with pytest.raises(PreconditionFailed, match="table ledger-sessions does not exist in us-west-2"):
        VerifyReplica().run(ReplicaParams(table="ledger-sessions"), aws_context())


def test_dynamodb_throttling_recovers_and_exhausts(world: AwsWorld, aws_context: Ctx, faults: FaultControl) -> None:
    faults.add("dynamodb", "DescribeTable", "throttle", times=2)
    VerifyReplica().run(ReplicaParams(table=world.table), aws_context())
    faults.clear()
    faults.add("dynamodb", "GetItem", "unavailable", times=-1)
    with pytest.raises(TransientError, match="dynamodb:GetItem on item"):
        VerifyReplica().run(ReplicaParams(table=world.table, marker_key={"pk": "dr-marker"}), aws_context())


def test_secret_replica_in_sync(world: AwsWorld, aws_context: Ctx) -> None:
    result = VerifySecretReplica().run(SecretParams(secret_id=world.secret), aws_context())
    assert result.facts["replication"] == {"us-west-2": "InSync"}
    assert result.facts["version_matches"] is True
    assert "SecretString" not in repr(result)


def test_secret_not_replicated(world: AwsWorld, aws_context: Ctx, boto: Any) -> None:
    boto("secretsmanager", "us-east-1").create_secret(Name="local-only", SecretString="x")
    with pytest.raises(VerificationFailed, match="local-only is not replicated in sync to us-west-2"):
        VerifySecretReplica().run(SecretParams(secret_id="local-only"), aws_context())


def test_missing_secret(moto: Any, aws_context: Ctx) -> None:
    with pytest.raises(PreconditionFailed, match="secret nope does not exist in us-east-1"):
        VerifySecretReplica().run(SecretParams(secret_id="nope"), aws_context())


def test_secret_throttling_recovers(world: AwsWorld, aws_context: Ctx, faults: FaultControl) -> None:
    faults.add("secretsmanager", "DescribeSecret", "throttle", times=2)
    VerifySecretReplica().run(SecretParams(secret_id=world.secret), aws_context())
    assert faults.hits("secretsmanager", "DescribeSecret") == 2
