"""``secretsmanager.verify_replica`` (data.verify): a secret is replicated, in sync, to the target.

Reads metadata only (DescribeSecret): secret values are never fetched, logged or recorded.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from dr_engine.actions.aws.base import AwsAction, checked, connect, identity_check
from dr_engine.actions.base import ActionParams, PreflightCheck, StepContext, StepResult
from dr_engine.actions.registry import register
from dr_engine.capabilities import Capability
from dr_engine.errors import PreconditionFailed, VerificationFailed
from dr_engine.model import Region
from dr_engine.providers.aws.secretsmanager import SecretsManager


class SecretParams(ActionParams):
    """Parameters of ``secretsmanager.verify_replica``."""

    secret_id: str = Field(description="Secret name (the replica has the same name in the target region)")


def _current_version(described: dict[str, Any]) -> str | None:
    stages: dict[str, list[str]] = described.get("VersionIdsToStages") or {}
    return next((v for v, s in stages.items() if "AWSCURRENT" in s), None)


def _describe(api: SecretsManager, secret_id: str) -> dict[str, Any]:
    found = api.describe(secret_id)
    if found is None:
        raise PreconditionFailed(f"secret {secret_id} does not exist in {api.region_name}",
                                 hint="replicate it (ReplicateSecretToRegions) or fix `secret_id:`")
    return found


@register
class VerifySecretReplica(AwsAction[SecretParams]):
    """The source secret lists the target region as InSync and the replica's AWSCURRENT matches."""

    name = "secretsmanager.verify_replica"
    capability = Capability.DATA_VERIFY
    Params = SecretParams
    permissions = ("secretsmanager:DescribeSecret",)
    example = "id: verify-secret\naction: secretsmanager.verify_replica\nwith: {secret_id: ledger/db-credentials}\n"

    def run(self, params: SecretParams, ctx: StepContext) -> StepResult:
        """Compare replication status and current version ids (metadata only)."""
        source_api = connect(SecretsManager, ctx.source, ctx)
        target_api = connect(SecretsManager, ctx.target, ctx)
        source = _describe(source_api, params.secret_id)
        status = {str(r.get("Region")): str(r.get("Status")) for r in source.get("ReplicationStatus", [])}
        if status.get(target_api.region_name) != "InSync":
            raise VerificationFailed(
                f"secret {params.secret_id} is not replicated in sync to {target_api.region_name} "
                f"(replication status: {status or 'none'})", hint="add the region with ReplicateSecretToRegions")
        replica = _describe(target_api, params.secret_id)
        want, have = _current_version(source), _current_version(replica)
        if want and have and want != have:
            raise VerificationFailed(f"replica of {params.secret_id} is at version {have}, source at {want}",
                                     hint="replication is behind; wait and verify again")
        return StepResult(summary=f"secret {params.secret_id} InSync in {target_api.region_name}", changed=False,
                          facts={"secret": params.secret_id, "replication": status, "version_matches": want == have})

    def preflight(self, params: SecretParams, ctx: StepContext) -> list[PreflightCheck]:
        """Credentials and the secret in both regions."""
        checks = [identity_check(ctx.source, ctx), identity_check(ctx.target, ctx)]
        for region in (ctx.source, ctx.target):

            def probe(region: Region = region) -> str:
                found = _describe(connect(SecretsManager, region, ctx), params.secret_id)
                return f"exists (AWSCURRENT {_current_version(found) or 'unknown'})"

            checks.append(checked(f"secret {params.secret_id} ({region.name})", probe))
        return checks
