"""Route 53: find a zone, read record sets, submit a change batch, read its status."""

from __future__ import annotations

from typing import Any

from dr_engine.errors import ProviderError
from dr_engine.providers.aws.api import AwsApi


def fqdn(name: str) -> str:
    """A DNS name with its trailing dot, lower-cased (Route 53 answers names that way)."""
    return name.rstrip(".").lower() + "."


class Route53(AwsApi):
    """Route 53 (a global service: its control plane lives in us-east-1)."""

    service = "route53"

    def zone_id(self, zone: str) -> str:
        """Hosted zone id for a zone id (``Z...`` or ``/hostedzone/Z...``) or a zone name."""
        if "." not in zone.rstrip("."):
            return zone.rsplit("/", 1)[-1]
        name = fqdn(zone)
        found = self.call("list_hosted_zones_by_name", f"hosted zone {name}", DNSName=name, MaxItems="10")
        matches = [z for z in found.get("HostedZones", []) if z["Name"].lower() == name]
        if not matches:
            raise ProviderError(f"no Route 53 hosted zone named {name}",
                                hint="check `zone:` (name or id) and the account the credentials belong to")
        if len(matches) > 1 and not any(not z.get("Config", {}).get("PrivateZone") for z in matches):
            raise ProviderError(f"several hosted zones are named {name}", hint="give the zone id instead")
        public = [z for z in matches if not z.get("Config", {}).get("PrivateZone")]
        return str((public or matches)[0]["Id"]).rsplit("/", 1)[-1]

    def records(self, zone_id: str, name: str, rtype: str) -> list[dict[str, Any]]:
        """Every record set named ``name`` with type ``rtype`` (all set identifiers)."""
        wanted = fqdn(name)
        out: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"HostedZoneId": zone_id, "StartRecordName": wanted, "StartRecordType": rtype}
        while True:
            page = self.call("list_resource_record_sets", f"{wanted} {rtype} in zone {zone_id}", **kwargs)
            for record in page.get("ResourceRecordSets", []):
                if fqdn(record["Name"]) != wanted or record["Type"] != rtype:
                    return out
                out.append(record)
            if not page.get("IsTruncated"):
                return out
            kwargs.update(StartRecordName=page["NextRecordName"], StartRecordType=page["NextRecordType"])
            if "NextRecordIdentifier" in page:
                kwargs["StartRecordIdentifier"] = page["NextRecordIdentifier"]

    def upsert(self, zone_id: str, records: list[dict[str, Any]], comment: str) -> str:
        """UPSERT record sets in one atomic change batch; return the change id."""
        batch = {"Comment": comment[:256], "Changes": [{"Action": "UPSERT", "ResourceRecordSet": r} for r in records]}
        names = ", ".join(sorted({f"{r['Name']} {r['Type']}" for r in records}))
        done = self.call("change_resource_record_sets", f"{names} in zone {zone_id}",
                         HostedZoneId=zone_id, ChangeBatch=batch)
        return str(done["ChangeInfo"]["Id"])

    def change_status(self, change_id: str) -> str:
        """PENDING or INSYNC."""
        found = self.call("get_change", f"change {change_id}", Id=change_id)
        return str(found["ChangeInfo"]["Status"])
