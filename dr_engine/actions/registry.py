"""The action registry: ``<provider>.<verb>`` -> :class:`~dr_engine.actions.base.Action` class.

Action modules register their classes with :func:`register` when imported. The built-in ones are
found by discovery, not by a hand-kept list: on the first lookup, :func:`load_builtin` walks the
packages of :data:`ACTION_PACKAGES` with :mod:`pkgutil` and imports every module in them (the
Patroni way), so a new action is registered by adding its module. Importing ``dr_engine`` stays
cheap because nothing is walked until a lookup needs the registry, and action modules import
their SDKs lazily inside providers.

Modules named ``*_drill`` are drill variants (:mod:`dr_engine.drill.session` discovers them); the action
walk skips them so that a lookup does not load the drill machinery. Actions defined elsewhere (a
user's own, or the fakes of :mod:`dr_engine.testing.actions`) register the same way, by importing
the module that defines them.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from dr_engine.actions.base import Action

#: Packages whose modules define the built-in actions (walked recursively on first lookup).
ACTION_PACKAGES: tuple[str, ...] = ("dr_engine.actions",)
#: Module-name suffix of drill variants, which live beside their actions but load with the drill.
DRILL_SUFFIX = "_drill"

_REGISTRY: dict[str, type[Action[Any]]] = {}
_loaded: tuple[str, ...] | None = None
# Engine steps run in threads: one walk at a time, so no thread sees a half-filled registry.
# Re-entrant: a module being imported by the walk may itself look an action up.
_LOAD_LOCK = threading.RLock()

A = TypeVar("A", bound=type[Action[Any]])


def walk_modules(packages: tuple[str, ...], accept: Callable[[str], bool]) -> tuple[str, ...]:
    """Import every module of ``packages`` (sub-packages included) whose last name ``accept`` takes.

    Returns the imported module names, sorted. Names starting with ``_`` are private and skipped.
    Sub-packages are imported to be walked (``pkgutil.walk_packages`` needs their ``__path__``).
    """
    found: list[str] = []
    for package in packages:
        module = importlib.import_module(package)
        # onerror re-imports to raise: pkgutil would otherwise skip a broken sub-package silently,
        # and its actions would surface later as 'unknown action' instead of the real error.
        for info in pkgutil.walk_packages(module.__path__, prefix=package + ".", onerror=_import_or_raise):
            leaf = info.name.rsplit(".", 1)[-1]
            if info.ispkg or leaf.startswith("_") or not accept(leaf):
                continue
            importlib.import_module(info.name)
            found.append(info.name)
    return tuple(sorted(found))


def _import_or_raise(name: str) -> None:
    importlib.import_module(name)


def _is_action_module(leaf: str) -> bool:
    return leaf != "registry" and not leaf.endswith(DRILL_SUFFIX)


def register(cls: A) -> A:
    """Class decorator: register an action under its ``name`` (duplicates are a bug)."""
    for attr in ("name", "capability", "Params", "example"):
        if not hasattr(cls, attr):
            raise TypeError(f"action {cls.__name__} must define `{attr}`")
    existing = _REGISTRY.get(cls.name)
    if existing is not None and existing is not cls:
        raise TypeError(f"action name {cls.name!r} registered twice ({existing.__name__}, {cls.__name__})")
    _REGISTRY[cls.name] = cls
    return cls


def load_builtin() -> tuple[str, ...]:
    """Import every built-in action module once; returns the modules found (see :data:`ACTION_PACKAGES`)."""
    global _loaded
    if _loaded is None:
        with _LOAD_LOCK:
            if _loaded is None:
                _loaded = walk_modules(ACTION_PACKAGES, _is_action_module)
    return _loaded


def all_actions() -> dict[str, type[Action[Any]]]:
    """Every registered action, sorted by name."""
    load_builtin()
    return dict(sorted(_REGISTRY.items()))


def lookup(name: str) -> type[Action[Any]] | None:
    """The action class registered as ``name``, or None."""
    load_builtin()
    return _REGISTRY.get(name)


def close_matches(name: str, limit: int = 3) -> list[str]:
    """Registered names that look like ``name`` (for 'did you mean' hints)."""
    load_builtin()
    names = list(_REGISTRY)
    found = difflib.get_close_matches(name, names, n=limit, cutoff=0.6)
    provider, _, verb = name.partition(".")
    # A misspelt provider with a known verb ('postgress.promote'), or a known provider with a
    # misspelt verb: match the parts separately so the hint names the right family.
    providers = sorted({n.split(".")[0] for n in names})
    for close in difflib.get_close_matches(provider, providers, n=2, cutoff=0.6):
        verbs = [n.split(".", 1)[1] for n in names if n.startswith(close + ".")]
        found += [f"{close}.{v}" for v in difflib.get_close_matches(verb, verbs, n=limit, cutoff=0.5)]
    return list(dict.fromkeys(found))[:limit]


def unregister(name: str) -> None:
    """Remove an action (tests that register fakes use this to clean up)."""
    _REGISTRY.pop(name, None)
