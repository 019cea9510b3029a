"""``dr failover``, ``dr resume``, ``dr runs``, ``dr show``, ``dr audit verify``."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from dr_engine.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    STATE,
    Output,
    confirm_by_name,
    err,
    exit_run,
    grace_option,
    handle_errors,
    handle_stop_signals,
    out,
    print_json,
    state_dir_option,
)
from dr_engine.cli.live import LiveProgress
from dr_engine.clock import SystemClock, parse_utc
from dr_engine.config.loader import load_runbook
from dr_engine.config.runbooks import resolve_runbook
from dr_engine.engine.interrupts import Interrupts
from dr_engine.engine.run import INCIDENT_SKEW_SECONDS, RunOptions
from dr_engine.errors import DrError, RunStateError
from dr_engine.evidence.audit import read_events, verify
from dr_engine.evidence.journal import rebuild_record
from dr_engine.evidence.record import AUDIT_FILE, RunRecord, RunStatus
from dr_engine.evidence.record_check import RunCheck, check_run
from dr_engine.evidence.statedir import StateDir
from dr_engine.evidence.summary import fmt_seconds, history_lines, incident_text, rpo_line, rto_line, time_line
from dr_engine.flows.settings import configure, server_mode
from dr_engine.model import RunMode
from dr_engine.planning.plan import ExecutionPlan, build_plan


def render_result(record: RunRecord, state_dir: StateDir, *, verdict: str | None = None) -> None:
    """Print the end of a run: outcome, what changed, RTO/RPO, where the record is.

    ``verdict`` replaces the recorded status in the first line (``UNVERIFIED`` from ``dr show``).
    """
    console = out()
    state = state_dir
    console.print(f"Run {record.run_id}: {verdict or record.status.value.upper()}", markup=False)
    if record.status is RunStatus.SUCCEEDED and record.overrides:
        # A success reached by relaxing a safety rule must not read as a plain success.
        kinds = ", ".join(dict.fromkeys(o.kind for o in record.overrides))
        console.print(f"  succeeded WITH {len(record.overrides)} OVERRIDE(S) ({kinds}): see `dr show {record.run_id}`",
                      markup=False)
    if record.error is not None:
        where = f"halted at step {record.halted_at_step}" if record.halted_at_step else "stopped"
        console.print(f"  {where}: {record.error.kind}: {record.error.message}", markup=False)
        if record.error.hint:
            console.print(f"  hint: {record.error.hint}", markup=False)
    changed = [s for s in record.steps if s.id in record.changed_steps]
    if record.status is not RunStatus.SUCCEEDED:
        console.print("  changed so far: " + (", ".join(f"{s.id} ({s.summary})" for s in changed) or "nothing"),
                      markup=False)
        pending = [s.id for s in record.steps if s.status.value == "pending"]
        if pending:
            console.print(f"  not run: {', '.join(pending)}", markup=False)
        console.print(f"  resume with: dr resume {record.run_id}" + (f" --state-dir {state_dir}"
                                                                      if str(state_dir) != ".dr" else ""),
                      markup=False)
    console.print(f"  {rto_line(record)}", markup=False)
    console.print(f"  {rpo_line(record)}", markup=False)
    console.print(f"  {time_line(record)}", markup=False)
    console.print(f"  run record: {state.run_file(record.run_id)}", markup=False)
    console.print(f"  audit log:  {state.audit_file(record.run_id)}", markup=False)


def run_exit_code(record: RunRecord, interrupts: Interrupts) -> int:
    """130/143/129 for a run stopped by SIGINT/SIGTERM/SIGHUP, else 0 for success and 1 otherwise."""
    if record.interrupted_by and interrupts.exit_code is not None:
        return interrupts.exit_code
    return EXIT_OK if record.status is RunStatus.SUCCEEDED else EXIT_FAILED


def _interrupted_before_start(interrupts: Interrupts) -> int:
    err().print(f"interrupted ({interrupts.first_signal or 'SIGINT'}) before the run started: nothing was changed",
                markup=False)
    return interrupts.exit_code or 130


def execute_and_render(plan: ExecutionPlan, options: RunOptions, *, live: bool = True) -> int:
    """Run ``plan`` through Prefect with live progress, print the summary; return the exit code.

    Used by ``dr failover``, ``dr drill``, ``dr failback`` and ``dr demo``. DrErrors raised before
    the run starts (lock held, bad incident time) are printed and mapped to their exit code.
    """
    interrupts = options.interrupts or handle_stop_signals(options.grace_cap)
    options.interrupts = interrupts
    try:
        configure(options.state, quiet_console=True)
        from dr_engine.flows.failover import launch  # Prefect is imported only when something runs

        record = launch(plan, options, progress=LiveProgress(err()) if live else None)
    except KeyboardInterrupt:
        return _interrupted_before_start(interrupts)
    except DrError as exc:
        if STATE.debug:
            raise
        err().print(f"error: {exc}", markup=False)
        return exc.exit_code
    render_result(record, options.state)
    return run_exit_code(record, interrupts)


def resume_and_render(state_dir: StateDir, run_id: str, *, force: bool = False, reason: str = "",
                      take_over_lock: bool = False, live: bool = True, grace_cap: float | None = None) -> int:
    """Resume a run through Prefect with live progress; return the exit code."""
    interrupts = handle_stop_signals(grace_cap)
    try:
        configure(state_dir, quiet_console=True)
        from dr_engine.flows.failover import resume_run

        record = resume_run(state_dir, run_id, force=force, reason=reason, take_over_lock=take_over_lock,
                            progress=LiveProgress(err()) if live else None, interrupts=interrupts)
    except KeyboardInterrupt:
        return _interrupted_before_start(interrupts)
    render_result(record, state_dir)
    return run_exit_code(record, interrupts)


def _confirm(plan: ExecutionPlan, yes: bool) -> None:
    rb = plan.loaded.runbook
    console = err()
    console.print(f"About to FAIL OVER '{rb.runbook}' from {rb.source} to {rb.target}: {len(plan.steps)} steps in "
                  f"{len(plan.waves)} waves, RTO objective {fmt_seconds(rb.objectives.rto.total_seconds())}, "
                  f"RPO objective {fmt_seconds(rb.objectives.rpo.total_seconds())}.", markup=False)
    console.print(f"Prefect: {'server ' + 'at PREFECT_API_URL' if server_mode() else 'embedded (local)'}",
                  markup=False)
    confirm_by_name(rb.runbook, "runbook", yes, refusing="refusing to fail over without confirmation")


@handle_errors
def failover_cmd(
    runbook: str = typer.Argument(..., help="Runbook name (runbooks/NAME.yaml) or path."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    reason: str = typer.Option("", "--reason", help="Why (recorded in the run record and audit log)."),
    incident_start: str = typer.Option(None, "--incident-start",
                                       help="When the outage began (ISO 8601 UTC); RTO is measured from it. "
                                            "Default: the run start."),
    allow_data_loss: bool = typer.Option(False, "--allow-data-loss",
                                         help="Let lag gates proceed past the RPO (audited override). Needs "
                                              "--reason and a second person's approval: the run pauses for "
                                              "`dr approve` by a different OS user than yours."),
    approved_by: str = typer.Option(None, "--approved-by",
                                    help="With --allow-data-loss: who approved accepting data loss, recorded as "
                                         "a claim; the run still waits for `dr approve` by a different OS user "
                                         "unless the runbook allows self-approval."),
    concurrency: int = typer.Option(4, "--concurrency", min=1, max=64, help="Steps run at the same time."),
    take_over_lock: bool = typer.Option(False, "--take-over-lock",
                                        help="Take over a STALE failover lock (holder dead or expired)."),
    grace: float = grace_option(),
    state_dir: StateDir = state_dir_option(),
) -> None:
    """Fail an application over to its target region (asks you to type the runbook name)."""
    if allow_data_loss and not reason.strip():
        raise typer.BadParameter("--allow-data-loss needs --reason saying why losing data is acceptable",
                                 param_hint="--reason")
    if approved_by and not allow_data_loss:
        raise typer.BadParameter("--approved-by only applies with --allow-data-loss", param_hint="--approved-by")
    incident: datetime | None = None
    if incident_start:
        try:
            incident = parse_utc(incident_start)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--incident-start") from exc
        ahead = (incident - SystemClock().now()).total_seconds()
        if ahead > INCIDENT_SKEW_SECONDS:  # a negative RTO would read as met
            raise typer.BadParameter(f"{incident_start} is {ahead:.0f}s in the future; give the time the "
                                     "outage began, in UTC", param_hint="--incident-start")
    plan = build_plan(load_runbook(resolve_runbook(runbook)))
    _confirm(plan, yes)
    options = RunOptions(mode=RunMode.FAILOVER, state_dir=state_dir, incident_start=incident,
                         allow_data_loss=allow_data_loss, reason=reason, concurrency=concurrency,
                         take_over_lock=take_over_lock, grace_cap=grace,
                         # --allow-data-loss from a terminal is subject to the two-person rule.
                         require_data_loss_approval=allow_data_loss,
                         data_loss_approved_by=approved_by if allow_data_loss and approved_by else None)
    exit_run(execute_and_render(plan, options))


@handle_errors
def resume_cmd(
    run_id: str = typer.Argument(..., help="Run id (a unique prefix or 'latest' works)."),
    force: bool = typer.Option(False, "--force",
                               help="Resume even though the runbook or region files changed (audited)."),
    reason: str = typer.Option("", "--reason", help="Why (recorded in the audit log)."),
    take_over_lock: bool = typer.Option(False, "--take-over-lock", "--take-over",
                                        help="Take over a stale lock of another run, or this run's lease "
                                             "held on a crashed machine (audited)."),
    grace: float = grace_option(),
    state_dir: StateDir = state_dir_option(),
) -> None:
    """Resume an interrupted or halted run (or evacuation): finished work is skipped, the rest re-run."""
    if state_dir.names_evacuation(run_id):
        from dr_engine.cli.evacuate_cmds import resume_evacuation_cmd

        exit_run(resume_evacuation_cmd(state_dir, run_id, force=force, reason=reason, grace_cap=grace))
    exit_run(resume_and_render(state_dir, run_id, force=force, reason=reason,
                                take_over_lock=take_over_lock, grace_cap=grace))


UNVERIFIED = "UNVERIFIED"



def _check(state: StateDir, run_id: str, record: RunRecord | None = None) -> RunCheck:
    """The run's verification (:mod:`dr_engine.evidence.record_check`); an unreadable run.json does not verify."""
    run_dir = state.run_dir(run_id)
    try:
        return check_run(run_dir, record)
    except RunStateError as exc:
        return RunCheck(False, f"run.json cannot be read: {exc}", verify(run_dir / AUDIT_FILE))


