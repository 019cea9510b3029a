"""A run that fails a step and is resumed to success keeps its whole history in every format.

The run goes through the real engine in-process (fake actions on a fake clock, the real audit
log on disk); everything after that is what an auditor does: `dr report` in every format and
`dr show`, run as real processes, the PDF read back with pdftotext and the chart PNG inspected.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

import dr_engine.testing.actions  # noqa: F401 - registers the fake actions
from dr_engine.engine.run import RunOptions, resume_run, start_run
from dr_engine.evidence.record import RunRecord
from dr_engine.lock.base import NullLock
from dr_engine.report.charts import COLORS
from dr_engine.testing.clock import FakeClock
from dr_engine.testing.runbooks import plan_from_steps

pytestmark = pytest.mark.integration

DR = Path(sys.executable).with_name("dr")
STEPS = """
- id: prepare
  action: fake.noop
  with: {seconds: 5}
- id: shift
  action: fake.fail
  with: {kind: ProviderError, message: "Route 53 answered AccessDenied", times: 1, seconds: 1}
  after: [prepare]
- id: healthy
  action: fake.check_health
  after: [shift]
"""
FAILURE = "Route 53 answered AccessDenied"
UNDECLARED = "not declared: RTO measured from run start (a lower bound)"


def dr(state: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DR_STATE_DIR": str(state), "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run([str(DR), *args], capture_output=True, text=True, timeout=300, cwd=cwd, env=env,
                          check=False)


@pytest.fixture(scope="module")
def resumed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, RunRecord]:
    """The state dir and final record of a run halted by a failed step, resumed 10 minutes later."""
    folder = tmp_path_factory.mktemp("resumed")
    clock = FakeClock()
    state = folder / "state"
    plan = plan_from_steps(folder, STEPS, rto="30m")
    first = start_run(plan, RunOptions(state_dir=state, clock=clock, concurrency=1, lock=NullLock(),
                                       triggered_by="alice@ops"))
    assert first.status.value == "failed"
    clock.advance(600)
    record = resume_run(state, first.run_id, clock=clock, lock=NullLock(), triggered_by="bob@ops",
                        reason="fixed the DR role")
    assert record.status.value == "succeeded"
    return state, record


def test_every_report_format_keeps_the_failed_attempt_the_halt_and_the_time_between_sessions(
        resumed: tuple[Path, RunRecord], tmp_path: Path) -> None:
    state, record = resumed
    out = tmp_path / "out"
    done = dr(state, "report", record.run_id, "-f", "html", "-f", "pdf", "-f", "md", "-f", "json", "--out",
              str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr

    report = json.loads((out / "report.json").read_text())
    assert report["verdict"] == "PASSED" and report["verified"]
    shift = next(s for s in report["steps"] if s["id"] == "shift")
    assert shift["attempts"] == 2
    attempts = [(a["attempt"], a["session"], a["outcome"]) for a in report["attempts"] if a["step_id"] == "shift"]
    assert attempts == [(1, 1, "failed"), (2, 2, "succeeded")]
    kinds = {(d["kind"], d["step_id"]) for d in report["deviations"]}
    assert {("failure", "shift"), ("halt", "shift")} <= kinds
    assert [(s["status"], s["halted_after_seconds"]) for s in report["sessions"]] == [("failed", 600.0),
                                                                                      ("succeeded", None)]
    split = report["recovery"]["breakdown"]
    assert split["until"] == "healthy" and split["halted_seconds"] == 600.0
    parts = split["before_run_seconds"] + split["machine_seconds"] + split["human_wait_seconds"] + \
        split["halted_seconds"]
    assert parts == pytest.approx(report["recovery"]["rto_seconds"]) == pytest.approx(split["total_seconds"])
    assert report["identification"]["incident_declared"] is False
    assert report["identification"]["incident_note"] == UNDECLARED

    # Reading order (-raw), not -layout: a wrapped table cell then reads as one run of text.
    pdf_text = subprocess.run(["pdftotext", "-raw", str(out / "report.pdf"), "-"], capture_output=True, text=True,
                              timeout=120, check=True).stdout
    for name, text in (("report.html", (out / "report.html").read_text()),
                       ("report.md", (out / "report.md").read_text()), ("report.pdf", " ".join(pdf_text.split()))):
        assert FAILURE in text, name
        assert "Every attempt" in text and "Sessions" in text, name
        assert "halted between sessions" in text and "10 min 00 s" in text, name
        assert "fixed the DR role" in text, name
        assert UNDECLARED in text, name
        assert "Incident started (declared)" not in text, name

    # The chart image: the failed attempt is drawn (red), and so is the halted stretch (grey band).
    image = Image.open(out / "timeline.png").convert("RGB")
    colours = dict((rgb, n) for n, rgb in image.getcolors(maxcolors=1 << 22) or [])
    red = tuple(int(COLORS["failed"][i:i + 2], 16) for i in (1, 3, 5))
    assert colours.get(red, 0) > 20
    # The band's colour at 60 % over white; only its legend patch has it in a chart of one session (~300 px).
    band = [n for rgb, n in colours.items() if all(abs(a - b) <= 1 for a, b in zip(rgb, (224, 230, 236), strict=True))]
    assert sum(band) > 50_000, "the stretch halted between sessions is not drawn"


def test_dr_show_lists_the_sessions_the_failed_attempt_and_the_rto_split(resumed: tuple[Path, RunRecord],
                                                                          tmp_path: Path) -> None:
    state, record = resumed
    for args in (("show", record.run_id), ("show", record.run_id, "--rebuild")):
        done = dr(state, *args, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        text = done.stdout
        assert f"incident start {UNDECLARED}" in text
        assert "session 1 by alice@ops" in text and "failed at step shift (ProviderError: " + FAILURE in text
        assert "halted 10m00s between sessions" in text
        assert "session 2 by bob@ops: fixed the DR role" in text
        assert "step shift attempt 1 (session 1) failed after 1.0s: ProviderError: " + FAILURE in text
        assert ("Time: RTO 10m07s = 0.0s before the run started + 7.0s machine + 0.0s waiting for people + "
                "10m00s halted between sessions") in text
