"""Plain-text views of a run record shared by the CLI and the Prefect artifacts (pure functions)."""

from __future__ import annotations

from typing import Any

from dr_engine.record import RunRecord, StepStatus


def fmt_seconds(value: float | None) -> str:
    """``12.3s`` / ``4m05s`` / ``-``."""
    if value is None:
        return "-"
    if value < 60:
        return f"{value:.1f}s" if value < 10 else f"{value:.0f}s"
    minutes, seconds = divmod(round(value), 60)
    return f"{minutes}m{seconds:02d}s"


def verdict(met: bool | None) -> str:
    """``met`` / ``BREACHED`` / ``not measured``."""
    return "not measured" if met is None else ("met" if met else "BREACHED")


def rto_line(record: RunRecord) -> str:
    """One line about the RTO."""
    if record.rto_seconds is None:
        return (f"RTO: not reached (service not verified healthy), objective "
                f"{fmt_seconds(record.rto_target_seconds)} -> {verdict(record.rto_met)}")
    return (f"RTO: {fmt_seconds(record.rto_seconds)} (objective {fmt_seconds(record.rto_target_seconds)}) -> "
            f"{verdict(record.rto_met)}")


def rpo_line(record: RunRecord) -> str:
    """One line about the RPO."""
    parts = []
    if record.rpo_seconds is not None:
        parts.append(f"lag {fmt_seconds(record.rpo_seconds)}")
    if record.rpo_lag_bytes is not None:
        parts.append(f"{record.rpo_lag_bytes} bytes behind at cutover")
    if record.rows_lost is not None:
        parts.append(f"{record.rows_lost} rows lost")
    measured = ", ".join(parts) if parts else "no data step reported a reading"
    return f"RPO: {measured} (objective {fmt_seconds(record.rpo_target_seconds)}) -> {verdict(record.rpo_met)}"


def time_line(record: RunRecord) -> str:
    """Human wait vs machine time."""
    return (f"Time: machine {fmt_seconds(record.machine_seconds)}, waiting for people "
            f"{fmt_seconds(record.human_wait_seconds)}")


def step_rows(record: RunRecord) -> list[dict[str, Any]]:
    """One row per step for tables (the Prefect table artifact, ``dr show``)."""
    rows = []
    for step in record.steps:
        rows.append({
            "step": step.id, "action": step.action, "wave": step.wave + 1, "status": step.status.value,
            "started_at": step.started_at or "", "duration_seconds": step.duration_seconds,
            "attempts": step.attempts, "changed": step.changed,
            "result": step.error.message if step.error else step.summary,
        })
    return rows


def markdown_summary(record: RunRecord) -> str:
    """A Markdown summary of a run (Prefect artifact, reports)."""
    lines = [
        f"# {record.mode} of `{record.runbook}`: {record.status.value}",
        "",
        f"- run `{record.run_id}`, {record.source} -> {record.target}, by {record.triggered_by}"
        + (f": {record.reason}" if record.reason else ""),
        f"- incident start {record.incident_started_at}, run {record.started_at} -> {record.finished_at or '...'}",
        f"- {rto_line(record)}",
        f"- {rpo_line(record)}",
        f"- {time_line(record)}",
    ]
    if record.error is not None:
        lines.append(f"- halted at `{record.halted_at_step}`: {record.error.kind}: {record.error.message}")
    if record.changed_steps:
        lines.append(f"- changed: {', '.join(f'`{s}`' for s in record.changed_steps)}")
    for override in record.overrides:
        lines.append(f"- override ({override.kind}): {override.detail}")
    lines += ["", "| step | action | status | duration | attempts | result |", "|---|---|---|---|---|---|"]
    for step in record.steps:
        result = (step.error.message if step.error else step.summary).replace("|", "\\|")
        lines.append(f"| {step.id} | {step.action} | {step.status.value} | {fmt_seconds(step.duration_seconds)} "
                     f"| {step.attempts} | {result} |")
    pending = [s.id for s in record.steps if s.status is StepStatus.PENDING]
    if pending and record.status.terminal:
        lines += ["", f"Not run: {', '.join(pending)}. Resume with `dr resume {record.run_id}`."]
    return "\n".join(lines) + "\n"


__all__ = ["fmt_seconds", "markdown_summary", "rpo_line", "rto_line", "step_rows", "time_line", "verdict"]
