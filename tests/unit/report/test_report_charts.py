"""Charts: headless, reproducible, and they survive empty or partial data."""

from __future__ import annotations

from datetime import UTC, datetime

from dr_engine.report.charts import TrendPoint, rto_trend_chart, timeline_chart
from dr_engine.report.publish import run_report
from dr_engine.testing.sample_runs import SampleRuns


def test_timeline_chart_is_reproducible_svg_and_png(samples: SampleRuns) -> None:
    report = run_report(samples.runs["drill"])
    svg = timeline_chart(report, "svg")
    assert svg.lstrip().startswith(b"<?xml") and b"<svg" in svg
    assert svg == timeline_chart(report, "svg")  # no dates or random ids inside
    assert timeline_chart(report, "png").startswith(b"\x89PNG")


def test_timeline_chart_of_a_run_that_halted_at_once(samples: SampleRuns) -> None:
    assert b"<svg" in timeline_chart(run_report(samples.runs["halted"]), "svg")


def test_trend_chart_with_and_without_points() -> None:
    points = [TrendPoint("payments", datetime(2026, m, 1, tzinfo=UTC), 300.0 + m, 900.0, True, "drill")
              for m in (1, 4, 7)]
    points.append(TrendPoint("payments", datetime(2026, 10, 1, tzinfo=UTC), None, 900.0, False, "failover"))
    assert b"<svg" in rto_trend_chart(points, "svg")
    assert b"<svg" in rto_trend_chart([], "svg")
