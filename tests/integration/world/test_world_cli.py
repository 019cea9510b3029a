"""`dr world ...` and `dr demo` as a user runs them (real processes, own addresses and ports)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from dr_engine.config.loader import load_runbook
from dr_engine.planning.plan import build_plan
from dr_engine.providers.postgres.client import process_state
from dr_engine.providers.postgres.processes import server_pids
from dr_engine.world.core import DEFAULT_ROOT, WorldConfig, region_yaml

REPO = Path(__file__).resolve().parents[3]
DR = str(Path(sys.executable).parent / "dr")


def _dr(*args: str, timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DR, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False,
                          env={**os.environ, "NO_COLOR": "1", **(env or {})})


def _fresh_root() -> Path:
    # Not under pytest's 0700 tmp dir: the postgres and bind users must traverse every parent.
    root = Path(tempfile.mkdtemp(prefix="dr-test-world-cli-"))
    root.chmod(0o755)
    return root


def test_shipped_regions_describe_the_default_world() -> None:
    for region in ("us-east-1", "us-west-2"):
        shipped = (REPO / "regions" / f"{region}.yaml").read_text()
        assert shipped == region_yaml(WorldConfig(), DEFAULT_ROOT, region)
    plan = build_plan(load_runbook(REPO / "runbooks" / "core-banking.yaml"))
    assert plan.rto_stop == "verify-public"
    assert [s.id for s in plan.steps] == [
        "check-lag", "state-ready", "fence-primary", "promote", "apply-stack", "scale-app", "verify-db",
        "verify-alarms", "verify-app-target", "shift-dns", "verify-dns", "verify-public", "reconcile"]
    # After fencing, the stack and the capacity come up in parallel with the promotion.
    assert {s.id for s in plan.steps if s.wave == plan.get("promote").wave} == {"promote", "apply-stack", "scale-app"}
    assert {"apply-stack", "fence-primary", "state-ready"} <= plan.get("verify-app-target").ancestors


@pytest.mark.integration
def test_world_up_status_fail_restore_down_across_invocations(tmp_path: Path) -> None:
    root = _fresh_root()
    up = _dr("world", "up", "--auto-ports", "--no-moto", "--root", str(root))
    try:
        assert up.returncode == 0, up.stderr
        status = _dr("world", "status", "--root", str(root), "--output", "json")
        assert status.returncode == 0
        parts = json.loads(status.stdout)["parts"]
        assert all(p["alive"] for p in parts.values())
        assert {"postgres us-east-1", "postgres us-west-2", "ledger app us-east-1", "dns"} <= set(parts)
        failed = _dr("world", "fail", "us-east-1", "--root", str(root))
        pid = parts["postgres us-east-1"]["pid"]
        data_dir = Path(f"/proc/{pid}/cwd").readlink()
        server = server_pids(data_dir)  # the postmaster and every child: the whole host freezes
        frozen = re.search(r"frozen \((\d+) processes\)", failed.stdout)
        assert failed.returncode == 0 and frozen, failed.stdout
        assert int(frozen.group(1)) >= len(server) + 1 and len(server) >= 4  # + the ledger app
        assert {process_state(p) for p in server} == {"stopped"}
        assert _dr("world", "restore", "us-east-1", "--root", str(root)).returncode == 0
        again = _dr("world", "up", "--auto-ports", "--root", str(root))
        assert again.returncode == 1 and "already running" in again.stderr
    finally:
        down = _dr("world", "down", "--root", str(root))
    assert down.returncode == 0 and "postgres us-east-1" in down.stdout
    assert not Path(f"/proc/{pid}").exists() or "postgres" not in Path(f"/proc/{pid}/cmdline").read_text()
    assert _dr("world", "status", "--root", str(root)).returncode == 1


@pytest.mark.integration
def test_demo_with_async_replication_measures_the_data_lost(tmp_path: Path) -> None:
    state = tmp_path / "state"
    root = _fresh_root()
    done = _dr("demo", "--auto-ports", "--async-replication", "--allow-data-loss",
               "--root", str(root), "--state-dir", str(state), timeout=400,
               env={"PREFECT_HOME": str(tmp_path / "prefect-home")})
    assert done.returncode == 0, done.stdout + done.stderr
    runs = list((state / "runs").iterdir())
    assert len(runs) == 1
    record = json.loads((runs[0] / "run.json").read_text())
    assert record["status"] == "succeeded"
    assert record["allow_data_loss"] is True
    assert record["rows_lost"] > 0
    assert record["rpo_met"] is False
    assert f"Independent check: {record['rows_lost']} acknowledged transfer(s)" in done.stderr
    for name in ("report.md", "report.html", "report.pdf", "report.json"):
        assert (runs[0] / "report" / name).stat().st_size > 0, name
    assert (runs[0] / "report" / "report.pdf").read_bytes().startswith(b"%PDF")
    assert not root.exists()  # torn down
    steps = {s["id"]: s for s in record["steps"]}
    assert steps["apply-stack"]["status"] == "succeeded" and steps["scale-app"]["status"] == "succeeded"
    assert "succeeded apply-stack" in done.stderr + done.stdout


@pytest.mark.integration
def test_both_shipped_runbooks_fail_over_a_world_started_by_dr_world_up(tmp_path: Path) -> None:
    """`dr world up` seeds moto: `dr plan` pre-flight passes, then core-banking and core-banking-aws run."""
    root = _fresh_root()
    env = {"DR_REGIONS_DIR": str(root / "regions"), "PREFECT_HOME": str(tmp_path / "prefect-home")}
    state = str(tmp_path / "state")
    up = _dr("world", "up", "--auto-ports", "--root", str(root))
    try:
        assert up.returncode == 0, up.stderr
        assert "pilot-light group ledger-app-usw2" in up.stdout
        plan = _dr("plan", "core-banking", "--output", "json", env=env)
        assert plan.returncode == 0, plan.stdout + plan.stderr
        preflight = json.loads(plan.stdout)["preflight"]
        assert preflight["ok"] is True and {"apply-stack", "scale-app", "shift-dns"} <= set(preflight["steps"])
        assert _dr("world", "fail", "us-east-1", "--root", str(root)).returncode == 0
        banking = _dr("failover", "core-banking", "--yes", "--state-dir", state, timeout=300, env=env)
        assert banking.returncode == 0, banking.stdout + banking.stderr
        aws = _dr("failover", "core-banking-aws", "--yes", "--state-dir", state, timeout=300, env=env)
        assert aws.returncode == 0, aws.stdout + aws.stderr
    finally:
        _dr("world", "down", "--root", str(root))
    records = {r["runbook"]: r for r in (json.loads((d / "run.json").read_text())
                                         for d in (tmp_path / "state" / "runs").iterdir())}
    assert set(records) == {"core-banking", "core-banking-aws"}
    assert all(r["status"] == "succeeded" and r["rto_met"] for r in records.values())
    banking_steps = {s["id"]: s for s in records["core-banking"]["steps"]}
    assert banking_steps["apply-stack"]["outputs"]["region"] == "us-west-2"
    assert banking_steps["shift-dns"]["outputs"]["value"] == banking_steps["apply-stack"]["outputs"]["address"]
    aws_steps = {s["id"]: s for s in records["core-banking-aws"]["steps"]}
    assert aws_steps["shift-dns"]["outputs"]["value"] == aws_steps["apply-stack"]["outputs"]["AppAddress"]
    # The pilot light was already warm after core-banking: the second scale observed it and changed nothing.
    assert aws_steps["scale-app"]["changed"] is False
