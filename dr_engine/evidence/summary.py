"""Plain-text views of a run record shared by the CLI and the Prefect artifacts (pure functions)."""

from __future__ import annotations

from typing import Any

from dr_engine.evidence.record import AttemptOutcome, RunRecord, StepStatus
from dr_engine.evidence.recovery import HEALTHY, UNDECLARED_INCIDENT, seconds_between


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


def incident_text(record: RunRecord) -> str:
    """When the incident started, or that nobody declared it (the RTO is then a lower bound)."""
    if record.incident_declared:
        return record.incident_started_at
    return f"{UNDECLARED_INCIDENT}, {record.incident_started_at}"


def rto_line(record: RunRecord) -> str:
    """One line about the RTO."""
    if record.rto_seconds is None:
        return (f"RTO: not reached (service not verified healthy), objective "
                f"{fmt_seconds(record.rto_target_seconds)} -> {verdict(record.rto_met)}")
    undeclared = "" if record.incident_declared else f"; incident start {UNDECLARED_INCIDENT}"
    return (f"RTO: {fmt_seconds(record.rto_seconds)} (objective {fmt_seconds(record.rto_target_seconds)}) -> "
            f"{verdict(record.rto_met)}{undeclared}")


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
    """Where the time went: the RTO split into parts that add up to it (see ``recovery.rto_breakdown``)."""
    split = record.rto_breakdown
    if split is None:  # a run still in its first session, or a record written before the split
        return (f"Time: machine {fmt_seconds(record.machine_seconds)}, waiting for people "
                f"{fmt_seconds(record.human_wait_seconds)}")
    whole = (f"RTO {fmt_seconds(split.total_seconds)}" if split.until == HEALTHY
             else f"not recovered, {fmt_seconds(split.total_seconds)} from incident start to the run's end")
    return (f"Time: {whole} = {fmt_seconds(split.before_run_seconds)} before the run started + "
            f"{fmt_seconds(split.machine_seconds)} machine + {fmt_seconds(split.human_wait_seconds)} waiting for "
            f"people + {fmt_seconds(split.halted_seconds)} halted between sessions")


def history_lines(record: RunRecord) -> list[str]:
    """Each session of a resumed or stopped run, and every attempt that did not succeed.

    Empty for a run that succeeded in one session with every step on its first attempt.
    """
    lines: list[str] = []
    sessions = record.sessions
    if len(sessions) > 1 or any(s.status not in (None, "succeeded") for s in sessions):
        for number, session in enumerate(sessions, start=1):
            who = f" by {session.actor}" if session.actor else ""
            why = f": {session.reason}" if session.reason and number > 1 else ""
            end = session.finished_at or (f"last event {session.last_event_at}" if session.last_event_at else "...")
            text = f"session {number}{who}{why}: {session.started_at} -> {end}, {session.status or 'running'}"
            if session.halted_at_step or session.error:
                text += f" at step {session.halted_at_step or '-'}"
                if session.error is not None:
                    text += f" ({session.error.kind}: {session.error.message})"
            lines.append(text)
            following = sessions[number] if number < len(sessions) else None
            stopped = session.finished_at or session.last_event_at
            if following is not None and stopped is not None:
                lines.append(f"  halted {fmt_seconds(max(0.0, seconds_between(stopped, following.started_at)))} "
                             "between sessions")
    for step in record.steps:
        for attempt in step.history:
            if attempt.outcome in (None, AttemptOutcome.SUCCEEDED):
                continue
            took = (fmt_seconds(seconds_between(attempt.started_at, attempt.finished_at))
                    if attempt.started_at and attempt.finished_at else "-")
            error = f": {attempt.error.kind}: {attempt.error.message}" if attempt.error else ""
            lines.append(f"step {step.id} attempt {attempt.attempt} (session {attempt.session}) "
                         f"{attempt.outcome.value} after {took}{error}")
    return lines


def step_rows(record: RunRecord) -> list[dict[str, Any]]:
    """One row per step for tables (the Prefect table artifact, ``dr show``)."""
    rows = []
    for step in record.steps:
        rows.append({
            "step": step.id, "action": step.action, "wave": step.wave, "status": step.status.value,
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
        f"- incident start {incident_text(record)}, run {record.started_at} -> {record.finished_at or '...'}",
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
    lines += [f"- {line.strip()}" for line in history_lines(record)]
    lines += ["", "| step | action | status | duration | attempts | result |", "|---|---|---|---|---|---|"]
    for step in record.steps:
        result = (step.error.message if step.error else step.summary).replace("|", "\\|")
        lines.append(f"| {step.id} | {step.action} | {step.status.value} | {fmt_seconds(step.duration_seconds)} "
                     f"| {step.attempts} | {result} |")
    pending = [s.id for s in record.steps if s.status is StepStatus.PENDING]
    if pending and record.status.terminal:
        lines += ["", f"Not run: {', '.join(pending)}. Resume with `dr resume {record.run_id}`."]
    return "\n".join(lines) + "\n"


__all__ = ["fmt_seconds", "history_lines", "incident_text", "markdown_summary", "rpo_line", "rto_line", "step_rows",
           "time_line", "verdict"]
