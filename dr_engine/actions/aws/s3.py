"""S3 actions: ``s3.sync`` (data.sync) and ``s3.verify`` (data.verify).

The source bucket is read through the source region's endpoint and the target bucket through the
target's. Objects are equal when their ETags match; multipart ETags (``...-N``) are not content
hashes and change on copy, so such objects are compared by size. moto never replicates by itself
(S3 replication rules are not applied), which is exactly what ``s3.sync`` makes up for.
"""

from __future__ import annotations

from pydantic import Field

from dr_engine.actions.aws.base import AwsAction, checked, connect, identity_check
from dr_engine.actions.base import ActionParams, PreflightCheck, StepContext, StepResult
from dr_engine.actions.registry import register
from dr_engine.capabilities import Capability
from dr_engine.errors import PreconditionFailed, VerificationFailed
from dr_engine.model import Region
from dr_engine.providers.aws.s3 import S3, ObjectInfo

#: How many differing keys a message shows.
SHOWN = 5


class BucketsParams(ActionParams):
    """Parameters of ``s3.sync`` and ``s3.verify``."""

    source_bucket: str = Field(description="Bucket in the source region")
    target_bucket: str = Field(description="Bucket in the target region")
    prefix: str = Field(default="", description="Only objects under this key prefix")


def same(a: ObjectInfo, b: ObjectInfo) -> bool:
    """Equal content as far as S3 metadata can tell."""
    if "-" in a.etag or "-" in b.etag:
        return a.size == b.size
    return a.etag == b.etag


def compare(params: BucketsParams, ctx: StepContext) -> tuple[S3, dict[str, ObjectInfo], list[str], list[str]]:
    """List both buckets; return the target API, the source objects, missing keys, differing keys."""
    source = connect(S3, ctx.source, ctx).objects(params.source_bucket, params.prefix)
    target_api = connect(S3, ctx.target, ctx)
    target = target_api.objects(params.target_bucket, params.prefix)
    missing = sorted(k for k in source if k not in target)
    differing = sorted(k for k in source if k in target and not same(source[k], target[k]))
    return target_api, source, missing, differing


def _buckets_preflight(params: BucketsParams, ctx: StepContext) -> list[PreflightCheck]:
    checks = [identity_check(ctx.source, ctx), identity_check(ctx.target, ctx)]
    for region, bucket in ((ctx.source, params.source_bucket), (ctx.target, params.target_bucket)):

        def exists(bucket: str = bucket, region: Region = region) -> str:
            if not connect(S3, region, ctx).bucket_exists(bucket):
                raise PreconditionFailed(f"bucket {bucket} not found in {region.name}")
            return "exists"

        checks.append(checked(f"bucket {bucket} ({region.name})", exists))
    return checks


@register
class Sync(AwsAction[BucketsParams]):
    """Copy objects missing (or different) in the target bucket from the source bucket.

    Server-side copies, issued to the target region, one object at a time within the step
    deadline; a re-run copies only what is still missing. Objects over 5 GB are not supported.
    """

    name = "s3.sync"
    capability = Capability.DATA_SYNC
    Params = BucketsParams
    permissions = ("s3:ListBucket", "s3:GetObject", "s3:PutObject")
    example = ("id: sync-docs\naction: s3.sync\n"
               "with: {source_bucket: ledger-docs-use1, target_bucket: ledger-docs-usw2}\n")

    def run(self, params: BucketsParams, ctx: StepContext) -> StepResult:
        """Compare, copy the difference."""
        target_api, source, missing, differing = compare(params, ctx)
        todo = missing + differing
        if not todo:
            ctx.log.info("not copying: all %d object(s) already in %s", len(source), params.target_bucket)
        for done, key in enumerate(todo):
            ctx.deadline.check(f"copying objects to {params.target_bucket} ({done}/{len(todo)} done)")
            target_api.copy(params.source_bucket, key, params.target_bucket)
        return StepResult(summary=f"copied {len(todo)} of {len(source)} object(s) to {params.target_bucket}",
                          changed=bool(todo), outputs={"copied": str(len(todo)), "objects": str(len(source))},
                          facts={"copied": len(todo), "missing": len(missing), "differing": len(differing),
                                 "objects": len(source)})

    def preflight(self, params: BucketsParams, ctx: StepContext) -> list[PreflightCheck]:
        """Credentials in both regions and both buckets exist."""
        return _buckets_preflight(params, ctx)

    def describe(self, params: BucketsParams) -> str:
        """Buckets."""
        return f"s3://{params.source_bucket}/{params.prefix} -> s3://{params.target_bucket}"


@register
class Verify(AwsAction[BucketsParams]):
    """Every source object exists in the target bucket with the same ETag (counts compared)."""

    name = "s3.verify"
    capability = Capability.DATA_VERIFY
    Params = BucketsParams
    permissions = ("s3:ListBucket",)
    example = ("id: verify-docs\naction: s3.verify\n"
               "with: {source_bucket: ledger-docs-use1, target_bucket: ledger-docs-usw2}\n")

    def run(self, params: BucketsParams, ctx: StepContext) -> StepResult:
        """Compare listings; VerificationFailed naming the first differing keys."""
        _, source, missing, differing = compare(params, ctx)
        facts = {"objects": len(source), "missing": len(missing), "differing": len(differing)}
        if missing or differing:
            shown = ", ".join((missing + differing)[:SHOWN])
            raise VerificationFailed(f"{params.target_bucket} lacks {len(missing)} and differs on {len(differing)} "
                                     f"of {len(source)} object(s) from {params.source_bucket} (e.g. {shown})",
                                     hint="run s3.sync first, or check replication")
        return StepResult(summary=f"{len(source)} object(s) match in {params.target_bucket}", changed=False,
                          outputs={"objects": str(len(source))}, facts=facts)

    def preflight(self, params: BucketsParams, ctx: StepContext) -> list[PreflightCheck]:
        """Credentials in both regions and both buckets exist."""
        return _buckets_preflight(params, ctx)

    def describe(self, params: BucketsParams) -> str:
        """Buckets."""
        return f"s3://{params.source_bucket}/{params.prefix} == s3://{params.target_bucket}"
