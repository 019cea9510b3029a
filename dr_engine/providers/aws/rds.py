"""RDS: describe DB instances and promote a read replica."""

from __future__ import annotations

from typing import Any

from dr_engine.providers.aws.api import AwsApi


class Rds(AwsApi):
    """Amazon RDS in one region."""

    service = "rds"

    def describe(self, db: str) -> dict[str, Any] | None:
        """The DB instance, or None when it does not exist."""
        found = self.call("describe_db_instances", f"DB instance {db}", absent=("DBInstanceNotFound",
                          "DBInstanceNotFoundFault"), DBInstanceIdentifier=db)
        if found is None or not found.get("DBInstances"):
            return None
        instance: dict[str, Any] = found["DBInstances"][0]
        return instance

    def promote(self, db: str, backup_retention_days: int | None) -> dict[str, Any]:
        """PromoteReadReplica; return the instance as reported right after the call."""
        kwargs: dict[str, Any] = {"DBInstanceIdentifier": db}
        if backup_retention_days is not None:
            kwargs["BackupRetentionPeriod"] = backup_retention_days
        done: dict[str, Any] = self.call("promote_read_replica", f"DB instance {db}", **kwargs)
        return dict(done.get("DBInstance", {}))
