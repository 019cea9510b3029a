"""`dr failover` / `dr runs` / `dr show` / `dr audit verify` end to end, as a user runs them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from prefect_kit import REPO, dr

pytestmark = pytest.mark.integration


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    (work / "runbooks").mkdir(parents=True)
    shutil.copytree(REPO / "regions", work / "regions")
    shutil.copy(REPO / "runbooks" / "sample-noop.yaml", work / "runbooks" / "sample-noop.yaml")
    return work


def test_failover_of_the_sample_runbook_end_to_end(workdir: Path, prefect_home_copy: Path) -> None:
    refused = dr(["failover", "sample-noop"], prefect_home_copy, workdir)
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert not (workdir / ".dr" / "runs").exists()

    done = dr(["failover", "sample-noop", "--yes", "--reason", "e2e test",
               "--incident-start", "2020-01-01T00:00:00Z"], prefect_home_copy, workdir)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCEEDED" in done.stdout and "RTO:" in done.stdout and "RPO:" in done.stdout
    for step in ("announce", "settle-a", "settle-b", "verify-target"):
        assert f"started  {step}" in done.stderr  # the live progress (line mode without a TTY)
    run_dirs = list((workdir / ".dr" / "runs").iterdir())
    assert len(run_dirs) == 1
    run_id = run_dirs[0].name
    assert f"run record: .dr/runs/{run_id}/run.json" in done.stdout
    record = json.loads((run_dirs[0] / "run.json").read_text())
    assert record["status"] == "succeeded" and record["reason"] == "e2e test"
    assert record["incident_started_at"] == "2020-01-01T00:00:00.000Z"
    assert record["rto_met"] is False and record["rto_seconds"] > 5 * 365 * 86400  # years since the "incident"
    assert [s["status"] for s in record["steps"]] == ["succeeded"] * 4
    assert (workdir / ".dr" / "prefect-home").exists() is False  # the caller's PREFECT_HOME was respected

    runs = dr(["runs", "--output", "json"], prefect_home_copy, workdir)
    assert runs.returncode == 0 and [r["run_id"] for r in json.loads(runs.stdout)] == [run_id]
    show = dr(["show", run_id[:17], "--output", "json"], prefect_home_copy, workdir)
    assert json.loads(show.stdout) == {**record, "verified": True, "verification": ""}
    rebuilt = dr(["show", run_id, "--rebuild", "--output", "json"], prefect_home_copy, workdir)
    assert json.loads(rebuilt.stdout) == {**record, "verified": True, "verification": ""}
    text = dr(["show", run_id], prefect_home_copy, workdir)
    assert "verify-target" in text.stdout and "audit head" in text.stdout

    ok = dr(["audit", "verify", run_id], prefect_home_copy, workdir)
    assert ok.returncode == 0 and "OK" in ok.stdout and "sealed" in ok.stdout

    tampered = workdir / "tampered"
    shutil.copytree(run_dirs[0], tampered)
    log = tampered / "audit.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    lines[2] = lines[2].replace('"actor":"', '"actor":"x')
    log.write_text("".join(lines))
    broken = dr(["audit", "verify", str(tampered)], prefect_home_copy, workdir)
    assert broken.returncode == 1 and "BROKEN at line 3" in broken.stdout
    reordered = workdir / "reordered"
    shutil.copytree(run_dirs[0], reordered)
    lines = (reordered / "audit.jsonl").read_text().splitlines(keepends=True)
    lines[3], lines[4] = lines[4], lines[3]
    (reordered / "audit.jsonl").write_text("".join(lines))
    assert dr(["audit", "verify", str(reordered / "audit.jsonl")], prefect_home_copy, workdir).returncode == 1