def _run_row(record: RunRecord, check: RunCheck) -> dict[str, Any]:
    return {"run_id": record.run_id, "runbook": record.runbook, "mode": record.mode, "status": record.status.value,
            "started_at": record.started_at, "finished_at": record.finished_at, "rto_seconds": record.rto_seconds,
            "rto_met": record.rto_met, "rpo_met": record.rpo_met, "triggered_by": record.triggered_by,
            "verified": check.verified, "verification": check.verification}


@handle_errors
def runs_cmd(
    output: Output = typer.Option(Output.TEXT, "--output", "-o", help="text or json"),
    state_dir: StateDir = state_dir_option(),
) -> None:
    """List runs with their status (oldest first)."""
    state = state_dir
    records = state.list_runs()
    checks = {r.run_id: _check(state, r.run_id, r) for r in records}
    if output is Output.JSON:
        print_json([_run_row(r, checks[r.run_id]) for r in records])
        return
    console = out()
    if not records:
        console.print(f"no runs in {state_dir.runs_dir}", markup=False)
        return
    table = Table(box=None, pad_edge=False)
    for column in ("run id", "runbook", "mode", "status", "started", "RTO", "by"):
        table.add_column(column)
    for r in records:
        rto = fmt_seconds(r.rto_seconds) + ("" if r.rto_met is None else (" ok" if r.rto_met else " BREACH"))
        if not checks[r.run_id].verified:
            # What an unverified record claims (status, RTO) is not established: do not list it as fact.
            table.add_row(r.run_id, r.runbook, r.mode, UNVERIFIED, r.started_at, "-", r.triggered_by)
            continue
        table.add_row(r.run_id, r.runbook, r.mode, r.status.value, r.started_at, rto, r.triggered_by)
    console.print(table)
    for run_id, check in checks.items():
        if not check.verified:
            console.print(f"{run_id}: UNVERIFIED: {check.verification}", markup=False)


