"""Drills against a real embedded world: production untouched, drill copies always removed."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from dr_engine.config.loader import load_runbook
from dr_engine.drill.session import drill_address
from dr_engine.engine.run import RunOptions, start_run
from dr_engine.evidence.audit import read_events, verify
from dr_engine.evidence.record import AUDIT_FILE, RunRecord, RunStatus, StepStatus
from dr_engine.evidence.statedir import StateDir
from dr_engine.model import RunMode
from dr_engine.planning.plan import build_plan
from dr_engine.providers.dns.client import DnsServer, query
from dr_engine.providers.postgres.client import responsive
from dr_engine.world import World

pytestmark = pytest.mark.integration

WorldFactory = Callable[..., World]

RUNBOOK = Path(__file__).resolve().parents[3] / "runbooks" / "core-banking.yaml"


def _answer(world: World, name: str) -> list[str]:
    ends = world.endpoints()
    host, port = ends.dns_server.rsplit(":", 1)
    return list(query(DnsServer(host, int(port)), name, "A", timeout=2).values)


def _production(world: World) -> dict[str, Any]:
    """What must not change: roles, writability, DNS, replication."""
    assert world.pg is not None
    cfg = world.config
    facts: dict[str, Any] = {"dns": _answer(world, cfg.public_name)}
    with psycopg.connect(world.pg.admin_dsn(cfg.source, "ledger"), autocommit=True, connect_timeout=5) as conn:
        facts["primary_in_recovery"] = conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]  # type: ignore[index]
        conn.execute("CREATE TABLE IF NOT EXISTS drill_probe (id serial primary key)")
        conn.execute("INSERT INTO drill_probe DEFAULT VALUES")  # writable (and the sync standby acks)
        facts["streaming"] = [r[0] for r in conn.execute("SELECT state FROM pg_stat_replication").fetchall()]
    with psycopg.connect(world.pg.admin_dsn(cfg.target, "ledger"), autocommit=True, connect_timeout=5) as conn:
        facts["standby_in_recovery"] = conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]  # type: ignore[index]
    return facts


def _drill(world: World, state: Path, runbook: Path = RUNBOOK) -> RunRecord:
    plan = build_plan(load_runbook(runbook, regions_dir=world.regions_dir))
    # A runbook copied out of the repository still finds the repository's stacks.
    return start_run(plan, RunOptions(mode=RunMode.DRILL, state_dir=state, reason="test drill",
                                      repo_root=RUNBOOK.parents[1]))


def _assert_no_leftovers(world: World, record: RunRecord, state: Path) -> None:
    loaded = load_runbook(RUNBOOK, regions_dir=world.regions_dir)
    drill_addr = drill_address(loaded.target)
    assert drill_addr is not None
    assert not responsive(f"postgresql://postgres@{drill_addr}:{world.config.pg_port}/ledger", 0.5)
    assert not responsive(f"postgresql://postgres@{drill_addr}:{world.config.app_port}/x", 0.5)
    assert _answer(world, f"{world.config.app_name}-drill.{world.config.zone}") == []
    drill = (record.model_extra or {})["drill"]
    created = {r["id"] for r in drill["resources"]}
    removed = {c["id"] for c in drill["cleaned"] if c["ok"]}
    assert created and created == removed, drill
    # The stack was applied in the drill workspace, and that workspace was destroyed and deleted.
    assert "terraform-workspace" in {r["kind"] for r in drill["resources"]}
    assert _drill_state_objects(world) == []
    assert drill["cleanup"]["failed"] == []
    # The copies' work folder goes too; their logs stay with the run as evidence.
    assert drill["cleanup"]["work_dir_removed"] is True and not Path(drill["cleanup"]["work_dir"]).exists()
    run_dir = StateDir(state).audit_file(record.run_id).parent
    assert all((run_dir / kept).is_file() for kept in drill["cleanup"]["logs_kept"])
    assert [p.name for p in (run_dir / "drill-logs").glob("ledger-clone-server.log")]  # the clone's server log
    audit = StateDir(state).audit_file(record.run_id)
    assert verify(audit).ok
    types = [e["type"] for e in read_events(audit)]
    # Cleanup happens before the run is sealed, and is in the audit log.
    assert types.index("drill.cleanup") < types.index("run.finished")
    leftovers = list(Path("/proc").glob("[0-9]*/cmdline"))
    running = [p for p in leftovers if f"{drill_addr}:{world.config.app_port}" in _read(p)]
    assert running == []


def _aws(world: World, service: str) -> Any:
    import boto3

    return boto3.client(service, region_name=world.config.target, endpoint_url=world.endpoints().moto_endpoint_url,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def _drill_state_objects(world: World) -> list[str]:
    """Terraform state objects of drill workspaces in the target region's state bucket."""
    listed = _aws(world, "s3").list_objects_v2(Bucket=f"dr-tfstate-{world.config.target}", Prefix="env:/")
    return [str(item["Key"]) for item in listed.get("Contents", [])]


