"""``dr evacuate``, ``dr evacuations``, and the evacuation side of ``dr plan``/``resume``/``report``.

An evacuation plan (``kind: evacuation``) moves every application of a region; see
:mod:`dr_engine.engine.evacuation`. ``dr plan PLAN`` shows the composed waves, the critical
path and the predicted RTO; ``dr evacuate PLAN`` asks for the plan's name and runs it as one
Prefect flow run with a child flow run per application.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from dr_engine.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
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
from dr_engine.clock import parse_utc
from dr_engine.config.evacuation import load_evacuation
from dr_engine.config.runbooks import resolve_runbook
from dr_engine.engine.evacuation import EvacuationOptions
from dr_engine.engine.interrupts import Interrupts
from dr_engine.errors import DrError
from dr_engine.evidence.evacuation_record import AppStatus, EvacuationRecord, load_evacuation_record
from dr_engine.evidence.statedir import StateDir
from dr_engine.flows.settings import configure, server_mode
from dr_engine.model import RunMode
from dr_engine.planning.evacuation import EvacuationPlan, build_evacuation_plan
from dr_engine.planning.prediction import history_by_runbook
from dr_engine.report.formatting import fmt_seconds

REPORT_FORMATS = ["md", "json", "html"]


def load_plan(reference: str | Path, state: StateDir | None = None) -> EvacuationPlan:
    """Load, check and compose an evacuation plan (history from ``state`` weighs the critical path)."""
    path = Path(reference) if isinstance(reference, Path) else resolve_runbook(reference)
    return build_evacuation_plan(load_evacuation(path), history_by_runbook(state) if state else None)


def render_evacuation_plan(plan: EvacuationPlan, state: StateDir) -> dict[str, Any]:
    """Print the composed plan for people; return its JSON form (with the prediction)."""
    predicted = plan.predicted(history_by_runbook(state))
    loaded = plan.loaded
    console = out()
    console.print(f"Evacuation {plan.name} ({loaded.file}, sha256 {loaded.sha256[:12]})", markup=False)
    console.print(f"  {loaded.plan.source} -> {loaded.plan.target}   {len(plan.applications)} applications in "
                  f"{len(plan.waves)} waves   objective: RTO {fmt_seconds(predicted['objective_seconds'])}",
                  markup=False)
    table = Table(box=None, pad_edge=False)
    for column in ("wave", "application", "runbook", "tier", "waits for", "steps", "RTO objective",
                   "predicted p50/p95"):
        table.add_column(column, overflow="fold")
    for number, wave in enumerate(plan.waves, 1):
        for name in wave:
            app = loaded.plan.application(name)
            runbook = plan.plans[name].loaded.runbook
            waits = ", ".join(f"{e.waits_for}{'' if e.policy.value == 'halt' else ' (continue)'}"
                              for e in plan.waits_for(name)) or "-"
            p = predicted["applications"][name]
            table.add_row(str(number), name, runbook.runbook, str(app.tier), waits, str(len(plan.plans[name].steps)),
                          fmt_seconds(runbook.objectives.rto.total_seconds()),
                          f"{fmt_seconds(p['p50_seconds'])} / {fmt_seconds(p['p95_seconds'])}")
    console.print(table)
    console.print(f"  critical path ({plan.critical_basis}): {' -> '.join(plan.critical_path)} = "
                  f"{fmt_seconds(plan.critical_seconds)}", markup=False)
    if predicted["p50_seconds"] is None:
        console.print("  predicted RTO: unknown (an application has no successful drill or failover in this "
                      "state dir; run `dr drill` of each)", markup=False)
    else:
        flag = "  EXCEEDS the objective" if predicted["exceeds_objective"] else ""
        console.print(f"  predicted RTO: p50 {fmt_seconds(predicted['p50_seconds'])}, p95 "
                      f"{fmt_seconds(predicted['p95_seconds'])}{flag}", markup=False)
    return {**plan.to_dict(), "predicted": predicted}


def _confirm(plan: EvacuationPlan, mode: RunMode, yes: bool) -> None:
    console = err()
    loaded = plan.loaded.plan
    verb = "EVACUATE" if mode is RunMode.FAILOVER else mode.value.upper()
    console.print(f"About to {verb} {loaded.source} to {loaded.target} with plan '{plan.name}': "
                  f"{len(plan.applications)} applications in {len(plan.waves)} waves, RTO objective "
                  f"{fmt_seconds(loaded.objectives.rto.total_seconds())}.", markup=False)
    console.print(f"Prefect: {'server at PREFECT_API_URL' if server_mode() else 'embedded (local)'}", markup=False)
    confirm_by_name(plan.name, "plan", yes, refusing="refusing to evacuate without confirmation")


class _Progress:
    """Prints one line per application change (started, finished, skipped)."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[str, str | None]] = {}

    def __call__(self, record: EvacuationRecord) -> None:
        for app in record.applications:
            key = (app.status.value, app.run_id)
            if self._seen.get(app.name) == key:
                continue
            self._seen[app.name] = key
            if app.status is AppStatus.RUNNING:
                line = f"started   {app.name} (wave {app.wave}, run {app.run_id})"
            elif app.status is AppStatus.SKIPPED:
                line = f"skipped   {app.name}: waits for '{app.skipped_because}', which did not succeed"
            elif app.status.done:
                line = (f"{app.status.value:<9} {app.name}: RTO {fmt_seconds(app.rto_seconds)} "
                        f"(objective {fmt_seconds(app.rto_target_seconds)}), RPO {fmt_seconds(app.rpo_seconds)}")
            else:
                continue
            err().print(line, markup=False)


