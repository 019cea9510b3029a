"""``dr validate``, ``dr plan``, ``dr actions``, ``dr schema``: commands that change nothing."""

from __future__ import annotations

import inspect
import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import typer
from rich.table import Table
from rich.text import Text

from dr_engine.actions.registry import all_actions, close_matches
from dr_engine.cli.common import EXIT_USAGE, Output, handle_errors, out, print_json, state_dir_option
from dr_engine.config.evacuation import is_evacuation_file
from dr_engine.config.loader import display_path, load_region, load_runbook
from dr_engine.config.runbooks import resolve_runbook
from dr_engine.errors import ConfigError, DrError, PlanError, Problem
from dr_engine.evidence.statedir import StateDir
from dr_engine.model import Region, Runbook, format_duration
from dr_engine.model.evacuation import Evacuation
from dr_engine.model.schema import json_schema
from dr_engine.planning.capacity import CapacityReport, check_capacity, demands
from dr_engine.planning.plan import ExecutionPlan, build_plan
from dr_engine.planning.prediction import RunbookHistory, history_by_runbook
from dr_engine.report.formatting import fmt_seconds as format_seconds


def _targets(paths: list[Path]) -> list[Path]:
    """The files to validate; a directory holding none stays in the list, to be reported by its path."""
    if not paths:
        paths = [Path("regions"), Path("runbooks")]
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            # A folder named like a YAML file is walked into, not validated as one.
            found = sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
            files.extend(found or [path])
        else:
            files.append(path)
    return files


def _is_region(path: Path) -> bool:
    return path.resolve().parent.name == "regions"


def validate_file(path: Path) -> dict[str, Any]:
    """Validate one region or runbook file (runbooks are also planned)."""
    if path.is_dir():  # a folder given on the command line that holds no YAML file
        raise ConfigError(Problem(display_path(path), None, "", "is a directory with no YAML files (*.yaml, *.yml)",
                                  "give runbook or region files, or a folder that holds some"))
    if _is_region(path):
        region = load_region(path)
        return {"file": display_path(path), "kind": "region", "name": region.name}
    if is_evacuation_file(path):
        from dr_engine.cli.evacuate_cmds import load_plan

        composed = load_plan(path)
        return {"file": display_path(path), "kind": "evacuation", "name": composed.name,
                "applications": len(composed.applications), "waves": len(composed.waves)}
    plan = build_plan(load_runbook(path))
    return {"file": display_path(path), "kind": "runbook", "name": plan.loaded.runbook.runbook,
            "steps": len(plan.steps), "waves": len(plan.waves)}


def _problems(exc: DrError, path: Path) -> list[Problem]:
    """The located problems of an error; a bare message is attributed to the file."""
    if isinstance(exc, ConfigError | PlanError):
        return [p if p.file else replace(p, file=display_path(path)) for p in exc.problems]
    return [Problem(display_path(path), None, "", exc.message, exc.hint)]


def _summary(item: dict[str, Any]) -> str:
    if item["kind"] == "runbook":
        return f"{item['steps']} steps, {item['waves']} waves"
    if item["kind"] == "evacuation":
        return f"{item['applications']} applications, {item['waves']} waves"
    return ""


def validate_cmd(
    paths: list[Path] = typer.Argument(None, help="Files or folders (default: regions/ and runbooks/)."),
    output: Output = typer.Option(Output.TEXT, "--output", "-o", help="text or json"),
) -> None:
    """Validate runbooks and regions (runbooks are also planned). Exit 2 if any is invalid."""
    results: list[dict[str, Any]] = []
    failed = False
    files = _targets(paths or [])
    if not files:
        raise typer.BadParameter("no YAML files found", param_hint="PATHS")
    for path in files:
        try:
            results.append({"ok": True, **validate_file(path)})
        except DrError as exc:
            failed = True
            results.append({"ok": False, "file": display_path(path),
                            "errors": [asdict(p) for p in _problems(exc, path)]})
    if output is Output.JSON:
        print_json({"ok": not failed, "files": results})
    else:
        console = out()
        for item in results:
            if item["ok"]:
                extra = _summary(item)
                detail = f"{item['kind']} {item['name']}{', ' + extra if extra else ''}"
                console.print(f"ok       {item['file']}  ({detail})", markup=False)
            else:
                console.print(f"INVALID  {item['file']}", markup=False)
                for e in item["errors"]:
                    console.print("  " + Problem(e["file"], e["line"], e["path"], e["message"], e["hint"])
                                  .render().replace("\n", "\n  "), markup=False)
        bad = sum(1 for r in results if not r["ok"])
        console.print(f"{len(results) - bad} valid, {bad} invalid", markup=False)
    if failed:
        raise typer.Exit(EXIT_USAGE)