def _group_size(world: World) -> tuple[int, int]:
    """(min, desired) of the recovery region's pilot-light Auto Scaling group."""
    found = _aws(world, "autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=["ledger-app-usw2"])
    group = found["AutoScalingGroups"][0]
    return int(group["MinSize"]), int(group["DesiredCapacity"])


def _read(path: Path) -> str:
    try:
        return path.read_bytes().replace(b"\x00", b" ").decode(errors="replace")
    except OSError:
        return ""


def test_drill_promotes_a_clone_measures_and_leaves_production_untouched(make_world: WorldFactory,
                                                                         tmp_path: Path) -> None:
    world = make_world()
    load = world.start_load()
    end = time.monotonic() + 20
    while len(load.acked_seqs()) < 20:
        assert time.monotonic() < end
        time.sleep(0.05)
    before = _production(world)
    assert before["dns"] == [world.config.source_addr] and before["primary_in_recovery"] is False

    record = _drill(world, tmp_path / "state")

    assert record.status is RunStatus.SUCCEEDED, record.error
    assert record.mode == "drill"
    assert record.step("fence-primary").status is StepStatus.SKIPPED
    assert record.step("promote").status is StepStatus.SUCCEEDED
    assert record.step("shift-dns").outputs["name"].startswith(f"{world.config.app_name}-drill.")
    assert record.rto_seconds is not None and record.rto_met is True
    assert record.rows_lost == 0 and record.rpo_met is True
    assert int(record.step("reconcile").facts["acknowledged"]) >= 20
    after = _production(world)
    assert after["dns"] == before["dns"] == [world.config.source_addr]
    assert after["primary_in_recovery"] is False and after["standby_in_recovery"] is True
    assert after["streaming"] == ["streaming"]
    _assert_no_leftovers(world, record, tmp_path / "state")
    # The pilot light was warmed for real, then put back to its size.
    assert record.step("scale-app").status is StepStatus.SUCCEEDED
    assert record.step("scale-app").outputs["in_service"] == "2"
    assert "autoscaling-size" in {r["kind"] for r in (record.model_extra or {})["drill"]["resources"]}
    assert _group_size(world) == (0, 0)
    # Production kept serving writes during the drill.
    assert len(load.acked_seqs()) > 20


def test_a_drill_that_fails_midway_still_cleans_up(make_world: WorldFactory, tmp_path: Path) -> None:
    world = make_world()
    broken = tmp_path / "core-banking.yaml"
    text = RUNBOOK.read_text()
    # The drill app never answers "nope": health verification of the copy fails after the promote.
    broken.write_text(text.replace("      expect_body: ok\n      consecutive: 3\n      interval: 100ms\n"
                                   "      probe_timeout: 2s\n    after: [verify-db, apply-stack]\n    timeout: 60s",
                                   "      expect_body: nope\n      consecutive: 3\n      interval: 100ms\n"
                                   "      probe_timeout: 2s\n    after: [verify-db, apply-stack]\n    timeout: 3s", 1))
    assert broken.read_text() != text
    before = _production(world)

    record = _drill(world, tmp_path / "state", broken)

    assert record.status in (RunStatus.FAILED, RunStatus.HALTED)
    assert record.halted_at_step == "verify-app-target"
    assert record.step("promote").status is StepStatus.SUCCEEDED  # the clone was promoted...
    after = _production(world)
    assert after["dns"] == before["dns"] and after["primary_in_recovery"] is False
    assert after["standby_in_recovery"] is True
    _assert_no_leftovers(world, record, tmp_path / "state")  # ...and removed
    assert (StateDir(tmp_path / "state").run_dir(record.run_id) / AUDIT_FILE).is_file()
