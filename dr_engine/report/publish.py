"""Writing reports to disk, and the summaries published as Prefect artifacts.

- :func:`render_run_files` renders one run in the requested formats (pure: name -> bytes);
- :func:`write_run_reports` writes them (default ``<run-dir>/report/``) with a ``SHA256SUMS``;
- :func:`write_default_reports` is what the engine calls at the end of every run (HTML + JSON);
- :func:`artifact_markdown` / :func:`artifact_table` / :func:`artifact_key` give the data for
  Prefect's markdown and table artifacts (the flow creates them; this module imports no Prefect).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from dr_engine.evidence.record import atomic_write_text
from dr_engine.report.charts import TrendPoint, rto_trend_chart, timeline_chart
from dr_engine.report.formatting import FORMATS, fmt_seconds, fmt_ts, parse_ts
from dr_engine.report.model import RunReport, build_run_report
from dr_engine.report.period import PeriodReport
from dr_engine.report.render import render_html, render_json, render_markdown, render_pdf
from dr_engine.report.source import load_run

log = logging.getLogger(__name__)

DEFAULT_FORMATS = ("html", "json")
REPORT_DIR = "report"
SUMS_FILE = "SHA256SUMS"


def run_report(run_dir: Path) -> RunReport:
    """Build the report model of the run in ``run_dir``."""
    return build_run_report(load_run(run_dir))


def run_html(report: RunReport, timeline_svg: bytes) -> str:
    """The HTML report of a run, with ``timeline_svg`` as its embedded timeline chart."""
    ident = report.identification
    footer = f"dr-engine {ident.mode} report - run {ident.run_id}"
    return render_html(report, template="run.html.j2", charts={"timeline": timeline_svg}, title=report.title,
                       footer_left=footer)


def run_markdown(report: RunReport) -> str:
    """The Markdown report of a run (its chart is the ``timeline.png`` beside it)."""
    return render_markdown(report, template="run.md.j2", chart_ref="timeline.png")


def render_run_files(report: RunReport, formats: Iterable[str]) -> dict[str, bytes]:
    """Render ``report`` in each of ``formats``; return file name -> content."""
    wanted = list(dict.fromkeys(formats))
    unknown = [f for f in wanted if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown report format(s) {unknown}; choose from {', '.join(FORMATS)}")
    files: dict[str, bytes] = {}
    html: str | None = None
    if "html" in wanted or "pdf" in wanted:
        html = run_html(report, timeline_chart(report, "svg"))
    if "html" in wanted and html is not None:
        files["report.html"] = html.encode("utf-8")
    if "pdf" in wanted and html is not None:
        files["report.pdf"] = render_pdf(html)
    if "md" in wanted:
        files["timeline.png"] = timeline_chart(report, "png")
        files["report.md"] = run_markdown(report).encode("utf-8")
    if "json" in wanted:
        files["report.json"] = render_json(report).encode("utf-8")
    return files


def trend_points(period: PeriodReport) -> list[TrendPoint]:
    """The RTO trend chart's points: one per run of the period."""
    points: list[TrendPoint] = []
    for run in period.runs:
        started = parse_ts(run.started_at)
        if started is not None and run.verified:  # an unverified run's RTO is a claim, not a measurement
            points.append(TrendPoint(runbook=run.runbook, started_at=started, rto_seconds=run.rto_seconds,
                                     target_seconds=run.rto_target_seconds, met=run.rto_met, mode=run.mode))
    return points


