"""``dr drill``, ``dr failback``, ``dr approve``, ``dr skip``, ``dr cancel``, ``dr drill-cleanup``."""

from __future__ import annotations

import os
from typing import Any

import typer

from dr_engine.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    confirm_by_name,
    err,
    exit_run,
    grace_option,
    handle_errors,
    out,
    state_dir_option,
)
from dr_engine.config.evacuation import is_evacuation_file
from dr_engine.config.loader import load_runbook
from dr_engine.config.runbooks import resolve_runbook
from dr_engine.engine.run import RunOptions
from dr_engine.errors import RunStateError
from dr_engine.evidence.approval_record import APPROVAL_GRANTED, APPROVAL_REFUSED, APPROVAL_REJECTED
from dr_engine.evidence.audit import read_events
from dr_engine.evidence.record import RunRecord
from dr_engine.evidence.statedir import StateDir
from dr_engine.model import RunMode
from dr_engine.planning.plan import ExecutionPlan, build_plan


def render_drill(record: RunRecord) -> None:
    """Print what the drill created and what its cleanup removed."""
    drill: dict[str, Any] = (record.model_extra or {}).get("drill") or {}
    console = out()
    cleaned = {c["id"]: c for c in drill.get("cleaned", []) if c.get("ok")}
    failed = [c for c in drill.get("cleaned", []) if not c.get("ok") and c["id"] not in cleaned]
    console.print(f"  drill copies: {len(drill.get('resources', []))} created, {len(cleaned)} removed"
                  + (f", {len(failed)} NOT removed" if failed else ""), markup=False)
    for entry in cleaned.values():
        console.print(f"    removed {entry['id']}: {entry['detail']}", markup=False)
    for entry in failed:
        console.print(f"    NOT removed {entry['id']}: {entry['detail']}", markup=False)
    if failed:
        console.print(f"  retry with: dr drill-cleanup {record.run_id}", markup=False)


def _run(plan: ExecutionPlan, options: RunOptions) -> tuple[int, RunRecord | None]:
    from dr_engine.cli.run_cmds import execute_and_render

    # Stop signals: handled by execute_and_render (dr_engine.engine.interrupts), as for `dr failover`.
    code = execute_and_render(plan, options)
    record = options.state.load(options.run_id) if options.run_id and \
        options.state.exists(options.run_id) else None
    return code, record


def _confirm(what: str, plan: ExecutionPlan, yes: bool) -> None:
    rb = plan.loaded.runbook
    err().print(f"About to {what} '{rb.runbook}' from {rb.source} to {rb.target} ({len(plan.steps)} steps).",
                markup=False)
    confirm_by_name(rb.runbook, "runbook", yes)


@handle_errors
def drill_cmd(
    runbook: str = typer.Argument(..., help="Runbook name (runbooks/NAME.yaml) or path."),
    reason: str = typer.Option("scheduled DR drill", "--reason", help="Why (recorded)."),
    concurrency: int = typer.Option(4, "--concurrency", min=1, max=64, help="Steps run at the same time."),
    grace: float = grace_option(),
    state_dir: StateDir = state_dir_option(),
) -> None:
    """Test-fail over to drill copies (production untouched); drill copies are always removed.

    Given an evacuation plan, drills every application of it in dependency order.
    """
    path = resolve_runbook(runbook)
    if is_evacuation_file(path):
        from dr_engine.cli.evacuate_cmds import load_plan, run_evacuation
        from dr_engine.engine.evacuation import EvacuationOptions

        evacuation = EvacuationOptions(mode=RunMode.DRILL, state_dir=state_dir, reason=reason)
        exit_run(run_evacuation(load_plan(path, state_dir), evacuation, grace_cap=grace))
    plan = build_plan(load_runbook(path))
    options = RunOptions(mode=RunMode.DRILL, state_dir=state_dir, reason=reason, concurrency=concurrency,
                         grace_cap=grace)
    code, record = _run(plan, options)
    if record is not None:
        render_drill(record)
    exit_run(code)


