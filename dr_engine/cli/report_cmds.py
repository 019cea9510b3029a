"""``dr report``, ``dr evidence``, ``dr note``: compliance evidence from recorded runs.

Adapters only: the models, renderers and pack format live in :mod:`dr_engine.report`.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import typer

from dr_engine.cli.common import EXIT_FAILED, EXIT_USAGE, Output, err, handle_errors, out, print_json, state_dir_option
from dr_engine.config.runbooks import runbooks_dir
from dr_engine.evidence.statedir import StateDir
from dr_engine.report.formatting import FORMATS
from dr_engine.report.notes import add_note, close_note, list_notes
from dr_engine.report.period import build_period_report, parse_day_or_time


def _formats(values: list[str] | None) -> list[str]:
    chosen = [v.strip().lower() for item in (values or ["html"]) for v in item.split(",") if v.strip()]
    bad = [v for v in chosen if v not in FORMATS]
    if bad:
        raise typer.BadParameter(f"unknown format {', '.join(bad)}; choose from {', '.join(FORMATS)}",
                                 param_hint="--format")
    return chosen


def _time(text: str, option: str, *, end_of_day: bool = False) -> datetime:
    try:
        return parse_day_or_time(text, end_of_day=end_of_day)
    except ValueError as exc:
        raise typer.BadParameter(f"{text!r}: {exc}; write a date (2026-01-31) or an ISO time with offset",
                                 param_hint=option) from exc


@handle_errors
def report_cmd(
    run_id: str = typer.Argument(None, help="Run id (a unique prefix or 'latest'); omit with --since."),
    formats: list[str] = typer.Option(None, "--format", "-f", help="html, pdf, md or json (repeatable; default html)."),
    out_dir: Path = typer.Option(None, "--out", help="Output directory (default: the run's report/ folder)."),
    since: str = typer.Option(None, "--since", help="Period report: runs started on or after this date (UTC)."),
    until: str = typer.Option(None, "--until", help="Period report: runs started before the end of this date."),
    runbook: str = typer.Option(None, "--runbook", help="Period report: only this runbook."),
    state_dir: StateDir = state_dir_option(),
) -> None:
    """Render the report of one run, or with --since the period report over many runs."""
    # Imported here: the renderers pull in matplotlib, which would slow every `dr` command.
    from dr_engine.report.publish import REPORT_DIR, render_period_files, render_run_files, run_report, write_files

    chosen = _formats(formats)
    unverified: list[tuple[str, str]] = []  # (run id, why): reported after the files are written
    if run_id and since:
        raise typer.BadParameter("give either a RUN_ID or --since, not both", param_hint="RUN_ID")
    if since:
        start = _time(since, "--since")
        end = _time(until, "--until", end_of_day=True) if until else None
        period = build_period_report(state_dir, since=start, until=end, runbook=runbook,
                                     runbooks_dir=runbooks_dir())
        target = out_dir or state_dir.root / "reports" / f"period-{period.since[:10]}-{period.until[:10]}"
        written = write_files(target, render_period_files(period, chosen))
        flagged = f", {len(period.unverified_runs)} UNVERIFIED" if period.unverified_runs else ""
        out().print(f"period report {period.verdict}: {period.total_runs} run(s), success rate "
                    f"{'-' if period.success_rate is None else f'{period.success_rate * 100:.1f} %'}{flagged}",
                    markup=False)
        unverified = [(run.run_id, run.verification) for run in period.runs if not run.verified]
    elif run_id and state_dir.names_evacuation(run_id):
        from dr_engine.report.evacuation import RENDERERS, evacuation_report, write_evacuation_report

        evacuation = evacuation_report(state_dir, run_id)
        picked = [f for f in chosen if f in RENDERERS] or ["html"]
        folder = out_dir or state_dir.evacuation_dir(evacuation.evacuation_id) / REPORT_DIR
        written = write_evacuation_report(evacuation, folder, picked)
        if evacuation.verdict == "UNVERIFIED":
            unverified.append((evacuation.evacuation_id, "an application's evidence does not verify"))
    elif run_id:
        if until or runbook:
            raise typer.BadParameter("--until/--runbook apply to period reports (with --since)", param_hint="--since")
        state = state_dir
        run_dir = state.run_dir(state.resolve_run_id(run_id))
        report = run_report(run_dir)
        written = write_files(out_dir or run_dir / REPORT_DIR, render_run_files(report, chosen))
        if not report.verified:
            unverified.append((report.identification.run_id, report.verification))
    else:
        err().print("error: give a RUN_ID, or --since DATE for a period report", markup=False)
        raise typer.Exit(EXIT_USAGE)
    for path in written:
        out().print(str(path), markup=False)
    if unverified:
        # The files are written (they say UNVERIFIED), but a report of unverified records is not
        # evidence of anything: fail so that no script files it as a passed test.
        for unverified_id, why in unverified:
            err().print(f"run {unverified_id}: UNVERIFIED: {why}", markup=False)
        err().print("  hint: the report reads UNVERIFIED; keep run.json and audit.jsonl as evidence and check them "
                    "with `dr audit verify RUN_ID`", markup=False)
        raise typer.Exit(EXIT_FAILED)


@handle_errors
def evidence_cmd(
    args: list[str] = typer.Argument(..., metavar="RUN_ID | verify FILE.zip",
                                     help="'RUN_ID -o FILE.zip' builds a pack; 'verify FILE.zip' checks one."),
    output_file: Path = typer.Option(None, "--output-file", "-o", help="Where to write the pack (.zip)."),
    output: Output = typer.Option(Output.TEXT, "--output", help="text or json (for verify)."),
    state_dir: StateDir = state_dir_option(),
) -> None:
    """Build a verifiable evidence pack of a run, or verify one (exit 1 when anything is wrong)."""
    if args[0] == "verify":
        if len(args) != 2:
            raise typer.BadParameter("usage: dr evidence verify FILE.zip", param_hint="FILE")
        _verify(Path(args[1]), output)
        return
    if len(args) != 1:
        raise typer.BadParameter("usage: dr evidence RUN_ID -o FILE.zip", param_hint="RUN_ID")
    state = state_dir
    run_id = state.resolve_run_id(args[0])
    target = output_file or Path(f"evidence-{run_id}.zip")
    from dr_engine.report.evidence import build_evidence  # lazy: pulls in the renderers

    result = build_evidence(state.run_dir(run_id), target)
    console = out()
    console.print(f"evidence pack {result.path} ({len(result.manifest['files'])} files, audit chain "
                  f"{'intact' if result.manifest['audit_chain']['ok'] else 'BROKEN'}"
                  f"{'' if result.manifest['verified'] else '; the run is UNVERIFIED'})", markup=False)
    for warning in result.warnings:
        err().print(f"warning: {warning}", markup=False)


def _verify(path: Path, output: Output) -> None:
    from dr_engine.report.evidence import verify_evidence  # lazy: pulls in the renderers

    outcome = verify_evidence(path)
    if output is Output.JSON:
        print_json({"ok": outcome.ok, "file": str(path), "run_id": outcome.run_id, "checked": outcome.checked,
                    "problems": outcome.problems, "warnings": outcome.warnings})
    else:
        if outcome.ok:
            out().print(f"{path}: OK, {outcome.checked} files match the manifest, audit chain intact, reports "
                        f"match a rebuild from the packed logs (run {outcome.run_id})", markup=False)
        else:
            err().print(f"{path}: VERIFICATION FAILED", markup=False)
            for problem in outcome.problems:
                err().print(f"  - {problem}", markup=False)
        for warning in outcome.warnings:
            err().print(f"warning: {warning}", markup=False)
    if not outcome.ok:
        raise typer.Exit(EXIT_FAILED)


@handle_errors
def note_cmd(
    run_id: str = typer.Argument(..., help="Run id (a unique prefix or 'latest')."),
    action: str = typer.Option(None, "--action", help="What must be done."),
    owner: str = typer.Option(None, "--owner", help="Who is accountable."),
    due: str = typer.Option(None, "--due", help="Due date (YYYY-MM-DD, UTC)."),
    close: str = typer.Option(None, "--close", help="Close the note with this id (e.g. N-1a2b3c)."),
    resolution: str = typer.Option("", "--resolution", help="With --close: how it was resolved."),
    output: Output = typer.Option(Output.TEXT, "--output", help="text or json"),
    state_dir: StateDir = state_dir_option(),
) -> None:
    """Record a remediation item (audited) for a run, close one, or list them (no options)."""
    state = state_dir
    run_dir = state.run_dir(state.resolve_run_id(run_id))
    if close:
        if action or owner or due:
            raise typer.BadParameter("--close cannot be combined with --action/--owner/--due", param_hint="--close")
        items = [close_note(run_dir, close, resolution=resolution)]
    elif action or owner or due:
        if not (action and owner and due):
            raise typer.BadParameter("a note needs --action, --owner and --due together", param_hint="--action")
        try:
            due_date = date.fromisoformat(due)
        except ValueError as exc:
            raise typer.BadParameter(f"{due!r} is not a date; write YYYY-MM-DD", param_hint="--due") from exc
        items = [add_note(run_dir, action=action, owner=owner, due=due_date)]
    else:
        items = list_notes(run_dir)
    if output is Output.JSON:
        print_json([item.model_dump(mode="json") for item in items])
        return
    console = out()
    if not items:
        console.print("no remediation notes", markup=False)
    for item in items:
        state_text = item.status if item.status == "open" else f"closed {item.closed_at} by {item.closed_by}"
        console.print(f"{item.note_id}  {state_text:<10}  due {item.due}  owner {item.owner}  {item.action}",
                      markup=False)


def register(app: typer.Typer) -> None:
    """Attach these commands to the root app."""
    app.command("report")(report_cmd)
    app.command("evidence")(evidence_cmd)
    app.command("note")(note_cmd)


__all__ = ["register"]
