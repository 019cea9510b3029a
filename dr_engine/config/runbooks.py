"""Finding runbook files by name or path."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from dr_engine.errors import ConfigError, Problem


def runbooks_dir() -> Path:
    """``$DR_RUNBOOKS_DIR`` or ``./runbooks``."""
    return Path(os.environ.get("DR_RUNBOOKS_DIR", "runbooks"))


def _not_a_directory(path: Path, shown: str) -> None:
    if path.is_dir():
        raise ConfigError(Problem(shown, None, "", "is a directory, not a runbook file",
                                  "give the runbook's YAML file (e.g. runbooks/NAME.yaml) or its name"))


def resolve_runbook(name_or_path: str) -> Path:
    """Accept ``core-banking``, ``runbooks/core-banking.yaml`` or any path to a YAML file."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or os.sep in name_or_path:
        _not_a_directory(candidate, name_or_path)
        if not candidate.is_file():
            raise ConfigError(Problem(name_or_path, None, "", "runbook file not found", "check the path"))
        return candidate
    directory = runbooks_dir()
    for suffix in (".yaml", ".yml"):
        path = directory / f"{name_or_path}{suffix}"
        _not_a_directory(path, str(path))
        if path.is_file():
            return path
    known = sorted(p.stem for p in directory.glob("*.y*ml") if p.is_file()) if directory.is_dir() else []
    close = difflib.get_close_matches(name_or_path, known, n=1)
    hint = f"did you mean '{close[0]}'?" if close else (f"known runbooks: {', '.join(known)}" if known
                                                         else f"no runbooks in {directory}/")
    raise ConfigError(Problem(str(directory / f"{name_or_path}.yaml"), None, "", f"no runbook named '{name_or_path}'",
                              hint))
