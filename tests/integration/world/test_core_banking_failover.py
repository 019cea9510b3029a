"""The shipped core-banking runbook, run by the engine against a real embedded world."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from dr_engine.config.loader import load_runbook
from dr_engine.engine.run import RunOptions, start_run
from dr_engine.evidence.audit import read_events, verify
from dr_engine.evidence.record import AUDIT_FILE, RunStatus
from dr_engine.planning.plan import build_plan
from dr_engine.providers.dns.client import DnsServer, query
from dr_engine.world import World, WorldConfig
from dr_engine.world.ledger_app import present_ack_seqs

WorldFactory = Callable[..., World]


@pytest.fixture(scope="module")
def make_world() -> Iterator[WorldFactory]:
    """Start worlds on demand (a failover consumes one); stop every one when the module is done."""
    worlds: list[World] = []

    def make(**overrides: object) -> World:
        config = WorldConfig.for_tests(**overrides)  # with moto: the AWS half and Terraform state
        root = Path(tempfile.mkdtemp(prefix="dr-test-world-"))
        root.chmod(0o755)  # the postgres and bind users must traverse it
        world = World(config, root=root)
        worlds.append(world)
        return world.start()

    yield make
    for world in worlds:
        world.stop()

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
RUNBOOK = REPO / "runbooks" / "core-banking.yaml"


def _answer(world_dns: str, name: str) -> list[str]:
    host, port = world_dns.rsplit(":", 1)
    return list(query(DnsServer(host, int(port)), name, "A", timeout=2).values)


def _wait_acks(load: object, count: int, region: str | None = None) -> None:
    end = time.monotonic() + 20
    while len(load.acked_seqs(region)) < count:  # type: ignore[attr-defined]
        assert time.monotonic() < end, f"load generator did not get {count} acks: {load.stats()}"  # type: ignore[attr-defined]
        time.sleep(0.05)


def test_sync_failover_under_load_meets_rpo_zero_and_moves_dns(make_world: WorldFactory, tmp_path: Path) -> None:
    world = make_world()
    ends = world.endpoints()
    assert _answer(ends.dns_server, ends.public_name) == [world.config.source_addr]
    load = world.start_load()
    _wait_acks(load, 20)
    world.fail_region(world.config.source)
    incident = datetime.now(UTC)
    acked_before = set(load.acked_seqs())

    plan = build_plan(load_runbook(RUNBOOK, regions_dir=world.regions_dir))
    record = start_run(plan, RunOptions(state_dir=tmp_path / "state", incident_start=incident))

    assert record.status is RunStatus.SUCCEEDED, record.error
    assert record.rto_met is True and record.rto_seconds is not None and record.rto_seconds > 0
    assert record.rows_lost == 0
    assert record.rpo_met is True
    assert _answer(ends.dns_server, ends.public_name) == [world.config.target_addr]
    # The stack was re-applied in the target region with its state in the target's bucket on moto,
    # and its outputs drove the health check and the DNS shift.
    apply = record.step("apply-stack")
    assert apply.changed is True
    assert apply.outputs["address"] == world.config.target_addr
    assert apply.outputs["health_url"] == ends.regions[world.config.target].health_url
    assert apply.facts["state"].startswith(f"s3://dr-tfstate-{world.config.target}/")
    assert record.step("verify-app-target").facts["url"] == apply.outputs["health_url"]
    assert record.step("shift-dns").outputs["value"] == world.config.target_addr
    assert world.moto_endpoint_url is not None
    aws = _aws(world.moto_endpoint_url, world.config.target)
    state_keys = [o["Key"] for o in aws("s3").list_objects_v2(Bucket=f"dr-tfstate-{world.config.target}")["Contents"]]
    assert state_keys == [f"ledger/{world.config.target}/terraform.tfstate"]
    group = aws("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=["ledger-app-usw2"])
    assert group["AutoScalingGroups"][0]["DesiredCapacity"] == 2
    assert record.step("scale-app").outputs["in_service"] == "2"
    assert record.step("verify-alarms").status.value == "succeeded"
    target_dsn = ends.dsn(world.config.target)
    assert present_ack_seqs(target_dsn, sorted(acked_before)) == acked_before
    # The load generator follows the public name: new writes land in the recovery region.
    _wait_acks(load, 5, region=world.config.target)
    events = read_events(record_dir(tmp_path / "state", record.run_id) / AUDIT_FILE)
    assert verify(record_dir(tmp_path / "state", record.run_id) / AUDIT_FILE).ok
    # The database password (a region secret) reached the actions but no file of the run.
    assert world.pg is not None and world.pg.password
    for path in record_dir(tmp_path / "state", record.run_id).rglob("*"):
        if path.is_file():
            assert world.pg.password not in path.read_text(errors="replace"), path
    assert [e["data"]["step"] for e in events if e["type"] == "step.succeeded"][-1] == "reconcile"


def test_async_lag_gate_refuses_then_audited_override_measures_exact_loss(
        make_world: WorldFactory, tmp_path: Path) -> None:
    world = make_world(synchronous=False)
    ends = world.endpoints()
    load = world.start_load()
    _wait_acks(load, 10)
    assert world.pg is not None
    world.pg.cut_replication()  # the replication link fails first...
    before_cut = len(load.acked_seqs())
    _wait_acks(load, before_cut + 10)
    world.fail_region(world.config.source)  # ...then the whole region
    time.sleep(0.3)
    load.stop()
    acked = set(load.acked_seqs())

    plan = build_plan(load_runbook(RUNBOOK, regions_dir=world.regions_dir))
    state = tmp_path / "state"
    refused = start_run(plan, RunOptions(state_dir=state))
    assert refused.status is RunStatus.HALTED
    assert refused.halted_at_step == "check-lag"
    assert refused.error is not None and "allow-data-loss" in (refused.error.hint or "")
    assert _answer(ends.dns_server, ends.public_name) == [world.config.source_addr]  # nothing changed
    assert world.pg.primary.pid() is not None  # not even fenced

    allowed = start_run(plan, RunOptions(state_dir=state, allow_data_loss=True, reason="test: accept loss"))
    assert allowed.status is RunStatus.SUCCEEDED, allowed.error
    assert any(o.kind == "allow-data-loss" for o in allowed.overrides)
    events = read_events(record_dir(state, allowed.run_id) / AUDIT_FILE)
    assert any(e["type"] == "override" and e["data"].get("kind") == "allow-data-loss" for e in events)
    present = present_ack_seqs(ends.dsn(world.config.target), sorted(acked))
    lost = acked - present
    assert len(lost) >= 10
    assert allowed.rows_lost == len(lost)
    assert allowed.rpo_met is False


def test_unhealthy_target_halts_before_dns_shift(make_world: WorldFactory, tmp_path: Path) -> None:
    world = make_world()
    ends = world.endpoints()
    world.fail_region(world.config.source)
    # The recovery region's app is frozen too: its health check can never pass.
    app_pid = world._apps[world.config.target].pid
    import os
    import signal

    os.kill(app_pid, signal.SIGSTOP)
    try:
        # Same runbook, with a short health-check budget so the test does not wait a minute.
        quick = tmp_path / "core-banking.yaml"
        text = RUNBOOK.read_text()
        head, _, tail = text.partition("  - id: verify-app-target")
        quick.write_text(head + "  - id: verify-app-target" + tail.replace("timeout: 60s", "timeout: 3s", 1))
        plan = build_plan(load_runbook(quick, regions_dir=world.regions_dir))
        # The copy lives outside the repository: tell the run where the stacks are.
        record = start_run(plan, RunOptions(state_dir=tmp_path / "state", repo_root=REPO))
    finally:
        os.kill(app_pid, signal.SIGCONT)
    assert record.status is RunStatus.FAILED
    assert record.halted_at_step == "verify-app-target"
    statuses = {s.id: s.status.value for s in record.steps}
    assert statuses["promote"] == "succeeded"
    assert statuses["shift-dns"] != "succeeded"
    assert _answer(ends.dns_server, ends.public_name) == [world.config.source_addr]


def _aws(endpoint_url: str, region: str) -> Callable[[str], Any]:
    """Raw clients of the world's moto server, to inspect what the run changed."""
    from dr_engine.providers.aws.session import AwsTarget, client

    return lambda service: client(AwsTarget(region, endpoint_url), service)


def record_dir(state: Path, run_id: str) -> Path:
    """Where the engine keeps a run's files."""
    from dr_engine.evidence.statedir import StateDir

    return StateDir(state).run_dir(run_id)


def test_stopping_a_world_whose_region_is_frozen_leaves_no_process(make_world: WorldFactory) -> None:
    from dr_engine.providers.postgres.client import process_state
    from dr_engine.providers.postgres.processes import server_pids

    world = make_world(apps=False, dns=False, moto=False)
    assert world.pg is not None
    data_dirs = [node.data_dir for node in world.pg.nodes.values()]
    frozen = world.fail_region(world.config.source)  # every process of the source's server, frozen
    assert len(frozen) >= 4 and {process_state(pid) for pid in frozen} <= {"stopped", "gone"}

    world.stop()  # without restoring the region first, as a failed test or `dr world down` would

    assert all(server_pids(data_dir) == [] for data_dir in data_dirs)
    assert all(process_state(pid) in ("gone", "zombie") for pid in frozen)