@handle_errors
def show_cmd(
    run_id: str = typer.Argument("latest", help="Run id (a unique prefix or 'latest')."),
    output: Output = typer.Option(Output.TEXT, "--output", "-o", help="text or json"),
    rebuild: bool = typer.Option(False, "--rebuild", help="Rebuild the record from the audit log instead."),
    state_dir: StateDir = state_dir_option(),
) -> None:
    """Print a run's summary (steps, RTO/RPO, what changed)."""
    state = state_dir
    full_id = state.resolve_run_id(run_id)
    record = (rebuild_record(read_events(state.audit_file(full_id))) if rebuild else state.load(full_id))
    check = _check(state, full_id, None if rebuild else record)
    if output is Output.JSON:
        print_json({**record.model_dump(mode="json"), "verified": check.verified,
                    "verification": check.verification})
        return
    console = out()
    verdict = None if check.verified else UNVERIFIED
    console.print(f"Run {record.run_id}: {record.mode} of {record.runbook} ({record.source} -> {record.target}) "
                  f"{verdict or record.status.value.upper()}", markup=False)
    if not check.verified:
        console.print(f"  UNVERIFIED: {check.verification}", markup=False)
        console.print(f"  what follows is what the records claim (status {record.status.value}), not established "
                      f"fact: keep run.json and audit.jsonl as evidence (`dr audit verify {full_id}`)", markup=False)
    console.print(f"  by {record.triggered_by}{': ' + record.reason if record.reason else ''}; incident start "
                  f"{incident_text(record)}; run {record.started_at} -> {record.finished_at or '...'}",
                  markup=False)
    table = Table(box=None, pad_edge=False)
    for column in ("wave", "step", "action", "status", "duration", "tries", "result"):
        table.add_column(column)
    for s in record.steps:
        table.add_row(str(s.wave), s.id, s.action, s.status.value, fmt_seconds(s.duration_seconds),
                      str(s.attempts), (s.error.message if s.error else s.summary)[:80])
    console.print(table)
    for line in history_lines(record):  # sessions, halts and failed attempts a resume moved past
        console.print(f"  {line}", markup=False)
    for override in record.overrides:
        console.print(f"  override ({override.kind}): {override.detail}", markup=False)
    for answer in record.approvals:
        # The name given is a claim; the OS identity is what proves who answered.
        who = (f"OS user {answer.identity.user}@{answer.identity.host} (uid {answer.identity.uid})"
               if answer.identity else answer.note or "not authenticated")
        console.print(f"  approval ({answer.step}): {answer.decision} by {answer.approver or '-'} [{who}]"
                      + (f" via {answer.via}" if answer.via else "")
                      + (f": {answer.reason}" if answer.reason else ""), markup=False)
    render_result(record, state_dir, verdict=verdict)
    console.print(f"  audit head: {record.audit_head} ({record.audit_count} events)", markup=False)