@handle_errors
def failback_cmd(
    runbook: str = typer.Argument(..., help="Failback runbook name or path (source = the region to leave)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    reason: str = typer.Option("planned failback", "--reason", help="Why (recorded)."),
    concurrency: int = typer.Option(4, "--concurrency", min=1, max=64, help="Steps run at the same time."),
    grace: float = grace_option(),
    state_dir: StateDir = state_dir_option(),
) -> None:
    """Return to the original region: rejoin it as a standby, then switch over with zero data loss."""
    plan = build_plan(load_runbook(resolve_runbook(runbook)))
    _confirm("FAIL BACK", plan, yes)
    options = RunOptions(mode=RunMode.FAILBACK, state_dir=state_dir, reason=reason, concurrency=concurrency,
                         grace_cap=grace)
    code, _ = _run(plan, options)
    exit_run(code)


#: How long `dr approve` waits for the run to record what it made of the answer.
VERDICT_SECONDS = 30.0


@handle_errors
def approve_cmd(
    run_id: str = typer.Argument(..., help="Run id (a unique prefix or 'latest')."),
    as_: str = typer.Option(..., "--as", help="Your name, recorded beside your OS user (which is what counts)."),
    reject: bool = typer.Option(False, "--reject", help="Reject instead of approving."),
    comment: str = typer.Option("", "--comment", help="Why (recorded)."),
    state_dir: StateDir = state_dir_option(),
) -> None:
    """Answer a run waiting in a control.approve step (or for an --allow-data-loss approval).

    The run records the name given with --as and the OS user that ran this command. An
    --allow-data-loss approval must come from a different OS user than the run's initiator.
    """
    from dr_engine.engine.approval import pending_approval, wait_for_verdict, write_approval_token
    from dr_engine.evidence.identity import OsIdentity, TwoPersonRule
    from dr_engine.flows.settings import configure, server_mode

    pending = pending_approval(state_dir, run_id)
    allowed = pending.get("approvers") or []
    if allowed and as_ not in allowed and not reject:
        err().print(f"error: {as_!r} may not approve step {pending.get('step')}: allowed are {', '.join(allowed)}",
                    markup=False)
        raise typer.Exit(EXIT_USAGE)
    me = OsIdentity.current()
    rule = TwoPersonRule.from_dict(pending.get("two_person"))
    problem = rule.refusal(me) if rule is not None and not reject else None
    if problem is not None:  # refused here, before anything is sent: the run keeps waiting
        raise RunStateError(problem[0].replace("this run", f"run {pending['run_id']}"),
                            hint=problem[1].replace("RUN_ID", str(pending["run_id"])))
    state = state_dir
    token = ""
    if pending.get("request_id"):
        token = write_approval_token(state.run_dir(str(pending["run_id"])), run_id=str(pending["run_id"]),
                                     request_id=str(pending["request_id"]), step=str(pending.get("step") or ""),
                                     approver=as_, approve=not reject, comment=comment).name
    seq = len(read_events(state.audit_file(str(pending["run_id"]))))
    if not server_mode() and pending.get("api_url"):
        # Answer on the server the waiting run talks to (its embedded server, in embedded mode).
        os.environ["PREFECT_API_URL"] = str(pending["api_url"])
    configure(state_dir, quiet_console=True)
    from dr_engine.flows.approval import answer

    answer(str(pending["flow_run_id"]), approver=as_, approve=not reject, comment=comment, token=token)
    what = f"step {pending.get('step')} of run {pending['run_id']} as {as_} (OS user {me})"
    verdict = wait_for_verdict(state.audit_file(str(pending["run_id"])), token, after_seq=seq,
                               timeout=VERDICT_SECONDS) if token else None
    if verdict is not None and verdict["type"] == APPROVAL_REFUSED:
        data = verdict.get("data") or {}
        err().print(f"error: the run did not accept your answer: {data.get('reason')}\n  hint: {data.get('hint')}",
                    markup=False)
        raise typer.Exit(EXIT_FAILED)
    if verdict is not None and verdict["type"] not in (APPROVAL_GRANTED, APPROVAL_REJECTED):
        err().print(f"error: run {pending['run_id']} ended before it recorded your answer; see `dr show "
                    f"{pending['run_id']}`", markup=False)
        raise typer.Exit(EXIT_FAILED)
    if verdict is None and token:
        out().print(f"answered {what}; the run has not recorded it yet: see `dr show {pending['run_id']}`",
                    markup=False)
        return
    out().print(f"{'rejected' if reject else 'approved'} {what}", markup=False)


@handle_errors
def skip_cmd(
    run_id: str = typer.Argument(..., help="Run id (a unique prefix or 'latest')."),
    step: str = typer.Argument(..., help="Step id to skip."),
    reason: str = typer.Option(..., "--reason", help="Why (recorded; shown as a deviation in reports)."),
    force: bool = typer.Option(False, "--force", help="Allow skipping a safety-critical step (audited override)."),
    by: str = typer.Option(None, "--as", help="Who skips (default: user@host)."),
    state_dir: StateDir = state_dir_option(),
) -> None:
    """Mark a step of a halted run as skipped; `dr resume` then continues after it."""
    from dr_engine.engine.controls import skip_step

    record = skip_step(state_dir, run_id, step, reason=reason, by=by, force=force)
    out().print(f"step {step} of run {record.run_id} marked skipped; continue with: dr resume {record.run_id}",
                markup=False)


@handle_errors
def cancel_cmd(
    run_id: str = typer.Argument(..., help="Run id (a unique prefix or 'latest')."),
    reason: str = typer.Option("", "--reason", help="Why (recorded)."),
    by: str = typer.Option(None, "--as", help="Who cancels (default: user@host)."),
    state_dir: StateDir = state_dir_option(),
) -> None:
    """Cancel a run: a running one stops before its next step; a halted one is marked cancelled."""
    from dr_engine.engine.controls import request_cancel

    outcome, record = request_cancel(state_dir, run_id, by=by, reason=reason)
    if outcome == "requested":
        out().print(f"cancel requested: run {record.run_id} stops before its next step", markup=False)
    else:
        out().print(f"run {record.run_id} is cancelled", markup=False)


@handle_errors
def drill_cleanup_cmd(
    run_id: str = typer.Argument(..., help="Run id of a drill whose copies were not all removed."),
    state_dir: StateDir = state_dir_option(),
) -> None:
    """Remove the drill copies a drill could not remove (e.g. after its process was killed)."""
    from dr_engine.engine.drill_cleanup import cleanup_run

    results = cleanup_run(state_dir, run_id)
    for item in results:
        out().print(f"{'removed' if item['ok'] else 'NOT removed'} {item['id']}: {item['detail']}", markup=False)
    if not results:
        out().print("nothing left to clean up", markup=False)
    raise typer.Exit(EXIT_OK if all(r["ok"] for r in results) else EXIT_FAILED)


def register(app: typer.Typer) -> None:
    """Attach these commands to the root app."""
    app.command("drill")(drill_cmd)
    app.command("failback")(failback_cmd)
    app.command("approve")(approve_cmd)
    app.command("skip")(skip_cmd)
    app.command("cancel")(cancel_cmd)
    app.command("drill-cleanup")(drill_cleanup_cmd)


__all__ = ["register", "render_drill"]
