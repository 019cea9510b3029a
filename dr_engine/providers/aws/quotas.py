"""Service Quotas: the value of one quota in one region (read-only)."""

from __future__ import annotations

from dr_engine.providers.aws.api import AwsApi


class ServiceQuotas(AwsApi):
    """AWS Service Quotas in one region."""

    service = "service-quotas"

    def value(self, service_code: str, quota_code: str) -> float:
        """The applied value of ``quota_code`` of ``service_code`` (ProviderError when it cannot be read)."""
        found = self.call("get_service_quota", f"quota {service_code}/{quota_code}",
                          ServiceCode=service_code, QuotaCode=quota_code)
        return float(found["Quota"]["Value"])


__all__ = ["ServiceQuotas"]
