"""STS: who are we (the cheapest proof that credentials work)."""

from __future__ import annotations

from typing import Any

from dr_engine.providers.aws.api import AwsApi


class Sts(AwsApi):
    """Security Token Service."""

    service = "sts"

    def identity(self) -> dict[str, str]:
        """Account, ARN and user id of the caller (needs no IAM permission)."""
        found: dict[str, Any] = self.call("get_caller_identity", "caller identity")
        return {k: str(found.get(k, "")) for k in ("Account", "Arn", "UserId")}