def render_plan(plan: ExecutionPlan, notes: tuple[str, ...] = ()) -> None:
    """Print a plan for people (``notes``: lines before the closing one, e.g. the predicted RTO)."""
    console = out()
    rb = plan.loaded.runbook
    console.print(f"Runbook {rb.runbook} ({plan.loaded.file}, sha256 {plan.loaded.sha256[:12]})", markup=False)
    console.print(f"  {rb.source} -> {rb.target}   objectives: RTO {format_duration(rb.objectives.rto)}, "
                  f"RPO {format_duration(rb.objectives.rpo)}   RTO stop: {plan.rto_stop}", markup=False)
    table = Table(show_lines=False, box=None, pad_edge=False)
    # Ids, actions and capabilities are never shortened (an ellipsis hides which step it is);
    # only the free-text columns wrap.
    for column in ("wave", "step", "action", "capability", "timeout"):
        table.add_column(column, no_wrap=True, overflow="ignore")
    table.add_column("after", overflow="fold", min_width=8)
    table.add_column("what", overflow="fold", min_width=12)
    for wave in plan.waves:
        for s in wave:
            cells = (str(s.wave), s.id, s.action, s.capability.value, format_duration(s.timeout),
                     ", ".join(s.step.after) or "-", s.summary)
            table.add_row(*(Text(cell) for cell in cells))  # Text: a '[x]' in params is not markup
    console.print(table)
    console.print("Safety invariants:", markup=False)
    for check in plan.checks:
        mark = "ok  " if check.ok else "FAIL"
        console.print(f"  [{mark}] {check.name}{' - ' + check.detail if check.detail else ''}", markup=False)
    for override in plan.overrides:
        console.print(f"  override: {override}", markup=False)
    for note in notes:
        console.print(note, markup=False)
    console.print("Nothing was changed.", markup=False)


@handle_errors
def plan_cmd(
    runbook: str = typer.Argument(..., help="Runbook name (runbooks/NAME.yaml) or path."),
    output: Output = typer.Option(Output.TEXT, "--output", "-o", help="text or json"),
    preflight: bool | None = typer.Option(None, "--preflight/--no-preflight",
                                   help="Run read-only pre-flight checks (default: when any step has them)."),
    state_dir: StateDir = state_dir_option(),
) -> None:
    """Print the ordered plan (waves, invariants, predicted RTO from past runs); an evacuation plan too.

    Changes nothing. The state dir is read for the history the prediction comes from.
    """
    from dr_engine.cli.preflight_view import as_json, preflight_for, render_preflight

    path = resolve_runbook(runbook)
    if is_evacuation_file(path):
        _plan_evacuation(path, output, preflight, state_dir)
        return
    plan = build_plan(load_runbook(path))
    history = history_by_runbook(state_dir).get(plan.loaded.runbook.runbook)
    checks = preflight_for(plan, preflight)
    if output is Output.JSON:
        print_json({**plan.to_dict(), **as_json(checks), "predicted_rto": _prediction_json(plan, history)})
    else:
        render_plan(plan, (_prediction_line(plan, history),))
        if checks is not None:
            render_preflight(checks)
    if checks and any(not c.ok for step in checks.values() for c in step):
        raise typer.Exit(1)  # the plan is printed; failed pre-flight checks fail the command


