"""The period report over a year of recorded runs: results, trend, cadence, controls."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest

from dr_engine.report.notes import add_note, close_note
from dr_engine.report.period import build_period_report, interval_of, parse_day_or_time
from dr_engine.report.publish import render_period_files
from dr_engine.testing.sample_runs import CANARIES, SampleRuns

YEAR_START = datetime(2026, 1, 1, tzinfo=UTC)
YEAR_END = datetime(2027, 1, 1, tzinfo=UTC)


def test_every_run_of_the_period_with_results_per_runbook(samples: SampleRuns) -> None:
    period = build_period_report(samples.state_dir, since=YEAR_START, until=YEAR_END,
                                 runbooks_dir=samples.project / "runbooks", now=YEAR_END)
    assert period.total_runs == 5
    assert [r.run_id for r in period.runs] == [samples.run_id(k) for k in ("drill", "failover", "failed", "halted",
                                                                           "slow")]
    assert period.succeeded_runs == 3
    assert period.success_rate == pytest.approx(0.6)
    stats = {s.runbook: s for s in period.runbooks}
    assert set(stats) == {"payments", "ledger"}
    payments = stats["payments"]
    assert (payments.runs, payments.succeeded, payments.rto_target_seconds) == (3, 2, 900)
    assert payments.rto_best_seconds is not None and payments.rto_worst_seconds is not None
    assert payments.rto_best_seconds <= payments.rto_median_seconds <= payments.rto_worst_seconds  # type: ignore[operator]
    assert stats["ledger"].rto_met == 0


def test_cadence_uses_the_runbook_interval_and_flags_overdue(samples: SampleRuns) -> None:
    period = build_period_report(samples.state_dir, since=YEAR_START, until=YEAR_END,
                                 runbooks_dir=samples.project / "runbooks", now=YEAR_END)
    stats = {s.runbook: s for s in period.runbooks}
    payments = stats["payments"]
    # drill_interval: 90d; the last successful test is the June failover.
    assert payments.drill_interval_days == 90
    assert payments.last_test_run == samples.run_id("failover")
    assert payments.next_due is not None and payments.next_due.startswith("2026-09-08")
    assert payments.cadence == "overdue"
    # ledger: one halted drill and one that missed its RTO: never successfully tested.
    assert stats["ledger"].cadence == "never-tested"
    assert stats["ledger"].drill_interval_days == 365
    assert period.verdict == "ATTENTION"
    # In July the payments test was still current.
    july = build_period_report(samples.state_dir, since=YEAR_START, until=datetime(2026, 7, 1, tzinfo=UTC),
                               runbook="payments", now=YEAR_END)
    assert [s.cadence for s in july.runbooks] == ["ok"]
    assert july.total_runs == 2 and july.runbook_filter == "payments"


def test_open_deviations_and_remediation_and_control_mapping(fresh_samples: SampleRuns) -> None:
    run_dir = fresh_samples.runs["failed"]
    note = add_note(run_dir, action="Fix the DR role's Route 53 permission", owner="cloud-iam", due=date(2026, 9, 15))
    period = build_period_report(fresh_samples.state_dir, since=YEAR_START, until=YEAR_END,
                                 runbooks_dir=fresh_samples.project / "runbooks", now=YEAR_END)
    assert [(n.note_id, n.is_overdue) for n in period.open_remediation] == [(note.note_id, True)]
    failed_id = fresh_samples.run_id("failed")
    assert any(d.run_id == failed_id and d.kind == "failure" for d in period.open_deviations)
    assert not any(d.kind == "retry" for d in period.open_deviations)
    controls = {c.control: c for c in period.controls}
    assert set(controls) == {"12.10.2", "A1.3", "Art. 11(6)", "Art. 25", "VII.K"}
    assert controls["12.10.2"].status == "partial" and "overdue" in controls["12.10.2"].detail
    assert "remediation" in controls["VII.K"].detail
    close_note(run_dir, note.note_id)
    later = build_period_report(fresh_samples.state_dir, since=YEAR_START, until=YEAR_END, now=YEAR_END)
    assert later.open_remediation == []
    assert not any(d.run_id == failed_id for d in later.open_deviations)


def test_an_empty_period_is_a_gap(samples: SampleRuns) -> None:
    period = build_period_report(samples.state_dir, since=datetime(2025, 1, 1, tzinfo=UTC),
                                 until=datetime(2025, 6, 1, tzinfo=UTC), now=YEAR_END)
    assert period.total_runs == 0 and period.success_rate is None
    assert {c.status for c in period.controls} == {"gap"}


def test_period_renderings(samples: SampleRuns) -> None:
    period = build_period_report(samples.state_dir, since=YEAR_START, until=YEAR_END,
                                 runbooks_dir=samples.project / "runbooks", now=YEAR_END)
    files = render_period_files(period, ["html", "md", "json"])
    assert set(files) == {"period-report.html", "period-report.md", "period-report.json", "rto-trend.png"}
    data = json.loads(files["period-report.json"])
    assert data["schema"] == "dr-engine/period-report/1" and data["total_runs"] == 5
    markdown = files["period-report.md"].decode()
    assert "**OVERDUE**" in markdown and "PCI DSS v4.0 12.10.2" in markdown
    html = files["period-report.html"].decode()
    assert "data:image/svg+xml;base64," in html and "Control mapping" in html
    for content in (html, markdown, files["period-report.json"].decode()):
        assert not any(c in content for c in CANARIES)


@pytest.mark.parametrize(("text", "days"), [("90d", 90), ("26w", 182), ("", 365), (None, 365), ("12h", 0.5)])
def test_drill_interval_parsing(text: str | None, days: float) -> None:
    assert interval_of(text).total_seconds() / 86400 == days


def test_period_bounds_are_utc_days() -> None:
    assert parse_day_or_time("2026-03-01") == datetime(2026, 3, 1, tzinfo=UTC)
    assert parse_day_or_time("2026-03-01", end_of_day=True) == datetime(2026, 3, 2, tzinfo=UTC)
    assert parse_day_or_time("2026-03-01T10:00:00+02:00") == datetime(2026, 3, 1, 8, tzinfo=UTC)
    with pytest.raises(ValueError, match="no UTC offset"):
        parse_day_or_time("2026-03-01T10:00:00")
