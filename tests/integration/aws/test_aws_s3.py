"""s3.sync / s3.verify over HTTP against moto (source bucket in us-east-1, target in us-west-2)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from dr_engine.actions.aws.s3 import BucketsParams, Sync, Verify
from dr_engine.actions.base import StepContext
from dr_engine.errors import ProviderError, TransientError, VerificationFailed
from dr_engine.world.aws_seed import AwsWorld
from dr_engine.world.faults import FaultControl

pytestmark = pytest.mark.integration
Ctx = Callable[..., StepContext]


def _params(world: AwsWorld, **extra: Any) -> BucketsParams:
    return BucketsParams.model_validate({"source_bucket": world.source_bucket,
                                         "target_bucket": world.target_bucket, **extra})


def test_verify_names_missing_objects_then_sync_fixes_them(world: AwsWorld, aws_context: Ctx, boto: Any) -> None:
    with pytest.raises(VerificationFailed, match=r"lacks 3 and differs on 0 of 6 object\(s\).*statements/0001.txt"):
        Verify().run(_params(world), aws_context())
    result = Sync().run(_params(world), aws_context())
    assert result.changed and result.outputs == {"copied": "3", "objects": "6"}
    keys = [o["Key"] for o in boto("s3").list_objects_v2(Bucket=world.target_bucket)["Contents"]]
    assert len(keys) == 6
    assert Verify().run(_params(world), aws_context()).facts == {"objects": 6, "missing": 0, "differing": 0}


def test_sync_is_idempotent(world: AwsWorld, aws_context: Ctx) -> None:
    Sync().run(_params(world), aws_context())
    again = Sync().run(_params(world), aws_context())
    assert not again.changed
    assert again.outputs["copied"] == "0"


def test_changed_object_is_recopied(world: AwsWorld, aws_context: Ctx, boto: Any) -> None:
    Sync().run(_params(world), aws_context())
    boto("s3", "us-east-1").put_object(Bucket=world.source_bucket, Key="statements/0000.txt", Body=b"amended\n")
    with pytest.raises(VerificationFailed, match="differs on 1"):
        Verify().run(_params(world), aws_context())
    assert Sync().run(_params(world), aws_context()).facts["differing"] == 1
    body = boto("s3").get_object(Bucket=world.target_bucket, Key="statements/0000.txt")["Body"].read()
    assert body == b"amended\n"


def test_missing_bucket_is_a_permanent_error(world: AwsWorld, aws_context: Ctx) -> None:
    with pytest.raises(ProviderError, match=r"s3:ListBucket on bucket nope-bucket .*NoSuchBucket"):
        Sync().run(_params(world, target_bucket="nope-bucket"), aws_context())


def test_slow_down_recovers_and_exhausts(world: AwsWorld, aws_context: Ctx, faults: FaultControl) -> None:
    faults.add("s3", "CopyObject", "throttle", times=2)
    assert Sync().run(_params(world), aws_context()).outputs["copied"] == "3"
    assert faults.hits("s3", "CopyObject") == 2
    faults.clear()
    faults.add("s3", "ListObjectsV2", "throttle", times=-1)
    with pytest.raises(TransientError, match=r"s3:ListBucket on bucket ledger-docs-use1 .*SlowDown"):
        Verify().run(_params(world), aws_context())


def test_preflight_checks_both_buckets(world: AwsWorld, aws_context: Ctx) -> None:
    checks = Sync().preflight(_params(world, target_bucket="nope-bucket"), aws_context())
    assert [c.ok for c in checks] == [True, True, True, False]
    assert "nope-bucket not found in us-west-2" in checks[-1].detail
