"""The evacuation report: per tier and per application RTO/RPO vs objectives, predicted vs actual.

Built only from records that verify: the evacuation's own log (folded) and each application's
run record, whose own audit log is checked too. An application whose evidence does not verify
reads UNVERIFIED, never passed or failed. Formats: Markdown, JSON and a self-contained HTML page
(``dr report EVACUATION_ID``); each application links to its own run report.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dr_engine.errors import RunStateError
from dr_engine.evidence.evacuation_record import AppStatus, EvacuationRecord, load_evacuation_record
from dr_engine.evidence.record_check import check_run
from dr_engine.evidence.redact import redact_text
from dr_engine.evidence.statedir import StateDir
from dr_engine.report.evacuation_chart import evacuation_chart
from dr_engine.report.formatting import fmt_seconds
from dr_engine.report.render import svg_data_uri

UNVERIFIED = "UNVERIFIED"


@dataclass
class AppRow:
    """One application's line in the report."""

    name: str
    runbook: str
    tier: int
    wave: int
    business_function: str
    status: str
    run_id: str | None
    rto_seconds: float | None
    rto_target_seconds: float | None
    rto_met: bool | None
    rpo_seconds: float | None
    rpo_target_seconds: float | None
    rpo_met: bool | None
    predicted_p50_seconds: float | None
    predicted_p95_seconds: float | None
    verified: bool
    note: str = ""
    run_report: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    recovered_at: str | None = None


@dataclass
class EvacuationReport:
    """Everything the renderers show."""

    evacuation_id: str
    plan: str
    source: str
    target: str
    mode: str
    status: str
    verdict: str
    started_at: str
    finished_at: str | None
    incident_started_at: str
    rto_seconds: float | None
    rto_target_seconds: float
    rto_met: bool | None
    predicted: dict[str, Any]
    critical_path: list[str]
    resumes: int
    applications: list[AppRow] = field(default_factory=list)
    deviations: list[str] = field(default_factory=list)

    @property
    def rows(self) -> list[AppRow]:
        """The applications (what the timeline chart reads)."""
        return self.applications

    def by_tier(self) -> dict[int, list[AppRow]]:
        """Rows grouped by tier, lowest first."""
        tiers: dict[int, list[AppRow]] = {}
        for row in sorted(self.applications, key=lambda r: (r.tier, r.wave, r.name)):
            tiers.setdefault(row.tier, []).append(row)
        return tiers

    def by_function(self) -> dict[str, list[AppRow]]:
        """Rows rolled up by business function ("-" when none is given)."""
        functions: dict[str, list[AppRow]] = {}
        for row in self.applications:
            functions.setdefault(row.business_function, []).append(row)
        return functions


def _row(state: StateDir, record: EvacuationRecord, name: str) -> AppRow:
    entry = record.app(name)
    verified, note, link = True, "", None
    if entry.run_id is not None and state.run_dir(entry.run_id).is_dir():
        run_dir = state.run_dir(entry.run_id)
        try:
            check = check_run(run_dir)
            verified, note = check.verified, ("" if check.verified else check.verification)
        except RunStateError as exc:
            verified, note = False, str(exc)
        link = str(run_dir / "report")
    elif entry.status is AppStatus.SKIPPED:
        note = f"not started: '{entry.skipped_because}' did not succeed (on_failure: halt)"
    elif entry.run_id is not None:
        note = "refused before its run started (see the evacuation log)"
    if entry.continued_despite:
        note = (note + "; " if note else "") + "ran although " + ", ".join(entry.continued_despite) + " failed"
    return AppRow(name=entry.name, runbook=entry.runbook, tier=entry.tier, wave=entry.wave,
                  business_function=entry.business_function or "-",
                  status=entry.status.value if verified else UNVERIFIED, run_id=entry.run_id,
                  rto_seconds=entry.rto_seconds, rto_target_seconds=entry.rto_target_seconds, rto_met=entry.rto_met,
                  rpo_seconds=entry.rpo_seconds, rpo_target_seconds=entry.rpo_target_seconds, rpo_met=entry.rpo_met,
                  predicted_p50_seconds=entry.predicted_p50_seconds,
                  predicted_p95_seconds=entry.predicted_p95_seconds, verified=verified,
                  note=redact_text(note), run_report=link, started_at=entry.started_at,
                  finished_at=entry.finished_at, recovered_at=entry.recovered_at)