def _prediction_json(plan: ExecutionPlan, history: RunbookHistory | None) -> dict[str, Any]:
    objective = plan.loaded.runbook.objectives.rto.total_seconds()
    if history is None:
        return {"samples": 0, "p50_seconds": None, "p95_seconds": None, "objective_seconds": objective,
                "exceeds_objective": None}
    return {**history.rto.to_dict(), "objective_seconds": objective, "exceeds_objective": history.exceeds(objective)}


def _prediction_line(plan: ExecutionPlan, history: RunbookHistory | None) -> str:
    objective = plan.loaded.runbook.objectives.rto.total_seconds()
    if history is None or not history.rto.known:
        return "Predicted RTO: unknown (no successful drill or failover of this runbook in the state dir)"
    flag = "  EXCEEDS the objective" if history.exceeds(objective) else ""
    return (f"Predicted RTO: p50 {format_seconds(history.rto.p50)}, p95 {format_seconds(history.rto.p95)} "
            f"from {history.rto.samples} past run(s){flag}")


def _plan_evacuation(path: Path, output: Output, preflight: bool | None, state: StateDir) -> None:
    from dr_engine.cli.evacuate_cmds import load_plan, render_evacuation_plan
    from dr_engine.cli.preflight_view import as_json, preflight_for, render_preflight

    composed = load_plan(path, state)
    checks = {name: preflight_for(plan, preflight) for name, plan in composed.plans.items()}
    # The target's capacity is read like the pre-flight checks: live, read-only, skipped by --no-preflight.
    capacity = check_capacity(composed) if preflight is not False and demands(composed)[0] else None
    if output is Output.JSON:
        described = {**composed.to_dict(), "predicted": composed.predicted(history_by_runbook(state))}
        described["preflight"] = {name: as_json(c) for name, c in checks.items()}
        described["capacity"] = capacity.to_dict() if capacity is not None else None
        print_json(described)
    else:
        render_evacuation_plan(composed, state)
        if capacity is not None:
            _render_capacity(capacity)
        for name, found in checks.items():
            if found is not None:
                out().print(f"Pre-flight of {name}:", markup=False)
                render_preflight(found)
    if any(c and any(not x.ok for step in c.values() for x in step) for c in checks.values()) or (
            capacity is not None and not capacity.ok):
        raise typer.Exit(1)


def _render_capacity(report: CapacityReport) -> None:
    console = out()
    console.print("Capacity of the regions the evacuation scales:", markup=False)
    for group in report.groups:
        now = "?" if group.current_desired is None else f"{group.current_desired}/{group.current_max}"
        mark = "ok  " if group.problem is None else "FAIL"
        console.print(f"  [{mark}] {group.region} {group.group} ({', '.join(group.applications)}): desired/max now "
                      f"{now}, wanted {group.wanted}, adds {group.added}"
                      + (f" - {group.problem}" if group.problem else ""), markup=False)
    for region, quota in report.quotas.items():
        console.print(f"  EC2 On-Demand vCPU quota in {region}: {quota}", markup=False)


def action_info(name: str) -> dict[str, Any]:
    """Machine-readable description of one registered action."""
    cls = all_actions()[name]
    doc = inspect.cleandoc(cls.__doc__ or "").replace("``", "`")
    summary = doc.split("\n")[0]
    description = doc.strip()  # the example comes from `cls.example` alone (no docstring copy)
    return {"name": name, "capability": cls.capability.value, "summary": summary, "description": description,
            "params": json_schema(cls.Params), "permissions": list(cls.permissions),
            "safety_critical": cls.safety_critical, "drill_default": cls.drill_default.value,
            "example": cls.example}


def _kind(prop: dict[str, Any]) -> str:
    """A parameter's type for people: ``secret`` where a secret reference is accepted."""
    if prop.get("format") == "password":  # pydantic's SecretStr
        return "secret"
    options = prop.get("anyOf", [])
    if options and "type" not in prop:
        return " | ".join(_kind(o) if "$ref" not in o else str(o["$ref"]).split("/")[-1] for o in options)
    kind = str(prop.get("type") or "object")
    if kind == "array" and "items" in prop:
        return f"list[{_kind(prop['items'])}]"
    values = prop.get("additionalProperties")
    if kind == "object" and isinstance(values, dict) and "secret" in _kind(values):
        return f"map[{_kind(values)}]"
    return kind


