"""Failback against a real embedded world: fail over, recover, fail back with zero rows lost."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from dr_engine.config.loader import load_runbook
from dr_engine.engine.run import RunOptions, start_run
from dr_engine.evidence.audit import verify
from dr_engine.evidence.record import RunRecord, RunStatus
from dr_engine.evidence.statedir import StateDir
from dr_engine.model import RunMode
from dr_engine.planning.plan import build_plan
from dr_engine.providers.dns.client import DnsServer, query
from dr_engine.world import World
from dr_engine.world.ledger_app import present_ack_seqs

pytestmark = pytest.mark.integration

WorldFactory = Callable[..., World]

RUNBOOKS = Path(__file__).resolve().parents[3] / "runbooks"


def _wait_acks(load: object, count: int, region: str | None = None) -> None:
    end = time.monotonic() + 30
    while len(load.acked_seqs(region)) < count:  # type: ignore[attr-defined]
        assert time.monotonic() < end, load.stats()  # type: ignore[attr-defined]
        time.sleep(0.05)


def _in_recovery(world: World, region: str) -> bool:
    assert world.pg is not None
    with psycopg.connect(world.pg.admin_dsn(region, "ledger"), autocommit=True, connect_timeout=5) as conn:
        return bool(conn.execute("SELECT pg_is_in_recovery()").fetchone()[0])  # type: ignore[index]


def _diagnose(record: RunRecord) -> str:
    """Everything needed to understand a failed failback from CI output alone: the failed step's
    error and facts in full, and the end of the server log its hint points at."""
    lines = [f"run {record.run_id}: {record.status.value}"]
    for step in record.steps:
        if step.error is not None:
            lines += [f"step {step.id}: {step.error.kind}: {step.error.message}", f"  hint: {step.error.hint}",
                      f"  facts: {step.facts}"]
            log = Path(step.error.hint.removeprefix("see ")) if step.error.hint else None
            if log is not None and log.is_file():
                lines += [f"--- {log} (end) ---", log.read_text(errors="replace")[-4000:]]
    return "\n".join(lines)


def test_failover_then_failback_returns_home_with_zero_rows_lost(make_world: WorldFactory, tmp_path: Path) -> None:
    world = make_world()
    cfg = world.config
    state = tmp_path / "state"
    load = world.start_load()
    _wait_acks(load, 20)
    world.fail_region(cfg.source)
    over = start_run(build_plan(load_runbook(RUNBOOKS / "core-banking.yaml", regions_dir=world.regions_dir)),
                     RunOptions(state_dir=state, reason="region outage"))
    assert over.status is RunStatus.SUCCEEDED, over.error
    world.restore_region(cfg.source)  # the region is back; its database was fenced (stopped)
    _wait_acks(load, 10, region=cfg.target)  # customers now write in the recovery region

    back = start_run(build_plan(load_runbook(RUNBOOKS / "core-banking-failback.yaml",
                                             regions_dir=world.regions_dir)),
                     RunOptions(mode=RunMode.FAILBACK, state_dir=state, reason="home region recovered"))

    assert back.status is RunStatus.SUCCEEDED, _diagnose(back)
    assert back.mode == "failback"
    assert back.step("rejoin-home").facts["method"] in ("rewind", "basebackup")
    rpo = back.step("switchover").rpo
    assert rpo is not None and rpo.lag_bytes == 0
    assert back.rows_lost == 0 and back.rpo_met is True and back.rto_met is True
    assert not _in_recovery(world, cfg.source) and _in_recovery(world, cfg.target)
    host, port = world.endpoints().dns_server.rsplit(":", 1)
    assert list(query(DnsServer(host, int(port)), cfg.public_name, "A", timeout=2).values) == [cfg.source_addr]
    _wait_acks(load, 5, region=cfg.source)  # writes land at home again
    load.stop()
    acked = sorted(load.acked_seqs())
    assert world.pg is not None
    assert present_ack_seqs(world.pg.admin_dsn(cfg.source, "ledger"), acked) == set(acked)
    assert verify(StateDir(state).audit_file(back.run_id)).ok