def render_period_files(period: PeriodReport, formats: Iterable[str]) -> dict[str, bytes]:
    """Render a period report in each of ``formats``; return file name -> content."""
    wanted = list(dict.fromkeys(formats))
    unknown = [f for f in wanted if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown report format(s) {unknown}; choose from {', '.join(FORMATS)}")
    files: dict[str, bytes] = {}
    points = trend_points(period)
    html: str | None = None
    if "html" in wanted or "pdf" in wanted:
        html = render_html(period, template="period.html.j2", charts={"trend": rto_trend_chart(points, "svg")},
                           title=period.title, footer_left=f"dr-engine period report {period.since[:10]} to "
                           f"{period.until[:10]}")
    if "html" in wanted and html is not None:
        files["period-report.html"] = html.encode("utf-8")
    if "pdf" in wanted and html is not None:
        files["period-report.pdf"] = render_pdf(html)
    if "md" in wanted:
        files["rto-trend.png"] = rto_trend_chart(points, "png")
        files["period-report.md"] = render_markdown(period, template="period.md.j2",
                                                    chart_ref="rto-trend.png").encode("utf-8")
    if "json" in wanted:
        files["period-report.json"] = render_json(period).encode("utf-8")
    return files


def write_files(out_dir: Path, files: dict[str, bytes]) -> list[Path]:
    """Write ``files`` into ``out_dir`` and (re)write its ``SHA256SUMS`` (other entries kept)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, content in files.items():
        path = out_dir / name
        path.write_bytes(content)
        written.append(path)
    sums_path = out_dir / SUMS_FILE
    sums: dict[str, str] = {}
    if sums_path.is_file():
        for line in sums_path.read_text(encoding="utf-8").splitlines():
            digest, _, name = line.partition("  ")
            if name:
                sums[name] = digest
    for name, content in files.items():
        sums[name] = hashlib.sha256(content).hexdigest()
    # sha256sum -c compatible: "<hex>  <name>"
    atomic_write_text(sums_path, "".join(f"{digest}  {name}\n" for name, digest in sorted(sums.items())))
    return [*written, sums_path]


def write_run_reports(run_dir: Path, formats: Iterable[str] = DEFAULT_FORMATS,
                      out_dir: Path | None = None) -> list[Path]:
    """Render the run in ``run_dir`` and write the files (default ``<run-dir>/report/``)."""
    report = run_report(run_dir)
    return write_files(out_dir or Path(run_dir) / REPORT_DIR, render_run_files(report, formats))


def write_default_reports(run_dir: Path) -> list[Path]:
    """HTML + JSON reports into ``<run-dir>/report/``; called by the engine at the end of every run."""
    return write_run_reports(run_dir, DEFAULT_FORMATS)


def artifact_key(run_id: str, what: str = "report") -> str:
    """A Prefect artifact key (lowercase letters, digits and dashes only)."""
    raw = f"dr-{what}-{run_id}".lower()
    return "".join(c if c.isalnum() else "-" for c in raw).strip("-")


def artifact_table(report: RunReport) -> list[dict[str, Any]]:
    """One row per step: the table artifact of a run."""
    return [{"step": s.id, "action": s.action, "status": s.status, "started (UTC)": fmt_ts(s.started_at),
             "duration": fmt_seconds(s.duration_seconds), "attempts": s.attempts,
             "kind": "human wait" if s.human else "machine"} for s in report.steps]


def artifact_markdown(report: RunReport, report_path: Path | None = None) -> str:
    """A short Markdown summary of a run (verdict, objectives, deviations, where the report is)."""
    ident, rec = report.identification, report.recovery
    lines = [
        f"## {report.verdict}: {ident.mode_label} of `{ident.runbook}` ({ident.source} -> {ident.target})",
        "",
        f"Run `{ident.run_id}` · status **{ident.status}** · triggered by {ident.triggered_by or 'unknown'}"
        f" · started {fmt_ts(ident.started_at)}",
        "",
        "| Objective | Target | Achieved | Result |",
        "|---|---|---|---|",
    ]
    for objective in report.objectives:
        verdict = "PASS" if objective.met is True else ("**FAIL**" if objective.met is False else "not measured")
        lines.append(f"| {objective.name} | {objective.target} | {objective.achieved} | {verdict} |")
    lines += ["", f"Machine time {fmt_seconds(rec.machine_seconds)} · human wait {fmt_seconds(rec.human_wait_seconds)}"
              f" · {len(report.deviations)} deviation(s) · audit chain "
              f"{'intact' if report.integrity.chain_ok else 'BROKEN'} ({report.integrity.chain_events} events)"]
    split = rec.breakdown
    if split is not None:
        whole = "RTO" if split.until == "healthy" else "Not recovered: incident start to the end of the run"
        lines += ["", f"{whole} {fmt_seconds(split.total_seconds)} = {fmt_seconds(split.before_run_seconds)} before "
                  f"the run started + {fmt_seconds(split.machine_seconds)} machine time + "
                  f"{fmt_seconds(split.human_wait_seconds)} waiting for people + "
                  f"{fmt_seconds(split.halted_seconds)} halted between sessions"]
    if not ident.incident_declared:
        lines += ["", f"Incident start {ident.incident_note}."]
    for deviation in report.deviations:
        lines.append(f"- {deviation.kind}: {deviation.step_id or ''} {deviation.detail} {deviation.reason}".rstrip())
    if report_path is not None:
        lines += ["", f"Full report: `{report_path}`"]
    return "\n".join(lines) + "\n"


__all__ = [
    "DEFAULT_FORMATS",
    "FORMATS",
    "artifact_key",
    "artifact_markdown",
    "artifact_table",
    "render_period_files",
    "render_run_files",
    "run_html",
    "run_markdown",
    "run_report",
    "trend_points",
    "write_default_reports",
    "write_files",
    "write_run_reports",
]