def _audit_targets(target: str | None, state: StateDir) -> list[Path]:
    if target is None:  # every run, then every evacuation
        return [*(state.audit_file(r) for r in state.run_ids()),
                *(state.evacuation_dir(e) / AUDIT_FILE for e in state.evacuation_ids())]
    path = Path(target)
    if path.is_file():
        return [path]
    if path.is_dir():
        return [path / AUDIT_FILE]
    if state.names_evacuation(target):
        return [state.evacuation_dir(state.resolve_evacuation_id(target)) / AUDIT_FILE]
    return [state.audit_file(state.resolve_run_id(target))]


@handle_errors
def audit_verify_cmd(
    target: str = typer.Argument(None, help="Run or evacuation id, its directory or an audit.jsonl path "
                                            "(default: every run and evacuation)."),
    output: Output = typer.Option(Output.TEXT, "--output", "-o", help="text or json"),
    state_dir: StateDir = state_dir_option(),
) -> None:
    """Verify hash chains; exit 1 and say where when a log was modified, cut or reordered."""
    paths = _audit_targets(target, state_dir)
    results = [(p, verify(p)) for p in paths]
    if output is Output.JSON:
        print_json([{"path": str(p), "ok": r.ok, "count": r.count, "first_bad_line": r.first_bad_line,
                     "reason": r.reason, "head": r.head, "sealed": r.sealed} for p, r in results])
    else:
        for path, result in results:
            out().print(result.describe(path), markup=False)
        if not results:
            out().print("no audit logs found", markup=False)
    if any(not r.ok for _, r in results):
        raise typer.Exit(EXIT_FAILED)


def register(app: typer.Typer) -> None:
    """Attach these commands to the root app."""
    app.command("failover")(failover_cmd)
    app.command("resume")(resume_cmd)
    app.command("runs")(runs_cmd)
    app.command("show")(show_cmd)
    audit_app = typer.Typer(help="Audit log tools.", no_args_is_help=True)
    audit_app.command("verify")(audit_verify_cmd)
    app.add_typer(audit_app, name="audit")


__all__ = ["execute_and_render", "register", "render_result", "resume_and_render"]
