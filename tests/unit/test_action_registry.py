"""The action registry."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from dr_engine.actions.base import Action, ActionParams, StepContext, StepResult
from dr_engine.actions.registry import (
    all_actions,
    close_matches,
    load_builtin,
    lookup,
    register,
    unregister,
    walk_modules,
)
from dr_engine.capabilities import Capability


def test_builtins_are_registered_and_sorted() -> None:
    names = list(all_actions())
    assert {"control.wait", "control.approve", "shell.run", "shell.verify"} <= set(names)
    assert names == sorted(names)
    assert "dr_engine.actions.control" in load_builtin()
    wait = lookup("control.wait")
    assert wait is not None and wait.capability is Capability.CONTROL_WAIT
    assert lookup("control.nope") is None


@pytest.mark.parametrize(
    ("name", "expected"),
    [("shell.rnu", "shell.run"), ("shel.run", "shell.run"), ("control.wiat", "control.wait"),
     ("contrl.approve", "control.approve")],
)
def test_close_matches(name: str, expected: str) -> None:
    assert expected in close_matches(name)


def test_close_matches_does_not_invent_similarity() -> None:
    assert close_matches("zzzz.qqqq") == []


class _Params(ActionParams):
    x: int = 0


class _Probe(Action[Any]):
    """A probe action used only here."""

    name = "probe.thing"
    capability = Capability.EXEC_RUN
    Params = _Params
    example = "id: probe\naction: probe.thing\n"

    def run(self, params: Any, ctx: StepContext) -> StepResult:
        return StepResult()


def test_register_rejects_duplicates_and_incomplete_classes() -> None:
    register(_Probe)
    try:
        assert lookup("probe.thing") is _Probe
        register(_Probe)  # the same class again is harmless (module re-import)

        class Other(_Probe):
            """Another class with the same name."""

        with pytest.raises(TypeError, match="registered twice"):
            register(Other)
    finally:
        unregister("probe.thing")
    assert lookup("probe.thing") is None

    class NoExample(Action[Any]):
        """Lacks an example."""

        name = "probe.bad"
        capability = Capability.EXEC_RUN
        Params = _Params

        def run(self, params: Any, ctx: StepContext) -> StepResult:
            return StepResult()

    with pytest.raises(TypeError, match="must define `example`"):
        register(NoExample)


def test_drill_variants_are_found_by_walking_for_drill_modules() -> None:
    from dr_engine.drill.session import COPY_HOOKS, load_drill_modules, variant_for

    modules = load_drill_modules()
    # Every module of dr_engine.drill.variants; elsewhere only *_drill modules.
    assert all(m.startswith("dr_engine.drill.variants.") or m.endswith("_drill") for m in modules)
    # The built-in variants, and the embedded world's drill app (a copy hook, not a variant).
    assert {"dr_engine.drill.variants.postgres", "dr_engine.drill.variants.dns", "dr_engine.world.app_drill"} <= set(
        modules)
    assert variant_for("postgres.promote") is not None and variant_for("dns.shift") is not None
    assert variant_for("control.wait") is None
    assert any(hook.__module__ == "dr_engine.world.app_drill" for hook in COPY_HOOKS)
    assert load_drill_modules() is modules  # walked once


def test_walk_imports_every_module_of_a_package_and_its_sub_packages(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "walked_pkg"
    (package / "sub").mkdir(parents=True)
    for path in ("__init__.py", "one.py", "_private.py", "two_drill.py", "sub/__init__.py", "sub/three.py"):
        (package / path).write_text("", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert walk_modules(("walked_pkg",), lambda leaf: not leaf.endswith("_drill")) == (
        "walked_pkg.one", "walked_pkg.sub.three")
    assert walk_modules(("walked_pkg",), lambda leaf: leaf.endswith("_drill")) == ("walked_pkg.two_drill",)
    (package / "sub" / "__init__.py").write_text("raise RuntimeError('broken sub-package')\n", encoding="utf-8")
    sys.modules.pop("walked_pkg.sub", None)
    with pytest.raises(RuntimeError, match="broken sub-package"):  # never skipped silently
        walk_modules(("walked_pkg",), lambda leaf: True)
    for name in [m for m in sys.modules if m.startswith("walked_pkg")]:
        del sys.modules[name]  # not monkeypatch.delitem: its undo would put them back
