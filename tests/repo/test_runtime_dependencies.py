"""`pip install dr-engine` pulls in neither pytest nor the moto server, and a plain user never needs them.

The embedded world's AWS endpoint takes the ``world`` extra (moto[server]); the tests take the
``dev`` extra (which includes ``world``). Three checks: the declared dependencies, the installed
dependency graph of the core install, and the ``dr`` command run with those packages made
unimportable.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
#: Packages of the extras that a core install must neither declare nor reach transitively.
EXTRAS_ONLY = {"pytest", "moto", "hypothesis"}
#: Modules a plain user's `dr` must never import (``_pytest`` is where pytest's code lives).
BLOCKED = ("moto", "pytest", "_pytest", "hypothesis")


def pyproject() -> dict[str, object]:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def names(requirements: list[str]) -> set[str]:
    return {canonicalize_name(Requirement(r).name) for r in requirements}


def test_core_dependencies_leave_test_and_world_packages_to_extras() -> None:
    project = pyproject()
    extras: dict[str, list[str]] = project["optional-dependencies"]  # type: ignore[index, assignment]
    assert not names(project["dependencies"]) & EXTRAS_ONLY  # type: ignore[arg-type]
    assert "moto" in names(extras["world"])
    dev = [Requirement(r) for r in extras["dev"]]
    assert {"pytest", "hypothesis", "pytest-timeout", "ruff", "mypy"} <= {canonicalize_name(r.name) for r in dev}
    # The suite starts the world, so `pip install -e '.[dev]'` alone must bring moto too.
    assert any(canonicalize_name(r.name) == "dr-engine" and "world" in r.extras for r in dev)


def installed_closure(name: str, extras: tuple[str, ...] = ()) -> set[str]:
    """Every installed distribution ``name[extras]`` requires, transitively (markers evaluated)."""
    seen: dict[str, set[str]] = {}
    todo = [(name, extras)]
    while todo:
        dist_name, wanted = todo.pop()
        key = canonicalize_name(dist_name)
        if key in seen and set(wanted) <= seen[key]:
            continue
        seen.setdefault(key, set()).update(wanted)
        try:
            requires = metadata.distribution(dist_name).requires or []
        except metadata.PackageNotFoundError:
            continue
        for raw in requires:
            req = Requirement(raw)
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in ("", *wanted)):
                todo.append((req.name, tuple(req.extras)))
    return set(seen)


def test_the_installed_core_graph_reaches_neither_pytest_nor_moto() -> None:
    # Read from the installed metadata, so a core dependency that itself pulls in pytest is caught too.
    core = installed_closure("dr-engine")
    assert "prefect" in core and "boto3" in core, "the walk sees the core dependencies"
    assert not core & EXTRAS_ONLY, sorted(core & EXTRAS_ONLY)
    assert "moto" in installed_closure("dr-engine", ("world",))


def test_no_runtime_module_imports_an_extra_at_import_time() -> None:
    # Module-level imports only: the moto server's child imports moto inside serve(). The pytest
    # fixtures module is part of the dev extra by nature (and says so when pytest is missing).
    allowed = {Path("dr_engine/testing/moto_fixtures.py")}
    problems = []
    for path in sorted([*(REPO / "dr_engine").rglob("*.py"), *(REPO / "flows").rglob("*.py")]):
        if path.relative_to(REPO) in allowed:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            for stmt in node.body if isinstance(node, ast.Try) else [node]:
                mods = [a.name for a in stmt.names] if isinstance(stmt, ast.Import) else (
                    [stmt.module or ""] if isinstance(stmt, ast.ImportFrom) and stmt.level == 0 else [])
                problems += [f"{path.relative_to(REPO)}:{stmt.lineno}: {m}" for m in mods
                             if m.split(".")[0] in BLOCKED]
    assert not problems, problems


#: Runs `dr` (argv after -c) with the blocked packages unimportable, as on a core install, and
#: writes every attempt to import one to the file named by $DR_TEST_ATTEMPTS.
WITHOUT_EXTRAS = f"""
import atexit, json, os, sys

BLOCKED = {BLOCKED!r}
attempts = []


class NotInstalled:
    '''A meta-path finder that makes the extras' packages look uninstalled.'''

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            attempts.append(name)
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None


sys.meta_path.insert(0, NotInstalled)
atexit.register(lambda: open(os.environ["DR_TEST_ATTEMPTS"], "w").write(json.dumps(attempts)))
sys.argv[0] = "dr"
from dr_engine.cli import main
main()
"""


def dr_without_extras(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    attempts = tmp_path / "attempts.json"
    env = {k: v for k, v in os.environ.items() if k not in ("DR_REGIONS_DIR", "DR_RUNBOOKS_DIR")}
    env.update({"NO_COLOR": "1", "DR_TEST_ATTEMPTS": str(attempts), "PREFECT_HOME": str(tmp_path / "prefect")})
    done = subprocess.run([sys.executable, "-c", WITHOUT_EXTRAS, *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    return done, json.loads(attempts.read_text(encoding="utf-8")) if attempts.exists() else []


def test_dr_works_without_pytest_and_moto(tmp_path: Path) -> None:
    for args in (["--help"], ["validate", "runbooks/core-banking-aws.yaml"], ["validate"],
                 ["plan", "sample-noop"], ["actions"]):
        done, attempts = dr_without_extras(tmp_path, *args)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        assert attempts == [], f"`dr {' '.join(args)}` tried to import {attempts}"


@pytest.mark.parametrize("command", [["world", "up"], ["demo", "--state-dir", "{tmp}/state"]], ids=" ".join)
def test_the_world_without_moto_names_the_extra_and_starts_nothing(tmp_path: Path, command: list[str]) -> None:
    # A non-empty folder that holds no world: were the check missing or late, the world would
    # refuse it (exit 1, "not empty") before starting anything, so this test never starts a world.
    root = tmp_path / "world"
    root.mkdir()
    (root / "keep").write_text("not a world\n", encoding="utf-8")
    args = [arg.format(tmp=tmp_path) for arg in command]
    done, attempts = dr_without_extras(tmp_path, *args, "--root", str(root))
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "install dr-engine[world]" in done.stderr
    assert "Starting the embedded world" not in done.stderr, "the check comes before any narration"
    assert "moto" in attempts
    assert sorted(p.name for p in root.iterdir()) == ["keep"]
    assert not (tmp_path / "state").exists()