def evacuation_report(state: StateDir, evacuation_id: str) -> EvacuationReport:
    """The report of ``evacuation_id`` (its log must verify; RunStateError otherwise)."""
    evacuation_id = state.resolve_evacuation_id(evacuation_id)
    record = load_evacuation_record(state.evacuation_dir(evacuation_id))
    rows = [_row(state, record, a.name) for a in record.applications]
    deviations = [f"{r.name}: {r.note}" for r in rows if r.note]
    deviations += [f"{r.name}: RTO {fmt_seconds(r.rto_seconds)} over its objective "
                   f"{fmt_seconds(r.rto_target_seconds)}" for r in rows if r.rto_met is False and r.rto_seconds]
    deviations += [f"{r.name}: RPO objective missed" for r in rows if r.rpo_met is False]
    if record.resumes:
        deviations.append(f"the evacuation was resumed {record.resumes} time(s)")
    if any(not r.verified for r in rows):
        verdict = UNVERIFIED
    elif record.status == "succeeded" and record.rto_met:
        verdict = "PASSED"
    else:
        verdict = "FAILED"
    return EvacuationReport(
        evacuation_id=record.evacuation_id, plan=record.plan, source=record.source, target=record.target,
        mode=record.mode, status=record.status, verdict=verdict, started_at=record.started_at,
        finished_at=record.finished_at, incident_started_at=record.incident_started_at,
        rto_seconds=record.rto_seconds, rto_target_seconds=record.rto_target_seconds, rto_met=record.rto_met,
        predicted=record.predicted, critical_path=record.critical_path, resumes=record.resumes,
        applications=rows, deviations=deviations)


def _met(value: bool | None) -> str:
    return {True: "met", False: "MISSED", None: "-"}[value]


def render_markdown(report: EvacuationReport) -> str:
    """The report as Markdown."""
    lines = [f"# Evacuation {report.evacuation_id}: {report.verdict}", "",
             f"- plan: `{report.plan}` ({report.mode}, {report.source} -> {report.target}), status **{report.status}**",
             f"- incident start: {report.incident_started_at}; started {report.started_at}; "
             f"finished {report.finished_at or '-'}",
             f"- RTO: {fmt_seconds(report.rto_seconds)} vs objective {fmt_seconds(report.rto_target_seconds)} "
             f"({_met(report.rto_met)}); predicted p50 {fmt_seconds(report.predicted.get('p50_seconds'))}, "
             f"p95 {fmt_seconds(report.predicted.get('p95_seconds'))}",
             f"- critical path: {' -> '.join(report.critical_path) or '-'}", "",
             "![timeline](evacuation-timeline.svg)", ""]
    for tier, rows in report.by_tier().items():
        lines += [f"## Tier {tier}", "",
                  "| application | status | run | RTO | objective | RPO | objective | predicted p50 / p95 |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r.name} | {r.status} | {r.run_id or '-'} | {fmt_seconds(r.rto_seconds)} "
                         f"({_met(r.rto_met)}) | {fmt_seconds(r.rto_target_seconds)} | {fmt_seconds(r.rpo_seconds)} "
                         f"({_met(r.rpo_met)}) | {fmt_seconds(r.rpo_target_seconds)} | "
                         f"{fmt_seconds(r.predicted_p50_seconds)} / {fmt_seconds(r.predicted_p95_seconds)} |")
        lines.append("")
    lines += ["## By business function", ""]
    for function, rows in report.by_function().items():
        ok = sum(1 for r in rows if r.status == AppStatus.SUCCEEDED.value)
        lines.append(f"- {function}: {ok}/{len(rows)} recovered ({', '.join(r.name for r in rows)})")
    lines += ["", "## Deviations", ""]
    lines += [f"- {d}" for d in report.deviations] or ["- none"]
    return "\n".join(lines) + "\n"


