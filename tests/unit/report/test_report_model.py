"""The report model of real recorded runs: contents an auditor expects (FIELD.md)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest

from dr_engine.errors import RunStateError
from dr_engine.report.model import RunReport, build_run_report
from dr_engine.report.notes import add_note, close_note, list_notes
from dr_engine.report.publish import (
    artifact_key,
    artifact_markdown,
    artifact_table,
    render_run_files,
    run_report,
    write_default_reports,
)
from dr_engine.report.source import load_run
from dr_engine.testing.sample_runs import CANARIES, SampleRuns


def report_of(samples: SampleRuns, key: str) -> RunReport:
    return run_report(samples.runs[key])


def test_drill_identification_objectives_and_timing(samples: SampleRuns) -> None:
    report = report_of(samples, "drill")
    ident = report.identification
    assert ident.run_id == samples.run_id("drill")
    assert (ident.mode, ident.mode_label) == ("drill", "Drill (DR test)")
    assert (ident.source, ident.target, ident.runbook) == ("east", "west", "payments")
    assert len(ident.runbook_sha256) == 64
    assert ident.triggered_by == "alice@ops"
    assert ident.reason == "Q1 DR drill: loss of east"
    assert report.verdict == "PASSED"
    assert [o.met for o in report.objectives] == [True, True, True]
    rec = report.recovery
    assert rec.rto_seconds == samples.records["drill"].rto_seconds
    assert rec.rto_target_seconds == 900
    assert rec.human_wait_seconds == pytest.approx(184.0)
    assert rec.machine_seconds is not None and rec.machine_seconds > 0
    human = [s for s in report.steps if s.human]
    assert [s.id for s in human] == ["approve-cutover"]


def test_drill_approvals_deviations_attempts_and_integrity(samples: SampleRuns) -> None:
    report = report_of(samples, "drill")
    assert [(a.step_id, a.decision, a.by, a.wait_seconds) for a in report.approvals] == [
        ("approve-cutover", "granted", "bob@risk", pytest.approx(184.0))]
    kinds = {(d.kind, d.step_id) for d in report.deviations}
    assert kinds == {("retry", "scale-target"), ("skip", "notify-partners")}
    retry = next(d for d in report.deviations if d.kind == "retry")
    assert "simulated throttling" in retry.reason
    spans = [(a.attempt, a.ok) for a in report.attempts if a.step_id == "scale-target"]
    assert spans == [(1, False), (2, False), (3, True)]
    assert report.data_integrity.status == "verified"
    assert [c.id for c in report.data_integrity.checks] == ["reconcile"]
    assert report.integrity.chain_ok and report.integrity.chain_sealed
    assert report.integrity.chain_events == len((samples.runs["drill"] / "audit.jsonl").read_text().splitlines())
    events = [e.event for e in report.timeline]
    # Nobody passed --incident-start: the report must not claim the incident was declared.
    assert events[0] == "Incident start not declared: RTO measured from run start (a lower bound)"
    assert not report.identification.incident_declared
    assert "not declared" in report.objectives[1].detail
    assert "Milestone: healthy in target (RTO stop)" in events
    assert any(e.startswith("Attempt 1 failed: scale-target") for e in events)
    stamps = [e.at for e in report.timeline]
    assert all(s.endswith("Z") for s in stamps)
    assert stamps == sorted(stamps)


def test_failover_shows_override_and_incident_before_run_start(samples: SampleRuns) -> None:
    report = report_of(samples, "failover")
    override = next(d for d in report.deviations if d.kind == "override")
    assert override.detail == "allow-data-loss"
    assert "INC-2231" in override.reason
    assert report.recovery.allow_data_loss
    assert report.recovery.rto_seconds is not None and report.recovery.rto_seconds > 420
    assert report.identification.incident_started_at < (report.identification.started_at or "")
    assert report.identification.incident_declared
    assert report.timeline[0].event == "Incident started (declared)"
    split = report.recovery.breakdown
    assert split is not None and split.before_run_seconds == pytest.approx(420)


def test_failed_run_names_the_failure_and_what_did_not_run(samples: SampleRuns) -> None:
    report = report_of(samples, "failed")
    assert report.verdict == "FAILED"
    assert report.objectives[0].met is False
    failure = next(d for d in report.deviations if d.kind == "failure")
    assert failure.step_id == "shift-traffic"
    assert "ProviderError: Route 53 answered AccessDenied" in failure.reason
    assert {d.step_id for d in report.deviations if d.kind == "not-run"} == {"reconcile", "verify-public"}
    assert report.data_integrity.status == "not-checked"


def test_halted_run_misses_rto_and_says_so(samples: SampleRuns) -> None:
    report = report_of(samples, "halted")
    assert report.identification.status == "halted"
    assert report.verdict == "FAILED"
    rto = report.objectives[1]
    assert (rto.met, rto.achieved) == (False, "not reached")
    assert {o.name for o in report.failed_objectives} == {"Recovery completed", "RTO (recovery time)"}
    breach = next(d for d in report.deviations if d.kind == "objective-breach")
    assert "not reached" in breach.reason


def test_slow_run_completes_but_fails_its_rto(samples: SampleRuns) -> None:
    report = report_of(samples, "slow")
    assert report.identification.status == "succeeded"
    assert report.verdict == "FAILED"
    assert [o.name for o in report.failed_objectives] == ["RTO (recovery time)"]


def test_a_rebuilt_report_has_the_same_content_digest(samples: SampleRuns) -> None:
    first = build_run_report(load_run(samples.runs["failover"]), now=datetime(2027, 1, 1, tzinfo=UTC))
    second = build_run_report(load_run(samples.runs["failover"]), now=datetime(2027, 2, 1, tzinfo=UTC))
    assert first.generated_at != second.generated_at
    assert first.integrity.content_sha256 == second.integrity.content_sha256
    assert len(first.integrity.content_sha256) == 64


@pytest.mark.parametrize("key", ["drill", "failover", "failed", "halted", "slow"])
def test_no_canary_secret_reaches_any_text_output(samples: SampleRuns, key: str) -> None:
    raw = (samples.runs[key] / "run.json").read_text() + (samples.runs[key] / "audit.jsonl").read_text()
    files = render_run_files(report_of(samples, key), ["html", "md", "json"])
    for name, content in files.items():
        if name.endswith(".png"):
            continue
        text = content.decode("utf-8")
        for canary in CANARIES:
            assert canary not in text, f"{canary} leaked into {name}"
    if key == "failover":  # the canaries really were planted in this run's records
        assert all(c in raw for c in CANARIES)


def test_json_and_markdown_renderings(samples: SampleRuns) -> None:
    files = render_run_files(report_of(samples, "halted"), ["md", "json"])
    data = json.loads(files["report.json"])
    assert data["schema"] == "dr-engine/run-report/1"
    assert data["verdict"] == "FAILED"
    assert data["integrity"]["chain_ok"] is True
    markdown = files["report.md"].decode()
    assert "**Verdict: FAILED**" in markdown
    assert "> **Objectives not met:**" in markdown
    assert "| RTO (recovery time) | <= 5 min 00 s | not reached | **FAIL** |" in markdown
    assert "![Timeline chart](timeline.png)" in markdown
    assert files["timeline.png"].startswith(b"\x89PNG")


def test_write_default_reports_and_artifact_helpers(fresh_samples: SampleRuns) -> None:
    run_dir = fresh_samples.runs["drill"]
    written = write_default_reports(run_dir)
    assert sorted(p.name for p in written) == ["SHA256SUMS", "report.html", "report.json"]
    sums = (run_dir / "report" / "SHA256SUMS").read_text().splitlines()
    assert len(sums) == 2 and all(len(line.split("  ")[0]) == 64 for line in sums)
    report = run_report(run_dir)
    table = artifact_table(report)
    assert [row["step"] for row in table] == [s.id for s in report.steps]
    markdown = artifact_markdown(report, run_dir / "report" / "report.html")
    assert markdown.startswith("## PASSED: Drill (DR test) of `payments`")
    assert "report.html" in markdown
    key = artifact_key(report.identification.run_id)
    assert key == key.lower() and set(key) <= set("abcdefghijklmnopqrstuvwxyz0123456789-")


def test_remediation_notes_are_audited_and_shown_until_closed(fresh_samples: SampleRuns) -> None:
    run_dir = fresh_samples.runs["failed"]
    first = add_note(run_dir, action="Grant route53:ChangeResourceRecordSets to the DR role", owner="cloud-iam",
                     due=date(2026, 10, 1), actor="auditor@bank")
    second = add_note(run_dir, action="Re-run the switchover", owner="payments-sre", due=date(2026, 12, 1))
    report = run_report(run_dir)
    assert [(n.note_id, n.status) for n in report.remediation] == [(first.note_id, "open"), (second.note_id, "open")]
    assert report.remediation[0].added_by == "auditor@bank"
    assert report.integrity.notes_chain_ok is True
    closed = close_note(run_dir, first.note_id, resolution="policy updated")
    assert closed.status == "closed"
    report = run_report(run_dir)
    assert [n.note_id for n in report.open_remediation] == [second.note_id]
    assert [n.status for n in list_notes(run_dir)] == ["closed", "open"]
    # The run's own audit log is untouched (still sealed); notes have their own chain.
    assert report.integrity.chain_ok and report.integrity.chain_sealed
    with pytest.raises(RunStateError, match="already closed"):
        close_note(run_dir, first.note_id)
    with pytest.raises(RunStateError, match="no remediation note"):
        close_note(run_dir, "N-000000")
    html = render_run_files(report, ["html"])["report.html"].decode()
    assert "Re-run the switchover" in html and second.note_id in html
