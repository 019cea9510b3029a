"""Charts for reports, drawn with matplotlib's Agg backend (headless, no pyplot state).

- :func:`timeline_chart`: a Gantt chart of the steps of one run, every attempt of every
  session a segment (failed attempts red and hatched, interrupted / cancelled / abandoned ones
  orange and cross-hatched, waits between attempts as a thin line), human waits (approvals)
  amber, the time the run was halted between sessions as a grey band, with the RTO target and
  the achieved RTO as vertical lines. Each segment is an SVG group ``attempt-<step>-<n>``.
- :func:`rto_trend_chart`: achieved RTO per run over time, one series per runbook, against
  each runbook's target; misses are red.

Both return SVG text (embedded inline in HTML/PDF) or PNG bytes (for Markdown). ``Figure``
objects are used directly, never ``pyplot``, so rendering is thread-safe and leaves no global
state behind; SVG output is made reproducible (fixed hash salt, no date metadata).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import matplotlib

matplotlib.use("Agg")  # headless: before anything else of matplotlib is imported

import matplotlib.dates as mdates
from matplotlib import rc_context
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from dr_engine.report.formatting import fmt_seconds, fmt_ts, parse_ts
from dr_engine.report.model import RunReport

ChartFormat = Literal["svg", "png"]

COLORS = {
    "ok": "#2b6cb0",
    "human": "#d69e2e",
    "failed": "#c53030",
    "stopped": "#dd6b20",
    "halted": "#cbd5e0",
    "skipped": "#a0aec0",
    "target": "#c53030",
    "achieved": "#2f855a",
    "grid": "#e2e8f0",
    "text": "#1a202c",
}
_RC: Any = {
    "svg.hashsalt": "dr-engine",
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.edgecolor": "#4a5568",
    "axes.labelcolor": COLORS["text"],
    "xtick.color": "#4a5568",
    "ytick.color": "#4a5568",
}


def _save(fig: Figure, fmt: ChartFormat) -> bytes:
    buffer = io.BytesIO()
    metadata: dict[str, str | None] = {"Date": None} if fmt == "svg" else {"Software": None}
    fig.savefig(buffer, format=fmt, dpi=150, bbox_inches="tight", metadata=metadata)
    return buffer.getvalue()


@dataclass(frozen=True)
class _Bar:
    start: float
    end: float
    color: str
    hatch: str | None = None
    gid: str | None = None


#: Attempt outcomes drawn as "stopped" (not a failure of the action: the session ended around it).
_STOPPED = frozenset({"interrupted", "cancelled", "abandoned"})


def _attempt_style(outcome: str, ok: bool, human: bool) -> tuple[str, str | None]:
    if outcome in _STOPPED:
        return COLORS["stopped"], "xx"
    if not ok:
        return COLORS["failed"], "///"
    return (COLORS["human"] if human else COLORS["ok"]), None


def _scale(span: float) -> tuple[float, str]:
    if span > 2 * 3600:
        return 3600.0, "hours"
    if span > 300:
        return 60.0, "minutes"
    return 1.0, "seconds"


def timeline_chart(report: RunReport, fmt: ChartFormat = "svg") -> bytes:
    """Gantt chart of one run's steps (see the module docstring)."""
    ident = report.identification
    origin = parse_ts(ident.incident_started_at) or parse_ts(ident.started_at)
    rows: list[tuple[str, list[_Bar], list[tuple[float, float]], str]] = []
    last = 0.0

    def offset(text: str | None) -> float | None:
        moment = parse_ts(text)
        return None if moment is None or origin is None else (moment - origin).total_seconds()

    ordered = sorted(report.steps, key=lambda s: (parse_ts(s.started_at) is None, s.started_at or "", s.wave))
    for step in ordered:
        bars: list[_Bar] = []
        gaps: list[tuple[float, float]] = []
        mine = [a for a in report.attempts if a.step_id == step.id]
        if mine:
            previous_end: float | None = None
            for attempt in mine:
                start, end = offset(attempt.started_at), offset(attempt.finished_at)
                if start is None or end is None:
                    continue
                color, hatch = _attempt_style(attempt.outcome, attempt.ok, step.human)
                bars.append(_Bar(start, end, color, hatch, f"attempt-{step.id}-{attempt.attempt}"))
                if previous_end is not None and start > previous_end:
                    gaps.append((previous_end, start))
                previous_end = end
        if not bars:
            start, end = offset(step.started_at), offset(step.finished_at)
            if start is not None:
                end = end if end is not None else start
                color = {"failed": COLORS["failed"], "skipped": COLORS["skipped"]}.get(
                    step.status, COLORS["human"] if step.human else COLORS["ok"])
                bars.append(_Bar(start, end, color, "///" if step.status == "failed" else None))
        for bar in bars:
            last = max(last, bar.end)
        label = step.id + (f"  (x{step.attempts})" if step.attempts > 1 else "")
        rows.append((label, bars, gaps, step.status))

    halted: list[tuple[float, float, float]] = []  # (start, end, seconds) of each stretch between sessions
    for session, following in zip(report.sessions, report.sessions[1:], strict=False):
        if session.halted_after_seconds:
            end = offset(following.started_at)
            if end is not None:
                halted.append((end - session.halted_after_seconds, end, session.halted_after_seconds))
                last = max(last, end)
    rec = report.recovery
    span = max(last, rec.rto_seconds or 0.0, rec.rto_target_seconds * 0.25 if rec.rto_met is False else 0.0, 0.001)
    show_target = rec.rto_target_seconds <= span * 1.6
    if show_target:
        span = max(span, rec.rto_target_seconds)
    unit, unit_name = _scale(span)
    min_width = span / unit * 0.006  # keep millisecond steps visible
    height = 1.6 + 0.32 * max(len(rows), 1)
    with rc_context(_RC):
        fig = Figure(figsize=(9.5, height))
        ax = fig.add_subplot()
        for number, (start, end, seconds) in enumerate(halted, start=1):
            ax.axvspan(start / unit, end / unit, color=COLORS["halted"], alpha=0.6, linewidth=0,
                       gid=f"halted-between-sessions-{number}")
            ax.text((start + end) / 2 / unit, len(rows) - 0.35, f"halted {fmt_seconds(seconds)}", ha="center",
                    va="bottom", fontsize=8, color="#4a5568")
        for index, (_label, bars, gaps, status) in enumerate(rows):
            y = len(rows) - 1 - index
            for gap_start, gap_end in gaps:
                ax.plot([gap_start / unit, gap_end / unit], [y, y], color="#718096", linewidth=1, linestyle=":")
            for bar in bars:
                width = max((bar.end - bar.start) / unit, min_width)
                ax.barh(y, width, left=bar.start / unit, height=0.56, color=bar.color, hatch=bar.hatch,
                        edgecolor="white" if bar.hatch is None else "#742a2a", linewidth=0.6, gid=bar.gid)
            if status in ("pending", "running") and not bars:
                ax.text(0, y, "  not run", va="center", fontsize=8, color="#718096")
        ax.set_yticks(range(len(rows)), [r[0] for r in reversed(rows)])
        ax.set_ylim(-0.7, max(len(rows), 1) - 0.3)
        ax.set_xlim(0, span / unit * 1.04)
        if rec.rto_seconds is not None:
            ax.axvline(rec.rto_seconds / unit, color=COLORS["achieved"], linewidth=1.6)
            ax.text(rec.rto_seconds / unit, len(rows) - 0.35, f" RTO {fmt_seconds(rec.rto_seconds)}",
                    color=COLORS["achieved"], fontsize=8, va="bottom", ha="left")
        if show_target:
            ax.axvline(rec.rto_target_seconds / unit, color=COLORS["target"], linewidth=1.2, linestyle="--")
            ax.text(rec.rto_target_seconds / unit, -0.65, f"target {fmt_seconds(rec.rto_target_seconds)} ",
                    color=COLORS["target"], fontsize=8, va="bottom", ha="right")
        beyond = "" if show_target else f"; RTO target {fmt_seconds(rec.rto_target_seconds)} is off the scale"
        since = ("incident start" if ident.incident_declared
                 else "run start (incident start not declared: the RTO is a lower bound)")
        ax.set_xlabel(f"{unit_name} since {since} (T0 = {fmt_ts(origin, ms=False)}){beyond}")
        ax.grid(axis="x", color=COLORS["grid"], linewidth=0.8)
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        fig.legend(handles=[
            Patch(color=COLORS["ok"], label="machine time"),
            Patch(color=COLORS["human"], label="human wait (approval)"),
            Patch(facecolor=COLORS["failed"], hatch="///", edgecolor="#742a2a", label="failed attempt / step"),
            Patch(facecolor=COLORS["stopped"], hatch="xx", edgecolor="#742a2a",
                  label="interrupted / cancelled / abandoned"),
            Patch(color=COLORS["skipped"], label="skipped"),
            Patch(color=COLORS["halted"], alpha=0.6, label="halted between sessions"),
        ], loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3, frameon=False, fontsize=8)
        return _save(fig, fmt)


