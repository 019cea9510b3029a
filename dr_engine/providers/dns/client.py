"""DNS provider: queries and RFC 2136 updates (TSIG-signed) against an authoritative server.

The only module that imports dnspython. Failures are classified into the error taxonomy:

- no answer in time, connection refused or reset: :class:`~dr_engine.errors.TransientError`
  (the server may come back; the engine may retry);
- REFUSED / NOTAUTH / NOTZONE or a TSIG error (unknown key, bad signature, clock skew):
  :class:`~dr_engine.errors.ProviderError` with a hint (retrying will not help).

TSIG secrets arrive as :class:`pydantic.SecretStr` and are unwrapped only to sign a message;
they never appear in messages, logs or results.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.update
from pydantic import SecretStr

from dr_engine.errors import ProviderError, TransientError

RecordType = Literal["A", "AAAA", "CNAME"]
TsigAlgorithm = Literal["hmac-sha256", "hmac-sha384", "hmac-sha512", "hmac-sha224", "hmac-sha1"]

_TRANSIENT_OS_ERRORS = (ConnectionRefusedError, ConnectionResetError, ConnectionAbortedError, TimeoutError)


@dataclass(frozen=True)
class DnsServer:
    """Where to send queries and updates: an address (not a name) and a port."""

    address: str
    port: int = 53

    def __str__(self) -> str:
        return f"{self.address}:{self.port}"


@dataclass(frozen=True)
class TsigKey:
    """A TSIG key: its name (as configured on the server), secret (base64) and algorithm."""

    name: str
    secret: SecretStr
    algorithm: TsigAlgorithm = "hmac-sha256"


@dataclass(frozen=True)
class RecordAnswer:
    """What the server answered for one name and type (``values`` sorted; empty = no record)."""

    name: str
    rdtype: str
    values: tuple[str, ...]
    ttl: int | None
    rcode: str


def absolute_name(name: str, zone: str | None = None) -> str:
    """Return ``name`` as an absolute name (``ledger`` + ``bank.test`` -> ``ledger.bank.test.``)."""
    if name.endswith("."):
        return name
    if zone is None:
        return name + "."
    zone_abs = absolute_name(zone)
    if name in ("@", ""):
        return zone_abs
    if (name + ".").endswith("." + zone_abs) or name + "." == zone_abs:
        return name + "."
    return f"{name}.{zone_abs}"


def normalise_value(rdtype: str, value: str) -> str:
    """The presentation form the server answers with (CNAME targets are made absolute)."""
    return absolute_name(value).lower() if rdtype == "CNAME" else value.strip()


def _tsig_key(key: TsigKey) -> dns.tsig.Key:
    try:
        return dns.tsig.Key(key.name, key.secret.get_secret_value(), key.algorithm)
    except (ValueError, TypeError) as exc:
        # Say only what is wrong: the exception text could quote part of the secret.
        raise ProviderError(
            f"TSIG key {key.name!r}: the secret is not valid base64",
            hint="use the secret exactly as printed by `tsig-keygen -a hmac-sha256 NAME`",
        ) from exc


def _send(message: dns.message.Message, server: DnsServer, timeout: float, *, tcp: bool) -> dns.message.Message:
    """Send one message; map transport failures to TransientError and TSIG failures to ProviderError."""
    where = f"DNS server {server}"
    try:
        if tcp:
            return dns.query.tcp(message, server.address, timeout=timeout, port=server.port)
        return dns.query.udp(message, server.address, timeout=timeout, port=server.port)
    except dns.exception.Timeout as exc:
        raise TransientError(
            f"{where} did not answer within {timeout:.3g}s",
            hint="check that the DNS server is running and reachable from here",
        ) from exc
    except _TRANSIENT_OS_ERRORS as exc:
        raise TransientError(
            f"{where} unreachable: {type(exc).__name__}",
            hint="check that the DNS server is running and listening on that address and port",
        ) from exc
    except (dns.tsig.PeerBadKey, dns.tsig.PeerBadSignature, dns.tsig.PeerBadTime, dns.tsig.PeerBadTruncation) as exc:
        raise ProviderError(
            f"{where} rejected the TSIG signature ({type(exc).__name__}: {exc})",
            hint="the key name, algorithm or secret does not match the server's `key` clause"
            " (or the clocks differ by more than the fudge)",
        ) from exc
    except dns.tsig.BadSignature as exc:
        raise ProviderError(
            f"{where} answered with a TSIG signature that does not verify with our key",
            hint="the key secret differs from the server's; check the secret reference",
        ) from exc
    except (dns.exception.FormError, dns.exception.DNSException) as exc:
        raise ProviderError(f"{where}: DNS protocol error: {exc}", hint="check the server address and port") from exc
    except OSError as exc:
        raise TransientError(f"{where} unreachable: {exc}", hint="check the network path to the server") from exc


def query(
    server: DnsServer,
    name: str,
    rdtype: str = "A",
    *,
    timeout: float = 2.0,
    key: TsigKey | None = None,
) -> RecordAnswer:
    """Ask the server (no recursion) for ``name``/``rdtype``; a signed query when ``key`` is given.

    A CNAME at the name is reported as the answer for any type, since a client following the
    name would end there first. NXDOMAIN and NOERROR-without-data give empty ``values``.
    """
    qname = dns.name.from_text(absolute_name(name))
    request = dns.message.make_query(qname, rdtype)
    request.flags &= ~dns.flags.RD
    if key is not None:
        request.use_tsig(_tsig_key(key))
    response = _send(request, server, timeout, tcp=False)
    if response.flags & dns.flags.TC:
        response = _send(request, server, timeout, tcp=True)
    rcode = dns.rcode.to_text(response.rcode())
    if response.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        raise _rcode_error(rcode, f"query {qname} {rdtype}", server)
    values: list[str] = []
    ttl: int | None = None
    answered_type = rdtype
    for rrset in response.answer:
        if rrset.name != qname:
            continue
        answered_type = dns.rdatatype.to_text(rrset.rdtype)
        ttl = rrset.ttl
        values = [rdata.to_text().lower() if answered_type == "CNAME" else rdata.to_text() for rdata in rrset]
        break
    return RecordAnswer(str(qname), answered_type, tuple(sorted(values)), ttl, rcode)


def _rcode_error(rcode: str, what: str, server: DnsServer) -> ProviderError:
    hints = {
        "REFUSED": "the server refused: the update is not signed with a key its update-policy grants,"
        " or the zone is not served there",
        "NOTAUTH": "the server is not authoritative for the zone, or it did not accept the TSIG key",
        "NOTZONE": "the name is outside the zone named in the update; check `zone:` and `name:`",
        "SERVFAIL": "the server could not process the request; see its log",
    }
    return ProviderError(
        f"{what} at {server}: server answered {rcode}",
        hint=hints.get(rcode, "see the DNS server's log"),
    )


def replace_record(
    server: DnsServer,
    zone: str,
    name: str,
    rdtype: RecordType,
    value: str,
    ttl: int,
    key: TsigKey,
    *,
    timeout: float = 2.0,
) -> None:
    """Atomically replace the record at ``name`` with one ``rdtype`` record (RFC 2136, TSIG).

    A and CNAME cannot coexist, so the other address/alias types at the name are deleted in
    the same update message (one transaction at the server).
    """
    zone_name = dns.name.from_text(absolute_name(zone))
    record = dns.name.from_text(absolute_name(name, zone))
    update = dns.update.UpdateMessage(zone_name)
    update.use_tsig(_tsig_key(key))
    for other in ("A", "AAAA", "CNAME"):
        if other != rdtype:
            update.delete(record, other)
    update.replace(record, ttl, rdtype, normalise_value(rdtype, value))
    response = _send(update, server, timeout, tcp=True)
    if response.rcode() != dns.rcode.NOERROR:
        raise _rcode_error(dns.rcode.to_text(response.rcode()), f"update of {record} {rdtype}", server)


def is_listening(server: DnsServer, zone: str, timeout: float = 0.5) -> bool:
    """True when the server answers an SOA query for ``zone`` with NOERROR (readiness probe)."""
    try:
        answer = query(server, zone, "SOA", timeout=timeout)
    except (TransientError, ProviderError):
        return False
    return answer.rcode == "NOERROR" and bool(answer.values)
