"""Secrets Manager: describe a secret and its replication status. Never reads secret values."""

from __future__ import annotations

from typing import Any

from dr_engine.providers.aws.api import AwsApi


class SecretsManager(AwsApi):
    """Secrets Manager in one region."""

    service = "secretsmanager"

    def describe(self, secret_id: str) -> dict[str, Any] | None:
        """Metadata only (replication status, version stages); None when absent in this region."""
        found = self.call("describe_secret", f"secret {secret_id}", absent=("ResourceNotFoundException",),
                          SecretId=secret_id)
        return None if found is None else dict(found)