@dataclass(frozen=True)
class TrendPoint:
    """One run on the RTO trend chart."""

    runbook: str
    started_at: datetime
    rto_seconds: float | None
    target_seconds: float
    met: bool | None
    mode: str


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _day_number(moment: datetime) -> float:
    """Matplotlib's date axis unit: days since its default epoch (1970-01-01 UTC)."""
    return (moment - _EPOCH).total_seconds() / 86400.0


_MARKERS = {"drill": "o", "failover": "s", "failback": "^"}
_SERIES = ["#2b6cb0", "#6b46c1", "#2c7a7b", "#b7791f", "#4a5568", "#97266d"]


def rto_trend_chart(points: list[TrendPoint], fmt: ChartFormat = "svg") -> bytes:
    """Achieved RTO per run over time against each runbook's target (see the module docstring)."""
    values = [p.rto_seconds for p in points if p.rto_seconds is not None] + [p.target_seconds for p in points]
    top = max(values) if values else 1.0
    unit, unit_name = _scale(top)
    with rc_context(_RC):
        fig = Figure(figsize=(9.5, 3.6))
        ax = fig.add_subplot()
        runbooks = sorted({p.runbook for p in points})
        for index, name in enumerate(runbooks):
            color = _SERIES[index % len(_SERIES)]
            mine = sorted((p for p in points if p.runbook == name), key=lambda p: p.started_at)
            measured = [p for p in mine if p.rto_seconds is not None]
            ax.plot([_day_number(p.started_at) for p in measured], [(p.rto_seconds or 0) / unit for p in measured],
                    color=color, linewidth=1.4, label=f"{name} achieved RTO")
            for point in mine:
                y = (point.rto_seconds if point.rto_seconds is not None else point.target_seconds) / unit
                face = COLORS["failed"] if point.met is False or point.rto_seconds is None else color
                ax.scatter([_day_number(point.started_at)], [y], marker="x" if point.rto_seconds is None else
                           _MARKERS.get(point.mode, "o"), s=36, color=face, zorder=3)
            if mine:
                ax.axhline(mine[-1].target_seconds / unit, color=color, linestyle="--", linewidth=1,
                           label=f"{name} target {fmt_seconds(mine[-1].target_seconds)}")
        ax.set_ylabel(f"RTO ({unit_name})")
        ax.set_ylim(bottom=0, top=top / unit * 1.15)
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))  # type: ignore[no-untyped-call]
        ax.set_xlabel("run start (UTC)")
        fig.autofmt_xdate(rotation=30)
        ax.grid(color=COLORS["grid"], linewidth=0.8)
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        handles, _labels = ax.get_legend_handles_labels()
        handles += [
            ax.scatter([], [], marker="o", color="#4a5568", label="drill"),
            ax.scatter([], [], marker="s", color="#4a5568", label="failover"),
            ax.scatter([], [], marker="x", color=COLORS["failed"], label="missed / not recovered"),
        ]
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)
        if not points:
            ax.text(0.5, 0.5, "no runs in this period", transform=ax.transAxes, ha="center", color="#718096")
        return _save(fig, fmt)


__all__ = ["ChartFormat", "TrendPoint", "rto_trend_chart", "timeline_chart"]
