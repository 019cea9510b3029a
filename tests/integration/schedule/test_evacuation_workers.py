"""`dr evacuate --work-pool` on a real Prefect server with two process workers pulling the children.

Real processes throughout: `prefect server start`, two `prefect worker start --type process`
workers, and `dr evacuate` processes. Two evacuations of the same plan race: the failover lock
lets exactly one run of each application happen; the loser records LockHeld and halts only the
dependents of what it could not run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from dr_engine.evidence.audit import read_events, verify
from dr_engine.evidence.statedir import StateDir
from dr_engine.flows.server import PrefectServer, api_call

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent

RUNBOOK = """runbook: {name}
source: us-east-1
target: us-west-2
objectives: {{rto: 5m, rpo: 0s}}
steps:
  - id: work
    action: shell.run
    with: {{command: [sh, -c, "while [ ! -f {gate} ]; do sleep 0.1; done"]}}
    timeout: 5m
  - id: healthy
    action: shell.verify
    with: {{command: ["true"]}}
    after: [work]
"""

PLAN = """kind: evacuation
evacuation: evacuate-east
source: us-east-1
target: us-west-2
objectives: {rto: 20m}
concurrency: 2
applications:
  - {name: core, runbook: core, tier: 0}
  - {name: payments, runbook: payments, tier: 1}
  - {name: cards, runbook: cards, tier: 1}
"""


def _project(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    (work / "runbooks").mkdir(parents=True)
    shutil.copytree(REPO / "regions", work / "regions")
    for name in ("core", "payments", "cards"):
        gate = tmp_path / "gate" if name == "core" else tmp_path / "open"
        (work / "runbooks" / f"{name}.yaml").write_text(RUNBOOK.format(name=name, gate=gate))
    (tmp_path / "open").touch()
    (work / "runbooks" / "evacuate-east.yaml").write_text(PLAN)
    return work


def _env(api: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "DR_"))}
    env.update({"PREFECT_API_URL": api, "PREFECT_HOME": str(tmp_path / "client-home"), "NO_COLOR": "1"})
    return env


def _flow_runs(api: str) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = api_call(api, "POST", "/flow_runs/filter", {"limit": 100})
    return runs


def _wait_for_running_step(state: StateDir, runbook: str, proc: subprocess.Popen[str]) -> None:
    """Until a worker runs ``runbook``'s first step (so its run holds the application's lock)."""
    end = time.monotonic() + 180
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"dr evacuate exited early: {proc.communicate()}")
        for run_id in state.run_ids():
            events = read_events(state.audit_file(run_id))
            if events and events[0]["data"]["record"]["runbook"] == runbook and any(
                    e["type"] == "step.started" for e in events):
                return
        time.sleep(0.1)
    raise AssertionError(f"{runbook} never started on a worker")


def test_two_workers_run_the_children_and_racing_evacuations_run_each_application_once(tmp_path: Path) -> None:
    work = _project(tmp_path)
    server = PrefectServer(tmp_path / "server-home", log_path=tmp_path / "server.log")
    workers: list[subprocess.Popen[bytes]] = []
    try:
        api = server.start()
        env = _env(api, tmp_path)
        subprocess.run([str(BIN / "prefect"), "work-pool", "create", "evac", "--type", "process"], env=env,
                       check=True, capture_output=True, timeout=120)
        for index in range(2):
            with (tmp_path / f"worker-{index}.log").open("wb") as log:
                workers.append(subprocess.Popen([str(BIN / "prefect"), "worker", "start", "--pool", "evac",
                                                 "--type", "process"], env=env, stdout=log,
                                                stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp_path))
        command = [str(BIN / "dr"), "evacuate", "evacuate-east", "--yes", "--work-pool", "evac"]
        first = subprocess.Popen(command, cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, start_new_session=True)
        # The second evacuation runs while the first one's core application runs on a worker
        # (held there until the gate opens): it must not get a second run of core.
        state = StateDir(work / ".dr")
        _wait_for_running_step(state, "core", first)
        second = subprocess.run(command, cwd=work, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                                text=True, timeout=600)
        (tmp_path / "gate").touch()
        out, err = first.communicate(timeout=600)
        assert first.returncode == 0, out + err
        assert second.returncode == 1, second.stdout + second.stderr

        records = {}
        for evacuation_id in state.evacuation_ids():
            directory = state.evacuation_dir(evacuation_id)
            check = verify(directory / "audit.jsonl")
            assert check.ok and check.sealed
            records[evacuation_id] = json.loads((directory / "evacuation.json").read_text())
        winner, loser = sorted(records.values(), key=lambda r: r["status"] != "succeeded")
        assert [a["status"] for a in winner["applications"]] == ["succeeded"] * 3
        assert [a["status"] for a in loser["applications"]] == ["failed", "skipped", "skipped"]
        # Exactly one run of each application exists, and it succeeded.
        runs = state.list_runs()
        assert sorted(r.runbook for r in runs) == ["cards", "core", "payments"]
        assert all(r.status.value == "succeeded" for r in runs)

        # The children were deployment runs on the pool, executed by the workers, children of the parent.
        flow_runs = _flow_runs(api)
        children = [r for r in flow_runs if r["name"].split("-")[0] in ("core", "payments", "cards")]
        assert all(r["deployment_id"] is not None and r["work_pool_name"] == "evac" for r in children)
        assert all(r["parent_task_run_id"] is not None for r in children)
        completed = sorted(r["name"].split("-")[0] for r in children if r["state"]["type"] == "COMPLETED")
        refused = [r for r in children if r["state"]["type"] != "COMPLETED"]
        assert completed == ["cards", "core", "payments"]
        # The losing evacuation's core ran on a worker too, and was refused there by the lock.
        assert [r["name"].split("-")[0] for r in refused] == ["core"]
        assert "holds the lock for 'core'" in refused[0]["state"]["message"], refused[0]["state"]
        logs = "".join((tmp_path / f"worker-{i}.log").read_text(errors="replace") for i in range(2))
        assert all(r["id"] in logs for r in children)  # each was submitted by a worker
    finally:
        for worker in workers:  # only what this test started: their own sessions
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait(30)
        server.stop()
