"""Scheduled drills on a real `prefect server` with a serve runner: registered, triggered, recorded."""

from __future__ import annotations

import json
import os
import time
import urllib.error
from pathlib import Path
from typing import Any

import pytest

from dr_engine.engine.readiness import latest
from dr_engine.evidence.record import RunStatus
from dr_engine.evidence.statedir import StateDir
from dr_engine.flows.server import PrefectServer, ServeRunner, api_call

pytestmark = pytest.mark.integration

RUNBOOK = """
runbook: drill-test
source: us-east-1
target: us-west-2
objectives: {rto: 10m, rpo: 0s}
steps:
  - id: announce
    action: shell.run
    with: {command: [echo, "drill of ${runbook.name} (${run.mode})"]}
    drill: run
  - id: healthy
    action: shell.verify
    with: {command: ["true"]}
    after: [announce]
"""
GUARD = 300.0  # hang guard only
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def wait_until(probe: Any, what: str) -> Any:
    end = time.monotonic() + GUARD
    while True:
        value = probe()
        if value:
            return value
        assert time.monotonic() < end, f"gave up waiting for {what}"
        time.sleep(0.5)


def deployment(api: str, name: str) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = api_call(api, "GET", f"/deployments/name/{name}")
    except urllib.error.HTTPError:
        return None
    return found


def run_to_completion(api: str, deployment_id: str) -> dict[str, Any]:
    flow_run = api_call(api, "POST", f"/deployments/{deployment_id}/create_flow_run", {})

    def finished() -> dict[str, Any] | None:
        current: dict[str, Any] = api_call(api, "GET", f"/flow_runs/{flow_run['id']}")
        return current if current["state"]["type"] in FINAL else None

    result: dict[str, Any] = wait_until(finished, f"flow run {flow_run['id']}")
    return result


def test_a_served_drill_deployment_runs_on_a_real_server(tmp_path: Path) -> None:
    (tmp_path / "regions").mkdir()
    for name in ("us-east-1", "us-west-2"):
        (tmp_path / "regions" / f"{name}.yaml").write_text(f"name: {name}\n")
    (tmp_path / "runbooks").mkdir()
    runbook = tmp_path / "runbooks" / "drill-test.yaml"
    runbook.write_text(RUNBOOK)
    state = tmp_path / "state"
    server = PrefectServer(tmp_path / "server-home", log_path=tmp_path / "server.log")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "DR_"))}
    env["PREFECT_HOME"] = str(tmp_path / "client-home")
    runner = ServeRunner("", ["--runbook", str(runbook), "--state-dir", str(state), "--regions-dir",
                              str(tmp_path / "regions"), "--runbooks-dir", str(tmp_path / "runbooks"),
                              "--drill-cron", "0 3 * * 1", "--readiness-every", "30m"],
                         log_path=tmp_path / "runner.log", env=env, cwd=tmp_path)
    try:
        api = server.start()
        runner.api_url = api
        runner.start()
        # Registered one after the other; readiness comes last.
        readiness = wait_until(lambda: deployment(api, "dr-readiness/readiness"), "the readiness deployment")
        drill = deployment(api, "dr-scheduled-run/drill-test-drill")
        assert drill is not None
        crons = [s["schedule"].get("cron") for s in drill["schedules"]]
        assert crons == ["0 3 * * 1"] and drill["parameters"]["mode"] == "drill"
        assert deployment(api, "dr-scheduled-run/drill-test-failover") is not None
        assert deployment(api, "dr-scheduled-run/drill-test-failback") is not None
        assert readiness["schedules"][0]["schedule"]["interval"] == 1800

        flow_run = run_to_completion(api, drill["id"])
        assert flow_run["state"]["type"] == "COMPLETED", (tmp_path / "runner.log").read_text()[-3000:]
        (record,) = StateDir(state).list_runs()
        assert record.mode == "drill" and record.status is RunStatus.SUCCEEDED
        assert record.triggered_by == "prefect-deployment:drill-test-drill"
        assert flow_run["state"]["message"] == f"drill run {record.run_id} succeeded"

        checked = run_to_completion(api, readiness["id"])
        assert checked["state"]["type"] == "COMPLETED", (tmp_path / "runner.log").read_text()[-3000:]
        (result,) = latest(state)
        assert result.runbook == "drill-test" and result.ready and result.last_test_run == record.run_id
    finally:
        runner.stop()
        server.stop()
    assert runner.process is not None and runner.process.poll() is not None
    assert server.process is not None and server.process.poll() is not None
    events = [json.loads(line) for line in (state / "runs" / record.run_id / "audit.jsonl").read_text().splitlines()]
    assert events[0]["type"] == "run.started"
