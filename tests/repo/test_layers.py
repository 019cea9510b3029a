"""The package's floor plan: each layer imports only the layers below it, and nothing circles.

Every import counts: at module level, inside functions (lazy) and under ``TYPE_CHECKING``; a
layer that needs a name from above takes it as a parameter or a protocol instead. The layers,
bottom to top, are the folders of ``dr_engine/`` (see docs/development/architecture.md).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "dr_engine"

#: Bottom to top. A module's layer is its first folder under dr_engine/ (or its own name).
LAYERS: tuple[str, ...] = (
    "model",         # pure data, no I/O
    "errors",        # the whole taxonomy
    "clock",         # time is injected
    "retry",         # the tenacity policy
    "capabilities",  # what each kind of step promises; the RPO gate
    "evidence",      # audit log, run record and what folds from it, state dir, identity
    "providers",     # thin I/O adapters, the only SDK importers
    "actions",       # decide; import no SDK at module level
    "config",        # YAML -> validated models (validates `with:` against each action's Params)
    "planning",      # a checked plan, pre-flight, IAM
    "lock",          # one run per application
    "drill",         # drill sessions and per-action drill variants
    "engine",        # runs one plan: the single entry point
    "report",        # renderers of records
    "flows",         # the Prefect adapter
    "world",         # the embedded local regions (`dr world`, `dr demo`, tests)
    "cli",           # the `dr` command
    "testing",       # shipped fakes, fixtures and contract suites
)
#: What each layer may import from dr_engine: the layers below it and itself.
ALLOWED: dict[str, frozenset[str]] = {layer: frozenset(LAYERS[: i + 1]) for i, layer in enumerate(LAYERS)}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> str | None:
    """The layer of ``dr_engine.<first>...``; None for the package facade ``dr_engine`` itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def imports_of(path: Path) -> Iterator[tuple[str, int]]:
    """(absolute dr_engine module, line) of every import in the file, wherever it is."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "dr_engine":
                    yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: use absolute imports"
            module = node.module or ""
            if module == "dr_engine":  # from dr_engine import x: x may be a module or a name
                for alias in node.names:
                    candidate = f"dr_engine.{alias.name}"
                    is_module = (PACKAGE / alias.name).is_dir() or (PACKAGE / f"{alias.name}.py").exists()
                    yield (candidate if is_module else module), node.lineno
            elif module.split(".")[0] == "dr_engine":
                for alias in node.names:
                    sub = f"{module}.{alias.name}"
                    where = REPO / Path(*sub.split("."))
                    yield (sub if where.is_dir() or where.with_suffix(".py").exists() else module), node.lineno


def layer_violations(paths: list[Path]) -> list[str]:
    found = []
    for path in paths:
        me = layer_of(module_name(path))
        if me is None:
            continue  # the curated facade re-exports from every layer, lazily
        assert me in ALLOWED, f"{path.relative_to(REPO)}: folder {me!r} is in no layer; add it to LAYERS"
        for module, line in imports_of(path):
            other = layer_of(module)
            if other is not None and other not in ALLOWED[me]:
                found.append(f"{path.relative_to(REPO)}:{line}: {me} imports {module} ({other})")
    return found


def import_cycles(paths: list[Path]) -> list[list[str]]:
    """Every strongly connected group of modules (Tarjan), each a circle of imports."""
    graph = {module_name(p): {m for m, _ in imports_of(p)} for p in paths}
    # An import of a package runs its __init__; importing a.b.c also imports a and a.b.
    edges = {m: {t for t in targets if t in graph and t != m} for m, targets in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                group.append(top)
                if top == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return groups


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_folder_is_a_layer() -> None:
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    modules = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert folders | modules == set(LAYERS)


def test_each_layer_imports_only_the_layers_below_it() -> None:
    problems = layer_violations(_sources())
    assert not problems, "imports pointing up:\n" + "\n".join(problems)


def test_there_is_no_import_circle() -> None:
    cycles = import_cycles(_sources())
    assert not cycles, "import circles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_checks_catch_an_upward_import_and_a_circle(tmp_path: Path, monkeypatch: object) -> None:
    # The rules must have teeth: a fake evidence module importing the engine lazily and under
    # TYPE_CHECKING, and two modules importing each other.
    import pytest
    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    root = tmp_path / "dr_engine"
    (root / "evidence").mkdir(parents=True)
    (root / "engine").mkdir()
    for init in (root / "__init__.py", root / "evidence" / "__init__.py", root / "engine" / "__init__.py"):
        init.write_text("")
    (root / "evidence" / "a.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from dr_engine.engine.b import X\n"
        "def f():\n    from dr_engine.engine import b\n")
    (root / "engine" / "b.py").write_text("from dr_engine.evidence.a import f\n")
    monkeypatch.setattr(__import__(__name__), "REPO", tmp_path)
    monkeypatch.setattr(__import__(__name__), "PACKAGE", root)
    paths = sorted(root.rglob("*.py"))
    assert layer_violations(paths) == [
        "dr_engine/evidence/a.py:3: evidence imports dr_engine.engine.b (engine)",
        "dr_engine/evidence/a.py:5: evidence imports dr_engine.engine.b (engine)",
    ]
    assert import_cycles(paths) == [["dr_engine.engine.b", "dr_engine.evidence.a"]]