def render_evacuation(record: EvacuationRecord, state: StateDir) -> None:
    """The summary after an evacuation ends, and where its evidence is."""
    console = out()
    console.print(f"Evacuation {record.evacuation_id}: {record.status.upper()}", markup=False)
    for app in record.applications:
        extra = f", skipped: '{app.skipped_because}' did not succeed" if app.skipped_because else ""
        console.print(f"  {app.name:<20} {app.status.value:<10} run {app.run_id or '-'}  RTO "
                      f"{fmt_seconds(app.rto_seconds)}{extra}", markup=False)
    met = {True: "met", False: "MISSED", None: "not measured"}[record.rto_met]
    console.print(f"  RTO: {fmt_seconds(record.rto_seconds)} vs objective {fmt_seconds(record.rto_target_seconds)}"
                  f" -> {met}", markup=False)
    if record.status != "succeeded":
        console.print(f"  resume with: dr resume {record.evacuation_id}", markup=False)
    directory = state.evacuation_dir(record.evacuation_id)
    console.print(f"  evacuation log: {directory / 'audit.jsonl'}", markup=False)
    try:
        from dr_engine.report.evacuation import evacuation_report, write_evacuation_report

        written = write_evacuation_report(evacuation_report(state, record.evacuation_id), directory / "report",
                                          REPORT_FORMATS)
        console.print(f"  report: {written[0].parent}", markup=False)
    except DrError as exc:  # the evidence is on disk; `dr report ID` rebuilds the report
        console.print(f"  report not written: {exc.message} (rebuild it with `dr report {record.evacuation_id}`)",
                      markup=False)


def _exit_code(record: EvacuationRecord, interrupts: Interrupts) -> int:
    if record.status == "cancelled" and interrupts.exit_code is not None:
        return interrupts.exit_code
    return EXIT_OK if record.status == "succeeded" else EXIT_FAILED


def run_evacuation(plan: EvacuationPlan, options: EvacuationOptions, *, resume_id: str | None = None,
                   force: bool = False, grace_cap: float | None = None, work_pool: str | None = None) -> int:
    """Run (or resume) an evacuation through Prefect with progress lines; return the exit code."""
    interrupts = handle_stop_signals(grace_cap)
    options.interrupts = interrupts
    options.on_change = _Progress()
    try:
        configure(options.state, quiet_console=True)
        from dr_engine.flows.evacuation import launch_evacuation

        record = launch_evacuation(plan, options, resume_id=resume_id, force=force, work_pool=work_pool)
    except KeyboardInterrupt:
        err().print("interrupted before the evacuation started: nothing was changed", markup=False)
        return interrupts.exit_code or 130
    render_evacuation(record, options.state)
    return _exit_code(record, interrupts)


