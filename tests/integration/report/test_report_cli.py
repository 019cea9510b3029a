"""The `dr report`, `dr evidence` and `dr note` commands as a user runs them (real subprocesses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from dr_engine.testing.sample_runs import CANARIES, SampleRuns

pytestmark = pytest.mark.integration

DR = Path(sys.executable).with_name("dr")


def dr(samples: SampleRuns, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DR_STATE_DIR": str(samples.state_dir), "DR_RUNBOOKS_DIR": str(samples.project / "runbooks"),
           "NO_COLOR": "1"}
    return subprocess.run([str(DR), *args], capture_output=True, text=True, timeout=300, cwd=cwd, env=env,
                          check=False)


def test_report_of_one_run_in_every_format(fresh_samples: SampleRuns, tmp_path: Path) -> None:
    run_id = fresh_samples.run_id("halted")
    done = dr(fresh_samples, "report", run_id[:12], "-f", "html", "-f", "pdf,md", "-f", "json", "--out",
              str(tmp_path / "out"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    names = sorted(Path(line).name for line in done.stdout.split())
    assert names == ["SHA256SUMS", "report.html", "report.json", "report.md", "report.pdf", "timeline.png"]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["identification"]["run_id"] == run_id and report["verdict"] == "FAILED"
    default = dr(fresh_samples, "report", "latest", cwd=tmp_path)
    assert default.returncode == 0, default.stderr
    assert (fresh_samples.runs["slow"] / "report" / "report.html").is_file()


def test_period_report(samples: SampleRuns, tmp_path: Path) -> None:
    done = dr(samples, "report", "--since", "2026-01-01", "--until", "2026-12-31", "-f", "html", "-f", "md",
              "-f", "json", "--out", str(tmp_path / "period"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "period report ATTENTION: 5 run(s), success rate 60.0 %" in done.stdout
    period = json.loads((tmp_path / "period" / "period-report.json").read_text())
    assert period["total_runs"] == 5
    assert {s["runbook"]: s["cadence"] for s in period["runbooks"]}["ledger"] == "never-tested"
    assert (tmp_path / "period" / "rto-trend.png").read_bytes().startswith(b"\x89PNG")
    only = dr(samples, "report", "--since", "2026-01-01", "--runbook", "ledger", "-f", "json", "--out",
              str(tmp_path / "ledger"), cwd=tmp_path)
    assert only.returncode == 0, only.stderr
    assert json.loads((tmp_path / "ledger" / "period-report.json").read_text())["total_runs"] == 2


def test_usage_errors_exit_2(samples: SampleRuns, tmp_path: Path) -> None:
    assert dr(samples, "report", cwd=tmp_path).returncode == 2
    bad_format = dr(samples, "report", "latest", "-f", "docx", cwd=tmp_path)
    assert bad_format.returncode == 2 and "unknown format" in bad_format.stderr
    bad_date = dr(samples, "report", "--since", "yesterday", cwd=tmp_path)
    assert bad_date.returncode == 2
    unknown = dr(samples, "report", "20990101T000000Z-000000", cwd=tmp_path)
    assert unknown.returncode != 0 and "no run" in unknown.stderr


def test_notes_evidence_and_verification(fresh_samples: SampleRuns, tmp_path: Path) -> None:
    run_id = fresh_samples.run_id("failed")
    added = dr(fresh_samples, "note", run_id, "--action", "Grant the DR role Route 53 access", "--owner",
               "cloud-iam", "--due", "2026-10-01", "--output", "json", cwd=tmp_path)
    assert added.returncode == 0, added.stderr
    note_id = json.loads(added.stdout)[0]["note_id"]
    missing = dr(fresh_samples, "note", run_id, "--action", "x", cwd=tmp_path)
    assert missing.returncode == 2
    pack = tmp_path / "evidence.zip"
    built = dr(fresh_samples, "evidence", run_id, "-o", str(pack), cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    assert "changed since the run" in built.stderr  # the runbook was fixed after this run
    with zipfile.ZipFile(pack) as archive:
        assert "notes/audit.jsonl" in archive.namelist()
        html = archive.read("report/report.html").decode()
    assert note_id in html and "Grant the DR role Route 53 access" in html
    assert not any(c in html for c in CANARIES)
    ok = dr(fresh_samples, "evidence", "verify", str(pack), cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "OK, " in ok.stdout and run_id in ok.stdout
    closed = dr(fresh_samples, "note", run_id, "--close", note_id, "--resolution", "policy fixed", cwd=tmp_path)
    assert closed.returncode == 0 and "closed" in closed.stdout
    again = dr(fresh_samples, "note", run_id, "--close", note_id, cwd=tmp_path)
    assert again.returncode != 0 and "already closed" in again.stderr
    # Tamper: append a line to the packed audit log.
    broken = tmp_path / "broken.zip"
    with zipfile.ZipFile(pack) as source, zipfile.ZipFile(broken, "w") as target:
        for name in source.namelist():
            data = source.read(name)
            target.writestr(name, data + b'{"seq": 999}\n' if name == "audit.jsonl" else data)
        target.comment = source.comment
    bad = dr(fresh_samples, "evidence", "verify", str(broken), "--output", "json", cwd=tmp_path)
    assert bad.returncode == 1
    result = json.loads(bad.stdout)
    assert result["ok"] is False
    assert "audit.jsonl: SHA-256 mismatch (the file was modified)" in result["problems"]
