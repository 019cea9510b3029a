"""``http.verify``: health verification by HTTP probes (read-only, idempotent).

The target is healthy once ``consecutive`` probes in a row answer an expected status (and
contain ``expect_body`` when given). A failed probe resets the streak, so a flapping service
does not pass. Each probe's timeout is capped by what is left of the step deadline, and the
action gives up as soon as the remaining time cannot hold the probes still needed, raising
:class:`~dr_engine.errors.VerificationFailed` with the last status or error.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from dr_engine.actions.base import Action, ActionParams, StepContext, StepResult
from dr_engine.actions.endpoints import parse_server
from dr_engine.actions.registry import register
from dr_engine.capabilities import Capability
from dr_engine.clock import Deadline
from dr_engine.errors import VerificationFailed
from dr_engine.model.units import Duration

if TYPE_CHECKING:
    from dr_engine.providers.http import HttpAnswer

#: Bound used when neither the step nor ``max_wait`` gives one: probing must end some time.
DEFAULT_MAX_WAIT = timedelta(minutes=5)


class VerifyParams(ActionParams):
    """Parameters of ``http.verify``."""

    url: str = Field(description="URL to probe, e.g. ${target.health_url}")
    expect_status: list[int] = Field(default_factory=lambda: [200], description="Statuses that count as healthy")
    expect_body: str | None = Field(default=None, description="Substring the body must contain")
    consecutive: Annotated[int, Field(ge=1, le=100, description="Healthy probes needed in a row")] = 3
    interval: Duration = Field(default=timedelta(seconds=1), description="Pause between probes")
    probe_timeout: Duration = Field(
        default=timedelta(seconds=2), description="Bound of one probe (capped by the step deadline)"
    )
    method: Literal["GET", "HEAD"] = "GET"
    host_header: str | None = Field(default=None, description="Host header to send (e.g. the public name)")
    resolve_via: str | None = Field(
        default=None, description="DNS server ADDRESS[:PORT] that resolves the URL's host (verify via the public name)"
    )
    tls_verify: bool = True
    max_wait: Duration | None = Field(
        default=None, description="Stop probing after this long (also bounded by the step timeout)"
    )

    @field_validator("expect_status", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        # Placeholders are resolved at run time; only judge URLs that are already concrete.
        if "${" not in value and (parts.scheme not in ("http", "https") or not parts.hostname):
            raise ValueError("url must be an http:// or https:// URL with a host")
        return value

    @field_validator("resolve_via")
    @classmethod
    def _server(cls, value: str | None) -> str | None:
        if value is not None and "${" not in value:
            parse_server(value)
        return value


def http_probe(params: VerifyParams, timeout: float) -> HttpAnswer:
    """One real probe through :mod:`dr_engine.providers.http`."""
    from dr_engine.providers.dns.client import DnsServer
    from dr_engine.providers.http import request

    via = DnsServer(*parse_server(params.resolve_via)) if params.resolve_via else None
    return request(
        params.url,
        timeout=timeout,
        method=params.method,
        host_header=params.host_header,
        resolve_via=via,
        tls_verify=params.tls_verify,
    )


def judge(params: VerifyParams, answer: HttpAnswer) -> tuple[bool, str]:
    """Whether one answer is healthy, and a short description of it for people."""
    if answer.status is None:
        return False, f"error: {answer.error}"
    snippet = " ".join(answer.body.split())[:120]
    described = f"status {answer.status}" + (f" body {snippet!r}" if snippet else "")
    if answer.status not in params.expect_status:
        return False, described
    if params.expect_body is not None and params.expect_body not in answer.body:
        return False, f"{described} (missing {params.expect_body!r})"
    return True, described


@dataclass
class ProbeTally:
    """Counts kept while probing (reported as facts)."""

    probes: int = 0
    healthy: int = 0
    streak: int = 0
    resets: int = 0
    last: str = "no probe sent"
    last_status: int | None = None
    address: str = ""


@register
class Verify(Action[VerifyParams]):
    """Verify an HTTP endpoint is healthy: N consecutive good probes within the step deadline.

    Read-only and idempotent. With ``resolve_via`` the URL's host is resolved at that DNS
    server on every probe, so the check follows the public name (use it after a DNS shift).
    """

    name = "http.verify"
    capability = Capability.HEALTH_VERIFY
    Params = VerifyParams
    permissions = ()
    example = (
        "id: target-healthy\n"
        "action: http.verify\n"
        "timeout: 30s\n"
        "with:\n"
        "  url: http://127.0.2.1:18080/healthz\n"
        "  expect_status: 200\n"
        "  expect_body: ok\n"
        "  consecutive: 3\n"
        "  interval: 500ms\n"
    )

    def probe(self, params: VerifyParams, timeout: float) -> HttpAnswer:
        """Send one probe (unit tests override this on a subclass to script answers)."""
        return http_probe(params, timeout)

    def run(self, params: VerifyParams, ctx: StepContext) -> StepResult:
        """Probe until ``consecutive`` healthy answers in a row, or fail before the deadline."""
        from dr_engine.providers.http import redact_url

        url = redact_url(params.url)
        limit = params.max_wait or (DEFAULT_MAX_WAIT if ctx.deadline.seconds is None else None)
        own = Deadline(ctx.clock, limit.total_seconds()) if limit is not None else None

        def remaining() -> float:
            left = ctx.deadline.remaining()
            return min(left, own.remaining()) if own is not None else left

        interval = params.interval.total_seconds()
        started = ctx.clock.monotonic()
        tally = ProbeTally()
        while True:
            tally.probes += 1
            answer = self.probe(params, min(params.probe_timeout.total_seconds(), remaining()))
            ok, tally.last = judge(params, answer)
            tally.last_status, tally.address = answer.status, answer.address or tally.address
            if ok:
                tally.healthy += 1
                tally.streak += 1
            else:
                if tally.streak:
                    tally.resets += 1
                    ctx.log.info("%s: streak of %d reset by %s", url, tally.streak, tally.last)
                tally.streak = 0
            if tally.streak >= params.consecutive:
                elapsed = ctx.clock.monotonic() - started
                return StepResult(
                    summary=f"{url} healthy: {tally.streak} consecutive probes ok ({tally.probes} sent)",
                    changed=False,
                    outputs={"status": str(answer.status), "address": tally.address},
                    facts=self._facts(url, tally, elapsed, params),
                )
            needed = params.consecutive - tally.streak
            # Each remaining probe waits one interval first: give up once they cannot fit.
            if (own is not None and own.expired) or ctx.deadline.expired or remaining() <= needed * interval:
                elapsed = ctx.clock.monotonic() - started
                ctx.log.info("%s not healthy: %d/%d in a row after %d probes", url, tally.streak,
                             params.consecutive, tally.probes)
                raise VerificationFailed(
                    f"{url} not healthy after {tally.probes} probes in {elapsed:.2f}s: "
                    f"{tally.streak}/{params.consecutive} consecutive ok "
                    f"({tally.healthy} ok in total, streak reset {tally.resets}x); last: {tally.last}",
                    hint="check the target service (its /healthz reason) before shifting traffic; "
                    "raise the step timeout if it is just slow to start",
                )
            ctx.clock.sleep(interval)

    @staticmethod
    def _facts(url: str, tally: ProbeTally, elapsed: float, params: VerifyParams) -> dict[str, object]:
        return {
            "url": url,
            "probes": tally.probes,
            "healthy_probes": tally.healthy,
            "consecutive": params.consecutive,
            "streak_resets": tally.resets,
            "last_status": tally.last_status,
            "address": tally.address,
            "elapsed_seconds": round(elapsed, 4),
        }

    def describe(self, params: VerifyParams) -> str:
        """Show the URL and the streak needed."""
        from dr_engine.providers.http import redact_url

        return f"{redact_url(params.url)} x{params.consecutive}"
