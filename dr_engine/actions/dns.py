"""DNS actions: ``dns.shift`` (RFC 2136 update signed with TSIG) and ``dns.verify``.

``dns.shift`` observes first: when the authoritative server already answers the target value
with the wanted TTL it returns ``changed=False``. Otherwise it replaces the record in one
update message and reads the answer back. The previous TTL is reported: resolvers may keep
serving the old answer for up to that long after the shift.

Errors: an unreachable or silent server is a :class:`~dr_engine.errors.TransientError`
(retried); REFUSED, NOTAUTH or a rejected TSIG signature is a
:class:`~dr_engine.errors.ProviderError` with a hint. The TSIG secret is never logged.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from dr_engine.actions.base import Action, ActionParams, PreflightCheck, StepContext, StepResult
from dr_engine.actions.endpoints import parse_server
from dr_engine.actions.registry import register
from dr_engine.capabilities import Capability
from dr_engine.clock import Deadline
from dr_engine.errors import PreconditionFailed, ProviderError, TransientError, VerificationFailed
from dr_engine.model import DrillBehaviour
from dr_engine.model.units import Duration

if TYPE_CHECKING:
    from dr_engine.providers.dns.client import DnsServer, RecordAnswer, TsigKey

RecordType = Literal["A", "AAAA", "CNAME"]
Algorithm = Literal["hmac-sha256", "hmac-sha384", "hmac-sha512", "hmac-sha224", "hmac-sha1"]
#: Largest TTL RFC 2181 allows.
MAX_TTL = 2**31 - 1
DEFAULT_MAX_WAIT = timedelta(minutes=5)


def _check_server(value: str) -> str:
    if "${" not in value:
        parse_server(value)
    return value


def _server(text: str) -> DnsServer:
    from dr_engine.providers.dns.client import DnsServer

    return DnsServer(*parse_server(text))


def _expected(record_type: str, values: list[str]) -> tuple[str, ...]:
    from dr_engine.providers.dns.client import normalise_value

    return tuple(sorted(normalise_value(record_type, v) for v in values))


class ShiftParams(ActionParams):
    """Parameters of ``dns.shift``."""

    server: str = Field(description="Authoritative DNS server ADDRESS[:PORT] (port 53 by default)")
    zone: str = Field(description="Zone holding the record, e.g. bank.test")
    name: str = Field(description="Record name, absolute (ledger.bank.test.) or relative to the zone (ledger)")
    value: str = Field(description="New address (A/AAAA) or alias target (CNAME), e.g. ${target.addr}")
    record_type: RecordType = "A"
    ttl: Duration = Field(default=timedelta(seconds=60), description="TTL of the new record (whole seconds)")
    key_name: str = Field(description="TSIG key name, as in the server's `key` clause")
    key_secret: SecretStr | None = Field(
        default=None, description="TSIG secret (base64), normally ${target.secrets.NAME}"
    )
    key_secret_name: str | None = Field(
        default=None, description="Name of a secret of the target region holding the TSIG secret"
    )
    key_algorithm: Algorithm = "hmac-sha256"
    query_timeout: Duration = Field(
        default=timedelta(seconds=2), description="Bound of each DNS message (capped by the step deadline)"
    )

    @field_validator("server")
    @classmethod
    def _valid_server(cls, value: str) -> str:
        return _check_server(value)

    @field_validator("ttl")
    @classmethod
    def _whole_seconds(cls, value: timedelta) -> timedelta:
        seconds = value.total_seconds()
        if seconds != int(seconds) or seconds > MAX_TTL:
            raise ValueError("ttl must be a whole number of seconds (DNS TTLs have no fractions)")
        return value

    @model_validator(mode="after")
    def _one_secret(self) -> ShiftParams:
        if (self.key_secret is None) == (self.key_secret_name is None):
            raise ValueError("give exactly one of `key_secret` (e.g. ${target.secrets.tsig_key}) or `key_secret_name`")
        return self


def _tsig_key(params: ShiftParams, ctx: StepContext) -> TsigKey:
    from dr_engine.providers.dns.client import TsigKey

    secret = params.key_secret
    if secret is None:
        name = params.key_secret_name or ""
        try:
            secret = ctx.secret(ctx.target, name)
        except KeyError as exc:
            raise PreconditionFailed(
                f"TSIG secret {name!r} of region {ctx.target.name} is not available",
                hint=f"declare `secrets: {{{name}: {{env: ...}}}}` in the region file and set it",
            ) from exc
    return TsigKey(params.key_name, secret, params.key_algorithm)


@register
class Shift(Action[ShiftParams]):
    """Point a DNS name at the target region with a TSIG-signed RFC 2136 update.

    Observes first (no update when the server already answers the target value and TTL),
    replaces A/AAAA/CNAME at the name in one update, then reads the answer back.
    """

    name = "dns.shift"
    capability = Capability.TRAFFIC_SHIFT
    Params = ShiftParams
    permissions = ()
    drill_default = DrillBehaviour.SKIP  # a drill must not move customers' traffic
    example = (
        "id: shift-dns\n"
        "action: dns.shift\n"
        "with:\n"
        "  server: 127.0.0.1:15353\n"
        "  zone: bank.test\n"
        "  name: ledger\n"
        "  value: 127.0.2.1\n"
        "  ttl: 5s\n"
        "  key_name: dr-engine-key\n"
        "  key_secret_name: tsig_key\n"
    )

    def run(self, params: ShiftParams, ctx: StepContext) -> StepResult:
        """Observe, update if needed, verify the server answers the new value."""
        from dr_engine.providers.dns.client import absolute_name, query, replace_record

        server = _server(params.server)
        fqdn = absolute_name(params.name, params.zone)
        wanted = _expected(params.record_type, [params.value])
        ttl = int(params.ttl.total_seconds())
        key = _tsig_key(params, ctx)

        def bound() -> float:
            ctx.deadline.check(f"updating {fqdn} at {server}")
            return ctx.deadline.remaining(params.query_timeout.total_seconds())

        before = query(server, fqdn, params.record_type, timeout=bound())
        facts: dict[str, object] = {
            "name": fqdn,
            "type": params.record_type,
            "server": str(server),
            "previous": list(before.values),
            "previous_ttl": before.ttl,
            "value": wanted[0],
            "ttl": ttl,
        }
        outputs = {"name": fqdn, "value": wanted[0], "ttl": str(ttl), "previous": ",".join(before.values)}
        if before.values == wanted and before.rdtype == params.record_type and before.ttl == ttl:
            ctx.log.info("not updating %s: already %s %s (ttl %ds)", fqdn, params.record_type, wanted[0], ttl)
            return StepResult(
                summary=f"{fqdn} already points at {wanted[0]} (ttl {ttl}s)",
                changed=False,
                outputs=outputs,
                facts={**facts, "max_stale_seconds": 0},
            )
        ctx.log.info("shifting %s from %s to %s (ttl %ds) at %s", fqdn, list(before.values) or "nothing",
                     wanted[0], ttl, server)
        replace_record(server, params.zone, fqdn, params.record_type, params.value, ttl, key, timeout=bound())
        after = query(server, fqdn, params.record_type, timeout=bound())
        if after.values != wanted:
            raise VerificationFailed(
                f"{server} accepted the update of {fqdn} but answers {list(after.values)}, not {wanted[0]}",
                hint="another writer may be changing the record; check the server's log",
            )
        # Resolvers that cached the old answer keep it for up to the old TTL: report it.
        stale = before.ttl if before.values and before.values != wanted else 0
        return StepResult(
            summary=f"{fqdn} now {params.record_type} {wanted[0]} (ttl {ttl}s; "
            f"was {', '.join(before.values) or 'absent'})",
            changed=True,
            outputs=outputs,
            facts={**facts, "max_stale_seconds": stale},
        )

    def preflight(self, params: ShiftParams, ctx: StepContext) -> list[PreflightCheck]:
        """Read-only: the server answers the name, and accepts our TSIG key (a signed SOA query)."""
        from dr_engine.providers.dns.client import absolute_name, query

        server = _server(params.server)
        fqdn = absolute_name(params.name, params.zone)
        checks: list[PreflightCheck] = []
        try:
            now = query(server, fqdn, params.record_type, timeout=ctx.deadline.remaining(2.0))
            checks.append(PreflightCheck(f"dns {fqdn} answers", True, f"now {', '.join(now.values) or 'absent'}"))
        except (TransientError, ProviderError) as exc:
            checks.append(PreflightCheck(f"dns {fqdn} answers", False, exc.message))
            return checks
        try:
            query(server, params.zone, "SOA", timeout=ctx.deadline.remaining(2.0), key=_tsig_key(params, ctx))
            checks.append(PreflightCheck(f"tsig key {params.key_name} accepted", True, str(server)))
        except (TransientError, ProviderError, PreconditionFailed) as exc:
            checks.append(PreflightCheck(f"tsig key {params.key_name} accepted", False, exc.message))
        return checks

    def describe(self, params: ShiftParams) -> str:
        """Show the record and its new value."""
        return f"{params.name} ({params.zone}) -> {params.record_type} {params.value} at {params.server}"


class VerifyParams(ActionParams):
    """Parameters of ``dns.verify``."""

    server: str = Field(description="Authoritative DNS server ADDRESS[:PORT]")
    name: str = Field(description="Absolute record name, e.g. ledger.bank.test")
    expected: list[str] = Field(description="Expected answer (one value or a list), e.g. ${target.addr}")
    record_type: RecordType = "A"
    interval: Duration = Field(default=timedelta(milliseconds=500), description="Pause between queries")
    query_timeout: Duration = Field(default=timedelta(seconds=2))
    max_wait: Duration | None = Field(default=None, description="Stop after this long (also bounded by the step)")

    @field_validator("server")
    @classmethod
    def _valid_server(cls, value: str) -> str:
        return _check_server(value)

    @field_validator("expected", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("expected")
    @classmethod
    def _not_empty(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("expected needs at least one value")
        return value


@register
class Verify(Action[VerifyParams]):
    """Verify the authoritative server answers the expected value for a name (read-only).

    Polls until the answer equals ``expected`` exactly (as a set) or the deadline. Useful
    after ``dns.shift`` and for secondaries that receive the change by zone transfer.
    """

    name = "dns.verify"
    capability = Capability.TRAFFIC_VERIFY
    Params = VerifyParams
    permissions = ()
    example = (
        "id: dns-points-at-target\n"
        "action: dns.verify\n"
        "with: {server: 127.0.0.1:15353, name: ledger.bank.test, expected: 127.0.2.1}\n"
    )

    def run(self, params: VerifyParams, ctx: StepContext) -> StepResult:
        """Query until the answer matches; classify a never-answering server as transient."""
        from dr_engine.providers.dns.client import absolute_name, query

        server = _server(params.server)
        fqdn = absolute_name(params.name)
        wanted = _expected(params.record_type, params.expected)
        limit = params.max_wait or (DEFAULT_MAX_WAIT if ctx.deadline.seconds is None else None)
        own = Deadline(ctx.clock, limit.total_seconds()) if limit is not None else None
        interval = params.interval.total_seconds()
        queries = 0
        last: RecordAnswer | None = None
        last_error: TransientError | None = None
        while True:
            left = min(ctx.deadline.remaining(), own.remaining()) if own is not None else ctx.deadline.remaining()
            queries += 1
            try:
                last = query(server, fqdn, params.record_type,
                             timeout=min(params.query_timeout.total_seconds(), left))
                last_error = None
            except TransientError as exc:
                last_error = exc
            if last_error is None and last is not None and last.values == wanted:
                return StepResult(
                    summary=f"{fqdn} answers {', '.join(wanted)} at {server}",
                    changed=False,
                    outputs={"answer": ",".join(last.values), "ttl": str(last.ttl)},
                    facts={"name": fqdn, "server": str(server), "answer": list(last.values), "ttl": last.ttl,
                           "queries": queries},
                )
            left = min(ctx.deadline.remaining(), own.remaining()) if own is not None else ctx.deadline.remaining()
            if left <= interval or ctx.deadline.expired or (own is not None and own.expired):
                break
            ctx.clock.sleep(interval)
        if last is None and last_error is not None:
            raise TransientError(
                f"{server} never answered for {fqdn} ({queries} queries): {last_error.message}",
                hint="check that the DNS server is up",
            ) from last_error
        answer = ", ".join(last.values) if last is not None and last.values else "no record"
        raise VerificationFailed(
            f"{fqdn} at {server} answers {answer}, expected {', '.join(wanted)} ({queries} queries)",
            hint="run the traffic shift step again, or check who else updates this record",
        ) from last_error

    def describe(self, params: VerifyParams) -> str:
        """Show the name and expected answer."""
        return f"{params.name} == {', '.join(params.expected)} at {params.server}"
