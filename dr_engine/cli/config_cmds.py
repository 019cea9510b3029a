"""``dr validate``, ``dr plan``, ``dr actions``, ``dr schema``: commands that change nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from dr_engine.actions.registry import all_actions
from dr_engine.cli.common import EXIT_USAGE, Output, handle_errors, out, print_json
from dr_engine.errors import ConfigError, DrError, Problem
from dr_engine.loader import display_path, load_region, load_runbook
from dr_engine.model import Region, Runbook
from dr_engine.plan import ExecutionPlan, build_plan
from dr_engine.runbooks import resolve_runbook


def _targets(paths: list[Path]) -> list[Path]:
    if not paths:
        paths = [Path("regions"), Path("runbooks")]
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml")))
        else:
            files.append(path)
    return files


def _is_region(path: Path) -> bool:
    return path.resolve().parent.name == "regions"


def validate_file(path: Path) -> dict[str, Any]:
    """Validate one region or runbook file (runbooks are also planned)."""
    if _is_region(path):
        region = load_region(path)
        return {"file": display_path(path), "kind": "region", "name": region.name}
    plan = build_plan(load_runbook(path))
    return {"file": display_path(path), "kind": "runbook", "name": plan.loaded.runbook.runbook,
            "steps": len(plan.steps), "waves": len(plan.waves)}


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
            problems = exc.problems if isinstance(exc, ConfigError) else [Problem(display_path(path), None, "", str(exc))]
            results.append({"ok": False, "file": display_path(path),
                            "errors": [{"file": p.file, "line": p.line, "path": p.path, "message": p.message,
                                        "hint": p.hint} for p in problems] if isinstance(exc, ConfigError)
                            else [{"file": display_path(path), "line": None, "path": "", "message": str(exc),
                                   "hint": None}]})
    if output is Output.JSON:
        print_json({"ok": not failed, "files": results})
    else:
        console = out()
        for item in results:
            if item["ok"]:
                extra = f"{item['steps']} steps, {item['waves']} waves" if item["kind"] == "runbook" else ""
                console.print(f"ok       {item['file']}  ({item['kind']} {item['name']}{', ' + extra if extra else ''})",
                              markup=False)
            else:
                console.print(f"INVALID  {item['file']}", markup=False)
                for e in item["errors"]:
                    console.print("  " + Problem(e["file"], e["line"], e["path"], e["message"], e["hint"])
                                  .render().replace("\n", "\n  "), markup=False)
        bad = sum(1 for r in results if not r["ok"])
        console.print(f"{len(results) - bad} valid, {bad} invalid", markup=False)
    if failed:
        raise typer.Exit(EXIT_USAGE)


def render_plan(plan: ExecutionPlan) -> None:
    """Print a plan for people."""
    console = out()
    rb = plan.loaded.runbook
    console.print(f"Runbook {rb.runbook} ({plan.loaded.file}, sha256 {plan.loaded.sha256[:12]})", markup=False)
    console.print(f"  {rb.source} -> {rb.target}   objectives: RTO {rb.objectives.rto.total_seconds():g}s, "
                  f"RPO {rb.objectives.rpo.total_seconds():g}s   RTO stop: {plan.rto_stop}", markup=False)
    table = Table(show_lines=False, box=None, pad_edge=False)
    for column in ("wave", "step", "action", "capability", "timeout", "after", "what"):
        table.add_column(column)
    for wave in plan.waves:
        for s in wave:
            table.add_row(str(s.wave + 1), s.id, s.action, s.capability.value, f"{s.timeout.total_seconds():g}s",
                          ",".join(s.step.after) or "-", s.summary)
    console.print(table)
    console.print("Safety invariants:", markup=False)
    for check in plan.checks:
        mark = "ok  " if check.ok else "FAIL"
        console.print(f"  [{mark}] {check.name}{' - ' + check.detail if check.detail else ''}", markup=False)
    for override in plan.overrides:
        console.print(f"  override: {override}", markup=False)
    console.print("Nothing was changed.", markup=False)


@handle_errors
def plan_cmd(
    runbook: str = typer.Argument(..., help="Runbook name (runbooks/NAME.yaml) or path."),
    output: Output = typer.Option(Output.TEXT, "--output", "-o", help="text or json"),
) -> None:
    """Print the ordered plan (waves, actions, timeouts, invariants checked). Changes nothing."""
    plan = build_plan(load_runbook(resolve_runbook(runbook)))
    if output is Output.JSON:
        print_json(plan.to_dict())
    else:
        render_plan(plan)


def action_info(name: str) -> dict[str, Any]:
    """Machine-readable description of one registered action."""
    cls = all_actions()[name]
    doc = (cls.__doc__ or "").strip().split("\n")[0]
    return {"name": name, "capability": cls.capability.value, "summary": doc,
            "params": cls.Params.model_json_schema(), "permissions": list(cls.permissions),
            "safety_critical": cls.safety_critical, "drill_default": cls.drill_default.value,
            "example": cls.example}


def actions_cmd(
    output: Output = typer.Option(Output.TEXT, "--output", "-o", help="text or json"),
    name: str = typer.Argument(None, help="Show one action in detail."),
) -> None:
    """List registered actions with capability, params, permissions and an example."""
    names = list(all_actions())
    if name is not None and name not in names:
        raise typer.BadParameter(f"unknown action {name!r}; known: {', '.join(names)}", param_hint="NAME")
    infos = [action_info(n) for n in ([name] if name else names)]
    if output is Output.JSON:
        print_json(infos)
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
        if name:
            console.print("    example:\n" + "\n".join("      " + line for line in info["example"].splitlines()),
                          markup=False)


def schema_cmd(
    kind: str = typer.Option("runbook", "--kind", help="runbook or region"),
) -> None:
    """Print the JSON Schema of runbooks (or regions) for editor completion."""
    models: dict[str, type[Runbook] | type[Region]] = {"runbook": Runbook, "region": Region}
    if kind not in models:
        raise typer.BadParameter("choose 'runbook' or 'region'", param_hint="--kind")
    schema = models[kind].model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = f"dr-engine {kind}"
    print_json(schema)


def register(app: typer.Typer) -> None:
    """Attach these commands to the root app."""
    app.command("validate")(validate_cmd)
    app.command("plan")(plan_cmd)
    app.command("actions")(actions_cmd)
    app.command("schema")(schema_cmd)
