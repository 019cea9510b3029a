"""DNS record removal (RFC 2136, TSIG): used to delete drill records after a drill.

Kept beside :mod:`dr_engine.providers.dns.client` (which owns queries and replacements) and built on
its message transport, so errors are classified the same way.
"""

from __future__ import annotations

import dns.name
import dns.rcode
import dns.update

from dr_engine.providers.dns.client import DnsServer, TsigKey, _rcode_error, _send, _tsig_key, absolute_name


def delete_records(server: DnsServer, zone: str, name: str, key: TsigKey, *, timeout: float = 2.0) -> None:
    """Delete every A/AAAA/CNAME record at ``name`` in one signed update (no-op when absent)."""
    zone_name = dns.name.from_text(absolute_name(zone))
    record = dns.name.from_text(absolute_name(name, zone))
    update = dns.update.UpdateMessage(zone_name)
    update.use_tsig(_tsig_key(key))
    for rdtype in ("A", "AAAA", "CNAME"):
        update.delete(record, rdtype)
    response = _send(update, server, timeout, tcp=True)
    if response.rcode() != dns.rcode.NOERROR:
        raise _rcode_error(dns.rcode.to_text(response.rcode()), f"deletion of {record}", server)


__all__ = ["delete_records"]
