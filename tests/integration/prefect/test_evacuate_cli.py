"""`dr evacuate` end to end on embedded Prefect: one parent flow run, a child flow run per application.

Real `dr` processes, real Prefect (its database is read after the command to check the flow run
tree), real shell steps; `dr plan`, `dr validate`, `dr evacuations`, `dr report` and `dr resume`
of the evacuation as an operator would type them.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from prefect_kit import REPO, dr

from dr_engine.evidence.audit import verify

pytestmark = pytest.mark.integration

RUNBOOK = """runbook: {name}
source: us-east-1
target: us-west-2
objectives: {{rto: 5m, rpo: 0s}}
steps:
  - id: work
    action: control.wait
    with: {{duration: 100ms}}
  - id: healthy
    action: shell.verify
    with: {{command: [test, -f, {gate}]}}
    after: [work]
    timeout: 2s
"""

PLAN = """kind: evacuation
evacuation: evacuate-east
source: us-east-1
target: us-west-2
objectives: {rto: 20m}
applications:
  - {name: core, runbook: core, tier: 0, business_function: ledger}
  - {name: payments, runbook: payments, tier: 1}
  - {name: cards, runbook: cards, tier: 1, after: [payments]}
"""


def _project(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    (work / "runbooks").mkdir(parents=True)
    shutil.copytree(REPO / "regions", work / "regions")
    for name in ("core", "payments", "cards"):
        gate = tmp_path / ("gate-" + name)
        if name != "payments":
            gate.touch()
        (work / "runbooks" / f"{name}.yaml").write_text(RUNBOOK.format(name=name, gate=gate))
    (work / "runbooks" / "evacuate-east.yaml").write_text(PLAN)
    return work


def _flow_runs(home: Path) -> list[tuple[str, str, str | None]]:
    """(flow name, flow run name, parent flow run name) of every flow run in Prefect's database."""
    with sqlite3.connect(home / "prefect.db") as db:
        rows = db.execute(
            "SELECT f.name, fr.name, parent.name FROM flow_run fr JOIN flow f ON f.id = fr.flow_id "
            "LEFT JOIN task_run tr ON tr.id = fr.parent_task_run_id LEFT JOIN flow_run parent ON parent.id = "
            "tr.flow_run_id ORDER BY fr.created").fetchall()
    return [(str(a), str(b), None if c is None else str(c)) for a, b, c in rows]


def test_evacuate_runs_applications_as_child_flow_runs_and_resume_finishes_the_rest(
        tmp_path: Path, prefect_home_copy: Path) -> None:
    work = _project(tmp_path)
    home = prefect_home_copy
    validated = dr(["validate"], home, work)
    assert validated.returncode == 0 and "evacuation evacuate-east, 3 applications, 3 waves" in validated.stdout
    planned = dr(["plan", "evacuate-east", "--output", "json"], home, work)
    assert planned.returncode == 0, planned.stderr
    described = json.loads(planned.stdout)
    assert described["waves"] == [["core"], ["payments"], ["cards"]]
    assert described["predicted"]["p50_seconds"] is None  # no history yet: unknown, not guessed

    first = dr(["evacuate", "evacuate-east", "--yes"], home, work)
    assert first.returncode == 1, first.stdout + first.stderr  # payments fails: its gate is missing
    assert "skipped   cards: waits for 'payments'" in first.stderr
    listed = json.loads(dr(["evacuations", "-o", "json"], home, work).stdout)
    assert [(e["status"], e["recovered"]) for e in listed] == [("failed", "1/3")]
    evacuation_id = listed[0]["evacuation_id"]
    # One parent flow run; each application that started is a child of it.
    runs = [run for run in _flow_runs(home) if run[0] != "warm-up"]  # the home was warmed up beforehand
    assert runs[0] == ("dr-evacuation", "evacuate-east", None)
    children = [(name, parent) for flow, name, parent in runs if flow == "dr-failover"]
    assert [name.split("-")[0] for name, _ in children] == ["core", "payments"]
    assert all(parent == "evacuate-east" for _, parent in children)

    (tmp_path / "gate-payments").touch()  # what broke is fixed outside the runbook
    resumed = dr(["resume", evacuation_id], home, work)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"Evacuation {evacuation_id}: SUCCEEDED" in resumed.stdout
    directory = work / ".dr" / "evacuations" / evacuation_id
    check = verify(directory / "audit.jsonl")
    assert check.ok and check.sealed
    audited = dr(["audit", "verify", evacuation_id], home, work)
    assert audited.returncode == 0 and f"evacuations/{evacuation_id}/audit.jsonl: OK" in audited.stdout
    record = json.loads((directory / "evacuation.json").read_text())
    assert [a["status"] for a in record["applications"]] == ["succeeded"] * 3 and record["resumes"] == 1
    report = dr(["report", evacuation_id, "-f", "md", "-f", "json"], home, work)
    assert report.returncode == 0, report.stdout + report.stderr
    data = json.loads((directory / "report" / "evacuation.json").read_text())
    assert data["verdict"] == "PASSED" and [a["tier"] for a in data["applications"]] == [0, 1, 1]
    assert "the evacuation was resumed 1 time(s)" in data["deviations"]
    assert "## Tier 1" in (directory / "report" / "evacuation.md").read_text()


def test_a_killed_evacuation_resumes_to_success_and_every_log_verifies(
        tmp_path: Path, prefect_home_copy: Path) -> None:
    import os
    import subprocess

    from prefect_kit import DR, quiet_env

    work = _project(tmp_path)
    (tmp_path / "gate-payments").touch()
    # SIGKILL of the whole `dr evacuate` process while the first application's step runs.
    env = {**quiet_env(prefect_home_copy), "DR_TEST_CRASH_AT": "work:during"}
    killed = subprocess.run([DR, "evacuate", "evacuate-east", "--yes"], cwd=work, env=env, capture_output=True,
                            text=True, timeout=300, stdin=subprocess.DEVNULL, check=False)
    assert killed.returncode == -9, killed.stdout + killed.stderr
    (evacuation_id,) = os.listdir(work / ".dr" / "evacuations")
    directory = work / ".dr" / "evacuations" / evacuation_id
    assert verify(directory / "audit.jsonl").ok  # intact, not yet sealed
    resumed = dr(["resume", evacuation_id], prefect_home_copy, work)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    record = json.loads((directory / "evacuation.json").read_text())
    assert record["status"] == "succeeded" and [a["status"] for a in record["applications"]] == ["succeeded"] * 3
    events = [json.loads(line)["type"] for line in (directory / "audit.jsonl").read_text().splitlines()]
    # The crashed session is sealed as such before the new one begins.
    assert events.count("run.finished") == 2 and events.index("run.resumed") > events.index("run.finished")
    for app in record["applications"]:
        check = verify(work / ".dr" / "runs" / app["run_id"] / "audit.jsonl")
        assert check.ok and check.sealed
    assert record["applications"][0]["run_id"] in resumed.stdout  # core continued its own run
