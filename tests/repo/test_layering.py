"""Import rules from ARCHITECTURE.md, checked on the source with ast."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FLOWS_ALLOWED = {"prefect", "dr_engine", "flows", "__future__"} | set(sys.stdlib_module_names)
SDKS = {"boto3", "botocore", "psycopg", "psycopg2", "python_terraform", "dns", "moto"}


def imported_modules(tree: ast.AST, *, top_level_only: bool = False) -> list[tuple[str, int]]:
    """(top-level package, line) of every absolute import; relative imports stay in the package."""
    nodes = ast.iter_child_nodes(tree) if top_level_only else ast.walk(tree)
    found: list[tuple[str, int]] = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found.extend((alias.name.split(".")[0], node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module.split(".")[0], node.lineno))
    return found


def flow_violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [f"{path.relative_to(path.parents[1])}:{line}: imports {module}"
            for module, line in imported_modules(tree) if module not in FLOWS_ALLOWED]


def test_flows_import_only_prefect_dr_engine_and_stdlib() -> None:
    # The Prefect adapter (dr_engine/flows/) and the thin prefect.yaml entrypoints (flows/).
    flows = sorted([*(REPO / "dr_engine" / "flows").rglob("*.py"), *(REPO / "flows").rglob("*.py")])
    assert {"failover.py", "deployments.py"} <= {p.name for p in flows}
    problems = [v for path in flows for v in flow_violations(path)]
    assert not problems, "flows/ are adapters: " + "; ".join(problems)


def test_the_top_level_flows_folder_holds_only_prefect_yaml_entrypoints() -> None:
    # Everything else lives in the package (dr_engine.flows); these files only re-export a flow.
    import re
    named = set(re.findall(r"entrypoint: (flows/[\w/]+\.py):", (REPO / "prefect.yaml").read_text()))
    assert named and named == {str(p.relative_to(REPO)) for p in (REPO / "flows").glob("*.py")}
    for path in (REPO / "flows").glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        assert all(isinstance(n, ast.Expr | ast.ImportFrom | ast.Assign) for n in tree.body), path


def test_the_flow_check_catches_a_violation(tmp_path: Path) -> None:
    # The rule must have teeth even while flows/ is small.
    bad = tmp_path / "flows" / "bad.py"
    bad.parent.mkdir()
    bad.write_text("import os\nimport prefect\nfrom dr_engine.planning.plan import build_plan\nimport boto3\n"
                   "def f():\n    from psycopg import connect\n")
    assert flow_violations(bad) == ["flows/bad.py:4: imports boto3", "flows/bad.py:6: imports psycopg"]


def test_actions_never_import_an_sdk_at_module_level() -> None:
    problems = []
    for path in sorted((REPO / "dr_engine" / "actions").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        problems += [f"{path.name}:{line}: {module}" for module, line in imported_modules(tree, top_level_only=True)
                     if module in SDKS]
    assert not problems, "actions decide, providers do I/O (import SDKs lazily): " + "; ".join(problems)


def test_model_depends_on_nothing_else_in_dr_engine() -> None:
    problems = []
    for path in sorted((REPO / "dr_engine" / "model").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            module = node.module or "" if isinstance(node, ast.ImportFrom) and node.level == 0 else ""
            if module.startswith("dr_engine.") and not module.startswith("dr_engine.model"):
                problems.append(f"{path.name}:{node.lineno}: {module}")
    assert not problems, problems


#: What dr_engine/capabilities may import: the floors below it (errors, clock, model) and itself.
CAPABILITIES_ALLOWED = ("dr_engine.errors", "dr_engine.clock", "dr_engine.model", "dr_engine.capabilities")


def capability_violations(path: Path) -> list[str]:
    """Imports of dr_engine layers above capabilities/ (anywhere in the file, TYPE_CHECKING included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[str] = []
    for node in ast.walk(tree):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
            [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
        found += [f"{path.name}:{node.lineno}: {name}" for name in names if not _capability_may_import(name)]
    return found


def _capability_may_import(name: str) -> bool:
    top = name.split(".")[0]
    if top == "dr_engine":
        return any(name == allowed or name.startswith(allowed + ".") for allowed in CAPABILITIES_ALLOWED)
    return top in sys.stdlib_module_names or top in ("pydantic", "__future__")


def test_capabilities_import_only_the_layers_below_them() -> None:
    # The RPO gate is imported by actions and must not reach back up (actions, engine, evidence).
    files = sorted((REPO / "dr_engine" / "capabilities").glob("*.py"))
    assert any(p.name == "data.py" for p in files)
    problems = [v for path in files for v in capability_violations(path)]
    assert not problems, "capabilities/ sits below actions and evidence: " + "; ".join(problems)


def test_the_capabilities_check_catches_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from dr_engine.errors import PreconditionFailed\nimport boto3\n"
                   "def f():\n    from dr_engine.actions.base import StepContext\n")
    assert capability_violations(bad) == ["bad.py:2: boto3", "bad.py:4: dr_engine.actions.base"]
