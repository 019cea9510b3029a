"""The evacuation's timeline: one bar per application, the critical path outlined.

Each bar runs from the application's start to its recovery (or its end, when it did not
recover), in seconds since the incident start; skipped applications are marked, and the
evacuation's RTO and objective are drawn as lines, as in a run's timeline.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from matplotlib import rc_context
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from dr_engine.report.charts import _RC, COLORS, ChartFormat, _save  # one look for every chart
from dr_engine.report.formatting import fmt_seconds, parse_ts


class ChartRow(Protocol):
    """What the chart reads of one application (an ``AppRow`` of :mod:`dr_engine.report.evacuation`)."""

    name: str
    tier: int
    wave: int
    status: str
    started_at: str | None
    finished_at: str | None
    recovered_at: str | None


class ChartSource(Protocol):
    """What the chart reads of an evacuation (an ``EvacuationReport``): no import of the report module."""

    incident_started_at: str
    rto_seconds: float | None
    rto_target_seconds: float
    critical_path: list[str]

    @property
    def rows(self) -> Sequence[ChartRow]:
        """The applications."""
        ...

_STATUS_COLORS = {"succeeded": COLORS["ok"], "failed": COLORS["failed"], "halted": COLORS["failed"],
                  "cancelled": COLORS["stopped"], "skipped": COLORS["skipped"]}


def evacuation_chart(report: ChartSource, fmt: ChartFormat = "svg") -> bytes:
    """Gantt chart of the applications of one evacuation."""
    origin = parse_ts(report.incident_started_at)
    rows = sorted(report.rows, key=lambda r: (r.wave, r.started_at or "", r.name))

    def offset(text: str | None) -> float | None:
        moment = parse_ts(text)
        return None if moment is None or origin is None else max(0.0, (moment - origin).total_seconds())

    ends = [offset(r.recovered_at or r.finished_at) for r in rows]
    span = max([e for e in ends if e is not None] + [report.rto_seconds or 0.0, 1.0])
    with rc_context(_RC):
        fig = Figure(figsize=(9.5, 1.2 + 0.42 * len(rows)))
        ax = fig.add_subplot()
        for index, row in enumerate(rows):
            y = len(rows) - 1 - index
            start, end = offset(row.started_at), offset(row.recovered_at or row.finished_at)
            if start is None or end is None:
                ax.text(0, y, f"  {row.status}", va="center", fontsize=8, color="#718096")
                continue
            critical = row.name in report.critical_path
            ax.barh(y, max(end - start, span / 400), left=start, height=0.56,
                    color=_STATUS_COLORS.get(row.status, COLORS["skipped"]),
                    edgecolor=COLORS["text"] if critical else "white", linewidth=1.4 if critical else 0.6,
                    gid=f"application-{row.name}")
        ax.set_yticks(range(len(rows)), [f"{r.name} (tier {r.tier})" for r in reversed(rows)])
        ax.set_ylim(-0.7, max(len(rows), 1) - 0.3)
        ax.set_xlim(0, max(span, report.rto_target_seconds if report.rto_target_seconds <= 3 * span else 0) * 1.04)
        if report.rto_seconds is not None:
            ax.axvline(report.rto_seconds, color=COLORS["achieved"], linewidth=1.6)
            ax.text(report.rto_seconds, len(rows) - 0.35, f" RTO {fmt_seconds(report.rto_seconds)}",
                    color=COLORS["achieved"], fontsize=8, va="bottom", ha="left")
        if report.rto_target_seconds <= 3 * span:
            ax.axvline(report.rto_target_seconds, color=COLORS["target"], linewidth=1.2, linestyle="--")
        ax.set_xlabel("seconds since the incident start (bars: start to recovery; outlined: the critical path)")
        ax.grid(axis="x", color=COLORS["grid"], linewidth=0.8)
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        fig.legend(handles=[Patch(color=color, label=status) for status, color in _STATUS_COLORS.items()
                            if status != "halted"], loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=4,
                   frameon=False, fontsize=8)
        return _save(fig, fmt)


__all__ = ["evacuation_chart"]
