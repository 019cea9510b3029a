"""Drill variant of ``dns.shift``: create a drill record name, never move the production name.

In a drill, ``dns.shift`` of ``ledger.bank.test`` creates ``ledger-drill.bank.test`` instead
(same zone, same key), pointing at the drill copy (the target address is rewritten to the
drill address by the copies made earlier). The production name is recorded as rewritten to the
drill name, so ``dns.verify`` and ``http.verify`` of the public name check the drill name.
Cleanup deletes the drill record; the TSIG secret is looked up again from the target region
at cleanup time and is never recorded.
"""

from __future__ import annotations

import re
from typing import Any

from dr_engine.actions.base import StepContext
from dr_engine.actions.dns import ShiftParams
from dr_engine.actions.endpoints import parse_server
from dr_engine.drill.session import DrillResource, DrillSession, drill_cleaner, drill_variant
from dr_engine.errors import PreconditionFailed

RECORD = "dns-record"
SUFFIX = "-drill"
_SECRET_REF = re.compile(r"^\$\{target\.secrets\.([A-Za-z0-9_-]+)\}$")


def drill_name(fqdn: str) -> str:
    """``ledger.bank.test.`` -> ``ledger-drill.bank.test.``."""
    first, _, rest = fqdn.partition(".")
    return f"{first}{SUFFIX}.{rest}"


def _secret_name(session: DrillSession, step_id: str, params: ShiftParams) -> str | None:
    if params.key_secret_name:
        return params.key_secret_name
    raw = session.plan.get(step_id).step.with_.get("key_secret")
    match = _SECRET_REF.match(str(raw or ""))
    return match.group(1) if match else None


@drill_variant("dns.shift")
def shift_a_drill_name(params: ShiftParams, ctx: StepContext, session: DrillSession) -> ShiftParams:
    """Return params that create the drill record (recorded for cleanup first)."""
    from dr_engine.providers.dns.client import absolute_name

    fqdn = absolute_name(params.name, params.zone)
    name = drill_name(fqdn)
    secret_name = _secret_name(session, ctx.step_id, params)
    if secret_name is None:
        raise PreconditionFailed(
            f"step {ctx.step_id}: the drill record {name} could not be deleted after the drill",
            hint="give the TSIG secret as ${target.secrets.NAME} or key_secret_name, so cleanup can find it")
    session.add_resource(DrillResource(
        kind=RECORD, id=f"{RECORD}:{name}",
        spec={"server": params.server, "zone": params.zone, "name": name, "key_name": params.key_name,
              "key_algorithm": params.key_algorithm, "secret": secret_name},
        description=f"DNS record {name} at {params.server}"))
    session.add_rewrite(fqdn.rstrip("."), name.rstrip("."))
    return params.model_copy(update={"name": name})


@drill_cleaner(RECORD)
def delete_drill_record(spec: dict[str, Any], session: DrillSession, timeout: float) -> str:
    """Delete the drill record with the target region's TSIG key."""
    from dr_engine.config.bindings import read_secret
    from dr_engine.providers.dns.client import DnsServer, TsigKey
    from dr_engine.providers.dns.records import delete_records

    secret = read_secret(session.target, str(spec["secret"]))
    key = TsigKey(str(spec["key_name"]), secret, spec.get("key_algorithm", "hmac-sha256"))
    delete_records(DnsServer(*parse_server(str(spec["server"]))), str(spec["zone"]), str(spec["name"]), key,
                   timeout=min(timeout, 5.0))
    return f"deleted {spec['name']} at {spec['server']}"


__all__ = ["delete_drill_record", "drill_name", "shift_a_drill_name"]