def _param_rows(schema: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(name, type, default/required, description) for each parameter of an action."""
    required = set(schema.get("required", []))
    rows = []
    for key, prop in schema.get("properties", {}).items():
        options = prop.get("anyOf", [])
        if any("(ms|s|m|h|d)" in str(o.get("pattern", "")) for o in [prop, *options]):
            kind = "duration" + (" | null" if any(o.get("type") == "null" for o in options) else "")
        else:
            kind = _kind(prop)
        if "enum" in prop:
            kind = " | ".join(repr(v) for v in prop["enum"])
        default = "required" if key in required else (
            f"default {json.dumps(prop['default'])}" if "default" in prop else "optional")
        rows.append((key, str(kind), default, str(prop.get("description", ""))))
    return rows


def _print_action_detail(info: dict[str, Any]) -> None:
    console = out()
    console.print(f"{info['name']}  ({info['capability']})", markup=False)
    console.print("\n".join("  " + line for line in info["description"].splitlines()), markup=False)
    console.print("", markup=False)
    table = Table(box=None, pad_edge=False, title=None)
    for column in ("param", "type", "default"):
        table.add_column(column, no_wrap=True, overflow="ignore")
    table.add_column("description", overflow="fold", min_width=12)
    for row in _param_rows(info["params"]):
        table.add_row(*(Text(cell) for cell in row))
    console.print(table)
    console.print(f"permissions: {', '.join(info['permissions']) or 'none'}", markup=False)
    console.print(f"safety-critical: {'yes' if info['safety_critical'] else 'no'}   "
                  f"in a drill: {info['drill_default']}", markup=False)
    console.print("example:\n" + "\n".join("  " + line for line in info["example"].splitlines()), markup=False)


def actions_cmd(
    output: Output = typer.Option(Output.TEXT, "--output", "-o", help="text or json"),
    name: str = typer.Argument(None, help="Show one action in detail (params, permissions, example)."),
) -> None:
    """List registered actions with capability, params, permissions and an example."""
    names = list(all_actions())
    if name is not None and name not in names:
        close = close_matches(name)
        raise typer.BadParameter(f"unknown action {name!r}; "
                                 + (f"did you mean {' or '.join(close)}?" if close else f"known: {', '.join(names)}"),
                                 param_hint="NAME")
    infos = [action_info(n) for n in ([name] if name else names)]
    if output is Output.JSON:
        print_json(infos[0] if name else infos)
        return
    if name:
        _print_action_detail(infos[0])
        return
    console = out()
    for info in infos:
        props = info["params"].get("properties", {})
        required = set(info["params"].get("required", []))
        params = ", ".join(f"{k}{'' if k in required else '?'}" for k in props)
        console.print(f"{info['name']:<28} {info['capability']:<16} {info['summary']}", markup=False)
        console.print(f"    params: {params or '-'}", markup=False)
        if info["permissions"]:
            console.print(f"    permissions: {', '.join(info['permissions'])}", markup=False)
    console.print("`dr actions NAME` shows one action with its parameters and an example.", markup=False)


def schema_cmd(
    kind: str = typer.Option("runbook", "--kind", help="runbook, region or evacuation"),
) -> None:
    """Print the JSON Schema of runbooks (or regions, or evacuation plans) for editor completion."""
    models: dict[str, type[Runbook] | type[Region] | type[Evacuation]] = {
        "runbook": Runbook, "region": Region, "evacuation": Evacuation}
    if kind not in models:
        raise typer.BadParameter("choose 'runbook', 'region' or 'evacuation'", param_hint="--kind")
    print_json(json_schema(models[kind], title=f"dr-engine {kind}"))


def register(app: typer.Typer) -> None:
    """Attach these commands to the root app."""
    app.command("validate")(validate_cmd)
    app.command("plan")(plan_cmd)
    app.command("actions")(actions_cmd)
    app.command("schema")(schema_cmd)
