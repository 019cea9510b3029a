"""Loading an evacuation plan: the file, then every runbook it names, every problem located.

A plan is refused (:class:`~dr_engine.errors.ConfigError`, every problem at once) when a runbook
is missing or invalid, goes between other regions than the plan, or moves an application another
entry already moves (two runs of one application would race for its lock), or when an entry
waits for an application the plan does not list.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from dr_engine.config.loader import LoadedRunbook, display_path, load_runbook
from dr_engine.config.problems import validation_problems
from dr_engine.config.yamlsafe import LineMap, format_path, line_for, read_yaml
from dr_engine.errors import ConfigError, DrError, Problem
from dr_engine.model.evacuation import Evacuation

KIND = "evacuation"


def is_evacuation_data(data: Any) -> bool:
    """True for the parsed YAML of an evacuation plan (``kind: evacuation``)."""
    return isinstance(data, dict) and data.get("kind") == KIND


def is_evacuation_file(path: Path) -> bool:
    """True when ``path`` holds an evacuation plan (read cheaply; any error reads as False)."""
    try:
        data, _ = read_yaml(path, display_path(path))
    except (DrError, OSError):
        return False
    return is_evacuation_data(data)


@dataclass
class LoadedEvacuation:
    """A plan that validated, with every runbook it names loaded (by application name)."""

    path: Path
    file: str
    sha256: str
    plan: Evacuation
    lines: LineMap
    runbooks: dict[str, LoadedRunbook] = field(default_factory=dict)

    def problem(self, path: tuple[str | int, ...], message: str, hint: str | None = None) -> Problem:
        """A located problem in the plan file."""
        return Problem(self.file, line_for(self.lines, path), format_path(path), message, hint)


def _runbook_path(reference: str, plan_path: Path) -> Path:
    # A name is looked up beside the plan (runbooks/NAME.yaml); a path is relative to the plan.
    candidate = Path(reference)
    if candidate.suffix in (".yaml", ".yml") or "/" in reference:
        return candidate if candidate.is_absolute() else plan_path.parent / candidate
    for suffix in (".yaml", ".yml"):
        path = plan_path.parent / f"{reference}{suffix}"
        if path.is_file():
            return path
    return plan_path.parent / f"{reference}.yaml"


def load_evacuation(path: Path, regions_dir: Path | None = None) -> LoadedEvacuation:
    """Load and check an evacuation plan and its runbooks; raise ConfigError listing every problem."""
    file = display_path(path)
    data, lines = read_yaml(path, file)
    if not isinstance(data, dict):
        raise ConfigError(Problem(file, 1, "", "an evacuation plan is a mapping",
                                  "start from runbooks/evacuate-us-east-1.yaml"))
    try:
        plan = Evacuation.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(validation_problems(exc, Evacuation, file, lines)) from exc
    text = path.read_text(encoding="utf-8")
    loaded = LoadedEvacuation(path=path, file=file, sha256=hashlib.sha256(text.encode()).hexdigest(),
                              plan=plan, lines=lines)
    problems = _check_names(loaded)
    lock_keys: dict[str, str] = {}
    for index, app in enumerate(plan.applications):
        where: tuple[str | int, ...] = ("applications", index, "runbook")
        runbook_path = _runbook_path(app.runbook, path)
        if not runbook_path.is_file():
            problems.append(loaded.problem(where, f"runbook {display_path(runbook_path)} of application "
                                                  f"'{app.name}' not found",
                                           "give a runbook name from runbooks/ or a path relative to the plan"))
            continue
        try:
            runbook = load_runbook(runbook_path, regions_dir=regions_dir)
        except ConfigError as exc:  # the runbook's own problems, in its own file
            problems.extend(exc.problems)
            problems.append(loaded.problem(where, f"runbook of application '{app.name}' is invalid (see above)",
                                           f"fix {display_path(runbook_path)}"))
            continue
        rb = runbook.runbook
        if (rb.source, rb.target) != (plan.source, plan.target):
            problems.append(loaded.problem(where, f"runbook {rb.runbook} goes {rb.source} -> {rb.target}, the "
                                                  f"plan {plan.source} -> {plan.target}",
                                           "an evacuation moves every application the same way"))
        other = lock_keys.setdefault(rb.lock_key, app.name)
        if other != app.name:
            problems.append(loaded.problem(where, f"applications '{other}' and '{app.name}' both move "
                                                  f"'{rb.lock_key}' (one failover lock)",
                                           "list each application once"))
        loaded.runbooks[app.name] = runbook
    if problems:
        raise ConfigError(problems)
    return loaded


def _check_names(loaded: LoadedEvacuation) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[str] = set()
    apps = loaded.plan.applications
    names = {a.name for a in apps}
    for index, app in enumerate(apps):
        if app.name in seen:
            problems.append(loaded.problem(("applications", index, "name"),
                                           f"application '{app.name}' is listed twice", "names are unique"))
        seen.add(app.name)
        for d_index, dependency in enumerate(app.dependencies()):
            at: tuple[str | int, ...] = ("applications", index, "after", d_index)
            if dependency.application == app.name:
                problems.append(loaded.problem(at, f"application '{app.name}' waits for itself",
                                               "remove it from its own `after:`"))
            elif dependency.application not in names:
                problems.append(loaded.problem(at, f"'{dependency.application}' is not an application of this "
                                                   "plan", f"known: {', '.join(sorted(names))}"))
    return problems


__all__ = ["KIND", "LoadedEvacuation", "is_evacuation_data", "is_evacuation_file", "load_evacuation"]
