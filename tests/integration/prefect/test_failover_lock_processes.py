"""The failover lock across real `dr failover` processes: one runs, the others fail fast."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prefect_kit import quiet_env

pytestmark = pytest.mark.integration

# The first step blocks until the test creates the file `go`: the winner holds the lock for as
# long as the test needs, without any assumption about how fast processes start.
RUNBOOK = """
runbook: lock-test
source: us-east-1
target: us-west-2
objectives: {rto: 10m, rpo: 0s}
steps:
  - id: hold
    action: shell.run
    with: {command: [sh, -c, "while [ ! -f '%(go)s' ]; do sleep 0.05; done"]}
    timeout: 10m
  - id: healthy
    action: shell.verify
    with: {command: ["true"]}
    after: [hold]
"""
DR = [sys.executable, "-c", "from dr_engine.cli import main; main()"]
GUARD = 300.0  # hang guard only (never a performance assertion)


def make_runbook(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "regions").mkdir()
    for name in ("us-east-1", "us-west-2"):
        (tmp_path / "regions" / f"{name}.yaml").write_text(f"name: {name}\n")
    (tmp_path / "runbooks").mkdir()
    go = tmp_path / "go"
    path = tmp_path / "runbooks" / "lock-test.yaml"
    path.write_text(RUNBOOK % {"go": go})
    return path, go


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.with_suffix(".out").open("wb") as stdout, log.with_suffix(".err").open("wb") as stderr:
        return subprocess.Popen([*DR, *args], env=env, stdout=stdout, stderr=stderr, start_new_session=True)


def wait_for(condition: object, what: str) -> None:
    end = time.monotonic() + GUARD
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < end, f"gave up waiting for {what}"
        time.sleep(0.1)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(30)


def test_ten_concurrent_failovers_one_runs_nine_fail_with_lock_held(prefect_home_copy: Path, tmp_path: Path) -> None:
    runbook, go = make_runbook(tmp_path)
    state = tmp_path / "state"
    env = quiet_env(prefect_home_copy)
    env.pop("DR_LOCK_BACKEND", None)
    procs = [start(["failover", str(runbook), "--yes", "--state-dir", str(state)], env, tmp_path / f"p{n}")
             for n in range(10)]
    try:
        wait_for(lambda: sum(p.poll() is not None for p in procs) >= 9, "nine processes to exit")
        lease = json.loads((state / "locks" / "lock-test.lock").read_text())
        losers = [(n, p) for n, p in enumerate(procs) if p.poll() is not None]
        assert len(losers) == 9
        for n, process in losers:
            stderr = (tmp_path / f"p{n}.err").read_text()
            assert process.returncode == 1, stderr
            assert f"run {lease['run_id']} of {lease['holder']}" in stderr and "holds the lock" in stderr, stderr
            assert "taken" in stderr and "s ago" in stderr
        go.write_text("go")
        (winner,) = [p for p in procs if p.poll() is None]
        assert winner.wait(GUARD) == 0, (tmp_path / f"p{procs.index(winner)}.err").read_text()
    finally:
        for process in procs:
            stop(process)
    runs = sorted((state / "runs").iterdir())
    assert [r.name for r in runs] == [lease["run_id"]]
    record = json.loads((runs[0] / "run.json").read_text())
    assert record["status"] == "succeeded"
    final = json.loads((state / "locks" / "lock-test.lock").read_text())
    assert final["released"] is True and final["fencing_token"] == 1


def test_a_killed_holder_blocks_others_until_its_run_is_resumed_with_take_over(
        prefect_home_copy: Path, tmp_path: Path) -> None:
    runbook, go = make_runbook(tmp_path)
    state = tmp_path / "state"
    env = quiet_env(prefect_home_copy)
    holder = start(["failover", str(runbook), "--yes", "--state-dir", str(state)], env, tmp_path / "holder")
    try:
        def hold_running() -> bool:
            runs = list((state / "runs").glob("*/run.json")) if (state / "runs").is_dir() else []
            return bool(runs) and json.loads(runs[0].read_text())["steps"][0]["status"] == "running"

        wait_for(hold_running, "the holder to start its first step")
    finally:
        stop(holder)  # the holder crashes mid-run: its lease stays behind
    (run_dir,) = list((state / "runs").iterdir())
    run_id = run_dir.name

    second = subprocess.run([*DR, "failover", str(runbook), "--yes", "--state-dir", str(state)], env=env,
                            capture_output=True, text=True, timeout=GUARD, check=False)
    assert second.returncode == 1
    assert f"run {run_id}" in second.stderr and "stale" in second.stderr and "--take-over" in second.stderr

    go.write_text("go")
    resumed = subprocess.run([*DR, "resume", run_id, "--take-over", "--reason", "holder crashed",
                              "--state-dir", str(state)], env=env, capture_output=True, text=True, timeout=GUARD,
                             check=False)
    assert resumed.returncode == 0, resumed.stderr
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "succeeded"
    take_over = [o for o in record["overrides"] if o["kind"] == "lock-take-over"]
    assert len(take_over) == 1 and f"run {run_id}" in take_over[0]["detail"]
    events = [json.loads(line) for line in (run_dir / "audit.jsonl").read_text().splitlines()]
    assert any(e["type"] == "override" and e["data"]["kind"] == "lock-take-over" for e in events)
    lease = json.loads((state / "locks" / "lock-test.lock").read_text())
    assert lease["fencing_token"] == 2 and lease["released"] is True
    verify = subprocess.run([*DR, "audit", "verify", run_id, "--state-dir", str(state)], env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
