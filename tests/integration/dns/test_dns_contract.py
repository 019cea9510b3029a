"""dns.shift holds the action contract against a real BIND (dr_engine.testing.contracts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dr_engine.actions.dns import Shift
from dr_engine.providers.dns.client import query
from dr_engine.testing.contracts import ActionContract
from dr_engine.testing.step_context import step_context
from dr_engine.world.dns import BindServer

pytestmark = pytest.mark.integration


def test_dns_shift_keeps_the_action_contract(bind: BindServer, record: str, addresses: tuple[str, str],
                                             tmp_path: Path) -> None:
    src, dst = addresses
    params = {"server": f"{bind.address}:{bind.port}", "zone": "bank.test", "name": record, "value": dst,
              "ttl": "30s", "key_name": bind.key_name.rstrip("."),
              "key_secret": bind.tsig_key.secret.get_secret_value(), "query_timeout": "500ms"}

    def answer() -> tuple[tuple[str, ...], int]:
        found = query(bind.server, record, "A")
        return found.values, found.ttl

    contract = ActionContract(Shift, params, context=lambda: step_context(state_dir=tmp_path), observe=answer)
    contract.check_params_refuse_unknown_keys()
    checks = contract.check_preflight_has_no_side_effects()
    assert checks and all(c.ok for c in checks), checks
    assert answer() == ((src,), 5)  # the pre-flight's signed SOA query changed nothing
    first, again = contract.check_rerun_changes_nothing()
    assert first.changed is True and answer() == ((dst,), 30)
    assert "already points" in again.summary
