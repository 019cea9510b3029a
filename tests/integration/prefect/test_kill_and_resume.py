"""SIGKILL a `dr failover` process in the middle of a step, then `dr resume` finishes the run.

The run is driven by marker files, not sleeps: the second step writes `reached` and waits for
`release`; the test kills the whole process group as soon as `reached` exists.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from prefect_kit import DR, REPO, dr, quiet_env

from dr_engine.evidence.audit import read_events, verify

pytestmark = pytest.mark.integration

RUNBOOK = """runbook: killable
source: us-east-1
target: us-west-2
objectives: {{rto: 5m, rpo: 0s}}
steps:
  - id: first
    action: shell.run
    with: {{command: [sh, -c, "echo ran >> {d}/first.count"]}}
  - id: in-flight
    action: shell.run
    with:
      command:
        - sh
        - -c
        - "echo ran >> {d}/in-flight.count; touch {d}/reached;
           while [ ! -f {d}/release ]; do sleep 0.05; done"
    after: [first]
    timeout: 5m
  - id: healthy
    action: shell.verify
    with: {{command: ["true"]}}
    after: [in-flight]
"""


def wait_for(path: Path, proc: subprocess.Popen[str], limit: float = 300) -> None:
    # A safety net only: the test proceeds the moment the marker appears.
    end = time.monotonic() + limit
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"dr exited early with {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
        if time.monotonic() > end:
            raise AssertionError(f"{path} never appeared")
        time.sleep(0.05)


def test_a_killed_run_is_resumed_without_rerunning_finished_steps(tmp_path: Path, prefect_home_copy: Path) -> None:
    work = tmp_path / "work"
    marks = tmp_path / "marks"
    marks.mkdir()
    (work / "runbooks").mkdir(parents=True)
    shutil.copytree(REPO / "regions", work / "regions")
    (work / "runbooks" / "killable.yaml").write_text(RUNBOOK.format(d=marks))

    proc = subprocess.Popen([DR, "failover", "killable", "--yes"], cwd=work, env=quiet_env(prefect_home_copy),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        wait_for(marks / "reached", proc)
    finally:
        # The whole session we created: dr, its step's shell and its embedded Prefect server.
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL

    run_dir = next((work / ".dr" / "runs").iterdir())
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "running"
    assert [s["status"] for s in record["steps"]] == ["succeeded", "running", "pending"]
    assert verify(run_dir / "audit.jsonl").ok  # an interrupted log is intact, just not sealed

    (marks / "release").touch()
    resumed = dr(["resume", run_dir.name], prefect_home_copy, work)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "SUCCEEDED" in resumed.stdout

    assert (marks / "first.count").read_text().splitlines() == ["ran"]  # not executed again
    assert (marks / "in-flight.count").read_text().splitlines() == ["ran", "ran"]  # the in-flight step re-ran
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "succeeded" and record["resumes"] == 1
    assert [s["status"] for s in record["steps"]] == ["succeeded"] * 3
    check = verify(run_dir / "audit.jsonl")
    assert check.ok and check.sealed
    events = read_events(run_dir / "audit.jsonl")
    resumed_event = next(e for e in events if e["type"] == "run.resumed")
    assert resumed_event["data"]["previous_status"] == "running"
    assert resumed_event["data"]["reset_steps"] == ["in-flight"]
    assert [e["data"]["step"] for e in events if e["type"] == "step.started"] == ["first", "in-flight", "in-flight",
                                                                                 "healthy"]
    lease = json.loads((work / ".dr" / "locks" / "killable.lock").read_text())
    assert lease["released"] is True and lease["fencing_token"] == 2