@handle_errors
def evacuate_cmd(
    plan: str = typer.Argument(..., help="Evacuation plan name (runbooks/NAME.yaml) or path."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    drill: bool = typer.Option(False, "--drill", help="A non-disruptive drill of every application."),
    reason: str = typer.Option("", "--reason", help="Why (recorded in every record and audit log)."),
    incident_start: str = typer.Option(None, "--incident-start",
                                       help="When the outage began (ISO 8601 UTC); RTO is measured from it."),
    concurrency: int = typer.Option(None, "--concurrency", min=1, max=200,
                                    help="Applications at the same time (default: the plan's)."),
    work_pool: str = typer.Option(None, "--work-pool",
                                  help="Run each application on this Prefect work pool's workers (needs "
                                       "PREFECT_API_URL; the workers share the runbooks and state dir paths)."),
    grace: float = grace_option(),
    state_dir: StateDir = state_dir_option(),
) -> None:
    """Evacuate a region: every application of the plan, in dependency order (asks for the plan name)."""
    incident: datetime | None = None
    if incident_start:
        try:
            incident = parse_utc(incident_start)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--incident-start") from exc
    composed = load_plan(plan, state_dir)
    mode = RunMode.DRILL if drill else RunMode.FAILOVER
    _confirm(composed, mode, yes)
    options = EvacuationOptions(mode=mode, state_dir=state_dir, incident_start=incident, reason=reason,
                                concurrency=concurrency, work_pool=work_pool)
    exit_run(run_evacuation(composed, options, grace_cap=grace, work_pool=work_pool))


def resume_evacuation_cmd(state: StateDir, evacuation_id: str, *, force: bool, reason: str,
                          grace_cap: float | None) -> int:
    """``dr resume`` of an evacuation id: continue what did not succeed."""
    evacuation_id = state.resolve_evacuation_id(evacuation_id)
    record = load_evacuation_record(state.evacuation_dir(evacuation_id))
    path = Path(record.plan_path or record.plan_file)
    composed = load_plan(path, state)
    options = EvacuationOptions(mode=RunMode(record.mode), state_dir=state, reason=reason, work_pool=record.work_pool)
    return run_evacuation(composed, options, resume_id=evacuation_id, force=force, grace_cap=grace_cap,
                          work_pool=record.work_pool)


@handle_errors
def evacuations_cmd(
    output: Output = typer.Option(Output.TEXT, "--output", "-o", help="text or json"),
    state_dir: StateDir = state_dir_option(),
) -> None:
    """List the evacuations recorded in the state dir, oldest first."""
    rows: list[dict[str, Any]] = []
    for evacuation_id in state_dir.evacuation_ids():
        try:
            record = load_evacuation_record(state_dir.evacuation_dir(evacuation_id))
        except DrError as exc:
            rows.append({"evacuation_id": evacuation_id, "status": "UNVERIFIED", "why": exc.message})
            continue
        done = sum(1 for a in record.applications if a.status is AppStatus.SUCCEEDED)
        rows.append({"evacuation_id": evacuation_id, "plan": record.plan, "mode": record.mode,
                     "status": record.status, "recovered": f"{done}/{len(record.applications)}",
                     "rto_seconds": record.rto_seconds, "rto_met": record.rto_met})
    if output is Output.JSON:
        print_json(rows)
        return
    if not rows:
        out().print(f"no evacuations in {state_dir.evacuations_dir}", markup=False)
        return
    for row in rows:
        out().print(f"{row['evacuation_id']}  {row.get('plan', '-'):<24} {row.get('mode', '-'):<9} "
                    f"{row['status']:<10} {row.get('recovered', '-'):>7}  RTO {fmt_seconds(row.get('rto_seconds'))}",
                    markup=False)


def register(app: typer.Typer) -> None:
    """Attach these commands to the root app."""
    app.command("evacuate")(evacuate_cmd)
    app.command("evacuations")(evacuations_cmd)


__all__ = ["evacuate_cmd", "evacuations_cmd", "load_plan", "register", "render_evacuation_plan",
           "resume_evacuation_cmd", "run_evacuation"]
