"""``${...}`` references in step parameters.

Syntax (documented in the README):

- ``${source.KEY}`` / ``${target.KEY}``: a value from the region's ``params``;
- ``${source.secrets.NAME}`` / ``${target.secrets.NAME}``: a region secret, resolved only at
  run time (plans, records and reports show the reference, never the value);
- ``${steps.STEP_ID.OUTPUT}``: an output of an earlier step (the step must be an ancestor);
- ``${runbook.name}``, ``${run.id}``, ``${run.mode}``;
- ``$${`` writes a literal ``${``.

A value that is exactly one reference keeps the referenced value's type (e.g. an int port);
otherwise references are interpolated as text.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

REFERENCE = re.compile(r"(?<!\$)\$\{([^}]*)\}")
_VALID = re.compile(
    r"^(?:(source|target)\.([a-z_][a-z0-9_]*)"
    r"|(source|target)\.secrets\.([a-z_][a-z0-9_]*)"
    r"|steps\.([a-z][a-z0-9-]*)\.([A-Za-z_][A-Za-z0-9_-]*)"
    r"|runbook\.name|run\.id|run\.mode)$"
)


@dataclass(frozen=True)
class Reference:
    """A parsed ``${...}`` reference."""

    text: str
    scope: str  # source | target | secret | step | run
    region: str | None = None
    key: str | None = None
    step: str | None = None


def parse_reference(text: str) -> Reference | None:
    """Parse the inside of ``${...}``; None when it is not a valid reference."""
    match = _VALID.match(text.strip())
    if match is None:
        return None
    region, key, sregion, skey, step, output = match.groups()
    if region:
        return Reference(text, "region", region=region, key=key)
    if sregion:
        return Reference(text, "secret", region=sregion, key=skey)
    if step:
        return Reference(text, "step", step=step, key=output)
    return Reference(text, "run", key=text.strip())


def find_references(value: Any, path: str = "") -> list[tuple[str, str]]:
    """Every ``(field_path, reference_text)`` in a nested params value."""
    found: list[tuple[str, str]] = []
    if isinstance(value, str):
        found.extend((path, m.group(1)) for m in REFERENCE.finditer(value))
    elif isinstance(value, dict):
        for key, item in value.items():
            found.extend(find_references(item, f"{path}.{key}" if path else str(key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(find_references(item, f"{path}[{index}]"))
    return found


Resolver = Callable[[Reference], Any]
"""Returns the value of a reference, or raises KeyError when it cannot be resolved (yet)."""


#: A ``${`` (not the ``$${`` escape) with no ``}`` anywhere after it: a reference never closed.
UNCLOSED = re.compile(r"(?<!\$)\$\{(?![^}]*\})[^}]*$")


def find_unclosed(value: Any, path: str = "") -> list[tuple[str, str]]:
    """Every ``(field_path, text from the unclosed ${ to the end)`` in a nested params value.

    ``"${target.addr"`` would otherwise be passed on as literal text: a typo nobody sees until
    a command receives it at failover time.
    """
    found: list[tuple[str, str]] = []
    if isinstance(value, str):
        found.extend((path, m.group(0)) for m in UNCLOSED.finditer(value))
    elif isinstance(value, dict):
        for key, item in value.items():
            found.extend(find_unclosed(item, f"{path}.{key}" if path else str(key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(find_unclosed(item, f"{path}[{index}]"))
    return found


def substitute(value: Any, resolve: Resolver, *, keep_unresolved: bool = False) -> Any:
    """Replace references in ``value`` using ``resolve``.

    With ``keep_unresolved``, references whose resolver raises KeyError stay as written (used at
    load time, when step outputs are not known yet).
    """
    if isinstance(value, dict):
        return {k: substitute(v, resolve, keep_unresolved=keep_unresolved) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, resolve, keep_unresolved=keep_unresolved) for v in value]
    if not isinstance(value, str) or "${" not in value:
        return value

    def one(match: re.Match[str]) -> Any:
        ref = parse_reference(match.group(1))
        if ref is None:
            raise KeyError(match.group(1))
        try:
            return resolve(ref)
        except KeyError:
            if keep_unresolved:
                return match.group(0)
            raise

    whole = REFERENCE.fullmatch(value)
    if whole is not None:
        return one(whole)
    text = REFERENCE.sub(lambda m: str(one(m)), value)
    return text.replace("$${", "${")
