"""YAML files -> validated models. Every error carries file, line and field path.

Runbooks are validated in two passes: the runbook model itself, then each step's ``with:``
block against its action's ``Params`` model (after region references are substituted; step
outputs are only known at run time, so fields holding ``${steps...}`` are checked then).
Secrets are substituted as placeholder ``SecretStr`` values by the same function a run binds
with, so a field that would refuse a secret at run time is refused here, located.
"""

from __future__ import annotations

import difflib
import hashlib
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import SecretStr, ValidationError

from dr_engine.actions.base import Action, ActionParams
from dr_engine.actions.registry import all_actions, close_matches, lookup
from dr_engine.config.gcpause import gc_paused
from dr_engine.config.problems import describe_value, validation_problems
from dr_engine.config.yamlsafe import LineMap, PathKey, format_path, line_for, parse_path, read_yaml
from dr_engine.errors import ConfigError, Problem, UnknownAction
from dr_engine.model import Region, Runbook
from dr_engine.model.location import RunbookLocation
from dr_engine.model.substitution import Reference, find_references, find_unclosed, parse_reference, substitute

#: Shown in place of a secret when params are validated before run time.
SECRET_PLACEHOLDER = "<secret>"


def _expect_mapping(data: Any, file: str, what: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ConfigError(Problem(file, 1, "", f"the top level must be a mapping of keys ({what}), "
                                  f"not {describe_value(data)}", "see `dr schema` or the shipped examples"))
    return data


def display_path(path: Path) -> str:
    """A path as the user would like to read it: relative to the cwd when below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def load_region(path: Path) -> Region:
    """Load and validate one region file; its ``name`` must match the file name."""
    file = display_path(path)
    data, lines = read_yaml(path, file)
    data = _expect_mapping(data, file, "name, aws, params, secrets")
    try:
        region = Region.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(validation_problems(exc, Region, file, lines)) from exc
    if region.name != path.stem:
        raise ConfigError(Problem(file, line_for(lines, ("name",)), "name",
                                  f"region '{region.name}' is defined in {path.name}",
                                  f"name the file {region.name}.yaml or the region '{path.stem}'"))
    return region


def default_regions_dir(runbook_path: Path | None = None) -> Path:
    """``$DR_REGIONS_DIR``, else ``regions/`` beside the runbook's folder, else ``./regions``."""
    env = os.environ.get("DR_REGIONS_DIR")
    if env:
        return Path(env)
    if runbook_path is not None:
        beside = runbook_path.resolve().parent.parent / "regions"
        if beside.is_dir():
            return beside
    return Path("regions")


def runbook_location(runbook_path: Path) -> RunbookLocation:
    """``runbook_path`` (absolute) and ``repo_root`` (the folder above ``runbooks/``) for step contexts.

    Actions resolve repository files (Terraform stacks, CloudFormation templates) against
    ``repo_root``, so a run finds them whatever the current directory is.
    """
    return RunbookLocation.of(runbook_path)


def load_regions(directory: Path) -> dict[str, Region]:
    """Load every ``*.yaml`` region in ``directory`` (all errors reported together)."""
    regions: dict[str, Region] = {}
    problems: list[Problem] = []
    for path in sorted(directory.glob("*.yaml")):
        try:
            region = load_region(path)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        regions[region.name] = region
    if problems:
        raise ConfigError(problems)
    return regions


@dataclass
class LoadedRunbook:
    """A runbook that passed both validation passes, with what is needed to plan and run it."""

    path: Path
    file: str
    sha256: str
    text: str
    runbook: Runbook
    source: Region
    target: Region
    lines: LineMap
    actions: dict[str, type[Action[Any]]] = field(default_factory=dict)
    params: dict[str, ActionParams | None] = field(default_factory=dict)
    regions_dir: Path | None = None
    #: sha256 of the source and target region files, by region name (resume refuses changes).
    region_sha256: dict[str, str] = field(default_factory=dict)

    def locate(self, path: PathKey) -> int | None:
        """Line of a field path in the runbook file."""
        return line_for(self.lines, path)

    @cached_property
    def step_ids(self) -> dict[str, int]:
        """Step id -> position of its first definition in the file."""
        index: dict[str, int] = {}
        for i, step in enumerate(self.runbook.steps):
            index.setdefault(step.id, i)
        return index

    def step_index(self, step_id: str) -> int:
        """Position of a step in the file (KeyError if absent)."""
        return self.step_ids[step_id]

    def problem(self, path: PathKey, message: str, hint: str | None = None) -> Problem:
        """A located problem in this runbook."""
        return Problem(self.file, self.locate(path), format_path(path), message, hint)


def _region_resolver(source: Region, target: Region, runbook: str) -> Any:
    def resolve(ref: Reference) -> Any:
        if ref.scope == "run" and ref.key == "runbook.name":
            return runbook
        region = source if ref.region == "source" else target
        if ref.scope == "region":
            return region.params[ref.key or ""]
        if ref.scope == "secret":
            if ref.key not in region.secrets:
                raise LookupError(ref.text)
            return SecretStr(SECRET_PLACEHOLDER)
        raise KeyError(ref.text)  # steps/run: known at run time only

    return resolve


def _check_references(loaded: LoadedRunbook, index: int, raw: dict[str, Any]) -> list[Problem]:
    problems: list[Problem] = []
    step_ids = loaded.step_ids
    for field_path, text in find_unclosed(raw):
        path_key: PathKey = ("steps", index, "with", *parse_path(field_path))
        problems.append(loaded.problem(path_key, f"unclosed reference '{text}': no closing '}}'",
                                       f"close it ('{text}}}'), or write $${{ for a literal ${{"))
    for field_path, text in find_references(raw):
        path: PathKey = ("steps", index, "with", *parse_path(field_path))
        ref = parse_reference(text)
        if ref is None:
            problems.append(loaded.problem(path, f"invalid reference '${{{text}}}'",
                                           "use ${source.KEY}, ${target.KEY}, ${target.secrets.NAME}, "
                                           "${steps.ID.OUTPUT}, ${runbook.name}, ${run.id} or ${run.mode}"))
            continue
        if ref.scope in ("region", "secret"):
            region = loaded.source if ref.region == "source" else loaded.target
            table = region.params if ref.scope == "region" else region.secrets
            if ref.key not in table:
                kind = "secret" if ref.scope == "secret" else "param"
                close = difflib.get_close_matches(ref.key or "", list(table), n=1)
                hint = f"did you mean '{close[0]}'?" if close else f"add `{ref.key}` to regions/{region.name}.yaml"
                problems.append(loaded.problem(path, f"unknown reference '${{{text}}}': region "
                                               f"'{region.name}' has no {kind} '{ref.key}'", hint))
        elif ref.scope == "step" and ref.step not in step_ids:
            close = difflib.get_close_matches(ref.step or "", sorted(step_ids), n=1)
            hint = f"did you mean '{close[0]}'?" if close else "name the id of an earlier step of this runbook"
            problems.append(loaded.problem(path, f"unknown reference '${{{text}}}': no step '{ref.step}'", hint))
    return problems


#: Message prefix of unknown-action problems (they make the error an UnknownAction).
UNKNOWN_ACTION = "unknown action"


def _unknown_action(loaded: LoadedRunbook, index: int, name: str) -> Problem:
    close = close_matches(name)
    registered = list(all_actions())
    if close:
        hint = f"did you mean {' or '.join(repr(c) for c in close)}? (`dr actions` lists all {len(registered)})"
    elif len(registered) <= 12:
        hint = f"registered actions: {', '.join(registered)} (see `dr actions`)"
    else:
        providers = sorted({n.split('.')[0] for n in registered})
        hint = f"registered providers: {', '.join(providers)}; `dr actions` lists every action"
    return loaded.problem(("steps", index, "action"), f"{UNKNOWN_ACTION} '{name}'", hint)


def _validate_params(loaded: LoadedRunbook) -> list[Problem]:
    problems: list[Problem] = []
    resolve = _region_resolver(loaded.source, loaded.target, loaded.runbook.runbook)
    for index, step in enumerate(loaded.runbook.steps):
        action = lookup(step.action)
        if action is None:
            problems.append(_unknown_action(loaded, index, step.action))
            continue
        loaded.actions[step.id] = action
        ref_problems = _check_references(loaded, index, step.with_)
        problems.extend(ref_problems)
        if ref_problems:
            continue
        resolved = substitute(step.with_, resolve, keep_unresolved=True)
        deferred = {f for f, _ in find_references(resolved)}
        secret_fields = {f for f, text in find_references(step.with_)
                         if (ref := parse_reference(text)) is not None and ref.scope == "secret"}
        try:
            loaded.params[step.id] = action.Params.model_validate(resolved)
        except ValidationError as exc:
            located = validation_problems(exc, action.Params, loaded.file, loaded.lines, ("steps", index, "with"))
            # Fields that still hold ${steps...} are validated at run time, once outputs exist.
            prefix = f"steps[{index}].with."
            real = [p for p in located if p.path.removeprefix(prefix) not in deferred]
            for p in real:
                if p.path.removeprefix(prefix) in secret_fields:
                    problems.append(Problem(p.file, p.line, p.path, f"this field of {step.action} does not take a "
                                            "secret (only text)", "secrets go only in fields that accept one "
                                            f"(see `dr actions {step.action}`), never in plain text fields"))
                    continue
                problems.append(Problem(p.file, p.line, p.path, f"{p.message} (for action {step.action})",
                                        p.hint or f"see `dr actions` for {step.action}'s parameters"))
            loaded.params[step.id] = None
    return problems


def load_runbook(path: Path, regions_dir: Path | None = None) -> LoadedRunbook:
    """Load a runbook, its two regions and every step's params; raise ConfigError on any problem."""
    # Everything built here stays alive and is acyclic: see dr_engine.config.gcpause for why.
    with gc_paused():
        return _load_runbook(path, regions_dir)


def _load_runbook(path: Path, regions_dir: Path | None) -> LoadedRunbook:
    file = display_path(path)
    data, lines = read_yaml(path, file)
    data = _expect_mapping(data, file, "runbook, source, target, objectives, steps")
    try:
        runbook = Runbook.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(validation_problems(exc, Runbook, file, lines)) from exc
    directory = regions_dir or default_regions_dir(path)
    regions = _load_named_regions(directory, runbook, file, lines)
    text = path.read_text(encoding="utf-8")
    loaded = LoadedRunbook(
        path=path, file=file, sha256=hashlib.sha256(text.encode()).hexdigest(), text=text,
        runbook=runbook, source=regions[runbook.source], target=regions[runbook.target],
        lines=lines, regions_dir=directory,
        region_sha256={name: hashlib.sha256((directory / f"{name}.yaml").read_bytes()).hexdigest()
                       for name in regions},
    )
    problems = _validate_params(loaded)
    if any(p.message.startswith(UNKNOWN_ACTION) for p in problems):
        raise UnknownAction(problems)
    if problems:
        raise ConfigError(problems)
    return loaded


def _load_named_regions(directory: Path, runbook: Runbook, file: str, lines: LineMap) -> dict[str, Region]:
    problems: list[Problem] = []
    regions: dict[str, Region] = {}
    available = sorted(p.stem for p in directory.glob("*.yaml") if p.is_file()) if directory.is_dir() else []
    for key in ("source", "target"):
        name = getattr(runbook, key)
        candidate = directory / f"{name}.yaml"
        if candidate.is_dir():
            problems.append(Problem(file, line_for(lines, (key,)), key,
                                    f"region file {display_path(candidate)} is a directory, not a file",
                                    f"replace it with a file holding region '{name}' (name, aws, params, "
                                    "secrets), or point DR_REGIONS_DIR at another folder"))
            continue
        if not candidate.is_file():
            close = difflib.get_close_matches(name, available, n=1)
            hint = f"did you mean '{close[0]}'?" if close else (
                f"defined regions: {', '.join(available)}" if available else f"create {directory}/{name}.yaml")
            problems.append(Problem(file, line_for(lines, (key,)), key, f"unknown region '{name}'", hint))
            continue
        try:
            regions[name] = load_region(candidate)
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    return regions


def action_names() -> list[str]:
    """Every registered action name (for messages and completion)."""
    return list(all_actions())


__all__ = ["LoadedRunbook", "UnknownAction", "load_region", "load_regions", "load_runbook"]
