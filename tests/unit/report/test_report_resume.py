"""A resumed run's report keeps its failed attempt, its halt and the time between sessions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import dr_engine.testing.actions  # noqa: F401 - registers the fake actions
from dr_engine.clock import parse_utc
from dr_engine.engine.run import RunOptions, resume_run, start_run
from dr_engine.evidence.audit import AuditLog, read_events
from dr_engine.evidence.journal import rebuild_record
from dr_engine.evidence.record import AUDIT_FILE, RUN_FILE, RunRecord
from dr_engine.lock.base import NullLock
from dr_engine.report.charts import timeline_chart
from dr_engine.report.publish import artifact_markdown, render_run_files, run_report
from dr_engine.testing.clock import FakeClock
from dr_engine.testing.runbooks import plan_from_steps

STEPS = """
- id: first
  action: fake.noop
  with: {seconds: 5}
- id: shift
  action: fake.fail
  with: {kind: ProviderError, message: "Route 53 answered AccessDenied", times: 1, seconds: 1}
  after: [first]
- id: healthy
  action: fake.check_health
  after: [shift]
"""


def resumed_run(tmp_path: Path) -> tuple[RunRecord, Path]:
    """A run whose `shift` step fails, resumed ten minutes later by bob to success."""
    clock = FakeClock()
    plan = plan_from_steps(tmp_path, STEPS, rto="30m")
    state = tmp_path / "state"
    first = start_run(plan, RunOptions(state_dir=state, clock=clock, concurrency=1, lock=NullLock()))
    clock.advance(600)
    record = resume_run(state, first.run_id, clock=clock, lock=NullLock(), triggered_by="bob@ops",
                        reason="fixed the DR role")
    return record, state / "runs" / record.run_id


def test_the_report_of_a_resumed_run_keeps_the_failed_attempt_and_the_halt(tmp_path: Path) -> None:
    record, run_dir = resumed_run(tmp_path)
    report = run_report(run_dir)
    shift = next(s for s in report.steps if s.id == "shift")
    assert (shift.status, shift.attempts) == ("succeeded", 2)
    spans = [(a.attempt, a.session, a.outcome) for a in report.attempts if a.step_id == "shift"]
    assert spans == [(1, 1, "failed"), (2, 2, "succeeded")]
    failure = next(d for d in report.deviations if d.kind == "failure")
    assert failure.step_id == "shift" and "Route 53 answered AccessDenied" in failure.reason
    halt = next(d for d in report.deviations if d.kind == "halt")
    assert halt.step_id == "shift"
    assert "halted 10 min 00 s until resumed by bob@ops (fixed the DR role)" in halt.detail
    assert [(s.number, s.status, s.halted_after_seconds) for s in report.sessions] == [
        (1, "failed", pytest.approx(600)), (2, "succeeded", None)]
    split = report.recovery.breakdown
    assert split is not None and split.until == "healthy"
    assert split.halted_seconds == pytest.approx(600)
    assert split.before_run_seconds + split.machine_seconds + split.human_wait_seconds + split.halted_seconds == \
        pytest.approx(report.recovery.rto_seconds)
    resumed = next(e for e in report.timeline if e.event == "Run resumed")
    assert resumed.detail.startswith("after 10 min 00 s halted between sessions")
    assert any(e.event == "Step failed: shift" for e in report.timeline)
    assert record.rto_seconds == report.recovery.rto_seconds
    assert report.verdict == "PASSED"  # a resumed run that met its objectives, with its history shown


def test_every_format_shows_the_attempts_the_sessions_and_the_split(tmp_path: Path) -> None:
    _, run_dir = resumed_run(tmp_path)
    report = run_report(run_dir)
    files = render_run_files(report, ["html", "md", "json"])
    data = json.loads(files["report.json"])
    assert [a["outcome"] for a in data["attempts"] if a["step_id"] == "shift"] == ["failed", "succeeded"]
    assert [s["status"] for s in data["sessions"]] == ["failed", "succeeded"]
    assert data["recovery"]["breakdown"]["halted_seconds"] == pytest.approx(600)
    assert data["identification"]["incident_declared"] is False
    for name in ("report.md", "report.html"):
        text = files[name].decode()
        assert "Route 53 answered AccessDenied" in text, name
        assert "halted between sessions" in text and "10 min 00 s" in text, name
        assert "not declared: RTO measured from run start (a lower bound)" in text, name
        assert "Every attempt" in text, name
    summary = artifact_markdown(report)  # the Prefect markdown artifact of the run
    assert "+ 10 min 00 s halted between sessions" in summary and "not declared" in summary
    assert "failure: shift" in summary and "halt: shift" in summary


def test_the_chart_draws_each_attempt_and_the_halted_stretch(tmp_path: Path) -> None:
    _, run_dir = resumed_run(tmp_path)
    svg = timeline_chart(run_report(run_dir), "svg").decode()
    assert 'id="attempt-shift-1"' in svg and 'id="attempt-shift-2"' in svg
    assert 'id="halted-between-sessions-1"' in svg
    assert "incident start not declared" in svg


def _as_version_1(run_dir: Path) -> dict[str, Any]:
    """Rewrite a run as the release before attempt histories wrote it; return its run.json data.

    The log is re-chained with ``record_version: 1`` in its ``run.started`` record (same events,
    same times); run.json is the record without what version 2 added, counting attempts per session.
    """
    log = run_dir / AUDIT_FILE
    events = read_events(log)
    events[0]["data"]["record"]["record_version"] = 1
    log.unlink()
    moments = iter([parse_utc(e["ts"]) for e in events])
    rewritten = AuditLog(log, events[0]["run_id"], now=lambda: next(moments))
    for event in events:
        rewritten.append(event["type"], actor=event["actor"], **event["data"])
    data = rebuild_record(read_events(log)).model_dump(mode="json")
    assert data["record_version"] == 1
    for key in ("rto_breakdown", "incident_start_declared"):
        data.pop(key)
    for step in data["steps"]:
        step["attempts"] = sum(1 for a in step.pop("history") if a["session"] == len(data["sessions"])) or \
            step["attempts"]
    data["sessions"] = [{k: v for k, v in s.items() if k in ("started_at", "finished_at", "human_wait_seconds")}
                        for s in data["sessions"]]
    (run_dir / RUN_FILE).write_text(json.dumps(data))
    return data


def test_a_record_written_before_the_history_gets_it_from_the_audit_log(tmp_path: Path) -> None:
    _, run_dir = resumed_run(tmp_path)
    data = _as_version_1(run_dir)
    assert data["steps"][1]["attempts"] == 1  # what the old fold said after the resume
    report = run_report(run_dir)
    assert [(a.session, a.outcome) for a in report.attempts if a.step_id == "shift"] == [(1, "failed"),
                                                                                         (2, "succeeded")]
    assert next(s for s in report.steps if s.id == "shift").attempts == 2
    assert report.recovery.breakdown is not None and report.recovery.breakdown.halted_seconds == pytest.approx(600)
    assert not report.identification.incident_declared
    # An old record is checked on what its own version wrote: it verifies, and an edit still shows.
    assert report.verified and report.verdict == "PASSED"
    data["steps"][0]["summary"] = "edited"
    (run_dir / RUN_FILE).write_text(json.dumps(data))
    assert run_report(run_dir).verdict == "UNVERIFIED"
