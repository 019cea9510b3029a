"""Concurrency: failovers of different applications at once, and a lock whose holder died.

(N parallel failovers of ONE application, exactly one running and the others failing with
LockHeld, are covered by tests/integration/prefect/test_failover_lock_processes.py.)
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from reliability_kit import quiet_env

from dr_engine.evidence.audit import read_events, verify

pytestmark = pytest.mark.integration

DR = str(Path(sys.executable).parent / "dr")
GUARD = 300.0  # hang guard only
APPS = 4

RUNBOOK = """runbook: {name}
source: us-east-1
target: us-west-2
objectives: {{rto: 5m, rpo: 0s}}
steps:
  - id: write
    action: shell.run
    with: {{command: [sh, -c, "echo ${{runbook.name}} ${{run.id}} >> {marks}/{name}.log"]}}
  - id: settle
    action: control.wait
    with: {{duration: 300ms}}
    after: [write]
  - id: healthy
    action: shell.verify
    with: {{command: [sh, -c, "grep -q ${{run.id}} {marks}/{name}.log"], consecutive: 2, interval: 50ms}}
    after: [settle]
"""


def _workspace(tmp_path: Path, names: list[str]) -> Path:
    marks = tmp_path / "marks"
    marks.mkdir()
    (tmp_path / "runbooks").mkdir()
    (tmp_path / "regions").mkdir()
    for region in ("us-east-1", "us-west-2"):
        (tmp_path / "regions" / f"{region}.yaml").write_text(f"name: {region}\n")
    for name in names:
        (tmp_path / "runbooks" / f"{name}.yaml").write_text(RUNBOOK.format(name=name, marks=marks))
    return tmp_path


def test_parallel_failovers_of_different_applications_do_not_interfere(
        tmp_path: Path, prefect_server: str, migrated_home: Path) -> None:
    names = [f"app-{n}" for n in range(APPS)]
    work = _workspace(tmp_path, names)
    state = work / "state"  # one shared state dir, as on a shared runner
    env = quiet_env(migrated_home, prefect_server)
    procs = [subprocess.Popen([DR, "failover", name, "--yes", "--state-dir", str(state)], cwd=work, env=env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name in names]
    outputs = [p.communicate(timeout=GUARD) for p in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, out + err
    runs = {json.loads((d / "run.json").read_text())["runbook"]: d for d in (state / "runs").iterdir()}
    assert sorted(runs) == names  # one run per application, none lost or merged
    for name, run_dir in runs.items():
        record = json.loads((run_dir / "run.json").read_text())
        assert record["status"] == "succeeded"
        assert [s["status"] for s in record["steps"]] == ["succeeded"] * 3
        check = verify(run_dir / "audit.jsonl")
        assert check.ok and check.sealed
        assert {e["run_id"] for e in read_events(run_dir / "audit.jsonl")} == {run_dir.name}
        # Each application's steps saw only their own run.
        assert (work / "marks" / f"{name}.log").read_text().split() == [name, run_dir.name]
        lease = json.loads((state / "locks" / f"{name}.lock").read_text())
        assert lease["run_id"] == run_dir.name and lease["released"] is True and lease["fencing_token"] == 1


def test_a_dead_holder_blocks_a_new_run_until_an_audited_take_over(
        tmp_path: Path, prefect_server: str, migrated_home: Path) -> None:
    work = _workspace(tmp_path, ["ledger"])
    state = work / "state"
    env = quiet_env(migrated_home, prefect_server)
    # The holder dies mid-step (SIGKILL at an exact point), leaving its lease behind.
    dead = subprocess.run([DR, "failover", "ledger", "--yes", "--state-dir", str(state)], cwd=work,
                          env={**env, "DR_TEST_CRASH_AT": "settle:during"}, capture_output=True, text=True,
                          timeout=GUARD, stdin=subprocess.DEVNULL, check=False)
    assert dead.returncode == -signal.SIGKILL
    (dead_dir,) = list((state / "runs").iterdir())
    lease = json.loads((state / "locks" / "ledger.lock").read_text())
    assert lease["run_id"] == dead_dir.name and lease["released"] is False

    refused = subprocess.run([DR, "failover", "ledger", "--yes", "--state-dir", str(state)], cwd=work, env=env,
                             capture_output=True, text=True, timeout=GUARD, stdin=subprocess.DEVNULL, check=False)
    assert refused.returncode == 1
    assert dead_dir.name in refused.stderr and "stale" in refused.stderr and "Traceback" not in refused.stderr
    assert len(list((state / "runs").iterdir())) == 1  # refused before anything started

    taken = subprocess.run([DR, "failover", "ledger", "--yes", "--take-over-lock", "--reason", "holder died",
                            "--state-dir", str(state)], cwd=work, env=env, capture_output=True, text=True,
                           timeout=GUARD, stdin=subprocess.DEVNULL, check=False)
    assert taken.returncode == 0, taken.stdout + taken.stderr
    (new_dir,) = [d for d in (state / "runs").iterdir() if d != dead_dir]
    record = json.loads((new_dir / "run.json").read_text())
    assert record["status"] == "succeeded"
    overrides = [o for o in record["overrides"] if o["kind"] == "lock-take-over"]
    assert len(overrides) == 1 and dead_dir.name in overrides[0]["detail"]
    final = json.loads((state / "locks" / "ledger.lock").read_text())
    assert final["run_id"] == new_dir.name and final["fencing_token"] == 2 and final["released"] is True
    # The dead run's log is intact (just not sealed): it stays as evidence and can still be resumed.
    check = verify(dead_dir / "audit.jsonl")
    assert check.ok and not check.sealed