def render_json(report: EvacuationReport) -> str:
    """The report as JSON."""
    return json.dumps(asdict(report), indent=2) + "\n"


def render_html(report: EvacuationReport) -> str:
    """The report as one self-contained HTML page (no scripts, no remote assets)."""
    e = html.escape
    rows = "".join(
        f"<tr><td>{r.tier}</td><td>{e(r.name)}</td><td>{e(r.status)}</td><td>{e(r.run_id or '-')}</td>"
        f"<td>{e(fmt_seconds(r.rto_seconds))} ({_met(r.rto_met)})</td><td>{e(fmt_seconds(r.rto_target_seconds))}</td>"
        f"<td>{e(fmt_seconds(r.rpo_seconds))} ({_met(r.rpo_met)})</td>"
        f"<td>{e(fmt_seconds(r.predicted_p50_seconds))} / {e(fmt_seconds(r.predicted_p95_seconds))}</td>"
        f"<td>{e(r.note)}</td></tr>" for tier in report.by_tier().values() for r in tier)
    deviations = "".join(f"<li>{e(d)}</li>" for d in report.deviations) or "<li>none</li>"
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>Evacuation {e(report.evacuation_id)}"
            "</title><style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #999;padding:.3em .6em}</style></head><body>"
            f"<h1>Evacuation {e(report.evacuation_id)}: {e(report.verdict)}</h1>"
            f"<p>Plan <code>{e(report.plan)}</code> ({e(report.mode)}, {e(report.source)} -&gt; {e(report.target)}),"
            f" status <b>{e(report.status)}</b>. RTO {e(fmt_seconds(report.rto_seconds))} vs objective "
            f"{e(fmt_seconds(report.rto_target_seconds))} ({_met(report.rto_met)}). Critical path: "
            f"{e(' -> '.join(report.critical_path) or '-')}.</p>"
            f"<img alt='timeline of the applications' src='{svg_data_uri(evacuation_chart(report))}'>"
            "<table><tr><th>tier</th><th>application</th><th>status</th><th>run</th><th>RTO</th><th>objective</th>"
            f"<th>RPO</th><th>predicted p50 / p95</th><th>note</th></tr>{rows}</table>"
            f"<h2>Deviations</h2><ul>{deviations}</ul></body></html>\n")


def render_pdf(report: EvacuationReport) -> bytes:
    """The HTML page laid out as a PDF."""
    from dr_engine.report.render import render_pdf as html_to_pdf

    return html_to_pdf(render_html(report))


def render_chart(report: EvacuationReport) -> bytes:
    """The timeline chart (SVG) the Markdown report links to."""
    return evacuation_chart(report)


RENDERERS: dict[str, tuple[str, Callable[[EvacuationReport], str | bytes]]] = {
    "md": ("evacuation.md", render_markdown), "json": ("evacuation.json", render_json),
    "html": ("evacuation.html", render_html), "pdf": ("evacuation.pdf", render_pdf)}


def write_evacuation_report(report: EvacuationReport, directory: Path, formats: list[str]) -> list[Path]:
    """Write the chosen formats into ``directory``; return the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name in formats:
        filename, render = RENDERERS[name]
        content = render(report)
        path = directory / filename
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        written.append(path)
    if "md" in formats:  # the Markdown report shows the chart from a file beside it
        chart = directory / "evacuation-timeline.svg"
        chart.write_bytes(render_chart(report))
        written.append(chart)
    return written


__all__ = [
    "RENDERERS",
    "AppRow",
    "EvacuationReport",
    "evacuation_report",
    "render_html",
    "render_json",
    "render_markdown",
    "write_evacuation_report",
]
