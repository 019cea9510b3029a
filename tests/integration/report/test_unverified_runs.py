"""A run whose records do not verify reads UNVERIFIED in every view (real `dr` subprocesses)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dr_engine.evidence.audit import canonical
from dr_engine.testing.sample_runs import SampleRuns

pytestmark = pytest.mark.integration

DR = Path(sys.executable).with_name("dr")
FORGED_APPROVER = "mallory@forged"


def dr(samples: SampleRuns, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DR_STATE_DIR": str(samples.state_dir), "DR_RUNBOOKS_DIR": str(samples.project / "runbooks"),
           "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run([str(DR), *args], capture_output=True, text=True, timeout=300, cwd=cwd, env=env,
                          check=False)


def forge_approver(run_dir: Path) -> int:
    """Edit who approved in one event of the audit log (its hash left as it was); return its line number."""
    audit = run_dir / "audit.jsonl"
    lines = audit.read_text(encoding="utf-8").splitlines()
    index = next(i for i, line in enumerate(lines) if '"approver"' in line)
    event = json.loads(lines[index])
    event["data"]["facts"]["approver"] = FORGED_APPROVER
    lines[index] = canonical(event).decode()
    audit.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return index + 1


def forge_record(run_dir: Path) -> None:
    """Make the failed run's run.json say it succeeded (the audit log left intact)."""
    path = run_dir / "run.json"
    record = json.loads(path.read_text(encoding="utf-8"))
    record["status"] = "succeeded"
    record["halted_at_step"] = None
    record["error"] = None
    for step in record["steps"]:
        step["status"], step["error"] = "succeeded", None
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def pdf_text(path: Path) -> str:
    done = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, timeout=60,
                          check=True)
    return done.stdout


def test_a_report_of_an_edited_audit_log_reads_unverified_in_every_format(fresh_samples: SampleRuns,
                                                                           tmp_path: Path) -> None:
    run_id = fresh_samples.run_id("drill")  # a passed drill
    line = forge_approver(fresh_samples.runs["drill"])
    out = tmp_path / "out"
    done = dr(fresh_samples, "report", run_id, "-f", "html,pdf,md,json", "--out", str(out), cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    why = f"line {line}: content does not match its hash"
    assert f"run {run_id}: UNVERIFIED: {why}" in done.stderr
    html = (out / "report.html").read_text(encoding="utf-8")
    assert '<span class="verdict UNVERIFIED">UNVERIFIED</span>' in html
    assert 'class="verdict PASSED"' not in html and ">PASS<" not in html
    assert "UNVERIFIED: this run's records do not verify" in html and why in html
    markdown = (out / "report.md").read_text(encoding="utf-8")
    verdict_line = next(text for text in markdown.splitlines() if text.startswith("**Verdict"))
    assert verdict_line.startswith("**Verdict: UNVERIFIED**") and "recorded status succeeded (not verified)" in \
        verdict_line
    assert "PASSED" not in markdown and "| PASS |" not in markdown
    # The forged approver is not rendered as fact: the approvals are flagged as unverified.
    approvals = markdown.split("## 6. Approvals")[1].split("## 7.")[0]
    assert "**UNVERIFIED:** the names and decisions below come from records that do not verify" in approvals
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["verdict"] == "UNVERIFIED" and report["verified"] is False
    assert report["verification"].startswith(why)
    pdf = pdf_text(out / "report.pdf")
    assert "UNVERIFIED" in pdf and "PASSED" not in pdf


def test_dr_show_and_dr_runs_say_unverified(fresh_samples: SampleRuns, tmp_path: Path) -> None:
    run_id = fresh_samples.run_id("drill")
    line = forge_approver(fresh_samples.runs["drill"])
    shown = dr(fresh_samples, "show", run_id, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    first = shown.stdout.splitlines()[0]
    assert first.endswith("UNVERIFIED") and "SUCCEEDED" not in first
    assert f"UNVERIFIED: line {line}: content does not match its hash" in shown.stdout
    assert f"Run {run_id}: SUCCEEDED" not in shown.stdout
    as_json = json.loads(dr(fresh_samples, "show", run_id, "--output", "json", cwd=tmp_path).stdout)
    assert as_json["verified"] is False and as_json["verification"].startswith(f"line {line}:")
    listed = dr(fresh_samples, "runs", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    row = next(text for text in listed.stdout.splitlines() if text.startswith(run_id))
    assert re.search(r"\bUNVERIFIED\b", row) and "succeeded" not in row
    other = next(text for text in listed.stdout.splitlines() if text.startswith(fresh_samples.run_id("failover")))
    assert "succeeded" in other and "UNVERIFIED" not in other
    rows = {r["run_id"]: r for r in json.loads(dr(fresh_samples, "runs", "--output", "json", cwd=tmp_path).stdout)}
    assert rows[run_id]["verified"] is False and rows[run_id]["verification"].startswith(f"line {line}:")
    assert rows[fresh_samples.run_id("failover")]["verified"] is True


def test_a_run_record_that_disagrees_with_its_audit_log_is_unverified(fresh_samples: SampleRuns,
                                                                      tmp_path: Path) -> None:
    run_id = fresh_samples.run_id("failed")
    forge_record(fresh_samples.runs["failed"])
    done = dr(fresh_samples, "report", run_id, "-f", "json,md", "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "run.json disagrees with the audit log on" in done.stderr and "status" in done.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))
    assert report["verdict"] == "UNVERIFIED" and "status" in report["verification"]
    shown = dr(fresh_samples, "show", run_id, cwd=tmp_path)
    assert "UNVERIFIED: run.json disagrees with the audit log" in shown.stdout


def test_a_period_report_counts_an_unverified_run_apart(fresh_samples: SampleRuns, tmp_path: Path) -> None:
    run_id = fresh_samples.run_id("drill")
    forge_approver(fresh_samples.runs["drill"])
    out = tmp_path / "period"
    done = dr(fresh_samples, "report", "--since", "2026-01-01", "--until", "2026-12-31", "-f", "json,md,html",
              "--out", str(out), cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "period report ATTENTION: 5 run(s), success rate 40.0 %, 1 UNVERIFIED" in done.stdout
    assert f"run {run_id}: UNVERIFIED: line" in done.stderr
    period = json.loads((out / "period-report.json").read_text(encoding="utf-8"))
    assert period["unverified_runs"] == [run_id]
    assert period["succeeded_runs"] == 2  # the drill claims success; it is not counted
    row = next(r for r in period["runs"] if r["run_id"] == run_id)
    assert row["verdict"] == "UNVERIFIED" and row["verified"] is False
    payments = next(s for s in period["runbooks"] if s["runbook"] == "payments")
    assert payments["unverified"] == 1 and payments["succeeded"] == 1
    # The drill was payments' only passed test before the failover: it is not one any more.
    assert payments["last_test_run"] == fresh_samples.run_id("failover")
    markdown = (out / "period-report.md").read_text(encoding="utf-8")
    assert f"**UNVERIFIED** run(s) {run_id}" in markdown
    assert "UNVERIFIED" in (out / "period-report.html").read_text(encoding="utf-8")
