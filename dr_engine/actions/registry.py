"""The action registry: ``<provider>.<verb>`` -> :class:`~dr_engine.actions.base.Action` class.

Action modules register their classes with :func:`register` when imported. The built-in
modules are listed in :data:`BUILTIN_MODULES` and imported on first use, so that importing
``dr_engine`` stays cheap; action modules import their SDKs lazily inside providers.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any, TypeVar

from dr_engine.actions.base import Action

#: Modules whose import registers the built-in actions. Order is the order of `dr actions`.
BUILTIN_MODULES: tuple[str, ...] = (
    "dr_engine.actions.control",
    "dr_engine.actions.shell",
    "dr_engine.actions.aws_route53", "dr_engine.actions.aws_cloudformation", "dr_engine.actions.aws_rds", "dr_engine.actions.aws_autoscaling", "dr_engine.actions.aws_cloudwatch", "dr_engine.actions.aws_s3", "dr_engine.actions.aws_dynamodb", "dr_engine.actions.aws_secretsmanager",  # noqa: E501
    "dr_engine.actions.terraform",
    "dr_engine.actions.postgres",
    "dr_engine.actions.postgres_failback",
    "dr_engine.actions.http",
    "dr_engine.actions.dns",
)

_REGISTRY: dict[str, type[Action[Any]]] = {}
_loaded = False

A = TypeVar("A", bound=type[Action[Any]])


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


def load_builtin() -> None:
    """Import every built-in action module once."""
    global _loaded
    if _loaded:
        return
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
    _loaded = True


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
